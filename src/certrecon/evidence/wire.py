"""Comparison evidence on the ``mohrss.comparison`` topic (``schema_version`` 1): decoding.

``decode_evidence`` never raises for any message content: undecodable bytes, wrong JSON,
wrong types and broken rules all come back as :class:`EvidenceInvalid` with every failed
rule listed, for the dead letter. The subject follows the certification's rules exactly
(the same model), so a person is identified the same way on every topic.

Pure: no I/O, no clock reads (the receiving clock is a parameter).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
)

from certrecon.consumers.decode import DEFAULT_MAX_SKEW, MESSAGE_LEVEL, MessageScan, error_texts
from certrecon.consumers.models import (
    FIELD_TEXTS,
    MESSAGE_NOT_JSON,
    MESSAGE_TOMBSTONE,
    TEXT_CERTIFIED_AT_FORMAT,
    SubjectWire,
    Timestamp,
    ahead_problems,
    name_problems,
    parse_rfc3339,
    rule_failure,
)
from certrecon.csvfile import parse_iso_date
from certrecon.domain import CST
from certrecon.evidence.model import (
    EVIDENCE_ID_PATTERN,
    SOURCE_MAX_LENGTH,
    Evidence,
    EvidenceKind,
    event_date_problems,
    is_evidence_id,
)

__all__ = [
    "EVIDENCE_FIELD_TEXTS",
    "EvidenceContext",
    "EvidenceDecoded",
    "EvidenceInvalid",
    "EvidenceValid",
    "EvidenceWire",
    "decode_evidence",
]

TEXT_EVENT_DATE_FORMAT = "must be a date of the form YYYY-MM-DD"
TEXT_OBSERVED_AT_EARLY = "is before 2000-01-01, not a plausible observation time"
EARLIEST_OBSERVED_AT = dt.datetime(2000, 1, 1, tzinfo=CST)

EVIDENCE_FIELD_TEXTS: Mapping[str, str] = MappingProxyType(
    {
        "schema_version": FIELD_TEXTS["schema_version"],
        "evidence_id": "must be a string of 1–64 characters from A-Z a-z 0-9 _ : . -",
        "kind": "must be one of death, imprisonment, release, proof_of_life",
        **{k: v for k, v in FIELD_TEXTS.items() if k.startswith("subject")},
        "event_date": TEXT_EVENT_DATE_FORMAT,
        "source": f"must be a string of 1–{SOURCE_MAX_LENGTH} characters",
        "observed_at": TEXT_CERTIFIED_AT_FORMAT,
    }
)
"""The text for a field whose value has the wrong type or shape."""


class EvidenceContext(NamedTuple):
    """When a message arrived; passed to the models as validation context."""

    topic: str
    received_at: dt.datetime
    max_skew: dt.timedelta


def _context(info: ValidationInfo) -> EvidenceContext:
    ctx = info.context
    if not isinstance(ctx, EvidenceContext):
        raise TypeError("validate with context=EvidenceContext(...)")
    return ctx


def _parse_event_date(value: object, info: ValidationInfo) -> dt.date:
    day = parse_iso_date(value) if isinstance(value, str) else None
    if day is None:
        raise rule_failure(TEXT_EVENT_DATE_FORMAT)
    problems = event_date_problems(day, _context(info).received_at.astimezone(CST).date())
    if problems:
        raise rule_failure(*problems)
    return day


def _parse_observed_at(value: object, info: ValidationInfo) -> Timestamp:
    ctx = _context(info)
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None or not isinstance(value, str):
        raise rule_failure(TEXT_CERTIFIED_AT_FORMAT)
    problems = [TEXT_OBSERVED_AT_EARLY] if parsed < EARLIEST_OBSERVED_AT else []
    problems.extend(ahead_problems(parsed, ctx.received_at, ctx.max_skew))
    if problems:
        raise rule_failure(*problems)
    return Timestamp(value, parsed)


def _check_source(value: str) -> str:
    problems = name_problems(value)
    if problems:
        raise rule_failure(*problems)
    return value


Source = Annotated[
    StrictStr, Field(min_length=1, max_length=SOURCE_MAX_LENGTH), AfterValidator(_check_source)
]


class EvidenceWire(BaseModel):
    """A comparison evidence message, ``schema_version`` 1; unknown fields are kept."""

    model_config = ConfigDict(strict=True, frozen=True, extra="allow")

    schema_version: Annotated[StrictInt, Field(ge=1, le=1)]
    evidence_id: Annotated[StrictStr, Field(pattern=EVIDENCE_ID_PATTERN)]
    kind: EvidenceKind
    subject: SubjectWire
    event_date: Annotated[dt.date, PlainValidator(_parse_event_date)]
    source: Source
    observed_at: Annotated[Timestamp, PlainValidator(_parse_observed_at)]

    def to_evidence(self) -> Evidence:
        return Evidence(
            evidence_id=self.evidence_id,
            source=self.source,
            kind=self.kind,
            id_number=self.subject.id_number,
            name=self.subject.name,
            event_date=self.event_date,
            observed_at=self.observed_at.value,
        )


@dataclass(frozen=True, slots=True)
class EvidenceValid:
    """A message that passed every rule."""

    evidence: Evidence
    raw: bytes
    """The message value exactly as received."""


@dataclass(frozen=True, slots=True)
class EvidenceInvalid:
    """A message that could not be decoded or failed at least one rule: a dead letter."""

    errors: tuple[str, ...]
    """Every failed rule as ``"<field path>: <text>"``, in field order."""
    raw: bytes | None
    evidence_id: str | None = None
    """Set when present and of the right shape, for searching the dead letters."""

    @property
    def reason(self) -> str:
        return "; ".join(self.errors)


EvidenceDecoded = EvidenceValid | EvidenceInvalid


def decode_evidence(
    value: bytes | None,
    *,
    topic: str,
    received_at: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> EvidenceDecoded:
    """Decode and validate one message value that arrived on ``topic`` at ``received_at``.

    ``observed_at`` may not be more than ``max_skew`` ahead of ``received_at``, and
    ``event_date`` not after its local date.
    """
    if received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    if max_skew < dt.timedelta(0):
        raise ValueError("max_skew must not be negative")
    if value is None:
        return EvidenceInvalid(errors=(MESSAGE_TOMBSTONE,), raw=None)
    context = EvidenceContext(topic, received_at, max_skew)
    # The same message-level checks as a certification's: duplicate keys, non-finite
    # numbers and NUL characters make a message invalid.
    scan = MessageScan.of(value)
    try:
        wire = EvidenceWire.model_validate_json(value, context=context)
    except ValidationError as exc:
        errors = error_texts(value, exc, EVIDENCE_FIELD_TEXTS)
        if errors[0] in MESSAGE_LEVEL:
            return EvidenceInvalid(errors=tuple(errors), raw=value)
        if scan.document is None:
            return EvidenceInvalid(errors=(MESSAGE_NOT_JSON,), raw=value)
        problems = [p for p in scan.problems if p not in errors]
        return _partial(scan.document, (*problems, *errors), value)
    if scan.document is None:
        # pydantic's parser accepted what the standard one refuses: stricter is safer.
        return EvidenceInvalid(errors=(MESSAGE_NOT_JSON,), raw=value)
    if scan.problems:
        return _partial(scan.document, tuple(scan.problems), value)
    return EvidenceValid(evidence=wire.to_evidence(), raw=value)


def _partial(document: dict[str, object], errors: tuple[str, ...], value: bytes) -> EvidenceInvalid:
    found = document.get("evidence_id")
    usable = found if isinstance(found, str) and is_evidence_id(found) else None
    return EvidenceInvalid(errors=errors, raw=value, evidence_id=usable)
