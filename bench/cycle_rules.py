"""Cost of the pure cycle rules per person: scope, status, the outreach list, in Python.

    python bench/cycle_rules.py [--people 300000] [--seed 12]

Prints, for each cycle mode, the time of ``summarise`` (the ``cycle status`` counts) and of
``outreach`` over ``--people`` invented people (half certified in the year), and the same
scaled to the 3,000,000 people of the ``cycle status`` goal (< 5 s). It measures the
reference rules only, not the database; the figure says whether they can run per person
at municipal scale or the counts must come from set-based SQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

from certrecon.cycle import CertificationFact, Period, PersonFacts, outreach, summarise
from certrecon.domain import CycleMode, RosterRecord, RosterStatus

GOAL_PEOPLE = 3_000_000


def people(n: int, seed: int) -> list[PersonFacts]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        roster = RosterRecord(
            id_number=f"{i:018d}",
            name="张三",
            benefit_type="basic_pension",
            status=RosterStatus.ACTIVE,
            insured_region=rng.choice(("110105", "110108", "110101")),
            first_paid_on=dt.date(2010, 1, 1),
        )
        certified = tuple(
            CertificationFact(dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(366)), "12333")
            for _ in range(rng.choice((0, 1)))
        )
        out.append(PersonFacts(roster, certified))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    population = people(args.people, args.seed)
    scale = GOAL_PEOPLE / args.people
    for mode in CycleMode:
        period = Period.of(mode, 2024)
        started = time.perf_counter()
        summary = summarise(population, period)
        counted = time.perf_counter() - started
        started = time.perf_counter()
        listed = sum(1 for _ in outreach(population, period))
        written = time.perf_counter() - started
        print(
            f"{mode.value}: {args.people:,} people, {summary.in_scope:,} in scope, "
            f"{listed:,} to reach; summarise {counted:.2f} s "
            f"({counted / args.people * 1e6:.1f} µs/person, ~{counted * scale:.0f} s for "
            f"{GOAL_PEOPLE:,}), outreach {written:.2f} s (~{written * scale:.0f} s)"
        )


if __name__ == "__main__":
    main()
