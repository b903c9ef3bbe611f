"""Embedded PostgreSQL and Kafka-protocol broker for the zero-configuration default."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from certrecon.embedded.broker import EmbeddedBroker
from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.settings import Settings


@dataclass(frozen=True, slots=True)
class Endpoints:
    database_url: str
    kafka_bootstrap: str
    embedded: tuple[str, ...]
    """Which services were started here ("postgres", "broker")."""


@contextlib.contextmanager
def endpoints(settings: Settings) -> Iterator[Endpoints]:
    """Yield the services to use, starting embedded ones for the settings left unset."""
    started: list[str] = []
    with contextlib.ExitStack() as stack:
        dsn = settings.database_url
        if dsn is None:
            pg = stack.enter_context(EmbeddedPostgres.under(settings.data_dir))
            dsn = pg.dsn
            started.append("postgres")
        bootstrap = settings.kafka_bootstrap
        if bootstrap is None:
            broker = stack.enter_context(EmbeddedBroker(settings.data_dir / "broker"))
            bootstrap = broker.bootstrap
            started.append("broker")
        yield Endpoints(dsn, bootstrap, tuple(started))


__all__ = ["EmbeddedBroker", "EmbeddedPostgres", "Endpoints", "endpoints"]
