from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from certrecon.cli import cli
from certrecon.cli.commands import register
from certrecon.domain import RosterRecord, RosterStatus
from certrecon.errors import RosterImportError
from certrecon.store import db
from certrecon.store import roster as roster_store
from certrecon.store.roster import ImportSummary, fetch_roster, import_roster
from certrecon.synthetic import make_roster, write_roster_csv
from tests.support import run_certrecon


async def _count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM roster"))


async def _stamps(conn: asyncpg.Connection) -> dict[str, dt.datetime]:
    rows = await conn.fetch("SELECT id_number, recorded_at FROM roster")
    return {row["id_number"]: row["recorded_at"] for row in rows}


async def test_import_then_fetch_returns_the_same_records(conn: asyncpg.Connection) -> None:
    people = make_roster(2_000, seed=1)
    assert await import_roster(conn, people) == ImportSummary(inserted=2_000, updated=0)
    found = await fetch_roster(conn, [p.id_number for p in people])
    assert found == {p.id_number: p for p in people}


async def test_fetch_leaves_out_unknown_numbers(conn: asyncpg.Connection) -> None:
    people = make_roster(3, seed=2)
    await import_roster(conn, people)
    found = await fetch_roster(conn, [people[0].id_number, "11010519491231002X"])
    assert list(found) == [people[0].id_number]
    assert await fetch_roster(conn, []) == {}


async def test_empty_region_is_null_in_the_database(conn: asyncpg.Connection) -> None:
    person = dataclasses.replace(make_roster(1, seed=3)[0], insured_region="")
    await import_roster(conn, [person])
    assert await conn.fetchval("SELECT insured_region FROM roster") is None
    assert (await fetch_roster(conn, [person.id_number]))[person.id_number] == person


async def test_reimport_updates_changed_rows_only(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roster_store, "CHUNK_ROWS", 7)  # several chunks in one transaction
    people = make_roster(50, seed=4)
    await import_roster(conn, people)
    stamps = await _stamps(conn)

    changed = [
        dataclasses.replace(people[0], status=RosterStatus.TERMINATED),
        dataclasses.replace(people[1], deceased_on=dt.date(2024, 5, 1)),
        dataclasses.replace(people[2], name="新名字"),
    ]
    newcomers = make_roster(60, seed=5)[-10:]
    second = changed + people[3:] + newcomers
    seen: list[int] = []
    summary = await import_roster(conn, second, progress=seen.append)

    assert summary == ImportSummary(inserted=10, updated=3, unchanged=47)
    assert summary.total == len(second)
    assert seen == [*range(7, len(second), 7), len(second)]
    assert await _count(conn) == 60
    found = await fetch_roster(conn, [p.id_number for p in second])
    assert found == {p.id_number: p for p in second}
    after = await _stamps(conn)
    for p in people[3:]:
        assert after[p.id_number] == stamps[p.id_number], "an unchanged row was rewritten"
    for p in changed:
        assert after[p.id_number] > stamps[p.id_number]


async def test_duplicate_records_change_nothing(conn: asyncpg.Connection) -> None:
    people = make_roster(5, seed=6)
    with pytest.raises(RosterImportError) as caught:
        await import_roster(conn, [*people, people[1]])
    assert caught.value.problems == [(6, "duplicate id_number (first as record 2)")]
    assert await _count(conn) == 0


async def test_a_value_the_schema_refuses_rolls_everything_back(conn: asyncpg.Connection) -> None:
    people = make_roster(5, seed=7)
    await import_roster(conn, people[:2])
    bad = RosterRecord(
        id_number=people[4].id_number,
        name="王五",
        benefit_type="basic_pension",
        status=RosterStatus.ACTIVE,
        insured_region="not-a-code",
    )
    with pytest.raises(RosterImportError, match=r"refused the roster \(23514\)"):
        await import_roster(conn, [dataclasses.replace(people[0], name="改名"), *people[2:4], bad])
    assert await _count(conn) == 2
    assert (await fetch_roster(conn, [people[0].id_number]))[people[0].id_number] == people[0]


async def test_import_inside_a_callers_transaction_can_run_twice(
    conn: asyncpg.Connection,
) -> None:
    people = make_roster(10, seed=8)
    async with conn.transaction():
        await import_roster(conn, people[:5])
        summary = await import_roster(conn, people)
    assert summary == ImportSummary(inserted=5, updated=0, unchanged=5)
    assert await _count(conn) == 10


# --- the command line, end to end -------------------------------------------------------


async def _certrecon(dsn: str, data_dir: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "CERTRECON_DATABASE_URL": dsn, "CERTRECON_DATA_DIR": str(data_dir)}
    return await run_certrecon(env, *args)


