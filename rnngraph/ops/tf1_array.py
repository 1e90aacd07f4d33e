"""TF1 array ops that porting code reaches for: tile, pad (CONSTANT, REFLECT, SYMMETRIC),
slice(x, begin, size), bias_add / xw_plus_b, and gather along any axis.

Each op holds static attributes only (multiples, paddings, begin/size are Python ints, as the
ops' shape rules need them); one definition serves NumPy and CuPy (`compute(xp, ...)`).
"""
from __future__ import annotations

import builtins

import numpy as np

from ..errors import InvalidArgumentError, ShapeError, user_location
from ..ir.types import TensorType, fmt_shape
from ..ir.value import Value
from .base import Op, apply, as_value
from .elementwise import add
from .fill import gather as gather_rows
from .linalg import matmul
from .shape import GetitemGrad, _axis_in, getitem, reshape, transpose


def _ints(what, values, rank=None) -> tuple:
    """A static list of ints (the TF1 argument given as a Python list, tuple or array)."""
    if isinstance(values, Value):
        raise TypeError(f"{what} must be a list of ints known when the graph is built, got a "
                        f"tensor {values!r}")
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"{what} must hold ints, got {values!r}")
    out = tuple(int(v) for v in arr.reshape(-1)) if rank is None else \
        tuple(tuple(int(v) for v in row) for row in arr.reshape(-1, rank))
    return out


# --- tile ----------------------------------------------------------------------------------------
class Tile(Op):
    """x repeated `multiples[i]` times along each axis i (tf.tile)."""
    name = "tile"

    def __init__(self, multiples):
        self.multiples = tuple(int(m) for m in multiples)

    def infer(self, x):
        if len(self.multiples) != x.rank:
            raise ShapeError(f"multiples {list(self.multiples)} must have one entry per axis of "
                             f"{fmt_shape(x.shape)}")
        if any(m < 0 for m in self.multiples):
            raise ShapeError(f"multiples must be >= 0, got {list(self.multiples)}")
        return TensorType(tuple(None if d is None else d * m
                                for d, m in zip(x.shape, self.multiples)), x.dtype)

    def compute(self, xp, x):
        return xp.tile(x, self.multiples)

    def vjp(self, node, g):
        return [apply(TileGrad(self.multiples), [g, node.inputs[0]])]


class TileGrad(Op):
    """tile_grad(g, x): g summed over its tiles, shaped like x (tile's gradient)."""
    name = "tile_grad"

    def __init__(self, multiples):
        self.multiples = tuple(int(m) for m in multiples)

    def infer(self, g, x):
        return TensorType(x.shape, g.dtype)

    def compute(self, xp, g, x):
        split = []
        for m, d in zip(self.multiples, x.shape):
            split += [m, d]
        summed = xp.reshape(g, split).sum(axis=tuple(range(0, 2 * x.ndim, 2)))
        return xp.asarray(summed, dtype=g.dtype)

    def vjp(self, node, g):
        return [tile(g, self.multiples), None]


# --- pad -----------------------------------------------------------------------------------------
_py_slice = builtins.slice   # (this module defines tf.slice)
_PAD_MODES = {"CONSTANT": "constant", "REFLECT": "reflect", "SYMMETRIC": "symmetric"}


