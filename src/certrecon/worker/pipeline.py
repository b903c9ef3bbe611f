"""One batch from ``getmany`` → one PostgreSQL transaction; one record → one outcome.

The per-record path is pure: :func:`process_record` takes a record, the configuration, the
calendar, the roster entries looked up for the batch and the receiving instant, and returns
exactly one of

* :class:`Answered`: a certification with a decision and its result (to publish),
* :class:`ForReview`: a certification with a decision that waits for staff,
* :class:`Rejected`: a dead letter, with an ``invalid_record`` answer when the record has
  a usable certification_id and a due date can be computed.

Whatever goes wrong while one record is decoded, validated, timed, decided or encoded is a
deterministic failure of that record: it becomes the record's dead letter, naming the stage
and the exception type, and the stream goes on. A bug in a rule must not become an outage.
(The worker splits the path in two, :func:`start_record` and :func:`finish_record`, so that
the roster is read once per batch for the ID numbers the first half found.)

``commit_batch`` then writes, in one transaction: the certifications (a certification_id
already stored is ignored), the decisions, the result and dead-letter rows of the outbox,
the review queue rows and the next offset of every topic-partition in the batch. Either
all of a batch's effects exist or none do, so a crash at any point replays the batch with
the same outcome. When PostgreSQL refuses a batch's data (a data exception or a violated
constraint), :func:`commit_bisecting` commits the halves separately, in fetch order, until
the records refused alone are found; each of those is dead-lettered with the SQLSTATE.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic_core import to_json

from certrecon.calendar import Deadline, WorkingCalendar, compute_deadline
from certrecon.consumers.dead_letter import (
    MAX_KEY_BYTES,
    dead_letter_id,
    dead_letter_message,
)
from certrecon.consumers.decode import Invalid, Valid, decode
from certrecon.domain import (
    CST,
    Certification,
    Channel,
    Cycle,
    CycleMode,
    Decision,
    Outcome,
    RosterRecord,
)
from certrecon.evidence.model import EvidenceKind
from certrecon.evidence.wire import EvidenceInvalid, decode_evidence
from certrecon.reconcile import RULE_VERSION, decide
from certrecon.reconcile.evidence import NO_EVIDENCE, PersonEvidence
from certrecon.results import DECIDED_BY_RULES, ResultFields
from certrecon.settings import Settings
from certrecon.store import batches
from certrecon.store.db import Conn, refused_data_state
from certrecon.store.evidence import (
    ResumeTarget,
    TopicEvidence,
    fetch_judged_evidence,
    record_topic_evidence,
)
from certrecon.store.results import (
    NewResult,
    OutboxMessage,
    PreparedResult,
    enqueue,
    prepare_result,
    record_prepared,
)
from certrecon.store.roster import RosterVersion, fetch_roster_versions

COMPARISON_LABEL = "comparison"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One consumed record, as the broker delivered it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    epoch: int = 0
    """The consumer's positioning epoch when the record was fetched (see the worker)."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    topic_channels: Mapping[str, Channel]
    region_prefix: str
    result_topic: str
    dead_letter_topic: str
    group_id: str
    working_days: int
    max_skew: dt.timedelta
    comparison_topic: str | None = None
    """Big-data comparison evidence (contract 1.1); None: not consumed."""
    benefit_action_topic: str | None = None
    """Where ``resume`` actions go; None: none are published."""
    cycle_mode: CycleMode = CycleMode.CALENDAR_YEAR

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            topic_channels=settings.topic_channels(),
            region_prefix=settings.region,
            result_topic=settings.result_topic,
            dead_letter_topic=settings.dead_letter_topic,
            group_id=settings.group_id,
            working_days=settings.deadline_working_days,
            max_skew=dt.timedelta(seconds=settings.max_clock_skew_seconds),
            comparison_topic=settings.comparison_topic,
            benefit_action_topic=settings.benefit_action_topic,
            cycle_mode=settings.cycle_mode,
        )

    def label(self, topic: str) -> str:
        """The metrics label of an inbound topic: its channel, or ``comparison``."""
        channel = self.topic_channels.get(topic)
        return COMPARISON_LABEL if channel is None else channel.value