async def test_cli_imports_and_reimports(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    people = make_roster(1_000, seed=9)
    path = tmp_path / "roster.csv"
    write_roster_csv(path, people)

    code, out, err = await _certrecon(fresh_database, tmp_path, "roster", "import", str(path))
    assert code == 0, err
    assert "1000 rows" in out
    assert "1000 inserted, 0 updated, 0 unchanged" in out
    assert await fetch_roster(conn, [p.id_number for p in people]) == {
        p.id_number: p for p in people
    }

    people[10] = dataclasses.replace(people[10], status=RosterStatus.SUSPENDED)
    write_roster_csv(path, people)
    code, out, err = await _certrecon(fresh_database, tmp_path, "roster", "import", str(path))
    assert code == 0, err
    assert "0 inserted, " in out
    assert (await fetch_roster(conn, [people[10].id_number]))[people[10].id_number] == people[10]


async def test_cli_rejects_a_bad_file_and_changes_nothing(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    before = make_roster(20, seed=10)
    await import_roster(conn, before)

    people = [dataclasses.replace(p, name="改名") for p in make_roster(120, seed=10)]
    path = tmp_path / "roster.csv"
    write_roster_csv(path, people)
    lines = path.read_text("utf-8").splitlines(keepends=True)
    # Data row k is on file line k + 1. Break lines 3 and 5, and 60 more lines after them.
    lines[2] = lines[2].replace(",basic_pension,", ",,").replace(",work_injury,", ",,")
    lines[2] = lines[2].replace(",survivor,", ",,")
    lines[4] = lines[4].replace(",active,", ",retired,").replace(",suspended,", ",retired,")
    lines[4] = lines[4].replace(",terminated,", ",retired,")
    for index in range(50, 110):
        lines[index] = lines[index].rstrip("\n") + ",extra\n"
    path.write_text("".join(lines), "utf-8")

    code, _, err = await _certrecon(fresh_database, tmp_path, "roster", "import", str(path))
    assert code == 2
    assert "nothing was imported" in err
    assert "file line numbers" in err
    assert "line 3: benefit_type is empty" in err
    assert "line 5: status 'retired'" in err
    assert "line 51: expected 9 cells, found 10" in err
    assert "... and 12 more problem(s)" in err
    assert await fetch_roster(conn, [p.id_number for p in before]) == {
        p.id_number: p for p in before
    }
    assert await _count(conn) == 20


async def test_cli_refuses_a_wrong_header(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("身份证号,姓名\n11010519491231002X,张三\n", "utf-8")
    code, _, err = await _certrecon(fresh_database, tmp_path, "roster", "import", str(path))
    assert code == 2
    assert "line 1 must be the header id_number,name," in err
    assert await _count(conn) == 0


def test_roster_show_gives_the_entry_as_it_was(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = make_roster(1, seed=77)[0]

    async def load(record: RosterRecord) -> dt.datetime:
        conn = await db.connect(fresh_database)
        try:
            await import_roster(conn, [record])
            at: dt.datetime = await conn.fetchval("SELECT max(recorded_at) FROM roster_version")
            return at
        finally:
            await conn.close()

    first = asyncio.run(load(person))
    moved = dataclasses.replace(person, name="改名后", deceased_on=dt.date(2024, 5, 1))
    second = asyncio.run(load(moved))
    assert second > first
    monkeypatch.setenv("CERTRECON_DATABASE_URL", fresh_database)
    register(cli)
    runner = CliRunner()
    now = runner.invoke(cli, ["roster", "show", person.id_number, "--json"])
    assert now.exit_code == 0, now.output
    data = json.loads(now.output)
    assert data["entry"]["name"] == "改名后"
    assert [v["name"] for v in data["versions"]] == [person.name, "改名后"]
    between = (first + (second - first) / 2).isoformat()
    then = runner.invoke(cli, ["roster", "show", person.id_number, "--at", between, "--json"])
    assert json.loads(then.output)["entry"]["name"] == person.name
    before = runner.invoke(
        cli, ["roster", "show", person.id_number, "--at", "2010-01-01T00:00:00+08:00"]
    )
    assert before.exit_code == 0
    assert "no roster entry" in before.output
    assert runner.invoke(cli, ["roster", "show", "11010519491231002X"]).exit_code == 2


async def test_suspended_on_is_stored_and_a_change_of_it_is_a_new_version(
    conn: asyncpg.Connection,
) -> None:
    from certrecon.domain import RosterRecord, RosterStatus
    from certrecon.store.roster import fetch_roster, import_roster, roster_history

    person = RosterRecord(
        id_number="11010519491231002X",
        name="张秀英",
        benefit_type="basic_pension",
        status=RosterStatus.SUSPENDED,
        insured_region="110105",
        first_paid_on=dt.date(2010, 1, 1),
    )
    await import_roster(conn, [person])
    held = dataclasses.replace(person, suspended_on=dt.date(2024, 3, 1))
    summary = await import_roster(conn, [held])
    assert (summary.inserted, summary.updated) == (0, 1)
    assert (await fetch_roster(conn, [person.id_number]))[person.id_number] == held
    history = await roster_history(conn, person.id_number)
    assert [v.record.suspended_on for v in history] == [None, dt.date(2024, 3, 1)]
