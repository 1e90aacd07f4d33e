"""Gradient clipping (TF1's tf.clip_by_global_norm, tf.clip_by_norm, tf.clip_by_value).

The clipped gradients are elementwise products of the gradients and one scalar factor, so the
fuse pass folds that multiply into the optimizer's update arithmetic: clipping costs one norm
per step, not another pass over every gradient.

An embedding's gradient is, in TF1, an IndexedSlices: one row per id looked up, repeated ids
not summed, and tf.global_norm measures those rows. rnngraph's gradient of a gather is the
dense sum (gather_grad); where a gradient is one (or TF1's aggregation of several: their rows
concatenated), the norm is measured on the rows gather_grad adds, as TF1 does. With a repeated
id the two differ: ids [0, 0] with rows g, g give 2g^2 summed over the row, not 4g^2.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import user_location
from ..ir.value import Value
from ..ops.base import as_value
from ..ops.fill import GatherGrad


def _clip_norm(clip_norm, what, dtype):
    if isinstance(clip_norm, Value):
        if clip_norm.type.rank != 0:
            raise ValueError(f"{what}: clip_norm must be a scalar, got {clip_norm.type} "
                             f"(at {user_location()})")
        return ops.cast(clip_norm, dtype)
    if isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float, np.number)) or \
            not clip_norm > 0:
        raise ValueError(f"{what}: clip_norm must be > 0, got {clip_norm!r} "
                         f"(at {user_location()})")
    return as_value(np.asarray(clip_norm, dtype=dtype))


def global_norm(t_list, name=None):
    """sqrt(sum of squares of every entry of every tensor in t_list); None entries skipped."""
    present = [as_value(t) for t in t_list if t is not None]
    if not present:
        raise ValueError(f"global_norm: t_list holds no tensor (at {user_location()})")
    dtype = present[0].dtype
    parts = [_sum_of_squares(t, dtype) for t in present]
    return ops.sqrt(parts[0] if len(parts) == 1 else ops.add_n(parts), name=name)


def _sum_of_squares(t: Value, dtype):
    """sum(t^2), or, where t is what TF1 keeps as an IndexedSlices, the sum of the squares of
    its rows (_slices)."""
    rows = _slices(t)
    if rows is None:
        return ops.reduce_sum(ops.square(ops.cast(t, dtype)))
    parts = []
    for values, scale in rows:
        part = ops.reduce_sum(ops.square(ops.cast(values, dtype)))
        parts.append(part if scale is None else part * ops.square(ops.cast(scale, dtype)))
    return parts[0] if len(parts) == 1 else ops.add_n(parts)


def _slices(t: Value):
    """[(rows, scalar factor or None), ...] when `t` is a gradient TF1 holds as an IndexedSlices
    (a gather_grad; the gradients' sum of several, TF1 concatenating their rows; one of those
    times a scalar, as clip_by_global_norm returns it), else None (a dense tensor: TF1 sums an
    IndexedSlices and a Tensor into a Tensor)."""
    n = t.node
    if isinstance(n.op, GatherGrad):
        return [(n.inputs[0], None)]
    if n.op.name in ("add", "add_n") and n.is_gradient and \
            all(x.type.shape == t.type.shape for x in n.inputs):
        found = [_slices(x) for x in n.inputs]
        return None if any(f is None for f in found) else [p for f in found for p in f]
    if n.op.name == "mul" and len(n.inputs) == 2:
        for a, b in (n.inputs, n.inputs[::-1]):
            if b.type.rank == 0 and a.type.shape == t.type.shape:
                inner = _slices(a)
                return None if inner is None else \
                    [(v, b if s is None else s * b) for v, s in inner]
    return None


def clip_by_global_norm(t_list, clip_norm, use_norm=None, name=None):
    """(list clipped, global norm): each t times clip_norm / max(global_norm, clip_norm), so
    the list's global norm is at most clip_norm. None entries stay None."""
    if isinstance(t_list, Value) or not isinstance(t_list, (list, tuple)):
        raise TypeError(f"clip_by_global_norm: t_list must be a list of tensors, got "
                        f"{type(t_list).__name__} (at {user_location()})")
    t_list = list(t_list)
    norm = global_norm(t_list) if use_norm is None else as_value(use_norm)
    dtype = norm.dtype
    c = _clip_norm(clip_norm, "clip_by_global_norm", dtype)
    scale = c / ops.maximum(norm, c)
    out = [None if t is None else as_value(t) * ops.cast(scale, as_value(t).dtype)
           for t in t_list]
    return out, norm


def clip_by_norm(t, clip_norm, axes=None, name=None):
    """t * clip_norm / max(l2norm(t, axes), clip_norm): the L2 norm over `axes` (all by
    default) at most clip_norm."""
    t = as_value(t)
    c = _clip_norm(clip_norm, "clip_by_norm", t.dtype)
    if axes is None:
        norm = ops.sqrt(ops.reduce_sum(ops.square(t)))
    else:
        norm = ops.sqrt(ops.reduce_sum(ops.square(t), axis=axes, keepdims=True))
    return t * (c / ops.maximum(norm, c))


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """`t` clamped into [clip_value_min, clip_value_max] elementwise (tf.clip_by_value, TF1's
    argument names); the gradient passes where t is inside."""
    return ops.clip_by_value(t, clip_value_min, clip_value_max, name=name)
