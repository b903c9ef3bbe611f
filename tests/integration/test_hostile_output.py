"""Hostile text stored in the database reaches staff neutralised; free text is bounded."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from click.testing import CliRunner, Result

from certrecon.cli import cli
from certrecon.cli.commands import register
from certrecon.store import db
from tests.integration.sla_support import ID_NUMBER, add_certification, cst

# A window title change, a screen clear, a C1 CSI, a right-to-left override, rich markup.
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b1m\u202eevil\u2066"
NOTE = f"checked the file {ESCAPES} [bold red]urgent[/bold red]\nsecond line"
NAME = f"张{ESCAPES}秀英"
RAW_CHARACTERS = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066")


def _setup(dsn: str) -> None:
    async def go() -> None:
        conn = await db.connect(dsn)
        try:
            # As if stored before names were checked: the database keeps what it received.
            await conn.execute(
                """
                INSERT INTO roster_version (id_number, name, benefit_type, status, first_paid_on,
                                    insured_region)
                VALUES ($1, $2, $3, 'active', '2010-01-01', '110105')
                """,
                ID_NUMBER,
                NAME,
                f"pension{ESCAPES}",
            )
            await add_certification(conn, "H1", cst(2024, 6, 3, 10, 0), name=NAME)
        finally:
            await conn.close()

    asyncio.run(go())


def _stored_note(dsn: str) -> str | None:
    async def go() -> str | None:
        conn: asyncpg.Connection = await db.connect(dsn)
        try:
            value = await conn.fetchval("SELECT note FROM result WHERE certification_id = 'H1'")
            return None if value is None else str(value)
        finally:
            await conn.close()

    return asyncio.run(go())


def _assert_neutral(result: Result) -> None:
    for ch in RAW_CHARACTERS:
        assert ch not in result.output, f"{ch!r} reached the output"
    assert "Traceback" not in result.output


@pytest.fixture
def runner(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    _setup(fresh_database)
    monkeypatch.setenv("CERTRECON_DATABASE_URL", fresh_database)
    register(cli)
    return CliRunner()


def test_review_show_and_list_neutralise_stored_text(
    runner: CliRunner, fresh_database: str
) -> None:
    decided = runner.invoke(
        cli,
        ["review", "decide", "H1", "--outcome", "qualified", "--by", "wang01", "--note", NOTE],
    )
    assert decided.exit_code == 0, decided.output
    assert _stored_note(fresh_database) == NOTE  # kept exactly as typed

    shown = runner.invoke(cli, ["review", "show", "H1"])
    assert shown.exit_code == 0, shown.output
    _assert_neutral(shown)
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b1m\\u202eevil\\u2066" in shown.output
    assert "[bold red]urgent[/bold red]" in shown.output  # shown, not interpreted
    assert "pension\\x1b]0;pwned" in shown.output  # the roster entry too

    as_json = runner.invoke(cli, ["review", "show", "H1", "--json"])
    assert as_json.exit_code == 0, as_json.output
    _assert_neutral(as_json)
    data = json.loads(as_json.output)
    assert data["subject_name"] == NAME
    assert data["message"]["subject"]["name"] == NAME
    assert data["results"][0]["note"] == NOTE
    assert data["roster"]["benefit_type"] == f"pension{ESCAPES}"

    listed = runner.invoke(cli, ["review", "list", "--all"])
    assert listed.exit_code == 0, listed.output
    _assert_neutral(listed)


def test_sla_output_is_neutral_and_its_time_is_bounded(runner: CliRunner) -> None:
    for args in (["sla", "--at", "2024-06-04T09:00:00+08:00"], ["sla", "--json"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        _assert_neutral(result)
    for at in (
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+14:00",
        "2099-12-31T23:00:00+08:00",
        "2003-12-31T12:00:00+08:00",
        "2024-06-04T09:00:00",
        "x" * 10_000,
    ):
        result = runner.invoke(cli, ["sla", "--at", at])
        assert result.exit_code == 2, (at, result.output)
        assert result.stderr.startswith("Error: "), result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--note", "x" * 131_000, "--note is 131,000 characters long; at most 2,000"),
        ("--note", "a\x00b", "--note contains a NUL character"),
        ("--by", "w" * 65, "--by is 65 characters long; at most 64"),
        ("--by", "w" * 1_000_000, "--by is 1,000,000 characters long"),
        ("--by", "wang\x1b[2J", "--by contains control characters"),
        ("--by", "wang\u202e01", "staff ID"),
        ("--outcome", "q" * 500, "--outcome is 500 characters long"),
    ],
)
def test_free_text_is_bounded(
    runner: CliRunner, fresh_database: str, option: str, value: str, message: str
) -> None:
    args = {"--outcome": "qualified", "--by": "wang01", option: value}
    result = runner.invoke(cli, ["review", "decide", "H1", *[x for kv in args.items() for x in kv]])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert len(result.stderr) < 300
    _assert_neutral(result)
    assert _stored_note(fresh_database) is None


def test_a_huge_certification_id_is_an_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["review", "show", "H" * 100_000])
    assert result.exit_code == 2
    assert "the certification id is 100,000 characters long" in result.stderr


async def test_the_store_bounds_notes_and_sources_too(conn: asyncpg.Connection) -> None:
    import datetime as dt

    from certrecon.domain import Outcome
    from certrecon.errors import InputError
    from certrecon.store.calendar_overrides import add_override
    from certrecon.store.review import decide

    await add_certification(conn, "H2", cst(2024, 6, 3, 10, 0))
    with pytest.raises(InputError, match="the note is 131,000 characters long"):
        await decide(
            conn,
            "H2",
            outcome=Outcome.QUALIFIED,
            staff_id="wang01",
            note="x" * 131_000,
            now=dt.datetime.now(dt.UTC),
            topic="results",
        )
    with pytest.raises(InputError, match="the source is 201 characters long"):
        await add_override(conn, dt.date(2027, 1, 4), True, "x" * 201)
    assert await conn.fetchval("SELECT count(*) FROM result") == 0
    assert await conn.fetchval("SELECT count(*) FROM calendar_override") == 0
