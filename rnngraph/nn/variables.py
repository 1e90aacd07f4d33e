"""TF1's module-level variable functions: global_variables / trainable_variables with scope=,
local_variables, variables_initializer, local_variables_initializer, initialize_all_variables,
assign, assign_add and assign_sub.

rnngraph has no local variables (TF1 keeps metrics' counters there): local_variables() is
empty and local_variables_initializer() a no_op, so TF1 code running both initializers runs.
"""
from __future__ import annotations

from .. import ops
from ..errors import user_location
from ..ir.graph import Graph
from ..ops.graph_keys import GraphKeys, get_collection
from ..ops.misc import no_op, variables_initializer
from ..ops.sources import global_variables_initializer


def _collected(what, key, scope, of_graph):
    if isinstance(scope, Graph):   # rnngraph's own form: the variables of that graph
        return of_graph(scope)
    if scope is not None and not isinstance(scope, str):
        raise TypeError(f"{what} at {user_location()}: scope must be a str (a regular "
                        f"expression matched at the start of the names) or None, got {scope!r}")
    return get_collection(key, scope)


def global_variables(scope=None):
    """The variables of the default graph (tf.global_variables); with `scope`, those whose
    name ("rnn/basic_lstm_cell/kernel:0") matches it from the start (re.match, as TF1's
    collection filter). Given a Graph instead, that graph's variables (rnngraph's form)."""
    return _collected("global_variables", GraphKeys.GLOBAL_VARIABLES, scope,
                      ops.global_variables)


def trainable_variables(scope=None):
    """The trainable variables of the default graph (tf.trainable_variables), filtered by
    `scope` as global_variables; a Graph gives that graph's."""
    return _collected("trainable_variables", GraphKeys.TRAINABLE_VARIABLES, scope,
                      ops.trainable_variables)


def local_variables(scope=None):
    """tf.local_variables: always [] (rnngraph has no local variables)."""
    return []


def local_variables_initializer():
    """tf.local_variables_initializer: a no_op (there are no local variables to initialise)."""
    return no_op(name="init_local")


def initialize_all_variables():
    """TF1's deprecated name of global_variables_initializer."""
    return global_variables_initializer()


def _variable(what, ref):
    ref = ops.as_value(ref)
    if ref.node.op.name != "variable":
        raise TypeError(f"{what} at {user_location()}: ref must be a variable, got "
                        f"{ref.node.op.name} '{ref.name}' ({ref.type})")
    return ref


def assign(ref, value, validate_shape=None, use_locking=None, name=None):
    """An op that writes `value` into variable `ref` when run and gives the new value
    (tf.assign). validate_shape=False (changing a variable's shape) is not supported;
    use_locking is accepted and has no effect (a run's writes are applied all at once)."""
    if validate_shape is False:
        raise NotImplementedError(f"assign at {user_location()}: validate_shape=False (a new "
                                  "shape for the variable) is not supported")
    return ops.assign(_variable("assign", ref), value, name=name)


def assign_add(ref, value, use_locking=None, name=None):
    """assign(ref, ref + value) (tf.assign_add)."""
    ref = _variable("assign_add", ref)
    return ops.assign(ref, ops.add(ref, value), name=name or "AssignAdd")


def assign_sub(ref, value, use_locking=None, name=None):
    """assign(ref, ref - value) (tf.assign_sub)."""
    ref = _variable("assign_sub", ref)
    return ops.assign(ref, ops.subtract(ref, value), name=name or "AssignSub")


__all__ = ["assign", "assign_add", "assign_sub", "global_variables", "initialize_all_variables",
           "local_variables", "local_variables_initializer", "trainable_variables",
           "variables_initializer"]
