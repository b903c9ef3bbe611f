"""``certrecon audit replay`` against a ledger the real worker wrote and the real topics.

One scenario (module scope) runs the worker over a clean group of certifications and a
group that is then made to show every discrepancy kind, one certification per kind; the
replays run as a login that holds only ``certrecon_auditor``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from click.testing import CliRunner, Result

from certrecon.calendar import default_calendar
from certrecon.cli import cli
from certrecon.cli.commands import register
from certrecon.domain import CST, Channel, RosterStatus
from certrecon.errors import CertreconError
from certrecon.replay import run as run_module
from certrecon.replay.pool import Source, snapshot_connection
from certrecon.replay.report import check_manifest
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.store.roster import import_roster
from certrecon.worker.pipeline import Inbound, PipelineConfig, commit_batch, prepare_batch
from tests.conftest import _ensure_template, _temporary_database
from tests.e2e.test_roles import dsn_as
from tests.support import (
    certification,
    create_topics,
    eligible_roster,
    encode,
    isolated_settings,
    produce,
    read_topic,
    running_worker,
    settings_env,
    wait_for,
)

OLD = dt.datetime(2024, 6, 3, 10, 0, tzinfo=CST)
"""A certification date whose deadline passed long ago."""

register(cli)


@dataclasses.dataclass
class Scenario:
    settings: Settings
    dsn: str
    auditor: str
    bootstrap: str
    clean_window: tuple[str, str]
    problem_window: tuple[str, str]
    owner: asyncpg.Connection
    changed_person: str


def _instant(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


async def _login(server: str, role: str) -> str:
    name = f"t_{role.removeprefix('certrecon_')}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE {role}')
    finally:
        await admin.close()
    return name


async def _tamper(owner: asyncpg.Connection, table: str, statement: str) -> None:
    """What a superuser can do: lift the refusal trigger, change a row, put it back."""
    async with owner.transaction():
        await owner.execute(f"ALTER TABLE {table} DISABLE TRIGGER ledger_refuse_row")
        assert await owner.execute(statement) == "UPDATE 1"
        await owner.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER ledger_refuse_row")


async def _record_of(bootstrap: str, topic: str, value: bytes) -> Inbound:
    for m in await read_topic(bootstrap, topic, at_least=1):
        if m.value == value:
            return Inbound(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)
    raise AssertionError("record not found")


async def _drop_role(pg_server: str, name: str) -> None:
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="module")
async def scenario(pg_server: str, kafka_bootstrap: str) -> AsyncIterator[Scenario]:
    template = await _ensure_template(pg_server)
    async with _temporary_database(pg_server, "r", template) as dsn:
        auditor_name = await _login(pg_server, "certrecon_auditor")
        owner = await db.connect(dsn)
        try:
            yield await _build(dsn, dsn_as(dsn, auditor_name), kafka_bootstrap, owner)
        finally:
            await owner.close()
            await _drop_role(pg_server, auditor_name)


async def _build(dsn: str, auditor: str, bootstrap: str, owner: asyncpg.Connection) -> Scenario:
    settings = isolated_settings()
    await create_topics(settings, bootstrap)
    people = eligible_roster(20, seed=77)
    people[10] = dataclasses.replace(people[10], deceased_on=dt.date(2024, 1, 1))
    await import_roster(owner, people)
    topics = settings.channel_topics
    channels = list(Channel)
    now = dt.datetime.now(dt.UTC)

    def cert(
        cid: str, i: int, when: dt.datetime = now - dt.timedelta(hours=1), **changes: Any
    ) -> tuple[str, bytes, bytes]:
        channel = channels[i % 4]
        body = encode(certification(cid, channel, people[i], when, **changes))
        return (topics[channel], people[i].id_number.encode(), body)

    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    clean = [cert(f"C{i}", i) for i in range(4)]
    clean.append(cert("INV1", 4, face_match="maybe"))
    clean.append((topics[Channel.ESSC], b"k", b"{not json"))
    clean.append(clean[0])  # a redelivery of the same bytes
    await produce(bootstrap, clean)
    await asyncio.sleep(0.05)
    middle = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    problems = [
        cert("TDEC", 5),
        cert("TBYT", 6),
        cert("TVAL", 7),
        cert("TDUE", 8),
        cert("TPUB", 9),
        cert("NORES", 10, OLD),
        cert("TCON", 11),
        cert("LATE", 12, OLD),
    ]
    await produce(bootstrap, problems)
    async with running_worker(settings, dsn, bootstrap):
        await wait_for(owner, "SELECT count(*) FROM certification", lambda n: n == 13)
        await wait_for(owner, "SELECT count(*) FROM certification_return", lambda n: n == 12)
        await wait_for(
            owner,
            "SELECT count(*) FROM outbox o WHERE kind <> 'sla_alert' AND NOT EXISTS "
            "(SELECT 1 FROM outbox_ack a WHERE a.message_id = o.message_id)",
            lambda n: n == 0,
        )
    end = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    return Scenario(
        settings=settings,
        dsn=dsn,
        auditor=auditor,
        bootstrap=bootstrap,
        clean_window=(_instant(start), _instant(middle)),
        problem_window=(_instant(middle), _instant(end)),
        owner=owner,
        changed_person=people[1].id_number,
    )


def _replay(
    s: Scenario, window: tuple[str, str], *extra: str, report: Path | None = None
) -> Result:
    env = settings_env(s.settings, s.auditor, s.bootstrap)
    args = ["audit", "replay", "--from", window[0], "--to", window[1], "--json", *extra]
    if report is not None:
        args += ["--report", str(report)]
    return CliRunner().invoke(cli, args, env=env)


async def _table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    names = await conn.fetch(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
    )
    return {
        r["relname"]: await conn.fetchval(f'SELECT count(*) FROM "{r["relname"]}"') for r in names
    }


async def _broker_state(s: Scenario) -> tuple[list[Any], dict[TopicPartition, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap)
    await admin.start()
    try:
        groups = sorted(g[0] for g in await admin.list_consumer_groups())
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = await consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in sorted(topics)
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
        while any(consumer.highwater(tp) is None for tp in tps):
            await consumer.getmany(timeout_ms=200)
        return groups, {tp: max(ends[tp], consumer.highwater(tp) or 0) for tp in tps}
    finally:
        await consumer.stop()


def _same_report(one: Path, other: Path) -> None:
    """The same summary, and the same lines (partitions' chunks arrive in the order the
    broker's fetches complete, so lines of different partitions may interleave otherwise)."""
    assert (one / "summary.json").read_bytes() == (other / "summary.json").read_bytes()
    for name in ("items.jsonl", "timeliness.csv"):
        lines = [sorted((d / name).read_text().splitlines()) for d in (one, other)]
        assert lines[0] == lines[1]
        assert len(lines[0]) == len(set(lines[0]))


def _forbid(monkeypatch: pytest.MonkeyPatch) -> None:
    """No producer may even be made, and no consumer may commit."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the replay must not produce or commit")

    monkeypatch.setattr(AIOKafkaProducer, "__init__", refuse)
    monkeypatch.setattr(AIOKafkaConsumer, "commit", refuse)


async def test_a_clean_window_is_clean_and_the_replay_changes_nothing(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = scenario
    rows_before = await _table_counts(s.owner)
    broker_before = await _broker_state(s)
    with monkeypatch.context() as m:
        _forbid(m)
        done = await asyncio.to_thread(_replay, s, s.clean_window, report=tmp_path / "r")
        # Checked by worker processes reading the ledger over their own connections.
        m.setattr(run_module, "processes_for", lambda records: 2)
        pooled = await asyncio.to_thread(_replay, s, s.clean_window, report=tmp_path / "p")
    assert done.exit_code == 0, done.output
    assert pooled.exit_code == 0, pooled.output
    assert pooled.output == done.output
    _same_report(tmp_path / "r", tmp_path / "p")
    summary = json.loads(done.output)
    assert summary["clean"] is True
    assert summary["certifications"] == 6  # C0-C3, INV1, and C0 again
    assert summary["redelivered"] == 1
    assert summary["dead_letters_only"] == 1
    assert summary["on_time"] == 5
    assert await _table_counts(s.owner) == rows_before
    assert await _broker_state(s) == broker_before

    report = tmp_path / "r"
    assert json.loads((report / "summary.json").read_text())["clean"] is True
    assert (report / "items.jsonl").read_text() == ""
    lines = (report / "timeliness.csv").read_text().splitlines()
    assert lines[0] == (
        "certification_id,channel,certified_on,due_date,returned_at,on_time,working_days_late"
    )
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["C0", "C1", "C2", "C3", "INV1"]
    assert all(line.split(",")[5] == "true" for line in lines[1:])
    manifest = json.loads((report / "manifest.json").read_text())
    assert set(manifest["files"]) == {"summary.json", "items.jsonl", "timeliness.csv"}
    assert manifest["ledger_head"]["seq"] > 0
    assert {p["topic"] for p in manifest["partitions"]} >= set(s.settings.channel_topics.values())
    assert check_manifest(report) == []
    with (report / "timeliness.csv").open("a") as f:
        f.write("forged\n")
    assert check_manifest(report) == ["timeliness.csv"]


async def test_every_discrepancy_kind_names_its_certification(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = scenario
    o = s.owner
    topics = s.settings.channel_topics
    people = eligible_roster(20, seed=77)

    # Recorded with the worker's own batch code but never relayed, and one never consumed.
    old = encode(certification("RNP", Channel.ESSC, people[13], OLD))
    garbage = b"\x00 garbage"
    missing = encode(certification("MISS", Channel.ESSC, people[14], dt.datetime.now(CST)))
    await produce(s.bootstrap, [(topics[Channel.ESSC], b"k", v) for v in (old, garbage, missing)])
    records = [await _record_of(s.bootstrap, topics[Channel.ESSC], v) for v in (old, garbage)]
    config = PipelineConfig.from_settings(s.settings)
    batch = await prepare_batch(
        o, records, config=config, calendar=default_calendar(), now=dt.datetime.now(dt.UTC)
    )
    await commit_batch(o, batch, config=config)

    await _tamper(
        o,
        "decision",
        "UPDATE decision SET outcome = 'not_in_scope' WHERE certification_id = 'TDEC'",
    )
    await _tamper(
        o,
        "certification",
        "UPDATE certification SET raw = raw || '\\x20'::bytea WHERE certification_id = 'TBYT'",
    )
    await _tamper(
        o, "certification", "UPDATE certification SET valid = false WHERE certification_id = 'TVAL'"
    )
    await _tamper(
        o,
        "certification",
        "UPDATE certification SET due_date = due_date + 1 WHERE certification_id = 'TDUE'",
    )
    await _tamper(
        o,
        "outbox",
        "UPDATE outbox SET payload = payload || '\\x20'::bytea WHERE message_id = 'TPUB:1'",
    )
    other = {"result_id": "TCON:1", "certification_id": "TCON", "outcome": "not_in_scope"}
    ghost = {"result_id": "GHOST1:1", "certification_id": "GHOST1", "outcome": "qualified"}
    await produce(
        s.bootstrap,
        [
            (s.settings.result_topic, b"k", encode(other)),
            (s.settings.result_topic, b"k", encode(ghost)),
        ],
    )

    done = await asyncio.to_thread(_replay, s, s.problem_window, report=tmp_path / "r")
    assert done.exit_code == 1, done.output
    items = [json.loads(line) for line in (tmp_path / "r" / "items.jsonl").read_text().splitlines()]
    found = sorted((i["certification_id"] or "", i["kind"]) for i in items)
    assert found == sorted(
        [
            ("TDEC", "decision_differs"),
            ("TBYT", "bytes_differ"),
            ("TVAL", "validation_differs"),
            ("TDUE", "due_date_differs"),
            ("TPUB", "published_differs"),
            ("TCON", "conflicting_results"),
            ("GHOST1", "orphan_result"),
            ("LATE", "late"),
            ("NORES", "no_result"),
            ("RNP", "result_not_published"),
            ("", "missing_dead_letter"),
            ("MISS", "missing_in_ledger"),
        ]
    )
    by_kind = {i["kind"]: i for i in items}
    assert by_kind["decision_differs"]["field"] == "outcome"
    assert by_kind["decision_differs"]["recorded"] == "not_in_scope"
    assert by_kind["decision_differs"]["replayed"] == "qualified"
    assert by_kind["due_date_differs"]["field"] == "due_date"
    letter = by_kind["missing_dead_letter"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == (
        records[1].topic,
        records[1].partition,
        records[1].offset,
    )
    summary = json.loads(done.output)
    assert summary["clean"] is False
    assert summary["discrepancies"] == 12
    late = [
        line.split(",")
        for line in (tmp_path / "r" / "timeliness.csv").read_text().splitlines()
        if line.startswith("LATE,")
    ]
    assert late[0][5] == "false"
    assert int(late[0][6]) > 100

    # Checked in a pool of processes: the same report.
    with monkeypatch.context() as m:
        m.setattr(run_module, "processes_for", lambda records: 2)
        pooled = await asyncio.to_thread(_replay, s, s.problem_window, report=tmp_path / "p")
    assert pooled.exit_code == 1, pooled.output
    assert json.loads(pooled.output) == summary
    _same_report(tmp_path / "r", tmp_path / "p")


async def test_current_rules_report_what_a_roster_correction_would_change(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = scenario
    person = next(p for p in eligible_roster(20, seed=77) if p.id_number == s.changed_person)
    await import_roster(s.owner, [dataclasses.replace(person, status=RosterStatus.TERMINATED)])
    recorded = await asyncio.to_thread(_replay, s, s.clean_window)
    assert recorded.exit_code == 0, recorded.output  # the decisions name their roster version
    current = await asyncio.to_thread(_replay, s, s.clean_window, "--rules", "current")
    assert current.exit_code == 1, current.output
    summary = json.loads(current.output)
    assert summary["by_kind"]["decision_differs"] >= 1
    assert summary["discrepancies"] == summary["by_kind"]["decision_differs"]
    with monkeypatch.context() as m:
        m.setattr(run_module, "processes_for", lambda records: 2)
        pooled = await asyncio.to_thread(_replay, s, s.clean_window, "--rules", "current")
    assert pooled.exit_code == 1, pooled.output
    assert json.loads(pooled.output) == summary


async def test_worker_processes_read_the_ledger_in_the_replays_snapshot(
    fresh_database: str, pg_server: str
) -> None:
    auditor_name = await _login(pg_server, "certrecon_auditor")
    auditor = dsn_as(fresh_database, auditor_name)
    owner = await db.connect(fresh_database)
    replay_conn = await db.connect(auditor)
    try:
        await import_roster(owner, eligible_roster(3, seed=5))
        count = "SELECT count(*) FROM roster_version"
        async with replay_conn.transaction(isolation="repeatable_read", readonly=True):
            before = await replay_conn.fetchval(count)
            snapshot = await replay_conn.fetchval("SELECT pg_export_snapshot()")
            await import_roster(owner, eligible_roster(6, seed=6)[3:])
            source = Source(auditor, None, snapshot)
            child = await snapshot_connection(source)
            try:
                assert await child.fetchval(count) == before == 3
                assert await child.fetchval("SHOW transaction_read_only") == "on"
                assert await child.fetchval("SHOW transaction_isolation") == "repeatable read"
                with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                    await child.execute("CREATE TEMPORARY TABLE t (x int)")
            finally:
                await child.close()
        assert await owner.fetchval(count) == 6
        with pytest.raises(CertreconError):
            await snapshot_connection(Source(auditor, None, "1'; SELECT '1"))
    finally:
        await replay_conn.close()
        await owner.close()
        await _drop_role(pg_server, auditor_name)


async def test_a_window_the_broker_no_longer_holds_is_truncated(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    people = eligible_roster(4, seed=5)
    owner = await db.connect(fresh_database)
    try:
        await import_roster(owner, people)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        when = start - dt.timedelta(hours=1)
        lost = settings.channel_topics[Channel.ESSC]
        kept = settings.channel_topics[Channel.APP_12333]
        await produce(
            kafka_bootstrap,
            [
                (
                    lost,
                    people[0].id_number.encode(),
                    encode(certification("W0", Channel.ESSC, people[0], when)),
                ),
                (
                    kept,
                    people[1].id_number.encode(),
                    encode(certification("W1", Channel.APP_12333, people[1], when)),
                ),
            ],
        )
        async with running_worker(settings, fresh_database, kafka_bootstrap):
            await wait_for(owner, "SELECT count(*) FROM certification_return", lambda n: n == 2)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([lost])
            await admin.create_topics([NewTopic(lost, settings.topic_partitions, 1)])
        finally:
            await admin.close()
    finally:
        await owner.close()
    env = settings_env(settings, fresh_database, kafka_bootstrap)
    window = [_instant(start), _instant(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))]
    done = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["audit", "replay", "--from", window[0], "--to", window[1], "--json"],
        env=env,
    )
    assert done.exit_code == 1, done.output
    summary = json.loads(done.output)
    assert summary["by_kind"]["window_truncated"] == 1
    assert summary["discrepancies"] == 1
    assert summary["certifications"] == 1  # W1, on the topic that kept its records


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (
        ["--from", "yesterday", "--to", "2026-01-02"],
        ["--from", "2026-01-02T00:00:00", "--to", "2026-01-03"],  # no offset
        ["--from", "2026-01-03", "--to", "2026-01-02"],
        ["--from", "2026-01-01", "--to", "2026-01-02", "--rules", "other"],
    ):
        done = await asyncio.to_thread(runner.invoke, cli, ["audit", "replay", *args])
        assert done.exit_code == 2, (args, done.output)
