"""``audit verify``: the chain link by link, then every ledger row against its digest.

Links stream in ``seq`` order through :class:`~certrecon.audit.chain.ChainVerifier`, which
keeps only the previous link. Rows are compared by the database, one hash join per table
that returns only rows that differ, so memory stays constant however long the ledger.
Everything is read in one read-only REPEATABLE READ transaction: writers may go on, and
what is verified is one committed state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from certrecon.audit.chain import ChainVerifier, Checkpoint, Link, Problem, first_problem
from certrecon.store import audit as store

Progress = Callable[[str, int, int], None]
"""(stage, done, total)."""

SHOWN_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class VerifyReport:
    links: int
    entries: int
    baseline_entries: int
    head: Link | None
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return first_problem(self.problems)


async def verify(
    conn: asyncpg.Connection,
    *,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    started = time.perf_counter()
    chain = ChainVerifier()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await store.begin_snapshot(conn)
        total_links, _ = await store.count_links(conn)
        remember = checkpoint.seq if checkpoint is not None else None
        async for link in store.links(conn):
            chain.feed(link, remember=remember)
            if progress is not None and (chain.links % 200 == 0 or chain.links == total_links):
                progress("links", chain.links, total_links)
        if checkpoint is not None:
            chain.check_checkpoint(checkpoint)
        problems = list(chain.problems)
        tables = await store.ledger_tables(conn)
        for done, table in enumerate(tables, start=1):
            problems.extend(await store.row_problems(conn, table))
            if progress is not None:
                progress("rows", done, len(tables))
        problems.extend(await store.unsealed_entries(conn))
    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return VerifyReport(
        links=chain.links,
        entries=chain.entries,
        baseline_entries=chain.baseline_entries,
        head=chain.head,
        problems=problems,
        seconds=time.perf_counter() - started,
    )
