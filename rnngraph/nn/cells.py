"""RNN cells (TensorFlow-1 API). A cell creates its weights once and every call shares them.

Weight layouts (so weights can be exchanged with other frameworks):
  BasicRNNCell  kernel [input + units, units], bias [units]
                h' = activation([x, h] @ kernel + bias)
  LSTMCell      kernel [input + P, 4 * units], bias [4 * units], P = num_proj or units.
                Gate columns in the order i, j, f, o (input, candidate, forget, output):
                  c' = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j)
                  h' = sigmoid(o) * tanh(c')  (then h' @ projection [units, num_proj])
                peepholes: w_i_diag, w_f_diag act on c, w_o_diag on c'.
  GRUCell       gates/kernel [input + units, 2 * units] (columns r, u), gates/bias init 1.0,
                candidate/kernel [input + units, units], candidate/bias:
                  r, u = sigmoid([x, h] @ Wg + bg);  c = tanh([x, r * h] @ Wc + bc)
                  h' = u * h + (1 - u) * c
                GRUCell(reset_after=True): the PyTorch / cuDNN / tf.keras(reset_after=True)
                formulation: the reset gate acts *after* the recurrent product, which has its
                own bias:
                  candidate/kernel [input + units, units] as above (x-rows, then h-rows),
                  candidate/bias [units] (input bias b_xc, init 0),
                  candidate/recurrent_bias [units] (recurrent bias b_hc, init 0):
                  c = tanh(x @ Wc[:input] + b_xc + r * (h @ Wc[input:] + b_hc))
                The gates are unchanged. PyTorch's nn.GRU maps exactly onto it (its gate rows are
                r, z, n with z = u; see rnngraph/nn/torch_weights.py).
The product [x, h] @ kernel is computed as x @ kernel[:input] + h @ kernel[input:] so the
input half has no dependence on the state (a compiler pass can hoist it out of the loop).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .. import ops
from ..dtypes import as_dtype
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..ops import initializers as inits


class LSTMStateTuple(namedtuple("LSTMStateTuple", ("c", "h"))):
    """LSTM state: cell state c and hidden/output h, each [batch, size]."""
    __slots__ = ()

    @property
    def dtype(self):
        return self.c.dtype


class RNNCell:
    """Base class: subclasses define state_size, output_size, build() and call()."""
    scope_name = "rnn_cell"

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or self.scope_name
        self._dtype = as_dtype(dtype) if dtype is not None else None
        self.built = False
        self.variables: list[Value] = []

    @property
    def state_size(self):
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def zero_state(self, batch_size, dtype=np.float32):
        """All-zero state of structure `state_size`; batch_size may be an int or scalar Value."""
        def zeros(size):
            if isinstance(size, tuple):
                return type(size)(*map(zeros, size)) if hasattr(size, "_fields") else \
                    tuple(zeros(s) for s in size)
            return ops.zeros([batch_size, size], dtype=dtype)
        with get_default_graph().name_scope(f"{self.name}_zero_state"):
            return zeros(self.state_size)

    def _variable(self, name, shape, dtype, initializer=None):
        v = ops.get_variable(name, shape, dtype, initializer)
        self.variables.append(v)
        return v

    def build(self, input_size: int, dtype) -> None:
        raise NotImplementedError

    def build_once(self, input_size: int, dtype) -> None:
        """Create the weights (under the current name scope + the cell's name) if not yet made."""
        if self.built:
            if input_size != self.input_size:
                raise ValueError(f"{type(self).__name__} '{self.name}' was built for inputs of "
                                 f"size {self.input_size}, got {input_size}")
            return
        with get_default_graph().name_scope(self.name):
            self.build(input_size, as_dtype(self._dtype or dtype))
        self.built, self.input_size = True, input_size

    def __call__(self, inputs, state, scope=None):
        """One step: (output, new_state). Builds the weights on the first call."""
        inputs = ops.as_value(inputs)
        if inputs.shape[-1] is None:
            raise ValueError(f"{type(self).__name__}: the last dimension of the inputs must be "
                             f"known, got {inputs.type}")
        graph = get_default_graph()
        with graph.name_scope(scope):
            self.build_once(inputs.shape[-1], inputs.dtype)
            with graph.name_scope(self.name):
                return self.call(inputs, state)

    def call(self, inputs, state):
        raise NotImplementedError


def _linear(x, h, kernel, bias, input_size):
    """[x, h] @ kernel + bias as (x @ kernel_x + bias) + h @ kernel_h: the first term does not
    depend on the state, so a compiler pass can compute it for all steps before the loop."""
    return ops.add(ops.add(ops.matmul(x, kernel[:input_size]), bias),
                   ops.matmul(h, kernel[input_size:]))


class _VectorStateCell(RNNCell):
    """A cell whose state and output are one [batch, num_units] tensor."""

    @property
    def state_size(self):
        return self.num_units

    @property
    def output_size(self):
        return self.num_units


class BasicRNNCell(_VectorStateCell):
    scope_name = "basic_rnn_cell"

    def __init__(self, num_units: int, activation=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.num_units = _positive(num_units, "num_units")
        self.activation = activation or ops.tanh

    def build(self, input_size, dtype):
        self.kernel = self._variable("kernel", [input_size + self.num_units, self.num_units], dtype)
        self.bias = self._variable("bias", [self.num_units], dtype, inits.Zeros())

    def call(self, inputs, state):
        h = self.activation(_linear(inputs, state, self.kernel, self.bias, self.input_size))
        return h, h


class LSTMCell(RNNCell):
    scope_name = "lstm_cell"

    def __init__(self, num_units: int, use_peepholes: bool = False, cell_clip=None,
                 num_proj: int | None = None, proj_clip=None, forget_bias: float = 1.0,
                 activation=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.num_units = _positive(num_units, "num_units")
        self.use_peepholes = use_peepholes
        self.cell_clip = cell_clip
        self.num_proj = None if num_proj is None else _positive(num_proj, "num_proj")
        self.proj_clip = proj_clip
        self.forget_bias = float(forget_bias)
        self.activation = activation or ops.tanh

    @property
    def state_size(self):
        return LSTMStateTuple(self.num_units, self.num_proj or self.num_units)

    @property
    def output_size(self):
        return self.num_proj or self.num_units

    def build(self, input_size, dtype):
        n, p = self.num_units, self.num_proj or self.num_units
        self.kernel = self._variable("kernel", [input_size + p, 4 * n], dtype)
        self.bias = self._variable("bias", [4 * n], dtype, inits.Zeros())
        if self.use_peepholes:
            self.w_f_diag = self._variable("w_f_diag", [n], dtype)
            self.w_i_diag = self._variable("w_i_diag", [n], dtype)
            self.w_o_diag = self._variable("w_o_diag", [n], dtype)
        if self.num_proj:
            self.proj_kernel = self._variable("projection/kernel", [n, self.num_proj], dtype)

    def call(self, inputs, state):
        c_prev, h_prev = state
        gates = _linear(inputs, h_prev, self.kernel, self.bias, self.input_size)
        i, j, f, o = ops.split(gates, 4, axis=1)
        if self.use_peepholes:
            i = i + self.w_i_diag * c_prev
            f = f + self.w_f_diag * c_prev
        c = ops.sigmoid(f + self.forget_bias) * c_prev + ops.sigmoid(i) * self.activation(j)
        if self.cell_clip is not None:
            c = ops.clip_by_value(c, -self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            o = o + self.w_o_diag * c
        h = ops.sigmoid(o) * self.activation(c)
        if self.num_proj:
            h = ops.matmul(h, self.proj_kernel)
            if self.proj_clip is not None:
                h = ops.clip_by_value(h, -self.proj_clip, self.proj_clip)
        return h, LSTMStateTuple(c, h)


class GRUCell(_VectorStateCell):
    scope_name = "gru_cell"

    def __init__(self, num_units: int, activation=None, name=None, dtype=None,
                 reset_after: bool = False):
        super().__init__(name, dtype)
        self.num_units = _positive(num_units, "num_units")
        self.activation = activation or ops.tanh
        if not isinstance(reset_after, (bool, np.bool_)):
            raise TypeError(f"reset_after must be a bool, got {reset_after!r}")
        self.reset_after = bool(reset_after)

    def build(self, input_size, dtype):
        n = self.num_units
        self.gate_kernel = self._variable("gates/kernel", [input_size + n, 2 * n], dtype)
        self.gate_bias = self._variable("gates/bias", [2 * n], dtype, inits.Constant(1.0))
        self.candidate_kernel = self._variable("candidate/kernel", [input_size + n, n], dtype)
        self.candidate_bias = self._variable("candidate/bias", [n], dtype, inits.Zeros())
        if self.reset_after:
            self.candidate_recurrent_bias = self._variable("candidate/recurrent_bias", [n], dtype,
                                                           inits.Zeros())

    def call(self, inputs, state):
        gates = ops.sigmoid(_linear(inputs, state, self.gate_kernel, self.gate_bias,
                                    self.input_size))
        r, u = ops.split(gates, 2, axis=1)
        if self.reset_after:  # PyTorch/cuDNN: r scales the recurrent product (and its bias)
            k = self.input_size
            x_part = ops.add(ops.matmul(inputs, self.candidate_kernel[:k]), self.candidate_bias)
            h_part = ops.add(ops.matmul(state, self.candidate_kernel[k:]),
                             self.candidate_recurrent_bias)
            c = self.activation(ops.add(x_part, r * h_part))
        else:
            c = self.activation(_linear(inputs, r * state, self.candidate_kernel,
                                        self.candidate_bias, self.input_size))
        h = u * state + (1.0 - u) * c
        return h, h


class MultiRNNCell(RNNCell):
    """Cells stacked in layers: layer k's output is layer k+1's input. State: tuple per layer."""
    scope_name = "multi_rnn_cell"

    def __init__(self, cells, state_is_tuple: bool = True, name=None):
        super().__init__(name)
        cells = list(cells)
        if not cells:
            raise ValueError("MultiRNNCell needs at least one cell")
        for c in cells:
            if not isinstance(c, RNNCell):
                raise TypeError(f"MultiRNNCell takes RNNCells, got {type(c).__name__}")
        if not state_is_tuple:
            raise ValueError("only state_is_tuple=True is supported (a tuple of layer states)")
        self.cells = cells

    @property
    def state_size(self):
        return tuple(c.state_size for c in self.cells)

    @property
    def output_size(self):
        return self.cells[-1].output_size

    def build(self, input_size, dtype):
        for k, cell in enumerate(self.cells):
            with get_default_graph().name_scope(f"cell_{k}"):
                cell.build_once(input_size, dtype)
            input_size = cell.output_size

    def call(self, inputs, state):
        if not isinstance(state, (tuple, list)) or len(state) != len(self.cells):
            raise ValueError(f"MultiRNNCell with {len(self.cells)} layers needs a state tuple of "
                             f"that length")
        x, new_states = inputs, []
        for k, (cell, s) in enumerate(zip(self.cells, state)):
            x, s2 = cell(x, s, scope=f"cell_{k}")
            new_states.append(s2)
        return x, tuple(new_states)

    @property
    def variables(self):
        return [v for c in self.cells for v in c.variables]

    @variables.setter
    def variables(self, value):
        pass


def _positive(n, what):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    return int(n)
