"""Stream a loop's stacked output through its per-step consumers (memory planning only).

A forward loop's output stack S ([T, B, ...]) is often read only by per-step elementwise work
that ends in full reductions (a loss `reduce_sum(y * y)`) and, on the gradient side, in the
[T, B, ...] gradient that the backward loop reads one row at a time (`2 * y * g`). Each of
those [T, B, ...] tensors is as big as a saved tensor times T, and none of them is a saved
tensor, so a memory plan cannot move them. This pass moves that work into the loops:

- a full reduction of the region becomes a carried accumulator of the forward loop (its
  per-step partial sum is added to a carried scalar whose final value replaces the reduction);
- a region value the backward loop reads as a sequence is computed inside that loop, per step,
  from the forward loop's per-step output, which becomes one more residual of the forward loop
  (a saved tensor: the planner keeps, offloads or recomputes it like the others).

The region is what reads S through transposes that only move the time axis (dynamic_rnn's
batch-major output) and elementwise ops whose other operands are scalars. Every reader of the
region must be in it or be one of those two sinks, else nothing moves (the stack is needed
whole anyway). The forward loop is a top-level loop without a condition. Where it may stop
before the end of its output stack or leave rows out (a trip count, active rows: dynamic_rnn
with sequence_length), those rows of the stack are zero and the loop never sees them, so a sum
moves only if its work is zero at zero (`y * y` is, `(y + 1) ** 2` is not). Row reorderings
(dynamic_rnn's unsort, and its gradient's inverse) are seen through: elementwise work commutes
with them, a sum does not see them, and the backward loop reads rows whose reorderings cancel.

The result is ordinary IR (a carried state, a residual, body ops named `.../streamed`), so it
is printed, verified and saved like every graph. The pass is off unless asked for
(`passes={"stream_outputs": True}`); the memory planner asks for it only when a budget cannot
be met without it. The loss then sums per step: equal to the whole-tensor sum up to rounding.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.elementwise import Add, BroadcastLike
from ..ops.reduce import AddN, ReduceSum
from ..ops.rows import InvertPermutation, PermuteRows
from ..ops.sources import Constant
from ..ops.shape import Transpose
from .loop_ports import add_invariant, add_sequence
from .rewrite import replace_uses, result_values, toposort, uses


def stream_output_consumers(graph: Graph) -> int:
    """Move the per-step consumers of forward loops' output stacks into the loops; how many
    reductions and backward sequences were moved."""
    moved = 0
    for node in list(graph.nodes):
        if _streamable_loop(node):
            for k in range(len(node.op.body.results["output"])):
                moved += _stream_output(graph, node, k)
    if moved:
        toposort(graph)
    return moved


def _streamable_loop(node) -> bool:
    op = node.op
    if op.name != "loop" or node.is_gradient:
        return False
    r = op.body.results
    return (not r.get("cond") and op.length_from is not None
            and op.maximum_iterations is None and not op.shrink and not op.chunk_steps)


def _elementwise(node) -> bool:
    """Per-element work (the fusible ops, add_n, broadcast_like): the same at one step."""
    op = node.op
    if op.multi_output or getattr(op, "stateful", False) or getattr(op, "view", False):
        return False
    return isinstance(op, (BroadcastLike, AddN)) or (
        getattr(op, "fusible", False) and op.name != "fused")


def _stream_output(graph, loop, k) -> int:
    op = loop.op
    start = op.out_ports().offset("output")
    stack = loop.outputs[start + k]
    readers = uses(graph)
    kept = set(graph.results.get("keep", [])) | result_values(graph)
    axis = {stack: (0, ())}    # region value -> (its time axis, the row permutations on it)
    order = []                 # region nodes, producers first
    work = [stack]
    while work:
        v = work.pop()
        if v in kept:
            return 0
        for n in readers.get(v, []):
            if n in order or n.outputs and n.outputs[0] in axis:
                continue
            a = _region_axis(n, axis)
            if a is None:
                continue       # not elementwise over the region: a sink or a blocker
            if a is False:
                return 0
            axis[n.outputs[0]] = a
            order.append(n)
            work.append(n.outputs[0])
    # every reader of the region must be in it or be a sink
    reductions, sequences = [], []
    for v in axis:
        for n in readers.get(v, []):
            if n in order:
                continue
            if _full_sum(n):
                reductions.append(n)   # (a sum does not see the order of the rows)
            elif not axis[v][1] and _reads_rows(n, loop, v, axis[v][0]):
                sequences.append((n, v))
            else:
                return 0
    if not reductions and not sequences:
        return 0
    # region nodes must be computable per step: their other operands are scalars, and what
    # moves into the forward loop may not read a scalar computed from the loop's outputs
    for n in order:
        if any(u not in axis and u.type.rank != 0 for u in n.inputs) and \
                not isinstance(n.op, PermuteRows):
            return 0
    partial = op.has_trip or op.active_rows or bool(op.body.results.get("cond"))
    for red in reductions:
        if partial and not _vanishes(red.inputs[0], axis):
            return 0   # (rows of steps or rows that did not run would count f(0))
        for n in _region_nodes_of(red.inputs[0], axis):
            if any(u not in axis and _after(u, loop) for u in n.inputs):
                return 0
    body = op.body
    y = body.results["output"][k]
    lower = _lowering(loop, body, y, axis)
    for red in reductions:
        _accumulate(graph, loop, red, lower)
    if sequences:
        saved = _residual_of(loop, y)
        for reader, v in sequences:
            _compute_in(reader, v, saved, axis, loop)
    graph.version += 1
    return len(reductions) + len(sequences)


def _region_axis(n, axis):
    """(time axis, row permutations) of n's output when n is per-step work over region values;
    None: n is not region work; False: n reads the region in a way that cannot move."""
    ins = [u for u in n.inputs if u in axis]
    if isinstance(n.op, Transpose):
        a, perms = axis[n.inputs[0]]
        perm = n.op.perm
        rest = [p for p in perm if p != a]
        return (perm.index(a), perms) if rest == sorted(rest) else False
    if isinstance(n.op, PermuteRows):
        x, idx = n.inputs
        if idx in axis or x not in axis or n.op.axis == axis[x][0]:
            return False
        a, perms = axis[x]
        inverse = perms and idx.node.op.__class__ is InvertPermutation and \
            idx.node.inputs[0] is perms[-1][0] and perms[-1][1] == n.op.axis
        return (a, perms[:-1] if inverse else perms + ((idx, n.op.axis),))
    if not _elementwise(n):
        return None
    if isinstance(n.op, BroadcastLike):
        x, like = n.inputs
        if x in axis or x.type.rank != 0:
            return False
        return axis[like]
    layouts = {axis[u] for u in ins}
    ranks = {u.type.rank for u in ins}
    if len(layouts) != 1 or len(ranks) != 1 or n.outputs[0].type.rank not in ranks:
        return False
    return layouts.pop()


_ZERO_KEEPING = ("neg", "square", "abs", "tanh", "relu", "sqrt", "sin", "sign")


def _vanishes(v, axis) -> bool:
    """The region value is zero where the output stack is (a row of a step that did not run)."""
    n = v.node
    if n.op.name == "loop":
        return True
    if isinstance(n.op, (Transpose, PermuteRows)):
        return _vanishes(n.inputs[0], axis)
    region = [u for u in n.inputs if u in axis]
    if n.op.name == "mul":
        return any(_vanishes(u, axis) for u in region)
    if n.op.name == "div":
        return n.inputs[0] in axis and n.inputs[1] not in axis and _vanishes(n.inputs[0], axis)
    if n.op.name in ("add", "sub", "add_n") or n.op.name in _ZERO_KEEPING:
        return len(region) == len(n.inputs) and all(_vanishes(u, axis) for u in region)
    return False


def _full_sum(n) -> bool:
    return isinstance(n.op, ReduceSum) and n.op.axis is None and not n.op.keepdims


def _reads_rows(n, loop, v, a) -> bool:
    """n is a loop that runs the forward loop's steps and reads v one row per step."""
    if n.op.name != "loop" or a != 0 or not n.op.has_trip or n.op.chunk_steps \
            or n.op.shrink:
        return False
    parts = n.op.in_ports().split(n.inputs)
    return parts["trip"][0] is loop.outputs[0] and v in parts["sequence"] \
        and v not in parts["carried"] + parts["invariant"]


