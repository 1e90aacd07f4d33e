"""NumPy kernels that do more than an op's reference compute: the same results, faster paths.

Each factory takes (op, node, program) and returns the callable a Program step runs, or None to
leave the op's reference compute in place. Large outputs land in buffers reused across runs
(runtime/buffer_pool.py) where the program allows it (untracked, no memory plan).
"""
from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ...kernels import ANY, register
from ...ops.elementwise import Binary, Where, with_dim_checks
from ...ops.fill import Gather, GatherGrad
from ...ops.fused import Fused
from ...ops.linalg import MatMul
from ...ops.nn import SparseSoftmaxCrossEntropy
from ...ops.rows import PermuteRows
from ...ops.scalar import ufunc
from ...ops.scatter import ScatterAddRows
from ...ops.sequence import CheckSequenceLength, CheckSteps, ReverseSequence
from ...ops.shape import Contiguous, ReshapeDynamic
from ...ops.tf1_array import Pad, Slice
from ...ops.tf1_index import BooleanMask, GatherNd, GatherNdGrad, ScatterNd
from ...ops.steps import PackRows, RowsMatMul, StepContract
from ...runtime.buffer_pool import POOL_MIN_BYTES, output_pool, pooled, pooled_alloc, pooled_copy
from .fused import numpy_kernel

CPU = "numpy"


@register(Fused, CPU)
def fused_kernel(op, node, program):
    return numpy_kernel(op, node, program.ctx.xp)


@register(Binary, ANY)
def binary(op, node, program):
    xp = program.ctx.xp
    if type(op).compute is Binary.compute:  # the ufunc itself: no Python frame per call
        fn = ufunc(op, xp)
    else:
        compute = op.compute
        fn = lambda a, b: compute(xp, a, b)  # noqa: E731
    return with_dim_checks(fn, node)


@register(Where, ANY)
def where(op, node, program):
    return with_dim_checks(program.ctx.xp.where, node)


@register(ReshapeDynamic, ANY)
@register(Slice, ANY)
@register(Pad, ANY)
def checked_sizes(op, node, program):
    """The reference compute, a run-time size it refuses (a reshape's target, a slice outside
    its input, a reflection wider than its axis) reported with the node and the user's line
    (an InvalidArgumentError, as TF1's)."""
    xp, compute = program.ctx.xp, op.compute
    return _naming_node(lambda *args: compute(xp, *args), node)


def _naming_node(fn, node, catch=(InvalidArgumentError,)):
    """fn, raising what it raises of `catch` as an InvalidArgumentError that names the node
    and the user's line that built it (as TF1's kernels raise InvalidArgumentError)."""
    where = node.describe()

    def run(*args):
        try:
            return fn(*args)
        except catch as exc:
            raise InvalidArgumentError(f"{where} failed: {exc}") from None
    return run


@register(Gather, ANY)
@register(GatherGrad, ANY)
@register(ScatterAddRows, ANY)
@register(GatherNd, ANY)
@register(GatherNdGrad, ANY)
@register(ScatterNd, ANY)
@register(BooleanMask, ANY)
def index_checked(op, node, program):
    """Ids outside [0, rows) raise InvalidArgumentError (ops/fill.check_ids), naming the node
    (also gather_nd/scatter_nd index rows outside the shape, a boolean_mask of another shape)."""
    xp, compute = program.ctx.xp, op.compute
    return _naming_node(lambda *args: compute(xp, *args), node)


@register(SparseSoftmaxCrossEntropy, ANY)
def sparse_xent(op, node, program):
    """A label outside [0, classes), or labels and logits of other shapes, found at run time:
    InvalidArgumentError (TF1's), naming the node; the op's compute raises ValueError."""
    xp, compute = program.ctx.xp, op.compute
    return _naming_node(lambda labels, logits: compute(xp, labels, logits), node,
                        catch=(ValueError,))


@register(ReverseSequence, ANY)
def reverse_sequence(op, node, program):
    """Each length must lie in [0, size of seq_axis] and there must be one per batch row, as
    TF1 checks (NumPy would index out of bounds, or past the row); InvalidArgumentError."""
    xp, compute, check, where = program.ctx.xp, op.compute, op.check, node.describe()

    def run(x, lengths):
        check(where, x, lengths)
        return compute(xp, x, lengths)
    return run


