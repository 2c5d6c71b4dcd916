"""How far float32 training results move with the BLAS kernel, the thread count and the
implementation, against how far a wrong gradient moves them: the measurement behind the
tolerances of the float32 trajectory checks (``benchmarks/test_bench_epoch.py``,
``fastbp.bench.runner``, ``tests/test_numpy_baseline.py``).

Each OpenBLAS kernel runs in a fresh process (``OPENBLAS_CORETYPE`` is read when the
library loads). In each, every training workload of ``test_bench_epoch.py`` runs from the
same initial weights and in the same row order:

- its mean loss over the first few batches (``--head``; all but the first after updates:
  a check of a few gradient steps) and over the whole first epoch, for fastbp at 1 and 2 threads and for
  the NumPy baseline;
- the same for fastbp with the learning rate 1 % high, a stand-in for a gradient that is
  1 % off everywhere (a wrong gradient of one layer moves the losses more).

The parent prints, per workload and quantity, the largest relative difference between any
two correct runs (over every kernel, thread count and implementation) and the smallest
shift the 1 % error causes. A tolerance is sound where it sits well above the first and
well below the second::

    python benchmarks/measure_blas_spread.py                 # kernels: default, Haswell, Sandybridge
    python benchmarks/measure_blas_spread.py --kernels default,Haswell --json spread.json

Only kernels this CPU runs give a result (``Haswell`` needs AVX2 and FMA, ``Sandybridge``
AVX); the kernel each process really ran is printed beside it (threadpoolctl).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys


def _child(wids: list[str], head_batches: int, rows: int | None) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info

    import fastbp as fb
    from benchmarks.test_bench_epoch import _rows
    from fastbp.bench.workloads import WORKLOADS, make_data, make_fastbp, make_numpy

    pools = threadpool_info()
    out: dict = {"kernels": sorted({p.get("architecture", "?") for p in pools if p["internal_api"] == "openblas"})}
    for wid in wids:
        w = WORKLOADS[wid]
        X, y = make_data(w, rows or _rows(w))
        w0 = make_fastbp(w).get_weights()
        res: dict = {}
        for n_rows, key in ((head_batches * w.batch_size, "head"), (len(X), "epoch")):
            for threads, lr_scale in ((1, 1.0), (2, 1.0), (2, 1.01)):
                fb.set_num_threads(threads)
                model = make_fastbp(w)
                model.set_weights(w0)
                model.optimizer.lr *= lr_scale
                loss = model.fit(X[:n_rows], y[:n_rows], epochs=1, batch_size=w.batch_size, shuffle=False,
                                 verbose=0).history["loss"][0]  # fmt: skip
                res[f"{key}/fastbp{threads}" + ("/lr+1%" if lr_scale != 1.0 else "")] = loss
            mlp = make_numpy(w, [a.copy() for a in w0])
            res[f"{key}/numpy"] = float(mlp.train_epoch(X[:n_rows], y[:n_rows], w.batch_size, np.arange(n_rows)))
        out[wid] = res
    out["tests"] = _test_comparisons()
    return out


def _test_comparisons() -> dict:
    """The float32 comparisons of three tests, as each test computes them (largest
    differences), with the shift a 1 % learning-rate error causes where it applies."""
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    import test_columns as tc
    import test_numpy_baseline as tb

    import fastbp as fb
    from fastbp.bench.numpy_mlp import NumpyMLP

    fb.set_num_threads(2)
    res = {"baseline_loss_rel": 0.0, "baseline_weight_abs": 0.0, "baseline_lr1%_loss_rel": np.inf}
    for hidden, loss, opt_name, optimizer, kwargs in tb.CASES.values():
        X, y, k = tb._problem(loss, np.float32, np.random.default_rng(1))
        model = fb.Sequential([fb.Dense(12, activation=a) for a in hidden] + [fb.Dense(k)], loss=loss,
                              optimizer=optimizer, seed=3, dtype=np.float32)  # fmt: skip
        model.build(X.shape[1])
        w0 = model.get_weights()
        fb_losses = np.array(model.fit(X, y, epochs=3, batch_size=32, shuffle=False).history["loss"])
        for lr_scale, key in ((1.0, ""), (1.01, "lr1%_")):
            kw = dict(kwargs, lr=kwargs["lr"] * lr_scale)
            base = NumpyMLP([a.copy() for a in w0], hidden + ["identity"], loss, opt_name, **kw)
            np_losses = np.array([base.train_epoch(X, y, 32, np.arange(len(X))) for _ in range(3)])
            rel = float(np.max(np.abs(np_losses - fb_losses) / np.abs(fb_losses)))
            if key:
                res["baseline_lr1%_loss_rel"] = min(res["baseline_lr1%_loss_rel"], rel)
                continue
            res["baseline_loss_rel"] = max(res["baseline_loss_rel"], rel)
            for a, b in zip(base.params, model.get_weights()):
                res["baseline_weight_abs"] = max(res["baseline_weight_abs"], float(np.abs(a - b).max()))

    import fastbp._plan as fbplan
    from fastbp import _config

    X, ys, _ = tc._data(np.random.default_rng(0))
    args = (X.astype(np.float32), ys["cross_entropy"], None, "cross_entropy", "relu", (64, 32), 30, np.float32, 0.1)

    def force(columns: bool) -> None:
        fbplan.column_split = lambda *a: columns

    saved = fbplan.column_split, _config.NARROW_BLOCKS
    try:
        trained = {}
        # the row split, and the column split with even and with narrowed blocks
        for narrow, columns in ((False, False), (False, True), (True, True)):
            _config.NARROW_BLOCKS = narrow
            trained[narrow, columns] = tc._train(columns, force, *args)
    finally:
        fbplan.column_split, _config.NARROW_BLOCKS = saved
    rw, rh = trained[False, False]
    res["columns_weight_abs"] = res["columns_loss_rel"] = 0.0
    for cw, ch in (trained[False, True], trained[True, True]):
        res["columns_weight_abs"] = max(res["columns_weight_abs"], float(np.abs(cw - rw).max()))
        rel = float(np.max(np.abs(np.array(ch["loss"]) - rh["loss"]) / np.abs(rh["loss"])))
        res["columns_loss_rel"] = max(res["columns_loss_rel"], rel)
    return res


def main(argv: list[str] | None = None) -> int:
    from fastbp.bench.workloads import WORKLOADS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", default="default,Haswell,Sandybridge",
                   help="OPENBLAS_CORETYPE values, comma-separated ('default': unset)")  # fmt: skip
    p.add_argument("--workloads", default=",".join(k for k, w in WORKLOADS.items() if w.train))
    p.add_argument("--head", type=int, default=4, help="batches in the short check (default 4)")
    p.add_argument("--rows", type=int, help="rows per workload (default: test_bench_epoch's)")
    p.add_argument("--json", help="save every loss here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    wids = args.workloads.split(",")
    if args.child:
        json.dump(_child(wids, args.head, args.rows), sys.stdout)
        return 0

    runs: dict[str, dict] = {}
    for kernel in args.kernels.split(","):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        if kernel != "default":
            env["OPENBLAS_CORETYPE"] = kernel
        cmd = [sys.executable, "-m", "benchmarks.measure_blas_spread", "--child", "--workloads", ",".join(wids),
               "--head", str(args.head)] + (["--rows", str(args.rows)] if args.rows else [])  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            print(f"{kernel}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        runs[kernel] = json.loads(done.stdout)
        print(f"OPENBLAS_CORETYPE={kernel}: ran {runs[kernel]['kernels']}")

    print(f"\n{'workload':<16} {'quantity':<12} {'spread (correct runs)':>22} {'lr +1% shift':>14} {'margin':>8}")
    for wid, key in itertools.product(wids, ("head", "epoch")):
        correct = [r[wid][k] for r in runs.values() for k in r[wid] if k.startswith(key + "/") and "lr+" not in k]
        spread = (max(correct) - min(correct)) / abs(min(correct))
        shifts = [abs(r[wid][f"{key}/fastbp2/lr+1%"] - r[wid][f"{key}/fastbp2"]) / abs(r[wid][f"{key}/fastbp2"])
                  for r in runs.values()]  # fmt: skip
        print(f"{wid:<16} {key:<12} {spread:>22.2e} {min(shifts):>14.2e} {min(shifts) / max(spread, 1e-16):>7.0f}x")
    print("\ntest comparisons (largest over kernels; for the lr +1% shift, smallest):")
    for key in next(iter(runs.values()))["tests"]:
        vals = [r["tests"][key] for r in runs.values()]
        print(f"  {key:<26} {(min(vals) if 'lr1%' in key else max(vals)):.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
