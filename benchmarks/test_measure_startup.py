"""Smoke run of ``measure_startup.py``: every step once, from an empty cache (no timing
assertions: speed lives in the printed numbers, not in tests)."""

from __future__ import annotations

from benchmarks._support import load_script


def test_every_step_runs_once():
    walls = load_script("measure_startup").measure(1)
    assert set(walls) == {"first", "columns", "kinds", "float64", "warm"}
    assert all(len(runs) == 1 and runs[0] > 0 for runs in walls.values())
