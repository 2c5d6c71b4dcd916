"""Where a cold start's compile time goes: Numba's compile events, per function.

Runs the four steps of a new user's first session, each in a fresh process, on one empty
``NUMBA_CACHE_DIR`` shared by the steps (so each step pays only what the previous ones did
not compile), then the first step again on the warm cache:

1. ``first``: fit + predict a 32-64-4 relu network, float32, batch 128;
2. ``columns``: then a 512-wide layer at batch 32 (the column split, on 2 threads);
3. ``kinds``: then tanh + Dropout, AdamW and mse (new kinds of layer, optimizer and loss);
4. ``float64``: then the same network in float64 (a new dtype);
5. ``warm``: step 1 again, everything cached.

Each step prints its wall time (import + compile + fit + predict) and, from Numba's
``"numba:compile"`` events and the ``numba.cfunc`` compiles (kernels and bodies, see
``fastbp/kernels/launch.py``; timed by wrapping ``CFunc.compile``), every function
compiled: how many specialisations, the inclusive seconds (its own compile and every
callee compiled inside it) and the self seconds (inclusive less the nested compiles of
other functions; Numba compiles a callee on its own first and then again inside each
caller's module, which the caller's self time holds). Usage::

    python benchmarks/measure_compile.py [--steps first,columns,kinds,float64,warm] [--top 15] [--json PATH]

Timings are one run each on a shared machine: read them as sizes. The compile helper
(``fastbp/_precompile.py``) is off here, so that every function compiles in the step's own
process; ``measure_startup.py`` times the steps with it, as a user runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    from numba.core import event as ev

    events = []  # (name, start, end, depth)
    stack = []

    class Recorder(ev.Listener):
        def on_start(self, event):
            d = event.data["dispatcher"]
            stack.append((f"{d.py_func.__module__}.{d.py_func.__qualname__}", time.perf_counter()))

        def on_end(self, event):
            name, start = stack.pop()
            events.append((name, start, time.perf_counter(), len(stack)))

    ev.register("numba:compile", Recorder())

    from numba.core.ccallback import CFunc

    _compile = CFunc.compile

    def timed_compile(self):  # a cfunc compiles (or loads) when made, with no event
        fn = self._pyfunc
        stack.append((f"{fn.__module__}.{fn.__qualname__}", time.perf_counter()))
        try:
            return _compile(self)
        finally:
            name, start = stack.pop()
            events.append((name, start, time.perf_counter(), len(stack)))

    CFunc.compile = timed_compile
    import numpy as np
    import fastbp as fb

    step = sys.argv[1]
    rng = np.random.default_rng(0)
    if step in ("first", "warm"):
        X = rng.standard_normal((512, 32)).astype(np.float32)
        y = rng.integers(0, 4, 512)
        model = fb.Sequential([fb.Dense(64, activation="relu"), fb.Dense(4)], loss="cross_entropy", seed=0)
        model.fit(X, y, epochs=1, batch_size=128, verbose=0)
    elif step == "columns":
        fb.set_num_threads(min(2, fb.get_num_threads()))
        X = rng.standard_normal((512, 32)).astype(np.float32)
        y = rng.integers(0, 4, 512)
        model = fb.Sequential([fb.Dense(512, activation="relu"), fb.Dense(4)], loss="cross_entropy", seed=0)
        model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    else:  # "kinds" in float32, "float64" the same network in float64
        dtype = "float64" if step == "float64" else "float32"
        X = rng.standard_normal((512, 32)).astype(dtype)
        y = rng.standard_normal((512, 2))
        model = fb.Sequential([fb.Dense(64, activation="tanh"), fb.Dropout(0.2), fb.Dense(2)], loss="mse",
                              optimizer=fb.AdamW(1e-3), seed=0, dtype=dtype)
        model.fit(X, y, epochs=1, batch_size=128, verbose=0)
    model.predict(X)
    wall = time.perf_counter() - t0
    # self time: inclusive less the compiles nested directly inside (one level deeper, within its span)
    rows = {}
    for i, (name, s, e, depth) in enumerate(events):
        nested = sum(e2 - s2 for (n2, s2, e2, d2) in events if d2 == depth + 1 and s <= s2 and e2 <= e)
        r = rows.setdefault(name, [0, 0.0, 0.0])
        r[0] += 1
        r[2] += (e - s) - nested
        if depth == 0 or not any(n3 == name for (n3, s3, e3, d3) in events if d3 < depth and s3 <= s and e <= e3):
            r[1] += e - s  # inclusive, not counted twice for a function compiled inside itself
    print(json.dumps({"wall": wall, "compile": sum(e - s for (_, s, e, d) in events if d == 0),
                      "functions": rows}))
    """
)

STEPS = ("first", "columns", "kinds", "float64", "warm")


def run_steps(steps: list[str], cache_dir: str, helper: bool = True) -> dict:
    """Run ``steps`` in order, each in a new process on ``cache_dir``; ``helper`` False
    turns off the compile helper (``fastbp/_precompile.py``), so that every function is
    compiled, and timed, in the step's own process."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    if not helper:
        env["FASTBP_COMPILE_HELPER"] = "0"
    out = {}
    for step in steps:
        proc = subprocess.run([sys.executable, "-c", CHILD, step], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"step {step} failed:\n{proc.stderr[-2000:]}")
        out[step] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps, in order")
    parser.add_argument("--top", type=int, default=15, help="functions shown per step, by self time")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    with tempfile.TemporaryDirectory() as cache:
        results = run_steps(steps, cache, helper=False)
    for step, r in results.items():
        print(f"\n{step}: {r['wall']:.2f} s in all, {r['compile']:.2f} s compiling ({len(r['functions'])} functions)")
        rows = sorted(r["functions"].items(), key=lambda kv: -kv[1][2])[: args.top]
        if rows:
            print(f"  {'function':60} {'n':>3} {'incl s':>8} {'self s':>8}")
        for name, (n, incl, own) in rows:
            print(f"  {name[-60:]:60} {n:3d} {incl:8.2f} {own:8.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
