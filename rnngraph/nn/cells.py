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

import re
from collections import namedtuple

import numpy as np

from .. import ops
from ..errors import located
from ..dtypes import as_dtype
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..nest import flatten, pack_as
from ..ops import initializers as inits
from . import scopes


class LSTMStateTuple(namedtuple("LSTMStateTuple", ("c", "h"))):
    """LSTM state: cell state c and hidden/output h, each [batch, size]."""
    __slots__ = ()

    @property
    def dtype(self):
        return self.c.dtype


def _snake_case(name: str) -> str:
    """TF's layer base name: BasicLSTMCell -> basic_lstm_cell, MyCell -> my_cell."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return "private" + s if s.startswith("_") else s


class RNNCell:
    """Base class of cells (tf.nn.rnn_cell.RNNCell). Subclasses define `state_size`,
    `output_size` and `call(inputs, state) -> (output, new_state)`, and may define
    `build(inputs_shape)` to make weights with `add_variable` (or call `get_variable` in `call`).

    Calling a cell (`cell(inputs, state)`) works as in TensorFlow 1.15: on the first call the
    cell takes a variable scope, `<current scope>/<name>` where the name is the constructor's
    `name` or the class name in snake case (basic_lstm_cell), made unique among the scopes
    opened in the current one (basic_lstm_cell_1, ...), or `scope` when given; later calls
    reuse that scope and its variables wherever they happen. A subclass may skip the base
    `__init__` or override `__call__` (a wrapper that calls another cell). If the first call
    raises, every node and variable it made is removed, so it can be called again.
    """

    def __init__(self, trainable: bool = True, name: str | None = None, dtype=None, **kwargs):
        reuse = kwargs.pop("_reuse", kwargs.pop("reuse", None))
        # Keras's dropout= / recurrent_dropout= (rates; see nn/dropout.py's keras_rates)
        rates = (kwargs.pop("dropout", 0.0), kwargs.pop("recurrent_dropout", 0.0))
        if rates != (0.0, 0.0):
            from .dropout import keras_rates   # cycle: nn/dropout.py imports this module
            self._rg_keras = keras_rates(*rates, type(self).__name__)
        for arg in kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument {arg!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self._rg_name = name
        self._dtype = as_dtype(dtype) if dtype is not None else None
        self._rg_reuse = reuse
        self._rg_trainable = bool(trainable)

    # --- naming -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The base name of the cell's scope (its `name=` or the snake-cased class name)."""
        return self.__dict__.get("_rg_name") or _snake_case(type(self).__name__)

    @property
    def scope_name(self):
        """The full variable scope the cell took on its first call (None before)."""
        vs = self.__dict__.get("_rg_scope")
        return vs.name if vs is not None else None

    @property
    def built(self) -> bool:
        return self.__dict__.get("_rg_built", False)

    @built.setter
    def built(self, value):
        self.__dict__["_rg_built"] = bool(value)

    @property
    def dtype(self):
        return self.__dict__.get("_dtype")

    # --- variables ----------------------------------------------------------------------------
    @property
    def variables(self) -> list[Value]:
        """The variables this cell (and the cells it calls) made or reused, in order."""
        return list(self.__dict__.get("_rg_vars", []))

    weights = variables

    @property
    def trainable_variables(self) -> list[Value]:
        return [v for v in self.variables if v.node.op.trainable]

    trainable_weights = trainable_variables

    @property
    def non_trainable_variables(self) -> list[Value]:
        return [v for v in self.variables if not v.node.op.trainable]

    def add_variable(self, name, shape=None, dtype=None, initializer=None, trainable=True,
                     **kwargs):
        """A variable `<cell scope>/<name>` (tf.layers.Layer.add_variable / add_weight); its
        dtype defaults to the cell's (the inputs' dtype)."""
        dtype = dtype if dtype is not None else self.__dict__.get("_rg_build_dtype")
        return scopes.get_variable(name, shape, dtype, initializer,
                                   trainable=bool(trainable) and
                                   self.__dict__.get("_rg_trainable", True), **kwargs)

    add_weight = add_variable

    def _variable(self, name, shape, dtype, initializer=None):
        return self.add_variable(name, shape, dtype, initializer)

    # --- state --------------------------------------------------------------------------------
    @property
    def state_size(self):
        raise NotImplementedError(f"{type(self).__name__} must define state_size")

    @property
    def output_size(self):
        raise NotImplementedError(f"{type(self).__name__} must define output_size")

    def zero_state(self, batch_size, dtype=np.float32):
        """All-zero state of structure `state_size`; batch_size may be an int or scalar Value."""
        def zeros(size):
            if isinstance(size, tuple):
                return type(size)(*map(zeros, size)) if hasattr(size, "_fields") else \
                    tuple(zeros(s) for s in size)
            dims = list(size) if isinstance(size, list) else [size]
            return ops.zeros([batch_size] + dims, dtype=dtype)
        with get_default_graph().name_scope(f"{self.name}ZeroState"):
            return zeros(self.state_size)

    # --- building and calling -----------------------------------------------------------------
    def build(self, inputs_shape) -> None:
        """Make the cell's weights; `inputs_shape` is the inputs' static shape (a tuple)."""

    def call(self, inputs, state):
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs, state)")

    def _check_inputs(self, inputs):
        """Built-in cells: float inputs with a known last dimension."""
        for x in flatten(inputs):
            if not isinstance(x, Value):
                continue
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"{type(self).__name__} '{self.name}': inputs must be floating "
                                 f"point (float16/32/64), got {x.dtype.name}; cast them with "
                                 "rg.cast")
            if x.type.rank == 0 or x.shape[-1] is None:
                raise ValueError(f"{type(self).__name__}: the last dimension of the inputs must "
                                 f"be known, got {x.type}")

    @located
    def __call__(self, inputs, state, scope=None, *args, **kwargs):
        """One step: (output, new_state). The first call makes the weights."""
        d = self.__dict__
        if isinstance(inputs, (list, tuple)) and not hasattr(inputs, "_fields") and \
                all(not isinstance(x, (list, tuple)) for x in inputs) and \
                len(inputs) and not isinstance(inputs[0], Value):
            inputs = ops.as_value(inputs)
        elif not isinstance(inputs, (list, tuple)):
            inputs = ops.as_value(inputs)
        first = not d.get("_rg_built", False)
        with scopes.build_transaction() if first else _nothing():
            if scope is not None and d.get("_rg_scope") is None:
                with scopes.variable_scope(scope, reuse=d.get("_rg_reuse")) as vs:
                    return self._call_in(vs, inputs, state, args, kwargs, named=True)
            vs = d.get("_rg_scope")
            if vs is None:
                reuse = d.get("_rg_reuse")
                # TF1: a cell made with reuse=True takes exactly its name, else a unique one
                with scopes.variable_scope(self.name if reuse else None,
                                           default_name=None if reuse else self.name,
                                           reuse=reuse, auxiliary_name_scope=False) as vs:
                    pass
            return self._call_in(vs, inputs, state, args, kwargs, named=False)

    def _call_in(self, vs, inputs, state, args, kwargs, named):
        d = self.__dict__
        graph = get_default_graph()
        first = not d.get("_rg_built", False)
        builtin = getattr(type(self), "_rg_builtin", False)
        if builtin:
            self._check_inputs(inputs)
        flat_in = [x for x in flatten(inputs) if isinstance(x, Value)]
        if not first and builtin and flat_in and d.get("input_size") is not None \
                and flat_in[0].shape[-1] != d["input_size"]:
            raise ValueError(f"{type(self).__name__} '{self.name}' was built for inputs of size "
                             f"{d['input_size']}, got {flat_in[0].shape[-1]}")
        scope_cm = scopes.variable_scope(vs, reuse=True if not first else None,
                                         auxiliary_name_scope=False)
        try:
            with scope_cm, scopes.recording(d.setdefault("_rg_vars", [])), \
                    graph.name_scope(None if named else vs.name.rsplit("/", 1)[-1]):
                if first:
                    d["_rg_scope"] = vs
                    d["_rg_build_dtype"] = (self._dtype if d.get("_dtype") is not None else
                                            (flat_in[0].dtype if flat_in else np.float32))
                    shape = flat_in[0].shape if flat_in else None
                    if type(self).build is not RNNCell.build:
                        self.build(shape)
                    d["input_size"] = shape[-1] if shape else None
                    d["_rg_built"] = True
                if d.get("_rg_keras") is not None:   # Keras's dropout= on the inputs
                    inputs = pack_as(inputs, [self._keras_drop(x, 0, "input")
                                              for x in flatten(inputs)])
                return self.call(inputs, state, *args, **kwargs)
        except BaseException:
            if first:
                d.pop("_rg_scope", None)
                d["_rg_built"] = False
                d["_rg_vars"] = []
            raise


