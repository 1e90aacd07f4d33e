"""Gradient clipping (TF1's tf.clip_by_global_norm, tf.clip_by_norm, tf.clip_by_value).

The clipped gradients are elementwise products of the gradients and one scalar factor, so the
fuse pass folds that multiply into the optimizer's update arithmetic: clipping costs one norm
per step, not another pass over every gradient.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import user_location
from ..ir.value import Value
from ..ops.base import as_value


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
    parts = [ops.reduce_sum(ops.square(ops.cast(t, dtype))) for t in present]
    return ops.sqrt(parts[0] if len(parts) == 1 else ops.add_n(parts), name=name)


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


clip_by_value = ops.clip_by_value
