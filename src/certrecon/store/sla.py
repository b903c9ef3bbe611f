"""Open certifications against their deadlines: alerts, counts, the on-call list, recomputes.

Every query here is set-based and index-backed, so a monitor run costs the same with a
thousand or a million open certifications. Open certifications (no result acknowledged) are
the view ``open_certification`` (``sql/0004_ledger.sql``): those waiting for a result
(``pending_certification``, a projection the database keeps, indexed like the open set was)
and those whose first result waits in the relay's backlog (read past the relay cursor, so
bounded by the backlog, not by history). An alert already raised is skipped by the primary
key of ``sla_alert``. A recomputed deadline is a new ``deadline_revision`` row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from certrecon.audit.digest import TABLES, column_digests
from certrecon.calendar import WorkingCalendar
from certrecon.sla import Alert, SlaLevel, Window
from certrecon.store import ledger
from certrecon.store.results import OutboxMessage, enqueue_columns, outbox_digests


def in_level(
    level: SlaLevel, *, now: str = "$1", earliest: str = "$2", next_day: str = "$3"
) -> str:
    """:meth:`Window.level` as a predicate on ``deadline`` and ``due_date``: the one SQL
    spelling of the rule, as index ranges rather than a function per row.

    The placeholders stand for :attr:`Window.now`, :attr:`Window.earliest_open_due` and
    :attr:`Window.next_working_day`. The earliest open due date adds nothing to the rule
    (a certification due before it is breached), but bounds the at-risk band from below
    so the due-date index serves it.
    """
    if level is SlaLevel.BREACHED:
        return f"deadline < {now}"
    if level is SlaLevel.AT_RISK:
        return f"deadline >= {now} AND due_date BETWEEN {earliest} AND {next_day}"
    return f"deadline >= {now} AND due_date > {next_day}"


def _candidates(level: SlaLevel) -> str:
    # Candidates carry what the alert needs; NOT EXISTS skips those already alerted through
    # the sla_alert primary key, so a steady-state run reads only those entering a level.
    return f"""
SELECT c.certification_id, c.channel, c.due_date, c.deadline, c.provisional
FROM open_certification c
WHERE {in_level(level)}
  AND NOT EXISTS (
    SELECT 1 FROM sla_alert a WHERE a.alert_id = c.certification_id || ':{level.value}')
"""  # noqa: S608 - built at import from this module's constants; values are parameters


BREACHED_CANDIDATES = _candidates(SlaLevel.BREACHED)
AT_RISK_CANDIDATES = _candidates(SlaLevel.AT_RISK)

# ON CONFLICT DO NOTHING + RETURNING: a concurrent run that inserted the same alert first
# wins, and only the alerts this statement inserted go to the outbox. The alert id names the
# certification and the level (a CHECK), so its key is the one arbiter needed.
_INSERT_ALERTS = """
INSERT INTO sla_alert (
    alert_id, certification_id, level, due_date, deadline, working_days_left, provisional,
    raised_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[],
                     $6::int[], $7::bool[], $8::timestamptz[])
ON CONFLICT (alert_id) DO NOTHING
RETURNING alert_id
"""


def alert_message(alert: Alert, topic: str) -> OutboxMessage:
    """The alert's outbox row: its id is the message id, so it is published once."""
    return OutboxMessage(alert.alert_id, "sla_alert", topic, alert.key, alert.payload())


async def find_new_alerts(
    conn: asyncpg.Connection, window: Window, calendar: WorkingCalendar
) -> list[Alert]:
    """Open certifications that reached a level whose alert was not raised yet."""
    breached = await conn.fetch(BREACHED_CANDIDATES, window.now)
    at_risk = await conn.fetch(
        AT_RISK_CANDIDATES, window.now, window.earliest_open_due, window.next_working_day
    )
    # Few distinct due dates per run, so each working-day count is computed once.
    left: dict[dt.date, int] = {}
    alerts: list[Alert] = []
    for level, rows in ((SlaLevel.BREACHED, breached), (SlaLevel.AT_RISK, at_risk)):
        for r in rows:
            due: dt.date = r["due_date"]
            if due not in left:
                left[due] = calendar.working_days_left(window.now, due)
            alerts.append(
                Alert(
                    certification_id=r["certification_id"],
                    level=level,
                    channel=r["channel"],
                    due_date=due,
                    deadline=r["deadline"],
                    working_days_left=left[due],
                    provisional=r["provisional"],
                    raised_at=window.now,
                    key=r["certification_id"].encode("utf-8"),
                )
            )
    return alerts