def _recurrent(cell, h):
    """h as the recurrent products read it: with Keras's recurrent_dropout=, masked (one mask
    per sequence); the state itself is not changed."""
    return cell._keras_drop(h, 1, "recurrent") if cell.__dict__.get("_rg_keras") else h


def _keras_drop(self, x, which, what):
    from .dropout import keras_drop   # cycle: nn/dropout.py imports this module
    keeps = self.__dict__["_rg_keras"]
    return keras_drop(x, keeps[which], keeps[2], what)


RNNCell._keras_drop = _keras_drop


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _state_from_concat(state, sizes, what):
    """Split a concatenated state [batch, sum(sizes)] into one part per size."""
    state = ops.as_value(state)
    if state.type.rank != 2 or state.shape[1] not in (None, sum(sizes)):
        raise ValueError(f"{what}: with state_is_tuple=False the state must be [batch, "
                         f"{sum(sizes)}], got {state.type}")
    parts, at = [], 0
    for n in sizes:
        parts.append(state[:, at:at + n])
        at += n
    return parts


def _linear(x, h, kernel, bias, input_size):
    """[x, h] @ kernel + bias as (x @ kernel_x + bias) + h @ kernel_h: the first term does not
    depend on the state, so a compiler pass can compute it for all steps before the loop."""
    return ops.add(ops.add(ops.matmul(x, kernel[:input_size]), bias),
                   ops.matmul(h, kernel[input_size:]))