# ------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class CertificationRow:
    """What the ledger stores of one inbound record that carried a usable certification_id."""

    record: Inbound
    certification_id: str
    channel: Channel
    id_number: str | None
    valid: bool
    certified_at: dt.datetime | None
    certified_at_raw: str | None
    due: Deadline
    sha: bytes
    received_at: dt.datetime
    """The broker's timestamp of the record, or the receiving clock when it has none usable."""


@dataclass(frozen=True, slots=True)
class Answered:
    """A certification answered at once: by the rules, or ``invalid_record``."""

    row: CertificationRow
    decision: Decision
    evidence: str
    """The decision's evidence as JSON text, as stored."""
    result: PreparedResult
    roster_version: int | None = None
    """The roster version the decision used (None: not on the roster, or not decided)."""

    @property
    def record(self) -> Inbound:
        return self.row.record


@dataclass(frozen=True, slots=True)
class ForReview:
    """A certification that waits for a staff decision (逐人核实)."""

    row: CertificationRow
    decision: Decision
    evidence: str
    roster_version: int | None = None
    """The roster version the decision used."""

    @property
    def record(self) -> Inbound:
        return self.row.record


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An inbound record that could not be decoded, validated, processed or stored."""

    record: Inbound
    errors: tuple[str, ...]
    certification_id: str | None = None

    def message(self, config: PipelineConfig) -> OutboxMessage:
        r = self.record
        key, payload = dead_letter_message(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            timestamp_ms=r.timestamp_ms,
            key=r.key,
            value=r.value,
            errors=self.errors,
            certification_id=self.certification_id,
        )
        return OutboxMessage(
            dead_letter_id(r.topic, r.partition, r.offset),
            "dead_letter",
            config.dead_letter_topic,
            key,
            payload,
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that ends as a dead letter, and its ``invalid_record`` answer if it has one."""

    letter: DeadLetter
    message: OutboxMessage
    answered: Answered | None = None

    @property
    def record(self) -> Inbound:
        return self.letter.record


@dataclass(frozen=True, slots=True)
class EvidenceIn:
    """A valid comparison evidence message, to be recorded with its batch."""

    record: Inbound
    item: TopicEvidence


RecordOutcome = Answered | ForReview | Rejected | EvidenceIn


@dataclass(frozen=True, slots=True)
class Pending:
    """A valid certification with its deadline, waiting for its roster entry."""

    row: CertificationRow
    certification: Certification
    decided_at: dt.datetime
    """The receiving clock of its batch, which is also the decision time."""

    @property
    def record(self) -> Inbound:
        return self.row.record


# ------------------------------------------------------------------------- the pure path


def process_record(
    record: Inbound,
    *,
    config: PipelineConfig,
    calendar: WorkingCalendar,
    roster: Mapping[str, RosterRecord],
    received_at: dt.datetime,
) -> RecordOutcome:
    """The whole per-record path: decode → validate → deadline → rules → result encoding.

    ``roster`` maps normalised ID numbers to their roster entries (absent: not on the
    roster); ``received_at`` is the receiving clock, also the decision time. Never raises
    for anything the record contains.
    """
    started = start_record(record, config=config, calendar=calendar, received_at=received_at)
    if isinstance(started, Pending):
        entry = roster.get(started.certification.id_number)
        return finish_record(started, entry, config=config, calendar=calendar)
    return started


