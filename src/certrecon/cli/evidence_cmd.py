"""``certrecon evidence``: load big-data comparison evidence from departmental files."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.cli.output import echo
from certrecon.cli.roster_cmd import progress_bar, report_rejection
from certrecon.domain import CST
from certrecon.errors import EvidenceImportError


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
    from certrecon.store.evidence import EvidenceImportSummary, import_evidence_file

    settings = load_settings()
    started = time.monotonic()
    today = dt.datetime.now(CST).date()
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
