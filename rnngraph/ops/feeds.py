"""placeholder_with_default: a value that is `input` unless the run feeds it (TF1's
tf.placeholder_with_default), so one graph trains (keep_prob fed 0.8) and evaluates (the
default 1.0)."""
from __future__ import annotations

from ..errors import ShapeError, user_location
from ..ir.types import TensorType, fmt_shape
from .base import Op, apply, as_value


class PlaceholderWithDefault(Op):
    """Passes its input through; its static `shape` (which may be looser than the default's,
    e.g. None for a batch) is what a fed value must fit."""
    name = "placeholder_with_default"
    foldable = False   # the value is the default only when nothing is fed

    def __init__(self, shape):
        self.shape = tuple(None if d is None else int(d) for d in shape)

    def infer(self, default):
        if len(self.shape) != default.rank or any(
                s is not None and d is not None and s != d
                for s, d in zip(self.shape, default.shape)):
            raise ShapeError(f"the default {default} does not fit shape {fmt_shape(self.shape)}")
        return TensorType(self.shape, default.dtype)

    def compute(self, xp, default):
        return default

    def vjp(self, node, g):
        return [g]


def placeholder_with_default(input, shape, name=None):
    """A value equal to `input` unless fed: tf.placeholder_with_default(input, shape).
    `shape` may hold None for sizes the fed value chooses."""
    if shape is None:
        raise ValueError(f"placeholder_with_default: shape must be given (at {user_location()})")
    default = as_value(input)
    return apply(PlaceholderWithDefault(list(shape)), [default],
                 name=name or "PlaceholderWithDefault")
