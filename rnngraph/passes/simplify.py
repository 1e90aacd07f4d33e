"""Generic clean-ups: constant folding and common-subexpression elimination (in bodies too)."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ops.elementwise import _FilledLike
from ..ops.sources import Constant
from .rewrite import substitute, substitute_results, toposort

_MAX_FOLD_BYTES = 1 << 20  # fold small things only; a folded constant lives as long as the program


def fold_constants(graph: Graph) -> int:
    count = appended = 0
    mapping: dict = {}
    for node in list(graph.nodes):
        substitute(node, mapping)
        if node.op.subgraphs():
            count += fold_constants(node.op.body)
            continue
        op = node.op
        if op.name in ("constant", "param") or op.stateful or op.multi_output or not node.inputs:
            continue
        filled = _filled_like(op, node.outputs[0].type) if isinstance(op, _FilledLike) else None
        if filled is not None:   # reads only x's static shape: x need not be computed for it
            const = graph.add_node(Constant(filled), [], [node.outputs[0].type],
                                   node.name + "/folded", node.location)
            graph.nodes.pop()   # in the node's place, so the order stays topological
            graph.nodes.insert(graph.nodes.index(node), const)
            mapping[node.outputs[0]] = const.outputs[0]
            count += 1
            continue
        if not all(v.node.op.name == "constant" for v in node.inputs):
            continue
        if not op.foldable:  # run-time checks and state stay
            continue
        try:
            value = np.asarray(op.compute(np, *[v.node.op.value for v in node.inputs]))
        except Exception:  # leave it to run time, where the error names the node properly
            continue
        if value.nbytes > _MAX_FOLD_BYTES:
            continue
        value = value.astype(node.outputs[0].dtype, copy=False)
        value.setflags(write=False)
        const = graph.add_node(Constant(value), [], [node.outputs[0].type], node.name + "/folded",
                               node.location)
        mapping[node.outputs[0]] = const.outputs[0]
        count += 1
        appended += 1
    substitute_results(graph, mapping)
    if appended:
        toposort(graph)  # the new constants were appended; put them before their readers
    return count


def _filled_like(op, t):
    """The value of ones_like(x)/zeros_like(x) for a scalar x, else None: gradients(loss) seeds
    with ones_like(loss), so folded, the loss is not computed when only gradients are fetched.
    (Scalars only: a loop's accumulators start from zeros_like(weight), which stay arrays.)"""
    if t.shape != () or not isinstance(op, _FilledLike):
        return None
    value = np.full(t.shape, op.fill, t.dtype)
    value.setflags(write=False)
    return value


def eliminate_common_subexpressions(graph: Graph) -> int:
    count = 0
    seen: dict = {}
    mapping: dict = {}  # duplicate's output -> the first node's output
    fed = set((graph.results or {}).get("fed", ()))   # (the caller's arrays: never merged)
    for node in list(graph.nodes):
        substitute(node, mapping)
        if node.op.subgraphs():
            count += eliminate_common_subexpressions(node.op.body)
            continue
        if fed and any(v in fed for v in node.outputs):
            continue   # a fed tensor replaces that one only, not its twin (TF1)
        if node.op.stateful or (not node.inputs and node.op.name != "constant"):
            continue  # two placeholders (or params) of one type are still different values
        if not getattr(node.op, "mergeable", True):
            continue  # each makes a buffer of its own (ops/scatter.py's accumulator_zeros)
        key = _key(node)
        if key is None:
            continue
        if key in seen:
            mapping.update(zip(node.outputs, seen[key].outputs))
            count += 1
        else:
            seen[key] = node
    substitute_results(graph, mapping)
    return count


def _key(node):
    op = node.op
    if op.name == "constant":
        v = op.value
        if v.nbytes > 4096:
            return None
        return ("constant", v.dtype.str, v.shape, v.tobytes())
    attrs = op.attrs()
    if attrs:   # (most ops have none: a 1000-step static graph has ~40,000 such nodes)
        try:
            attrs = repr(sorted(attrs.items()))
        except TypeError:
            return None
    else:
        attrs = ""
    return (type(op), attrs, tuple(node.inputs))   # Values compare by identity
