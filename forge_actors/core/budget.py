"""A session's spending budget: what it has spent, what the next round may cost, whether it may run.

``SessionSettings.max_cost_usd`` and ``max_session_tokens`` bound a session (None: no budget). Every
figure here is a function of the fold, so a resumed or re-run session decides as the live one did:
costs use the prices recorded when the session was created (``SessionCreated.prices``, and
``ProviderSwitched.price`` after a switch), never the engine's table of the day.

**What an attempt spent.** Its recorded usage. An attempt that recorded none — cut mid-stream,
cancelled, failed, abandoned by a crash, or answered by a provider that reports no usage (providers
send usage at the end of a stream) — is estimated from its text, ``CHARS_PER_TOKEN`` characters a
token: its streamed characters as output and, once it streamed anything (the server read the
prompt), its prompt and tool results as input. So a budget cannot be outrun by cut streams. An
attempt still streaming counts the same way, by the characters streamed so far.

**What the next round may cost.** For each participant asked: what it spent in the last finished
round of the same kind (the mean of that round's participants for one that was not in it); with no
such round, its prompt's size as input and ``max_tokens`` as output (the most it may write).
``rounds.next_step`` does not start a round whose estimate would take the spending past a limit;
the decider cancels a running round once the spending has passed one (``decider``, ``CUT_KIND``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from forge_actors.core.events import Price, RoundKind, SessionSettings, TokenUsage
from forge_actors.core.pricing import estimate_cost, format_cost
from forge_actors.core.state import ContributionState, SessionState

#: Characters per token when a token count must be estimated from text (about right for English;
#: code and other scripts run denser, which only makes the estimate cautious about output).
CHARS_PER_TOKEN = 4
#: The error kind of an attempt cancelled because its round passed the budget.
CUT_KIND = "budget"
#: A stream in flight has the spending checked each time it grows by this many characters (about 1,000
#: tokens; ``decider.spending_check_due``), besides each time an attempt finishes or gets a tool's result.
CHECK_EVERY_CHARS = 4_000


class Spending(msgspec.Struct, frozen=True):
    """Tokens (input and output) and estimated US dollars."""

    tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Spending) -> Spending:
        return Spending(self.tokens + other.tokens, self.cost_usd + other.cost_usd)

    def times(self, factor: float) -> Spending:
        return Spending(round(self.tokens * factor), self.cost_usd * factor)


def has_budget(settings: SessionSettings) -> bool:
    return settings.max_cost_usd is not None or settings.max_session_tokens is not None


def estimated_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of text, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def attempt_usage(attempt: ContributionState) -> TokenUsage:
    """The attempt's recorded usage, or, when it recorded none, its estimate from its text."""
    if attempt.usage.total_tokens > 0:
        return attempt.usage
    output = max(attempt.chars, len(attempt.content))
    if output == 0:
        return TokenUsage()  # refused or failed before answering: nothing read, nothing written
    tool_chars = sum(len(use.output or "") for use in attempt.tool_uses)
    return TokenUsage(estimated_tokens(attempt.prompt_chars + tool_chars), estimated_tokens(output))


def _price(state: SessionState, attempt: ContributionState) -> Price:
    """The price the attempt was asked at. One with none recorded (a participant that joined later)
    is judged at the session's highest recorded price: a budget errs towards stopping."""
    if attempt.price is not None:
        return attempt.price
    known = list(state.prices.values()) or [Price(0.0, 0.0)]
    return max(known, key=lambda p: p.input_per_mtok + p.output_per_mtok)


def attempt_spending(state: SessionState, attempt: ContributionState) -> Spending:
    usage = attempt_usage(attempt)
    cost = estimate_cost(usage, _price(state, attempt)) if state.settings.max_cost_usd is not None else 0.0
    return Spending(usage.total_tokens, cost or 0.0)


def _attempts(state: SessionState) -> list[ContributionState]:
    return [*state.contributions.values(), *state.streaming.values()]


def spent(state: SessionState) -> Spending:
    """What the session has spent so far: every attempt, finished or in flight."""
    return sum((attempt_spending(state, a) for a in _attempts(state)), Spending())


def round_spending(state: SessionState, number: int) -> dict[str, Spending]:
    """What each participant of round ``number`` spent in it, all its attempts together."""
    by_participant: dict[str, Spending] = {}
    for attempt in _attempts(state):
        if attempt.round == number:
            by_participant[attempt.participant] = (by_participant.get(attempt.participant, Spending())
                                                   + attempt_spending(state, attempt))
    return by_participant


class Estimate(msgspec.Struct, frozen=True):
    spending: Spending
    #: How it was made, for the reason a session ends with.
    basis: str


