"""Numbered, forward-only SQL migrations.

The files live in ``sql/`` at the repository root and are shipped inside the wheel as
``certrecon/sql``. Each file runs in its own transaction together with its bookkeeping row,
under an advisory lock so that several processes starting at once apply each file once.

Ledger tables refuse UPDATE, DELETE and TRUNCATE (``sql/0004_ledger.sql``); the refusal is
lifted only for the transaction of a migration run here: :func:`migrate` sets
``certrecon.migrating`` to that transaction's id (transaction-local) while it holds the
migration lock, which is what the database checks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from certrecon.errors import MigrationError
from certrecon.store.roles import ensure_roles

_NAME = re.compile(r"^(?P<number>\d{4})_(?P<slug>[a-z0-9_]+)\.sql$")
# An arbitrary constant shared by every certrecon process: the migration lock.
_LOCK_KEY = 0x6365_7274_7265_636F


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def _sql_dir() -> Path:
    packaged = resources.files("certrecon") / "sql"
    if packaged.is_dir():
        return Path(str(packaged))
    # An editable install runs from the source tree, where sql/ sits at the repository root.
    source_tree = Path(__file__).resolve().parents[3] / "sql"
    if source_tree.is_dir():
        return source_tree
    raise MigrationError("the SQL migrations are missing from this installation")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    folder = directory or _sql_dir()
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_name.sql")
        found.append(Migration(int(match["number"]), path.stem, path.read_text("utf-8")))
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1, 2, 3, ... without gaps: {numbers}")
    return found


async def applied(conn: asyncpg.Connection) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migration') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT number, checksum FROM schema_migration ORDER BY number")
    return {int(r["number"]): str(r["checksum"]) for r in rows}


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Apply every migration not applied yet; return the names applied now."""
    migrations = load_migrations(directory)
    done: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migration (
                number     integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        already = await applied(conn)
        for number, checksum in already.items():
            known = next((m for m in migrations if m.number == number), None)
            if known is None:
                raise MigrationError(
                    f"the database has migration {number}, which this version does not ship; "
                    "it was migrated by a newer certrecon"
                )
            if known.checksum != checksum:
                raise MigrationError(
                    f"migration {known.name} was changed after it was applied; "
                    "migrations are forward-only, add a new file instead"
                )
        for migration in migrations:
            if migration.number in already:
                continue
            async with conn.transaction():
                await conn.execute(
                    "SELECT set_config('certrecon.migrating', pg_current_xact_id()::text, true)"
                )
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migration (number, name, checksum) VALUES ($1, $2, $3)",
                    migration.number,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration.name)
        # The roles' rights name the relations of the whole schema this version ships; a
        # database migrated from a subset (an older schema, in tests) keeps them unset.
        if not await pending(conn):
            await ensure_roles(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return done


async def pending(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """The migrations this version ships that the database does not have yet."""
    done = await applied(conn)
    return [m.name for m in load_migrations(directory) if m.number not in done]


async def ensure_current(conn: asyncpg.Connection) -> list[str]:
    """Migrate when something is pending, else only check; return the names applied now.

    A least-privilege login (``certrecon_app`` and the others) reads the migration table
    and goes on when the schema is current; only the schema owner can apply migrations.
    """
    if not await pending(conn):
        return []
    try:
        return await migrate(conn)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise MigrationError(
            "the database schema is not up to date and this login may not migrate it; "
            "run `certrecon migrate` as the schema owner"
        ) from exc
