"""The pure core: events, the fold, the rounds' rules, reply formats and their readers, prompts, audit,
usage, exports.

No I/O beyond reading its own prompt files, no actors, no threads: everything here is a
function of its arguments, so the live engine, a resumed one and a re-run decide alike.
"""
