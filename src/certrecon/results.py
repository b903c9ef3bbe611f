"""The outbound result message (``schema_version`` 1) returned to the ministry system.

:meth:`ResultFields.encode` writes a result's bytes directly: the worker encodes one per
certification, and building a validated model only to serialise it cost more than the
rest of the answer. :class:`ResultMessage` is the same message as a model, for reading
results back and for code that wants the fields; its ``to_bytes`` is
``ResultFields.encode``, so a result has one encoding whichever way it was built.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from certrecon.domain import Channel, Outcome

__all__ = ["DECIDED_BY_RULES", "ResultFields", "ResultMessage", "result_id"]

DECIDED_BY_RULES = "rules"
"""``decided_by`` of an automatic result; a staff decision uses ``staff:<operator id>``."""

_CERTIFICATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DECIDED_BY = re.compile(r"rules|staff:.+")
# JSON text of a string: non-ASCII unescaped, control characters as \u00XX (as pydantic).
_string = json.encoder.encode_basestring


def result_id(certification_id: str, revision: int) -> str:
    """``<certification_id>:<revision>``; revision 1 is the first result, corrections count up.

    Raises ``ValueError`` for a malformed certification_id or a revision below 1.
    """
    if not _CERTIFICATION_ID.fullmatch(certification_id):
        raise ValueError("certification_id must be 1-64 characters of [A-Za-z0-9_-]")
    if isinstance(revision, bool) or revision < 1:
        raise ValueError("revision must be an integer of at least 1")
    return f"{certification_id}:{revision}"


@dataclass(frozen=True, slots=True)
class ResultFields:
    """The fields a result message is made of (``result_id`` is derived from the first two).

    One value carries them from the decision to the bytes: :meth:`encode` writes the
    message, :meth:`message` builds it as a model.
    """

    certification_id: str
    revision: int
    channel: Channel
    id_number: str
    outcome: Outcome
    reason: str
    certified_at: str
    """As received (the raw text), not re-formatted."""
    due_date: dt.date
    decided_at: dt.datetime
    decided_by: str
    """``rules`` or ``staff:<operator id>``."""

    def encode(self) -> tuple[str, bytes]:
        """The ``result_id`` and the bytes of the message: compact UTF-8 JSON, non-ASCII
        text unescaped, keys in ``result.schema.json``'s order, ``decided_at`` in RFC 3339
        (``Z`` for UTC, microseconds only when there are any).

        Raises ``ValueError`` for what the schema refuses: a malformed certification_id, a
        revision below 1, a naive ``decided_at``, a ``decided_by`` other than ``rules`` or
        ``staff:<id>``, a text that is not a string or cannot be written as UTF-8.
        """
        rid = result_id(self.certification_id, self.revision)
        id_number, reason, certified_at = self.id_number, self.reason, self.certified_at
        decided_by, due_date = self.decided_by, self.due_date
        if not (type(id_number) is type(reason) is type(certified_at) is type(decided_by) is str):
            raise ValueError("result texts must be strings")
        if decided_by != DECIDED_BY_RULES and not _DECIDED_BY.fullmatch(decided_by):
            raise ValueError("decided_by must be rules or staff:<id>")
        if type(due_date) is not dt.date:
            raise ValueError("due_date must be a date")
        channel, outcome = self.channel, self.outcome
        if type(channel) is not Channel:
            channel = Channel(channel)
        if type(outcome) is not Outcome:
            outcome = Outcome(outcome)
        text = (
            f'{{"schema_version":1,"result_id":"{rid}",'
            f'"certification_id":"{self.certification_id}",'
            f'"channel":"{channel.value}","id_number":{_string(id_number)},'
            f'"outcome":"{outcome.value}","reason":{_string(reason)},'
            f'"certified_at":{_string(certified_at)},"due_date":"{due_date.isoformat()}",'
            f'"decided_at":"{_rfc3339(self.decided_at)}","decided_by":{_string(decided_by)}}}'
        )
        # A lone surrogate cannot be written: UnicodeEncodeError is a ValueError.
        return rid, text.encode("utf-8")

    def message(self) -> ResultMessage:
        """The message as a model; raises ``ValueError`` (pydantic's ``ValidationError`` is
        one) for a field that breaks the schema, e.g. a naive ``decided_at``."""
        return ResultMessage(
            result_id=result_id(self.certification_id, self.revision),
            certification_id=self.certification_id,
            channel=self.channel,
            id_number=self.id_number,
            outcome=self.outcome,
            reason=self.reason,
            certified_at=self.certified_at,
            due_date=self.due_date,
            decided_at=self.decided_at,
            decided_by=self.decided_by,
        )


class ResultMessage(BaseModel):
    """One result, field for field as ``result.schema.json``; fields serialise in that order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Annotated[StrictInt, Field(ge=1, le=1)] = 1
    result_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}:[1-9][0-9]*$")]
    certification_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    channel: Channel
    id_number: str
    outcome: Outcome
    reason: str
    certified_at: str
    """As received (the raw text), not re-formatted."""
    due_date: dt.date
    decided_at: AwareDatetime
    decided_by: Annotated[str, Field(pattern=r"^(rules|staff:.+)$")]

    @model_validator(mode="after")
    def _result_id_names_certification(self) -> Self:
        if self.result_id.rpartition(":")[0] != self.certification_id:
            raise ValueError("result_id must be <certification_id>:<revision>")
        return self

    @classmethod
    def build(
        cls,
        *,
        certification_id: str,
        revision: int,
        channel: Channel,
        id_number: str,
        outcome: Outcome,
        reason: str,
        certified_at: str,
        due_date: dt.date,
        decided_at: dt.datetime,
        decided_by: str,
    ) -> ResultMessage:
        """A result with ``result_id`` derived from ``certification_id`` and ``revision``.

        Raises ``ValueError`` (pydantic's ``ValidationError`` is one) for a field that breaks
        the schema, e.g. a naive ``decided_at``.
        """
        return ResultFields(
            certification_id,
            revision,
            channel,
            id_number,
            outcome,
            reason,
            certified_at,
            due_date,
            decided_at,
            decided_by,
        ).message()

    @property
    def revision(self) -> int:
        """The revision part of ``result_id``."""
        return int(self.result_id.rpartition(":")[2])

    @property
    def fields(self) -> ResultFields:
        return ResultFields(
            self.certification_id,
            self.revision,
            self.channel,
            self.id_number,
            self.outcome,
            self.reason,
            self.certified_at,
            self.due_date,
            self.decided_at,
            self.decided_by,
        )

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON, non-ASCII text unescaped, keys in schema order."""
        return self.fields.encode()[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> ResultMessage:
        """Parse a result message (e.g. read back from the result topic)."""
        return cls.model_validate_json(data)


def _rfc3339(value: dt.datetime) -> str:
    """``value`` as pydantic writes an aware datetime: ``Z`` for a zero offset, else
    ``±HH:MM`` (seconds of an offset dropped), fraction only when not zero."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("decided_at must be timezone-aware")
    # Keyed on the offset too: equal instants with other offsets are equal datetimes.
    return _rfc3339_at(value, offset)


@functools.lru_cache(maxsize=256)
def _rfc3339_at(value: dt.datetime, offset: dt.timedelta) -> str:
    """Cached: the worker stamps every result of a batch with the batch's decision instant."""
    local = value.replace(tzinfo=None).isoformat()
    seconds = int(offset.total_seconds())
    if seconds == 0:
        return f"{local}Z"
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{local}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
