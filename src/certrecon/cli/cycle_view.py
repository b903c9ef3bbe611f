"""Output of the ``certrecon cycle`` commands: the status tables and the owner-only CSV lists.

The lists carry ID numbers and names (staff need them for outreach), so they are written to
a file that only its owner can read, never to the terminal; the tables carry counts only.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import asyncpg

from certrecon.cycle import OUTREACH_HEADER, STATUS_ORDER, CycleSummary, OutreachRow, Period
from certrecon.domain import CycleMode
from certrecon.errors import InputError

__all__ = [
    "OwnerOnlyCsv",
    "cycle_heading",
    "parse_day",
    "print_summary",
    "write_list",
    "write_rows_csv",
]

OWNER_ONLY = 0o600


def parse_day(text: str, option: str) -> dt.date:
    """A strict ``YYYY-MM-DD`` option value."""
    from certrecon.csvfile import parse_iso_date

    day = parse_iso_date(text.strip())
    if day is None:
        raise InputError(f"{option} {text!r} is not a date of the form YYYY-MM-DD")
    return day


def cycle_heading(mode: CycleMode, year: int, as_of: dt.date) -> str:
    if mode is CycleMode.CALENDAR_YEAR:
        return (
            f"Certification cycle {year} (calendar year; first payment on or before "
            f"{year - 1}-12-31), as of {as_of.isoformat()}"
        )
    return f"Certification cycle: rolling 12 months, as of {as_of.isoformat()}"


def print_summary(summary: CycleSummary, heading: str) -> None:
    """The counts by status, then by district, as terminal tables."""
    from rich.table import Table

    from certrecon.cli.review_cmd import console

    out = console()
    out.print(heading)
    total = summary.in_scope
    by_status = Table(title=f"In scope: {total}")
    by_status.add_column("status")
    by_status.add_column("people", justify="right")
    by_status.add_column("share", justify="right")
    for status in STATUS_ORDER:
        n = summary.by_status[status]
        share = f"{100 * n / total:.1f} %" if total else "-"
        by_status.add_row(status.value, str(n), share)
    out.print(by_status)
    districts = Table(title="By district (insured_region)")
    districts.add_column("district")
    for status in STATUS_ORDER:
        districts.add_column(status.value.replace("_", " "), justify="right")
    for district, counts in sorted(summary.by_district.items()):
        districts.add_row(district, *(str(counts[s]) for s in STATUS_ORDER))
    out.print(districts)


class OwnerOnlyCsv:
    """An outreach or suspend-candidate list being written: ``with OwnerOnlyCsv(path) as f:
    f.write(row)``.

    The file appears complete or not at all (written beside ``path``, then renamed over it
    when the block ends without an error) and is readable by its owner only, whatever a
    file of that name allowed before.
    """

    def __init__(self, path: Path) -> None:
        directory = path.parent
        if not directory.is_dir():
            raise InputError(f"{path}: the folder {directory} does not exist")
        self.path = path
        self.count = 0
        fd, self._temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        try:
            os.fchmod(fd, OWNER_ONLY)
            self._stream = os.fdopen(fd, "w", encoding="utf-8", newline="")
        except BaseException:
            os.close(fd)
            os.unlink(self._temporary)
            raise
        self._writer = csv.writer(self._stream, lineterminator="\n")
        self._writer.writerow(OUTREACH_HEADER)

    def write(self, row: OutreachRow) -> None:
        self._writer.writerow(row.cells())
        self.count += 1

    async def write_lines(self, chunk: bytes) -> None:
        """CSV lines already encoded (PostgreSQL's COPY output); the caller counts them."""
        self._stream.flush()
        self._stream.buffer.write(chunk)

    def __enter__(self) -> OwnerOnlyCsv:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self._stream.close()
            if exc_type is None:
                os.replace(self._temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temporary)


async def write_list(
    conn: asyncpg.Connection, period: Period, path: Path, *, expiring_within: int | None = None
) -> int:
    """Write the outreach list (or the suspend candidates) of ``period`` to ``path`` (see
    :class:`OwnerOnlyCsv`), read in the caller's transaction; returns the number of people."""
    from certrecon.store.cycle import copy_list_csv

    with OwnerOnlyCsv(path) as out:
        out.count = await copy_list_csv(
            conn, period, out.write_lines, expiring_within=expiring_within
        )
    return out.count


def write_rows_csv(path: Path, rows: Iterable[OutreachRow]) -> int:
    """Write an outreach or suspend-candidate list (see :class:`OwnerOnlyCsv`); returns the
    number of people."""
    with OwnerOnlyCsv(path) as out:
        for row in rows:
            out.write(row)
    return out.count
