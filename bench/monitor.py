"""One deadline-monitor run against a million open certifications.

    python bench/monitor.py [--open 1000000] [--new-alerts 10000] [--explain]

Copies ``--open`` open certifications into a fresh database (binary COPY), most of them on
track, ``--new-alerts`` of them (half at risk, half breached) without an alert yet, and
vacuums the table as autovacuum would. Then, at a fixed instant, it times:

(a) a monitor run that raises the ``--new-alerts`` alerts (stored and enqueued in batches);
(b) the next run, with nothing new to raise (the steady state, once a minute);
(c) the gauge refresh of a tick (counts by channel and level, oldest, outbox backlog).

Prints each figure, then (c) query by query; (a) and (b) are "one monitor run". With
``--explain``, also PostgreSQL's plan and timing (EXPLAIN ANALYZE) of each of the monitor's
read queries in the steady state. Uses CERTRECON_DATABASE_URL's server when set, else an
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from certrecon.calendar import compute_deadline, default_calendar  # noqa: E402
from certrecon.domain import CST  # noqa: E402
from certrecon.embedded.postgres import EmbeddedPostgres  # noqa: E402
from certrecon.sla import Window  # noqa: E402
from certrecon.store import db, ledger, sla  # noqa: E402
from certrecon.store.migrations import migrate  # noqa: E402
from certrecon.worker.metrics import Metrics  # noqa: E402
from certrecon.worker.monitor import MONITOR_NAME, observe, run_monitor  # noqa: E402

NOW = dt.datetime(2024, 6, 7, 9, 0, tzinfo=CST)
"""Friday 2024-06-07 09:00 CST: the next working day is Tuesday 06-11 (06-10 is a holiday)."""
CHANNELS = ("national_platform", "12333", "essc", "consular")
COLUMNS = (
    "certification_id",
    "channel",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "id_number",
    "valid",
    "certified_at",
    "certified_at_raw",
    "local_date",
    "due_date",
    "deadline",
    "provisional",
    "content_sha256",
    "raw",
    "received_at",
)
# Certification instants by what the monitor should make of them at NOW.
ON_TRACK_DAYS = (dt.date(2024, 6, 4), dt.date(2024, 6, 5), dt.date(2024, 6, 6), dt.date(2024, 6, 7))
AT_RISK_DAYS = (dt.date(2024, 5, 31), dt.date(2024, 6, 3))
BREACHED_DAYS = (dt.date(2024, 5, 27), dt.date(2024, 5, 28), dt.date(2024, 5, 29))


def rows(total: int, new_alerts: int) -> Iterator[tuple[object, ...]]:
    calendar = default_calendar()
    sha = hashlib.sha256(b"{}").digest()
    half = new_alerts // 2
    for i in range(total):
        if i < half:
            day = AT_RISK_DAYS[i % len(AT_RISK_DAYS)]
        elif i < new_alerts:
            day = BREACHED_DAYS[i % len(BREACHED_DAYS)]
        else:
            day = ON_TRACK_DAYS[i % len(ON_TRACK_DAYS)]
        certified_at = dt.datetime.combine(day, dt.time(8, 0), CST) + dt.timedelta(seconds=i % 3600)
        if certified_at > NOW:
            certified_at = NOW - dt.timedelta(seconds=i % 3600 + 1)
        d = compute_deadline(certified_at, calendar)
        channel = CHANNELS[i % len(CHANNELS)]
        yield (
            f"B{i:09d}",
            channel,
            f"mohrss.certification.{channel}",
            i % 6,
            i // 6,
            "11010519491231002X",
            True,
            certified_at,
            certified_at.isoformat(),
            d.local_date,
            d.due_date,
            d.deadline,
            d.provisional,
            sha,
            b"{}",
            certified_at,
        )


async def explain(conn: asyncpg.Connection, query: str, *args: object) -> None:
    plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query}", *args)
    print("\n".join(f"    {r[0]}" for r in plan))


async def main(total: int, new_alerts: int, *, show_plans: bool) -> None:
    with contextlib.ExitStack() as stack:
        server = os.environ.get("CERTRECON_DATABASE_URL")
        if server is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="monitor-bench-")))
            server = stack.enter_context(EmbeddedPostgres(tmp / "pg")).dsn
        name = f"bench_monitor_{uuid.uuid4().hex[:8]}"
        admin = await db.connect(server)
        await admin.execute(f'CREATE DATABASE "{name}"')
        head, sep, query = server.partition("?")
        dsn = f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"
        conn = await db.connect(dsn)
        try:
            await migrate(conn)
            started = time.perf_counter()
            # As the worker writes them: each chunk with its rows' ledger digests.
            source = rows(total, new_alerts)
            while chunk := list(itertools.islice(source, 50_000)):
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "certification", records=chunk, columns=COLUMNS
                    )
                    await ledger.record_rows(conn, "certification", chunk)
            # What autovacuum would do: the open set (pending_certification, filled at commit)
            # and the certifications, vacuumed and analysed.
            await conn.execute("VACUUM (ANALYZE) certification, pending_certification")
            print(f"loaded {total:,} open certifications in {time.perf_counter() - started:.1f} s")

            calendar = default_calendar()
            first = await run_monitor(conn, calendar=calendar, now=NOW, topic="certrecon.sla-alert")
            print(
                f"(a) monitor run raising {len(first.raised):,} alerts: "
                f"{first.duration_seconds * 1000:.0f} ms"
            )
            second = await run_monitor(
                conn, calendar=calendar, now=NOW + dt.timedelta(minutes=1), topic="x"
            )
            print(
                f"(b) monitor run, steady state ({len(second.raised)} new): "
                f"{second.duration_seconds * 1000:.0f} ms"
            )
            metrics = Metrics()
            started = time.perf_counter()
            await observe(conn, metrics, calendar, NOW, CHANNELS)
            gauges = time.perf_counter() - started
            print(f"(c) gauge refresh over {total:,} open: {gauges * 1000:.0f} ms")
            window = Window.at(NOW, calendar)
            for label, read in (
                ("counts by channel and level", lambda: sla.count_open(conn, window)),
                ("oldest open", lambda: sla.oldest_open(conn)),
                ("outbox backlog", lambda: sla.outbox_backlog(conn)),
                ("last run", lambda: sla.last_run(conn, MONITOR_NAME)),
            ):
                started = time.perf_counter()
                await read()
                print(f"    {label}: {(time.perf_counter() - started) * 1000:.0f} ms")
            worst = max(first.duration_seconds, second.duration_seconds)
            print(
                f"one monitor run with {total:,} open certifications: "
                f"{worst * 1000:.0f} ms (worst of a, b)"
            )
            if show_plans:
                steady = Window.at(NOW + dt.timedelta(minutes=1), calendar)
                bounds = (steady.now, steady.earliest_open_due, steady.next_working_day)
                for label, query, args in (
                    ("breached candidates", sla.BREACHED_CANDIDATES, bounds[:1]),
                    ("at-risk candidates", sla.AT_RISK_CANDIDATES, bounds),
                    ("counts", sla.COUNTS, bounds),
                    ("oldest open", sla.OLDEST, ()),
                    ("outbox backlog", sla.BACKLOG, ()),
                ):
                    print(f"{label}:")
                    await explain(conn, query, *args)
        finally:
            await conn.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--open", type=int, default=1_000_000, dest="total")
    parser.add_argument("--new-alerts", type=int, default=10_000)
    parser.add_argument("--explain", action="store_true", help="print the plans of the reads")
    args = parser.parse_args()
    asyncio.run(main(args.total, args.new_alerts, show_plans=args.explain))
