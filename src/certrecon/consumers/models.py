"""The inbound wire schema (``schema_version`` 1) as pydantic models, and the decoding outcome.

Every rule of the contract is checked inside the models, field by field, so that pydantic
collects all failures of one message in a single pass; ``decode`` turns them into the stable
error texts below. Rules that depend on where and when a message arrived (the topic's
channel, the receiving clock) read them from the validation context.

Decisions (the contract leaves them open):

* ``null`` in an optional field (``subject.id_type``, ``on_behalf``, ``residence``,
  ``residence.country``, ``residence.region_code``) means the same as leaving it out.
* Names are kept exactly as sent (no stripping; the reconciliation rules normalise them).
  They must be 1–64 characters, not blank, and free of control characters, line
  separators and invisible format characters (bidi controls, zero-width characters): the
  same rule as the roster import (:func:`certrecon.text.name_problem`).
* ``certified_at``: ``T``/``Z`` may be lower case (RFC 3339 §5.6), fractions of up to 9
  digits are accepted (truncated to microseconds), leap second 60 is rejected. A time
  whose date in China Standard Time lies outside the working-day calendar (2004–2099 as
  shipped) is rejected: no deadline could be computed for it. This also keeps every date
  computation downstream clear of ``datetime`` overflow.
* ``residence.country`` is checked against the shape ``^[A-Z]{2}$`` of the normative
  schema, not against the list of assigned ISO 3166-1 codes.
* Error texts never contain names or ID numbers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from certrecon.calendar.model import FIRST_YEAR, LAST_YEAR
from certrecon.domain import CST, Certification, Channel, IdType
from certrecon.ids import id_number_problems, normalise_id_number
from certrecon.text import NAME_CONTROL, is_hidden, name_problem

__all__ = [
    "CERTIFICATION_ID_PATTERN",
    "EARLIEST_CERTIFIED_AT",
    "LATEST_CERTIFIED_AT",
    "MESSAGE_NOT_JSON",
    "MESSAGE_NOT_OBJECT",
    "MESSAGE_NOT_UTF8",
    "MESSAGE_TOMBSTONE",
    "NAME_MAX_LENGTH",
    "DecodeContext",
    "Decoded",
    "Invalid",
    "SubjectWire",
    "Timestamp",
    "Valid",
    "ahead_problems",
    "certified_at_problems",
    "echo_text",
    "name_problems",
    "parse_rfc3339",
    "rule_failure",
]

CERTIFICATION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
NAME_MAX_LENGTH = 64
EARLIEST_CERTIFIED_AT = dt.datetime(FIRST_YEAR, 1, 1, tzinfo=CST)
"""The first instant of the shipped calendar: earlier certification times are rejected."""
LATEST_CERTIFIED_AT = dt.datetime(LAST_YEAR + 1, 1, 1, tzinfo=CST)
"""The end (exclusive) of the shipped calendar: later certification times are rejected."""

MESSAGE_TOMBSTONE = "message: no value (tombstone)"
MESSAGE_NOT_UTF8 = "message: not valid UTF-8"
MESSAGE_NOT_JSON = "message: not valid JSON"
MESSAGE_NOT_OBJECT = "message: not a JSON object"

# The error type of every rule checked here in Python; ``decode`` expands its ctx.
ERROR_TYPE = "certrecon"

TEXT_REQUIRED = "required"
TEXT_CERTIFIED_AT_FORMAT = "must be an RFC 3339 timestamp with an explicit offset"
TEXT_NAME_BLANK = "must not be blank"
TEXT_NAME_CONTROL = "must not contain control characters"
TEXT_NAME_INVISIBLE = (
    "must not contain invisible formatting characters (bidi controls, zero-width characters)"
)
TEXT_COUNTRY_REQUIRED = "required on the consular channel"
TEXT_COUNTRY_CN = "must not be CN on the consular channel"

FIELD_TEXTS: Mapping[str, str] = MappingProxyType(
    {
        "schema_version": "must be the integer 1",
        "certification_id": "must be a string of 1–64 characters from A-Z a-z 0-9 _ -",
        "channel": "must be one of national_platform, 12333, essc, consular",
        "subject": "must be an object",
        "subject.id_type": "must be one of resident_id, hmt_residence_permit, "
        "foreign_permanent_resident",
        "subject.id_number": "must be a string",
        "subject.name": "must be a string of 1–64 characters",
        "certified_at": TEXT_CERTIFIED_AT_FORMAT,
        "method": "must be one of face, face_video, assisted",
        "face_match": "must be one of pass, fail",
        "on_behalf": "must be an object or null",
        "on_behalf.id_number": "must be a string",
        "on_behalf.name": "must be a string of 1–64 characters",
        "residence": "must be an object or null",
        "residence.country": "must be an ISO 3166-1 alpha-2 code in upper case",
        "residence.region_code": "must be a string or null",
        "insured_region": "must be 6 digits",
    }
)
"""The text for a field whose value has the wrong type or shape (pydantic's own checks)."""

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_FRACTION = re.compile(r"\.([0-9]{1,9})")


class DecodeContext(NamedTuple):
    """Where and when a message arrived; passed to the models as validation context."""

    topic: str
    channel: Channel
    received_at: dt.datetime
    max_skew: dt.timedelta
    supported: tuple[dt.datetime, dt.datetime] = (EARLIEST_CERTIFIED_AT, LATEST_CERTIFIED_AT)
    """The instants (start inclusive, end exclusive) the working-day calendar covers."""


class Timestamp(NamedTuple):
    """A certification time: the text as received and its timezone-aware value."""

    raw: str
    value: dt.datetime


def parse_rfc3339(raw: str) -> dt.datetime | None:
    """An RFC 3339 date-time with an explicit offset as an aware datetime, else ``None``."""
    if len(raw) > 40 or not _RFC3339.fullmatch(raw):
        return None
    text = raw.upper()
    # fromisoformat of Python 3.11 takes at most 6 fraction digits in some positions.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.utcoffset() is not None else None


def rule_failure(*problems: str, sub: str | None = None) -> PydanticCustomError:
    """The error a validator raises for broken rules; ``error_texts`` lists each problem."""
    return PydanticCustomError(ERROR_TYPE, "{problems}", {"problems": problems, "sub": sub})


def name_problems(value: str) -> list[str]:
    """The content rules of a name (its length is checked with its type): not blank, and
    none of the characters :func:`certrecon.text.name_problem` refuses."""
    problems = []
    if not value.strip():
        problems.append(TEXT_NAME_BLANK)
    why = name_problem(value)
    if why == NAME_CONTROL:
        problems.append(TEXT_NAME_CONTROL)
    elif why is not None:
        problems.append(TEXT_NAME_INVISIBLE)
    return problems


def _check_name(value: str) -> str:
    problems = name_problems(value)
    if problems:
        raise rule_failure(*problems)
    return value


def _null_is_resident(value: object) -> object:
    return IdType.RESIDENT_ID.value if value is None else value


def certified_at_problems(parsed: dt.datetime, ctx: DecodeContext) -> list[str]:
    """The range rules of a parsed ``certified_at``: inside the calendar, not in the future."""
    problems = []
    start, end = ctx.supported
    if not start <= parsed < end:
        last = (end.astimezone(CST) - dt.timedelta(days=1)).date()
        problems.append(
            f"is outside the supported calendar range {start.astimezone(CST).date()}.."
            f"{last} (China Standard Time)"
        )
    problems.extend(ahead_problems(parsed, ctx.received_at, ctx.max_skew))
    return problems


def ahead_problems(
    parsed: dt.datetime, received_at: dt.datetime, max_skew: dt.timedelta
) -> list[str]:
    """A message time may not lie more than ``max_skew`` ahead of the receiving clock."""
    if parsed - received_at > max_skew:
        return [f"is more than {_describe(max_skew)} after the time of receipt"]
    return []


def echo_text(value: object, limit: int = 64) -> str | None:
    """``value`` when it may be copied from an invalid message into a result or a column:
    a string of at most ``limit`` characters with no hidden character
    (:func:`certrecon.text.is_hidden`: controls, NUL included, which PostgreSQL text
    refuses; bidi and zero-width format characters; separators; surrogates); else ``None``."""
    if not isinstance(value, str) or len(value) > limit:
        return None
    if not value.isprintable() and any(is_hidden(c) for c in value):
        return None
    return value


def _describe(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"
    return f"{seconds} seconds"


def _received_at(info: ValidationInfo) -> dt.datetime:
    # Any message model's context carries the receiving clock (certifications, evidence).
    received_at = getattr(info.context, "received_at", None)
    if not isinstance(received_at, dt.datetime):
        raise TypeError("validate with a context that carries received_at")
    return received_at


def _check_id_number(value: str, id_type: IdType | None, info: ValidationInfo) -> str:
    today = _received_at(info).astimezone(CST).date()
    problems = id_number_problems(value, id_type, today=today)
    if problems:
        raise rule_failure(*problems)
    return normalise_id_number(value)


Name = Annotated[
    StrictStr, Field(min_length=1, max_length=NAME_MAX_LENGTH), AfterValidator(_check_name)
]


class SubjectWire(BaseModel):
    """``subject``: whose benefit is being certified."""

    model_config = ConfigDict(strict=True, frozen=True)

    # Declared before id_number so that id_number's validator can read it.
    id_type: Annotated[IdType, BeforeValidator(_null_is_resident)] = IdType.RESIDENT_ID
    id_number: StrictStr
    name: Name

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str, info: ValidationInfo) -> str:
        # Absent from info.data when id_type itself failed; its own error says so.
        id_type = info.data.get("id_type")
        return _check_id_number(value, id_type if isinstance(id_type, IdType) else None, info)


@dataclass(frozen=True, slots=True)
class Valid:
    """A message that passed every rule."""

    certification: Certification
    raw: bytes
    """The message value exactly as received."""
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Unknown top-level fields, kept as parsed (nested unknown fields live in ``raw``)."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """A message that could not be decoded or failed at least one rule.

    The partial fields are what could still be read, for the ``invalid_record`` result and
    the dead letter; each is ``None`` when unusable.
    """

    channel: Channel
    """The channel of the topic the message arrived on."""
    errors: tuple[str, ...]
    """Every failed rule as ``"<field path>: <text>"``, in field order."""
    raw: bytes | None
    certification_id: str | None = None
    """Set when present, a string and of the right shape; only then is a result due."""
    id_number: str | None = None
    """Normalised subject ID number, set only when the number itself is valid."""
    id_number_as_sent: str | None = None
    """The subject ID number as sent, when it is a string of at most 64 characters."""
    certified_at: dt.datetime | None = None
    """Set when ``certified_at`` itself passed every rule, so date arithmetic on it is safe."""
    certified_at_raw: str | None = None
    """``certified_at`` as sent, when it is a string of at most 64 characters."""

    @property
    def reason(self) -> str:
        """All errors in one line, for the ``reason`` of an ``invalid_record`` result."""
        return "; ".join(self.errors)


Decoded = Valid | Invalid
