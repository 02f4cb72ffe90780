"""Run in a subprocess by test_resume.py: deliberate (to be SIGKILLed), or resume to the end.

    python resume_worker.py DB deliberate SESSION_ID
    python resume_worker.py DB resume SESSION_ID     -> prints the final state as JSON
"""

import sys

import msgspec

from forge_actors.engine import Forge


def main() -> None:
    db, mode, session_id = sys.argv[1:4]
    with Forge(db) as forge:
        if mode == "deliberate":
            events = forge.deliberate(session_id)
            print("started", flush=True)
            for _ in events:
                pass
            return
        # Fold the log in pieces while the session runs (the engine's incremental cache),
        # so the state printed at the end is an incremental fold, not one from scratch.
        for count, _recorded in enumerate(forge.resume(session_id)):
            if count % 97 == 0:
                forge.state(session_id)
        sys.stdout.write(msgspec.json.encode(forge.state(session_id)).decode() + "\n")


if __name__ == "__main__":
    main()
