"""Checks and conversions for everything that crosses the public API.

Every public entry point converts its arrays here, once: 2-D, the model's dtype, C order
(copied only when needed), finite, lengths and widths checked. Kernels never validate, so
nothing unchecked reaches a compiled loop. Errors name the argument and what was received.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._config import DTYPES
from .kernels.sparse import CSR


def check_dtype(dtype: object) -> np.dtype:
    """Resolve ``dtype`` to float32 or float64."""
    if dtype is None:  # np.dtype(None) is float64: never pick a dtype silently
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_float(
    value: object, name: str, low: float = 0.0, high: float = np.inf, low_open: bool = False,
    high_open: bool = False,
) -> float:  # fmt: skip
    """A finite real number in [low, high] (ends excluded where ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}: {value!r}")
    v = float(value)
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if not np.isfinite(v) or below or above:
        lo = "(" if low_open else "["
        hi = ")" if high_open or high == np.inf else "]"  # inf itself is never accepted
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value!r}")
    return v


def _all_finite(arr: np.ndarray) -> bool:
    """True when ``arr`` holds no NaN or infinity; min and max propagate both, so no
    boolean temporary the size of ``arr`` is made (``np.isfinite(arr).all()`` makes one)."""
    if arr.size == 0:
        return True
    return bool(np.isfinite(arr.min()) and np.isfinite(arr.max()))


def _convert(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous, writeable ``dtype`` copy of ``arr`` (no copy when it already is one).

    Values too large for ``dtype`` become inf, which the caller's finiteness check reports
    as a ValueError, so the overflow warning of the cast is silenced. Read-only arrays (a
    pandas 3 ``to_numpy()``, a memory map opened read-only, data received from another
    process) are copied: Numba types them apart from writeable ones, and would compile and
    cache every kernel a second time for them (measured: 13 s for ``predict``, 40 s for
    ``fit``), though the kernels never write their inputs.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    return out if out.flags.writeable else out.copy()


def _as_array(value: object, name: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}: {exc}") from None


def is_scipy_sparse(X: object) -> bool:
    """A SciPy sparse matrix or array, recognised without importing SciPy."""
    return type(X).__module__.startswith("scipy.sparse") and hasattr(X, "format")


def check_X(X: object, dtype: np.dtype, n_features: int | None = None, name: str = "X") -> np.ndarray | CSR:
    """A finite, C-contiguous 2-D array of ``dtype`` with ``n_features`` columns, or, for a
    SciPy CSR/CSC matrix or array, a :class:`~fastbp.kernels.sparse.CSR` (see
    :func:`check_sparse_X`).

    float32/float64 C-contiguous input of the right dtype is returned as is (no copy).
    """
    if isinstance(X, CSR) or is_scipy_sparse(X):
        return check_sparse_X(X, dtype, n_features, name)
    arr = _as_array(X, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    _check_shape(arr.shape, n_features, name)
    arr = _convert(arr, dtype)
    if not _all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity (after conversion to {dtype})")
    return arr


def _check_shape(shape: tuple, n_features: int | None, name: str) -> None:
    if shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; at least 1 is required")
    if shape[1] == 0:
        raise ValueError(f"{name} has 0 columns; at least 1 feature is required")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(f"{name} has {shape[1]} features, but the model expects {n_features}")


def check_sparse_X(X: object, dtype: np.dtype, n_features: int | None = None, name: str = "X") -> CSR:
    """A SciPy CSR or CSC matrix or array (or a ``CSR`` record) as a ``CSR`` record of
    ``dtype`` values, never densified: CSC is converted to CSR (one copy of the nonzeros),
    row pointers become int64 and column indices int32, copied only when they differ.
    Values must be finite; other sparse formats get a TypeError naming the conversion."""
    if isinstance(X, CSR):
        indptr, indices, data, shape = X.indptr, X.indices, X.data, X.shape
    else:
        fmt = X.format
        if fmt not in ("csr", "csc"):
            raise TypeError(
                f"sparse {name} must be in CSR or CSC format, got {fmt.upper()}: convert it with {name}.tocsr()"
            )
        if len(X.shape) != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if fmt == "csc":
            X = X.tocsr()
        indptr, indices, data, shape = X.indptr, X.indices, X.data, X.shape
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
    _check_shape(shape, n_features, name)
    if shape[1] >= 2**31:
        raise ValueError(f"{name} has {shape[1]} columns; sparse input supports at most 2**31 - 1")
    data = _convert(data, dtype)
    if not _all_finite(data):
        raise ValueError(f"{name} contains NaN or infinity (after conversion to {dtype})")
    return CSR(_convert(indptr, np.dtype(np.int64)), _convert(indices, np.dtype(np.int32)), data, int(shape[1]))


def check_labels(y: object, n_samples: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Integer class labels of shape (n,) in 0..n_classes-1, as a C-contiguous int64 array."""
    arr = _as_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D integer class labels of shape (n_samples,) for cross_entropy, "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise TypeError(f"{name} must hold integer class labels for cross_entropy, got non-integer floats")
    elif arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer class labels for cross_entropy, got dtype {arr.dtype}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different lengths: {n_samples} and {arr.shape[0]}")
    # range first, on the original values: a float like 1e30 or a uint64 above 2**63 would
    # wrap around in the int64 cast and be reported as a wrong (or even valid) label
    lo, hi = arr.min().item(), arr.max().item()
    if lo < 0 or hi >= n_classes:
        if arr.dtype.kind == "f" and max(abs(lo), abs(hi)) < 2**53:
            lo, hi = int(lo), int(hi)
        raise ValueError(
            f"{name} labels must be in 0..{n_classes - 1} (the last layer has {n_classes} units), "
            f"got values in {lo}..{hi}"
        )
    return _convert(arr, np.dtype(np.int64))


def check_targets(
    y: object, n_samples: int, n_outputs: int, dtype: np.dtype, name: str = "y", unit_interval: bool = False
) -> np.ndarray:
    """Float targets of shape (n, n_outputs) (or (n,) when n_outputs == 1), finite."""
    arr = _as_array(y, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        if n_outputs != 1:
            raise ValueError(
                f"{name} has shape {arr.shape}, but the last layer has {n_outputs} units; "
                f"pass {name} with shape (n_samples, {n_outputs})"
            )
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(f"{name} must have shape (n_samples, {n_outputs}), got {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different lengths: {n_samples} and {arr.shape[0]}")
    arr = _convert(arr, dtype)
    if not _all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity (after conversion to {dtype})")
    if unit_interval and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must be in [0, 1] for binary_cross_entropy, got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr


def check_sample_weight(sample_weight: object, n: int, name: str = "sample_weight") -> np.ndarray | None:
    """Finite, non-negative float64 weights of shape (n,), not all zero; None stays None."""
    if sample_weight is None:
        return None
    sw = _as_array(sample_weight, name)
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {sw.dtype}")
    if sw.ndim != 1 or sw.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {sw.shape}")
    sw = np.ascontiguousarray(sw, dtype=np.float64)
    if not np.isfinite(sw).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if (sw < 0).any():
        raise ValueError(f"{name} must be >= 0, got a minimum of {sw.min()}")
    if not sw.any():
        raise ValueError(f"{name} is all zeros: nothing to learn from")
    return sw
