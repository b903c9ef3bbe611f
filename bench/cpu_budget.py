"""CPU accounting for the benchmarks: process CPU from /proc, and a per-stage budget from
py-spy samples.

Run as a script, it prints the CPU budget of the pure per-record path alone (no broker,
no PostgreSQL): each stage timed on its own over the same synthetic certifications.

    python bench/cpu_budget.py [--count 20000] [--repeat 3]

py-spy samples the Python stacks of a running process (``--nonblocking``: the process is
never paused) and leaves out idle samples, so the share of samples a stage holds is its
share of the process's CPU. Each sample is put in one stage by its innermost frame that
belongs to a stage (see :func:`classify`); library frames without a stage of their own
(pydantic, json, asyncio) count for the code that called them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

Frame = tuple[str, str]
"""(function, file path as py-spy prints it, e.g. ``asyncpg/connection.py``)."""

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            if int(_stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, its live children and every child it has reaped.

    For a PostgreSQL postmaster that is the whole server: backends that ended are in its
    children's times once reaped, live ones are counted directly.
    """
    fields = _stat_fields(pid)
    total = sum(int(f) for f in fields[11:15]) / _TICK
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += sum(int(f) for f in _stat_fields(child)[11:15]) / _TICK
    return total


def peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _TICK


# --- stages -------------------------------------------------------------------------------

KAFKA_FETCH = "Kafka fetch (aiokafka consumer, records)"
DECODE = "decode + validate (fields, JSON scan)"
ID_CHECKS = "ID number checks"
DEADLINE = "deadline (calendar)"
ROSTER = "roster look-up"
RULES = "rules"
PREPARE_REST = "prepare: sha256, row objects"
COMMIT_BUILD = "commit: column lists, evidence JSON"
RESULT_ENCODING = "result encoding (result bytes, outbox rows)"
COMMIT_DB = "asyncpg: commit writes (arguments, protocol)"
RELAY_DB = "relay: database"
RELAY_SEND = "relay: Kafka send (aiokafka producer)"
KAFKA_COMMIT = "Kafka offset commit"
KAFKA_IO = "Kafka client I/O (other)"
LOGGING = "logging"
METRICS = "metrics"
DB_POOL = "asyncpg pool, other"
FASTSTREAM = "FastStream dispatch (fast-depends, middlewares)"
SQLALCHEMY = "SQLAlchemy (statements, results)"
PEER_DB = "asyncpg: handler statements"
OUTBOX_PUBLISH = "faststream-outbox publish"
PEER_GLUE = "handler code (parameters, rows)"
SOCKETS = "socket reads (protocol parsing in C)"
OTHER = "event loop and other"

ORDER = (
    KAFKA_FETCH,
    DECODE,
    ID_CHECKS,
    DEADLINE,
    ROSTER,
    RULES,
    PREPARE_REST,
    COMMIT_BUILD,
    RESULT_ENCODING,
    COMMIT_DB,
    FASTSTREAM,
    SQLALCHEMY,
    PEER_DB,
    OUTBOX_PUBLISH,
    PEER_GLUE,
    RELAY_DB,
    RELAY_SEND,
    KAFKA_COMMIT,
    KAFKA_IO,
    DB_POOL,
    LOGGING,
    METRICS,
    SOCKETS,
    OTHER,
)


def _context(frames: Sequence[Frame]) -> str:
    """The innermost phase a stack is in: fetch, prepare, commit, relay, handler, ..."""
    context = ""
    for func, path in frames:
        name = func.rsplit(".", 1)[-1]
        if path.endswith("certrecon/worker/relay.py") or path.startswith(
            "faststream_outbox/subscriber/"
        ):
            context = "relay"
        elif name == "_fetch_batch":
            context = "fetch"
        elif name in ("prepare_batch", "_prepare"):
            context = "prepare"
        elif name in ("commit_batch", "_commit"):
            context = "commit"
        elif name == "_commit_to_kafka":
            context = "kafka-commit"
        elif func == "PeerService.handle" or path.startswith("faststream_outbox/publisher/"):
            context = "handler"
    return context


_PEER_ROOTS = frozenset({"<module>", "main", "serve"})


