"""``certrecon cycle``: who is certified this cycle, how, and who still is not."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.cli.output import echo
from certrecon.cycle.status import Period
from certrecon.domain import CST


@click.group()
def cycle() -> None:
    """The certification cycle (CERTRECON_CYCLE: calendar_year or rolling_12_months)."""


def _period(mode_text: str, year: int | None, as_of_text: str | None) -> Period:
    from certrecon.cli.inputs import check_year, parse_day
    from certrecon.domain import CycleMode

    mode = CycleMode(mode_text)
    as_of = parse_day(as_of_text) if as_of_text else None
    if year is None:
        year = as_of.year if as_of is not None else dt.datetime.now(CST).year
    return Period.of(mode, check_year(year), as_of)


_YEAR = click.option(
    "--year", type=int, default=None, help="The cycle year (default: this year, local time)."
)
_AS_OF = click.option(
    "--as-of",
    "as_of_text",
    default=None,
    help="Status on this date, YYYY-MM-DD (default: 31 December of the year).",
)


@cycle.command("status")
@_YEAR
@_AS_OF
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts instead of tables.")
def status(year: int | None, as_of_text: str | None, as_json: bool) -> None:
    """Counts of the people in scope by status and by district (insured_region)."""
    from certrecon.cli.cycle_view import cycle_heading, print_summary
    from certrecon.cycle.lists import CycleSummary
    from certrecon.store.cycle import cycle_summary

    settings = load_settings()
    period = _period(settings.cycle_mode.value, year, as_of_text)

    async def go() -> CycleSummary:
        async with database(settings) as conn, conn.transaction(readonly=True):
            return await cycle_summary(conn, period)

    summary = run_async(go)
    if as_json:
        click.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        print_summary(summary, cycle_heading(period.mode, period.year, period.as_of))


async def _write_list(period: Period, out: Path, expiring_within: int | None) -> tuple[int, float]:
    from certrecon.cli.cycle_view import write_list

    settings = load_settings()
    started = time.monotonic()
    async with database(settings) as conn, conn.transaction(readonly=True):
        count = await write_list(conn, period, out, expiring_within=expiring_within)
    return count, time.monotonic() - started


_OUT = click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="The CSV file to write (readable by its owner only).",
)


@cycle.command("outreach")
@_YEAR
@_AS_OF
@click.option(
    "--expiring-within",
    type=click.IntRange(0, 3660),
    default=None,
    help="rolling_12_months mode: also list people whose certification expires within "
    "DAYS, for reminders before expiry.",
)
@_OUT
def outreach(
    year: int | None, as_of_text: str | None, expiring_within: int | None, out: Path
) -> None:
    """Write the people in scope still not certified to a CSV file, for offline outreach.

    Columns: id_number,name,insured_region,benefit_type,status,last_certified_on. The file
    holds personal data: it is created readable by its owner only.
    """
    settings = load_settings()
    period = _period(settings.cycle_mode.value, year, as_of_text)
    count, seconds = run_async(lambda: _write_list(period, out, expiring_within))
    echo(f"cycle outreach: {count} people written to {out} (in {seconds:.1f} s)")


@cycle.command("suspend-candidates")
@_YEAR
@click.option("--as-of", "as_of_text", required=True, help="The date to judge on, YYYY-MM-DD.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the list to this CSV file (owner-only); without it, only the count is shown.",
)
def suspend_candidates(year: int | None, as_of_text: str, out: Path | None) -> None:
    """The people in scope still not certified on --as-of: a listing only, nothing is
    suspended."""
    settings = load_settings()
    period = _period(settings.cycle_mode.value, year, as_of_text)
    if out is None:
        from certrecon.store.cycle import cycle_summary

        async def go() -> int:
            async with database(settings) as conn, conn.transaction(readonly=True):
                from certrecon.cycle.status import CycleStatus

                return (await cycle_summary(conn, period)).by_status[CycleStatus.NOT_CERTIFIED]

        echo(f"suspend candidates on {period.as_of.isoformat()}: {run_async(go)} people")
        return
    count, seconds = run_async(lambda: _write_list(period, out, None))
    echo(
        f"suspend candidates on {period.as_of.isoformat()}: {count} people written to {out} "
        f"(in {seconds:.1f} s); nothing was suspended"
    )
