"""The PostgreSQL work per certification, without any client: a floor for the worker.

    python bench/pg_floor.py [--count 100000]

Generates rows server-side (generate_series) shaped like the worker's, in batches of
2,000 and one transaction per statement and batch, exactly the writes the worker makes
for one qualified certification: certification, decision, result, outbox row (with the
ledger's digests and, at each commit, its chain link), and the relay's acknowledgement rows
and cursor move. Prints microseconds per certification for each statement and the
rate PostgreSQL alone can sustain on one connection.

Uses CERTRECON_DATABASE_URL when set (a scratch database: it writes rows), else an
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

from certrecon.embedded import EmbeddedPostgres
from certrecon.store import db
from certrecon.store.migrations import migrate

BATCH = 2000
RESULT = (
    '{"schema_version":1,"result_id":"C\'||g||\':1","certification_id":"C\'||g||\'",'
    '"channel":"essc","id_number":"11010519491231002X","outcome":"qualified",'
    '"reason":"认证通过","certified_at":"2026-11-27T10:00:00+08:00","due_date":"2026-12-04",'
    '"decided_at":"2026-11-27T10:00:01+08:00","decided_by":"rules"}'
)
STATEMENTS = [
    (
        "certification",
        """INSERT INTO certification SELECT 'C'||g, 'essc', 'topic', g % 6, g,
           '11010519491231002X', true, now(), '2026-11-27T10:00:00+08:00', current_date,
           current_date + 7, now() + interval '7 days', false, decode(md5(g::text), 'hex'),
           convert_to(repeat('x', 330), 'UTF8'), now()
           FROM generate_series($1::int, $2::int) g""",
    ),
    (
        "decision",
        """INSERT INTO decision SELECT 'C'||g, 'qualified', null, '认证通过', 'qualified',
           '2026.1', '{"status":"active","first_paid_on":"2010-01-01","local_date":"2026-11-27",
           "cycle":2026,"region_prefix":"11","face_match":"pass"}'::jsonb, now(), 1
           FROM generate_series($1::int, $2::int) g""",
    ),
    (
        "result",
        """INSERT INTO result SELECT 'C'||g, 1, 'C'||g||':1', 'qualified', '认证通过', now(),
           'rules', null, null FROM generate_series($1::int, $2::int) g""",
    ),
    (
        "outbox",
        f"""INSERT INTO outbox (message_id, kind, topic, key, payload)
            SELECT 'C'||g||':1', 'result', 'results', '11010519491231002X'::bytea,
            convert_to('{RESULT}', 'UTF8') FROM generate_series($1::int, $2::int) g""",
    ),
    (
        "relay: acknowledgements",
        """WITH acked AS (
             INSERT INTO outbox_ack (message_id, acked_at)
             SELECT 'C'||g||':1', now() FROM generate_series($1::int, $2::int) g
             RETURNING message_id)
           UPDATE relay_cursor SET last_xid = pg_current_xact_id(), last_id = (
             SELECT max(o.id) FROM outbox o JOIN acked a USING (message_id))
           WHERE name = 'outbox'""",
    ),
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    count: int = parser.parse_args().count
    with contextlib.ExitStack() as stack:
        dsn = (
            os.environ.get("CERTRECON_DATABASE_URL")
            or stack.enter_context(
                EmbeddedPostgres(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "pg")
            ).dsn
        )
        conn = await db.connect(dsn)
        try:
            await migrate(conn)
            spent = dict.fromkeys((name for name, _ in STATEMENTS), 0.0)
            started = time.perf_counter()
            for first in range(1, count + 1, BATCH):
                last = min(first + BATCH - 1, count)
                for name, sql in STATEMENTS:
                    t = time.perf_counter()
                    async with conn.transaction():
                        await conn.execute(sql, first, last)
                    spent[name] += time.perf_counter() - t
            elapsed = time.perf_counter() - started
        finally:
            await conn.close()
    for name, seconds in spent.items():
        print(f"{name:22s} {seconds / count * 1e6:6.1f} us per certification")
    print(
        f"PostgreSQL alone: {count / elapsed:,.0f} certifications/s "
        f"({elapsed / count * 1e6:.1f} us each)"
    )


if __name__ == "__main__":
    asyncio.run(main())