def _stage(func: str, path: str, context: str) -> str | None:
    if path.startswith(("structlog/", "logging/")) or path.endswith("certrecon/logs.py"):
        return LOGGING
    if path.startswith("prometheus_client/"):
        return METRICS
    if path.startswith("certrecon/ids.py"):
        return ID_CHECKS
    if path.startswith("certrecon/consumers/"):
        return DECODE
    if path.startswith("certrecon/calendar/"):
        return DEADLINE
    if path.startswith("certrecon/reconcile/"):
        return RULES
    if path.startswith("certrecon/store/roster.py"):
        return ROSTER
    if path.startswith(("certrecon/results.py", "certrecon/store/results.py")):
        return RESULT_ENCODING
    if path.startswith("asyncpg/"):
        return {
            "relay": RELAY_DB,
            "prepare": ROSTER,
            "commit": COMMIT_DB,
            "handler": PEER_DB,
        }.get(context, DB_POOL)
    if path.startswith("sqlalchemy/"):
        return RELAY_DB if context == "relay" else SQLALCHEMY
    if path.startswith("faststream_outbox/publisher/"):
        return OUTBOX_PUBLISH
    if path.startswith("aiokafka/"):
        if context == "relay" or path.startswith("aiokafka/producer/"):
            return RELAY_SEND
        if context == "kafka-commit":
            return KAFKA_COMMIT
        if context == "fetch" or path.startswith("aiokafka/consumer/"):
            return KAFKA_FETCH
        return KAFKA_IO
    if path.startswith("faststream_outbox/"):
        return RELAY_DB
    if path.startswith(("faststream/", "fast_depends/")):
        return FASTSTREAM
    if path.endswith("certrecon/worker/pipeline.py"):
        return {"prepare": PREPARE_REST, "commit": COMMIT_BUILD}.get(context)
    if path.endswith("peer_faststream.py") and func not in _PEER_ROOTS:
        return PEER_GLUE
    if path.startswith("asyncio/selector_events.py") and "_read_ready" in func:
        return SOCKETS
    if path.endswith("certrecon/worker/consume.py") and context == "fetch":
        return KAFKA_FETCH
    return None


def classify(frames: Sequence[Frame]) -> str:
    """The stage of one sampled stack (outermost frame first)."""
    context = _context(frames)
    for func, path in reversed(frames):
        stage = _stage(func, path, context)
        if stage is not None:
            return stage
    return OTHER


