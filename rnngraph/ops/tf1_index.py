"""TF1 indexing ops: boolean_mask, gather_nd, scatter_nd, cumsum, reverse (tf.reverse with a list
of axes), and the to_float / to_int32 / to_int64 / to_double casts.

As TF 1.15's CPU kernels, an index outside its dimension (negative ones too) is an
InvalidArgumentError naming the op (the kernel registered in backends/numpy/kernels.py adds the
node and the user's line); scatter_nd adds up updates sent to the same position. boolean_mask's
leading result dim is data-dependent (None; the memory planner counts a known mask's entries).
Gradients: gather_nd's is a scatter of the cotangent (gather_nd_grad), scatter_nd's w.r.t. its
updates a gather_nd of it, boolean_mask's scatters the rows back (boolean_mask_grad). One
definition serves NumPy and CuPy (`compute(xp, ...)`).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import is_integer
from ..errors import InvalidArgumentError, ShapeError, located
from ..ir.types import TensorType, fmt_shape
from ..ir.value import Value
from .base import Op, apply, as_value
from .elementwise import cast
from .fill import _scatter_add, _shape_args
from .shape import _axis_in, dim


def _size(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _flat_positions(xp, indices, dims, what: str, word: str):
    """The row-major position in dims[:q] of each index row of `indices` ([..., q]): int64 of
    shape [prod(indices.shape[:-1])]. An index row outside `dims` (a negative entry too) is an
    InvalidArgumentError naming `what` and the row, as TF1's CPU kernels raise."""
    q = indices.shape[-1]
    rows = indices.reshape(_size(indices.shape[:-1]), q)   # (-1 fails for q = 0)
    if rows.shape[0] and q:
        limits = xp.asarray(np.asarray(dims[:q], dtype=np.int64))
        bad = (rows < 0) | (rows >= limits)
        if bool(bad.any()):
            host_bad = np.asarray(bad.get() if hasattr(bad, "get") else bad)
            host = np.asarray(rows.get() if hasattr(rows, "get") else rows)
            r = int(np.nonzero(host_bad.any(axis=1))[0][0])
            lead = tuple(indices.shape[:-1])
            at = "[" + ",".join(str(i) for i in np.unravel_index(r, lead)) + "]" if lead else ""
            raise InvalidArgumentError(
                f"{what}: indices{at} = [{', '.join(str(int(v)) for v in host[r])}] does not "
                f"index into {word} shape [{','.join(str(int(d)) for d in dims)}]")
    if not q:
        return xp.zeros((rows.shape[0],), dtype=np.int64)
    strides = np.ones(q, dtype=np.int64)
    for j in range(q - 2, -1, -1):
        strides[j] = strides[j + 1] * int(dims[j + 1])
    return (rows.astype(np.int64) * xp.asarray(strides)).sum(axis=1)


def _check_indices(indices: TensorType, what: str = "indices") -> int:
    """The index depth q (indices' last dim), which must be known when the graph is built."""
    if not is_integer(indices.dtype):
        raise TypeError(f"{what} must be int32 or int64, got {indices.dtype}")
    if indices.rank < 1:
        raise ShapeError(f"{what} must have rank >= 1, got a scalar")
    q = indices.shape[-1]
    if q is None:
        raise ShapeError(f"the last dim of {what} (the index depth) must be known when the "
                         f"graph is built, got {fmt_shape(indices.shape)}")
    return q


def _compatible(a, b) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


# --- gather_nd / scatter_nd -----------------------------------------------------------------------
class GatherNd(Op):
    """tf.gather_nd: the slices params[indices[i, :q]] (q = indices.shape[-1] <= params.rank),
    shaped indices.shape[:-1] + params.shape[q:]."""
    name = "gather_nd"

    def infer(self, params, indices):
        q = _check_indices(indices)
        if params.rank < 1:
            raise ShapeError("params must have rank >= 1, got a scalar")
        if q > params.rank:
            raise ShapeError(f"the index depth {q} (indices' last dim) must be at most the rank "
                             f"of params {fmt_shape(params.shape)}")
        return TensorType(indices.shape[:-1] + params.shape[q:], params.dtype)

    def compute(self, xp, params, indices):
        q = indices.shape[-1]
        pos = _flat_positions(xp, indices, params.shape, "gather_nd", "param")
        rest = tuple(params.shape[q:])
        flat = params.reshape((_size(params.shape[:q]),) + rest)
        return xp.take(flat, pos, axis=0).reshape(tuple(indices.shape[:-1]) + rest)

    def vjp(self, node, g):
        params, indices = node.inputs
        return [apply(GatherNdGrad(), [g, indices, params]), None]


