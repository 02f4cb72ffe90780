"""The actors' messages are typed: every field names what it holds, and every message is in a union."""

from __future__ import annotations

import inspect
import typing

import msgspec

from forge_actors.actors import messages
from forge_actors.core import decider


def _message_classes() -> list[type[msgspec.Struct]]:
    """The messages' own classes, and the decider's inputs they re-export (timers, plain commands)."""
    return [cls for _, cls in inspect.getmembers(messages, inspect.isclass)
            if issubclass(cls, msgspec.Struct) and cls.__module__ in (messages.__name__, decider.__name__)]


def _mentions_any(hint: object) -> bool:
    return hint is typing.Any or any(_mentions_any(arg) for arg in typing.get_args(hint))


def test_no_message_field_is_any_and_every_hint_resolves():
    classes = _message_classes()
    assert len(classes) >= 10
    for cls in classes:
        hints = typing.get_type_hints(cls)  # fails if a name in an annotation cannot be imported
        assert cls.__struct_config__.frozen, cls  # pykka shares messages between threads
        assert not [name for name, hint in hints.items() if _mentions_any(hint)], cls


def test_every_message_is_in_a_union():
    unions = {*typing.get_args(messages.SessionMessage), *typing.get_args(messages.ParticipantMessage)}
    assert unions == set(_message_classes())
