"""The Op protocol and `apply`, which turns an op plus inputs into a node of the right graph.

One op is one small class holding its attributes and three rules side by side:
  infer(*input_types)  -> output TensorType(s)    (build time; raise ShapeError on mismatch)
  compute(xp, *arrays) -> output array(s)         (xp is numpy or cupy)
  vjp(node, *cotangents) -> one cotangent Value (or None) per input, built from more ops
"""
from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import as_dtype
from ..errors import GradientError, ShapeError, user_location
from ..ir.graph import Graph, get_default_graph
from ..ir.types import TensorType, fmt_shape
from ..ir.value import Value


class Op:
    name = "op"                # printed mnemonic, e.g. "matmul"
    multi_output = False       # compute returns a tuple and vjp takes one cotangent per output
    stateful = False           # reads or writes session state (variables); see runtime
    differentiable = True      # False: gradients stop here silently (comparisons, casts to int...)
    shape_inputs: tuple = ()   # inputs read for their shape only (passes/shape_reads.py)
    foldable = True            # fold_constants may run compute() on constant inputs at compile
    # time (False: the run-time kernel checks or does something compute alone does not)

    def infer(self, *types: TensorType):
        raise NotImplementedError

    def compute(self, xp, *args):
        raise NotImplementedError(f"op {self.name} has no kernel")

    def vjp(self, node, *cotangents):
        raise GradientError(f"no gradient rule for op '{self.name}' (node {node.describe()})")

    # --- description ------------------------------------------------------------------------
    def attrs(self) -> dict:
        """The op's attributes, as printed and serialised (plain Python data)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def subgraphs(self) -> list[Graph]:
        """Nested graphs (loop bodies); empty for ordinary ops."""
        return []

    def default_name(self) -> str:
        return type(self).__name__

    def flops(self, node) -> int:
        """Rough floating-point operations for one run (the memory planner's cost model)."""
        n = 0
        for v in node.outputs:
            size = 1
            for d in v.shape:
                size *= d or 1
            n += size
        return n

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.attrs().items())
        return f"{self.name}[{items}]" if items else self.name


def reads_shape_only(node, v) -> bool:
    """Does `node` read `v` for its shape alone (its `shape_inputs`), with a kernel that looks
    at nothing else: not a fusible op, whose fused kernel takes the array itself?"""
    if getattr(node.op, "fusible", False):
        return False
    shape_only = node.op.shape_inputs
    return all(i in shape_only for i, x in enumerate(node.inputs) if x is v)


def as_value(x, dtype=None, graph: Graph | None = None) -> Value:
    """A Value for `x`: Values pass through; numbers and arrays become constant nodes."""
    if isinstance(x, Value):
        return x
    from .sources import constant   # cycle: ops/sources.py imports this module
    if dtype is None and isinstance(x, (np.generic, np.ndarray)):
        return constant(x, graph=graph)   # NumPy values keep their dtype (np.float64 is a float)
    if dtype is None and isinstance(x, bool):
        dtype = np.bool_
    elif dtype is None and isinstance(x, numbers.Integral) and -2**31 <= x < 2**31:
        dtype = np.int32   # (a larger Python int becomes int64, as in TF1)
    elif dtype is None and isinstance(x, float):
        dtype = np.float32
    return constant(x, dtype=dtype, graph=graph)


def _target_graph(inputs: list[Value]) -> Graph:
    """The graph a new node goes into: the default graph, unless every input lives in one
    unrelated graph (then that graph, so `a + b` works outside `as_default()` blocks)."""
    graph = get_default_graph()
    graphs = {id(v.graph): v.graph for v in inputs}
    if not graphs or all(g is graph or g.is_ancestor_of(graph) for g in graphs.values()):
        return graph
    if graph.capture_fn is not None:
        return graph
    if len(graphs) == 1:
        return next(iter(graphs.values()))
    raise ValueError("cannot combine values of different graphs: "
                     + ", ".join(f"{v.name} in {v.graph!r}" for v in inputs))


def apply(op: Op, inputs, name: str | None = None):
    """Add a node running `op` on `inputs`; return its output Value (or list for multi-output)."""
    inputs = [as_value(x) for x in inputs]
    graph = _target_graph(inputs)
    inputs = [graph.capture(v) for v in inputs]
    frames = graph.control_frames   # rg.control_dependencies: a wrapped input orders the node
    if frames:
        from .misc import control_inputs   # cycle: ops/misc.py imports this module
        inputs = [graph.capture(v) for v in control_inputs(frames[-1], op, inputs)]
    location = user_location()
    try:
        types = op.infer(*[v.type for v in inputs])
    except (ShapeError, TypeError) as exc:
        what = name or op.default_name()
        scope = graph.current_scope()
        where = f"{scope}/{what}" if scope else what
        shapes = ", ".join(str(v.type) for v in inputs) or "no inputs"
        raise type(exc)(f"{op.name} '{where}' at {location}: {exc} (inputs: {shapes})") from None
    if isinstance(types, TensorType):
        types = [types]
    node = graph.add_node(op, inputs, list(types), name, location)
    if frames and inputs:   # (it follows the block's dependencies: a source does not)
        frames[-1].covered.update(node.outputs)
    return node.outputs if op.multi_output else node.outputs[0]


def same_dtype(op_name: str, *types: TensorType):
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        raise TypeError(f"dtypes differ: {' vs '.join(str(t.dtype) for t in types)} "
                        f"(cast one with rg.cast)")
    return types[0].dtype


def require_float(t: TensorType, what: str = "input"):
    if not np.issubdtype(t.dtype, np.floating):
        raise TypeError(f"{what} must be floating point, got {t.dtype}")


def check_rank(t: TensorType, rank: int, what: str = "input"):
    if t.rank != rank:
        raise ShapeError(f"{what} must have rank {rank}, got shape {fmt_shape(t.shape)}")


def to_dtype(dtype):
    return None if dtype is None else as_dtype(dtype)
