"""static_state_saving_rnn (tf.contrib.rnn / tf.nn in TF1) and rnngraph's own state saver.

Truncated backpropagation through time over sequences longer than one unroll: each run
unrolls the cell over the next T steps starting from the state the previous run saved, and
saves its final state for the next run. Gradients stop at the saved state (it is read from a
variable), as in TensorFlow.

TensorFlow's state savers came from its queue-based input pipeline
(`batch_sequences_with_states`), which rnngraph does not have. `VariableStateSaver` is
rnngraph's own: one non-trainable variable per named state, holding it for a fixed batch
between runs; any object with `state(name)` and `save_state(name, value)` works as well.

    saver = rg.contrib.rnn.VariableStateSaver(batch_size=8, state_sizes={"c": 32, "h": 32})
    outputs, state = rg.contrib.rnn.static_state_saving_rnn(
        rg.nn.rnn_cell.BasicLSTMCell(32), inputs, saver, ("c", "h"))
    ...
    sess.run([loss, train_op], feed)     # each run continues from the last run's state
    sess.run(saver.reset())              # a new batch of sequences starts from zeros
"""
from __future__ import annotations

import re

import numpy as np

from .. import ops
from ..dtypes import as_dtype
from ..nest import flatten, pack_as
from ..nn import scopes
from ..nn.rnn import _check_cell, static_rnn
from ..ops import initializers as inits
from ..ops.misc import with_dependencies

_STATE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _is_nested(x) -> bool:
    return isinstance(x, (tuple, list))


class VariableStateSaver:
    """Keeps named RNN states between Session runs, in non-trainable variables.

    Args:
      batch_size: the (fixed) batch size of the states, an int > 0.
      state_sizes: {state name: size}; a size is an int (the state is [batch_size, size]) or
        a shape (the state is [batch_size, *shape]). Names hold letters, digits and '_.-'.
      dtype: the states' dtype (default float32).
      initial_value: what variable initialisation and `reset()` put in the states: a number
        or an array broadcastable to a state's shape (default 0).
      name: the variable scope of the variables (uniquified: "state_saver", "state_saver_1").

    `state(name)` reads a state (a variable: gradients stop there), `save_state(name, value)`
    returns the assign that stores `value` when it runs (as every assign, it takes effect when
    the run ends, so the run reads the states saved by the previous one), `reset(names=None)`
    returns a value that sets the states back to their initial value when run.
    `variables` lists the variables (`rg.global_variables_initializer()` initialises them).
    """

    def __init__(self, batch_size, state_sizes, dtype=np.float32, initial_value=0.0,
                 name="state_saver"):
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or \
                batch_size <= 0:
            raise ValueError(f"VariableStateSaver: batch_size must be a positive int, got "
                             f"{batch_size!r}")
        if not isinstance(state_sizes, dict) or not state_sizes:
            raise TypeError("VariableStateSaver: state_sizes must be a non-empty dict "
                            f"{{state name: size}}, got {state_sizes!r}")
        shapes = {}
        for key, size in state_sizes.items():
            if not isinstance(key, str) or not _STATE_NAME.match(key):
                raise ValueError(f"VariableStateSaver: state name {key!r} must be a non-empty "
                                 "string of letters, digits and '_.-'")
            dims = (size,) if isinstance(size, (int, np.integer)) else tuple(size) \
                if isinstance(size, (tuple, list)) else None
            if dims is None or any(not isinstance(d, (int, np.integer)) or isinstance(d, bool)
                                   or d <= 0 for d in dims):
                raise ValueError(f"VariableStateSaver: the size of state {key!r} must be a "
                                 f"positive int or a shape of them, got {size!r}")
            shapes[key] = (int(batch_size),) + tuple(int(d) for d in dims)
        self.batch_size = int(batch_size)
        self.dtype = as_dtype(dtype)
        self._initial = {}
        for key, shape in shapes.items():
            try:
                self._initial[key] = np.array(np.broadcast_to(
                    np.asarray(initial_value, self.dtype), shape))
            except (ValueError, TypeError):
                raise ValueError(f"VariableStateSaver: initial_value "
                                 f"{np.shape(initial_value)} does not broadcast to state "
                                 f"{key!r} of shape {list(shape)}") from None
        self._vars = {}
        with scopes.variable_scope(None, default_name=name):
            for key, shape in shapes.items():
                self._vars[key] = scopes.get_variable(
                    key, shape, self.dtype, inits.Constant(self._initial[key]),  # broadcast
                    trainable=False)

    @classmethod
    def for_cell(cls, cell, batch_size, state_name, dtype=np.float32, initial_value=0.0,
                 name="state_saver"):
        """A saver with one state per name in `state_name` (a string, or a tuple shaped like
        `cell.state_size`), sized by the cell's state sizes."""
        _check_cell(cell)
        names, sizes = flatten(state_name), flatten(cell.state_size)
        _check_names(state_name, cell.state_size, "VariableStateSaver.for_cell")
        return cls(batch_size, dict(zip(names, sizes)), dtype, initial_value, name)

    @property
    def state_names(self) -> list:
        return list(self._vars)

    @property
    def variables(self) -> list:
        return list(self._vars.values())

    def _var(self, name, what):
        if name not in self._vars:
            raise KeyError(f"{what}: no state named {name!r} (this saver holds "
                           f"{', '.join(repr(k) for k in self._vars)})")
        return self._vars[name]

    def state(self, name):
        """The saved state `name` ([batch_size, size]): the value the last run saved, or the
        initial value before any."""
        return self._var(name, "VariableStateSaver.state")

    def save_state(self, name, value):
        """An assign that stores `value` as state `name` when it runs (returns the value)."""
        var = self._var(name, "VariableStateSaver.save_state")
        value = ops.as_value(value)
        if value.dtype != var.dtype or value.type.rank != var.type.rank or any(
                d is not None and d != s for d, s in zip(value.shape, var.shape)):
            raise ValueError(f"VariableStateSaver.save_state: state {name!r} is "
                             f"{var.type}, got a value of type {value.type}")
        return ops.assign(var, value, name=f"save_state_{name}")

    def reset(self, names=None):
        """A value that, when run, sets the named states (default all) back to their initial
        value (`initial_value`): run it when new sequences start."""
        names = self.state_names if names is None else \
            ([names] if isinstance(names, str) else list(names))
        assigns = []
        for key in names:
            var = self._var(key, "VariableStateSaver.reset")
            assigns.append(ops.assign(var, ops.constant(self._initial[key]),
                                      name=f"reset_state_{key}"))
        return ops.group(*assigns, name="reset_states")


