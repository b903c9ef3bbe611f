"""Staff review: a death-record conflict waits for a person, whose decision is the result."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import asyncpg
import pytest
from click.testing import CliRunner

from certrecon.calendar import default_calendar
from certrecon.cli import cli
from certrecon.cli.commands import register
from certrecon.domain import Channel, Outcome
from certrecon.errors import ReviewError
from certrecon.store import db
from certrecon.store.review import DecisionStatus, decide, list_queue, parse_outcome, show
from certrecon.worker.pipeline import Inbound, PipelineConfig, commit_batch, prepare_batch
from tests.integration.sla_support import ID_NUMBER, add_certification, cst

RESULTS = "mohrss.certification-result"
TOPIC_12333 = "mohrss.certification.12333"
CONFIG = PipelineConfig(
    topic_channels={TOPIC_12333: Channel.APP_12333},
    region_prefix="11",
    result_topic=RESULTS,
    dead_letter_topic="certrecon.dead-letter",
    group_id="certrecon",
    working_days=5,
    max_skew=dt.timedelta(minutes=10),
)


def message(certification_id: str, certified_at: str, id_number: str = ID_NUMBER) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "certification_id": certification_id,
            "channel": "12333",
            "subject": {"id_type": "resident_id", "id_number": id_number, "name": "张秀英"},
            "certified_at": certified_at,
            "method": "face",
            "face_match": "pass",
            "on_behalf": None,
            "insured_region": "110105",
        },
        ensure_ascii=False,
    ).encode()


async def add_roster(conn: asyncpg.Connection, *, deceased_on: dt.date | None) -> None:
    await conn.execute(
        """
        INSERT INTO roster_version (id_number, name, benefit_type, status, first_paid_on,
                                    deceased_on, insured_region)
        VALUES ($1, '张秀英', 'basic_pension', 'active', '2010-01-01', $2, '110105')
        """,
        ID_NUMBER,
        deceased_on,
    )


async def consume(conn: asyncpg.Connection, certification_id: str, offset: int = 0) -> None:
    record = Inbound(
        TOPIC_12333,
        0,
        offset,
        int(cst(2024, 6, 3, 10, 1).timestamp() * 1000),
        ID_NUMBER.encode(),
        message(certification_id, "2024-06-03T10:00:00+08:00"),
    )
    batch = await prepare_batch(
        conn, [record], config=CONFIG, calendar=default_calendar(), now=cst(2024, 6, 3, 10, 1)
    )
    await commit_batch(conn, batch, config=CONFIG)


async def results(conn: asyncpg.Connection, certification_id: str) -> list[dict[str, object]]:
    rows = await conn.fetch(
        """
        SELECT o.payload FROM outbox o JOIN result r ON r.result_id = o.message_id
        WHERE r.certification_id = $1 ORDER BY r.revision
        """,
        certification_id,
    )
    return [json.loads(bytes(r["payload"])) for r in rows]


async def test_a_death_conflict_is_decided_by_staff_and_corrected(conn: asyncpg.Connection) -> None:
    await add_roster(conn, deceased_on=dt.date(2024, 5, 1))
    await consume(conn, "D1")
    # No automatic result: the certification waits in the queue.
    assert await results(conn, "D1") == []
    (item,) = await list_queue(conn)
    assert (item.certification_id, item.reason, item.closed_at) == ("D1", "deceased", None)
    assert item.due_date == dt.date(2024, 6, 11)

    first = await decide(
        conn,
        "D1",
        outcome=Outcome.ELIGIBILITY_LOST,
        staff_id="wang01",
        note="民政死亡登记核实",
        now=cst(2024, 6, 4, 9),
        topic=RESULTS,
    )
    assert (first.status, first.revision, first.result_id) == (DecisionStatus.RECORDED, 1, "D1:1")
    (r1,) = await results(conn, "D1")
    assert r1["result_id"] == "D1:1"
    assert r1["outcome"] == "eligibility_lost"
    assert r1["decided_by"] == "staff:wang01"
    assert r1["id_number"] == ID_NUMBER
    assert r1["due_date"] == "2024-06-11"
    assert await list_queue(conn) == []

    # The same decision again (by anyone): nothing new.
    again = await decide(
        conn,
        "D1",
        outcome=Outcome.ELIGIBILITY_LOST,
        staff_id="li02",
        note=None,
        now=cst(2024, 6, 4, 10),
        topic=RESULTS,
    )
    assert (again.status, again.revision) == (DecisionStatus.UNCHANGED, 1)
    assert len(await results(conn, "D1")) == 1

    # The local death record proves wrong: revision 2, revision 1 kept.
    fixed = await decide(
        conn,
        "D1",
        outcome=Outcome.QUALIFIED,
        staff_id="li02",
        note="死亡登记系同名误录",
        now=cst(2024, 6, 5, 9),
        topic=RESULTS,
    )
    assert (fixed.status, fixed.revision, fixed.result_id) == (DecisionStatus.RECORDED, 2, "D1:2")
    assert fixed.previous_outcome is Outcome.ELIGIBILITY_LOST
    r1_again, r2 = await results(conn, "D1")
    assert r1_again == r1
    assert (r2["result_id"], r2["outcome"], r2["decided_by"]) == ("D1:2", "qualified", "staff:li02")

    file = await show(conn, "D1")
    assert [(r.revision, r.outcome, r.decided_by) for r in file.results] == [
        (1, "eligibility_lost", "staff:wang01"),
        (2, "qualified", "staff:li02"),
    ]
    assert file.subject_name == "张秀英"
    assert file.roster is not None
    assert file.roster["deceased_on"] == dt.date(2024, 5, 1)
    assert file.decision is not None
    assert file.decision["review_reason"] == "deceased"
    assert file.review is not None
    assert file.review.outcome == "qualified"
    assert file.note == "死亡登记系同名误录"
    closed = await list_queue(conn, include_closed=True)
    assert [(i.certification_id, i.decided_by) for i in closed] == [("D1", "staff:li02")]


async def test_a_rules_result_is_corrected_as_revision_2(conn: asyncpg.Connection) -> None:
    await add_roster(conn, deceased_on=None)
    await consume(conn, "Q1")
    (r1,) = await results(conn, "Q1")
    assert (r1["result_id"], r1["outcome"], r1["decided_by"]) == ("Q1:1", "qualified", "rules")
    same = await decide(
        conn,
        "Q1",
        outcome=Outcome.QUALIFIED,
        staff_id="wang01",
        note=None,
        now=cst(2024, 6, 4, 9),
        topic=RESULTS,
    )
    assert same.status is DecisionStatus.UNCHANGED
    assert same.previous_decided_by == "rules"
    fixed = await decide(
        conn,
        "Q1",
        outcome=Outcome.ELIGIBILITY_LOST,
        staff_id="wang01",
        note="公安死亡信息",
        now=cst(2024, 6, 4, 9),
        topic=RESULTS,
    )
    assert fixed.result_id == "Q1:2"
    assert [r["result_id"] for r in await results(conn, "Q1")] == ["Q1:1", "Q1:2"]


async def test_errors_are_clear_and_store_nothing(conn: asyncpg.Connection) -> None:
    async def attempt(cid: str, outcome: Outcome = Outcome.QUALIFIED, staff: str = "w1") -> None:
        await decide(
            conn,
            cid,
            outcome=outcome,
            staff_id=staff,
            note=None,
            now=cst(2024, 6, 4),
            topic=RESULTS,
        )

    with pytest.raises(ReviewError, match="unknown certification 'NOPE'"):
        await attempt("NOPE")
    await add_certification(conn, "V1", cst(2024, 6, 3, 10), valid=False)
    with pytest.raises(ReviewError, match="failed validation"):
        await attempt("V1")
    await add_certification(conn, "V2", cst(2024, 6, 3, 10), offset=1)
    with pytest.raises(ReviewError, match="not a staff decision"):
        await attempt("V2", Outcome.INVALID_RECORD)
    with pytest.raises(ReviewError, match="staff ID"):
        await attempt("V2", staff="bad id")
    assert await conn.fetchval("SELECT count(*) FROM result") == 0
    with pytest.raises(ReviewError, match="choose one of eligibility_lost, qualified"):
        parse_outcome("dead")
    assert parse_outcome(" qualified ") is Outcome.QUALIFIED


async def test_two_staff_deciding_at_once_get_distinct_revisions(fresh_database: str) -> None:
    setup = await db.connect(fresh_database)
    try:
        await add_certification(setup, "T1", cst(2024, 6, 3, 10))
    finally:
        await setup.close()
    conns = [await db.connect(fresh_database) for _ in range(4)]
    outcomes = [
        Outcome.QUALIFIED,
        Outcome.ELIGIBILITY_LOST,
        Outcome.NOT_IN_SCOPE,
        Outcome.IDENTITY_MISMATCH,
    ]
    try:
        decisions = await asyncio.gather(
            *(
                decide(
                    c,
                    "T1",
                    outcome=o,
                    staff_id=f"s{i}",
                    note=None,
                    now=cst(2024, 6, 4),
                    topic=RESULTS,
                )
                for i, (c, o) in enumerate(zip(conns, outcomes, strict=True))
            )
        )
        assert sorted(d.revision for d in decisions) == [1, 2, 3, 4]
        revisions = await conns[0].fetch("SELECT revision FROM result WHERE certification_id='T1'")
        assert sorted(r["revision"] for r in revisions) == [1, 2, 3, 4]
    finally:
        for c in conns:
            await c.close()


def test_the_review_commands(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def setup() -> None:
        conn = await db.connect(fresh_database)
        try:
            await add_roster(conn, deceased_on=dt.date(2024, 5, 1))
            await consume(conn, "D9")
        finally:
            await conn.close()

    asyncio.run(setup())
    monkeypatch.setenv("CERTRECON_DATABASE_URL", fresh_database)
    register(cli)
    runner = CliRunner()

    listed = runner.invoke(cli, ["review", "list"])
    assert listed.exit_code == 0, listed.output
    assert "D9" in listed.output
    assert ID_NUMBER not in listed.output
    assert "110105********002X" in listed.output
    as_json = runner.invoke(cli, ["review", "list", "--json"])
    (entry,) = json.loads(as_json.output)
    assert entry["certification_id"] == "D9"
    assert entry["id_number"] == "110105********002X"
    assert entry["deadline"] == "2024-06-12T00:00:00+08:00"

    shown = runner.invoke(cli, ["review", "show", "D9"])
    assert shown.exit_code == 0, shown.output
    assert ID_NUMBER in shown.output
    assert "张秀英" in shown.output

    decided = runner.invoke(
        cli,
        [
            "review",
            "decide",
            "D9",
            "--outcome",
            "eligibility_lost",
            "--by",
            "wang01",
            "--note",
            "核实",
        ],
    )
    assert decided.exit_code == 0, decided.output
    assert "D9:1" in decided.output
    again = runner.invoke(
        cli, ["review", "decide", "D9", "--outcome", "eligibility_lost", "--by", "wang01"]
    )
    assert again.exit_code == 0
    assert "no change" in again.output

    unknown = runner.invoke(
        cli, ["review", "decide", "NOPE", "--outcome", "qualified", "--by", "wang01"]
    )
    assert unknown.exit_code != 0
    assert "unknown certification 'NOPE'" in unknown.output
    assert "Traceback" not in unknown.output
