"""``certrecon calendar`` against a real PostgreSQL (CERTRECON_DATABASE_URL set)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys

import asyncpg
import click
import pytest
from click.testing import CliRunner, Result

from certrecon.cli import cli
from certrecon.cli.calendar_cmd import calendar
from certrecon.store import db


@pytest.fixture(scope="module")
def root() -> click.Group:
    cli.add_command(calendar)
    return cli


async def invoke(root: click.Group, dsn: str, *args: str) -> Result:
    # The command runs its own event loop (asyncio.run), so it runs in a worker thread.
    env = {"CERTRECON_DATABASE_URL": dsn, "CERTRECON_DEADLINE_WORKING_DAYS": None}
    return await asyncio.to_thread(CliRunner().invoke, root, ["calendar", *args], env=env)


async def test_override_add_list_remove(root: click.Group, fresh_database: str) -> None:
    added = await invoke(
        root,
        fresh_database,
        "override",
        "add",
        "2027-02-20",
        "--working",
        "--source",
        "国办发明电〔2026〕99号",
    )
    assert added.exit_code == 0, added.output
    assert "2027-02-20: working day (国办发明电〔2026〕99号)" in added.stdout
    assert "2027 stays provisional" in added.stdout

    off = await invoke(
        root, fresh_database, "override", "add", "2023-10-09", "--day-off", "--source", "test"
    )
    assert off.exit_code == 0, off.output
    assert "2023 stays provisional" not in off.stdout

    listed = await invoke(root, fresh_database, "override", "list")
    assert listed.exit_code == 0, listed.output
    assert "2023-10-09  day off  test" in listed.stdout
    assert "2027-02-20  working  国办发明电〔2026〕99号" in listed.stdout

    conn = await db.connect(fresh_database)
    try:
        rows = await conn.fetch("SELECT day, working FROM calendar_override ORDER BY day")
    finally:
        await conn.close()
    assert [(r["day"], r["working"]) for r in rows] == [
        (dt.date(2023, 10, 9), False),
        (dt.date(2027, 2, 20), True),
    ]

    # With a database configured, due and year apply its overrides.
    due = await invoke(root, fresh_database, "due", "2023-09-27T10:00:00+08:00")
    assert "2023-10-11" in due.stdout.splitlines()[1]
    assert "database overrides" in due.stdout
    year = await invoke(root, fresh_database, "year", "2027")
    assert "2027-02-20 Sat  [database: 国办发明电〔2026〕99号]" in year.stdout
    no_db = await invoke(root, fresh_database, "due", "2023-09-27", "--no-db")
    assert "2023-10-10" in no_db.stdout.splitlines()[1]

    removed = await invoke(root, fresh_database, "override", "remove", "2023-10-09")
    assert removed.exit_code == 0, removed.output
    again = await invoke(root, fresh_database, "override", "remove", "2023-10-09")
    assert again.exit_code == 2
    assert "Error: there is no database override for 2023-10-09" in again.stderr


async def test_publish_and_unpublish(root: click.Group, fresh_database: str) -> None:
    before = await invoke(root, fresh_database, "year", "2027")
    assert before.stdout.startswith("2027: provisional")
    published = await invoke(
        root, fresh_database, "publish", "2027", "--source", "国办发明电〔2026〕99号"
    )
    assert published.exit_code == 0, published.output
    after = await invoke(root, fresh_database, "year", "2027")
    assert after.stdout.startswith("2027: official (database: 国办发明电〔2026〕99号)")
    due = await invoke(root, fresh_database, "due", "2027-03-01")
    assert "provisional         no" in due.stdout
    listed = await invoke(root, fresh_database, "override", "list")
    assert "2027  国办发明电〔2026〕99号" in listed.stdout
    assert (await invoke(root, fresh_database, "unpublish", "2027")).exit_code == 0
    assert (await invoke(root, fresh_database, "unpublish", "2027")).exit_code == 2


async def test_bad_override_input_is_refused_without_a_traceback(
    root: click.Group, fresh_database: str, conn: asyncpg.Connection
) -> None:
    for args in (
        ["override", "add", "2027-02-31", "--working", "--source", "x"],
        ["override", "add", "2027-02-20", "--source", "x"],
        ["override", "add", "2003-02-20", "--working", "--source", "x"],
        ["override", "add", "2027-02-20", "--working", "--source", " "],
        ["publish", "2200", "--source", "x"],
    ):
        result = await invoke(root, fresh_database, *args)
        assert result.exit_code == 2, (args, result.output)
        assert len([x for x in result.stderr.splitlines() if x.startswith("Error:")]) == 1
        assert "Traceback" not in result.output
    assert await conn.fetchval("SELECT count(*) FROM calendar_override") == 0


def test_the_installed_command_prints_the_due_date_and_one_line_errors() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")}
    command = [sys.executable, "-m", "certrecon", "calendar", "due"]
    good = subprocess.run(
        [*command, "2023-09-27T10:00:00+08:00"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "2023-10-10" in good.stdout
    bad = subprocess.run(
        [*command, "2023-09-27T10:00:00"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert [x for x in bad.stderr.splitlines() if x.startswith("Error:")] == [
        "Error: timestamp '2023-09-27T10:00:00' has no UTC offset, so its date in China "
        "Standard Time is unknown; add one, e.g. +08:00 or Z"
    ]
