"""Which OpenBLAS kernel CI forces for its second run of the BLAS-sensitive tests.

``python .ci/blas_kernel.py`` prints a value for ``OPENBLAS_CORETYPE`` that this CPU runs
and that differs from the kernel OpenBLAS picks here (``Sandybridge``, or ``Haswell`` where
``Sandybridge`` is already the one in force), or nothing (not x86-64, or no AVX).
``python .ci/blas_kernel.py --check NAME`` fails unless every loaded OpenBLAS (NumPy's,
and SciPy's, which fastbp's kernels call) runs kernel NAME: proof that the variable took.
"""

from __future__ import annotations

import platform
import sys


def _loaded_kernels() -> list[str]:
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS)
    import scipy.linalg  # noqa: F401  (loads SciPy's)
    from threadpoolctl import threadpool_info

    return [p.get("architecture", "?") for p in threadpool_info() if p.get("internal_api") == "openblas"]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose() -> str:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ""
    flags = _cpu_flags()
    current = {k.lower() for k in _loaded_kernels()}
    if "avx" in flags and "sandybridge" not in current:
        return "Sandybridge"
    if {"avx2", "fma"} <= flags and "haswell" not in current:
        return "Haswell"
    return ""


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"] and len(argv) == 2:
        kernels = _loaded_kernels()
        ok = bool(kernels) and all(k.lower() == argv[1].lower() for k in kernels)
        print(f"OpenBLAS kernels in force: {kernels}")
        return 0 if ok else 1
    print(choose())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
