"""Reverse mode as a graph-to-graph transform: `gradients(ys, xs)` adds gradient nodes to the
graph of `ys` and returns their Values, like tf.gradients.

Walk the nodes on a path from xs to ys in reverse creation (= topological) order, ask each op's
vjp for its inputs' cotangents, and sum the cotangents of values used more than once. A loop
node's vjp is another loop node running backwards (see ops/loop.py).

Names follow the forward graph: everything built for a node's gradient, the sum of its outputs'
cotangents included, lives under `<name_scope>/<node name>_grad/` (gradients/rnn/step_3/
lstm_cell/Add_3_grad/AddN), and the sum over its uses of an x under `<x's node name>_grad/`
(gradients/rnn/lstm_cell/kernel_grad/AddN). TF 1.x leaves those sums at the top
(gradients/AddN_k); here each stays with the step it belongs to.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import GradientError
from ..ir.graph import Graph, get_default_graph
from ..ir.node import Node
from ..ir.value import Value
from .. import ops


def _as_list(x) -> tuple[list, bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def nodes_between(graph: Graph, xs: Sequence[Value], ys: Sequence[Value]) -> tuple[list[Node], set]:
    """Nodes of `graph` with an input depending on an x and an output reaching a y, in order;
    plus the set of values that depend on some x."""
    depends = set(xs)
    forward = []
    for node in graph.nodes:
        if any(v in depends for v in node.inputs):
            forward.append(node)
            depends.update(node.outputs)
    reach = set(ys)
    between = []
    for node in reversed(forward):
        if any(v in reach for v in node.outputs):
            between.append(node)
            reach.update(node.inputs)
    between.reverse()
    return between, depends


def _accumulate(parts: list[Value]) -> Value:
    return parts[0] if len(parts) == 1 else ops.add_n(parts)


def gradients(ys, xs, grad_ys=None, name: str = "gradients"):
    """Symbolic d(sum of ys)/d(x) for each x, as Values in the same graph.

    `grad_ys` (optional) are the cotangents of ys (default: ones). Returns a list with one Value
    per x, or None for an x that no y depends on; always a list, a single x included, as
    tf.gradients does (so `gradients(loss, x)[0]` is the gradient, not its first row). Raises
    GradientError naming the op that lacks a rule, TypeError for an integer y.
    """
    ys, _ = _as_list(ys)
    xs, _ = _as_list(xs)
    if not ys:
        raise ValueError("gradients() needs at least one y")
    for v in ys + xs:
        if not isinstance(v, Value):
            raise TypeError(f"gradients() takes Values, got {type(v).__name__}: {v!r}")
    graph = ys[0].graph
    for v in ys + xs:
        if v.graph is not graph:
            raise ValueError(f"{v!r} is not in the graph of {ys[0]!r}")
    for y in ys:
        if not np.issubdtype(y.dtype, np.floating):
            raise TypeError(f"cannot differentiate integer/bool value {y.name} ({y.type}), built "
                            f"at {y.node.location}")
    if grad_ys is None:
        grad_ys = [None] * len(ys)
    else:
        grad_ys, _ = _as_list(grad_ys)
        if len(grad_ys) != len(ys):
            raise ValueError(f"{len(grad_ys)} grad_ys for {len(ys)} ys")

    start = len(graph.nodes)
    with graph.as_default(), graph.name_scope(name):
        seeds = {}
        for y, gy in zip(ys, grad_ys):
            seed = ops.ones_like(y) if gy is None else ops.cast(ops.as_value(gy, y.dtype), y.dtype)
            seeds[y] = ops.add(seeds[y], seed) if y in seeds else seed
        results = backprop(graph, seeds, xs)
    _prune_and_mark(graph, start, results)
    return results


def backprop(graph: Graph, seeds: dict, xs: Sequence[Value], strip_prefix: str = "") -> list:
    """The reverse walk over `graph`: cotangents of `xs` given those of some of its values.

    Cotangent nodes are built in the *default* graph, which may differ from `graph`: a loop's
    vjp differentiates its body into a new backward body (values of the forward body are then
    resolved by the backward body's capture function). `strip_prefix` is left off the forward
    names that cotangent nodes are named after (a loop body's nodes share the loop's prefix).
    """
    between, depends = nodes_between(graph, xs, list(seeds))
    cotangents: dict[Value, list[Value]] = {}
    for y, seed in seeds.items():
        if y in depends or y in xs:
            cotangents.setdefault(y, []).append(seed)
    for node in reversed(between):
        if not node.op.differentiable or not any(v in cotangents for v in node.outputs):
            continue
        # named under the forward node (gradients/rnn/step_3/MatMul_grad/...), as TF does; so
        # is the sum of its outputs' cotangents (gradients/rnn/step_3/Add_3_grad/AddN), which
        # TF leaves at the top (gradients/AddN_k): here it stays with the step it belongs to
        with get_default_graph().name_scope(_grad_scope(node, strip_prefix)):
            gs = [_accumulate(cotangents[v]) if v in cotangents else None for v in node.outputs]
            for v, g in zip(node.outputs, gs):  # keep the sum, not the parts, for reuse
                if g is not None:
                    cotangents[v] = [g]
            try:
                vjp = _rule(node.op)
                grads = vjp(node, *gs) if node.op.multi_output else vjp(node, gs[0])
            except GradientError:
                raise
            except NotImplementedError as exc:
                raise GradientError(f"no gradient rule for op '{node.op.name}' "
                                    f"(node {node.describe()}): {exc}") from None
            if len(grads) != len(node.inputs):
                raise AssertionError(f"vjp of {node.op.name} gave {len(grads)} cotangents "
                                     f"for {len(node.inputs)} inputs")
            for v, g in zip(node.inputs, grads):
                if g is not None and (v in depends or v in xs):
                    if g.dtype != v.dtype:
                        g = ops.cast(g, v.dtype)
                    cotangents.setdefault(v, []).append(g)
    results = []
    for x in xs:  # a shared weight's sum over steps: gradients/rnn/lstm_cell/kernel_grad/AddN
        if x in cotangents:
            with get_default_graph().name_scope(_grad_scope(x.node, strip_prefix)):
                results.append(_accumulate(cotangents[x]))
        else:
            results.append(None)
    return results


def _grad_scope(node: Node, strip_prefix: str) -> str:
    """The name scope of `node`'s gradient: its name (less `strip_prefix`) + '_grad'."""
    name = node.name[len(strip_prefix):] if node.name.startswith(strip_prefix) else node.name
    return name + "_grad"


def _prune_and_mark(graph: Graph, start: int, results: list) -> None:
    """Mark the nodes this call added as gradient nodes; drop those no result depends on."""
    added = graph.nodes[start:]
    keep = set()
    stack = [r.node for r in results if r is not None]
    added_set = set(added)
    while stack:
        n = stack.pop()
        if n in keep or n not in added_set:
            continue
        keep.add(n)
        stack.extend(v.node for v in n.inputs)
    graph.remove_nodes(added_set - keep)
    for n in keep:
        _mark_gradient(n)


def _mark_gradient(node: Node) -> None:
    node.is_gradient = True
    for body in node.op.subgraphs():
        for inner in body.nodes:
            _mark_gradient(inner)


def _rule(op):
    """The vjp of `op`: a rule of this layer for ops whose gradient is a transform of their
    body (a loop's: a reverse loop, autodiff/loop.py), else the op's own `vjp`."""
    rule = _RULES.get(type(op))
    if rule is None:
        return op.vjp
    return lambda node, *gs: rule(op, node, list(gs))


from ..ops.loop import Loop  # noqa: E402
from .loop import loop_vjp  # noqa: E402  (it calls back into backprop above)

_RULES = {Loop: loop_vjp}

