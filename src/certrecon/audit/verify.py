"""``audit verify``: the chain link by link, then every ledger row against its digest.

Links stream in ``seq`` order through :class:`~certrecon.audit.chain.ChainVerifier`, which
keeps only the previous link. Each ledger table streams from the database beside the
digests recorded for its rows (one full join by key, through a server-side cursor), and
:class:`RowChecker` hashes every row as stored with the one definition of the row digest
(:mod:`certrecon.audit.digest`) and compares: memory stays constant however long the
ledger. Everything is read in one read-only REPEATABLE READ snapshot, shared by every
connection verification uses, so writers may go on and what is verified is one committed
state. With more than one connection, tables are read in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from certrecon.audit.chain import ChainVerifier, Checkpoint, Link, Problem, first_problem
from certrecon.audit.digest import FORMAT, TABLES, TableDigest, digest_encoded
from certrecon.store import audit as store

Progress = Callable[[str, int, int], None]
"""(stage, done, total)."""

Connect = Callable[[], Awaitable[asyncpg.Connection]]
"""Opens one more connection to the same database (for reading tables in parallel)."""

KEPT_PROBLEMS = 100
"""Problems kept per table (the lowest links first); the count covers them all."""


class RowChecker:
    """Rows of one table beside their recorded digests (see
    :func:`certrecon.store.audit.rows_query`), checked one by one; keeps the problems of the
    lowest links only, so memory stays bounded however much is wrong."""

    def __init__(self, table: TableDigest) -> None:
        self.table = table
        self.rows = 0
        self.problem_count = 0
        self.problems: list[Problem] = []

    def feed(self, rows: Iterable[Sequence[Any] | asyncpg.Record]) -> None:
        table, name, prefix = self.table, self.table.name, self.table.prefix
        sha256 = hashlib.sha256
        found: list[Problem] = []
        n = 0
        for seq, key, cert, digest, fmt, old_digest, sent, row_key, row_cert in rows:
            n += 1
            if sent is not None and fmt == FORMAT and sha256(prefix + sent).digest() == digest:
                continue
            if key is None:
                found.append(Problem(None, name, row_cert, row_key, "not in any link"))
            elif sent is None and old_digest is None:
                found.append(Problem(seq, name, cert, key, "recorded but missing"))
            elif (old_digest if fmt == 1 else digest_encoded(table, sent)) != digest:
                found.append(
                    Problem(seq, name, cert, key, "content differs from its recorded digest")
                )
        self.rows += n
        if found:
            self.problem_count += len(found)
            self.problems = _lowest([*self.problems, *found])


def _order(p: Problem) -> tuple[bool, int, str]:
    return (p.seq is None, p.seq or 0, p.key or "")


def _lowest(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=_order)[:KEPT_PROBLEMS]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    links: int
    entries: int
    baseline_entries: int
    head: Link | None
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    rows: int = 0
    """Ledger rows read and hashed."""

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return first_problem(self.problems)


class _Rows:
    """Progress over every table's rows."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress("rows", min(self.done, self.total), self.total)


_Job = tuple[str, int, int]
"""(table, part, parts)."""

SPLIT_ROWS = 2_000_000
"""A table with more rows than this is read in parts, one per connection. Each part still
reads the whole table and all its recorded digests (it keeps the keys whose hash falls in
it), so parts repeat work: they pay only when the recorded digests (about 110 bytes each)
would not fit the join's memory in one piece. Smaller tables are read whole, several at
once on the connections."""


async def _check_table(conn: asyncpg.Connection, job: _Job, rows: _Rows) -> list[Problem]:
    name, part, parts = job
    table = TABLES.get(name)
    if table is None:
        return [Problem(None, name, None, None, "no digest definition for this ledger table")]
    checker = RowChecker(table)
    async for chunk in store.table_rows(conn, table, part, parts):
        checker.feed(chunk)
        rows.add(len(chunk))
    return checker.problems


async def _check_links(
    conn: asyncpg.Connection, checkpoint: Checkpoint | None, progress: Progress | None
) -> ChainVerifier:
    chain = ChainVerifier()
    total_links, _ = await store.count_links(conn)
    remember = checkpoint.seq if checkpoint is not None else None
    async for link in store.links(conn):
        chain.feed(link, remember=remember)
        if progress is not None and (chain.links % 200 == 0 or chain.links == total_links):
            progress("links", chain.links, total_links)
    if checkpoint is not None:
        chain.check_checkpoint(checkpoint)
    return chain


@contextlib.asynccontextmanager
async def _helpers(
    conn: asyncpg.Connection, connect: Connect | None, count: int
) -> AsyncIterator[list[asyncpg.Connection]]:
    """``count`` more connections in the snapshot of ``conn``'s transaction."""
    if connect is None or count < 1:
        yield []
        return
    snapshot = await store.export_snapshot(conn)
    async with contextlib.AsyncExitStack() as stack:
        helpers: list[asyncpg.Connection] = []
        for _ in range(count):
            helper = await connect()
            stack.push_async_callback(helper.close)
            tx = helper.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            stack.push_async_callback(tx.rollback)
            await store.join_snapshot(helper, snapshot)
            await store.prepare_reading(helper)
            helpers.append(helper)
        yield helpers


async def verify(
    conn: asyncpg.Connection,
    *,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    connect: Connect | None = None,
    parallel: int = 3,
) -> VerifyReport:
    """Verify the whole ledger. ``connect`` opens further connections, so that up to
    ``parallel`` tables (and the links) are read at once."""
    started = time.perf_counter()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await store.prepare_reading(conn)
        tables = await store.ledger_tables(conn)
        counts = await store.table_entry_counts(conn)
        async with _helpers(conn, connect, parallel - 1) as helpers:
            rows = _Rows(sum(counts.values()), progress)
            width = 1 + len(helpers)
            jobs: list[_Job] = []
            for t in tables:
                parts = width if counts.get(t, 0) > SPLIT_ROWS else 1
                jobs.extend((t, part, parts) for part in range(parts))
            # The biggest parts first, so that the connections finish together.
            queue = sorted(jobs, key=lambda j: -counts.get(j[0], 0) / j[2])
            problems: list[Problem] = []

            async def work(c: asyncpg.Connection) -> None:
                while queue:
                    problems.extend(await _check_table(c, queue.pop(0), rows))

            async def links_then_tables() -> ChainVerifier:
                chain = await _check_links(conn, checkpoint, progress)
                await work(conn)
                return chain

            # A failure on one connection cancels the others before the snapshot closes.
            async with asyncio.TaskGroup() as group:
                links_task = group.create_task(links_then_tables(), name="verify-links")
                for i, helper in enumerate(helpers, start=1):
                    group.create_task(work(helper), name=f"verify-rows-{i}")
            chain = links_task.result()
            problems.extend(chain.problems)
            problems.extend(await store.unsealed_entries(conn))
    problems.sort(key=_order)
    return VerifyReport(
        links=chain.links,
        entries=chain.entries,
        baseline_entries=chain.baseline_entries,
        head=chain.head,
        problems=problems,
        seconds=time.perf_counter() - started,
        rows=rows.done,
    )
