"""Tensors made from a shape (zeros, ones, fill; sizes may be runtime Values) and gather."""
from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype, is_integer
from ..errors import InvalidArgumentError, ShapeError
from ..ir.types import TensorType, fmt_shape
from ..ir.value import Value
from .base import Op, apply, as_value


class Fill(Op):
    """A tensor of `shape` filled with `value`. Each None in `shape` is read at run time from the
    next input (a scalar int), so fill([rg.dim(x, 0), 4], 0.0) tracks x's batch size."""
    name, differentiable = "fill", False

    def __init__(self, shape, value, dtype):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = as_dtype(dtype).name
        self.value = np.dtype(self.dtype).type(value).item()  # plain Python scalar

    def infer(self, *dims):
        if any(d is not None and d < 0 for d in self.shape):
            raise ShapeError(f"sizes must be >= 0, got {fmt_shape(self.shape)}")
        for t in dims:
            if t.rank != 0 or not is_integer(t.dtype):
                raise TypeError(f"a runtime size must be a scalar int tensor, got {t}")
        return TensorType(self.shape, self.dtype)

    def compute(self, xp, *dims):
        runtime = iter(dims)
        shape = tuple(int(next(runtime)) if d is None else d for d in self.shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"negative size in runtime shape {shape}")
        return xp.full(shape, self.value, dtype=self.dtype)


def _scatter_add(xp, out, indices, updates):
    """out[indices] += updates, accumulating repeated indices (numpy and cupy spell it apart)."""
    if xp.__name__ == "numpy":
        xp.add.at(out, indices, updates)
    else:
        import cupyx   # optional: CuPy, only for arrays on the GPU
        cupyx.scatter_add(out, indices, updates)
    return out


def check_ids(xp, indices, rows: int, what: str) -> None:
    """Raise InvalidArgumentError unless every id in `indices` lies in [0, rows), as TF1's CPU
    kernels do (NumPy would read a negative id from the end, and the gradient's add.at would
    train the row it wraps to). One comparison and one reduction over the ids (signed ids
    viewed as unsigned: a negative one is then >= rows); the culprit is looked up on failure
    only. The runtime's kernel (backends/numpy/kernels.py) adds the node and the user's line."""
    if indices.size == 0:
        return
    dt = np.dtype(indices.dtype)
    unsigned = indices.view(np.dtype(f"u{dt.itemsize}")) if dt.kind == "i" else indices
    if not bool((unsigned >= rows).any()):
        return
    flat = xp.reshape(indices, (-1,))
    host = np.asarray(flat.get() if hasattr(flat, "get") else flat)
    k = int(np.nonzero((host < 0) | (host >= rows))[0][0])
    at = "[" + ",".join(str(i) for i in np.unravel_index(k, tuple(indices.shape))) + "]" \
        if indices.ndim else ""
    raise InvalidArgumentError(f"{what}: indices{at} = {int(host[k])} is not in [0, {rows})")


class Gather(Op):
    """params[indices] along axis 0 (embedding lookup): shape indices.shape + params.shape[1:]."""
    name = "gather"

    def infer(self, params, indices):
        if params.rank == 0:
            raise ShapeError("params must have rank >= 1, got a scalar")
        if not is_integer(indices.dtype):
            raise TypeError(f"indices must be integers, got {indices.dtype}")
        return TensorType(indices.shape + params.shape[1:], params.dtype)

    def compute(self, xp, params, indices):
        check_ids(xp, indices, params.shape[0], "gather")
        return xp.take(params, indices, axis=0)

    def vjp(self, node, g):
        params, indices = node.inputs
        return [apply(GatherGrad(), [g, indices, params]), None]


class GatherGrad(Op):
    """gather_grad(g, indices, params): zeros like params with each row of g added at its index."""
    name = "gather_grad"

    def infer(self, g, indices, params):
        return TensorType(params.shape, g.dtype)

    def compute(self, xp, g, indices, params):
        check_ids(xp, indices, params.shape[0], "gather_grad")
        return _scatter_add(xp, xp.zeros(params.shape, dtype=g.dtype), indices, g)

    def vjp(self, node, g):
        return [gather(g, node.inputs[1]), None, None]


# --- builders ------------------------------------------------------------------------------------
def _shape_args(shape):
    """Split a shape list into its static form (None for Values) and the runtime size inputs."""
    if isinstance(shape, (int, np.integer, Value)):
        shape = [shape]
    static, dims = [], []
    for d in shape:
        if isinstance(d, Value):
            static.append(None)
            dims.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)):
            static.append(int(d))
        else:
            raise TypeError(f"shape entries must be ints or scalar int Values, got {d!r}")
    return static, dims


def fill(shape, value, dtype=None, name=None):
    """A tensor of `shape` (ints and/or scalar int Values such as rg.dim(x, 0)) holding `value`.
    dtype defaults to float32 for floats, int32 for ints, bool for bools."""
    if dtype is None:
        dtype = (value.dtype if isinstance(value, np.generic) else   # (TF1 keeps NumPy's)
                 np.bool_ if isinstance(value, (bool, np.bool_)) else
                 np.int32 if isinstance(value, (int, np.integer)) else np.float32)
    static, dims = _shape_args(shape)
    return apply(Fill(static, value, dtype), dims, name=name)


def zeros(shape, dtype=np.float32, name=None):
    """A tensor of zeros; `shape` entries are ints or scalar int Values (runtime sizes)."""
    return fill(shape, 0, dtype, name=name)


def ones(shape, dtype=np.float32, name=None):
    """A tensor of ones; `shape` entries are ints or scalar int Values (runtime sizes)."""
    return fill(shape, 1, dtype, name=name)


def gather(params, indices, name=None):
    """Rows of `params` picked by int `indices` (tf.gather on axis 0, e.g. embedding lookup);
    the gradient adds up rows picked more than once."""
    return apply(Gather(), [params, as_value(indices)], name=name)
