"""The local benefit roster in PostgreSQL: bulk import and look-up by ID number.

An import is one transaction: rows are streamed (binary COPY, in chunks) into a temporary
table as they are read, checked there for repeated ID numbers, and merged into ``roster``
with ``INSERT ... ON CONFLICT (id_number) DO UPDATE``, so readers see either the old roster
or the new one, never half of it, and memory stays bounded whatever the file's size. A
problem anywhere rolls everything back. Rows whose content did not change are not
rewritten, which keeps a re-import of an unchanged file cheap and keeps ``updated_at``
meaningful.

In the database an unknown ``insured_region`` is NULL; in :class:`RosterRecord` it is ``""``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from certrecon.domain import RosterRecord, RosterStatus
from certrecon.errors import RosterImportError
from certrecon.roster_csv import HEADER, Problems, RosterFile, RosterRow
from certrecon.store.db import Conn

RowProgress = Callable[[int], None]
"""Called after each chunk with the number of rows copied so far."""

CHUNK_ROWS = 50_000
"""Rows per COPY; small enough for a lively progress bar, large enough to be fast. COPY
streams its rows, so a chunk is never held in memory."""

# The table's columns are named and ordered like the contract's CSV header, then where the
# row came from. A row with a problem is staged too (ID number only, ``good`` false), so
# that a repeat of its number is found as well.
_COLUMNS = (*HEADER, "line", "good")
# IF NOT EXISTS: inside a caller's transaction an earlier import's table is still there.
_CREATE_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS roster_import (
    id_number        text NOT NULL,
    name             text,
    benefit_type     text,
    status           text,
    first_paid_on    date,
    deceased_on      date,
    imprisoned_from  date,
    imprisoned_until date,
    insured_region   text,
    line             bigint NOT NULL,
    good             boolean NOT NULL
) ON COMMIT DROP
"""
_COUNT_EXISTING = (
    "SELECT count(*) FROM roster_import i JOIN roster r ON r.id_number = i.id_number WHERE i.good"
)
_COUNT_GOOD = "SELECT count(*) FROM roster_import WHERE good"
_DUPLICATES = """
SELECT line, first_line, count(*) OVER () AS total
FROM (SELECT line, min(line) OVER (PARTITION BY id_number) AS first_line
      FROM roster_import) AS numbered
WHERE line <> first_line
ORDER BY line
LIMIT $1
"""
# Unchanged rows are skipped (the WHERE), so a re-import does not rewrite them.
_MERGE = """
INSERT INTO roster AS r (
    id_number, name, benefit_type, status, first_paid_on, deceased_on,
    imprisoned_from, imprisoned_until, insured_region
)
SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on,
       imprisoned_from, imprisoned_until, insured_region
FROM roster_import
WHERE good
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


def _staged(row: RosterRow) -> tuple[Any, ...]:
    r = row.record
    if r is None:
        return (row.id_number, *(None,) * (len(HEADER) - 1), row.line, False)
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
        row.line,
        True,
    )


def _affected(status: str) -> int:
    # asyncpg returns the command tag, e.g. "INSERT 0 1234".
    return int(status.rsplit(" ", 1)[-1])


async def import_roster(
    conn: Conn,
    records: Iterable[RosterRecord],
    progress: RowProgress | None = None,
) -> ImportSummary:
    """Insert or update ``records`` (keyed by ID number) in one transaction.

    Raises :class:`RosterImportError` and changes nothing when the records repeat an ID
    number (numbered 1-based in ``records`` order) or break a database constraint.
    Concurrent imports run one after the other; readers are never blocked.
    """
    rows = (RosterRow(n, r.id_number, r) for n, r in enumerate(records, start=1))
    problems = Problems()
    summary = await import_rows(conn, rows, problems, progress=progress, numbering="record")
    if problems:
        count = problems.count
        raise RosterImportError(
            f"{count} record(s) repeat an ID number; nothing was imported",
            problems.kept,
            total=count,
        )
    return summary


async def import_roster_file(
    conn: Conn, roster: RosterFile, progress: RowProgress | None = None
) -> ImportSummary:
    """Stream an opened :class:`RosterFile` into the roster in one transaction.

    Raises the file's rejection (every problem, duplicates included, by file line) and
    changes nothing when any row has a problem.
    """
    summary = await import_rows(conn, roster.rows(), roster.problems, progress=progress)
    roster.finish()
    return summary


async def import_rows(
    conn: Conn,
    rows: Iterator[RosterRow],
    problems: Problems,
    *,
    progress: RowProgress | None = None,
    numbering: str = "line",
) -> ImportSummary:
    """Stage ``rows``, add repeated ID numbers to ``problems`` and, when there are none at
    all, merge the good rows; everything is rolled back otherwise (the summary is then
    meaningless: the caller raises its rejection).

    ``numbering`` names what ``RosterRow.line`` counts in duplicate messages.
    """
    try:
        async with conn.transaction():
            # SHARE ROW EXCLUSIVE excludes other writers (and other imports) but not
            # readers, so the existing-row count below stays exact until commit.
            await conn.execute("LOCK TABLE roster IN SHARE ROW EXCLUSIVE MODE")
            await conn.execute(_CREATE_STAGING)
            await conn.execute("TRUNCATE roster_import")
            staged = map(_staged, rows)
            copied = 0
            while True:
                chunk = itertools.islice(staged, CHUNK_ROWS)
                status = await conn.copy_records_to_table(
                    "roster_import", records=chunk, columns=_COLUMNS
                )
                done = _affected(status)
                if done == 0:
                    break
                copied += done
                if progress is not None:
                    progress(copied)
            place = "on line" if numbering == "line" else "as record"
            repeats = await conn.fetch(_DUPLICATES, max(problems.room(), 1))
            for row in repeats:
                problems.add(
                    row["line"], f"duplicate id_number (first {place} {row['first_line']})"
                )
            if repeats:
                problems.count_only(int(repeats[0]["total"]) - len(repeats))
            if problems:
                raise _Rejected
            total = int(await conn.fetchval(_COUNT_GOOD))
            existing = int(await conn.fetchval(_COUNT_EXISTING))
            written = _affected(await conn.execute(_MERGE))
            await conn.execute("TRUNCATE roster_import")
    except _Rejected:
        return ImportSummary(inserted=0, updated=0)
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        # SQLSTATE classes 23 and 22: a value the schema refuses. The transaction rolled back.
        raise RosterImportError(
            f"the database refused the roster ({exc.sqlstate}): {exc.message}; "
            "nothing was imported",
            [],
        ) from exc
    new = total - existing
    return ImportSummary(inserted=new, updated=written - new, unchanged=existing - (written - new))


class _Rejected(Exception):
    """Rolls the import's transaction back; the problems say why."""


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
