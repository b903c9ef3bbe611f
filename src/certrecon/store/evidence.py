"""Comparison evidence in PostgreSQL: file imports, topic messages and the person-level
review items they open (contract 1.1, "Big-data comparison evidence").

A piece of evidence is recorded once per ``(source, evidence_id)``: a repeat with the same
content (kind, ID number, name, event date) adds nothing; a repeat with other content is
refused (a file is rejected, a message is dead-lettered). Death and imprisonment evidence
also records a review item (逐人核实) in the same transaction; whether it is still open is
derived from the verdicts and releases (:mod:`certrecon.store.cycle`).

A file import is one transaction. The checked rows are streamed (binary COPY) in chunks;
the server records each chunk's new evidence while the next chunk is read and checked, and
keeps every row in a temporary table. Repeats are then looked for there, against the file
itself and against the evidence recorded before, and the cycle projection is merged once
for the whole file. Any problem anywhere rolls everything back, so a file is imported whole
or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from certrecon.csvfile import ByteProgress, Problems
from certrecon.domain import CST, CycleMode
from certrecon.errors import EvidenceImportError
from certrecon.evidence.csvfile import StagedRow, iter_staged_batches, raise_if_rejected
from certrecon.evidence.model import ADVERSE_KINDS, Evidence, EvidenceKind
from certrecon.reconcile.evidence import PersonEvidence, StaffVerdict, Verdict, person_evidence
from certrecon.store.db import Conn

__all__ = [
    "EvidenceImportSummary",
    "Recorded",
    "ResumeTarget",
    "TopicEvidence",
    "fetch_judged_evidence",
    "fetch_person_evidence",
    "fetch_verdicts",
    "import_evidence_file",
    "record_topic_evidence",
]

ADVERSE = tuple(sorted(k.value for k in ADVERSE_KINDS))

_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS evidence_import (
    line        bigint NOT NULL,
    source      text NOT NULL,
    evidence_id text NOT NULL,
    kind        text NOT NULL,
    id_number   text NOT NULL,
    name        text NOT NULL,
    event_date  date NOT NULL
) ON COMMIT DROP
"""
_CHUNK = """
CREATE TEMPORARY TABLE IF NOT EXISTS evidence_chunk (LIKE evidence_import) ON COMMIT DROP
"""
_STAGING_COLUMNS = ("line", "source", "evidence_id", "kind", "id_number", "name", "event_date")
# The chunk joins the file's rows; the next chunk is copied into an empty table.
_KEEP_CHUNK = "INSERT INTO evidence_import SELECT * FROM evidence_chunk; TRUNCATE evidence_chunk"
# This transaction records evidence with the cycle projection deferred (sql/0011).
_DEFER_PROJECTION = (
    "SELECT set_config('certrecon.evidence_import', pg_current_xact_id()::text, true)"
)

