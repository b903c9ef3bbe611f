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
from collections.abc import Iterable, Iterator
from pathlib import Path

from certrecon.consumers.models import name_problems
from certrecon.csvfile import ByteProgress, DateCells, Problems, data_rows, decoded_lines
from certrecon.errors import EvidenceImportError
from certrecon.evidence.model import (
    SOURCE_MAX_LENGTH,
    Evidence,
    EvidenceKind,
    event_date_problems,
    is_evidence_id,
    person_problems,
)
from certrecon.ids import normalise_id_number
from certrecon.text import shorten

__all__ = ["HEADER", "iter_evidence_file", "parse_evidence", "raise_if_rejected"]

HEADER: tuple[str, ...] = ("evidence_id", "kind", "id_number", "name", "event_date", "source")
"""The contract's header, in this order."""

_KINDS = {k.value: k for k in EvidenceKind}
_KIND_LIST = ", ".join(k.value for k in EvidenceKind)


def parse_evidence(
    lines: Iterable[str], *, today: dt.date, problems: Problems, source: str = "evidence file"
) -> Iterator[tuple[int, Evidence]]:
    """The valid rows of an evidence CSV given as text lines, with their file line numbers.

    Every problem is added to ``problems`` (the caller must check it after the last row);
    rows with a problem are not yielded. ``today`` (local date) rejects event dates and
    birth dates after it. Raises :class:`EvidenceImportError` at once for a wrong header.
    """
    dates = DateCells()
    people = _PersonCells(today)
    rows = data_rows(lines, HEADER, problems, source=source, error=EvidenceImportError)
    for line, row in rows:
        evidence, row_problems = _check_row(row, dates, people)
        for problem in row_problems:
            problems.add(line, problem)
        if evidence is not None:
            yield line, evidence


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
            yield from parse_evidence(lines, today=today, problems=problems, source=str(path))
    except OSError as exc:
        raise EvidenceImportError(f"{path}: cannot read the file: {exc.strerror}", []) from exc


def raise_if_rejected(problems: Problems, source: str) -> None:
    """Raise :class:`EvidenceImportError` listing the problems, when there are any."""
    if problems:
        raise problems.rejection(source, EvidenceImportError)
