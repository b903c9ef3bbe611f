"""A long seeded fault schedule: three worker processes, faults injected while
certifications flow, then a check of every outcome.

    python bench/chaos.py --minutes 10 --seed 1234

Prints the seed (replay with the same ``--seed``), every fault injected, the monitor
takeovers and what the checker verified; exits 1 when the checker found a problem.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.schedule import ChaosResult, run_schedule  # noqa: E402

from certrecon.logs import configure  # noqa: E402


async def _run(workdir: Path, seed: int, args: argparse.Namespace) -> ChaosResult:
    """The schedule, cancelled (so the cluster is stopped) on SIGTERM or SIGINT."""
    task = asyncio.create_task(
        run_schedule(
            workdir,
            seed=seed,
            seconds=args.minutes * 60,
            pause=not args.no_pause,
            rate=args.rate,
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return await task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=40.0, help="certifications per second")
    parser.add_argument("--no-pause", action="store_true", help="leave out the broker pause")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    configure(level="WARNING")
    with tempfile.TemporaryDirectory(prefix="certrecon-chaos-") as tmp:
        result = asyncio.run(_run(Path(tmp), seed, args))
    print("\n".join(result.lines()))
    print(f"seed {seed}: {'FAILED' if result.problems else 'passed'}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
