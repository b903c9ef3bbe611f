"""The row digest: one definition, used by every writer and by ``audit verify``.

A ledger row's digest is the SHA-256 of::

    b"certrecon-row/2 " + table name + b"\\n" + the row's binary encoding

where the binary encoding is exactly what PostgreSQL's ``record_send`` returns for
``ROW(col1, col2, ...)`` over the table's digest columns (:data:`TABLES`): the number of
columns (4 bytes, big-endian), then per column its type OID (4 bytes), the length of its
value (4 bytes; -1 for NULL) and the value in PostgreSQL's binary format (text as UTF-8,
integers big-endian, ``timestamptz`` as microseconds since 2000-01-01 UTC, ``date`` as days
since 2000-01-01, ``bytea`` as is, ``jsonb`` as version byte 1 and its canonical text).

These are the stored bytes themselves, not a re-serialisation: verification asks the
database for ``record_send(ROW(...))`` of each row as stored and hashes it; writers encode
the values they insert the same way (:func:`row_digest`), so a batch's digests cost no
round trip. ``jsonb`` values are taken as the database returns them (its canonical text).

Rows recorded before this definition (``sql/0004_ledger.sql``) carry format 1 digests,
computed by the database over ``to_jsonb``; verification checks those the old way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

FORMAT = 2
"""The digest format of rows recorded by this definition (1: sql/0004's ``to_jsonb``)."""

_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_PG_EPOCH_DAY = dt.date(2000, 1, 1).toordinal()
_INT4 = struct.Struct(">i")
_INT8 = struct.Struct(">q")
_UINT8 = struct.Struct(">Q")
_NULL = b"\xff\xff\xff\xff"


def _text(v: Any) -> bytes:
    return str(v).encode()


def _int4(v: Any) -> bytes:
    return _INT4.pack(v)


def _int8(v: Any) -> bytes:
    return _INT8.pack(v)


def _bool(v: Any) -> bytes:
    return b"\x01" if v else b"\x00"


def _timestamptz(v: Any) -> bytes:
    if not isinstance(v, dt.datetime) or v.utcoffset() is None:
        raise ValueError("a timestamptz digest needs a timezone-aware datetime")
    since = v - _PG_EPOCH
    return _INT8.pack(since.days * 86_400_000_000 + since.seconds * 1_000_000 + since.microseconds)


def _date(v: Any) -> bytes:
    if isinstance(v, dt.datetime) or not isinstance(v, dt.date):
        raise ValueError("a date digest needs a date")
    return _INT4.pack(v.toordinal() - _PG_EPOCH_DAY)


def _bytea(v: Any) -> bytes:
    return bytes(v)


def _jsonb(v: Any) -> bytes:
    if not isinstance(v, str):
        raise ValueError("a jsonb digest needs the database's canonical text of the value")
    return b"\x01" + v.encode()


def _xid8(v: Any) -> bytes:
    return _UINT8.pack(int(v))


# type name -> (OID, encoder)
_TYPES: dict[str, tuple[int, Callable[[Any], bytes]]] = {
    "text": (25, _text),
    "int4": (23, _int4),
    "int8": (20, _int8),
    "bool": (16, _bool),
    "timestamptz": (1184, _timestamptz),
    "date": (1082, _date),
    "bytea": (17, _bytea),
    "jsonb": (3802, _jsonb),
    "xid8": (5069, _xid8),
}


@dataclass(frozen=True, slots=True)
class TableDigest:
    """How one ledger table's rows are digested and named."""

    name: str
    key: str
    """The column that names a row (its text form is the key in ``ledger_entry``)."""
    certification: str | None
    """The column holding the certification_id, if any."""
    columns: tuple[tuple[str, str], ...]
    """(column, type) covered by the digest, in this order."""
    optional: int = 0
    """How many of the last columns are optional: added after rows were digested, they are
    encoded only up to the last one that is not NULL, so a row without them digests as it
    did before they existed (and setting or clearing one changes the column count)."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    @property
    def prefix(self) -> bytes:
        return f"certrecon-row/{FORMAT} {self.name}\n".encode()


def _table(
    name: str, key: str, certification: str | None, columns: str, optional: int = 0
) -> TableDigest:
    pairs = tuple(
        (column, kind)
        for column, _, kind in (part.strip().partition(" ") for part in columns.split(","))
    )
    for _, kind in pairs:
        if kind not in _TYPES:
            raise ValueError(f"no digest encoding for type {kind}")
    return TableDigest(name, key, certification, pairs, optional)


# Every column of each ledger table, except the outbox's bookkeeping (its id, the writing
# transaction and the insert instant, which the database assigns and the relay uses for
# ordering only). sql/0005 keeps the same lists in ledger_table.digest_columns (sql/0007:
# the cycle's tables; roster_version's optional suspended_on, ledger_table.optional_columns).
TABLES: dict[str, TableDigest] = {
    t.name: t
    for t in (
        _table(
            "certification",
            "certification_id",
            "certification_id",
            "certification_id text, channel text, topic text, kafka_partition int4, "
            "kafka_offset int8, id_number text, valid bool, certified_at timestamptz, "
            "certified_at_raw text, local_date date, due_date date, deadline timestamptz, "
            "provisional bool, content_sha256 bytea, raw bytea, received_at timestamptz",
        ),
        _table(
            "decision",
            "certification_id",
            "certification_id",
            "certification_id text, outcome text, review_reason text, reason text, rule text, "
            "rule_version text, evidence jsonb, decided_at timestamptz, roster_version int8",
        ),
        _table(
            "result",
            "result_id",
            "certification_id",
            "certification_id text, revision int4, result_id text, outcome text, reason text, "
            "decided_at timestamptz, decided_by text, note text, payload jsonb",
        ),
        _table(
            "review_item",
            "certification_id",
            "certification_id",
            "certification_id text, reason text, queued_at timestamptz",
        ),
        _table(
            "outbox",
            "message_id",
            None,
            "message_id text, kind text, topic text, key bytea, payload bytea",
        ),
        _table("outbox_ack", "message_id", None, "message_id text, acked_at timestamptz"),
        _table(
            "outbox_failure",
            "message_id",
            None,
            "message_id text, reason text, failed_at timestamptz",
        ),
        _table(
            "staff_decision",
            "id",
            "certification_id",
            "id int8, certification_id text, result_id text, outcome text, decided_by text, "
            "login text, note text, decided_at timestamptz",
        ),
        _table(
            "deadline_revision",
            "id",
            "certification_id",
            "id int8, certification_id text, due_date date, deadline timestamptz, "
            "provisional bool, recorded_at timestamptz",
        ),
        _table(
            "sla_alert",
            "alert_id",
            "certification_id",
            "alert_id text, certification_id text, level text, due_date date, "
            "deadline timestamptz, working_days_left int4, provisional bool, "
            "raised_at timestamptz",
        ),
        _table(
            "roster_version",
            "version",
            None,
            "version int8, id_number text, name text, benefit_type text, status text, "
            "first_paid_on date, deceased_on date, imprisoned_from date, "
            "imprisoned_until date, insured_region text, recorded_at timestamptz, "
            "suspended_on date",
            optional=1,
        ),
        _table(
            "comparison_evidence",
            "id",
            None,
            "id int8, source text, evidence_id text, kind text, id_number text, name text, "
            "event_date date, observed_at timestamptz, via text, topic text, "
            "kafka_partition int4, kafka_offset int8, raw bytea, file_name text, "
            "file_sha256 bytea, file_line int8, recorded_at timestamptz",
        ),
        _table(
            "evidence_review_item",
            "evidence_ref",
            None,
            "evidence_ref int8, id_number text, queued_at timestamptz",
        ),
        _table(
            "evidence_verdict",
            "id",
            None,
            "id int8, decision_id text, evidence_ref int8, verdict text, effective_date date, "
            "decided_by text, login text, note text, decided_at timestamptz",
        ),
        _table(
            "assisted_certification",
            "id",
            None,
            "id int8, id_number text, how text, certified_at timestamptz, local_date date, "
            "decided_by text, login text, note text, recorded_at timestamptz",
        ),
        _table(
            "benefit_action",
            "action_id",
            None,
            "action_id text, action text, id_number text, year int4, reason text, "
            "decided_by text, suspended_on date, effective_date date, basis text, "
            "basis_date date, raised_at timestamptz",
        ),
        _table(
            "calendar_override_event",
            "id",
            None,
            "id int8, day date, working bool, source text, recorded_at timestamptz",
        ),
        _table(
            "calendar_publication_event",
            "id",
            None,
            "id int8, year int4, published bool, source text, recorded_at timestamptz",
        ),
    )
}


def _field(kind: str, value: Any) -> bytes:
    """One column of ``record_send``: type OID, length, value."""
    oid, encode = _TYPES[kind]
    if value is None:
        return _INT4.pack(oid) + _NULL
    data = encode(value)
    return _INT4.pack(oid) + _INT4.pack(len(data)) + data


def _column(kind: str, values: Sequence[Any]) -> list[bytes]:
    """:func:`_field` of every value of one column. A batch is encoded column by column,
    each distinct value once (a batch repeats its decision instant, channel, topic, ...);
    ``bytea`` values are nearly always distinct and are not looked up."""
    oid, encode = _TYPES[kind]
    head = _INT4.pack(oid)
    pack = _INT4.pack
    if kind == "bytea":
        null = head + _NULL
        return [null if v is None else head + pack(len(v)) + bytes(v) for v in values]
    done: dict[Any, bytes] = {None: head + _NULL}
    out = []
    for v in values:
        field = done.get(v)
        if field is None:
            data = encode(v)
            field = done[v] = head + pack(len(data)) + data
        out.append(field)
    return out


def _encoded_width(table: TableDigest, values: Sequence[Any]) -> int:
    """How many columns of a row are encoded: the optional trailing ones only up to the
    last that is not NULL."""
    width = len(values)
    required = width - table.optional
    while width > required and values[width - 1] is None:
        width -= 1
    return width


def encode_row(table: TableDigest, values: Sequence[Any]) -> bytes:
    """``record_send(ROW(...))`` of ``values``, given in the order of ``table.columns``."""
    if len(values) != len(table.columns):
        raise ValueError(f"{table.name}: {len(values)} values for {len(table.columns)} columns")
    width = _encoded_width(table, values)
    fields = [
        _field(kind, v) for (_, kind), v in zip(table.columns[:width], values[:width], strict=True)
    ]
    return _INT4.pack(width) + b"".join(fields)


def digest_encoded(table: TableDigest, encoded: bytes) -> bytes:
    """The digest of a row given as ``record_send`` bytes (what verification reads)."""
    return hashlib.sha256(table.prefix + encoded).digest()


def row_digest(table: str | TableDigest, values: Sequence[Any]) -> bytes:
    """The digest of one row given as its digest columns' values, in order."""
    spec = TABLES[table] if isinstance(table, str) else table
    return digest_encoded(spec, encode_row(spec, values))


def column_digests(table: str | TableDigest, columns: Sequence[Sequence[Any]]) -> list[bytes]:
    """The digests of rows given column-wise (one sequence per digest column, in order):
    the same as :func:`row_digest` of each row, encoded a column at a time."""
    spec = TABLES[table] if isinstance(table, str) else table
    if len(columns) != len(spec.columns):
        raise ValueError(f"{spec.name}: {len(columns)} columns for {len(spec.columns)}")
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ValueError(f"{spec.name}: columns of different lengths")
    if spec.optional:
        return [row_digest(spec, row) for row in zip(*columns, strict=True)]
    start = spec.prefix + _INT4.pack(len(spec.columns))
    fields = [_column(kind, col) for (_, kind), col in zip(spec.columns, columns, strict=True)]
    sha256 = hashlib.sha256
    join = b"".join
    return [sha256(start + join(row)).digest() for row in zip(*fields, strict=True)]
