"""Reading the operator's CSV files (roster, comparison evidence): streaming, line-numbered.

Both files follow the same conventions, kept here once:

* UTF-8, with or without a byte-order mark; a bad byte or a NUL is reported with its line.
* Line 1 is the header and must name the contract's columns in the contract's order.
* Problems are reported by **file line number** (line 1 is the header, so the first data
  row is on line 2, the number a spreadsheet shows), never with the ID number or name of
  the row, so a rejection on a terminal or in a scheduler's log leaks no personal data.
* Files are read one line at a time and a line longer than :data:`MAX_LINE_BYTES` stops
  the import at once (a binary file, ``/dev/zero``, a file of another kind), so a file
  costs bounded memory whatever it holds; at most :data:`MAX_PROBLEMS_KEPT` problems are
  kept, all are counted.
* Blank lines carry no row.

Pure apart from reading the stream it is given.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from certrecon.errors import FileRejectedError
from certrecon.text import shorten

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_PROBLEMS_KEPT",
    "ByteProgress",
    "DateCells",
    "Problems",
    "check_header",
    "data_rows",
    "decoded_lines",
    "parse_iso_date",
]

MAX_LINE_BYTES = 64 * 1024
"""A longer line stops the import: a row of these files is a few hundred bytes at most."""
MAX_PROBLEMS_KEPT = 1000
"""Problems kept for the report; the rest are only counted."""

ByteProgress = Callable[[int, int], None]
"""Called now and then with (bytes read so far, file size in bytes)."""

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_iso_date(text: str) -> dt.date | None:
    """The date of a strict ``YYYY-MM-DD`` text, else None."""
    # date.fromisoformat alone would also take 20240101 and 2024-W01-1.
    if not _DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


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
            problems.append(f"{column} {shorten(text, 40)!r} is not a date of the form YYYY-MM-DD")
            return None
        day = parse_iso_date(text)
        if day is None:
            problems.append(f"{column} {text!r} is not a valid calendar date")
            return None
        self._known[text] = day
        return day


class Problems:
    """The problems of one file: the first :data:`MAX_PROBLEMS_KEPT` kept, all counted."""

    def __init__(self, keep: int = MAX_PROBLEMS_KEPT) -> None:
        self._keep = keep
        self.kept: list[tuple[int, str]] = []
        self.count = 0
        self._lines: set[int] = set()
        self._last = 0
        self.lines = 0
        """How many distinct lines have a problem."""

    def add(self, line: int, problem: str) -> None:
        self.count += 1
        # Problems come (nearly) in line order; beyond the cap only the last line is
        # remembered, so memory stays bounded and the line count stays close.
        if line != self._last and line not in self._lines:
            self.lines += 1
            if len(self._lines) < self._keep:
                self._lines.add(line)
        self._last = line
        if len(self.kept) < self._keep:
            self.kept.append((line, problem))

    def room(self) -> int:
        """How many more problems would be kept."""
        return max(0, self._keep - len(self.kept))

    def count_only(self, n: int) -> None:
        """Count ``n`` more problems, each on its own line, without keeping them."""
        self.count += n
        self.lines += n

    def __bool__(self) -> bool:
        return self.count > 0

    def rejection(self, source: str, error: type[FileRejectedError]) -> FileRejectedError:
        """The ``error`` that rejects the file, listing the kept problems in line order."""
        self.kept.sort(key=lambda p: p[0])
        return error(
            f"{source}: rejected, nothing was imported: {self.count} problem(s) on "
            f"{self.lines} line(s) (numbers are file line numbers; line 1 is the header)",
            list(self.kept),
            total=self.count,
        )


def _strip_bom(lines: Iterator[str]) -> Iterator[str]:
    first = next(lines, None)
    if first is None:
        return
    yield first.removeprefix(codecs.BOM_UTF8.decode())
    yield from lines


def check_header(
    reader: Iterator[list[str]],
    header: tuple[str, ...],
    source: str,
    error: type[FileRejectedError],
    optional: tuple[str, ...] = (),
) -> int:
    """Read line 1 and raise ``error`` unless it is ``header``, optionally followed by the
    first columns of ``optional``; returns the number of columns the file has."""
    accepted = [header + optional[:k] for k in range(len(optional) + 1)]
    expected = " or ".join(",".join(h) for h in accepted)
    try:
        found_row = next(reader)
    except StopIteration:
        raise error(
            f"{source}: the file is empty; expected the header line {expected}",
            [(1, "missing header")],
        ) from None
    except csv.Error as exc:
        raise error(
            f"{source}: line 1 is not a CSV header: {exc}", [(1, f"not CSV: {exc}")]
        ) from None
    found = tuple(cell.strip() for cell in found_row)
    if found not in accepted:
        # Column names have no digits; a first line with digits is a data row, whose ID
        # number and name must not end up in the message.
        shown = (
            "it looks like a data row; is the header missing?"
            if any(ch.isdigit() for cell in found for ch in cell)
            else f"found {shorten(','.join(found), 200)!r}"
        )
        raise error(
            f"{source}: line 1 must be the header {expected} ({shown})", [(1, "wrong header")]
        )
    return len(found)


def data_rows(
    lines: Iterable[str],
    header: tuple[str, ...],
    problems: Problems,
    *,
    source: str,
    error: type[FileRejectedError],
    optional: tuple[str, ...] = (),
) -> Iterator[tuple[int, list[str]]]:
    """The data rows of a CSV given as text lines (line ends kept), with their file line.

    The header is checked when the first row is asked for (a wrong one raises ``error``
    at once); it may add the first columns of ``optional`` after ``header``, and rows of a
    file without some of them get empty cells for them; then a row with another number of
    cells than the header goes to ``problems`` and is yielded with its first cell only (a key
    for finding repeats). Rows that are not
    valid CSV go to ``problems``; blank lines are skipped. Cells are given as read (not stripped).
    """
    reader = csv.reader(_strip_bom(iter(lines)), strict=True)
    width = check_header(reader, header, source, error, optional)
    missing = [""] * (len(header) + len(optional) - width)
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
            continue  # blank lines, such as a trailing one, carry no row
        if optional and len(row) != width:
            # The caller cannot tell a short row of a wide file from a row of a narrow one.
            problems.add(line, f"expected {width} cells, found {len(row)}")
            row = row[:1]
        elif missing:
            row.extend(missing)
        yield line, row


def decoded_lines(
    stream: BinaryIO,
    problems: Problems,
    *,
    source: str,
    error: type[FileRejectedError],
    kind: str,
    progress: ByteProgress | None = None,
    total: int = 0,
) -> Iterator[str]:
    """The lines of ``stream`` as text; a line over :data:`MAX_LINE_BYTES` raises ``error``.

    ``kind`` names the file in that message ("a roster CSV file"). Undecodable bytes and NUL
    characters go to ``problems`` with their line.
    """
    # The file is read in blocks that end at a line break. A block without a NUL byte, a
    # long line, a bad byte or a line break other than \n and \r\n is decoded and split in
    # one call each; any other block is read line by line, which finds the exact line of
    # each problem. Reading is bounded: a block is BLOCK_BYTES plus at most one line.
    done = 0
    number = 0
    while True:
        raw = _read(stream.read, _BLOCK_BYTES, source=source, error=error, after=number)
        if raw and not raw.endswith(b"\n"):
            raw += _read(
                stream.readline, MAX_LINE_BYTES + 1, source=source, error=error, after=number
            )
        if not raw:
            break
        lines = _clean_block(raw)
        if lines is None:
            lines = list(
                _lines_one_by_one(
                    io.BytesIO(raw), problems, source=source, error=error, kind=kind, first=number
                )
            )
        number += len(lines)
        done += len(raw)
        yield from lines
        if progress is not None:
            progress(done, total)
    if progress is not None:
        progress(done, total)


_BLOCK_BYTES = 1 << 20


def _read(
    read: Callable[[int], bytes],
    size: int,
    *,
    source: str,
    error: type[FileRejectedError],
    after: int,
) -> bytes:
    """``read(size)``; a failing read is ``error`` naming the last line read whole."""
    try:
        return read(size)
    except OSError as exc:
        raise error(f"{source}: reading failed after line {after}: {exc.strerror}", []) from exc


def _clean_block(raw: bytes) -> list[str] | None:
    """The lines of a block (line ends kept) when nothing in it needs a closer look."""
    if b"\x00" in raw or max(map(len, raw.split(b"\n"))) >= MAX_LINE_BYTES:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.splitlines(keepends=True)
    # splitlines also breaks at \r, \v, \f, \x1c-\x1e, \x85, U+2028 and U+2029; the files
    # break lines at \n only (\r\n counts once either way), so a block holding one of those
    # elsewhere is read line by line.
    if len(lines) != raw.count(b"\n") + (not raw.endswith(b"\n")):
        return None
    return lines


def _lines_one_by_one(
    stream: BinaryIO,
    problems: Problems,
    *,
    source: str,
    error: type[FileRejectedError],
    kind: str,
    first: int,
) -> Iterator[str]:
    """The lines of ``stream``, numbered from ``first`` + 1, each checked on its own."""
    # Decoding line by line (UTF-8 never has a newline byte inside a character) gives the
    # exact line of a bad byte. readline is bounded, so a file without line breaks costs
    # MAX_LINE_BYTES, not its size.
    number = first
    while True:
        raw = _read(stream.readline, MAX_LINE_BYTES + 1, source=source, error=error, after=number)
        if not raw:
            break
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise error(
                f"{source}: rejected, nothing was imported: line {number} is longer than "
                f"{MAX_LINE_BYTES:,} bytes; this does not look like {kind}",
                [(number, f"line longer than {MAX_LINE_BYTES:,} bytes")],
            )
        if b"\x00" in raw:
            # csv would stop at it, and PostgreSQL cannot store it.
            problems.add(number, "contains a NUL byte; is this a binary file?")
            raw = raw.replace(b"\x00", b"")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.add(number, f"not valid UTF-8 (byte {exc.start + 1} of the line)")
            text = raw.decode("utf-8", "replace")
        yield text
