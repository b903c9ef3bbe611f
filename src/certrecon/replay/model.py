"""What the replay compares and what it reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from certrecon.domain import RosterRecord


class Kind(StrEnum):
    """The contract's discrepancy kinds."""

    MISSING_IN_LEDGER = "missing_in_ledger"
    BYTES_DIFFER = "bytes_differ"
    VALIDATION_DIFFERS = "validation_differs"
    DUE_DATE_DIFFERS = "due_date_differs"
    DECISION_DIFFERS = "decision_differs"
    NO_RESULT = "no_result"
    RESULT_NOT_PUBLISHED = "result_not_published"
    PUBLISHED_DIFFERS = "published_differs"
    CONFLICTING_RESULTS = "conflicting_results"
    ORPHAN_RESULT = "orphan_result"
    LATE = "late"
    MISSING_DEAD_LETTER = "missing_dead_letter"
    WINDOW_TRUNCATED = "window_truncated"


class Rules(StrEnum):
    RECORDED = "recorded"
    """Re-derive with what the decision recorded: its roster version, the calendar as it
    was then, the receiving instant."""
    CURRENT = "current"
    """Re-derive with today's rules, roster and calendar: what would change."""


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One line of ``items.jsonl``."""

    kind: Kind
    certification_id: str | None
    topic: str
    partition: int
    offset: int | None
    field: str | None = None
    recorded: Any = None
    replayed: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "certification_id": self.certification_id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "field": self.field,
            "recorded": _plain(self.recorded),
            "replayed": _plain(self.replayed),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


class RecordedResult(NamedTuple):
    """A result revision in the ledger, with its published bytes' digest and its ack."""

    result_id: str
    revision: int
    decided_by: str
    payload_sha256: bytes | None
    """SHA-256 of the outbox bytes (None: a result from before the ledger kept them)."""
    acked_at: dt.datetime | None
    refused: bool
    """The broker refused the message for good (an outbox failure is recorded)."""


class RecordedDecision(NamedTuple):
    outcome: str | None
    review_reason: str | None
    reason: str
    rule: str
    rule_version: str
    evidence: Any
    """Parsed JSON."""
    decided_at: dt.datetime
    roster_version: int | None
    roster: RosterRecord | None
    """The roster version the decision names, as it was recorded."""


class Recorded(NamedTuple):
    """Everything the ledger holds about one certification that the replay checks.

    This and the other rows a replay builds per record are named tuples: immutable like a
    frozen dataclass, built in a fifth of its time, and cheap to hand to another process."""

    certification_id: str
    channel: str
    topic: str
    partition: int
    offset: int
    id_number: str | None
    valid: bool
    local_date: dt.date
    due_date: dt.date
    provisional: bool
    content_sha256: bytes
    raw_sha256: bytes
    received_at: dt.datetime
    due_in_force: dt.date
    deadline_in_force: dt.datetime
    decision: RecordedDecision | None
    results: tuple[RecordedResult, ...] = ()

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


TIMELINESS_HEADER = (
    "certification_id",
    "channel",
    "certified_on",
    "due_date",
    "returned_at",
    "on_time",
    "working_days_late",
)
"""The columns of ``timeliness.csv``."""


class Timeliness(NamedTuple):
    """One line of ``timeliness.csv``."""

    certification_id: str
    channel: str
    certified_on: dt.date
    due_date: dt.date
    returned_at: dt.datetime | None
    on_time: bool | None
    working_days_late: int | None

    def row(self) -> list[str]:
        return [
            self.certification_id,
            self.channel,
            self.certified_on.isoformat(),
            self.due_date.isoformat(),
            "" if self.returned_at is None else self.returned_at.isoformat(),
            "" if self.on_time is None else str(self.on_time).lower(),
            "" if self.working_days_late is None else str(self.working_days_late),
        ]


@dataclass(frozen=True, slots=True)
class PartitionSpan:
    """Where the replay read one partition: ``start <= offset < end``, the end fixed when
    the replay started (the fetch high watermark)."""

    topic: str
    partition: int
    start: int
    end: int
    log_start: int
    lookup: str
    """How the start was found: ``timestamp`` (the broker's look-up held) or ``scan`` (it
    could not be trusted: read from the oldest record kept, every record filtered by its
    own timestamp)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "start_offset": self.start,
            "end_offset": self.end,
            "log_start_offset": self.log_start,
            "start_found_by": self.lookup,
        }


COUNTS = (
    "records_read",
    "records_in_window",
    "certifications",
    "dead_letters_only",
    "redelivered",
    "answered",
    "on_time",
    "late",
    "open",
    "awaiting_publication",
    "not_rederivable",
)
"""Counters of ``summary.json`` besides the discrepancy kinds."""


@dataclass(slots=True)
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Kind, 0))

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def found(self, item: Discrepancy) -> None:
        self.kinds[item.kind] += 1

    @property
    def discrepancies(self) -> int:
        return sum(self.kinds.values())

    @property
    def clean(self) -> bool:
        return self.discrepancies == 0


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """A calendar override (``day``) or publication (``year``) event, in recorded order."""

    recorded_at: dt.datetime
    day: dt.date | None
    year: int | None
    value: bool | None
    """Working day / published; None: the override was removed."""
    source: str | None
