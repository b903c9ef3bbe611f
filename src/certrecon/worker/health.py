"""A small HTTP/1.1 listener for probes and scrapes: ``/healthz``, ``/readyz``, ``/metrics``.

- ``/healthz``: 200 while the event loop answers (the process is alive).
- ``/readyz``: 200 when every readiness check passes (PostgreSQL answers ``SELECT 1``, the
  broker answers a metadata request, partitions are assigned), else 503 with a JSON body
  naming each failed check.
- ``/metrics``: the worker's Prometheus registry in the text exposition format.

One request per connection (``Connection: close``); GET and HEAD only. It is an operations
endpoint for probes and Prometheus, not a web server, so it needs no framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from certrecon.logs import get_logger
from certrecon.store import db
from certrecon.worker.runtime import Check, Clock

if TYPE_CHECKING:
    import asyncpg
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from certrecon.settings import Settings
    from certrecon.worker.metrics import Metrics

log = get_logger(__name__)

_JSON = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: HTTPStatus
    content_type: str
    body: bytes


def _json(status: HTTPStatus, body: object) -> Response:
    return Response(status, _JSON, json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n")


class HealthServer:
    """Serves the three endpoints; ``port=0`` binds a free port (see :attr:`port`)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        checks: Mapping[str, Check],
        before_scrape: Callable[[], None] | None = None,
        check_timeout: float = 2.0,
        request_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.registry = registry
        self.checks = dict(checks)
        self.before_scrape = before_scrape
        self.check_timeout = check_timeout
        self.request_timeout = request_timeout
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the health listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.requested_port)
        log.info("health listener started", host=self.host, port=self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await server.wait_closed()

    async def serve(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run every check concurrently; (ready, {check: "ok" or the problem})."""

        async def one(check: Check) -> str:
            try:
                async with asyncio.timeout(self.check_timeout):
                    await check()
            except TimeoutError:
                return f"no answer within {self.check_timeout:g} s"
            except Exception as exc:
                return str(exc) or type(exc).__name__
            return "ok"

        names = list(self.checks)
        results = await asyncio.gather(*(one(self.checks[n]) for n in names))
        found = dict(zip(names, results, strict=True))
        return all(v == "ok" for v in found.values()), found

    async def respond(self, method: str, path: str) -> Response:
        """The response to one request (the routing, without the socket)."""
        if method not in {"GET", "HEAD"}:
            return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only GET and HEAD"})
        route = path.split("?", 1)[0]
        if route == "/healthz":
            return _json(HTTPStatus.OK, {"status": "alive"})
        if route == "/readyz":
            ready, checks = await self.readiness()
            if ready:
                return _json(HTTPStatus.OK, {"status": "ready", "checks": checks})
            problems = {k: v for k, v in checks.items() if v != "ok"}
            return _json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"status": "unready", "problems": problems, "checks": checks},
            )
        if route == "/metrics":
            if self.before_scrape is not None:
                self.before_scrape()
            return Response(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        return _json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {route}"})

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                parts = request_line.split()
                if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                    response = _json(HTTPStatus.BAD_REQUEST, {"error": "malformed request"})
                    method = "GET"
                else:
                    method, path = parts[0], parts[1]
                    response = await self.respond(method, path)
                body = b"" if method == "HEAD" else response.body
                writer.write(
                    (
                        f"HTTP/1.1 {response.status.value} {response.status.phrase}\r\n"
                        f"Content-Type: {response.content_type}\r\n"
                        f"Content-Length: {len(response.body)}\r\n"
                        "Cache-Control: no-store\r\n"
                        "Connection: close\r\n\r\n"
                    ).encode("latin-1")
                    + body
                )
                await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,  # a request head over the reader's 64 KiB limit
        ):
            # A slow, broken or oversized request: closing the connection is the answer.
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()


def readiness_checks(
    pool: asyncpg.Pool[Any] | None,
    consumer: AIOKafkaConsumer | None,
    assigned: Callable[[], frozenset[TopicPartition]],
    *,
    broker_cache_seconds: float = 5.0,
) -> dict[str, Check]:
    """The worker's readiness checks: database, broker and partition assignment."""

    async def database() -> None:
        if pool is None:
            raise RuntimeError("not connected yet")
        async with pool.acquire() as conn:
            await db.ping(conn)

    last_ok = [float("-inf")]

    async def broker() -> None:
        if consumer is None:
            raise RuntimeError("consumer not started yet")
        # A metadata request per probe is cheap but not free; a recent success will do.
        if time.monotonic() - last_ok[0] < broker_cache_seconds:
            return
        await consumer.topics()
        last_ok[0] = time.monotonic()

    async def partitions() -> None:
        if not assigned():
            raise RuntimeError("no partition assigned to this worker")

    return {"database": database, "broker": broker, "partitions": partitions}


class HealthHost(Protocol):
    """What the listener needs of the worker."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def readiness(self) -> Mapping[str, Check]: ...


HealthService = Callable[[HealthHost, asyncio.Event], Coroutine[Any, Any, None]]


def health_service(settings: Settings) -> HealthService | None:
    """The listener as a worker service, or None when ``http_port`` is unset (disabled)."""
    if not settings.http_port:
        return None
    host, port = settings.http_host, settings.http_port

    async def serve(runtime: HealthHost, stop: asyncio.Event) -> None:
        server = HealthServer(
            host=host,
            port=port,
            registry=runtime.metrics.registry,
            checks=runtime.readiness,
            before_scrape=lambda: runtime.metrics.refresh_ages(runtime.clock()),
        )
        await server.serve(stop)

    return serve
