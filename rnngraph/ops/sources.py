"""Ops with no computed inputs: placeholders, constants, variables, loop-body params; and assign."""
from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype
from ..errors import ShapeError, user_location
from ..ir.graph import Graph, get_default_graph
from ..ir.types import TensorType
from ..ir.value import Value, install_operators
from . import initializers as inits
from .base import Op, apply, as_value, same_dtype


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
    """A value fed at run time. `shape` may contain None for dims known only then.

    Without `shape` (TF1's `tf.placeholder(tf.float32)`, usually a learning rate or keep
    probability) the placeholder is a scalar: rnngraph needs every rank at build time, so
    feeding it an array of rank > 0 is refused; give `shape=` for those."""
    if shape is None:
        shape = ()
    return apply(Placeholder(dtype, shape), [], name=name or "Placeholder")


_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def python_value_array(value, dtype=None, what: str = "constant Const") -> np.ndarray:
    """`value` as an array, with TF1's conversion rules (tf.convert_to_tensor): a NumPy value
    keeps its dtype (or is cast to `dtype`); a Python float becomes float32, an int int32 (int64
    if it needs it), a bool bool. With `dtype`, a Python value must fit its kind, as in TF1:
    a float for an int dtype (0.5 or 2.0 alike), a number for bool, a complex for a real dtype
    raise TypeError."""
    target = as_dtype(dtype) if dtype is not None else None
    numpy_value = isinstance(value, (np.ndarray, np.generic))
    try:
        if target is not None and not numpy_value:
            probe = np.array(value)
            if probe.dtype.kind in _KIND_RANK and target.kind in _KIND_RANK and (
                    _KIND_RANK[probe.dtype.kind] > _KIND_RANK[target.kind]
                    or (target.kind == "b" and probe.dtype.kind != "b")):
                bad = _first_leaf(value, probe.dtype.kind)
                raise TypeError(f"{what} at {user_location()}: expected {target.name}, got "
                                f"{bad!r} of type '{type(bad).__name__}' instead (TF1 does not "
                                f"convert it implicitly; use rg.cast on a tensor)")
        arr = np.array(value, dtype=target)
    except (ValueError, OverflowError) as exc:   # ragged lists; 2**40 as int32
        raise ValueError(f"{what}: cannot make an array of {value!r:.80}: {exc}") from None
    if arr.dtype.kind not in "biufc":   # objects, strings, dates: no op computes on those
        raise TypeError(f"{what}: a tensor holds bool, integer, float or complex numbers; got "
                        f"{type(value).__name__} (NumPy dtype {arr.dtype})")
    if target is None and not numpy_value:   # (NumPy's keep theirs)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)  # Python floats default to float32, like TF
        elif arr.dtype == np.int64 and (arr.size == 0 or (
                arr.min() >= -2**31 and arr.max() < 2**31)):
            arr = arr.astype(np.int32)    # and Python ints to int32 (int64 if they need it)
    return arr


def _first_leaf(value, kind: str):
    """The first scalar in nested lists/tuples whose NumPy kind is `kind` (for messages)."""
    if isinstance(value, (list, tuple)):
        for x in value:
            found = _first_leaf(x, kind)
            if found is not None:
                return found
        return None
    return value if np.asarray(value).dtype.kind == kind else None


def constant(value, dtype=None, shape=None, name: str | None = None, verify_shape: bool = False,
             graph: Graph | None = None):
    """A constant tensor (tf.constant): dtypes as TF1 converts values (python_value_array).

    shape (TF1): the value is reshaped to it when it has that many elements; a scalar or a
    shorter list fills it, its last element repeated (TF1's rule); more elements raise
    ValueError, and so does any difference with verify_shape=True."""
    what = f"constant {name or 'Const'}"
    arr = python_value_array(value, dtype, what)
    if shape is not None:
        arr = _shaped(arr, shape, verify_shape, what)
    arr.setflags(write=False)
    if graph is not None:
        with graph.as_default():
            return apply(Constant(arr), [], name=name or "Const")
    return apply(Constant(arr), [], name=name or "Const")


