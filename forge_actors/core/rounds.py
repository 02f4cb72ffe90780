"""Rounds: the prompt each participant is sent, and what is read back from its reply.

Pure functions of the SessionState: no I/O, no actors, no clock. The session's decider
(``core.decider``) calls them and records what they return as events, so a replay
rebuilds the same prompts from the same state.

The rules of a session's flow are here too (``next_step``, ``why_not``,
``participant_outcomes``): the decider asks these pure functions what to do and turns
the answers into events, so a resumed session takes the same decisions from the same log.

Vote counting: the convergence score of a round is AGREE / (AGREE + DISAGREE) over the
last vote of each voter, AI or human. An abstention (a reply whose vote could not be
read even after the format reminder) and a participant that failed are not votes, so
they are in neither count; a round with no counted vote has no score and does not
converge. A round decides only with a quorum of counted votes (``min_votes``, default
more than half of its voters): below it the session ends ``no_quorum`` rather than pay
for iterations whose votes cannot be read either.

Stop rules (``SessionSettings.convergence``): ``votes`` as above; ``similarity`` runs no
convergence round and ends when a synthesis is ``similarity_threshold`` similar to the previous
iteration's; ``both`` needs the votes and that similarity. A similarity is read from a recorded
``SimilarityMeasured`` only: while one a rule needs is missing, ``next_step`` answers
``MeasureSimilarity`` and the decider has it measured and recorded first.

Structured replies: a participant whose ``replies`` is ``json`` is asked for its critique
or vote as one JSON document (``reply_format.critique_schema`` / ``VOTE_SCHEMA``, named in
``RoundPrompt.response_schema``); its reply is read as JSON first, then as text.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from forge_actors.core import budget, reply_format, reply_reading, similarity
from forge_actors.core.events import (
    ContributionCompleted,
    CritiqueRecorded,
    Outcome,
    ParticipantInfo,
    Persona,
    PromptMessage,
    PromptSent,
    RoundKind,
    SessionSettings,
    SimilarityMeasured,
    VoteRecorded,
)
from forge_actors.core.state import RoundState, SessionState
from forge_actors.core.templates import load_template, render


def proposal_label(index: int) -> str:
    """The label of the ``index``-th proposal (from 0): A … Z, then AA, AB … AZ, BA … ZZ, AAA …
    (as spreadsheet columns), so that any number of proposals has a label of its own."""
    if index < 0:
        raise ValueError(f"a proposal index is 0 or more, not {index}")
    label = ""
    number = index + 1
    while number:
        number, letter = divmod(number - 1, 26)
        label = chr(ord("A") + letter) + label
    return label


class RoundPrompt(msgspec.Struct, frozen=True):
    """What one participant is sent in one round. ``proposal_labels`` maps label -> author;
    ``response_schema`` names the structured reply asked for (``critique``/``vote``), if any."""

    participant: str
    kind: RoundKind
    messages: tuple[PromptMessage, ...]
    proposal_labels: dict[str, str] = {}
    response_schema: str | None = None


def reply_schema(prompt: RoundPrompt) -> dict[str, Any] | None:
    """The JSON Schema of the structured reply ``prompt`` asks for; None for free text."""
    if prompt.response_schema == reply_format.CRITIQUE_SCHEMA_NAME:
        return reply_format.critique_schema(list(prompt.proposal_labels))
    if prompt.response_schema == reply_format.VOTE_SCHEMA_NAME:
        return reply_format.VOTE_SCHEMA
    return None


def _wants_json(state: SessionState, participant: str) -> bool:
    info = state.participants.get(participant)
    return info is not None and info.replies == "json"


def _answer_format(kind: RoundKind, as_json: bool) -> str:
    if kind == "critique":
        return load_template("critique_json").strip() if as_json else reply_format.CRITIQUE_FORMAT
    return load_template("vote_json").strip() if as_json else reply_format.VOTE_FORMAT


# -- system prompt and persona --------------------------------------------------------------


def persona_text(persona: Persona | None) -> str:
    if persona is None or persona == Persona():
        return ""
    return render(
        "persona",
        persona_name=persona.name or "unnamed",
        traits=f" Traits: {', '.join(persona.traits)}." if persona.traits else "",
        tone=f" Tone: {persona.tone}." if persona.tone else "",
        approach=f" Approach: {persona.approach}." if persona.approach else "",
        specialties=f" Specialties: {', '.join(persona.specialties)}." if persona.specialties else "",
    )


def system_prompt(state: SessionState, participant: str) -> str:
    info = state.participants[participant]
    return render("system", name=participant, persona=persona_text(info.persona)).rstrip() + "\n"


def _common(state: SessionState) -> dict[str, str]:
    constraints = "".join(f"- {c}\n" for c in state.constraints)
    return {
        "iteration": str(max(state.iteration, 1)),
        "goal": state.goal,
        "constraints": f"Constraints:\n{constraints}" if constraints else "",
    }


def _prompt(state: SessionState, participant: str, kind: RoundKind, user: str,
            labels: dict[str, str] | None = None, response_schema: str | None = None) -> RoundPrompt:
    messages = (PromptMessage("system", system_prompt(state, participant)), PromptMessage("user", user))
    return RoundPrompt(participant, kind, messages, labels or {}, response_schema)


# -- the four rounds ---------------------------------------------------------------------------


def draft_prompt(state: SessionState, participant: str) -> RoundPrompt:
    return _prompt(state, participant, "draft", render("draft", **_common(state)))


def proposal_order(state: SessionState, critic: str, round_number: int) -> list[str]:
    """The other authors' drafts in an order shuffled for this critic and round (seeded).

    Each critic sees its own order, so position bias cancels out across critics; the
    same seed gives the same order, so a rerun sends the same prompts.
    """
    authors = sorted(author for author in state.drafts if author != critic)
    random.Random(f"{state.settings.seed}|{round_number}|{critic}").shuffle(authors)
    return authors


def _proposals(state: SessionState, authors: list[str]) -> tuple[str, dict[str, str]]:
    labels = {proposal_label(i): author for i, author in enumerate(authors)}
    text = "\n\n".join(
        f"{reply_format.PROPOSAL_HEADING.format(label=label)}\n{state.drafts[author].strip()}" for label, author in labels.items()
    )
    return text, labels


def critique_prompt(state: SessionState, critic: str, round_number: int) -> RoundPrompt | None:
    """None when there is nobody else's draft to review."""
    authors = proposal_order(state, critic, round_number)
    if not authors:
        return None
    proposals, labels = _proposals(state, authors)
    as_json = _wants_json(state, critic)
    user = render("critique", proposals=proposals, answer_format=_answer_format("critique", as_json), **_common(state))
    return _prompt(state, critic, "critique", user, labels, reply_format.CRITIQUE_SCHEMA_NAME if as_json else None)


