"""``certrecon evidence import``: whole files or nothing, repeats change nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from certrecon.errors import EvidenceImportError
from certrecon.evidence.csvfile import HEADER
from certrecon.evidence.model import is_evidence_id
from certrecon.store.evidence import import_evidence_file
from certrecon.synthetic import make_id_number
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


async def _counts(conn: asyncpg.Connection) -> tuple[int, int]:
    evidence = await conn.fetchval("SELECT count(*) FROM comparison_evidence")
    items = await conn.fetchval("SELECT count(*) FROM evidence_review_item")
    return int(evidence), int(items)


async def test_a_file_is_recorded_with_review_items_for_death_and_prison(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    path = write(tmp_path / "feed.csv", *GOOD)
    summary = await import_evidence_file(conn, path, today=TODAY)
    assert (summary.rows, summary.inserted, summary.review_items) == (4, 4, 2)
    rows = await conn.fetch(
        "SELECT e.evidence_id, e.kind, e.file_line, e.via, i.evidence_ref IS NOT NULL AS item"
        " FROM comparison_evidence e"
        " LEFT JOIN evidence_review_item i ON i.evidence_ref = e.id ORDER BY e.file_line"
    )
    assert [tuple(r) for r in rows] == [
        ("D1", "death", 2, "file", True),
        ("J1", "imprisonment", 3, "file", True),
        ("L1", "proof_of_life", 4, "file", False),
        ("L2", "proof_of_life", 5, "file", False),
    ]


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
