"""One audit replay: the ledger in one read-only snapshot, the topics through an
assign-only consumer, every record checked by :mod:`certrecon.replay.check`, the report
streamed by :class:`~certrecon.replay.report.ReportWriter`.

Order matters for a replay beside a running worker: the database snapshot is taken first,
then the topics' ends are fixed, so every result the snapshot knows as acknowledged is on
a topic below its fixed end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import platform
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import certrecon
from certrecon.consumers.decode import usable_certification_id
from certrecon.reconcile import RULE_VERSION
from certrecon.replay.broker import Progress, TopicReader
from certrecon.replay.check import Published, conclude
from certrecon.replay.model import Discrepancy, Kind, PartitionSpan, Rules, Tally
from certrecon.replay.pool import Checker, ChunkChecked, processes_for
from certrecon.replay.pool import history as calendar_history
from certrecon.replay.report import ReportWriter, summary_json
from certrecon.replay.window import Window, to_ms
from certrecon.store import replay as store
from certrecon.store.audit import head
from certrecon.store.db import Conn
from certrecon.transport import Secret
from certrecon.worker.pipeline import Inbound, PipelineConfig

OUTPUT_LOOKBACK = dt.timedelta(days=1)
"""The output topics are read from this long before the window: a result or dead letter is
published after its record, but producers' clocks differ."""
_ORPHAN_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Outcome:
    tally: Tally
    summary: dict[str, Any]
    manifest: dict[str, Any]
    items_shown: list[Discrepancy]
    """The first discrepancies (for the terminal); the report file has them all."""


SHOWN = 50


async def replay(
    conn: Conn,
    reader: TopicReader,
    *,
    dsn: str,
    password: Secret | None,
    config: PipelineConfig,
    window: Window,
    rules: Rules,
    now: dt.datetime,
    writer: ReportWriter,
    progress: Callable[[list[PartitionSpan]], Progress] | None = None,
    processes: int | None = None,
) -> Outcome:
    """Check every inbound record of ``window``; ``conn`` must be in a READ ONLY
    REPEATABLE READ transaction (the caller's), opened with ``dsn`` and ``password``
    (worker processes open their own, in its snapshot). ``processes``: how many processes
    check the records (0: this one; None: as many as the CPUs for a large window)."""
    await store.begin(conn)
    ledger_head = await head(conn, now)
    events = await store.calendar_events(conn)
    history = calendar_history(events)
    inbound_topics = list(config.topic_channels)
    earliest = await store.earliest_in_window(conn, inbound_topics, window.start, window.end)

    in_spans = await reader.spans(inbound_topics, window.start_ms)
    out_spans = await reader.spans(
        [config.result_topic, config.dead_letter_topic], to_ms(window.start - OUTPUT_LOOKBACK)
    )
    tally = Tally()
    shown: list[Discrepancy] = []

    def found(d: Discrepancy) -> None:
        tally.found(d)
        writer.item(d)
        if len(shown) < SHOWN:
            shown.append(d)

    on_progress = progress([*out_spans, *in_spans]) if progress is not None else None
    results, dead_letters = Published(), Published()
    rule_versions: dict[str, int] = {}

    def conclude_chunk(chunk: ChunkChecked) -> None:
        for name, n in chunk.counts.items():
            tally.add(name, n)
        for version, n in chunk.rule_versions.items():
            rule_versions[version] = rule_versions.get(version, 0) + n
        for record in chunk.open:
            items, awaiting = conclude(record, results, dead_letters)
            if awaiting:
                tally.add("awaiting_publication", awaiting)
            for d in items:
                found(d)
        if chunk.timeliness:
            writer.timeliness_text(chunk.timeliness)

    if processes is None:
        processes = processes_for(sum(max(s.end - s.start, 0) for s in in_spans))
    checker = Checker(
        processes,
        conn=conn,
        dsn=dsn,
        password=password,
        config=config,
        rules=rules,
        now=now,
        events=events,
        calendars=history,
        timeliness=writer.keeps_timeliness,
    )
    # Chunks in flight: the ledger rows of the next ones are read by PostgreSQL and the
    # chunks checked by the pool while this process concludes the oldest one.
    ahead = 1 + 2 * processes
    flight: deque[asyncio.Task[ChunkChecked]] = deque()
    lo, hi = window.start_ms, window.end_ms  # Window.holds, once per chunk
    # The pool's processes start (and connect) while this one indexes the output topics.
    async with checker:
        async for chunk in reader.read(out_spans, on_progress):
            for m in chunk:
                _index(m, config, results, dead_letters)
        try:
            async for records in reader.read(in_spans, on_progress):
                tally.add("records_read", len(records))
                inside = [r for r in records if lo <= r.timestamp_ms < hi]
                tally.add("records_in_window", len(inside))
                flight.append(asyncio.create_task(checker(inside), name="replay-chunk"))
                await asyncio.sleep(0)  # let the query go out before the CPU work starts
                while flight and (len(flight) > ahead or flight[0].done()):
                    conclude_chunk(await flight.popleft())
            while flight:
                conclude_chunk(await flight.popleft())
        finally:
            for task in flight:
                task.cancel()
            await asyncio.gather(*flight, return_exceptions=True)

    for d in _truncated(in_spans, earliest, reader, window):
        found(d)
    for d in await _orphans(conn, results, config.result_topic, window):
        found(d)

    summary = summary_json(tally, window=window.to_json(), rules=rules.value)
    manifest = {
        "window": window.to_json(),
        "rules": rules.value,
        "replayed_at": now.isoformat(),
        "certrecon_version": certrecon.__version__,
        "python": platform.python_version(),
        "rule_versions": {"program": RULE_VERSION, "recorded": rule_versions},
        "calendar": history.state(),
        "ledger_head": ledger_head.to_json(),
        "partitions": [s.to_json() for s in [*in_spans, *out_spans]],
        "clean": tally.clean,
    }
    filed = writer.finish(summary, manifest)
    return Outcome(tally, summary, filed or manifest, shown)


