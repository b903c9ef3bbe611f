"""CPU cost of the pure per-record path, without PostgreSQL or a broker.

    python bench/record_path.py [--count 20000]

Prints microseconds per record for ``decode`` alone and for ``process_record`` (decode,
validation, deadline, rules, result encoding) over synthetic valid certifications on all
four channels, and over the same messages made invalid (a wrong check character), which
take the dead-letter and ``invalid_record`` path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import certification, eligible_roster  # noqa: E402

from certrecon.calendar import default_calendar  # noqa: E402
from certrecon.consumers import decode  # noqa: E402
from certrecon.domain import Channel  # noqa: E402
from certrecon.settings import Settings  # noqa: E402
from certrecon.worker.pipeline import Inbound, PipelineConfig, process_record  # noqa: E402

NOW = dt.datetime(2026, 9, 30, 3, 0, tzinfo=dt.UTC)


def _per_record(label: str, n: int, run: Callable[[], None]) -> None:
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    print(f"{label}: {elapsed / n * 1e6:.1f} µs/record ({n / elapsed:,.0f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    config = PipelineConfig.from_settings(Settings())
    topic_of = {c: t for t, c in config.topic_channels.items()}
    calendar = default_calendar()
    people = eligible_roster(args.count, seed=1)
    roster = {p.id_number: p for p in people}
    channels = list(Channel)
    valid: list[Inbound] = []
    invalid: list[Inbound] = []
    for i, person in enumerate(people):
        channel = channels[i % len(channels)]
        body = certification(f"B{i:08d}", channel, person, NOW - dt.timedelta(hours=1))
        raw = json.dumps(body, ensure_ascii=False).encode()
        valid.append(Inbound(topic_of[channel], 0, i, 0, person.id_number.encode(), raw))
        wrong = person.id_number[:17] + ("0" if person.id_number[17] != "0" else "1")
        body["subject"]["id_number"] = wrong
        raw = json.dumps(body, ensure_ascii=False).encode()
        invalid.append(Inbound(topic_of[channel], 0, i, 0, wrong.encode(), raw))

    def decode_all() -> None:
        for r in valid:
            decode(r.value, topic=r.topic, channel=config.topic_channels[r.topic], received_at=NOW)

    def process(records: list[Inbound]) -> Callable[[], None]:
        def run() -> None:
            for r in records:
                process_record(r, config=config, calendar=calendar, roster=roster, received_at=NOW)

        return run

    n = args.count
    _per_record("decode, valid", n, decode_all)
    _per_record("process_record, valid", n, process(valid))
    _per_record("process_record, invalid", n, process(invalid))


if __name__ == "__main__":
    main()