def _order(state: SessionState, participant: str) -> tuple[int, str]:
    """Participant order (then name): replies arrive in any order, prompts must not depend on it."""
    names = list(state.participants)
    return (names.index(participant) if participant in names else len(names), participant)


def _by_critic(state: SessionState, round_number: int) -> list[CritiqueRecorded]:
    return sorted(state.critiques_in(round_number), key=lambda c: (_order(state, c.critic), c.label))


def _critique_summary(state: SessionState, labels: dict[str, str]) -> str:
    critique_round = state.last_round_of("critique")
    if critique_round is None:
        return ""
    by_author = {author: label for label, author in labels.items()}
    lines = []
    for author, label in by_author.items():
        reviews = [c for c in _by_critic(state, critique_round.round) if c.proposal_author == author]
        if not reviews:
            continue
        scores = [c.score for c in reviews if c.score is not None]
        mean = f"mean score {sum(scores) / len(scores):.0f}/100" if scores else "no readable scores"
        lines.append(f"Reviews of Proposal {label} ({mean}):")
        lines += [f"- strength: {s}" for c in reviews for s in c.strengths]
        lines += [f"- weakness: {w}" for c in reviews for w in c.weaknesses]
        lines += [f"- suggestion: {s}" for c in reviews for s in c.suggestions]
    return "Reviews:\n" + "\n".join(lines) + "\n" if lines else ""


def open_concerns(state: SessionState) -> list[str]:
    """Concerns from the last convergence round, in participant order, without repeats."""
    last = state.last_round_of("convergence")
    if last is None:
        return []
    concerns: list[str] = []
    votes = state.votes_in(last.round)
    for vote in sorted(votes.values(), key=lambda v: _order(state, v.voter)):
        for concern in vote.concerns:
            if concern not in concerns:
                concerns.append(concern)
    return concerns


def synthesis_prompt(state: SessionState, synthesizer: str) -> RoundPrompt:
    proposals, labels = _proposals(state, sorted(state.drafts))
    concerns = open_concerns(state)
    concern_text = (
        "Concerns raised when the last synthesis was put to the vote (address each):\n"
        + "".join(f"- {c}\n" for c in concerns)
        if concerns else ""
    )
    previous = state.synthesis
    if previous is not None:
        why = "which did not win enough votes" if _voted_down(state) else "which this one improves on"
        concern_text = f"The previous synthesis, {why}:\n\n{previous.content.strip()}\n\n" + concern_text
    user = render("synthesis", proposals=proposals, critiques=_critique_summary(state, labels), concerns=concern_text,
                  **_common(state))
    return _prompt(state, synthesizer, "synthesis", user, labels)


