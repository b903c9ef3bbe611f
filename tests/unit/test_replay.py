"""The pure part of the audit replay: the window, the published-message index, the
calendar as it was, the receiving instant, the report files, one record's checks."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from certrecon.calendar import default_calendar
from certrecon.domain import CST, Channel
from certrecon.errors import InputError
from certrecon.replay.calendars import CalendarHistory
from certrecon.replay.check import Basis, Published, conclude, peek_certification_id
from certrecon.replay.model import CalendarEvent, Discrepancy, Kind, Rules, Timeliness
from certrecon.replay.pool import MAX_PROCESSES, POOL_FROM_RECORDS, check_chunk, processes_for
from certrecon.replay.report import ReportWriter, check_manifest, timeliness_lines
from certrecon.replay.window import Window, parse_instant
from certrecon.settings import Settings
from certrecon.synthetic import certification_message, make_roster
from certrecon.worker.pipeline import (
    Inbound,
    PipelineConfig,
    Rejected,
    process_record,
    receiving_instant,
)

CONFIG = PipelineConfig.from_settings(Settings())
TOPIC = next(t for t, c in CONFIG.topic_channels.items() if c is Channel.ESSC)
T = dt.datetime(2026, 9, 30, 3, 0, tzinfo=dt.UTC)
T_MS = int(T.timestamp() * 1000)
PERSON = make_roster(1, seed=3)[0]


def test_window_bounds() -> None:
    assert parse_instant("2026-03-01", option="--from") == dt.datetime(2026, 3, 1, tzinfo=CST)
    at = parse_instant("2026-03-01T08:30:00+00:00", option="--from")
    assert at == dt.datetime(2026, 3, 1, 16, 30, tzinfo=CST)
    for bad in ("2026-03-01T08:30:00", "yesterday", "2026-13-01", ""):
        with pytest.raises(InputError):
            parse_instant(bad, option="--from")
    with pytest.raises(InputError):
        Window.parse("2026-03-02", "2026-03-01")
    w = Window.parse("2026-03-01", "2026-03-02")
    assert w.holds(w.start_ms)
    assert not w.holds(w.end_ms)
    assert w.holds(w.end_ms - 1)


def test_published_index_tells_copies_apart() -> None:
    p = Published()
    p.add("A:1", 0, 5, 10, b"x")
    p.add("A:1", 1, 9, 11, b"x")  # the same bytes again: one content
    p.add("B:1", 0, 6, 12, b"y")
    p.add("B:1", 0, 7, 13, b"z")  # other bytes: two contents
    assert p.remaining() == [("A:1", 0, 5, 10), ("B:1", 0, 6, 12)]
    copies_a = p.take("A:1")
    copies_b = p.take("B:1")
    assert copies_a is not None
    assert len(copies_a) == 1
    assert copies_b is not None
    assert len(copies_b) == 2
    assert p.take("A:1") is None
    assert len(p) == 0


def test_calendar_as_it_was() -> None:
    day = dt.date(2026, 10, 13)  # a Tuesday
    t1 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    t2 = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
    events = [
        CalendarEvent(t1, day, None, False, "notice"),
        CalendarEvent(t2, day, None, None, None),  # the override removed again
    ]
    history = CalendarHistory(default_calendar(), events, layer="database")
    assert history.at(t1 - dt.timedelta(seconds=1)).is_working_day(day)
    assert not history.at(t1).is_working_day(day)
    assert not history.at(t2 - dt.timedelta(seconds=1)).is_working_day(day)
    assert history.at(t2).is_working_day(day)
    assert history.current().is_working_day(day)
    assert history.state()["events"] == 2


def _record(value: bytes | None, ts: int = T_MS, offset: int = 0) -> Inbound:
    return Inbound(TOPIC, 0, offset, ts, b"k", value)


def test_the_receiving_instant_is_the_broker_stamp_unless_ahead_of_the_clock() -> None:
    clock = T + dt.timedelta(minutes=20)
    assert receiving_instant(_record(b"", T_MS), clock) == T
    assert receiving_instant(_record(b"", -1), clock) == clock
    ahead = int((clock + dt.timedelta(hours=1)).timestamp() * 1000)
    assert receiving_instant(_record(b"", ahead), clock) == clock


def test_the_worker_validates_against_the_instant_it_records() -> None:
    # Certified 15 minutes after the broker received it: more than 10 minutes in the future
    # of its receipt, whenever the worker happens to process it.
    body = certification_message("X1", Channel.ESSC, PERSON, T + dt.timedelta(minutes=15))
    record = _record(json.dumps(body).encode())
    for clock in (T + dt.timedelta(minutes=20), T + dt.timedelta(days=3)):
        outcome = process_record(
            record, config=CONFIG, calendar=default_calendar(), roster={}, received_at=clock
        )
        assert isinstance(outcome, Rejected)
        assert outcome.answered is not None
        assert outcome.answered.row.received_at == T
        assert any("certified_at" in e for e in outcome.letter.errors)


def _check(record: Inbound, letters: Published) -> tuple[list[Discrepancy], dict[str, int]]:
    """One record the ledger lacks, checked as the replay checks a chunk and concludes it."""
    calendar = default_calendar()
    on = Basis(CONFIG, Rules.RECORDED, T, lambda _: calendar, calendar)
    cids = [peek_certification_id(record.value)]
    chunk = check_chunk([record], cids, ({}, None), on, timeliness=False)
    items: list[Discrepancy] = []
    for opened in chunk.open:
        found, _ = conclude(opened, Published(), letters)
        items.extend(found)
    return items, chunk.counts


def test_a_dead_letter_is_expected_on_its_topic() -> None:
    record = _record(b"{not json", offset=4)
    assert peek_certification_id(record.value) is None
    missing, _ = _check(record, Published())
    assert [d.kind for d in missing] == [Kind.MISSING_DEAD_LETTER]
    assert (missing[0].topic, missing[0].offset) == (TOPIC, 4)
    letters = Published()
    letters.add(f"{TOPIC}:0:4", 0, 1, T_MS, b"{}")
    there, counts = _check(record, letters)
    assert there == []
    assert counts == {"dead_letters_only": 1}


def test_a_certification_the_ledger_lacks() -> None:
    body = certification_message("M1", Channel.ESSC, PERSON, T - dt.timedelta(hours=1))
    record = _record(json.dumps(body).encode())
    assert peek_certification_id(record.value) == "M1"
    checked, _ = _check(record, Published())
    assert [(d.kind, d.certification_id) for d in checked] == [(Kind.MISSING_IN_LEDGER, "M1")]


def test_report_files_and_their_manifest(tmp_path: Path) -> None:
    item = Discrepancy(Kind.LATE, "C1", TOPIC, 0, 3, "returned_at", T, T)
    row = Timeliness("C1", "essc", T.date(), T.date(), T, False, 2)
    with ReportWriter(tmp_path / "r") as writer:
        writer.item(item)
        writer.timeliness_text(timeliness_lines([row.row()]))
        manifest = writer.finish({"clean": False}, {"window": {}})
    assert manifest is not None
    assert set(manifest["files"]) == {"summary.json", "items.jsonl", "timeliness.csv"}
    lines = (tmp_path / "r" / "items.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "late"
    assert check_manifest(tmp_path / "r") == []
    assert (tmp_path / "r" / "timeliness.csv").read_text().splitlines() == [
        "certification_id,channel,certified_on,due_date,returned_at,on_time,working_days_late",
        f"C1,essc,{T.date()},{T.date()},{T.isoformat()},false,2",
    ]
    (tmp_path / "r" / "items.jsonl").write_text("{}\n")
    assert check_manifest(tmp_path / "r") == ["items.jsonl"]
    with pytest.raises(InputError, match="never overwritten"), ReportWriter(tmp_path / "r"):
        pass


@pytest.mark.parametrize(
    ("records", "cpus", "expected"),
    [
        (100_000, 1, 0),
        (100_000, 2, 3),
        (100_000, 4, 5),
        (100_000, 64, MAX_PROCESSES),
        (POOL_FROM_RECORDS - 1, 8, 0),
        (100_000, None, None),
    ],
)
def test_a_pool_has_one_process_more_than_cpus_from_two_on(
    records: int, cpus: int | None, expected: int | None
) -> None:
    if cpus is None:  # this machine: the same rule over the CPUs it may run on
        here = len(os.sched_getaffinity(0))
        expected = 0 if here < 2 else min(here + 1, MAX_PROCESSES)
    assert processes_for(records, cpus) == expected
