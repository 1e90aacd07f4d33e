"""Learning-rate schedules as one small op each: the closed form of the rate at a global step.

One node per schedule, reading the global step (an int scalar) and the base learning rate (a
float scalar, so it may itself be a tensor): `rg.train.exponential_decay(...)` and friends
build them. Not differentiable (nothing trains through a learning rate). The math is computed
in float64 and returned in the base rate's dtype.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from .base import Op

KINDS = ("exponential", "polynomial", "cosine", "piecewise")


class LearningRateSchedule(Op):
    """kind 'exponential': lr * rate ** (step / steps)   (floor of the ratio with staircase)
    kind 'polynomial':  (lr - end) * (1 - s / d) ** power + end, s = min(step, d), d = steps
                       (cycle: d = steps * ceil(step / steps), at least steps)
    kind 'cosine':      lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, steps) / steps)) + alpha)
    kind 'piecewise':   values[i] for the first boundary b[i] with step <= b[i], else values[-1]
                       (lr is unused: give 0)"""
    name = "lr_schedule"
    differentiable = False

    def __init__(self, kind: str, decay_steps: float = 1.0, decay_rate: float = 1.0,
                 staircase: bool = False, end: float = 0.0, power: float = 1.0,
                 cycle: bool = False, alpha: float = 0.0, boundaries=(), values=()):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.decay_steps, self.decay_rate = float(decay_steps), float(decay_rate)
        self.staircase, self.cycle = bool(staircase), bool(cycle)
        self.end, self.power, self.alpha = float(end), float(power), float(alpha)
        self.boundaries = tuple(float(b) for b in boundaries)
        self.values = tuple(float(v) for v in values)

    def infer(self, step, lr):
        if step.rank != 0 or np.dtype(step.dtype).kind not in "iuf":
            raise ShapeError(f"global_step must be a scalar number, got {step}")
        if lr.rank != 0 or np.dtype(lr.dtype).kind != "f":
            raise ShapeError(f"learning_rate must be a float scalar, got {lr}")
        return TensorType((), lr.dtype)

    def rate(self, step: float, lr: float) -> float:
        """The closed form, on Python floats."""
        if self.kind == "exponential":
            p = step / self.decay_steps
            return lr * self.decay_rate ** (math.floor(p) if self.staircase else p)
        if self.kind == "polynomial":
            d = self.decay_steps
            if self.cycle:
                d = d * max(1.0, math.ceil(step / d))
            else:
                step = min(step, d)
            return (lr - self.end) * (1.0 - step / d) ** self.power + self.end
        if self.kind == "cosine":
            s = min(step, self.decay_steps)
            cosine = 0.5 * (1.0 + math.cos(math.pi * s / self.decay_steps))
            return lr * ((1.0 - self.alpha) * cosine + self.alpha)
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def compute(self, xp, step, lr):
        return xp.asarray(self.rate(float(step), float(lr)), dtype=lr.dtype)

    def vjp(self, node, g):
        return [None, None]
