"""Variable scopes (TF1's tf.variable_scope / tf.get_variable), with TensorFlow 1.15's naming and
reuse rules.

- `variable_scope("a")` prefixes the names of the variables `get_variable` makes inside it
  ("a/w") and opens a name scope for the other nodes (uniquified like TF: a second
  `variable_scope("a")` puts its nodes under "a_1/" while its variables stay under "a/").
- `variable_scope(None, default_name="dense")` picks a fresh scope name: "dense", then "dense_1",
  ... counted per enclosing scope; leaving a *named* scope forgets the counts of its sub-scopes
  (so a second `variable_scope("rnn")` names its first cell "rnn/basic_lstm_cell" again, and
  collides, as in TF, unless reuse is set).
- `reuse`: None inherits the enclosing scope's; True requires the variable to exist (made by
  get_variable); AUTO_REUSE makes it if missing. Once True, sub-scopes stay reusing.
- `get_variable` ignores name scopes (only variable scopes name variables); `rg.Variable`
  ignores variable scopes' reuse and is named by the name scope, uniquified ("Variable_1").

The state is kept per root graph, so separate graphs count separately.
"""
from __future__ import annotations

import contextlib
import re
import weakref

import numpy as np

from .. import ops
from ..dtypes import as_dtype
from ..errors import user_location
from ..ir import device as device_spec
from ..ir.graph import Graph, get_default_graph
from ..ir.value import Value
from ..ops import initializers as inits
from ..ops.sources import python_value_array


class _AutoReuse:
    def __repr__(self):
        return "AUTO_REUSE"


AUTO_REUSE = _AutoReuse()


class VariableScope:
    """A variable scope: its `name`, `reuse` flag and default `initializer` / `dtype`."""

    def __init__(self, reuse, name: str = "", initializer=None, dtype=None,
                 name_scope: str = ""):
        self._name = name
        self._reuse = reuse
        self._initializer = initializer
        self._dtype = None if dtype is None else as_dtype(dtype)
        self._name_scope = name_scope

    @property
    def name(self) -> str:
        return self._name

    @property
    def reuse(self):
        return self._reuse

    @property
    def initializer(self):
        return self._initializer

    @property
    def dtype(self):
        return self._dtype if self._dtype is not None else np.dtype(np.float32)

    @property
    def original_name_scope(self) -> str:
        return self._name_scope

    def reuse_variables(self) -> None:
        """From now on, get_variable in this scope returns existing variables."""
        self._reuse = True

    def set_initializer(self, initializer) -> None:
        self._initializer = initializer

    def set_dtype(self, dtype) -> None:
        self._dtype = as_dtype(dtype)

    def get_variable(self, name, shape=None, dtype=None, initializer=None, trainable=None):
        """get_variable as if this scope were the current one."""
        with variable_scope(self):
            return get_variable(name, shape, dtype, initializer, trainable=trainable)

    def __repr__(self):
        return f"<VariableScope {self._name!r} reuse={self._reuse}>"


class _Store:
    """Per-root-graph state: the current scope, the scope-name counts, get_variable's vars."""

    def __init__(self):
        self.current = VariableScope(False)
        self.counts: dict[str, int] = {}
        self.made: dict[str, Value] = {}   # full name -> variable made through get_variable
        self.recorders: list[list] = []   # cells being called: each gets the variables used

    def close_subscopes(self, name: str) -> None:
        for k in self.counts:
            if k.startswith(name + "/"):
                self.counts[k] = 0


_stores: "weakref.WeakKeyDictionary[Graph, _Store]" = weakref.WeakKeyDictionary()


def _store(graph: Graph | None = None) -> _Store:
    root = (graph or get_default_graph()).root
    st = _stores.get(root)
    if st is None:
        st = _stores[root] = _Store()
    return st


def get_variable_scope() -> VariableScope:
    """The current variable scope (tf.get_variable_scope)."""
    return _store().current


def _unique_scope_name(st: _Store, prefix: str) -> str:
    base = st.current.name
    full = f"{base}/{prefix}" if base else prefix
    if st.counts.get(full, 0) == 0:
        return prefix
    k = 1
    while st.counts.get(f"{full}_{k}", 0) > 0:
        k += 1
    return f"{prefix}_{k}"


_UNSUPPORTED_SCOPE_ARGS = ("regularizer", "caching_device", "partitioner", "custom_getter",
                           "constraint")


