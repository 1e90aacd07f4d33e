"""The compiled side of panel_gemm.py: LLVM IR micro-kernels (numba intrinsics), the drivers
that walk panels and row blocks, and the two-thread split (the caller and a helper thread).
Imported only when numba is installed."""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .panel_gemm import MR, NR

_I64, _F32 = ir.IntType(64), ir.FloatType()
_V8 = ir.VectorType(_F32, 8)
_I32 = ir.IntType(32)


def _define(module, mr: int, wide: int = 1):
    """void kernel(a, lda, panel, c, ldc, K, n): c[:mr, :16 wide] = a[:mr, :K] @ the `wide`
    panels from `panel` on (addresses as integers, strides in elements; K >= 1; n <= 16 is
    how many columns of a single panel to store, wide panels are whole).

    An FMA waits ~4 cycles for the last one on its accumulator, so a kernel needs ~8 running
    at once to keep both FMA units busy: 6 rows x 2 vectors have 12, but 1 row of one panel
    only 2. One or two rows left over below 6 therefore take 4 or 2 panels at once (`wide`;
    three rows on two panels would need more than the 16 vector registers and spill), each
    output still one chain of FMAs over k from 0: the same bits whichever kernel computes it
    (serial [1, 256] @ [256, 256]: 2.8 us against 4.7 one panel at a time)."""
    name = f"rnngraph_panel_kernel_{mr}x{wide}"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_I64] * 7), name)
    fn.linkage = "internal"
    a_at, lda, b_at, c_at, ldc, depth, n = fn.args
    entry, loop, store, full, part = (fn.append_basic_block(s) for s in
                                      ("entry", "loop", "store", "full", "part"))
    fma = module.globals.get("llvm.fma.v8f32") or ir.Function(
        module, ir.FunctionType(_V8, [_V8, _V8, _V8]), "llvm.fma.v8f32")
    b = ir.IRBuilder(entry)
    fp, vp = ir.PointerType(_F32), ir.PointerType(_V8)
    a, panel, c = (b.inttoptr(x, fp) for x in (a_at, b_at, c_at))
    rows = [b.gep(a, [b.mul(lda, _I64(r))]) for r in range(mr)]
    panels = [b.gep(panel, [b.mul(depth, _I64(NR * q))]) for q in range(wide)]
    b.branch(loop)

    b.position_at_end(loop)   # acc[r][v] += a[r, k] * panel q[k, 8w:8w+8], v = 2q + w
    vectors = 2 * wide
    k = b.phi(_I64)
    k.add_incoming(_I64(0), entry)
    acc = [[b.phi(_V8) for _ in range(vectors)] for _ in range(mr)]
    for pair in acc:
        for x in pair:
            x.add_incoming(ir.Constant(_V8, None), entry)
    lanes = []
    for q in range(wide):
        lane0 = b.gep(panels[q], [b.mul(k, _I64(NR))])
        lanes += [b.load(b.bitcast(p, vp), align=4) for p in (lane0, b.gep(lane0, [_I64(8)]))]
    undef = ir.Constant(_V8, ir.Undefined)
    splat = ir.Constant(ir.VectorType(_I32, 8), None)
    new = []
    for r in range(mr):
        s = b.load(b.gep(rows[r], [k]), align=4)
        s = b.shuffle_vector(b.insert_element(undef, s, _I32(0)), undef, splat)
        new.append([b.call(fma, [s, lanes[v], acc[r][v]]) for v in range(vectors)])
        for v in range(vectors):
            acc[r][v].add_incoming(new[r][v], loop)
    k1 = b.add(k, _I64(1))
    k.add_incoming(k1, loop)
    b.cbranch(b.icmp_signed("==", k1, depth), store, loop)

    b.position_at_end(store)
    b.cbranch(b.icmp_signed("==", n, _I64(NR)) if wide == 1 else ir.Constant(ir.IntType(1), 1),
              full, part)
    b.position_at_end(full)
    for r in range(mr):
        row = b.gep(c, [b.mul(ldc, _I64(r))])
        for v in range(vectors):
            b.store(new[r][v], b.bitcast(b.gep(row, [_I64(8 * v)]), vp), align=4)
    b.ret_void()
    b.position_at_end(part)   # the last panel of an N that is not a multiple of 16
    if wide > 1:
        b.ret_void()   # (never taken: wide panels are whole)
        return fn
    for r in range(mr):
        row = b.gep(c, [b.mul(ldc, _I64(r))])
        for col in range(NR):
            with b.if_then(b.icmp_signed("<", _I64(col), n)):
                value = b.extract_element(new[r][col // 8], _I32(col % 8))
                b.store(value, b.gep(row, [_I64(col)]), align=4)
    b.ret_void()
    return fn


def _kernel(mr: int, wide: int = 1):
    @intrinsic
    def kernel(typingctx, a, lda, panel, c, ldc, depth, n):
        def codegen(context, builder, signature, args):
            builder.call(_define(builder.module, mr, wide), args)
            return context.get_dummy_value()
        return types.void(*([types.int64] * 7)), codegen
    return kernel


_k1, _k2, _k3, _k4, _k5, _k6 = (_kernel(mr) for mr in range(1, MR + 1))
_k1x4, _k2x2 = _kernel(1, 4), _kernel(2, 2)


@njit(nogil=True, cache=True)
def panels_at(a0, lda, m, depth, b0, c0, ldc, n, first, stop):
    """c[:, 16p:16p+16] = a @ panel p for panels first .. stop-1 (addresses and element strides
    of float32 matrices), row block after row block: a panel (64 KB at most) stays in L1/L2
    while the blocks pass over it. With 1 or 2 rows left below the blocks of 6, panels go in
    groups of 4 or 2 (whole ones), whose left rows one wide kernel computes."""
    full = m - m % MR
    left = m - full
    wide = 4 if left == 1 else 2 if left == 2 else 1
    at, to = a0 + full * lda * 4, c0 + full * ldc * 4
    p = first
    while p < stop:
        group = wide if p + wide <= stop and (p + wide) * NR <= n else 1
        for q in range(p, p + group):
            cols = min(NR, n - q * NR)
            panel = b0 + q * depth * NR * 4
            for r in range(0, full, MR):
                _k6(a0 + r * lda * 4, lda, panel, c0 + (r * ldc + q * NR) * 4, ldc, depth, cols)
        panel, c, cols = b0 + p * depth * NR * 4, to + p * NR * 4, min(NR, n - p * NR)
        if group == 4:
            _k1x4(at, lda, panel, c, ldc, depth, NR)
        elif group == 2:
            _k2x2(at, lda, panel, c, ldc, depth, NR)
        elif left == 5:
            _k5(at, lda, panel, c, ldc, depth, cols)
        elif left == 4:
            _k4(at, lda, panel, c, ldc, depth, cols)
        elif left == 3:
            _k3(at, lda, panel, c, ldc, depth, cols)
        elif left == 2:
            _k2(at, lda, panel, c, ldc, depth, cols)
        elif left == 1:
            _k1(at, lda, panel, c, ldc, depth, cols)
        p += group


@njit(nogil=True, cache=True)
def serial(a, bp, c, n):
    panels_at(a.ctypes.data, a.strides[0] // 4, a.shape[0], a.shape[1], bp.ctypes.data,
              c.ctypes.data, c.strides[0] // 4, n, 0, -(-n // NR))


# --- two threads: the caller and one helper thread that spins while a loop runs -------------
# ctl, an int64 array, each field on its own cache line (8 int64s):
STATE, RUN, EXIT, JOB, COUNTS = 0, 8, 16, 24, 40   # job state; 1: helper spins; 1: it ends;
# the posted job (a, lda, m, k, panels, c, ldc, n, first, stop; then its kind, 0 for those
# panels or 1 for a call fn(block, r0, r1) of a fused kernel's rows, and fn, block, r0, r1);
# how many products and kernel calls were split (panel_gemm.split_counts)
# job states: 0 none, 1 posted, 2 taken, 3 done. The caller posts the second half of the
# panels and computes the first; whoever takes a posted job (compare-and-swap 1 -> 2) runs
# it, so a helper that is asleep, descheduled or not started never holds the caller up.
_I64P = ir.PointerType(_I64)


@intrinsic
def _load(typingctx, address):
    def codegen(context, builder, signature, args):
        return builder.load_atomic(builder.inttoptr(args[0], _I64P), "acquire", 8)
    return types.int64(types.int64), codegen


@intrinsic
def _store(typingctx, address, value):
    def codegen(context, builder, signature, args):
        builder.store_atomic(args[1], builder.inttoptr(args[0], _I64P), "release", 8)
        return context.get_dummy_value()
    return types.void(types.int64, types.int64), codegen


@intrinsic
def _swap(typingctx, address, expected, new):
    """compare-and-swap; returns the value found."""
    def codegen(context, builder, signature, args):
        pair = builder.cmpxchg(builder.inttoptr(args[0], _I64P), args[1], args[2],
                               "acq_rel", "acquire")
        return builder.extract_value(pair, 0)
    return types.int64(types.int64, types.int64, types.int64), codegen


@intrinsic
def _pause(typingctx):
    def codegen(context, builder, signature, args):
        fn = builder.module.globals.get("llvm.x86.sse2.pause") or ir.Function(
            builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


_yield = types.ExternalFunction("sched_yield", types.int32())


@intrinsic
def _call(typingctx, fn, block, r0, r1):
    """Call the C function at address fn: void fn(int64 block, int64 r0, int64 r1)."""
    return types.void(*[types.int64] * 4), _pointer_codegen(3, False)


def _pointer_codegen(n_args: int, returns: bool):
    """Code calling the C function whose address is the first argument with the other
    n_args int64s (void, or returning an int64)."""
    def codegen(context, builder, signature, values):
        fnty = ir.FunctionType(_I64 if returns else ir.VoidType(), [_I64] * n_args)
        out = builder.call(builder.inttoptr(values[0], ir.PointerType(fnty)), list(values[1:]))
        return out if returns else context.get_dummy_value()
    return codegen


@intrinsic
def address_of(typingctx, address):
    """An integer address as a void pointer (for numba.carray)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.PointerType(ir.IntType(8)))
    return types.voidptr(types.int64), codegen


@njit(nogil=True, cache=True)
def _run_job(ctl):
    j = ctl.ctypes.data + JOB * 8
    if _load(j + 80) == 1:
        _call(_load(j + 88), _load(j + 96), _load(j + 104), _load(j + 112))
        return
    panels_at(_load(j), _load(j + 8), _load(j + 16), _load(j + 24), _load(j + 32),
              _load(j + 40), _load(j + 48), _load(j + 56), _load(j + 64), _load(j + 72))


@njit(nogil=True, cache=True)
def post_call(ctl, fn, block, r0, r1):
    """Offer the helper the call fn(block, r0, r1) (rows r0 .. r1 of a fused kernel)."""
    j = ctl.ctypes.data + JOB * 8
    _store(j + 80, 1)
    _store(j + 88, fn)
    _store(j + 96, block)
    _store(j + 104, r0)
    _store(j + 112, r1)
    ctl[COUNTS + 1] += 1
    _store(ctl.ctypes.data + STATE * 8, 1)


@njit(nogil=True, cache=True)
def finish(ctl):
    """After the caller's own part: run the posted job here if the helper has not taken it,
    else wait until it is done."""
    base = ctl.ctypes.data
    if _swap(base + STATE * 8, 1, 2) == 1:
        _run_job(ctl)
    else:
        spins = 0
        while _load(base + STATE * 8) != 3:
            _pause()
            spins += 1
            if spins > 256:   # the helper may share our core: let it run
                _yield()
    _store(base + STATE * 8, 0)


@njit(nogil=True, cache=True)
def split(a, bp, c, n, ctl):
    """a @ w over two threads: the helper (serve) takes the second half of the panels if it
    is spinning, else the caller does it too."""
    split_at(a.ctypes.data, a.strides[0] // 4, a.shape[0], a.shape[1], bp.ctypes.data,
             c.ctypes.data, c.strides[0] // 4, n, ctl)


@njit(nogil=True, cache=True)
def split_at(a0, lda, m, depth, b0, c0, ldc, n, ctl):
    """split on addresses and element strides."""
    count = -(-n // NR)
    mid = count // 2
    base = ctl.ctypes.data
    j = base + JOB * 8
    _store(j, a0)
    _store(j + 8, lda)
    _store(j + 16, m)
    _store(j + 24, depth)
    _store(j + 32, b0)
    _store(j + 40, c0)
    _store(j + 48, ldc)
    _store(j + 56, n)
    _store(j + 64, mid)
    _store(j + 72, count)
    _store(j + 80, 0)
    ctl[COUNTS] += 1
    _store(base + STATE * 8, 1)
    panels_at(a0, lda, m, depth, b0, c0, ldc, n, 0, mid)
    finish(ctl)


_syscall = types.ExternalFunction("syscall", types.int64(types.int64, types.int64, types.int64,
                                                        types.int64, types.int64))
_FUTEX, _WAIT, _WAKE = 202, 128, 129   # SYS_futex (x86-64); FUTEX_WAIT/WAKE | PRIVATE


@njit(nogil=True, cache=True)
def wake(ctl):
    """Set RUN and wake the helper if it sleeps on it."""
    _store(ctl.ctypes.data + RUN * 8, 1)
    _syscall(_FUTEX, ctl.ctypes.data + RUN * 8, _WAKE, 1, 0)


@njit(nogil=True, cache=True)
def serve(ctl):
    """The helper thread's life, without the GIL: sleep on RUN (a futex) while it is 0; while
    it is 1, take posted jobs, spinning with pause between them and, after ~20000 idle turns,
    yielding its core at each turn (to any thread that shares it). Returns when EXIT is set."""
    base = ctl.ctypes.data
    idle = 0
    while _load(base + EXIT * 8) == 0:
        if _load(base + STATE * 8) == 1 and _swap(base + STATE * 8, 1, 2) == 1:
            _run_job(ctl)
            _store(base + STATE * 8, 3)
            idle = 0
        elif _load(base + RUN * 8) == 0:
            # (the low half of the little-endian word is 0 too; a wake or a changed value
            # returns at once)
            _syscall(_FUTEX, base + RUN * 8, _WAIT, 0, 0)
        else:
            _pause()
            idle += 1
            if idle > 20000:
                _yield()
