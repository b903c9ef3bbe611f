"""Benchmark: ``cycle status`` and the outreach file over a 3,000,000-person roster
(goals: status < 5 s, outreach file < 30 s).

    python bench/cycle.py [--people N] [--mode calendar_year|rolling_12_months]

Fills a fresh embedded PostgreSQL (or ``CERTRECON_DATABASE_URL``: the rows are added to
that database's ledger!) with a roster and the facts a municipal cycle has by late
November: about 80 % of people with proof of life, 12 % certified through a ministry
channel, 3 % assisted, 1 % with death or prison evidence (a third of it decided), a few open
review items. The loading is not timed. Then it times what ``certrecon cycle status`` and
``certrecon cycle outreach --out FILE`` run, as the read-only auditor would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from certrecon.cli.cycle_view import write_list
from certrecon.cycle.status import CycleMode, Period
from certrecon.store import db
from certrecon.store.cycle import cycle_summary
from certrecon.store.migrations import migrate
from roster_import import bench_database

STATUS_GOAL = 5.0
OUTREACH_GOAL = 30.0
CHUNK = 500_000

# Each statement fills rows [lo, hi) of a generate_series; 'n' is the person number.
_ROSTER = """
INSERT INTO roster_version (id_number, name, benefit_type, status, first_paid_on,
                            insured_region)
SELECT lpad(n::text, 18, '0'), '测试' || n, 'basic_pension',
       CASE WHEN n % 50 = 0 THEN 'terminated' WHEN n % 9 = 0 THEN 'suspended' ELSE 'active' END,
       date '2005-01-01' + (n * 7919 % 7600)::int,
       (ARRAY['110101', '110102', '110105', '110106', '110107', '110108'])[n % 6 + 1]
FROM generate_series($1::bigint, $2::bigint - 1) AS n
"""
_CERTIFICATIONS = """
INSERT INTO certification (certification_id, channel, topic, kafka_partition, kafka_offset,
    id_number, valid, certified_at, local_date, due_date, deadline, provisional,
    content_sha256, raw, received_at)
SELECT 'B' || n, '12333', 'mohrss.certification.12333', 0, n, lpad(n::text, 18, '0'), true,
       t, t::date, t::date + 7, t + interval '7 days', false, '\\x00', '\\x00', t
FROM generate_series($1::bigint, $2::bigint - 1) AS n,
     LATERAL (SELECT timestamptz '2026-01-05 10:00+08' + (n % 320) * interval '1 day') x(t)
WHERE n % 100 BETWEEN 80 AND 91
"""
_RESULTS = """
INSERT INTO result (certification_id, revision, result_id, outcome, reason, decided_at,
                    decided_by)
SELECT 'B' || n, 1, 'B' || n || ':1',
       CASE WHEN n % 13 = 0 THEN 'face_not_verified' ELSE 'qualified' END, 'bench',
       now(), 'rules'
FROM generate_series($1::bigint, $2::bigint - 1) AS n
WHERE n % 100 BETWEEN 80 AND 90
"""
_REVIEWS = """
INSERT INTO review_item (certification_id, reason, queued_at)
SELECT 'B' || n, 'deceased', now()
FROM generate_series($1::bigint, $2::bigint - 1) AS n WHERE n % 100 = 91
"""
_ASSISTED = """
INSERT INTO assisted_certification (id_number, how, certified_at, local_date, decided_by)
SELECT lpad(n::text, 18, '0'), 'offline', t, (t AT TIME ZONE 'Asia/Shanghai')::date,
       'staff:bench'
FROM generate_series($1::bigint, $2::bigint - 1) AS n,
     LATERAL (SELECT timestamptz '2026-02-01 10:00+08' + (n % 280) * interval '1 day') x(t)
WHERE n % 100 BETWEEN 92 AND 94
"""
_EVIDENCE = """
WITH new AS (
    INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name, event_date,
                                     via, file_name, file_sha256, file_line)
    SELECT CASE WHEN k = 'proof_of_life' THEN 'transport:rail_travel' ELSE 'civil_affairs:x' END,
           'E' || n, k, lpad(n::text, 18, '0'), '测试' || n,
           date '2025-06-01' + (n * 31 % 540)::int, 'file', 'bench.csv', '\\x00', n + 2
    FROM generate_series($1::bigint, $2::bigint - 1) AS n,
         LATERAL (SELECT CASE WHEN n % 100 < 80 THEN 'proof_of_life'
                              WHEN n % 100 = 95 THEN 'death'
                              WHEN n % 100 = 96 AND n % 3 = 0 THEN 'imprisonment' END) x(k)
    WHERE k IS NOT NULL
    RETURNING id, kind, id_number
)
INSERT INTO evidence_review_item (evidence_ref, id_number)
SELECT id, id_number FROM new WHERE kind IN ('death', 'imprisonment')
"""
_VERDICTS = """
INSERT INTO evidence_verdict (decision_id, evidence_ref, verdict, effective_date, decided_by,
                              decided_at)
SELECT 'V' || i.evidence_ref, i.evidence_ref, 'confirmed', date '2026-03-01', 'staff:bench',
       now()
FROM evidence_review_item i WHERE i.evidence_ref % 3 = 0
"""


async def _load(dsn: str, people: int) -> None:
    conn = await db.connect(dsn)
    try:
        await migrate(conn)
        started = time.perf_counter()
        for statement in (_ROSTER, _CERTIFICATIONS, _RESULTS, _REVIEWS, _ASSISTED, _EVIDENCE):
            for lo in range(0, people, CHUNK):
                await conn.execute(statement, lo, min(lo + CHUNK, people))
        await conn.execute(_VERDICTS)
        await conn.execute("VACUUM ANALYZE")
        print(f"loaded {people:,} people and their facts in {time.perf_counter() - started:.0f} s")
    finally:
        await conn.close()


async def _measure(dsn: str, period: Period, out: Path) -> tuple[float, float]:
    conn = await db.connect(dsn)
    try:
        async with conn.transaction(readonly=True):
            started = time.perf_counter()
            summary = await cycle_summary(conn, period)
            status_s = time.perf_counter() - started
        counts = ", ".join(f"{k} {v:,}" for k, v in summary.to_json()["by_status"].items())
        print(f"cycle status      {status_s:6.2f} s   in scope {summary.in_scope:,}: {counts}")
        started = time.perf_counter()
        async with conn.transaction(readonly=True):
            listed = await write_list(conn, period, out)
        outreach_s = time.perf_counter() - started
        size = out.stat().st_size / 1e6
        print(f"outreach file     {outreach_s:6.2f} s   {listed:,} people, {size:.0f} MB")
        return status_s, outreach_s
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=3_000_000)
    parser.add_argument("--mode", choices=[m.value for m in CycleMode], default="calendar_year")
    args = parser.parse_args()
    mode = CycleMode(args.mode)
    period = Period.of(mode, 2026, dt.date(2026, 11, 27))
    with (
        tempfile.TemporaryDirectory(prefix="certrecon-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        dsn = bench_database(stack, Path(tmp))
        asyncio.run(_load(dsn, args.people))
        print(f"mode {mode.value}, as of {period.as_of}")
        status_s, outreach_s = asyncio.run(_measure(dsn, period, Path(tmp) / "outreach.csv"))
    met = status_s < STATUS_GOAL and outreach_s < OUTREACH_GOAL
    print(
        f"goals: status < {STATUS_GOAL:.0f} s, outreach < {OUTREACH_GOAL:.0f} s "
        f"(for 3,000,000 people): {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
