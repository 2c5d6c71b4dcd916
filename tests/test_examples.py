"""The examples run and show what their docstrings say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_backprop_by_hand_checks_every_factor():
    out = _run("backprop_by_hand.py")
    assert "dC/da (cost)" in out and "da/dz (activation)" in out and "a_prev (= dz/dW)" in out
    errors = [float(e) for e in re.findall(r"max relative error ([0-9.e+-]+)", out)]
    assert len(errors) == 11 and max(errors) < 1e-6
    assert "all factors agree" in out


def test_overfitting_regularisation_beats_the_plain_net():
    out = _run("overfitting.py", "--epochs", "100")
    rows = dict(re.findall(r"(plain|regularised): .*model's val_loss ([0-9.]+)", out))
    best_plain = float(re.search(r"plain: .*best val_loss ([0-9.]+)", out).group(1))
    # the plain net ends well above its own best (it overfits); the regularised one ends at its best
    assert float(rows["plain"]) > 1.3 * best_plain
    assert float(rows["regularised"]) < float(rows["plain"])
    assert re.search(r"regularised: (\d+) epochs", out).group(1) != "100"  # early stopping stopped it


def test_sklearn_pipeline_grid_search_and_model_file():
    out = _run("sklearn_pipeline.py")
    assert float(re.search(r"held-out accuracy ([0-9.]+)", out).group(1)) > 0.95
    assert "agrees with the pipeline on 100.0% of the test rows" in out


def test_train_digits_the_quick_start_example():
    """README's quick start runs this script: it trains and reports a held-out accuracy."""
    out = _run("train_digits.py")
    assert "kernels compiled or loaded from the cache in" in out
    assert float(re.search(r"held-out loss [0-9.]+, accuracy ([0-9.]+)%", out).group(1)) > 95