# Whether any (source, evidence_id) is on more than one line (one hash aggregate).
_FILE_REPEATS = """
SELECT EXISTS (SELECT FROM evidence_import GROUP BY source, evidence_id HAVING count(*) > 1)
"""
# A later line repeating an earlier one's identity with other content.
_FILE_CONFLICTS = """
SELECT line, first_line, count(*) OVER () AS total
FROM (SELECT line, kind, id_number, name, event_date,
             first_value(line) OVER w AS first_line,
             first_value((kind, id_number, name, event_date)) OVER w AS first_content
      FROM evidence_import
      WINDOW w AS (PARTITION BY source, evidence_id ORDER BY line)) s
WHERE (kind, id_number, name, event_date) IS DISTINCT FROM first_content
ORDER BY line
LIMIT $1
"""
# A line repeating evidence recorded before this import, with other content (a line
# contradicting an earlier line of the file, recorded by this import, is a file conflict).
_RECORDED_CONFLICTS = """
SELECT i.line, count(*) OVER () AS total
FROM evidence_import i
JOIN comparison_evidence e ON e.source = i.source AND e.evidence_id = i.evidence_id
WHERE (e.kind, e.id_number, e.name, e.event_date)
      IS DISTINCT FROM (i.kind, i.id_number, i.name, i.event_date)
  AND NOT (e.id > $2 AND e.via = 'file' AND e.file_sha256 = $3)
ORDER BY i.line
LIMIT $1
"""
# A chunk's new evidence recorded with the review items of its death and imprisonment
# evidence, in one statement: the items come from the rows inserted. A line whose identity
# is recorded already (before this import, by an earlier chunk or line, or by the worker
# meanwhile) is left out by the unique index itself, with no look-up of its own; whether it
# said the same is checked with the whole file before commit. Rows go in the order of their
# lines: the first of identical lines is the one recorded, and evidence ids follow the file.
_RECORD_CHUNK = """
WITH new AS (
    INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name, event_date,
                                     via, file_name, file_sha256, file_line)
    SELECT source, evidence_id, kind, id_number, name, event_date, 'file', $1, $2, line
    FROM evidence_chunk
    ORDER BY line
    ON CONFLICT (source, evidence_id) DO NOTHING
    RETURNING id, kind, id_number
),
items AS (
    INSERT INTO evidence_review_item (evidence_ref, id_number)
    SELECT id, id_number FROM new WHERE kind = ANY($3::text[])
    RETURNING 1
)
SELECT (SELECT count(*) FROM new) AS inserted, (SELECT count(*) FROM items) AS items
"""
# Proof of life this import recorded for people whose roster status is or was suspended (the
# roster's current status is checked with the rules, in resume_actions).
_PROOF_BASES = """
SELECT DISTINCT i.id_number, i.event_date
FROM evidence_import i
JOIN comparison_evidence e ON e.source = i.source AND e.evidence_id = i.evidence_id
WHERE i.kind = 'proof_of_life' AND e.id > $1 AND e.via = 'file'
  AND i.id_number IN (SELECT id_number FROM roster_version WHERE status = 'suspended')
ORDER BY i.event_date, i.id_number
"""
# Evidence imports run one after the other (an arbitrary constant shared by every process).
_IMPORT_LOCK = 0x6365_7274_6576_6964


@dataclass(frozen=True, slots=True)
class ResumeTarget:
    """Where the ``resume`` actions that new proof of life calls for go, and under which
    cycle rule they are derived (the worker's: ``resume_actions`` and
    ``publish_benefit_actions``)."""

    topic: str
    mode: CycleMode
    now: dt.datetime

    async def publish(self, conn: Conn, bases: Sequence[tuple[str, dt.date]]) -> int:
        """Publish the actions that proof of life dated ``bases`` (ID number, event date)
        calls for; how many were new."""
        # Imported here: the cycle's store reads evidence through this module.
        from certrecon.store.cycle import publish_benefit_actions, resume_actions

        actions = await resume_actions(conn, bases, self.mode)
        return len(await publish_benefit_actions(conn, actions, self.now, self.topic))


@dataclass(frozen=True, slots=True)
class EvidenceImportSummary:
    """What an import did."""

    rows: int
    inserted: int
    """New pieces of evidence recorded."""
    review_items: int
    """Person-level review items opened (death and imprisonment evidence)."""
    actions: int = 0
    """Benefit actions published: suspended people proven alive get payments resumed."""

    @property
    def unchanged(self) -> int:
        """Rows that repeated evidence already recorded (or an earlier line), identically."""
        return self.rows - self.inserted


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise EvidenceImportError(f"{path}: cannot read the file: {exc.strerror}", []) from exc
    return digest.digest()


