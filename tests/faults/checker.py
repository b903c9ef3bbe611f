"""What must hold after a fault schedule, read from the database and the topics.

- every record on the input topics ends in exactly one outcome: a certification with a
  result (the rules' revision 1), a certification waiting for staff (a review item, no
  rules result), or a dead letter naming its position; a repeated certification is one
  input with one outcome;
- every copy of a message on an output topic is byte-identical to the outbox row of its
  id, and every outbox row is on its topic (the outbox drained);
- the revisions of one certification appear on the result topic in order;
- each SLA alert is stored once and published (copies byte-identical).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from certrecon.consumers.dead_letter import dead_letter_id
from certrecon.settings import Settings
from tests.support import read_topic


@dataclass
class CheckReport:
    inputs: int = 0
    certifications: int = 0
    repeated_inputs: int = 0
    results: int = 0
    review_items: int = 0
    dead_letters: int = 0
    revisions_above_one: int = 0
    alerts: int = 0
    topic_copies: dict[str, int] = field(default_factory=dict)
    duplicates_on_topics: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(message)

    def lines(self) -> list[str]:
        return [
            f"inputs on the channel topics: {self.inputs} "
            f"({self.repeated_inputs} repeats of a certification already read)",
            f"certifications stored: {self.certifications}; with a rules result: "
            f"{self.results}; waiting for or decided by staff: {self.review_items}",
            f"dead letters: {self.dead_letters}",
            f"result revisions above 1 (staff corrections): {self.revisions_above_one}",
            f"SLA alerts: {self.alerts}",
            f"messages on output topics: {self.topic_copies}; re-sent copies "
            f"(byte-identical): {self.duplicates_on_topics}",
            f"problems: {len(self.problems)}",
            *(f"  - {p}" for p in self.problems),
        ]


def _by_id(records: list[Any], id_of: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        grouped[id_of(r)].append(r)
    return grouped


async def check(conn: asyncpg.Connection, settings: Settings, bootstrap: str) -> CheckReport:
    report = CheckReport()
    backlog = await conn.fetchval("SELECT count(*) FROM outbox_backlog")
    if backlog:
        report.fail(f"the outbox did not drain: {backlog} messages pending")

    # Inputs, as the broker holds them.
    inputs: list[Any] = []
    for topic in settings.channel_topics.values():
        inputs.extend(await read_topic(bootstrap, topic, at_least=0, timeout=120))
    report.inputs = len(inputs)

    certs = {
        r["certification_id"]: r
        for r in await conn.fetch(
            "SELECT certification_id, topic, kafka_partition, kafka_offset FROM certification"
        )
    }
    report.certifications = len(certs)
    rules_results = {
        r["certification_id"]
        for r in await conn.fetch(
            "SELECT certification_id FROM result"
            " WHERE revision = 1 AND decided_by NOT LIKE 'staff:%'"
        )
    }
    review = {
        r["certification_id"] for r in await conn.fetch("SELECT certification_id FROM review_item")
    }
    outbox = {
        r["message_id"]: r
        for r in await conn.fetch("SELECT message_id, kind, topic, payload FROM outbox")
    }
    dead = {m for m, r in outbox.items() if r["kind"] == "dead_letter"}
    report.results = len(rules_results)
    report.review_items = len(review)
    report.dead_letters = len(dead)

    stored_offsets = {
        (r["topic"], r["kafka_partition"]): r["next_offset"]
        for r in await conn.fetch("SELECT topic, kafka_partition, next_offset FROM consumer_offset")
    }
    seen: set[str] = set()
    for rec in inputs:
        position = dead_letter_id(rec.topic, rec.partition, rec.offset)
        try:
            cid = json.loads(rec.value)["certification_id"]
        except (ValueError, KeyError, TypeError):
            cid = None
        if cid is None or cid not in certs:
            if position not in dead:
                past = stored_offsets.get((rec.topic, rec.partition), 0) > rec.offset
                report.fail(
                    f"input {position} has no outcome (no certification, no dead letter)"
                    + (": LOST, the stored offset is past it" if past else ": not processed")
                )
            continue
        if position in dead:
            report.fail(f"input {position} is both a certification and a dead letter")
        if cid in seen:
            report.repeated_inputs += 1
            continue
        seen.add(cid)
        outcomes = (cid in rules_results) + (cid in review)
        if outcomes != 1:
            report.fail(f"certification {cid} has {outcomes} outcomes (rules result, review item)")
    stray = set(certs) - seen
    if stray:
        report.fail(f"{len(stray)} stored certifications match no input, e.g. {sorted(stray)[:3]}")
    used_dead = {dead_letter_id(r.topic, r.partition, r.offset) for r in inputs}
    if dead - used_dead:
        report.fail(f"{len(dead - used_dead)} dead letters name no input record")

    # Output topics: every outbox row published, every copy identical to it.
    topics = {
        "result": settings.result_topic,
        "dead_letter": settings.dead_letter_topic,
        "sla_alert": settings.sla_alert_topic,
    }
    for kind, topic in topics.items():
        expected = {m: r for m, r in outbox.items() if r["kind"] == kind}
        records = await read_topic(bootstrap, topic, at_least=len(expected), timeout=120)
        report.topic_copies[kind] = len(records)
        grouped = _by_id(records, lambda r: dict(r.headers).get("message_id", b"").decode())
        for message_id, row in expected.items():
            copies = grouped.get(message_id, [])
            if not copies:
                report.fail(f"{kind} {message_id} is not on {topic}")
            for c in copies:
                if bytes(c.value) != bytes(row["payload"]):
                    report.fail(f"a copy of {kind} {message_id} differs from its outbox row")
            report.duplicates_on_topics += max(0, len(copies) - 1)
        unknown = set(grouped) - set(expected)
        if unknown:
            report.fail(f"{len(unknown)} messages on {topic} have no outbox row")
        if kind == "result":
            _check_revision_order(records, report)

    alerts = await conn.fetch("SELECT alert_id, count(*) AS n FROM sla_alert GROUP BY alert_id")
    report.alerts = len(alerts)
    for a in alerts:
        if a["n"] != 1:
            report.fail(f"SLA alert {a['alert_id']} stored {a['n']} times")
    report.revisions_above_one = await conn.fetchval(
        "SELECT count(*) FROM result WHERE revision > 1"
    )
    return report


def _check_revision_order(records: list[Any], report: CheckReport) -> None:
    """Per certification, in topic order: the first copy of revision n+1 comes after the
    first copy of revision n, and the last message seen is the highest revision."""
    by_cert: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for r in records:
        body = json.loads(r.value)
        cid, _, rev = body["result_id"].rpartition(":")
        by_cert[cid].append((r.partition, r.offset, int(rev)))
    for cid, seq in by_cert.items():
        if len({p for p, _, _ in seq}) > 1:
            report.fail(f"results of {cid} are on more than one partition")
            continue
        seq.sort()
        revs = [rev for _, _, rev in seq]
        firsts = [revs.index(n) for n in sorted(set(revs))]
        if firsts != sorted(firsts) or revs[-1] != max(revs):
            report.fail(f"revisions of {cid} out of order on the result topic: {revs}")
