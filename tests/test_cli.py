"""The ``fastbp`` command line: ``fastbp bench`` runs, reports, checks its answers, and fails
clearly on bad requests.

The benchmark itself runs once per module (``--quick`` on two small workloads: a few
seconds with a warm Numba cache); the other tests either reuse its JSON or stop before
any timing starts.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp as fb
from fastbp.bench import runner
from fastbp.bench.numpy_mlp import NumpyMLP
from fastbp.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["bench", "--quick", "--workloads", "tabular_small,infer_mnist"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, str]:
    """(exit status, JSON report, printed table) of one quick run on two workloads."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    out = io.StringIO()
    old_stdout, sys.stdout = sys.stdout, out
    try:
        status = main([*QUICK, "--json", str(path)])
    finally:
        sys.stdout = old_stdout
    return status, json.loads(path.read_text()), out.getvalue()


def test_quick_bench_writes_consistent_json(quick_run):
    status, report, printed = quick_run
    assert status == 0, printed
    assert report["ok"] is True
    assert list(report["workloads"]) == ["tabular_small", "infer_mnist"]
    for wid, rec in report["workloads"].items():
        assert rec["ok"] is True and rec["errors"] == [], (wid, rec["errors"])
        assert rec["rows"] == runner.QUICK_ROWS
        f, b = rec["impls"]["fastbp"], rec["impls"]["numpy"]
        for impl in (f, b):
            assert impl["status"] == "ok"  # not "mismatch" or "error"
            assert impl["samples_per_s"] > 0
            assert len(impl["times_s"]) == runner.QUICK_REPEATS
            assert impl["samples_per_s"] == pytest.approx(rec["rows"] / impl["median_s"])
        assert rec["ratio"] == pytest.approx(f["samples_per_s"] / b["samples_per_s"])
        assert f["gflop_per_s"] == pytest.approx(rec["flop_per_sample"] * f["samples_per_s"] / 1e9)
        assert rec["pct_of_ceiling"] == pytest.approx(100 * f["gflop_per_s"] / report["ceiling"]["gflop_per_s"])
    # the trained workload compared first-epoch losses from the same weights and order
    tab = report["workloads"]["tabular_small"]
    assert tab["check"]["separate_epoch"] is False  # quick rows: the warm-up epoch is the check
    assert tab["check"]["losses"]["fastbp"] == tab["impls"]["fastbp"]["first_epoch_loss"]
    assert tab["check"]["rel_diff"]["fastbp"] <= runner.LOSS_RTOL
    assert report["workloads"]["infer_mnist"]["check"]["max_abs_diff"]["fastbp"] <= runner.PROBA_ATOL
    assert report["ceiling"]["gflop_per_s"] > 0 and report["ceiling"]["n"] == 1024
    assert report["versions"]["fastbp"] == fb.__version__ and report["versions"]["numpy"] == np.__version__
    assert report["threads"]["fastbp"] == fb.get_num_threads()
    assert report["config"]["quick"] is True and report["config"]["repeats"] == 1


