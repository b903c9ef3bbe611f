"""Throughput of the worker compared with a raw aiokafka passthrough, on the same broker.

    python bench/throughput.py [--count 100000]

(a) passthrough: a consumer group reads N certification-sized messages and a producer
    (acks=all) writes each to another topic; nothing else.
(b) worker: ``certrecon run`` as a separate process consumes N certifications on the four
    channel topics against a roster of N people, validates, reconciles, persists and
    relays every result.
Both runs start with all messages already on the broker; each clock starts when the
consumer has its partitions and stops when the last output is acknowledged. Prints both
rates, ``ratio: X`` (worker / passthrough) and the worker's peak RSS.

Uses CERTRECON_DATABASE_URL / CERTRECON_KAFKA_BOOTSTRAP when set, else starts the
embedded PostgreSQL and broker in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

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

from certrecon.domain import Channel  # noqa: E402
from certrecon.embedded import EmbeddedBroker, EmbeddedPostgres  # noqa: E402
from certrecon.store import db  # noqa: E402
from certrecon.store.migrations import migrate  # noqa: E402
from certrecon.store.roster import import_roster  # noqa: E402
from certrecon.worker.kafka import ensure_topics, publish  # noqa: E402

PARTITIONS = 6


async def passthrough(bootstrap: str, values: list[bytes]) -> float:
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
        started = time.perf_counter()
        machine_at_start = machine_busy_seconds()
        done = 0
        while done < len(values):
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
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
        elapsed = time.perf_counter() - started
        machine = machine_busy_seconds() - machine_at_start
        print(f"machine busy during the passthrough: {machine / elapsed:.2f} cores")
        return elapsed
    finally:
        await producer.stop()
        await consumer.stop()


def peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def worker_run(
    dsn: str, bootstrap: str, count: int, logdir: Path
) -> tuple[float, float, float]:
    settings = isolated_settings(topic_partitions=PARTITIONS)
    await ensure_topics(bootstrap, settings.all_topics(), PARTITIONS)
    people = eligible_roster(count, seed=1)
    conn = await db.connect(dsn)
    try:
        await migrate(conn)
        await import_roster(conn, people)
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        await publish(bootstrap, spread_over_channels(settings, people, when, prefix="B"))
        env = settings_env(settings, dsn, bootstrap)
        env["CERTRECON_HTTP_PORT"] = "0"
        log = (logdir / "worker.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "certrecon", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            started = None
            cpu_at_start = machine_at_start = 0.0
            peak = 0.0
            while True:
                peak = max(peak, peak_rss_mb(proc.pid))
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited with {proc.returncode}; see {logdir}")
                if started is None:
                    text = (logdir / "worker.log").read_text("utf-8", "replace")
                    if "partitions assigned" in text:
                        started = time.perf_counter()
                        cpu_at_start = cpu_seconds(proc.pid)
                        machine_at_start = machine_busy_seconds()
                row = await conn.fetchrow(
                    """
                    SELECT (SELECT count(*) FROM result) AS results,
                           (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS pending
                    """
                )
                assert row is not None
                if started is not None and row["results"] == count and row["pending"] == 0:
                    elapsed = time.perf_counter() - started
                    cpu = cpu_seconds(proc.pid) - cpu_at_start
                    machine = machine_busy_seconds() - machine_at_start
                    print(f"machine busy during the worker run: {machine / elapsed:.2f} cores")
                    return elapsed, max(peak, peak_rss_mb(proc.pid)), cpu
                await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(60)
            log.close()
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    count: int = args.count
    with (
        tempfile.TemporaryDirectory(prefix="certrecon-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        dsn = (
            os.environ.get("CERTRECON_DATABASE_URL")
            or stack.enter_context(EmbeddedPostgres(workdir / "pg")).dsn
        )
        bootstrap = (
            os.environ.get("CERTRECON_KAFKA_BOOTSTRAP")
            or stack.enter_context(EmbeddedBroker(workdir / "broker")).bootstrap
        )
        if "CERTRECON_DATABASE_URL" not in os.environ:
            admin = await asyncpg.connect(dsn)
            await admin.execute("CREATE DATABASE bench")
            await admin.close()
            dsn = dsn.replace("/postgres?", "/bench?")
        sample = eligible_roster(1, seed=2)[0]
        value = encode(
            certification("B00000000", Channel.APP_12333, sample, dt.datetime.now(dt.UTC))
        )
        print(f"messages: {count}, {len(value)} bytes each, {PARTITIONS} partitions per topic")
        pt = await passthrough(bootstrap, [value] * count)
        print(f"passthrough: {count / pt:,.0f} msg/s ({pt:.2f} s)")
        wt, rss, cpu = await worker_run(dsn, bootstrap, count, workdir)
        print(f"worker: {count / wt:,.0f} certifications/s ({wt:.2f} s)")
        print(
            f"worker CPU: {cpu:.2f} s ({cpu / wt:.0%} of one core), {cpu / count * 1e6:.0f} us each"
        )
        print(f"worker peak RSS: {rss:.0f} MB")
        print(f"ratio: {pt / wt:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