def start_record(
    record: Inbound,
    *,
    config: PipelineConfig,
    calendar: WorkingCalendar,
    received_at: dt.datetime,
    receipt: dt.datetime | None = None,
) -> Pending | Rejected | EvidenceIn:
    """Decode, validate and time one record: what can be done before the roster is read.

    ``received_at`` is the receiving clock of the batch (also the decision time).
    Validation is judged against :func:`receiving_instant`, which the ledger stores with
    the certification: the same bytes validated again later (a redelivery, an audit
    replay) give the same answer. A replay passes the recorded instant as ``receipt``.
    Comparison evidence is decoded and validated here too (:func:`start_evidence`).
    """
    if record.topic == config.comparison_topic:
        return start_evidence(record, config=config, received_at=received_at)
    stage = "decoding"
    known: Certification | None = None
    validated_at = receipt or receiving_instant(record, received_at)
    try:
        channel = config.topic_channels[record.topic]
        decoded = decode(
            record.value,
            topic=record.topic,
            channel=channel,
            received_at=validated_at,
            max_skew=config.max_skew,
            supported=_supported(calendar),
        )
        if isinstance(decoded, Invalid):
            stage = "validation"
            env = _Env(config, calendar, received_at, receipt)
            return _invalid(record, decoded, channel, env)
        assert isinstance(decoded, Valid)
        stage = "deadline"
        known = decoded.certification
        deadline = compute_deadline(known.certified_at, calendar, config.working_days)
        row = _row(record, known, channel, deadline, validated_at)
        return Pending(row, known, received_at)
    except Exception as exc:
        return _failed(record, stage, exc, _Env(config, calendar, received_at, receipt), known)


def start_evidence(
    record: Inbound, *, config: PipelineConfig, received_at: dt.datetime
) -> EvidenceIn | Rejected:
    """Decode and validate one comparison evidence message: recorded with the batch, or a
    dead letter."""
    try:
        decoded = decode_evidence(
            record.value, topic=record.topic, received_at=received_at, max_skew=config.max_skew
        )
    except Exception as exc:
        errors: tuple[str, ...] = (f"decoding: internal error ({_describe(exc)})",)
        letter = DeadLetter(record, errors)
        return Rejected(letter, letter.message(config))
    if isinstance(decoded, EvidenceInvalid):
        letter = DeadLetter(record, decoded.errors)
        return Rejected(letter, letter.message(config))
    raw = record.value or b""
    item = TopicEvidence(decoded.evidence, record.topic, record.partition, record.offset, raw)
    return EvidenceIn(record, item)


def finish_record(
    pending: Pending,
    roster_entry: RosterRecord | None,
    *,
    config: PipelineConfig,
    calendar: WorkingCalendar,
    roster_version: int | None = None,
    comparison: PersonEvidence = NO_EVIDENCE,
) -> Answered | ForReview | Rejected:
    """Decide one valid certification against its roster entry (version ``roster_version``)
    and the person's comparison evidence, and encode the outcome."""
    stage = "rules"
    row, cert = pending.row, pending.certification
    try:
        decision = decide(
            cert,
            roster_entry,
            Cycle.of(cert),
            region_prefix=config.region_prefix,
            comparison=comparison,
        )
        stage = "encoding"
        evidence = _evidence(decision)
        if decision.outcome is None:
            return ForReview(row, decision, evidence, roster_version)
        result = _result(row, decision, pending.decided_at, config)
        return Answered(row, decision, evidence, result, roster_version)
    except Exception as exc:
        env = _Env(config, calendar, pending.decided_at)
        return _failed(row.record, stage, exc, env, cert)


@dataclass(frozen=True, slots=True)
class _Env:
    """What every record of a batch is processed with."""

    config: PipelineConfig
    calendar: WorkingCalendar
    received_at: dt.datetime
    receipt: dt.datetime | None = None
    """The recorded receiving instant, when a replay gives it."""

    def receipt_of(self, record: Inbound) -> dt.datetime:
        return self.receipt or receiving_instant(record, self.received_at)

    def deadline_from(self, *bases: dt.datetime | None) -> Deadline | None:
        """The deadline from the first basis the calendar can answer for, if any."""
        for basis in bases:
            if basis is None:
                continue
            try:
                return compute_deadline(basis, self.calendar, self.config.working_days)
            except Exception:  # noqa: S112 - any failure means "try the next basis"
                continue
        return None