def _shaped(arr: np.ndarray, shape, verify_shape: bool, what: str) -> np.ndarray:
    if isinstance(shape, (int, np.integer)):
        shape = [shape]
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"{what}: shape must be a list of ints, got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"{what}: shape must be fully known, got {list(shape)}")
    if verify_shape and arr.shape != shape:
        raise TypeError(f"{what}: expected shape {list(shape)} (verify_shape=True), the value "
                        f"has shape {list(arr.shape)}")
    size = int(np.prod(shape, dtype=np.int64))
    if arr.size > size:
        raise ValueError(f"{what} at {user_location()}: too many elements for shape "
                         f"{list(shape)}: needed at most {size}, got {arr.size}")
    if arr.size == size:
        return arr.reshape(shape)
    if arr.size == 0:
        raise ValueError(f"{what} at {user_location()}: an empty value cannot fill shape "
                         f"{list(shape)}")
    flat = arr.ravel()
    out = np.empty(size, arr.dtype)
    out[:flat.size] = flat
    out[flat.size:] = flat[-1]   # TF1: the last element fills the rest
    return out.reshape(shape)


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
    initializer.check_shape(op.shape, f"variable {full!r} (at {loc})")
    saved, root._scope = root._scope, []
    try:
        node = root.add_node(op, [], [op.infer()], full, loc)
    finally:
        root._scope = saved
    root.collections.setdefault("variables", []).append(node.outputs[0])
    return node.outputs[0]


_FOLD_LIMIT = 1 << 24   # elements: a larger computed initial value is refused, not evaluated


def initializer_from_value(value: Value, what: str = "Variable"):
    """(Initializer, shape) for a tensor used as a variable's initial value (TF1's
    `tf.Variable(tf.zeros([2, 3]))`). A fill (zeros, ones, fill) becomes a Constant initializer
    without materialising it; an op offering `as_initializer()` (random ops) gives its own; any
    other graph of constants is evaluated once here (up to 2**24 elements). Values that depend
    on placeholders or variables are refused with a TypeError naming the node."""
    if any(d is None for d in value.shape):
        raise ValueError(f"{what}: the initial value {value.node.name} has shape "
                         f"{list(value.shape)}; a variable's shape must be fully known")
    op = value.node.op
    shape = tuple(value.shape)
    as_init = getattr(op, "as_initializer", None)
    if as_init is not None:
        init = as_init(value.node)
        if init is not None:
            return init, shape
    if op.name == "fill" and not value.node.inputs:
        return (inits.Zeros() if op.value == 0 else inits.Constant(op.value)), shape
    n = 1
    for d in shape:
        n *= d
    if n > _FOLD_LIMIT:
        raise ValueError(f"{what}: the initial value {value.node.name} has {n} elements; "
                         f"rnngraph evaluates a computed initial value at build time and "
                         f"refuses more than {_FOLD_LIMIT} (use an initializer instead)")
    return inits.Constant(_fold(value, what)), shape


def _fold(value: Value, what: str) -> np.ndarray:
    """Evaluate a graph of constant inputs with the ops' reference computes."""
    memo: dict = {}

    def ev(v: Value):
        if v in memo:
            return memo[v]
        op = v.node.op
        if op.stateful or isinstance(op, (Placeholder, Param)) or op.subgraphs():
            raise TypeError(f"{what}: the initial value depends on {v.node.name} ({op.name}, "
                            f"built at {v.node.location}); it must be computable from "
                            "constants when the graph is built")
        out = op.compute(np, *[ev(i) for i in v.node.inputs])
        outs = out if op.multi_output else [out]
        for o, r in zip(v.node.outputs, outs):
            memo[o] = np.asarray(r)
        return memo[v]

    return ev(value).astype(value.dtype)


