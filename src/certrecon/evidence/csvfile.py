"""Comparison evidence files: ``certrecon evidence import FILE`` (contract: "Big-data comparison
evidence").

UTF-8 CSV with the header ``evidence_id,kind,id_number,name,event_date,source``, read with
the conventions of :mod:`certrecon.csvfile` (streaming, line-length cap, problems by file
line, never echoing an ID number or a name). A file is all-or-nothing: the importer streams
the rows into the database and commits only when this module found no problem in the whole
file. Repeats of an ``(source, evidence_id)`` within the file or against evidence already
recorded are the importer's to check, with the database, so that memory stays bounded
whatever the file's size.

Pure apart from reading the file.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path

from certrecon.consumers.models import NAME_MAX_LENGTH, name_problems
from certrecon.csvfile import (
    ByteProgress,
    DateCells,
    Problems,
    data_rows,
    decoded_lines,
    parse_iso_date,
)
from certrecon.errors import EvidenceImportError
from certrecon.evidence.model import (
    SOURCE_MAX_LENGTH,
    Evidence,
    EvidenceKind,
    event_date_problems,
    is_evidence_id,
    person_problems,
)
from certrecon.ids import all_valid_resident_numbers, id_number_problems, normalise_id_number
from certrecon.text import shorten

__all__ = [
    "HEADER",
    "StagedRow",
    "iter_evidence_file",
    "iter_staged_batches",
    "parse_evidence",
    "raise_if_rejected",
    "staged_batches",
]

HEADER: tuple[str, ...] = ("evidence_id", "kind", "id_number", "name", "event_date", "source")
"""The contract's header, in this order."""

_KINDS = {k.value: k for k in EvidenceKind}
_KIND_LIST = ", ".join(k.value for k in EvidenceKind)


StagedRow = tuple[int, str, str, str, str, str, dt.date]
"""A valid row as the importer stages it: (line, source, evidence_id, kind, id_number, name,
event_date), the ID number normalised and every cell stripped."""

BATCH_ROWS = 20_000
"""Rows checked together: the checks run a column at a time over a batch."""


def parse_evidence(
    lines: Iterable[str], *, today: dt.date, problems: Problems, source: str = "evidence file"
) -> Iterator[tuple[int, Evidence]]:
    """The valid rows of an evidence CSV given as text lines, with their file line numbers.

    Every problem is added to ``problems`` (the caller must check it after the last row);
    rows with a problem are not yielded. ``today`` (local date) rejects event dates and
    birth dates after it. Raises :class:`EvidenceImportError` at once for a wrong header.
    """
    return _as_evidence(staged_batches(lines, today=today, problems=problems, source=source))


def _as_evidence(batches: Iterable[list[StagedRow]]) -> Iterator[tuple[int, Evidence]]:
    for batch in batches:
        for line, source, evidence_id, kind, id_number, name, day in batch:
            evidence = Evidence(
                evidence_id=evidence_id,
                source=source,
                kind=_KINDS[kind],
                id_number=id_number,
                name=name,
                event_date=day,
            )
            yield line, evidence


def staged_batches(
    lines: Iterable[str], *, today: dt.date, problems: Problems, source: str = "evidence file"
) -> Iterator[list[StagedRow]]:
    """:func:`parse_evidence` in batches of :class:`StagedRow`, what the importer copies.

    A batch is checked a column at a time, each distinct value once (a feed repeats the same
    people, dates and sources over and over). A batch where anything is amiss is checked
    again row by row, which names every problem with its line, so the problems found are
    exactly those of the row-by-row checks.
    """
    cells = _Cells(today)
    rows = data_rows(lines, HEADER, problems, source=source, error=EvidenceImportError)
    while batch := list(itertools.islice(rows, BATCH_ROWS)):
        staged = cells.batch(batch)
        if staged is None:
            staged = []
            for line, row in batch:
                evidence, row_problems = _check_row(row, cells.dates, cells.people)
                for problem in row_problems:
                    problems.add(line, problem)
                if evidence is not None:
                    staged.append(
                        (
                            line,
                            evidence.source,
                            evidence.evidence_id,
                            evidence.kind.value,
                            evidence.id_number,
                            evidence.name,
                            evidence.event_date,
                        )
                    )
        yield staged


_EVIDENCE_IDS = re.compile(r"[A-Za-z0-9_:.-]{1,64}(?:\n[A-Za-z0-9_:.-]{1,64})*")
"""A column of good evidence_id cells joined by newlines (the cells are stripped)."""


def _stripped(column: tuple[str, ...]) -> tuple[str, ...]:
    """The cells of a column stripped (faster than searching the column for a cell that
    needs it)."""
    return tuple(map(str.strip, column))