# Results and dead letters are compact JSON the service wrote, their id a plain string: a
# pattern finds it without parsing the whole message; anything else is parsed.
_ID_FIELD = {
    "result_id": re.compile(rb'^\{"schema_version":1,"result_id":"([A-Za-z0-9_:-]{1,80})"'),
    "dead_letter_id": re.compile(rb'^\{"dead_letter_id":"([A-Za-z0-9._:-]{1,300})"'),
}


def _message_id(value: bytes | None, field: str) -> str | None:
    found = _ID_FIELD[field].match(value or b"")
    if found is not None:
        return found.group(1).decode()
    try:
        document = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    if isinstance(document, dict) and isinstance(document.get(field), str):
        return str(document[field])
    return None


def _index(m: Inbound, config: PipelineConfig, results: Published, letters: Published) -> None:
    field = "result_id" if m.topic == config.result_topic else "dead_letter_id"
    target = results if m.topic == config.result_topic else letters
    message_id = _message_id(m.value, field)
    if message_id is None:
        # Unreadable: never matches a ledger row, so an unreadable result is an orphan.
        message_id = f"{m.topic}:{m.partition}:{m.offset}"
    target.add(message_id, m.partition, m.offset, m.timestamp_ms, m.value)


def _truncated(
    spans: Iterable[PartitionSpan],
    earliest: Iterable[store.Earliest],
    reader: TopicReader,
    window: Window,
) -> list[Discrepancy]:
    """Partitions whose window the broker no longer holds whole: the ledger recorded a
    certification of the window below the oldest record kept (or beyond the partition's
    end: the topic was recreated), or records were removed and the oldest kept one is
    already inside the window."""
    by_tp = {(s.topic, s.partition): s for s in spans}

    def cut(topic: str, partition: int, log_start: int | None, ledger: int | None) -> Discrepancy:
        # recorded: the ledger's first offset of the window; replayed: the broker's log start
        field = "partition" if log_start is None else "log_start_offset"
        return Discrepancy(
            Kind.WINDOW_TRUNCATED, None, topic, partition, log_start, field, ledger, log_start
        )

    out: list[Discrepancy] = []
    for e in earliest:
        s = by_tp.get((e.topic, e.partition))
        if s is None:
            out.append(cut(e.topic, e.partition, None, e.first_offset))
        elif e.first_offset < s.log_start or e.first_offset >= s.end:
            out.append(cut(e.topic, e.partition, s.log_start, e.first_offset))
            del by_tp[(e.topic, e.partition)]
    for s in by_tp.values():
        first = reader.first_kept.timestamps.get((s.topic, s.partition))
        kept_from_inside = first is not None and first >= window.start_ms
        if s.log_start > 0 and s.start == s.log_start and kept_from_inside:
            out.append(cut(s.topic, s.partition, s.log_start, None))
    return out


async def _orphans(conn: Conn, results: Published, topic: str, window: Window) -> list[Discrepancy]:
    """Results stamped inside the window that the ledger never recorded."""
    left = [(k, p, o) for k, p, o, ts in results.remaining() if window.holds(ts)]
    out: list[Discrepancy] = []
    for i in range(0, len(left), _ORPHAN_CHUNK):
        part = left[i : i + _ORPHAN_CHUNK]
        known = await store.known_results(conn, [k for k, _, _ in part])
        for result_id, partition, offset in part:
            if result_id not in known:
                cid = usable_certification_id(result_id.rpartition(":")[0])
                out.append(
                    Discrepancy(
                        Kind.ORPHAN_RESULT,
                        cid,
                        topic,
                        partition,
                        offset,
                        "result_id",
                        None,
                        result_id,
                    )
                )
    return out