def _check_names(state_name, state_size, what):
    if _is_nested(state_size) != _is_nested(state_name):
        raise ValueError(f"{what}: state_name should be the same type as cell.state_size "
                         f"(a tuple of names for a tuple state): state_name {state_name!r}, "
                         f"cell.state_size {state_size!r}")
    if _is_nested(state_size) and len(flatten(state_name)) != len(flatten(state_size)):
        raise ValueError(f"{what}: state_name has {len(flatten(state_name))} names but the "
                         f"cell's state has {len(flatten(state_size))} parts "
                         f"(state_name {state_name!r}, cell.state_size {state_size!r})")


def static_state_saving_rnn(cell, inputs, state_saver, state_name, sequence_length=None,
                            scope=None):
    """static_rnn whose initial state comes from `state_saver` and whose final state is saved
    back to it (tf.contrib.rnn.static_state_saving_rnn).

    Args:
      cell: an RNNCell.
      inputs: a list of T tensors [batch, input_size] (as for static_rnn).
      state_saver: an object with `state(name)` and `save_state(name, value)`, e.g. a
        VariableStateSaver.
      state_name: the name of the state (a string), or for a tuple state (LSTMStateTuple,
        MultiRNNCell's) a tuple of names shaped like `cell.state_size`.
      sequence_length, scope: as for static_rnn.

    Returns (outputs, state) as static_rnn. The last output and the state are computed only
    after every `save_state`: fetching either (or anything computed from them, a loss) saves
    the final state for the next run.
    """
    if not (callable(getattr(state_saver, "state", None)) and
            callable(getattr(state_saver, "save_state", None))):
        raise TypeError("static_state_saving_rnn: state_saver must have state(name) and "
                        f"save_state(name, value) methods, got {type(state_saver).__name__}")
    _check_cell(cell)
    state_size = cell.state_size
    _check_names(state_name, state_size, "static_state_saving_rnn")
    names = flatten(state_name)
    if _is_nested(state_size):
        initial_state = pack_as(state_size, [state_saver.state(n) for n in names])
    else:
        initial_state = state_saver.state(state_name)
    outputs, state = static_rnn(cell, inputs, initial_state=initial_state,
                                sequence_length=sequence_length, scope=scope)
    flat_state = flatten(state)
    if _is_nested(state_size):
        saves = [state_saver.save_state(n, s) for n, s in zip(names, flat_state)]
    else:
        saves = [state_saver.save_state(state_name, state)]
    saves = [s for s in flatten(saves) if s is not None]
    last = outputs[-1]
    outputs = list(outputs)
    outputs[-1] = pack_as(last, [with_dependencies(saves, x) for x in flatten(last)])
    state = pack_as(state, [with_dependencies(saves, s) for s in flat_state])
    return outputs, state
