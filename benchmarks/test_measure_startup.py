"""Smoke run of ``measure_startup.py``: every step once, from an empty cache (no timing
assertions: speed lives in the printed numbers, not in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _script():
    path = Path(__file__).with_name("measure_startup.py")
    spec = importlib.util.spec_from_file_location("measure_startup", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_step_runs_once():
    walls = _script().measure(1)
    assert set(walls) == {"first", "columns", "float64", "warm"}
    assert all(len(runs) == 1 and runs[0] > 0 for runs in walls.values())
