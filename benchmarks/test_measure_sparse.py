"""Smoke run of ``measure_sparse.py`` on a small matrix: both implementations once, each in
its own process, and the report (no timing assertions: speed lives in the printed
numbers, not in tests)."""

from __future__ import annotations

import pytest

from benchmarks._support import load_script

pytest.importorskip("sklearn")



def test_both_implementations_run_and_learn():
    mod = load_script("measure_sparse")
    X_train, X_test, y_train, _ = mod.make_data(400, 3000, 0.01)
    assert X_train.format == "csr" and X_train.shape == (300, 3000) and X_test.shape == (100, 3000)
    assert 0.005 < X_train.nnz / (300 * 3000) <= 0.01  # repeated terms merge
    results = mod.measure(1200, 3000, 0.01, epochs=4, rounds=1)
    for impl in mod.IMPLS:
        (run,) = results[impl]
        assert run["seconds"] > 0 and run["extra_mb"] >= 0
        assert run["accuracy"] > 0.5, (impl, run)  # 5 balanced classes: chance is 0.2
    assert "fastbp / scikit-learn fit speed" in mod.report(results, 1200, 3000, 0.01, 4)
