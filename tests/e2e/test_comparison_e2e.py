"""Comparison evidence over the wire: the worker records it with its batch, holds the
certifications of a person with open death evidence, dead-letters bad or contradicting
messages, and a redelivery changes nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from certrecon.cycle import CycleMode, Period
from certrecon.domain import CST, Channel, RosterStatus
from certrecon.store import db
from certrecon.store.cycle import person_rows
from certrecon.store.roster import import_roster
from tests.support import (
    certification,
    create_topics,
    eligible_roster,
    encode,
    isolated_settings,
    produce,
    read_topic,
    run_certrecon,
    running_worker,
    settings_env,
    wait_for,
)

NOW = dt.datetime.now(dt.UTC)


def evidence(evidence_id: str, kind: str, person: Any, day: dt.date, **changes: Any) -> bytes:
    body = {
        "schema_version": 1,
        "evidence_id": evidence_id,
        "kind": kind,
        "subject": {
            "id_type": "resident_id",
            "id_number": person.id_number,
            "name": person.name,
        },
        "event_date": day.isoformat(),
        "source": "civil_affairs:cremation" if kind == "death" else "transport:rail_travel",
        "observed_at": (NOW - dt.timedelta(hours=3)).isoformat(),
        **changes,
    }
    return encode(body)


async def test_evidence_is_recorded_and_holds_a_later_certification(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    dead_person, alive, other = eligible_roster(3, seed=31)
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, [dead_person, alive, other])
        today = NOW.date()
        topic = settings.comparison_topic
        first = [
            (topic, dead_person.id_number.encode(),
             evidence("MZ-1", "death", dead_person, today - dt.timedelta(days=5))),
            (topic, alive.id_number.encode(),
             evidence("RL-1", "proof_of_life", alive, today - dt.timedelta(days=2))),
            # Invalid: a future event date.
            (topic, b"x", evidence("RL-2", "proof_of_life", other, today + dt.timedelta(days=3))),
        ]  # fmt: skip
        await produce(kafka_bootstrap, first)
        when = NOW - dt.timedelta(hours=1)
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await wait_for(conn, "SELECT count(*) FROM comparison_evidence", lambda n: n == 2)
            # The same messages again (a redelivery), and one contradicting the death record.
            await produce(kafka_bootstrap, first[:2])
            contradicting = evidence("MZ-1", "death", dead_person, today - dt.timedelta(days=6))
            await produce(kafka_bootstrap, [(topic, b"y", contradicting)])
            dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, at_least=2)
            # A certification of the person with open death evidence waits for staff; the
            # other person's is answered.
            certs = [
                certification("H1", Channel.APP_12333, dead_person, when),
                certification("H2", Channel.APP_12333, alive, when),
            ]
            await produce(
                kafka_bootstrap,
                [(settings.channel_topics[Channel.APP_12333], b"k", encode(c)) for c in certs],
            )
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=1)
            await wait_for(
                conn, "SELECT count(*) FROM decision WHERE certification_id = 'H1'", bool
            )

        assert await conn.fetchval("SELECT count(*) FROM comparison_evidence") == 2
        row = await conn.fetchrow(
            "SELECT via, topic, raw IS NOT NULL AS raw FROM comparison_evidence"
            " WHERE evidence_id = 'MZ-1'"
        )
        assert row is not None
        assert (row["via"], row["topic"], row["raw"]) == ("topic", topic, True)
        assert await conn.fetchval("SELECT count(*) FROM evidence_review_item") == 1

        letters = [json.loads(r.value) for r in dead]
        assert len(letters) == 2
        errors = " ".join(e for d in letters for e in d["errors"])
        assert "event_date" in errors
        assert "already received with different content" in errors

        outcomes = {json.loads(r.value)["certification_id"] for r in results}
        assert outcomes == {"H2"}
        held = await conn.fetchrow(
            "SELECT review_reason, evidence FROM decision WHERE certification_id = 'H1'"
        )
        assert held is not None
        assert held["review_reason"] == "comparison_evidence"
        recorded = held["evidence"]["comparison_evidence"]
        assert [(e["evidence_id"], e["state"]) for e in recorded] == [("MZ-1", "open")]

        period = Period.of(CycleMode.CALENDAR_YEAR, today.year, today)
        judged = await person_rows(conn, period, [dead_person.id_number, alive.id_number])
        assert judged[dead_person.id_number].status.value == "pending_review"
        assert judged[alive.id_number].status.value == "certified"
        await _ledger_intact(settings, fresh_database, kafka_bootstrap)
    finally:
        await conn.close()


async def _cli(settings: Any, dsn: str, bootstrap: str, *args: str) -> tuple[int, str, str]:
    env = settings_env(settings, dsn, bootstrap)
    return await run_certrecon(env, *args)


async def _ledger_intact(settings: Any, dsn: str, bootstrap: str) -> None:
    """``certrecon audit verify``: every row the worker and staff wrote is accounted for."""
    code, out, err = await _cli(settings, dsn, bootstrap, "audit", "verify", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["intact"] is True, report


async def test_staff_verdicts_release_held_certifications_and_stop_payments(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    wrongly_dead, really_dead = eligible_roster(2, seed=32)
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, [wrongly_dead, really_dead])
        today = NOW.date()
        topic = settings.comparison_topic
        died = today - dt.timedelta(days=20)
        await produce(
            kafka_bootstrap,
            [
                (topic, b"a", evidence("MZ-7", "death", wrongly_dead, died)),
                (topic, b"b", evidence("MZ-8", "death", really_dead, died)),
            ],
        )
        when = NOW - dt.timedelta(hours=1)
        app = settings.channel_topics[Channel.APP_12333]
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await wait_for(conn, "SELECT count(*) FROM evidence_review_item", lambda n: n == 2)
            held = [
                certification("W1", Channel.APP_12333, wrongly_dead, when),
                certification("W2", Channel.APP_12333, really_dead, when),
            ]
            await produce(kafka_bootstrap, [(app, b"k", encode(c)) for c in held])
            await wait_for(conn, "SELECT count(*) FROM decision", lambda n: n == 2)
            assert await conn.fetchval("SELECT count(*) FROM result") == 0

            code, out, err = await _cli(
                settings, fresh_database, kafka_bootstrap, "review", "list", "--json"
            )
            assert code == 0, err
            items = {i["item"]: i for i in json.loads(out) if "item" in i}
            assert len(items) == 2
            assert wrongly_dead.id_number not in out
            refs = {
                r["evidence_id"]: f"E{r['id']}"
                for r in await conn.fetch("SELECT id, evidence_id FROM comparison_evidence")
            }
            code, out, err = await _cli(
                settings, fresh_database, kafka_bootstrap, "review", "show", refs["MZ-7"]
            )
            assert code == 0, err
            assert "civil_affairs:cremation" in out

            code, out, err = await _cli(
                settings, fresh_database, kafka_bootstrap,
                "review", "decide", refs["MZ-7"], "--outcome", "evidence_rejected",
                "--by", "s3", "--note", "alive, seen at the counter",
            )  # fmt: skip
            assert code == 0, err
            assert "W1 answered: qualified" in out
            code, out, err = await _cli(
                settings, fresh_database, kafka_bootstrap,
                "review", "decide", refs["MZ-8"], "--outcome", "eligibility_lost",
                "--by", "s3", "--effective-date", died.isoformat(),
            )  # fmt: skip
            assert code == 0, err
            assert "W2 answered: eligibility_lost" in out
            assert "benefit action stop queued" in out
            # Decided once: a second verdict is refused and changes nothing.
            code, _, err = await _cli(
                settings, fresh_database, kafka_bootstrap,
                "review", "decide", refs["MZ-8"], "--outcome", "evidence_rejected", "--by", "s4",
            )  # fmt: skip
            assert code == 2
            assert "closed already" in err

            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=2)
            actions = await read_topic(kafka_bootstrap, settings.benefit_action_topic, at_least=1)

        outcome = {json.loads(r.value)["certification_id"]: json.loads(r.value) for r in results}
        assert {k: v["outcome"] for k, v in outcome.items()} == {
            "W1": "qualified",
            "W2": "eligibility_lost",
        }
        assert outcome["W1"]["decided_by"] == "rules"
        (stop,) = [json.loads(a.value) for a in actions]
        assert stop["action"] == "stop"
        assert stop["action_id"] == f"{really_dead.id_number}:{today.year}:stop"
        assert stop["effective_date"] == died.isoformat()
        assert stop["decided_by"] == "staff:s3"
        verdicts = await conn.fetch("SELECT verdict, login FROM evidence_verdict ORDER BY id")
        assert [v["verdict"] for v in verdicts] == ["rejected", "confirmed"]
        assert all(v["login"] for v in verdicts)
        period = Period.of(CycleMode.CALENDAR_YEAR, today.year, today)
        judged = await person_rows(conn, period, [wrongly_dead.id_number, really_dead.id_number])
        assert judged[wrongly_dead.id_number].status.value == "certified"
        assert judged[really_dead.id_number].status.value == "eligibility_lost"
        await _ledger_intact(settings, fresh_database, kafka_bootstrap)
        # Re-derived from the findings each decision recorded, both answers stand.
        code, out, err = await _cli(
            settings, fresh_database, kafka_bootstrap,
            "audit", "replay", "--json",
            "--from", (when - dt.timedelta(hours=1)).isoformat(),
            "--to", (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat(),
        )  # fmt: skip
        assert code == 0, out + err
        replayed = json.loads(out)
        assert replayed["clean"] is True, replayed
    finally:
        await conn.close()


async def test_a_suspended_person_certifying_twice_gets_one_resume(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    (person,) = eligible_roster(1, seed=33)
    held_since = NOW.date() - dt.timedelta(days=40)
    person = dataclasses.replace(person, status=RosterStatus.SUSPENDED, suspended_on=held_since)
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, [person])
        when = NOW - dt.timedelta(hours=1)
        first = certification("S1", Channel.APP_12333, person, when)
        second = certification("S2", Channel.ESSC, person, when + dt.timedelta(minutes=5))
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await produce(
                kafka_bootstrap,
                [(settings.channel_topics[Channel.APP_12333], b"k", encode(first))],
            )
            await read_topic(kafka_bootstrap, settings.result_topic, at_least=1)
            await produce(
                kafka_bootstrap, [(settings.channel_topics[Channel.ESSC], b"k", encode(second))]
            )
            await read_topic(kafka_bootstrap, settings.result_topic, at_least=2)
            actions = await read_topic(kafka_bootstrap, settings.benefit_action_topic, at_least=1)
        (resume,) = [json.loads(a.value) for a in actions]
        assert resume["action"] == "resume"
        assert resume["action_id"] == f"{person.id_number}:{when.astimezone(CST).year}:resume"
        assert resume["suspended_on"] == held_since.isoformat()
        assert resume["basis"] == "12333"
        assert resume["decided_by"] == "rules"
        assert await conn.fetchval("SELECT count(*) FROM benefit_action") == 1
        await _ledger_intact(settings, fresh_database, kafka_bootstrap)
    finally:
        await conn.close()


def _evidence_file(path: Path, *rows: tuple[str, str, Any, dt.date, str]) -> Path:
    lines = ["evidence_id,kind,id_number,name,event_date,source"]
    lines += [f"{e},{k},{p.id_number},{p.name},{d.isoformat()},{s}" for e, k, p, d, s in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_proof_of_life_from_a_file_resumes_a_suspended_person_once(
    fresh_database: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    suspended, active = eligible_roster(2, seed=34)
    held_since = NOW.date() - dt.timedelta(days=50)
    suspended = dataclasses.replace(
        suspended, status=RosterStatus.SUSPENDED, suspended_on=held_since
    )
    today = NOW.astimezone(CST).date()
    seen = max(today - dt.timedelta(days=2), today.replace(month=1, day=1))
    feed = _evidence_file(
        tmp_path / "rail.csv",
        ("RL-31", "proof_of_life", suspended, seen, "transport:rail_travel"),
        ("RL-32", "proof_of_life", active, seen, "transport:rail_travel"),
    )
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, [suspended, active])
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            code, out, err = await _cli(
                settings, fresh_database, kafka_bootstrap, "evidence", "import", str(feed)
            )
            assert code == 0, out + err
            assert "2 recorded" in out
            assert "payments resume for 1 suspended person(s)" in out
            # The same file again changes nothing and resumes nothing again.
            code, out, err = await _cli(
                settings, fresh_database, kafka_bootstrap, "evidence", "import", str(feed)
            )
            assert code == 0, out + err
            assert "0 recorded, 2 already recorded" in out
            assert "payments resume" not in out
            # The person also certifies through a channel: already resumed, so no second one.
            cert = certification("RS1", Channel.APP_12333, suspended, NOW - dt.timedelta(hours=1))
            app = settings.channel_topics[Channel.APP_12333]
            await produce(kafka_bootstrap, [(app, b"k", encode(cert))])
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=1)
            await wait_for(
                conn,
                "SELECT count(*) FROM outbox o WHERE NOT EXISTS"
                " (SELECT FROM outbox_ack a WHERE a.message_id = o.message_id)",
                lambda n: n == 0,
            )
            actions = await read_topic(kafka_bootstrap, settings.benefit_action_topic, at_least=1)

        assert [json.loads(r.value)["outcome"] for r in results] == ["qualified"]
        (resume,) = [json.loads(a.value) for a in actions]
        assert resume["action"] == "resume"
        assert resume["action_id"] == f"{suspended.id_number}:{seen.year}:resume"
        assert resume["id_number"] == suspended.id_number
        assert resume["suspended_on"] == held_since.isoformat()
        assert resume["basis"] == "proof_of_life"
        assert resume["basis_date"] == seen.isoformat()
        assert resume["decided_by"] == "rules"
        assert await conn.fetchval("SELECT count(*) FROM benefit_action") == 1
        rows = await conn.fetch("SELECT via, file_line FROM comparison_evidence ORDER BY file_line")
        assert [(r["via"], r["file_line"]) for r in rows] == [("file", 2), ("file", 3)]
        period = Period.of(CycleMode.CALENDAR_YEAR, seen.year, seen)
        judged = await person_rows(conn, period, [suspended.id_number, active.id_number])
        assert judged[active.id_number].status.value == "confirmed_by_evidence"
        await _ledger_intact(settings, fresh_database, kafka_bootstrap)
    finally:
        await conn.close()


async def test_a_certification_before_the_death_evidence_stands_one_after_it_waits(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    """Contract 1.1: death evidence opens a person-level review item and the person's
    certifications wait for it like the version-1 death rule; a certification answered
    before the evidence arrived keeps its result (a result is never answered twice with
    other content; only staff correct one, as a new revision)."""
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    (person,) = eligible_roster(1, seed=35)
    today = NOW.astimezone(CST).date()
    died = max(today - dt.timedelta(days=10), today.replace(month=1, day=1))
    app = settings.channel_topics[Channel.APP_12333]
    conn = await db.connect(fresh_database)
    try:
        await import_roster(conn, [person])
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            before = certification("DB1", Channel.APP_12333, person, NOW - dt.timedelta(hours=2))
            await produce(kafka_bootstrap, [(app, b"k", encode(before))])
            first = await read_topic(kafka_bootstrap, settings.result_topic, at_least=1)
            death = evidence("MZ-35", "death", person, died)
            await produce(kafka_bootstrap, [(settings.comparison_topic, b"d", death)])
            await wait_for(conn, "SELECT count(*) FROM evidence_review_item", lambda n: n == 1)
            after = certification("DA1", Channel.APP_12333, person, NOW - dt.timedelta(hours=1))
            await produce(kafka_bootstrap, [(app, b"k", encode(after))])
            await wait_for(
                conn, "SELECT count(*) FROM decision WHERE certification_id = 'DA1'", bool
            )
            # Held: no result for the later one, and the earlier one was not answered again.
            assert await conn.fetchval("SELECT count(*) FROM result") == 1
            ref = await conn.fetchval("SELECT 'E' || id FROM comparison_evidence")
            code, out, err = await _cli(
                settings, fresh_database, kafka_bootstrap,
                "review", "decide", ref, "--outcome", "eligibility_lost", "--by", "s5",
                "--effective-date", died.isoformat(),
            )  # fmt: skip
            assert code == 0, out + err
            assert "DA1 answered: eligibility_lost" in out
            results = await read_topic(kafka_bootstrap, settings.result_topic, at_least=2)

        assert [json.loads(r.value)["certification_id"] for r in first] == ["DB1"]
        published = [json.loads(r.value) for r in results]
        assert [(r["result_id"], r["outcome"]) for r in published] == [
            ("DB1:1", "qualified"),
            ("DA1:1", "eligibility_lost"),
        ]
        # Both by the rules: the held one with the evidence as staff judged it.
        assert [r["decided_by"] for r in published] == ["rules", "rules"]
        # The held one was answered by the staff verdict: its trace names the staff member.
        staff = await conn.fetch("SELECT certification_id, decided_by FROM staff_decision")
        assert [(r["certification_id"], r["decided_by"]) for r in staff] == [("DA1", "staff:s5")]
        decisions = {
            r["certification_id"]: r
            for r in await conn.fetch("SELECT certification_id, rule, evidence FROM decision")
        }
        assert decisions["DB1"]["rule"] == "qualified"
        assert decisions["DB1"]["evidence"]["comparison_evidence"] == []
        assert decisions["DA1"]["rule"] == "evidence_under_review"
        held = decisions["DA1"]["evidence"]["comparison_evidence"]
        assert [(e["evidence_id"], e["state"]) for e in held] == [("MZ-35", "open")]
        revisions = await conn.fetch(
            "SELECT certification_id, revision FROM result ORDER BY certification_id"
        )
        assert [(r["certification_id"], r["revision"]) for r in revisions] == [
            ("DA1", 1),
            ("DB1", 1),
        ]
        await _ledger_intact(settings, fresh_database, kafka_bootstrap)
    finally:
        await conn.close()