@contextlib.contextmanager
def variable_scope(name_or_scope, default_name=None, values=None, initializer=None,
                   regularizer=None, caching_device=None, partitioner=None, custom_getter=None,
                   reuse=None, dtype=None, use_resource=None, constraint=None,
                   auxiliary_name_scope=True):
    """Open a variable scope (tf.variable_scope): name_or_scope is a string, a VariableScope (to
    re-enter it) or None with `default_name` (a fresh name: "dense", "dense_1", ...).

    reuse: None (inherit), True, False or AUTO_REUSE. initializer / dtype: defaults for the
    get_variable calls inside. `values` and `use_resource` are accepted (they change nothing
    here); regularizer, caching_device, partitioner, custom_getter and constraint are not
    supported and raise NotImplementedError when given. Yields the VariableScope.
    """
    given = dict(regularizer=regularizer, caching_device=caching_device, partitioner=partitioner,
                 custom_getter=custom_getter, constraint=constraint)
    for arg in _UNSUPPORTED_SCOPE_ARGS:
        if given[arg] is not None:
            raise NotImplementedError(f"variable_scope: the argument {arg}= is not supported "
                                      f"by rnngraph (got {given[arg]!r})")
    if reuse not in (None, True, False) and reuse is not AUTO_REUSE:
        raise ValueError(f"variable_scope: reuse must be None, True, False or AUTO_REUSE, got "
                         f"{reuse!r}")
    if name_or_scope is None and default_name is None:
        raise TypeError("variable_scope: give name_or_scope or default_name")
    if name_or_scope is not None and not isinstance(name_or_scope, (str, VariableScope)):
        raise TypeError(f"variable_scope: name_or_scope must be a string or a VariableScope, "
                        f"got {type(name_or_scope).__name__}")
    if reuse is False:   # TF: False means "inherit" too; only True/AUTO_REUSE switch it on
        reuse = None
    graph = get_default_graph()
    st = _store(graph)
    old = st.current
    old_counts = None
    if isinstance(name_or_scope, VariableScope):
        new_name = name_or_scope.name
        new_reuse = reuse if reuse is not None else name_or_scope.reuse
        init = initializer if initializer is not None else name_or_scope.initializer
        dt = dtype if dtype is not None else name_or_scope._dtype
        old_counts = dict(st.counts)
        ns_base = new_name.rsplit("/", 1)[-1]
    else:
        if name_or_scope is not None:
            if not name_or_scope or not re.match(r"^[A-Za-z0-9_.\-/]*$", name_or_scope):
                raise ValueError(f"variable_scope: invalid scope name {name_or_scope!r}")
            short = name_or_scope
        else:
            short = _unique_scope_name(st, default_name)
        new_name = f"{old.name}/{short}" if old.name else short
        new_reuse = True if old.reuse is True else (reuse if reuse is not None else old.reuse)
        if old.reuse is AUTO_REUSE and reuse is None:
            new_reuse = AUTO_REUSE
        init = initializer if initializer is not None else old.initializer
        dt = dtype if dtype is not None else old._dtype
        ns_base = short
    st.counts[new_name] = st.counts.get(new_name, 0) + 1
    ctx = contextlib.ExitStack()
    with ctx:
        if auxiliary_name_scope:
            unique = graph.unique_name(ns_base.rsplit("/", 1)[-1]).rsplit("/", 1)[-1]
            prefix = "/".join(ns_base.split("/")[:-1])
            ctx.enter_context(graph.name_scope(f"{prefix}/{unique}" if prefix else unique))
        scope = VariableScope(new_reuse, new_name, init, dt, graph.current_scope())
        st.current = scope
        try:
            yield scope
        finally:
            st.current = old
            if old_counts is not None:
                st.counts = old_counts
            elif name_or_scope is not None:
                st.close_subscopes(new_name)


def _is_value(initializer) -> bool:
    """Is `initializer` a value (array, number, tensor), not an initializer function?"""
    if initializer is None or isinstance(initializer, inits.Initializer):
        return False
    if isinstance(initializer, type) and issubclass(initializer, inits.Initializer):
        return False
    return isinstance(initializer, Value) or not callable(initializer)


def _value_dtype(value, what: str) -> np.dtype:
    """The dtype TF1 gives a value: a tensor's or NumPy value's own; Python floats float32,
    ints int32 (int64 if needed), bools bool."""
    if isinstance(value, Value):
        return value.dtype
    return python_value_array(value, None, what).dtype


