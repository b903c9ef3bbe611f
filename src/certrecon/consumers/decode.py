"""Decoding of one inbound message value into ``Valid`` or ``Invalid``; pure, no I/O, no clock.

``decode`` never raises for any message content: undecodable bytes, wrong JSON, wrong types
and broken rules all come back as ``Invalid`` with every failed rule listed. It raises only
for caller mistakes (a naive ``received_at``, a negative ``max_skew``).
"""

from __future__ import annotations

import datetime as dt
import re
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from certrecon.consumers.models import (
    CERTIFICATION_ID_PATTERN,
    ERROR_TYPE,
    FIELD_TEXTS,
    MESSAGE_NOT_JSON,
    MESSAGE_NOT_OBJECT,
    MESSAGE_NOT_UTF8,
    MESSAGE_TOMBSTONE,
    TEXT_REQUIRED,
    CertificationWire,
    DecodeContext,
    Decoded,
    Invalid,
    Valid,
    certified_at_problems,
    parse_rfc3339,
)
from certrecon.domain import CST, Channel
from certrecon.ids import id_number_problems, normalise_id_number

__all__ = [
    "DEFAULT_MAX_SKEW",
    "Decoded",
    "Invalid",
    "Valid",
    "decode",
    "usable_certification_id",
]

DEFAULT_MAX_SKEW = dt.timedelta(minutes=10)
"""How far ``certified_at`` may lie ahead of the receiving clock (contract: 10 minutes)."""

_CERTIFICATION_ID = re.compile(CERTIFICATION_ID_PATTERN)
# Longer strings are not echoed into results: they are junk, and results should stay small.
_MAX_ECHO = 64


def decode(
    value: bytes | None,
    *,
    topic: str,
    channel: Channel,
    received_at: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> Decoded:
    """Decode and validate one message value that arrived on ``topic`` (of ``channel``).

    ``received_at`` is the receiving clock (timezone-aware); ``certified_at`` may not be
    more than ``max_skew`` ahead of it.
    """
    if received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    if max_skew < dt.timedelta(0):
        raise ValueError("max_skew must not be negative")
    if value is None:
        return Invalid(channel=channel, errors=(MESSAGE_TOMBSTONE,), raw=None)
    context = DecodeContext(topic, channel, received_at, max_skew)
    try:
        wire = CertificationWire.model_validate_json(value, context=context)
    except ValidationError as exc:
        return _invalid(value, exc, context)
    extra = wire.__pydantic_extra__
    return Valid(
        certification=wire.to_certification(),
        raw=value,
        extra=MappingProxyType(dict(extra)) if extra else MappingProxyType({}),
    )


def usable_certification_id(value: object) -> str | None:
    """``value`` when it is a string of the certification_id shape, else ``None``."""
    if isinstance(value, str) and _CERTIFICATION_ID.fullmatch(value):
        return value
    return None


def _invalid(value: bytes, exc: ValidationError, context: DecodeContext) -> Invalid:
    errors = _error_texts(exc)
    if errors[0] in (MESSAGE_NOT_JSON, MESSAGE_NOT_OBJECT):
        if errors[0] == MESSAGE_NOT_JSON and not _is_utf8(value):
            errors = [MESSAGE_NOT_UTF8]
        return Invalid(channel=context.channel, errors=tuple(errors), raw=value)
    try:
        document = from_json(value)
    except ValueError:  # pragma: no cover - validate_json accepted the same bytes
        document = None
    if not isinstance(document, dict):  # pragma: no cover - as above
        return Invalid(channel=context.channel, errors=tuple(errors), raw=value)
    return _partial(document, tuple(errors), value, context)


def _partial(
    document: dict[str, Any], errors: tuple[str, ...], value: bytes, context: DecodeContext
) -> Invalid:
    id_number = id_number_as_sent = None
    subject = document.get("subject")
    number = subject.get("id_number") if isinstance(subject, dict) else None
    if isinstance(number, str):
        if len(number) <= _MAX_ECHO:
            id_number_as_sent = number
        today = context.received_at.astimezone(CST).date()
        if not id_number_problems(number, today=today):
            id_number = normalise_id_number(number)
    certified_at = certified_at_raw = None
    raw_time = document.get("certified_at")
    if isinstance(raw_time, str):
        parsed = parse_rfc3339(raw_time)
        # Only a time within the rules: a year-1 or year-9999 value would overflow later
        # conversions to China Standard Time.
        if parsed is not None and not certified_at_problems(parsed, context):
            certified_at = parsed
        if len(raw_time) <= _MAX_ECHO:
            certified_at_raw = raw_time
    return Invalid(
        channel=context.channel,
        errors=errors,
        raw=value,
        certification_id=usable_certification_id(document.get("certification_id")),
        id_number=id_number,
        id_number_as_sent=id_number_as_sent,
        certified_at=certified_at,
        certified_at_raw=certified_at_raw,
    )


def _error_texts(exc: ValidationError) -> list[str]:
    texts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        kind = error["type"]
        loc = error["loc"]
        if kind == "json_invalid":
            return [MESSAGE_NOT_JSON]
        if not loc:
            return [MESSAGE_NOT_OBJECT]
        path = ".".join(str(part) for part in loc)
        if kind == ERROR_TYPE:
            ctx = error.get("ctx") or {}
            sub = ctx.get("sub")
            where = f"{path}.{sub}" if sub else path
            texts.extend(f"{where}: {problem}" for problem in ctx.get("problems", ()))
        elif kind == "missing":
            texts.append(f"{path}: {TEXT_REQUIRED}")
        else:
            # The fallback only matters if a pydantic upgrade reports an unforeseen location.
            texts.append(f"{path}: {FIELD_TEXTS.get(path, error['msg'])}")
    return texts


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
