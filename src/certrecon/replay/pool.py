"""Re-derivation of the replay's chunks, in this process or spread over worker processes.

Re-deriving a record (decoding, validation, the due date, the rules, the encoding) is pure
CPU work with the worker's own functions; reading the topics and the ledger and checking the
results is I/O and bookkeeping. With three CPUs or more the re-derivation runs in a pool of
processes (started fresh, never forked from this one: it holds sockets and an event loop),
each holding the same :class:`~certrecon.replay.check.Basis` built from the same ledger
facts, while this process reads the next chunks and checks the previous ones. The pool's
processes read nothing and write nothing: they are given records and ledger rows and
return :class:`~certrecon.replay.check.Derivation` values.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import signal
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType

from certrecon.calendar import default_calendar
from certrecon.domain import RosterRecord
from certrecon.replay.calendars import CalendarHistory
from certrecon.replay.check import Basis, Derivation, derive
from certrecon.replay.model import CalendarEvent, Recorded, Rules
from certrecon.store.calendar_overrides import DATABASE_LAYER
from certrecon.worker.pipeline import Inbound, PipelineConfig

MAX_PROCESSES = 8
MIN_CPUS = 3
POOL_FROM_RECORDS = 20_000
"""Below this many records to read, starting processes costs more than it saves."""

Work = list[tuple[Inbound, Recorded | None]]
"""A chunk's records, each with the ledger's row recorded at its position (if any)."""
Roster = Mapping[str, tuple[int, RosterRecord]] | None


def history(events: Sequence[CalendarEvent]) -> CalendarHistory:
    """The calendar as the ledger's events made it, at any instant."""
    return CalendarHistory(default_calendar(), events, layer=DATABASE_LAYER)


def basis(
    config: PipelineConfig, rules: Rules, now: dt.datetime, calendars: CalendarHistory
) -> Basis:
    return Basis(config, rules, now, calendars.at, calendars.current())


def derive_all(work: Work, roster: Roster, on: Basis) -> list[Derivation]:
    return [derive(record, recorded, on, roster) for record, recorded in work]


def processes_for(records: int) -> int:
    """How many processes re-derive a window of ``records`` (0: this one alone).

    This process keeps one CPU for reading and checking. Handing records to another
    process and back costs about half as much CPU again as re-deriving them here, so a
    pool pays only from three CPUs on (a window of 100,000 records: 40 s of CPU here
    alone, 70 s with a pool of two).
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus is None or cpus < MIN_CPUS or records < POOL_FROM_RECORDS:
        return 0
    return min(cpus - 1, MAX_PROCESSES)


_PROCESS: dict[str, Basis] = {}
"""In a pool process: the basis it re-derives with (set once, by :func:`_start`)."""


def _start(
    config: PipelineConfig, rules: Rules, now: dt.datetime, events: list[CalendarEvent]
) -> None:
    # Ctrl-C reaches the whole process group; the replay's own process decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _PROCESS["basis"] = basis(config, rules, now, history(events))


def _derive_here(work: Work, roster: Roster) -> list[Derivation]:
    return derive_all(work, roster, _PROCESS["basis"])


class Deriver:
    """``await deriver(work, roster)``: the chunk's derivations, in order, computed in this
    process (``processes == 0``) or in a pool; ``async with`` owns the pool."""

    def __init__(
        self,
        processes: int,
        *,
        config: PipelineConfig,
        rules: Rules,
        now: dt.datetime,
        events: Sequence[CalendarEvent],
        calendars: CalendarHistory,
    ) -> None:
        self.processes = processes
        self._basis = basis(config, rules, now, calendars)
        self._pool: ProcessPoolExecutor | None = None
        if processes > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(config, rules, now, list(events)),
            )

    async def __aenter__(self) -> Deriver:
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

    async def __call__(self, work: Work, roster: Roster) -> list[Derivation]:
        if self._pool is None:
            return derive_all(work, roster, self._basis)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _derive_here, work, roster)