def _voted_down(state: SessionState) -> bool:
    """Whether the previous synthesis is told as voted down: not under the similarity rule (no vote is
    taken), nor under ``both`` when the votes passed it (it was still changing too much). Under votes
    always, as sessions have been told since before the rules existed (a re-run sends the same prompts)."""
    rule = state.settings.convergence
    if rule == "similarity":
        return False
    last_vote = state.last_round_of("convergence")
    return not (rule == "both" and last_vote is not None
                and has_converged(last_vote.score, state.settings.convergence_threshold))


def convergence_prompt(state: SessionState, voter: str) -> RoundPrompt:
    synthesis = state.synthesis.content.strip() if state.synthesis else "(no synthesis yet)"
    as_json = _wants_json(state, voter)
    user = render("convergence", synthesis=synthesis, answer_format=_answer_format("convergence", as_json),
                  **_common(state))
    return _prompt(state, voter, "convergence", user, None, reply_format.VOTE_SCHEMA_NAME if as_json else None)


def reask_prompt(prompt: RoundPrompt, reply: str, problem: str) -> RoundPrompt:
    """The same conversation, the unreadable reply, and a short format reminder."""
    reminder = _answer_format(prompt.kind, prompt.response_schema is not None)
    messages = prompt.messages + (
        PromptMessage("assistant", reply),
        PromptMessage("user", render("reask", problem=problem, format=reminder)),
    )
    return msgspec.structs.replace(prompt, messages=messages)


# -- reading replies --------------------------------------------------------------------------


def read_critiques(reply: str, labels: dict[str, str], as_json: bool = False,
                   ) -> tuple[dict[str, reply_format.ParsedCritique], list[str]]:
    """(parsed critique per label, labels whose score could not be read). A structured reply is
    read as JSON first; a model that answered in prose anyway is still read as text."""
    parsed = reply_reading.parse_critique_json(reply, list(labels)) if as_json else None
    if parsed is None or all(c.score is None for c in parsed.values()):
        parsed = reply_reading.parse_critiques(reply, list(labels))
    return parsed, [label for label, critique in parsed.items() if critique.score is None]


def vote_context(state: SessionState, prompt: RoundPrompt | PromptSent) -> reply_reading.VoteContext:
    """Who a voter's reply may name besides itself: the session's participants and the proposal
    labels its prompt showed (those it labels, and those its text mentions: a synthesis may speak of
    "Proposal B"). Both are in the log (SessionCreated, ParticipantAdded; PromptSent), so
    ``audit.verify`` reads every vote again with the same context."""
    shown = [message.content for message in prompt.messages if message.role != "assistant"]
    mentioned = (label for text in shown for label in reply_reading.mentioned_labels(text))
    labels = dict.fromkeys([*prompt.proposal_labels, *mentioned])
    return reply_reading.VoteContext(prompt.participant, tuple(state.participants), tuple(labels))


def read_vote(reply: str, as_json: bool = False,
              context: reply_reading.VoteContext | None = None) -> reply_format.ParsedVote | None:
    """The vote a reply gives: a structured reply's JSON document, else its last own explicit vote
    (``reply_reading.parse_vote``; ``context``: who else it may name)."""
    vote = reply_reading.parse_vote_json(reply) if as_json else None
    return vote if vote is not None else reply_reading.parse_vote(reply, context)


#: The concern recorded with the abstention of a voter whose reply could not be read even after a re-ask.
UNREADABLE_VOTE = "the vote could not be read, even after a format reminder"


class ReplyReading(msgspec.Struct, frozen=True):
    """What a completed critique or vote reply makes the session record: ``records``; or, for a
    reply that could not be read and was not a re-ask already, nothing yet but a re-ask naming
    ``reask`` (the problem). ``parsed``: a critique reply's reading, which the re-ask's completes."""

    records: tuple[CritiqueRecorded | VoteRecorded, ...] = ()
    reask: str | None = None
    parsed: dict[str, reply_format.ParsedCritique] | None = None


