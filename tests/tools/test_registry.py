"""Choosing tools, validating a model's arguments, budgets, truncation: Toolbox.call never raises."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tool_support import make_toolbox

from forge_actors.tools import (
    CATEGORIES,
    DEFAULT_TOOLS,
    REGISTRY,
    Tool,
    Toolbox,
    ToolContext,
    ToolLimits,
    ToolResult,
    UnknownToolError,
    default_registry,
    select_tools,
)
from forge_actors.tools.base import schema

EXPECTED = {
    "file": {"read_file", "list_files", "file_info", "tree", "read_many"},
    "search": {"grep", "find_symbol", "search_files", "count_matches", "search_history", "lookup_session"},
    "git": {"git_log", "git_diff", "git_show", "git_blame"},
    "edit": {"write_file", "apply_patch"},
    "shell": {"run_command"},
    "advanced": {"http_get", "calculate", "summarize_file"},
}


def test_the_registry_holds_every_tool_in_its_category_with_a_strict_schema() -> None:
    assert CATEGORIES == ("file", "search", "git", "edit", "shell", "advanced")
    for category, names in EXPECTED.items():
        assert {n for n, t in REGISTRY.items() if t.category == category} == names
    for tool in REGISTRY.values():
        assert tool.parameters["type"] == "object" and tool.parameters["additionalProperties"] is False
        assert set(tool.parameters["required"]) <= set(tool.parameters["properties"])
        assert tool.read_only == (tool.category not in ("edit", "shell") and tool.name != "http_get")
    assert set(default_registry()) == set(REGISTRY)
    assert "http_get" not in DEFAULT_TOOLS and "write_file" not in DEFAULT_TOOLS and "read_file" in DEFAULT_TOOLS


def test_select_tools_mixes_names_and_categories_in_a_stable_order_without_duplicates() -> None:
    assert select_tools("grep, file,read_file") == ("grep", "read_file", "list_files", "file_info", "tree", "read_many")
    assert select_tools(["git", "calculate", "git_log"]) == ("git_log", "git_diff", "git_show", "git_blame", "calculate")
    assert select_tools("") == ()


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(UnknownToolError, match="'nope'.*categories: file, search.*tools: read_file") as caught:
        select_tools("file,nope")
    assert isinstance(caught.value, ValueError)


def test_definitions_and_describe(box: Toolbox) -> None:
    assert Toolbox("git,calculate", box.context).names == ("git_log", "git_diff", "git_show", "git_blame", "calculate")
    small = Toolbox(["read_file", "calculate"], box.context)
    assert [d.name for d in small.definitions()] == ["read_file", "calculate"]
    assert small.definitions()[0].parameters["required"] == ["path"]
    assert small.describe().splitlines()[0].startswith("- read_file(path, start_line?, end_line?): Read")


@pytest.mark.parametrize("arguments, message", [
    ({}, "missing required argument(s) 'path'"),
    ({"path": 3}, "'path' must be a string, not int"),
    ({"path": "README.md", "extra": 1}, "unknown argument(s) 'extra'; accepted: path, start_line, end_line"),
    ({"path": "README.md", "start_line": 0}, "'start_line' must be at least 1"),
    ({"path": "README.md", "start_line": True}, "must be integer, not a boolean"),
    ({"path": ""}, "at least 1 character"),
    ("README.md", "arguments must be a JSON object"),
])
def test_arguments_failing_the_schema_are_results(box: Toolbox, arguments, message: str) -> None:
    result = box.call("read_file", arguments)
    assert result.error is not None and message in result.error and result.output == ""


def test_enum_and_array_items_are_checked(root: Path) -> None:
    def echo(args, context):
        return repr(sorted(args.items()))

    tool = Tool("echo", "Echo.", schema({"mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                                         "xs": {"type": "array", "items": {"type": "integer"}, "maxItems": 2}}),
                "advanced", True, echo)
    box = Toolbox(["echo"], ToolContext(), {"echo": tool})
    assert box.call("echo", {}).output == "[('mode', 'a')]"
    assert "one of 'a', 'b'" in box.call("echo", {"mode": "c"}).error
    assert "'xs[1]' must be an integer" in box.call("echo", {"xs": [1, "2"]}).error
    assert "at most 2 items" in box.call("echo", {"xs": [1, 2, 3]}).error
    assert box.call("echo", {"xs": [1.0]}).output == "[('mode', 'a'), ('xs', [1])]"


def test_unknown_and_not_enabled_tools_are_results(root: Path) -> None:
    box = make_toolbox(root, ["read_file"])
    assert "there is no tool 'rm_rf'; available tools: read_file" in box.call("rm_rf", {}).error
    assert "'write_file' is not enabled for you" in box.call("write_file", {"path": "x", "content": ""}).error


def test_budget_counts_calls_and_refuses_once_spent(root: Path) -> None:
    box = make_toolbox(root, ["calculate"], limits=ToolLimits(max_calls=2))
    budget = box.budget()
    assert box.call("calculate", {"expression": "1+1"}, budget).output == "2"
    assert box.call("calculate", {"expression": "1+2"}, budget).output == "3"
    spent = box.call("calculate", {"expression": "1+3"}, budget)
    assert spent.error is not None and "budget is spent (2 calls" in spent.error
    assert box.budget().calls == 0  # a fresh budget per contribution
    assert box.call("calculate", {"expression": "1+3"}).output == "4"  # no budget: no counting
    again = box.budget()
    box.call("nope", {}, again)
    box.call("calculate", {"bad": 1}, again)
    assert again.calls == 2 and "budget is spent" in box.call("calculate", {"expression": "1"}, again).error


def test_budget_of_seconds(root: Path) -> None:
    box = make_toolbox(root, ["calculate"])
    budget = box.budget()
    budget.seconds = budget.max_total_seconds
    assert "60s of tool time" in box.call("calculate", {"expression": "1"}, budget).error


def test_long_output_is_cut_at_a_line_with_a_note(root: Path) -> None:
    (root / "long.txt").write_text("".join(f"line {i}\n" for i in range(2000)))
    box = make_toolbox(root, ["read_file"], limits=ToolLimits(max_output_chars=1000))
    result = box.call("read_file", {"path": "long.txt"})
    assert result.truncated and result.error is None
    body, note = result.output.rsplit("\n", 1)
    assert len(result.output) <= 1000 and body.endswith(tuple(f"line {i}" for i in range(2000)))
    assert note.startswith("[output truncated:")


def test_an_unexpected_exception_is_logged_and_becomes_a_result(caplog: pytest.LogCaptureFixture) -> None:
    def broken(args, context):
        raise KeyError("bug")

    box = Toolbox(["broken"], ToolContext(), {"broken": Tool("broken", "B.", schema({}), "file", True, broken)})
    with caplog.at_level(logging.ERROR, logger="forge_actors.tools.registry"):
        result = box.call("broken", {})
    assert result.error == "tool 'broken' failed with an internal error; try another approach"
    assert "tool broken failed unexpectedly" in caplog.text


def test_os_errors_and_timeouts_are_results() -> None:
    def oserror(args, context):
        raise PermissionError(13, "Permission denied", "/somewhere")

    def slow(args, context):
        while True:
            context.check_deadline()

    tools = {"oserror": Tool("oserror", "O.", schema({}), "file", True, oserror),
             "slow": Tool("slow", "S.", schema({}), "file", True, slow)}
    box = Toolbox(tools, ToolContext(limits=ToolLimits(timeout_seconds=0.01)), tools)
    assert box.call("oserror", {}).error == "the operation failed: Permission denied"
    assert "ran out of time (limit 0.01s per call)" in box.call("slow", {}).error


def test_no_workspace_is_an_error_result() -> None:
    box = Toolbox(["read_file", "tree"], ToolContext())
    assert "no workspace is configured" in box.call("read_file", {"path": "x"}).error


def test_results_are_frozen_structs(box: Toolbox) -> None:
    result = box.call("calculate", {"expression": "2*3"})
    assert isinstance(result, ToolResult) and result.duration_ms >= 0
    with pytest.raises(AttributeError):
        result.output = "x"  # type: ignore[misc]
