"""Candidate sampling for sampled losses (tf.nn.log_uniform_candidate_sampler): classes drawn
from the log-uniform (Zipfian) distribution P(k) = log((k + 2) / (k + 1)) / log(range_max + 1),
with the expected count of every true and sampled class, as TF computes them.

The numbers come from the counter-based generator of ops/random.py (uniforms of the node's
seed pair, the run counter and the step), so a run draws the same classes in any session.
With unique=True the sampler draws until it has `num_sampled` distinct classes; the expected
count of class k after `n` draws is then 1 - (1 - P(k)) ** n, else num_sampled * P(k).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from .base import Op, apply, as_value
from .random import _uniform, current_step, get_seed, key_of, run_counter

_BATCH = 256   # uniforms drawn per attempt (unique=True keeps drawing until it has enough)


class LogUniformCandidateSampler(Op):
    """Inputs: run counter, step, true_classes [batch, num_true] (int). Outputs: sampled
    [num_sampled] int64, true_expected_count [batch, num_true] and sampled_expected_count
    [num_sampled], float32."""
    name = "log_uniform_candidate_sampler"
    multi_output = True
    differentiable = False
    foldable = False

    def __init__(self, num_true: int, num_sampled: int, unique: bool, range_max: int,
                 seed: int, seed2: int):
        self.num_true, self.num_sampled = int(num_true), int(num_sampled)
        self.unique, self.range_max = bool(unique), int(range_max)
        self.seed, self.seed2 = int(seed), int(seed2)

    def infer(self, counter, step, true_classes):
        if true_classes.rank != 2 or np.dtype(true_classes.dtype).kind not in "iu":
            raise ShapeError(f"true_classes must be an int matrix [batch, num_true], got "
                             f"{true_classes}")
        if true_classes.shape[1] not in (None, self.num_true):
            raise ShapeError(f"true_classes has {true_classes.shape[1]} columns but num_true is "
                             f"{self.num_true}")
        return [TensorType((self.num_sampled,), np.int64),
                TensorType(true_classes.shape, np.float32),
                TensorType((self.num_sampled,), np.float32)]

    def _prob(self, xp, k):
        k = k.astype(np.float64)
        return xp.log((k + 2.0) / (k + 1.0)) / np.log(self.range_max + 1.0)

    def _classes(self, xp, u):
        k = xp.floor(xp.exp(u * np.log(self.range_max + 1.0))).astype(np.int64) - 1
        return xp.clip(k, 0, self.range_max - 1)

    def compute(self, xp, counter, step, true_classes):
        key, step, run = key_of(self.seed, self.seed2), int(step), int(counter)
        if not self.unique:
            u = _uniform(xp, self.num_sampled, np.float64, key, step, run)
            sampled, tries = self._classes(xp, u), None
        else:
            seen, order, tries, attempt = set(), [], 0, 0
            while len(order) < self.num_sampled:
                ks = np.asarray(self._classes(xp, _uniform(xp, _BATCH, np.float64, key, step,
                                                           run, attempt)))
                for k in ks.tolist():
                    tries += 1
                    if k not in seen:
                        seen.add(k)
                        order.append(k)
                        if len(order) == self.num_sampled:
                            break
                attempt += 1
            sampled = xp.asarray(order, dtype=np.int64)

        def expected(k):
            p = self._prob(xp, k)
            if tries is None:
                return (p * self.num_sampled).astype(np.float32)
            return (-xp.expm1(tries * xp.log1p(-p))).astype(np.float32)

        return sampled, expected(xp.asarray(true_classes)), expected(sampled)


def log_uniform_candidate_sampler(true_classes, num_true, num_sampled, unique, range_max,
                                  seed=None, name=None):
    """(sampled_candidates, true_expected_count, sampled_expected_count) drawn from the
    log-uniform distribution over [0, range_max) (tf.nn.log_uniform_candidate_sampler)."""
    true_classes = as_value(true_classes)
    for what, n in (("num_true", num_true), ("num_sampled", num_sampled),
                    ("range_max", range_max)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"log_uniform_candidate_sampler: {what} must be a positive int, "
                             f"got {n!r}")
    if unique and num_sampled > range_max:
        raise ValueError(f"log_uniform_candidate_sampler: cannot draw {num_sampled} unique "
                         f"classes from range_max={range_max}")
    graph_seed, op_seed = get_seed(seed)
    step = current_step()
    step = step if not isinstance(step, (int, np.integer)) else as_value(np.int32(step))
    op = LogUniformCandidateSampler(num_true, num_sampled, unique, range_max, graph_seed,
                                    op_seed)
    return tuple(apply(op, [run_counter(), step, true_classes],
                       name=name or "LogUniformCandidateSampler"))
