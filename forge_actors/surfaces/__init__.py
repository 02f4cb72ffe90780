"""The surfaces: the ``forge`` command (``cli``, ``terminal``) and the HTTP server (``server``).

They reach the engine through ``forge_actors.engine`` alone, and read the pure core's types.
"""
