"""A seeded fault schedule run against a :class:`Cluster` while certifications flow.

``run_schedule(workdir, seed=..., seconds=...)`` starts the cluster, produces load, injects
faults one after another (chosen and timed by the seed), heals everything, waits until
every input is processed and the outbox drained, stops the replicas and runs the checker.
The same seed gives the same faults in the same order (timing on a busy machine varies).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from certrecon.worker.monitor import LOCK_KEY
from tests.faults.checker import CheckReport, check
from tests.faults.cluster import Cluster, Replica
from tests.faults.load import Load
from tests.support import read_topic

PRODUCER_REQUEST_TIMEOUT = 30.0
"""The worker producer's request timeout (``make_producer``); a broker pause runs past it."""


@dataclass
class Injected:
    at: float
    fault: str
    detail: str

    def line(self) -> str:
        return f"{self.at:7.1f}s  {self.fault:<22} {self.detail}"


@dataclass
class MonitorWatch:
    """Who ran the deadline monitor, sampled from ``monitor_run``; takeovers measured."""

    samples: list[tuple[float, str]] = field(default_factory=list)
    sessions: list[tuple[str, int]] = field(default_factory=list)
    """(who ran the monitor last, backend pid holding the lock), on every change."""
    takeovers: list[tuple[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ChaosResult:
    seed: int
    injected: list[Injected]
    check: CheckReport
    monitor: MonitorWatch
    load_lines: list[str]
    seconds: float

    @property
    def problems(self) -> list[str]:
        return self.check.problems + self.monitor.problems

    def lines(self) -> list[str]:
        out = [f"seed {self.seed} ({self.seconds:.0f} s in all)", "injected:"]
        out += [f"  {i.line()}" for i in self.injected]
        out += ["load:", *(f"  {x}" for x in self.load_lines)]
        out += ["monitor takeovers (fault, seconds until another replica ran it):"]
        out += [f"  {f}: {s:.1f}" for f, s in self.monitor.takeovers]
        out += [
            f"  lock-holding sessions that ran it, in turn: {len(self.monitor.sessions)} "
            "(checked: none ran again after another had the lock)"
        ]
        out += [f"  problem: {p}" for p in self.monitor.problems]
        out += ["checked:", *(f"  {x}" for x in self.check.lines())]
        return out


_LOCK_PARTS = (LOCK_KEY >> 32, LOCK_KEY & 0xFFFF_FFFF)
_MONITOR_SAMPLE = """
SELECT (SELECT ran_by FROM monitor_run WHERE name = 'deadline') AS ran_by,
       (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
          AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1) AS holder
"""

FAULTS = (
    "broker_cut",
    "broker_blackhole",
    "broker_delay",
    "broker_reset",
    "pg_link_cut",
    "pg_link_blackhole",
    "pg_link_delay",
    "pg_link_reset",
    "pg_terminate_backends",
    "pg_crash",
    "replica_sigkill",
    "replica_sigterm",
    "monitor_holder_sigkill",
    "monitor_holder_vanishes",
    "broker_pause",
)


class Chaos:
    def __init__(self, cluster: Cluster, load: Load, rng: random.Random) -> None:
        self.c = cluster
        self.load = load
        self.rng = rng
        self.t0 = time.monotonic()
        self.injected: list[Injected] = []
        self.watch = MonitorWatch()
        self.crashes = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, fault: str, detail: str) -> None:
        self.injected.append(Injected(self.now(), fault, detail))

    def _pick(self) -> Replica:
        alive = [r for r in self.c.replicas if r.alive]
        return self.rng.choice(alive or self.c.replicas)

    async def _hold(self, low: float, high: float) -> float:
        seconds = round(self.rng.uniform(low, high), 1)
        await asyncio.sleep(seconds)
        return seconds

    # -- monitor --------------------------------------------------------------------

    async def watch_monitor(self, stop: asyncio.Event) -> None:
        """Sample who ran the monitor last and which session holds its lock."""
        conn: asyncpg.Connection | None = None
        while not stop.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.c.direct_dsn, timeout=3)
                row = await asyncio.wait_for(conn.fetchrow(_MONITOR_SAMPLE, *_LOCK_PARTS), 3)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn = None
                row = None
            if row is not None and row["ran_by"] is not None:
                ran_by, holder = row["ran_by"], row["holder"]
                if not self.watch.samples or self.watch.samples[-1][1] != ran_by:
                    self.watch.samples.append((self.now(), ran_by))
                if holder is not None and (
                    not self.watch.sessions or self.watch.sessions[-1] != (ran_by, holder)
                ):
                    self.watch.sessions.append((ran_by, holder))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _live_holder(self) -> Replica | None:
        if not self.watch.samples:
            return None
        pid = int(self.watch.samples[-1][1].rsplit(":", 1)[1])
        for r in self.c.replicas:
            if r.alive and r.proc is not None and r.proc.pid == pid:
                return r
        return None

    async def holder(self) -> Replica | None:
        """The live replica that ran the monitor last, waiting up to 30 s for one (after
        a restart or at the start, no replica may have run it yet)."""
        deadline = self.now() + 30
        while (found := self._live_holder()) is None and self.now() < deadline:
            await asyncio.sleep(0.1)
        return found

    async def _await_takeover(self, fault: str, old: Replica, ran_by: str, since: float) -> None:
        """Wait until another process runs the monitor; the time counts from the fault, or
        from when another replica was up if none was (a replica can still be starting)."""
        limit = 2 * self.c.monitor_interval
        deadline = since + limit + 60
        ready_at: float | None = None
        while self.now() < deadline:
            if ready_at is None and any(
                r is not old and r.alive and self.c.has_started(r) for r in self.c.replicas
            ):
                ready_at = max(since, self.now())
            if self.watch.samples and self.watch.samples[-1][1] != ran_by:
                start = since if ready_at is None else ready_at
                took = self.watch.samples[-1][0] - start
                self.watch.takeovers.append((fault, took))
                if took > limit + 1.0:
                    self.watch.problems.append(
                        f"{fault}: another replica ran the monitor {took:.1f} s later "
                        f"(two intervals: {limit:.1f} s)"
                    )
                return
            await asyncio.sleep(0.1)
        self.watch.problems.append(f"{fault}: no replica took the monitor over within 60 s")

    def check_monitor_history(self) -> None:
        """Never two at once: a (process, lock-holding session) pair seen again after
        another pair means a session ran the monitor after another session had taken
        the lock, which only two holders at once allow. (A process that lost its
        session and took the lock again in a new one is a new pair.)"""
        seen: set[tuple[str, int]] = set()
        previous: tuple[str, int] | None = None
        for pair in self.watch.sessions:
            if pair != previous and pair in seen:
                self.watch.problems.append(
                    f"process {pair[0]} ran the monitor again in session {pair[1]} after "
                    "another session had the lock"
                )
            seen.add(pair)
            previous = pair

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart a replica that ended by itself, as a process supervisor would (the
        worker exits 1 when a bounded retry gives up); the faults restart their own."""
        while not stop.is_set():
            for r in self.c.replicas:
                if r.proc is not None and r.proc.poll() is not None and not r.stopping:
                    self.note(
                        "replica_crashed", f"replica {r.index} exited {r.proc.poll()}; restarted"
                    )
                    self.crashes += 1
                    self.c.start_replica(r)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    # -- faults ---------------------------------------------------------------------

    async def inject(self, fault: str) -> None:
        handler: Callable[[], Awaitable[None]] = getattr(self, f"_{fault}")
        await handler()

    async def _broker_cut(self) -> None:
        self.c.broker_proxy.cut()
        held = await self._hold(1, 3)
        self.c.broker_proxy.heal()
        self.note("broker_cut", f"every broker connection closed and refused for {held} s")

    async def _broker_blackhole(self) -> None:
        self.c.broker_proxy.blackhole()
        held = await self._hold(1.5, 3.5)
        self.c.broker_proxy.heal()
        self.note("broker_blackhole", f"broker traffic dropped for {held} s")

    async def _broker_delay(self) -> None:
        delay = round(self.rng.uniform(0.05, 0.5), 2)
        self.c.broker_proxy.delay(delay)
        held = await self._hold(1.5, 3.5)
        self.c.broker_proxy.heal()
        self.note("broker_delay", f"{delay} s per chunk for {held} s")

    async def _broker_reset(self) -> None:
        n = self.c.broker_proxy.reset()
        self.note("broker_reset", f"{n} broker connections reset")
        await asyncio.sleep(1)

    async def _broker_pause(self) -> None:
        assert self.c.broker is not None
        assert self.c.broker.pid is not None
        pid = self.c.broker.pid
        seconds = PRODUCER_REQUEST_TIMEOUT + round(self.rng.uniform(0.5, 2), 1)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.note("broker_pause", f"broker SIGSTOPped for {seconds} s, then SIGCONT")

    async def _pg_link_cut(self) -> None:
        r = self._pick()
        r.proxy.cut()
        held = await self._hold(1, 3)
        r.proxy.heal()
        self.note("pg_link_cut", f"replica {r.index}: PostgreSQL link closed, refused {held} s")

    async def _pg_link_blackhole(self) -> None:
        r = self._pick()
        r.proxy.blackhole()
        held = await self._hold(1.5, 3.5)
        r.proxy.heal()
        self.note("pg_link_blackhole", f"replica {r.index}: PostgreSQL traffic dropped {held} s")

    async def _pg_link_delay(self) -> None:
        r = self._pick()
        delay = round(self.rng.uniform(0.02, 0.3), 2)
        r.proxy.delay(delay)
        held = await self._hold(1.5, 3.5)
        r.proxy.heal()
        self.note("pg_link_delay", f"replica {r.index}: {delay} s per chunk for {held} s")

    async def _pg_link_reset(self) -> None:
        r = self._pick()
        n = r.proxy.reset()
        self.note("pg_link_reset", f"replica {r.index}: {n} PostgreSQL connections reset")
        await asyncio.sleep(1)

    async def _pg_terminate_backends(self) -> None:
        conn = await asyncpg.connect(self.c.pg.dsn(), timeout=10)
        try:
            n = await conn.fetchval(
                """
                SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = $1 AND pid <> pg_backend_pid()
                """,
                self.c.database,
            )
        finally:
            await conn.close()
        self.note("pg_terminate_backends", f"{n} backends of the database terminated")
        await asyncio.sleep(1)

    async def _pg_crash(self) -> None:
        await asyncio.to_thread(self.c.pg.crash)
        held = await self._hold(1, 6)
        await asyncio.to_thread(self.c.pg.restart)
        self.note("pg_crash", f"pg_ctl stop -m immediate, down {held} s, restarted")

    async def _replica_sigkill(self) -> None:
        r = self._pick()
        if not r.alive:
            return
        self.c.signal(r, signal.SIGKILL)
        await self.c.wait_exit(r, 10)
        held = await self._hold(0.5, 3)
        self.c.start_replica(r)
        self.note("replica_sigkill", f"replica {r.index} SIGKILLed, restarted after {held} s")

    async def _replica_sigterm(self) -> None:
        r = self._pick()
        if not r.alive:
            return
        self.c.signal(r, signal.SIGTERM)
        status = await self.c.wait_exit(r, 60)
        if status != 0 and not (status == -signal.SIGTERM and not self.c.has_started(r)):
            # Killed by the signal itself is fine only before the worker was up (its
            # handlers are installed at start): nothing was in hand then.
            self.watch.problems.append(f"replica {r.index} exited {status} after SIGTERM")
        held = await self._hold(0.5, 3)
        self.c.start_replica(r)
        self.note(
            "replica_sigterm", f"replica {r.index} SIGTERMed (exit {status}), back in {held} s"
        )

    async def _monitor_holder_sigkill(self) -> None:
        holder = await self.holder()
        if holder is None:
            self.note("monitor_holder_sigkill", "skipped: no live holder seen yet")
            return
        old = self.watch.samples[-1][1]
        self.c.signal(holder, signal.SIGKILL)
        since = self.now()
        await self._await_takeover("monitor_holder_sigkill", holder, old, since)
        self.c.start_replica(holder)
        self.note("monitor_holder_sigkill", f"replica {holder.index} (monitor holder) SIGKILLed")

    async def _monitor_holder_vanishes(self) -> None:
        holder = await self.holder()
        if holder is None:
            self.note("monitor_holder_vanishes", "skipped: no live holder seen yet")
            return
        old = self.watch.samples[-1][1]
        holder.proxy.blackhole()
        since = self.now()
        try:
            await self._await_takeover("monitor_holder_vanishes", holder, old, since)
        finally:
            holder.proxy.heal()
        self.note(
            "monitor_holder_vanishes",
            f"replica {holder.index} (monitor holder): its PostgreSQL traffic dropped",
        )

    # -- the whole run ----------------------------------------------------------------

    def plan(self, *, pause: bool, leave_out: frozenset[str] = frozenset()) -> list[str]:
        """Every kind of fault once (the broker pause only when asked, none of
        ``leave_out``), in a seeded order."""
        order = [f for f in FAULTS if (pause or f != "broker_pause") and f not in leave_out]
        self.rng.shuffle(order)
        return order

    async def run(
        self, seconds: float, *, pause: bool, leave_out: frozenset[str] = frozenset()
    ) -> None:
        """Every kind once, then faults chosen at random until ``seconds`` have passed."""
        end = self.t0 + seconds
        for fault in self.plan(pause=pause, leave_out=leave_out):
            await self.inject(fault)
            await asyncio.sleep(self.rng.uniform(0.3, 1.2))
        others = [f for f in FAULTS if f != "broker_pause" and f not in leave_out]
        while time.monotonic() < end:
            await self.inject(self.rng.choice(others))
            await asyncio.sleep(self.rng.uniform(0.5, 3))


async def settle(cluster: Cluster, timeout: float) -> None:
    """Until the stored offset of every input partition is past its last record and the
    outbox is empty. The ends are read from the records themselves (the broker's
    ListOffsets answer can lag behind)."""
    ends: dict[tuple[str, int], int] = {}
    for topic in cluster.settings.channel_topics.values():
        for r in await read_topic(cluster.bootstrap, topic, at_least=0, timeout=120):
            ends[(r.topic, r.partition)] = max(ends.get((r.topic, r.partition), 0), r.offset + 1)
    conn = await asyncpg.connect(cluster.direct_dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch(
                "SELECT topic, kafka_partition, next_offset FROM consumer_offset"
                " WHERE group_id = $1",
                cluster.settings.group_id,
            )
            stored = {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}
            behind = {tp: end for tp, end in ends.items() if stored.get(tp, 0) < end}
            backlog = await conn.fetchval("SELECT count(*) FROM outbox_backlog")
            if not behind and backlog == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(behind)} partitions not processed to their end, "
                    f"{backlog} messages in the outbox"
                )
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def run_schedule(
    workdir: Path,
    *,
    seed: int,
    seconds: float,
    pause: bool = True,
    leave_out: frozenset[str] = frozenset(),
    replicas: int = 3,
    rate: float = 40.0,
    progress: Callable[[str], None] = print,
) -> ChaosResult:
    rng = random.Random(seed)
    progress(f"chaos seed {seed}: replay with --seed {seed}")
    started = time.monotonic()
    cluster = await Cluster(workdir, replicas=replicas).start()
    try:
        load = Load(cluster.settings, cluster.bootstrap, cluster.direct_dsn, rng, rate=rate)
        await load.import_roster()
        cluster.start_all()
        chaos = Chaos(cluster, load, rng)
        stop = asyncio.Event()
        background = [
            asyncio.create_task(load.run(stop), name="chaos-load"),
            asyncio.create_task(load.staff(stop), name="chaos-staff"),
            asyncio.create_task(chaos.watch_monitor(stop), name="chaos-monitor-watch"),
        ]
        supervisor_stop = asyncio.Event()
        supervisor = asyncio.create_task(chaos.supervise(supervisor_stop), name="chaos-supervisor")
        try:
            await asyncio.sleep(2)
            await chaos.run(seconds, pause=pause, leave_out=leave_out)
            for r in cluster.replicas:
                r.proxy.heal()
                if not r.alive:
                    cluster.start_replica(r)
            cluster.broker_proxy.heal()
            await asyncio.sleep(2)
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
        progress("faults done; waiting until every input is processed")
        try:
            await settle(cluster, timeout=180)
        finally:
            supervisor_stop.set()
            await supervisor
        chaos.check_monitor_history()
        for r in cluster.replicas:
            if r.alive:
                cluster.signal(r, signal.SIGTERM)
        for r in cluster.replicas:
            status = await cluster.wait_exit(r, 60)
            if status not in (0, None) and not (
                status == -signal.SIGTERM and not cluster.has_started(r)
            ):
                chaos.watch.problems.append(f"replica {r.index} exited {status} at the end")
        conn = await asyncpg.connect(cluster.direct_dsn)
        try:
            report = await check(conn, cluster.settings, cluster.bootstrap)
        finally:
            await conn.close()
        s = load.stats
        load_lines = [
            f"produced {s.produced}: {s.valid} certifications, {s.review} of people with a "
            f"death on record, {s.poison} poison records; {s.send_failures} sends failed "
            f"and were sent again",
            f"staff decisions {s.decisions}, corrections (revision 2) {s.corrections}, "
            f"failed tries {s.decision_failures}",
            f"replicas that ended by themselves and were restarted: {chaos.crashes}",
        ]
        return ChaosResult(
            seed, chaos.injected, report, chaos.watch, load_lines, time.monotonic() - started
        )
    finally:
        await cluster.stop()
