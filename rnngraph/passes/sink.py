"""Sink per-step work that only feeds sums over steps or stacked outputs out of a loop.

accumulators: a carried `acc' = acc + e_t` (a shared weight's gradient in a backward loop)
  becomes acc_init + sum_t e_t computed after the loop, pushing the sum through linear ops:
  sum_t (a_t^T @ b_t) is one [K, n*B] @ [n*B, N] product over the stacked a and b.
outputs: a stacked output y_t = v_t @ W is computed after the loop as V @ W in one product
  (rows past the executed steps stay zero, since the product of a zero row is zero).

A forward loop's running sum (stream_outputs moves a loss and the weight gradients of its
head into the forward loop, summed per step, in float64 for narrower floats) is sunk only
where the sum reads stacks the loop has already: stacking its per-step terms instead (the
[T, B, V] gradient of a head's logits, or the float64 [T, H, V] products) would raise the peak
the streaming lowered, for one product instead of T smaller ones. A backward loop's weight
gradients are sunk as before (the stacks of its gate gradients buy one large product).

With `chunk_steps=C` (a memory budget that cannot hold [T, ...] stacks), an accumulator's sum
is taken per chunk of C steps instead, in the loop's chunk epilogue (ops/loop.py): the steps'
a_t and b_t are gathered into [C, ...] blocks, and after each chunk acc += one product over
them; a sunk output's rows are computed per chunk, Y[t:t+C] = V[t:t+C] @ W.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.elementwise import SumTo
from ..ops.linalg import MatMul, MatrixTranspose
from ..ops.reduce import AddN
from ..ops.shape import GetitemGrad, Transpose
from ..ops.steps import RowsMatMul, StepContract, StepSum
from .licm import variant_values
from .loop_ports import outer_inputs, stacked_output, steps_output
from .rewrite import remove_dead, replace_uses, result_values, toposort, uses


def sink_loops(graph: Graph, outputs: bool = True, accumulators: bool = True,
               chunk_steps: int | None = None) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.op.subgraphs():
            count += sink_loops(node.op.body, outputs, accumulators, chunk_steps)
            if accumulators and chunk_steps:
                count += _sink_accumulators(graph, node, chunk_steps)
            elif accumulators:
                count += _sink_accumulators(graph, node)
            if outputs:
                count += _sink_outputs(graph, node, chunk_steps)
    if count:
        toposort(graph)
    return count


class _Builder:
    """Builds outer nodes that read a loop's stacks (keeps the node/graph plumbing in one place)."""

    def __init__(self, graph, loop):
        self.graph, self.loop = graph, loop
        self.body = loop.op.body
        self.outer = outer_inputs(loop)
        self.variant = variant_values(self.body)
        self.n = steps_output(loop)
        self.rows = loop.op.in_ports().split(loop.inputs)["rows"]  # [] or the active counts

    def packed(self, *vals) -> list:
        """The rows input when all of vals are batch rows of a loop with active rows."""
        return self.rows if self.rows and all(v.type.rank and v.type.shape[0] is None
                                              for v in vals) else []   # (a scalar: no rows)

    def add(self, op, inputs, like, name):
        types = op.infer(*[v.type for v in inputs])
        types = [types] if not isinstance(types, (list, tuple)) else types
        node = self.graph.add_node(op, inputs, list(types), name, like.node.location)
        node.is_gradient = like.node.is_gradient
        return node.outputs[0]

    def invariant(self, v):
        """The outer value of a body value that is the same every step, or None."""
        if v in self.variant:
            return None
        if v in self.outer:
            return self.outer[v]
        if v.node.op.name == "constant":
            return self.add(v.node.op, [], v, v.node.name)
        return None

    def stack(self, v):
        """The outer [L, ...] stack of per-step value v (the sequence it slices, or an output)."""
        if v in self.outer and v.node.op.role == "sequence":
            return self.outer[v]
        return stacked_output(self.loop, v)

    def total(self, e):
        """An outer value equal to the sum over executed steps of per-step value e, or None."""
        n = e.node
        if e not in self.variant:
            return None
        if isinstance(n.op, AddN) or n.op.name == "add" and e.type == n.inputs[0].type == n.inputs[1].type:
            parts = [self.total(v) for v in n.inputs]
            if any(p is None for p in parts):
                return None
            return self.add(AddN(), parts, e, n.name + "/summed")
        if isinstance(n.op, GetitemGrad):
            like = self.invariant(n.inputs[1])
            inner = self.total(n.inputs[0]) if like is not None else None
            if inner is None:
                return None
            return self.add(n.op, [inner, like], e, n.name + "/summed")
        if isinstance(n.op, MatMul) and _transposed(n.inputs[0].node.op):
            a, b = n.inputs[0].node.inputs[0], n.inputs[1]
            if a.type.rank == 2 and b.type.rank == 2 and a in self.variant and b in self.variant:
                return self.add(StepContract(), [self.stack(a), self.stack(b), self.n] +
                                self.packed(a, b), e, n.name + "/over_steps")
        if isinstance(n.op, SumTo):
            inner = self.total(n.inputs[0])
            if inner is not None:
                return self.add(n.op, [inner], e, n.name + "/summed")
        return self.add(StepSum(), [self.stack(e), self.n] + self.packed(e), e,
                        n.name + "/over_steps")