@functools.lru_cache(maxsize=4)
def _supported(calendar: WorkingCalendar) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime(calendar.first_year, 1, 1, tzinfo=CST),
        dt.datetime(calendar.last_year + 1, 1, 1, tzinfo=CST),
    )


def _row(
    record: Inbound,
    cert: Certification,
    channel: Channel,
    due: Deadline,
    receipt: dt.datetime,
) -> CertificationRow:
    return CertificationRow(
        record=record,
        certification_id=cert.certification_id,
        channel=channel,
        id_number=cert.id_number,
        valid=True,
        certified_at=cert.certified_at,
        certified_at_raw=cert.certified_at_raw,
        due=due,
        sha=_sha(record),
        received_at=receipt,
    )


def _sha(record: Inbound) -> bytes:
    return hashlib.sha256(record.value or b"").digest()


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def record_time(record: Inbound) -> dt.datetime | None:
    """The broker's timestamp of ``record``, or None when it has none a datetime can hold
    (Kafka's -1 means none; a producer may send anything up to 2**63-1)."""
    if record.timestamp_ms < 0:
        return None
    try:
        return _EPOCH + dt.timedelta(milliseconds=record.timestamp_ms)
    except OverflowError:
        return None


def receiving_instant(record: Inbound, clock: dt.datetime) -> dt.datetime:
    """The instant ``record`` counts as received: the broker's timestamp, unless it has
    none usable or it lies ahead of the receiving ``clock`` (a producer's clock may run
    ahead; taking it would let a certification from the future through the skew check)."""
    stamp = record_time(record)
    return clock if stamp is None or stamp > clock else stamp


def _invalid(record: Inbound, decoded: Invalid, channel: Channel, env: _Env) -> Rejected:
    letter = DeadLetter(record, decoded.errors, decoded.certification_id)
    if decoded.certification_id is None:
        return Rejected(letter, letter.message(env.config))
    try:
        answered = _invalid_answer(record, decoded, decoded.certification_id, channel, env)
    except Exception as exc:
        # The dead letter still lists every failed rule, and says why no answer was given.
        problem = f"encoding: no invalid_record answer ({_describe(exc)})"
        letter = DeadLetter(record, (*decoded.errors, problem), decoded.certification_id)
        answered = None
    return Rejected(letter, letter.message(env.config), answered)


def _invalid_answer(
    record: Inbound, decoded: Invalid, certification_id: str, channel: Channel, env: _Env
) -> Answered | None:
    # The deadline runs from the certification time when that part was usable, else from
    # when the broker received the record (stable across a replay), else from the
    # receiving clock.
    received_at = env.received_at
    receipt = env.receipt_of(record)
    due = env.deadline_from(decoded.certified_at, record_time(record), receipt)
    if due is None:
        return None
    row = CertificationRow(
        record=record,
        certification_id=certification_id,
        channel=channel,
        id_number=decoded.id_number or decoded.id_number_as_sent,
        valid=False,
        certified_at=decoded.certified_at,
        certified_at_raw=decoded.certified_at_raw,
        due=due,
        sha=_sha(record),
        received_at=receipt,
    )
    decision = Decision(
        outcome=Outcome.INVALID_RECORD,
        reason=decoded.reason,
        rule="validation",
        rule_version=RULE_VERSION,
    )
    return Answered(
        row, decision, _evidence(decision), _result(row, decision, received_at, env.config)
    )


