"""Every domain event of a deliberation: past-tense facts, one tagged union.

Each event is a frozen msgspec Struct tagged with its class name (the ``type`` field
in its JSON, and the ``type`` column of the log). A stored event's meaning never
changes: to change a fact, add a new event type.

Participants are recorded by provider spec and model only. A spec string is
sanitised (``provider_spec.redact``) before it is recorded, so no key reaches the log.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, get_args

import msgspec

RoundKind = Literal["draft", "critique", "synthesis", "convergence"]
ROUND_KINDS: tuple[RoundKind, ...] = ("draft", "critique", "synthesis", "convergence")
ParticipantKind = Literal["ai", "human"]
VoteChoice = Literal["AGREE", "DISAGREE", "ABSTAIN"]
RoundStatus = Literal["completed", "degraded", "failed", "cancelled"]
#: How a session ended. ``no_quorum``: a convergence round counted fewer votes than the quorum
#: (``min_votes``), so no later iteration could be decided either; the session stops instead of
#: paying for more rounds nobody can read.
#: ``max_rounds``: the iteration limit (``max_iterations``) was reached without convergence (the
#: outcome keeps the name it was first recorded with).
#: ``budget_spent``: the session's events take as many bytes of the log as ``max_session_bytes``
#: allows, so it stops before the next round instead of growing the log further.
#: ``budget_exhausted``: the session's spending budget (``max_cost_usd``, ``max_session_tokens``) would be
#: passed by the next round, or was passed by a running round, which was cancelled (``core.budget``).
Outcome = Literal["converged", "max_rounds", "no_quorum", "cancelled", "failed", "budget_spent", "budget_exhausted"]
PromptPurpose = Literal["initial", "retry", "reask", "rerun"]
#: How a participant is asked for critiques and votes: ``json`` through its provider's
#: structured-output mechanism, ``text`` in the marker formats (``Score:``, ``VOTE:``), ``auto``
#: JSON when the provider supports it. The engine records the resolved choice (json or text).
RepliesMode = Literal["json", "text", "auto"]
#: How a participant calls tools: ``native`` through its provider's tool-calling API, ``text`` by
#: writing ``TOOL_CALL:`` lines, ``off`` not at all (``auto``, as configured, records native when
#: the provider supports tool calling, else text).
ToolMode = Literal["native", "text", "off", "auto"]
#: What ends a session ``converged``: ``votes`` (a quorum's share of AGREE reaches
#: ``convergence_threshold``), ``similarity`` (a synthesis at least ``similarity_threshold`` similar
#: to the previous iteration's: no convergence round is run) or ``both`` (the votes, and the
#: similarity of the synthesis voted on to the one before).
ConvergenceRule = Literal["votes", "similarity", "both"]
#: How a ``SimilarityMeasured`` was measured: the cosine of a provider's embeddings, or the offline
#: lexical measure (``core.similarity``).
SimilarityMethod = Literal["embedding", "lexical"]


class Persona(msgspec.Struct, frozen=True, omit_defaults=True):
    """How a participant presents itself; folded into its system prompt."""

    name: str = ""
    traits: tuple[str, ...] = ()
    tone: str = ""
    approach: str = ""
    specialties: tuple[str, ...] = ()


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """US dollars per million tokens, as a price table lists them. Used for estimates only; a session
    with a cost budget records the prices it is judged by (``SessionCreated.prices``)."""

    input_per_mtok: float
    output_per_mtok: float


class ParticipantInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A member of the session. ``provider`` is a spec string with no secrets in it.

    ``replies`` is how its critiques and votes are asked for, as resolved when it joined
    (``json`` or ``text``; sessions recorded before structured replies existed read as text).
    """

    name: str
    kind: ParticipantKind = "ai"
    provider: str = ""
    model: str = ""
    persona: Persona | None = None
    replies: RepliesMode = "text"
    #: The tools it may call (names, resolved from categories when it joined) and how.
    tools: tuple[str, ...] = ()
    tool_mode: ToolMode = "off"
    #: False once its provider was found not to stream (``ProviderLimitFound``): asked without streaming.
    streams: bool = True


