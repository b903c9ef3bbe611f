"""``certrecon audit``: verify the ledger's hash chain, print its head, tell one story."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certrecon.cli.common import database, databases, load_settings, run_async
from certrecon.cli.output import cell, console, echo
from certrecon.domain import CST

if TYPE_CHECKING:
    from certrecon.audit.chain import Checkpoint, Problem
    from certrecon.audit.verify import Progress, VerifyReport


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(CST).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@click.group()
def audit() -> None:
    """The tamper-evident ledger: verify it, checkpoint it, read one certification's story."""


@contextlib.contextmanager
def _progress() -> Iterator[Progress | None]:
    """A progress bar on a terminal (stderr); nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "links" if stage == "links" else "ledger rows"
                tasks[stage] = bar.add_task(f"verifying {label}", total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _problem_text(p: Problem) -> str:
    where = [f"link {p.seq}" if p.seq is not None else "no link"]
    if p.table:
        where.append(f"table {p.table}")
    if p.key:
        where.append(f"row {p.key}")
    if p.certification_id:
        where.append(f"certification_id {p.certification_id}")
    return f"{', '.join(where)}: {p.what}"


def report_json(report: VerifyReport) -> dict[str, Any]:
    head = report.head
    return {
        "intact": report.intact,
        "links": report.links,
        "entries": report.entries,
        "rows": report.rows,
        "baseline_entries": report.baseline_entries,
        "head": None if head is None else {"seq": head.seq, "head_sha256": head.sha256.hex()},
        "first_bad": None if report.first is None else report.first.to_json(),
        "problems": [p.to_json() for p in report.problems[:100]],
        "seconds": round(report.seconds, 3),
    }


@audit.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="A checkpoint printed earlier by `audit checkpoint`: the ledger must still reach it.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts instead of text.")
def verify_cmd(checkpoint_file: Path | None, as_json: bool) -> None:
    """Recompute every row digest and link. Exit 0 intact, 1 broken, 2 usage."""
    from certrecon.audit.chain import Checkpoint
    from certrecon.audit.verify import verify

    checkpoint: Checkpoint | None = None
    if checkpoint_file is not None:
        checkpoint = Checkpoint.from_json(checkpoint_file.read_text("utf-8"))
    settings = load_settings()

    async def go(progress: Progress | None) -> VerifyReport:
        async with databases(settings) as (conn, connect):
            return await verify(conn, checkpoint=checkpoint, progress=progress, connect=connect)

    with _progress() as progress:
        report = run_async(lambda: go(progress))
    if as_json:
        click.echo(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    elif report.intact:
        head = report.head
        echo(
            f"ledger intact: {report.entries} entries in {report.links} links; head "
            + (f"seq {head.seq} sha256 {head.sha256.hex()}" if head else "empty")
        )
        if report.baseline_entries:
            echo(
                f"  {report.baseline_entries} of them predate the ledger: sealed as a baseline "
                "when it was introduced, their earlier history is not covered"
            )
        if checkpoint is not None:
            echo(f"  the ledger still extends the checkpoint at seq {checkpoint.seq}")
    else:
        first = report.first
        assert first is not None
        echo(f"ledger BROKEN: first bad {_problem_text(first)}")
        for p in report.problems[1:20]:
            echo(f"  also {_problem_text(p)}")
        if len(report.problems) > 20:
            echo(f"  ... and {len(report.problems) - 20} more")
    sys.exit(0 if report.intact else 1)


async def _head(settings: Any) -> Checkpoint:
    from certrecon.store.audit import head

    async with database(settings) as conn, conn.transaction(readonly=True):
        return await head(conn, dt.datetime.now(dt.UTC))


@audit.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="The same JSON (kept for symmetry).")
def checkpoint_cmd(as_json: bool) -> None:
    """Print the current head as JSON (seq, head_sha256, entries, at); keep it outside the
    database, and give it to `audit verify --checkpoint` later."""
    del as_json  # the output is JSON either way
    settings = load_settings()
    found = run_async(lambda: _head(settings))
    data = found.to_json()
    data["at"] = found.at.astimezone(CST).isoformat()
    click.echo(json.dumps(data, ensure_ascii=False))


@audit.command("show")
@click.argument("certification_id")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts instead of text.")
def show_cmd(certification_id: str, as_json: bool) -> None:
    """One certification's whole story: inbound record, validation, decision with its roster
    version and evidence, every result revision with who decided and when the broker
    acknowledged it, review steps and alerts. Exit 2 for an unknown id."""
    from certrecon.store.audit import story

    settings = load_settings()

    async def go() -> dict[str, Any] | None:
        async with database(settings) as conn, conn.transaction(readonly=True):
            return await story(conn, certification_id)

    found = run_async(go)
    if found is None:
        echo(f"Error: unknown certification {certification_id!r}", err=True)
        sys.exit(2)
    data = _plain(found)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _print_story(data)


def _print_story(s: dict[str, Any]) -> None:
    out = console()
    i = s["inbound"]
    out.print(cell(f"Certification {s['certification_id']}", "bold"))
    out.print(
        cell(
            f"  received  {i['received_at']} from {i['topic']} [{i['partition']}] offset "
            f"{i['offset']}, bytes sha256 {i['bytes_sha256']} (link {i['link']})"
        )
    )
    v = s["validation"]
    out.print(cell(f"  valid     {'yes' if v['valid'] else 'no: ' + str(v['errors'])}"))
    d = s["deadline"]
    out.print(
        cell(
            f"  due       {d['due_date']}{' (provisional)' if d['provisional'] else ''}"
            + "".join(
                f"; revised {r['recorded_at']}: {r['due_date']}"
                + (" (provisional)" if r["provisional"] else "")
                for r in d["revisions"]
            )
        )
    )
    dec = s["decision"]
    if dec is not None:
        verdict = dec["outcome"] or f"review ({dec['review_reason']})"
        out.print(
            cell(
                f"  decision  {verdict} by {dec['rule']} {dec['rule_version']} at "
                f"{dec['decided_at']}, roster version {dec['roster_version']}: {dec['reason']}"
            )
        )
        out.print(cell(f"  evidence  {json.dumps(dec['evidence'], ensure_ascii=False)}"))
    if s["review"] is not None:
        out.print(cell(f"  review    {s['review']['reason']}, queued {s['review']['queued_at']}"))
    for sd in s["staff_decisions"]:
        out.print(
            cell(
                f"  staff     {sd['outcome']} by {sd['decided_by']} (login {sd['login']}) at "
                f"{sd['decided_at']}" + (f": {sd['note']}" if sd["note"] else "")
            )
        )
    for r in s["results"]:
        acked = r["acked_at"] or "not yet acknowledged"
        out.print(
            cell(
                f"  result    {r['result_id']} {r['outcome']} by {r['decided_by']} at "
                f"{r['decided_at']}; acknowledged {acked} (link {r['link']})"
            )
        )
    for a in s["alerts"]:
        out.print(cell(f"  alert     {a['level']} raised {a['raised_at']}"))
