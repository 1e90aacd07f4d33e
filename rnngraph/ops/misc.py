"""TF1 odds and ends: range (tf.range), no_op (tf.no_op), stop_gradient (tf.stop_gradient),
identity (tf.identity) and control_dependencies (tf.control_dependencies)."""
from __future__ import annotations

import contextlib
import numbers

import numpy as np

from ..dtypes import as_dtype, is_integer
from ..errors import user_location
from ..ir.graph import Graph, get_default_graph
from ..ir.node import Node
from ..ir.types import TensorType
from ..ir.value import Value, install_operators
from .base import Op, apply, as_value
from .group import Group, group
from .sources import constant


class Range(Op):
    """[start, start + delta, ...) below `limit` (above it for a negative delta); its length is
    known only at run time."""
    name, differentiable = "range", False

    def __init__(self, dtype):
        self.dtype = as_dtype(dtype).name

    def infer(self, start, limit, delta):
        for what, t in (("start", start), ("limit", limit), ("delta", delta)):
            if t.rank != 0:
                raise TypeError(f"range: {what} must be a scalar, got {t}")
        return TensorType((None,), self.dtype)

    def compute(self, xp, start, limit, delta):
        if delta == 0:
            raise ValueError("range: delta must not be 0")
        return xp.arange(start, limit, delta).astype(self.dtype)


def range(start, limit=None, delta=1, dtype=None, name="range"):  # noqa: A001 (TF's name)
    """A 1-D sequence like Python's range (tf.range(limit) or tf.range(start, limit, delta)).

    The dtype is int32 when every argument is an integer, float32 when one is a float (or
    `dtype`). With Python numbers the result is a constant of known length; with scalar
    tensors its length is known at run time."""
    if limit is None:
        start, limit = 0, start
    args = [start, limit, delta]
    if dtype is None:
        kinds = [a.dtype if isinstance(a, Value) else
                 (np.dtype(np.int32) if isinstance(a, numbers.Integral) else np.dtype(np.float32))
                 for a in args]
        dtype = np.int32 if all(is_integer(k) for k in kinds) else \
            next((k for k in kinds if not is_integer(k)), np.float32)
    dtype = as_dtype(dtype)
    if not any(isinstance(a, Value) for a in args):
        if delta == 0:
            raise ValueError("range: delta must not be 0")
        return constant(np.arange(start, limit, delta).astype(dtype), name=name)
    return apply(Range(dtype), [as_value(a, dtype) if not isinstance(a, Value) else a
                                for a in args], name=name)


def no_op(name=None):
    """An op that does nothing (tf.no_op); fetching it runs nothing."""
    return group(name=name or "NoOp")


class StopGradient(Op):
    """The identity forward; no gradient flows back through it."""
    name, differentiable = "stop_gradient", False

    def infer(self, x):
        return x

    def compute(self, xp, x):
        return x


def stop_gradient(input, name=None):  # noqa: A002 (TF's argument name)
    """`input` unchanged, as a constant for the gradient (tf.stop_gradient)."""
    return apply(StopGradient(), [as_value(input)], name=name or "StopGradient")


class Identity(Op):
    """Its first input unchanged; any further inputs are dependencies only: they are computed
    before it (so fetching the result runs them, as TF1's identity under
    control_dependencies does) and get no gradient."""
    name = "identity"
    foldable = False   # folding would drop the dependencies

    def infer(self, x, *dependencies):
        return x

    def compute(self, xp, x, *dependencies):
        return x

    def aliases_input(self, node):
        return 0   # (a view: memory plans see no copy)

    def vjp(self, node, g):
        return [g] + [None] * (len(node.inputs) - 1)

    def flops(self, node):
        return 0


class ReadVariable(Op):
    """The value of variable `var` read after its further inputs (dependencies) ran: what
    rg.identity(v) builds inside rg.control_dependencies, so the read sees their writes (TF1's
    idiom for reading an assigned value). The runtime reads the session's variable store
    (runtime/state_kernels.py); `compute` is the reference on the value given. The gradient
    flows to the variable, none to the dependencies."""
    name = "read_variable"
    stateful = True    # a read at its place in the run: never merged, hoisted or recomputed
    foldable = False

    def infer(self, var, *dependencies):
        return var

    def compute(self, xp, var, *dependencies):
        return var

    def aliases_input(self, node):
        return 0   # (the variable's own array: memory plans see no copy)

    def vjp(self, node, g):
        return [g] + [None] * (len(node.inputs) - 1)

    def flops(self, node):
        return 0


def identity(input, name=None):  # noqa: A002 (TF's argument name)
    """`input` unchanged, as a new node (tf.identity). Of a variable inside
    rg.control_dependencies, a read made after the dependencies (it sees what they assign)."""
    x = as_value(input)
    graph = get_default_graph()
    if not (x.graph is graph or x.graph.is_ancestor_of(graph)):
        graph = x.graph   # (where apply puts the node)
    frames = graph.control_frames
    if frames and frames[-1].deps and x.node.op.name == "variable" and x.graph is graph:
        return apply(ReadVariable(), [x], name=name or "Identity")
    return apply(Identity(), [x], name=name or "Identity")


def _read_value(v):
    """Value.read_value(): `v` itself, or inside rg.control_dependencies a read after them."""
    frames = v.graph.control_frames   # (a variable: the root graph's blocks)
    return identity(v, name="read_value") if frames and frames[-1].deps else v


install_operators(read_value=_read_value)


def with_dependencies(dependencies, output_tensor, name=None):
    """`output_tensor` unchanged, computed only after every value in `dependencies` (TF1's
    control_flow_ops.with_dependencies: identity under control_dependencies). Fetching the
    result runs the dependencies; gradients flow to `output_tensor` only."""
    deps = [as_value(d) for d in dependencies]
    return apply(Identity(), [as_value(output_tensor)] + deps, name=name or "Identity")


