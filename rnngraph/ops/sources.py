"""Ops with no computed inputs: placeholders, constants, variables, loop-body params; and assign."""
from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype
from ..errors import ShapeError, user_location
from ..ir.graph import Graph, get_default_graph
from ..ir.types import TensorType
from . import initializers as inits
from .base import Op, apply, same_dtype


class Placeholder(Op):
    """A value fed at run time through `feed_dict`."""
    name = "placeholder"

    def __init__(self, dtype, shape):
        self.dtype = as_dtype(dtype).name
        self.shape = TensorType(shape, dtype).shape

    def infer(self):
        return TensorType(self.shape, self.dtype)

    def __repr__(self):  # the type is printed on the left-hand side already
        return self.name


class Constant(Op):
    name = "constant"
    foldable = False
    differentiable = False

    def __init__(self, value: np.ndarray):
        self._value = value

    @property
    def value(self) -> np.ndarray:
        return self._value

    def attrs(self):
        return {"value": self._value}

    def infer(self):
        return TensorType(self._value.shape, self._value.dtype)

    def compute(self, xp, *args):
        return self._value

    def __repr__(self):
        v = self._value
        if v.size <= 4:
            return f"constant[{np.array2string(v, separator=',').replace(chr(10), '')}]"
        return f"constant[{v.dtype}{list(v.shape)}]"


class Variable(Op):
    """Trainable state kept by the Session. The node's output reads the current value."""
    name = "variable"
    foldable = False
    stateful = True

    def __init__(self, dtype, shape, initializer: inits.Initializer, trainable: bool = True):
        self.dtype = as_dtype(dtype).name
        self.shape = TensorType(shape, dtype).shape
        if any(d is None for d in self.shape):
            raise ValueError(f"variable shapes must be fully known, got {self.shape}")
        self.initializer = initializer
        self.trainable = trainable

    def infer(self):
        return TensorType(self.shape, self.dtype)

    def __repr__(self):
        return f"variable[{self.initializer!r}{'' if self.trainable else ', frozen'}]"

    def vjp(self, node):  # sources have no inputs; autodiff stops here
        return []


class Param(Op):
    """A loop-body parameter; `role` is one of the loop's port groups."""
    name = "param"

    def __init__(self, role: str):
        self.role = role

    def infer(self):  # created directly through Graph.add_param
        raise AssertionError("Param nodes are made by Graph.add_param")


Graph.param_op = Param   # Graph.add_param makes these (ir cannot import ops)


class Assign(Op):
    """Write `value` into variable `ref`; outputs the new value (TF1's tf.assign)."""
    name = "assign"
    foldable = False
    stateful = True
    differentiable = False

    def infer(self, ref, value):
        same_dtype(self.name, ref, value)
        if not ref.accepts(tuple(d if d is not None else r for d, r in zip(value.shape, ref.shape))) \
                or value.rank != ref.rank:
            raise ShapeError(f"cannot assign shape {value.shape} to variable of shape {ref.shape}")
        return ref


class InitVariables(Op):
    """Initialise every variable of the graph from its seeded initializer (returns True)."""
    name = "init_variables"
    foldable = False
    stateful = True
    differentiable = False

    def infer(self):
        return TensorType((), "bool")


def global_variables_initializer():
    """A value that, when run, (re)initialises all variables of the default graph."""
    root = get_default_graph().root
    with root.as_default():
        return apply(InitVariables(), [], name="init")


def placeholder(dtype, shape=None, name: str | None = None):
    """A value fed at run time. `shape` may contain None for dims known only then."""
    if shape is None:
        raise ValueError("placeholder needs a shape (use None for unknown dims, e.g. [None, 28])")
    graph = get_default_graph()
    return apply(Placeholder(dtype, shape), [], name=name or "Placeholder")


def constant(value, dtype=None, name: str | None = None, graph: Graph | None = None):
    arr = np.array(value, dtype=as_dtype(dtype) if dtype is not None else None)
    if dtype is None and not isinstance(value, np.ndarray):
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)  # Python floats default to float32, like TF
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)    # and Python ints to int32
    arr.setflags(write=False)
    if graph is not None:
        with graph.as_default():
            return apply(Constant(arr), [], name=name or "Const")
    return apply(Constant(arr), [], name=name or "Const")


def _root_graph() -> Graph:
    return get_default_graph().root


def get_variable(name: str, shape, dtype=np.float32, initializer=None, trainable: bool = True):
    """Create a variable in the root graph (a loop body captures it as a loop invariant).

    The default initializer is glorot-uniform, like TF's get_variable. Values are drawn when the
    session initialises, from a generator seeded by the graph seed and the variable's full name.
    """
    if initializer is None:
        initializer = inits.GlorotUniform()
    elif not isinstance(initializer, inits.Initializer):
        initializer = inits.Constant(initializer)
    root = _root_graph()
    scope = get_default_graph().current_scope()
    loc = user_location()
    op = Variable(dtype, shape, initializer, trainable)
    full = f"{scope}/{name}" if scope else name
    if full in root._by_name:
        raise ValueError(f"variable {full!r} already exists (built at "
                         f"{root._by_name[full].location}); give a different name or scope")
    saved, root._scope = root._scope, []
    try:
        node = root.add_node(op, [], [op.infer()], full, loc)
    finally:
        root._scope = saved
    root.collections.setdefault("variables", []).append(node.outputs[0])
    return node.outputs[0]


def Variable_(initial_value, name: str = "Variable", dtype=None, trainable: bool = True):
    """TF1's tf.Variable(initial_value): a variable whose initializer is the given array."""
    arr = np.asarray(initial_value, dtype=dtype if dtype is not None else None)
    if dtype is None and arr.dtype == np.float64 and not isinstance(initial_value, np.ndarray):
        arr = arr.astype(np.float32)
    return get_variable(name, arr.shape, arr.dtype, inits.Constant(arr), trainable)


def assign(ref, value, name: str | None = None):
    if ref.node.op.name != "variable":
        raise TypeError(f"assign needs a variable, got {ref!r}")
    return apply(Assign(), [ref, value], name=name or "Assign")


def global_variables(graph: Graph | None = None):
    return list((graph or get_default_graph()).root.collections.get("variables", []))


def trainable_variables(graph: Graph | None = None):
    return [v for v in global_variables(graph) if v.node.op.trainable]