class _VectorStateCell(RNNCell):
    """A cell whose state and output are one [batch, num_units] tensor."""
    _rg_builtin = True

    @property
    def state_size(self):
        return self.num_units

    @property
    def output_size(self):
        return self.num_units


class BasicRNNCell(_VectorStateCell):
    """h' = activation([x, h] @ kernel + bias) (tf.nn.rnn_cell.BasicRNNCell)."""

    @located
    def __init__(self, num_units: int, activation=None, reuse=None, name=None, dtype=None,
                 **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        self.num_units = _positive(num_units, "num_units")
        self.activation = activation or ops.tanh

    def build(self, inputs_shape):
        self.kernel = self.add_variable("kernel", [inputs_shape[-1] + self.num_units,
                                                   self.num_units])
        self.bias = self.add_variable("bias", [self.num_units], initializer=inits.Zeros())

    def call(self, inputs, state):
        h = self.activation(_linear(inputs, _recurrent(self, state), self.kernel, self.bias,
                                    self.input_size))
        return h, h


class _LSTMBase(RNNCell):
    _rg_builtin = True

    def _split_state(self, state):
        if self.state_is_tuple:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError(f"{type(self).__name__}: with state_is_tuple=True the state is "
                                 f"an LSTMStateTuple(c, h), got {state!r}")
            return state
        return _state_from_concat(state, [self.num_units, self.output_size],
                                  type(self).__name__)

    def _pack_state(self, c, h):
        return LSTMStateTuple(c, h) if self.state_is_tuple else ops.concat([c, h], 1)


class BasicLSTMCell(_LSTMBase):
    """The basic LSTM (tf.nn.rnn_cell.BasicLSTMCell): kernel [input + units, 4 * units], bias
    [4 * units] (zeros), gates i, j, f, o;  c' = sigmoid(f + forget_bias) * c +
    sigmoid(i) * activation(j), h' = activation(c') * sigmoid(o). With state_is_tuple=False the
    state is concat([c, h], 1)."""

    @located
    def __init__(self, num_units: int, forget_bias: float = 1.0, state_is_tuple: bool = True,
                 activation=None, reuse=None, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        self.num_units = _positive(num_units, "num_units")
        self.forget_bias = float(forget_bias)
        self.state_is_tuple = _bool(state_is_tuple, "state_is_tuple")
        self.activation = activation or ops.tanh

    @property
    def state_size(self):
        n = self.num_units
        return LSTMStateTuple(n, n) if self.state_is_tuple else 2 * n

    @property
    def output_size(self):
        return self.num_units

    def build(self, inputs_shape):
        n = self.num_units
        self.kernel = self.add_variable("kernel", [inputs_shape[-1] + n, 4 * n])
        self.bias = self.add_variable("bias", [4 * n], initializer=inits.Zeros())

    def call(self, inputs, state):
        c_prev, h_prev = self._split_state(state)
        gates = _linear(inputs, _recurrent(self, h_prev), self.kernel, self.bias,
                        self.input_size)
        i, j, f, o = ops.split(gates, 4, axis=1)
        c = c_prev * ops.sigmoid(f + self.forget_bias) + ops.sigmoid(i) * self.activation(j)
        h = self.activation(c) * ops.sigmoid(o)
        return h, self._pack_state(c, h)


class LSTMCell(_LSTMBase):
    """The LSTM with optional peepholes, cell clipping and projection (tf.nn.rnn_cell.LSTMCell;
    weight layout in this module's docstring). `initializer` initialises the kernels, the
    peephole weights and the projection (default: the scope's, else glorot-uniform); the bias
    starts at zero. num_unit_shards / num_proj_shards (deprecated in TF) are not supported."""

    @located
    def __init__(self, num_units: int, use_peepholes: bool = False, cell_clip=None,
                 initializer=None, num_proj: int | None = None, proj_clip=None,
                 num_unit_shards=None, num_proj_shards=None, forget_bias: float = 1.0,
                 state_is_tuple: bool = True, activation=None, reuse=None, name=None, dtype=None,
                 **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        for arg, val in (("num_unit_shards", num_unit_shards),
                         ("num_proj_shards", num_proj_shards)):
            if val is not None:
                raise NotImplementedError(f"LSTMCell: the argument {arg}= is not supported "
                                          f"(deprecated in TensorFlow; got {val!r})")
        self.num_units = _positive(num_units, "num_units")
        self.use_peepholes = _bool(use_peepholes, "use_peepholes")
        self.cell_clip = cell_clip
        self.initializer = initializer
        self.num_proj = None if num_proj is None else _positive(num_proj, "num_proj")
        self.proj_clip = proj_clip
        self.forget_bias = float(forget_bias)
        self.state_is_tuple = _bool(state_is_tuple, "state_is_tuple")
        self.activation = activation or ops.tanh

    @property
    def state_size(self):
        p = self.num_proj or self.num_units
        return LSTMStateTuple(self.num_units, p) if self.state_is_tuple else self.num_units + p

    @property
    def output_size(self):
        return self.num_proj or self.num_units

    def build(self, inputs_shape):
        n, p, init = self.num_units, self.num_proj or self.num_units, self.initializer
        self.kernel = self.add_variable("kernel", [inputs_shape[-1] + p, 4 * n],
                                        initializer=init)
        self.bias = self.add_variable("bias", [4 * n], initializer=inits.Zeros())
        if self.use_peepholes:
            self.w_f_diag = self.add_variable("w_f_diag", [n], initializer=init)
            self.w_i_diag = self.add_variable("w_i_diag", [n], initializer=init)
            self.w_o_diag = self.add_variable("w_o_diag", [n], initializer=init)
        if self.num_proj:
            self.proj_kernel = self.add_variable("projection/kernel", [n, self.num_proj],
                                                 initializer=init)

    def call(self, inputs, state):
        c_prev, h_prev = self._split_state(state)
        gates = _linear(inputs, _recurrent(self, h_prev), self.kernel, self.bias,
                        self.input_size)
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
        return h, self._pack_state(c, h)


class GRUCell(_VectorStateCell):
    """The GRU (tf.nn.rnn_cell.GRUCell; layout in this module's docstring). kernel_initializer
    initialises both kernels; bias_initializer both biases (default: gates 1.0, candidate 0).
    `reset_after=True` is the PyTorch / cuDNN formulation (an rnngraph extension)."""

    @located
    def __init__(self, num_units: int, activation=None, reuse=None, kernel_initializer=None,
                 bias_initializer=None, name=None, dtype=None, reset_after: bool = False,
                 **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        self.num_units = _positive(num_units, "num_units")
        self.activation = activation or ops.tanh
        if not isinstance(reset_after, (bool, np.bool_)):
            raise TypeError(f"reset_after must be a bool, got {reset_after!r}")
        self.reset_after = bool(reset_after)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def build(self, inputs_shape):
        n, input_size = self.num_units, inputs_shape[-1]
        kinit, binit = self.kernel_initializer, self.bias_initializer
        self.gate_kernel = self.add_variable("gates/kernel", [input_size + n, 2 * n],
                                             initializer=kinit)
        self.gate_bias = self.add_variable("gates/bias", [2 * n], initializer=binit
                                           if binit is not None else inits.Constant(1.0))
        self.candidate_kernel = self.add_variable("candidate/kernel", [input_size + n, n],
                                                  initializer=kinit)
        self.candidate_bias = self.add_variable("candidate/bias", [n], initializer=binit
                                                if binit is not None else inits.Zeros())
        if self.reset_after:
            self.candidate_recurrent_bias = self.add_variable(
                "candidate/recurrent_bias", [n], initializer=binit
                if binit is not None else inits.Zeros())

    def call(self, inputs, state):
        h_in = _recurrent(self, state)   # (state itself unless Keras's recurrent_dropout=)
        gates = ops.sigmoid(_linear(inputs, h_in, self.gate_kernel, self.gate_bias,
                                    self.input_size))
        r, u = ops.split(gates, 2, axis=1)
        if self.reset_after:  # PyTorch/cuDNN: r scales the recurrent product (and its bias)
            k = self.input_size
            x_part = ops.add(ops.matmul(inputs, self.candidate_kernel[:k]), self.candidate_bias)
            h_part = ops.add(ops.matmul(h_in, self.candidate_kernel[k:]),
                             self.candidate_recurrent_bias)
            c = self.activation(ops.add(x_part, r * h_part))
        else:
            c = self.activation(_linear(inputs, r * h_in, self.candidate_kernel,
                                        self.candidate_bias, self.input_size))
        h = u * state + (1.0 - u) * c
        return h, h


class MultiRNNCell(RNNCell):
    """Cells stacked in layers: layer k's output is layer k+1's input, built under
    `multi_rnn_cell/cell_k`. State: a tuple, one entry per layer, or with state_is_tuple=False
    the layers' states concatenated along axis 1 (each layer's state must then be one tensor)."""

    @located
    def __init__(self, cells, state_is_tuple: bool = True, name=None):
        super().__init__(name=name)
        if isinstance(cells, RNNCell):
            raise TypeError("MultiRNNCell takes a list of cells, got one cell")
        cells = list(cells)
        if not cells:
            raise ValueError("MultiRNNCell needs at least one cell")
        for c in cells:
            if not isinstance(c, RNNCell):
                raise TypeError(f"MultiRNNCell takes RNNCells, got {type(c).__name__}")
        self.state_is_tuple = _bool(state_is_tuple, "state_is_tuple")
        if not self.state_is_tuple:
            for c in cells:
                if not isinstance(c.state_size, (int, np.integer)):
                    raise ValueError(f"MultiRNNCell(state_is_tuple=False): every cell's state "
                                     f"must be one tensor, but {type(c).__name__} has state "
                                     f"{c.state_size} (give it state_is_tuple=False too)")
        self.cells = cells

    @property
    def _cells(self):
        return self.cells

    @property
    def state_size(self):
        if self.state_is_tuple:
            return tuple(c.state_size for c in self.cells)
        return sum(int(c.state_size) for c in self.cells)

    @property
    def output_size(self):
        return self.cells[-1].output_size

    def zero_state(self, batch_size, dtype=np.float32):
        if self.state_is_tuple:
            with get_default_graph().name_scope(f"{type(self).__name__}ZeroState"):
                return tuple(c.zero_state(batch_size, dtype) for c in self.cells)
        return super().zero_state(batch_size, dtype)

    def call(self, inputs, state):
        if self.state_is_tuple:
            if not isinstance(state, (tuple, list)) or len(state) != len(self.cells):
                raise ValueError(f"MultiRNNCell with {len(self.cells)} layers needs a state "
                                 f"tuple of that length")
            states = list(state)
        else:
            states = _state_from_concat(state, [int(c.state_size) for c in self.cells],
                                        "MultiRNNCell")
        x, new_states = inputs, []
        for k, (cell, s) in enumerate(zip(self.cells, states)):
            with scopes.variable_scope(f"cell_{k}"):
                x, s2 = cell(x, s)
            new_states.append(s2)
        if self.state_is_tuple:
            return x, tuple(new_states)
        return x, ops.concat(new_states, 1)


def _positive(n, what):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"{what} must be a positive int, got {n!r}")
    return int(n)


def _bool(x, what):
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{what} must be a bool, got {x!r}")
    return bool(x)