def _affected(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def import_evidence_file(
    conn: Conn,
    path: Path,
    *,
    today: dt.date,
    progress: ByteProgress | None = None,
    rows_copied: Callable[[int], None] | None = None,
    resumes: ResumeTarget | None = None,
) -> EvidenceImportSummary:
    """Import a comparison evidence CSV file whole, or raise and change nothing.

    ``today`` is the local date (China Standard Time) that event dates may not pass. With
    ``resumes``, proof of life of a suspended person publishes the ``resume`` benefit action
    in the same transaction, exactly as the same evidence from the topic does.
    Raises :class:`EvidenceImportError` listing every problem by file line: a row the
    contract refuses, a line repeating an earlier line's ``(source, evidence_id)`` with
    other content, a row repeating recorded evidence with other content.
    """
    sha = _file_sha256(path)
    problems = Problems()
    source = str(path)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _IMPORT_LOCK)
            # The repeat checks hash or sort the whole file: in memory, not in temporary files.
            await conn.execute("SET LOCAL work_mem = '256MB'")
            await conn.execute(_STAGING)
            await conn.execute(_CHUNK)
            await conn.execute("TRUNCATE evidence_import, evidence_chunk")
            before = await conn.fetchval("SELECT COALESCE(max(id), 0) FROM comparison_evidence")
            await conn.execute(_DEFER_PROJECTION)
            recorder = _ChunkRecorder(conn, path.name, sha, problems)
            rows = await _stage(
                conn,
                path,
                today=today,
                problems=problems,
                progress=progress,
                rows_copied=rows_copied,
                recorder=recorder,
            )
            await conn.execute("ANALYZE evidence_import")
            repeats = bool(await conn.fetchval(_FILE_REPEATS))
            await _conflicts(conn, problems, repeats, before=before, sha=sha)
            raise_if_rejected(problems, source)
            await conn.execute("SELECT cycle_on_evidence_import()")
            actions = 0
            if resumes is not None:
                found = await conn.fetch(_PROOF_BASES, before)
                bases = [(r["id_number"], r["event_date"]) for r in found]
                actions = await resumes.publish(conn, bases)
            await conn.execute("DROP TABLE evidence_import, evidence_chunk")
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        raise EvidenceImportError(
            f"{source}: the database refused the evidence ({exc.sqlstate}): {exc.message}; "
            "nothing was imported",
            [],
        ) from exc
    return EvidenceImportSummary(rows, recorder.inserted, recorder.items, actions)


class _ChunkRecorder:
    """Records each staged chunk's new evidence (:data:`_RECORD_CHUNK`) until a problem is
    found; from then on the file is going to be rejected, and chunks are only kept for the
    checks that name every problem."""

    def __init__(self, conn: Conn, file_name: str, sha: bytes, problems: Problems) -> None:
        self._conn = conn
        self._file_name = file_name
        self._sha = sha
        self._problems = problems
        self.inserted = 0
        self.items = 0

    async def record(self) -> None:
        """Record the chunk in ``evidence_chunk``, then move it to ``evidence_import``."""
        if not self._problems:
            recorded = await self._conn.fetchrow(
                _RECORD_CHUNK, self._file_name, self._sha, list(ADVERSE)
            )
            assert recorded is not None
            self.inserted += int(recorded["inserted"])
            self.items += int(recorded["items"])
        await self._conn.execute(_KEEP_CHUNK)


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, no flags, no extension
_COPY_TRAILER = b"\xff\xff"
_ROW_START = struct.Struct("!hiq")  # field count; the line's length and value (bigint)
_TEXT_LENGTH = struct.Struct("!i")
_DATE = struct.Struct("!ii")  # length 4, days since 2000-01-01
_PG_EPOCH = dt.date(2000, 1, 1).toordinal()


def copy_data(rows: Sequence[StagedRow]) -> bytes:
    """``rows`` in PostgreSQL's binary COPY format, for the staging tables' columns.

    Encoded with the row checks, in their thread, so that the connection's own thread only
    sends bytes: a chunk's COPY no longer waits for the interpreter while the next chunk is
    checked. Sources, kinds, people and dates repeat from row to row; each is encoded once
    per chunk.
    """
    known: dict[str, bytes] = {}
    days: dict[dt.date, bytes] = {}
    parts = [_COPY_HEADER]
    append = parts.append
    row_start = _ROW_START.pack
    text_length = _TEXT_LENGTH.pack
    fields = len(_STAGING_COLUMNS)
    for line, source, evidence_id, kind, id_number, name, day in rows:
        append(row_start(fields, 8, line))
        for text in (source, evidence_id, kind, id_number, name):
            cell = known.get(text)
            if cell is None:
                encoded = text.encode()
                cell = text_length(len(encoded)) + encoded
                if text is not evidence_id:  # the one cell that never repeats
                    known[text] = cell
            append(cell)
        cell = days.get(day)
        if cell is None:
            cell = days[day] = _DATE.pack(4, day.toordinal() - _PG_EPOCH)
        append(cell)
    append(_COPY_TRAILER)
    return b"".join(parts)


