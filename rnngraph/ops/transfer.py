"""Moving a value to host memory and back: what the spill_values pass (passes/spill_values.py)
inserts where a memory plan offloads a large intermediate between its early and late readers.

  to_host(x)    -> x, held in host memory: a handle on a host copy of x (device bytes: none)
  to_device(h)  -> x again, a new device array copied from the host handle `h` (a to_host value)
  to_device(h, axis, index)
                -> x's slice `index` along `axis` (what unstack(x, axis)[index] is), copied alone:
                   a fed sequence the plan leaves in host memory reaches the device one step
                   at a time

Both are the identity on values; what differs is where the value lives. The runtime's kernels
(runtime/transfer.py) copy through the device's host buffers (Device.host_empty,
copy_to_host, copy_to_device): the device's byte meter counts a to_device result like any array
and never the handle, which holds no device buffer. The memory model (memory/simulate.py)
counts the same. The NumPy reference `compute` of both is the identity.

A to_host value is meant for to_device nodes only: the verifier refuses a to_device node whose
input is not a to_host value, and the spill pass never makes another node read one.
"""
from __future__ import annotations

import numpy as np

from ..errors import GradientError, ShapeError, VerificationError
from ..ir.types import TensorType, fmt_shape
from .base import Op, apply


class ToHost(Op):
    """x kept in host memory (a handle; no device bytes) until a to_device brings it back."""
    name = "to_host"
    foldable = False   # (folding would put a constant where the plan wants a host copy)

    def infer(self, x):
        return x

    def compute(self, xp, x):
        return x

    def vjp(self, node, g):
        # the identity's gradient (the pass runs after autodiff; this keeps rg.gradients of a
        # graph built with to_host / to_device by hand meaningful)
        return [g]

    def flops(self, node):
        return 0


class ToDevice(Op):
    """The value of a to_host handle, copied back into a new device array (with `axis` and
    `index`: only its slice `index` along `axis`)."""
    name = "to_device"
    foldable = False

    def __init__(self, axis: int | None = None, index: int | None = None):
        if (axis is None) != (index is None):
            raise ValueError("to_device takes both axis and index, or neither")
        for what, x in (("axis", axis), ("index", index)):
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, np.integer))):
                raise TypeError(f"to_device's {what} must be an int or None, got {x!r}")
        self.axis = None if axis is None else int(axis)
        self.index = None if index is None else int(index)

    def infer(self, h):
        if self.axis is None:
            return h
        if not -h.rank <= self.axis < h.rank:
            raise ShapeError(f"axis {self.axis} is out of range for {fmt_shape(h.shape)}")
        axis = self.axis % h.rank
        n = h.shape[axis]
        if self.index < 0 or (n is not None and self.index >= n):
            raise ShapeError(f"index {self.index} is out of range for axis {axis} of "
                             f"{fmt_shape(h.shape)}")
        return TensorType(h.shape[:axis] + h.shape[axis + 1:], h.dtype)

    def compute(self, xp, h):
        if self.axis is None:
            return xp.array(h, copy=True)
        return xp.array(h[(slice(None),) * (self.axis % h.ndim) + (self.index,)], copy=True)

    def vjp(self, node, g):
        if self.axis is None:
            return [g]
        raise GradientError(f"no gradient through the sliced to_device {node.describe()}: the "
                            "spill_values pass builds it after gradients are taken (take "
                            "gradients of the graph before it)")

    def flops(self, node):
        return 0

    def verify(self, node):
        """The verifier's check (ir/verify.py): one input, a to_host value of the same type."""
        if len(node.inputs) != 1 or len(node.outputs) != 1:
            raise VerificationError(f"{node.name}: to_device takes one input and gives one "
                                    "output")
        h = node.inputs[0]
        if h.node.op.name != "to_host":
            raise VerificationError(f"{node.name}: to_device reads {h.name}, made by "
                                    f"{h.node.op.name}, not by to_host")
        want = self.infer(h.type)
        if want != node.outputs[0].type:
            raise VerificationError(f"{node.name}: output type {node.outputs[0].type} differs "
                                    f"from {want}, what its input {h.type} gives")


def to_host(x, name=None):
    """`x` held in host memory until a `to_device` of it (what the spill_values pass builds)."""
    return apply(ToHost(), [x], name=name)


def to_device(h, axis=None, index=None, name=None):
    """The device copy of `h`, a `to_host` value (given `axis` and `index`: of its slice
    `index` along `axis` only)."""
    if getattr(getattr(h, "node", None), "op", None) is None or h.node.op.name != "to_host":
        raise TypeError(f"to_device takes a to_host value, got {getattr(h, 'name', h)!r}")
    return apply(ToDevice(axis, index), [h], name=name)
