"""Reading the operator's CSV files (roster, comparison evidence): streaming, line-numbered.

Both files follow the same conventions, kept here once:

* UTF-8, with or without a byte-order mark; a bad byte is reported with its file line.
* Line 1 is the header and must name the contract's columns in the contract's order.
* Problems are reported by **file line number** (line 1 is the header, so the first data
  row is on line 2, the number a spreadsheet shows), never with the ID number or name of
  the row, so a rejection on a terminal or in a scheduler's log leaks no personal data.
* Lines are read one at a time and none may be longer than a cap, so a huge or endless
  file costs bounded memory; the number of problems kept is capped too (the rest are
  counted).
* Blank lines carry no row.

Pure apart from reading the stream it is given.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "MAX_KEPT_PROBLEMS",
    "ByteProgress",
    "DateCells",
    "HeaderProblem",
    "Problems",
    "data_rows",
    "decoded_lines",
    "has_control_character",
    "parse_iso_date",
]

DEFAULT_MAX_LINE_BYTES = 64 * 1024
"""No row of either file comes near this; a longer line is a wrong file, not a row."""

MAX_KEPT_PROBLEMS = 10_000
"""Problems beyond this are counted, not kept: an operator reads the first few anyway."""

ByteProgress = Callable[[int, int], None]
"""Called now and then with (bytes read so far, file size in bytes)."""

_PROGRESS_EVERY = 8192  # lines between progress calls: often enough for a smooth bar
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SKIP_CHUNK = 1024 * 1024


@dataclass(slots=True)
class Problems:
    """(file line, problem) pairs found in one file, capped at ``limit`` kept entries."""

    limit: int = MAX_KEPT_PROBLEMS
    kept: list[tuple[int, str]] = field(default_factory=list)
    total: int = 0
    lines: set[int] = field(default_factory=set)
    """Distinct lines with a problem, up to ``limit`` of them."""

    def add(self, line: int, problem: str) -> None:
        self.total += 1
        if len(self.kept) < self.limit:
            self.kept.append((line, problem))
            self.lines.add(line)

    def __bool__(self) -> bool:
        return self.total > 0

    def sorted(self) -> list[tuple[int, str]]:
        return sorted(self.kept, key=lambda p: p[0])

    def summary(self, source: str) -> str:
        """The one-line rejection message for a file with problems."""
        more = "" if self.total == len(self.kept) else f" (the first {len(self.kept)} kept)"
        return (
            f"{source}: rejected, nothing was imported: {self.total} problem(s){more} on "
            f"{len(self.lines)} line(s) (numbers are file line numbers; line 1 is the header)"
        )


class DateCells:
    """Strict ``YYYY-MM-DD`` cells with a cache: files repeat the same dates a lot."""

    def __init__(self) -> None:
        self._known: dict[str, dt.date] = {}

    def parse(self, column: str, text: str, problems: list[str]) -> dt.date | None:
        """The date in ``text`` (None when empty); a problem is appended when malformed."""
        if not text:
            return None
        known = self._known.get(text)
        if known is not None:
            return known
        if not _DATE.fullmatch(text):
            problems.append(f"{column} {text!r} is not a date of the form YYYY-MM-DD")
            return None
        day = parse_iso_date(text)
        if day is None:
            problems.append(f"{column} {text!r} is not a valid calendar date")
            return None
        if len(self._known) < 100_000:
            self._known[text] = day
        return day


def parse_iso_date(text: str) -> dt.date | None:
    """The date of a strict ``YYYY-MM-DD`` text, else None."""
    # date.fromisoformat alone would also take 20240101 and 2024-W01-1.
    if not _DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def has_control_character(text: str) -> bool:
    """True when ``text`` holds a C0/C1 control character (tab, newline and NUL included)."""
    return not text.isprintable() and any(unicodedata.category(ch) == "Cc" for ch in text)


class HeaderProblem(Exception):
    """Line 1 is not the expected header; ``str()`` is the operator-facing explanation."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def _strip_bom(lines: Iterable[str]) -> Iterator[str]:
    it = iter(lines)
    first = next(it, None)
    if first is None:
        return
    yield first.removeprefix(codecs.BOM_UTF8.decode())
    yield from it


def data_rows(
    lines: Iterable[str], header: tuple[str, ...], problems: Problems
) -> Iterator[tuple[int, list[str]]]:
    """The data rows of a CSV given as text lines (line ends kept), with their file line.

    Checks line 1 against ``header`` first and raises :class:`HeaderProblem` when it is
    missing or different. Rows that are not valid CSV are recorded in ``problems`` and
    skipped; blank lines are skipped. Cells are given as read (not stripped).
    """
    expected = ",".join(header)
    reader = csv.reader(_strip_bom(lines), strict=True)
    try:
        found_row = next(reader)
    except StopIteration:
        raise HeaderProblem(
            f"the file is empty; expected the header line {expected}", "missing header"
        ) from None
    except csv.Error as exc:
        raise HeaderProblem(f"line 1 is not a CSV header: {exc}", f"not CSV: {exc}") from None
    found = tuple(cell.strip() for cell in found_row)
    if found != header:
        # Column names have no digits; a first line with digits is a data row, whose ID
        # number and name must not end up in the message.
        shown = (
            "it looks like a data row; is the header missing?"
            if any(ch.isdigit() for cell in found for ch in cell)
            else f"found {','.join(found)!r}"
        )
        raise HeaderProblem(f"line 1 must be the header {expected} ({shown})", "wrong header")
    last_line = reader.line_num
    while True:
        line = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(line, f"not valid CSV: {exc}")
            last_line = reader.line_num
            continue
        last_line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield line, row


def decoded_lines(
    stream: BinaryIO,
    problems: Problems,
    *,
    progress: ByteProgress | None = None,
    total: int = 0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[str]:
    """The lines of ``stream`` as text, each at most ``max_line_bytes`` long.

    A bad UTF-8 byte or an over-long line is recorded in ``problems`` with its line number;
    an over-long line is skipped in chunks (never held whole) and given as an empty line,
    so the numbering of the lines after it stays right.
    """
    # Decoding line by line (UTF-8 never has a newline byte inside a character) gives the
    # exact line of a bad byte, and counts bytes for the progress bar.
    done = 0
    number = 0
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            break
        number += 1
        done += len(raw)
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            problems.add(number, f"line is longer than {max_line_bytes} bytes")
            done += _skip_rest_of_line(stream)
            raw = b"\n"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.add(number, f"not valid UTF-8 (byte {exc.start + 1} of the line)")
            text = raw.decode("utf-8", "replace")
        if progress is not None and number % _PROGRESS_EVERY == 0:
            progress(done, total)
        yield text
    if progress is not None:
        progress(done, total)


def _skip_rest_of_line(stream: BinaryIO) -> int:
    skipped = 0
    while True:
        chunk = stream.readline(_SKIP_CHUNK)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped
