"""``certrecon audit verify`` over a ledger of a million certifications.

    python bench/audit_verify.py [--certifications 1000000] [--per-transaction 2000]

Builds the ledger server-side, in transactions the size of worker batches, each recording
its rows' digests as the worker does (computed here by PostgreSQL from the same binary row
encoding, which is faster to build) and sealed by the database's commit-time trigger: per
certification its inbound record (about 330 bytes), the decision, the result, the
result's outbox message and, in the next transaction, the broker's acknowledgement. Then it
runs ``certrecon audit verify --json`` as a separate process, which hashes every row in
Python, and prints the rows verified per second and the process's peak RSS (goal: under
60 s and 300 MB for a million certifications).

Uses CERTRECON_DATABASE_URL's server when set, else an embedded PostgreSQL in a temporary
directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from certrecon.audit.digest import FORMAT, TABLES  # noqa: E402
from certrecon.embedded.postgres import EmbeddedPostgres  # noqa: E402
from certrecon.store import db  # noqa: E402
from certrecon.store.migrations import migrate  # noqa: E402

# One transaction: certifications $1 .. $2 with their decisions, results and messages.
_BATCH = """
WITH c AS (
    INSERT INTO certification (
        certification_id, channel, topic, kafka_partition, kafka_offset, id_number, valid,
        certified_at, certified_at_raw, local_date, due_date, deadline, provisional,
        content_sha256, raw, received_at)
    SELECT 'A' || lpad(i::text, 9, '0'), '12333', 'mohrss.certification.12333', i % 6, i / 6,
           '11010519491231002X', true, t, to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS+08:00'),
           '2024-06-03', '2024-06-11', '2024-06-11 16:00+00', false, sha256(raw), raw, t
    FROM generate_series($1::bigint, $2::bigint) AS i,
         LATERAL (SELECT timestamptz '2024-06-03 02:00+00' + i * interval '1 ms' AS t) ts,
         LATERAL (SELECT convert_to(format(
             '{"schema_version":1,"certification_id":"A%s","channel":"12333",'
             '"subject":{"id_type":"resident_id","id_number":"11010519491231002X",'
             '"name":"张秀英"},"certified_at":"2024-06-03T10:00:00+08:00","method":"face",'
             '"face_match":"pass","on_behalf":null,"insured_region":"110105"}',
             lpad(i::text, 9, '0')), 'UTF8') AS raw) r
    RETURNING certification_id
), d AS (
    INSERT INTO decision (certification_id, outcome, reason, rule, rule_version, evidence,
                          roster_version, decided_at)
    SELECT certification_id, 'qualified', '认证通过', 'qualified', '2024.1',
           '{"status": "active", "insured_region": "110105"}', 1, now()
    FROM c
), r AS (
    INSERT INTO result (certification_id, revision, result_id, outcome, reason, decided_at,
                        decided_by)
    SELECT certification_id, 1, certification_id || ':1', 'qualified', '认证通过', now(), 'rules'
    FROM c
)
INSERT INTO outbox (message_id, kind, topic, key, payload)
SELECT certification_id || ':1', 'result', 'mohrss.certification-result',
       convert_to('11010519491231002X', 'UTF8'),
       convert_to('{"schema_version":1,"result_id":"' || certification_id || ':1"}', 'UTF8')
FROM c
"""

_ACKS = """
INSERT INTO outbox_ack (message_id, acked_at)
SELECT 'A' || lpad(i::text, 9, '0') || ':1', now()
FROM generate_series($1::bigint, $2::bigint) AS i
"""


def _entry(table: str, where: str) -> str:
    """The ledger entry of the rows of ``table`` that ``where`` selects."""
    spec = TABLES[table]
    sent = ", ".join(f"t.{c}" for c in spec.column_names)
    cert = f"t.{spec.certification}" if spec.certification else "NULL::text"
    return f"""
        INSERT INTO ledger_entry (table_name, keys, certification_ids, digests, format)
        SELECT '{table}', array_agg(t.{spec.key}::text), array_agg({cert}),
               array_agg(sha256('\\x{spec.prefix.hex()}'::bytea || record_send(ROW({sent})))),
               {FORMAT}
        FROM {table} t WHERE {where}
    """


_RANGE = (
    "t.{column} BETWEEN 'A' || lpad($1::bigint::text, 9, '0')"
    " AND 'A' || lpad($2::bigint::text, 9, '0')"
)
_SUFFIXED = (
    "t.{column} BETWEEN 'A' || lpad($1::bigint::text, 9, '0') || ':1'"
    " AND 'A' || lpad($2::bigint::text, 9, '0') || ':1'"
)
_BATCH_ENTRIES = [
    _entry("certification", _RANGE.format(column="certification_id")),
    _entry("decision", _RANGE.format(column="certification_id")),
    _entry("result", _SUFFIXED.format(column="result_id")),
    _entry("outbox", _SUFFIXED.format(column="message_id")),
]
_ACK_ENTRY = _entry("outbox_ack", _SUFFIXED.format(column="message_id"))


async def build(dsn: str, total: int, per: int) -> None:
    conn = await db.connect(dsn)
    try:
        await migrate(conn)
        started = time.perf_counter()
        for first in range(0, total, per):
            last = min(total, first + per) - 1
            async with conn.transaction():
                await conn.execute(_BATCH, first, last)
                for entry in _BATCH_ENTRIES:
                    await conn.execute(entry, first, last)
            async with conn.transaction():
                await conn.execute(_ACKS, first, last)
                await conn.execute(_ACK_ENTRY, first, last)
            if first // per % 50 == 0:
                print(f"  {last + 1:,} certifications written", file=sys.stderr)
        await conn.execute("VACUUM ANALYZE")
        links, rows = await conn.fetchrow(
            "SELECT count(*), sum(entries)::bigint FROM ledger_link"
        ) or (
            0,
            0,
        )
        print(
            f"ledger: {total:,} certifications, {rows:,} rows in {links:,} links "
            f"(built in {time.perf_counter() - started:.0f} s)"
        )
    finally:
        await conn.close()


def run_verify(dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")}
    env["CERTRECON_DATABASE_URL"] = dsn
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "certrecon", "audit", "verify", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        print(done.stdout, done.stderr, file=sys.stderr)
        raise SystemExit(f"verify exited {done.returncode}")
    report = json.loads(done.stdout)
    rows = report["entries"]
    print(f"verify: intact={report['intact']}, {rows:,} rows in {report['links']:,} links")
    if not report["intact"]:
        print(json.dumps(report["first_bad"], ensure_ascii=False), file=sys.stderr)
    print(f"verify: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, peak RSS {peak_mb:.0f} MB")


async def main(total: int, per: int) -> None:
    with contextlib.ExitStack() as stack:
        server = os.environ.get("CERTRECON_DATABASE_URL")
        if server is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="verify-bench-")))
            server = stack.enter_context(EmbeddedPostgres(tmp / "pg")).dsn
        name = f"bench_verify_{uuid.uuid4().hex[:8]}"
        admin = await db.connect(server)
        await admin.execute(f'CREATE DATABASE "{name}"')
        head, sep, query = server.partition("?")
        dsn = f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"
        try:
            await build(dsn, total, per)
            await asyncio.to_thread(run_verify, dsn)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--certifications", type=int, default=1_000_000)
    parser.add_argument("--per-transaction", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.certifications, args.per_transaction))
