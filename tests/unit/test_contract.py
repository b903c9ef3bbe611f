"""The shipped contract: schemas, the validator, and every message kind the service writes
checked against its schema, including property-based checks of the producing code."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from certrecon.calendar import Deadline, compute_deadline, default_calendar
from certrecon.consumers import Invalid, Valid
from certrecon.consumers.dead_letter import MAX_VALUE_BYTES as MAX_DEAD_LETTER_VALUE
from certrecon.contract import (
    SCHEMA_NAMES,
    UnknownSchemaError,
    example_bytes,
    example_names,
    load_schema,
    schema_text,
)
from certrecon.contract.validate import NotJsonError, Problem, check_bytes, check_document
from certrecon.domain import CST, Channel, Cycle, Outcome, RosterRecord, RosterStatus
from certrecon.errors import CalendarError, InputError
from certrecon.reconcile import decide
from certrecon.results import DECIDED_BY_RULES, ResultMessage
from certrecon.sla import Alert, SlaLevel
from certrecon.worker.pipeline import DeadLetter, Inbound, PipelineConfig
from tests.unit.test_decode import RECEIVED, run, timestamps, valid_messages

CHANNELS = [c.value for c in Channel]


def deadline_of(certified_at: dt.datetime) -> Deadline:
    """The deadline, for certification times inside the calendar's range only (outside it
    the worker answers with a dead letter, checked elsewhere)."""
    try:
        return compute_deadline(certified_at, default_calendar())
    except CalendarError:
        assume(False)
        raise


def result_body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(example_bytes("result-qualified.json"))
    return body


def alert_body() -> dict[str, Any]:
    alert = Alert(
        "RZ1",
        SlaLevel.AT_RISK,
        "essc",
        dt.date(2024, 6, 11),
        dt.datetime(2024, 6, 12, tzinfo=CST),
        0,
        False,
        dt.datetime(2024, 6, 11, 1, tzinfo=dt.UTC),
        b"RZ1",
    )
    body: dict[str, Any] = json.loads(alert.payload())
    return body


# ------------------------------------------------------------------------- shipped schemas


def test_the_package_ships_one_schema_per_message_kind() -> None:
    folder = resources.files("certrecon.contract") / "schemas"
    shipped = sorted(f.name for f in folder.iterdir())
    assert shipped == sorted(f"{name}.schema.json" for name in SCHEMA_NAMES)
    assert set(SCHEMA_NAMES) == {
        "certification",
        "result",
        "dead-letter",
        "sla-alert",
        "comparison-evidence",
        "benefit-action",
    }


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["required"]
    assert json.loads(schema_text(name)) == schema


@pytest.mark.parametrize("name", ["result", "dead-letter", "sla-alert", "benefit-action"])
def test_what_the_service_writes_admits_no_other_field(name: str) -> None:
    schema = load_schema(name)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) <= set(schema["properties"])


def test_unknown_schema_names_are_input_errors() -> None:
    with pytest.raises(UnknownSchemaError, match="the schemas are certification, result"):
        schema_text("../README")
    with pytest.raises(InputError):
        check_document("results", {})


def test_examples_match_their_schemas() -> None:
    kinds = {
        "12333-qualified.json": "certification",
        "benefit-action-resume.json": "benefit-action",
        "comparison-death.json": "comparison-evidence",
        "consular-on-behalf.json": "certification",
        "result-qualified.json": "result",
    }
    assert example_names() == sorted(kinds)
    for name in example_names():
        kind = kinds[name]
        assert check_bytes(kind, example_bytes(name)) == [], name


def _keywords(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in {"properties", "$defs"}:
                for sub in value.values():
                    found |= _keywords(sub)
            elif isinstance(value, dict):
                found |= _keywords(value)
    return found


def test_every_rule_the_schemas_use_has_its_own_text() -> None:
    # The validator words each rule itself (never echoing the value); a keyword added to a
    # schema without a text would fall back to jsonschema's wording, which quotes values.
    worded = {
        "type", "const", "enum", "pattern", "format", "minLength", "maxLength", "minimum",
        "minItems", "maxItems", "not", "required", "additionalProperties",
    }  # fmt: skip
    structural = {
        "$schema", "$id", "$ref", "$defs", "title", "description", "default", "properties",
        "items", "if", "then", "else", "contentEncoding",
    }  # fmt: skip
    used = set().union(*(_keywords(load_schema(n)) for n in SCHEMA_NAMES))
    assert used - structural <= worded


# ------------------------------------------------------------------------------ validator


def test_every_problem_is_listed_with_its_path() -> None:
    body = result_body()
    body.update(
        schema_version=2,
        outcome="passed",
        due_date="13/10/2026",
        decided_at="2026-09-30T09:21:07",
        decided_by="robot",
        note="x",
    )
    del body["reason"]
    problems = check_document("result", body)
    assert [p.path for p in problems] == [
        "$.decided_at",
        "$.decided_by",
        "$.due_date",
        "$.note",
        "$.outcome",
        "$.reason",
        "$.schema_version",
    ]
    assert str(problems[3]) == "$.note: is not allowed"
    assert str(problems[5]) == "$.reason: is required"
    assert str(problems[6]) == "$.schema_version: must be 1"


def test_nested_paths_and_odd_keys() -> None:
    body = json.loads(example_bytes("consular-on-behalf.json"))
    body["residence"] = {"country": "CN"}
    body["on_behalf"]["name"] = ""
    problems = check_document("certification", body)
    assert [str(p) for p in problems] == [
        "$.on_behalf.name: must be at least 1 character long",
        '$.residence.country: must not be "CN"',
    ]
    extra = {**result_body(), "bad key\x1b": 1, "数": 2}
    assert [p.path for p in check_document("result", extra)] == ['$["bad key\\u001b"]', '$["数"]']


def test_problems_never_quote_the_value() -> None:
    body = json.loads(example_bytes("12333-qualified.json"))
    body["subject"]["id_number"] = "11010519491231002Z"
    body["subject"]["name"] = "张" * 65
    body["certified_at"] = "2026-09-30 09:21:05"
    problems = check_document("certification", body)
    assert len(problems) == 3
    for problem in problems:
        assert "11010519491231002Z" not in problem.message
        assert "张张" not in problem.message
        assert "09:21:05" not in problem.message or "e.g." in problem.message


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-09-30T09:21:05+08:00", True),
        ("2026-09-30T01:21:05.123456789Z", True),
        ("2026-09-30t01:21:05z", True),
        ("2026-09-30T09:21:05", False),  # no offset
        ("2026-09-30 09:21:05+08:00", False),
        ("2026-02-30T09:21:05+08:00", False),
        ("2026-09-30", False),
    ],
)
def test_date_time_is_rfc_3339_with_an_offset(text: str, ok: bool) -> None:
    problems = check_document("result", {**result_body(), "decided_at": text})
    assert (problems == []) is ok, problems


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-10-13", True),
        ("2024-02-29", True),
        ("2026-02-29", False),
        ("20261013", False),  # date.fromisoformat accepts it; the contract does not
        ("2026-W42-2", False),
        ("2026-10-13T00:00:00+08:00", False),
    ],
)
def test_date_is_year_month_day(text: str, ok: bool) -> None:
    problems = check_document("result", {**result_body(), "due_date": text})
    assert (problems == []) is ok, problems


def test_booleans_are_not_integers() -> None:
    assert check_document("result", {**result_body(), "schema_version": True}) == [
        Problem("$.schema_version", "must be 1")
    ]
    problems = check_document("sla-alert", {**alert_body(), "working_days_left": False})
    assert [str(p) for p in problems] == ["$.working_days_left: must be of type integer"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a byte-order mark is not part of JSON
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b"[Infinity]", "Infinity is not a JSON value"),
        (b"{} {}", "not valid JSON"),
    ],
)
def test_bytes_that_are_not_one_json_document(data: bytes, reason: str) -> None:
    with pytest.raises(NotJsonError, match=reason):
        check_bytes("result", data)


def test_a_document_that_is_not_an_object() -> None:
    assert [str(p) for p in check_bytes("dead-letter", b"[1]")] == ["$: must be of type object"]


# ------------------------------------------ inbound: what the decoder takes, the schema takes


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(valid_messages())
def test_every_message_the_decoder_accepts_matches_the_certification_schema(
    drawn: tuple[dict[str, Any], Channel, Any, dict[str, Any]],
) -> None:
    message, channel, _, _ = drawn
    raw = json.dumps(message, ensure_ascii=False).encode("utf-8")
    assert isinstance(run(raw, channel), Valid)
    assert check_bytes("certification", raw) == []


# ------------------------------------------------------------- results: decode, rules, encode

_ROSTER_DATES = st.none() | st.dates(dt.date(1930, 1, 1), dt.date(2027, 12, 31))


@st.composite
def rosters_for(draw: st.DrawFn, id_number: str, name: str) -> RosterRecord | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    return RosterRecord(
        id_number=id_number,
        name=draw(st.sampled_from([name, name + "明", "王建国"])),
        benefit_type=draw(st.sampled_from(["basic_pension", "work_injury", "survivor"])),
        status=draw(st.sampled_from(list(RosterStatus))),
        insured_region=draw(st.sampled_from(["110105", "110108", "310104"])),
        first_paid_on=draw(_ROSTER_DATES),
        deceased_on=draw(_ROSTER_DATES),
        imprisoned_from=draw(_ROSTER_DATES),
        imprisoned_until=draw(_ROSTER_DATES),
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(valid_messages(), st.data())
def test_rules_results_of_random_certifications_match_the_result_schema(
    drawn: tuple[dict[str, Any], Channel, Any, dict[str, Any]], data: st.DataObject
) -> None:
    message, channel, _, _ = drawn
    decoded = run(message, channel)
    assert isinstance(decoded, Valid)
    cert = decoded.certification
    roster = data.draw(rosters_for(cert.id_number, cert.name))
    decision = decide(cert, roster, Cycle.of(cert), region_prefix="11")
    if decision.outcome is None:
        # Local death or prison records: staff decide, through the same encoding.
        outcome = data.draw(st.sampled_from([Outcome.ELIGIBILITY_LOST, Outcome.QUALIFIED]))
        decided_by = "staff:" + data.draw(st.from_regex(r"[A-Za-z0-9._@-]{1,64}", fullmatch=True))
    else:
        outcome, decided_by = decision.outcome, DECIDED_BY_RULES
    deadline = deadline_of(cert.certified_at)
    result = ResultMessage.build(
        certification_id=cert.certification_id,
        revision=data.draw(st.integers(1, 50)),
        channel=cert.channel,
        id_number=cert.id_number,
        outcome=outcome,
        reason=decision.reason,
        certified_at=cert.certified_at_raw,
        due_date=deadline.due_date,
        decided_at=RECEIVED,
        decided_by=decided_by,
    )
    assert check_bytes("result", result.to_bytes()) == []


_JUNK = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["certification_id", "subject", "certified_at", "channel", "x"]),
        st.one_of(
            st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
            st.text(max_size=80),
            st.integers(),
            st.none(),
            st.fixed_dictionaries({"id_number": st.text(max_size=80)}),
        ),
    ).map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8")),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    _JUNK, st.integers(0, 99), st.integers(0, 2**62), st.one_of(st.none(), st.binary(max_size=40))
)
def test_invalid_messages_give_schema_valid_results_and_dead_letters(
    value: bytes, partition: int, offset: int, key: bytes | None
) -> None:
    decoded = run(value)
    if isinstance(decoded, Valid):  # pragma: no cover - junk is practically never valid
        return
    assert isinstance(decoded, Invalid)
    record = Inbound("mohrss.certification.12333", partition, offset, 1_790_731_265_123, key, value)
    dead = DeadLetter(record, decoded.errors, decoded.certification_id).message(_config())
    assert check_bytes("dead-letter", dead.payload) == []
    if decoded.certification_id is None:
        return
    basis = decoded.certified_at or RECEIVED
    result = ResultMessage.build(
        certification_id=decoded.certification_id,
        revision=1,
        channel=decoded.channel,
        id_number=decoded.id_number or decoded.id_number_as_sent or "",
        outcome=Outcome.INVALID_RECORD,
        reason=decoded.reason,
        certified_at=decoded.certified_at_raw or "",
        due_date=deadline_of(basis).due_date,
        decided_at=RECEIVED,
        decided_by=DECIDED_BY_RULES,
    )
    assert check_bytes("result", result.to_bytes()) == []


def test_the_result_schema_holds_answers_to_their_shape() -> None:
    body = result_body()
    # Only an invalid record may carry an unusable ID number or time, and only the rules
    # give that outcome.
    broken = {**body, "id_number": "not a number", "certified_at": ""}
    assert [p.path for p in check_document("result", broken)] == ["$.certified_at", "$.id_number"]
    assert check_document("result", {**broken, "outcome": "invalid_record"}) == []
    staff = {**broken, "outcome": "invalid_record", "decided_by": "staff:S1"}
    assert [p.path for p in check_document("result", staff)] == ["$.decided_by"]
    assert check_document("result", {**body, "id_number": "11010519491231002x"})


# --------------------------------------------------------------------------- dead letters


def _config() -> PipelineConfig:
    return PipelineConfig(
        topic_channels={"mohrss.certification.12333": Channel.APP_12333},
        region_prefix="11",
        result_topic="mohrss.certification-result",
        dead_letter_topic="certrecon.dead-letter",
        group_id="certrecon",
        working_days=5,
        max_skew=dt.timedelta(minutes=10),
    )


_ERRORS = st.lists(st.text(min_size=1, max_size=60), min_size=1, max_size=5)


@settings(max_examples=300)
@given(
    topic=st.from_regex(r"[A-Za-z0-9._-]{1,249}", fullmatch=True),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    timestamp_ms=st.integers(-(2**63), 2**63 - 1),
    key=st.one_of(st.none(), st.binary(max_size=100)),
    value=st.one_of(st.none(), st.binary(max_size=300)),
    errors=_ERRORS,
    certification_id=st.one_of(st.none(), st.text(max_size=70)),
)
def test_any_dead_letter_matches_its_schema(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    errors: list[str],
    certification_id: str | None,
) -> None:
    record = Inbound(topic, partition, offset, timestamp_ms, key, value)
    message = DeadLetter(record, tuple(errors), certification_id).message(_config())
    body = json.loads(message.payload)
    assert check_document("dead-letter", body) == []
    assert body["dead_letter_id"] == message.message_id


def test_a_cut_dead_letter_matches_its_schema() -> None:
    record = Inbound("t", 0, 1, 0, None, b"{" * (MAX_DEAD_LETTER_VALUE + 1))
    payload = DeadLetter(record, ("message: not valid JSON",)).message(_config()).payload
    assert check_bytes("dead-letter", payload) == []
    assert len(json.loads(payload)["errors"]) == 2


def test_the_dead_letter_schema_is_not_vacuous() -> None:
    record = Inbound("t", 0, 1, 5, b"k", b"v")
    body = json.loads(DeadLetter(record, ("message: x",), "RZ1").message(_config()).payload)
    assert check_document("dead-letter", body) == []
    for field, broken in [
        ("partition", -1),
        ("key", "not base64!"),
        ("errors", []),
        ("errors", ["message: x"] * 33),
        ("errors", ["message: " + "x" * 500]),
        ("timestamp", "1970-01-01T00:00:00Z"),
        ("timestamp_ms", None),
        ("certification_id", "RZ 1"),
        ("dead_letter_id", "t:0"),
    ]:
        assert check_document("dead-letter", {**body, field: broken}), field
    assert check_document("dead-letter", {**body, "timestamp": None, "timestamp_ms": None}) == []


# ----------------------------------------------------------------------------- SLA alerts


@settings(max_examples=100)
@given(
    certification_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    level=st.sampled_from([SlaLevel.AT_RISK, SlaLevel.BREACHED]),
    channel=st.sampled_from(CHANNELS),
    certified=timestamps(),
    working_days_left=st.integers(-400, 10),
    provisional=st.booleans(),
    raised_at=st.datetimes(
        dt.datetime(2000, 1, 2),  # noqa: DTZ001 - the zone is drawn separately
        dt.datetime(2099, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([dt.UTC, CST, dt.timezone(dt.timedelta(hours=-5))]),
    ),
)
def test_any_sla_alert_matches_its_schema(
    *,
    certification_id: str,
    level: SlaLevel,
    channel: str,
    certified: tuple[str, dt.datetime],
    working_days_left: int,
    provisional: bool,
    raised_at: dt.datetime,
) -> None:
    deadline = deadline_of(certified[1])
    alert = Alert(
        certification_id,
        level,
        channel,
        deadline.due_date,
        deadline.deadline,
        working_days_left,
        provisional,
        raised_at,
        certification_id.encode(),
    )
    assert check_bytes("sla-alert", alert.payload()) == []


def test_the_sla_alert_schema_is_not_vacuous() -> None:
    body = alert_body()
    assert check_document("sla-alert", body) == []
    for field, broken in [
        ("level", "on_track"),
        ("alert_id", "RZ1"),
        ("provisional", "no"),
        ("deadline", "2024-06-12"),
        ("channel", "wechat"),
    ]:
        assert check_document("sla-alert", {**body, field: broken}), field
    assert [p.path for p in check_document("sla-alert", {**body, "extra": 1})] == ["$.extra"]
