"""The replay's chunks checked in this process or spread over worker processes.

Checking a chunk of records is mostly CPU: reading the ledger's rows for its
certifications, re-deriving every record with the worker's own functions (decoding,
validation, the due date, the rules, the encoding) and comparing. Only the checks against
the output topics need what this process indexed from them; the rest of a record's checks
need its bytes and the ledger.

So a worker process is handed a chunk's records as plain tuples and does everything else:
it reads the ledger's rows over its own read-only connection, in the very snapshot of this
process's transaction (``pg_export_snapshot()`` here, ``SET TRANSACTION SNAPSHOT`` there),
re-derives, checks, and returns a :class:`ChunkChecked`: counters, the rule versions seen,
the timeliness lines already formatted, and per record an :class:`~certrecon.replay.check.Open`
for the output topics' checks, which this process concludes in read order. Processes are
started fresh, never forked from this one (it holds sockets and an event loop).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import re
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.util import Finalize
from types import TracebackType

import asyncpg

from certrecon.calendar import default_calendar
from certrecon.domain import RosterRecord
from certrecon.errors import CertreconError
from certrecon.replay.calendars import CalendarHistory
from certrecon.replay.check import (
    Basis,
    Open,
    assess,
    at_position,
    derive,
    peek_certification_id,
)
from certrecon.replay.model import CalendarEvent, Recorded, Rules
from certrecon.replay.report import timeliness_lines
from certrecon.store import db
from certrecon.store import replay as store
from certrecon.store.calendar_overrides import DATABASE_LAYER
from certrecon.store.db import Conn
from certrecon.store.roster import fetch_roster_versions
from certrecon.transport import Secret
from certrecon.worker.pipeline import Inbound, PipelineConfig

MAX_PROCESSES = 8
MIN_CPUS = 2
POOL_FROM_RECORDS = 20_000
"""Below this many records to read, starting processes costs more than it saves."""

Roster = dict[str, tuple[int, RosterRecord]] | None
Facts = tuple[dict[str, Recorded], Roster]
Row = tuple[str, int, int, int, bytes | None, bytes | None]
"""A record as handed to a worker process: topic, partition, offset, timestamp, key, value."""


def history(events: Sequence[CalendarEvent]) -> CalendarHistory:
    """The calendar as the ledger's events made it, at any instant."""
    return CalendarHistory(default_calendar(), events, layer=DATABASE_LAYER)


def basis(
    config: PipelineConfig, rules: Rules, now: dt.datetime, calendars: CalendarHistory
) -> Basis:
    return Basis(config, rules, now, calendars.at, calendars.current())


@dataclass(frozen=True, slots=True)
class ChunkChecked:
    """A chunk's checks but the output topics' (small and plain: it crosses processes)."""

    counts: dict[str, int]
    rule_versions: dict[str, int]
    """How many of the chunk's ledger decisions each rule version made, in first-seen order."""
    open: list[Open]
    """Per record with output-topic checks or discrepancies, in read order."""
    timeliness: str
    """The chunk's ``timeliness.csv`` lines ("" when no report is filed)."""


async def read_facts(conn: Conn, cids: Sequence[str | None], rules: Rules) -> Facts:
    """The ledger's rows for a chunk's certifications (and, for ``--rules current``, the
    people's roster versions of today)."""
    recorded = await store.recorded(conn, [cid for cid in cids if cid is not None])
    if rules is not Rules.CURRENT:
        return recorded, None
    numbers = sorted({r.id_number for r in recorded.values() if r.id_number})
    found = await fetch_roster_versions(conn, numbers)
    return recorded, {k: (v.version, v.record) for k, v in found.items()}


def check_chunk(
    records: Sequence[Inbound],
    cids: Sequence[str | None],
    facts: Facts,
    on: Basis,
    *,
    timeliness: bool,
) -> ChunkChecked:
    """Re-derive and check a chunk's records against the ledger's ``facts``."""
    recorded, roster = facts
    counts: dict[str, int] = {}
    versions: dict[str, int] = {}
    opened: list[Open] = []
    rows: list[list[str]] = []
    for record, cid in zip(records, cids, strict=True):
        found = recorded.get(cid) if cid else None
        if found is not None and found.decision is not None:
            version = found.decision.rule_version
            versions[version] = versions.get(version, 0) + 1
        derived = derive(record, at_position(record, found), on, roster)
        assessed = assess(record, found, derived, on)
        for name in assessed.counts:
            counts[name] = counts.get(name, 0) + 1
        if assessed.open is not None:
            opened.append(assessed.open)
        if timeliness and assessed.timeliness is not None:
            rows.append(assessed.timeliness.row())
    return ChunkChecked(counts, versions, opened, timeliness_lines(rows) if rows else "")