_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def parse_raw(text: str) -> Counter[tuple[Frame, ...]]:
    """py-spy's ``--format raw`` output (collapsed stacks) → stack → sample count."""
    stacks: Counter[tuple[Frame, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            match = _FRAME.match(part)
            frames.append((match.group(1), match.group(2)) if match else (part, ""))
        stacks[tuple(frames)] += int(count)
    return stacks


def stage_samples(stacks: Counter[tuple[Frame, ...]]) -> Counter[str]:
    by_stage: Counter[str] = Counter()
    for stack, n in stacks.items():
        by_stage[classify(stack)] += n
    return by_stage


def unattributed(stacks: Counter[tuple[Frame, ...]], top: int = 5) -> list[tuple[str, int]]:
    """The innermost frames of the samples left in "other": where to look next."""
    leaves: Counter[str] = Counter()
    for stack, n in stacks.items():
        if stack and classify(stack) == OTHER:
            func, path = stack[-1]
            leaves[f"{func} ({path})"] += n
    return leaves.most_common(top)


class Sampler:
    """py-spy recording the given processes until :meth:`stop`."""

    def __init__(self, pids: Iterable[int], outdir: Path, rate: int = 100) -> None:
        self._procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        for pid in pids:
            out = outdir / f"py-spy-{pid}.txt"
            proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--nonblocking",
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(outdir / f"py-spy-{pid}.log").open("wb"),
            )
            self._procs.append((proc, out))

    def stop(self) -> Counter[tuple[Frame, ...]]:
        """Stop recording (py-spy writes its file on SIGINT) and return the samples."""
        stacks: Counter[tuple[Frame, ...]] = Counter()
        for proc, _ in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, out in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if out.exists():
                stacks.update(parse_raw(out.read_text("utf-8", "replace")))
        return stacks


_ALWAYS_SHOWN = frozenset({LOGGING})
"""Shown even at zero: a stage one would otherwise wonder about."""


def budget_table(
    title: str,
    by_stage: Counter[str],
    cpu_seconds: float,
    count: int,
    extra: Sequence[tuple[str, float | None]] = (),
) -> str:
    """µs of CPU per certification per stage, as a fixed-width table.

    ``extra`` rows (e.g. PostgreSQL) are CPU seconds of other processes in the same run.
    """
    total = sum(by_stage.values())
    per = cpu_seconds * 1e6 / count if count else 0.0
    width = max(len(s) for s in (*ORDER, *(name for name, _ in extra))) + 2
    lines = [title, f"{'stage':<{width}}{'µs/cert':>9}{'share':>8}"]
    for stage in ORDER:
        n = by_stage.get(stage, 0)
        if not n and stage not in _ALWAYS_SHOWN:
            continue
        share = n / total if total else 0.0
        lines.append(f"{stage:<{width}}{per * share:>9.1f}{share:>8.0%}")
    lines.append(f"{'total (process CPU)':<{width}}{per:>9.1f}{1:>8.0%}")
    for name, seconds in extra:
        value = "n/a" if seconds is None else f"{seconds * 1e6 / count:.1f}"
        lines.append(f"{name:<{width}}{value:>9}")
    return "\n".join(lines)


# --- the pure per-record path, stage by stage ----------------------------------------------


def _pure_path_budget(count: int, repeat: int) -> None:
    import datetime as dt
    import json
    import sys
    import time
    from collections.abc import Callable

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tests.support import certification, eligible_roster

    from certrecon.calendar import compute_deadline, default_calendar
    from certrecon.consumers import Valid, decode
    from certrecon.consumers.decode import MessageScan
    from certrecon.domain import Channel, Cycle
    from certrecon.ids import id_number_problems
    from certrecon.reconcile import decide
    from certrecon.settings import Settings
    from certrecon.worker import pipeline
    from certrecon.worker.pipeline import Inbound, PipelineConfig, process_record

    # The records are stamped by the broker at ``now``: a certification is judged against
    # the broker's timestamp (see pipeline.receiving_instant), and the generated roster's
    # birth dates against today, so a fixed date would make every record a dead letter.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = int(now.timestamp() * 1000)
    config = PipelineConfig.from_settings(Settings())
    topic_of = {c: t for t, c in config.topic_channels.items()}
    calendar = default_calendar()
    people = eligible_roster(count, seed=1)
    roster = {p.id_number: p for p in people}
    channels = list(Channel)
    records: list[Inbound] = []
    invalid: list[Inbound] = []
    for i, person in enumerate(people):
        channel = channels[i % len(channels)]
        body = certification(f"B{i:08d}", channel, person, now - dt.timedelta(hours=1))
        raw = json.dumps(body, ensure_ascii=False).encode()
        records.append(Inbound(topic_of[channel], 0, i, stamp, person.id_number.encode(), raw))
        wrong = person.id_number[:17] + ("0" if person.id_number[17] != "0" else "1")
        body["subject"]["id_number"] = wrong
        raw = json.dumps(body, ensure_ascii=False).encode()
        invalid.append(Inbound(topic_of[channel], 0, i, stamp, wrong.encode(), raw))
    channel_of = config.topic_channels
    today = now.date()

    certs = []
    for r in records:
        decoded = decode(r.value, topic=r.topic, channel=channel_of[r.topic], received_at=now)
        assert isinstance(decoded, Valid), decoded
        certs.append(decoded.certification)
    started = [
        pipeline.start_record(r, config=config, calendar=calendar, received_at=now) for r in records
    ]
    pendings = [s for s in started if isinstance(s, pipeline.Pending)]
    if len(pendings) != len(records):
        raise SystemExit("some generated certifications are not valid: the budget would be wrong")
    decisions = [
        decide(c, roster.get(c.id_number), Cycle.of(c), region_prefix=config.region_prefix)
        for c in certs
    ]

    def scan() -> None:
        for r in records:
            MessageScan.of(r.value or b"")

    def decode_all() -> None:
        for r in records:
            decode(r.value, topic=r.topic, channel=channel_of[r.topic], received_at=now)

    def ids() -> None:
        for c in certs:
            id_number_problems(c.id_number, c.id_type, today=today)

    def deadline() -> None:
        for c in certs:
            compute_deadline(c.certified_at, calendar, config.working_days)

    def start() -> None:
        for r in records:
            pipeline.start_record(r, config=config, calendar=calendar, received_at=now)

    def rules() -> None:
        for c in certs:
            decide(c, roster.get(c.id_number), Cycle.of(c), region_prefix=config.region_prefix)

    def evidence() -> None:
        for d in decisions:
            pipeline._evidence(d)

    def result() -> None:
        for p, d in zip(pendings, decisions, strict=True):
            pipeline._result(p.row, d, now, config)

    def finish() -> None:
        for p in pendings:
            pipeline.finish_record(
                p, roster.get(p.certification.id_number), config=config, calendar=calendar
            )

    def whole(batch: list[Inbound]) -> Callable[[], None]:
        def run() -> None:
            for r in batch:
                process_record(r, config=config, calendar=calendar, roster=roster, received_at=now)

        return run

    stages: list[tuple[str, Callable[[], None]]] = [
        ("JSON scan (duplicates, non-finite numbers)", scan),
        ("decode + validate (includes the scan and ID checks)", decode_all),
        ("  of which ID number checks", ids),
        ("deadline (calendar)", deadline),
        ("start_record (decode, deadline, sha256, row)", start),
        ("rules (decide)", rules),
        ("evidence JSON", evidence),
        ("result encoding (result message bytes)", result),
        ("finish_record (rules, evidence, result)", finish),
        ("process_record, valid", whole(records)),
        ("process_record, invalid (dead letter + invalid_record)", whole(invalid)),
    ]
    width = max(len(name) for name, _ in stages) + 2
    print(
        f"CPU of the pure per-record path, µs per certification "
        f"({count:,} certifications, median of {repeat})"
    )
    print(f"{'stage':<{width}}{'µs/cert':>9}")
    for name, run in stages:
        times = []
        for _ in range(repeat):
            start_cpu = time.process_time()
            run()
            times.append(time.process_time() - start_cpu)
        times.sort()
        print(f"{name:<{width}}{times[len(times) // 2] * 1e6 / count:>9.1f}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="CPU budget of the pure per-record path, stage by stage"
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    _pure_path_budget(args.count, args.repeat)
