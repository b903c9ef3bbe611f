"""Parse and check a roster CSV file (contract: "Local roster import").

One bad row rejects the whole file with a :class:`~certrecon.errors.RosterImportError` that
lists the problems found, by **file line number** (line 1 is the header, so the first person
is on line 2 — the same number a spreadsheet shows for the row). No database access here.

Files are read as a stream, in bounded memory whatever they hold: :class:`RosterFile` reads
one line at a time, refuses a line longer than :data:`MAX_LINE_BYTES` at once (a binary
file, ``/dev/zero``, a file that is not a roster), and keeps at most
:data:`MAX_PROBLEMS_KEPT` problems while counting all of them. The store streams the
checked rows straight into ``COPY``; duplicates across the whole file are found there.

Problem texts name the column and the rule but never repeat an ID number or a name, so that
a rejection printed on a terminal or captured by a scheduler leaks no personal data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NamedTuple

from certrecon.csvfile import (
    MAX_LINE_BYTES,
    MAX_PROBLEMS_KEPT,
    ByteProgress,
    DateCells,
    Problems,
    data_rows,
    decoded_lines,
)
from certrecon.domain import RosterRecord, RosterStatus
from certrecon.errors import RosterImportError
from certrecon.ids import id_number_problems, normalise_id_number
from certrecon.text import name_problem, shorten

HEADER: tuple[str, ...] = (
    "id_number",
    "name",
    "benefit_type",
    "status",
    "first_paid_on",
    "deceased_on",
    "imprisoned_from",
    "imprisoned_until",
    "insured_region",
)
"""The contract's header, in this order."""
OPTIONAL: tuple[str, ...] = ("suspended_on",)
"""Columns a file may add after :data:`HEADER` (contract 1.1); without them they are empty."""
COLUMNS = HEADER + OPTIONAL

__all__ = [
    "COLUMNS",
    "HEADER",
    "MAX_LINE_BYTES",
    "MAX_PROBLEMS_KEPT",
    "OPTIONAL",
    "ByteProgress",
    "Problems",
    "RosterFile",
    "RosterRow",
    "iter_rows",
    "parse_roster",
    "read_roster_file",
]

MAX_NAME_LENGTH = 64
MAX_BENEFIT_TYPE_LENGTH = 64

_STATUSES = {s.value: s for s in RosterStatus}
_REGION = re.compile(r"[0-9]{6}")


class RosterRow(NamedTuple):
    """One data row: its file line, its normalised ID number (for duplicate detection, also
    on a bad row; "" when unusable) and its record (None when the row has a problem)."""

    line: int
    id_number: str
    record: RosterRecord | None


def iter_rows(
    lines: Iterable[str], problems: Problems, *, source: str = "roster file"
) -> Iterator[RosterRow]:
    """Check a roster CSV given as text lines (line ends kept, a leading BOM tolerated).

    The header is checked when the first row is asked for (a wrong one raises
    :class:`RosterImportError` at once); then every data row is yielded in file order and
    every problem goes to ``problems``. Records have ID numbers upper-cased, cells stripped
    of surrounding whitespace, empty cells as None (an empty ``insured_region`` as ``""``).
    Duplicate ID numbers are *not* detected here: that needs the whole file.
    """
    dates = DateCells()
    rows = data_rows(
        lines, HEADER, problems, source=source, error=RosterImportError, optional=OPTIONAL
    )
    for line, row in rows:
        record, row_problems = _check_row(row, dates)
        for problem in row_problems:
            problems.add(line, problem)
        key = normalise_id_number(row[0].strip())
        if len(key) > 64 or "\x00" in key:
            key = ""  # too broken to be anybody's number; its own problem says so
        yield RosterRow(line, key, None if row_problems else record)


def parse_roster(
    lines: Iterable[str],
    *,
    source: str = "roster file",
    line_problems: Problems | None = None,
) -> list[RosterRecord]:
    """Check a whole roster CSV given as text lines and return its records in file order.

    For rosters that fit in memory (tests, tools); files go through :class:`RosterFile`.
    Raises :class:`RosterImportError` if the header is wrong or any row has a problem,
    duplicate ID numbers included (also on rows with other problems, so that fixing those
    does not reveal a duplicate only on the next attempt). ``line_problems`` collects
    problems a caller finds while producing the lines (undecodable bytes).
    """
    problems = Problems() if line_problems is None else line_problems
    records = _collect(iter_rows(lines, problems, source=source), problems)
    if problems:
        raise problems.rejection(source, RosterImportError)
    return records


def _collect(rows: Iterable[RosterRow], problems: Problems) -> list[RosterRecord]:
    """The good records of ``rows``; duplicate ID numbers become problems (in memory)."""
    records: list[RosterRecord] = []
    first_seen: dict[str, int] = {}
    for row in rows:
        if row.id_number:
            earlier = first_seen.setdefault(row.id_number, row.line)
            if earlier != row.line:
                problems.add(row.line, f"duplicate id_number (first on line {earlier})")
                continue
        if row.record is not None:
            records.append(row.record)
    return records