def read_critique_reply(completed: ContributionCompleted, labels: dict[str, str], as_json: bool,
                        first_parse: dict[str, reply_format.ParsedCritique] | None = None,
                        reasked: bool = False) -> ReplyReading:
    """The critiques a critic's reply gives (``labels``: its prompt's label -> author; ``as_json``:
    its prompt asked for a structured reply). A re-ask (``reasked``) keeps what the first reply
    (``first_parse``) scored and fills in the rest. The session actor records exactly these, and
    ``audit.verify`` reads every recorded reply again with it."""
    parsed, unreadable = read_critiques(completed.content, labels, as_json)
    if unreadable and not reasked:
        problem = (f"no readable score for proposal(s) {', '.join(unreadable)}" if as_json
                   else f"no readable Score line for proposal(s) {', '.join(unreadable)}")
        return ReplyReading(reask=problem, parsed=parsed)
    if first_parse is not None:
        parsed = {label: critique if critique.score is not None or label not in first_parse
                  or first_parse[label].score is None else first_parse[label]
                  for label, critique in parsed.items()}
    return ReplyReading(tuple(
        CritiqueRecorded(completed.round, completed.participant, label, labels[label], critique.score,
                         critique.strengths, critique.weaknesses, critique.suggestions)
        for label, critique in parsed.items()
    ))


def reasked_reading(state: SessionState, round_number: int, participant: str,
                    ) -> dict[str, reply_format.ParsedCritique] | None:
    """What the critique reply a re-ask re-asks gave (its scored critiques are kept when the re-ask's
    reply fills in the rest): the participant's last completed reply in the round, read again as it
    was first read. The session's decider and ``audit.verify`` both take it from here."""
    completed = [c for c in state.attempts_in(round_number, participant) if c.status == "completed"]
    if not completed:
        return None
    reply = completed[-1]
    return read_critiques(reply.content, reply.proposal_labels, reply.response_schema is not None)[0]


def read_vote_reply(completed: ContributionCompleted, as_json: bool, reasked: bool = False,
                    context: reply_reading.VoteContext | None = None) -> ReplyReading:
    """The vote a voter's reply gives (``context``: ``vote_context`` of its prompt); after a
    re-ask, an unreadable one is an abstention (see ``read_critique_reply``)."""
    vote = read_vote(completed.content, as_json, context)
    if vote is None and not reasked:
        return ReplyReading(reask="no JSON object with a vote of AGREE or DISAGREE" if as_json
                            else "no VOTE: AGREE or VOTE: DISAGREE line")
    if vote is None:
        return ReplyReading((VoteRecorded(completed.round, completed.participant, "ABSTAIN",
                                          concerns=(UNREADABLE_VOTE,)),))
    return ReplyReading((VoteRecorded(completed.round, completed.participant, vote.vote,  # type: ignore[arg-type]
                                      vote.reasons, vote.concerns, confidence=vote.confidence),))


# -- decisions ----------------------------------------------------------------------------------


def choose_synthesizer(state: SessionState) -> str | None:
    """The configured synthesizer if it is an AI participant; else the author of the best
    mean-scored draft in the last critique round (ties: participant order); else the
    first AI participant with a draft, else the first AI participant."""
    ai = state.ai_participants
    if not ai:
        return None
    configured = state.settings.synthesizer
    if configured in ai:
        return configured
    critique_round = state.last_round_of("critique")
    if critique_round is not None:
        means = state.mean_scores(critique_round.round)
        ranked = [p for p in ai if p in means]
        if ranked:
            return max(ranked, key=lambda p: (means[p], -ai.index(p)))
    with_draft = [p for p in ai if p in state.drafts]
    return with_draft[0] if with_draft else ai[0]


def convergence_score(votes: dict[str, VoteRecorded]) -> float | None:
    """AGREE / (AGREE + DISAGREE); None when no vote counted (see the module docstring)."""
    agree = sum(1 for v in votes.values() if v.vote == "AGREE")
    disagree = sum(1 for v in votes.values() if v.vote == "DISAGREE")
    counted = agree + disagree
    return agree / counted if counted else None


def has_converged(score: float | None, threshold: float) -> bool:
    return score is not None and score >= threshold


# -- the flow of a session ----------------------------------------------------------------------


class NextRound(msgspec.Struct, frozen=True):
    kind: RoundKind


class EndSession(msgspec.Struct, frozen=True):
    outcome: Outcome
    reason: str
    final_score: float | None = None


class Comparison(msgspec.Struct, frozen=True):
    """Two texts of the session whose similarity is to be measured: the synthesis of ``round`` and the
    previous iteration's (of ``compared_with_round``), or two drafts of the draft round ``round``
    (``pair``: their authors)."""

    round: int
    compared_with_round: int
    first: str
    second: str
    pair: tuple[str, ...] = ()


