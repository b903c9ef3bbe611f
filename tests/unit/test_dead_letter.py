"""Outbound payloads: dead letters and result messages (checked against the contract schemas)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from certrecon.consumers import (
    Invalid,
    dead_letter_id,
    dead_letter_message,
    dead_letter_payload,
    decode,
)
from certrecon.consumers.dead_letter import (
    MAX_DEAD_LETTER_BYTES,
    MAX_ERROR_CHARS,
    MAX_ERRORS,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
)
from certrecon.consumers.models import parse_rfc3339
from certrecon.contract import example_bytes, load_schema
from certrecon.contract.validate import check_bytes, check_document
from certrecon.domain import CST, Channel, Outcome
from certrecon.results import DECIDED_BY_RULES, ResultMessage, result_id
from tests.unit.test_decode import timestamps

TOPIC = "mohrss.certification.12333"


# ------------------------------------------------------------------------------ dead letters


class TestDeadLetterId:
    def test_format(self) -> None:
        assert dead_letter_id(TOPIC, 3, 1042) == "mohrss.certification.12333:3:1042"

    @given(
        st.tuples(st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True), st.integers(0, 999)),
        st.tuples(st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True), st.integers(0, 999)),
        st.integers(0, 2**62),
        st.integers(0, 2**62),
    )
    def test_distinct_records_get_distinct_ids(
        self, a: tuple[str, int], b: tuple[str, int], offset_a: int, offset_b: int
    ) -> None:
        same_record = (a, offset_a) == (b, offset_b)
        same_id = dead_letter_id(*a, offset_a) == dead_letter_id(*b, offset_b)
        assert same_record == same_id


class TestDeadLetterPayload:
    def payload(self, **overrides: Any) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "topic": TOPIC,
            "partition": 2,
            "offset": 17,
            "timestamp_ms": 1_790_731_265_123,
            "key": b"11010519491231002X",
            "value": b"\x00\x9f not JSON",
            "errors": ["message: not valid UTF-8"],
        }
        arguments.update(overrides)
        raw = dead_letter_payload(**arguments)
        parsed: dict[str, Any] = json.loads(raw.decode("utf-8"))
        return parsed

    def test_fields(self) -> None:
        assert self.payload() == {
            "dead_letter_id": "mohrss.certification.12333:2:17",
            "topic": TOPIC,
            "partition": 2,
            "offset": 17,
            "timestamp": "2026-09-30T01:21:05.123Z",
            "timestamp_ms": 1_790_731_265_123,
            "key": base64.b64encode(b"11010519491231002X").decode(),
            "value": base64.b64encode(b"\x00\x9f not JSON").decode(),
            "errors": ["message: not valid UTF-8"],
        }

    def test_certification_id_when_usable(self) -> None:
        assert self.payload(certification_id="RZ1")["certification_id"] == "RZ1"
        assert "certification_id" not in self.payload(certification_id=None)
        assert "certification_id" not in self.payload(certification_id="not usable")

    def test_missing_key_value_and_timestamp(self) -> None:
        body = self.payload(key=None, value=None, timestamp_ms=None)
        assert (body["key"], body["value"]) == (None, None)
        assert (body["timestamp"], body["timestamp_ms"]) == (None, None)
        # Kafka reports -1 for a record without a timestamp.
        body = self.payload(timestamp_ms=-1)
        assert (body["timestamp"], body["timestamp_ms"]) == (None, None)
        body = self.payload(timestamp_ms=10**20)
        assert (body["timestamp"], body["timestamp_ms"]) == (None, None)

    def test_epoch_and_whole_seconds(self) -> None:
        assert self.payload(timestamp_ms=0)["timestamp"] == "1970-01-01T00:00:00.000Z"
        assert self.payload(timestamp_ms=1_000)["timestamp"] == "1970-01-01T00:00:01.000Z"

    def test_compact_utf8_and_deterministic(self) -> None:
        arguments: dict[str, Any] = {
            "topic": TOPIC,
            "partition": 0,
            "offset": 1,
            "timestamp_ms": 5,
            "key": None,
            "value": b"{}",
            "errors": ["subject.name: 名字"],
        }
        first = dead_letter_payload(**arguments)
        assert first == dead_letter_payload(**arguments)
        assert "名字".encode() in first
        assert b", " not in first
        assert b'": ' not in first

    @given(
        st.one_of(st.none(), st.binary(max_size=300)),
        st.one_of(st.none(), st.binary(max_size=300)),
        st.one_of(st.none(), st.integers(-(2**63), 2**63)),
        st.lists(st.text(max_size=50), max_size=5),
    )
    def test_original_bytes_round_trip(
        self, key: bytes | None, value: bytes | None, timestamp_ms: int | None, errors: list[str]
    ) -> None:
        body = self.payload(key=key, value=value, timestamp_ms=timestamp_ms, errors=errors)
        assert (None if body["key"] is None else base64.b64decode(body["key"])) == key
        assert (None if body["value"] is None else base64.b64decode(body["value"])) == value
        assert body["errors"] == errors
        if body["timestamp"] is not None:
            moment = parse_rfc3339(body["timestamp"])
            assert moment is not None
            assert body["timestamp"].endswith("Z")
            assert int(moment.timestamp() * 1000) // 1000 == body["timestamp_ms"] // 1000

    def test_from_decoding_outcome(self) -> None:
        value = b'{"certification_id": "LS1", "channel": "consular"}'
        decoded = decode(
            value,
            topic=TOPIC,
            channel=Channel.APP_12333,
            received_at=dt.datetime(2026, 9, 30, tzinfo=dt.UTC),
        )
        assert isinstance(decoded, Invalid)
        raw = _from_decoded(decoded, partition=1, offset=9, timestamp_ms=1_000, key=b"k")
        body = json.loads(raw)
        assert body["certification_id"] == "LS1"
        assert body["errors"] == list(decoded.errors)
        assert base64.b64decode(body["value"]) == value
        assert body["dead_letter_id"] == dead_letter_id(TOPIC, 1, 9)

    def test_from_a_tombstone(self) -> None:
        decoded = decode(
            None, topic=TOPIC, channel=Channel.APP_12333, received_at=dt.datetime.now(dt.UTC)
        )
        assert isinstance(decoded, Invalid)
        body = json.loads(_from_decoded(decoded, partition=0, offset=0, timestamp_ms=0, key=None))
        assert body["value"] is None
        assert body["errors"] == ["message: no value (tombstone)"]
        assert "certification_id" not in body


class TestDeadLetterMessage:
    """Every byte field that leaves the service is capped: no dead letter can near Kafka's
    default maximum message size, whatever arrived."""

    def message(self, **overrides: Any) -> tuple[bytes | None, dict[str, Any], int]:
        arguments: dict[str, Any] = {
            "topic": TOPIC,
            "partition": 0,
            "offset": 3,
            "timestamp_ms": 5,
            "key": b"k",
            "value": b"v",
            "errors": ["message: not valid JSON"],
        }
        arguments.update(overrides)
        key, payload = dead_letter_message(**arguments)
        return key, json.loads(payload), len(key or b"") + len(payload)

    def test_small_fields_are_kept_whole(self) -> None:
        key, body, _ = self.message()
        assert key == b"k"
        assert body["errors"] == ["message: not valid JSON"]
        assert base64.b64decode(body["value"]) == b"v"

    def test_a_huge_key_and_value_are_cut_and_say_so(self) -> None:
        big_key, big_value = b"K" * 400_000, b"V" * 2_000_000
        key, body, size = self.message(key=big_key, value=big_value)
        assert key == big_key[:MAX_KEY_BYTES]
        assert base64.b64decode(body["key"]) == big_key[:MAX_KEY_BYTES]
        assert base64.b64decode(body["value"]) == big_value[:MAX_VALUE_BYTES]
        notes = " ".join(body["errors"][1:])
        assert hashlib.sha256(big_key).hexdigest() in notes
        assert hashlib.sha256(big_value).hexdigest() in notes
        assert size <= MAX_DEAD_LETTER_BYTES < 1024 * 1024

    def test_many_and_long_errors_are_capped(self) -> None:
        errors = [f"field_{i}: " + "名" * 10_000 for i in range(500)]
        _, body, size = self.message(errors=errors, key=b"K" * 10**6, value=b"V" * 10**7)
        assert len(body["errors"]) == MAX_ERRORS
        assert all(len(e) <= MAX_ERROR_CHARS for e in body["errors"])
        assert any(e.endswith("more errors") for e in body["errors"])
        assert size <= MAX_DEAD_LETTER_BYTES

    def test_a_lone_surrogate_in_an_error_cannot_break_it(self) -> None:
        _, body, _ = self.message(errors=["subject.name: \ud800"])
        assert body["errors"] == ["subject.name: ?"]

    @given(
        st.one_of(st.none(), st.binary(max_size=3000)),
        st.one_of(st.none(), st.binary(max_size=300_000)),
        st.lists(st.text(max_size=2000), max_size=80),
    )
    def test_never_larger_than_the_bound(
        self, key: bytes | None, value: bytes | None, errors: list[str]
    ) -> None:
        _, _, size = self.message(key=key, value=value, errors=errors)
        assert size <= MAX_DEAD_LETTER_BYTES


# ---------------------------------------------------------------------------------- results


def example_result() -> ResultMessage:
    return ResultMessage.build(
        certification_id="RZ20260913000123",
        revision=1,
        channel=Channel.APP_12333,
        id_number="11010519491231002X",
        outcome=Outcome.QUALIFIED,
        reason="认证通过",
        certified_at="2026-09-30T09:21:05+08:00",
        due_date=dt.date(2026, 10, 13),
        decided_at=dt.datetime(2026, 9, 30, 9, 21, 7, tzinfo=CST),
        decided_by=DECIDED_BY_RULES,
    )


class TestResultId:
    def test_format(self) -> None:
        assert result_id("RZ20260913000123", 1) == "RZ20260913000123:1"
        assert result_id("a_B-9", 12) == "a_B-9:12"

    @pytest.mark.parametrize(
        ("certification_id", "revision"),
        [("RZ1", 0), ("RZ1", -1), ("", 1), ("RZ 1", 1), ("A" * 65, 1), ("RZ:1", 1), ("RZ1", True)],
    )
    def test_rejects(self, certification_id: str, revision: int) -> None:
        with pytest.raises(ValueError, match=r"certification_id|revision"):
            result_id(certification_id, revision)


class TestResultMessage:
    def test_contract_example_round_trips_byte_for_byte(self) -> None:
        raw = example_bytes("result-qualified.json")
        message = ResultMessage.from_bytes(raw)
        assert message == example_result()
        compact = json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":"))
        assert message.to_bytes() == compact.encode("utf-8")

    def test_matches_the_schema(self) -> None:
        body = json.loads(example_result().to_bytes())
        result_schema = load_schema("result")
        assert check_document("result", body) == []
        # Keys come out in the schema's order, which is also the contract table's order.
        assert list(body) == result_schema["required"]
        assert set(ResultMessage.model_fields) == set(result_schema["properties"])

    def test_schema_checker_is_not_vacuous(self) -> None:
        body = json.loads(example_result().to_bytes())
        for key, broken in [
            ("schema_version", "1"),
            ("result_id", "RZ1:0"),
            ("outcome", "passed"),
            ("due_date", "13/10/2026"),
            ("decided_at", "2026-09-30T09:21:07"),
            ("decided_by", "robot"),
        ]:
            assert check_document("result", {**body, key: broken}), key
        assert check_document("result", {k: v for k, v in body.items() if k != "reason"})

    def test_compact_and_unescaped(self) -> None:
        raw = example_result().to_bytes()
        assert "认证通过".encode() in raw
        assert b"\\u" not in raw
        assert b", " not in raw
        assert raw == example_result().to_bytes()

    def test_revision(self) -> None:
        assert example_result().revision == 1
        second = example_result().model_copy(update={"result_id": "RZ20260913000123:2"})
        assert second.revision == 2

    def test_utc_decided_at_is_written_with_z(self) -> None:
        message = example_result().model_copy(
            update={"decided_at": dt.datetime(2026, 9, 30, 1, 21, 7, 500_000, tzinfo=dt.UTC)}
        )
        assert json.loads(message.to_bytes())["decided_at"] == "2026-09-30T01:21:07.500000Z"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("decided_at", dt.datetime(2026, 9, 30, 9, 21, 7)),  # noqa: DTZ001 - naive on purpose
            ("decided_by", "robot"),
            ("decided_by", "staff:"),
            ("certification_id", "RZ 1"),
            ("revision", 0),
        ],
    )
    def test_build_rejects(self, field: str, value: Any) -> None:
        arguments: dict[str, Any] = {
            "certification_id": "RZ1",
            "revision": 1,
            "channel": Channel.ESSC,
            "id_number": "11010519491231002X",
            "outcome": Outcome.INVALID_RECORD,
            "reason": "x",
            "certified_at": "",
            "due_date": dt.date(2026, 10, 13),
            "decided_at": dt.datetime(2026, 9, 30, tzinfo=dt.UTC),
            "decided_by": "rules",
        }
        arguments[field] = value
        with pytest.raises(ValueError):  # noqa: PT011 - several fields, several messages
            ResultMessage.build(**arguments)

    def test_result_id_must_name_the_certification(self) -> None:
        body = json.loads(example_result().to_bytes())
        body["result_id"] = "OTHER:1"
        with pytest.raises(ValidationError, match="result_id"):
            ResultMessage.model_validate(body)

    def test_unknown_fields_and_other_versions_are_rejected(self) -> None:
        body = json.loads(example_result().to_bytes())
        with pytest.raises(ValidationError):
            ResultMessage.model_validate({**body, "note": "x"})
        with pytest.raises(ValidationError):
            ResultMessage.model_validate({**body, "schema_version": 2})

    @given(
        certification_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
        revision=st.integers(1, 10**6),
        channel=st.sampled_from(list(Channel)),
        outcome=st.sampled_from(list(Outcome)),
        reason=st.text(min_size=1),
        data=st.data(),
        due_date=st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)),
        decided_at=st.datetimes(
            dt.datetime(2000, 1, 2),  # noqa: DTZ001 - the zone is drawn separately
            dt.datetime(2100, 12, 30),  # noqa: DTZ001
            timezones=st.sampled_from([dt.UTC, CST, dt.timezone(dt.timedelta(hours=-5))]),
        ),
    )
    def test_any_result_matches_the_schema(
        self,
        *,
        certification_id: str,
        revision: int,
        channel: Channel,
        outcome: Outcome,
        reason: str,
        data: st.DataObject,
        due_date: dt.date,
        decided_at: dt.datetime,
    ) -> None:
        # An invalid record echoes what it could read (or nothing), and only the rules give
        # that outcome; every other result answers a valid certification, decided by the
        # rules or by staff.
        if outcome is Outcome.INVALID_RECORD:
            id_number = data.draw(st.text(max_size=64))
            certified_at = data.draw(st.text(max_size=64))
            decided_by = DECIDED_BY_RULES
        else:
            id_number = "11010519491231002X"
            certified_at = data.draw(timestamps())[0]
            decided_by = data.draw(
                st.one_of(
                    st.just(DECIDED_BY_RULES),
                    st.from_regex(r"staff:[A-Za-z0-9_.@-]{1,64}", fullmatch=True),
                )
            )
        message = ResultMessage.build(
            certification_id=certification_id,
            revision=revision,
            channel=channel,
            id_number=id_number,
            outcome=outcome,
            reason=reason,
            certified_at=certified_at,
            due_date=due_date,
            decided_at=decided_at,
            decided_by=decided_by,
        )
        raw = message.to_bytes()
        body = json.loads(raw.decode("utf-8"))
        assert check_bytes("result", raw) == []
        assert ResultMessage.from_bytes(raw) == message
        assert body["result_id"] == f"{certification_id}:{revision}"


# ------------------------------------------------------------------ inbound examples (schema)


@pytest.mark.parametrize("name", ["12333-qualified.json", "consular-on-behalf.json"])
def test_inbound_examples_match_their_schema(name: str) -> None:
    assert check_bytes("certification", example_bytes(name)) == []


def _from_decoded(
    decoded: Invalid, *, partition: int, offset: int, timestamp_ms: int, key: bytes | None
) -> bytes:
    """What the worker writes for an invalid message: the decoder's verdict as is."""
    return dead_letter_payload(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        key=key,
        value=decoded.raw,
        errors=decoded.errors,
        certification_id=decoded.certification_id,
    )