def _check_row(row: list[str], dates: DateCells) -> tuple[RosterRecord | None, list[str]]:
    """The record for one data row, or None with the reasons it is not one."""
    if len(row) != len(COLUMNS):
        return None, []  # data_rows reported it, with the file's own number of columns
    problems: list[str] = []
    id_number, name, benefit_type, status_text, paid, died, jailed, released, region, held = (
        cell.strip() for cell in row
    )

    id_number = normalise_id_number(id_number)
    if not id_number:
        problems.append("id_number is empty")
    else:
        # Roster rows carry no id_type: any recognised form is accepted.
        problems.extend(f"id_number {p}" for p in id_number_problems(id_number))

    if not name:
        problems.append("name is empty")
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(f"name is longer than {MAX_NAME_LENGTH} characters")
    elif (why := name_problem(name)) is not None:
        problems.append(f"name {why}")

    if not benefit_type:
        problems.append("benefit_type is empty")
    elif len(benefit_type) > MAX_BENEFIT_TYPE_LENGTH:
        problems.append(f"benefit_type is longer than {MAX_BENEFIT_TYPE_LENGTH} characters")

    status = _STATUSES.get(status_text)
    if status is None:
        allowed = ", ".join(s.value for s in RosterStatus)
        problems.append(f"status {shorten(status_text, 40)!r} is not one of {allowed}")

    first_paid_on = dates.parse("first_paid_on", paid, problems)
    deceased_on = dates.parse("deceased_on", died, problems)
    imprisoned_from = dates.parse("imprisoned_from", jailed, problems)
    imprisoned_until = dates.parse("imprisoned_until", released, problems)
    if imprisoned_until is not None:
        if imprisoned_from is None and not jailed:
            # The rules read a term as [from, until]; an end alone would be silently ignored.
            problems.append("imprisoned_until is set but imprisoned_from is empty")
        elif imprisoned_from is not None and imprisoned_until < imprisoned_from:
            problems.append("imprisoned_until is before imprisoned_from")

    suspended_on = dates.parse("suspended_on", held, problems)
    if region and not _REGION.fullmatch(region):
        problems.append(f"insured_region {shorten(region, 40)!r} is not a 6-digit division code")

    if problems or status is None:
        return None, problems
    return (
        RosterRecord(
            id_number=id_number,
            name=name,
            benefit_type=benefit_type,
            status=status,
            insured_region=region,
            first_paid_on=first_paid_on,
            deceased_on=deceased_on,
            imprisoned_from=imprisoned_from,
            imprisoned_until=imprisoned_until,
            suspended_on=suspended_on,
        ),
        problems,
    )


class RosterFile:
    """A roster CSV file read as a stream: ``with RosterFile(path) as f: for row in f.rows()``.

    Entering opens the file and checks its header (a wrong header, an empty file or an
    unreadable one raise :class:`RosterImportError` before anything else happens). Lines are
    read one at a time, at most :data:`MAX_LINE_BYTES` each; a longer line raises at once.
    Problems collect in :attr:`problems`; call :meth:`finish` after the rows to raise the
    rejection if there were any.
    """

    def __init__(self, path: Path, *, progress: ByteProgress | None = None) -> None:
        self.path = path
        self.source = str(path)
        self.problems = Problems()
        self._progress = progress
        self._stream: BinaryIO | None = None
        self._rows: Iterator[RosterRow] | None = None
        self._first: RosterRow | None = None

    def __enter__(self) -> RosterFile:
        try:
            total = self.path.stat().st_size
            self._stream = self.path.open("rb")
        except OSError as exc:
            raise RosterImportError(
                f"{self.source}: cannot read the file: {exc.strerror}", []
            ) from exc
        try:
            lines = decoded_lines(
                self._stream,
                self.problems,
                source=self.source,
                error=RosterImportError,
                kind="a roster CSV file",
                progress=self._progress,
                total=total,
            )
            self._rows = iter_rows(lines, self.problems, source=self.source)
            # The header is checked on the first step; keep the row it yields, if any.
            self._first = next(self._rows, None)
        except BaseException:
            self._stream.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()

    def rows(self) -> Iterator[RosterRow]:
        """Every data row, in file order (once)."""
        if self._rows is None:
            raise RuntimeError("use RosterFile in a with statement")
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._rows

    def finish(self) -> None:
        """Raise the rejection if any problem was found."""
        if self.problems:
            raise self.problems.rejection(self.source, RosterImportError)


def read_roster_file(path: Path, *, progress: ByteProgress | None = None) -> list[RosterRecord]:
    """Read and check a whole roster CSV file into memory; see :func:`parse_roster`.

    For files that fit in memory (tests, tools); ``certrecon roster import`` streams with
    :class:`RosterFile` instead. Raises :class:`RosterImportError` for a rejected file, and
    also when the file cannot be read at all.
    """
    with RosterFile(path, progress=progress) as roster:
        records = _collect(roster.rows(), roster.problems)
        roster.finish()
    return records
