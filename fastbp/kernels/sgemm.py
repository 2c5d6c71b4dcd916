"""A register-blocked float32 GEMM for AVX-512, written in LLVM IR.

``c (m, n) = op(a) @ b`` for row-major matrices, ``op(a)`` being ``a`` or ``a.T``: the
two products of a training step whose second operand is read along its rows (the forward
``a_prev @ W`` and the weight gradient ``a_prev^T delta``). :mod:`.blas` sends them here
in single precision on CPUs with AVX-512F; everything else goes to BLAS.

Why: OpenBLAS copies (packs) both operands on every call, which is a large share of
the products a training step makes (a few hundred rows, a few hundred units), and its
small-matrix path, which skips the copies, covers only the untransposed product. This
kernel copies only a panel of ``b`` and keeps a 12 x 32 tile of ``c`` in 24 vector
registers while it runs over ``k``, the inner loop being two loads, twelve broadcasts and
24 fused multiply-adds. Measured on one core of an Intel Xeon (AVX-512; OpenBLAS 0.3.31,
``SkylakeX``), called in a loop from compiled code, microseconds per product:
``a.T @ b`` 64x256x64 (a weight gradient at batch 256) 14.6-15.6 against 28.4-31.2, and
32x784x512 196-219 against 212-220; but with every operand hot in cache OpenBLAS is ahead
on 128x512x256 (221-228 against 160-167) and on shallow products (64x128x64: 6.7-7.6
against 6.2-7.0). In whole epochs on one thread (20,000 rows, fresh processes) the kernel
took 784-512-256-10 from 43.2-44.6k to 45.3-47.7k samples/s at batch 128 and from 27.0k
to 28.7k at batch 32, and 16-64-64-64-64-1 from 854-897k to 915-976k; see
:data:`MIN_K`, :data:`MIN_MN` and :data:`MAX_MNK` for where it is not used.

The loops, outermost first:

1. blocks of ``KC`` along ``k``; the first block writes ``c``, the later ones add to it;
2. panels of 32 columns of ``b``: for more than :data:`PACK_ROWS` rows, the panel's
   ``KC x 32`` block is copied into a contiguous stack buffer (32 KiB, within the level-1
   cache). Unpacked, rows of ``b`` a power of two apart (512 floats: 2 KiB) fall in the
   same few cache sets and the panel is re-read from level 2 on every tile (measured on
   128x784x512: 111 GFLOP/s unpacked, 144 packed);
3. tiles of 12 rows of ``c`` (then of 4, the last one reading its missing rows from its
   last real row and storing only the real ones), each one ``KC``-long run of FMAs.
   The 12-row tiles come in two layouts, ``a`` (rows ``2t`` and ``2t + 1`` through one
   pointer a pair) and ``a.T`` (the 12 values of a step contiguous, one pointer), and run
   4 steps of ``k`` an iteration; an empty ``asm`` hides their pointers from LLVM's loop
   strength reduction, which otherwise folds them into one chain of 12 dependent adds
   per step. The loop runs at 150-175 GFLOP/s on one core, OpenBLAS's at up to 205-215
   (hence :data:`MAX_MNK`).

Columns past ``n`` are masked in every load and store, so any ``n`` works. Every element
of ``c`` is summed over ``k`` in the same order whatever ``m``, ``n`` and the caller's
blocks are: results do not depend on how a product is cut between threads.

The functions carry ``"min-legal-vector-width"="512"``: LLVM's tuning for these CPUs
otherwise splits 512-bit vectors in two. They are compiled once per process into a Numba
code library (:func:`library`) that every compiled caller links in, so cached callers
carry their own copy and need nothing at import.
"""

from __future__ import annotations

import functools

from llvmlite import binding as llvm

#: The driver's symbol: ``void (i64 m, i64 n, i64 k, ptr a, i64 a_row, i64 a_k, ptr b,
#: i64 ldb, ptr c, i64 ldc)``, element ``op(a)[i, p]`` at ``a[i * a_row + p * a_k]``, one
#: of ``a_row``, ``a_k`` being 1 (``a`` or ``a.T`` of a row-major matrix).
SYMBOL = "fastbp_sgemm_tiled"