class _ChunkBuilder(_Builder):
    """Builds the chunk epilogue inside the loop's body: stacks are the chunk's gathered rows,
    the step count is the chunk's length, invariants are the body's own values."""

    def __init__(self, loop):
        self.graph, self.loop = loop.op.body, loop
        self.body = loop.op.body
        self.outer = {}
        self.variant = variant_values(self.body)
        self.rows = []        # (a chunked loop runs every step on all rows)
        params, results = self.body.params, self.body.results
        # (what an earlier sink gathered already: the same buffers)
        self.gathered: dict = dict(zip(results.get("gather", []), params.get("gathered", [])))
        self._n = (params.get("chunk_len") or [None])[0]

    @property
    def n(self):
        if self._n is None:
            self._n = self.body.add_param("chunk_len", TensorType((), np.int32), "chunk_len")
        return self._n

    def invariant(self, v):
        return None if v in self.variant else v

    def stack(self, v):
        if v not in self.gathered:
            self.gathered[v] = self.body.add_param(
                "gathered", TensorType((None,) + v.shape, v.dtype),
                "gathered/" + v.node.name.rsplit("/", 1)[-1])
            self.body.results.setdefault("gather", []).append(v)
        return self.gathered[v]


def _sink_accumulators(graph, loop, chunk_steps=None) -> int:
    body = loop.op.body
    if chunk_steps and not loop.op.chunkable(chunk_steps):
        return 0
    params, results = body.params.get("carried", []), body.results["carried"]
    readers = uses(body)
    b = None
    count = 0
    for i, (acc, nxt) in enumerate(zip(params, results)):
        n = nxt.node
        if n.op.name != "add" or acc not in n.inputs or readers.get(acc, []) != [n] \
                or n.inputs[0] is n.inputs[1] or nxt.type != acc.type:
            continue
        if sum(v is nxt for vs in body.results.values() for v in vs) != 1 or readers.get(nxt):
            continue
        e = n.inputs[1] if n.inputs[0] is acc else n.inputs[0]
        b = b or (_ChunkBuilder(loop) if chunk_steps else _Builder(graph, loop))
        if not chunk_steps and not loop.is_gradient and not _stacks_exist(e, b):
            continue   # (a forward loop's running sum: summed as it goes, see the docstring)
        total = b.total(e)
        if total is None:
            continue
        if chunk_steps:   # acc += the chunk's sum, after the chunk's last step
            nxt_chunk = b.add(n.op, [acc, total], nxt, nxt.node.name + "/chunk")
            body.results.setdefault("epilogue", []).append(nxt_chunk)
            loop.op.chunk_steps = chunk_steps
            loop.op.epilogue_carried += (i,)
            results[i] = acc
            count += 1
            continue
        out = loop.outputs[loop.op.out_ports().offset("carried") + i]
        init = loop.op.in_ports().split(loop.inputs)["carried"][i]
        if init.node.op.name == "zeros_like" and total.type == out.type:
            final = total   # (a gradient accumulator starts at zero: nothing to add)
        else:
            final = b.add(n.op, [init, total], out, out.node.name + f"/acc_{i}")
        replace_uses(graph, out, final)
        results[i] = acc  # the loop now carries it through untouched (no per-step work)
        count += 1
    if count:
        remove_dead(body, [])
        if chunk_steps:
            toposort(body)
    return count


