"""The audit replay's rate against the worker's, on the same data in one run.

    python bench/audit_replay.py [--count 100000]

Loads a roster of N people, puts N certifications on the four channel topics (1 % of them
invalid with a usable certification_id, 1 % not JSON at all, so the dead-letter topic has
records too), runs the worker until every result and dead letter is acknowledged, then
runs ``certrecon audit replay`` over the window as a separate process. Prints the worker's
rate (certifications/s, from its start until the last acknowledgement), the replay's rate
(records of the window / wall time of the command, start-up included), their ratio, and
the replay process's peak RSS (and the largest of its worker processes', when it has
some). The replay must report the window clean.

Uses CERTRECON_DATABASE_URL / CERTRECON_KAFKA_BOOTSTRAP when set (a server where the
benchmark may create databases), else starts the embedded PostgreSQL and broker in a
temporary directory. Figures from a shared machine are noisy: compare the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import (  # noqa: E402
    certification,
    eligible_roster,
    encode,
    isolated_settings,
    running_worker,
    settings_env,
)

from certrecon.domain import Channel  # noqa: E402
from certrecon.embedded.broker import EmbeddedBroker  # noqa: E402
from certrecon.embedded.postgres import EmbeddedPostgres  # noqa: E402
from certrecon.store import db  # noqa: E402
from certrecon.store.migrations import migrate  # noqa: E402
from certrecon.store.roster import import_roster  # noqa: E402
from certrecon.worker.kafka import ensure_topics, publish  # noqa: E402

PARTITIONS = 3
# Run in the child: the replay command, then its worker processes' largest peak RSS and its
# own on stderr's last two lines.
_MEASURED = """
import resource, sys
from certrecon.cli import main
code = 0
try:
    sys.argv = ["certrecon", *sys.argv[1:]]
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"worker_processes_peak_rss_kb {children}", file=sys.stderr)
print(f"peak_rss_kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


async def fresh_database(dsn: str) -> str:
    name = f"bench_replay_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def run(dsn_server: str, bootstrap: str, count: int) -> None:
    settings = isolated_settings(topic_partitions=PARTITIONS)
    await ensure_topics(bootstrap, settings.all_topics(), PARTITIONS)
    dsn = await fresh_database(dsn_server)
    people = eligible_roster(count, seed=1)
    conn = await db.connect(dsn)
    try:
        await migrate(conn)
        await import_roster(conn, people)
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        channels = list(Channel)
        messages = []
        for i, person in enumerate(people):
            channel = channels[i % 4]
            topic = settings.channel_topics[channel]
            changes = {"face_match": "maybe"} if i % 100 == 1 else {}
            body = encode(certification(f"B{i:08d}", channel, person, when, **changes))
            if i % 100 == 2:
                body = b"{not json " + str(i).encode()
            messages.append((topic, person.id_number.encode(), body))
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        for i in range(0, len(messages), 20_000):
            await publish(bootstrap, messages[i : i + 20_000])
        end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        print(f"certifications: {count} on {len(channels)} topics x {PARTITIONS} partitions")

        began = time.perf_counter()
        async with running_worker(settings, dsn, bootstrap):
            while True:
                done = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM outbox_ack)"
                    " + (SELECT count(*) FROM outbox WHERE kind = 'sla_alert')"
                )
                stored = await conn.fetchval("SELECT count(*) FROM certification")
                expected = await conn.fetchval("SELECT count(*) FROM outbox")
                if stored + count // 100 >= count and done >= expected > 0:
                    break
                await asyncio.sleep(0.2)
            worker_seconds = time.perf_counter() - began
    finally:
        await conn.close()
    worker_rate = count / worker_seconds
    print(f"worker: {worker_seconds:.1f} s, {worker_rate:,.0f} certifications/s")

    env = settings_env(settings, dsn, bootstrap)
    with tempfile.TemporaryDirectory(prefix="certrecon-replay-") as tmp:
        args = [
            sys.executable,
            "-c",
            _MEASURED,
            "audit",
            "replay",
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            "--json",
            "--report",
            str(Path(tmp) / "report"),
        ]
        began = time.perf_counter()
        done = await asyncio.to_thread(
            subprocess.run, args, env=env, capture_output=True, text=True, check=False
        )
        replay_seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"the replay exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    summary = json.loads(done.stdout)
    *_, children_line, rss_line = done.stderr.strip().splitlines()
    rss_kb = int(rss_line.split()[1])
    children_kb = int(children_line.split()[1])
    records = summary["records_in_window"]
    replay_rate = records / replay_seconds
    print(
        f"replay: {replay_seconds:.1f} s, {replay_rate:,.0f} certifications/s "
        f"({records} records, clean: {summary['clean']}, "
        f"{summary['dead_letters_only']} dead letters without an id)"
    )
    print(f"ratio (replay / worker): {replay_rate / worker_rate:.2f}")
    print(f"replay peak RSS: {rss_kb / 1024:.0f} MB", end="")
    if children_kb:
        print(f" (the largest of its worker processes: {children_kb / 1024:.0f} MB)", end="")
    print()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="certrecon-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        dsn = os.environ.get("CERTRECON_DATABASE_URL")
        if dsn is None:
            dsn = stack.enter_context(EmbeddedPostgres(Path(tmp) / "pg")).dsn
        bootstrap = os.environ.get("CERTRECON_KAFKA_BOOTSTRAP")
        if bootstrap is None:
            bootstrap = stack.enter_context(EmbeddedBroker(Path(tmp) / "broker")).bootstrap
        await run(dsn, bootstrap, args.count)


if __name__ == "__main__":
    asyncio.run(main())