async def raise_alerts(
    conn: asyncpg.Connection, alerts: Sequence[Alert], *, topic: str
) -> list[Alert]:
    """Store the alerts not stored yet and enqueue their messages; return those stored now.

    Call inside a transaction, so an alert, its outbox row and their ledger digests commit
    together. The rows go column by column, as the worker writes its batches: one statement
    per table, whatever the number of alerts.
    """
    # One alert per id (the open set could name a certification twice in a race).
    unique = list({a.alert_id: a for a in alerts}.values())
    if not unique:
        return []
    ids = [a.alert_id for a in unique]
    columns: list[list[Any]] = [
        ids,
        [a.certification_id for a in unique],
        [a.level.value for a in unique],
        [a.due_date for a in unique],
        [a.deadline for a in unique],
        [a.working_days_left for a in unique],
        [a.provisional for a in unique],
        [a.raised_at for a in unique],
    ]
    # While the server inserts the alerts, this process encodes their messages and takes
    # the digests of both tables' rows: ten thousand alerts cost about as much of each.
    n = len(unique)
    statement = await conn.prepare(_INSERT_ALERTS)
    insert = asyncio.ensure_future(statement.fetch(*columns))
    try:
        await asyncio.sleep(0)  # the statement is sent
        keys = [a.key for a in unique]
        payloads = [a.payload() for a in unique]
        alert_digests = column_digests(TABLES["sla_alert"], columns)
        message_digests = outbox_digests([ids, ["sla_alert"] * n, [topic] * n, keys, payloads])
    finally:
        inserted = {r[0] for r in await insert}
    kept = range(n) if len(inserted) == n else [i for i in range(n) if ids[i] in inserted]
    await ledger.record_digests(
        conn,
        "sla_alert",
        [ids[i] for i in kept],
        [columns[1][i] for i in kept],
        [alert_digests[i] for i in kept],
    )
    await enqueue_columns(
        conn,
        message_ids=[ids[i] for i in kept],
        kinds=["sla_alert"] * len(kept),
        topics=[topic] * len(kept),
        keys=[keys[i] for i in kept],
        payloads=[payloads[i] for i in kept],
        digests=[message_digests[i] for i in kept],
    )
    return [unique[i] for i in kept]


@dataclass(frozen=True, slots=True)
class LevelCount:
    channel: str
    level: SlaLevel
    count: int


def _count_levels(source: str) -> str:
    return f"""
    SELECT channel,
           count(*) FILTER (WHERE {in_level(SlaLevel.BREACHED)}) AS breached,
           count(*) FILTER (WHERE {in_level(SlaLevel.AT_RISK)}) AS at_risk,
           count(*) AS open
    FROM {source} GROUP BY channel
    """  # noqa: S608 - built at import from this module's constants; values are parameters


# The two parts of open_certification counted apart, in one statement (one snapshot): the
# pending projection, a million rows, in a parallel scan, and the few certifications whose
# result is not acknowledged yet (which would otherwise keep the whole query serial).
COUNTS = f"""
SELECT channel, sum(breached)::bigint AS breached, sum(at_risk)::bigint AS at_risk,
       sum(open)::bigint AS open
FROM ({_count_levels("pending_certification")}
      UNION ALL
      {_count_levels("open_certification_with_result")}) part
GROUP BY channel
"""  # noqa: S608 - built at import from this module's constants; values are parameters