def test_quick_bench_prints_the_table(quick_run):
    _, report, printed = quick_run
    assert "sgemm ceiling:" in printed and "fastbp/NumPy" in printed
    rows = [line for line in printed.splitlines() if line.startswith(("tabular_small", "infer_mnist"))]
    assert len(rows) == 2 and all(line.rstrip().endswith("ok") for line in rows)
    ratio = report["workloads"]["tabular_small"]["ratio"]
    assert f"{ratio:.2f}x" in rows[0]


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["--version"]])
def test_help_exits_zero(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "fastbp" in out
    if argv == ["bench", "--help"]:
        assert "--workloads" in out and "--peers" in out and "tabular_small" in out


def test_python_m_fastbp_help():
    proc = subprocess.run([sys.executable, "-m", "fastbp", "bench", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: fastbp bench")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--workloads", "tabular_small,mnist_b64"], "unknown workload 'mnist_b64'; choose from: mnist_b128"),
        (["bench", "--workloads", ","], "no workload named"),
        (["bench", "--peers", "tensorflow"], "unknown peer 'tensorflow'; choose from: torch, jax"),
        (["bench", "--repeats", "0"], "expected a positive integer, got '0'"),
        (["bench", "--rows", "many"], "expected a positive integer, got 'many'"),
        (["bench", "--threads", "9999", "--workloads", "tabular_small"], "NUMBA_NUM_THREADS"),
        (["bench", "--json", "/nonexistent-dir/x.json"], "--json: no such directory"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_requests_fail_clearly_before_running(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "sgemm ceiling" not in captured.out  # nothing was timed


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    png = tmp_path / "ratios.png"
    assert main([*QUICK, "--plot", str(png)]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "fastbp[plot]" in err
    assert not png.exists()


def test_plot_writes_a_png(quick_run, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "ratios.png"
    runner.plot_ratios(quick_run[1], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_peers_are_reported_and_skipped(monkeypatch):
    for name in ("torch", "jax"):
        monkeypatch.setitem(sys.modules, name, None)  # find_spec and import now see "not installed"
    out = io.StringIO()
    report = runner.run_bench("tabular_small", rows=256, repeats=1, quick=True, peers="torch,jax", out=out)
    assert report["ok"] is True
    assert report["peers"] == {"torch": "not installed", "jax": "not installed"}
    impls = report["workloads"]["tabular_small"]["impls"]
    assert impls["torch"]["status"] == impls["jax"]["status"] == "not installed"
    assert "torch not installed" in out.getvalue() and out.getvalue().count("not installed") >= 4


def test_a_wrong_answer_is_an_error_row(monkeypatch, capsys):
    """A baseline with a different learning rate stands in for a kernel bug."""

    def wrong_numpy(w, weights):
        acts = [w.activation] * (len(w.sizes) - 2) + ["identity"]
        return NumpyMLP(weights, acts, w.loss, "sgd", lr=0.02, momentum=0.9)  # the workload's lr is 0.01

    monkeypatch.setattr(runner, "make_numpy", wrong_numpy)
    assert main(["bench", "--workloads", "tabular_small", "--rows", "512", "--repeats", "1"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tabular_small"))
    assert row.rstrip().endswith("MISMATCH")
    assert "! tabular_small: check-epoch loss fastbp" in out and "relative difference" in out


def test_long_workloads_check_a_separate_short_epoch():
    """Past CHECK_ROWS rows the strict check runs on a short epoch with a partial last batch,
    and the full first epochs are compared more loosely (float32 trajectories drift)."""
    report = runner.run_bench("tabular_small", rows=runner.CHECK_ROWS + 1000, repeats=1, quick=True, out=None)
    rec = report["workloads"]["tabular_small"]
    assert rec["ok"], rec["errors"]
    check = rec["check"]
    assert check["separate_epoch"] is True and check["rows"] == runner.CHECK_ROWS - 32  # batch 64
    assert check["rows"] % 64 != 0
    assert check["losses"]["fastbp"] == pytest.approx(check["losses"]["numpy"], rel=runner.LOSS_RTOL)
    assert check["rel_diff"]["fastbp"] <= runner.LOSS_RTOL and check["epoch_rel_diff"]["fastbp"] <= runner.EPOCH_RTOL
    # the check epoch is shorter than the full one, so its loss is higher on a learnable task
    assert check["losses"]["numpy"] > rec["impls"]["numpy"]["first_epoch_loss"]


def test_threads_option_sets_and_restores(monkeypatch):
    seen = []
    real = runner._measure

    def spy(*args, **kwargs):
        seen.append(fb.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_measure", spy)
    before = fb.get_num_threads()
    report = runner.run_bench(["tabular_small"], rows=256, repeats=1, quick=True, threads=1, out=None)
    assert report["ok"] is True
    assert seen == [1, 1] and report["threads"]["fastbp"] == 1 and report["threads"]["numpy_baseline_blas"] == 1
    assert report["ceiling"]["blas_threads"] == 1
    assert fb.get_num_threads() == before


@pytest.mark.parametrize("peer", ["torch", "jax"])
def test_installed_peer_computes_the_same_losses(peer):
    """Opt-in: runs only where the peer is installed (it is never a dependency).

    600 rows leave a partial last batch (64 and 256 do not divide 600), which JAX pads.
    """
    pytest.importorskip(peer)
    report = runner.run_bench("tabular_small,regression_deep,infer_mnist", rows=600, repeats=1, quick=True,
                              peers=peer, out=None)  # fmt: skip
    for wid, rec in report["workloads"].items():
        assert rec["ok"], (wid, rec["errors"])
        assert rec["impls"][peer]["status"] == "ok" and rec["impls"][peer]["samples_per_s"] > 0
