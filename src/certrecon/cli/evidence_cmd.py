"""``certrecon evidence``: load big-data comparison evidence from departmental files."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.cli.output import echo
from certrecon.cli.roster_cmd import progress_bar, report_rejection
from certrecon.domain import CST
from certrecon.errors import EvidenceImportError

if TYPE_CHECKING:
    from certrecon.store.evidence_review import EvidenceItem


@click.group()
def evidence() -> None:
    """Big-data comparison evidence (death, imprisonment, release, proof of life)."""


@evidence.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
def import_file(file: Path) -> None:
    """Record the comparison evidence in the CSV FILE (header
    evidence_id,kind,id_number,name,event_date,source).

    Every row is checked; one bad row rejects the whole file and nothing changes. Rows
    repeating recorded evidence identically are skipped, so importing a file again changes
    nothing. Death and imprisonment rows open a person-level review item (逐人核实).
    """
    from certrecon.store.evidence import (
        EvidenceImportSummary,
        ResumeTarget,
        import_evidence_file,
    )

    settings = load_settings()
    started = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    today = now.astimezone(CST).date()
    resumes = ResumeTarget(settings.benefit_action_topic, settings.cycle_mode, now)
    try:
        with progress_bar() as bar:
            reading = bar.task(f"importing {file.name}", None)

            async def go() -> EvidenceImportSummary:
                async with database(settings) as conn:
                    return await import_evidence_file(
                        conn,
                        file,
                        today=today,
                        progress=lambda done, total: bar.update(reading, done, total or None),
                        resumes=resumes,
                    )

            summary = run_async(go)
    except EvidenceImportError as exc:
        report_rejection(exc)
        sys.exit(2)
    echo(
        f"evidence import: {summary.rows} rows from {file}: {summary.inserted} recorded, "
        f"{summary.unchanged} already recorded, {summary.review_items} review item(s) opened "
        f"(in {time.monotonic() - started:.1f} s)"
    )
    if summary.actions:
        echo(
            f"  payments resume for {summary.actions} suspended person(s): benefit actions "
            f"queued for {settings.benefit_action_topic}"
        )


# ---------------------------------------------------------------------------------------
# Person-level review items, shown and decided through ``certrecon review``
# ---------------------------------------------------------------------------------------

EVIDENCE_OUTCOMES = ("eligibility_lost", "evidence_rejected")


def item_json(item: EvidenceItem, *, masked: bool) -> dict[str, object]:
    from certrecon.logs import mask_id, mask_name

    return {
        "item": item.name,
        "kind": item.kind,
        "id_number": mask_id(item.id_number) if masked else item.id_number,
        "name": mask_name(item.person_name) if masked else item.person_name,
        "source": item.source,
        "evidence_id": item.evidence_id,
        "event_date": item.event_date.isoformat(),
        "queued_at": item.queued_at.astimezone(CST).isoformat(),
        "released_on": None if item.released_on is None else item.released_on.isoformat(),
        "verdict": item.verdict,
        "effective_date": None if item.effective_date is None else item.effective_date.isoformat(),
        "decided_by": item.decided_by,
        "login": item.login,
        "decided_at": None
        if item.decided_at is None
        else item.decided_at.astimezone(CST).isoformat(),
        "note": item.note,
    }


def _state(item: EvidenceItem) -> str:
    if item.verdict is not None:
        return f"{item.verdict} by {item.decided_by}"
    if item.released_on is not None:
        return f"ended by a release on {item.released_on.isoformat()}"
    return "open"


def print_items(items: list[EvidenceItem], *, include_closed: bool) -> None:
    """The person-level items as a table (ID numbers masked)."""
    from rich.table import Table

    from certrecon.cli.output import cell, console
    from certrecon.cli.review_cmd import cst_text
    from certrecon.logs import mask_id

    table = Table(title="Person-level evidence items (逐人核实; decide with: review decide E<n>)")
    for name in ("item", "ID number", "evidence", "source", "event date", "queued"):
        table.add_column(name)
    if include_closed:
        table.add_column("state")
    for i in items:
        row = [
            i.name,
            mask_id(i.id_number),
            i.kind,
            i.source,
            i.event_date.isoformat(),
            cst_text(i.queued_at),
        ]
        if include_closed:
            row.append(_state(i))
        table.add_row(*map(cell, row))
    console().print(table)


def show_item(name: str, as_json: bool) -> None:
    """``review show E<n>``: the evidence, the person's roster entry and their other items."""
    from certrecon.store.evidence_review import evidence_item, person_items
    from certrecon.store.roster import RosterVersion, fetch_roster_versions

    settings = load_settings()

    async def go() -> tuple[EvidenceItem, list[EvidenceItem], RosterVersion | None]:
        async with database(settings) as conn, conn.transaction(readonly=True):
            item = await evidence_item(conn, name)
            others = await person_items(conn, item.id_number)
            roster = (await fetch_roster_versions(conn, [item.id_number])).get(item.id_number)
            return item, others, roster

    item, others, roster = run_async(go)
    if as_json:
        from certrecon.cli.output import json_text

        document = item_json(item, masked=False) | {
            "roster_version": None if roster is None else roster.version,
            "person_items": [item_json(o, masked=False) for o in others],
        }
        click.echo(json_text(document))
        return
    echo(f"evidence review item {item.name} ({_state(item)})")
    for key, value in item_json(item, masked=False).items():
        if key != "item" and value is not None:
            echo(f"  {key:<15} {value}")
    if roster is None:
        echo("  not on the roster")
    else:
        r = roster.record
        echo(
            f"  roster         version {roster.version}: {r.status.value}, first paid "
            f"{r.first_paid_on}, region {r.insured_region or 'unknown'}"
        )
    for o in others:
        if o.name != item.name:
            echo(f"  also: {o.name} {o.kind} {o.event_date} ({o.source}): {_state(o)}")


