"""The one place that wires a worker with its real adapters and background services."""

from __future__ import annotations

from certrecon.settings import Settings
from certrecon.worker.checkpoint import AuditCheckpointer
from certrecon.worker.health import health_service
from certrecon.worker.monitor import DeadlineMonitor
from certrecon.worker.runtime import Clock, Service, utc_now
from certrecon.worker.service import Worker


def default_services(settings: Settings) -> list[tuple[str, Service]]:
    """Supervised background tasks beside the consumer and the relay: the deadline monitor,
    the periodic ledger checkpoint and, unless ``http_port`` is unset, the health and
    metrics listener."""
    services: list[tuple[str, Service]] = [
        ("monitor", DeadlineMonitor(settings.monitor_interval_seconds)),
        ("audit-checkpoint", AuditCheckpointer(settings.audit_checkpoint_seconds)),
    ]
    health = health_service(settings)
    if health is not None:
        services.append(("http", health))
    return services


def build_worker(settings: Settings, *, dsn: str, bootstrap: str, clock: Clock = utc_now) -> Worker:
    return Worker(
        settings,
        dsn=dsn,
        bootstrap=bootstrap,
        clock=clock,
        services=default_services(settings),
    )
