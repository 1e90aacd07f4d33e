"""Weight regularizers (tf.contrib.layers.l1_regularizer / l2_regularizer / apply_regularization)
and what get_variable(regularizer=...) does with one: the loss of a new variable joins the
REGULARIZATION_LOSSES collection, which rg.losses.get_regularization_loss() sums and
rg.losses.get_total_loss() adds.

    reg = rg.contrib.layers.l2_regularizer(1e-4)
    w = rg.get_variable("w", [3, 4], regularizer=reg)        # adds 1e-4 * sum(w**2) / 2
    loss = data_loss + rg.losses.get_regularization_loss()
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import ops
from ..errors import user_location
from ..ir.graph import get_default_graph
from ..ops.graph_keys import GraphKeys, add_to_collection, get_collection


def _scale(what, scale):
    if isinstance(scale, numbers.Integral) and not isinstance(scale, bool):
        raise ValueError(f"{what} at {user_location()}: scale cannot be an integer: {scale}")
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
        raise TypeError(f"{what} at {user_location()}: scale must be a float, got {scale!r}")
    if scale < 0.0:
        raise ValueError(f"{what} at {user_location()}: setting a scale less than 0 on a "
                         f"regularizer: {scale}")
    return float(scale)


def l2_regularizer(scale, scope=None):
    """A function weights -> scale * sum(weights**2) / 2 (tf.contrib.layers.l2_regularizer,
    scale * tf.nn.l2_loss(weights)); with scale 0 it gives None (no loss), as TF1's."""
    scale = _scale("l2_regularizer", scale)
    if scale == 0.0:
        return lambda _: None

    def l2(weights):
        weights = ops.as_value(weights)
        with get_default_graph().name_scope(scope or "l2_regularizer"):
            half_sq = ops.multiply(ops.reduce_sum(ops.square(weights)), 0.5)
            return ops.multiply(half_sq, ops.constant(np.asarray(scale, weights.dtype)),
                                name="value")
    return l2


def l1_regularizer(scale, scope=None):
    """A function weights -> scale * sum(|weights|) (tf.contrib.layers.l1_regularizer); with
    scale 0 it gives None."""
    scale = _scale("l1_regularizer", scale)
    if scale == 0.0:
        return lambda _: None

    def l1(weights):
        weights = ops.as_value(weights)
        with get_default_graph().name_scope(scope or "l1_regularizer"):
            return ops.multiply(ops.reduce_sum(ops.abs(weights)),
                                ops.constant(np.asarray(scale, weights.dtype)), name="value")
    return l1


def add_regularization_loss(var, regularizer):
    """get_variable's regularizer=: build regularizer(var) in the root graph (a variable made
    inside a loop body is a root value; its loss must be too) under `<var>/Regularizer`, and
    add it to REGULARIZATION_LOSSES unless it is None. Returns the loss (or None)."""
    if not callable(regularizer):
        raise TypeError(f"get_variable at {user_location()}: regularizer must be a function "
                        f"weights -> loss, got {regularizer!r}")
    root = var.graph.root
    with root.as_default(), root.absolute_scope(f"{var.node.name}/Regularizer"):
        loss = regularizer(var)
        if loss is not None:
            add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)
    return loss


def apply_regularization(regularizer, weights_list=None):
    """The sum of regularizer(w) over `weights_list` (default: the WEIGHTS collection), added to
    REGULARIZATION_LOSSES (tf.contrib.layers.apply_regularization); 0.0 when no weight gives a
    loss."""
    if weights_list is None:
        weights_list = get_collection(GraphKeys.WEIGHTS)
    weights_list = list(weights_list)
    if not weights_list:
        raise ValueError(f"apply_regularization at {user_location()}: no weights to regularize")
    losses = [loss for loss in (regularizer(w) for w in weights_list) if loss is not None]
    if not losses:
        return ops.constant(np.float32(0.0))
    total = ops.add_n(losses, name="get_regularization_penalty")
    add_to_collection(GraphKeys.REGULARIZATION_LOSSES, total)
    return total


__all__ = ["apply_regularization", "l1_regularizer", "l2_regularizer"]
