"""``certrecon roster``: load the local benefit roster."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.errors import RosterImportError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

SHOWN_PROBLEMS = 50
"""Problems printed for a rejected file; the rest are counted."""


@click.group()
def roster() -> None:
    """Manage the local benefit roster."""


class _Bar:
    """A rich progress bar on a terminal; nothing at all otherwise (logs, pipes, cron)."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def task(self, description: str, total: float | None) -> TaskID | None:
        if self._progress is None:
            return None
        return self._progress.add_task(description, total=total)

    def update(self, task: TaskID | None, completed: float, total: float | None = None) -> None:
        if self._progress is not None and task is not None:
            self._progress.update(task, completed=completed, total=total)


@contextlib.contextmanager
def _progress_bar() -> Iterator[_Bar]:
    if not sys.stderr.isatty():
        yield _Bar(None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        yield _Bar(progress)


def _report_rejection(exc: RosterImportError) -> None:
    click.echo(f"Error: {exc}", err=True)
    for number, problem in exc.problems[:SHOWN_PROBLEMS]:
        click.echo(f"  line {number}: {problem}", err=True)
    hidden = len(exc.problems) - SHOWN_PROBLEMS
    if hidden > 0:
        click.echo(f"  ... and {hidden} more problem(s)", err=True)


@roster.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
def import_file(file: Path) -> None:
    """Load or update the roster from the contract CSV FILE.

    Every row is checked first; one bad row rejects the whole file and nothing changes.
    Otherwise all rows are inserted or updated in one transaction.
    """
    from certrecon.roster_csv import read_roster_file
    from certrecon.store.roster import ImportSummary, import_roster

    settings = load_settings()
    started = time.monotonic()
    with _progress_bar() as bar:
        checking = bar.task(f"checking {file.name}", None)
        try:
            records = read_roster_file(
                file, progress=lambda done, total: bar.update(checking, done, total)
            )
        except RosterImportError as exc:
            _report_rejection(exc)
            sys.exit(2)
        checked = time.monotonic()

        importing = bar.task("importing", len(records))

        async def go() -> ImportSummary:
            async with database(settings) as conn:
                return await import_roster(
                    conn, records, progress=lambda done: bar.update(importing, done)
                )

        try:
            summary = run_async(go)
        except RosterImportError as exc:
            _report_rejection(exc)
            sys.exit(2)
    finished = time.monotonic()
    click.echo(
        f"roster import: {summary.total} rows from {file}: {summary.inserted} inserted, "
        f"{summary.updated} updated, {summary.unchanged} unchanged "
        f"(checked in {checked - started:.1f} s, imported in {finished - checked:.1f} s)"
    )
