"""The local benefit roster in PostgreSQL: bulk import and look-up by ID number.

An import is one transaction: rows are copied (binary COPY) into a temporary table in
chunks and merged into ``roster`` with ``INSERT ... ON CONFLICT (id_number) DO UPDATE``, so
readers see either the old roster or the new one, never half of it. Rows whose content did
not change are not rewritten, which keeps a re-import of an unchanged file cheap and keeps
``updated_at`` meaningful.

In the database an unknown ``insured_region`` is NULL; in :class:`RosterRecord` it is ``""``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from certrecon.domain import RosterRecord, RosterStatus
from certrecon.errors import RosterImportError
from certrecon.roster_csv import HEADER
from certrecon.store.db import Conn

RowProgress = Callable[[int], None]
"""Called after each chunk with the number of rows imported so far."""

CHUNK_ROWS = 50_000
"""Rows per COPY and merge; small enough for a lively progress bar, large enough to be fast."""

# The table's columns are named and ordered like the contract's CSV header.
_COLUMNS = HEADER
# IF NOT EXISTS: inside a caller's transaction an earlier import's table is still there.
_CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS roster_import (
    id_number        text NOT NULL,
    name             text NOT NULL,
    benefit_type     text NOT NULL,
    status           text NOT NULL,
    first_paid_on    date,
    deceased_on      date,
    imprisoned_from  date,
    imprisoned_until date,
    insured_region   text
) ON COMMIT DROP
"""
_COUNT_EXISTING = "SELECT count(*) FROM roster_import i JOIN roster r ON r.id_number = i.id_number"
# Unchanged rows are skipped (the WHERE), so a re-import does not rewrite them.
_MERGE = """
INSERT INTO roster AS r (
    id_number, name, benefit_type, status, first_paid_on, deceased_on,
    imprisoned_from, imprisoned_until, insured_region
)
SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on,
       imprisoned_from, imprisoned_until, insured_region
FROM roster_import
ON CONFLICT (id_number) DO UPDATE SET
    name = EXCLUDED.name,
    benefit_type = EXCLUDED.benefit_type,
    status = EXCLUDED.status,
    first_paid_on = EXCLUDED.first_paid_on,
    deceased_on = EXCLUDED.deceased_on,
    imprisoned_from = EXCLUDED.imprisoned_from,
    imprisoned_until = EXCLUDED.imprisoned_until,
    insured_region = EXCLUDED.insured_region,
    updated_at = now()
WHERE (r.name, r.benefit_type, r.status, r.first_paid_on, r.deceased_on,
       r.imprisoned_from, r.imprisoned_until, r.insured_region)
      IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.benefit_type, EXCLUDED.status, EXCLUDED.first_paid_on,
       EXCLUDED.deceased_on, EXCLUDED.imprisoned_from, EXCLUDED.imprisoned_until,
       EXCLUDED.insured_region)
"""
_FETCH = """
SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on,
       imprisoned_from, imprisoned_until, insured_region
FROM roster
WHERE id_number = ANY($1::text[])
"""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did: new people, changed people and people already up to date."""

    inserted: int
    updated: int
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def _row(r: RosterRecord) -> tuple[Any, ...]:
    return (
        r.id_number,
        r.name,
        r.benefit_type,
        r.status.value,
        r.first_paid_on,
        r.deceased_on,
        r.imprisoned_from,
        r.imprisoned_until,
        r.insured_region or None,
    )


def _duplicates(records: Sequence[RosterRecord]) -> list[tuple[int, str]]:
    first: dict[str, int] = {}
    problems: list[tuple[int, str]] = []
    for number, record in enumerate(records, start=1):
        earlier = first.setdefault(record.id_number, number)
        if earlier != number:
            problems.append((number, f"duplicate id_number (first as record {earlier})"))
    return problems


def _affected(status: str) -> int:
    # asyncpg returns the command tag, e.g. "INSERT 0 1234".
    return int(status.rsplit(" ", 1)[-1])


async def import_roster(
    conn: Conn,
    records: Sequence[RosterRecord],
    progress: RowProgress | None = None,
) -> ImportSummary:
    """Insert or update ``records`` (keyed by ID number) in one transaction.

    Raises :class:`RosterImportError` and changes nothing when the records repeat an ID
    number (numbered 1-based in ``records`` order) or break a database constraint.
    Concurrent imports run one after the other; readers are never blocked.
    """
    duplicates = _duplicates(records)
    if duplicates:
        raise RosterImportError(
            f"{len(duplicates)} record(s) repeat an ID number; nothing was imported",
            duplicates,
        )
    inserted = updated = unchanged = 0
    try:
        async with conn.transaction():
            # SHARE ROW EXCLUSIVE excludes other writers (and other imports) but not
            # readers, so the existing-row count below stays exact until commit.
            await conn.execute("LOCK TABLE roster IN SHARE ROW EXCLUSIVE MODE")
            await conn.execute(_CREATE_STAGING)
            await conn.execute("TRUNCATE roster_import")
            for start in range(0, len(records), CHUNK_ROWS):
                chunk = records[start : start + CHUNK_ROWS]
                await conn.copy_records_to_table(
                    "roster_import", records=map(_row, chunk), columns=_COLUMNS
                )
                existing = int(await conn.fetchval(_COUNT_EXISTING))
                written = _affected(await conn.execute(_MERGE))
                new = len(chunk) - existing
                inserted += new
                updated += written - new
                unchanged += existing - (written - new)
                await conn.execute("TRUNCATE roster_import")
                if progress is not None:
                    progress(start + len(chunk))
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        # SQLSTATE classes 23 and 22: a value the schema refuses. The transaction rolled back.
        raise RosterImportError(
            f"the database refused the roster ({exc.sqlstate}): {exc.message}; "
            "nothing was imported",
            [],
        ) from exc
    return ImportSummary(inserted=inserted, updated=updated, unchanged=unchanged)


async def fetch_roster(conn: Conn, id_numbers: Sequence[str]) -> dict[str, RosterRecord]:
    """The roster entries for ``id_numbers`` (one query), keyed by ID number.

    ID numbers without an entry are simply absent from the result.
    """
    if not id_numbers:
        return {}
    rows = await conn.fetch(_FETCH, list(id_numbers))
    return {
        row["id_number"]: RosterRecord(
            id_number=row["id_number"],
            name=row["name"],
            benefit_type=row["benefit_type"],
            status=RosterStatus(row["status"]),
            insured_region=row["insured_region"] or "",
            first_paid_on=row["first_paid_on"],
            deceased_on=row["deceased_on"],
            imprisoned_from=row["imprisoned_from"],
            imprisoned_until=row["imprisoned_until"],
        )
        for row in rows
    }