class GatherNdGrad(Op):
    """gather_nd_grad(g, indices, params): zeros like params with each slice of g added at its
    index (scatter_nd of g into params' shape: repeated indices add up)."""
    name = "gather_nd_grad"
    shape_inputs = (2,)

    def infer(self, g, indices, params):
        return TensorType(params.shape, g.dtype)

    def compute(self, xp, g, indices, params):
        return _scatter_nd(xp, indices, g, tuple(params.shape), "gather_nd_grad", "param")

    def vjp(self, node, gg):
        return [gather_nd(gg, node.inputs[1]), None, None]

    def flops(self, node):
        return 0


def _scatter_nd(xp, indices, updates, shape: tuple, what: str, word: str):
    """zeros(shape) with updates[i] added at indices[i] (repeated indices add up)."""
    q = indices.shape[-1]
    rest = tuple(shape[q:])
    want = tuple(indices.shape[:-1]) + rest
    if tuple(updates.shape) != want:
        raise InvalidArgumentError(f"{what}: updates of shape {list(updates.shape)} must have "
                                   f"shape {list(want)} (indices.shape[:-1] + shape[{q}:] for "
                                   f"indices {list(indices.shape)} and shape {list(shape)})")
    if _size(shape) == 0 and indices.size:
        raise InvalidArgumentError(f"{what}: indices and updates given for the empty output "
                                   f"shape {list(shape)}")
    pos = _flat_positions(xp, indices, shape, what, word)
    out = xp.zeros(shape, dtype=updates.dtype)
    _scatter_add(xp, out.reshape((_size(shape[:q]),) + rest), pos,
                 updates.reshape((pos.shape[0],) + rest))
    return out


class ScatterNd(Op):
    """tf.scatter_nd: zeros of `shape` with updates[i] added at indices[i, :q] (repeated
    indices add up). Each None in `shape` is read at run time from the next input after
    indices and updates (a scalar int), as fill's."""
    name = "scatter_nd"

    def __init__(self, shape):
        self.shape = tuple(None if d is None else int(d) for d in shape)

    def infer(self, indices, updates, *dims):
        q = _check_indices(indices)
        if any(d is not None and d < 0 for d in self.shape):
            raise ShapeError(f"shape must hold sizes >= 0, got {fmt_shape(self.shape)}")
        if q > len(self.shape):
            raise ShapeError(f"the index depth {q} (indices' last dim) must be at most the rank "
                             f"of shape {fmt_shape(self.shape)}")
        want = indices.shape[:-1] + self.shape[q:]
        if not _compatible(updates.shape, want):
            raise ShapeError(f"updates must have shape indices.shape[:-1] + shape[{q}:] = "
                             f"{fmt_shape(want)}, got {fmt_shape(updates.shape)}")
        for t in dims:
            if t.rank != 0 or not is_integer(t.dtype):
                raise TypeError(f"a runtime size must be a scalar int tensor, got {t}")
        return TensorType(self.shape, updates.dtype)

    def compute(self, xp, indices, updates, *dims):
        runtime = iter(dims)
        shape = tuple(int(next(runtime)) if d is None else d for d in self.shape)
        if any(d < 0 for d in shape):
            raise InvalidArgumentError(f"scatter_nd: negative size in shape {list(shape)}")
        return _scatter_nd(xp, indices, updates, shape, "scatter_nd", "output")

    def vjp(self, node, g):
        indices = node.inputs[0]
        return [None, gather_nd(g, indices)] + [None] * (len(node.inputs) - 2)

    def flops(self, node):
        return 0


# --- boolean_mask ---------------------------------------------------------------------------------
def _kept(xp, mask):
    """The flat positions of the mask's True entries (integer indices rather than the bool
    mask itself: CuPy indexes with those along any axis, beside slices, as NumPy does)."""
    return xp.flatnonzero(mask)


def _masked_view_shape(shape, axis: int, k: int) -> tuple:
    """shape with its axes [axis, axis + k) merged into one."""
    return tuple(shape[:axis]) + (_size(shape[axis:axis + k]),) + tuple(shape[axis + k:])