def _reflect_index(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Indices outside [0, n) folded back in, as numpy's reflect/symmetric padding does."""
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        period = 2 * (n - 1)
        j = np.mod(i, period)
        return np.where(j < n, j, period - j)
    period = 2 * n
    j = np.mod(i, period)
    return np.where(j < n, j, period - 1 - j)


class Pad(Op):
    """x padded by `paddings` ((before, after) per axis) in `mode` CONSTANT (with
    `constant_values`), REFLECT (mirror, edge not repeated) or SYMMETRIC (edge repeated)."""
    name = "pad"

    def __init__(self, paddings, mode="CONSTANT", constant_values=0):
        self.paddings = tuple((int(a), int(b)) for a, b in paddings)
        self.mode = str(mode).upper()
        self.constant_values = constant_values.item() if hasattr(constant_values, "item") \
            else constant_values

    def infer(self, x):
        if len(self.paddings) != x.rank:
            raise ShapeError(f"paddings {[list(p) for p in self.paddings]} must have one "
                             f"(before, after) pair per axis of {fmt_shape(x.shape)}")
        if self.mode not in _PAD_MODES:
            raise ValueError(f"mode must be one of CONSTANT, REFLECT, SYMMETRIC, got "
                             f"{self.mode!r}")
        if any(a < 0 or b < 0 for a, b in self.paddings):
            raise ShapeError(f"paddings must be >= 0, got {[list(p) for p in self.paddings]}")
        if self.mode != "CONSTANT":
            limit = 1 if self.mode == "REFLECT" else 0
            for i, ((a, b), d) in enumerate(zip(self.paddings, x.shape)):
                if d is not None and max(a, b) > d - limit:
                    raise ShapeError(f"{self.mode} padding of axis {i} (size {d}) must be at "
                                     f"most {d - limit}, got {[a, b]}")
        return TensorType(tuple(None if d is None else d + a + b
                                for (a, b), d in zip(self.paddings, x.shape)), x.dtype)

    def compute(self, xp, x):
        if self.mode != "CONSTANT":
            limit = 1 if self.mode == "REFLECT" else 0
            for i, ((a, b), d) in enumerate(zip(self.paddings, x.shape)):
                if max(a, b) > d - limit:
                    raise InvalidArgumentError(f"{self.mode} padding of axis {i} (size {d}) "
                                               f"must be at most {d - limit}, got {[a, b]}")
            return xp.pad(x, self.paddings, mode=_PAD_MODES[self.mode])
        return xp.pad(x, self.paddings, mode="constant",
                      constant_values=x.dtype.type(self.constant_values))

    def vjp(self, node, g):
        if self.mode == "CONSTANT":
            return [getitem(g, tuple(_py_slice(a, -b if b else None) for a, b in self.paddings))]
        return [apply(PadGrad(self.paddings, self.mode), [g, node.inputs[0]])]


class PadGrad(Op):
    """pad_grad(g, x): the gradient of REFLECT/SYMMETRIC padding: each entry of g added to the
    input entry it was copied from (one axis at a time: padding is separable)."""
    name = "pad_grad"

    def __init__(self, paddings, mode):
        self.paddings = tuple((int(a), int(b)) for a, b in paddings)
        self.mode = str(mode).upper()

    def infer(self, g, x):
        return TensorType(x.shape, g.dtype)

    def compute(self, xp, g, x):
        out = g
        for axis, ((a, b), n) in enumerate(zip(self.paddings, x.shape)):
            if a == b == 0:
                continue
            src = _reflect_index(np.arange(-a, n + b), n, _PAD_MODES[self.mode])
            fold = np.zeros((n + a + b, n), dtype=g.dtype)   # output index -> input index
            fold[np.arange(n + a + b), src] = 1
            out = xp.moveaxis(xp.tensordot(out, xp.asarray(fold), axes=([axis], [0])), -1, axis)
        return xp.ascontiguousarray(out)


# --- slice ---------------------------------------------------------------------------------------
class Slice(Op):
    """tf.slice: the block starting at `begin` with `size` entries per axis (-1: the rest). A
    block outside the input is an error (checked when the graph is built where dims are known,
    else when it runs), never a silently shorter block."""
    name = "slice"

    def __init__(self, begin, size):
        self.begin = tuple(int(b) for b in begin)
        self.size = tuple(int(s) for s in size)

    def infer(self, x):
        if len(self.begin) != x.rank or len(self.size) != x.rank:
            raise ShapeError(f"begin {list(self.begin)} and size {list(self.size)} must have one "
                             f"entry per axis of {fmt_shape(x.shape)}")
        out = []
        for i, (b, s, d) in enumerate(zip(self.begin, self.size, x.shape)):
            if b < 0 or s < -1 or (d is not None and (b > d or (s != -1 and b + s > d))):
                raise ShapeError(f"axis {i}: begin {b} with size {s} is not inside size {d}")
            out.append(s if s != -1 else None if d is None else d - b)
        return TensorType(tuple(out), x.dtype)

    def key(self):
        return tuple(_py_slice(b, None if s == -1 else b + s) for b, s in zip(self.begin,
                                                                            self.size))

    def compute(self, xp, x):
        for i, (b, s, d) in enumerate(zip(self.begin, self.size, x.shape)):
            if b > d or (s != -1 and b + s > d):
                raise InvalidArgumentError(f"slice: axis {i}: begin {b} with size {s} is not "
                                           f"inside size {d} of shape {list(x.shape)}")
        return x[self.key()]

    def vjp(self, node, g):
        return [apply(GetitemGrad(self.key()), [g, node.inputs[0]])]

    def flops(self, node):
        return 0


# --- builders ------------------------------------------------------------------------------------
def tile(input, multiples, name=None):  # noqa: A002 (TF's argument name)
    """tf.tile: `input` repeated multiples[i] times along axis i (multiples: a list of ints)."""
    try:
        multiples = _ints("multiples", multiples)
    except TypeError as exc:
        raise TypeError(f"tile at {user_location()}: {exc}") from None
    return apply(Tile(multiples), [as_value(input)], name=name)


def pad(tensor, paddings, mode="CONSTANT", name=None, constant_values=0):
    """tf.pad: `paddings` is a [rank, 2] list of ints (before, after) per axis; mode CONSTANT
    (filled with constant_values), REFLECT or SYMMETRIC (case-insensitive, as TF1)."""
    try:
        paddings = _ints("paddings", paddings, rank=2)
        if isinstance(constant_values, Value) or np.ndim(constant_values) != 0:
            raise TypeError(f"constant_values must be a Python number, got {constant_values!r}")
        if str(mode).upper() not in _PAD_MODES:
            raise ValueError(f"mode must be one of CONSTANT, REFLECT, SYMMETRIC, got {mode!r}")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"pad at {user_location()}: {exc}") from None
    return apply(Pad(paddings, mode, constant_values), [as_value(tensor)], name=name)