class SessionSettings(msgspec.Struct, frozen=True):
    """The knobs of one deliberation, fixed when it is created.

    Words: a *round* is one step (draft, critique, synthesis or convergence); an *iteration* is one
    Synthesis -> Convergence pass of the bounded loop.
    """

    #: The most iterations (Synthesis -> Convergence passes) the session may run; written
    #: ``max_iterations`` in forge.toml, the API and the CLI, recorded under its first name.
    max_rounds: int = 10
    convergence_threshold: float = 0.8
    round_timeout_seconds: float = 300.0
    synthesizer: str | None = None
    seed: int = 0
    temperature: float = 0.7
    max_tokens: int = 2048
    max_retries: int = 2
    #: Counted votes (AGREE or DISAGREE) a convergence round needs to decide anything;
    #: None: more than half of its voters.
    min_votes: int | None = None
    #: The folder tools read (None: no workspace; file, search and git tools then answer with an error).
    workspace: str | None = None
    #: Per contribution: at most this many tool calls, and this many seconds spent in tools.
    max_tool_calls: int = 8
    max_tool_seconds: float = 60.0
    #: Seconds a draft or convergence round waits, after its AI participants are done, for the
    #: session's human participants to draft or vote (0: it does not wait; a human's input then
    #: counts only if it comes while the round runs).
    human_wait_seconds: float = 0.0
    #: The longest reply a contribution may stream, in characters, all its turns together; past it
    #: the stream is stopped and the reply recorded as cut (finish_reason ``max_reply_chars``).
    #: Recorded for every session created since it exists (``rounds.with_log_limits``: by default
    #: 16 characters per ``max_tokens`` token, so a provider that ignores max_tokens still cannot
    #: stream without end); None, in a session recorded before, is no limit.
    max_reply_chars: int | None = None
    #: The most bytes a session's events may take in the log (their JSON, as stored: prompts, every
    #: streamed delta, tool results...). Once a round ends past it, the session ends ``budget_spent``.
    #: Recorded like max_reply_chars (default 100 MB); None, in a session recorded before, is no limit.
    max_session_bytes: int | None = None
    #: The stop rule (``ConvergenceRule``); sessions recorded before it existed read as ``votes``.
    convergence: ConvergenceRule = "votes"
    #: With ``similarity`` or ``both``: how similar (0-1) a synthesis must be to the previous one.
    similarity_threshold: float = 0.9
    #: The session's spending budget: the most US dollars it may spend, estimated at the prices recorded
    #: when it was created (``SessionCreated.prices``), and the most tokens (input and output) it may
    #: use. None: no budget. Once the next round's estimate would pass one, or a running round passes
    #: it, the session ends ``budget_exhausted`` (``core.budget``).
    max_cost_usd: float | None = None
    max_session_tokens: int | None = None