class MeasureSimilarity(msgspec.Struct, frozen=True):
    """Before anything else, measure these similarities and record them (``SimilarityMeasured``)."""

    comparisons: tuple[Comparison, ...]


#: How the reason of the ending the session actor records for its own bug begins ("internal
#: error: ..."): the one ending that is no decision of the rules (``audit.verify`` allows it only
#: where the rules call for no ending).
INTERNAL_ERROR = "internal error"


def still_expected(info: ParticipantInfo, limit: str) -> bool:
    """Whether the participant is still asked for what a ``ProviderLimitFound`` of ``limit`` would stop
    asking (streaming, structured replies, native tool calls): a limit is learned once."""
    if limit == "streaming":
        return info.streams
    if limit == "structured_replies":
        return info.replies == "json"
    return info.tool_mode == "native"


def round_participants(state: SessionState, kind: RoundKind) -> list[str]:
    """Who is asked in a round of that kind, in participant order. Humans are never asked."""
    ai = state.ai_participants
    if kind == "critique":
        return [p for p in ai if any(author != p for author in state.drafts)]
    if kind == "synthesis":
        synthesizer = choose_synthesizer(state)
        return [synthesizer] if synthesizer is not None and state.drafts else []
    return ai


def iteration_for(state: SessionState, kind: RoundKind) -> int:
    """Draft and critique are iteration 1; each synthesis starts the next; a vote shares its synthesis's."""
    if kind == "synthesis":
        return 1 + sum(1 for r in state.rounds if r.kind == "synthesis")
    if kind == "convergence":
        last = state.last_round_of("synthesis")
        return last.iteration if last else 1
    return 1


def prompt_for(state: SessionState, kind: RoundKind, participant: str, round_number: int) -> RoundPrompt:
    """The first prompt of ``participant`` in that round (also what a resumed round sends again)."""
    if kind == "draft":
        return draft_prompt(state, participant)
    if kind == "critique":
        prompt = critique_prompt(state, participant, round_number)
        if prompt is None:
            raise ValueError(f"{participant} has no other draft to critique")
        return prompt
    if kind == "synthesis":
        return synthesis_prompt(state, participant)
    return convergence_prompt(state, participant)


def human_vote_round(state: SessionState) -> int | None:
    """The convergence round a human's vote counts in now: the one running, else the one that
    follows a finished synthesis round (not under the similarity rule, where a synthesis is followed
    by the next: no vote is taken); None when no synthesis is up for a vote."""
    current = state.current_round
    if current is not None and current.kind == "convergence" and current.status == "running":
        return current.round
    if state.settings.convergence == "similarity":
        return None
    if current is not None and current.kind == "synthesis" and current.status != "running" and state.synthesis:
        return current.round + 1
    return None


def drafts_closed(state: SessionState) -> str | None:
    """Why no draft (AI round or human) can be added any more; None while drafts are open."""
    if {r.kind for r in state.rounds} - {"draft"}:
        return "drafts are closed: the critique or synthesis has already started"
    return None


def why_not(state: SessionState, kind: RoundKind) -> str | None:
    """Why a round of that kind cannot start now; None when it can."""
    if state.status == "new":
        return "the session does not exist"
    if state.ended:
        return f"the session has ended ({state.status}): {state.end_reason}"
    current = state.current_round
    if current is not None and current.status == "running":
        return f"round {current.round} ({current.kind}) is still running"
    spent = budget_spent(state)
    if spent is not None:
        return spent
    if not state.ai_participants:
        return "the session has no AI participants"
    problem = _kind_problem(state, kind, current)
    if problem is None:
        problem = budget_refusal(state, kind)
    return problem


def _kind_problem(state: SessionState, kind: RoundKind, current: RoundState | None) -> str | None:
    kinds_run = {r.kind for r in state.rounds}
    if kind == "draft" and drafts_closed(state):
        return drafts_closed(state)
    if kind in ("critique", "synthesis") and not state.drafts:
        return "there are no drafts yet: run a draft round (or add a human draft) first"
    if kind == "critique":
        if kinds_run & {"synthesis", "convergence"}:
            return "the critique is over: a synthesis has already been written"
        if not round_participants(state, "critique"):
            return "nothing to critique: it takes drafts by at least two authors, one of them an AI participant"
    if kind == "convergence" and (current is None or current.kind != "synthesis" or state.synthesis is None):
        return "there is no new synthesis to vote on: run a synthesis round first"
    return None