def Variable_(initial_value=None, trainable: bool = True, collections=None, validate_shape=True,
              caching_device=None, name: str | None = None, variable_def=None, dtype=None,
              expected_shape=None, import_scope=None, constraint=None, use_resource=None,
              synchronization=None, aggregation=None, shape=None):
    """TF1's tf.Variable(initial_value): a variable initialised from an array or a tensor.

    The name is taken in the current name scope and made unique ("Variable", "Variable_1", ...
    or "w", "w_1"), as TF1 does; variable scopes' reuse does not apply (use get_variable).
    A tensor initial value must be computable from constants (see initializer_from_value)."""
    unsupported = dict(collections=collections, caching_device=caching_device,
                       variable_def=variable_def, expected_shape=expected_shape,
                       import_scope=import_scope, constraint=constraint,
                       synchronization=synchronization, aggregation=aggregation)
    for arg, val in unsupported.items():
        if val is not None:
            raise NotImplementedError(f"Variable: the argument {arg}= is not supported by "
                                      f"rnngraph (got {val!r})")
    if not validate_shape:
        raise NotImplementedError("Variable: validate_shape=False is not supported (every "
                                  "variable has a fully known shape)")
    if initial_value is None:
        raise ValueError("Variable: initial_value must be given")
    if callable(initial_value) and not isinstance(initial_value, Value):
        initial_value = initial_value()
    what = f"Variable {name or 'Variable'!r}"
    if isinstance(initial_value, Value):
        init, vshape = initializer_from_value(initial_value, what)
        vdtype = initial_value.dtype if dtype is None else as_dtype(dtype)
        if dtype is not None and as_dtype(dtype) != initial_value.dtype:
            raise TypeError(f"{what}: dtype={as_dtype(dtype).name} but the initial value is "
                            f"{initial_value.dtype.name} (cast it with rg.cast)")
    else:
        if isinstance(initial_value, (list, tuple)) and any(
                isinstance(x, Value) for x in np.ravel(np.array(initial_value, dtype=object))):
            raise TypeError(f"{what}: a list holding tensors is not an initial value; use "
                            "rg.stack(...) to make it one tensor")
        # TF1's conversion: NumPy values keep their dtype, Python floats -> float32, ints ->
        # int32; a Python float with an int dtype= raises TypeError
        arr = python_value_array(initial_value, dtype, what)
        init, vshape, vdtype = inits.Constant(arr), arr.shape, arr.dtype
    if shape is not None and tuple(shape) != tuple(vshape):
        raise ValueError(f"{what}: shape={list(shape)} but the initial value has shape "
                         f"{list(vshape)}")
    root = _root_graph()
    graph = get_default_graph()
    scope = graph.current_scope()
    base = f"{scope}/{name or 'Variable'}" if scope else (name or "Variable")
    n = root._name_counts.get(base, 0)   # the name unique_name would give, not yet taken
    unique = base if n == 0 else f"{base}_{n}"
    while unique in root._by_name:
        n += 1
        unique = f"{base}_{n}"
    with graph.absolute_scope(""):
        return get_variable(unique, vshape, vdtype, init, trainable)


def assign(ref, value, name: str | None = None):
    if ref.node.op.name != "variable":
        raise TypeError(f"assign needs a variable, got {ref!r}")
    if not isinstance(value, Value):   # (a number or array takes the variable's dtype, as TF1
        value = as_value(value, dtype=ref.dtype)   # converts it; 0.5 into an int still raises)
    return apply(Assign(), [ref, value], name=name or "Assign")


def global_variables(graph: Graph | None = None):
    """The model's variables (tf.global_variables): not the random ops' run counter
    (random/run_counter), which rg.train.Saver() saves all the same."""
    root = (graph or get_default_graph()).root
    counter = root.collections.get("random_counter")   # [assign(counter, counter + 1)]
    skip = counter[0].node.inputs[0] if counter else None
    return [v for v in root.collections.get("variables", []) if v is not skip]


def trainable_variables(graph: Graph | None = None):
    return [v for v in global_variables(graph) if v.node.op.trainable]


def _variable_initializer(v: Value):
    """Value.initializer (TF1's Variable.initializer): the op that sets this one variable to its
    initial value, as rg.variables_initializer([v])."""
    from .misc import variables_initializer   # cycle: ops/misc.py imports this module
    return variables_initializer([v], name=f"{v.node.name}/Assign")


def _initialized_value(v: Value):
    """Value.initialized_value(): a constant of the initial value when the initializer is
    deterministic (zeros, ones, a value), so another variable can start from it; else the
    variable's value (a random one is drawn by the session: its value once initialised)."""
    op = v.node.op
    init = op.initializer
    if isinstance(init, (inits.Zeros, inits.Ones, inits.Constant)):
        arr = np.asarray(init(op.shape, as_dtype(op.dtype), None), dtype=as_dtype(op.dtype))
        return constant(arr, name=f"{v.node.name}/initial_value")
    return v.read_value()


install_operators(variable_initializer=_variable_initializer,
                  initialized_value=_initialized_value)
