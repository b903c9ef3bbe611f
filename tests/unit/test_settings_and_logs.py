from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from certrecon import logs
from certrecon.domain import Channel, CycleMode
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
    assert s.comparison_topic == "mohrss.comparison"
    assert s.benefit_action_topic == "certrecon.benefit-action"
    assert s.cycle_mode is CycleMode.CALENDAR_YEAR


def test_environment_overrides() -> None:
    s = Settings.from_env(
        {
            "CERTRECON_DATABASE_URL": "postgresql://db/x",
            "CERTRECON_KAFKA_BOOTSTRAP": "k:9092",
            "CERTRECON_REGION": "3101",
            "CERTRECON_TOPIC_ESSC": "other.essc",
            "CERTRECON_CREATE_TOPICS": "false",
            "CERTRECON_CYCLE": "rolling_12_months",
            "CERTRECON_TOPIC_COMPARISON": "x.comparison",
            "CERTRECON_TOPIC_BENEFIT_ACTION": "x.benefit",
        }
    )
    assert s.database_url == "postgresql://db/x"
    assert s.kafka_bootstrap == "k:9092"
    assert s.region == "3101"
    assert s.channel_topics[Channel.ESSC] == "other.essc"
    assert s.topic_channels()["other.essc"] is Channel.ESSC
    assert s.create_topics is False
    assert s.cycle_mode is CycleMode.ROLLING_12_MONTHS
    assert (s.comparison_topic, s.benefit_action_topic) == ("x.comparison", "x.benefit")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CERTRECON_REGION", "beijing", "administrative division code"),
        ("CERTRECON_REGION", "1234567", "administrative division code"),
        ("CERTRECON_REGION", "01", "administrative division code"),
        ("CERTRECON_DEADLINE_WORKING_DAYS", "0", "from 1 to 60"),
        ("CERTRECON_DEADLINE_WORKING_DAYS", "1000", "from 1 to 60"),
        ("CERTRECON_BATCH_MAX_RECORDS", "many", "whole number"),
        ("CERTRECON_BATCH_MAX_RECORDS", "1e3", "whole number"),
        ("CERTRECON_BATCH_MAX_RECORDS", "-5", "from 1 to"),
        ("CERTRECON_BATCH_MAX_RECORDS", "99999999999999999999999", "whole number"),
        ("CERTRECON_BATCH_TIMEOUT_MS", "0", "from 1 to"),
        ("CERTRECON_BATCH_FILL_MS", "-1", "from 0 to"),
        ("CERTRECON_RELAY_BATCH_SIZE", "0", "from 1 to"),
        ("CERTRECON_TOPIC_PARTITIONS", "0", "from 1 to"),
        ("CERTRECON_MAX_CLOCK_SKEW_SECONDS", "-1", "from 0 to"),
        ("CERTRECON_CREATE_TOPICS", "perhaps", "boolean"),
        ("CERTRECON_TOPIC_ESSC", "mohrss.certification.12333", "distinct"),
        ("CERTRECON_TOPIC_ESSC", "has space", "Kafka topic name"),
        ("CERTRECON_TOPIC_RESULT", "..", "Kafka topic name"),
        ("CERTRECON_TOPIC_RESULT", "x" * 250, "Kafka topic name"),
        ("CERTRECON_TOPIC_DEAD_LETTER", "mohrss.certification-result", "already used"),
        ("CERTRECON_TOPIC_SLA_ALERT", "mohrss.certification.essc", "already used"),
        ("CERTRECON_HTTP_PORT", "70000", "from 0 to 65,535"),
        ("CERTRECON_HTTP_PORT", "-1", "from 0 to 65,535"),
        ("CERTRECON_HTTP_PORT", "80.5", "whole number"),
        ("CERTRECON_HTTP_HOST", "bad host", "host name"),
        ("CERTRECON_MONITOR_INTERVAL_SECONDS", "nan", "above 0"),
        ("CERTRECON_MONITOR_INTERVAL_SECONDS", "inf", "above 0"),
        ("CERTRECON_MONITOR_INTERVAL_SECONDS", "-inf", "above 0"),
        ("CERTRECON_MONITOR_INTERVAL_SECONDS", "0", "above 0"),
        ("CERTRECON_MONITOR_INTERVAL_SECONDS", "86401", "at most 86400"),
        ("CERTRECON_RELAY_IDLE_SECONDS", "soon", "number of seconds"),
        ("CERTRECON_RELAY_IDLE_SECONDS", "1e400", "above 0"),
        ("CERTRECON_SHUTDOWN_GRACE_SECONDS", "NaN", "above 0"),
        ("CERTRECON_GROUP_ID", "a\x1bb", "printable"),
        ("CERTRECON_KAFKA_BOOTSTRAP", "k:70000", "outside 1–65535"),
        ("CERTRECON_KAFKA_BOOTSTRAP", "k:9092,,", "host:port"),
        ("CERTRECON_KAFKA_BOOTSTRAP", "k 9092", "host:port"),
        ("CERTRECON_DATABASE_URL", "mysql://u:secret@h/db", "postgresql://"),
        ("CERTRECON_CYCLE", "yearly", "calendar_year, rolling_12_months"),
        ("CERTRECON_TOPIC_COMPARISON", "mohrss.certification.essc", "already used"),
        ("CERTRECON_TOPIC_BENEFIT_ACTION", "certrecon.sla-alert", "already used"),
    ],
)
def test_bad_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Settings.from_env({name: value})
    assert str(caught.value).startswith(f"{name}") or name.startswith("CERTRECON_TOPIC_ESSC")
    assert "secret" not in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_good_edge_values_are_accepted() -> None:
    s = Settings.from_env(
        {
            "CERTRECON_HTTP_PORT": "0",
            "CERTRECON_MONITOR_INTERVAL_SECONDS": "0.5",
            "CERTRECON_KAFKA_BOOTSTRAP": "a.example:9092, [::1]:9093,b",
            "CERTRECON_DATABASE_URL": "postgresql://u@h/db?host=/tmp",
            "CERTRECON_BATCH_FILL_MS": "0",
            "CERTRECON_REGION": "110105",
        }
    )
    assert s.http_port is None
    assert s.monitor_interval_seconds == 0.5
    assert s.region == "110105"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CERTRECON_HTTP_PORT", "70000"),
        ("CERTRECON_MONITOR_INTERVAL_SECONDS", "nan"),
        ("CERTRECON_REGION", "x"),
    ],
)
def test_the_worker_refuses_a_bad_setting_before_connecting(
    name: str, value: str, tmp_path: Path
) -> None:
    # Services that do not exist: the setting must be refused before anything tries them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")} | {
        "CERTRECON_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "CERTRECON_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "CERTRECON_DATA_DIR": str(tmp_path),
        name: value,
    }
    done = subprocess.run(
        [sys.executable, "-m", "certrecon", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.splitlines()[0]]
    assert done.stderr.startswith(f"Error: {name}: ")
    assert list(tmp_path.iterdir()) == []


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


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_other_libraries_log_through_structlog_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    logs.configure(json=True)
    try:
        logging.getLogger("aiokafka.consumer").warning("lost %s\nsecond line", "partition")
        logging.getLogger("aiokafka").info("below the threshold of other libraries")
        try:
            raise ConnectionResetError("peer went away")
        except ConnectionResetError:
            logging.getLogger("asyncpg.pool").exception("connection lost")
        logging.getLogger("py.warnings").warning("a warning")
        structlog.get_logger("t").warning(
            "odd numbers", interval=float("nan"), limits=[float("inf"), -float("inf")]
        )
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = _json_lines(buffer.getvalue())
    assert [line["event"] for line in lines] == [
        "lost partition\nsecond line",
        "connection lost",
        "a warning",
        "odd numbers",
    ]
    assert lines[0]["logger"] == "aiokafka.consumer"
    assert lines[0]["level"] == "warning"
    assert "timestamp" in lines[0]
    assert lines[1]["level"] == "error"
    assert str(lines[1]["exception"]).startswith("Traceback (most recent call last):")
    assert "ConnectionResetError: peer went away" in str(lines[1]["exception"])
    assert lines[3]["interval"] == "nan"
    assert lines[3]["limits"] == ["inf", "-inf"]


def test_an_uncaught_exception_is_one_json_line() -> None:
    code = (
        "from certrecon import logs\n"
        "logs.configure(json=True)\n"
        "import threading\n"
        "t = threading.Thread(target=lambda: 1 / 0, name='worker-thread')\n"
        "t.start(); t.join()\n"
        "raise RuntimeError('stop')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    lines = _json_lines(done.stderr)
    assert [line["event"] for line in lines] == [
        "uncaught exception in a thread",
        "uncaught exception",
    ]
    assert lines[0]["thread"] == "worker-thread"
    assert "ZeroDivisionError" in str(lines[0]["exception"])
    assert "RuntimeError: stop" in str(lines[1]["exception"])
