"""The monitor's pure parts: levels at an instant, alert messages, calendar differences."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from certrecon.calendar import default_calendar
from certrecon.domain import CST
from certrecon.sla import Alert, SlaLevel, Window, alert_id
from certrecon.store.sla import alert_message
from certrecon.worker.metrics import Metrics
from certrecon.worker.monitor import calendar_fingerprint, changed_days


def cst(*parts: int) -> dt.datetime:
    """cst(2024, 6, 7, 9) is 2024-06-07 09:00 China Standard Time."""
    year, month, day, *rest = parts
    hour, minute, second = (*rest, 0, 0, 0)[:3]
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=CST)


@pytest.mark.parametrize(
    ("now", "level"),
    [
        # Due Tuesday 2024-06-11 (Monday 06-10 is the Dragon Boat Festival).
        (cst(2024, 6, 6, 23, 59, 59), SlaLevel.ON_TRACK),
        (cst(2024, 6, 7, 0), SlaLevel.AT_RISK),  # Friday: the next working day is Tuesday
        (cst(2024, 6, 9, 12), SlaLevel.AT_RISK),
        (cst(2024, 6, 11, 23, 59, 59), SlaLevel.AT_RISK),
        (cst(2024, 6, 12, 0), SlaLevel.AT_RISK),  # the deadline itself has not passed
        (cst(2024, 6, 12, 0, 0, 1), SlaLevel.BREACHED),
        (dt.datetime(2024, 6, 11, 16, 0, 1, tzinfo=dt.UTC), SlaLevel.BREACHED),
    ],
)
def test_levels_at_an_instant(now: dt.datetime, level: SlaLevel) -> None:
    window = Window.at(now, default_calendar())
    assert window.level(dt.date(2024, 6, 11), cst(2024, 6, 12)) is level


def test_the_window_is_in_china_standard_time() -> None:
    # 2024-06-06 16:30 UTC is already Friday 06-07 in Beijing.
    window = Window.at(dt.datetime(2024, 6, 6, 16, 30, tzinfo=dt.UTC), default_calendar())
    assert (window.today, window.next_working_day) == (dt.date(2024, 6, 7), dt.date(2024, 6, 11))
    with pytest.raises(ValueError, match="timezone-aware"):
        Window.at(dt.datetime(2024, 6, 6, 16, 30), default_calendar())  # noqa: DTZ001


def test_alert_message_follows_the_contract() -> None:
    alert = Alert(
        "RZ1",
        SlaLevel.BREACHED,
        "essc",
        dt.date(2024, 6, 11),
        cst(2024, 6, 12),
        -1,
        True,
        dt.datetime(2024, 6, 12, 1, tzinfo=dt.UTC),
        b"RZ1",
    )
    message = alert_message(alert, "certrecon.sla-alert")
    assert (message.message_id, message.kind, message.key) == ("RZ1:breached", "sla_alert", b"RZ1")
    expected = {
        "schema_version": 1,
        "alert_id": "RZ1:breached",
        "level": "breached",
        "certification_id": "RZ1",
        "channel": "essc",
        "due_date": "2024-06-11",
        "deadline": "2024-06-12T00:00:00+08:00",
        "working_days_left": -1,
        "provisional": True,
        "raised_at": "2024-06-12T09:00:00+08:00",
    }
    # Compact UTF-8 JSON, fields in the contract's order.
    assert message.payload == json.dumps(expected, separators=(",", ":")).encode()
    assert alert_id("RZ1", SlaLevel.AT_RISK) == "RZ1:at_risk"


@pytest.mark.parametrize(
    ("certification_id", "channel"),
    [
        ("RZ1", "12333"),
        ('R"Z\\1', "essc"),  # quote and backslash escaped
        ("认证-一", "national_platform"),  # UTF-8 as is, not \u escapes
        ("R\nZ\x01\u2028", "consular"),  # control characters escaped
    ],
)
@pytest.mark.parametrize("provisional", [True, False])
def test_the_alert_payload_is_the_json_encoders_bytes(
    certification_id: str, channel: str, provisional: bool
) -> None:
    alert = Alert(
        certification_id,
        SlaLevel.AT_RISK,
        channel,
        dt.date(2024, 6, 11),
        cst(2024, 6, 12),
        3,
        provisional,
        dt.datetime(2024, 6, 7, 1, 2, 3, 456789, tzinfo=dt.UTC),
        certification_id.encode(),
    )
    body = {
        "schema_version": 1,
        "alert_id": f"{certification_id}:at_risk",
        "level": "at_risk",
        "certification_id": certification_id,
        "channel": channel,
        "due_date": "2024-06-11",
        "deadline": "2024-06-12T00:00:00+08:00",
        "working_days_left": 3,
        "provisional": provisional,
        "raised_at": "2024-06-07T09:02:03.456789+08:00",
    }
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert alert.payload() == expected
    assert json.loads(alert.payload()) == body


def test_changed_days_between_calendars() -> None:
    base = default_calendar()
    assert changed_days(base, base) == []
    typhoon = base.with_overrides([(dt.date(2024, 6, 6), False, "台风停工通知")])
    assert changed_days(base, typhoon) == [dt.date(2024, 6, 6)]
    assert changed_days(typhoon, base) == [dt.date(2024, 6, 6)]
    # An override that agrees with the base changes no day.
    same = base.with_overrides([(dt.date(2024, 6, 8), False, "周六")])
    assert changed_days(base, same) == []
    assert calendar_fingerprint(base) != calendar_fingerprint(same)
    published = base.with_overrides([], [2027])
    days = changed_days(base, published)
    assert (days[0], days[-1], len(days)) == (dt.date(2027, 1, 1), dt.date(2027, 12, 31), 365)


def test_age_gauges_follow_the_clock() -> None:
    m = Metrics()
    m.observe_monitor_run(cst(2024, 6, 7, 9))
    m.refresh_ages(cst(2024, 6, 7, 9, 2))
    assert m.monitor_last_run_age._value.get() == 120
    m.observe_outbox({"result": 3}, 10.0)
    m.refresh_ages(cst(2024, 6, 7, 9, 2))
    assert m.outbox_backlog.labels("result")._value.get() == 3
    assert m.outbox_backlog.labels("sla_alert")._value.get() == 0
    assert m.outbox_oldest_unsent_age._value.get() >= 10
    m.observe_outbox({}, None)
    m.refresh_ages(cst(2024, 6, 7, 9, 3))
    assert m.outbox_oldest_unsent_age._value.get() == 0
    assert m.outbox_backlog.labels("result")._value.get() == 0
    m.count_returned("essc", "qualified", True, 2)
    assert m.returned_by_outcome.labels("essc", "qualified", "true")._value.get() == 2