def _after(v, loop) -> bool:
    """v is computed from the loop's outputs."""
    seen, work = set(), [v.node]
    while work:
        n = work.pop()
        if n is loop:
            return True
        if n not in seen:
            seen.add(n)
            work += [u.node for u in n.inputs]
    return False


def _region_nodes_of(v, axis) -> list:
    """The region nodes v is computed by."""
    seen, work, out = set(), [v], []
    while work:
        u = work.pop()
        if u in seen or u not in axis or u.node.op.name == "loop":
            continue
        seen.add(u)
        out.append(u.node)
        work += list(u.node.inputs)
    return out


def _lowering(loop, body, base, axis, source=None):
    """A function: region value -> the same value at one step inside `loop`'s body `body`
    (memoised); `source`'s output stack (default: loop's) is `base` there."""
    source = loop if source is None else source
    memo = {}
    invariants = {}

    def scalar(u):
        if u not in invariants:
            invariants[u] = add_invariant(loop, u, f"{u.node.name}/streamed")
        return invariants[u]

    def lower(v):
        if v in memo:
            return memo[v]
        n = v.node
        if v.node is source:
            out = base
        elif isinstance(n.op, (Transpose, PermuteRows)):
            out = lower(n.inputs[0])   # (elementwise work commutes with a row order)
        else:
            ins = [lower(u) if u in axis else scalar(u) for u in n.inputs]
            t = n.op.infer(*[u.type for u in ins])
            t = list(t) if isinstance(t, (list, tuple)) else [t]
            new = body.add_node(n.op, ins, t, f"{n.name}/streamed", n.location)
            new.is_gradient = n.is_gradient
            out = new.outputs[0]
        memo[v] = out
        return out
    return lower


