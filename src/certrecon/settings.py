"""One frozen settings object, read from the environment once at start-up."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from certrecon.domain import Channel, CycleMode
from certrecon.errors import ConfigurationError
from certrecon.text import printable, shorten
from certrecon.transport import KafkaSecurity, Secret, transport_from_env

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
    audit_checkpoint_topic = "certrecon.audit-checkpoint"
    comparison_topic = "mohrss.comparison"
    benefit_action_topic = "certrecon.benefit-action"
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
    audit_checkpoint_topic: str = _Defaults.audit_checkpoint_topic
    audit_checkpoint_seconds: float = 3600.0
    comparison_topic: str = _Defaults.comparison_topic
    benefit_action_topic: str = _Defaults.benefit_action_topic
    cycle_mode: CycleMode = CycleMode.CALENDAR_YEAR
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
    # Transport security (certrecon.transport): how clients authenticate and encrypt.
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    database_password: Secret | None = None
    """From CERTRECON_DATABASE_PASSWORD_FILE; None: the DSN's server needs none."""

    def all_topics(self) -> list[str]:
        """Every topic the worker reads or writes."""
        return [
            *self.channel_topics.values(),
            self.comparison_topic,
            self.result_topic,
            self.dead_letter_topic,
            self.sla_alert_topic,
            self.audit_checkpoint_topic,
        ]

    def inbound_topics(self) -> list[str]:
        """Every topic the worker consumes: the channels' and the comparison evidence's."""
        return [*self.channel_topics.values(), self.comparison_topic]

    def topic_channels(self) -> dict[str, Channel]:
        return {topic: channel for channel, topic in self.channel_topics.items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and range-check every setting; :class:`ConfigurationError` names the first bad one.

        Nothing connects before this returns, so a malformed value stops the process at
        once (exit 2), not after consuming has begun.
        """
        e = os.environ if env is None else env
        r = _Reader(e)
        _D = _Defaults
        region = r.text("CERTRECON_REGION", "11")
        if not _REGION.fullmatch(region):
            raise r.bad(
                "CERTRECON_REGION",
                region,
                "must be 1 to 6 digits of an administrative division code (first digit 1–8)",
            )
        topics = {
            channel: r.topic(_CHANNEL_ENV[channel], default)
            for channel, default in DEFAULT_CHANNEL_TOPICS.items()
        }
        if len(set(topics.values())) != len(topics):
            raise ConfigurationError(
                "CERTRECON_TOPIC_NATIONAL_PLATFORM, _12333, _ESSC, _CONSULAR: "
                "the four channel topics must have distinct names"
            )
        outputs = {
            "CERTRECON_TOPIC_RESULT": r.topic("CERTRECON_TOPIC_RESULT", _D.result_topic),
            "CERTRECON_TOPIC_DEAD_LETTER": r.topic(
                "CERTRECON_TOPIC_DEAD_LETTER", _D.dead_letter_topic
            ),
            "CERTRECON_TOPIC_SLA_ALERT": r.topic("CERTRECON_TOPIC_SLA_ALERT", _D.sla_alert_topic),
            "CERTRECON_TOPIC_AUDIT_CHECKPOINT": r.topic(
                "CERTRECON_TOPIC_AUDIT_CHECKPOINT", _D.audit_checkpoint_topic
            ),
            "CERTRECON_TOPIC_COMPARISON": r.topic(
                "CERTRECON_TOPIC_COMPARISON", _D.comparison_topic
            ),
            "CERTRECON_TOPIC_BENEFIT_ACTION": r.topic(
                "CERTRECON_TOPIC_BENEFIT_ACTION", _D.benefit_action_topic
            ),
        }
        seen = set(topics.values())
        for name, topic in outputs.items():
            if topic in seen:
                raise r.bad(name, topic, "is already used by another certrecon topic")
            seen.add(topic)
        group_id = r.text("CERTRECON_GROUP_ID", _D.group_id)
        if len(group_id) > 255 or not group_id.isprintable():
            raise r.bad("CERTRECON_GROUP_ID", group_id, "must be 1 to 255 printable characters")
        http_host = r.text("CERTRECON_HTTP_HOST", "127.0.0.1")
        if not _HOST.fullmatch(http_host):
            raise r.bad("CERTRECON_HTTP_HOST", http_host, "is not a host name or IP address")
        cycle = r.text("CERTRECON_CYCLE", CycleMode.CALENDAR_YEAR.value)
        if cycle not in {m.value for m in CycleMode}:
            modes = ", ".join(m.value for m in CycleMode)
            raise r.bad("CERTRECON_CYCLE", cycle, f"must be one of {modes}")
        return cls(
            database_url=r.database_url("CERTRECON_DATABASE_URL"),
            kafka_bootstrap=r.bootstrap("CERTRECON_KAFKA_BOOTSTRAP"),
            data_dir=Path(r.text("CERTRECON_DATA_DIR", ".certrecon")),
            region=region,
            channel_topics=topics,
            result_topic=outputs["CERTRECON_TOPIC_RESULT"],
            dead_letter_topic=outputs["CERTRECON_TOPIC_DEAD_LETTER"],
            sla_alert_topic=outputs["CERTRECON_TOPIC_SLA_ALERT"],
            audit_checkpoint_topic=outputs["CERTRECON_TOPIC_AUDIT_CHECKPOINT"],
            audit_checkpoint_seconds=r.seconds(
                "CERTRECON_AUDIT_CHECKPOINT_SECONDS", 3600.0, 31 * 86_400.0
            ),
            comparison_topic=outputs["CERTRECON_TOPIC_COMPARISON"],
            benefit_action_topic=outputs["CERTRECON_TOPIC_BENEFIT_ACTION"],
            cycle_mode=CycleMode(cycle),
            group_id=group_id,
            create_topics=r.flag("CERTRECON_CREATE_TOPICS", True),
            topic_partitions=r.integer("CERTRECON_TOPIC_PARTITIONS", 6, 1, 10_000),
            deadline_working_days=r.integer("CERTRECON_DEADLINE_WORKING_DAYS", 5, 1, 60),
            batch_max_records=r.integer("CERTRECON_BATCH_MAX_RECORDS", 2000, 1, 100_000),
            batch_timeout_ms=r.integer("CERTRECON_BATCH_TIMEOUT_MS", 500, 1, 600_000),
            batch_fill_ms=r.integer("CERTRECON_BATCH_FILL_MS", 50, 0, 60_000),
            relay_batch_size=r.integer("CERTRECON_RELAY_BATCH_SIZE", 1000, 1, 100_000),
            relay_idle_seconds=r.seconds("CERTRECON_RELAY_IDLE_SECONDS", 0.2, 60.0),
            monitor_interval_seconds=r.seconds(
                "CERTRECON_MONITOR_INTERVAL_SECONDS", 60.0, 86_400.0
            ),
            http_host=http_host,
            # 0 disables the listener (documented in the README).
            http_port=r.integer("CERTRECON_HTTP_PORT", 8008, 0, 65_535) or None,
            shutdown_grace_seconds=r.seconds("CERTRECON_SHUTDOWN_GRACE_SECONDS", 20.0, 3_600.0),
            max_clock_skew_seconds=r.integer("CERTRECON_MAX_CLOCK_SKEW_SECONDS", 600, 0, 86_400),
            **transport_from_env(e),
        )


# Kafka's own rule for topic names (249 characters of these; "." and ".." are reserved).
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_REGION = re.compile(r"[1-8][0-9]{0,5}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_HOST = re.compile(r"[A-Za-z0-9._:%-]{1,253}")
_BOOTSTRAP_SERVER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]{1,253})(?::([0-9]{1,5}))?")
_DSN_SCHEMES = ("postgresql://", "postgres://")


class _Reader:
    """Reads variables, turning each malformed one into a :class:`ConfigurationError`.

    Every message starts with the variable's name. Values are quoted shortened and
    neutralised, and never for the DSN, which may hold a password.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    @staticmethod
    def bad(name: str, raw: str, why: str) -> ConfigurationError:
        return ConfigurationError(f"{name}: '{printable(shorten(raw, 60))}' {why}")

    def raw(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        if not _INTEGER.fullmatch(raw):
            raise self.bad(name, raw, "is not a whole number")
        value = int(raw)
        if not minimum <= value <= maximum:
            raise self.bad(name, raw, f"must be from {minimum} to {maximum:,}")
        return value

    def seconds(self, name: str, default: float, maximum: float) -> float:
        """A positive, finite number of seconds up to ``maximum`` (NaN and infinity refused)."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.bad(name, raw, "is not a number of seconds") from None
        if not math.isfinite(value) or not 0 < value <= maximum:
            raise self.bad(
                name, raw, f"must be a number of seconds above 0 and at most {maximum:g}"
            )
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise self.bad(name, raw, "is not a boolean (true/false)")

    def topic(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _TOPIC.fullmatch(value) or value in {".", ".."}:
            raise self.bad(
                name, value, "is not a valid Kafka topic name (1–249 of A-Z a-z 0-9 . _ -)"
            )
        return value

    def database_url(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not value.startswith(_DSN_SCHEMES):
            raise ConfigurationError(
                f"{name}: must be a URL starting with postgresql:// or postgres:// "
                "(the value is not shown: it may hold a password)"
            )
        return value

    def bootstrap(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        for server in value.split(","):
            found = _BOOTSTRAP_SERVER.fullmatch(server.strip())
            if found is None:
                raise self.bad(name, value, "must be host:port[,host:port…]")
            port = found.group(1)
            if port is not None and not 1 <= int(port) <= 65_535:
                raise self.bad(name, value, f"names port {port}, outside 1–65535")
        return value
