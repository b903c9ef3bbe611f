"""The whole per-record path, decode → validate → deadline → rules → result encoding, under
generated and mutated input: every record ends as exactly one of a result, a review item
or a dead letter, and nothing it produces can be refused downstream (by the shipped result
and dead-letter schemas, PostgreSQL text and jsonb columns, or the broker's message size).

The roster lookup is an in-memory mapping: the path is pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from certrecon.calendar import (
    FIRST_YEAR,
    LAST_YEAR,
    WorkingCalendar,
    compute_deadline,
    default_calendar,
)
from certrecon.consumers.dead_letter import MAX_DEAD_LETTER_BYTES, MAX_KEY_BYTES
from certrecon.contract import example_bytes, load_schema
from certrecon.contract.validate import check_bytes
from certrecon.domain import Channel, Outcome, RosterRecord, RosterStatus
from certrecon.settings import Settings
from certrecon.synthetic import certification_message, make_roster
from certrecon.worker import pipeline
from certrecon.worker.pipeline import (
    Answered,
    CertificationRow,
    ForReview,
    Inbound,
    PipelineConfig,
    RecordOutcome,
    Rejected,
    process_record,
)

CONFIG = PipelineConfig.from_settings(Settings())
TOPIC_OF = {c: t for t, c in CONFIG.topic_channels.items()}
NOW = dt.datetime(2026, 9, 30, 3, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
PEOPLE = make_roster(40, seed=5)


@functools.cache
def _calendar() -> WorkingCalendar:
    return default_calendar()


class AnyRoster(Mapping[str, RosterRecord]):
    """Every ID number is on the roster, as ``entry`` says (None: nobody is)."""

    def __init__(self, entry: RosterRecord | None) -> None:
        self._entry = entry

    def __getitem__(self, id_number: str) -> RosterRecord:
        if self._entry is None:
            raise KeyError(id_number)
        return dataclasses.replace(self._entry, id_number=id_number)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


# ------------------------------------------------------------------------------ strategies

_DATES = st.one_of(st.none(), st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)))
roster_entries = st.one_of(
    st.none(),
    st.builds(
        RosterRecord,
        id_number=st.just(""),
        name=st.one_of(st.sampled_from([p.name for p in PEOPLE]), st.text(max_size=8)),
        benefit_type=st.sampled_from(["basic_pension", "survivor"]),
        status=st.sampled_from(RosterStatus),
        insured_region=st.sampled_from(["110105", "310104", ""]),
        first_paid_on=_DATES,
        deceased_on=_DATES,
        imprisoned_from=_DATES,
        imprisoned_until=_DATES,
    ),
)
timestamps_ms = st.one_of(
    st.just(NOW_MS),
    st.sampled_from([-1, 0, 2**63 - 1, 253_402_300_800_000, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
received = st.one_of(
    st.just(NOW),
    st.datetimes(
        dt.datetime(2004, 1, 1),  # noqa: DTZ001 - made aware below
        dt.datetime(2101, 1, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    ),
)
keys = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.just(b"k" * (MAX_KEY_BYTES + 1)),
    st.just(b"\x00" * 300_000),
)
odd_text = st.one_of(
    st.sampled_from(
        [
            "\x00",
            "a\x00b",
            "\u202e",
            "\u2066x\u2069",
            "\u200b",
            "\ufeff",
            "\x1b]0;x\x07",
            "\x1b[2J",
            "\u2028",
            "𠀀" * 70,
            "x" * 5000,
        ]
    ),
    st.text(max_size=30),
)
extreme_times = st.builds(
    lambda year, month, day, offset, second: (
        f"{year:04d}-{month:02d}-{day:02d}T23:59:{second:02d}{offset}"
    ),
    st.sampled_from([1, 1999, 2002, 2003, 2004, 2099, 2100, 9999]),
    st.sampled_from([1, 6, 12]),
    st.sampled_from([1, 28, 31]),
    st.sampled_from(["+23:59", "-23:59", "Z", "+08:00", "-00:00"]),
    st.sampled_from([0, 59, 60]),
)
odd_numbers = st.sampled_from(
    [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1", b"0", b"1.0", b"9" * 400, b"-0"]
)


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    person = draw(st.sampled_from(PEOPLE))
    channel = draw(st.sampled_from(Channel))
    age = draw(st.integers(0, 3 * 365 * 24 * 3600))
    when = NOW - dt.timedelta(seconds=age)
    cid = draw(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
    return certification_message(cid, channel, person, when)


def _inbound(body: bytes | None, channel: Channel, ts: int, key: bytes | None) -> Inbound:
    return Inbound(TOPIC_OF[channel], 3, 41, ts, key, body)


def _encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------------ invariants


def _text_column_safe(value: str | None) -> None:
    if value is None:
        return
    assert "\x00" not in value
    value.encode("utf-8")  # no lone surrogate: PostgreSQL could not take it


def _check_row(row: CertificationRow, calendar: WorkingCalendar) -> None:
    for text in (row.certification_id, row.id_number, row.certified_at_raw):
        _text_column_safe(text)
    assert row.received_at.utcoffset() is not None
    assert calendar.first_year <= row.due.due_date.year <= calendar.last_year
    assert row.due.deadline.utcoffset() is not None


def _check_result(answered: Answered) -> dict[str, Any]:
    payload = answered.result.payload
    assert check_bytes("result", payload) == []
    document: dict[str, Any] = json.loads(payload)
    assert b"\\u0000" not in payload  # jsonb refuses it
    assert document["certification_id"] == answered.row.certification_id
    assert document["result_id"] == f"{answered.row.certification_id}:1"
    assert document["outcome"] == answered.decision.outcome
    assert document["due_date"] == answered.row.due.due_date.isoformat()
    key = answered.result.result.key
    assert key is None or len(key) <= MAX_KEY_BYTES
    _text_column_safe(answered.decision.reason)
    _text_column_safe(answered.evidence)
    json.loads(answered.evidence)
    return document


def check(outcome: RecordOutcome, record: Inbound, calendar: WorkingCalendar) -> None:
    """Exactly one of result, review item, dead letter, each fit to be stored and sent."""
    kinds = [isinstance(outcome, k) for k in (Answered, ForReview, Rejected)]
    assert kinds.count(True) == 1, outcome
    assert outcome.record is record
    if isinstance(outcome, Answered):
        _check_row(outcome.row, calendar)
        assert outcome.row.valid
        assert outcome.decision.outcome is not None
        assert outcome.decision.outcome is not Outcome.INVALID_RECORD
        _check_result(outcome)
    elif isinstance(outcome, ForReview):
        _check_row(outcome.row, calendar)
        assert outcome.decision.review is not None
        assert outcome.decision.outcome is None
        json.loads(outcome.evidence)
    else:
        # Only the comparison topic yields evidence; these records are channel records.
        assert isinstance(outcome, Rejected)
        message = outcome.message
        assert message.kind == "dead_letter"
        assert message.message_id == f"{record.topic}:{record.partition}:{record.offset}"
        assert len(message.key or b"") + len(message.payload) <= MAX_DEAD_LETTER_BYTES
        assert check_bytes("dead-letter", message.payload) == []
        letter = json.loads(message.payload)
        assert letter["errors"]
        assert (letter["partition"], letter["offset"]) == (record.partition, record.offset)
        if outcome.answered is not None:
            _check_row(outcome.answered.row, calendar)
            assert outcome.answered.decision.outcome is Outcome.INVALID_RECORD
            assert _check_result(outcome.answered)["outcome"] == "invalid_record"
            assert letter["certification_id"] == outcome.answered.row.certification_id


def run(
    record: Inbound, roster: RosterRecord | None = None, at: dt.datetime = NOW
) -> RecordOutcome:
    calendar = _calendar()
    outcome = process_record(
        record, config=CONFIG, calendar=calendar, roster=AnyRoster(roster), received_at=at
    )
    check(outcome, record, calendar)
    return outcome


def _examples(n: int, *, shrink: bool = True) -> settings:
    # Shrinking schema-generated documents can take many minutes: a failure is reported as
    # found there.
    phases = tuple(p for p in Phase if shrink or p is not Phase.shrink)
    return settings(
        max_examples=n,
        deadline=None,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- the properties


@_examples(100, shrink=False)
@given(
    document=from_schema(load_schema("certification")),
    channel=st.sampled_from(Channel),
    roster=roster_entries,
    ts=timestamps_ms,
    at=received,
)
def test_messages_generated_from_the_shipped_schema(
    document: dict[str, Any],
    channel: Channel,
    roster: RosterRecord | None,
    ts: int,
    at: dt.datetime,
) -> None:
    run(_inbound(_encode(document), channel, ts, b"k"), roster, at)


@_examples(100, shrink=False)
@given(
    document=from_schema(load_schema("certification")),
    person=st.sampled_from(PEOPLE),
    age_hours=st.integers(0, 24 * 800),
    roster=roster_entries,
)
def test_schema_messages_made_valid_reach_the_rules(
    document: dict[str, Any],
    person: RosterRecord,
    age_hours: int,
    roster: RosterRecord | None,
) -> None:
    # The schema cannot say "a valid check character" or "not in the future": with those
    # repaired, generated messages get through validation to the deadline and the rules.
    document["subject"]["id_number"] = person.id_number
    document["subject"].pop("id_type", None)
    document["certified_at"] = (NOW - dt.timedelta(hours=age_hours)).isoformat()
    channel = Channel(document["channel"])
    if channel is Channel.CONSULAR:
        document["residence"] = {"country": "JP"}
    outcome = run(_inbound(_encode(document), channel, NOW_MS, b"k"), roster)
    if isinstance(outcome, Rejected):
        allowed = _left_open_by_the_schema(document)
        assert all(e.startswith(allowed) for e in outcome.letter.errors), outcome.letter.errors


def _left_open_by_the_schema(document: dict[str, Any]) -> tuple[str, ...]:
    """Error prefixes a message that satisfies the schema may still earn."""
    # What names may hold, and on_behalf's ID number.
    allowed = ["subject.name", "on_behalf"]
    if "\\u0000" in json.dumps(document):
        allowed.append("message: ")  # the schema cannot forbid NUL characters
    # The generator reads a pattern's "$" as Python does (before a final newline too);
    # JSON Schema's regular expressions do not.
    for name in ("certification_id", "insured_region", "residence"):
        value = document.get(name)
        texts = list(value.values()) if isinstance(value, dict) else [value]
        if any(isinstance(t, str) and t.endswith("\n") for t in texts):
            allowed.append(name)
    return tuple(allowed)


@_examples(200)
@given(
    body=valid_bodies(),
    data=st.data(),
    roster=roster_entries,
    ts=timestamps_ms,
    key=keys,
)
def test_byte_mutations_of_valid_messages(
    body: dict[str, Any],
    data: st.DataObject,
    roster: RosterRecord | None,
    ts: int,
    key: bytes | None,
) -> None:
    raw = bytearray(_encode(body))
    operation = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if operation == "flip" and raw:
            raw[position] = data.draw(st.integers(0, 255))
        elif operation == "insert":
            raw[position:position] = data.draw(
                st.sampled_from([b"\x00", b"\\u0000", b"\\ud800", b"\xff", b'"', b",", b"NaN"])
            )
        elif operation == "delete" and raw:
            del raw[position]
        else:
            del raw[position:]
    channel = Channel(body["channel"])
    run(_inbound(bytes(raw), channel, ts, key), roster)


@_examples(200)
@given(
    body=valid_bodies(),
    field=st.sampled_from(
        [
            "certification_id",
            "subject.id_number",
            "subject.name",
            "certified_at",
            "insured_region",
            "extra",
            "on_behalf.name",
        ]
    ),
    text=odd_text,
    roster=roster_entries,
)
def test_odd_unicode_in_any_field(
    body: dict[str, Any],
    field: str,
    text: str,
    roster: RosterRecord | None,
) -> None:
    if field.startswith("subject."):
        body["subject"][field.partition(".")[2]] = body["subject"][field.partition(".")[2]] + text
    elif field == "on_behalf.name":
        body["on_behalf"] = {"id_number": PEOPLE[0].id_number, "name": text}
    elif field == "extra":
        body[text or "empty"] = text
    else:
        body[field] = str(body[field]) + text
    run(_inbound(_encode(body), Channel(body["channel"]), NOW_MS, b"k"), roster)


@_examples(150)
@given(
    body=valid_bodies(),
    certified_at=extreme_times,
    roster=roster_entries,
    ts=timestamps_ms,
    at=received,
)
def test_extreme_dates_and_clocks(
    body: dict[str, Any],
    certified_at: str,
    roster: RosterRecord | None,
    ts: int,
    at: dt.datetime,
) -> None:
    body["certified_at"] = certified_at
    outcome = run(_inbound(_encode(body), Channel(body["channel"]), ts, b"k"), roster, at)
    if isinstance(outcome, Answered | ForReview):
        year = outcome.row.due.local_date.year
        assert FIRST_YEAR <= year <= LAST_YEAR


@_examples(100)
@given(
    body=valid_bodies(),
    field=st.sampled_from(["schema_version", "certification_id", "insured_region", "extra"]),
    number=odd_numbers,
    roster=roster_entries,
)
def test_huge_negative_and_non_finite_numbers(
    body: dict[str, Any],
    field: str,
    number: bytes,
    roster: RosterRecord | None,
) -> None:
    body[field if field != "extra" else "score"] = "__NUMBER__"
    raw = _encode(body).replace(b'"__NUMBER__"', number)
    outcome = run(_inbound(raw, Channel(body["channel"]), NOW_MS, b"k"), roster)
    if number in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        assert isinstance(outcome, Rejected)


# ----------------------------------------------------------------------- fixed known cases


def test_a_valid_message_is_answered() -> None:
    person = dataclasses.replace(
        PEOPLE[0], status=RosterStatus.ACTIVE, first_paid_on=dt.date(2010, 1, 1)
    )
    body = certification_message("OK1", Channel.ESSC, person, NOW - dt.timedelta(hours=1))
    body["subject"]["name"] = person.name
    outcome = run(_inbound(_encode(body), Channel.ESSC, NOW_MS, b"k"), person)
    assert isinstance(outcome, Answered)
    assert outcome.decision.outcome is Outcome.QUALIFIED


def test_the_contract_example_is_answered() -> None:
    record = _inbound(example_bytes("12333-qualified.json"), Channel.APP_12333, NOW_MS, b"k")
    assert isinstance(run(record, None), Answered)


@pytest.mark.parametrize(
    ("certified_at", "ts", "due"),
    [
        # Before the calendar: invalid; the deadline runs from the broker's timestamp.
        ("2002-06-01T10:00:00+08:00", NOW_MS, "2026-10-13"),
        # ... and from the receiving clock when the timestamp is unusable.
        ("2002-06-01T10:00:00+08:00", -1, "2026-10-13"),
        ("2002-06-01T10:00:00+08:00", 2**63 - 1, "2026-10-13"),
        ("2002-06-01T10:00:00+08:00", 253_402_300_800_000, "2026-10-13"),
        # An old timestamp inside the calendar is used as it is (stable across replays).
        ("2002-06-01T10:00:00+08:00", 1_104_537_600_000, "2005-01-10"),
    ],
)
def test_an_invalid_record_is_timed_from_what_is_usable(
    certified_at: str, ts: int, due: str
) -> None:
    body = certification_message("P1", Channel.ESSC, PEOPLE[0], NOW)
    body["certified_at"] = certified_at
    outcome = run(_inbound(_encode(body), Channel.ESSC, ts, b"k"))
    assert isinstance(outcome, Rejected)
    assert outcome.answered is not None
    assert outcome.answered.row.due.due_date.isoformat() == due
    assert "calendar range" in outcome.answered.decision.reason


def test_no_due_date_no_answer_but_still_a_dead_letter() -> None:
    # A receiving clock past the calendar and no usable time at all: nothing to compute a
    # due date from, so only the dead letter.
    body = certification_message("P2", Channel.ESSC, PEOPLE[0], NOW)
    del body["certified_at"]
    late = dt.datetime(2100, 6, 1, tzinfo=dt.UTC)
    outcome = run(_inbound(_encode(body), Channel.ESSC, -1, b"k"), at=late)
    assert isinstance(outcome, Rejected)
    assert outcome.answered is None


# ------------------------------------------------------------- a bug in a stage is contained


SECRET = PEOPLE[1].id_number


def _boom(*args: object, **kwargs: object) -> Any:
    raise ZeroDivisionError(f"bug while handling {SECRET}")


@pytest.mark.parametrize(
    ("target", "stage", "answered"),
    [
        ("decode", "decoding", False),
        ("compute_deadline", "deadline", True),
        ("decide", "rules", True),
        ("prepare_result", "encoding", False),
    ],
)
def test_an_exception_in_any_stage_is_that_records_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    stage: str,
    answered: bool,
) -> None:
    body = certification_message("B1", Channel.ESSC, PEOPLE[1], NOW - dt.timedelta(hours=1))
    record = _inbound(_encode(body), Channel.ESSC, NOW_MS, SECRET.encode())
    if target == "compute_deadline":
        # Only the first call fails: the invalid_record answer's own deadline still works.
        calls = iter([_boom])

        def first_fails(*args: Any, **kwargs: Any) -> Any:
            return next(calls, compute_deadline)(*args, **kwargs)

        monkeypatch.setattr(pipeline, target, first_fails)
    else:
        monkeypatch.setattr(pipeline, target, _boom)

    outcome = run(record, PEOPLE[1])

    assert isinstance(outcome, Rejected)
    (error,) = outcome.letter.errors
    assert error.startswith(f"{stage}: processing failed (ZeroDivisionError in _boom at ")
    # The exception's message quoted an ID number: it is not carried anywhere.
    assert SECRET not in error
    assert SECRET.encode() not in outcome.message.payload.replace(b"\\", b"")
    assert (outcome.answered is not None) is answered
    if outcome.answered is not None:
        assert outcome.answered.decision.outcome is Outcome.INVALID_RECORD
        assert outcome.answered.row.certification_id == "B1"
        assert stage in outcome.answered.decision.reason


def test_a_huge_record_key_keys_neither_the_answer_nor_the_dead_letter() -> None:
    body = certification_message("K1", Channel.ESSC, PEOPLE[2], NOW)
    body["subject"]["id_number"] = "1" * 100  # not valid, too long to echo: no key from it
    huge = b"9" * (MAX_KEY_BYTES + 1)
    outcome = run(_inbound(_encode(body), Channel.ESSC, NOW_MS, huge))
    assert isinstance(outcome, Rejected)
    assert outcome.answered is not None
    assert outcome.answered.result.result.key is None
    assert outcome.message.key == huge[:MAX_KEY_BYTES]


def test_an_invalid_record_whose_answer_cannot_be_built_keeps_its_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = certification_message("V1", Channel.ESSC, PEOPLE[1], NOW)
    body["method"] = "fingerprint"
    monkeypatch.setattr(pipeline, "prepare_result", _boom)

    outcome = run(_inbound(_encode(body), Channel.ESSC, NOW_MS, b"k"))

    assert isinstance(outcome, Rejected)
    assert outcome.answered is None
    first, second = outcome.letter.errors
    assert first == "method: must be one of face, face_video, assisted"
    assert second.startswith("encoding: no invalid_record answer (ZeroDivisionError in _boom")
