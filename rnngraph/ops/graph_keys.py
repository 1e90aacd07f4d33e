"""Graph collections (tf.get_collection, tf.add_to_collection, tf.GraphKeys).

A collection is a named list on the root graph (`graph.collections`), saved with the graph by
rg.save. Some keys are kept by rnngraph itself and read here as TF1 lists them:
GLOBAL_VARIABLES (rg.global_variables(): the model's variables, not the random ops' run
counter), TRAINABLE_VARIABLES (rg.trainable_variables()), SUMMARIES (the tf.summary registry),
LOSSES (the tf.losses functions add to it) and GLOBAL_STEP (train.get_or_create_global_step).
The others (UPDATE_OPS, REGULARIZATION_LOSSES, your own names) hold what you add.
"""
from __future__ import annotations

import re
from typing import Callable

from ..errors import user_location
from ..ir.graph import get_default_graph
from ..ir.node import Node
from ..ir.value import Value
from .sources import global_variables, trainable_variables


class GraphKeys:
    """The standard collection names (tf.GraphKeys), as TF1 spells them."""
    GLOBAL_VARIABLES = VARIABLES = "variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    LOCAL_VARIABLES = "local_variables"
    MODEL_VARIABLES = "model_variables"
    UPDATE_OPS = "update_ops"
    LOSSES = "losses"
    REGULARIZATION_LOSSES = "regularization_losses"
    SUMMARIES = "summaries"
    GLOBAL_STEP = "global_step"
    TRAIN_OP = "train_op"
    ACTIVATIONS = "activations"
    WEIGHTS = "weights"
    BIASES = "biases"
    INIT_OP = "init_op"
    LOCAL_INIT_OP = "local_init_op"
    READY_OP = "ready_op"
    EVAL_STEP = "eval_step"


# keys whose lists rnngraph keeps (what get_collection gives them comes from there); the
# internal ones (random seeds, the run counter, devices) are no user collection at all
_MANAGED = {
    GraphKeys.GLOBAL_VARIABLES: "rg.get_variable / rg.Variable add to it",
    GraphKeys.TRAINABLE_VARIABLES: "rg.get_variable / rg.Variable(trainable=True) add to it",
    GraphKeys.SUMMARIES: "rg.summary.scalar / histogram add to it",
}
_INTERNAL = ("random_seed", "random_ops", "random_counter", "devices")
# collections read from elsewhere: key -> fn(root graph) -> list (summary registers SUMMARIES)
_DERIVED: dict[str, Callable] = {}


def register_collection(key: str, read: Callable) -> None:
    """Called by higher layers: get_collection(key) is `read(root graph)`."""
    _DERIVED[key] = read


def _key(key, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"{what}: the collection name must be a non-empty str, got {key!r} "
                        f"(at {user_location()})")
    return key


def _items(root, key: str) -> list:
    if key == GraphKeys.GLOBAL_VARIABLES:
        return global_variables(root)
    if key == GraphKeys.TRAINABLE_VARIABLES:
        return trainable_variables(root)
    if key in _DERIVED:
        return list(_DERIVED[key](root))
    return list(root.collections.get(key, []))


def get_collection(key, scope=None) -> list:
    """A list of the values in collection `key` of the default graph (tf.get_collection); with
    `scope`, those whose name matches it from the start (re.match, as TF1; items without a
    name are left out). A name nothing was added to gives []."""
    key = _key(key, "get_collection")
    items = _items(get_default_graph().root, key)
    if scope is None:
        return items
    pattern = re.compile(scope)
    out = []
    for item in items:
        name = getattr(item, "name", None)
        if name is None and isinstance(item, dict) and len(item) == 1:   # a summary {tag: value}
            name = next(iter(item))
        if isinstance(name, str) and pattern.match(name):
            out.append(item)
    return out


def _check_user_key(key: str, what: str) -> None:
    if key in _MANAGED or key in _INTERNAL:
        why = _MANAGED.get(key, "rnngraph keeps it itself")
        raise ValueError(f"{what}: collection {key!r} is kept by rnngraph ({why}); use another "
                         f"name (at {user_location()})")


def get_collection_ref(key) -> list:
    """The list of collection `key` itself (tf.get_collection_ref): changing it changes the
    collection. Not for the collections rnngraph keeps (GLOBAL_VARIABLES, SUMMARIES...)."""
    key = _key(key, "get_collection_ref")
    _check_user_key(key, "get_collection_ref")
    return get_default_graph().root.collections.setdefault(key, [])


def _as_item(value, what: str) -> Value:
    if isinstance(value, Node):
        if not value.outputs:
            raise TypeError(f"{what}: node {value.name!r} has no output")
        value = value.outputs[0]
    if not isinstance(value, Value):
        raise TypeError(f"{what}: rnngraph collections hold tensors and ops (saved with the "
                        f"graph), got {type(value).__name__} {value!r} (at {user_location()})")
    root = get_default_graph().root
    if value.graph is not root:
        raise ValueError(f"{what}: {value.name} is not a value of the default graph's root "
                         f"(a loop body's values cannot be collected) (at {user_location()})")
    return value


def add_to_collection(name, value) -> None:
    """Append `value` (a tensor, or an op: its output) to collection `name` of the default
    graph (tf.add_to_collection)."""
    name = _key(name, "add_to_collection")
    _check_user_key(name, "add_to_collection")
    value = _as_item(value, "add_to_collection")
    found = get_default_graph().root.collections.setdefault(name, [])
    if name == GraphKeys.GLOBAL_STEP and (found or value.node.op.name != "variable"
                                          or value.type.rank != 0):
        raise ValueError(f"add_to_collection: the global step is one scalar variable (the graph "
                         f"has {len(found)}; got {value.name}) (at {user_location()})")
    found.append(value)


def add_to_collections(names, value) -> None:
    """add_to_collection for each of `names` (a name or a list; each once)."""
    if isinstance(names, str):
        names = [names]
    for name in dict.fromkeys(names):
        add_to_collection(name, value)


def get_all_collection_keys() -> list:
    """The names of the default graph's non-empty collections (tf.get_all_collection_keys)."""
    root = get_default_graph().root
    keys = [k for k, v in root.collections.items() if v and k not in _INTERNAL]
    if trainable_variables(root):
        keys.append(GraphKeys.TRAINABLE_VARIABLES)
    keys += [k for k, read in _DERIVED.items() if read(root) and k not in keys]
    return keys
