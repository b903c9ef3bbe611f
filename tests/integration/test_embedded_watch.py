"""An embedded service that dies is reported at once, with its exit status and last output."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog

from certrecon.embedded.broker import EmbeddedBroker
from certrecon.embedded.postgres import EmbeddedPostgres
from certrecon.embedded.watch import ExitWatcher, describe_status, log_tail


class _Notices:
    """Collects the watcher's log events (it logs from its own thread)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = threading.Event()

    def __call__(self, _logger: Any, method: str, event: Any) -> Any:
        event = dict(event, level=method)
        if event.get("service") is not None:
            self.events.append(event)
            self.arrived.set()
        raise structlog.DropEvent


@pytest.fixture
def notices() -> Any:
    collected = _Notices()
    structlog.configure(processors=[collected])
    try:
        yield collected
    finally:
        structlog.reset_defaults()


def test_a_killed_broker_is_reported_with_its_signal(tmp_path: Path, notices: _Notices) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGKILL)
        assert notices.arrived.wait(30), "no notice of the broker's death"
    finally:
        broker.stop()
    [event] = notices.events
    assert event["level"] == "error"
    assert event["event"] == "the embedded broker exited unexpectedly"
    assert event["exit_status"] == -signal.SIGKILL
    assert event["how"] == "killed by SIGKILL"
    assert event["log_file"] == str(tmp_path / "broker" / "broker.log")
    assert isinstance(event["last_output"], list)


def test_a_deliberate_stop_says_nothing(tmp_path: Path, notices: _Notices) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    broker.stop()
    assert not notices.arrived.wait(1)


def test_a_killed_postgres_is_reported_with_its_log(tmp_path: Path, notices: _Notices) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    pg.start()
    try:
        pid = pg.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert notices.arrived.wait(30), "no notice of PostgreSQL's death"
    finally:
        pg.stop()
    [event] = notices.events
    assert event["level"] == "error"
    assert event["service"] == "postgres"
    assert event["how"] == "unknown exit status"
    assert event["log_file"] == str((tmp_path / "pg" / "log").resolve())
    assert event["last_output"], "the server log has lines"


def test_the_log_tail_is_bounded_and_leaks_no_row_values(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    lines = [f"line {i}" for i in range(10_000)]
    lines += [
        'ERROR:  duplicate key value violates unique constraint "roster_pkey"',
        "DETAIL:  Key (id_number)=(11010519491231002X) already exists.",
        "STATEMENT:  INSERT INTO roster VALUES ('11010519491231002X', '张秀英')",
        "LOG:  a number 11010519491231002X in passing \x1b[31m",
    ]
    log.write_text("\n".join(lines) + "\n", "utf-8")
    tail = log_tail(log, 5)
    assert tail == [
        "line 9997",
        "line 9998",
        "line 9999",
        'ERROR:  duplicate key value violates unique constraint "roster_pkey"',
        "LOG:  a number 110105******** in passing \\x1b[31m",
    ]
    assert not any("11010519491231002X" in t or "张秀英" in t for t in tail)
    assert log_tail(tmp_path / "missing.log")[0].startswith("(cannot read")


def test_a_process_that_ends_is_reported_once(tmp_path: Path, notices: _Notices) -> None:
    calls = iter([(False, None), (False, None), (True, 3)])
    watcher = ExitWatcher("probe", lambda: next(calls), tmp_path / "none.log").start()
    assert watcher.exited.wait(30)
    assert [e["exit_status"] for e in notices.events] == [3]
    assert describe_status(3) == "exit status 3"
    assert describe_status(-15) == "killed by SIGTERM"
