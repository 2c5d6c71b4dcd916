"""How Numba compiles and caches an activation chosen at run time, six ways.

Groundwork for compiling only what a network uses: each way of choosing the activation of
a fused ``z += b; a = f(z)`` pass (eight activations, float32, the shape of
``kernels/activations.bias_act_cols_``) is compiled in a fresh process with an empty
``NUMBA_CACHE_DIR``, called once, and then loaded in a second fresh process from that
cache. Printed per way: cold compile + first call, warm load + first call, whether the
warm process hit the cache, and the same for a caller that calls the pass twice (Numba
compiles a callee again inside each caller's module).

Ways:

* ``code``: a run-time integer code and an ``if/elif`` over all eight (what the kernels do);
* ``relu_only``: a pass written for relu alone (the floor);
* ``literal``: the code passed through ``numba.literally``, so Numba compiles one
  specialisation per code value with the other branches pruned;
* ``func_arg``: the element function passed as an argument (one specialisation per
  function, ``STYLE.md`` section 3.6 says this missed the cache in every new process);
* ``func_arg_2``: ``func_arg`` called with two different functions in one process;
* ``cfunc_arg``, ``cfunc_arg_2``: the whole pass compiled on its own as a ``@cfunc`` (C
  signature: pointers and sizes) and passed as a first-class function value: the caller
  has one type, ``FunctionType``, whichever pass it gets, and calls it through a pointer
  instead of compiling it into its own module.

Usage: ``python benchmarks/measure_dispatch.py [--json PATH]``. Timings are whole-step
wall times of one process each on a shared machine: read them as sizes, not decimals.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

KERNELS = textwrap.dedent(
    '''
    import math
    import numpy as np
    from numba import carray, cfunc, literally, njit, types
    from numba.extending import intrinsic
    from numba.np.arrayobj import make_array

    OPTS = {"cache": True, "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}, "nogil": True,
            "error_model": "numpy"}
    IDENTITY, RELU, LEAKY, TANH, SIGMOID, ELU, SOFTPLUS, SILU = range(8)

    @njit(**OPTS)
    def f_relu(v):
        return v if v > 0 else v * 0

    @njit(**OPTS)
    def f_tanh(v):
        return math.tanh(v)

    @njit(**OPTS)
    def _f(act, v):
        if act == IDENTITY:
            return v
        if act == RELU:
            return v if v > 0 else v * 0
        if act == LEAKY:
            return v if v > 0 else v * np.float32(0.01)
        if act == TANH:
            return math.tanh(v)
        if act == SIGMOID:
            return 1 / (1 + math.exp(-v))
        if act == ELU:
            return v if v > 0 else math.expm1(v)
        if act == SOFTPLUS:
            return max(v, 0) + math.log1p(math.exp(-abs(v)))
        if act == SILU:
            return v / (1 + math.exp(-v))
        raise ValueError("unknown activation code")

    @njit(**OPTS)
    def by_code(z, b, act, a):
        n, m = z.shape
        for i in range(n):
            for j in range(m):
                v = z[i, j] + b[j]
                z[i, j] = v
                a[i, j] = _f(act, v)

    @njit(**OPTS)
    def relu_only(z, b, a):
        n, m = z.shape
        for i in range(n):
            for j in range(m):
                v = z[i, j] + b[j]
                z[i, j] = v
                a[i, j] = v if v > 0 else v * 0

    @njit(**OPTS)
    def by_literal(z, b, act, a):
        return by_code(z, b, literally(act), a)

    @njit(**OPTS)
    def by_func(z, b, f, a):
        n, m = z.shape
        for i in range(n):
            for j in range(m):
                v = z[i, j] + b[j]
                z[i, j] = v
                a[i, j] = f(v)

    @intrinsic
    def _ptr(typingctx, arr):
        def codegen(context, builder, sig, args):
            return make_array(sig.args[0])(context, builder, args[0]).data
        return types.CPointer(arr.dtype)(arr), codegen

    PASS = types.void(types.CPointer(types.float32), types.CPointer(types.float32), types.CPointer(types.float32),
                      types.intp, types.intp)

    def make_passes():
        """The cfuncs compile when defined: here, so their time counts in the call."""
        @cfunc(PASS, cache=True, fastmath=OPTS["fastmath"], error_model="numpy")
        def pass_relu(zp, bp, ap, n, m):
            z = carray(zp, (n, m)); b = carray(bp, (m,)); a = carray(ap, (n, m))
            for i in range(n):
                for j in range(m):
                    v = z[i, j] + b[j]
                    z[i, j] = v
                    a[i, j] = v if v > 0 else v * 0

        @cfunc(PASS, cache=True, fastmath=OPTS["fastmath"], error_model="numpy")
        def pass_tanh(zp, bp, ap, n, m):
            z = carray(zp, (n, m)); b = carray(bp, (m,)); a = carray(ap, (n, m))
            for i in range(n):
                for j in range(m):
                    v = z[i, j] + b[j]
                    z[i, j] = v
                    a[i, j] = math.tanh(v)
        return pass_relu, pass_tanh


    @njit(**OPTS)
    def by_cfunc(z, b, f, a):
        f(_ptr(z), _ptr(b), _ptr(a), z.shape[0], z.shape[1])

    @njit(**OPTS)
    def caller_code(z, b, act, a):
        by_code(z, b, act, a)
        by_code(a, b, act, z)

    @njit(**OPTS)
    def caller_literal(z, b, act, a):
        by_literal(z, b, act, a)
        by_literal(a, b, act, z)

    @njit(**OPTS)
    def caller_func(z, b, f, a):
        by_func(z, b, f, a)
        by_func(a, b, f, z)
    '''
)

CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import dispatch_kernels as k
    way = sys.argv[2]
    z = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    b = np.zeros(256, np.float32)
    a = np.empty_like(z)
    t1 = time.perf_counter()
    calls = {
        "code": lambda: k.by_code(z, b, 1, a),
        "relu_only": lambda: k.relu_only(z, b, a),
        "literal": lambda: k.by_literal(z, b, 1, a),
        "func_arg": lambda: k.by_func(z, b, k.f_relu, a),
        "func_arg_2": lambda: (k.by_func(z, b, k.f_relu, a), k.by_func(z, b, k.f_tanh, a)),
        "cfunc_arg": lambda: k.by_cfunc(z, b, k.make_passes()[0], a),
        "cfunc_arg_2": lambda: [k.by_cfunc(z, b, p, a) for p in k.make_passes()],
        "caller_code": lambda: k.caller_code(z, b, 1, a),
        "caller_literal": lambda: k.caller_literal(z, b, 1, a),
        "caller_func": lambda: k.caller_func(z, b, k.f_relu, a),
    }
    calls[way]()
    t2 = time.perf_counter()
    fn = {"code": k.by_code, "relu_only": k.relu_only, "literal": k.by_literal, "func_arg": k.by_func,
          "func_arg_2": k.by_func, "cfunc_arg": k.by_cfunc, "cfunc_arg_2": k.by_cfunc,
          "caller_code": k.caller_code, "caller_literal": k.caller_literal, "caller_func": k.caller_func}[way]
    hits = sum(fn.stats.cache_hits.values())
    misses = sum(fn.stats.cache_misses.values())
    print(json.dumps({"import_s": t1 - t0, "call_s": t2 - t1, "hits": hits, "misses": misses}))
    """
)

WAYS = ("code", "relu_only", "literal", "func_arg", "func_arg_2", "cfunc_arg", "cfunc_arg_2", "caller_code",
        "caller_literal", "caller_func")


def run_way(way: str) -> dict:
    """Cold then warm process for ``way``, each with its own module copy and cache folder."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src")
        os.makedirs(src)
        with open(os.path.join(src, "dispatch_kernels.py"), "w") as fh:
            fh.write(KERNELS)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(d, "cache"))
        out = {}
        for phase in ("cold", "warm"):
            proc = subprocess.run([sys.executable, "-c", CHILD, src, way], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                out[phase] = {"error": proc.stderr.strip().splitlines()[-1]}
            else:
                out[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {}
    print(f"{'way':16} {'cold call s':>12} {'warm call s':>12} {'warm cache hits/misses':>24}")
    for way in WAYS:
        r = run_way(way)
        results[way] = r
        cold, warm = r["cold"], r["warm"]
        if "error" in cold or "error" in warm:
            print(f"{way:16} error: {cold.get('error') or warm.get('error')}")
            continue
        print(f"{way:16} {cold['call_s']:12.2f} {warm['call_s']:12.2f} {warm['hits']:>13}/{warm['misses']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
