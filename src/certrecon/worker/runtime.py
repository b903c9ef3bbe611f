"""What the worker hands its background services: a few narrow, shared objects.

A service (monitor, checkpoint, health listener, or one a test adds) receives a
:class:`Runtime` and the stop event; it never sees the worker itself. It can read the
settings, the clock and the pool, count in the metrics, ask the relay to look at the
outbox now, and (the monitor alone) replace the working-day calendar through
:class:`CalendarCell`. Each service states the part it uses as a ``typing.Protocol``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from certrecon.calendar import WorkingCalendar
from certrecon.settings import Settings
from certrecon.worker.metrics import Metrics

Clock = Callable[[], dt.datetime]

Check = Callable[[], Awaitable[None]]
"""A readiness check: returns when ready, raises (any exception, message shown) when not."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


YOUNG_COLLECTION_THRESHOLD = 50_000
"""Container allocations between two young-generation collections (CPython's default: 700)."""


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a long-running worker; call once, after start-up.

    A batch allocates some tens of objects per record and keeps them until it is committed,
    so with CPython's defaults they survive young collections, are promoted, and the older
    collections that follow rescan every module, class and schema loaded at start-up. The
    objects alive now are frozen (never scanned again; they live as long as the process),
    and young collections run every ``YOUNG_COLLECTION_THRESHOLD`` allocations: the
    worker's data holds almost no reference cycles, so this costs little memory.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


class CalendarCell:
    """The working-day calendar in force in this process.

    The batch loop reads it for every batch; the deadline monitor replaces it when the
    stored overrides or publications change. A reader takes one calendar for a whole
    batch or tick (a replacement never reaches into one already started).
    """

    def __init__(self, calendar: WorkingCalendar | None = None) -> None:
        self._calendar = calendar

    @property
    def current(self) -> WorkingCalendar | None:
        return self._calendar

    def get(self) -> WorkingCalendar:
        if self._calendar is None:
            raise RuntimeError("the working-day calendar is not loaded yet")
        return self._calendar

    def replace(self, calendar: WorkingCalendar) -> None:
        self._calendar = calendar


@dataclass(frozen=True, slots=True)
class Runtime:
    """The worker's shared objects, as its background services see them."""

    settings: Settings
    dsn: str
    clock: Clock
    metrics: Metrics
    calendar: CalendarCell
    pool: asyncpg.Pool[Any]
    wake_relay: Callable[[], None]
    """Ask the relay to publish now (after queueing outbox rows) instead of at its next
    idle tick."""
    readiness: Mapping[str, Check]


Service = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]
"""An extra supervised background task: runs until the stop event is set."""
