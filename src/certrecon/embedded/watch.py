"""Say at once when an embedded service process ends without being asked to.

The embedded broker keeps everything in memory and has been seen to die under load; the
worker notices only when a request times out, a minute later, and nothing says why. A
:class:`ExitWatcher` thread, started with the service, polls the process and logs one
error line the moment it is gone: which service, its exit status (a negative number is
the signal that killed it) and the last lines of its log file.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from certrecon.logs import get_logger
from certrecon.text import printable

POLL_SECONDS = 0.2
"""How often the process is checked: a notice follows an exit within this."""
TAIL_LINES = 20
_TAIL_BYTES = 16 * 1024

Probe = Callable[[], tuple[bool, int | None]]
"""Returns (the process has ended, its exit status when known)."""

# A server log can quote row values (PostgreSQL's DETAIL and STATEMENT lines); such lines
# are left out and anything shaped like an ID number is masked, as in every log line.
_ROW_VALUES = re.compile(r"\b(DETAIL|STATEMENT|CONTEXT):")
_ID_LIKE = re.compile(r"[0-9]{17}[0-9Xx]|[A-Za-z]{3}[0-9]{12}|9[0-9]{16}[0-9Xx]")


def log_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``path`` (read from its end), safe to log."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except OSError as exc:
        return [f"(cannot read {path}: {exc.strerror})"]
    text = data.decode("utf-8", "replace").splitlines()
    if len(data) == _TAIL_BYTES and text:
        text = text[1:]  # the first line is probably cut
    kept = [line for line in text if line.strip() and not _ROW_VALUES.search(line)]
    return [
        printable(_ID_LIKE.sub(lambda m: m.group(0)[:6] + "********", line))
        for line in kept[-lines:]
    ]


def describe_status(status: int | None) -> str:
    if status is None:
        return "unknown exit status"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


class ExitWatcher:
    """A daemon thread that logs an error when a service process ends unexpectedly.

    Call :meth:`disarm` before stopping the service on purpose: the watcher then stops
    without a word.
    """

    def __init__(self, service: str, probe: Probe, log_file: Path) -> None:
        self.service = service
        self.log_file = log_file
        self._probe = probe
        self._disarmed = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name=f"embedded-{service}-watcher", daemon=True
        )
        self.exited = threading.Event()
        """Set once the process was seen gone unexpectedly (and the notice logged)."""

    def start(self) -> ExitWatcher:
        self._thread.start()
        return self

    def disarm(self) -> None:
        self._disarmed.set()

    def _watch(self) -> None:
        while not self._disarmed.wait(POLL_SECONDS):
            gone, status = self._probe()
            if not gone:
                continue
            if self._disarmed.is_set():
                return  # stopped on purpose between two checks
            get_logger("certrecon.embedded").error(
                f"the embedded {self.service} exited unexpectedly",
                service=self.service,
                exit_status=status,
                how=describe_status(status),
                log_file=str(self.log_file),
                last_output=log_tail(self.log_file),
            )
            self.exited.set()
            return
