"""Throughput of the worker against a raw aiokafka passthrough and a FastStream peer, on one
broker and one PostgreSQL, in one run.

    pip install -c requirements/constraints.txt -r bench/requirements.txt   # peer, py-spy
    python bench/throughput.py [--count 100000] [--workers N] [--profile] [--no-peer]

(a) passthrough: a consumer group reads N certification-sized messages and a producer
    (acks=all) writes each to another topic; nothing else.
(b) worker: N ``certrecon run`` processes (``--workers``, default 1) in one consumer group
    consume N certifications on the four channel topics against a roster of N people,
    validate, reconcile, persist and relay every result.
(c) peer (bench/peer_faststream.py): the same job written the way FastStream's
    documentation shows a Kafka + PostgreSQL service: a handler per message, a transaction
    per message, results through faststream-outbox's transactional outbox.
Every run starts with all messages already on the broker; its clock starts when a consumer
has partitions and stops when the last result is on the result topic, as counted by a plain
aiokafka consumer reading that topic (no query touches the database being measured). Prints
the rates, CPU per certification of the service, PostgreSQL and the broker, peak RSS,
``ratio: X`` (worker / passthrough), ``peer: N/s`` and ``vs peer: X`` (worker / peer).

``--profile`` samples the worker (and the peer) with py-spy and prints the CPU budget: µs
of CPU per certification per stage, beside PostgreSQL's and the broker's.

Uses CERTRECON_DATABASE_URL / CERTRECON_KAFKA_BOOTSTRAP when set (a server where the
benchmark may create and drop databases), else starts the embedded PostgreSQL and broker
in a temporary directory. Figures from a shared machine are noisy: compare ratios from one
run, and repeat runs to see the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import (  # noqa: E402
    certification,
    eligible_roster,
    encode,
    isolated_settings,
    settings_env,
    spread_over_channels,
)

from certrecon.domain import Channel, RosterRecord  # noqa: E402
from certrecon.embedded import EmbeddedBroker, EmbeddedPostgres  # noqa: E402
from certrecon.settings import Settings  # noqa: E402
from certrecon.store import db  # noqa: E402
from certrecon.store.migrations import migrate  # noqa: E402
from certrecon.store.roster import import_roster  # noqa: E402
from certrecon.worker.kafka import ensure_topics, publish  # noqa: E402
from cpu_budget import (  # noqa: E402
    Frame,
    Sampler,
    budget_table,
    cpu_seconds,
    machine_busy_seconds,
    peak_rss_mb,
    stage_samples,
    tree_cpu_seconds,
    unattributed,
)
from peer_faststream import INSTALL_HINT, READY, PeerConfig, prepare_database  # noqa: E402

PARTITIONS = 6
POLL = 0.05
"""Seconds between looks at the processes (RSS, liveness, start marker in the logs)."""
STALL = 30.0
"""Seconds without a new result after which a run is looked at: stuck if its processes were
also idle (below ``IDLE_SHARE`` of one core) over that time."""
IDLE_SHARE = 0.05
"""A service using less of one core than this is waiting, not working: a starved worker on
a loaded machine still gets several times more, an idle one polls for well under it."""
STALL_BUSY = 600.0
"""Seconds without a new result after which a run is stuck however busy its processes are."""
WORKER_READY = "partitions assigned"


@dataclass(frozen=True)
class Servers:
    dsn: str
    """Of a database where the benchmark may create others."""
    bootstrap: str
    postmaster: int | None
    """PostgreSQL's postmaster pid when it runs here (embedded), for its CPU time."""
    broker: int | None


@dataclass
class Run:
    """What one timed run measured."""

    label: str
    count: int
    elapsed: float
    processes: int = 1
    cpu: float = 0.0
    """CPU seconds of the service's processes during the run."""
    rss_mb: float = 0.0
    """Peak RSS of the largest process."""
    pg_cpu: float | None = None
    broker_cpu: float | None = None
    observer_cpu: float = 0.0
    """CPU seconds of this process (the result counter) during the run."""
    machine: float = 0.0
    """Cores busy on the whole machine during the run."""
    samples: Counter[tuple[Frame, ...]] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed

    def describe_passthrough(self, when: str) -> str:
        return (
            f"passthrough {when}: {self.rate:,.0f} msg/s ({self.elapsed:.2f} s); "
            f"broker {self.broker_cpu * 1e6 / self.count if self.broker_cpu else 0:.0f} µs "
            f"per message; machine busy {self.machine:.2f} cores"
        )

    def describe(self) -> str:
        per = 1e6 / self.count

        def us(seconds: float | None) -> str:
            return "n/a" if seconds is None else f"{seconds * per:.0f} µs"

        procs = f", {self.processes} processes" if self.processes > 1 else ""
        return (
            f"{self.label}: {self.rate:,.0f} certifications/s ({self.elapsed:.2f} s{procs})\n"
            f"  CPU per certification: {self.label} {us(self.cpu)} "
            f"({self.cpu / self.elapsed:.0%} of one core), PostgreSQL {us(self.pg_cpu)}, "
            f"broker {us(self.broker_cpu)}, result counter {us(self.observer_cpu)}\n"
            f"  peak RSS {self.rss_mb:.0f} MB; machine busy {self.machine:.2f} cores"
        )