KC = 256  # k per block: a 256 x 32 float32 panel is 32 KiB (level 1 is 48 KiB here)
NR = 32  # columns per tile: two 16-float vectors
PACK_ROWS = 24  # the panel is packed for more rows than this: for fewer, each row tile reads b once
#: :mod:`.blas` sends a product here from this depth on (and from :data:`NR` columns).
#: Shallower ones go to OpenBLAS, whose small-matrix path wins there (a 12-row tile's
#: set-up is a large part of a short run over ``k``): in 64-128-64-10 at batch 64 (every
#: ``k`` 64 or 128) the kernel cost 5-9 % of an epoch on one thread, measured.
MIN_K = 256
#: ... or, whatever ``k``, from this many elements of ``c`` (``m * n``): then the tiles'
#: set-up is spread over enough of them. Measured on one core, called in a loop from
#: compiled code, GFLOP/s of the kernel against OpenBLAS (``m x k x n``, T: ``a.T``):
#: the weight gradients at batch 128, 784x128x512T 125-130 against 119-121, 512x128x256T
#: 132-140 against 119-122, a column block 128x128x256T 140-144 against 106; at batch 32
#: 784x32x512T 120-131 against 91-94; a forward 256x64x64 141 against 98-100. Below it
#: OpenBLAS's small-matrix path is level or ahead: 64x64x128T 130-134 against 130-158,
#: 32x32x256T 113-114 against 130-132. Epochs on one thread (20,000 rows, three
#: interleaved pairs of fresh processes): 784-512-256-10 at batch 128 +2 %,
#: 16-64-64-64-64-1 at batch 256 +2-10 %; 64-128-64-10 at batch 64 routes nothing more.
MIN_MN = 1 << 14
#: ... and up to this many multiply-adds (``m * n * k``). On large products OpenBLAS's
#: packing pays for itself and its inner kernel is the faster one (measured: this kernel
#: runs at 150-175 GFLOP/s on one core, OpenBLAS's up to 205-215): 784-1024-1024-10 at
#: batch 1024 (products of 0.8-1.1 G multiply-adds) trained 11.7-11.8k samples/s with the
#: kernel against 13.3-13.8k without, on one thread. 784-512-256-10's largest product at
#: batch 128 is 51 M.
MAX_MNK = 1 << 26
V = "<16 x float>"
_ATTRS = '"min-legal-vector-width"="512" "prefer-vector-width"="512"'


@functools.cache
def has_avx512() -> bool:
    """Whether this CPU runs the kernel (AVX-512F). Without it, 24 accumulators of 512
    bits do not fit the registers, and BLAS is used."""
    return llvm.get_host_cpu_features().get("avx512f", False)


U = 4  # k steps per iteration of the 12-row tiles' main loop


def _load(value: str, pointer: str, mask: str) -> str:
    """``value = `` 16 floats at ``pointer``, lanes off in ``mask`` read as 0."""
    call = f"call {V} @llvm.masked.load.v16f32.p0(ptr {pointer}, i32 4, <16 x i1> {mask}, {V} zeroinitializer)"
    return f"  {value} = {call}"