class BooleanMask(Op):
    """tf.boolean_mask: the entries of x whose mask entry is True, the mask's k axes lying at
    x's axes [axis, axis + k) and merged into one of data-dependent length (None)."""
    name = "boolean_mask"

    def __init__(self, axis=0):
        self.axis = int(axis)

    def infer(self, x, mask):
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be bool, got {mask.dtype}")
        k, a = mask.rank, self.axis
        if k == 0:
            raise ShapeError("mask cannot be a scalar")
        if a < 0 or a + k > x.rank:
            raise ShapeError(f"a mask of rank {k} at axis {a} does not fit in tensor "
                             f"{fmt_shape(x.shape)}")
        if not _compatible(x.shape[a:a + k], mask.shape):
            raise ShapeError(f"mask {fmt_shape(mask.shape)} must match the tensor's axes "
                             f"{a}..{a + k - 1}: {fmt_shape(x.shape[a:a + k])}")
        return TensorType(x.shape[:a] + (None,) + x.shape[a + k:], x.dtype)

    def compute(self, xp, x, mask):
        a, k = self.axis, mask.ndim
        if tuple(x.shape[a:a + k]) != tuple(mask.shape):
            raise InvalidArgumentError(f"boolean_mask: mask of shape {list(mask.shape)} does not "
                                       f"match axes {a}..{a + k - 1} of the tensor's shape "
                                       f"{list(x.shape)}")
        return xp.take(x.reshape(_masked_view_shape(x.shape, a, k)), _kept(xp, mask), axis=a)

    def vjp(self, node, g):
        x, mask = node.inputs
        return [apply(BooleanMaskGrad(self.axis), [g, mask, x]), None]

    def flops(self, node):
        return 0


class BooleanMaskGrad(Op):
    """boolean_mask_grad(g, mask, x): zeros like x with g's rows put back where mask is True."""
    name = "boolean_mask_grad"
    shape_inputs = (2,)

    def __init__(self, axis=0):
        self.axis = int(axis)

    def infer(self, g, mask, x):
        return TensorType(x.shape, g.dtype)

    def compute(self, xp, g, mask, x):
        out = xp.zeros(x.shape, dtype=g.dtype)
        view = out.reshape(_masked_view_shape(x.shape, self.axis, mask.ndim))   # (out's buffer)
        view[(slice(None),) * self.axis + (_kept(xp, mask),)] = g   # (distinct positions)
        return out

    def vjp(self, node, gg):
        _, mask, _ = node.inputs
        return [apply(BooleanMask(self.axis), [gg, mask]), None, None]

    def flops(self, node):
        return 0


# --- cumsum, reverse ------------------------------------------------------------------------------
class Cumsum(Op):
    """tf.cumsum: running sums along `axis`; `exclusive` leaves out each entry itself (the first
    is 0), `reverse` sums from the end."""
    name = "cumsum"

    def __init__(self, axis=0, exclusive=False, reverse=False):
        self.axis = int(axis)
        self.exclusive = bool(exclusive)
        self.reverse = bool(reverse)

    def infer(self, x):
        if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.number)):
            raise TypeError(f"x must be a number type, got {x.dtype}")
        _axis_in(self.axis, x.rank)   # (a scalar has no axis: ShapeError)
        return TensorType(x.shape, x.dtype)

    def compute(self, xp, x):
        a = self.axis % x.ndim
        y = xp.flip(x, a) if self.reverse else x
        c = xp.cumsum(y, axis=a, dtype=x.dtype)
        if self.exclusive and x.shape[a]:
            first = [slice(None)] * x.ndim
            first[a] = slice(0, 1)
            rest = [slice(None)] * x.ndim
            rest[a] = slice(0, -1)
            c = xp.concatenate([xp.zeros_like(c[tuple(first)]), c[tuple(rest)]], axis=a)
        return xp.flip(c, a).copy() if self.reverse else c   # (a buffer of its own, no view)

    def vjp(self, node, g):
        return [apply(Cumsum(self.axis, self.exclusive, not self.reverse), [g])]


class Reverse(Op):
    """tf.reverse (reverse_v2): x with the order of its entries reversed along each of `axis`."""
    name = "reverse"

    def __init__(self, axis=()):
        self.axis = tuple(int(a) for a in axis)

    def infer(self, x):
        axes = [_axis_in(a, x.rank) for a in self.axis]
        if len(set(axes)) != len(axes):
            raise ShapeError(f"axis {list(self.axis)} names an axis more than once")
        return TensorType(x.shape, x.dtype)

    def compute(self, xp, x):
        return xp.flip(x, tuple(a % x.ndim for a in self.axis)).copy()   # (a buffer, no view)

    def vjp(self, node, g):
        return [apply(Reverse(self.axis), [g])]

    def flops(self, node):
        return 0