def _failed(
    record: Inbound, stage: str, exc: Exception, env: _Env, cert: Certification | None
) -> Rejected:
    """The dead letter of a record whose processing raised, and its ``invalid_record``
    answer when the certification is known and a deadline can be computed."""
    config = env.config
    error = f"{stage}: processing failed ({_describe(exc)})"
    certification_id = cert.certification_id if cert is not None else None
    letter = DeadLetter(record, (error,), certification_id)
    try:
        message = letter.message(config)
    except Exception as again:
        # Only a bug in the dead letter itself gets here: keep the source position.
        letter = DeadLetter(
            Inbound(record.topic, record.partition, record.offset, -1, None, None, record.epoch),
            (error, f"dead letter: could not be encoded ({type(again).__name__})"),
        )
        return Rejected(letter, letter.message(config))
    if cert is None:
        return Rejected(letter, message)
    try:
        answered = _failed_answer(record, cert, error, env)
    except Exception:
        answered = None  # the dead letter alone says what happened
    return Rejected(letter, message, answered)


def _failed_answer(record: Inbound, cert: Certification, error: str, env: _Env) -> Answered | None:
    config, received_at = env.config, env.received_at
    receipt = env.receipt_of(record)
    due = env.deadline_from(cert.certified_at, record_time(record), receipt)
    if due is None:
        return None
    row = _row(record, cert, config.topic_channels[record.topic], due, receipt)
    decision = Decision(
        outcome=Outcome.INVALID_RECORD,
        reason=f"the certification could not be processed: {error}",
        rule="processing_failed",
        rule_version=RULE_VERSION,
    )
    return Answered(row, decision, _evidence(decision), _result(row, decision, received_at, config))


def _describe(exc: BaseException) -> str:
    """The exception type and where it was raised (file and line), never its message: a
    message may quote the record, and dead letters and logs carry no personal data."""
    name = type(exc).__name__
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return name
    code = tb.tb_frame.f_code
    return f"{name} in {code.co_name} at {os.path.basename(code.co_filename)}:{tb.tb_lineno}"


def _evidence(decision: Decision) -> str:
    """The decision's evidence as JSON text, built once per decision and stored as is.

    The rules' evidence holds plain JSON values; pydantic's serialiser writes them in a
    quarter of the standard library's time (compact, non-ASCII unescaped). The database
    stores the value as jsonb, so its canonical text, which the digest covers, does not
    depend on how the text was spaced.
    """
    return to_json(dict(decision.evidence), fallback=str).decode()


def _result(
    row: CertificationRow, decision: Decision, decided_at: dt.datetime, config: PipelineConfig
) -> PreparedResult:
    assert decision.outcome is not None
    return prepare_result(
        NewResult(
            ResultFields(
                row.certification_id,
                1,
                row.channel,
                row.id_number or "",
                decision.outcome,
                decision.reason,
                row.certified_at_raw or "",
                row.due.due_date,
                decided_at,
                DECIDED_BY_RULES,
            ),
            _result_key(row),
        )
    )


def _result_key(row: CertificationRow) -> bytes | None:
    """Results are keyed by the subject's ID number; failing a usable one, by the record's
    key when it is of a sensible size."""
    if row.id_number:
        return row.id_number.encode()
    key = row.record.key
    return key if key is not None and len(key) <= MAX_KEY_BYTES else None


