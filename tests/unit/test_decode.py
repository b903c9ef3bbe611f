"""Decoding and validation of inbound certifications (contract, schema_version 1)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certrecon.calendar import FIRST_YEAR, LAST_YEAR
from certrecon.consumers import (
    DEFAULT_MAX_SKEW,
    Decoded,
    Invalid,
    Valid,
    decode,
    usable_certification_id,
)
from certrecon.consumers.models import (
    EARLIEST_CERTIFIED_AT,
    MESSAGE_NOT_JSON,
    MESSAGE_NOT_OBJECT,
    MESSAGE_NOT_UTF8,
    MESSAGE_TOMBSTONE,
)
from certrecon.contract import example_bytes
from certrecon.domain import CST, Certification, Channel, FaceMatch, IdType, Method, Person
from certrecon.ids import check_character, id_number_problems, normalise_id_number

RECEIVED = dt.datetime(2026, 9, 30, 3, 0, tzinfo=dt.UTC)
TOPICS = {
    Channel.NATIONAL_PLATFORM: "mohrss.certification.national-platform",
    Channel.APP_12333: "mohrss.certification.12333",
    Channel.ESSC: "mohrss.certification.essc",
    Channel.CONSULAR: "mohrss.certification.consular",
}
ERROR_LINE = re.compile(r"[a-z_]+(\.[a-z_]+)?: \S.*", re.DOTALL)
CERTIFICATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

SUBJECT_ID = "11010519491231002X"
OPERATOR_ID = "110108198001011237"


def run(
    message: dict[str, Any] | bytes | None,
    channel: Channel = Channel.APP_12333,
    *,
    received_at: dt.datetime = RECEIVED,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> Decoded:
    value = (
        json.dumps(message, ensure_ascii=False).encode("utf-8")
        if isinstance(message, dict)
        else message
    )
    return decode(
        value, topic=TOPICS[channel], channel=channel, received_at=received_at, max_skew=max_skew
    )


def valid(decoded: Decoded) -> Valid:
    assert isinstance(decoded, Valid), getattr(decoded, "errors", None)
    return decoded


def invalid(decoded: Decoded) -> Invalid:
    assert isinstance(decoded, Invalid), decoded
    return decoded


def base(channel: Channel = Channel.APP_12333) -> dict[str, Any]:
    """A valid message for ``channel``."""
    return {
        "schema_version": 1,
        "certification_id": "RZ20260913000123",
        "channel": channel.value,
        "subject": {"id_type": "resident_id", "id_number": SUBJECT_ID, "name": "张秀英"},
        "certified_at": "2026-09-30T09:21:05+08:00",
        "method": "face",
        "face_match": "pass",
        "on_behalf": None,
        "residence": {"country": "JP" if channel is Channel.CONSULAR else "CN"},
        "insured_region": "110105",
    }


def make_id(address: str = "110105", birth: str = "19490101", sequence: str = "123") -> str:
    first17 = address + birth + sequence
    return first17 + check_character(first17)


def wrong_check(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


# ---------------------------------------------------------------------------- contract examples


class TestContractExamples:
    def test_12333_example(self) -> None:
        raw = example_bytes("12333-qualified.json")
        result = valid(run(raw, Channel.APP_12333))
        assert result.raw == raw
        assert result.extra == {}
        assert result.certification == Certification(
            certification_id="RZ20260913000123",
            channel=Channel.APP_12333,
            id_type=IdType.RESIDENT_ID,
            id_number="11010519491231002X",
            name="张秀英",
            certified_at=dt.datetime(2026, 9, 30, 9, 21, 5, tzinfo=CST),
            certified_at_raw="2026-09-30T09:21:05+08:00",
            method=Method.FACE,
            face_match=FaceMatch.PASS,
            insured_region="110105",
            on_behalf=None,
            residence_country="CN",
        )
        assert result.certification.local_date == dt.date(2026, 9, 30)

    def test_consular_example(self) -> None:
        raw = example_bytes("consular-on-behalf.json")
        cert = valid(run(raw, Channel.CONSULAR)).certification
        assert cert.id_type is IdType.RESIDENT_ID  # the default, id_type is absent
        assert cert.id_number == "110108195203154515"
        assert cert.on_behalf == Person(id_number="110108198001011237", name="王晓")
        assert cert.residence_country == "JP"
        assert cert.method is Method.FACE_VIDEO
        assert cert.certified_at == dt.datetime(2026, 2, 13, 17, 30, tzinfo=dt.UTC)
        assert cert.certified_at.utcoffset() == dt.timedelta(0)
        assert cert.certified_at_raw == "2026-02-13T17:30:00Z"
        assert cert.local_date == dt.date(2026, 2, 14)

    @pytest.mark.parametrize(
        ("name", "channel"),
        [
            ("12333-qualified.json", Channel.APP_12333),
            ("consular-on-behalf.json", Channel.CONSULAR),
        ],
    )
    @pytest.mark.parametrize("topic_channel", list(Channel))
    def test_examples_only_on_their_own_topic(
        self, name: str, channel: Channel, topic_channel: Channel
    ) -> None:
        raw = example_bytes(name)
        result = run(raw, topic_channel)
        if topic_channel is channel:
            valid(result)
            return
        errors = invalid(result).errors
        assert (
            f"channel: {channel.value} does not match topic {TOPICS[topic_channel]} "
            f"(channel {topic_channel.value})"
        ) in errors
        assert invalid(result).certification_id == json.loads(raw)["certification_id"]


# --------------------------------------------------------------------------------- envelope


class TestEnvelope:
    def test_tombstone(self) -> None:
        result = invalid(run(None))
        assert result.errors == (MESSAGE_TOMBSTONE,)
        assert result.certification_id is None
        assert result.raw is None

    @pytest.mark.parametrize(
        "value",
        [b"\xff\xfe{}", b'{"certification_id": "A\xc3"}', b"\xed\xa0\x80", b"\x80"],
    )
    def test_not_utf8(self, value: bytes) -> None:
        result = invalid(run(value))
        assert result.errors == (MESSAGE_NOT_UTF8,)
        assert result.certification_id is None
        assert result.raw == value

    @pytest.mark.parametrize(
        "value",
        [
            b"",
            b"{",
            b'{"certification_id": "A1",}',
            b"\xef\xbb\xbf{}",  # a byte order mark is not JSON
            b'{"a": "\\ud800"}',  # a lone surrogate cannot become UTF-8 text
            b"[" * 100_000,
            b'{"schema_version": 1} trailing',
            "认证".encode(),
        ],
    )
    def test_not_json(self, value: bytes) -> None:
        result = invalid(run(value))
        assert result.errors == (MESSAGE_NOT_JSON,)
        assert result.certification_id is None

    @pytest.mark.parametrize(
        "value", [b"[]", b'[{"certification_id": "A1"}]', b'"A1"', b"1", b"null", b"true"]
    )
    def test_not_an_object(self, value: bytes) -> None:
        result = invalid(run(value))
        assert result.errors == (MESSAGE_NOT_OBJECT,)
        assert result.certification_id is None

    def test_naive_received_at_is_a_caller_error(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            run(base(), received_at=dt.datetime(2026, 9, 30, 3, 0))  # noqa: DTZ001

    def test_negative_skew_is_a_caller_error(self) -> None:
        with pytest.raises(ValueError, match="max_skew"):
            run(base(), max_skew=dt.timedelta(seconds=-1))


# --------------------------------------------------------------------------- single rules


@dataclass(frozen=True)
class Violation:
    """One broken rule: how to break it and the error it must produce."""

    key: str
    group: str
    """Violations of one group touch the same field; the multi-violation test takes one each."""
    mutate: Callable[[dict[str, Any], Channel], None]
    expected: Callable[[Channel], str]
    consular: bool = False
    """Only a rule of the consular channel."""


def _set(path: str, value: Any) -> Callable[[dict[str, Any], Channel], None]:
    *parents, leaf = path.split(".")

    def mutate(message: dict[str, Any], _channel: Channel) -> None:
        target = message
        for part in parents:
            target = target[part]
        target[leaf] = copy.deepcopy(value)

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any], Channel], None]:
    *parents, leaf = path.split(".")

    def mutate(message: dict[str, Any], _channel: Channel) -> None:
        target = message
        for part in parents:
            target = target[part]
        target.pop(leaf, None)

    return mutate


def _subject_id(id_number: Any, id_type: str = "resident_id") -> Callable[..., None]:
    def mutate(message: dict[str, Any], _channel: Channel) -> None:
        message["subject"]["id_type"] = id_type
        message["subject"]["id_number"] = id_number

    return mutate


def _other_channel(message: dict[str, Any], channel: Channel) -> None:
    message["channel"] = _other(channel).value


def _other(channel: Channel) -> Channel:
    return Channel.ESSC if channel is not Channel.ESSC else Channel.APP_12333


def _fixed(text: str) -> Callable[[Channel], str]:
    return lambda _channel: text


def _on_behalf(**fields: Any) -> Callable[[dict[str, Any], Channel], None]:
    def mutate(message: dict[str, Any], _channel: Channel) -> None:
        message["on_behalf"] = {"id_number": OPERATOR_ID, "name": "王晓", **fields}
        for key, value in fields.items():
            if value is _ABSENT:
                del message["on_behalf"][key]

    return mutate


_ABSENT = object()

T_SCHEMA = "schema_version: must be the integer 1"
T_CID = "certification_id: must be a string of 1–64 characters from A-Z a-z 0-9 _ -"
T_CHANNEL = "channel: must be one of national_platform, 12333, essc, consular"
T_ID_TYPE = (
    "subject.id_type: must be one of resident_id, hmt_residence_permit, foreign_permanent_resident"
)
T_SHAPE = (
    "must be 18 characters (17 digits and a check character 0-9 or X) or 3 letters and 12 digits"
)
T_CHECK = "check character does not match (ISO 7064 MOD 11-2)"
T_NAME = "subject.name: must be a string of 1–64 characters"
T_TIME = "certified_at: must be an RFC 3339 timestamp with an explicit offset"
T_OUTSIDE_CALENDAR = (
    "certified_at: is outside the supported calendar range 2004-01-01..2099-12-31 "
    "(China Standard Time)"
)
T_COUNTRY = "residence.country: must be an ISO 3166-1 alpha-2 code in upper case"

VIOLATIONS = [
    Violation(
        "schema_version_string", "schema_version", _set("schema_version", "1"), _fixed(T_SCHEMA)
    ),
    Violation(
        "schema_version_true", "schema_version", _set("schema_version", True), _fixed(T_SCHEMA)
    ),
    Violation(
        "schema_version_float", "schema_version", _set("schema_version", 1.0), _fixed(T_SCHEMA)
    ),
    Violation("schema_version_2", "schema_version", _set("schema_version", 2), _fixed(T_SCHEMA)),
    Violation(
        "schema_version_null", "schema_version", _set("schema_version", None), _fixed(T_SCHEMA)
    ),
    Violation(
        "schema_version_missing",
        "schema_version",
        _drop("schema_version"),
        _fixed("schema_version: required"),
    ),
    Violation("cid_space", "certification_id", _set("certification_id", "RZ 1"), _fixed(T_CID)),
    Violation("cid_empty", "certification_id", _set("certification_id", ""), _fixed(T_CID)),
    Violation("cid_65", "certification_id", _set("certification_id", "A" * 65), _fixed(T_CID)),
    Violation("cid_unicode", "certification_id", _set("certification_id", "认证1"), _fixed(T_CID)),
    Violation("cid_newline", "certification_id", _set("certification_id", "RZ1\n"), _fixed(T_CID)),
    Violation("cid_number", "certification_id", _set("certification_id", 123), _fixed(T_CID)),
    Violation(
        "cid_missing",
        "certification_id",
        _drop("certification_id"),
        _fixed("certification_id: required"),
    ),
    Violation("channel_unknown", "channel", _set("channel", "wechat"), _fixed(T_CHANNEL)),
    Violation("channel_case", "channel", _set("channel", "ESSC"), _fixed(T_CHANNEL)),
    Violation("channel_number", "channel", _set("channel", 12333), _fixed(T_CHANNEL)),
    Violation("channel_missing", "channel", _drop("channel"), _fixed("channel: required")),
    Violation(
        "channel_mismatch",
        "channel",
        _other_channel,
        lambda ch: (
            f"channel: {_other(ch).value} does not match topic {TOPICS[ch]} (channel {ch.value})"
        ),
    ),
    Violation(
        "id_type_unknown", "subject.id", _set("subject.id_type", "passport"), _fixed(T_ID_TYPE)
    ),
    Violation("id_type_number", "subject.id", _set("subject.id_type", 1), _fixed(T_ID_TYPE)),
    Violation(
        "id_shape", "subject.id", _subject_id("12345"), _fixed(f"subject.id_number: {T_SHAPE}")
    ),
    Violation(
        "id_full_width",
        "subject.id",
        _subject_id("１１０１０５１９４９１２３１００２Ｘ"),
        _fixed(f"subject.id_number: {T_SHAPE}"),
    ),
    Violation(
        "id_padded",
        "subject.id",
        _subject_id(f" {SUBJECT_ID}"),
        _fixed(f"subject.id_number: {T_SHAPE}"),
    ),
    Violation(
        "id_check",
        "subject.id",
        _subject_id(wrong_check(SUBJECT_ID)),
        _fixed(f"subject.id_number: {T_CHECK}"),
    ),
    Violation(
        "id_birth_date",
        "subject.id",
        _subject_id(make_id(birth="19490229")),
        _fixed("subject.id_number: birth date is not a valid date"),
    ),
    Violation(
        "id_born_after_receipt",
        "subject.id",
        _subject_id(make_id(birth="20261001")),
        _fixed("subject.id_number: birth date is in the future"),
    ),
    Violation(
        "id_address",
        "subject.id",
        _subject_id(make_id(address="990101")),
        _fixed(
            "subject.id_number: is a foreign permanent resident card number "
            "but id_type is resident_id"
        ),
    ),
    Violation(
        "id_province",
        "subject.id",
        _subject_id(make_id(address="160101")),
        _fixed("subject.id_number: address code does not start with a province-level code"),
    ),
    Violation(
        "id_hmt_as_resident",
        "subject.id",
        _subject_id(make_id(address="810000")),
        _fixed(
            "subject.id_number: is a Hong Kong/Macao/Taiwan residence permit number "
            "but id_type is resident_id"
        ),
    ),
    Violation(
        "id_resident_as_hmt",
        "subject.id",
        _subject_id(SUBJECT_ID, "hmt_residence_permit"),
        _fixed("subject.id_number: is a resident ID number but id_type is hmt_residence_permit"),
    ),
    Violation(
        "id_resident_as_foreign",
        "subject.id",
        _subject_id(SUBJECT_ID, "foreign_permanent_resident"),
        _fixed(
            "subject.id_number: is a resident ID number but id_type is foreign_permanent_resident"
        ),
    ),
    Violation(
        "id_number_int",
        "subject.id",
        _subject_id(110105194912310020),
        _fixed("subject.id_number: must be a string"),
    ),
    Violation(
        "id_missing",
        "subject.id",
        _drop("subject.id_number"),
        _fixed("subject.id_number: required"),
    ),
    Violation("name_empty", "subject.name", _set("subject.name", ""), _fixed(T_NAME)),
    Violation("name_65", "subject.name", _set("subject.name", "张" * 65), _fixed(T_NAME)),
    Violation("name_huge", "subject.name", _set("subject.name", "𠀀" * 100_000), _fixed(T_NAME)),
    Violation("name_null", "subject.name", _set("subject.name", None), _fixed(T_NAME)),
    Violation("name_list", "subject.name", _set("subject.name", ["张", "三"]), _fixed(T_NAME)),
    Violation(
        "name_blank",
        "subject.name",
        _set("subject.name", " \u3000 "),
        _fixed("subject.name: must not be blank"),
    ),
    Violation(
        "name_control",
        "subject.name",
        _set("subject.name", "张\t三"),
        _fixed("subject.name: must not contain control characters"),
    ),
    Violation(
        "name_line_separator",
        "subject.name",
        _set("subject.name", "张\u2028三"),
        _fixed("subject.name: must not contain control characters"),
    ),
    Violation(
        "name_missing", "subject.name", _drop("subject.name"), _fixed("subject.name: required")
    ),
    Violation(
        "subject_string",
        "subject",
        _set("subject", SUBJECT_ID),
        _fixed("subject: must be an object"),
    ),
    Violation(
        "subject_null", "subject", _set("subject", None), _fixed("subject: must be an object")
    ),
    Violation("subject_missing", "subject", _drop("subject"), _fixed("subject: required")),
    Violation(
        "time_naive", "certified_at", _set("certified_at", "2026-09-30T09:21:05"), _fixed(T_TIME)
    ),
    Violation("time_date_only", "certified_at", _set("certified_at", "2026-09-30"), _fixed(T_TIME)),
    Violation(
        "time_space",
        "certified_at",
        _set("certified_at", "2026-09-30 09:21:05+08:00"),
        _fixed(T_TIME),
    ),
    Violation(
        "time_no_colon",
        "certified_at",
        _set("certified_at", "2026-09-30T09:21:05+0800"),
        _fixed(T_TIME),
    ),
    Violation(
        "time_offset_24",
        "certified_at",
        _set("certified_at", "2026-09-30T09:21:05+24:00"),
        _fixed(T_TIME),
    ),
    Violation(
        "time_leap_second",
        "certified_at",
        _set("certified_at", "2016-12-31T23:59:60Z"),
        _fixed(T_TIME),
    ),
    Violation(
        "time_feb_30", "certified_at", _set("certified_at", "2026-02-30T09:21:05Z"), _fixed(T_TIME)
    ),
    Violation(
        "time_10_fraction_digits",
        "certified_at",
        _set("certified_at", "2026-09-30T09:21:05.1234567891Z"),
        _fixed(T_TIME),
    ),
    Violation(
        "time_epoch_number", "certified_at", _set("certified_at", 1790000000), _fixed(T_TIME)
    ),
    Violation("time_null", "certified_at", _set("certified_at", None), _fixed(T_TIME)),
    Violation(
        "time_future",
        "certified_at",
        _set("certified_at", "2026-09-30T11:10:00.000001+08:00"),
        _fixed("certified_at: is more than 10 minutes after the time of receipt"),
    ),
    Violation(
        "time_before_the_calendar",
        "certified_at",
        _set("certified_at", "2003-12-31T15:59:59Z"),
        _fixed(T_OUTSIDE_CALENDAR),
    ),
    Violation(
        "time_2002_before_the_calendar",
        "certified_at",
        _set("certified_at", "2002-06-01T10:00:00+08:00"),
        _fixed(T_OUTSIDE_CALENDAR),
    ),
    Violation(
        "time_missing", "certified_at", _drop("certified_at"), _fixed("certified_at: required")
    ),
    Violation(
        "method_unknown",
        "method",
        _set("method", "fingerprint"),
        _fixed("method: must be one of face, face_video, assisted"),
    ),
    Violation("method_missing", "method", _drop("method"), _fixed("method: required")),
    Violation(
        "face_match_case",
        "face_match",
        _set("face_match", "PASS"),
        _fixed("face_match: must be one of pass, fail"),
    ),
    Violation(
        "face_match_bool",
        "face_match",
        _set("face_match", True),
        _fixed("face_match: must be one of pass, fail"),
    ),
    Violation(
        "face_match_missing", "face_match", _drop("face_match"), _fixed("face_match: required")
    ),
    Violation(
        "on_behalf_string",
        "on_behalf",
        _set("on_behalf", "王晓"),
        _fixed("on_behalf: must be an object or null"),
    ),
    Violation(
        "on_behalf_id_check",
        "on_behalf",
        _on_behalf(id_number=wrong_check(OPERATOR_ID)),
        _fixed(f"on_behalf.id_number: {T_CHECK}"),
    ),
    Violation(
        "on_behalf_id_int",
        "on_behalf",
        _on_behalf(id_number=110108198001011237),
        _fixed("on_behalf.id_number: must be a string"),
    ),
    Violation(
        "on_behalf_name_missing",
        "on_behalf",
        _on_behalf(name=_ABSENT),
        _fixed("on_behalf.name: required"),
    ),
    Violation(
        "on_behalf_name_blank",
        "on_behalf",
        _on_behalf(name="  "),
        _fixed("on_behalf.name: must not be blank"),
    ),
    Violation(
        "on_behalf_name_long",
        "on_behalf",
        _on_behalf(name="王" * 65),
        _fixed("on_behalf.name: must be a string of 1–64 characters"),
    ),
    Violation(
        "residence_list",
        "residence",
        _set("residence", ["JP"]),
        _fixed("residence: must be an object or null"),
    ),
    Violation(
        "country_lower", "residence", _set("residence", {"country": "jp"}), _fixed(T_COUNTRY)
    ),
    Violation(
        "country_alpha3", "residence", _set("residence", {"country": "JPN"}), _fixed(T_COUNTRY)
    ),
    Violation(
        "country_number", "residence", _set("residence", {"country": 392}), _fixed(T_COUNTRY)
    ),
    Violation(
        "region_code_number",
        "residence",
        _set("residence", {"country": "JP", "region_code": 110105}),
        _fixed("residence.region_code: must be a string or null"),
    ),
    Violation(
        "consular_residence_missing",
        "residence",
        _drop("residence"),
        _fixed("residence.country: required on the consular channel"),
        consular=True,
    ),
    Violation(
        "consular_residence_null",
        "residence",
        _set("residence", None),
        _fixed("residence.country: required on the consular channel"),
        consular=True,
    ),
    Violation(
        "consular_country_missing",
        "residence",
        _set("residence", {"region_code": "JP-13"}),
        _fixed("residence.country: required on the consular channel"),
        consular=True,
    ),
    Violation(
        "consular_country_null",
        "residence",
        _set("residence", {"country": None}),
        _fixed("residence.country: required on the consular channel"),
        consular=True,
    ),
    Violation(
        "consular_country_cn",
        "residence",
        _set("residence", {"country": "CN"}),
        _fixed("residence.country: must not be CN on the consular channel"),
        consular=True,
    ),
    Violation(
        "region_5_digits",
        "insured_region",
        _set("insured_region", "11010"),
        _fixed("insured_region: must be 6 digits"),
    ),
    Violation(
        "region_trailing_newline",
        "insured_region",
        _set("insured_region", "110105\n"),
        _fixed("insured_region: must be 6 digits"),
    ),
    Violation(
        "region_full_width",
        "insured_region",
        _set("insured_region", "１１０１０５"),
        _fixed("insured_region: must be 6 digits"),
    ),
    Violation(
        "region_int",
        "insured_region",
        _set("insured_region", 110105),
        _fixed("insured_region: must be 6 digits"),
    ),
    Violation(
        "region_missing",
        "insured_region",
        _drop("insured_region"),
        _fixed("insured_region: required"),
    ),
]
VIOLATION_BY_KEY = {v.key: v for v in VIOLATIONS}
GROUPS = sorted({v.group for v in VIOLATIONS})
# A broken subject object hides every rule inside it, so it is combined with nothing there.
_HIDES = {"subject": {"subject.id", "subject.name"}}


def _channels_for(violation: Violation) -> list[Channel]:
    return [Channel.CONSULAR] if violation.consular else list(Channel)


@pytest.mark.parametrize(
    ("violation", "channel"),
    [(v, ch) for v in VIOLATIONS for ch in _channels_for(v)],
    ids=lambda p: p.key if isinstance(p, Violation) else p.value,
)
def test_single_violation_gives_exactly_its_error(violation: Violation, channel: Channel) -> None:
    message = base(channel)
    violation.mutate(message, channel)
    result = invalid(run(message, channel))
    assert result.errors == (violation.expected(channel),)
    # Every text names its field and never carries personal data.
    for error in result.errors:
        assert ERROR_LINE.fullmatch(error)
        assert SUBJECT_ID[:10] not in error
        assert "张" not in error
    if violation.group != "certification_id":
        assert result.certification_id == "RZ20260913000123"
    else:
        assert result.certification_id is None


def test_every_group_has_a_single_violation() -> None:
    assert set(GROUPS) >= {
        "schema_version",
        "certification_id",
        "channel",
        "subject",
        "subject.id",
        "subject.name",
        "certified_at",
        "method",
        "face_match",
        "on_behalf",
        "residence",
        "insured_region",
    }


def test_all_rules_fail_at_once() -> None:
    message = {
        "schema_version": "1",
        "certification_id": "RZ 1",
        "channel": "essc",
        "subject": {"id_type": "resident_id", "id_number": "11010519490229003X", "name": ""},
        "certified_at": "2026-09-30",
        "method": "face_and_voice",
        "face_match": "ok",
        "on_behalf": {"id_number": "x", "name": "\x00"},
        "residence": {"country": "CN"},
        "insured_region": "beijing",
    }
    result = invalid(run(message, Channel.CONSULAR))
    assert result.errors == (
        "message: on_behalf.name: NUL character",
        T_SCHEMA,
        T_CID,
        "channel: essc does not match topic mohrss.certification.consular (channel consular)",
        "subject.id_number: birth date is not a valid date",
        "subject.id_number: check character does not match (ISO 7064 MOD 11-2)",
        T_NAME,
        T_TIME,
        "method: must be one of face, face_video, assisted",
        "face_match: must be one of pass, fail",
        f"on_behalf.id_number: {T_SHAPE}",
        "on_behalf.name: must not contain control characters",
        "residence.country: must not be CN on the consular channel",
        "insured_region: must be 6 digits",
    )
    assert result.certification_id is None
    assert result.certified_at is None
    assert result.certified_at_raw == "2026-09-30"
    assert result.id_number is None
    assert result.id_number_as_sent == "11010519490229003X"


@st.composite
def violation_sets(draw: st.DrawFn) -> list[Violation]:
    groups = draw(st.lists(st.sampled_from(GROUPS), min_size=2, unique=True))
    hidden = set().union(*(_HIDES.get(g, set()) for g in groups))
    chosen = [g for g in groups if g not in hidden]
    return [draw(st.sampled_from([v for v in VIOLATIONS if v.group == g])) for g in chosen]


@settings(max_examples=300)
@given(violation_sets(), st.sampled_from(list(Channel)))
def test_multiple_violations_are_all_listed(violations: list[Violation], drawn: Channel) -> None:
    channel = Channel.CONSULAR if any(v.consular for v in violations) else drawn
    message = base(channel)
    for violation in violations:
        violation.mutate(message, channel)
    result = invalid(run(message, channel))
    assert sorted(result.errors) == sorted(v.expected(channel) for v in violations)


# -------------------------------------------------------------------------- accepted forms


class TestAccepted:
    def test_lower_case_x_is_normalised(self) -> None:
        message = base()
        message["subject"]["id_number"] = SUBJECT_ID.lower()
        message["on_behalf"] = {"id_number": "11010519491231002x", "name": "王晓"}
        cert = valid(run(message)).certification
        assert cert.id_number == SUBJECT_ID
        assert cert.on_behalf is not None
        assert cert.on_behalf.id_number == SUBJECT_ID

    @pytest.mark.parametrize(
        ("id_type", "number"),
        [
            ("hmt_residence_permit", make_id("810000", "19700101")),
            ("hmt_residence_permit", make_id("820000", "19700101")),
            ("hmt_residence_permit", make_id("830000", "19700101")),
            ("foreign_permanent_resident", make_id("931840", "19650515")),
            ("foreign_permanent_resident", "USA310065051512"),
            ("foreign_permanent_resident", "usa310065051512"),
        ],
    )
    def test_other_id_types(self, id_type: str, number: str) -> None:
        message = base()
        message["subject"] = {"id_type": id_type, "id_number": number, "name": "Anna Müller"}
        cert = valid(run(message)).certification
        assert cert.id_type is IdType(id_type)
        assert cert.id_number == number.upper()

    def test_null_in_optional_fields_means_absent(self) -> None:
        message = base()
        message["subject"]["id_type"] = None
        message["on_behalf"] = None
        message["residence"] = None
        cert = valid(run(message)).certification
        assert cert.id_type is IdType.RESIDENT_ID
        assert cert.on_behalf is None
        assert cert.residence_country is None
        message["residence"] = {"country": None, "region_code": None}
        assert valid(run(message)).certification.residence_country is None

    def test_optional_fields_may_be_absent_off_the_consular_channel(self) -> None:
        message = base(Channel.ESSC)
        for key in ("on_behalf", "residence"):
            del message[key]
        del message["subject"]["id_type"]
        cert = valid(run(message, Channel.ESSC)).certification
        assert (cert.on_behalf, cert.residence_country) == (None, None)

    def test_cn_is_fine_off_the_consular_channel(self) -> None:
        for channel in (Channel.NATIONAL_PLATFORM, Channel.APP_12333, Channel.ESSC):
            message = base(channel)
            message["residence"] = {"country": "CN"}
            assert valid(run(message, channel)).certification.residence_country == "CN"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-09-30T01:21:05Z", dt.datetime(2026, 9, 30, 1, 21, 5, tzinfo=dt.UTC)),
            ("2026-09-30t01:21:05z", dt.datetime(2026, 9, 30, 1, 21, 5, tzinfo=dt.UTC)),
            ("2026-09-30T01:21:05-00:00", dt.datetime(2026, 9, 30, 1, 21, 5, tzinfo=dt.UTC)),
            (
                "2026-09-30T09:21:05.5+08:00",
                dt.datetime(2026, 9, 30, 9, 21, 5, 500_000, tzinfo=CST),
            ),
            (
                "2026-09-30T09:21:05.123456789+08:00",
                dt.datetime(2026, 9, 30, 9, 21, 5, 123_456, tzinfo=CST),
            ),
            (
                "2026-09-29T21:21:05-04:00",
                dt.datetime(2026, 9, 30, 1, 21, 5, tzinfo=dt.UTC),
            ),
            (
                "2026-09-30T01:21:05+05:45",
                dt.datetime(2026, 9, 29, 19, 36, 5, tzinfo=dt.UTC),
            ),
        ],
    )
    def test_timestamp_forms(self, text: str, expected: dt.datetime) -> None:
        message = base()
        message["certified_at"] = text
        cert = valid(run(message)).certification
        assert cert.certified_at == expected
        assert cert.certified_at.utcoffset() is not None
        assert cert.certified_at_raw == text

    def test_exactly_max_skew_ahead_is_accepted(self) -> None:
        message = base()
        message["certified_at"] = "2026-09-30T03:10:00Z"
        valid(run(message))
        message["certified_at"] = "2026-09-30T03:10:00.000001Z"
        invalid(run(message))

    def test_max_skew_is_configurable(self) -> None:
        message = base()
        message["certified_at"] = "2026-09-30T03:00:31Z"
        assert invalid(run(message, max_skew=dt.timedelta(seconds=30))).errors == (
            "certified_at: is more than 30 seconds after the time of receipt",
        )
        assert invalid(run(message, max_skew=dt.timedelta(0))).errors == (
            "certified_at: is more than 0 minutes after the time of receipt",
        )
        message["certified_at"] = "2026-09-30T03:00:30Z"
        valid(run(message, max_skew=dt.timedelta(seconds=30)))

    def test_received_at_in_another_offset(self) -> None:
        message = base()
        message["certified_at"] = "2026-09-30T11:10:00+08:00"
        valid(run(message, received_at=RECEIVED.astimezone(CST)))

    def test_earliest_certified_at(self) -> None:
        message = base()
        message["certified_at"] = EARLIEST_CERTIFIED_AT.isoformat()
        valid(run(message))

    def test_names_are_kept_as_sent(self) -> None:
        for name in (" 张秀英 ", "阿依古丽·买买提", "王\u3000晓", "𠀀" * 64, "A"):
            message = base()
            message["subject"]["name"] = name
            assert valid(run(message)).certification.name == name

    def test_extra_fields_are_kept(self) -> None:
        message = base()
        message["trace"] = {"hops": [1, 2]}
        message["note"] = "补录"
        message["subject"]["gender"] = "F"
        message["residence"]["city"] = "Tokyo"
        result = valid(run(message))
        assert result.extra == {"trace": {"hops": [1, 2]}, "note": "补录"}
        assert json.loads(result.raw)["subject"]["gender"] == "F"


# ------------------------------------------------------- what pydantic's parser lets through


class TestMessageLevelProblems:
    """Duplicate keys, non-finite numbers and NUL characters make a message invalid, wherever
    they are: the stored raw bytes must mean exactly what was decided."""

    def test_a_duplicate_key_is_invalid_not_last_wins(self) -> None:
        raw = json.dumps(base()).encode()
        raw = raw.replace(b'"method": "face"', b'"method": "assisted", "method": "face"')
        result = invalid(run(raw))
        assert result.errors == ("message: duplicate key method",)
        assert result.certification_id == "RZ20260913000123"

    def test_a_duplicate_key_in_a_nested_object_or_an_extra_field(self) -> None:
        raw = json.dumps(base()).encode()
        raw = raw.replace(b'"name": ', b'"name": "x", "name": ', 1)
        raw = raw.replace(b"{", b'{"trace": 1, "trace": 2, ', 1)
        result = invalid(run(raw))
        assert result.errors == (
            "message: duplicate key trace",
            "message: duplicate key subject.name",
        )

    def test_a_duplicated_value_is_not_used_for_the_answer(self) -> None:
        # Which of two certification_ids would the answer name? Neither.
        raw = json.dumps(base()).encode()
        raw = raw.replace(
            b'"certification_id": ', b'"certification_id": "OTHER1", "certification_id": '
        )
        result = invalid(run(raw))
        assert result.certification_id is None

    def test_a_key_that_is_not_a_field_name_is_not_echoed(self) -> None:
        raw = json.dumps(base()).encode()
        raw = raw.replace(b"{", b'{"11010519491231002X": 1, "11010519491231002X": 2, ', 1)
        assert invalid(run(raw)).errors == ("message: duplicate key <key>",)

    @pytest.mark.parametrize(
        ("literal", "shown"),
        [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "1e400")],
    )
    def test_a_non_finite_number_anywhere(self, literal: str, shown: str) -> None:
        raw = json.dumps(base()).encode().replace(b"{", b'{"score": ' + literal.encode() + b", ", 1)
        result = invalid(run(raw))
        assert result.errors == (f"message: score: non-finite number {shown}",)

    def test_a_non_finite_number_in_a_field(self) -> None:
        raw = json.dumps(base()).encode().replace(b'"schema_version": 1', b'"schema_version": NaN')
        assert invalid(run(raw)).errors == (
            "message: schema_version: non-finite number NaN",
            T_SCHEMA,
        )

    @pytest.mark.parametrize(
        "where", ["note", "subject.alias", "certified_at", "subject.id_number"]
    )
    def test_a_nul_character_anywhere(self, where: str) -> None:
        message = base()
        target = message["subject"] if where.startswith("subject.") else message
        leaf = where.rpartition(".")[2]
        target[leaf] = str(target.get(leaf, "x")) + "\x00"
        result = invalid(run(message))
        assert f"message: {where}: NUL character" in result.errors
        # Nothing with a NUL is kept for the answer or for text columns.
        assert result.id_number_as_sent is None or "\x00" not in result.id_number_as_sent
        assert result.certified_at_raw is None or "\x00" not in result.certified_at_raw

    def test_a_nul_character_in_a_key(self) -> None:
        message = base()
        message["subject"]["a\x00b"] = 1
        assert invalid(run(message)).errors == ("message: NUL character in a key under subject",)

    def test_many_problems_are_counted_not_listed(self) -> None:
        message = base()
        for i in range(50):
            message[f"x{i}"] = "\x00"
        errors = invalid(run(message)).errors
        assert len(errors) == 8
        assert errors[-1] == "message: 43 more such problems"

    def test_control_characters_are_not_echoed_from_an_invalid_message(self) -> None:
        message = base()
        message["subject"]["id_number"] = "\x1b]0;x\x07"
        message["certified_at"] = "\u202e2026"
        result = invalid(run(message))
        assert result.id_number_as_sent is None
        assert result.certified_at_raw is None

    def test_a_huge_integer_is_refused(self) -> None:
        raw = json.dumps(base()).encode().replace(b"{", b'{"n": ' + b"9" * 5000 + b", ", 1)
        assert invalid(run(raw)).errors == (MESSAGE_NOT_JSON,)


# ----------------------------------------------------------------------------- partial info


class TestPartialInformation:
    def test_usable_certification_id_despite_everything_else(self) -> None:
        result = invalid(run({"certification_id": "LS2026-000871"}))
        assert result.certification_id == "LS2026-000871"
        assert result.channel is Channel.APP_12333
        assert len(result.errors) > 5

    @pytest.mark.parametrize(
        "value", [None, 1, "", "a b", "A" * 65, ["A1"], {"id": "A1"}, "A1\n", True]
    )
    def test_unusable_certification_id(self, value: Any) -> None:
        message = base()
        message["certification_id"] = value
        assert invalid(run(message)).certification_id is None

    def test_usable_certification_id_helper(self) -> None:
        assert usable_certification_id("A_b-1") == "A_b-1"
        assert usable_certification_id("A" * 64) == "A" * 64
        assert usable_certification_id("A" * 65) is None
        assert usable_certification_id(7) is None

    def test_id_number_and_time_survive_other_errors(self) -> None:
        message = base()
        message["subject"]["id_number"] = SUBJECT_ID.lower()
        message["method"] = "fingerprint"
        result = invalid(run(message))
        assert result.id_number == SUBJECT_ID
        assert result.id_number_as_sent == SUBJECT_ID.lower()
        assert result.certified_at == dt.datetime(2026, 9, 30, 9, 21, 5, tzinfo=CST)
        assert result.certified_at_raw == "2026-09-30T09:21:05+08:00"
        assert result.reason == "method: must be one of face, face_video, assisted"

    def test_id_number_of_the_wrong_type_is_still_usable(self) -> None:
        message = base()
        message["subject"]["id_type"] = "hmt_residence_permit"
        result = invalid(run(message))
        assert result.id_number == SUBJECT_ID

    def test_broken_id_number_is_only_echoed(self) -> None:
        message = base()
        message["subject"]["id_number"] = wrong_check(SUBJECT_ID)
        result = invalid(run(message))
        assert result.id_number is None
        assert result.id_number_as_sent == wrong_check(SUBJECT_ID)

    @pytest.mark.parametrize(
        "text", ["2030-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]
    )
    def test_time_breaking_its_rules_is_not_handed_out(self, text: str) -> None:
        message = base()
        message["certified_at"] = text
        result = invalid(run(message))
        assert result.certified_at is None
        assert result.certified_at_raw == text

    def test_overlong_strings_are_not_echoed(self) -> None:
        message = base()
        message["subject"]["id_number"] = "1" * 65
        message["certified_at"] = "2" * 65
        result = invalid(run(message))
        assert result.id_number_as_sent is None
        assert result.certified_at_raw is None
        assert result.certified_at is None

    def test_reason_joins_all_errors(self) -> None:
        message = base()
        message["method"] = "x"
        message["face_match"] = "y"
        assert invalid(run(message)).reason == (
            "method: must be one of face, face_video, assisted; "
            "face_match: must be one of pass, fail"
        )


# ------------------------------------------------------------------------------- hypothesis

_PROVINCES = ["11", "12", "13", "15", "23", "31", "37", "44", "46", "50", "54", "65", "71"]
_BIRTHS = st.dates(dt.date(1900, 1, 1), dt.date(2026, 9, 29))


@st.composite
def id_numbers(draw: st.DrawFn) -> tuple[str | None, IdType, str]:
    """(id_type as sent or None for absent, id_type meant, number as sent)."""
    form = draw(st.sampled_from(["resident", "hmt", "foreign_2023", "foreign_2017"]))
    if form == "foreign_2017":
        letters = draw(st.from_regex(r"[A-Za-z]{3}", fullmatch=True))
        digits = draw(st.from_regex(r"[0-9]{12}", fullmatch=True))
        return "foreign_permanent_resident", IdType.FOREIGN_PERMANENT_RESIDENT, letters + digits
    birth = draw(_BIRTHS).strftime("%Y%m%d")
    sequence = draw(st.from_regex(r"[0-9]{3}", fullmatch=True))
    if form == "resident":
        address = draw(st.sampled_from(_PROVINCES)) + draw(
            st.from_regex(r"[0-9]{4}", fullmatch=True)
        )
        sent_type = draw(st.sampled_from([None, "resident_id"]))
        meant = IdType.RESIDENT_ID
    elif form == "hmt":
        address = draw(st.sampled_from(["810000", "820000", "830000"]))
        sent_type, meant = "hmt_residence_permit", IdType.HMT_RESIDENCE_PERMIT
    else:
        address = "9" + draw(st.from_regex(r"[0-9]{5}", fullmatch=True))
        sent_type, meant = "foreign_permanent_resident", IdType.FOREIGN_PERMANENT_RESIDENT
    number = address + birth + sequence
    number += check_character(number)
    if number.endswith("X") and draw(st.booleans()):
        number = number[:-1] + "x"
    return sent_type, meant, number


_NAMES = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=64,
).filter(lambda s: bool(s.strip()))
# A valid message has no NUL character anywhere (keys included); mutations add them.
_NUL_FREE = st.characters(codec="utf-8", exclude_characters="\x00")
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_NUL_FREE, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(_NUL_FREE, max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_KNOWN = {
    "schema_version",
    "certification_id",
    "channel",
    "subject",
    "certified_at",
    "method",
    "face_match",
    "on_behalf",
    "residence",
    "insured_region",
}


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    latest = (RECEIVED + DEFAULT_MAX_SKEW).replace(tzinfo=None)
    moment = draw(st.datetimes(dt.datetime(FIRST_YEAR, 1, 2), latest)).replace(microsecond=0)  # noqa: DTZ001
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"[0-9]{1,9}", fullmatch=True)))
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    instant = moment.replace(tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
    if instant > RECEIVED + DEFAULT_MAX_SKEW:
        instant = instant.replace(microsecond=0)
        fraction = ""
    zulu = draw(st.booleans())
    minutes = 0 if zulu else draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    zone = dt.timezone(dt.timedelta(minutes=minutes))
    local = instant.astimezone(zone)
    if zulu:
        suffix = draw(st.sampled_from(["Z", "z"]))
    else:
        sign = "-" if minutes < 0 else "+"
        suffix = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    separator = draw(st.sampled_from(["T", "t"]))
    text = f"{local:%Y-%m-%d}{separator}{local:%H:%M:%S}"
    if fraction:
        text += "." + fraction
    return text + suffix, local


@st.composite
def valid_messages(
    draw: st.DrawFn, channel: Channel | None = None
) -> tuple[dict[str, Any], Channel, Certification, dict[str, Any]]:
    """A valid message, its channel, the certification it must decode to, its extras."""
    channel = channel or draw(st.sampled_from(list(Channel)))
    sent_type, id_type, number = draw(id_numbers())
    name = draw(_NAMES)
    certified_raw, certified_at = draw(timestamps())
    method = draw(st.sampled_from(list(Method)))
    face_match = draw(st.sampled_from(list(FaceMatch)))
    certification_id = draw(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
    region = draw(st.from_regex(r"[0-9]{6}", fullmatch=True))
    subject: dict[str, Any] = {"id_number": number, "name": name}
    if sent_type is not None or draw(st.booleans()):
        subject["id_type"] = sent_type
    message: dict[str, Any] = {
        "schema_version": 1,
        "certification_id": certification_id,
        "channel": channel.value,
        "subject": subject,
        "certified_at": certified_raw,
        "method": method.value,
        "face_match": face_match.value,
        "insured_region": region,
    }
    on_behalf = None
    if draw(st.booleans()):
        _, _, operator_id = draw(id_numbers())
        operator_name = draw(_NAMES)
        message["on_behalf"] = {"id_number": operator_id, "name": operator_name}
        on_behalf = Person(normalise_id_number(operator_id), operator_name)
    elif draw(st.booleans()):
        message["on_behalf"] = None
    country = None
    if channel is Channel.CONSULAR or draw(st.booleans()):
        country_codes = st.from_regex(r"[A-Z]{2}", fullmatch=True)
        if channel is Channel.CONSULAR:
            country_codes = country_codes.filter(lambda c: c != "CN")
        country = draw(country_codes)
        message["residence"] = {"country": country}
        if draw(st.booleans()):
            message["residence"]["region_code"] = draw(st.text(_NUL_FREE, max_size=10))
    elif draw(st.booleans()):
        message["residence"] = None
    extra = draw(
        st.dictionaries(
            st.text(_NUL_FREE, max_size=12).filter(lambda k: k not in _KNOWN), _JSON, max_size=3
        )
    )
    message.update(extra)
    expected = Certification(
        certification_id=certification_id,
        channel=channel,
        id_type=id_type,
        id_number=normalise_id_number(number),
        name=name,
        certified_at=certified_at,
        certified_at_raw=certified_raw,
        method=method,
        face_match=face_match,
        insured_region=region,
        on_behalf=on_behalf,
        residence_country=country,
    )
    return message, channel, expected, extra


def check_invariants(result: Decoded) -> None:
    """What every outcome must satisfy, whatever the input."""
    assert isinstance(result, Valid | Invalid)
    if isinstance(result, Valid):
        cert = result.certification
        assert cert.certified_at.utcoffset() is not None
        assert cert.certified_at >= EARLIEST_CERTIFIED_AT
        assert FIRST_YEAR <= cert.local_date.year <= LAST_YEAR
        assert id_number_problems(cert.id_number, cert.id_type) == []
        return
    assert result.errors
    assert len(set(result.errors)) == len(result.errors)
    for error in result.errors:
        assert ERROR_LINE.fullmatch(error), error
        error.encode("utf-8")
    if result.certification_id is not None:
        assert CERTIFICATION_ID.fullmatch(result.certification_id)
    if result.certified_at is not None:
        assert result.certified_at.utcoffset() is not None
        assert FIRST_YEAR <= result.certified_at.astimezone(CST).year <= LAST_YEAR
    if result.id_number is not None:
        assert id_number_problems(result.id_number) == []
    for text in (result.id_number_as_sent, result.certified_at_raw):
        if text is not None:
            text.encode("utf-8")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(valid_messages(), st.booleans())
def test_valid_messages_round_trip(
    drawn: tuple[dict[str, Any], Channel, Certification, dict[str, Any]], ascii_only: bool
) -> None:
    message, channel, expected, extra = drawn
    raw = json.dumps(message, ensure_ascii=ascii_only).encode("utf-8")
    result = valid(run(raw, channel))
    assert result.certification == expected
    assert result.certification.certified_at.utcoffset() == expected.certified_at.utcoffset()
    assert result.raw == raw
    assert dict(result.extra) == extra
    check_invariants(result)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(VIOLATIONS))
def test_single_violation_on_any_valid_message(data: st.DataObject, violation: Violation) -> None:
    channel = Channel.CONSULAR if violation.consular else None
    message, channel, _, _ = data.draw(valid_messages(channel))
    if violation.group == "on_behalf" or violation.key.startswith("region_code"):
        message.pop("on_behalf", None)
    if violation.group == "residence":
        message["residence"] = {"country": "JP"}
    violation.mutate(message, channel)
    result = invalid(run(message, channel))
    assert violation.expected(channel) in result.errors
    assert len(result.errors) == 1
    check_invariants(result)


@given(st.binary(max_size=512))
def test_arbitrary_bytes(value: bytes) -> None:
    check_invariants(run(value))


@given(_JSON)
def test_arbitrary_json(document: Any) -> None:
    check_invariants(run(json.dumps(document).encode()))


def _paths(document: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    if isinstance(document, dict):
        for key, value in document.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    return found


_ODD_TEXT = st.one_of(
    st.text(),
    st.text(min_size=1000, max_size=5000),
    st.text(alphabet=st.characters(min_codepoint=0x10000), max_size=80),
    st.sampled_from(["\x00", "\ufeff", "\u202e", "0" * 10_000, "ＲＺ１", "𠀀𠀁", "null", "1"]),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_messages(data: st.DataObject) -> None:
    message, channel, _, _ = data.draw(valid_messages())
    for _ in range(data.draw(st.integers(1, 4))):
        paths = _paths(message)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        *parents, leaf = path
        target = message
        for part in parents:
            target = target[part]
        operation = data.draw(st.sampled_from(["drop", "json", "text", "number"]))
        if operation == "drop":
            del target[leaf]
        elif operation == "json":
            target[leaf] = data.draw(_JSON)
        elif operation == "text":
            target[leaf] = data.draw(_ODD_TEXT)
        else:
            target[leaf] = data.draw(st.one_of(st.integers(), st.floats(allow_nan=False)))
    topic_channel = data.draw(st.sampled_from([channel, *Channel]))
    check_invariants(run(message, topic_channel))


@settings(max_examples=300)
@given(st.data())
def test_corrupted_bytes_of_valid_messages(data: st.DataObject) -> None:
    message, channel, _, _ = data.draw(valid_messages())
    raw = bytearray(json.dumps(message, ensure_ascii=False).encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    check_invariants(run(bytes(raw), channel))


def test_big_numbers_and_deep_nesting() -> None:
    for value in ("1" * 5000, "1e400", "-1e400", "[" * 3000 + "]" * 3000):
        raw = (
            b'{"schema_version": '
            + value.encode()
            + b', "certification_id": "A1", "x": '
            + value.encode()
            + b"}"
        )
        result = invalid(run(raw))
        check_invariants(result)
