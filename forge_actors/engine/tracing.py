"""Tracing sessions with OpenTelemetry, an optional extra (``pip install 'forge-actors[otel]'``).

::

    from forge_actors.engine import Forge, trace_sessions

    with Forge("forge.db") as forge:
        tracing = trace_sessions(forge)   # the global tracer and meter providers, or give your own
        ...
        tracing.close()

This module imports nothing of OpenTelemetry until ``trace_sessions`` is called: without the extra,
the engine runs as before and loads none of it. The spans and metrics themselves are built in
``engine.otel`` (see docs/tracing.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forge_actors.core.errors import ConfigError

if TYPE_CHECKING:
    from forge_actors.engine.forge import Forge
    from forge_actors.engine.otel import SessionTracing

INSTALL = "pip install 'forge-actors[otel]'"


def trace_sessions(forge: Forge, *, tracer_provider: Any = None, meter_provider: Any = None) -> SessionTracing:
    """Trace every session ``forge`` drives from now on: a span per session, round, contribution
    attempt and tool call, and the GenAI client metrics, built from the events as they commit.
    New sessions join the caller's current span (its trace) when they are created.

    ``tracer_provider`` and ``meter_provider`` default to OpenTelemetry's global ones. Raises
    ConfigError when the ``otel`` extra is not installed. ``close()`` the result to stop."""
    try:
        from forge_actors.engine import otel
    except ImportError as missing:
        raise ConfigError(f"tracing needs OpenTelemetry, which is not installed ({missing}): {INSTALL}") from missing
    return otel.SessionTracing(forge, tracer_provider=tracer_provider, meter_provider=meter_provider)