def participant_outcomes(state: SessionState, round_number: int) -> dict[str, str | None]:
    """The participants of a round whose part in it is settled: None for success, else the error.

    Unsettled (left out): an attempt still streaming or abandoned, a failure that will be
    retried, a critique or vote reply that is waiting for its re-ask.
    """
    round_ = state.round_state(round_number)
    if round_ is None:
        return {}
    critics = {c.critic for c in state.critiques_in(round_number)}
    voters = state.votes_in(round_number)
    outcomes: dict[str, str | None] = {}
    for participant in round_.participants:
        attempts = sorted(state.attempts_in(round_number, participant), key=lambda c: c.attempt)
        if not attempts:
            continue
        last = attempts[-1]
        if last.status == "failed" and not last.will_retry:
            outcomes[participant] = f"{last.error_kind}: {last.error}"
        elif last.status == "completed":
            if round_.kind == "critique" and participant not in critics:
                continue
            if round_.kind == "convergence" and participant not in voters:
                continue
            outcomes[participant] = None
    return outcomes


class RoundResult(msgspec.Struct, frozen=True):
    """What a finished round records in RoundCompleted, as the log gives it."""

    status: str
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    score: float | None
    reason: str


def round_result(state: SessionState, round_number: int) -> RoundResult | None:
    """The outcome of a round once every participant has settled; None while someone has not.

    Status: completed (nobody failed), degraded (some failed), failed (nobody succeeded, or
    nobody was asked). A convergence round's score counts its votes (``convergence_score``).
    """
    round_ = state.round_state(round_number)
    if round_ is None:
        return None
    outcomes = participant_outcomes(state, round_number)
    if any(p not in outcomes for p in round_.participants):
        return None
    succeeded = tuple(p for p in round_.participants if outcomes[p] is None)
    failed = tuple(p for p in round_.participants if outcomes[p] is not None)
    status = "completed" if not failed else ("degraded" if succeeded else "failed")
    if not round_.participants:
        status = "failed"
    reason = "; ".join(f"{p}: {outcomes[p]}" for p in failed) or ("nobody to ask" if status == "failed" else "")
    score = convergence_score(state.votes_in(round_number)) if round_.kind == "convergence" else None
    return RoundResult(status, succeeded, failed, score, reason)


def describe_agreement(score: float | None) -> str:
    """A convergence score in words: "75% agree", or "no counted votes"."""
    return "no counted votes" if score is None else f"{score:.0%} agree"


class VoteTally(msgspec.Struct, frozen=True):
    """Who voted how in one convergence round: the voters (asked AI participants, and humans
    who voted), how many votes counted, and who abstained or failed."""

    voters: tuple[str, ...]
    agree: int
    disagree: int
    abstained: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def counted(self) -> int:
        return self.agree + self.disagree

    @property
    def score(self) -> float | None:
        return self.agree / self.counted if self.counted else None


def vote_tally(state: SessionState, round_number: int) -> VoteTally:
    round_ = state.round_state(round_number)
    votes = state.votes_in(round_number)
    asked = round_.participants if round_ is not None else ()
    voters = [p for p in state.participants if p in asked or p in votes]
    failed = tuple(p for p in voters if p not in votes and round_ is not None and p in round_.failed)
    return VoteTally(
        tuple(voters),
        sum(1 for v in votes.values() if v.vote == "AGREE"),
        sum(1 for v in votes.values() if v.vote == "DISAGREE"),
        tuple(p for p in voters if p in votes and votes[p].vote == "ABSTAIN"),
        failed,
    )


def quorum(state: SessionState, tally: VoteTally) -> int:
    """Counted votes a convergence round needs: ``min_votes``, else more than half of its voters."""
    configured = state.settings.min_votes
    return configured if configured is not None else len(tally.voters) // 2 + 1


def describe_tally(tally: VoteTally) -> str:
    """E.g. "2 of 3 voted: 100% agree; carol abstained"."""
    text = f"{tally.counted} of {len(tally.voters)} voted: {describe_agreement(tally.score)}"
    if tally.abstained:
        text += f"; {', '.join(tally.abstained)} abstained"
    if tally.failed:
        text += f"; {', '.join(tally.failed)} failed"
    return text


def _copied(state: SessionState, number: int) -> bool:
    """Whether round ``number`` is one a fork copied from its parent (decided there, not here)."""
    return state.forked_from is not None and number <= state.forked_from.round