def _next_chunk(batches: Iterator[list[StagedRow]]) -> tuple[int, bytes] | None:
    """The next batch's row count and COPY data (None after the last batch)."""
    batch = next(batches, None)
    if batch is None:
        return None
    return len(batch), copy_data(batch) if batch else b""


async def _once(data: bytes) -> AsyncIterator[bytes]:
    # Bytes given as such would be taken for a file name.
    yield data


async def _stage(
    conn: Conn,
    path: Path,
    *,
    today: dt.date,
    problems: Problems,
    progress: ByteProgress | None,
    rows_copied: Callable[[int], None] | None,
    recorder: _ChunkRecorder,
) -> int:
    """Copy the file's checked rows chunk by chunk, each recorded before the next is
    copied; how many rows.

    The next batch is read and checked in a thread while the server records the one before
    (the connection releases the interpreter while it waits for the socket), so the two
    overlap instead of taking turns.
    """
    loop = asyncio.get_running_loop()
    batches = iter_staged_batches(path, today=today, problems=problems, progress=progress)
    copied = 0
    with (
        contextlib.closing(batches),
        ThreadPoolExecutor(1, thread_name_prefix="evidence-check") as checker,
    ):
        following = loop.run_in_executor(checker, _next_chunk, batches)
        try:
            while (chunk := await following) is not None:
                rows, data = chunk
                if rows:
                    copied += _affected(
                        await conn.copy_to_table(
                            "evidence_chunk",
                            source=_once(data),
                            columns=_STAGING_COLUMNS,
                            format="binary",
                        )
                    )
                # Only now: checking holds the interpreter, and the COPY, sent in pieces as
                # the socket drains, would wait for it at every piece.
                following = loop.run_in_executor(checker, _next_chunk, batches)
                if rows:
                    await recorder.record()
                    if rows_copied is not None:
                        rows_copied(copied)
        finally:
            # A failed COPY leaves the next batch's check running: the pool waits for it on
            # the way out, and nobody is left to read what it returns or raises.
            following.cancel()
    return copied


async def _conflicts(
    conn: Conn, problems: Problems, repeats: bool, *, before: int, sha: bytes
) -> None:
    room = max(problems.room(), 1)
    if repeats:
        found = await conn.fetch(_FILE_CONFLICTS, room)
        for r in found:
            problems.add(
                r["line"],
                f"evidence_id repeats line {r['first_line']} of the same source with other content",
            )
        if found:
            problems.count_only(int(found[0]["total"]) - len(found))
    recorded = await conn.fetch(_RECORDED_CONFLICTS, room, before, sha)
    for r in recorded:
        problems.add(r["line"], "evidence_id of this source is already recorded with other content")
    if recorded:
        problems.count_only(int(recorded[0]["total"]) - len(recorded))


@dataclass(frozen=True, slots=True)
class TopicEvidence:
    """A valid evidence message and where it was read."""

    evidence: Evidence
    topic: str
    partition: int
    offset: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class Recorded:
    """What became of evidence messages: new ones, identical repeats, refused repeats."""

    inserted: tuple[TopicEvidence, ...]
    repeated: tuple[TopicEvidence, ...]
    conflicting: tuple[TopicEvidence, ...]