class _Snapshot:
    """CPU counters at one instant, to subtract."""

    def __init__(self, servers: Servers, pids: Sequence[int]) -> None:
        self.at = time.perf_counter()
        self.cpu = sum(cpu_seconds(p) for p in pids)
        self.pg = tree_cpu_seconds(servers.postmaster) if servers.postmaster else None
        self.broker = cpu_seconds(servers.broker) if servers.broker else None
        self.observer = time.process_time()
        self.machine = machine_busy_seconds()


def _fill(run: Run, start: _Snapshot, end: _Snapshot) -> None:
    run.cpu = end.cpu - start.cpu
    if start.pg is not None and end.pg is not None:
        run.pg_cpu = end.pg - start.pg
    if start.broker is not None and end.broker is not None:
        run.broker_cpu = end.broker - start.broker
    run.observer_cpu = end.observer - start.observer
    run.machine = (end.machine - start.machine) / run.elapsed


class ResultCounter:
    """Reads a topic from its beginning and counts distinct ``message_id`` headers."""

    def __init__(self, bootstrap: str, topic: str, target: int) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
        )
        self._topic = topic
        self._target = target
        self.ids: set[bytes] = set()
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ResultCounter:
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._count(), name="result-counter")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _count(self) -> None:
        while len(self.ids) < self._target:
            batch = await self._consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for m in messages:
                    for name, value in m.headers:
                        if name == "message_id":
                            self.ids.add(value)
        self.done.set()


class _StallWatch:
    """Tells a stuck run from a slow one.

    No new result for ``STALL`` seconds is a stall only if the service's processes were
    idle over that time too: on a loaded machine a starved worker can go that long between
    two relay rounds (or before its first) while it is working. A busy service gets another
    window, up to ``STALL_BUSY`` seconds without a result.
    """

    def __init__(self, label: str, count: int, pids: Sequence[int]) -> None:
        self._label, self._count, self._pids = label, count, list(pids)
        self._seen = 0
        self._result_at = self._mark_at = time.monotonic()
        self._mark_cpu = self._cpu()

    def _cpu(self) -> float:
        total = 0.0
        for pid in self._pids:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total

    def check(self, seen: int) -> str | None:
        """None while the run is making progress or working; else why it is stuck."""
        now = time.monotonic()
        if seen > self._seen:
            self._seen, self._result_at = seen, now
            self._mark_at, self._mark_cpu = now, self._cpu()
            return None
        quiet = now - self._result_at
        where = f"{self._label}: no new result for {quiet:.0f} s ({seen} of {self._count})"
        if quiet > STALL_BUSY:
            return f"{where}, although its processes kept working"
        if now - self._mark_at < STALL:
            return None
        cpu = self._cpu()
        share = (cpu - self._mark_cpu) / (now - self._mark_at)
        if share < IDLE_SHARE:
            return f"{where}; its processes used {share:.1%} of one core meanwhile (idle)"
        self._mark_at, self._mark_cpu = now, cpu
        return None


def _tails(logs: Sequence[Path], lines: int = 40) -> str:
    """The end of each log, for an error message (the logs go with the temporary directory)."""
    parts = []
    for path in logs:
        text = path.read_text("utf-8", "replace").splitlines()[-lines:]
        parts.append(f"--- {path.name}\n" + "\n".join(text))
    return "\n".join(parts)


