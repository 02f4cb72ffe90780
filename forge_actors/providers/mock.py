"""The offline, deterministic participant: the default when no API key is set.

For a given (name, seed, request) it always gives the same answer. It reads the goal
and the round from the prompt's marker lines (``forge_actors.core.reply_format``) and answers
drafts, critiques (with scores), syntheses and votes in exactly the formats the round
parsers read, streamed word by word with an optional delay.

Asked for a structured reply (``response_schema``), it answers critiques and votes in
JSON (``reply_format.render_critique_json`` / ``render_vote_json``) saying what its text reply
would say, a vote adding a seeded confidence; other rounds ignore the schema.

Offered tools in a draft round (natively in ``request.tools``, or as text: a prompt section
opened by ``TOOLS AVAILABLE:`` listing ``- name: ...`` lines, see ``forge_actors.providers.toolcalls``),
it first calls ``read_file`` on the first path-like word of the goal (else ``list_files``):
natively as one ``tool_call`` chunk after a short sentence, finishing with ``"tool_calls"``;
as text, a reply that is one ``TOOL_CALL:`` line. Once the conversation holds results, it
drafts as usual and adds an "Evidence" paragraph quoting them (or the tool's error).

Test options: ``fail_on`` (comma-separated round kinds, or ``all``) fails those calls
with a server error; ``garble`` answers those rounds without the expected format.

``accuracy`` (0-1) makes it answer the goal as a question (an evaluation's task): its draft is a
line of working and ``Answer: ...``, right with that probability, and as a synthesizer it takes the
answer most proposals give (``forge_actors.providers.mock_answers`` says how it knows answers it is
never told). A judge's prompt (from ``forge eval``'s judge scorer) gets a JSON verdict in any mode.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections.abc import Iterator

import msgspec

from forge_actors.core import reply_format
from forge_actors.providers import mock_answers, toolcalls
from forge_actors.providers.base import (
    TOOL_CALLS_FINISH,
    LlmRequest,
    LlmResponse,
    StreamChunk,
    ToolCall,
    Usage,
    collect,
)
from forge_actors.providers.errors import CancelledError, ProviderConfigError, ServerError
from forge_actors.providers.structured import StructuredOutput

_WORDS = re.compile(r"\S+\s*")
#: JSON streamed in small pieces, each ending after a ``,`` or ``:`` (inside strings too, as a model's would)
_JSON_PIECES = re.compile(r"[^,:]*[,:]|[^,:]+")
#: The round a schema name asks about, when the prompt has no ``Round:`` marker.
_ROUND_OF_SCHEMA = {reply_format.CRITIQUE_SCHEMA_NAME: "critique", reply_format.VOTE_SCHEMA_NAME: "convergence"}
_JSON_ROUNDS = frozenset(_ROUND_OF_SCHEMA.values())
_TOPIC_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#-]{2,}")
_STOP_WORDS = frozenset(
    "the and for with that this from into your our their about design build make create plan write "
    "what how why should would could app".split()
)

# The parts of the text tool protocol the mock reads back (``providers.toolcalls`` writes them).
_OFFERED_TOOL = re.compile(r"^- ([A-Za-z0-9_-]{1,64})(?::|$)", re.MULTILINE)
_TEXT_RESULT = re.compile(
    r"^TOOL_RESULT id=(?P<id>\S+) tool=(?P<tool>\S+) status=(?P<status>ok|error)\n[^\n]*\n"
    r"(?P<fence>~{3,})\n(?P<content>.*?)\n?(?P=fence)$",
    re.MULTILINE | re.DOTALL,
)
_PATH_EXTENSIONS = frozenset(
    "md rst txt py pyi toml json yaml yml cfg ini lock js ts tsx jsx rs go java kt c h cc cpp hpp cs rb php "
    "sh sql html css csv xml proto".split()
)
_GOAL_TOKEN = re.compile(r"[^\s,;()\[\]{}<>\"'`*]+")

COMPONENTS = [
    "a versioned HTTP API layer", "a persistence layer with migrations", "an authentication service",
    "a background job queue", "an event log for auditing", "a caching tier", "a validation module",
    "an observability stack (logs, metrics, traces)", "a configuration service", "a rate limiter",
    "a notification dispatcher", "an admin console", "a search index", "a feature-flag system",
]
RISKS = [
    ("scope creep", "fix a minimal first milestone and a written out-of-scope list"),
    ("data loss on failure", "write-ahead logging and tested restores"),
    ("unclear ownership", "one accountable owner per component"),
    ("performance regressions", "benchmarks in CI with budgets"),
    ("security gaps", "threat modelling and least-privilege defaults"),
    ("vendor lock-in", "thin adapters behind our own interfaces"),
    ("inconsistent behaviour across clients", "a contract test suite shared by every client"),
]
STRENGTHS = [
    "clear separation of concerns", "concrete first milestone", "sensible failure handling",
    "good attention to observability", "realistic scope", "explicit risk list", "simple data model",
]
WEAKNESSES = [
    "thin on testing strategy", "no migration path for existing data", "vague about authentication",
    "does not quantify performance targets", "ignores operational cost", "error handling is underspecified",
]
SUGGESTIONS = [
    "add contract tests between components", "define service-level objectives", "spell out the rollout plan",
    "document the data retention policy", "add a rollback procedure", "name an owner for each risk",
]


class MockProvider(StructuredOutput):
    """``mock:NAME`` — see the module docstring."""

    supports_json = True
    supports_tools = True

    def __init__(
        self,
        name: str = "mock",
        *,
        seed: int = 0,
        word_delay: float = 0.0,
        fail_on: str = "",
        garble: str = "",
        model: str | None = None,
        accuracy: float | None = None,
    ) -> None:
        if word_delay < 0:
            raise ProviderConfigError(f"word_delay must be >= 0 seconds, not {word_delay}")
        if accuracy is not None and not 0 <= accuracy <= 1:
            raise ProviderConfigError(f"accuracy is a probability from 0 to 1, not {accuracy}")
        self.name = "mock"
        self.persona_name = name
        self.model = model or name
        self.seed = int(seed)
        self.word_delay = float(word_delay)
        self.fail_on = _kinds(fail_on)
        self.garble = _kinds(garble)
        self.accuracy = accuracy
        self._aborted = threading.Event()

    def __repr__(self) -> str:
        return f"MockProvider(name={self.persona_name!r}, seed={self.seed}, word_delay={self.word_delay})"

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self._aborted.set()

    def complete(self, request: LlmRequest) -> LlmResponse:
        self._aborted.clear()
        return collect(self._chunks(request, delay=0.0), self.model)

    def stream(self, request: LlmRequest) -> Iterator[StreamChunk]:
        self._aborted.clear()  # now, not at the first next(): an abort after this call must stick
        return self._chunks(request, delay=self.word_delay)

    # -- the answer -------------------------------------------------------------------------

    def answer(self, request: LlmRequest) -> str:
        """The whole text this mock gives for ``request`` (deterministic)."""
        prompt = _prompt_of(request)
        return self._answer(request, prompt, _round_of(request, prompt))

    def _answer(self, request: LlmRequest, prompt: str, kind: str) -> str:
        rng = random.Random(self._seed_for(request))
        if kind in self.garble:
            return f"I have thoughts on this but will not use any particular format. {self._topic(prompt)} is hard."
        question = self._question_answer(rng, prompt, kind)
        if question is not None:
            return question
        as_json = request.response_schema is not None
        if kind == "critique":
            critiques = self._critiques(rng, prompt)
            if as_json:
                return reply_format.render_critique_json(critiques)
            return "\n".join(reply_format.render_critique(label, critique) for label, critique in critiques.items())
        if kind == "convergence":
            vote = self._vote(rng, prompt)
            if as_json:  # drawn after the vote, so that the vote is the one the text reply gives
                confidence = round(rng.uniform(0.5, 0.95), 2)
                return reply_format.render_vote_json(msgspec.structs.replace(vote, confidence=confidence))
            return reply_format.render_vote(vote)
        if kind == "synthesis":
            return self._synthesis(rng, prompt)
        step = _tool_step(request, prompt)
        if isinstance(step, ToolCall):
            return _intro(step)
        if isinstance(step, str):
            return step
        draft = self._draft(rng, prompt)
        results = _tool_results(request)
        return draft + "\n" + _evidence(results) if results else draft

    def _question_answer(self, rng: random.Random, prompt: str, kind: str) -> str | None:
        """A judge's verdict, or (with ``accuracy``) a draft or synthesis answering the goal; else None."""
        goal = reply_format.find_goal(prompt)
        if kind == "draft" and mock_answers.is_judge_prompt(goal):
            return mock_answers.judge(prompt)
        if self.accuracy is None:
            return None
        if kind == "draft":
            return mock_answers.answer_question(goal, rng, self.accuracy)
        if kind == "synthesis":
            return mock_answers.synthesize_answers(goal, prompt, rng, self.accuracy)
        return None

    def _chunks(self, request: LlmRequest, delay: float) -> Iterator[StreamChunk]:
        prompt = _prompt_of(request)
        kind = _round_of(request, prompt)
        if kind in self.fail_on or "all" in self.fail_on:
            raise ServerError(f"mock {self.persona_name} was told to fail in the {kind} round", provider="mock")
        if kind == "draft" and kind not in self.garble and self.accuracy is None:
            step = _tool_step(request, prompt)
            if isinstance(step, ToolCall):  # native: a sentence, then the call as one chunk
                yield from self._words(_WORDS.findall(_intro(step)), delay)
                yield StreamChunk(tool_call=step)
                yield StreamChunk("", True, TOOL_CALLS_FINISH, Usage(max(1, len(prompt) // 4), 1))
                return
        answer = self._answer(request, prompt, kind)
        as_json = request.response_schema is not None and kind in _JSON_ROUNDS and kind not in self.garble
        words = _JSON_PIECES.findall(answer) if as_json else _WORDS.findall(answer)
        yield from self._words(words, delay)
        usage = Usage(max(1, len(prompt) // 4), len(words))
        yield StreamChunk("", True, "stop", usage)

    def _words(self, words: list[str], delay: float) -> Iterator[StreamChunk]:
        for word in words:
            if delay:
                self._aborted.wait(delay)  # a sleep that abort() cuts short
            if self._aborted.is_set():
                raise CancelledError(f"mock {self.persona_name} was aborted", provider="mock")
            yield StreamChunk(word)

    def _seed_for(self, request: LlmRequest) -> int:
        digest = hashlib.sha256()
        digest.update(f"{self.persona_name}\0{self.seed}\0{request.model}\0".encode())
        for message in request.messages:
            digest.update(f"{message.role}\0{message.content}\0".encode())
        return int.from_bytes(digest.digest()[:8], "big")

    def _topic(self, prompt: str) -> str:
        return reply_format.find_goal(prompt) or "the goal"

    def _keywords(self, prompt: str) -> list[str]:
        goal = reply_format.find_goal(prompt)
        words = [w for w in _TOPIC_WORD.findall(goal) if w.lower() not in _STOP_WORDS]
        return words or ["system"]

    def _draft(self, rng: random.Random, prompt: str) -> str:
        topic, keywords = self._topic(prompt), self._keywords(prompt)
        components = rng.sample(COMPONENTS, 4)
        risks = rng.sample(RISKS, 3)
        focus = rng.choice(keywords)
        lines = [f"## Proposal from {self.persona_name}: {topic}", "", "### Components"]
        lines += [f"- {_upper_first(c)} for the {rng.choice(keywords)} domain" for c in components]
        lines += ["", "### Implementation notes",
                  f"1. Start with the {focus} core and {components[0]}; ship it behind a flag.",
                  f"2. Add {components[1]} once the {focus} flows are covered by tests.",
                  f"3. Measure before optimising: budget {rng.randint(50, 400)} ms p99 for the main path.",
                  "", "### Risks and mitigations"]
        lines += [f"- Risk: {risk}. Mitigation: {mitigation}." for risk, mitigation in risks]
        return "\n".join(lines) + "\n"

    def _critiques(self, rng: random.Random, prompt: str) -> dict[str, reply_format.ParsedCritique]:
        return {
            label: reply_format.ParsedCritique(
                rng.randint(55, 95),
                tuple(rng.sample(STRENGTHS, 2)),
                tuple(rng.sample(WEAKNESSES, 2)),
                tuple(rng.sample(SUGGESTIONS, 2)),
            )
            for label in reply_format.find_proposal_labels(prompt) or ["A"]
        }

    def _synthesis(self, rng: random.Random, prompt: str) -> str:
        topic, keywords = self._topic(prompt), self._keywords(prompt)
        components = rng.sample(COMPONENTS, 5)
        lines = [f"## Synthesis: {topic}", "",
                 "This plan merges the strongest proposals and resolves their conflicts.", "", "### Plan"]
        lines += [f"{i}. {_upper_first(c)} for {rng.choice(keywords)}." for i, c in enumerate(components, 1)]
        lines += ["", "### Conflicts resolved",
                  f"- Scope: start from the smallest {rng.choice(keywords)} milestone that is useful.",
                  "- Testing: contract tests between every pair of components.",
                  "", "### Addressed concerns", f"- {_upper_first(rng.choice(SUGGESTIONS))}."]
        return "\n".join(lines) + "\n"

    def _vote(self, rng: random.Random, prompt: str) -> reply_format.ParsedVote:
        iteration = reply_format.find_iteration(prompt)
        agree = rng.random() < min(0.95, 0.55 + 0.2 * iteration)
        return reply_format.ParsedVote(
            "AGREE" if agree else "DISAGREE",
            (f"the plan covers {rng.choice(self._keywords(prompt))} end to end",
             rng.choice(STRENGTHS)),
            () if agree else (rng.choice(WEAKNESSES), rng.choice(SUGGESTIONS)),
        )


def _prompt_of(request: LlmRequest) -> str:
    return "\n".join(m.content for m in request.messages)


def _round_of(request: LlmRequest, prompt: str) -> str:
    """The round the prompt's marker names; else the one the schema asks about; else a draft."""
    kind = reply_format.find_round_kind(prompt)
    if kind is None and request.response_schema is not None:
        kind = _ROUND_OF_SCHEMA.get(request.response_schema.name)
    return kind or "draft"


# -- tools ---------------------------------------------------------------------------------


def _tool_step(request: LlmRequest, prompt: str) -> ToolCall | str | None:
    """The call to make now (a ToolCall natively, a ``TOOL_CALL:`` line as text), or None: no tool
    is offered, none fits, or results are already in (then the draft uses them)."""
    if _tool_results(request):
        return None
    native = bool(request.tools)
    offered = [tool.name for tool in request.tools] if native else _text_offered(request)
    path = _path_in(reply_format.find_goal(prompt))
    if path and "read_file" in offered:
        call = ToolCall("call_1", "read_file", {"path": path})
    elif "list_files" in offered:
        call = ToolCall("call_1", "list_files", {})
    else:
        return None
    return call if native else toolcalls.render_tool_call(call) + "\n"


def _text_offered(request: LlmRequest) -> list[str]:
    """The tool names of a prompt's text tool section (its ``- name:`` lines up to a blank line)."""
    for message in request.messages:
        marker = message.content.find(toolcalls.TOOLS_MARKER)
        if marker != -1:
            section = message.content[marker + len(toolcalls.TOOLS_MARKER):].split("\n\n", 1)[0]
            return _OFFERED_TOOL.findall(section)
    return []


def _path_in(goal: str) -> str:
    """The first word of the goal that looks like a path: with a ``/`` (not a URL) or a known extension."""
    for token in _GOAL_TOKEN.findall(goal):
        token = token.rstrip(".!?:")
        if not token or "://" in token:
            continue
        stem, dot, extension = token.rpartition(".")
        if ("/" in token and token.strip("/")) or (dot and stem and extension.lower() in _PATH_EXTENSIONS):
            return token
    return ""


class _Result(msgspec.Struct, frozen=True):
    tool: str
    content: str
    is_error: bool


def _tool_results(request: LlmRequest) -> list[_Result]:
    """The tool results the conversation holds: ``tool`` turns, or TOOL_RESULT blocks in user turns."""
    native = [_Result(m.name, m.content, m.is_error) for m in request.messages if m.role == "tool"]
    if native:
        return native
    return [_Result(match["tool"], match["content"], match["status"] == "error")
            for message in request.messages if message.role == "user"
            for match in _TEXT_RESULT.finditer(message.content)]


def _intro(call: ToolCall) -> str:
    path = call.arguments.get("path")
    return f"Let me read {path}." if path else "Let me list the files."


def _evidence(results: list[_Result]) -> str:
    lines = ["### Evidence"]
    for result in results[:3]:
        name = result.tool or "the tool"
        quoted = [line.strip() for line in result.content.splitlines() if line.strip()][:2]
        excerpt = " / ".join(line[:200] for line in quoted) or "(nothing)"
        if result.is_error:
            lines.append(f"- {name} failed: \"{excerpt}\"")
        else:
            lines.append(f"- {name} shows: \"{excerpt}\"")
    return "\n".join(lines) + "\n"


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _kinds(value: str) -> frozenset[str]:
    return frozenset(k.strip().lower() for k in value.split(",") if k.strip())
