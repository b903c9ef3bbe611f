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
from certrecon.cli.output import echo, error
from certrecon.errors import FileRejectedError, RosterImportError

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
def progress_bar() -> Iterator[_Bar]:
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


def report_rejection(exc: FileRejectedError) -> None:
    error(exc)
    for number, problem in exc.problems[:SHOWN_PROBLEMS]:
        echo(f"  line {number}: {problem}", err=True)
    hidden = exc.total - min(len(exc.problems), SHOWN_PROBLEMS)
    if hidden > 0:
        echo(f"  ... and {hidden} more problem(s)", err=True)


@roster.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
def import_file(file: Path) -> None:
    """Load or update the roster from the contract CSV FILE.

    Every row is checked; one bad row rejects the whole file and nothing changes. Otherwise
    all rows are inserted or updated in one transaction. The file is streamed: its size
    does not matter, but a line longer than 64 KiB stops the import at once.
    """
    from certrecon.roster_csv import RosterFile
    from certrecon.store.roster import ImportSummary, import_roster_file

    settings = load_settings()
    started = time.monotonic()
    try:
        with progress_bar() as bar:
            reading = bar.task(f"importing {file.name}", None)
            # The header is checked on opening: a wrong file is refused before the database.
            with RosterFile(
                file, progress=lambda done, total: bar.update(reading, done, total or None)
            ) as opened:

                async def go() -> ImportSummary:
                    async with database(settings) as conn:
                        return await import_roster_file(conn, opened)

                summary = run_async(go)
    except RosterImportError as exc:
        report_rejection(exc)
        sys.exit(2)
    echo(
        f"roster import: {summary.total} rows from {file}: {summary.inserted} inserted, "
        f"{summary.updated} updated, {summary.unchanged} unchanged "
        f"(in {time.monotonic() - started:.1f} s)"
    )


@roster.command("show")
@click.argument("id_number")
@click.option(
    "--at", "at_text", default=None, help="Show the entry as it was at this RFC 3339 instant."
)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts instead of text.")
def show(id_number: str, at_text: str | None, as_json: bool) -> None:
    """A person's roster entry as it is (or was at --at), with every version recorded.

    Shows the real ID number and name you asked for; do not paste it into tickets.
    """
    import datetime as dt
    import json

    from certrecon.cli.inputs import parse_instant
    from certrecon.cli.output import echo
    from certrecon.cli.review_cmd import cst_text
    from certrecon.ids import normalise_id_number
    from certrecon.store.roster import RosterVersion, roster_history, version_at

    settings = load_settings()
    at = parse_instant(at_text) if at_text else dt.datetime.now(dt.UTC)
    wanted = normalise_id_number(id_number)

    async def go() -> list[RosterVersion]:
        async with database(settings) as conn, conn.transaction(readonly=True):
            return await roster_history(conn, wanted)

    history = run_async(go)
    current = version_at(history, at)

    def as_dict(v: RosterVersion) -> dict[str, object]:
        r = v.record
        return {
            "version": v.version,
            "recorded_at": v.recorded_at.isoformat(),
            "id_number": r.id_number,
            "name": r.name,
            "benefit_type": r.benefit_type,
            "status": r.status.value,
            "first_paid_on": r.first_paid_on.isoformat() if r.first_paid_on else None,
            "deceased_on": r.deceased_on.isoformat() if r.deceased_on else None,
            "imprisoned_from": r.imprisoned_from.isoformat() if r.imprisoned_from else None,
            "imprisoned_until": r.imprisoned_until.isoformat() if r.imprisoned_until else None,
            "insured_region": r.insured_region or None,
            "suspended_on": r.suspended_on.isoformat() if r.suspended_on else None,
        }

    if as_json:
        click.echo(
            json.dumps(
                {
                    "at": at.isoformat(),
                    "entry": as_dict(current) if current else None,
                    "versions": [as_dict(v) for v in history],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        if current is None:
            echo(f"no roster entry for this ID number at {cst_text(at)}")
        else:
            fields = as_dict(current)
            echo(
                f"roster entry at {cst_text(at)} (version {current.version}, "
                f"recorded {cst_text(current.recorded_at)}):"
            )
            for key, value in fields.items():
                if key not in {"version", "recorded_at"}:
                    echo(f"  {key:<16} {'' if value is None else value}")
        if history:
            echo(f"{len(history)} version(s):")
            for v in history:
                echo(f"  version {v.version} recorded {cst_text(v.recorded_at)}")
    if not history:
        sys.exit(2)
