"""``certrecon certify``: certifications recorded locally by staff."""

from __future__ import annotations

import datetime as dt

import click

from certrecon.cli.common import database, load_settings, run_async
from certrecon.cli.output import echo
from certrecon.cycle.assisted import AssistedHow
from certrecon.text import MAX_NOTE_LENGTH


@click.group()
def certify() -> None:
    """Certifications recorded by the center's staff."""


@certify.command("assisted")
@click.argument("id_number")
@click.option(
    "--how",
    type=click.Choice([h.value for h in AssistedHow]),
    required=True,
    help="offline (at the counter), home_visit, or embassy_papers (papers from a Chinese "
    "embassy or consulate brought by the employer).",
)
@click.option("--by", "staff_id", required=True, help="Your staff ID (decided_by: staff:ID).")
@click.option(
    "--at",
    "at_text",
    default=None,
    help="When the person was certified (RFC 3339 with offset); default: now.",
)
@click.option(
    "--note",
    default=None,
    help=f"What you checked (at most {MAX_NOTE_LENGTH} characters); kept on record.",
)
def assisted(
    id_number: str, how: str, staff_id: str, at_text: str | None, note: str | None
) -> None:
    """Record an assisted certification (线下协助认证) of ID_NUMBER.

    It counts for the person's certification cycle like a qualified ministry result; no
    ministry result is produced. Your staff ID and your database login are recorded with
    it. An ID number that is not in scope of the cycle is refused.
    """
    from certrecon.cli.inputs import parse_instant
    from certrecon.cli.review_cmd import cst_text
    from certrecon.cycle.assisted import AssistedCertification
    from certrecon.ids import normalise_id_number
    from certrecon.logs import mask_id
    from certrecon.store.cycle import AssistedRecorded, record_assisted

    settings = load_settings()
    now = dt.datetime.now(dt.UTC)
    at = parse_instant(at_text) if at_text else now
    cert = AssistedCertification(
        id_number=normalise_id_number(id_number.strip()),
        how=AssistedHow(how),
        by=staff_id,
        at=at,
        note=note,
    )

    async def go() -> AssistedRecorded:
        async with database(settings) as conn:
            return await record_assisted(
                conn,
                cert,
                mode=settings.cycle_mode,
                now=now,
                benefit_action_topic=settings.benefit_action_topic,
            )

    done = run_async(go)
    echo(
        f"recorded assisted certification #{done.id} of {mask_id(cert.id_number)}: "
        f"{cert.how.value} on {cert.local_date.isoformat()} by staff:{staff_id} "
        f"(login {done.login}) at {cst_text(done.recorded_at)}"
    )
    if done.actions:
        echo(f"  payments resume: benefit action queued for {settings.benefit_action_topic}")