def _initializer_for(initializer, dtype, shape, what):
    """(Initializer, shape) from what TF1 accepts as an initializer."""
    if isinstance(initializer, type) and issubclass(initializer, inits.Initializer):
        initializer = initializer()
    if isinstance(initializer, inits.Initializer):
        return initializer, shape
    if isinstance(initializer, Value):
        init, value_shape = ops.initializer_from_value(initializer, what)
        if shape is not None and tuple(shape) != tuple(value_shape):
            raise ValueError(f"{what}: the initializer tensor has shape {list(value_shape)}, but "
                             f"shape={list(shape)} was given")
        return init, value_shape
    if callable(initializer):
        raise TypeError(f"{what}: initializer must be an rnngraph initializer (e.g. "
                        f"rg.zeros_initializer()), a tensor or an array, got {initializer!r}")
    arr = np.asarray(initializer, dtype=dtype)
    if shape is not None and arr.ndim and tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{what}: the initial value has shape {list(arr.shape)}, but "
                         f"shape={list(shape)} was given")
    return inits.Constant(arr), (tuple(arr.shape) if arr.ndim or shape is None else shape)


def get_variable(name, shape=None, dtype=None, initializer=None, regularizer=None,
                 trainable=None, collections=None, caching_device=None, partitioner=None,
                 validate_shape=True, use_resource=None, custom_getter=None, constraint=None,
                 **kwargs):
    """Get an existing variable or create a new one (tf.get_variable), named
    `<variable scope>/<name>`; name scopes do not count.

    In a scope with reuse=True the variable must exist (made by get_variable) and `shape` /
    `dtype`, when given, must match; with reuse False/None it must not exist yet; with
    AUTO_REUSE either. The default initializer is the scope's, else glorot-uniform for floats
    and zeros for ints and bools. `initializer` may be an initializer, a tensor or an array
    (then `shape` comes from it). As in TF1, a value or tensor initializer gives its own dtype
    (0 -> int32, a float64 array -> float64, 0.5 -> float32), and a `dtype=` that differs
    raises ValueError; an initializer function uses `dtype=` or the scope's (float32).
    """
    given = dict(collections=collections, caching_device=caching_device,
                 partitioner=partitioner, custom_getter=custom_getter, constraint=constraint)
    for arg, val in given.items():
        if val is not None:
            raise NotImplementedError(f"get_variable: the argument {arg}= is not supported by "
                                      f"rnngraph (got {val!r})")
    for arg in kwargs:   # synchronization / aggregation exist only for distributed variables
        raise NotImplementedError(f"get_variable: the argument {arg}= is not supported by "
                                  "rnngraph")
    if not validate_shape:
        raise NotImplementedError("get_variable: validate_shape=False is not supported (every "
                                  "variable has a fully known shape)")
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_variable: name must be a non-empty string, got {name!r}")
    st = _store()
    scope = st.current
    full = f"{scope.name}/{name}" if scope.name else name
    root = get_default_graph().root
    existing = st.made.get(full)
    if existing is not None and root._by_name.get(full) is not existing.node:
        del st.made[full]   # its node was removed (a failed build rolled it back)
        existing = None
    if scope.reuse is True or (scope.reuse is AUTO_REUSE and existing is not None):
        if existing is None:
            raise ValueError(f"Variable {full} does not exist, or was not created with "
                             "get_variable(). Did you mean to set reuse=rg.AUTO_REUSE in "
                             "VarScope?")
        if shape is not None and tuple(shape) != tuple(existing.shape):
            raise ValueError(f"Trying to share variable {full}, but specified shape "
                             f"{list(shape)} and found shape {list(existing.shape)}.")
        if dtype is not None and as_dtype(dtype) != existing.dtype:
            raise ValueError(f"Trying to share variable {full}, but specified dtype "
                             f"{as_dtype(dtype).name} and found dtype {existing.dtype.name}.")
        _record(st, existing)
        return existing
    if full in root._by_name:
        raise ValueError(f"Variable {full} already exists, disallowed. Did you mean to set "
                         f"reuse=True or reuse=rg.AUTO_REUSE in VarScope? Originally defined "
                         f"at: {root._by_name[full].location}")
    if dtype is not None and _is_value(initializer):   # TF1's check, before the defaults
        init_dtype = _value_dtype(initializer, f"get_variable {full!r}")
        if init_dtype != as_dtype(dtype):
            raise ValueError(f"Initializer type '{init_dtype.name}' and explicit dtype "
                             f"'{as_dtype(dtype).name}' don't match (get_variable {full!r}).")
    if initializer is None:
        initializer = scope.initializer
    if _is_value(initializer):   # TF1: a value's own dtype (0 -> int32, np.float64 -> float64)
        dtype = _value_dtype(initializer, f"get_variable {full!r}")
    else:   # an initializer function: dtype= or the scope's (float32)
        dtype = as_dtype(dtype) if dtype is not None else scope.dtype
    if initializer is None:
        initializer = inits.GlorotUniform() if np.issubdtype(dtype, np.floating) else inits.Zeros()
    initializer, shape = _initializer_for(initializer, dtype, shape, f"get_variable {full!r}")
    if shape is None:
        raise ValueError(f"get_variable: shape of a new variable ({full}) must be fully defined, "
                         "but instead was None")
    if isinstance(shape, (int, np.integer)):
        shape = [shape]
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
        raise ValueError(f"get_variable: variable shapes must be fully known: the shape of the "
                         f"new variable {full} was {list(shape)}")
    shape = [int(d) for d in shape]
    graph = get_default_graph()
    with graph.absolute_scope(""):
        var = ops.get_variable(full, shape, dtype, initializer,
                               trainable=True if trainable is None else bool(trainable))
    st.made[full] = var
    _record(st, var)
    if regularizer is not None:   # TF1: a new variable's loss joins REGULARIZATION_LOSSES
        from .regularizers import add_regularization_loss
        add_regularization_loss(var, regularizer)
    return var