def _stacks_exist(e, b) -> bool:
    """Would b.total(e) read only stacks the loop has already (its sequence inputs and its
    stacked outputs), making no new [T, ...] stack of a per-step value?"""
    n = e.node
    if e not in b.variant:
        return True
    if isinstance(n.op, AddN) or n.op.name == "add" and e.type == n.inputs[0].type == \
            n.inputs[1].type:
        return all(_stacks_exist(v, b) for v in n.inputs)
    if isinstance(n.op, GetitemGrad) or isinstance(n.op, SumTo):
        return _stacks_exist(n.inputs[0], b)
    if isinstance(n.op, MatMul) and _transposed(n.inputs[0].node.op):
        a, c = n.inputs[0].node.inputs[0], n.inputs[1]
        if a.type.rank == 2 and c.type.rank == 2 and a in b.variant and c in b.variant:
            return _stacked(a, b) and _stacked(c, b)
    return _stacked(e, b)


def _transposed(op) -> bool:
    """A transpose of a matrix: matrix_transpose, or transpose with perm [1, 0]."""
    return isinstance(op, MatrixTranspose) or \
        isinstance(op, Transpose) and tuple(op.perm) == (1, 0)


def _stacked(v, b) -> bool:
    """The loop has a [T, ...] stack of per-step value v already (b.stack adds none)."""
    return (v in b.outer and v.node.op.role == "sequence") or \
        v in b.body.results["output"]


def _sink_outputs(graph, loop, chunk_steps=None) -> int:
    """Outputs that are sums of v_t @ W (W invariant, v_t computed in the body) are computed
    after the loop from the stacked v's: one large product instead of one per step (chunked:
    after each chunk, from its gathered v's, into the chunk's rows of the output stack)."""
    body = loop.op.body
    if chunk_steps and not loop.op.chunkable(chunk_steps):
        return 0
    readers = uses(body)
    wanted = set(uses(graph)) | result_values(graph)
    b = _ChunkBuilder(loop) if chunk_steps else _Builder(graph, loop)
    done = set(loop.op.epilogue_outputs)
    count = 0
    for j, y in enumerate(list(body.results["output"])):
        stacked = loop.outputs[loop.op.out_ports().offset("output") + j]
        elsewhere = sum(v is y for vs in body.results.values() for v in vs) > 1
        if readers.get(y) or elsewhere or stacked not in wanted or j in done or \
                not _sinkable(y, b):
            continue  # still needed every step: sinking would compute it twice
        if chunk_steps:   # the steps stop computing y_t; the epilogue writes its rows
            body.results.setdefault("epilogue_rows", []).append(_after_loop(y, b, y))
            loop.op.chunk_steps = chunk_steps
            loop.op.epilogue_outputs += (j,)
        else:
            replace_uses(graph, stacked, _after_loop(y, b, stacked))
        count += 1
    if count and chunk_steps:
        toposort(body)
    return count


def _sinkable(y, b) -> bool:
    n = y.node
    if n.op.name in ("add", "add_n"):
        return all(v.type == y.type and _sinkable(v, b) for v in n.inputs)
    if isinstance(n.op, MatMul) and y.type.rank == 2:
        v, w = n.inputs
        # a sequence param's stack is not zero past the executed steps, a body value's is
        return (w.type.rank == 2 and b.invariant(w) is not None and v in b.variant
                and v.node.op.name != "param")
    return False


def _after_loop(y, b, like):
    n = y.node
    if n.op.name in ("add", "add_n"):
        return b.add(AddN(), [_after_loop(v, b, like) for v in n.inputs], like,
                     n.name + "/after_loop")
    v, w = n.inputs
    rows = b.packed(v)
    op = RowsMatMul() if rows else n.op  # finished rows stay zero without being computed
    return b.add(op, [b.stack(v), b.invariant(w)] + rows, like, n.name + "/after_loop")