def slice(input_, begin, size, name=None):  # noqa: A001 (TF's name)
    """tf.slice: the block of `input_` starting at `begin` with `size` entries per axis (-1: all
    the rest); begin and size are lists of ints."""
    try:
        begin, size = _ints("begin", begin), _ints("size", size)
    except TypeError as exc:
        raise TypeError(f"slice at {user_location()}: {exc}") from None
    return apply(Slice(begin, size), [as_value(input_)], name=name)


def bias_add(value, bias, data_format=None, name=None):
    """tf.nn.bias_add: `value` plus the 1-D `bias` along its last axis (its channel axis 1 with
    data_format 'NC...', e.g. 'NCHW')."""
    value, bias = as_value(value), as_value(bias)
    try:
        if bias.type.rank != 1:
            raise ShapeError(f"bias must be 1-D, got {bias!r}")
        if value.type.rank < 2:
            raise ShapeError(f"value must have rank >= 2, got {value!r}")
        channels_first = data_format is not None and str(data_format).startswith("NC")
        if data_format is not None and not channels_first and \
                not str(data_format).startswith("N"):
            raise ValueError(f"data_format must be like 'NHWC' or 'NCHW', got {data_format!r}")
        axis = 1 if channels_first else -1
        c, n = value.shape[axis], bias.shape[0]
        if c is not None and n is not None and c != n:
            raise ShapeError(f"bias of size {n} does not match the channel axis of "
                             f"{fmt_shape(value.shape)} (size {c})")
    except (ShapeError, ValueError) as exc:
        raise type(exc)(f"bias_add at {user_location()}: {exc}") from None
    if channels_first and value.type.rank > 2:
        bias = reshape(bias, [-1] + [1] * (value.type.rank - 2))
    return add(value, bias, name=name)


def xw_plus_b(x, weights, biases, name=None):
    """tf.nn.xw_plus_b: matmul(x, weights) + biases (a 1-D bias along the last axis)."""
    return bias_add(matmul(x, weights), biases, name=name)


def gather(params, indices, validate_indices=None, name=None, axis=None, batch_dims=0):
    """tf.gather: slices of `params` along `axis` (default 0) picked by int `indices`; the
    result's shape is params.shape[:axis] + indices.shape + params.shape[axis + 1:]."""
    del validate_indices   # (TF1 ignores it too)
    params, indices = as_value(params), as_value(indices)
    try:
        if batch_dims != 0:
            raise ValueError(f"batch_dims={batch_dims} is not supported (only 0)")
        if axis is None:
            axis = 0
        if isinstance(axis, Value):
            raise TypeError("axis must be an int known when the graph is built, got a tensor")
        axis = _axis_in(axis, max(params.type.rank, 1))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"gather at {user_location()}: {exc}") from None
    if axis == 0:
        return gather_rows(params, indices, name=name)
    rank, k = params.type.rank, indices.type.rank
    front = transpose(params, [axis] + [i for i in range(rank) if i != axis])
    picked = gather_rows(front, indices)   # indices.shape + the other axes of params
    # put the indices' axes back where `axis` was
    perm = list(range(k, k + axis)) + list(range(k)) + list(range(k + axis, k + rank - 1))
    return transpose(picked, perm, name=name)
