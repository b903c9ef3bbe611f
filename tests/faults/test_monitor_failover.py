"""Monitor failover when the holder's host vanishes: its connection stays open (no FIN, no
RST), its traffic is dropped. Another replica must take over within two intervals; the
old holder must give up too, and must not take the lock back when it returns."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

from certrecon.calendar import default_calendar
from certrecon.settings import Settings
from certrecon.worker.metrics import Metrics
from certrecon.worker.monitor import DeadlineMonitor
from certrecon.worker.runtime import CalendarCell, utc_now
from tests.faults.proxy import FaultProxy
from tests.support import isolated_settings

INTERVAL = 1.5


def _socket_of(dsn: str) -> str:
    host = parse_qs(urlsplit(dsn).query)["host"][0]
    return f"{host}/.s.PGSQL.5432"


@dataclass
class _Host:
    """What the monitor sees of the replica it runs in."""

    dsn: str
    settings: Settings = field(
        default_factory=lambda: isolated_settings(monitor_interval_seconds=INTERVAL)
    )
    clock: Callable[[], dt.datetime] = field(default_factory=lambda: utc_now)
    metrics: Metrics = field(default_factory=Metrics)
    calendar: CalendarCell = field(default_factory=lambda: CalendarCell(default_calendar()))

    def wake_relay(self) -> None:
        pass


@contextlib.asynccontextmanager
async def _monitor(dsn: str, lock_key: int) -> AsyncIterator[DeadlineMonitor]:
    monitor = DeadlineMonitor(INTERVAL, lock_key=lock_key)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor(_Host(dsn), stop), name="test-monitor")
    try:
        yield monitor
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _active(monitor: DeadlineMonitor) -> bool:
    return monitor.active


async def _until(predicate: object, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():  # type: ignore[operator]
        if loop.time() - started > timeout:
            raise TimeoutError
        await asyncio.sleep(0.02)
    return loop.time() - started


async def test_a_vanished_holder_loses_the_monitor_within_two_intervals(
    fresh_database: str,
) -> None:
    if "host=" not in fresh_database:
        pytest.fail("this test needs the embedded PostgreSQL (a Unix socket DSN)")
    proxy = await FaultProxy("pg", target_unix=_socket_of(fresh_database)).start()
    database = urlsplit(fresh_database).path
    through_proxy = f"postgresql://postgres@{proxy.address}{database}"
    # A lock key of this test's own: other tests' monitors use the default one.
    key = 0x7465_7374_6D6F_6E31
    try:
        async with _monitor(through_proxy, key) as a:
            await _until(lambda: a.active, 15)
            async with _monitor(fresh_database, key) as b:
                await asyncio.sleep(2 * INTERVAL)
                assert not b.active, "the lock has one holder"
                proxy.blackhole()
                took = await _until(lambda: b.active, 2 * INTERVAL + 10)
                assert took <= 2 * INTERVAL + 0.5, f"takeover after {took:.2f} s"
                # The old holder notices too (every round trip of a tick is bounded), and
                # could not have acted meanwhile: its session is gone on the server.
                await _until(lambda: not a.active, a.tick_seconds + 2)
                proxy.heal()
                # Back on the network, the old holder finds the lock taken.
                for _ in range(int(2 * INTERVAL / 0.05)):
                    assert [_active(a), _active(b)] == [False, True]
                    await asyncio.sleep(0.05)
    finally:
        await proxy.close()
