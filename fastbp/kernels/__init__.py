"""Compiled kernels: pure ``@njit`` functions over arrays, no Python objects.

This package imports only numpy, numba and ``fastbp._config``. Numba's cache checks only
the decorated function's own file for changes: after editing a helper in another kernel
module, clear the cache (``find fastbp -name '*.nbi' -delete``) or set
``NUMBA_CACHE_DIR`` to a fresh folder.
"""
