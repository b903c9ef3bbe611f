"""``certrecon certify assisted`` and ``certrecon cycle …`` as staff run them."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import stat
from pathlib import Path

import asyncpg

from certrecon.domain import RosterRecord, RosterStatus
from certrecon.store.roster import import_roster
from certrecon.synthetic import make_id_number
from tests.support import run_certrecon

P_DUE = make_id_number("110105", dt.date(1949, 12, 31), 2)
P_PROOF = make_id_number("110105", dt.date(1950, 1, 1), 12)
P_NEW = make_id_number("110108", dt.date(1951, 2, 3), 22)
P_GONE = make_id_number("110108", dt.date(1952, 3, 4), 32)


def _person(id_number: str, status: RosterStatus, paid: dt.date, region: str) -> RosterRecord:
    return RosterRecord(
        id_number=id_number,
        name="=HYPERLINK(1)" if id_number == P_DUE else "王芳",
        benefit_type="basic_pension",
        status=status,
        insured_region=region,
        first_paid_on=paid,
    )


ROSTER = [
    _person(P_DUE, RosterStatus.ACTIVE, dt.date(2015, 3, 1), "110105"),
    _person(P_PROOF, RosterStatus.SUSPENDED, dt.date(2016, 3, 1), "110105"),
    _person(P_NEW, RosterStatus.ACTIVE, dt.date(2026, 2, 1), "110108"),
    _person(P_GONE, RosterStatus.TERMINATED, dt.date(2010, 3, 1), "110108"),
]


async def certrecon(
    dsn: str, data_dir: Path, *args: str, cycle: str = "calendar_year"
) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "CERTRECON_DATABASE_URL": dsn,
        "CERTRECON_DATA_DIR": str(data_dir),
        "CERTRECON_CYCLE": cycle,
    }
    return await run_certrecon(env, *args)


async def _setup(conn: asyncpg.Connection) -> None:
    await import_roster(conn, ROSTER)
    await conn.execute(
        """
        INSERT INTO comparison_evidence (source, evidence_id, kind, id_number, name,
                                         event_date, via, file_name, file_sha256, file_line)
        VALUES ('health:outpatient', 'H1', 'proof_of_life', $1, '王芳', '2026-04-02', 'file',
                'feed.csv', '\\x00', 2)
        """,
        P_PROOF,
    )


async def test_assisted_certification_is_recorded_with_staff_and_login(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await _setup(conn)
    code, out, err = await certrecon(
        fresh_database,
        tmp_path,
        "certify",
        "assisted",
        P_DUE.lower() if P_DUE.endswith("X") else P_DUE,
        "--how",
        "home_visit",
        "--by",
        "s17",
        "--at",
        "2026-05-06T10:00:00+08:00",
        "--note",
        "visited at home",
    )
    assert code == 0, err
    assert "home_visit on 2026-05-06 by staff:s17" in out
    assert P_DUE not in out
    row = await conn.fetchrow("SELECT * FROM assisted_certification")
    assert row is not None
    assert (row["id_number"], row["how"], row["local_date"], row["decided_by"]) == (
        P_DUE,
        "home_visit",
        dt.date(2026, 5, 6),
        "staff:s17",
    )
    assert row["login"] == await conn.fetchval("SELECT session_user")
    assert row["note"] == "visited at home"

    # A suspended person certified this way gets their payments resumed, once.
    for _ in range(2):
        code, out, err = await certrecon(
            fresh_database, tmp_path, "certify", "assisted", P_PROOF,
            "--how", "embassy_papers", "--by", "s17", "--at", "2026-05-07T10:00:00+08:00",
        )  # fmt: skip
        assert code == 0, err
    payload = await conn.fetchval(
        "SELECT payload FROM outbox WHERE kind = 'benefit_action' AND message_id = $1",
        f"{P_PROOF}:2026:resume",
    )
    resume = json.loads(payload)
    assert (resume["basis"], resume["decided_by"]) == ("assisted:embassy_papers", "staff:s17")
    assert await conn.fetchval("SELECT count(*) FROM benefit_action") == 1


async def test_assisted_certification_out_of_scope_is_refused(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await _setup(conn)
    for id_number, why in (
        (P_GONE, "the benefit is terminated"),
        (make_id_number("110105", dt.date(1960, 1, 1), 42), "not on the roster"),
    ):
        code, out, err = await certrecon(
            fresh_database,
            tmp_path,
            "certify",
            "assisted",
            id_number,
            "--how",
            "offline",
            "--by",
            "s17",
        )
        assert code == 2, out + err
        assert why in err
        assert id_number not in err
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    code, _, err = await certrecon(
        fresh_database, tmp_path, "certify", "assisted", P_DUE, "--how", "offline",
        "--by", "s17", "--at", future,
    )  # fmt: skip
    assert code == 2
    assert "in the future" in err
    assert await conn.fetchval("SELECT count(*) FROM assisted_certification") == 0


async def test_cycle_status_json_counts_every_status(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await _setup(conn)
    code, out, err = await certrecon(
        fresh_database, tmp_path, "cycle", "status", "--year", "2026", "--json"
    )
    assert code == 0, err
    zeros = dict.fromkeys(
        [
            "certified",
            "confirmed_by_evidence",
            "pending_review",
            "eligibility_lost",
            "not_certified",
        ],
        0,
    )
    assert json.loads(out) == {
        "year": 2026,
        "in_scope": 2,
        "by_status": {**zeros, "confirmed_by_evidence": 1, "not_certified": 1},
        "by_district": {"110105": {**zeros, "confirmed_by_evidence": 1, "not_certified": 1}},
    }
    code, out, err = await certrecon(fresh_database, tmp_path, "cycle", "status", "--year", "2026")
    assert code == 0, err
    assert "In scope: 2" in out
    assert "110105" in out


async def test_outreach_file_is_owner_only_and_lists_who_is_due(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await _setup(conn)
    out_file = tmp_path / "outreach.csv"
    out_file.write_text("old")
    out_file.chmod(0o644)
    code, out, err = await certrecon(
        fresh_database, tmp_path, "cycle", "outreach", "--year", "2026", "--out", str(out_file)
    )
    assert code == 0, err
    assert "1 people written" in out
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    with out_file.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["id_number", "name", "insured_region", "benefit_type", "status", "last_certified_on"],
        [P_DUE, "'=HYPERLINK(1)", "110105", "basic_pension", "not_certified", ""],
    ]
    assert P_DUE not in out + err

    candidates = tmp_path / "candidates.csv"
    code, out, err = await certrecon(
        fresh_database, tmp_path, "cycle", "suspend-candidates", "--year", "2026",
        "--as-of", "2026-11-30", "--out", str(candidates),
    )  # fmt: skip
    assert code == 0, err
    assert "1 people written" in out
    assert "nothing was suspended" in out
    assert stat.S_IMODE(candidates.stat().st_mode) == 0o600


async def test_rolling_mode_reminds_before_expiry(
    fresh_database: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await _setup(conn)
    out_file = tmp_path / "remind.csv"
    args = ("cycle", "outreach", "--as-of", "2027-03-15", "--out", str(out_file))
    code, out, err = await certrecon(fresh_database, tmp_path, *args, cycle="rolling_12_months")
    assert code == 0, err
    # Never certified: P_DUE, and P_NEW since 2027-02-01 (first payment + 12 months).
    assert "2 people written" in out
    code, out, err = await certrecon(
        fresh_database,
        tmp_path,
        *args,
        "--expiring-within",
        "30",
        cycle="rolling_12_months",
    )
    assert code == 0, err
    with out_file.open(encoding="utf-8", newline="") as f:
        listed = {row["id_number"]: row for row in csv.DictReader(f)}
    # P_PROOF's proof of life of 2026-04-02 expires on 2027-04-02: within 30 days.
    assert set(listed) == {P_DUE, P_NEW, P_PROOF}
    assert listed[P_PROOF]["status"] == "confirmed_by_evidence"
    code, _, err = await certrecon(fresh_database, tmp_path, *args, "--expiring-within", "30")
    assert code == 2
    assert "rolling_12_months" in err