class TokenUsage(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class PromptMessage(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class Event(msgspec.Struct, frozen=True, tag=True, tag_field="type"):
    """Base of every domain event; the tag is the class name."""


class TraceContext(msgspec.Struct, frozen=True):
    """Where a session's spans belong in a distributed trace (W3C Trace Context ids, lowercase hex):
    the trace, and the span its session span is a child of (the caller's when it was created, e.g. the
    web request that started it). Recorded so that whichever process runs the session, now or after a
    resume, continues the same trace."""

    trace_id: str
    parent_span_id: str
    sampled: bool = True


class SessionCreated(Event, frozen=True):
    session_id: str
    title: str
    goal: str
    settings: SessionSettings
    participants: tuple[ParticipantInfo, ...]
    constraints: tuple[str, ...] = ()
    #: Recorded when the engine that created it traces sessions (``engine.tracing``); None before
    #: that existed, or when nobody traces.
    trace: TraceContext | None = None
    #: Each AI participant's price when the session was created, for a session with a cost budget
    #: (``max_cost_usd``): what its spending is judged by, whatever the engine's prices say later.
    prices: dict[str, Price] = {}


class RoundStarted(Event, frozen=True):
    """A round begins. ``iteration`` counts Synthesis->Convergence passes (1 for the first)."""

    round: int
    kind: RoundKind
    iteration: int
    participants: tuple[str, ...]


class PromptSent(Event, frozen=True):
    """The exact request sent for one attempt of one contribution.

    ``proposal_labels`` maps each anonymous label shown to a critic to the participant
    it stands for, so an audit can undo the anonymisation.
    """

    contribution_id: str
    round: int
    participant: str
    attempt: int
    model: str
    messages: tuple[PromptMessage, ...]
    temperature: float
    max_tokens: int
    purpose: PromptPurpose = "initial"
    proposal_labels: dict[str, str] = {}
    #: The structured reply asked for (``critique`` or ``vote``), None for free text.
    response_schema: str | None = None
    #: The tools offered through the provider's tool-calling API (text-mode tools are in the messages).
    tools: tuple[str, ...] = ()


class ContentDelta(Event, frozen=True):
    """One streamed piece of a contribution's text."""

    contribution_id: str
    participant: str
    round: int
    attempt: int
    text: str


class ContributionCompleted(Event, frozen=True):
    contribution_id: str
    participant: str
    round: int
    attempt: int
    content: str
    finish_reason: str | None
    usage: TokenUsage
    latency_ms: float
    served_by: str = ""
    #: Why the answer came from a non-streaming call (the stream failed before its first
    #: delta); empty when it streamed. The whole answer is then its one delta.
    fallback: str = ""


class ContributionFailed(Event, frozen=True):
    contribution_id: str
    participant: str
    round: int
    attempt: int
    error_kind: str
    message: str
    retryable: bool
    will_retry: bool = False


class ContributionAbandoned(Event, frozen=True):
    """A contribution that was in flight when the process stopped; resume runs it again."""

    contribution_id: str
    participant: str
    round: int
    attempt: int
    reason: str


class ToolCalled(Event, frozen=True):
    """A participant asked for a tool while contributing. ``turn`` counts the model's replies
    within the contribution (1: its first); ``call_id`` is unique within the contribution.
    ``error`` says why the call was not run (its arguments were not a JSON object)."""

    contribution_id: str
    participant: str
    round: int
    attempt: int
    turn: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    error: str | None = None


class ToolResult(Event, frozen=True):
    """What the tool answered (or why it could not), as the model was shown it."""

    contribution_id: str
    participant: str
    round: int
    attempt: int
    call_id: str
    tool: str
    output: str
    truncated: bool = False
    error: str | None = None
    duration_ms: float = 0.0


class CritiqueRecorded(Event, frozen=True):
    """One critic's parsed review of one proposal. ``score`` is None when it could not be read."""

    round: int
    critic: str
    label: str
    proposal_author: str
    score: int | None
    strengths: tuple[str, ...] = ()
    weaknesses: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()


class VoteRecorded(Event, frozen=True):
    round: int
    voter: str
    vote: VoteChoice
    reasons: tuple[str, ...] = ()
    concerns: tuple[str, ...] = ()
    by_human: bool = False
    #: 0-1 when the voter gave one (structured replies ask for it).
    confidence: float | None = None


class HumanDraftAdded(Event, frozen=True):
    round: int
    author: str
    content: str


class ParticipantAdded(Event, frozen=True):
    """A participant (typically a human) joined after the session was created."""

    participant: ParticipantInfo


class ParticipantRemoved(Event, frozen=True):
    """``name`` takes no part from here on (a fork dropped it): no round asks it, no round waits for it,
    and a human of that name gives no more drafts or votes. What it contributed before stays."""

    name: str
    reason: str = ""


class RoundCompleted(Event, frozen=True):
    """A round ended. For convergence rounds ``score`` is the share of AGREE among votes counted."""

    round: int
    kind: RoundKind
    status: RoundStatus
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    score: float | None = None
    reason: str = ""


class ProviderSwitched(Event, frozen=True):
    participant: str
    provider: str
    model: str
    previous_provider: str
    previous_model: str
    #: How its critiques and votes are asked for from now on; None: as before (older logs).
    replies: RepliesMode | None = None
    #: How it calls its tools from now on (native or text); None: as before.
    tool_mode: ToolMode | None = None
    #: The new model's price, recorded in a session with a cost budget; None: none recorded.
    price: Price | None = None


#: What a server was found unable to do (``providers.limits``): stream, give structured replies,
#: take tools natively.
ProviderLimit = Literal["streaming", "structured_replies", "native_tools"]


class ProviderLimitFound(Event, frozen=True):
    """A participant's provider showed, answering ``contribution_id``, that it cannot do ``limit``
    (``evidence``: what the server did, e.g. "answered application/json to a streaming request").
    From then on the participant is asked around it — without streaming, for text replies, with
    tools as text — until its provider is switched. Learned once per provider in a session."""

    contribution_id: str
    participant: str
    round: int
    limit: ProviderLimit
    evidence: str
    #: The kind of the failure that showed it (``not_streamed``, ``malformed_stream``, ``bad_request``...).
    error_kind: str = ""
    #: That failure held the answer itself (a whole body sent to a streaming request): no second call was made.
    answered_from_body: bool = False


class SimilarityMeasured(Event, frozen=True):
    """How similar two texts of the session are (0-1), measured once and recorded, so that resume and
    re-run decide on this figure without measuring again. ``round`` is a synthesis round and
    ``compared_with_round`` the previous iteration's; or, for drafts, both are the draft round and
    ``pair`` names the two authors. ``model``: the embedding model (empty for ``lexical``);
    ``fallback``: why an embedding was wanted but the lexical measure was used."""

    round: int
    compared_with_round: int
    value: float
    method: SimilarityMethod
    model: str = ""
    pair: tuple[str, ...] = ()
    fallback: str = ""


class HumansWaitEnded(Event, frozen=True):
    """A draft or convergence round waited its ``human_wait_seconds`` for the session's humans: it
    completes now with whatever drafts or votes came (a resumed round does not wait again)."""

    round: int


class RerunPlanned(Event, frozen=True):
    """Among a re-run's opening events: it follows the original session ``source_session_id``'s
    ``rounds``, in order, and when they are done it is cancelled with ``cancel_reason`` if the original
    was, else it waits for commands where the original stopped. Recorded, so that a re-run resumed after
    a crash follows the same plan (and waits for no human, as the live re-run did not)."""

    source_session_id: str
    rounds: tuple[RoundKind, ...]
    cancel_reason: str | None = None


class SessionInterrupted(Event, frozen=True):
    """The process running the session was asked to stop (e.g. Ctrl-C). Not an ending:
    what was in flight is recorded as abandoned, and ``resume`` continues the session."""

    reason: str
    abandoned: tuple[str, ...] = ()


class SessionResumed(Event, frozen=True):
    abandoned: tuple[str, ...] = ()


class SessionForked(Event, frozen=True):
    """This session is a fork. The events before this one are a copy of the first ``parent_version``
    events of session ``parent_id`` — to the end of its round ``round``, at the parent's log position
    ``parent_position`` — with this session's id in the copy's SessionCreated (the one event that
    carries a session id). From here on the session goes its own way with ``settings`` and
    ``constraints`` (the parent's, or what the fork changed); the participants the fork added, dropped
    or moved follow as their own facts (ParticipantAdded, ParticipantRemoved, ProviderSwitched)."""

    parent_id: str
    round: int
    parent_version: int
    parent_position: int
    settings: SessionSettings
    constraints: tuple[str, ...] = ()
    #: With a cost budget (``max_cost_usd``): each AI participant's price at the fork, on the provider
    #: it is asked on from here, what its new rounds are judged by (the copied ones keep theirs).
    prices: dict[str, Price] = {}


class SessionEnded(Event, frozen=True):
    outcome: Outcome
    reason: str
    final_score: float | None = None


AnyEvent: TypeAlias = (
    SessionCreated
    | RoundStarted
    | PromptSent
    | ContentDelta
    | ToolCalled
    | ToolResult
    | ContributionCompleted
    | ContributionFailed
    | ContributionAbandoned
    | CritiqueRecorded
    | VoteRecorded
    | HumanDraftAdded
    | ParticipantAdded
    | ParticipantRemoved
    | RoundCompleted
    | ProviderSwitched
    | ProviderLimitFound
    | HumansWaitEnded
    | SimilarityMeasured
    | RerunPlanned
    | SessionInterrupted
    | SessionResumed
    | SessionForked
    | SessionEnded
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in get_args(AnyEvent)}


class UnknownEventTypeError(ValueError):
    """A stored row's type names no event this version knows."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(
            f"unknown event type {type_name!r}; known types: {', '.join(sorted(EVENT_TYPES))}. "
            "Was the log written by a newer forge_actors? Upgrade to read it."
        )


_encoder = msgspec.json.Encoder()
_decoders = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()}
_union_decoder = msgspec.json.Decoder(AnyEvent)


def event_type(event: Event) -> str:
    return type(event).__name__


def encode_event(event: Event) -> bytes:
    """The event as JSON bytes (with its ``type`` tag)."""
    return _encoder.encode(event)


def decode_event(type_name: str, data: str | bytes) -> Event:
    """Decode a stored row. Raises UnknownEventTypeError or msgspec.DecodeError."""
    decoder = _decoders.get(type_name)
    if decoder is None:
        raise UnknownEventTypeError(type_name)
    return decoder.decode(data)


def decode_any(data: str | bytes) -> Event:
    """Decode an event from its JSON alone, by its ``type`` tag."""
    return _union_decoder.decode(data)
