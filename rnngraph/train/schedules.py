"""The global step and learning-rate schedules (TF1's tf.train.exponential_decay and friends).

    global_step = rg.train.get_or_create_global_step()
    lr = rg.train.exponential_decay(0.1, global_step, decay_steps=100, decay_rate=0.96)
    train_op = rg.train.GradientDescentOptimizer(lr).minimize(loss, global_step=global_step)

Each schedule is one node (ops/schedules.py) computing its closed form from the global step.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import user_location
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..ops import initializers as inits
from ..ops.base import apply, as_value
from ..ops.schedules import LearningRateSchedule

GLOBAL_STEP = "global_step"   # the root graph's collection, as TF1's GraphKeys.GLOBAL_STEP


def get_global_step(graph=None):
    """The graph's global step variable, or None when it has none."""
    root = (graph or get_default_graph()).root
    found = root.collections.get(GLOBAL_STEP)
    return found[0] if found else None


def create_global_step(graph=None):
    """Make the graph's global step: a non-trainable int64 scalar variable `global_step`
    starting at 0, which `minimize(..., global_step=)` increments once per training step."""
    root = (graph or get_default_graph()).root
    if get_global_step(root) is not None:
        raise ValueError("the graph already has a global step (use get_or_create_global_step)")
    with root.as_default(), root.absolute_scope(""):
        step = ops.get_variable("global_step", [], np.int64, inits.Zeros(), trainable=False)
    root.collections[GLOBAL_STEP] = [step]
    return step


def get_or_create_global_step(graph=None):
    """The graph's global step, made on first use (tf.train.get_or_create_global_step)."""
    step = get_global_step(graph)
    return step if step is not None else create_global_step(graph)


def _number(x, what, positive=False, nonneg=False):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number, got {x!r} (at {user_location()})")
    if positive and not x > 0:
        raise ValueError(f"{what} must be > 0, got {x!r} (at {user_location()})")
    if nonneg and not x >= 0:
        raise ValueError(f"{what} must be >= 0, got {x!r} (at {user_location()})")
    return float(x)


def _step(global_step, what):
    if global_step is None:
        raise ValueError(f"{what}: global_step is required (rg.train.get_or_create_global_step())"
                         f" (at {user_location()})")
    step = as_value(global_step)
    if step.type.rank != 0 or np.dtype(step.dtype).kind not in "iuf":
        raise TypeError(f"{what}: global_step must be a scalar number, got {step.type} "
                        f"(at {user_location()})")
    return step


def _rate(learning_rate, what):
    if isinstance(learning_rate, Value):
        if learning_rate.type.rank != 0 or np.dtype(learning_rate.dtype).kind != "f":
            raise TypeError(f"{what}: learning_rate must be a float scalar, got "
                            f"{learning_rate.type} (at {user_location()})")
        return learning_rate
    return as_value(_number(learning_rate, f"{what}: learning_rate", nonneg=True), np.float32)


def exponential_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                      name=None):
    """learning_rate * decay_rate ** (global_step / decay_steps), the exponent floored with
    `staircase` (tf.train.exponential_decay)."""
    what = "exponential_decay"
    op = LearningRateSchedule(
        "exponential", decay_steps=_number(decay_steps, f"{what}: decay_steps", positive=True),
        decay_rate=_number(decay_rate, f"{what}: decay_rate", nonneg=True),
        staircase=bool(staircase))
    return apply(op, [_step(global_step, what), _rate(learning_rate, what)],
                 name=name or "ExponentialDecay")


def polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate=0.0001,
                     power=1.0, cycle=False, name=None):
    """(learning_rate - end) * (1 - step / decay_steps) ** power + end, the step held at
    decay_steps (or, with `cycle`, decay_steps stretched to the next multiple past the step)."""
    what = "polynomial_decay"
    op = LearningRateSchedule(
        "polynomial", decay_steps=_number(decay_steps, f"{what}: decay_steps", positive=True),
        end=_number(end_learning_rate, f"{what}: end_learning_rate", nonneg=True),
        power=_number(power, f"{what}: power", nonneg=True), cycle=bool(cycle))
    return apply(op, [_step(global_step, what), _rate(learning_rate, what)],
                 name=name or "PolynomialDecay")


def cosine_decay(learning_rate, global_step, decay_steps, alpha=0.0, name=None):
    """learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) /
    decay_steps)) + alpha) (tf.train.cosine_decay)."""
    what = "cosine_decay"
    alpha = _number(alpha, f"{what}: alpha", nonneg=True)
    if alpha > 1:
        raise ValueError(f"{what}: alpha must be in [0, 1], got {alpha} (at {user_location()})")
    op = LearningRateSchedule(
        "cosine", decay_steps=_number(decay_steps, f"{what}: decay_steps", positive=True),
        alpha=alpha)
    return apply(op, [_step(global_step, what), _rate(learning_rate, what)],
                 name=name or "CosineDecay")


def piecewise_constant(x, boundaries, values, name=None):
    """values[0] while x <= boundaries[0], values[1] while x <= boundaries[1], ...,
    values[-1] past the last boundary (tf.train.piecewise_constant). Boundaries must
    increase strictly; there is one more value than boundaries."""
    what = "piecewise_constant"
    boundaries = [_number(b, f"{what}: boundaries[{i}]") for i, b in enumerate(boundaries)]
    if any(isinstance(v, Value) for v in values):
        raise TypeError(f"{what}: values must be numbers here (a tensor value is not "
                        f"supported) (at {user_location()})")
    values = [_number(v, f"{what}: values[{i}]") for i, v in enumerate(values)]
    if any(b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:])):
        raise ValueError(f"{what}: boundaries must be strictly increasing, got {boundaries} "
                         f"(at {user_location()})")
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"{what}: values needs one more entry than boundaries, got "
                         f"{len(values)} values for {len(boundaries)} boundaries "
                         f"(at {user_location()})")
    op = LearningRateSchedule("piecewise", boundaries=boundaries, values=values)
    return apply(op, [_step(x, what), as_value(np.float32(0))], name=name or "PiecewiseConstant")
