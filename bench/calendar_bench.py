"""Deadline throughput: due dates for random certification timestamps across 2004-2027.

    python bench/calendar_bench.py [--calls 1000000] [--seed 2027]

Prints how long building the calendar took and the rate of ``compute_deadline`` calls.
The target is 1,000,000 calls in under 2 seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

from certrecon.calendar import compute_deadline, default_calendar
from certrecon.domain import CST

TARGET_SECONDS = 2.0
# Offsets seen on the channels, plus extremes that move the local date.
OFFSETS = [
    dt.UTC,
    CST,
    dt.timezone(dt.timedelta(hours=-5)),
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
    dt.timezone(dt.timedelta(hours=-12)),
    dt.timezone(dt.timedelta(hours=14)),
]


def timestamps(count: int, seed: int) -> list[dt.datetime]:
    """Random aware instants from 2004-01-02 to 2027-12-20 with random offsets."""
    rng = random.Random(seed)
    low = dt.datetime(2004, 1, 2, tzinfo=CST).timestamp()
    high = dt.datetime(2027, 12, 20, tzinfo=CST).timestamp()
    return [
        dt.datetime.fromtimestamp(rng.uniform(low, high), rng.choice(OFFSETS)) for _ in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args()

    instants = timestamps(args.calls, args.seed)

    started = time.perf_counter()
    cal = default_calendar()
    built = time.perf_counter() - started

    started = time.perf_counter()
    provisional = 0
    for certified_at in instants:
        provisional += compute_deadline(certified_at, cal).provisional
    elapsed = time.perf_counter() - started

    print(f"calendar: {cal!r}, built in {built * 1000:.0f} ms")
    print(
        f"{args.calls:,} compute_deadline calls in {elapsed:.3f} s: "
        f"{args.calls / elapsed:,.0f} calls/s ({provisional:,} provisional)"
    )
    scaled = elapsed * 1_000_000 / args.calls
    verdict = "met" if scaled < TARGET_SECONDS else "MISSED"
    print(f"target: 1,000,000 calls in < {TARGET_SECONDS:.0f} s: {verdict} ({scaled:.3f} s)")


if __name__ == "__main__":
    main()
