"""Peak memory of ``fit`` and ``predict`` beyond the data itself, one fresh process per case.

    python benchmarks/measure_memory.py [--fit-rows 500000] [--predict-rows 1000000] [--features 100]

Each case runs in its own interpreter: import fastbp, warm the kernels up on a few rows
(so compilation or cache loading is not counted), build the data, then record the resident
set size just before the call and the peak during it. The peak comes from the kernel's
high-water mark ``VmHWM``, reset just before the call through ``/proc/self/clear_refs``
(Linux); where that reset is unavailable it falls back to ``ru_maxrss``, a high-water mark
since the process started (an upper bound, flagged in the table).

``extra`` = peak during the call - RSS just before it (the data, the model and the
interpreter are already in the RSS). What should hold:

- ``fit`` on float32 C-contiguous X: no copy of X (batches are gathered by index into a
  batch buffer), so ``extra`` is a few MB of work buffers: much less than X.
- ``fit`` on float64 X for a float32 model: one converted float32 copy of X is expected
  (half of X's size): shown for contrast, as a check that the measurement sees copies.
- ``predict``: the output (n x k) plus per-thread chunk buffers, so ``extra`` minus the
  output should be much less than X.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
import fastbp as fb

case, rows, features = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def hwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None

def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

def make_model():
    return fb.Sequential([fb.Dense(64, activation="relu"), fb.Dense(10)], loss="cross_entropy",
                         optimizer=fb.Adam(), seed=0)

rng = np.random.default_rng(0)
dtype = np.float64 if case == "fit_float64" else np.float32
# warm-up on a few rows with the same dtypes and architecture (compile / load the kernels)
warm = make_model()
Xw = rng.standard_normal((600, features)).astype(dtype)
warm.fit(Xw, rng.integers(0, 10, 600), epochs=1, batch_size=256, verbose=0)
warm.predict(Xw)

X = np.empty((rows, features), dtype=dtype)
for start in range(0, rows, 100_000):  # filled in slices: no float64 temporary of the whole X
    X[start:start + 100_000] = rng.standard_normal((min(100_000, rows - start), features))
y = rng.integers(0, 10, rows)
model = make_model()
model.build(features)
out_bytes = 0
before = rss_kb()
exact = reset_hwm()
t0 = time.perf_counter()
if case.startswith("fit"):
    model.fit(X, y, epochs=1, batch_size=256, shuffle=True, verbose=0)
else:
    out = model.predict(X)
    out_bytes = out.nbytes
seconds = time.perf_counter() - t0
peak = hwm_kb() if exact else None
if peak is None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"case": case, "x_mb": X.nbytes / 2**20, "out_mb": out_bytes / 2**20, "before_mb": before / 1024,
                  "peak_mb": peak / 1024, "exact": exact, "seconds": seconds}))
"""

CASES = {
    "fit": "fit, float32 C-contiguous X",
    "fit_float64": "fit, float64 X (one float32 copy expected)",
    "predict": "predict, float32 X",
}


def run_case(case: str, rows: int, features: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, case, str(rows), str(features)], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit-rows", type=int, default=500_000, help="rows for fit (500k x 100 float32 = 191 MiB)")
    parser.add_argument("--predict-rows", type=int, default=1_000_000, help="rows for predict")
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {list(CASES)}")
    args = parser.parse_args()
    header = f"{'case':44} {'X MiB':>8} {'out MiB':>8} {'RSS before':>11} {'peak':>8} {'extra':>8} {'extra-out':>10} " \
             f"{'/X':>6} {'s':>6}"
    print(header)
    print("-" * len(header))
    for case in args.cases.split(","):
        rows = args.predict_rows if case == "predict" else args.fit_rows
        r = run_case(case, rows, args.features)
        extra = r["peak_mb"] - r["before_mb"]
        net = extra - r["out_mb"]
        flag = "" if r["exact"] else " (ru_maxrss: upper bound)"
        print(f"{CASES[case]:44} {r['x_mb']:8.1f} {r['out_mb']:8.1f} {r['before_mb']:11.1f} {r['peak_mb']:8.1f} "
              f"{extra:8.1f} {net:10.1f} {net / r['x_mb']:6.3f} {r['seconds']:6.2f}{flag}")


if __name__ == "__main__":
    main()
