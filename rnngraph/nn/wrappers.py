"""Cell wrappers of TF1: ResidualWrapper, DeviceWrapper (tf.nn.rnn_cell) and
OutputProjectionWrapper (tf.contrib.rnn). DropoutWrapper is in nn/dropout.py.

ResidualWrapper and DeviceWrapper add no variable scope of their own (the wrapped cell's
variables keep their names, as in TF); OutputProjectionWrapper is a cell with its own scope
(`output_projection_wrapper/kernel`, `.../bias`, the wrapped cell inside it).
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import located
from ..ops import initializers as inits
from ..nest import flatten, pack_as
from . import scopes
from .cells import RNNCell


class _Wrapper(RNNCell):
    @located
    def __init__(self, cell, what):
        if not isinstance(cell, RNNCell):
            raise TypeError(f"{what}: cell must be an RNNCell, got {type(cell).__name__}")
        super().__init__()
        self._cell = cell

    @property
    def wrapped_cell(self):
        return self._cell

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._cell.output_size

    def zero_state(self, batch_size, dtype=np.float32):
        return self._cell.zero_state(batch_size, dtype)


class TransparentWrapper(_Wrapper):
    """A wrapper with no variables of its own: the wrapped cell's are its variables."""

    @property
    def variables(self):
        return self._cell.variables

    @property
    def trainable_variables(self):
        return self._cell.trainable_variables


class ResidualWrapper(TransparentWrapper):
    """Adds the cell's inputs to its outputs: output = inputs + cell_output (or
    residual_fn(inputs, cell_output)); the state passes through unchanged."""

    def __init__(self, cell, residual_fn=None):
        super().__init__(cell, "ResidualWrapper")
        if residual_fn is not None and not callable(residual_fn):
            raise TypeError("ResidualWrapper: residual_fn must be callable")
        self._residual_fn = residual_fn

    def __call__(self, inputs, state, scope=None):
        output, new_state = self._cell(inputs, state, scope=scope)
        if self._residual_fn is not None:
            return self._residual_fn(inputs, output), new_state
        flat_in, flat_out = flatten(inputs), flatten(output)
        if len(flat_in) != len(flat_out):
            raise ValueError("ResidualWrapper: the inputs and outputs have different structures")
        for x, y in zip(flat_in, flat_out):
            if ops.as_value(x).shape[-1] != ops.as_value(y).shape[-1]:
                raise ValueError(f"ResidualWrapper: the input size {ops.as_value(x).shape[-1]} "
                                 f"differs from the cell's output size "
                                 f"{ops.as_value(y).shape[-1]}")
        return pack_as(output, [ops.add(x, y) for x, y in zip(flat_in, flat_out)]), new_state


class DeviceWrapper(TransparentWrapper):
    """Runs the cell under rg.device(device): its nodes and variables take that placement
    (see rg.device)."""

    def __init__(self, cell, device):
        super().__init__(cell, "DeviceWrapper")
        self._device = device
        scopes.device(device)   # validate the string now

    def zero_state(self, batch_size, dtype=np.float32):
        with scopes.device(self._device):
            return self._cell.zero_state(batch_size, dtype)

    def __call__(self, inputs, state, scope=None):
        with scopes.device(self._device):
            return self._cell(inputs, state, scope=scope)


class OutputProjectionWrapper(_Wrapper):
    """The cell's output projected to `output_size`: activation(output @ kernel + bias), with
    `kernel` [cell output, output_size] (glorot-uniform) and `bias` (zeros) in the wrapper's
    scope (tf.contrib.rnn.OutputProjectionWrapper)."""

    def __init__(self, cell, output_size, activation=None, reuse=None):
        super().__init__(cell, "OutputProjectionWrapper")
        self._rg_reuse = reuse
        if isinstance(output_size, bool) or not isinstance(output_size, (int, np.integer)) \
                or output_size < 1:
            raise ValueError(f"OutputProjectionWrapper: output_size must be a positive int, got "
                             f"{output_size!r}")
        self._output_size = int(output_size)
        self._activation = activation

    @property
    def output_size(self):
        return self._output_size

    def call(self, inputs, state):
        output, new_state = self._cell(inputs, state)
        output = ops.as_value(output)
        kernel = scopes.get_variable("kernel", [output.shape[-1], self._output_size],
                                     output.dtype)
        bias = scopes.get_variable("bias", [self._output_size], output.dtype, inits.Zeros())
        projected = ops.matmul(output, kernel) + bias
        if self._activation is not None:
            projected = self._activation(projected)
        return projected, new_state