def end_after_convergence(state: SessionState, round_number: int) -> EndSession | MeasureSimilarity | None:
    """Without a quorum, converged, or out of iterations, after that convergence round; None to go on.
    Under the ``both`` rule, votes that converge need the synthesis measured first (``MeasureSimilarity``)."""
    round_ = state.round_state(round_number)
    if round_ is None or round_.kind != "convergence":
        return None
    if state.settings.convergence == "similarity":  # a vote asked for by hand: the rule reads no votes
        return end_after_synthesis(state, round_.iteration)
    tally = vote_tally(state, round_number)
    votes = describe_tally(tally)
    needed = quorum(state, tally)
    if tally.counted < needed:
        return EndSession(
            "no_quorum",
            f"{votes} — fewer than the quorum of {needed} (min_votes) at iteration {round_.iteration}, "
            "so another iteration would not be decided either",
            round_.score,
        )
    threshold = state.settings.convergence_threshold
    last_similarity = ""
    if has_converged(round_.score, threshold):
        if state.settings.convergence != "both":
            return EndSession("converged", f"{votes} (threshold {threshold:.0%}) at iteration {round_.iteration}",
                              round_.score)
        measured = synthesis_similarity(state, round_.iteration)
        if isinstance(measured, MeasureSimilarity):
            return measured
        if measured is not None and measured.value >= state.settings.similarity_threshold:
            return EndSession("converged", f"{votes} (threshold {threshold:.0%}) and "
                              f"{describe_similarity(state, measured)} at iteration {round_.iteration}", round_.score)
        last_similarity = "; " + (describe_similarity(state, measured) if measured is not None else
                                  "no earlier synthesis to compare with (the similarity rule: both)")
    if round_.iteration >= state.settings.max_rounds:
        return EndSession(
            "max_rounds",
            f"no convergence after {round_.iteration} iteration(s), the most allowed (max_iterations); "
            f"last vote: {votes}, threshold {threshold:.0%}{last_similarity}",
            round_.score,
        )
    return None


def _synthesis_of(state: SessionState, iteration: int) -> tuple[int, str] | None:
    """(round, text) of the synthesis written in that iteration, if one was."""
    for synthesis in reversed(state.syntheses):
        if synthesis.iteration == iteration:
            return synthesis.round, synthesis.content
    return None


def synthesis_comparison(state: SessionState, iteration: int) -> Comparison | None:
    """The synthesis of that iteration against the previous iteration's; None when either is missing."""
    current, previous = _synthesis_of(state, iteration), _synthesis_of(state, iteration - 1)
    if current is None or previous is None:
        return None
    return Comparison(current[0], previous[0], current[1], previous[1])


def synthesis_similarity(state: SessionState, iteration: int) -> SimilarityMeasured | MeasureSimilarity | None:
    """The recorded similarity of that iteration's synthesis to the previous one's; ``MeasureSimilarity``
    when it is still to be measured; None when there is nothing to compare it with (iteration 1)."""
    comparison = synthesis_comparison(state, iteration)
    if comparison is None:
        return None
    measured = state.similarity(comparison.round, comparison.compared_with_round)
    return measured if measured is not None else MeasureSimilarity((comparison,))


def describe_similarity(state: SessionState, measured: SimilarityMeasured) -> str:
    """E.g. "the synthesis is 94.2% similar to the previous one (threshold 90%, embeddings of text-embedding-3-small)"."""
    how = f"embeddings of {measured.model}" if measured.method == "embedding" else "lexical measure"
    return (f"the synthesis is {similarity.describe(measured.value)} to the previous one "
            f"(threshold {state.settings.similarity_threshold:.0%}, {how})")


def end_after_synthesis(state: SessionState, iteration: int) -> EndSession | MeasureSimilarity | None:
    """Under the ``similarity`` rule, after that iteration's synthesis: converged when it is at least
    ``similarity_threshold`` similar to the previous one's, out of iterations, or None to go on (to the
    next synthesis: no votes are asked for)."""
    measured = synthesis_similarity(state, iteration)
    if isinstance(measured, MeasureSimilarity):
        return measured
    if measured is not None and measured.value >= state.settings.similarity_threshold:
        return EndSession("converged", f"{describe_similarity(state, measured)} at iteration {iteration}")
    if iteration >= state.settings.max_rounds:
        last = describe_similarity(state, measured) if measured is not None else "nothing to compare it with"
        return EndSession("max_rounds", f"no convergence after {iteration} iteration(s), the most allowed "
                          f"(max_iterations); last: {last}")
    return None


def drafts_to_measure(state: SessionState, draft_round: int) -> MeasureSimilarity | None:
    """Under the ``similarity`` and ``both`` rules, the drafts compared with each other (for the reader:
    no rule reads them), each pair once in participant order; None once recorded or with fewer than two."""
    if state.settings.convergence == "votes":
        return None
    authors = sorted(state.drafts, key=lambda author: _order(state, author))
    comparisons = tuple(
        Comparison(draft_round, draft_round, state.drafts[first], state.drafts[second], (first, second))
        for index, first in enumerate(authors) for second in authors[index + 1:]
        if state.similarity(draft_round, draft_round, (first, second)) is None
    )
    return MeasureSimilarity(comparisons) if comparisons else None


