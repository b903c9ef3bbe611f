"""``certrecon calendar``: deadlines, year schedules and the operators' calendar overrides."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.cli.inputs import check_year, parse_certified_at, parse_day
from certrecon.cli.output import echo
from certrecon.errors import CalendarError, InputError
from certrecon.settings import Settings
from certrecon.text import MAX_SOURCE_LENGTH, check_free_text

if TYPE_CHECKING:
    from certrecon.calendar import WorkingCalendar

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

__all__ = ["calendar", "parse_certified_at", "parse_day"]


def _source(text: str) -> str:
    return check_free_text("--source", text, max_length=MAX_SOURCE_LENGTH)


def _use_database(flag: bool | None, settings: Settings) -> bool:
    # Without a flag, follow the worker: it applies the database overrides whenever a
    # database is configured. Starting an embedded PostgreSQL needs an explicit --db.
    return settings.database_url is not None if flag is None else flag


def _load(use_db: bool, settings: Settings) -> tuple[WorkingCalendar, str]:
    from certrecon.calendar import default_calendar

    cal = default_calendar()
    if not use_db:
        return cal, f"{cal.package_label} + shipped data"

    async def go() -> WorkingCalendar:
        from certrecon.store.calendar_overrides import load_calendar

        async with database(settings) as conn:
            return await load_calendar(conn)

    return run_async(go), f"{cal.package_label} + shipped data + database overrides"


_DB_OPTION = click.option(
    "--db/--no-db",
    "use_db",
    default=None,
    help="Apply the database overrides (default: when CERTRECON_DATABASE_URL is set).",
)


@click.group("calendar")
def calendar() -> None:
    """Working days of mainland China and certification deadlines."""


@calendar.command()
@click.argument("when")
@click.option(
    "--working-days",
    "-n",
    type=int,
    default=None,
    help="Working days allowed (default: CERTRECON_DEADLINE_WORKING_DAYS, normally 5).",
)
@_DB_OPTION
def due(when: str, working_days: int | None, use_db: bool | None) -> None:
    """Print the due date and deadline of a certification made at WHEN.

    WHEN is an RFC 3339 timestamp with an offset (2023-09-27T10:00:00+08:00) or a plain
    date, taken as the certification date in China Standard Time.
    """
    from certrecon.calendar import YearStatus, compute_deadline

    certified_at = parse_certified_at(when)
    settings = load_settings()
    n = settings.deadline_working_days if working_days is None else working_days
    if not 1 <= n <= 60:
        raise InputError(f"--working-days must be from 1 to 60, not {n}")
    cal, described = _load(_use_database(use_db, settings), settings)
    try:
        result = compute_deadline(certified_at, cal, n)
    except CalendarError as exc:
        raise InputError(str(exc)) from None
    if result.provisional:
        years = range(result.local_date.year, result.due_date.year + 1)
        missing = ", ".join(str(y) for y in years if cal.year_status(y) is YearStatus.PROVISIONAL)
        flag = f"yes: no published schedule for {missing}; recompute once it is published"
    else:
        flag = "no"
    echo(f"certification date  {result.local_date.isoformat()} (China Standard Time)")
    echo(f"due date            {result.due_date.isoformat()} ({n} working days later)")
    echo(
        f"deadline            {result.deadline.isoformat()} "
        f"(24:00 CST on {result.due_date.isoformat()})"
    )
    echo(f"provisional         {flag}")
    echo(f"calendar            {described}")


@calendar.command()
@click.argument("year", type=int)
@_DB_OPTION
def year(year: int, use_db: bool | None) -> None:
    """Print YEAR's holidays, make-up working days and status (official or provisional)."""
    from certrecon.calendar import YearStatus

    check_year(year)
    settings = load_settings()
    cal, described = _load(_use_database(use_db, settings), settings)
    schedule = cal.year_schedule(year)
    echo(f"{year}: {schedule.status} ({schedule.status_source})")
    echo(f"calendar: {described}")
    echo(f"working days: {schedule.working_day_count}")
    echo("holidays (days off other than ordinary weekends):")
    for entry in schedule.holidays:
        weekday = _WEEKDAYS[entry.day.weekday()]
        echo(f"  {entry.day.isoformat()} {weekday}  {entry.name}  [{entry.source}]")
    echo("make-up working days (调休上班):")
    if not schedule.makeup_working_days:
        echo(
            "  none known"
            + (" (not published yet)" if schedule.status is YearStatus.PROVISIONAL else "")
        )
    for entry in schedule.makeup_working_days:
        weekday = _WEEKDAYS[entry.day.weekday()]
        echo(f"  {entry.day.isoformat()} {weekday}  [{entry.source}]")
    if schedule.overrides:
        echo("overrides in force:")
        for override, layer in schedule.overrides:
            kind = "working" if override.working else "day off"
            echo(f"  {override.day.isoformat()}  {kind}  [{layer}: {override.source}]")


