"""Layers with TF1's signatures: tf.layers.dense (and the tf.layers.Dense object) and
tf.contrib.layers.fully_connected.

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
    by default) and `<scope>/bias` [units] (zeros by default). kernel_regularizer /
    bias_regularizer add their losses to REGULARIZATION_LOSSES when the variables are made."""
    _unsupported("dense", activity_regularizer=activity_regularizer,
                 kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
    inputs = _checked(inputs, units, "dense", "units")
    with _layer_scope(name, "dense", reuse):
        kernel = scopes.get_variable("kernel", [inputs.shape[-1], units], inputs.dtype,
                                     kernel_initializer, regularizer=kernel_regularizer,
                                     trainable=trainable)
        y = _affine(inputs, kernel)
        if use_bias:
            y = y + scopes.get_variable("bias", [units], inputs.dtype,
                                        bias_initializer if bias_initializer is not None
                                        else inits.Zeros(), regularizer=bias_regularizer,
                                        trainable=trainable)
        return activation(y) if activation is not None else y


class Dense:
    """The fully connected layer as an object (tf.layers.Dense): `layer(inputs)` computes
    activation(inputs @ kernel + bias) as rg.layers.dense does. The first call makes the
    variables in a fresh variable scope (`dense`, `dense_1`, ... or `name`, `name_1`, ... in
    the scope current then) and every later call uses the same ones, wherever it is made;
    their inputs must have the same last dimension. `kernel`, `bias` (None without use_bias),
    `variables` and `trainable_variables` are set by the first call; `built` says whether it
    happened. kernel_regularizer / bias_regularizer add their losses when the variables are
    made; activity_regularizer and the constraints are not supported."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 trainable=True, name=None, **kwargs):
        _unsupported("Dense", activity_regularizer=activity_regularizer,
                     kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        kwargs.pop("dtype", None)   # (the variables take the inputs' dtype, as dense's)
        reuse = kwargs.pop("_reuse", None)
        for arg in kwargs:
            raise TypeError(f"Dense: unexpected keyword argument {arg!r}")
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        if activation is not None and not callable(activation):
            raise TypeError(f"Dense: activation must be a function or None, got {activation!r}")
        self.units = int(units)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.trainable = bool(trainable)
        self.name = name
        self._reuse = reuse
        self.kernel = self.bias = None
        self.built = False

    @property
    def variables(self) -> list:
        return [v for v in (self.kernel, self.bias) if v is not None]

    weights = variables

    @property
    def trainable_variables(self) -> list:
        return self.variables if self.trainable else []

    trainable_weights = trainable_variables

    @property
    def non_trainable_variables(self) -> list:
        return [] if self.trainable else self.variables

    @located
    def __call__(self, inputs):
        inputs = _checked(inputs, self.units, "Dense", "units")
        if not self.built:
            with _layer_scope(self.name, "dense", self._reuse):
                self.kernel = scopes.get_variable(
                    "kernel", [inputs.shape[-1], self.units], inputs.dtype,
                    self.kernel_initializer, regularizer=self.kernel_regularizer,
                    trainable=self.trainable)
                if self.use_bias:
                    self.bias = scopes.get_variable(
                        "bias", [self.units], inputs.dtype,
                        self.bias_initializer if self.bias_initializer is not None
                        else inits.Zeros(), regularizer=self.bias_regularizer,
                        trainable=self.trainable)
            self.built = True
        elif inputs.shape[-1] != self.kernel.shape[0] or inputs.dtype != self.kernel.dtype:
            raise ValueError(f"Dense: this layer was built for inputs [..., "
                             f"{self.kernel.shape[0]}] of {self.kernel.dtype}, got "
                             f"{inputs.type}")
        y = _affine(inputs, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y

    apply = __call__   # (TF1 layers' layer.apply(inputs))

    def __repr__(self):
        return f"<rg.layers.Dense units={self.units} built={self.built}>"


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
