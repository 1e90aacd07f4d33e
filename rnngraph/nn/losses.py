"""Losses and metrics returning scalar Values (means over the batch)."""
from __future__ import annotations

import numpy as np

from .. import ops


def sparse_softmax_cross_entropy(labels, logits):
    """Mean over the batch of -log softmax(logits)[label]."""
    return ops.reduce_mean(ops.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                        logits=logits))


def mean_squared_error(labels, predictions):
    return ops.reduce_mean(ops.square(ops.subtract(predictions, labels)))


def in_top_k(predictions, targets, k: int = 1):
    """Bool [batch]: is the target among the top-k predictions (only k=1 is supported)."""
    if k != 1:
        raise NotImplementedError("in_top_k supports k=1")
    return ops.equal(ops.argmax(predictions, axis=-1), ops.cast(targets, np.int64))


def accuracy(labels, logits):
    """Fraction of rows whose argmax equals the label (a float32 scalar)."""
    return ops.reduce_mean(ops.cast(in_top_k(logits, labels), np.float32))
