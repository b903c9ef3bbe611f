"""``certrecon sla``: the on-call view of open certifications against their deadlines."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.cli.inputs import parse_instant
from certrecon.cli.output import cell, console, json_text
from certrecon.cli.review_cmd import cst_text
from certrecon.domain import CST
from certrecon.errors import CalendarError, InputError
from certrecon.logs import mask_id

__all__ = ["parse_instant", "print_view", "sla", "view_json"]

if TYPE_CHECKING:
    from certrecon.store.sla import LevelCount, MonitorRun, OpenCertification

_LEVEL_STYLE = {"breached": "bold red", "at_risk": "yellow", "on_track": "green"}


@dataclass(frozen=True, slots=True)
class SlaView:
    at: dt.datetime
    counts: list[LevelCount]
    certifications: list[OpenCertification]
    last_run: MonitorRun | None


def _totals(counts: list[LevelCount]) -> dict[str, dict[str, int]]:
    by_channel: dict[str, dict[str, int]] = {}
    for c in counts:
        row = by_channel.setdefault(c.channel, {"breached": 0, "at_risk": 0, "on_track": 0})
        row[c.level.value] += c.count
    for row in by_channel.values():
        row["open"] = row["breached"] + row["at_risk"] + row["on_track"]
    return dict(sorted(by_channel.items()))


def _cert_json(c: OpenCertification) -> dict[str, Any]:
    return {
        "level": c.level.value,
        "certification_id": c.certification_id,
        "channel": c.channel,
        "id_number": mask_id(c.id_number),
        "valid": c.valid,
        "local_date": c.local_date.isoformat(),
        "due_date": c.due_date.isoformat(),
        "deadline": c.deadline.astimezone(CST).isoformat(),
        "provisional": c.provisional,
        "working_days_left": c.working_days_left,
        "state": c.state,
        "review_reason": c.review_reason,
    }


def view_json(view: SlaView) -> dict[str, Any]:
    totals = _totals(view.counts)
    overall = {
        k: sum(row[k] for row in totals.values())
        for k in ("breached", "at_risk", "on_track", "open")
    }
    return {
        "at": view.at.astimezone(CST).isoformat(),
        "last_monitor_run": None
        if view.last_run is None
        else view.last_run.last_run_at.astimezone(CST).isoformat(),
        "counts": [{"channel": ch, **row} for ch, row in totals.items()],
        "total": overall,
        "certifications": [_cert_json(c) for c in view.certifications],
    }


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "after this instant"
    if seconds < 120:
        return f"{seconds:.0f} s before"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min before"
    return f"{seconds / 3600:.1f} h before"


def print_view(view: SlaView) -> None:
    from rich.table import Table

    out = console()
    totals = _totals(view.counts)
    since = ""
    if view.last_run is not None:
        age = (view.at - view.last_run.last_run_at).total_seconds()
        since = f"; last monitor run {cst_text(view.last_run.last_run_at)} ({_ago(age)})"
    else:
        since = "; the monitor has not run yet"
    out.print(cell(f"SLA at {cst_text(view.at)}{since}"))
    counts = Table(title="Open certifications by channel and level")
    counts.add_column("channel")
    for name in ("breached", "at_risk", "on_track", "open"):
        counts.add_column(name.replace("_", " "), justify="right")
    grand = {"breached": 0, "at_risk": 0, "on_track": 0, "open": 0}
    for channel, row in totals.items():
        counts.add_row(
            cell(channel),
            cell(row["breached"], style="bold red" if row["breached"] else ""),
            cell(row["at_risk"], style="yellow" if row["at_risk"] else ""),
            cell(row["on_track"]),
            cell(row["open"]),
        )
        for k in grand:
            grand[k] += row[k]
    counts.add_row(cell("total"), *(cell(grand[k]) for k in grand), style="bold")
    out.print(counts)
    if not view.certifications:
        out.print(cell("No open certification."))
        return
    shown = len(view.certifications)
    table = Table(
        title=f"Most urgent open certifications ({shown} of {grand['open']})",
        caption="deadline = 24:00 CST of the due date; * = provisional (holiday schedule "
        "not published yet, recomputed when it is)",
    )
    for name in ("level", "certification", "channel", "ID number", "certified", "due date"):
        table.add_column(name)
    table.add_column("days left", justify="right")
    table.add_column("state")
    for c in view.certifications:
        state = c.state if c.review_reason is None else f"{c.state} ({c.review_reason})"
        table.add_row(
            cell(c.level.value, style=_LEVEL_STYLE[c.level.value]),
            cell(c.certification_id),
            cell(c.channel),
            cell(mask_id(c.id_number)),
            cell(c.local_date.isoformat()),
            cell(c.due_date.isoformat() + ("*" if c.provisional else "")),
            cell(c.working_days_left),
            cell(state),
        )
    out.print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts instead of tables.")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="How many of the most urgent open certifications to list (counts cover all).",
)
@click.option(
    "--at", "at_text", default=None, help="Evaluate at this RFC 3339 instant (default: now)."
)
def sla(as_json: bool, limit: int, at_text: str | None) -> None:
    """Open certifications by urgency: breached first, then at risk, then by deadline.

    Counts by channel and level cover every open certification; provisional deadlines are
    marked. Times are China Standard Time; ID numbers are masked.
    """
    settings = load_settings()
    at = parse_instant(at_text) if at_text else dt.datetime.now(dt.UTC)

    async def go() -> SlaView:
        from certrecon.sla import Window
        from certrecon.store.calendar_overrides import load_calendar
        from certrecon.store.sla import count_open, last_run, list_open
        from certrecon.worker.monitor import MONITOR_NAME

        async with database(settings) as conn:
            calendar = await load_calendar(conn)
            window = Window.at(at, calendar)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                counts = await count_open(conn, window)
                found = await list_open(conn, window, calendar, limit=limit)
                run = await last_run(conn, MONITOR_NAME)
        return SlaView(at, counts, found, run)

    try:
        view = run_async(go)
    except CalendarError as exc:
        if at_text is None:
            raise
        # The instant is in the calendar's range, but its window (the next working day)
        # reaches past it.
        raise InputError(f"--at {exc}") from None
    if as_json:
        click.echo(json_text(view_json(view)))
    else:
        print_view(view)
