"""Recording ledger rows' digests with the rows, in the writer's transaction.

The writer computes the digests of what it inserts (:mod:`certrecon.audit.digest`) and
records them here, one ``ledger_entry`` per table and statement; at commit the database
seals the transaction's entries into one link of the chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from certrecon.audit.digest import FORMAT, TABLES, column_digests
from certrecon.store.db import Conn

DIGEST_SIZE = 32

# The arrays travel as one array literal each and the digests as one concatenation: a
# batch's entry is three parameters, not three lists encoded element by element.
_INSERT_ENTRY = """
INSERT INTO ledger_entry (table_name, keys, certification_ids, digests, format)
VALUES ($1, $2::text::text[], $3::text::text[],
        ARRAY(SELECT substring($4::bytea FROM i * 32 + 1 FOR 32)
              FROM generate_series(0, length($4::bytea) / 32 - 1) AS i ORDER BY i),
        $5)
"""


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: Sequence[str | None]) -> str:
    """A PostgreSQL text array literal of ``values`` (each quoted, so any text is safe)."""
    if not values:
        return "{}"
    joined: str | None
    try:
        joined = '","'.join(cast("Sequence[str]", values))
    except TypeError:
        joined = None  # a None (NULL) among them
    if joined is not None and '"' not in joined and "\\" not in joined:
        # Nothing to escape (the common case: ids): one join instead of a call per value.
        return '{"' + joined + '"}'
    return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"


async def record_digests(
    conn: Conn,
    table: str,
    keys: Sequence[str],
    certification_ids: Sequence[str | None],
    digests: Sequence[bytes],
) -> None:
    """Record the digests of rows just inserted into ``table`` (nothing when empty)."""
    if not keys:
        return
    if any(len(d) != DIGEST_SIZE for d in digests) or len(digests) != len(keys):
        raise ValueError("one SHA-256 digest per key")
    key_list = array_literal(keys)
    certs = key_list if certification_ids is keys else array_literal(certification_ids)
    await conn.execute(_INSERT_ENTRY, table, key_list, certs, b"".join(digests), FORMAT)


async def record_columns(conn: Conn, table: str, columns: Sequence[Sequence[Any]]) -> None:
    """Record the digests of rows just inserted into ``table``, given column-wise in the
    order of the table's digest columns."""
    spec = TABLES[table]
    if not columns or not columns[0]:
        return
    names = spec.column_names
    keys = columns[names.index(spec.key)]
    certs: Sequence[str | None] = (
        columns[names.index(spec.certification)]
        if spec.certification is not None
        else [None] * len(keys)
    )
    await record_digests(conn, table, [str(k) for k in keys], certs, column_digests(spec, columns))


async def record_rows(conn: Conn, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """Like :func:`record_columns`, with rows given one by one (low-volume writers)."""
    if rows:
        await record_columns(conn, table, [list(c) for c in zip(*rows, strict=True)])
