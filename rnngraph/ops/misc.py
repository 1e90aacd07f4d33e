"""TF1 odds and ends: range (tf.range), no_op (tf.no_op) and stop_gradient (tf.stop_gradient)."""
from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import as_dtype, is_integer
from ..ir.types import TensorType
from ..ir.value import Value
from .base import Op, apply, as_value
from .group import group
from .sources import constant


class Range(Op):
    """[start, start + delta, ...) below `limit` (above it for a negative delta); its length is
    known only at run time."""
    name, differentiable = "range", False

    def __init__(self, dtype):
        self.dtype = as_dtype(dtype).name

    def infer(self, start, limit, delta):
        for what, t in (("start", start), ("limit", limit), ("delta", delta)):
            if t.rank != 0:
                raise TypeError(f"range: {what} must be a scalar, got {t}")
        return TensorType((None,), self.dtype)

    def compute(self, xp, start, limit, delta):
        if delta == 0:
            raise ValueError("range: delta must not be 0")
        return xp.arange(start, limit, delta).astype(self.dtype)


def range(start, limit=None, delta=1, dtype=None, name="range"):  # noqa: A001 (TF's name)
    """A 1-D sequence like Python's range (tf.range(limit) or tf.range(start, limit, delta)).

    The dtype is int32 when every argument is an integer, float32 when one is a float (or
    `dtype`). With Python numbers the result is a constant of known length; with scalar
    tensors its length is known at run time."""
    if limit is None:
        start, limit = 0, start
    args = [start, limit, delta]
    if dtype is None:
        kinds = [a.dtype if isinstance(a, Value) else
                 (np.dtype(np.int32) if isinstance(a, numbers.Integral) else np.dtype(np.float32))
                 for a in args]
        dtype = np.int32 if all(is_integer(k) for k in kinds) else \
            next((k for k in kinds if not is_integer(k)), np.float32)
    dtype = as_dtype(dtype)
    if not any(isinstance(a, Value) for a in args):
        if delta == 0:
            raise ValueError("range: delta must not be 0")
        return constant(np.arange(start, limit, delta).astype(dtype), name=name)
    return apply(Range(dtype), [as_value(a, dtype) if not isinstance(a, Value) else a
                                for a in args], name=name)


def no_op(name=None):
    """An op that does nothing (tf.no_op); fetching it runs nothing."""
    return group(name=name or "NoOp")


class StopGradient(Op):
    """The identity forward; no gradient flows back through it."""
    name, differentiable = "stop_gradient", False

    def infer(self, x):
        return x

    def compute(self, xp, x):
        return x


def stop_gradient(input, name=None):  # noqa: A002 (TF's argument name)
    """`input` unchanged, as a constant for the gradient (tf.stop_gradient)."""
    return apply(StopGradient(), [as_value(input)], name=name or "StopGradient")


class Identity(Op):
    """Its first input unchanged; any further inputs are dependencies only: they are computed
    before it (so fetching the result runs them, as TF1's identity under
    control_dependencies does) and get no gradient."""
    name = "identity"
    foldable = False   # folding would drop the dependencies

    def infer(self, x, *dependencies):
        return x

    def compute(self, xp, x, *dependencies):
        return x

    def aliases_input(self, node):
        return 0   # (a view: memory plans see no copy)

    def vjp(self, node, g):
        return [g] + [None] * (len(node.inputs) - 1)

    def flops(self, node):
        return 0


def identity(input, name=None):  # noqa: A002 (TF's argument name)
    """`input` unchanged, as a new node (tf.identity)."""
    return apply(Identity(), [as_value(input)], name=name or "Identity")


def with_dependencies(dependencies, output_tensor, name=None):
    """`output_tensor` unchanged, computed only after every value in `dependencies` (TF1's
    control_flow_ops.with_dependencies: identity under control_dependencies). Fetching the
    result runs the dependencies; gradients flow to `output_tensor` only."""
    deps = [as_value(d) for d in dependencies]
    return apply(Identity(), [as_value(output_tensor)] + deps, name=name or "Identity")
