"""Dead letters: what ``certrecon.dead-letter`` carries for an undecodable or invalid message.

The payload is a function of the source record and the errors only (no clock), so a dead
letter written again after a crash is byte-for-byte the same one.

:func:`dead_letter_message` caps every byte field that leaves the service (the Kafka key,
the original key and value inside the payload, the error list), so that no dead letter can
come near Kafka's default maximum message size (1 MB) whatever arrived: a message the broker
refuses would otherwise never be delivered.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from certrecon.consumers.decode import usable_certification_id

__all__ = [
    "MAX_DEAD_LETTER_BYTES",
    "MAX_ERRORS",
    "MAX_ERROR_CHARS",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "dead_letter_id",
    "dead_letter_message",
    "dead_letter_payload",
]

MAX_VALUE_BYTES = 256 * 1024
"""Original value bytes carried in one dead letter (base64 grows them by a third)."""
MAX_KEY_BYTES = 1024
"""Original key bytes carried, both as the dead letter's Kafka key and inside its payload."""
MAX_ERRORS = 32
"""Errors listed in one dead letter; the rest are counted in the last entry."""
MAX_ERROR_CHARS = 500
"""Characters of one error text."""
MAX_DEAD_LETTER_BYTES = 512 * 1024
"""The bound on key plus payload that the caps above guarantee, with room to spare below
Kafka's default maximum message size of 1 MB."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """``<topic>:<partition>:<offset>``: names the source record, so it is stable across re-sends.

    Kafka topic names cannot contain ``:``, so the parts are unambiguous.
    """
    return f"{topic}:{partition}:{offset}"


def dead_letter_payload(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    errors: Sequence[str],
    certification_id: str | None = None,
) -> bytes:
    """The dead-letter message value: compact UTF-8 JSON.

    Fields: ``dead_letter_id``, ``topic``, ``partition``, ``offset``, ``timestamp`` (RFC 3339
    UTC with milliseconds, or null), ``timestamp_ms`` (or null; Kafka reports -1 when the
    record has none), ``key`` and ``value`` (the original bytes in base64, or null),
    ``errors``, and ``certification_id`` when one is given and has the right shape.
    """
    stamp = _timestamp(timestamp_ms)
    document: dict[str, Any] = {
        "dead_letter_id": dead_letter_id(topic, partition, offset),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": stamp,
        "timestamp_ms": timestamp_ms if stamp is not None else None,
        "key": _b64(key),
        "value": _b64(value),
        "errors": [_clean(e) for e in errors],
    }
    usable = usable_certification_id(certification_id)
    if usable is not None:
        document["certification_id"] = usable
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dead_letter_message(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    errors: Sequence[str],
    certification_id: str | None = None,
) -> tuple[bytes | None, bytes]:
    """The Kafka key and value of the dead letter of one record, every byte field capped.

    A key or value longer than its cap is cut to its first bytes, and an error says so
    with the SHA-256 of the whole: the source position leads back to the original, which
    the source topic keeps.
    """
    notes: list[str] = []
    kept_key = _cut("key", key, MAX_KEY_BYTES, notes)
    kept_value = _cut("value", value, MAX_VALUE_BYTES, notes)
    payload = dead_letter_payload(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=kept_key,
        value=kept_value,
        errors=[*_capped_errors(errors, room=MAX_ERRORS - len(notes)), *notes],
        certification_id=certification_id,
    )
    return kept_key, payload


def _cut(what: str, data: bytes | None, limit: int, notes: list[str]) -> bytes | None:
    if data is None or len(data) <= limit:
        return data
    notes.append(
        f"message: {what} of {len(data)} bytes cut to its first {limit} here; "
        f"sha256 {hashlib.sha256(data).hexdigest()}"
    )
    return data[:limit]


def _capped_errors(errors: Sequence[str], *, room: int) -> list[str]:
    texts = [_clean(e)[:MAX_ERROR_CHARS] for e in errors]
    if len(texts) <= room:
        return texts
    return [*texts[: room - 1], f"message: {len(texts) - room + 1} more errors"]


def _clean(text: str) -> str:
    # A lone surrogate cannot be written as UTF-8; errors are made here, but a text that
    # quotes a message field must still never make the dead letter unwritable.
    return text.encode("utf-8", "replace").decode("utf-8")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _timestamp(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    try:
        moment = _EPOCH + dt.timedelta(milliseconds=ms)
    except OverflowError:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