_RECORDED = """
SELECT source, evidence_id, kind, id_number, name, event_date
FROM comparison_evidence
WHERE (source, evidence_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
_INSERT_TOPIC = """
WITH new AS (
    INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name, event_date,
                                     observed_at, via, topic, kafka_partition, kafka_offset,
                                     raw)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::date[], $7::timestamptz[], $8::text[], $9::text[], $10::int[],
                         $11::bigint[], $12::bytea[])
    RETURNING id, kind, id_number
)
INSERT INTO evidence_review_item (evidence_ref, id_number)
SELECT id, id_number FROM new WHERE kind = ANY($13::text[])
"""


async def record_topic_evidence(conn: Conn, messages: Sequence[TopicEvidence]) -> Recorded:
    """Record evidence messages inside the caller's transaction (the batch's).

    A message repeating recorded evidence (or an earlier message of ``messages``) is
    ``repeated`` when identical and ``conflicting`` (for a dead letter) otherwise.
    """
    keys = {m.evidence.key for m in messages}
    known: dict[tuple[str, str], tuple[Any, ...]] = {}
    if keys:
        rows = await conn.fetch(_RECORDED, [k[0] for k in keys], [k[1] for k in keys])
        for r in rows:
            known[(r["source"], r["evidence_id"])] = (
                EvidenceKind(r["kind"]),
                r["id_number"],
                r["name"],
                r["event_date"],
            )
    inserted: list[TopicEvidence] = []
    repeated: list[TopicEvidence] = []
    conflicting: list[TopicEvidence] = []
    for m in messages:
        seen = known.get(m.evidence.key)
        if seen is None:
            known[m.evidence.key] = m.evidence.content
            inserted.append(m)
        elif seen == m.evidence.content:
            repeated.append(m)
        else:
            conflicting.append(m)
    if inserted:
        columns: list[list[Any]] = [[] for _ in range(12)]
        for m in inserted:
            e = m.evidence
            values = (
                e.source,
                e.evidence_id,
                e.kind.value,
                e.id_number,
                e.name,
                e.event_date,
                e.observed_at,
                "topic",
                m.topic,
                m.partition,
                m.offset,
                m.raw,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        await conn.execute(_INSERT_TOPIC, *columns, list(ADVERSE))
    return Recorded(tuple(inserted), tuple(repeated), tuple(conflicting))


_PERSON = """
SELECT e.id, e.source, e.evidence_id, e.kind, e.id_number, e.name, e.event_date,
       e.observed_at
FROM comparison_evidence e WHERE e.id_number = ANY($1::text[])
ORDER BY e.id
"""


async def fetch_person_evidence(conn: Conn, id_numbers: Sequence[str]) -> dict[str, list[Evidence]]:
    """The recorded evidence of these people, keyed by ID number."""
    found: dict[str, list[Evidence]] = {}
    for r in await conn.fetch(_PERSON, list(id_numbers)):
        found.setdefault(r["id_number"], []).append(_evidence(r))
    return found


def _evidence(r: asyncpg.Record) -> Evidence:
    return Evidence(
        evidence_id=r["evidence_id"],
        source=r["source"],
        kind=EvidenceKind(r["kind"]),
        id_number=r["id_number"],
        name=r["name"],
        event_date=r["event_date"],
        observed_at=r["observed_at"],
    )


_VERDICTS = """
SELECT e.id_number, v.decision_id, v.verdict, v.decided_by, v.decided_at, v.effective_date,
       array_agg(e.source ORDER BY e.id) AS sources,
       array_agg(e.evidence_id ORDER BY e.id) AS evidence_ids
FROM evidence_verdict v JOIN comparison_evidence e ON e.id = v.evidence_ref
WHERE e.id_number = ANY($1::text[])
GROUP BY e.id_number, v.decision_id, v.verdict, v.decided_by, v.decided_at, v.effective_date
ORDER BY min(v.id)
"""


async def fetch_verdicts(conn: Conn, id_numbers: Sequence[str]) -> dict[str, list[StaffVerdict]]:
    """The staff verdicts on these people's evidence, in the order they were given."""
    verdicts: dict[str, list[StaffVerdict]] = {}
    for r in await conn.fetch(_VERDICTS, list(id_numbers)):
        verdicts.setdefault(r["id_number"], []).append(
            StaffVerdict(
                evidence=frozenset(zip(r["sources"], r["evidence_ids"], strict=True)),
                verdict=Verdict(r["verdict"]),
                decided_by=r["decided_by"].removeprefix("staff:"),
                decided_on=r["decided_at"].astimezone(CST).date(),
                effective_date=r["effective_date"],
            )
        )
    return verdicts


async def fetch_judged_evidence(conn: Conn, id_numbers: Sequence[str]) -> dict[str, PersonEvidence]:
    """These people's evidence judged against the verdicts so far (people without any
    evidence are absent)."""
    evidence = await fetch_person_evidence(conn, id_numbers)
    if not evidence:
        return {}
    verdicts = await fetch_verdicts(conn, list(evidence))
    return {k: person_evidence(v, verdicts.get(k, ())) for k, v in evidence.items()}
