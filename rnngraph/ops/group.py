"""group(*values): one value that, when fetched, runs all of them (TF1's tf.group)."""
from __future__ import annotations

import numpy as np

from ..ir.types import TensorType
from .base import Op, apply


class Group(Op):
    name = "group"
    differentiable = False

    def infer(self, *inputs):
        return TensorType((), np.bool_)

    def compute(self, xp, *inputs):
        return np.True_


def group(*values, name=None):
    """A value depending on every value given; fetch it to run them all (e.g. a train op)."""
    flat = []
    for v in values:
        flat.extend(v if isinstance(v, (list, tuple)) else [v])
    return apply(Group(), flat, name=name or "group")