@register(MatMul, CPU)
def matmul(op, node, program):
    """Large products land in a buffer reused across runs; small ones (a loop's per-step
    products) take the shortest path."""
    pool = output_pool(program)
    if pool is None:
        return None
    xp = program.ctx.xp
    compute = op.compute
    mm = xp.matmul
    small = POOL_MIN_BYTES // 8   # output elements never pooled (itemsize <= 8)

    def run(a, b):
        if a.ndim == 2 and b.ndim == 2 and a.shape[0] * b.shape[1] < small:
            if SERIAL_MNK < a.size * b.shape[1] <= SPLIT_MAX_MNK and a.dtype == b.dtype:
                return by_columns(a, b)
            return mm(a, b)   # a loop's per-step product: no checks
        if b.ndim != 2 or a.ndim < 2 or a.dtype != b.dtype or a.shape[-1] != b.shape[0]:
            return compute(xp, a, b)   # (which reports a mismatch)
        k, n = b.shape
        m = a.size // k if k else 0
        if not pooled(pool, program, m * n * a.itemsize):
            return compute(xp, a, b)   # under the pool's threshold: no bookkeeping
        out = pool.get(0, (m, n), a.dtype)
        if a.ndim > 2 and not a.flags.c_contiguous:   # (a time-major view of x): copied
            a = pooled_copy(pool, 1, a)   # into a reused buffer, no page faults
        return mm(a.reshape(m, k), b, out=out).reshape(a.shape[:-1] + (n,))
    # (the rule above, for compiled loops that must split a step's product the same way)
    run.column_split = (SERIAL_MNK, SPLIT_MAX_MNK, small, _BLOCK_ALIGN)
    return run


# OpenBLAS runs a product on its calling thread alone when m*n*k is at most this (its default
# GEMM_MULTITHREAD_THRESHOLD of 4 x 65536); above it, it wakes its other threads. For a loop's
# smallest per-step products that costs more than it saves ([16, 128] @ [128, 512]: 37 us on two
# threads, 21 us on one, on the project's 2-core machine), and under CPU oversubscription the
# woken threads wait for a core (milliseconds a product). Products of SERIAL_MNK < m*n*k <=
# SPLIT_MAX_MNK are computed as two column halves: each is then on one thread (up to 2^19) or
# split by OpenBLAS in a way that wastes less (LSTM S3's [16, 128] @ [128, 512]: halves 10%
# faster forward+backward than four one-thread blocks, which were 18% faster than the whole
# product); more blocks cost more in calls than they save (S2's [32, 150] @ [150, 600] in 13
# blocks: LSTM S2 1.7x slower on a calm host; docs/performance.md). Nothing global changes.
SERIAL_MNK = 1 << 18
SPLIT_MAX_MNK = 4 * SERIAL_MNK
_BLOCK_ALIGN = 16         # block widths in whole AVX-512 float32 vectors


