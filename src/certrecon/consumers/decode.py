"""Decoding of one inbound message value into ``Valid`` or ``Invalid``; pure, no I/O, no clock.

``decode`` never raises for any message content: undecodable bytes, wrong JSON, wrong types
and broken rules all come back as ``Invalid`` with every failed rule listed. It raises only
for caller mistakes (a naive ``received_at``, a negative ``max_skew``).

A message is parsed by the JSON parser pydantic uses (``pydantic_core.from_json``) and its
fields checked here, one by one in the schema's order, with the contract's error texts.
The checks are written out rather than run through pydantic models because they are the
hot path of the worker: the same rules, the same texts, without building and tearing down
a model per message (tests check the outcome and every error text against the pydantic
reading of the schema and against the contract's JSON Schema).

Before the fields are checked, a second parse (the standard library's, with hooks) finds
what the first parser lets through silently: a key given twice (it keeps the last value
while the stored raw bytes hold both), ``NaN``/``Infinity`` or a number too large for a
float, and NUL characters (PostgreSQL text refuses them). Each makes the message invalid.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from certrecon.consumers.fields import FIELDS, check_certification
from certrecon.consumers.models import (
    CERTIFICATION_ID_PATTERN,
    ERROR_TYPE,
    FIELD_TEXTS,
    MESSAGE_NOT_JSON,
    MESSAGE_NOT_OBJECT,
    MESSAGE_NOT_UTF8,
    MESSAGE_TOMBSTONE,
    TEXT_REQUIRED,
    DecodeContext,
    Decoded,
    Invalid,
    Valid,
    certified_at_problems,
    echo_text,
    parse_rfc3339,
)
from certrecon.domain import CST, Channel
from certrecon.ids import id_number_problems, normalise_id_number

__all__ = [
    "DEFAULT_MAX_SKEW",
    "MESSAGE_LEVEL",
    "Decoded",
    "Invalid",
    "MessageScan",
    "Valid",
    "decode",
    "error_texts",
    "usable_certification_id",
]

DEFAULT_MAX_SKEW = dt.timedelta(minutes=10)
"""How far ``certified_at`` may lie ahead of the receiving clock (contract: 10 minutes)."""

_CERTIFICATION_ID = re.compile(CERTIFICATION_ID_PATTERN)
_MAX_SCAN_PROBLEMS = 8
"""Message-level problems listed one by one; more are counted in one last line."""
_PATH_PART = re.compile(r"[a-z_]{1,32}")


def decode(
    value: bytes | None,
    *,
    topic: str,
    channel: Channel,
    received_at: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
    supported: tuple[dt.datetime, dt.datetime] | None = None,
) -> Decoded:
    """Decode and validate one message value that arrived on ``topic`` (of ``channel``).

    ``received_at`` is the receiving clock (timezone-aware); ``certified_at`` may not be
    more than ``max_skew`` ahead of it. ``supported`` is the span of instants the
    working-day calendar covers (default: the shipped calendar's); ``certified_at`` must
    lie inside it.
    """
    if received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    if max_skew < dt.timedelta(0):
        raise ValueError("max_skew must not be negative")
    if value is None:
        return Invalid(channel=channel, errors=(MESSAGE_TOMBSTONE,), raw=None)
    context = (
        DecodeContext(topic, channel, received_at, max_skew)
        if supported is None
        else DecodeContext(topic, channel, received_at, max_skew, supported)
    )
    # The standard parser's reading (a repeated key's value made unusable) and what it
    # found wrong: a partial answer is built from it.
    reading = clean_object(value)
    problems: list[str] = []
    document: Any = reading
    if reading is None:
        try:
            document = from_json(value)
        except ValueError:
            return Invalid(
                channel=channel,
                errors=(MESSAGE_NOT_JSON if _is_utf8(value) else MESSAGE_NOT_UTF8,),
                raw=value,
            )
        if type(document) is not dict:
            return Invalid(channel=channel, errors=(MESSAGE_NOT_OBJECT,), raw=value)
        scan = MessageScan.of(value)
        if scan.document is None:
            # The first parser accepted what the standard one refuses (e.g. an integer of
            # thousands of digits): stricter is safer.
            return Invalid(channel=channel, errors=(MESSAGE_NOT_JSON,), raw=value)
        reading, problems = scan.document, scan.problems
    errors, certification = check_certification(document, context)
    if errors:
        found = [p for p in problems if p not in errors]
        return _partial(reading, (*found, *errors), value, context)
    if problems:
        return _partial(reading, tuple(problems), value, context)
    assert certification is not None
    extra = (
        {} if document.keys() <= FIELDS else {k: v for k, v in document.items() if k not in FIELDS}
    )
    return Valid(certification=certification, raw=value, extra=MappingProxyType(extra))


def usable_certification_id(value: object) -> str | None:
    """``value`` when it is a string of the certification_id shape, else ``None``."""
    if isinstance(value, str) and _CERTIFICATION_ID.fullmatch(value):
        return value
    return None


class _Ambiguous:
    """Stands for the value of a key given more than once: no value of it is usable."""


_AMBIGUOUS = _Ambiguous()


class MessageScan:
    """The standard library's reading of a message, and what it found wrong (duplicate
    keys, non-finite numbers, NUL characters); every inbound message kind goes through it."""

    __slots__ = ("document", "problems")

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None
        """The parsed object (a key given twice maps to ``_AMBIGUOUS``), or ``None`` when
        the bytes are not a UTF-8 JSON object this parser accepts."""
        self.problems: list[str] = []

    @classmethod
    def of(cls, value: bytes) -> MessageScan:
        scan = cls()
        try:
            text = value.decode("utf-8")
            # The common case in one pass with plain dicts; only a message with something
            # to report is parsed again, as pairs, to say where.
            try:
                document = _CLEAN.decode(text)
            except _Dirty:
                pass
            else:
                if "\\u0000" not in text:
                    scan.document = document if isinstance(document, dict) else None
                    return scan
            parsed = json.loads(
                text, object_pairs_hook=_Pairs, parse_constant=_NonFinite, parse_float=_number
            )
        except (ValueError, RecursionError):
            return scan
        found: list[str] = []
        document = _walk(parsed, "", found)
        if isinstance(document, dict):
            scan.document = document
        if len(found) > _MAX_SCAN_PROBLEMS:
            more = len(found) - _MAX_SCAN_PROBLEMS + 1
            found = [*found[: _MAX_SCAN_PROBLEMS - 1], f"message: {more} more such problems"]
        scan.problems = found
        return scan


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_MAX_OPENINGS = 200
"""Brackets a message may open and still be read by one parse: pydantic's parser refuses
nesting deeper than about 200 levels, which the standard one takes."""


def clean_object(value: bytes) -> dict[str, Any] | None:
    """The message as a JSON object, parsed once, when it is one that both parsers read
    alike and the scan has nothing to report about; else None (then the message is read
    by both, to say what is wrong with it).

    The common message needs a single parse. Left to the full reading: anything the
    standard parser refuses or reports (repeated keys, non-finite numbers, integers too
    long), NUL characters, and what pydantic's parser refuses and the standard one takes:
    surrogate escapes, deep nesting.
    """
    try:
        text = value.decode("utf-8")
        if (
            "\\u0000" in text
            or _SURROGATE_ESCAPE.search(text)
            or text.count("{") + text.count("[") > _MAX_OPENINGS
        ):
            return None
        document = _CLEAN.decode(text)
    except (ValueError, RecursionError, _Dirty):
        return None
    return document if type(document) is dict else None


class _Dirty(Exception):
    """Raised by the first parse's hooks at the first repeated key or non-finite number."""


