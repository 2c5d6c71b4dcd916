"""Fixtures shared by the test modules (model factories are in ``helpers.py``).

``rng``: a fresh seeded generator per test; a module that wants its own stream sets
``RNG_SEED`` (the seed its tolerances were measured with). ``restore_threads``: the test
may change fastbp's thread count; it is put back after.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return np.random.default_rng(getattr(request.module, "RNG_SEED", 0))


@pytest.fixture
def restore_threads():
    saved = fb.get_num_threads()
    try:
        yield
    finally:
        fb.set_num_threads(saved)
