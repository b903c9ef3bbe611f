"""Result bytes written directly (``ResultFields.encode``) are the bytes pydantic writes for the
same ``ResultMessage`` (what results were encoded with before), and refused where the
model refuses them. (That the worker's results pass the shipped schema is checked by
tests/unit/test_record_path.py.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from certrecon.domain import Channel, Outcome
from certrecon.results import ResultFields, ResultMessage

texts = st.text(max_size=40) | st.sampled_from(
    ["认证通过", 'a"b\\c/d', "\x00\x1f\x7f\u2028\ud800", ""]
)
offsets = st.integers(-86399, 86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s)))
instants = (
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001 - bounds of a strategy
        max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=offsets,
    )
    | st.datetimes(timezones=st.just(dt.UTC))
    | st.datetimes()
)

fields = st.fixed_dictionaries(
    {
        "certification_id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
        | st.sampled_from(["", "a:b", "x" * 65, "é"]),
        "revision": st.integers(-2, 10**12),
        "channel": st.sampled_from(Channel),
        "id_number": texts,
        "outcome": st.sampled_from(Outcome),
        "reason": texts,
        "certified_at": texts,
        "due_date": st.dates(),
        "decided_at": instants,
        "decided_by": st.sampled_from(["rules", "staff:", "staff:w1", "staff:a\nb", "x"])
        | texts.map(lambda t: f"staff:{t}"),
    }
)


def _reference(values: dict[str, Any]) -> bytes | None:
    try:
        return ResultMessage.build(**values).model_dump_json().encode("utf-8")
    except (ValidationError, ValueError):
        return None


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields)
def test_written_bytes_are_pydantics_bytes(values: dict[str, Any]) -> None:
    want = _reference(values)
    if want is None:
        with pytest.raises(ValueError):  # noqa: PT011 - any refusal of the schema's
            ResultFields(**values).encode()
        return
    rid, got = ResultFields(**values).encode()
    assert got == want
    assert rid == f"{values['certification_id']}:{values['revision']}"
    assert ResultMessage.build(**values).to_bytes() == want


def test_a_naive_decision_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ResultFields(
            certification_id="A1",
            revision=1,
            channel=Channel.ESSC,
            id_number="",
            outcome=Outcome.QUALIFIED,
            reason="r",
            certified_at="",
            due_date=dt.date(2026, 10, 9),
            decided_at=dt.datetime(2026, 9, 30, 3, 0),  # noqa: DTZ001 - naive on purpose
            decided_by="rules",
        ).encode()