def processes_for(records: int, cpus: int | None = None) -> int:
    """How many processes check a window of ``records`` (0: this one alone), on ``cpus``
    (default: the CPUs this process may run on).

    This process reads the topics and concludes the output topics' checks; the rest (the
    ledger's rows, the re-derivation) is handed over as plain records. A worker process
    waits on PostgreSQL for its chunk's ledger rows for part of its time, so there is one
    more of them than CPUs. Measured on two CPUs with nothing else running,
    ``bench/audit_replay.py`` (100,000 records): alone 2,430–2,865 records/s, one worker
    process 2,852–2,902/s, two 3,732/s, three 4,086/s.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus is None or cpus < MIN_CPUS or records < POOL_FROM_RECORDS:
        return 0
    return min(cpus + 1, MAX_PROCESSES)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a worker process reads the ledger: the login, and the snapshot to read in."""

    dsn: str
    password: Secret | None
    snapshot: str


_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")
"""What ``pg_export_snapshot()`` returns (it is interpolated: SET takes no parameters)."""


async def snapshot_connection(source: Source) -> Conn:
    """A connection in a READ ONLY REPEATABLE READ transaction reading ``source``'s snapshot."""
    if not _SNAPSHOT_ID.fullmatch(source.snapshot):
        raise CertreconError(f"PostgreSQL exported no usable snapshot id: {source.snapshot!r}")
    conn = await db.connect(source.dsn, password=source.password)
    try:
        await conn.transaction(isolation="repeatable_read", readonly=True).start()
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{source.snapshot}'")
        await store.begin(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


class _Process:
    """In a worker process: what it checks with (set once, by :func:`_start`)."""

    basis: Basis
    rules: Rules
    timeliness: bool
    source: Source
    loop: asyncio.AbstractEventLoop
    conn: Conn | None = None


@dataclass(frozen=True, slots=True)
class _Setup:
    config: PipelineConfig
    rules: Rules
    now: dt.datetime
    events: list[CalendarEvent]
    source: Source
    timeliness: bool


def _start(setup: _Setup) -> None:
    # Ctrl-C reaches the whole process group; the replay's own process decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _Process.basis = basis(setup.config, setup.rules, setup.now, history(setup.events))
    _Process.rules = setup.rules
    _Process.timeliness = setup.timeliness
    _Process.source = setup.source
    _Process.loop = asyncio.new_event_loop()
    Finalize(None, _close, exitpriority=10)


def _close() -> None:
    """At the process's exit: end the session (its transaction only read) and the loop."""
    conn, _Process.conn = _Process.conn, None
    try:
        if conn is not None:
            _Process.loop.run_until_complete(conn.close(timeout=5))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        if conn is not None:
            conn.terminate()
    finally:
        _Process.loop.close()


def _connection() -> Conn:
    # Not in _start: a failure to connect is then a chunk's error, as it is.
    p = _Process
    if p.conn is None:
        p.conn = p.loop.run_until_complete(snapshot_connection(p.source))
    return p.conn


def _check_here(rows: list[Row]) -> ChunkChecked:
    p = _Process
    records = [Inbound(*row) for row in rows]
    cids = [peek_certification_id(r.value) for r in records]
    facts = p.loop.run_until_complete(read_facts(_connection(), cids, p.rules))
    return check_chunk(records, cids, facts, p.basis, timeliness=p.timeliness)


def _warm_up() -> None:
    _connection()


class Checker:
    """``await checker(records)``: the chunk's :class:`ChunkChecked`, computed in this
    process over ``conn`` (``processes == 0``) or in a pool reading the ledger in ``conn``'s
    snapshot; ``async with`` owns the pool.

    ``conn`` must be in a READ ONLY REPEATABLE READ transaction for as long as the checker
    is open: the pool's processes read the ledger in its snapshot.
    """

    def __init__(
        self,
        processes: int,
        *,
        conn: Conn,
        dsn: str,
        password: Secret | None,
        config: PipelineConfig,
        rules: Rules,
        now: dt.datetime,
        events: Sequence[CalendarEvent],
        calendars: CalendarHistory,
        timeliness: bool,
    ) -> None:
        self.processes = processes
        self._conn = conn
        self._dsn = dsn
        self._password = password
        self._config = config
        self._now = now
        self._events = list(events)
        self._rules = rules
        self._timeliness = timeliness
        self._basis = basis(config, rules, now, calendars)
        # One query at a time on the one connection, in chunk order (asyncio's lock is FIFO).
        self._reading = asyncio.Lock()
        self._pool: ProcessPoolExecutor | None = None

    async def __aenter__(self) -> Checker:
        if self.processes > 0:
            snapshot = await self._conn.fetchval("SELECT pg_export_snapshot()")
            source = Source(self._dsn, self._password, str(snapshot))
            setup = _Setup(
                self._config, self._rules, self._now, self._events, source, self._timeliness
            )
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(setup,),
            )
            # Every process starts now; a failure to connect shows again on a chunk.
            for _ in range(self.processes):
                self._pool.submit(_warm_up)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            # On an error nothing waits for chunks not yet started.
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=exc is not None)

    async def __call__(self, records: list[Inbound]) -> ChunkChecked:
        if self._pool is None:
            cids = [peek_certification_id(r.value) for r in records]
            async with self._reading:
                facts = await read_facts(self._conn, cids, self._rules)
            return check_chunk(records, cids, facts, self._basis, timeliness=self._timeliness)
        rows = [(r.topic, r.partition, r.offset, r.timestamp_ms, r.key, r.value) for r in records]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _check_here, rows)
