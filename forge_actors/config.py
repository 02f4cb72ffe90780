"""Engine configuration: session defaults, per-provider options, participant definitions.

Everything here is a msgspec Struct, checked when it is built: a wrong key, a wrong
type or a value out of range is a ConfigError that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from forge_actors.errors import ConfigError
from forge_actors.events import ParticipantKind, Persona, SessionSettings

SETTING_NAMES: tuple[str, ...] = SessionSettings.__struct_fields__


class ParticipantSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A participant: a provider spec (``mock:alice``, ``anthropic:claude-…``) or a human.

    ``name`` defaults to the spec's model (``alice`` for ``mock:alice``).
    """

    spec: str = ""
    name: str | None = None
    persona: Persona | None = None
    kind: ParticipantKind = "ai"


class ForgeConfig(msgspec.Struct, frozen=True, kw_only=True):
    #: Defaults of every new session; ``create_session(**overrides)`` changes them per session.
    settings: SessionSettings = SessionSettings()
    #: Options given to every provider of that kind (``{"ollama": {"base_url": ...}}``); a spec's own options win.
    provider_options: dict[str, dict[str, Any]] = {}
    #: Who deliberates when ``create_session`` is given no participants.
    participants: tuple[ParticipantSpec, ...] = ()


def _check_ranges(settings: SessionSettings) -> None:
    checks: list[tuple[bool, str]] = [
        (0.0 <= settings.convergence_threshold <= 1.0, "convergence_threshold must be between 0 and 1"),
        (settings.max_rounds >= 1, "max_rounds must be at least 1"),
        (settings.round_timeout_seconds > 0, "round_timeout_seconds must be more than 0"),
        (settings.max_retries >= 0, "max_retries must be 0 or more"),
        (settings.max_tokens >= 1, "max_tokens must be at least 1"),
        (0.0 <= settings.temperature <= 2.0, "temperature must be between 0 and 2"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def session_settings(base: SessionSettings, overrides: Mapping[str, Any]) -> SessionSettings:
    """``base`` with ``overrides`` applied (None values ignored), type- and range-checked."""
    unknown = sorted(set(overrides) - set(SETTING_NAMES))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(SETTING_NAMES)}")
    merged = {**msgspec.structs.asdict(base), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        settings = msgspec.convert(merged, SessionSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None
    _check_ranges(settings)
    return settings


def participant_spec(value: str | ParticipantSpec | Mapping[str, Any]) -> ParticipantSpec:
    """A spec string, a ParticipantSpec, or a mapping with its fields."""
    if isinstance(value, ParticipantSpec):
        return value
    if isinstance(value, str):
        return ParticipantSpec(spec=value)
    try:
        return msgspec.convert(dict(value), ParticipantSpec)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid participant {value!r}: {exc}") from None