def _record(st: _Store, var: Value) -> None:
    for rec in st.recorders:
        if not any(v is var for v in rec):
            rec.append(var)


@contextlib.contextmanager
def recording(into: list):
    """Append every variable get_variable returns inside the block to `into` (once each): how a
    cell knows its variables, those of the cells it calls and those its `call` gets itself."""
    st = _store()
    st.recorders.append(into)
    try:
        yield into
    finally:
        for k in range(len(st.recorders) - 1, -1, -1):
            if st.recorders[k] is into:
                del st.recorders[k]
                break


@contextlib.contextmanager
def build_transaction():
    """Undo everything a failed build added: the nodes of the default and root graphs (variables
    included) and the names they took, the scope counts and get_variable's records (a cell
    whose first call raises can be called again)."""
    graph = get_default_graph()
    root = graph.root
    st = _store(graph)
    marks = {id(g): (g, len(g.nodes), dict(g._name_counts)) for g in (graph, root)}
    variables = root.collections.setdefault("variables", [])
    n_vars, counts, made = len(variables), dict(st.counts), dict(st.made)
    try:
        yield
    except BaseException:
        for g, n, name_counts in marks.values():
            doomed = set(g.nodes[n:])
            if doomed:
                g.remove_nodes(doomed)
            g._name_counts = name_counts   # the names it took are free again
        del variables[n_vars:]
        st.counts, st.made = counts, made
        raise


def device(device_name_or_function):
    """tf.device: the nodes built inside are placed on a device (a declared node attribute).

    A device string ("/cpu:0", "/gpu:1", "/device:GPU:0", "/job:worker/task:0/device:CPU:0")
    is checked and kept in its canonical form ("/device:GPU:1") as the `device` attribute of
    every node built inside, loop bodies and gradients built there included: `print(graph)`
    shows it, rg.verify checks it and rg.save keeps it. Nested scopes merge as in TF1 (the
    inner string's fields win, the others are inherited); None clears the placement, "" changes
    nothing. The Session runs each node on its own device (Session(device=...)); a placement it
    cannot honour ('/gpu:0' in a CPU session, another job) is reported once on the "rnngraph"
    logger and the node runs on the session's device, as TF1 does with allow_soft_placement.
    The request is also recorded in the graph's "devices" collection with the name scope it
    was opened in. A device function (TF's replica_device_setter) raises NotImplementedError;
    a string that is not a device string raises ValueError naming it.
    """
    if callable(device_name_or_function):
        raise NotImplementedError("device: device functions are not supported; give a device "
                                  "string such as '/cpu:0' or '/gpu:0'")
    spec = device_name_or_function
    if spec is not None and not isinstance(spec, str):
        raise TypeError(f"device: expected a device string, got {spec!r}")
    if spec:
        device_spec.parse(spec)   # ValueError naming the string
    return _device_scope(spec)


@contextlib.contextmanager
def _device_scope(spec):
    graph = get_default_graph()
    graph.root.collections.setdefault("devices", []).append(
        [graph.current_scope(), spec or "", user_location()])
    with graph.device_scope(spec):
        yield spec or ""