def by_columns(a, b):
    """a @ b as a times each column half of b (widths in whole vectors), into one result; the
    plain product where b is too narrow to split or the operands do not match."""
    m, k = a.shape
    n = b.shape[1]
    width = -(-n // (2 * _BLOCK_ALIGN)) * _BLOCK_ALIGN
    if width >= n or b.shape[0] != k or a.dtype.kind != "f":
        return np.matmul(a, b)   # (which reports a mismatch)
    out = np.empty((m, n), a.dtype)
    np.matmul(a, b[:, :width], out=out[:, :width])
    np.matmul(a, b[:, width:], out=out[:, width:])
    return out


@register(Contiguous, CPU)
def contiguous(op, node, program):
    if program.tracked:
        return None   # (the reference: x passes through, as the byte model of the tracked
        # programs memory plans run counts it)
    pool = output_pool(program)

    def run(x):
        if x.flags.c_contiguous:
            return x
        if pooled(pool, program, x.nbytes):
            return pooled_copy(pool, 0, x)
        return np.ascontiguousarray(x)   # (small: from malloc's heap)
    return run


@register(PermuteRows, ANY)
def permute_rows(op, node, program):
    xp, axis = program.ctx.xp, op.axis
    where = node.describe()
    alloc = pooled_alloc(program)

    def permute(x, perm):
        op.check(where, x, perm)
        if x.shape[axis] > 1 and x.strides[axis] == 0:
            return x  # every row is one (a broadcast, such as the gradient of a sum): no copy
        # An order that is already the identity (equal or sorted lengths) is still copied:
        # the order is data, known only at run time, and a run's memory then depends on its
        # shapes alone, so the peak a plan predicts for them is the one every batch measures
        if alloc is None:
            return xp.take(x, perm, axis=axis)
        outer = xp.moveaxis(x, axis, 0)
        if axis and outer.flags.c_contiguous:
            # `axis` is outermost in memory (a time-major view of batch-major input): move
            # whole contiguous rows and return the same kind of view
            out = alloc(outer.shape, x.dtype)
            return xp.moveaxis(xp.take(outer, perm, axis=0, out=out, mode="clip"), 0, axis)
        # into a reused buffer ('clip': a permutation is in range, and numpy buffers a take
        # into `out` under the default 'raise')
        return xp.take(x, perm, axis=axis, out=alloc(x.shape, x.dtype), mode="clip")
    return permute


@register(CheckSequenceLength, ANY)
def check_sequence_length(op, node, program):
    where = f"sequence_length checked by {node.describe()}"

    def check(lengths, max_time, batch):
        lengths_h = np.asarray(lengths if not hasattr(lengths, "get") else lengths.get())
        if lengths_h.shape[0] != int(batch):
            raise InvalidArgumentError(
                f"sequence_length has {lengths_h.shape[0]} entries but the inputs have batch "
                f"size {int(batch)} ({where})")
        bad = np.nonzero((lengths_h < 0) | (lengths_h > int(max_time)))[0]
        if bad.size:
            i = int(bad[0])
            raise InvalidArgumentError(
                f"sequence_length[{i}] = {int(lengths_h[i])} is outside [0, max_time = "
                f"{int(max_time)}] ({where})")
        return lengths
    return check


@register(CheckSteps, ANY)
def check_steps(op, node, program):
    """A streamed per-step value must have the loop's steps (ops/sequence.py); fed and like may
    be host handles (ops/host_rows.py): their shapes only are read."""
    what = node.name.rsplit("/streamed/", 1)[0]

    def check(x, fed, like):
        if fed.shape[0] != like.shape[0]:
            raise InvalidArgumentError(
                f"'{what}' has {fed.shape[0]} steps but the loop reading it per step runs "
                f"over {like.shape[0]} ({node.describe()}): incompatible shapes, as the "
                "whole-tensor op that reads it would have found")
        return x
    return check


@register(StepContract, ANY)
def step_contract(op, node, program):
    xp, alloc = program.ctx.xp, pooled_alloc(program)
    return lambda *args: op.compute(xp, *args, alloc=alloc)


@register(RowsMatMul, ANY)
def rows_matmul(op, node, program):
    """The result (and the packed rows) land in reused buffers."""
    xp, alloc, ctx = program.ctx.xp, pooled_alloc(program), program.ctx
    # loops run full width when tracked or under a memory plan: then zero every row
    loops_shrink = op.only_loops_read and alloc is not None and not op.unsort
    return lambda x, w, rows, *rest: op.compute(xp, x, w, rows, *rest, alloc=alloc,
                                                loops_only=loops_shrink and ctx.plan is None)


@register(PackRows, ANY)
def pack_rows(op, node, program):
    xp, alloc = program.ctx.xp, pooled_alloc(program)
    if alloc is None:
        # (tracked, or CuPy: a fresh buffer each run) of the stack's whole size, as the pool
        # keys its buffer, the active rows a prefix of it: the bytes follow the shapes, not
        # the lengths, so the peak a plan predicts for them is the one every batch measures
        def alloc(shape, dtype, slot=0):
            return xp.empty(shape, dtype)
    ctx = program.ctx   # (under a plan a copy even when every row is active: as predicted)
    return lambda stack, rows, *perm: op.compute(xp, stack, rows, *perm, alloc=alloc,
                                                 copy=ctx.plan is not None)