#: Characters a reply may stream per ``max_tokens`` token when ``max_reply_chars`` is not given: a
#: token is about 4 characters of English, so four times that leaves room for code, other scripts and
#: a command-line assistant that ignores max_tokens.
REPLY_CHARS_PER_TOKEN = 16
#: The most bytes a session's events may take in the log when ``max_session_bytes`` is not given.
DEFAULT_MAX_SESSION_BYTES = 100_000_000


def with_log_limits(settings: SessionSettings) -> SessionSettings:
    """``settings`` with the log's limits a new session records: the ones given, else the defaults
    (a session recorded before the limits existed has None: no limit, so it decides as it did)."""
    reply = settings.max_reply_chars
    session = settings.max_session_bytes
    return msgspec.structs.replace(
        settings,
        max_reply_chars=reply if reply is not None else REPLY_CHARS_PER_TOKEN * settings.max_tokens,
        max_session_bytes=session if session is not None else DEFAULT_MAX_SESSION_BYTES,
    )


def budget_spent(state: SessionState) -> str | None:
    """Why the session may not start another round because of what it wrote to the log; None if it may."""
    limit = state.settings.max_session_bytes
    if limit is None or state.log_bytes < limit:
        return None
    return (f"the session's events take {state.log_bytes:,} bytes of the log, as much as its max_session_bytes "
            f"({limit:,}) allows; raise that setting to let sessions run longer")


def budget_refusal(state: SessionState, kind: RoundKind) -> str | None:
    """Why a round of ``kind`` may not start for the session's spending budget (its estimate would pass
    it: ``core.budget``); None when it may, or the session has no budget."""
    if not budget.has_budget(state.settings):
        return None
    number = (state.current_round.round if state.current_round else 0) + 1
    prompt_chars = {p: sum(len(m.content) for m in prompt_for(state, kind, p, number).messages)
                    for p in round_participants(state, kind)}
    return budget.round_refused(state, kind, prompt_chars)


def _next_round(state: SessionState, kind: RoundKind, final_score: float | None = None) -> NextRound | EndSession:
    refused = budget_refusal(state, kind)
    return NextRound(kind) if refused is None else EndSession("budget_exhausted", refused, final_score)


def next_step(state: SessionState) -> NextRound | EndSession | MeasureSimilarity | None:
    """What a session deliberating on its own does next; None while a round runs or once it ended.
    ``MeasureSimilarity``: the similarities a rule needs (or the reader is owed), measured first."""
    if state.ended:
        return None
    current = state.current_round
    if current is not None and current.status == "running":
        return None
    if current is None:
        spent = budget_spent(state)  # humans' drafts alone may have spent it
        return _next_round(state, "draft") if spent is None else EndSession("budget_spent", spent)
    last_vote = state.last_round_of("convergence")
    last_score = last_vote.score if last_vote is not None else None
    # Before "failed": the budget's cancels may have failed it. A round a fork copied was cut under its
    # parent's budget, not the fork's: the fork goes on from it under its own.
    if budget.was_cut(state, current.round) and not _copied(state, current.round):
        return EndSession("budget_exhausted", budget.cut_round_reason(state, current.round, current.kind),
                          last_score)
    if current.status == "failed":
        return EndSession(
            "failed", f"no AI participant succeeded in round {current.round} ({current.kind}): {current.reason}"
        )
    if current.status == "cancelled":
        return EndSession("cancelled", current.reason or "cancelled")
    if current.kind == "convergence":
        ended = end_after_convergence(state, current.round)
        if ended is not None:
            return ended
    if current.kind == "synthesis" and state.settings.convergence == "similarity":
        ended = end_after_synthesis(state, current.iteration)
        if ended is not None:
            return ended
    spent = budget_spent(state)
    if spent is not None:
        return EndSession("budget_spent", spent, last_score)
    if current.kind == "draft":
        drafts = drafts_to_measure(state, current.round)
        if drafts is not None:
            return drafts
        return _next_round(state, "critique" if round_participants(state, "critique") else "synthesis", last_score)
    if current.kind == "critique":
        return _next_round(state, "synthesis", last_score)
    if current.kind == "synthesis":
        return _next_round(state, "synthesis" if state.settings.convergence == "similarity" else "convergence",
                           last_score)
    return _next_round(state, "synthesis", last_score)