# ------------------------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch decoded and decided record by record, in fetch order, not yet written.

    Preparing needs only reads (the roster), so the next batch can be prepared while the
    previous one is being written.
    """

    outcomes: list[RecordOutcome]
    decided_at: dt.datetime

    @property
    def records(self) -> list[Inbound]:
        return [o.record for o in self.outcomes]


def _finish(
    pending: Pending,
    entry: RosterVersion | None,
    comparison: PersonEvidence,
    *,
    config: PipelineConfig,
    calendar: WorkingCalendar,
) -> RecordOutcome:
    if entry is None:
        return finish_record(pending, None, config=config, calendar=calendar, comparison=comparison)
    return finish_record(
        pending,
        entry.record,
        config=config,
        calendar=calendar,
        roster_version=entry.version,
        comparison=comparison,
    )


async def prepare_batch(
    conn: Conn,
    records: Sequence[Inbound],
    *,
    config: PipelineConfig,
    calendar: WorkingCalendar,
    now: dt.datetime,
) -> PreparedBatch:
    """Every record through :func:`process_record`, against the roster as it is now; the
    roster is read once, for the ID numbers of the valid certifications."""
    started = [start_record(r, config=config, calendar=calendar, received_at=now) for r in records]
    wanted = sorted({s.certification.id_number for s in started if isinstance(s, Pending)})
    roster = await fetch_roster_versions(conn, wanted) if wanted else {}
    # Death or prison evidence still open holds the person's certifications for staff.
    comparison = await fetch_judged_evidence(conn, wanted) if wanted else {}
    outcomes: list[RecordOutcome] = [
        _finish(
            s,
            roster.get(s.certification.id_number),
            comparison.get(s.certification.id_number, NO_EVIDENCE),
            config=config,
            calendar=calendar,
        )
        if isinstance(s, Pending)
        else s
        for s in started
    ]
    return PreparedBatch(outcomes, now)


@dataclass(slots=True)
class BatchReport:
    """What one batch did, for logs and metrics."""

    consumed: int = 0
    consumed_by_channel: dict[str, int] = field(default_factory=dict)
    decided: dict[tuple[str, str], int] = field(default_factory=dict)
    """(channel, outcome or "review") → count, new certifications only."""
    duplicates: int = 0
    rejected: list[DeadLetter] = field(default_factory=list)
    queued_for_review: list[tuple[str, str]] = field(default_factory=list)
    """(certification_id, review reason) of certifications that now wait for staff."""
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    refused_by_database: list[tuple[Inbound, str]] = field(default_factory=list)
    """Records PostgreSQL refused on their own, with the SQLSTATE (dead-lettered)."""

    def merge(self, other: BatchReport) -> BatchReport:
        """This report and a later sub-batch's, added up."""
        merged = BatchReport(
            consumed=self.consumed + other.consumed,
            consumed_by_channel=_add(self.consumed_by_channel, other.consumed_by_channel),
            decided=_add(self.decided, other.decided),
            duplicates=self.duplicates + other.duplicates,
            rejected=[*self.rejected, *other.rejected],
            queued_for_review=[*self.queued_for_review, *other.queued_for_review],
            next_offsets=dict(self.next_offsets),
            refused_by_database=[*self.refused_by_database, *other.refused_by_database],
        )
        for tp, offset in other.next_offsets.items():
            merged.next_offsets[tp] = max(offset, merged.next_offsets.get(tp, 0))
        return merged


_K = TypeVar("_K")


def _add(a: dict[_K, int], b: dict[_K, int]) -> dict[_K, int]:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


Stored = Answered | ForReview
"""An outcome that stores a certification row."""


def _stored(outcome: RecordOutcome) -> Stored | None:
    if isinstance(outcome, Rejected):
        return outcome.answered
    if isinstance(outcome, EvidenceIn):
        return None
    return outcome


def _dedupe(items: list[Stored]) -> tuple[list[Stored], list[Stored]]:
    """Split into the first occurrence of each certification_id and the later ones."""
    first: dict[str, Stored] = {}
    later: list[Stored] = []
    for item in items:
        if item.row.certification_id in first:
            later.append(item)
        else:
            first[item.row.certification_id] = item
    return list(first.values()), later


def _keep_all(record: Inbound) -> bool:
    return True


