"""Layers with TF1's signatures: tf.layers.dense and tf.contrib.layers.fully_connected.

Each call makes its variables in a fresh variable scope named like TF1 does: `dense`, `dense_1`,
... (or `name`, `name_1`, ...) unless `reuse` is set, when it uses exactly `name` and shares
the variables already there.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import ops
from ..errors import located
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..ops import initializers as inits
from . import scopes


def _affine(inputs, kernel):
    """inputs [..., k] @ kernel [k, n] over the last axis."""
    if inputs.type.rank == 2:
        return ops.matmul(inputs, kernel)
    lead = inputs.shape[:-1]
    if sum(d is None for d in lead) <= 1:
        flat = ops.reshape(inputs, [-1, inputs.shape[-1]])
        return ops.reshape(ops.matmul(flat, kernel),
                           [d if d is not None else -1 for d in lead] + [kernel.shape[1]])
    return ops.matmul(inputs, kernel)


def _unsupported(fn, **given):
    for arg, val in given.items():
        if val is not None:
            raise NotImplementedError(f"{fn}: the argument {arg}= is not supported by rnngraph "
                                      f"(got {val!r})")


def _checked(inputs, units, fn: str, arg: str):
    """inputs as a Value whose last dimension is known; `units` a positive int."""
    inputs = ops.as_value(inputs)
    if inputs.type.rank < 1 or inputs.shape[-1] is None:
        raise ValueError(f"{fn}: the last dimension of the inputs must be known, got "
                         f"{inputs.type}")
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(f"{fn}: {arg} must be a positive int, got {units!r}")
    return inputs


def _layer_scope(name, default, reuse):
    if reuse is True or reuse is scopes.AUTO_REUSE:
        return scopes.variable_scope(name or default, reuse=reuse)
    return scopes.variable_scope(None, default_name=name or default, reuse=reuse)


@located
def dense(inputs, units: int, activation=None, use_bias: bool = True, kernel_initializer=None,
          bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
          activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
          trainable: bool = True, name: str | None = None, reuse=None):
    """A fully connected layer over the last axis (tf.layers.dense):
    activation(inputs @ kernel + bias), making `<scope>/kernel` [in, units] (glorot-uniform
    by default) and `<scope>/bias` [units] (zeros by default)."""
    _unsupported("dense", kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                 activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                 bias_constraint=bias_constraint)
    inputs = _checked(inputs, units, "dense", "units")
    with _layer_scope(name, "dense", reuse):
        kernel = scopes.get_variable("kernel", [inputs.shape[-1], units], inputs.dtype,
                                     kernel_initializer, trainable=trainable)
        y = _affine(inputs, kernel)
        if use_bias:
            y = y + scopes.get_variable("bias", [units], inputs.dtype,
                                        bias_initializer if bias_initializer is not None
                                        else inits.Zeros(), trainable=trainable)
        return activation(y) if activation is not None else y


@located
def fully_connected(inputs, num_outputs, activation_fn=ops.relu, normalizer_fn=None,
                    normalizer_params=None, weights_initializer=None, weights_regularizer=None,
                    biases_initializer=inits.Zeros(), biases_regularizer=None, reuse=None,
                    variables_collections=None, outputs_collections=None, trainable=True,
                    scope=None):
    """tf.contrib.layers.fully_connected: activation_fn(inputs @ weights + biases) with
    `<scope>/weights` (glorot-uniform) and `<scope>/biases` (zeros; none when
    biases_initializer is None); the default scope is "fully_connected", made unique. The
    default activation is ReLU; pass activation_fn=None for a linear layer."""
    _unsupported("fully_connected", normalizer_fn=normalizer_fn,
                 normalizer_params=normalizer_params, weights_regularizer=weights_regularizer,
                 biases_regularizer=biases_regularizer,
                 variables_collections=variables_collections,
                 outputs_collections=outputs_collections)
    inputs = _checked(inputs, num_outputs, "fully_connected", "num_outputs")
    if reuse and scope is None:
        raise ValueError("fully_connected: reuse=True cannot be used without a scope")
    ctx = scopes.variable_scope(scope, default_name="fully_connected", reuse=reuse)
    with ctx:
        w = scopes.get_variable("weights", [inputs.shape[-1], num_outputs], inputs.dtype,
                                weights_initializer, trainable=trainable)
        y = _affine(inputs, w)
        if biases_initializer is not None:
            y = y + scopes.get_variable("biases", [num_outputs], inputs.dtype,
                                        biases_initializer, trainable=trainable)
        return activation_fn(y) if activation_fn is not None else y




@located
def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False, name=None):
    """tf.layers.dropout: the inputs unchanged unless `training` is True (a Python bool) or a
    scalar bool tensor that is true when the graph runs; then each entry is zeroed with
    probability `rate` and the others scaled by 1 / (1 - rate), as rg.nn.dropout(x, rate=rate).
    The defaults differ from rg.nn.dropout's: TF1's layer drops nothing unless told it is
    training. With training=False (a Python bool) no random op is built, as in TF1."""
    from .dropout import dropout as nn_dropout   # (imported here: dropout imports cells)
    if isinstance(training, Value):
        if training.type.rank != 0 or training.dtype != np.bool_:
            raise TypeError(f"dropout: training must be a Python bool or a scalar bool tensor, "
                            f"got {training!r}")
    elif not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"dropout: training must be a Python bool or a scalar bool tensor, got "
                        f"{training!r}")
    if not isinstance(rate, Value) and (isinstance(rate, bool) or not isinstance(
            rate, numbers.Real) or not 0.0 <= float(rate) < 1.0):
        raise ValueError(f"dropout: rate must be a number in [0, 1) or a float scalar tensor, "
                         f"got {rate!r}")
    inputs = ops.as_value(inputs)
    if training is False or training is np.False_:
        return ops.identity(inputs, name=name)
    with get_default_graph().name_scope(name or "dropout"):
        dropped = nn_dropout(inputs, noise_shape=noise_shape, seed=seed, rate=rate)
        return dropped if not isinstance(training, Value) else \
            ops.where(training, dropped, inputs)
