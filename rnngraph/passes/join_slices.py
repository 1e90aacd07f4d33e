"""join_slices: a sum of slice gradients that tile their input becomes one concat.

A cell reads its kernel in slices (kernel[:input_size] for the inputs, kernel[input_size:] for
the state), so the kernel's gradient is getitem_grad(g_x)[:I] + getitem_grad(g_h)[I:]: two
zero-filled copies of the whole kernel and a sum of them. When the slices cover one axis of
the input end to end, that is concat([g_x, g_h]) (LSTM S2: 0.84 ms of a 14 ms step, in three
passes over a fresh [178, 600] array, became one copy). When the parts are weight-gradient
products over the same gradient stack (sink.py's step_contract), they become one product over
the stacks side by side, and no concat is needed; and the bias's gradient, a sum of that same
stack, becomes one more row of that product (a column of ones beside the stacks).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.elementwise import SumTo
from ..ops.reduce import AddN
from ..ops.shape import Concat, Getitem, GetitemGrad
from ..ops.steps import StepContract, StepSum
from .rewrite import replace_uses, result_values, toposort, uses


def join_slice_gradients(graph: Graph) -> int:
    count = 0
    for node in graph.nodes:
        for body in node.op.subgraphs():
            count += join_slice_gradients(body)
    readers, results = uses(graph), result_values(graph)
    superseded: set = set()   # products now computed by a joined one (dead, not yet swept)
    for node in list(graph.nodes):
        if not (isinstance(node.op, AddN) or node.op.name == "add") or len(node.inputs) < 2:
            continue
        parts = _tiling(node, readers, results)
        if parts is None:
            continue
        axis, grads = parts
        out = node.outputs[0]
        inputs = _one_contraction(grads, readers, results) if axis == 0 else None
        if inputs is not None:   # the parts' products are one product over their stacks
            joined = graph.add_node(StepContract(len(grads)), inputs, [out.type],
                                    node.name + "/joined", node.location)
            superseded.update(g.node for g in grads)
        else:
            joined = graph.add_node(Concat(axis), grads, [out.type], node.name + "/joined",
                                    node.location)
        joined.is_gradient = node.is_gradient
        replace_uses(graph, out, joined.outputs[0])
        count += 1
    count += _fold_bias_sums(graph, superseded)
    if count:
        toposort(graph)
    return count


def _fold_bias_sums(graph: Graph, superseded: set) -> int:
    """sum_to(step_sum(b)) [N] (a bias's gradient) next to step_contract(a.., b) (its kernel's)
    over the same stack b, steps and rows: one step_contract with a column of ones, whose last
    row is the bias gradient and whose other rows are the kernel gradient."""
    contractions = {}
    for node in graph.nodes:
        if isinstance(node.op, StepContract) and not node.op.ones and node not in superseded:
            key = tuple(id(v) for v in node.op.split(node.inputs)[2])   # b, n, rows
            contractions.setdefault(key, node)
    if not contractions:
        return 0
    readers, results = uses(graph), result_values(graph)
    count = 0
    for node in list(graph.nodes):
        if not isinstance(node.op, SumTo) or node.op.lead != 1 or node.op.axes:
            continue
        summed = node.inputs[0]
        step_sum = summed.node
        if not isinstance(step_sum.op, StepSum) or summed.type.rank != 2 or \
                readers.get(summed) != [node] or summed in results:
            continue
        contraction = contractions.pop(tuple(id(v) for v in step_sum.inputs), None)
        if contraction is None or contraction.outputs[0].dtype != node.outputs[0].dtype:
            continue
        op, kernel = contraction.op, contraction.outputs[0]
        k = kernel.shape[0]
        if k is None:
            continue
        both = graph.add_node(StepContract(op.parts, True, op.shifted), list(contraction.inputs),
                              [TensorType((k + 1,) + kernel.shape[1:], kernel.dtype)],
                              contraction.name + "/with_bias", contraction.location)
        for old, key, name in ((kernel, slice(0, k), "kernel"), (node.outputs[0], k, "bias")):
            part = graph.add_node(Getitem(key), both.outputs, [old.type],
                                  f"{both.name}/{name}", contraction.location)
            part.is_gradient = both.is_gradient = contraction.is_gradient
            replace_uses(graph, old, part.outputs[0])
        count += 1
    return count


def _tiling(node, readers, results):
    """(axis, slice gradients in order) when node sums getitem_grads of one value, read by
    nothing else, whose keys are step-1 slices of one axis covering it end to end; else None."""
    out = node.outputs[0]
    x = None
    spans = []
    for v in node.inputs:
        n = v.node
        if not isinstance(n.op, GetitemGrad) or readers.get(v) != [node] or v.type != out.type \
                or v in results:
            return None
        if x is None:
            x = n.inputs[1]
        elif n.inputs[1] is not x:
            return None
        span = _span(n.op.key, x.type.rank)
        if span is None:
            return None
        spans.append(span + (n.inputs[0],))
    axes = {s[0] for s in spans}
    if len(axes) != 1:
        return None
    axis = axes.pop()
    size = x.type.shape[axis]
    spans.sort(key=lambda s: s[1])
    at = 0
    for _, start, stop, g in spans:
        stop = size if stop is None else stop
        if start != at or stop is None or g.type.shape[axis] not in (None, stop - start):
            return None
        at = stop
    if size is None or at != size:
        return None
    return axis, [g for *_, g in spans]


def _one_contraction(grads, readers, results):
    """Inputs of one StepContract computing all of `grads` stacked along rows, when each is a
    step_contract (nobody else reads) over the same b, step count and active rows; else None."""
    nodes = [g.node for g in grads]
    if not all(isinstance(n.op, StepContract) for n in nodes) or \
            any(len(readers.get(g, [])) != 1 or g in results for g in grads):
        return None
    if any(n.op.shifted or n.op.ones for n in nodes):
        return None
    shared = [n.op.split(n.inputs)[2] for n in nodes]   # b, n, rows
    if any(len(s) != len(shared[0]) or any(u is not v for u, v in zip(s, shared[0]))
           for s in shared):
        return None
    return [a for n in nodes for a in n.inputs[:n.op.parts]] + list(shared[0])


def _span(key, rank):
    """(axis, start, stop) for a key that slices one axis with step 1 and leaves the others
    whole (stop None: to the end); None for any other key."""
    if len(key) > rank or any(not isinstance(k, tuple) for k in key):
        return None  # ints, newaxis or ellipsis: not a plain block
    cut = [(i, k) for i, k in enumerate(key) if k[1:] != (None, None, None)]
    if len(cut) != 1:
        return None
    axis, (_, start, stop, step) = cut[0]
    start = start or 0
    if step not in (None, 1) or start < 0 or (stop is not None and stop <= start):
        return None
    return axis, start, stop
