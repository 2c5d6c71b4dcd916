"""Loading cached kernels without Numba's start-up refresh: the warm start's largest cost.

Numba's on-disk cache (``cache=True``) refreshes the compiler's typing and lowering
contexts before it loads an entry: on the first load of a process that imports about
190 of Numba's own modules and installs every registry they declare, 0.2 s of a 0.25 s
first call of a trivial cached function on this project's 2-core machine (measured).
Loading needs none of it: an entry is finished machine code, linked against Numba's
runtime (NRT) and C helpers, which are registered here before it loads. A compile still
refreshes everything first (Numba's compiler does that on its own), so a function that
is not cached, or one of the user's, compiles as before.

:func:`prompt` swaps this loader into a module's kernels (each kernel module calls it
last) and :func:`callback` compiles a C callback with it; both leave Numba's own cache in
place when caching is off or Numba's cache no longer has the methods this relies on.
"""

from __future__ import annotations

from collections.abc import Callable

from numba import cfunc
from numba.core.caching import FunctionCache
from numba.core.ccallback import CFunc
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys
from numba.core.sigutils import normalize_signature

from .._config import CACHE

#: Whether this Numba's cache has the two steps :class:`PromptCache` reorders.
AVAILABLE: bool = all(hasattr(FunctionCache, m) for m in ("_load_overload", "_guard_against_spurious_io_errors"))


class PromptCache(FunctionCache):
    """Numba's per-function disk cache, loading an entry with only the runtime initialised
    (see the module docstring); saving, indexing and invalidation are Numba's."""

    def load_overload(self, sig, target_context):  # noqa: ANN001, ANN201 (Numba's signature)
        rtsys.initialize(target_context)  # what loaded code calls: NRT's allocation helpers
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def _enabled() -> bool:
    return CACHE and AVAILABLE


def prompt(namespace: dict) -> None:
    """Give every cached Numba dispatcher in ``namespace`` (a kernel module's ``globals()``)
    a :class:`PromptCache`."""
    if not _enabled():
        return
    for value in namespace.values():
        if isinstance(value, Dispatcher) and type(value._cache) is FunctionCache:
            value._cache = PromptCache(value.py_func)


def callback(sig: object, fn: Callable, options: dict) -> CFunc:
    """``numba.cfunc(sig, **options)(fn)``, cached with a :class:`PromptCache` when
    ``options["cache"]``."""
    if not (options.get("cache") and _enabled()):
        return cfunc(sig, **options)(fn)
    rest = {k: v for k, v in options.items() if k != "cache"}
    compiled = CFunc(fn, normalize_signature(sig), locals={}, options=rest)
    compiled._cache = PromptCache(fn)
    compiled.compile()
    return compiled
