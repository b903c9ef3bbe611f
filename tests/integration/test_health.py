"""The health listener: liveness, readiness against real services, and the metrics text."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from certrecon.embedded.broker import EmbeddedBroker
from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.worker.health import HealthServer, health_service, readiness_checks
from certrecon.worker.metrics import Metrics


async def http(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, {k.lower(): v for k, v in headers.items()}, body


async def until_status(port: int, path: str, wanted: int, seconds: float = 20) -> dict[str, object]:
    status, body = 0, b""
    async with asyncio.timeout(seconds):
        while True:
            status, _, body = await http(port, path)
            if status == wanted:
                parsed: dict[str, object] = json.loads(body)
                return parsed
            await asyncio.sleep(0.1)


async def test_readyz_follows_a_stopped_and_restarted_postgresql(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(pg.start)
    dsn = pg.dsn
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    assigned: frozenset[TopicPartition] = frozenset()
    server = HealthServer(
        host="127.0.0.1",
        port=0,
        registry=Metrics().registry,
        checks=readiness_checks(pool, consumer, lambda: assigned),
        check_timeout=2,
    )
    await server.start()
    try:
        # Connected to both, but no partition yet: not ready, and the body says why.
        body = await until_status(server.port, "/readyz", 503)
        assert body["problems"] == {"partitions": "no partition assigned to this worker"}
        assigned = frozenset({TopicPartition("mohrss.certification.12333", 0)})
        body = await until_status(server.port, "/readyz", 200)
        assert body["checks"] == {"database": "ok", "broker": "ok", "partitions": "ok"}

        await asyncio.to_thread(pg.stop)
        body = await until_status(server.port, "/readyz", 503)
        problems = body["problems"]
        assert isinstance(problems, dict)
        assert set(problems) == {"database"}
        # Alive all the same: liveness is about this process, not its dependencies.
        status, _, _ = await http(server.port, "/healthz")
        assert status == 200

        await asyncio.to_thread(pg.start)
        body = await until_status(server.port, "/readyz", 200)
        assert body["status"] == "ready"
    finally:
        await server.close()
        await pool.close()
        await consumer.stop()
        await asyncio.to_thread(pg.stop)


async def test_readyz_follows_a_stopped_and_restarted_broker(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    await asyncio.to_thread(broker.start)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=2000)
    await consumer.start()
    server = HealthServer(
        host="127.0.0.1",
        port=0,
        registry=Metrics().registry,
        checks=readiness_checks(None, consumer, frozenset, broker_cache_seconds=0),
        check_timeout=1,
    )

    async def broker_check(wanted_ok: bool) -> dict[str, str]:
        async with asyncio.timeout(30):
            while True:
                ready, checks = await server.readiness()
                if (checks["broker"] == "ok") == wanted_ok:
                    assert not ready  # no database, no partitions in this test
                    return checks
                await asyncio.sleep(0.2)

    try:
        checks = await broker_check(wanted_ok=True)
        assert checks["database"] == "not connected yet"
        assert checks["partitions"] == "no partition assigned to this worker"
        await asyncio.to_thread(broker.stop)
        checks = await broker_check(wanted_ok=False)
        assert checks["broker"]  # the reason, e.g. no answer within the timeout
        await asyncio.to_thread(broker.start)
        await broker_check(wanted_ok=True)
    finally:
        await consumer.stop()
        await asyncio.to_thread(broker.stop)


async def test_a_hanging_check_times_out() -> None:
    async def hang() -> None:
        await asyncio.sleep(60)

    server = HealthServer(
        host="127.0.0.1",
        port=0,
        registry=Metrics().registry,
        checks={"db": hang},
        check_timeout=0.1,
    )
    ready, checks = await server.readiness()
    assert (ready, checks) == (False, {"db": "no answer within 0.1 s"})


async def test_metrics_healthz_and_errors() -> None:
    metrics = Metrics()
    metrics.consumed.labels("essc").inc(3)
    metrics.open_certifications.labels("essc", "breached").set(2)
    scraped: list[bool] = []
    server = HealthServer(
        host="127.0.0.1",
        port=0,
        registry=metrics.registry,
        checks={},
        before_scrape=lambda: scraped.append(True),
    )
    await server.start()
    try:
        status, headers, body = await http(server.port, "/metrics")
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        text = body.decode()
        assert 'certrecon_certifications_consumed_total{channel="essc"} 3.0' in text
        assert 'certrecon_open_certifications{channel="essc",level="breached"} 2.0' in text
        assert "certrecon_monitor_last_run_age_seconds +Inf" in text
        assert scraped == [True]

        status, _, body = await http(server.port, "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "alive"})
        status, headers, body = await http(server.port, "/healthz", "HEAD")
        assert (status, body) == (200, b"")
        assert int(headers["content-length"]) > 0
        status, _, _ = await http(server.port, "/nope")
        assert status == 404
        status, _, _ = await http(server.port, "/healthz", "POST")
        assert status == 405
        # Garbage gets a 400, and the listener keeps serving.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"hello\r\n\r\n")
        raw = await reader.read()
        writer.close()
        assert raw.startswith(b"HTTP/1.1 400 ")
        status, _, _ = await http(server.port, "/healthz")
        assert status == 200
    finally:
        await server.close()


@pytest.mark.parametrize("port", [None, 0])
def test_no_port_means_no_listener(port: int | None) -> None:
    assert health_service(Settings(http_port=port)) is None


async def test_the_service_serves_until_stopped() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    service = health_service(Settings(http_port=port))
    assert service is not None

    async def ready() -> None:
        pass

    @dataclass
    class Host:
        metrics: Metrics = field(default_factory=Metrics)
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
        readiness: dict[str, Callable[[], Awaitable[None]]] = field(
            default_factory=lambda: {"database": ready}
        )

    stop = asyncio.Event()
    task = asyncio.create_task(service(Host(), stop))
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    status, _, _ = await http(port, "/healthz")
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        assert status == 200
        # The host's readiness checks are the ones served.
        status, _, body = await http(port, "/readyz")
        assert (status, json.loads(body)["checks"]) == (200, {"database": "ok"})
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
