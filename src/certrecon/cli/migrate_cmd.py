from __future__ import annotations

import contextlib

import click

from certrecon.cli.common import load_settings, run_async
from certrecon.cli.output import echo


@click.command()
def migrate() -> None:
    """Apply the database migrations (idempotent)."""
    settings = load_settings()

    async def go() -> list[str]:
        from certrecon.embedded.postgres import EmbeddedPostgres
        from certrecon.store import db, migrations

        with contextlib.ExitStack() as stack:
            dsn = settings.database_url
            if dsn is None:
                dsn = stack.enter_context(EmbeddedPostgres.under(settings.data_dir)).dsn
            conn = await db.connect(dsn, password=settings.database_password)
            try:
                return await migrations.migrate(conn)
            finally:
                await conn.close()

    applied = run_async(go)
    for name in applied:
        echo(f"applied {name}")
    if not applied:
        echo("the database is up to date")
