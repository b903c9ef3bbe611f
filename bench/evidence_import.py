"""Benchmark: import a 1,000,000-row comparison evidence CSV (target: under 60 s).

    python bench/evidence_import.py [--rows N] [--seed S]

Generates a synthetic evidence file (mostly proof of life, some deaths, imprisonments and
releases) in a temporary directory, then times what ``certrecon evidence import`` runs, in
one transaction: the file streamed through the row checks into COPY, each chunk recorded
with its review items while the next is checked; then the repeat checks over the whole
file, the cycle projection's merge and the commit. A second import of the same file (every
row already recorded) is timed as well. The database has no roster: the projection's rows
are all new.

Uses ``CERTRECON_DATABASE_URL`` when it is set (the evidence is recorded in that database!),
otherwise an embedded PostgreSQL in the temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

from certrecon.evidence.csvfile import HEADER
from certrecon.store import db
from certrecon.store.evidence import import_evidence_file
from certrecon.store.migrations import migrate
from certrecon.synthetic import make_roster
from roster_import import _rate, bench_database

TARGET_SECONDS = 60.0
TODAY = dt.date(2026, 11, 30)
KINDS = (
    ("proof_of_life", "transport:rail_travel", 0.60),
    ("proof_of_life", "health:outpatient", 0.35),
    ("death", "civil_affairs:cremation", 0.03),
    ("imprisonment", "justice:prison", 0.01),
    ("release", "justice:prison_release", 0.01),
)


def write_evidence(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    people = make_roster(max(rows // 3, 1), seed=seed)
    weights = [w for _, _, w in KINDS]
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(HEADER) + "\n")
        for n in range(rows):
            person = people[rng.randrange(len(people))]
            kind, source, _ = rng.choices(KINDS, weights)[0]
            day = TODAY - dt.timedelta(days=rng.randrange(700))
            out.write(f"E{n:08d},{kind},{person.id_number},{person.name},{day},{source}\n")


async def _import(dsn: str, path: Path, rows: int) -> float:
    conn = await db.connect(dsn)
    try:
        await migrate(conn)
        copied_at: list[float] = []
        started = time.perf_counter()
        summary = await import_evidence_file(
            conn, path, today=TODAY, rows_copied=lambda _: copied_at.append(time.perf_counter())
        )
        total = time.perf_counter() - started
        assert summary.rows == rows, summary
        staged = copied_at[-1] - started
        print(f"  read, check, COPY, record      {_rate(rows, staged)}")
        print(f"  repeat checks, merge, commit   {_rate(rows, total - staged)}")
        print(f"check + COPY + insert (streamed) {_rate(rows, total)}   {summary}")
        again = time.perf_counter()
        summary = await import_evidence_file(conn, path, today=TODAY)
        assert summary.inserted == 0, summary
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
        path = Path(tmp) / "evidence.csv"
        started = time.perf_counter()
        write_evidence(path, args.rows, args.seed)
        print(
            f"generated {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s (not timed below)"
        )
        dsn = bench_database(stack, Path(tmp))
        total = asyncio.run(_import(dsn, path, args.rows))
    verdict = "met" if total < TARGET_SECONDS * args.rows / 1_000_000 else "MISSED"
    print(f"target {TARGET_SECONDS:.0f} s per 1,000,000 rows: {verdict}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