def _tile(mr: int, name: str, mode: str) -> str:
    """One tile: ``mr`` rows x 32 columns of ``c`` (+)= rows of ``op(a)`` @ a panel of
    ``b`` (row stride ``lp``), over ``k`` (``mk0``/``mk1``: the two vectors' column masks).

    ``mode`` is how the tile addresses ``op(a)``: ``"nn"`` rows apart, each contiguous in
    ``k`` (``ak == 1``); ``"tn"`` contiguous across rows (``ar == 1``); these two run
    :data:`U` steps of ``k`` per iteration, then single steps. ``"rows"`` takes any
    strides, one step per iteration, and rows ``>= rows`` (at most ``mr``) read row
    ``rows - 1`` and are not stored: the remainder tile."""
    out = [
        f"define internal void @{name}(ptr %a, i64 %ar, i64 %ak, ptr %p, i64 %lp, ptr %c, i64 %ldc, i64 %k, "
        f"<16 x i1> %mk0, <16 x i1> %mk1, i1 %add, i64 %rows) noinline nounwind #0 {{",
        "entry:",
        "  %last = sub i64 %rows, 1",
        "  %arb = shl i64 %ar, 2",
        "  %akb = shl i64 %ak, 2",
        "  %ak2b = shl i64 %ak, 3",
        f"  %akub = mul i64 %akb, {U}",
        f"  %lpu = mul i64 %lp, {U}",
    ]
    e = out.append
    for u in range(1, U):
        e(f"  %lp{u} = mul i64 %lp, {u}")
    for r in range(mr):
        if mode == "rows":
            e(f"  %rr{r} = call i64 @llvm.umin.i64(i64 {r}, i64 %last)")
        else:
            e(f"  %rr{r} = add i64 {r}, 0")
        e(f"  %ao{r} = mul i64 %rr{r}, %ar")
        e(f"  %a{r} = getelementptr float, ptr %a, i64 %ao{r}")
        e(f"  %co{r} = mul i64 %rr{r}, %ldc")
        e(f"  %c{r}_0 = getelementptr float, ptr %c, i64 %co{r}")
        e(f"  %c{r}_1 = getelementptr float, ptr %c{r}_0, i64 16")
    e("  br i1 %add, label %load, label %start")
    e("load:")
    for r in range(mr):
        for h in range(2):
            e(_load(f"%l{r}_{h}", f"%c{r}_{h}", f"%mk{h}"))
    e("  br label %start")
    e("start:")
    for r in range(mr):
        for h in range(2):
            e(f"  %z{r}_{h} = phi {V} [%l{r}_{h}, %load], [zeroinitializer, %entry]")
    # the A pointers a loop carries: nn one per pair of rows, tn one, rows none (an offset)
    carried = {"nn": [f"a{2 * t}" for t in range(mr // 2)], "tn": ["a0"], "rows": []}[mode]
    steps = U if mode != "rows" else 1
    e(f"  %kmain = and i64 %k, {-steps}")
    e("  %anymain = icmp sgt i64 %kmain, 0")
    e("  br i1 %anymain, label %main, label %join")

    def loop(block: str, enter: str, n_steps: int, again: str, state: dict) -> dict:
        """A loop block of ``n_steps`` steps per iteration, entered from ``enter`` with
        ``state`` (names of the accumulators, the b and a pointers and the step count)."""
        x = block
        e(f"{x}:")
        e(f"  %{x}_i = phi i64 [{state['i']}, %{enter}], [%{x}_i1, %{x}]")
        e(f"  %{x}_pp = phi ptr [{state['pp']}, %{enter}], [%{x}_pp1, %{x}]")
        e(f"  %{x}_ao = phi i64 [{state['ao']}, %{enter}], [%{x}_ao1, %{x}]")
        for j, q in enumerate(carried):
            e(f"  %{x}_q{j} = phi ptr [{state[q]}, %{enter}], [%{x}_qh{j}, %{x}]")
        acc = {}
        for r in range(mr):
            for h in range(2):
                e(f"  %{x}_s{r}_{h}_0 = phi {V} [{state[(r, h)]}, %{enter}], [%{x}_s{r}_{h}_{n_steps}, %{x}]")
                acc[(r, h)] = f"%{x}_s{r}_{h}_0"
        if mode == "tn":
            e(f"  %{x}_q0u2 = getelementptr i8, ptr %{x}_q0, i64 %ak2b")
        for u in range(n_steps):
            pb = f"%{x}_pp" if u == 0 else f"%{x}_pb{u}"
            if u:
                e(f"  {pb} = getelementptr float, ptr %{x}_pp, i64 %lp{u}")
            e(f"  %{x}_pc{u} = getelementptr float, ptr {pb}, i64 16")
            e(_load(f"%{x}_b0_{u}", pb, "%mk0"))
            e(_load(f"%{x}_b1_{u}", f"%{x}_pc{u}", "%mk1"))
            for r in range(mr):
                pa = f"%{x}_pa{r}_{u}"
                if mode == "rows":
                    e(f"  {pa} = getelementptr float, ptr %a{r}, i64 %{x}_ao")
                elif mode == "nn":
                    e(f"  %{x}_pe{r}_{u} = getelementptr float, ptr %{x}_q{r // 2}, i64 {u}")
                    e(f"  {pa} = getelementptr i8, ptr %{x}_pe{r}_{u}, i64 {'%arb' if r % 2 else 0}")
                else:  # tn: row r of step u at q + u * ak + r
                    base = f"%{x}_q0" if u < 2 else f"%{x}_q0u2"
                    e(f"  %{x}_pe{r}_{u} = getelementptr i8, ptr {base}, i64 {'%akb' if u % 2 else 0}")
                    e(f"  {pa} = getelementptr float, ptr %{x}_pe{r}_{u}, i64 {r}")
                e(f"  %{x}_x{r}_{u} = load float, ptr {pa}, align 4")
                e(f"  %{x}_y{r}_{u} = insertelement {V} poison, float %{x}_x{r}_{u}, i32 0")
                e(f"  %{x}_v{r}_{u} = shufflevector {V} %{x}_y{r}_{u}, {V} poison, <16 x i32> zeroinitializer")
                for h in range(2):
                    nxt = f"%{x}_s{r}_{h}_{u + 1}"
                    e(f"  {nxt} = call {V} @llvm.fma.v16f32({V} %{x}_v{r}_{u}, {V} %{x}_b{h}_{u}, {V} {acc[(r, h)]})")
                    acc[(r, h)] = nxt
        e(f"  %{x}_i1 = add i64 %{x}_i, {n_steps}")
        e(f"  %{x}_ao1 = add i64 %{x}_ao, %ak")
        e(f"  %{x}_pp1 = getelementptr float, ptr %{x}_pp, i64 {'%lpu' if n_steps > 1 else '%lp'}")
        for j in range(len(carried)):  # an empty asm: keeps loop strength reduction off these
            step = f"i64 {n_steps}" if mode == "nn" else ("i64 %akub" if n_steps > 1 else "i64 %akb")
            kind = "float" if mode == "nn" else "i8"
            e(f"  %{x}_qn{j} = getelementptr {kind}, ptr %{x}_q{j}, {step}")
            e(f'  %{x}_qh{j} = call ptr asm "", "=r,0"(ptr %{x}_qn{j})')
        e(f"  %{x}_more = icmp slt i64 %{x}_i1, {again}")
        return {"i": f"%{x}_i1", "pp": f"%{x}_pp1", "ao": f"%{x}_ao1",
                **{q: f"%{x}_qh{j}" for j, q in enumerate(carried)}, **acc}  # fmt: skip

    init = {"i": "0", "pp": "%p", "ao": "0", **{q: f"%{q}" for q in carried}}
    init.update({(r, h): f"%z{r}_{h}" for r in range(mr) for h in range(2)})
    after_main = loop("main", "start", steps, "%kmain", init)
    e("  br i1 %main_more, label %main, label %join")
    e("join:")
    joined = {}
    for key, value in after_main.items():
        name = f"%j{key[0]}_{key[1]}" if isinstance(key, tuple) else f"%j_{key}"
        kind = V if isinstance(key, tuple) else ("i64" if key in ("i", "ao") else "ptr")
        e(f"  {name} = phi {kind} [{init[key]}, %start], [{value}, %main]")
        joined[key] = name
    e("  %anytail = icmp slt i64 %j_i, %k")
    e("  br i1 %anytail, label %tail, label %done")
    after_tail = loop("tail", "join", 1, "%k", joined)
    e("  br i1 %tail_more, label %tail, label %done")
    e("done:")
    for r in range(mr):
        for h in range(2):
            e(f"  %f{r}_{h} = phi {V} [{joined[(r, h)]}, %join], [{after_tail[(r, h)]}, %tail]")
    for r in range(mr):
        e(f"  %keep{r} = icmp ult i64 {r}, %rows")
        for h in range(2):
            e(f"  %m{r}_{h} = select i1 %keep{r}, <16 x i1> %mk{h}, <16 x i1> zeroinitializer")
            e(f"  call void @llvm.masked.store.v16f32.p0({V} %f{r}_{h}, ptr %c{r}_{h}, i32 4, <16 x i1> %m{r}_{h})")
    e("  ret void")
    e("}")
    return "\n".join(out)


def _driver() -> str:
    """Loops 1-3 of the module docstring around the tiles."""
    return f"""define void @{SYMBOL}(i64 %m, i64 %n, i64 %k, ptr %a, i64 %ar, i64 %ak, ptr %b, i64 %ldb,
                                      ptr %c, i64 %ldc) noinline nounwind #0 {{
entry:
  %buf = alloca [{KC * NR} x float], align 64
  %ok = icmp sgt i64 %n, 0
  %okm = icmp sgt i64 %m, 0
  %go = and i1 %ok, %okm
  %many = icmp sgt i64 %m, {PACK_ROWS}
  br i1 %go, label %kblock, label %exit
kblock:
  %kb = phi i64 [0, %entry], [%kb1, %knext]
  %kleft = sub i64 %k, %kb
  %kc = call i64 @llvm.smin.i64(i64 %kleft, i64 {KC})
  %add = icmp sgt i64 %kb, 0
  %ako = mul i64 %kb, %ak
  %ab = getelementptr float, ptr %a, i64 %ako
  %bko = mul i64 %kb, %ldb
  %bb = getelementptr float, ptr %b, i64 %bko
  br label %panel
panel:
  %j = phi i64 [0, %kblock], [%j1, %pnext]
  %left = sub i64 %n, %j
  %w0 = call i64 @llvm.smin.i64(i64 %left, i64 16)
  %w1a = sub i64 %left, 16
  %w1b = call i64 @llvm.smax.i64(i64 %w1a, i64 0)
  %w1 = call i64 @llvm.smin.i64(i64 %w1b, i64 16)
  %q0 = shl i64 1, %w0
  %r0 = sub i64 %q0, 1
  %t0 = trunc i64 %r0 to i16
  %mk0 = bitcast i16 %t0 to <16 x i1>
  %q1 = shl i64 1, %w1
  %r1 = sub i64 %q1, 1
  %t1 = trunc i64 %r1 to i16
  %mk1 = bitcast i16 %t1 to <16 x i1>
  %bj = getelementptr float, ptr %bb, i64 %j
  %cj = getelementptr float, ptr %c, i64 %j
  %anyk = icmp sgt i64 %kc, 0
  %dopack = and i1 %anyk, %many
  br i1 %dopack, label %pack, label %rows
pack:
  %pk = phi i64 [0, %panel], [%pk1, %pack]
  %so = mul i64 %pk, %ldb
  %s0 = getelementptr float, ptr %bj, i64 %so
  %s1 = getelementptr float, ptr %s0, i64 16
  %do = mul i64 %pk, {NR}
  %d0 = getelementptr float, ptr %buf, i64 %do
  %d1 = getelementptr float, ptr %d0, i64 16
{_load("%v0", "%s0", "%mk0")}
{_load("%v1", "%s1", "%mk1")}
  store {V} %v0, ptr %d0, align 64
  store {V} %v1, ptr %d1, align 64
  %pk1 = add i64 %pk, 1
  %pmore = icmp slt i64 %pk1, %kc
  br i1 %pmore, label %pack, label %rows
rows:
  %i = phi i64 [0, %panel], [0, %pack], [%i1, %bigdone]
  %src = phi ptr [%bj, %panel], [%buf, %pack], [%src, %bigdone]
  %lp = phi i64 [%ldb, %panel], [{NR}, %pack], [%lp, %bigdone]
  %mleft = sub i64 %m, %i
  %isbig = icmp sge i64 %mleft, 12
  %aio = mul i64 %i, %ar
  %ai = getelementptr float, ptr %ab, i64 %aio
  %cio = mul i64 %i, %ldc
  %ci = getelementptr float, ptr %cj, i64 %cio
  br i1 %isbig, label %big, label %small
big:
  %isnn = icmp eq i64 %ak, 1
  br i1 %isnn, label %bignn, label %bigtn
bignn:
  call void @fastbp_tile12nn(ptr %ai, i64 %ar, i64 %ak, ptr %src, i64 %lp, ptr %ci, i64 %ldc, i64 %kc,
                             <16 x i1> %mk0, <16 x i1> %mk1, i1 %add, i64 12)
  br label %bigdone
bigtn:
  call void @fastbp_tile12tn(ptr %ai, i64 %ar, i64 %ak, ptr %src, i64 %lp, ptr %ci, i64 %ldc, i64 %kc,
                             <16 x i1> %mk0, <16 x i1> %mk1, i1 %add, i64 12)
  br label %bigdone
bigdone:
  %i1 = add i64 %i, 12
  br label %rows
small:
  %i2 = phi i64 [%i, %rows], [%i3, %small4]
  %sleft = sub i64 %m, %i2
  %some = icmp sgt i64 %sleft, 0
  br i1 %some, label %small4, label %pnext
small4:
  %srows = call i64 @llvm.smin.i64(i64 %sleft, i64 4)
  %aso = mul i64 %i2, %ar
  %as = getelementptr float, ptr %ab, i64 %aso
  %cso = mul i64 %i2, %ldc
  %cs = getelementptr float, ptr %cj, i64 %cso
  call void @fastbp_tile4(ptr %as, i64 %ar, i64 %ak, ptr %src, i64 %lp, ptr %cs, i64 %ldc, i64 %kc, <16 x i1> %mk0,
                          <16 x i1> %mk1, i1 %add, i64 %srows)
  %i3 = add i64 %i2, 4
  br label %small
pnext:
  %j1 = add i64 %j, {NR}
  %jmore = icmp slt i64 %j1, %n
  br i1 %jmore, label %panel, label %knext
knext:
  %kb1 = add i64 %kb, {KC}
  %kmore = icmp slt i64 %kb1, %k
  br i1 %kmore, label %kblock, label %exit
exit:
  ret void
}}"""


def ir_text() -> str:
    """The module: the driver, its two tiles and the intrinsics they call."""
    declarations = [
        f"declare {V} @llvm.fma.v16f32({V}, {V}, {V})",
        f"declare {V} @llvm.masked.load.v16f32.p0(ptr, i32, <16 x i1>, {V})",
        f"declare void @llvm.masked.store.v16f32.p0({V}, ptr, i32, <16 x i1>)",
        "declare i64 @llvm.smin.i64(i64, i64)",
        "declare i64 @llvm.smax.i64(i64, i64)",
        "declare i64 @llvm.umin.i64(i64, i64)",
    ]
    tiles = [_tile(12, "fastbp_tile12nn", "nn"), _tile(12, "fastbp_tile12tn", "tn"), _tile(4, "fastbp_tile4", "rows")]
    parts = [*declarations, *tiles, _driver()]
    parts.append(f"attributes #0 = {{ {_ATTRS} }}")
    return "\n\n".join(parts)


def tiled(a, trans_a: bool, b, c) -> None:
    """``c = op(a) @ b`` by the kernel, called from Python (for tests): float32 2-D views
    whose rows are contiguous and row strides positive, shapes agreeing, on a CPU with
    AVX-512 (:func:`has_avx512`)."""
    import ctypes

    from numba.core.compiler_lock import global_compiler_lock

    i, p = ctypes.c_int64, ctypes.c_void_p
    with global_compiler_lock:
        address = library().get_pointer_to_function(SYMBOL)
    fn = ctypes.CFUNCTYPE(None, i, i, i, p, i, i, p, i, p, i)(address)
    (m, n), k = c.shape, b.shape[0]
    lda, ldb, ldc = (x.strides[0] // 4 for x in (a, b, c))
    a_row, a_k = (1, lda) if trans_a else (lda, 1)
    fn(m, n, k, a.ctypes.data, a_row, a_k, b.ctypes.data, ldb, c.ctypes.data, ldc)


@functools.cache
def library():
    """The kernel as a finalized Numba code library, built once per process, for callers
    to link in (``context.active_code_library.add_linking_library``)."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    with global_compiler_lock:
        lib = cpu_target.target_context.codegen().create_library("fastbp.sgemm")
        module = llvm.parse_assembly(ir_text())
        module.verify()
        lib.add_llvm_module(module)
        lib.finalize()
    return lib
