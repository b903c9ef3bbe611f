"""Benchmark: import a 1,000,000-row roster CSV (target: under 60 s, check + import).

    python bench/roster_import.py [--rows N] [--seed S]

Generates a synthetic roster CSV in a temporary directory, then times what the
``certrecon roster import`` command runs: the file streamed through the row checks into
COPY, the repeated-number check and the upsert, in one transaction. A second import of the
same file (every row unchanged) is timed as well.

Uses ``CERTRECON_DATABASE_URL`` when it is set (the rows are upserted into that database's
roster!), otherwise an embedded PostgreSQL in the temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.roster_csv import RosterFile
from certrecon.store import db
from certrecon.store.migrations import migrate
from certrecon.store.roster import import_roster_file
from certrecon.synthetic import make_roster, write_roster_csv

TARGET_SECONDS = 60.0


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:>12,.0f} rows/s  {seconds:7.2f} s"


async def _fresh_database(server_dsn: str) -> str:
    """A new database on the embedded server, so runs never see each other's rows."""
    admin = await db.connect(server_dsn)
    try:
        await admin.execute("DROP DATABASE IF EXISTS certrecon_bench")
        await admin.execute("CREATE DATABASE certrecon_bench")
    finally:
        await admin.close()
    head, sep, query = server_dsn.partition("?")
    return f"{head.rsplit('/', 1)[0]}/certrecon_bench{sep}{query}"


def bench_database(stack: contextlib.ExitStack, tmp: Path) -> str:
    """CERTRECON_DATABASE_URL, else a fresh database on an embedded server kept in ``tmp``
    until ``stack`` closes."""
    dsn = os.environ.get("CERTRECON_DATABASE_URL")
    if dsn:
        print("database: CERTRECON_DATABASE_URL")
        return dsn
    server = stack.enter_context(EmbeddedPostgres(tmp / "pg"))
    print("database: embedded PostgreSQL")
    return asyncio.run(_fresh_database(server.dsn))


async def _import(dsn: str, path: Path, rows: int) -> float:
    conn = await db.connect(dsn)
    try:
        await migrate(conn)

        started = time.perf_counter()
        with RosterFile(path) as roster:
            summary = await import_roster_file(conn, roster)
        total = time.perf_counter() - started
        assert summary.total == rows
        print(f"check + COPY + upsert (streamed) {_rate(rows, total)}   {summary}")

        again = time.perf_counter()
        with RosterFile(path) as roster:
            summary = await import_roster_file(conn, roster)
        print(f"re-import (same)                 {_rate(rows, time.perf_counter() - again)}")
        return total
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="certrecon-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        path = Path(tmp) / "roster.csv"
        started = time.perf_counter()
        write_roster_csv(path, make_roster(args.rows, seed=args.seed))
        size_mb = path.stat().st_size / 1e6
        print(
            f"generated {args.rows:,} rows ({size_mb:.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s (not timed below)"
        )

        dsn = bench_database(stack, Path(tmp))

        total = asyncio.run(_import(dsn, path, args.rows))

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (generation included): {peak_mb:.0f} MB")
    verdict = "met" if total < TARGET_SECONDS * args.rows / 1_000_000 else "MISSED"
    print(f"target {TARGET_SECONDS:.0f} s per 1,000,000 rows: {verdict}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
