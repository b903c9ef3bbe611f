"""Dead letters: what ``certrecon.dead-letter`` carries for an undecodable or invalid message.

The payload is a function of the source record and the errors only (no clock), so a dead
letter written again after a crash is byte-for-byte the same one.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from certrecon.consumers.decode import usable_certification_id

__all__ = ["dead_letter_id", "dead_letter_payload"]

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
        "errors": list(errors),
    }
    usable = usable_certification_id(certification_id)
    if usable is not None:
        document["certification_id"] = usable
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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