async def observe(
    label: str,
    servers: Servers,
    *,
    commands: Sequence[tuple[list[str], dict[str, str]]],
    ready: str,
    counter: ResultCounter,
    count: int,
    logdir: Path,
    profile: bool,
) -> Run:
    """Start the service's processes, time them until ``count`` results are out, stop them."""
    logs = [logdir / f"{label}-{i}.log" for i in range(len(commands))]
    procs: list[subprocess.Popen[bytes]] = []
    sampler: Sampler | None = None
    try:
        for (argv, env), path in zip(commands, logs, strict=True):
            with path.open("wb") as out:
                procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
        pids = [p.pid for p in procs]
        start: _Snapshot | None = None
        before = 0  # results already out when the clock started
        peak = 0.0
        watch = _StallWatch(label, count, pids)
        while not counter.done.is_set():
            problem = watch.check(len(counter.ids))
            if problem is not None:
                raise RuntimeError(problem + "\n" + _tails(logs))
            for p in procs:
                peak = max(peak, peak_rss_mb(p.pid))
                if p.poll() is not None:
                    raise RuntimeError(f"{label} exited with {p.returncode}\n" + _tails(logs))
            if start is None and any(ready in path.read_text("utf-8", "replace") for path in logs):
                start = _Snapshot(servers, pids)
                before = len(counter.ids)
                if profile:
                    sampler = Sampler(pids, logdir)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(counter.done.wait(), POLL)
        if start is None:
            raise RuntimeError(f"{label} answered before it reported partitions\n" + _tails(logs))
        end = _Snapshot(servers, pids)
        run = Run(label, count - before, end.at - start.at, processes=len(procs))
        _fill(run, start, end)
        if sampler is not None:
            run.samples = sampler.stop()
            sampler = None
        run.rss_mb = max(peak, *(peak_rss_mb(p) for p in pids))
        return run
    finally:
        if sampler is not None:
            sampler.stop()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


async def passthrough(servers: Servers, values: list[bytes]) -> Run:
    bootstrap = servers.bootstrap
    tag = uuid.uuid4().hex[:8]
    source, sink = f"bench.in.{tag}", f"bench.out.{tag}"
    await ensure_topics(bootstrap, [source, sink], PARTITIONS)
    await publish(bootstrap, [(source, str(i).encode(), v) for i, v in enumerate(values)])
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{tag}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.01)
        start = _Snapshot(servers, [os.getpid()])
        done, moved_at = 0, time.monotonic()
        while done < len(values):
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if batch:
                moved_at = time.monotonic()
            elif time.monotonic() - moved_at > STALL:
                raise RuntimeError(
                    f"passthrough: nothing to read for {STALL:.0f} s ({done} of {len(values)})"
                )
            futures = []
            last = {}
            for tp, msgs in batch.items():
                for m in msgs:
                    futures.append(await producer.send(sink, key=m.key, value=m.value))
                last[tp] = msgs[-1].offset + 1
            await asyncio.gather(*futures)
            if last:
                await consumer.commit(last)
            done += len(futures)
        end = _Snapshot(servers, [os.getpid()])
        run = Run("passthrough", len(values), end.at - start.at)
        _fill(run, start, end)
        return run
    finally:
        await producer.stop()
        await consumer.stop()


async def fresh_database(dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``dsn``; return its DSN."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def worker_run(
    servers: Servers,
    people: list[RosterRecord],
    when: dt.datetime,
    *,
    workers: int,
    logdir: Path,
    profile: bool,
) -> Run:
    settings = isolated_settings(topic_partitions=PARTITIONS)
    await ensure_topics(servers.bootstrap, settings.all_topics(), PARTITIONS)
    dsn = await fresh_database(servers.dsn, f"bench_worker_{uuid.uuid4().hex[:8]}")
    conn = await db.connect(dsn)
    try:
        await migrate(conn)
        await import_roster(conn, people)
    finally:
        await conn.close()
    await publish(servers.bootstrap, spread_over_channels(settings, people, when, prefix="B"))
    env = settings_env(settings, dsn, servers.bootstrap)
    command = ([sys.executable, "-m", "certrecon", "run"], env)
    async with ResultCounter(servers.bootstrap, settings.result_topic, len(people)) as counter:
        return await observe(
            "worker",
            servers,
            commands=[command] * workers,
            ready=WORKER_READY,
            counter=counter,
            count=len(people),
            logdir=logdir,
            profile=profile,
        )


