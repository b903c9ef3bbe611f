"""Parse and check a roster CSV file (contract: "Local roster import").

The file is checked completely before anything is imported: one bad row rejects the whole
file with a :class:`~certrecon.errors.RosterImportError` that lists every problem found, by
**file line number** (line 1 is the header, so the first person is on line 2 — the same
number a spreadsheet shows for the row). No database access here.

Problem texts name the column and the rule but never repeat an ID number or a name, so that
a rejection printed on a terminal or captured by a scheduler leaks no personal data.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from certrecon.domain import RosterRecord, RosterStatus
from certrecon.errors import RosterImportError
from certrecon.ids import id_number_problems, normalise_id_number

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

MAX_NAME_LENGTH = 64
MAX_BENEFIT_TYPE_LENGTH = 64

ByteProgress = Callable[[int, int], None]
"""Called now and then with (bytes read so far, file size in bytes)."""

_PROGRESS_EVERY = 8192  # lines between progress calls: often enough for a smooth bar
_STATUSES = {s.value: s for s in RosterStatus}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_REGION = re.compile(r"[0-9]{6}")


class _Dates:
    """Strict ``YYYY-MM-DD`` parsing with a cache: rosters repeat the same dates a lot."""

    def __init__(self) -> None:
        self._known: dict[str, dt.date] = {}

    def parse(self, column: str, text: str, problems: list[str]) -> dt.date | None:
        if not text:
            return None
        known = self._known.get(text)
        if known is not None:
            return known
        # date.fromisoformat alone would also take 20240101 and 2024-W01-1.
        if not _DATE.fullmatch(text):
            problems.append(f"{column} {text!r} is not a date of the form YYYY-MM-DD")
            return None
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            problems.append(f"{column} {text!r} is not a valid calendar date")
            return None
        self._known[text] = day
        return day


def _has_control_character(text: str) -> bool:
    return not text.isprintable() and any(unicodedata.category(ch) == "Cc" for ch in text)


def parse_roster(
    lines: Iterable[str],
    *,
    source: str = "roster file",
    line_problems: list[tuple[int, str]] | None = None,
) -> list[RosterRecord]:
    """Check a roster CSV given as text lines (line ends kept, a leading BOM tolerated).

    Returns the records in file order, ID numbers upper-cased, cells stripped of surrounding
    whitespace, empty cells as None (an empty ``insured_region`` as ``""``). Raises
    :class:`RosterImportError` if the header is wrong or any row has a problem.
    ``line_problems`` lets a caller add problems it found while reading the lines (such as
    undecodable bytes), even while the lines are being consumed; they are reported
    together with the row problems.
    """
    problems: list[tuple[int, str]] = []
    reader = csv.reader(_strip_bom(iter(lines)), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise RosterImportError(
            f"{source}: the file is empty; expected the header line {','.join(HEADER)}",
            [(1, "missing header")],
        ) from None
    except csv.Error as exc:
        raise RosterImportError(
            f"{source}: line 1 is not a CSV header: {exc}", [(1, f"not CSV: {exc}")]
        ) from None
    found = tuple(cell.strip() for cell in header)
    if found != HEADER:
        # Column names have no digits; a first line with digits is a data row, whose ID
        # number and name must not end up in the message.
        shown = (
            "it looks like a data row; is the header missing?"
            if any(ch.isdigit() for cell in found for ch in cell)
            else f"found {','.join(found)!r}"
        )
        raise RosterImportError(
            f"{source}: line 1 must be the header {','.join(HEADER)} ({shown})",
            [(1, "wrong header")],
        )

    records: list[RosterRecord] = []
    first_seen: dict[str, int] = {}
    dates = _Dates()
    last_line = reader.line_num
    while True:
        line = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append((line, f"not valid CSV: {exc}"))
            last_line = reader.line_num
            continue
        last_line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines, such as a trailing one, carry no row
        record, row_problems = _check_row(row, dates)
        # Also for rows with other problems, so that fixing those does not reveal a
        # duplicate only on the next attempt.
        key = normalise_id_number(row[0].strip())
        if key:
            earlier = first_seen.setdefault(key, line)
            if earlier != line:
                row_problems.append(f"duplicate id_number (first on line {earlier})")
        if row_problems:
            problems.extend((line, p) for p in row_problems)
        elif record is not None:
            records.append(record)

    # Read only now: the caller fills it while this function consumes the lines.
    problems.extend(line_problems or ())
    if problems:
        problems.sort(key=lambda p: p[0])
        rows = len({number for number, _ in problems})
        raise RosterImportError(
            f"{source}: rejected, nothing was imported: {len(problems)} problem(s) on "
            f"{rows} line(s) (numbers are file line numbers; line 1 is the header)",
            problems,
        )
    return records


def _strip_bom(lines: Iterator[str]) -> Iterator[str]:
    first = next(lines, None)
    if first is None:
        return
    yield first.removeprefix(codecs.BOM_UTF8.decode())
    yield from lines


def _check_row(row: list[str], dates: _Dates) -> tuple[RosterRecord | None, list[str]]:
    """The record for one data row, or None with the reasons it is not one."""
    if len(row) != len(HEADER):
        return None, [f"expected {len(HEADER)} cells, found {len(row)}"]
    problems: list[str] = []
    id_number, name, benefit_type, status_text, paid, died, jailed, released, region = (
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
    elif _has_control_character(name):
        problems.append("name contains control characters")

    if not benefit_type:
        problems.append("benefit_type is empty")
    elif len(benefit_type) > MAX_BENEFIT_TYPE_LENGTH:
        problems.append(f"benefit_type is longer than {MAX_BENEFIT_TYPE_LENGTH} characters")

    status = _STATUSES.get(status_text)
    if status is None:
        problems.append(
            f"status {status_text!r} is not one of {', '.join(s.value for s in RosterStatus)}"
        )

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

    if region and not _REGION.fullmatch(region):
        problems.append(f"insured_region {region!r} is not a 6-digit division code")

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
        ),
        problems,
    )


def _decoded_lines(
    stream: BinaryIO,
    problems: list[tuple[int, str]],
    progress: ByteProgress | None,
    total: int,
) -> Iterator[str]:
    # Decoding line by line (UTF-8 never has a newline byte inside a character) gives the
    # exact line of a bad byte, and counts bytes for the progress bar.
    done = 0
    for number, raw in enumerate(stream, start=1):
        done += len(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append((number, f"not valid UTF-8 (byte {exc.start + 1} of the line)"))
            text = raw.decode("utf-8", "replace")
        if progress is not None and number % _PROGRESS_EVERY == 0:
            progress(done, total)
        yield text
    if progress is not None:
        progress(done, total)


def read_roster_file(path: Path, *, progress: ByteProgress | None = None) -> list[RosterRecord]:
    """Read and check a roster CSV file (UTF-8, with or without a BOM); see :func:`parse_roster`.

    Raises :class:`RosterImportError` for a rejected file, and also when the file cannot be
    read at all.
    """
    problems: list[tuple[int, str]] = []
    try:
        total = path.stat().st_size
        with path.open("rb") as stream:
            return parse_roster(
                _decoded_lines(stream, problems, progress, total),
                source=str(path),
                line_problems=problems,
            )
    except OSError as exc:
        raise RosterImportError(f"{path}: cannot read the file: {exc.strerror}", []) from exc
