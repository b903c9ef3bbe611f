from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from certrecon.demo import Summary


@click.command()
@click.option(
    "--people",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Size of the synthetic roster.",
)
def demo(people: int) -> None:
    """Run everything on embedded services with synthetic data and print a summary.

    The data stays in the data directory (./.certrecon, or CERTRECON_DATA_DIR), where the
    other commands find it; the last lines print commands to look at it. Running the demo
    again resets the database an earlier demo left there, and refuses to touch any other.
    """
    from rich.console import Console
    from rich.table import Table

    from certrecon import logs
    from certrecon.cli.output import cell, echo
    from certrecon.demo import MIN_PEOPLE, run_demo
    from certrecon.settings import Settings

    if people < MIN_PEOPLE:
        raise click.BadParameter(f"at least {MIN_PEOPLE}", param_hint="'--people'")

    # The summary is the demo's output; the worker's own log lines would bury it.
    logs.configure(level="WARNING")
    settings = Settings.from_env()
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)
    with console.status("starting PostgreSQL and the broker, pushing certifications ...") as s:

        def notify(text: str) -> None:
            s.console.print(cell(text))

        summary = asyncio.run(run_demo(settings, people=people, notify=notify))

    outcomes = sorted({o for _, o in summary.by_channel_outcome})
    channels = sorted({c for c, _ in summary.by_channel_outcome})
    table = Table(title="Certifications by outcome and channel")
    table.add_column("outcome")
    for channel in channels:
        table.add_column(channel, justify="right")
    table.add_column("total", justify="right", style="bold")
    for outcome in outcomes:
        counts = [summary.by_channel_outcome.get((c, outcome), 0) for c in channels]
        table.add_row(cell(outcome), *map(cell, counts), cell(sum(counts)))
    totals = [sum(summary.by_channel_outcome.get((c, o), 0) for o in outcomes) for c in channels]
    table.add_row(cell("total"), *map(cell, totals), cell(sum(totals)), style="bold")
    console.print(table)

    dues = Table(title="Due dates (5th working day after the certification date, CST)")
    dues.add_column("due date")
    dues.add_column("certifications", justify="right")
    dues.add_column("schedule")
    for due, n, provisional in summary.due_dates:
        dues.add_row(
            cell(due.isoformat()), cell(n), cell("provisional" if provisional else "official")
        )
    console.print(dues)

    columns = ("certification_id", "channel", "id_number", "reason", "due_date")
    reviews = Table(title=f"Review queue: {len(summary.reviews)} awaiting a staff decision")
    for col in columns:
        reviews.add_column(col, no_wrap=True)
    for item in summary.reviews:
        reviews.add_row(*(cell(item[c]) for c in columns))
    console.print(reviews)
    console.print(
        cell(
            f"results published: {summary.results_published}, "
            f"dead letters published: {summary.dead_letters}"
        )
    )
    if summary.cycle is not None and summary.cycle_period is not None:
        from certrecon.cli.cycle_view import cycle_heading, print_summary

        p = summary.cycle_period
        print_summary(summary.cycle, cycle_heading(p.mode, p.year, p.as_of))
    # Plain lines, not rich: they are meant to be copied, so no wrapping and no markup.
    echo(
        f"\nThe demo's database stays in {settings.data_dir.resolve()} (the broker kept its "
        "messages in memory only and has stopped)."
    )
    echo("To look at what it did, type in this folder:")
    for line in follow_up_commands(summary, *_program(), _env_prefix(os.environ)):
        echo(f"  {line}")


def follow_up_commands(
    summary: Summary, setup: list[str], program: str, env_prefix: str
) -> list[str]:
    """The commands that show the demo's data, each exactly as it is to be typed."""
    run = f"{env_prefix}{program}"
    lines = [*setup, f"{run} sla", f"{run} review list"]
    if summary.reviews:
        lines.append(f"{run} review show {shlex.quote(summary.reviews[0]['certification_id'])}")
    if summary.answered is not None:
        certification_id, certified_at = summary.answered
        lines.append(f"{run} review show {shlex.quote(certification_id)}")
        lines.append(f"{run} calendar due {shlex.quote(certified_at)}")
    if summary.cycle is not None:
        lines.append(f"{run} cycle status")
    return lines


def _program() -> tuple[list[str], str]:
    """How the person who started the demo calls certrecon from their shell: the lines to
    type first (activating the virtual environment, when it is not active) and the program.
    """
    here = Path(sys.prefix) / "bin"
    script = here / "certrecon"
    found = shutil.which("certrecon")
    if found is not None and script.exists() and Path(found).resolve() == script.resolve():
        return [], "certrecon"
    activate = here / "activate"
    if sys.prefix != sys.base_prefix and activate.is_file() and script.exists():
        return [f". {shlex.quote(_relative(activate))}"], "certrecon"
    return [], f"{shlex.quote(sys.executable)} -m certrecon"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _env_prefix(environ: Mapping[str, str]) -> str:
    """Settings the follow-up commands need spelled out: the demo's data directory when it
    is not the default, and no external database even when one is configured (the demo
    always runs on the embedded PostgreSQL)."""
    parts: list[str] = []
    if environ.get("CERTRECON_DATABASE_URL"):
        parts += ["env", "-u", "CERTRECON_DATABASE_URL"]
    data_dir = environ.get("CERTRECON_DATA_DIR")
    if data_dir:
        parts.append(f"CERTRECON_DATA_DIR={shlex.quote(data_dir)}")
    return "".join(f"{p} " for p in parts)