async def commit_batch(
    conn: Conn,
    batch: PreparedBatch,
    *,
    config: PipelineConfig,
    keep: Callable[[Inbound], bool] = _keep_all,
) -> BatchReport:
    """Write the effects of the kept records, with their next offsets, in one transaction.

    ``keep`` drops records this worker may no longer write (a partition revoked or
    re-positioned since the batch was fetched); their offsets are not stored either.
    """
    outcomes = [o for o in batch.outcomes if keep(o.record)]
    report = BatchReport(consumed=len(outcomes))
    if not outcomes:
        return report
    for outcome in outcomes:
        channel = config.label(outcome.record.topic)
        report.consumed_by_channel[channel] = report.consumed_by_channel.get(channel, 0) + 1
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    dead = [r.letter for r in rejected]
    messages = [r.message for r in rejected]
    unique, repeated = _dedupe([s for o in outcomes if (s := _stored(o)) is not None])
    now = batch.decided_at

    async with conn.transaction():
        inserted = await batches.insert_certifications(
            conn, _certification_columns([s.row for s in unique])
        )
        # A certification_id seen before: a redelivery with the same bytes is ignored; the
        # same id with other content is dead-lettered, because the first result stands.
        already = [s for s in unique if s.row.certification_id not in inserted] + repeated
        if already:
            stored = await batches.stored_digests(conn, [s.row.certification_id for s in already])
            dead_positions = {(d.record.topic, d.record.partition, d.record.offset) for d in dead}
            for item in already:
                report.duplicates += 1
                row = item.row
                position = (row.record.topic, row.record.partition, row.record.offset)
                if stored.get(row.certification_id) != row.sha and position not in dead_positions:
                    problem = (
                        f"certification_id {row.certification_id} was already received "
                        "with different content; the first one stands"
                    )
                    letter = DeadLetter(row.record, (problem,), row.certification_id)
                    dead.append(letter)
                    messages.append(letter.message(config))
        fresh = [s for s in unique if s.row.certification_id in inserted]
        await _write_decisions(conn, fresh, config, now, report)
        evidence = {
            (o.item.topic, o.item.partition, o.item.offset): o
            for o in outcomes
            if isinstance(o, EvidenceIn)
        }
        # Suspended people certified or proven alive now get their payments resumed.
        bases = [
            (s.row.id_number, s.row.due.local_date)
            for s in fresh
            if isinstance(s, Answered)
            and s.decision.outcome is Outcome.QUALIFIED
            and s.row.id_number is not None
        ]
        if evidence:
            recorded = await record_topic_evidence(conn, [o.item for o in evidence.values()])
            bases.extend(
                (i.evidence.id_number, i.evidence.event_date)
                for i in recorded.inserted
                if i.evidence.kind is EvidenceKind.PROOF_OF_LIFE
            )
            report.duplicates += len(recorded.repeated)
            for refused in recorded.conflicting:
                ev = refused.evidence
                problem = (
                    f"evidence_id {ev.evidence_id} of source {ev.source!r} was already "
                    "received with different content; the first one stands"
                )
                position = (refused.topic, refused.partition, refused.offset)
                letter = DeadLetter(evidence[position].record, (problem,))
                dead.append(letter)
                messages.append(letter.message(config))
        if config.benefit_action_topic is not None and bases:
            target = ResumeTarget(config.benefit_action_topic, config.cycle_mode, now)
            await target.publish(conn, bases)
        await enqueue(conn, messages)
        report.rejected = dead
        report.next_offsets = _next_offsets([o.record for o in outcomes])
        await batches.store_offsets(conn, config.group_id, report.next_offsets)
    return report


def _certification_columns(rows: Sequence[CertificationRow]) -> list[list[Any]]:
    return [
        [r.certification_id for r in rows],
        [r.channel.value for r in rows],
        [r.record.topic for r in rows],
        [r.record.partition for r in rows],
        [r.record.offset for r in rows],
        [r.id_number for r in rows],
        [r.valid for r in rows],
        [r.certified_at for r in rows],
        [r.certified_at_raw for r in rows],
        [r.due.local_date for r in rows],
        [r.due.due_date for r in rows],
        [r.due.deadline for r in rows],
        [r.due.provisional for r in rows],
        [r.sha for r in rows],
        [r.record.value or b"" for r in rows],
        [r.received_at for r in rows],
    ]


def _next_offsets(records: Sequence[Inbound]) -> dict[tuple[str, int], int]:
    nxt: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        nxt[key] = max(nxt.get(key, 0), r.offset + 1)
    return nxt