async def count_open(conn: asyncpg.Connection, window: Window) -> list[LevelCount]:
    """Open certifications by channel and level (levels with no certification included)."""
    counts: list[LevelCount] = []
    for r in await conn.fetch(
        COUNTS, window.now, window.earliest_open_due, window.next_working_day
    ):
        breached, at_risk, total = int(r["breached"]), int(r["at_risk"]), int(r["open"])
        counts.append(LevelCount(r["channel"], SlaLevel.BREACHED, breached))
        counts.append(LevelCount(r["channel"], SlaLevel.AT_RISK, at_risk))
        counts.append(LevelCount(r["channel"], SlaLevel.ON_TRACK, total - breached - at_risk))
    return counts


@dataclass(frozen=True, slots=True)
class Oldest:
    """The open certification with the earliest due date."""

    certification_id: str
    local_date: dt.date
    due_date: dt.date


OLDEST = """
SELECT certification_id, local_date, due_date FROM open_certification
ORDER BY due_date, deadline LIMIT 1
"""


async def oldest_open(conn: asyncpg.Connection) -> Oldest | None:
    row = await conn.fetchrow(OLDEST)
    if row is None:
        return None
    return Oldest(row["certification_id"], row["local_date"], row["due_date"])


@dataclass(frozen=True, slots=True)
class Backlog:
    """Outbox rows the broker has not acknowledged yet, by kind."""

    kind: str
    count: int
    oldest_age_seconds: float
    """By the database's clock, which stamped ``created_at``."""


BACKLOG = """
SELECT kind, messages AS n, extract(epoch FROM clock_timestamp() - oldest)::float8 AS age
FROM outbox_backlog_by_kind() ORDER BY kind
"""


async def outbox_backlog(conn: asyncpg.Connection) -> list[Backlog]:
    rows = await conn.fetch(BACKLOG)
    return [Backlog(r["kind"], int(r["n"]), max(0.0, float(r["age"]))) for r in rows]


async def try_monitor_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Take the session-level advisory lock whose holder is the active monitor, if free.

    Held until released or the connection closes (also when its process dies)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


@dataclass(frozen=True, slots=True)
class MonitorRun:
    """The last completed run of a monitor, whichever process ran it."""

    last_run_at: dt.datetime
    duration_ms: float
    alerts: int
    ran_by: str


async def record_run(conn: asyncpg.Connection, name: str, run: MonitorRun) -> None:
    await conn.execute(
        """
        INSERT INTO monitor_run (name, last_run_at, duration_ms, alerts, ran_by)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (name) DO UPDATE SET
            last_run_at = EXCLUDED.last_run_at, duration_ms = EXCLUDED.duration_ms,
            alerts = EXCLUDED.alerts, ran_by = EXCLUDED.ran_by
        """,
        name,
        run.last_run_at,
        run.duration_ms,
        run.alerts,
        run.ran_by,
    )


async def last_run(conn: asyncpg.Connection, name: str) -> MonitorRun | None:
    row = await conn.fetchrow(
        "SELECT last_run_at, duration_ms, alerts, ran_by FROM monitor_run WHERE name = $1", name
    )
    if row is None:
        return None
    return MonitorRun(row["last_run_at"], row["duration_ms"], row["alerts"], row["ran_by"])


@dataclass(frozen=True, slots=True)
class OpenCertification:
    """One line of the on-call view."""

    certification_id: str
    channel: str
    id_number: str | None
    valid: bool
    local_date: dt.date
    due_date: dt.date
    deadline: dt.datetime
    provisional: bool
    level: SlaLevel
    working_days_left: int
    state: str
    """``awaiting_review``, ``result_unsent`` (decided, not acknowledged yet) or ``undecided``."""
    review_reason: str | None