@calendar.group()
def override() -> None:
    """Manage the database overrides, which beat the holidays package and the shipped data."""


@override.command("add")
@click.argument("day")
@click.option(
    "--working/--day-off",
    "working",
    default=None,
    help="Whether DAY is a working day or a day off (one is required).",
)
@click.option("--source", required=True, help="The notice number, e.g. 国办发明电〔2023〕7号.")
def override_add(day: str, working: bool | None, source: str) -> None:
    """Store that DAY (YYYY-MM-DD) is a working day or a day off."""
    parsed = parse_day(day)
    if working is None:
        raise InputError("say whether the day is worked: --working or --day-off")
    source = _source(source)
    settings = load_settings()

    async def go() -> tuple[str, bool]:
        from certrecon.calendar import YearStatus
        from certrecon.store import calendar_overrides as repo

        async with database(settings) as conn:
            stored = await repo.add_override(conn, parsed, working, source)
            cal = await repo.load_calendar(conn)
            kind = "working day" if stored.working else "day off"
            return f"{stored.day.isoformat()}: {kind} ({stored.source})", (
                cal.year_status(parsed.year) is YearStatus.PROVISIONAL
            )

    line, provisional = run_async(go)
    echo(f"stored override {line}")
    if provisional:
        echo(
            f"{parsed.year} stays provisional until its schedule is declared published: "
            f"certrecon calendar publish {parsed.year} --source <notice number>"
        )


@override.command("list")
def override_list() -> None:
    """List the database overrides and the years declared published."""
    settings = load_settings()

    async def go() -> list[str]:
        from certrecon.store import calendar_overrides as repo

        async with database(settings) as conn:
            days = await repo.list_overrides(conn)
            years = await repo.list_published_years(conn)
        lines = ["days:"] + [
            f"  {o.day.isoformat()}  {'working' if o.working else 'day off'}  {o.source}  "
            f"(added {o.created_at.isoformat(timespec='seconds')})"
            for o in days
        ]
        if not days:
            lines.append("  none")
        lines.append("published years:")
        lines += [
            f"  {y.year}  {y.source}  (added {y.created_at.isoformat(timespec='seconds')})"
            for y in years
        ]
        if not years:
            lines.append("  none")
        return lines

    for line in run_async(go):
        echo(line)


@override.command("remove")
@click.argument("day")
def override_remove(day: str) -> None:
    """Delete the database override for DAY (YYYY-MM-DD)."""
    parsed = parse_day(day)
    settings = load_settings()

    async def go() -> bool:
        from certrecon.store.calendar_overrides import remove_override

        async with database(settings) as conn:
            return await remove_override(conn, parsed)

    if not run_async(go):
        raise InputError(f"there is no database override for {parsed.isoformat()}")
    echo(f"removed the override for {parsed.isoformat()}")


@calendar.command()
@click.argument("year", type=int)
@click.option("--source", required=True, help="The notice number, e.g. 国办发明电〔2026〕12号.")
def publish(year: int, source: str) -> None:
    """Declare YEAR's official schedule published: its deadlines stop being provisional.

    Add the year's days off and make-up working days as overrides first, unless the
    installed holidays package already has them.
    """
    check_year(year)
    source = _source(source)
    settings = load_settings()

    async def go() -> str:
        from certrecon.store.calendar_overrides import publish_year

        async with database(settings) as conn:
            stored = await publish_year(conn, year, source)
        return f"{stored.year} declared official ({stored.source})"

    echo(run_async(go))


@calendar.command()
@click.argument("year", type=int)
def unpublish(year: int) -> None:
    """Withdraw the database declaration that YEAR's schedule is published."""
    check_year(year)
    settings = load_settings()

    async def go() -> bool:
        from certrecon.store.calendar_overrides import unpublish_year

        async with database(settings) as conn:
            return await unpublish_year(conn, year)

    if not run_async(go):
        raise InputError(f"{year} is not declared published in the database")
    echo(f"withdrew the declaration for {year}")