class _Cells:
    """The column-wise checks of a batch, with what they learnt about distinct values."""

    LIMIT = 200_000
    """Known values kept per column (and at most a batch more); a column starts over when
    full."""

    def __init__(self, today: dt.date) -> None:
        self.today = today
        self.dates = DateCells()
        self.people = _PersonCells(today)
        self._ids: dict[str, str] = {}
        """Good ID numbers, as written -> normalised."""
        self._names: set[str] = set()
        self._days: dict[str, dt.date] = {}
        self._sources: set[str] = set()

    def batch(self, batch: list[tuple[int, list[str]]]) -> list[StagedRow] | None:
        """The batch staged, or None when a row needs the row-by-row checks."""
        line_numbers, rows = zip(*batch, strict=True)
        if any(len(row) != len(HEADER) for row in rows):
            return None
        # Bounded memory: a full column starts over before a batch, never during one (its
        # values are looked up again at the end).
        for known in (self._ids, self._names, self._days, self._sources):
            if len(known) >= self.LIMIT:
                known.clear()
        evidence_ids, kinds, id_numbers, names, days, sources = map(
            _stripped, zip(*rows, strict=True)
        )
        joined_ids = "\n".join(evidence_ids)
        if not (
            _EVIDENCE_IDS.fullmatch(joined_ids)
            and joined_ids.count("\n") == len(evidence_ids) - 1  # no line break in a cell
            and _KINDS.keys() >= set(kinds)
            and self._known(self._names, names, _good_name)
            and self._known(self._sources, sources, _good_source)
        ):
            return None
        ids = self._ids
        fresh = tuple(set(id_numbers).difference(ids))
        if all_valid_resident_numbers(fresh, today=self.today):
            ids.update(zip(fresh, fresh, strict=True))
        else:
            for raw in fresh:
                normal = normalise_id_number(raw)
                if not normal or id_number_problems(normal, today=self.today):
                    return None
                ids[raw] = normal
        known_days = self._days
        for text in set(days).difference(known_days):
            day = parse_iso_date(text)
            if day is None or event_date_problems(day, self.today):
                return None
            known_days[text] = day
        return list(
            zip(
                line_numbers,
                sources,
                evidence_ids,
                kinds,
                map(ids.__getitem__, id_numbers),
                names,
                map(known_days.__getitem__, days),
                strict=True,
            )
        )

    def _known(self, known: set[str], values: Sequence[str], good: Callable[[str], bool]) -> bool:
        for value in set(values).difference(known):
            if not good(value):
                return False
            known.add(value)
        return True


# The rules of person_problems and _check_row, as predicates on one cell.


def _good_name(name: str) -> bool:
    return 0 < len(name) <= NAME_MAX_LENGTH and not name_problems(name)


def _good_source(source: str) -> bool:
    return 0 < len(source) <= SOURCE_MAX_LENGTH and not name_problems(source)


class _PersonCells:
    """The checks of a row's person, cached: a feed names the same person again and again
    (every trip, every outpatient visit). Bounded: the cache starts over when full."""

    LIMIT = 200_000

    def __init__(self, today: dt.date) -> None:
        self.today = today
        self._known: dict[tuple[str, str], list[str]] = {}

    def problems(self, id_number: str, name: str) -> list[str]:
        key = (id_number, name)
        found = self._known.get(key)
        if found is None:
            found = [f"{c} {p}" for c, p in person_problems(id_number, name, self.today)]
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            self._known[key] = found
        return found


def _check_row(
    row: list[str], dates: DateCells, people: _PersonCells
) -> tuple[Evidence | None, list[str]]:
    if len(row) != len(HEADER):
        return None, [f"expected {len(HEADER)} cells, found {len(row)}"]
    evidence_id, kind_text, id_number, name, day_text, source = (cell.strip() for cell in row)
    problems: list[str] = []
    if not is_evidence_id(evidence_id):
        problems.append("evidence_id must be 1–64 characters from A-Z a-z 0-9 _ : . -")
    kind = _KINDS.get(kind_text)
    if kind is None:
        problems.append(f"kind {shorten(kind_text, 40)!r} is not one of {_KIND_LIST}")
    id_number = normalise_id_number(id_number)
    problems.extend(people.problems(id_number, name))
    day = dates.parse("event_date", day_text, problems)
    if day is None and not day_text:
        problems.append("event_date is empty")
    elif day is not None:
        problems.extend(f"event_date {p}" for p in event_date_problems(day, people.today))
    if not source:
        problems.append("source is empty")
    elif len(source) > SOURCE_MAX_LENGTH:
        problems.append(f"source is longer than {SOURCE_MAX_LENGTH} characters")
    else:
        problems.extend(f"source {p}" for p in name_problems(source))
    if problems or kind is None or day is None:
        return None, problems
    return (
        Evidence(
            evidence_id=evidence_id,
            source=source,
            kind=kind,
            id_number=id_number,
            name=name,
            event_date=day,
        ),
        problems,
    )


def iter_evidence_file(
    path: Path,
    *,
    today: dt.date,
    problems: Problems,
    progress: ByteProgress | None = None,
) -> Iterator[tuple[int, Evidence]]:
    """Stream the valid rows of an evidence file; see :func:`parse_evidence`.

    Raises :class:`EvidenceImportError` when the file cannot be read, its header is wrong or
    a line is longer than :data:`~certrecon.csvfile.MAX_LINE_BYTES`.
    After the last row, call :func:`raise_if_rejected` before committing anything.
    """
    return _as_evidence(
        iter_staged_batches(path, today=today, problems=problems, progress=progress)
    )


def iter_staged_batches(
    path: Path,
    *,
    today: dt.date,
    problems: Problems,
    progress: ByteProgress | None = None,
) -> Generator[list[StagedRow]]:
    """Stream the valid rows of an evidence file in batches; see :func:`staged_batches`.

    Raises as :func:`iter_evidence_file` does.
    """
    try:
        total = path.stat().st_size
        with path.open("rb") as stream:
            lines = decoded_lines(
                stream,
                problems,
                source=str(path),
                error=EvidenceImportError,
                kind="a comparison evidence CSV file",
                progress=progress,
                total=total,
            )
            yield from staged_batches(lines, today=today, problems=problems, source=str(path))
    except OSError as exc:
        raise EvidenceImportError(f"{path}: cannot read the file: {exc.strerror}", []) from exc


def raise_if_rejected(problems: Problems, source: str) -> None:
    """Raise :class:`EvidenceImportError` listing the problems, when there are any."""
    if problems:
        raise problems.rejection(source, EvidenceImportError)