async def _write_decisions(
    conn: Conn,
    items: Sequence[Stored],
    config: PipelineConfig,
    now: dt.datetime,
    report: BatchReport,
) -> None:
    if not items:
        return
    await batches.insert_decisions(
        conn,
        [
            [s.row.certification_id for s in items],
            [s.decision.outcome.value if s.decision.outcome else None for s in items],
            [s.decision.review.value if s.decision.review else None for s in items],
            [s.decision.reason for s in items],
            [s.decision.rule for s in items],
            [s.decision.rule_version for s in items],
            [s.evidence for s in items],
            [s.roster_version for s in items],
        ],
        now,
    )
    for s in items:
        label = s.decision.outcome.value if s.decision.outcome else "review"
        key = (s.row.channel.value, label)
        report.decided[key] = report.decided.get(key, 0) + 1
    reviews = [(s.row.certification_id, s.decision.review) for s in items if s.decision.review]
    report.queued_for_review = [(c, r.value) for c, r in reviews if r is not None]
    await batches.insert_review_items(conn, report.queued_for_review, now)
    await record_prepared(
        conn, [s.result for s in items if isinstance(s, Answered)], topic=config.result_topic
    )


# ----------------------------------------------------------------------------- bisection


def refused_alone(outcome: RecordOutcome, sqlstate: str, config: PipelineConfig) -> Rejected:
    """The dead letter of a record PostgreSQL refused on its own (its own dead letter's
    errors kept, if it was one already)."""
    error = (
        f"database: PostgreSQL refused to store this record (SQLSTATE {sqlstate}); "
        "its certification, if any, is not recorded"
    )
    if isinstance(outcome, Rejected):
        letter = outcome.letter
        letter = DeadLetter(letter.record, (*letter.errors, error), letter.certification_id)
    elif isinstance(outcome, EvidenceIn):
        letter = DeadLetter(outcome.record, (error,))
    else:
        letter = DeadLetter(outcome.record, (error,), outcome.row.certification_id)
    return Rejected(letter, letter.message(config))


async def commit_bisecting(
    batch: PreparedBatch,
    commit: Callable[[PreparedBatch], Awaitable[BatchReport]],
    *,
    config: PipelineConfig,
    on_split: Callable[[int, str], None] | None = None,
) -> BatchReport:
    """``commit(batch)``; when PostgreSQL refuses its data, commit the two halves in fetch
    order, each in its own transaction with its own offsets, down to single records. A
    record refused alone is committed as its dead letter instead, so the stream goes on.

    Any other error (a lost connection, a bug in the SQL) propagates: the caller's retry
    policy decides. ``on_split(size, sqlstate)`` is told of every split, for the logs.
    """
    try:
        return await commit(batch)
    except Exception as exc:
        state = refused_data_state(exc)
        if state is None:
            raise
        if len(batch.outcomes) == 1:
            (only,) = batch.outcomes
            if isinstance(only, Rejected) and only.answered is None:
                raise  # not even the dead letter alone can be stored: a real fault
            report = await commit(
                PreparedBatch([refused_alone(only, state, config)], batch.decided_at)
            )
            report.refused_by_database.append((only.record, state))
            return report
        if on_split is not None:
            on_split(len(batch.outcomes), state)
    middle = len(batch.outcomes) // 2
    first = PreparedBatch(batch.outcomes[:middle], batch.decided_at)
    second = PreparedBatch(batch.outcomes[middle:], batch.decided_at)
    report = await commit_bisecting(first, commit, config=config, on_split=on_split)
    return report.merge(await commit_bisecting(second, commit, config=config, on_split=on_split))


__all__ = [
    "COMPARISON_LABEL",
    "Answered",
    "BatchReport",
    "CertificationRow",
    "DeadLetter",
    "EvidenceIn",
    "ForReview",
    "Inbound",
    "Pending",
    "PipelineConfig",
    "PreparedBatch",
    "RecordOutcome",
    "Rejected",
    "commit_batch",
    "commit_bisecting",
    "finish_record",
    "prepare_batch",
    "process_record",
    "receiving_instant",
    "record_time",
    "start_evidence",
    "start_record",
]
