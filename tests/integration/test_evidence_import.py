"""``certrecon evidence import``: whole files or nothing, repeats change nothing; recorded
chunk by chunk, with the cycle projection merged once and equal to the ledger's.

The in-process tests run twice: with the importer's chunks, and with one line per chunk,
so that every repeat, conflict and projection case also spans chunks."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import asyncpg
import pytest

from certrecon.errors import EvidenceImportError
from certrecon.evidence import csvfile
from certrecon.evidence.csvfile import HEADER
from certrecon.evidence.model import is_evidence_id
from certrecon.store.evidence import copy_data, import_evidence_file
from certrecon.synthetic import make_id_number
from tests.integration.cycle_support import load, make_people, projection_mismatches
from tests.integration.ledger_support import link_count
from tests.integration.test_roster_import import _certrecon

TODAY = dt.date(2026, 6, 1)
P1 = make_id_number("110105", dt.date(1949, 12, 31), 2)
P2 = make_id_number("110105", dt.date(1955, 6, 1), 11)
P3 = make_id_number("110106", dt.date(1950, 3, 9), 21)


def write(path: Path, *rows: str) -> Path:
    path.write_text("\n".join((",".join(HEADER), *rows)) + "\n", encoding="utf-8")
    return path


GOOD = (
    f"D1,death,{P1},张秀英,2026-02-03,civil_affairs:cremation",
    f"J1,imprisonment,{P2},李建国,2025-11-20,justice:prison",
    f"L1,proof_of_life,{P3},王芳,2026-03-15,transport:rail_travel",
    f"L2,proof_of_life,{P3},王芳,2026-04-02,health:outpatient",
)


@pytest.fixture(params=[csvfile.BATCH_ROWS, 1], ids=["chunks", "line-by-line"])
def chunk_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    rows = int(request.param)
    monkeypatch.setattr(csvfile, "BATCH_ROWS", rows)
    return rows


async def _counts(conn: asyncpg.Connection) -> tuple[int, int]:
    evidence = await conn.fetchval("SELECT count(*) FROM comparison_evidence")
    items = await conn.fetchval("SELECT count(*) FROM evidence_review_item")
    return int(evidence), int(items)


async def test_a_file_is_recorded_with_review_items_for_death_and_prison(
    conn: asyncpg.Connection, tmp_path: Path, chunk_rows: int
) -> None:
    path = write(tmp_path / "feed.csv", *GOOD)
    summary = await import_evidence_file(conn, path, today=TODAY)
    assert (summary.rows, summary.inserted, summary.review_items) == (4, 4, 2)
    # One statement per chunk, each with its ledger entry: the chunks really were chunks.
    statements = await conn.fetchval(
        "SELECT count(*) FROM ledger_entry WHERE table_name = 'comparison_evidence'"
    )
    assert statements == (4 if chunk_rows == 1 else 1)
    rows = await conn.fetch(
        "SELECT e.evidence_id, e.kind, e.file_line, e.via, i.evidence_ref IS NOT NULL AS item"
        " FROM comparison_evidence e"
        " LEFT JOIN evidence_review_item i ON i.evidence_ref = e.id ORDER BY e.id"
    )
    assert [tuple(r) for r in rows] == [
        ("D1", "death", 2, "file", True),
        ("J1", "imprisonment", 3, "file", True),
        ("L1", "proof_of_life", 4, "file", False),
        ("L2", "proof_of_life", 5, "file", False),
    ]


@pytest.mark.usefixtures("chunk_rows")
async def test_importing_the_same_file_again_changes_nothing(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    path = write(tmp_path / "feed.csv", *GOOD)
    await import_evidence_file(conn, path, today=TODAY)
    before = (await _counts(conn), await link_count(conn))
    # An identical repeat inside one file is no problem either.
    again = write(tmp_path / "again.csv", *GOOD, GOOD[0])
    summary = await import_evidence_file(conn, again, today=TODAY)
    assert (summary.rows, summary.inserted, summary.unchanged) == (5, 0, 5)
    assert (await _counts(conn), await link_count(conn)) == before


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            (*GOOD, f"D9,death,{P1},张秀英,2026-13-01,civil_affairs:cremation"),
            (6, "event_date '2026-13-01' is not a valid calendar date"),
        ),
        ((*GOOD, f"D9,burial,{P1},张秀英,2026-01-01,x"), (6, "kind 'burial' is not one of")),
        (
            (*GOOD, f"D9,death,{P1},张秀英,2026-06-02,x"),
            (6, "event_date is after the day it was received"),
        ),
        (
            (*GOOD, f"L1,proof_of_life,{P3},王芳,2026-03-16,transport:rail_travel"),
            (6, "evidence_id repeats line 4 of the same source with other content"),
        ),
    ],
    ids=["bad-date", "bad-kind", "future", "conflicting-repeat"],
)
@pytest.mark.usefixtures("chunk_rows")
async def test_one_bad_row_rejects_the_whole_file(
    conn: asyncpg.Connection,
    tmp_path: Path,
    rows: tuple[str, ...],
    expected: tuple[int, str],
) -> None:
    path = write(tmp_path / "feed.csv", *rows)
    with pytest.raises(EvidenceImportError) as caught:
        await import_evidence_file(conn, path, today=TODAY)
    line, text = expected
    assert any(n == line and text in p for n, p in caught.value.problems), caught.value.problems
    assert await _counts(conn) == (0, 0)


@pytest.mark.usefixtures("chunk_rows")
async def test_a_row_contradicting_recorded_evidence_rejects_the_file(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await import_evidence_file(conn, write(tmp_path / "a.csv", *GOOD), today=TODAY)
    before = await _counts(conn)
    changed = f"D1,death,{P1},张秀英,2026-02-04,civil_affairs:cremation"
    new = f"L3,proof_of_life,{P1},张秀英,2026-04-02,health:outpatient"
    with pytest.raises(EvidenceImportError) as caught:
        await import_evidence_file(conn, write(tmp_path / "b.csv", new, changed), today=TODAY)
    assert caught.value.problems == [
        (3, "evidence_id of this source is already recorded with other content")
    ]
    assert await _counts(conn) == before
    # The same evidence_id from another source is another piece of evidence.
    other = f"D1,death,{P1},张秀英,2026-02-04,health:death_certificate"
    summary = await import_evidence_file(conn, write(tmp_path / "c.csv", other), today=TODAY)
    assert summary.inserted == 1


@pytest.mark.parametrize(
    "evidence_id",
    [
        "E1",
        "a" * 64,
        "a" * 65,
        "",
        "A-Z_a.z:0-9",
        "E 1",
        "E1\n",
        "\nE1",
        "E/1",
        "Ｅ1",  # full-width letter
        "é1",
        "张1",
        "E1*",
        "[E1]",
        "E^1",
    ],
)
async def test_the_database_refuses_exactly_the_evidence_ids_the_contract_refuses(
    conn: asyncpg.Connection, evidence_id: str
) -> None:
    insert = (
        "INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name,"
        " event_date, via, file_name, file_sha256, file_line)"
        " VALUES ('s', $1, 'death', $2, '张秀英', '2026-01-01', 'file', 'f.csv', '\\x00', 2)"
    )
    if is_evidence_id(evidence_id):
        await conn.execute(insert, evidence_id, P1)
        assert await conn.fetchval("SELECT count(*) FROM comparison_evidence") == 1
    else:
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await conn.execute(insert, evidence_id, P1)
        assert refused.value.constraint_name == "comparison_evidence_evidence_id_check"


async def test_cli_reports_line_numbers_without_personal_data(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    bad = write(tmp_path / "bad.csv", *GOOD, f"X1,death,{P1}0,张秀英,2026-01-01,x")
    code, out, err = await _certrecon(fresh_database, tmp_path, "evidence", "import", str(bad))
    assert code == 2
    assert "nothing was imported" in err
    assert "line 6: id_number" in err
    assert P1 not in err + out
    assert "张秀英" not in err + out
    assert await _counts(conn) == (0, 0)

    good = write(tmp_path / "good.csv", *GOOD)
    code, out, err = await _certrecon(fresh_database, tmp_path, "evidence", "import", str(good))
    assert code == 0, err
    assert "4 rows" in out
    assert "4 recorded, 0 already recorded, 2 review item(s) opened" in out
    code, out, err = await _certrecon(fresh_database, tmp_path, "evidence", "import", str(good))
    assert code == 0, err
    assert "0 recorded, 4 already recorded" in out


@pytest.mark.usefixtures("chunk_rows")
async def test_the_cycle_projection_equals_the_ledger_after_an_import(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    # People with facts already recorded (proof of life among them), then a file adding
    # proof of life for some (twice for a few, on one day from two sources), death,
    # imprisonment with and without release, and an identical repeat of a line.
    people = make_people(60, seed=12)
    await load(conn, people)
    day = dt.date(2026, 3, 1)
    rows = []
    for n, p in enumerate(people[:40]):
        rows.append(f"P{n},proof_of_life,{p.id_number},{p.name},{day},transport:rail_travel")
        if n % 4 == 0:
            rows.append(f"P{n},proof_of_life,{p.id_number},{p.name},{day},health:outpatient")
            rows.append(f"Q{n},proof_of_life,{p.id_number},{p.name},2026-05-02,health:outpatient")
    for n, p in enumerate(people[40:46]):
        rows.append(f"D{n},death,{p.id_number},{p.name},2026-02-0{n + 1},civil_affairs:cremation")
    for n, p in enumerate(people[46:50]):
        rows.append(f"J{n},imprisonment,{p.id_number},{p.name},2025-10-0{n + 1},justice:prison")
        if n % 2 == 0:
            rows.append(f"R{n},release,{p.id_number},{p.name},2026-04-0{n + 1},justice:release")
    rows.append(rows[0])
    summary = await import_evidence_file(conn, write(tmp_path / "feed.csv", *rows), today=TODAY)
    assert (summary.rows, summary.inserted, summary.review_items) == (
        len(rows),
        len(rows) - 1,
        10,
    )
    # Of identical lines, the first is the one recorded.
    assert (
        await conn.fetchval(
            "SELECT file_line FROM comparison_evidence WHERE evidence_id = 'P0'"
            " AND source = 'transport:rail_travel'"
        )
        == 2
    )
    assert await projection_mismatches(conn) == []
    # Nothing of the import's deferral is left for later writers of the same transaction
    # or session: topic-style writes project at once again.
    await conn.execute(
        "INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name,"
        " event_date, via, file_name, file_sha256, file_line)"
        " VALUES ('s', 'E1', 'proof_of_life', $1, $2, '2026-05-20', 'file', 'f.csv', '\\x00', 2)",
        people[50].id_number,
        people[50].name,
    )
    assert await projection_mismatches(conn) == []


_ONE_EVIDENCE = (
    "INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name, event_date,"
    " via, file_name, file_sha256, file_line)"
    " VALUES ('s', 'E1', 'proof_of_life', $1, '王芳', '2026-05-20', 'file', 'f.csv', '\\x00', 2)"
)
_DEFER = "SELECT set_config('certrecon.evidence_import', pg_current_xact_id()::text, true)"


async def test_a_deferred_projection_cannot_be_left_unmerged(conn: asyncpg.Connection) -> None:
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute(_DEFER)
    await conn.execute(_ONE_EVIDENCE, P3)
    with pytest.raises(asyncpg.RaiseError, match="deferred and never merged"):
        await transaction.commit()
    assert await _counts(conn) == (0, 0)


async def test_the_deferred_merge_runs_once_and_only_when_deferred(
    conn: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.RaiseError, match="defers no evidence projection"):
        await conn.execute("SELECT cycle_on_evidence_import()")
    async with conn.transaction():
        await conn.execute(_DEFER)
        await conn.execute(_ONE_EVIDENCE, P3)
        assert await conn.fetchval("SELECT count(*) FROM cycle_person") == 0
        assert await conn.fetchval("SELECT cycle_on_evidence_import()") == 1
        with pytest.raises(asyncpg.RaiseError, match="defers no evidence projection"):
            async with conn.transaction():
                await conn.execute("SELECT cycle_on_evidence_import()")
    assert await conn.fetchval("SELECT proof_days FROM cycle_person WHERE id_number = $1", P3) == [
        dt.date(2026, 5, 20)
    ]
    assert await projection_mismatches(conn) == []


async def test_copy_data_is_read_back_as_the_rows_it_encodes(conn: asyncpg.Connection) -> None:
    rows = [
        (2, "transport:rail_travel", "E1", "proof_of_life", P3, "王芳", dt.date(2026, 3, 15)),
        (3, "health:outpatient", "E2", "death", P1, "张秀英", dt.date(2000, 1, 1)),
        (2**40, "transport:rail_travel", "E3", "proof_of_life", P3, "王芳", dt.date(1999, 12, 31)),
        (5, "s", "a" * 64, "release", P2, "Zoë O'Brien-李", dt.date(1900, 2, 28)),
    ]
    await conn.execute(
        "CREATE TEMPORARY TABLE copied (line bigint, source text, evidence_id text, kind text,"
        " id_number text, name text, event_date date)"
    )
    status = await conn.copy_to_table(
        "copied",
        source=io.BytesIO(copy_data(rows)),
        columns=("line", "source", "evidence_id", "kind", "id_number", "name", "event_date"),
        format="binary",
    )
    assert status == "COPY 4"
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM copied ORDER BY line")] == sorted(
        rows
    )
    assert copy_data([]) == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"


@pytest.mark.usefixtures("chunk_rows")
async def test_a_line_contradicting_an_earlier_line_is_named_once(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    # The earlier line may already be recorded by an earlier chunk: that is this file's own
    # evidence, not evidence recorded before it.
    changed = f"L1,proof_of_life,{P3},王芳,2026-03-16,transport:rail_travel"
    with pytest.raises(EvidenceImportError) as caught:
        await import_evidence_file(conn, write(tmp_path / "f.csv", *GOOD, changed), today=TODAY)
    assert caught.value.problems == [
        (6, "evidence_id repeats line 4 of the same source with other content")
    ]
    assert await _counts(conn) == (0, 0)
