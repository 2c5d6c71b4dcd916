"""Smoke run of ``measure_dispatch.py``: one way, cold and warm, in fresh processes."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _script():
    spec = importlib.util.spec_from_file_location("measure_dispatch", Path(__file__).with_name("measure_dispatch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_way_compiles_cold_and_loads_warm():
    r = _script().run_way("relu_only")
    assert r["cold"]["misses"] == 1 and r["cold"]["hits"] == 0  # an empty cache compiles
    assert r["warm"]["hits"] == 1 and r["warm"]["misses"] == 0  # the next process loads it
    assert r["cold"]["call_s"] > 0 and r["warm"]["call_s"] > 0