async def peer_run(
    servers: Servers,
    people: list[RosterRecord],
    when: dt.datetime,
    *,
    logdir: Path,
    profile: bool,
) -> Run:
    settings: Settings = isolated_settings(topic_partitions=PARTITIONS)
    await ensure_topics(servers.bootstrap, settings.all_topics(), PARTITIONS)
    dsn = await fresh_database(servers.dsn, f"bench_peer_{uuid.uuid4().hex[:8]}")
    await prepare_database(dsn, people)
    await publish(servers.bootstrap, spread_over_channels(settings, people, when, prefix="P"))
    config = PeerConfig(
        dsn=dsn,
        bootstrap=servers.bootstrap,
        topic_channels={t: c.value for c, t in settings.channel_topics.items()},
        result_topic=settings.result_topic,
        dead_letter_topic=settings.dead_letter_topic,
        group_id=settings.group_id,
        region_prefix=settings.region,
        working_days=settings.deadline_working_days,
        max_skew_seconds=float(settings.max_clock_skew_seconds),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")}
    command = ([sys.executable, str(ROOT / "bench" / "peer_faststream.py"), config.to_json()], env)
    async with ResultCounter(servers.bootstrap, settings.result_topic, len(people)) as counter:
        return await observe(
            "peer",
            servers,
            commands=[command],
            ready=READY,
            counter=counter,
            count=len(people),
            logdir=logdir,
            profile=profile,
        )


def print_budget(run: Run) -> None:
    by_stage = stage_samples(run.samples)
    samples = sum(by_stage.values())
    print()
    print(
        budget_table(
            f"CPU budget of the {run.label}, µs per certification ({run.count:,} "
            f"certifications, {run.processes} process(es), {samples:,} py-spy samples)",
            by_stage,
            run.cpu,
            run.count,
            extra=[("PostgreSQL (all backends)", run.pg_cpu), ("broker", run.broker_cpu)],
        )
    )
    left = unattributed(run.samples)
    if left:
        print("most frequent innermost frames in 'event loop and other':")
        for frame, n in left:
            print(f"  {n / samples:5.1%}  {frame}")


def _missing(modules: Sequence[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the partitions"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample with py-spy; print the CPU budget"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the FastStream peer")
    parser.add_argument(
        "--peer-count",
        type=int,
        help="certifications for the peer (default: --count, at most 10,000: it is slow)",
    )
    args = parser.parse_args()
    count: int = args.count
    with_peer = not args.no_peer
    if with_peer and _missing(["faststream", "faststream_outbox", "sqlalchemy"]):
        raise SystemExit(f"{INSTALL_HINT} (or pass --no-peer)")
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit(
            "--profile needs py-spy: "
            "pip install -c requirements/constraints.txt -r bench/requirements.txt"
        )
    with (
        tempfile.TemporaryDirectory(prefix="certrecon-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        postmaster = broker_pid = None
        dsn = os.environ.get("CERTRECON_DATABASE_URL")
        if dsn is None:
            pg = stack.enter_context(EmbeddedPostgres(workdir / "pg"))
            dsn = pg.dsn
            postmaster = pg.pid
        bootstrap = os.environ.get("CERTRECON_KAFKA_BOOTSTRAP")
        if bootstrap is None:
            broker = stack.enter_context(EmbeddedBroker(workdir / "broker"))
            bootstrap, broker_pid = broker.bootstrap, broker.pid
        servers = Servers(dsn, bootstrap, postmaster, broker_pid)

        sample = eligible_roster(1, seed=2)[0]
        value = encode(
            certification("B00000000", Channel.APP_12333, sample, dt.datetime.now(dt.UTC))
        )
        print(f"messages: {count}, {len(value)} bytes each, {PARTITIONS} partitions per topic")
        people = eligible_roster(count, seed=1)
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)

        # The passthrough runs before and after the worker, and the ratio uses both: a
        # few seconds of passthrough are at the mercy of whatever else the machine does.
        before = await passthrough(servers, [value] * count)
        print(before.describe_passthrough("before the worker"))
        worker = await worker_run(
            servers, people, when, workers=args.workers, logdir=workdir, profile=args.profile
        )
        print(worker.describe())
        after = await passthrough(servers, [value] * count)
        print(after.describe_passthrough("after the worker"))
        baseline = 2 * count / (before.elapsed + after.elapsed)
        peer = None
        if with_peer:
            peer_people = people[: args.peer_count or min(count, 10_000)]
            peer = await peer_run(servers, peer_people, when, logdir=workdir, profile=args.profile)
            print(peer.describe())
        if args.profile:
            print_budget(worker)
            if peer is not None:
                print_budget(peer)
        print()
        print(f"worker peak RSS: {worker.rss_mb:.0f} MB")
        print(f"passthrough: {baseline:,.0f} msg/s")
        print(f"ratio: {worker.rate / baseline:.2f}")
        if peer is not None:
            print(f"peer: {peer.rate:,.0f}/s")
            print(f"vs peer: {worker.rate / peer.rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
