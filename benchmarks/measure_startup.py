"""Import time and first-``fit`` time in a new process, with a cold and a warm Numba cache.

    python benchmarks/measure_startup.py [--repeats 3]

Cold: a fresh, empty ``NUMBA_CACHE_DIR`` (every kernel compiles). Warm: the same folder
again (every kernel loads from the cache). Prints the median of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastbp as fb
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 20)).astype(np.float32)
y = rng.integers(0, 3, 256)
model = fb.Sequential([fb.Dense(32, activation="relu"), fb.Dense(3)], loss="cross_entropy", seed=0)
model.fit(X, y, epochs=1, batch_size=32, verbose=0)
model.predict(X)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_fit_predict_s": t2 - t1}))
"""


def run_child(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(run_child(cache))
            warm.append(run_child(cache))
    for name, runs in (("cold cache", cold), ("warm cache", warm)):
        imp = statistics.median(r["import_s"] for r in runs)
        fit = statistics.median(r["first_fit_predict_s"] for r in runs)
        print(f"{name}: import {imp:.2f} s, first fit+predict {fit:.2f} s (median of {len(runs)})")


if __name__ == "__main__":
    main()
