"""Prometheus metrics of the worker (one registry per worker, so tests can read them)."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from certrecon.worker.pipeline import BatchReport
    from certrecon.worker.relay import RelayReport


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "certrecon_certifications_consumed",
            "Inbound messages consumed, by channel",
            ["channel"],
            registry=r,
        )
        self.decided = Counter(
            "certrecon_certifications_decided",
            "New certifications decided by the rules, by channel and outcome ('review' = queued)",
            ["channel", "outcome"],
            registry=r,
        )
        self.duplicates = Counter(
            "certrecon_certifications_duplicate",
            "Messages whose certification_id was already stored",
            registry=r,
        )
        self.dead_letters = Counter(
            "certrecon_dead_letters", "Dead letters written to the outbox", registry=r
        )
        self.published = Counter(
            "certrecon_outbox_published",
            "Outbox messages acknowledged by the broker, by kind",
            ["kind"],
            registry=r,
        )
        self.outbox_failed = Counter(
            "certrecon_outbox_failed",
            "Outbox messages the broker refused for good (recorded in outbox_failure and "
            "skipped), by kind",
            ["kind"],
            registry=r,
        )
        for kind in ("result", "dead_letter", "sla_alert"):
            # Present from the start, so that the first refusal is an increase from 0.
            self.outbox_failed.labels(kind)
        self.batches = Counter("certrecon_batches", "Batches committed", registry=r)
        self.consumer_lag = Gauge(
            "certrecon_consumer_lag",
            "Fetch high watermark minus position, by topic and partition",
            ["topic", "partition"],
            registry=r,
        )
        self.returned_by_outcome = Counter(
            "certrecon_results_returned",
            "Certifications whose first result the broker acknowledged, by channel, outcome "
            "and whether it was before the deadline",
            ["channel", "outcome", "on_time"],
            registry=r,
        )
        self.open_certifications = Gauge(
            "certrecon_open_certifications",
            "Certifications without an acknowledged result, by channel and SLA level "
            "(on_track, at_risk, breached), as of the last monitor tick",
            ["channel", "level"],
            registry=r,
        )
        self.oldest_open_working_days = Gauge(
            "certrecon_open_oldest_working_days",
            "Working days since the certification date of the open certification with the "
            "earliest due date (0 when none is open)",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "certrecon_outbox_backlog",
            "Outbox messages not acknowledged by the broker yet, by kind",
            ["kind"],
            registry=r,
        )
        self.outbox_oldest_unsent_age = Gauge(
            "certrecon_outbox_oldest_unsent_age_seconds",
            "Age of the oldest outbox message not acknowledged yet (0 when none)",
            registry=r,
        )
        self.sla_alerts = Counter(
            "certrecon_sla_alerts",
            "SLA alerts raised by this process's monitor, by level",
            ["level"],
            registry=r,
        )
        self.deadlines_recomputed = Counter(
            "certrecon_deadlines_recomputed",
            "Open certifications whose due date or provisional flag changed when the "
            "working-day calendar changed",
            registry=r,
        )
        self.monitor_runs = Counter(
            "certrecon_monitor_runs",
            "Monitor runs completed by this process (only the active instance runs)",
            registry=r,
        )
        self.monitor_errors = Counter(
            "certrecon_monitor_errors", "Monitor ticks that failed and were retried", registry=r
        )
        self.monitor_active = Gauge(
            "certrecon_monitor_active",
            "1 when this process holds the monitor lock and runs the deadline monitor",
            registry=r,
        )
        self.monitor_run_duration = Gauge(
            "certrecon_monitor_run_duration_seconds",
            "Duration of the last monitor run of this process",
            registry=r,
        )
        self.monitor_last_run = Gauge(
            "certrecon_monitor_last_run_timestamp_seconds",
            "When the last monitor run completed, whichever process ran it (Unix time)",
            registry=r,
        )
        self.monitor_last_run_age = Gauge(
            "certrecon_monitor_last_run_age_seconds",
            "Seconds since the last monitor run completed, whichever process ran it "
            "(+Inf before the first run)",
            registry=r,
        )
        self.monitor_last_run_age.set(float("inf"))
        self._last_run_at: dt.datetime | None = None
        self._outbox_oldest: tuple[float, float] | None = None

    def observe_batch(self, report: BatchReport) -> None:
        """Count what one committed batch consumed and decided."""
        self.batches.inc()
        for (channel, outcome), n in report.decided.items():
            self.decided.labels(channel, outcome).inc(n)
        self.duplicates.inc(report.duplicates)
        self.dead_letters.inc(len(report.rejected))
        for channel, n in report.consumed_by_channel.items():
            self.consumed.labels(channel).inc(n)

    def observe_relay(self, report: RelayReport) -> None:
        """Count what one relay round published, returned and saw refused."""
        for kind, n in report.by_kind.items():
            self.published.labels(kind).inc(n)
        for (channel, outcome, on_time), n in report.returned_by.items():
            self.count_returned(channel, outcome, on_time, n)
        for failure in report.failed:
            self.outbox_failed.labels(failure.kind).inc()

    def count_returned(self, channel: str, outcome: str, on_time: bool, n: int = 1) -> None:
        """Count certifications returned (their first result acknowledged)."""
        self.returned_by_outcome.labels(channel, outcome, "true" if on_time else "false").inc(n)

    def observe_monitor_run(self, at: dt.datetime) -> None:
        """Record when the last monitor run completed (read back from the database)."""
        self._last_run_at = at
        self.monitor_last_run.set(at.timestamp())

    def observe_outbox(self, backlog: dict[str, int], oldest_age_seconds: float | None) -> None:
        """Record the outbox backlog by kind; kinds no longer pending drop to 0.

        The age comes from the database's clock, so it is carried forward between ticks
        with this process's monotonic clock rather than compared with the worker's clock.
        """
        for kind in ("result", "dead_letter", "sla_alert", *backlog):
            self.outbox_backlog.labels(kind).set(backlog.get(kind, 0))
        self._outbox_oldest = (
            None if oldest_age_seconds is None else (oldest_age_seconds, time.monotonic())
        )

    def refresh_ages(self, now: dt.datetime) -> None:
        """Bring the age gauges up to ``now``; called before every scrape and monitor tick."""
        if self._last_run_at is not None:
            self.monitor_last_run_age.set(max(0.0, (now - self._last_run_at).total_seconds()))
        oldest = self._outbox_oldest
        self.outbox_oldest_unsent_age.set(
            0.0 if oldest is None else max(0.0, oldest[0] + time.monotonic() - oldest[1])
        )