# --- builders -------------------------------------------------------------------------------------
def _static_int(what: str, v) -> int:
    if isinstance(v, Value):
        raise TypeError(f"{what} must be an int known when the graph is built, got a tensor "
                        f"{v!r}")
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {v!r}")
    return int(v)


@located
def boolean_mask(tensor, mask, name=None, axis=None):
    """tf.boolean_mask: the entries of `tensor` where the bool `mask` (rank k >= 1, matching
    tensor's axes [axis, axis + k)) is True; those k axes become one of data-dependent length.
    axis (default 0) is an int known when the graph is built, >= 0 as in TF 1.15."""
    axis = 0 if axis is None else _static_int("boolean_mask: axis", axis)
    if axis < 0:
        raise ValueError(f"boolean_mask: axis must be >= 0 (TF 1.15 takes no negative axis), "
                         f"got {axis}")
    tensor = as_value(tensor)
    mask = as_value(np.asarray(mask) if not isinstance(mask, Value) else mask)
    return apply(BooleanMask(axis), [tensor, mask], name=name)


@located
def gather_nd(params, indices, name=None, batch_dims=0):
    """tf.gather_nd: slices of `params` at the index rows of int `indices` ([..., q], q <=
    params.rank), shaped indices.shape[:-1] + params.shape[q:]. An index outside params is an
    InvalidArgumentError (TF1's CPU kernel). batch_dims: only 0."""
    if batch_dims != 0:
        raise ValueError(f"gather_nd: batch_dims={batch_dims} is not supported (only 0)")
    return apply(GatherNd(), [as_value(params), as_value(indices)], name=name)


@located
def scatter_nd(indices, updates, shape, name=None):
    """tf.scatter_nd: zeros of `shape` with updates[i] added at index row indices[i] (repeated
    indices add up). `shape`: a list of ints and/or scalar int tensors, or a 1-D int tensor of
    known length such as rg.shape(x)."""
    if isinstance(shape, Value):
        if shape.type.rank != 1 or shape.shape[0] is None or not is_integer(shape.dtype):
            raise TypeError(f"scatter_nd: shape must be a 1-D int tensor of known length, got "
                            f"{shape!r}")
        if shape.node.op.name == "shape":   # rg.shape(x): x's static dims, the rest at run time
            x = shape.node.inputs[0]
            shape = [d if d is not None else dim(x, i) for i, d in enumerate(x.shape)]
        else:
            shape = [shape[i] for i in range(shape.shape[0])]
    elif isinstance(shape, np.ndarray):
        shape = shape.tolist()
    try:
        static, dims = _shape_args(shape)
    except TypeError as exc:
        raise TypeError(f"scatter_nd: {exc}") from None
    return apply(ScatterNd(static), [as_value(indices), as_value(updates)] + dims, name=name)


@located
def cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    """tf.cumsum: the cumulative sum of x along `axis` (an int known when the graph is built);
    exclusive=True starts each sum at 0 (leaves the entry out), reverse=True sums from the end."""
    axis = _static_int("cumsum: axis", axis)
    return apply(Cumsum(axis, exclusive, reverse), [as_value(x)], name=name)


@located
def reverse(tensor, axis, name=None):
    """tf.reverse (TF 1.15's reverse_v2): `tensor` reversed along each axis in the list `axis`
    (ints known when the graph is built; negative ones count from the end)."""
    if isinstance(axis, Value):
        raise TypeError("reverse: axis must be a list of ints known when the graph is built, "
                        "got a tensor")
    axes = [axis] if isinstance(axis, numbers.Integral) else list(np.asarray(axis).reshape(-1))
    axes = [_static_int("reverse: axis", int(a) if isinstance(a, np.integer) else a)
            for a in axes]
    return apply(Reverse(axes), [as_value(tensor)], name=name)


def to_float(x, name=None):
    """tf.to_float: x cast to float32."""
    return cast(x, np.float32, name=name)


def to_double(x, name=None):
    """tf.to_double: x cast to float64."""
    return cast(x, np.float64, name=name)


def to_int32(x, name=None):
    """tf.to_int32: x cast to int32 (floats truncated toward 0)."""
    return cast(x, np.int32, name=name)


def to_int64(x, name=None):
    """tf.to_int64: x cast to int64 (floats truncated toward 0)."""
    return cast(x, np.int64, name=name)

