"""Advanced tools: fetch an allowlisted URL (NOT read-only, off by default), arithmetic, summarize a file."""

from __future__ import annotations

import ast
import logging
import math
import operator
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from forge_actors.tools.base import Tool, ToolContext, ToolError, ToolOutput, ToolResult, schema
from forge_actors.tools.files import read_text

logger = logging.getLogger(__name__)

# -- http_get ---------------------------------------------------------------------------------

MAX_REDIRECTS = 5
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "application/javascript",
               "application/x-yaml", "application/yaml", "application/toml")


def _check_url(url: str, allowed: frozenset[str]) -> str:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ToolError(f"{url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ToolError(f"only http and https URLs can be fetched, not {parts.scheme or 'a relative URL'!r}")
    if parts.username or parts.password:
        raise ToolError("URLs with credentials are not fetched")
    if host not in {h.lower() for h in allowed}:
        listed = ", ".join(sorted(allowed)) or "none"
        raise ToolError(f"host {host!r} is not allowed; allowed hosts: {listed}")
    return url


def http_get(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    allowed = context.http_allowed_hosts
    url = _check_url(args["url"], allowed)
    cap = context.limits.max_file_bytes
    with httpx.Client(follow_redirects=False, trust_env=False, timeout=max(context.remaining(), 0.01)) as client:
        for _ in range(MAX_REDIRECTS + 1):
            context.check_deadline()
            # Each hop gets what is left: httpx's timeout bounds each connect, write and read, not the whole request.
            with client.stream("GET", url, headers={"accept": "text/*, application/json;q=0.9"},
                               timeout=max(context.remaining(), 0.01)) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise ToolError(f"{url} redirected without a Location header")
                    url = _check_url(urljoin(url, location), allowed)  # a redirect may not leave the allowlist
                    continue
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind and not kind.startswith(_TEXT_TYPES):
                    raise ToolError(f"{url} returned {kind!r}; only text is fetched")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cap:
                    raise ToolError(f"{url} is {declared} bytes, more than the {cap}-byte limit")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > cap:  # checked while streaming: a lying or missing length changes nothing
                        raise ToolError(f"{url} sent more than the {cap}-byte limit; it was not read")
                    context.check_deadline()
                text = body.decode(response.encoding or "utf-8", errors="replace")
                header = f"HTTP {response.status_code} {url}\n"
                if response.status_code >= 400:
                    return ToolResult(output=header + text, error=f"{url} answered HTTP {response.status_code}")
                return header + text
    raise ToolError(f"{args['url']} redirected more than {MAX_REDIRECTS} times")


def _http_get(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    try:
        return http_get(args, context)
    except httpx.TimeoutException:
        raise TimeoutError from None
    except httpx.HTTPError as error:
        raise ToolError(f"the request failed: {type(error).__name__}: {error}") from None


# -- calculate --------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 500
MAX_INTEGER_BITS = 4096  # about 1233 decimal digits: any result is printed and computed fast
MAX_EXPONENT = 10_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "floor": math.floor, "ceil": math.ceil, "abs": abs, "round": round, "min": min, "max": max,
    "hypot": math.hypot, "degrees": math.degrees, "radians": math.radians,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise ToolError(f"the result is too large (more than {MAX_INTEGER_BITS} bits)")
    return value


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int):
        if exponent > MAX_EXPONENT:
            raise ToolError(f"exponent {exponent} is too large (at most {MAX_EXPONENT})")
        if abs(base) > 1 and exponent > 0 and exponent * math.log2(abs(base)) > MAX_INTEGER_BITS:
            raise ToolError(f"the result is too large (more than {MAX_INTEGER_BITS} bits)")
    return base**exponent


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _bounded(_power(left, right))
        return _bounded(_BINARY[type(node.op)](left, right))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords and len(node.args) <= 4):
        return _bounded(_FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args)))
    shown = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
    raise ToolError(f"{shown!r} is not allowed: use numbers, + - * / // % **, parentheses, "
                    f"{', '.join(_CONSTANTS)} and {', '.join(_FUNCTIONS)}()")


def calculate(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    expression = args["expression"]
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolError(f"{expression!r} is not an arithmetic expression") from None
    try:
        value = _evaluate(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large for a floating-point number") from None
    except (ValueError, TypeError) as error:
        raise ToolError(f"cannot compute {expression!r}: {error}") from None
    if isinstance(value, complex):
        raise ToolError("the result is a complex number; only real results are supported")
    return repr(value) if isinstance(value, float) else str(value)


# -- summarize_file ---------------------------------------------------------------------------


def summarize_file(args: dict[str, Any], context: ToolContext) -> ToolOutput:
    if context.summarize is None:
        raise ToolError("summarize_file is unavailable here (no model to summarize with); read_file the file instead")
    file = read_text(context, args["path"])
    note = f" (only its first {context.limits.max_file_bytes} bytes were read)" if file.cut else ""
    try:
        summary = context.summarize(file.text)
    except Exception as error:  # the participant's model failed (a provider error): the model can read instead
        logger.warning("summarize_file: the summarizer failed on %s", file.rel, exc_info=True)
        raise ToolError(f"summarizing {file.rel!r} failed ({type(error).__name__}); read_file the parts you need "
                        "instead") from None
    return ToolResult(output=f"summary of {file.rel}{note}:\n{summary}", truncated=file.cut)


TOOLS = (
    Tool("http_get", "Fetch a text page from an allowlisted host over http(s); redirects only within the allowlist.",
         schema({"url": {"type": "string", "minLength": 1, "maxLength": 2000}}, ("url",)),
         "advanced", False, _http_get),
    Tool("calculate", "Evaluate arithmetic exactly: numbers, + - * / // % **, parentheses, and math functions "
         "such as sqrt, log, sin.", schema({"expression": {"type": "string", "minLength": 1,
                                                           "maxLength": MAX_EXPRESSION_CHARS}}, ("expression",)),
         "advanced", True, calculate),
    Tool("summarize_file", "Summarize a long text file with your own model (one extra model call); read_file is "
         "exact, this is short.", schema({"path": {"type": "string", "minLength": 1, "maxLength": 4096}}, ("path",)),
         "advanced", True, summarize_file),
)
