"""The local benefit roster in PostgreSQL: bulk import, look-up by ID number, history.

The roster is a ledger of versions (``roster_version``): importing a person whose content
changed adds a version; earlier versions stay, so the roster as it was at any instant can be
shown, and every decision names the version it used. ``roster`` is a view of each person's
latest version. An import is one transaction: rows are streamed (binary COPY, in chunks)
into a temporary table as they are read, checked there for repeated ID numbers, and only
new or changed people get a version, so readers see either the old roster or the new one,
never half of it, memory stays bounded whatever the file's size, and re-importing an
unchanged file adds nothing. A problem anywhere rolls everything back.

In the database an unknown ``insured_region`` is NULL; in :class:`RosterRecord` it is ``""``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from certrecon.domain import RosterRecord, RosterStatus
from certrecon.errors import RosterImportError
from certrecon.roster_csv import COLUMNS, Problems, RosterFile, RosterRow
from certrecon.store.db import Conn

RowProgress = Callable[[int], None]
"""Called after each chunk with the number of rows copied so far."""

CHUNK_ROWS = 50_000
"""Rows per COPY; small enough for a lively progress bar, large enough to be fast. COPY
streams its rows, so a chunk is never held in memory."""

# The table's columns are named and ordered like the contract's CSV header, then where the
# row came from. A row with a problem is staged too (ID number only, ``good`` false), so
# that a repeat of its number is found as well.
_COLUMNS = (*COLUMNS, "line", "good")
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
    suspended_on     date,
    line             bigint NOT NULL,
    good             boolean NOT NULL
) ON COMMIT DROP
"""
_COUNT_EXISTING = """
SELECT count(*) FROM roster_import i
WHERE i.good AND EXISTS (SELECT 1 FROM roster_version v WHERE v.id_number = i.id_number)
"""
_COUNT_GOOD = "SELECT count(*) FROM roster_import WHERE good"
_DUPLICATES = """
SELECT line, first_line, count(*) OVER () AS total
FROM (SELECT line, min(line) OVER (PARTITION BY id_number) AS first_line
      FROM roster_import) AS numbered
WHERE line <> first_line
ORDER BY line
LIMIT $1
"""
# Only new people and people whose content changed get a version.
_MERGE = """
INSERT INTO roster_version (
    id_number, name, benefit_type, status, first_paid_on, deceased_on,
    imprisoned_from, imprisoned_until, insured_region, suspended_on
)
SELECT i.id_number, i.name, i.benefit_type, i.status, i.first_paid_on, i.deceased_on,
       i.imprisoned_from, i.imprisoned_until, i.insured_region, i.suspended_on
FROM roster_import i
LEFT JOIN LATERAL (
    SELECT * FROM roster_version v WHERE v.id_number = i.id_number
    ORDER BY v.version DESC LIMIT 1
) r ON true
WHERE i.good
  AND (r.id_number IS NULL
       OR (r.name, r.benefit_type, r.status, r.first_paid_on, r.deceased_on,
           r.imprisoned_from, r.imprisoned_until, r.insured_region, r.suspended_on)
          IS DISTINCT FROM
          (i.name, i.benefit_type, i.status, i.first_paid_on, i.deceased_on,
           i.imprisoned_from, i.imprisoned_until, i.insured_region, i.suspended_on))
"""
_FETCH = """
SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on, imprisoned_from,
       imprisoned_until, insured_region, suspended_on, version, recorded_at
FROM roster WHERE id_number = ANY($1::text[])
"""
_HISTORY = """
SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on, imprisoned_from,
       imprisoned_until, insured_region, suspended_on, version, recorded_at
FROM roster_version WHERE id_number = $1 ORDER BY version
"""
# Imports of the roster run one after the other (an arbitrary constant shared by every
# certrecon process); readers are never blocked.
_IMPORT_LOCK = 0x6365_7274_726F_7374


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
        return (row.id_number, *(None,) * (len(COLUMNS) - 1), row.line, False)
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
        r.suspended_on,
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
            # Imports one after the other, so the existing-row count below stays exact.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _IMPORT_LOCK)
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


@dataclass(frozen=True, slots=True)
class RosterVersion:
    """One version of a person's roster entry."""

    version: int
    recorded_at: dt.datetime
    record: RosterRecord


def _version(row: asyncpg.Record) -> RosterVersion:
    return RosterVersion(
        version=row["version"],
        recorded_at=row["recorded_at"],
        record=RosterRecord(
            id_number=row["id_number"],
            name=row["name"],
            benefit_type=row["benefit_type"],
            status=RosterStatus(row["status"]),
            insured_region=row["insured_region"] or "",
            first_paid_on=row["first_paid_on"],
            deceased_on=row["deceased_on"],
            imprisoned_from=row["imprisoned_from"],
            imprisoned_until=row["imprisoned_until"],
            suspended_on=row["suspended_on"],
        ),
    )


async def fetch_roster_versions(conn: Conn, id_numbers: Sequence[str]) -> dict[str, RosterVersion]:
    """The current roster versions for ``id_numbers`` (one query), keyed by ID number.

    ID numbers without an entry are simply absent from the result.
    """
    if not id_numbers:
        return {}
    rows = await conn.fetch(_FETCH, list(id_numbers))
    return {row["id_number"]: _version(row) for row in rows}


async def fetch_roster(conn: Conn, id_numbers: Sequence[str]) -> dict[str, RosterRecord]:
    """The current roster entries for ``id_numbers``, keyed by ID number."""
    return {k: v.record for k, v in (await fetch_roster_versions(conn, id_numbers)).items()}


async def roster_history(conn: Conn, id_number: str) -> list[RosterVersion]:
    """Every version of one person's entry, oldest first (empty when never on the roster)."""
    return [_version(r) for r in await conn.fetch(_HISTORY, id_number)]


def version_at(history: Sequence[RosterVersion], at: dt.datetime) -> RosterVersion | None:
    """The version in force at ``at``: the latest recorded at or before it."""
    found = None
    for v in history:
        if v.recorded_at <= at:
            found = v
    return found