def estimate_round(state: SessionState, kind: RoundKind, prompt_chars: Mapping[str, int]) -> Estimate:
    """What a round of ``kind`` asking ``prompt_chars``' participants (each with its first prompt's
    size) is expected to spend (see the module's docstring)."""
    previous = next((r for r in reversed(state.rounds) if r.kind == kind and r.status != "running"), None)
    if previous is not None and previous.participants:
        spending = round_spending(state, previous.round)
        mean = sum(spending.values(), Spending()).times(1 / len(previous.participants))
        total = sum((spending.get(p, mean) for p in prompt_chars), Spending())
        return Estimate(total, f"from round {previous.round}, the previous {kind} round")
    total = Spending()
    for participant, chars in prompt_chars.items():
        usage = TokenUsage(estimated_tokens(chars), state.settings.max_tokens)
        price = state.prices.get(participant)
        cost = estimate_cost(usage, price) if price is not None and state.settings.max_cost_usd is not None else 0.0
        total = total + Spending(usage.total_tokens, cost or 0.0)
    return Estimate(total, "its prompts' size and max_tokens")


def _passes(state: SessionState, spending: Spending) -> bool:
    settings = state.settings
    tokens, cost = settings.max_session_tokens, settings.max_cost_usd
    return (tokens is not None and spending.tokens > tokens) or (cost is not None and spending.cost_usd > cost)


def describe(settings: SessionSettings, spending: Spending) -> str:
    """Spent and remaining, against each limit set: "spent 1,234 of 5,000 tokens (3,766 remaining)"."""
    parts = []
    if settings.max_session_tokens is not None:
        left = max(0, settings.max_session_tokens - spending.tokens)
        parts.append(f"spent {spending.tokens:,} of {settings.max_session_tokens:,} tokens ({left:,} remaining)")
    if settings.max_cost_usd is not None:
        left_usd = max(0.0, settings.max_cost_usd - spending.cost_usd)
        parts.append(f"spent {format_cost(spending.cost_usd)} of {format_cost(settings.max_cost_usd)} "
                     f"({format_cost(left_usd)} remaining)")
    return "; ".join(parts)


def limits(settings: SessionSettings) -> str:
    """The budget in words: "max_session_tokens 5,000, max_cost_usd $0.5000"."""
    parts = []
    if settings.max_session_tokens is not None:
        parts.append(f"max_session_tokens {settings.max_session_tokens:,}")
    if settings.max_cost_usd is not None:
        parts.append(f"max_cost_usd {format_cost(settings.max_cost_usd)}")
    return ", ".join(parts)


def passed(state: SessionState) -> bool:
    """Whether the spending has passed a limit of the session's budget."""
    return has_budget(state.settings) and _passes(state, spent(state))


def cut_reason(settings: SessionSettings) -> str:
    """Why an attempt was cancelled when its round passed the budget. The same words whenever it happens
    (a re-run replays them as recorded): the figures are in the session's end reason."""
    return f"cancelled: the session passed its budget ({limits(settings)})"


def round_refused(state: SessionState, kind: RoundKind, prompt_chars: Mapping[str, int]) -> str | None:
    """Why a round of ``kind`` may not start for the budget; None when it may (or there is none)."""
    if not has_budget(state.settings):
        return None
    so_far = spent(state)
    estimate = estimate_round(state, kind, prompt_chars)
    if not _passes(state, so_far + estimate.spending):
        return None
    expected = f"{estimate.spending.tokens:,} tokens"
    if state.settings.max_cost_usd is not None:
        expected += f", {format_cost(estimate.spending.cost_usd)}"
    return (f"{describe(state.settings, so_far)}; the next {kind} round, estimated at {expected} "
            f"({estimate.basis}), would pass the budget, so it was not started")


def cut_round_reason(state: SessionState, number: int, kind: RoundKind) -> str:
    return f"round {number} ({kind}) passed the budget and was cancelled: {describe(state.settings, spent(state))}"


def was_cut(state: SessionState, number: int) -> bool:
    """Whether round ``number`` was cancelled for the budget (an attempt of it failed with ``CUT_KIND``)."""
    return any(a.round == number and a.status == "failed" and a.error_kind == CUT_KIND
               for a in state.contributions.values())


class BudgetReport(msgspec.Struct, frozen=True):
    """A session's budget and what it has spent against it, for the surfaces (``forge show``, the
    terminal's end line, exports). A figure of a limit not set is None."""

    max_session_tokens: int | None
    max_cost_usd: float | None
    spent_tokens: int
    remaining_tokens: int | None
    spent_cost_usd: float | None
    remaining_cost_usd: float | None
    #: The same in words: "spent 1,234 of 5,000 tokens (3,766 remaining)".
    summary: str


def report(state: SessionState) -> BudgetReport | None:
    """The session's budget and its spending; None for a session without a budget."""
    settings = state.settings
    if not has_budget(settings):
        return None
    so_far = spent(state)
    tokens, cost = settings.max_session_tokens, settings.max_cost_usd
    return BudgetReport(
        tokens, cost, so_far.tokens, None if tokens is None else max(0, tokens - so_far.tokens),
        None if cost is None else so_far.cost_usd, None if cost is None else max(0.0, cost - so_far.cost_usd),
        describe(settings, so_far),
    )