def decide_item(
    name: str, outcome: str, staff_id: str, note: str | None, effective_text: str | None
) -> None:
    """``review decide E<n>``: confirm (``eligibility_lost``) or reject the evidence."""
    from certrecon.cli.inputs import parse_day
    from certrecon.errors import ReviewError
    from certrecon.reconcile.evidence import Verdict
    from certrecon.store.calendar_overrides import load_calendar
    from certrecon.store.evidence_review import EvidenceDecision, decide_evidence, evidence_item
    from certrecon.worker.pipeline import PipelineConfig

    if outcome not in EVIDENCE_OUTCOMES:
        raise ReviewError(
            f"an evidence item is decided with --outcome {' or '.join(EVIDENCE_OUTCOMES)}"
        )
    verdict = Verdict.CONFIRMED if outcome == "eligibility_lost" else Verdict.REJECTED
    if verdict is Verdict.REJECTED and effective_text is not None:
        raise ReviewError("--effective-date goes with --outcome eligibility_lost only")
    settings = load_settings()

    async def go() -> EvidenceDecision:
        async with database(settings) as conn:
            effective = None
            if verdict is Verdict.CONFIRMED:
                effective = (
                    parse_day(effective_text)
                    if effective_text is not None
                    else (await evidence_item(conn, name)).event_date
                )
            return await decide_evidence(
                conn,
                name,
                verdict=verdict,
                effective_date=effective,
                staff_id=staff_id,
                note=note,
                now=dt.datetime.now(dt.UTC),
                calendar=await load_calendar(conn),
                config=PipelineConfig.from_settings(settings),
                benefit_action_topic=settings.benefit_action_topic,
            )

    done = run_async(go)
    echo(
        f"{verdict.value} by staff:{staff_id}: {', '.join(done.covered)} closed "
        f"(decision {done.decision_id})"
    )
    for certification_id, result in done.answered:
        echo(f"  held certification {certification_id} answered: {result}")
    for action_id in done.actions:
        action = action_id.rsplit(":", 1)[-1]
        echo(f"  benefit action {action} queued for {settings.benefit_action_topic}")