# Ordering by deadline alone puts breached first, then at risk, then the rest: the levels
# are bands of the deadline. The index on (deadline) of open certifications serves it.
_OPEN = """
SELECT o.certification_id, o.channel, c.id_number, c.valid, o.local_date, o.due_date,
       o.deadline, o.provisional, q.reason AS review_reason,
       EXISTS (SELECT 1 FROM result r WHERE r.certification_id = o.certification_id) AS decided
FROM open_certification o
JOIN certification c ON c.certification_id = o.certification_id
LEFT JOIN review_item q ON q.certification_id = o.certification_id
    AND NOT EXISTS (SELECT 1 FROM staff_decision s WHERE s.certification_id = o.certification_id)
ORDER BY o.deadline, o.certification_id
LIMIT $1
"""


async def list_open(
    conn: asyncpg.Connection, window: Window, calendar: WorkingCalendar, *, limit: int
) -> list[OpenCertification]:
    """The ``limit`` most urgent open certifications: breached, at risk, then by deadline."""
    rows = await conn.fetch(_OPEN, limit)
    left: dict[dt.date, int] = {}
    found: list[OpenCertification] = []
    for r in rows:
        due: dt.date = r["due_date"]
        if due not in left:
            left[due] = calendar.working_days_left(window.now, due)
        if r["review_reason"] is not None:
            state = "awaiting_review"
        elif r["decided"]:
            state = "result_unsent"
        else:
            state = "undecided"
        found.append(
            OpenCertification(
                certification_id=r["certification_id"],
                channel=r["channel"],
                id_number=r["id_number"],
                valid=r["valid"],
                local_date=r["local_date"],
                due_date=due,
                deadline=r["deadline"],
                provisional=r["provisional"],
                level=window.level(due, r["deadline"]),
                working_days_left=left[due],
                state=state,
                review_reason=r["review_reason"],
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class StoredDeadline:
    """An open certification's deadline as stored, with the instant it is computed from."""

    certification_id: str
    basis: dt.datetime
    """``certified_at``, or for an invalid record without one, when the broker received it."""
    local_date: dt.date
    due_date: dt.date
    deadline: dt.datetime
    provisional: bool


_RECOMPUTE_CANDIDATES = """
SELECT o.certification_id, COALESCE(c.certified_at, c.received_at) AS basis, o.local_date,
       o.due_date, o.deadline, o.provisional
FROM open_certification o
JOIN certification c ON c.certification_id = o.certification_id
WHERE o.provisional
   OR (cardinality($1::date[]) > 0
       AND o.due_date >= $2
       AND EXISTS (SELECT 1 FROM unnest($1::date[]) AS d(day)
                   WHERE d.day > o.local_date AND d.day <= o.due_date))
"""


async def recompute_candidates(
    conn: asyncpg.Connection, changed_days: Sequence[dt.date]
) -> list[StoredDeadline]:
    """Open certifications whose deadline may move: every provisional one, and those whose
    counting window (after the certification date, through the due date) holds a changed day.
    """
    days = sorted(set(changed_days))
    rows = await conn.fetch(_RECOMPUTE_CANDIDATES, days, days[0] if days else dt.date.min)
    return [
        StoredDeadline(
            r["certification_id"],
            r["basis"],
            r["local_date"],
            r["due_date"],
            r["deadline"],
            r["provisional"],
        )
        for r in rows
    ]


async def store_deadlines(conn: asyncpg.Connection, changed: Sequence[StoredDeadline]) -> int:
    """Record recomputed deadlines of certifications still open (each a new
    ``deadline_revision``; the latest wins); return how many were recorded."""
    if not changed:
        return 0
    status = await conn.execute(
        """
        INSERT INTO deadline_revision (certification_id, due_date, deadline, provisional)
        SELECT u.certification_id, u.due_date, u.deadline, u.provisional
        FROM unnest($1::text[], $2::date[], $3::timestamptz[], $4::bool[])
            AS u(certification_id, due_date, deadline, provisional)
        WHERE EXISTS (SELECT 1 FROM open_certification o
                      WHERE o.certification_id = u.certification_id)
        """,
        [d.certification_id for d in changed],
        [d.due_date for d in changed],
        [d.deadline for d in changed],
        [d.provisional for d in changed],
    )
    return int(status.split()[-1])
