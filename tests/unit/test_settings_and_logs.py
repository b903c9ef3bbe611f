from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog

from certrecon import logs
from certrecon.domain import Channel
from certrecon.errors import ConfigurationError
from certrecon.settings import Settings


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.kafka_bootstrap is None
    assert s.data_dir == Path(".certrecon")
    assert s.region == "11"
    assert s.channel_topics[Channel.APP_12333] == "mohrss.certification.12333"
    assert s.channel_topics[Channel.NATIONAL_PLATFORM] == "mohrss.certification.national-platform"
    assert s.result_topic == "mohrss.certification-result"
    assert s.dead_letter_topic == "certrecon.dead-letter"
    assert s.sla_alert_topic == "certrecon.sla-alert"
    assert s.deadline_working_days == 5


def test_environment_overrides() -> None:
    s = Settings.from_env(
        {
            "CERTRECON_DATABASE_URL": "postgresql://db/x",
            "CERTRECON_KAFKA_BOOTSTRAP": "k:9092",
            "CERTRECON_REGION": "3101",
            "CERTRECON_TOPIC_ESSC": "other.essc",
            "CERTRECON_CREATE_TOPICS": "false",
        }
    )
    assert s.database_url == "postgresql://db/x"
    assert s.kafka_bootstrap == "k:9092"
    assert s.region == "3101"
    assert s.channel_topics[Channel.ESSC] == "other.essc"
    assert s.topic_channels()["other.essc"] is Channel.ESSC
    assert s.create_topics is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CERTRECON_REGION", "beijing", "administrative code"),
        ("CERTRECON_DEADLINE_WORKING_DAYS", "0", "at least 1"),
        ("CERTRECON_BATCH_MAX_RECORDS", "many", "whole number"),
        ("CERTRECON_CREATE_TOPICS", "perhaps", "boolean"),
        ("CERTRECON_TOPIC_ESSC", "mohrss.certification.12333", "distinct"),
    ],
)
def test_bad_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({name: value})


def test_masking() -> None:
    assert logs.mask_id("11010519491231002X") == "110105********002X"
    assert logs.mask_id("") == ""
    assert logs.mask_id("ABC123") == "******"
    assert logs.mask_name("张秀英") == "张**"
    assert logs.mask_name("王") == "*"


def test_json_logs_mask_personal_data(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    logs.configure(json=True)
    try:
        structlog.get_logger("t").warning(
            "checked", id_number="11010519491231002X", name="张秀英", certification_id="RZ1"
        )
    finally:
        structlog.reset_defaults()
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["id_number"] == "110105********002X"
    assert line["name"] == "张**"
    assert line["certification_id"] == "RZ1"
    assert line["level"] == "warning"
