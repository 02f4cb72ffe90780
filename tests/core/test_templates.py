"""Templates fill in one pass: user text can neither break nor inject."""

from __future__ import annotations

import pytest

from forge_actors.core.templates import TemplateError, fill, load_template, render


def test_user_text_with_template_syntax_comes_out_verbatim():
    hostile = "{{persona}} {name} ${x} {{ name }} }}{{"
    out = fill("Goal: {{goal}} / {{persona}}", goal=hostile, persona="P")
    assert out == f"Goal: {hostile} / P"


def test_placeholder_named_like_a_parameter():
    assert "You are Ada" in render("system", name="Ada", persona="")


def test_missing_or_extra_values_are_errors():
    with pytest.raises(TemplateError, match="missing"):
        fill("{{a}} {{b}}", a="1")
    with pytest.raises(TemplateError, match="unexpected"):
        fill("{{a}}", a="1", b="2")
    with pytest.raises(TemplateError, match="no prompt template"):
        load_template("does-not-exist")
