"""The plain-NumPy baseline lives in the package, so ``fastbp bench`` has it wherever fastbp
is installed: :mod:`fastbp.bench.numpy_mlp`. This module re-exports it for the benchmarks."""

from fastbp.bench.numpy_mlp import *  # noqa: F403
from fastbp.bench.numpy_mlp import NumpyMLP  # noqa: F401