# --- tf.control_dependencies ---------------------------------------------------------------------
class _ControlFrame:
    """One open rg.control_dependencies block: the values every node built inside must follow
    (the enclosing blocks' too), the values built inside so far (they follow them already) and
    the variable reads made after them (one per variable)."""
    __slots__ = ("deps", "covered", "reads")

    def __init__(self, deps: list):
        self.deps = deps
        self.covered: set = set()
        self.reads: dict = {}


def _control_value(c, graph) -> Value:
    what = c
    if isinstance(c, Node):
        if not c.outputs:
            raise TypeError(f"control_dependencies: node {c.name!r} has no output to depend on")
        c = c.outputs[0]
    if not isinstance(c, Value):
        raise TypeError(f"Can not convert a {type(what).__name__} into a Tensor or Operation: "
                        f"control_dependencies takes ops and tensors, got {what!r} "
                        f"(at {user_location()})")
    if not (c.graph is graph or c.graph.is_ancestor_of(graph)):
        raise ValueError(f"control_dependencies: {c.name} belongs to another graph (at "
                         f"{user_location()})")
    return c


def control_dependencies(control_inputs):
    """Nodes built inside run after every op or tensor in `control_inputs`
    (tf.control_dependencies): fetching one of them runs those first. Blocks nest (the
    dependencies add up); None clears them. The dependencies get no gradient.

    Each node built inside reads one input through an identity that depends on them (unless
    an input was built inside already); rg.group and rg.identity take them as inputs, and
    rg.identity(v) (and v.read_value()) of a variable is a read made after them, seeing what
    they assign (TF1's idiom), as are the variables of an op reading only variables, constants
    and placeholders (v * 2); an op with a computed input reads its variables unordered with
    them, as TF1's do. Ops without inputs (constants, variables, placeholders) get none."""
    return _control_dependencies(get_default_graph(), control_inputs)


def _control_dependencies(graph, control_inputs):
    frames = graph.control_frames
    if control_inputs is None:
        deps = []
    else:
        if isinstance(control_inputs, (Value, Node)):
            raise TypeError(f"control_dependencies takes a list of ops and tensors, got "
                            f"{control_inputs!r} (at {user_location()})")
        deps = list(frames[-1].deps) if frames else []
        for c in control_inputs:
            v = _control_value(c, graph)
            if not any(v is d for d in deps):
                deps.append(v)
    return _control_block(frames, deps)   # (checked here: errors name the caller's line)


Graph.control_block = _control_dependencies   # (graph.control_dependencies(...), TF1's method)


@contextlib.contextmanager
def _control_block(frames: list, deps: list):
    frame = _ControlFrame(deps)
    frames.append(frame)
    try:
        yield None
    finally:
        frames.pop()
        if frames and all(any(d is e for e in deps) for d in frames[-1].deps):
            frames[-1].covered.update(frame.covered)   # they follow the outer block's too


def control_inputs(frame: _ControlFrame, op, inputs: list) -> list:
    """`inputs` of a node `op` built in the block `frame`, made to follow its dependencies
    (ops/base.py's apply calls this): the dependencies not among the inputs are added to an
    identity, a group or a variable read, or one input is read through an identity that has
    them (or a read made after them, for a variable's value); nothing when an input was built
    in the block already, or the node has no input."""
    deps = [d for d in frame.deps if not any(d is v for v in inputs)]
    if not deps or any(v in frame.covered for v in inputs):
        return inputs
    if isinstance(op, (Identity, Group, ReadVariable)):
        return list(inputs) + deps
    if not inputs:
        return inputs
    skip = set(op.shape_inputs)
    if op.stateful and inputs[0].node.op.name == "variable":
        skip.add(0)   # (an assign's variable stays its first input)
    order = sorted((i for i, _ in enumerate(inputs) if i not in skip),   # (range is tf.range)
                   key=lambda i: (not inputs[i].node.inputs,
                                  inputs[i].node.op.name != "variable"))
    if not order:
        return inputs
    i = order[0]
    if inputs[i].node.inputs or inputs[i].node.op.name != "variable":
        new = apply(Identity(), [inputs[i]], name="control_dependency")
        return inputs[:i] + [new] + inputs[i + 1:]
    # no input is computed and one is a variable: every variable it reads is read after them
    out = list(inputs)
    for i in order:
        v = inputs[i]
        if v.node.op.name == "variable":
            new = frame.reads.get(v)
            if new is None or new.node.graph._by_name.get(new.node.name) is not new.node:
                # (none yet, or a failed build took it out of the graph again)
                new = frame.reads[v] = apply(ReadVariable(), [v], name="read")
            out[i] = new
    return out


class InitListedVariables(Op):
    """Set each input variable to its seeded initial value, as rg.global_variables_initializer
    does for all (tf.variables_initializer); returns True. The inputs are the variables (or
    their reads, under rg.control_dependencies)."""
    name = "init_listed_variables"
    foldable = False
    stateful = True
    differentiable = False

    def infer(self, *variables):
        return TensorType((), "bool")


def variables_initializer(var_list, name="init"):
    """An op that, when run, (re)initialises the variables of `var_list` only, to the values
    the session's seed gives them (tf.variables_initializer); an empty list gives a no_op."""
    variables = list(var_list)
    for v in variables:
        if not isinstance(v, Value) or v.node.op.name != "variable":
            raise TypeError(f"variables_initializer at {user_location()}: var_list holds "
                            f"variables, got {v!r}")
    if not variables:
        return no_op(name=name)
    root = variables[0].graph.root
    with root.as_default():
        return group(apply(InitListedVariables(), variables, name=f"{name}/variables"),
                     name=name)
