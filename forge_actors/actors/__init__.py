"""The actors: a session actor coordinating rounds, a participant actor per AI, the scheduler.

They only tell each other things (``messages``); the engine starts and stops them.
"""
