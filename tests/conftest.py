"""Fixtures shared by the test modules (model factories are in ``helpers.py``).

``rng``: a fresh seeded generator per test; a module that wants its own stream sets
``RNG_SEED`` (the seed its tolerances were measured with). ``restore_threads``: the test
may change fastbp's thread count; it is put back after.

The suite runs with ``FASTBP_MIN_BLOCK_FLOP=0`` (set here, so subprocesses inherit it): its
networks are small, and without it most of their batches would stay one row block
(``_config.MIN_BLOCK_FLOP``), leaving untested the split into blocks that larger networks
take. ``tests/test_threads.py`` tests the default rule itself.
"""

from __future__ import annotations

import os

os.environ["FASTBP_MIN_BLOCK_FLOP"] = "0"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastbp as fb  # noqa: E402
from fastbp import _config  # noqa: E402

_config.MIN_BLOCK_FLOP = 0.0  # fastbp may have been imported before this file (doctests)


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
