"""What a new user waits for: import + compile + fit + predict, step by step, from an empty cache.

    python benchmarks/measure_startup.py [--repeats 3] [--json PATH]

Each repeat takes a fresh, empty ``NUMBA_CACHE_DIR`` and runs the steps of
``measure_compile.py`` in order, each in a new process on that cache (so a step pays only
for what the steps before it did not compile):

1. ``first``: fit + predict a 32-64-4 relu network, float32, batch 128;
2. ``columns``: then a 512-wide layer at batch 32 (the column split, on 2 threads);
3. ``kinds``: then tanh + Dropout, AdamW and mse (new kinds of layer, optimizer and loss);
4. ``float64``: then the same network in float64 (a new dtype);
5. ``warm``: step 1 again, everything cached.

A cold step's ``fit`` compiles on two cores, with the compile helper
(``fastbp/_precompile.py``), as a user's does (``FASTBP_COMPILE_HELPER=0`` in the
environment turns it off). Prints the median wall time of each step over the repeats (and
their range). For where the time goes, per compiled function, run ``measure_compile.py``.
Timings are whole-process wall times on a shared machine; CI runs this once as a smoke
test, asserting nothing about them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_compile import STEPS, run_steps  # noqa: E402


def measure(repeats: int) -> dict[str, list[float]]:
    """Wall seconds of every step, one list entry per repeat (each on a fresh cache)."""
    walls: dict[str, list[float]] = {step: [] for step in STEPS}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            for step, r in run_steps(list(STEPS), cache).items():
                walls[step].append(r["wall"])
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the wall times here")
    args = parser.parse_args()
    walls = measure(args.repeats)
    print(f"{'step':10} {'median s':>9} {'min s':>7} {'max s':>7}   ({args.repeats} fresh caches)")
    for step, runs in walls.items():
        print(f"{step:10} {statistics.median(runs):9.2f} {min(runs):7.2f} {max(runs):7.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(walls, fh, indent=1)


if __name__ == "__main__":
    main()
