"""One frozen settings object, read from the environment once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from certrecon.domain import Channel
from certrecon.errors import ConfigurationError

DEFAULT_CHANNEL_TOPICS: Mapping[Channel, str] = {
    Channel.NATIONAL_PLATFORM: "mohrss.certification.national-platform",
    Channel.APP_12333: "mohrss.certification.12333",
    Channel.ESSC: "mohrss.certification.essc",
    Channel.CONSULAR: "mohrss.certification.consular",
}

_CHANNEL_ENV = {
    Channel.NATIONAL_PLATFORM: "CERTRECON_TOPIC_NATIONAL_PLATFORM",
    Channel.APP_12333: "CERTRECON_TOPIC_12333",
    Channel.ESSC: "CERTRECON_TOPIC_ESSC",
    Channel.CONSULAR: "CERTRECON_TOPIC_CONSULAR",
}


class _Defaults:
    result_topic = "mohrss.certification-result"
    dead_letter_topic = "certrecon.dead-letter"
    sla_alert_topic = "certrecon.sla-alert"
    group_id = "certrecon"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    """None: an embedded PostgreSQL under ``data_dir``."""
    kafka_bootstrap: str | None = None
    """None: an embedded Kafka-protocol broker under ``data_dir``."""
    data_dir: Path = Path(".certrecon")
    region: str = "11"
    channel_topics: Mapping[Channel, str] = field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_TOPICS)
    )
    result_topic: str = _Defaults.result_topic
    dead_letter_topic: str = _Defaults.dead_letter_topic
    sla_alert_topic: str = _Defaults.sla_alert_topic
    group_id: str = _Defaults.group_id
    create_topics: bool = True
    topic_partitions: int = 6
    deadline_working_days: int = 5
    batch_max_records: int = 2000
    batch_timeout_ms: int = 500
    batch_fill_ms: int = 50
    relay_batch_size: int = 1000
    relay_idle_seconds: float = 0.2
    monitor_interval_seconds: float = 60.0
    http_host: str = "127.0.0.1"
    http_port: int | None = 8008
    shutdown_grace_seconds: float = 20.0
    max_clock_skew_seconds: int = 600

    def all_topics(self) -> list[str]:
        """Every topic the worker reads or writes."""
        return [
            *self.channel_topics.values(),
            self.result_topic,
            self.dead_letter_topic,
            self.sla_alert_topic,
        ]

    def topic_channels(self) -> dict[str, Channel]:
        return {topic: channel for channel, topic in self.channel_topics.items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env

        def text(name: str, default: str | None) -> str | None:
            value = e.get(name, "").strip()
            return value or default

        def integer(name: str, default: int, minimum: int) -> int:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
            if value < minimum:
                raise ConfigurationError(f"{name}={raw!r} must be at least {minimum}")
            return value

        def number(name: str, default: float) -> float:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise ConfigurationError(f"{name}={raw!r} must be positive")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = text(name, None)
            if raw is None:
                return default
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ConfigurationError(f"{name}={raw!r} is not a boolean (true/false)")

        _D = _Defaults
        region = text("CERTRECON_REGION", "11") or "11"
        if not region.isdigit() or not 1 <= len(region) <= 6:
            raise ConfigurationError(
                f"CERTRECON_REGION={region!r} must be 1 to 6 digits of an administrative code"
            )
        topics = {
            channel: text(_CHANNEL_ENV[channel], default) or default
            for channel, default in DEFAULT_CHANNEL_TOPICS.items()
        }
        if len(set(topics.values())) != len(topics):
            raise ConfigurationError("the four channel topics must have distinct names")
        port = integer("CERTRECON_HTTP_PORT", 8008, 0)
        return cls(
            database_url=text("CERTRECON_DATABASE_URL", None),
            kafka_bootstrap=text("CERTRECON_KAFKA_BOOTSTRAP", None),
            data_dir=Path(text("CERTRECON_DATA_DIR", ".certrecon") or ".certrecon"),
            region=region,
            channel_topics=topics,
            result_topic=text("CERTRECON_TOPIC_RESULT", _D.result_topic) or _D.result_topic,
            dead_letter_topic=text("CERTRECON_TOPIC_DEAD_LETTER", _D.dead_letter_topic)
            or _D.dead_letter_topic,
            sla_alert_topic=text("CERTRECON_TOPIC_SLA_ALERT", _D.sla_alert_topic)
            or _D.sla_alert_topic,
            group_id=text("CERTRECON_GROUP_ID", _D.group_id) or _D.group_id,
            create_topics=flag("CERTRECON_CREATE_TOPICS", True),
            topic_partitions=integer("CERTRECON_TOPIC_PARTITIONS", 6, 1),
            deadline_working_days=integer("CERTRECON_DEADLINE_WORKING_DAYS", 5, 1),
            batch_max_records=integer("CERTRECON_BATCH_MAX_RECORDS", 2000, 1),
            batch_timeout_ms=integer("CERTRECON_BATCH_TIMEOUT_MS", 500, 1),
            batch_fill_ms=integer("CERTRECON_BATCH_FILL_MS", 50, 0),
            relay_batch_size=integer("CERTRECON_RELAY_BATCH_SIZE", 1000, 1),
            relay_idle_seconds=number("CERTRECON_RELAY_IDLE_SECONDS", 0.2),
            monitor_interval_seconds=number("CERTRECON_MONITOR_INTERVAL_SECONDS", 60.0),
            http_host=text("CERTRECON_HTTP_HOST", "127.0.0.1") or "127.0.0.1",
            http_port=port or None,
            shutdown_grace_seconds=number("CERTRECON_SHUTDOWN_GRACE_SECONDS", 20.0),
            max_clock_skew_seconds=integer("CERTRECON_MAX_CLOCK_SKEW_SECONDS", 600, 0),
        )
