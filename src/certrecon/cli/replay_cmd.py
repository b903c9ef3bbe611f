"""``certrecon audit replay``: re-check a window of the inbound topics against the ledger.

Read-only: the database session is READ ONLY (and the auditor role's sessions are read-only
by default), the broker is read through an assign-only consumer with no group, and no
producer exists. Pending migrations are never applied here: a schema that is not current
is an error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certrecon.cli.common import load_settings, run_async
from certrecon.cli.output import cell, console, echo, error, json_text
from certrecon.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    DatabaseUnavailableError,
    InputError,
    MigrationError,
)

if TYPE_CHECKING:
    from certrecon.replay.broker import Progress as ReadProgress
    from certrecon.replay.model import PartitionSpan
    from certrecon.replay.run import Outcome
    from certrecon.settings import Settings


@click.command("replay")
@click.option("--from", "start", required=True, metavar="T1", help="RFC 3339 or YYYY-MM-DD.")
@click.option("--to", "end", required=True, metavar="T2", help="Exclusive; as --from.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write summary.json, items.jsonl, timeliness.csv and manifest.json here.",
)
@click.option(
    "--rules",
    type=click.Choice(["recorded", "current"]),
    default="recorded",
    show_default=True,
    help="recorded: as decided then; current: today's rules, roster and calendar (what-if).",
)
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON.")
def replay_cmd(start: str, end: str, report_dir: Path | None, rules: str, as_json: bool) -> None:
    """Re-check every inbound record stamped T1 <= ts < T2 against the ledger and the
    output topics. Exit 0 clean, 1 discrepancies found, 2 usage or unreachable services."""
    from certrecon.replay.model import Rules
    from certrecon.replay.window import Window

    window = Window.parse(start, end)
    if report_dir is not None and (report_dir / "manifest.json").exists():
        raise InputError(f"{report_dir} already holds a report; give a new directory")
    settings = load_settings()
    try:
        with _progress(enabled=not as_json) as progress:
            outcome = run_async(lambda: _run(settings, window, Rules(rules), report_dir, progress))
    except (DatabaseUnavailableError, BrokerUnavailableError, AuthenticationError) as exc:
        error(exc)
        sys.exit(2)
    except MigrationError as exc:
        error(exc)
        sys.exit(2)
    if as_json:
        click.echo(json_text(outcome.summary))
    else:
        _print(outcome, report_dir)
    sys.exit(0 if outcome.tally.clean else 1)


async def _run(
    settings: Settings,
    window: Any,
    rules: Any,
    report_dir: Path | None,
    progress: Any,
) -> Outcome:
    from certrecon.embedded.postgres import EmbeddedPostgres
    from certrecon.replay.broker import TopicReader
    from certrecon.replay.report import ReportWriter
    from certrecon.replay.run import replay
    from certrecon.store import db
    from certrecon.store.migrations import pending
    from certrecon.worker.pipeline import PipelineConfig

    if settings.kafka_bootstrap is None:
        raise BrokerUnavailableError(
            "no broker to replay: set CERTRECON_KAFKA_BOOTSTRAP (the embedded broker keeps "
            "nothing between runs)"
        )
    now = dt.datetime.now(dt.UTC)
    with contextlib.ExitStack() as stack:
        dsn = settings.database_url
        if dsn is None:
            dsn = stack.enter_context(EmbeddedPostgres.under(settings.data_dir)).dsn
        conn = await db.connect(dsn, password=settings.database_password)
        try:
            if await pending(conn):
                raise MigrationError(
                    "the database schema is not up to date; run `certrecon migrate` first"
                )
            reader = TopicReader(settings.kafka_bootstrap, security=settings.kafka_security)
            async with (
                reader,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                with ReportWriter(report_dir) as writer:
                    return await replay(
                        conn,
                        reader,
                        dsn=dsn,
                        password=settings.database_password,
                        config=PipelineConfig.from_settings(settings),
                        window=window,
                        rules=rules,
                        now=now,
                        writer=writer,
                        progress=progress,
                    )
        finally:
            await conn.close()
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _progress(*, enabled: bool) -> Iterator[Any]:
    """A progress bar per partition (position, rate, time left) on a terminal (stderr)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:

        def start(spans: list[PartitionSpan]) -> ReadProgress:
            tasks = {
                (s.topic, s.partition): bar.add_task(
                    f"{s.topic}[{s.partition}]", total=max(s.end - s.start, 0)
                )
                for s in spans
            }

            def update(span: PartitionSpan, position: int) -> None:
                bar.update(tasks[(span.topic, span.partition)], completed=position - span.start)

            return update

        yield start


def _print(outcome: Outcome, report_dir: Path | None) -> None:
    from rich.table import Table

    s = outcome.summary
    out = console()
    verdict = "clean" if s["clean"] else f"{s['discrepancies']} discrepancies"
    window = s["window"]
    out.print(
        cell(
            f"Audit replay {window['from']} .. {window['to']} ({s['rules']} rules): {verdict}",
            "bold",
        )
    )
    counts = Table(show_header=True, header_style="bold")
    counts.add_column("what")
    counts.add_column("count", justify="right")
    for name in (
        "records_in_window",
        "certifications",
        "answered",
        "on_time",
        "late",
        "open",
        "awaiting_publication",
        "redelivered",
        "dead_letters_only",
        "not_rederivable",
    ):
        counts.add_row(cell(name.replace("_", " ")), cell(s[name]))
    for kind, n in s["by_kind"].items():
        if n:
            counts.add_row(cell(f"discrepancy: {kind}", "red"), cell(n, "red"))
    out.print(counts)
    if outcome.items_shown:
        items = Table(show_header=True, header_style="bold")
        for name in ("kind", "certification", "where", "field", "recorded", "replayed"):
            items.add_column(name)
        for d in outcome.items_shown:
            items.add_row(
                cell(d.kind.value),
                cell(d.certification_id or ""),
                cell(f"{d.topic}[{d.partition}]@{d.offset}"),
                cell(d.field or ""),
                cell(_short(d.to_json()["recorded"])),
                cell(_short(d.to_json()["replayed"])),
            )
        out.print(items)
        if s["discrepancies"] > len(outcome.items_shown):
            echo(f"  ... {s['discrepancies'] - len(outcome.items_shown)} more in items.jsonl")
    if report_dir is not None:
        echo(f"report: {report_dir} (manifest.json holds the SHA-256 of the other files)")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
