"""The deadline monitor: SLA alerts, deadline recomputes and the SLA gauges.

It runs inside ``certrecon run`` as a supervised service. Every replica ticks every
``monitor_interval_seconds``; at each tick it reloads the working-day calendar (the pipeline
of every replica needs the current one) and refreshes its gauges, but only the replica that
holds a session-level advisory lock on its own connection raises alerts and recomputes
deadlines. If that replica dies, its connection closes, PostgreSQL releases the lock, and
another replica takes over at its next tick. Alerts are raised once whatever happens: the
``sla_alert`` primary key is the alert's deterministic id.

The monitor sees only its :class:`MonitorHost`: the settings, the clock (the worker's, so
tests can run the monitor at any instant), the metrics, the calendar cell it keeps current
and a way to wake the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from certrecon.calendar import WorkingCalendar, compute_deadline
from certrecon.errors import CalendarError, DatabaseUnavailableError
from certrecon.logs import get_logger
from certrecon.sla import Alert, SlaLevel, Window
from certrecon.store import db
from certrecon.store.calendar_overrides import load_calendar
from certrecon.store.sla import (
    MonitorRun,
    StoredDeadline,
    count_open,
    find_new_alerts,
    last_run,
    oldest_open,
    outbox_backlog,
    raise_alerts,
    recompute_candidates,
    record_run,
    store_deadlines,
    try_monitor_lock,
)

if TYPE_CHECKING:
    from certrecon.settings import Settings
    from certrecon.worker.metrics import Metrics
    from certrecon.worker.runtime import CalendarCell, Clock

log = get_logger(__name__)

MONITOR_NAME = "deadline"
"""The ``monitor_run`` row of this monitor."""

LOCK_KEY = 0x6365_7274_736C_6131
"""The advisory lock whose holder is the active monitor (distinct from the migration lock)."""

LOG_LINES_PER_LEVEL = 200
"""Alert log lines per level and run; past that one summary line, so a backlog raising
thousands of alerts at once does not drown the log (each alert still goes to the topic)."""

SETTLE_PASSES = 2
"""Recompute passes after a calendar change: replicas whose pipeline still used the old
calendar until their own next tick may have stored certifications meanwhile."""

_MONITOR_ERRORS: tuple[type[BaseException], ...] = (
    *db.RETRIABLE_DB_ERRORS,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    DatabaseUnavailableError,
    CalendarError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class MonitorReport:
    """What one monitor run did."""

    now: dt.datetime
    raised: list[Alert]
    duration_seconds: float

    def raised_by_level(self, level: SlaLevel) -> list[Alert]:
        return [a for a in self.raised if a.level is level]


async def run_monitor(
    conn: asyncpg.Connection,
    *,
    calendar: WorkingCalendar,
    now: dt.datetime,
    topic: str,
    ran_by: str = "",
) -> MonitorReport:
    """One monitor run at ``now``: raise every alert not raised yet, in one transaction.

    Safe to run concurrently from several connections: each alert is stored and enqueued
    by exactly one of them.
    """
    started = time.perf_counter()
    window = Window.at(now, calendar)
    async with conn.transaction():
        candidates = await find_new_alerts(conn, window, calendar)
        raised = await raise_alerts(conn, candidates, topic=topic)
        duration = time.perf_counter() - started
        await record_run(
            conn, MONITOR_NAME, MonitorRun(now, duration * 1000, len(raised), ran_by or _me())
        )
    return MonitorReport(now, raised, time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class DeadlineChange:
    """A recomputed deadline of an open certification."""

    before: StoredDeadline
    after: StoredDeadline


def changed_days(old: WorkingCalendar, new: WorkingCalendar) -> list[dt.date]:
    """Days whose working status or year status differs between two calendars.

    Both calendars share the shipped base within one process, so only override days and
    declared years can differ; a year whose status changed counts with all its days.
    """
    days = {o.day for o, _ in old.overrides} | {o.day for o, _ in new.overrides}
    found = {d for d in days if old.is_working_day(d) != new.is_working_day(d)}
    years = {p.year for p, _ in old.published_years} | {p.year for p, _ in new.published_years}
    for year in years:
        if old.year_status(year) != new.year_status(year):
            day = dt.date(year, 1, 1)
            while day.year == year:
                found.add(day)
                day += dt.timedelta(days=1)
    return sorted(found)


async def recompute_deadlines(
    conn: asyncpg.Connection,
    calendar: WorkingCalendar,
    *,
    working_days: int,
    changed: Sequence[dt.date] = (),
) -> list[DeadlineChange]:
    """Recompute the deadlines of open certifications that may have moved; store and return
    the ones that did. Every provisional one is a candidate, and so is every one whose
    counting window holds a day of ``changed``.
    """
    moved: list[DeadlineChange] = []
    async with conn.transaction():
        for stored in await recompute_candidates(conn, changed):
            try:
                fresh = compute_deadline(stored.basis, calendar, working_days)
            except CalendarError as exc:
                log.warning(
                    "deadline not recomputed",
                    certification_id=stored.certification_id,
                    error=str(exc),
                )
                continue
            after = replace(
                stored,
                due_date=fresh.due_date,
                deadline=fresh.deadline,
                provisional=fresh.provisional,
            )
            if (after.due_date, after.deadline, after.provisional) != (
                stored.due_date,
                stored.deadline,
                stored.provisional,
            ):
                moved.append(DeadlineChange(stored, after))
        await store_deadlines(conn, [m.after for m in moved])
    for m in moved:
        log.info(
            "deadline recomputed",
            certification_id=m.after.certification_id,
            due_date_before=m.before.due_date.isoformat(),
            due_date=m.after.due_date.isoformat(),
            provisional_before=m.before.provisional,
            provisional=m.after.provisional,
        )
    return moved


def calendar_fingerprint(calendar: WorkingCalendar) -> tuple[Any, ...]:
    """What distinguishes two calendars built in one process (same shipped base)."""
    return (calendar.package_label, calendar.overrides, calendar.published_years)


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def log_alerts(report: MonitorReport, *, limit: int = LOG_LINES_PER_LEVEL) -> None:
    """A warning per at-risk alert and an error per breach (IDs of people never appear)."""
    for level, emit, event in (
        (SlaLevel.BREACHED, log.error, "certification deadline breached"),
        (SlaLevel.AT_RISK, log.warning, "certification deadline at risk"),
    ):
        alerts = report.raised_by_level(level)
        for a in alerts[:limit]:
            emit(
                event,
                certification_id=a.certification_id,
                alert_id=a.alert_id,
                channel=a.channel,
                due_date=a.due_date.isoformat(),
                working_days_left=a.working_days_left,
                provisional=a.provisional,
            )
        if len(alerts) > limit:
            emit(f"{event}: more alerts in this run", more=len(alerts) - limit, level=level.value)


async def observe(
    conn: asyncpg.Connection,
    metrics: Metrics,
    calendar: WorkingCalendar,
    now: dt.datetime,
    channels: Sequence[str] = (),
) -> None:
    """Set the SLA and outbox gauges from the database at ``now``."""
    window = Window.at(now, calendar)
    counts = await count_open(conn, window)
    oldest = await oldest_open(conn)
    backlog = await outbox_backlog(conn)
    run = await last_run(conn, MONITOR_NAME)
    oldest_days = 0
    if oldest is not None:
        try:
            oldest_days = calendar.count_working_days(oldest.local_date, window.today)
        except CalendarError:
            oldest_days = 0
    # No await from here on: a scrape on this loop sees either the old or the new values.
    gauge = metrics.open_certifications
    gauge.clear()
    for channel in channels:
        for level in SlaLevel:
            gauge.labels(channel, level.value).set(0)
    for c in counts:
        gauge.labels(c.channel, c.level.value).set(c.count)
    metrics.oldest_open_working_days.set(oldest_days)
    metrics.observe_outbox(
        {b.kind: b.count for b in backlog},
        max((b.oldest_age_seconds for b in backlog), default=None),
    )
    if run is not None:
        metrics.observe_monitor_run(run.last_run_at)
    metrics.refresh_ages(now)


class MonitorHost(Protocol):
    """What the monitor needs of the worker it runs in."""

    @property
    def settings(self) -> Settings: ...
    @property
    def dsn(self) -> str: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def calendar(self) -> CalendarCell:
        """The calendar this process uses; the monitor replaces it when the stored one
        changed."""
        ...

    def wake_relay(self) -> None: ...


class DeadlineMonitor:
    """The monitor as a worker service: ``DeadlineMonitor(interval)(host, stop)``."""

    def __init__(
        self,
        interval_seconds: float,
        *,
        lock_key: int = LOCK_KEY,
        connect_seconds: float = 5.0,
    ) -> None:
        self.interval = interval_seconds
        self.lock_key = lock_key
        self.connect_seconds = connect_seconds
        self.active = False
        """Whether this instance holds the lock and runs the monitor."""
        self.last_report: MonitorReport | None = None
        self._conn: asyncpg.Connection | None = None
        self._settle = 0
        self._previous: WorkingCalendar | None = None

    async def __call__(self, host: MonitorHost, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; a failed tick is logged and retried at the next one.

        Between ticks the holder touches its connection every third of an interval, so
        its session is never idle for long, and the server ends a session idle for two
        thirds of an interval (``idle_session_timeout``): when the holder's host vanishes
        without closing its connection, the lock is free within two intervals. Every
        round trip is bounded too, so a holder cut off from the server stops counting
        itself active instead of waiting for an answer that never comes.
        """
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(self.tick_seconds):
                        await self.tick(host)
                except _MONITOR_ERRORS as exc:
                    host.metrics.monitor_errors.inc()
                    log.warning("monitor tick failed; retrying next tick", error=repr(exc))
                    await self.close(host.metrics)
                next_tick = loop.time() + self.interval
                while not stop.is_set() and (left := next_tick - loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(left, self.interval / 3)):
                            await stop.wait()
                    if self.active and not stop.is_set() and loop.time() < next_tick:
                        await self._touch(host)
        finally:
            await self.close(host.metrics)

    @property
    def tick_seconds(self) -> float:
        """The longest one tick may take (a stuck round trip ends it)."""
        return max(2 * self.interval, 10.0)

    async def _touch(self, host: MonitorHost) -> None:
        """Keep the holder's session busy; a lost connection gives the lock up here."""
        conn = self._conn
        if conn is None:
            return
        try:
            # Shorter than the server's idle limit less a third: a holder cut off from the
            # server stops counting itself active before the server frees the lock.
            async with asyncio.timeout(max(self.interval / 4, 0.25)):
                await conn.fetchval("SELECT 1")
        except _MONITOR_ERRORS as exc:
            host.metrics.monitor_errors.inc()
            log.warning("monitor connection lost between ticks", error=repr(exc))
            await self.close(host.metrics)

    async def close(self, metrics: Metrics | None = None) -> None:
        """Close the monitor's connection, which releases the lock if held."""
        conn, self._conn = self._conn, None
        if self.active:
            log.info("deadline monitor released")
        self.active = False
        if metrics is not None:
            metrics.monitor_active.set(0)
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=2)
            except _MONITOR_ERRORS:
                # A server that does not answer the goodbye: drop the socket.
                conn.terminate()

    async def _connection(self, host: MonitorHost) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self.active = False
            self._conn = await db.connect(
                host.dsn,
                password=host.settings.database_password,
                wait_seconds=self.connect_seconds,
            )
        return self._conn

    async def _hold_timers(self, conn: asyncpg.Connection) -> None:
        """Server-side timers of the holder's session: a session idle longer than two
        thirds of an interval (the holder touches it every third), idle that long inside
        a transaction (cut off mid-tick), or whose peer stops acknowledging is ended by
        the server, which frees the lock for another replica."""
        idle_ms = max(int(self.interval * 2000 / 3), 1000)
        keepalive = max(int(self.interval / 3), 1)
        await conn.execute(
            f"SET idle_session_timeout = {idle_ms}; "
            f"SET idle_in_transaction_session_timeout = {idle_ms}; "
            f"SET tcp_keepalives_idle = {keepalive}; "
            f"SET tcp_keepalives_interval = {keepalive}; "
            "SET tcp_keepalives_count = 2; "
            f"SET tcp_user_timeout = {idle_ms}"
        )

    async def tick(self, host: MonitorHost) -> MonitorReport | None:
        """One tick; returns the run's report when this instance is the active monitor."""
        conn = await self._connection(host)
        now = host.clock()
        metrics = host.metrics
        settings = host.settings
        calendar = await load_calendar(conn)
        current = host.calendar.current
        if current is None or calendar_fingerprint(calendar) != calendar_fingerprint(current):
            if current is not None:
                log.info("working-day calendar changed", calendar=repr(calendar))
            host.calendar.replace(calendar)
            # Until the recompute settles, diff against the calendar before the first change.
            if self._previous is None:
                self._previous = current
            self._settle = SETTLE_PASSES + 1
        else:
            calendar = current
        if not self.active:
            self.active = await try_monitor_lock(conn, self.lock_key)
            metrics.monitor_active.set(1 if self.active else 0)
            if self.active:
                await self._hold_timers(conn)
                log.info("deadline monitor active", interval=self.interval)
                # A newer holidays package or an override stored while no monitor ran may
                # have settled provisional deadlines: check them once on taking over.
                self._settle = max(self._settle, 1)
        report = None
        if self.active:
            if self._settle > 0:
                changed = (
                    changed_days(self._previous, calendar) if self._previous is not None else []
                )
                moved = await recompute_deadlines(
                    conn,
                    calendar,
                    working_days=settings.deadline_working_days,
                    changed=changed,
                )
                metrics.deadlines_recomputed.inc(len(moved))
                self._settle -= 1
                if self._settle == 0:
                    self._previous = None
            report = await run_monitor(
                conn, calendar=calendar, now=now, topic=settings.sla_alert_topic
            )
            self.last_report = report
            log_alerts(report)
            for level in (SlaLevel.AT_RISK, SlaLevel.BREACHED):
                metrics.sla_alerts.labels(level.value).inc(len(report.raised_by_level(level)))
            metrics.monitor_runs.inc()
            metrics.monitor_run_duration.set(report.duration_seconds)
            if report.raised:
                host.wake_relay()
        await observe(conn, metrics, calendar, now, [c.value for c in settings.channel_topics])
        return report
