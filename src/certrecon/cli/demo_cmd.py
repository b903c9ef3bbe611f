from __future__ import annotations

import asyncio

import click


@click.command()
@click.option(
    "--people",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Size of the synthetic roster.",
)
def demo(people: int) -> None:
    """Run everything on embedded services with synthetic data and print a summary."""
    from rich.console import Console
    from rich.table import Table

    from certrecon import logs
    from certrecon.cli.output import cell
    from certrecon.demo import run_demo
    from certrecon.settings import Settings

    # The summary is the demo's output; the worker's own log lines would bury it.
    logs.configure(level="WARNING")
    settings = Settings.from_env()
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)
    with console.status("starting PostgreSQL and the broker, pushing certifications ..."):
        summary = asyncio.run(run_demo(settings, people=people))

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
