"""The CPU budget of bench/throughput.py: parsing py-spy's output and naming stages."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cpu_budget as cb

ROOT = [
    ("<module>", "certrecon/__main__.py"),
    ("BaseEventLoop._run_once", "asyncio/base_events.py"),
]


def stack(*frames: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (*ROOT, *frames)


def test_parse_raw_reads_collapsed_stacks() -> None:
    text = (
        "<module> (certrecon/__main__.py:3);decode (certrecon/consumers/decode.py:76) 24\n"
        "<module> (certrecon/__main__.py:3);f (<string>:5) 2\n"
        "<module> (certrecon/__main__.py:3);decode (certrecon/consumers/decode.py:83) 1\n"
    )
    stacks = cb.parse_raw(text)
    decode = (("<module>", "certrecon/__main__.py"), ("decode", "certrecon/consumers/decode.py"))
    assert stacks[decode] == 25
    assert stacks[(("<module>", "certrecon/__main__.py"), ("f", "<string>"))] == 2


def test_library_frames_count_for_the_code_that_called_them() -> None:
    pydantic_in_decode = stack(
        ("BatchLoop._prepare", "certrecon/worker/consume.py"),
        ("prepare_batch", "certrecon/worker/pipeline.py"),
        ("decode", "certrecon/consumers/decode.py"),
        ("BaseModel.model_validate_json", "pydantic/main.py"),
    )
    pydantic_in_results = stack(
        ("commit_batch", "certrecon/worker/pipeline.py"),
        ("record_results", "certrecon/store/results.py"),
        ("ResultMessage.build", "certrecon/results.py"),
        ("BaseModel.__init__", "pydantic/main.py"),
    )
    assert cb.classify(pydantic_in_decode) == cb.DECODE
    assert cb.classify(pydantic_in_results) == cb.RESULT_ENCODING


def test_the_innermost_stage_wins() -> None:
    ids_in_decode = stack(
        ("decode", "certrecon/consumers/decode.py"),
        ("SubjectWire._id_number", "certrecon/consumers/models.py"),
        ("check_character", "certrecon/ids.py"),
    )
    asyncpg_in_results = stack(
        ("commit_batch", "certrecon/worker/pipeline.py"),
        ("record_results", "certrecon/store/results.py"),
        ("Connection.execute", "asyncpg/connection.py"),
    )
    assert cb.classify(ids_in_decode) == cb.ID_CHECKS
    assert cb.classify(asyncpg_in_results) == cb.COMMIT_DB


def test_database_and_kafka_frames_take_their_phase() -> None:
    relay_db = stack(
        ("OutboxRelay._relay_once", "certrecon/worker/relay.py"),
        ("Connection.fetch", "asyncpg/connection.py"),
    )
    relay_send = stack(
        ("OutboxRelay._relay_once", "certrecon/worker/relay.py"),
        ("AIOKafkaProducer.send", "aiokafka/producer/producer.py"),
    )
    roster = stack(
        ("prepare_batch", "certrecon/worker/pipeline.py"),
        ("Connection.fetch", "asyncpg/connection.py"),
    )
    fetch = stack(
        ("BatchLoop._fetch_batch", "certrecon/worker/consume.py"),
        ("AIOKafkaConsumer.getmany", "aiokafka/consumer/consumer.py"),
    )
    assert cb.classify(relay_db) == cb.RELAY_DB
    assert cb.classify(relay_send) == cb.RELAY_SEND
    assert cb.classify(roster) == cb.ROSTER
    assert cb.classify(fetch) == cb.KAFKA_FETCH


def test_a_bare_event_loop_is_other() -> None:
    assert cb.classify(stack(("EpollSelector.select", "selectors.py"))) == cb.OTHER


def test_budget_table_splits_the_process_cpu_by_samples() -> None:
    samples = Counter({cb.DECODE: 3, cb.RULES: 1})
    table = cb.budget_table("t", samples, cpu_seconds=0.4, count=1000, extra=[("pg", 0.1)])
    rows = {line[:-17].strip(): line[-17:].split() for line in table.splitlines()[2:]}
    assert rows[cb.DECODE] == ["300.0", "75%"]
    assert rows[cb.RULES] == ["100.0", "25%"]
    assert rows["total (process CPU)"] == ["400.0", "100%"]
    assert rows["pg"] == ["100.0"]