def _clean_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _Dirty
    return document


def _clean_constant(name: str) -> None:
    raise _Dirty


def _clean_number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Dirty
    return value


# Built once: hooks that keep no state, so one decoder serves every message.
_CLEAN = json.JSONDecoder(
    object_pairs_hook=_clean_object, parse_constant=_clean_constant, parse_float=_clean_number
)


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as parsed: its (key, value) pairs in order, duplicates kept."""


class _NonFinite(str):
    """``NaN``, ``Infinity`` or ``-Infinity`` as written in the message."""


def _number(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _walk(node: Any, path: str, found: list[str]) -> Any:
    """Plain Python values for ``node``, noting every problem under ``path``.

    Iterative over the nesting would be more robust still, but the standard parser itself
    refuses nesting deep enough to exhaust the stack (RecursionError above).
    """
    if isinstance(node, _Pairs):
        out: dict[str, Any] = {}
        for key, value in node:
            where = _join(path, key)
            if "\x00" in key:
                found.append(f"message: NUL character in a key under {path or 'the top level'}")
            if key in out:
                found.append(f"message: duplicate key {where}")
                out[key] = _AMBIGUOUS
                _walk(value, where, found)
            else:
                out[key] = _walk(value, where, found)
        return out
    if isinstance(node, list):
        return [_walk(item, f"{path}[{i}]", found) for i, item in enumerate(node)]
    if isinstance(node, _NonFinite):
        found.append(f"message: {_at(path)}non-finite number {str(node)[:16]}")
        return None
    if isinstance(node, str) and "\x00" in node:
        found.append(f"message: {_at(path)}NUL character")
        return None
    return node


def _join(path: str, key: str) -> str:
    # Keys are echoed only when they look like field names (lower-case words): a key may
    # carry personal data, and no ID number is made of lower-case letters alone.
    part = key if _PATH_PART.fullmatch(key) else "<key>"
    return f"{path}.{part}" if path else part


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _partial(
    document: dict[str, Any], errors: tuple[str, ...], value: bytes, context: DecodeContext
) -> Invalid:
    id_number = None
    subject = document.get("subject")
    number = subject.get("id_number") if isinstance(subject, dict) else None
    id_number_as_sent = echo_text(number)
    if isinstance(number, str):
        today = context.received_at.astimezone(CST).date()
        if not id_number_problems(number, today=today):
            id_number = normalise_id_number(number)
    certified_at = None
    raw_time = document.get("certified_at")
    certified_at_raw = echo_text(raw_time)
    if isinstance(raw_time, str):
        parsed = parse_rfc3339(raw_time)
        # Only a time within the rules: a year-1 or year-9999 value would overflow later
        # conversions to China Standard Time, and no deadline exists outside the calendar.
        if parsed is not None and not certified_at_problems(parsed, context):
            certified_at = parsed
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


MESSAGE_LEVEL = frozenset({MESSAGE_NOT_UTF8, MESSAGE_NOT_JSON, MESSAGE_NOT_OBJECT})
"""Errors about the whole message: no field of it could be read."""


def error_texts(
    value: bytes, exc: ValidationError, field_texts: Mapping[str, str] = FIELD_TEXTS
) -> list[str]:
    """The contract's error texts for a message ``value`` that failed validation with ``exc``.

    A message that is not a JSON object gives one of :data:`MESSAGE_LEVEL`; otherwise each
    failed rule gives ``"<field path>: <text>"``, ``field_texts`` naming the rule of a field
    whose type or shape is wrong.
    """
    texts = _field_texts(exc, field_texts)
    if texts[0] == MESSAGE_NOT_JSON and not _is_utf8(value):
        return [MESSAGE_NOT_UTF8]
    return texts


def _field_texts(exc: ValidationError, field_texts: Mapping[str, str]) -> list[str]:
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
            texts.append(f"{path}: {field_texts.get(path, error['msg'])}")
    return texts


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
