"""Re-derive one inbound record with the worker's own functions and say what differs.

Pure: no I/O and no clock reads; the caller gives the ledger's facts, the messages read from
the output topics and the replay's instant. The re-derivation is :func:`start_record` and
:func:`finish_record` of the worker's pipeline, the very functions ``certrecon run`` calls,
fed from the recorded bytes, the recorded receiving instant and decision time, the roster
version the decision names and the calendar as it was when it was decided.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from certrecon.calendar import WorkingCalendar
from certrecon.consumers.dead_letter import dead_letter_id
from certrecon.consumers.decode import usable_certification_id
from certrecon.domain import CST, RosterRecord
from certrecon.errors import CalendarError, InputError
from certrecon.reconcile import RULE_VERSION
from certrecon.reconcile.evidence import NO_EVIDENCE, PersonEvidence, recorded_evidence
from certrecon.replay.model import (
    Discrepancy,
    Kind,
    Recorded,
    RecordedDecision,
    Rules,
    Timeliness,
)
from certrecon.worker.pipeline import (
    Answered,
    EvidenceIn,
    ForReview,
    Inbound,
    Pending,
    PipelineConfig,
    Rejected,
    finish_record,
    receiving_instant,
    start_record,
)

DIGEST_BYTES = 16
"""Bytes of a published message's SHA-256 kept in memory: enough to tell contents apart,
small enough to index every message read from the output topics."""


def digest(data: bytes | None) -> bytes:
    return hashlib.sha256(data or b"").digest()[:DIGEST_BYTES]


class Published:
    """The messages read from one output topic, by message id: where the first copy is
    and the digest of every distinct content seen (two or more: conflicting copies)."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int, int, bytes]] = {}

    def add(
        self, message_id: str, partition: int, offset: int, timestamp_ms: int, content: bytes | None
    ) -> None:
        found = self._seen.get(message_id)
        d = digest(content)
        if found is None:
            self._seen[message_id] = (partition, offset, timestamp_ms, d)
        elif d not in _split(found[3]):
            self._seen[message_id] = (*found[:3], found[3] + d)

    def take(self, message_id: str) -> tuple[bytes, ...] | None:
        """The distinct digests published under ``message_id`` (None: never), forgetting it."""
        found = self._seen.pop(message_id, None)
        return None if found is None else _split(found[3])

    def remaining(self) -> list[tuple[str, int, int, int]]:
        """Ids never taken, with the partition, offset and timestamp of their first copy."""
        return [(k, p, o, ts) for k, (p, o, ts, _) in self._seen.items()]

    def __len__(self) -> int:
        return len(self._seen)


def _split(joined: bytes) -> tuple[bytes, ...]:
    if len(joined) == DIGEST_BYTES:
        return (joined,)  # the common case: one content
    return tuple(joined[i : i + DIGEST_BYTES] for i in range(0, len(joined), DIGEST_BYTES))