def _accumulate(graph, loop, red, lower):
    """red (a full sum of a region value) becomes a carried accumulator of the loop."""
    op, body = loop.op, loop.op.body
    x = red.inputs[0]
    t = red.outputs[0].type
    zero = graph.add_node(Constant(np.zeros((), t.dtype)), [], [t], f"{red.name}/streamed/init", red.location)
    n_carried = len(body.results["carried"])
    at_in = op.in_ports().offset("carried") + n_carried
    at_out = op.out_ports().offset("carried") + n_carried
    acc = body.add_param("carried", t, f"{red.name}/streamed/acc")
    loop.inputs.insert(at_in, zero.outputs[0])
    part = body.add_node(ReduceSum(None, False), [lower(x)], [t], f"{red.name}/streamed",
                         red.location)
    nxt = body.add_node(Add(), [acc, part.outputs[0]], [t], f"{red.name}/streamed/add",
                        red.location)
    body.results["carried"].append(nxt.outputs[0])
    final = loop._add_output(t)
    loop.outputs.pop()
    loop.outputs.insert(at_out, final)
    for i, out in enumerate(loop.outputs):
        out.index = i
    replace_uses(graph, red.outputs[0], final)


def _residual_of(loop, y):
    """The loop's residual stack of its per-step value y (added if it is not one)."""
    op = loop.op
    res = op.body.results["residual"]
    start = op.out_ports().offset("residual")
    if y in res:
        return loop.outputs[start + res.index(y)]
    res.append(y)
    out = loop._add_output(TensorType((None,) + y.shape, y.dtype))
    return out


def _compute_in(reader, v, saved, axis, source):
    """The backward loop `reader` computes region value v per step from the saved rows."""
    body = reader.op.body
    parts = reader.op.in_ports().split(reader.inputs)
    i = parts["sequence"].index(v)
    param = body.params["sequence"][i]
    row = add_sequence(reader, saved, f"{saved.node.name}/streamed_rows")
    value = _lowering(reader, body, row, axis, source)(v)
    for n in body.nodes:
        if n is not value.node and any(u is param for u in n.inputs):
            n.inputs = [value if u is param else u for u in n.inputs]
    for role, vs in body.results.items():
        body.results[role] = [value if u is param else u for u in vs]
    toposort(body)
