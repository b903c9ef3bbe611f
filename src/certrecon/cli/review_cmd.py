"""``certrecon review``: the staff review queue (逐人核实) and staff decisions."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.cli.output import cell, console, echo, json_text
from certrecon.domain import CST
from certrecon.logs import mask_id
from certrecon.text import (
    MAX_ARGUMENT_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_STAFF_ID_LENGTH,
    check_free_text,
)

if TYPE_CHECKING:
    from certrecon.store.review import CertificationFile, QueueItem, StaffDecision

__all__ = ["console", "cst_text", "review"]


def cst_text(value: dt.datetime | None) -> str:
    """An instant as ``YYYY-MM-DD HH:MM:SS CST`` (empty for None)."""
    if value is None:
        return ""
    return value.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S CST")


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(CST).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _json_dict(value: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in value.items()}


def _item_json(item: QueueItem) -> dict[str, Any]:
    return _json_dict(
        {
            "certification_id": item.certification_id,
            "channel": item.channel,
            "id_number": mask_id(item.id_number),
            "reason": item.reason,
            "queued_at": item.queued_at,
            "due_date": item.due_date,
            "deadline": item.deadline,
            "provisional": item.provisional,
            "closed_at": item.closed_at,
            "outcome": item.outcome,
            "decided_by": item.decided_by,
        }
    )


@click.group()
def review() -> None:
    """Certifications that local death or imprisonment records put before a person (逐人核实)."""


@review.command("list")
@click.option("--all", "include_closed", is_flag=True, help="Include decided (closed) items.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts instead of a table.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000))
def list_cmd(include_closed: bool, as_json: bool, limit: int) -> None:
    """The review queue by deadline, most urgent first. ID numbers are masked."""
    settings = load_settings()

    async def go() -> list[QueueItem]:
        from certrecon.store.review import list_queue

        async with database(settings) as conn:
            return await list_queue(conn, include_closed=include_closed, limit=limit)

    from certrecon.cli.evidence_cmd import item_json, print_items
    from certrecon.store.evidence_review import EvidenceItem, list_evidence_items

    async def evidence_items() -> list[EvidenceItem]:
        async with database(settings) as conn:
            return await list_evidence_items(conn, include_closed=include_closed, limit=limit)

    items = run_async(go)
    person_items = run_async(evidence_items)
    if as_json:
        listed = [_item_json(i) for i in items]
        click.echo(json_text(listed + [item_json(e, masked=True) for e in person_items]))
        return
    from rich.table import Table

    out = console()
    if person_items:
        print_items(person_items, include_closed=include_closed)
    if not items:
        out.print(cell("The certification review queue is empty."))
        return
    table = Table(title="Review queue (times in CST; * = provisional deadline)")
    for name in ("certification", "channel", "ID number", "reason", "queued", "due date"):
        table.add_column(name)
    if include_closed:
        table.add_column("decision")
    for i in items:
        row = [
            i.certification_id,
            i.channel,
            mask_id(i.id_number),
            i.reason,
            cst_text(i.queued_at),
            i.due_date.isoformat() + ("*" if i.provisional else ""),
        ]
        if include_closed:
            row.append(f"{i.outcome} by {i.decided_by}" if i.outcome else "open")
        table.add_row(*map(cell, row))
    out.print(table)


def _file_json(f: CertificationFile) -> dict[str, Any]:
    return _json_dict(
        {
            "certification_id": f.certification_id,
            "channel": f.channel,
            "valid": f.valid,
            "id_number": f.id_number,
            "subject_name": f.subject_name,
            "certified_at": f.certified_at_raw,
            "local_date": f.local_date,
            "due_date": f.due_date,
            "deadline": f.deadline,
            "provisional": f.provisional,
            "received_at": f.received_at,
            "returned_at": f.returned_at,
            "on_time": f.on_time,
            "roster": f.roster,
            "decision": f.decision,
            "review": None if f.review is None else _item_json(f.review) | {"note": f.note},
            "results": [
                {
                    "revision": r.revision,
                    "result_id": r.result_id,
                    "outcome": r.outcome,
                    "reason": r.reason,
                    "decided_at": r.decided_at,
                    "decided_by": r.decided_by,
                    "note": r.note,
                    "sent_at": r.sent_at,
                }
                for r in f.results
            ],
            "message": f.message,
        }
    )


@review.command("show")
@click.argument("certification_id")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts instead of text.")
def show_cmd(certification_id: str, as_json: bool) -> None:
    """Everything needed to verify one certification.

    Unlike every other output of certrecon, this shows the real ID number and name: checking
    them against local records is the purpose of a review. Do not paste it into tickets.
    """
    _check_certification_id(certification_id)
    from certrecon.store.evidence_review import is_evidence_item

    if is_evidence_item(certification_id):
        from certrecon.cli.evidence_cmd import show_item

        show_item(certification_id, as_json)
        return
    settings = load_settings()

    async def go() -> CertificationFile:
        from certrecon.store.review import show

        async with database(settings) as conn:
            return await show(conn, certification_id)

    found = run_async(go)
    if as_json:
        click.echo(json_text(_file_json(found)))
        return
    _print_file(found)


def _print_file(f: CertificationFile) -> None:
    from rich.table import Table

    out = console()
    facts = Table(show_header=False, title=cell(f"Certification {f.certification_id}"))
    facts.add_column("field", style="bold")
    facts.add_column("value")
    state = "returned" if f.returned_at else "open"
    on_time = "" if f.on_time is None else (" (on time)" if f.on_time else " (LATE)")
    rows = [
        ("channel", f.channel),
        ("valid", "yes" if f.valid else "no (invalid_record)"),
        ("ID number", f.id_number or ""),
        ("name (as sent)", f.subject_name or ""),
        ("certified at", f.certified_at_raw or ""),
        ("received at", cst_text(f.received_at)),
        (
            "due date",
            f"{f.due_date.isoformat()}, deadline 24:00 CST"
            + (" — PROVISIONAL (holiday schedule not published)" if f.provisional else ""),
        ),
        ("status", f"{state} {cst_text(f.returned_at)}{on_time}".strip()),
    ]
    if f.decision is not None:
        d = f.decision
        verdict = d["outcome"] or f"review ({d['review_reason']})"
        rows.append(("rules", f"{verdict}: {d['reason']} [{d['rule']} {d['rule_version']}]"))
        rows.append(("evidence", json.dumps(_json_value(d["evidence"]), ensure_ascii=False)))
    if f.roster is not None:
        r = f.roster
        parts = [f"{k}={_json_value(v)}" for k, v in r.items() if v is not None]
        rows.append(("roster", ", ".join(parts)))
    else:
        rows.append(("roster", "no entry for this ID number"))
    if f.review is not None:
        q = f.review
        decided = f"; decided {q.outcome} by {q.decided_by}" if q.outcome else "; open"
        rows.append(("review", f"{q.reason}, queued {cst_text(q.queued_at)}{decided}"))
        if f.note:
            rows.append(("note", f.note))
    for field, value in rows:
        facts.add_row(cell(field), cell(value, keep_newlines=field == "note"))
    out.print(facts)
    if f.results:
        table = Table(title="Results (every revision)")
        for name in ("result_id", "outcome", "decided by", "decided at", "published", "note"):
            table.add_column(name)
        for res in f.results:
            table.add_row(
                cell(res.result_id),
                cell(res.outcome),
                cell(res.decided_by),
                cell(cst_text(res.decided_at)),
                cell(cst_text(res.sent_at) or "pending"),
                cell(res.note or "", keep_newlines=True),
            )
        out.print(table)
    else:
        out.print(cell("No result yet."))


def _check_certification_id(certification_id: str) -> None:
    check_free_text("the certification id", certification_id, max_length=MAX_ARGUMENT_LENGTH)


@review.command("decide")
@click.argument("certification_id")
@click.option(
    "--outcome",
    required=True,
    help="eligibility_lost, qualified, not_in_scope, identity_mismatch or face_not_verified.",
)
@click.option("--by", "staff_id", required=True, help="Your staff ID (decided_by: staff:ID).")
@click.option(
    "--note",
    default=None,
    help=f"What you checked (at most {MAX_NOTE_LENGTH} characters); kept on record, not published.",
)
@click.option(
    "--effective-date",
    "effective_text",
    default=None,
    help="Evidence items (E<n>) confirmed: the date eligibility was lost, YYYY-MM-DD "
    "(default: the evidence's event date).",
)
def decide_cmd(
    certification_id: str,
    outcome: str,
    staff_id: str,
    note: str | None,
    effective_text: str | None,
) -> None:
    """Decide a certification; the result is published through the outbox.

    The first result of a certification is revision 1 (CERT_ID:1). Deciding a certification
    that already has a result with another outcome corrects it as the next revision; earlier
    revisions stay on record. Deciding the outcome it already has changes nothing.

    A person-level evidence item (E<n>) is decided with --outcome eligibility_lost (the
    evidence is right; --effective-date) or evidence_rejected (it is wrong); the person's
    certifications it held then go to the rules, and a confirmation tells the payment
    system to stop.
    """
    _check_certification_id(certification_id)
    check_free_text("--outcome", outcome, max_length=MAX_ARGUMENT_LENGTH)
    check_free_text("--by", staff_id, max_length=MAX_STAFF_ID_LENGTH)
    if note is not None:
        check_free_text("--note", note, max_length=MAX_NOTE_LENGTH, multiline=True)
    from certrecon.store.evidence_review import is_evidence_item

    if is_evidence_item(certification_id):
        from certrecon.cli.evidence_cmd import decide_item

        decide_item(certification_id, outcome.strip(), staff_id, note, effective_text)
        return
    if effective_text is not None:
        raise click.UsageError("--effective-date is for evidence items (E<n>) only")
    settings = load_settings()

    async def go() -> StaffDecision:
        from certrecon.store.review import decide, parse_outcome

        chosen = parse_outcome(outcome)
        async with database(settings) as conn:
            return await decide(
                conn,
                certification_id,
                outcome=chosen,
                staff_id=staff_id,
                note=note,
                now=dt.datetime.now(dt.UTC),
                topic=settings.result_topic,
            )

    done = run_async(go)
    from certrecon.store.review import DecisionStatus

    if done.status is DecisionStatus.UNCHANGED:
        echo(
            f"no change: {done.result_id} already says {done.outcome.value} "
            f"(decided by {done.previous_decided_by}); nothing was recorded"
        )
        return
    what = (
        "decided"
        if done.revision == 1
        else (f"corrected {done.previous_outcome.value if done.previous_outcome else ''} →")
    )
    echo(
        f"{what} {done.outcome.value}: result {done.result_id} (revision {done.revision}) "
        f"by staff:{staff_id}, queued for publishing to {settings.result_topic}"
    )
