"""The kernels' disk cache: set up on first use, and loading without Numba's refresh.

Numba's on-disk cache (``cache=True``) refreshes the compiler's typing and lowering
contexts before it loads an entry: on the first load of a process that imports about
190 of Numba's own modules and installs every registry they declare, 0.2 s of a 0.25 s
first call of a trivial cached function on this project's 2-core machine (measured).
Loading needs none of it: an entry is finished machine code, linked against Numba's
runtime (NRT) and C helpers, which are registered here before it loads. A compile still
refreshes everything first (Numba's compiler does that on its own), so a function that
is not cached, or one of the user's, compiles as before.

And ``cache=True`` sets each function's cache up when it is decorated (finding and
probing its folder: a file created and removed per function), for the 120 kernels of
the package at every import, though a warm start loads a dozen of them. Here the kernels
are decorated without ``cache`` and :func:`prompt` (each kernel module calls it last)
gives each one a :class:`PromptCache`, which does that set-up on first use;
:func:`callback` compiles a C callback with one. Where caching is off
(``_config.CACHE``) there is no cache, and where Numba's cache no longer has the methods
this relies on, Numba's own is used.
"""

from __future__ import annotations

from collections.abc import Callable

from numba import cfunc
from numba.core.caching import FunctionCache, NullCache
from numba.core.ccallback import CFunc
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys
from numba.core.sigutils import normalize_signature

from .._config import CACHE

#: ``on_miss(cache, sig, target_context)``, called when a kernel is not in the disk cache,
#: before it is compiled: returns what it then found there (another process compiled it
#: meanwhile) or None (compile it). ``_precompile`` installs it; None: compile.
on_miss: Callable[[PromptCache, object, object], object | None] | None = None

#: Whether this Numba's cache has the two steps :class:`PromptCache` reorders.
AVAILABLE: bool = all(hasattr(FunctionCache, m) for m in ("_load_overload", "_guard_against_spurious_io_errors"))


class PromptCache(FunctionCache):
    """Numba's per-function disk cache, set up on first use and loading an entry with only
    the runtime initialised (see the module docstring); saving, indexing and invalidation
    are Numba's."""

    def __init__(self, py_func: Callable) -> None:  # the rest when first needed: __getattr__
        self._lazy_func = py_func

    def __getattr__(self, name: str) -> object:
        """Numba's set-up, on the first read of an attribute it makes (only missing
        attributes come here, so only until then)."""
        if name == "_lazy_func" or "_impl" in self.__dict__:
            raise AttributeError(name)
        FunctionCache.__init__(self, self._lazy_func)
        return getattr(self, name)

    def load_overload(self, sig, target_context):  # noqa: ANN001, ANN201 (Numba's signature)
        rtsys.initialize(target_context)  # what loaded code calls: NRT's allocation helpers
        with self._guard_against_spurious_io_errors():
            found = self._load_overload(sig, target_context)
        if found is None and on_miss is not None:
            found = on_miss(self, sig, target_context)
        return found

    def load_again(self, sig, target_context):  # noqa: ANN001, ANN201
        """Look in the cache again (for an entry another process may have written since)."""
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    @property
    def function_name(self) -> str:
        """The cached function's module and qualified name (a specialised copy's includes
        its suffix): with a signature, names a compiled kernel across processes."""
        fn = self._lazy_func
        return f"{fn.__module__}.{fn.__qualname__}"


def prompt(namespace: dict) -> None:
    """Give every Numba dispatcher in ``namespace`` (a kernel module's ``globals()``) a
    :class:`PromptCache` (Numba's own cache where :data:`AVAILABLE` is false), when
    ``_config.CACHE``."""
    if not CACHE:
        return
    for value in namespace.values():
        if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache):
            if AVAILABLE:
                value._cache = PromptCache(value.py_func)
            else:
                value.enable_caching()


def callback(sig: object, fn: Callable, options: dict) -> CFunc:
    """``numba.cfunc(sig, **options)(fn)``, with a :class:`PromptCache` (or Numba's own
    cache, see :func:`prompt`) when ``_config.CACHE``."""
    if not CACHE:
        return cfunc(sig, **options)(fn)
    if not AVAILABLE:
        return cfunc(sig, cache=True, **options)(fn)
    compiled = CFunc(fn, normalize_signature(sig), locals={}, options=options)
    compiled._cache = PromptCache(fn)
    compiled.compile()
    return compiled
