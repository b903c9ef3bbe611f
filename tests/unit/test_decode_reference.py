"""The decoder's written-out field rules agree with the pydantic reading of the schema
(tests/unit/reference_decode.py) on every message: the same outcome, the same
certification, the same error texts in the same order, the same partial fields.

Messages come from the contract's JSON Schema, from valid certifications with one field
changed, removed or added, and from raw byte edits (JSON the two parsers judge
differently: lone surrogates, deep nesting, huge numbers, non-finite numbers, duplicate
keys, invalid UTF-8).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from certrecon.consumers import decode
from certrecon.contract import load_schema
from certrecon.domain import Channel
from certrecon.synthetic import certification_message, make_roster
from tests.unit.reference_decode import reference_decode

NOW = dt.datetime(2026, 9, 30, 3, 0, tzinfo=dt.UTC)
PEOPLE = make_roster(30, seed=11)
TOPIC = "certifications"

_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(value: bytes | None, channel: Channel, received_at: dt.datetime = NOW) -> None:
    got = decode(value, topic=TOPIC, channel=channel, received_at=received_at)
    want = reference_decode(value, topic=TOPIC, channel=channel, received_at=received_at)
    assert got == want


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
    | st.sampled_from(
        [
            "",
            " ",
            "1",
            "CN",
            "US",
            "cn",
            "resident_id",
            "hmt_residence_permit",
            "foreign_permanent_resident",
            "face",
            "fail",
            "pass",
            "essc",
            "12333",
            "consular",
            "national_platform",
            "110105",
            "2026-09-30T10:00:00+08:00",
            "2026-09-30t02:00:00.123456789z",
            "2026-10-30T10:00:00+08:00",
            "1999-01-01T00:00:00Z",
            "2026-02-30T10:00:00+08:00",
            "张三",
            "\u200b",
            "a\nb",
            "x" * 65,
            "ABC123",
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=6,
)

FIELDS = (
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
)
NESTED = ("subject", "on_behalf", "residence")
NESTED_KEYS = ("id_type", "id_number", "name", "country", "region_code")


def _base(person: int, channel: Channel, hours: int) -> dict[str, Any]:
    p = PEOPLE[person]
    return certification_message(f"C{person:04d}", channel, p, NOW - dt.timedelta(hours=hours))


@st.composite
def edited(draw: st.DrawFn) -> tuple[dict[str, Any], Channel]:
    channel = draw(st.sampled_from(Channel))
    body = _base(draw(st.integers(0, len(PEOPLE) - 1)), channel, draw(st.integers(-2, 24 * 900)))
    if draw(st.booleans()):
        body["on_behalf"] = {"id_number": PEOPLE[0].id_number, "name": PEOPLE[0].name}
    if draw(st.booleans()):
        body["residence"] = {
            "country": draw(st.sampled_from(["CN", "US", "DE"])),
            "region_code": None,
        }
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "drop", "extra", "nested-set", "nested-drop"]))
        if action == "set":
            body[draw(st.sampled_from(FIELDS))] = draw(json_values)
        elif action == "drop":
            body.pop(draw(st.sampled_from(FIELDS)), None)
        elif action == "extra":
            body[draw(st.text(max_size=10))] = draw(json_values)
        else:
            where = body.get(draw(st.sampled_from(NESTED)))
            if isinstance(where, dict):
                key = draw(st.sampled_from(NESTED_KEYS))
                if action == "nested-set":
                    where[key] = draw(json_values)
                else:
                    where.pop(key, None)
    return body, channel


@_SETTINGS
@given(edited())
def test_edited_certifications_decode_as_the_reference_does(
    case: tuple[dict[str, Any], Channel],
) -> None:
    body, channel = case
    same(json.dumps(body, ensure_ascii=False).encode(), channel)


@_SETTINGS
@given(document=from_schema(load_schema("certification")), channel=st.sampled_from(Channel))
def test_schema_messages_decode_as_the_reference_does(document: Any, channel: Channel) -> None:
    same(json.dumps(document, ensure_ascii=False).encode(), channel)


_RAW_EDITS = [
    b'"\\ud800"',
    b"[" * 300 + b"]" * 300,
    b"1" * 5000,
    b"NaN",
    b"1e400",
    b"\xff",
    b'"\xc3\x28"',
    b"",
    b"{",
    b"[]",
    b"null",
    b'{"a": 1, "a": 2}',
    b'"\\u0000"',
]


@_SETTINGS
@given(
    person=st.integers(0, len(PEOPLE) - 1),
    channel=st.sampled_from(Channel),
    where=st.integers(0, 400),
    edit=st.sampled_from(_RAW_EDITS) | st.binary(max_size=6),
    replace=st.booleans(),
)
@example(person=0, channel=Channel.ESSC, where=1, edit=b'"name": "\\udc00", ', replace=False)
@example(
    person=0,
    channel=Channel.ESSC,
    where=1,
    edit=b'"x": ' + b"[" * 250 + b"]" * 250 + b", ",
    replace=False,
)
@example(
    person=0, channel=Channel.ESSC, where=1, edit=b'"x": ' + b"9" * 4400 + b", ", replace=False
)
@example(person=0, channel=Channel.ESSC, where=1, edit=b'"x": 1e999, ', replace=False)
@example(person=0, channel=Channel.ESSC, where=1, edit=b'"x": -Infinity, ', replace=False)
@example(person=0, channel=Channel.ESSC, where=1, edit=b'"method": "x", ', replace=False)
def test_byte_edits_decode_as_the_reference_does(
    person: int, channel: Channel, where: int, edit: bytes, replace: bool
) -> None:
    raw = json.dumps(_base(person, channel, 3), ensure_ascii=False).encode()
    at = min(where, len(raw))
    tail = raw[at + len(edit) :] if replace else raw[at:]
    same(raw[:at] + edit + tail, channel)


def test_tombstones_and_whole_message_shapes_decode_as_the_reference_does() -> None:
    same(None, Channel.ESSC)
    for raw in _RAW_EDITS:
        same(raw, Channel.CONSULAR)