_ID_FIELD = re.compile(rb'"certification_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


def peek_certification_id(value: bytes | None) -> str | None:
    """The record's certification_id when it is readable at all (to find its ledger row
    before the re-derivation, which needs the recorded receiving instant).

    A message naming ``certification_id`` once, plainly, is read by a pattern; any other
    is parsed. (A wrong guess costs nothing: the re-derivation decides, and a ledger row is
    only used when it was recorded at this record's position.)
    """
    if not value:
        return None
    found = _ID_FIELD.findall(value)
    if len(found) == 1:
        return bytes(found[0]).decode("ascii")
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    return usable_certification_id(document.get("certification_id"))


@dataclass(frozen=True, slots=True)
class Basis:
    """What every record of one replay is re-derived with (the pure half of a check)."""

    config: PipelineConfig
    rules: Rules
    now: dt.datetime
    """The replay's instant: a deadline before it has passed."""
    calendar_at: Callable[[dt.datetime], WorkingCalendar]
    """The calendar as the ledger's override and publication events made it at an instant."""
    current_calendar: WorkingCalendar


@dataclass(frozen=True, slots=True)
class Derivation:
    """What re-deriving one record gave, reduced to what the checks against the ledger and
    the output topics need (small: it may cross from a worker process)."""

    sha256: bytes
    """SHA-256 of the record's bytes."""
    rejected: bool
    """The worker would dead-letter the record."""
    letter_certification_id: str | None
    """The dead letter's certification_id (when rejected)."""
    certification_id: str | None
    """The certification the worker would store (None: a dead letter only)."""
    items: tuple[Discrepancy, ...] = ()
    """Validation, due date and decision differences from the ledger's row; only for the
    row recorded at this record's position with these very bytes."""
    counts: tuple[str, ...] = ()


def at_position(record: Inbound, recorded: Recorded | None) -> Recorded | None:
    """``recorded`` when the ledger recorded it at this record's position, else None: what
    :func:`derive` is given."""
    if recorded is not None and recorded.position == _position(record):
        return recorded
    return None


def _position(record: Inbound) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


def derive(
    record: Inbound,
    recorded: Recorded | None,
    basis: Basis,
    current_roster: Mapping[str, tuple[int, RosterRecord]] | None = None,
) -> Derivation:
    """Re-derive ``record`` with the worker's functions and compare it with ``recorded``,
    the ledger's row at this record's position (None: none there)."""
    sha = hashlib.sha256(record.value or b"").digest()
    outcome = _rederive(record, recorded, basis, current_roster)
    rejected = isinstance(outcome, Rejected)
    letter_id = outcome.letter.certification_id if isinstance(outcome, Rejected) else None
    stored = outcome.answered if isinstance(outcome, Rejected) else outcome
    if stored is None:
        return Derivation(sha, rejected, letter_id, None)
    cid = stored.row.certification_id
    if recorded is None or recorded.raw_sha256 != sha or recorded.content_sha256 != sha:
        return Derivation(sha, rejected, letter_id, cid)
    found: list[Discrepancy] = []
    counts: list[str] = []
    _compare_derivation(stored, recorded, basis.rules, _sink(record, found), counts)
    return Derivation(sha, rejected, letter_id, cid, tuple(found), tuple(counts))


ResultLookup = tuple[str, dt.datetime | None, bool, bytes | None]
"""A recorded result revision to find on the result topic: its id, when it was
acknowledged, whether it must be there by now (acknowledged, or its deadline passed) and
the first bytes of its payload's SHA-256 (None: not kept)."""


class Open(NamedTuple):
    """The checks of one record that need the output topics, with what its other checks
    found, in the order the report lists them. Plain values: it may cross from a worker
    process, and every record of a window but the dead letters has one."""

    topic: str
    partition: int
    offset: int
    letter: bool
    """The dead letter of this position must be on the dead-letter topic."""
    letter_certification_id: str | None
    """What a missing dead letter is reported under."""
    certification_id: str | None
    before: tuple[Discrepancy, ...]
    """Found before the results are looked up (ledger, bytes, re-derivation)."""
    results: tuple[ResultLookup, ...]
    conflicting: tuple[str, ...]
    """Result ids the ledger itself shows in conflict (a second revision by the rules)."""
    after: tuple[Discrepancy, ...]
    """Found after them (a late acknowledgement)."""


@dataclass(slots=True)
class Assessed:
    """One record's checks but the output topics' (:func:`conclude` does those)."""

    open: Open | None = None
    counts: list[str] = field(default_factory=list)
    timeliness: Timeliness | None = None


def assess(
    record: Inbound, recorded: Recorded | None, derived: Derivation, basis: Basis
) -> Assessed:
    """The checks of one record given its :class:`Derivation` that need no output topic:
    the ledger's bytes and results, timeliness; what needs the topics, as an :class:`Open`.
    ``recorded`` is the ledger's row for the record's certification_id, if any."""
    out = Assessed()
    before: list[Discrepancy] = []
    after: list[Discrepancy] = []
    item = _sink(record, before)
    letter, letter_id = derived.rejected, derived.letter_certification_id
    lookups: tuple[ResultLookup, ...] = ()
    conflicting: tuple[str, ...] = ()
    cid = derived.certification_id
    if cid is None:
        out.counts.append("dead_letters_only")
    elif recorded is None:
        item(Kind.MISSING_IN_LEDGER, cid, "certification", None, "certification")
    elif recorded.position != _position(record):
        out.counts.append("certifications")
        # Another delivery of a certification recorded at another position: the same
        # bytes are a redelivery; other bytes were dead-lettered (the first one stands).
        if recorded.content_sha256 == derived.sha256:
            out.counts.append("redelivered")
        elif not derived.rejected:
            letter, letter_id = True, cid
    else:
        out.counts.append("certifications")
        sha = derived.sha256
        if recorded.raw_sha256 != sha:
            item(Kind.BYTES_DIFFER, cid, "raw", recorded.raw_sha256, sha)
        elif recorded.content_sha256 != sha:
            item(Kind.BYTES_DIFFER, cid, "content_sha256", recorded.content_sha256, sha)
        else:
            before.extend(derived.items)
            out.counts.extend(derived.counts)
        lookups, conflicting = _assess_results(recorded, basis, item, _sink(record, after), out)
    if letter or before or lookups or after:
        out.open = Open(
            record.topic,
            record.partition,
            record.offset,
            letter,
            letter_id,
            cid,
            tuple(before),
            lookups,
            conflicting,
            tuple(after),
        )
    return out


def conclude(
    open: Open, results: Published, dead_letters: Published
) -> tuple[list[Discrepancy], int]:
    """The checks of an :class:`Open` record against the output topics (each message taken
    once: call in the order the records were read): every discrepancy of the record, in
    report order, and how many of its results are awaiting publication."""
    topic, partition, offset = open.topic, open.partition, open.offset
    items: list[Discrepancy] = []

    def item(kind: Kind, cid: str | None, name: str, rec: Any = None, rep: Any = None) -> None:
        items.append(Discrepancy(kind, cid, topic, partition, offset, name, rec, rep))

    if open.letter and dead_letters.take(dead_letter_id(topic, partition, offset)) is None:
        item(Kind.MISSING_DEAD_LETTER, open.letter_certification_id, "dead_letter")
    items.extend(open.before)
    cid = open.certification_id
    awaiting = 0
    conflicting = list(open.conflicting)
    for result_id, acked_at, expected, short in open.results:
        copies = results.take(result_id)
        if copies is None:
            if expected:
                item(Kind.RESULT_NOT_PUBLISHED, cid, result_id, acked_at, None)
            else:
                awaiting += 1
        elif len(copies) > 1:
            conflicting.append(result_id)
        elif short is not None and copies[0] != short:
            item(Kind.PUBLISHED_DIFFERS, cid, result_id, "ledger bytes", "other bytes")
    if conflicting:
        item(Kind.CONFLICTING_RESULTS, cid, "result_id", None, conflicting)
    items.extend(open.after)
    return items, awaiting


def _rederive(
    record: Inbound,
    recorded: Recorded | None,
    ctx: Basis,
    current_roster: Mapping[str, tuple[int, RosterRecord]] | None,
) -> Answered | ForReview | Rejected:
    """The worker's outcome for ``record``, from what the ledger recorded about it."""
    decision = recorded.decision if recorded is not None else None
    if recorded is None:
        receipt = receiving_instant(record, ctx.now)
        decided_at = ctx.now
    else:
        receipt = recorded.received_at
        decided_at = decision.decided_at if decision is not None else recorded.received_at
    if ctx.rules is Rules.CURRENT or recorded is None:
        calendar = ctx.current_calendar
    else:
        calendar = ctx.calendar_at(decided_at)
    started = start_record(
        record, config=ctx.config, calendar=calendar, received_at=decided_at, receipt=receipt
    )
    if isinstance(started, EvidenceIn):
        # The window is read from the channel topics; comparison evidence is not an answer.
        raise InputError(f"the replay re-checks certifications; {record.topic} carries evidence")
    if not isinstance(started, Pending):
        return started
    entry: RosterRecord | None
    version: int | None
    if ctx.rules is Rules.CURRENT or decision is None:
        found = (current_roster or {}).get(started.certification.id_number)
        version, entry = (None, None) if found is None else found
    else:
        version, entry = decision.roster_version, decision.roster
    return finish_record(
        started,
        entry,
        config=ctx.config,
        calendar=calendar,
        roster_version=version,
        comparison=_comparison(recorded, started.certification.id_number),
    )


def _comparison(recorded: Recorded | None, id_number: str) -> PersonEvidence:
    """The person's comparison evidence as the decision recorded it (both rule modes: what
    staff decided since is a later fact, not a correction of this decision). Evidence that
    is not in the recorded shape re-derives as none, so the decision shows as differing."""
    decision = recorded.decision if recorded is not None else None
    if decision is None or not isinstance(decision.evidence, dict):
        return NO_EVIDENCE
    try:
        return recorded_evidence(decision.evidence.get("comparison_evidence") or [], id_number)
    except ValueError:
        return NO_EVIDENCE


Item = Callable[..., None]


def _sink(record: Inbound, items: list[Discrepancy]) -> Item:
    """``item(kind, certification_id, field, recorded, replayed)`` appending a discrepancy
    at ``record``'s position to ``items``."""

    def item(
        kind: Kind, cid: str | None, name: str | None = None, rec: Any = None, rep: Any = None
    ) -> None:
        items.append(
            Discrepancy(kind, cid, record.topic, record.partition, record.offset, name, rec, rep)
        )

    return item


def _compare_derivation(
    stored: Answered | ForReview, recorded: Recorded, rules: Rules, item: Item, counts: list[str]
) -> None:
    cid = recorded.certification_id
    row = stored.row
    if row.valid != recorded.valid:
        item(Kind.VALIDATION_DIFFERS, cid, "valid", recorded.valid, row.valid)
        return
    decision = recorded.decision
    if not row.valid and decision is not None and decision.reason != stored.decision.reason:
        item(Kind.VALIDATION_DIFFERS, cid, "errors", decision.reason, stored.decision.reason)
        return
    # Recorded: the due date computed on receipt; current: the one in force now.
    due = recorded.due_in_force if rules is Rules.CURRENT else recorded.due_date
    if row.due.due_date != due:
        item(Kind.DUE_DATE_DIFFERS, cid, "due_date", due, row.due.due_date)
    elif rules is Rules.RECORDED and row.due.provisional != recorded.provisional:
        item(Kind.DUE_DATE_DIFFERS, cid, "provisional", recorded.provisional, row.due.provisional)
    if decision is None:
        item(Kind.DECISION_DIFFERS, cid, "decision", None, _label(stored))
        return
    if rules is Rules.RECORDED and decision.rule_version != RULE_VERSION:
        # Only today's rules are in this program: an older version cannot be re-run.
        counts.append("not_rederivable")
        return
    for name, was, now in _decision_fields(decision, stored, rules):
        if was != now:
            item(Kind.DECISION_DIFFERS, cid, name, was, now)


def _label(stored: Answered | ForReview) -> str:
    d = stored.decision
    return d.outcome.value if d.outcome is not None else f"review:{d.review}"


def _decision_fields(
    recorded: RecordedDecision, stored: Answered | ForReview, rules: Rules
) -> list[tuple[str, Any, Any]]:
    d = stored.decision
    fields: list[tuple[str, Any, Any]] = [
        ("outcome", recorded.outcome, d.outcome.value if d.outcome else None),
        ("review_reason", recorded.review_reason, d.review.value if d.review else None),
        ("rule", recorded.rule, d.rule),
        ("rule_version", recorded.rule_version, d.rule_version),
        ("reason", recorded.reason, d.reason),
        ("evidence", recorded.evidence, _evidence(stored, recorded.evidence)),
    ]
    if rules is Rules.RECORDED:
        fields.append(("roster_version", recorded.roster_version, stored.roster_version))
    return fields


def _evidence(stored: Answered | ForReview, recorded: Any) -> Any:
    # The rules' evidence is plain JSON values already; the stored text is parsed only
    # when the two differ (to report exactly what was stored).
    plain = dict(stored.decision.evidence)
    return plain if plain == recorded else json.loads(stored.evidence)


def _assess_results(
    recorded: Recorded, basis: Basis, item: Item, later: Item, out: Assessed
) -> tuple[tuple[ResultLookup, ...], tuple[str, ...]]:
    """What the ledger says of the record's results (``item``; a late return: ``later``)
    and which of them to look up on the result topic, with those in conflict already."""
    cid = recorded.certification_id
    deadline = recorded.deadline_in_force
    passed = deadline <= basis.now
    results = sorted(recorded.results, key=lambda r: r.revision)
    if not results:
        if passed:
            item(Kind.NO_RESULT, cid, "result", None, f"deadline {deadline.isoformat()} passed")
        else:
            out.counts.append("open")
        out.timeliness = _timeliness(recorded, None, basis)
        return (), ()
    out.counts.append("answered")
    conflicting = tuple(r.result_id for r in results if r.revision > 1 and r.decided_by == "rules")
    lookups = tuple(
        (
            r.result_id,
            r.acked_at,
            r.acked_at is not None or passed,
            None if r.payload_sha256 is None else _short(r.payload_sha256),
        )
        for r in results
    )
    acks = [r.acked_at for r in results if r.acked_at is not None]
    returned = min(acks) if acks else None
    if returned is not None and returned > deadline:
        later(Kind.LATE, cid, "returned_at", deadline, returned)
        out.counts.append("late")
    elif returned is not None:
        out.counts.append("on_time")
    elif not passed:
        out.counts.append("open")
    out.timeliness = _timeliness(recorded, returned, basis)
    return lookups, conflicting


def _short(sha256: bytes) -> bytes:
    return sha256[:DIGEST_BYTES]


def _timeliness(recorded: Recorded, returned: dt.datetime | None, basis: Basis) -> Timeliness:
    late: int | None = None
    on_time: bool | None = None
    if returned is not None:
        on_time = returned <= recorded.deadline_in_force
        late = 0
        if not on_time:
            try:
                late = basis.current_calendar.count_working_days(
                    recorded.due_in_force, returned.astimezone(CST).date()
                )
            except CalendarError:
                late = None  # outside the calendar: the count is unknown
    return Timeliness(
        certification_id=recorded.certification_id,
        channel=recorded.channel,
        certified_on=recorded.local_date,
        due_date=recorded.due_in_force,
        returned_at=returned.astimezone(CST) if returned is not None else None,
        on_time=on_time,
        working_days_late=late,
    )
