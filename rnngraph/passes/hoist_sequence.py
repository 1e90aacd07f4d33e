"""Hoist per-step work that reads only the sequence inputs and invariants out of the loop,
batched over all steps: the input projection x_t @ W_x of every step becomes one large matrix
multiply before the loop. Only matmuls and what they read are moved: elementwise work alone
gains little batched and costs T times its memory, and in the loop it fuses into the step's
kernel.

With `chunk_steps=C` (a memory budget that cannot hold [T, ...] stacks), the batched work
goes into the loop's chunk prologue instead (ops/loop.py): one product over C steps' rows at
a time, into a [C, ...] block the steps read row by row."""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.elementwise import Binary, Cast, Unary, Where
from ..ops.linalg import MatMul
from ..ops.steps import RowsMatMul
from .loop_ports import add_sequence, outer_inputs
from .rewrite import for_each_loop, remove_dead, replace_uses, toposort


def _batchable(n, kind) -> bool:
    """Can `n` run on [T, ...] stacks of its per-step inputs with the same op?"""
    out_rank = n.outputs[0].type.rank
    if isinstance(n.op, MatMul):
        a, b = n.inputs
        return kind.get(a) == "seq" and a.type.rank == 2 and kind.get(b) == "inv" and b.type.rank == 2
    if isinstance(n.op, (Binary, Unary, Where, Cast)):
        # per-step operands must have the full rank, or the new time axis would misalign
        return all(kind.get(v) != "seq" or v.type.rank == out_rank for v in n.inputs)
    return False


def _is_residual(v) -> bool:
    """Is v a loop's saved residual stack? A product of its rows with an invariant matrix
    recomputes per step what that loop made per step (stream_outputs' head in a backward
    loop): batched whole it would be a second [T, ...] stack beside the residual, so it is
    batched only in chunks of steps."""
    op = v.node.op
    if not op.subgraphs() or not hasattr(op, "out_ports"):
        return False
    return any(v is r for r in op.out_ports().split(v.node.outputs).get("residual", ()))


def _batch_rows(v) -> bool:
    """Is body value v [batch, ...] of a loop with active rows (its batch dimension open)?"""
    return v.type.rank == 2 and v.type.shape[0] is None


def hoist_sequence_work(graph: Graph, chunk_steps: int | None = None) -> int:
    return for_each_loop(graph, lambda g, loop: _hoist(g, loop, chunk_steps))


def _hoist(graph: Graph, loop, chunk_steps=None) -> int:
    body = loop.op.body
    outer = outer_inputs(loop)
    kind: dict = {}
    for role, vs in body.params.items():
        for p in vs:
            kind[p] = {"invariant": "inv", "sequence": "seq"}.get(role, "var")
    if not chunk_steps:
        for p, v in outer.items():
            if kind.get(p) == "seq" and _is_residual(v):
                kind[p] = "var"
    for n in body.nodes:
        if n.op.name == "param":
            continue
        if n.op.name == "constant":
            kind[n.outputs[0]] = "inv"
            continue
        kinds = {kind.get(v, "var") for v in n.inputs}
        if "var" in kinds or n.op.stateful or n.op.subgraphs() or "seq" not in kinds \
                or not _batchable(n, kind):
            k = "var"  # (values computed from invariants alone are LICM's job, not batched here)
        else:
            k = "seq"
        for v in n.outputs:
            kind[v] = k
    # batched: the per-step-pure matmuls and what they read; elementwise work after the last
    # matmul (the bias add) stays in the loop, where the fuse pass folds it into the gate kernel
    # (batched, it was one more pass over a [T, B, 4H] array: 2.75 ms of the S1 LSTM's 120)
    needed: set = set()
    stack = [n for n in body.nodes if isinstance(n.op, MatMul) and kind.get(n.outputs[0]) == "seq"]
    while stack:
        n = stack.pop()
        if n not in needed and n.op.name not in ("param", "constant"):
            needed.add(n)
            stack.extend(v.node for v in n.inputs)
    # frontier: batched values read by the nodes left in the loop, or returned
    readers = {v for n in body.nodes if n not in needed and n.op.name != "param" for v in n.inputs}
    readers |= {v for vs in body.results.values() for v in vs}
    frontier = [v for n in body.nodes if n in needed for v in n.outputs if v in readers]
    if not frontier:
        return 0
    if chunk_steps:
        return _into_prologue(loop, needed, frontier, chunk_steps)
    batched: dict = {}

    def outer_of(v):
        if v in batched:
            return batched[v]
        if v in outer:
            return outer[v]
        c = graph.add_node(v.node.op, [], [v.type], v.node.name, v.node.location)  # constant
        batched[v] = c.outputs[0]
        return batched[v]

    rows = loop.op.in_ports().split(loop.inputs)["rows"]
    for n in body.nodes:
        if n not in needed:
            continue
        ins = [outer_of(v) for v in n.inputs]
        op = n.op
        if rows and isinstance(op, MatMul) and _batch_rows(n.inputs[0]):
            op, ins = RowsMatMul(), ins + rows  # only the rows the loop will read
        # (by the op's rule: the whole batch, where a body with active rows knows none)
        types = op.infer(*[v.type for v in ins])
        types = list(types) if isinstance(types, (list, tuple)) else [types]
        new = graph.add_node(op, ins, types, n.name + "/batched", n.location)
        new.is_gradient = n.is_gradient
        for old, out in zip(n.outputs, new.outputs):
            batched[old] = out
    for v in frontier:
        replace_uses(body, v, add_sequence(loop, batched[v], "hoisted/" + v.node.name.rsplit(
            "/", 1)[-1], v.type))
    remove_dead(body, [])
    toposort(body)   # (the new params come last; their readers are earlier)
    return len(needed)


def _into_prologue(loop, needed: set, frontier: list, chunk: int) -> int:
    """The batched work as the loop's chunk prologue: on [m, ...] blocks of the sequence
    inputs (m <= chunk), its results read one row per step through "chunk" params."""
    op, body = loop.op, loop.op.body
    if not op.chunkable(chunk):
        return 0
    seq_params = body.params.get("sequence", [])
    blocks = list(op.chunk_blocks)
    made: dict = {}

    def block_of(v):
        if v in made:
            return made[v]
        if v.node.op.name == "param" and v in seq_params:
            i = seq_params.index(v)
            if i in blocks:
                made[v] = body.params["block"][blocks.index(i)]
            else:
                made[v] = body.add_param("block", TensorType((None,) + v.shape, v.dtype),
                                         "block/" + v.node.name.rsplit("/", 1)[-1])
                blocks.append(i)
            return made[v]
        return v   # an invariant or a constant: read as it is

    for n in list(body.nodes):
        if n not in needed:
            continue
        types = [TensorType((None,) + v.shape, v.dtype) for v in n.outputs]
        new = body.add_node(n.op, [block_of(v) for v in n.inputs], types, n.name + "/chunk",
                            n.location)
        new.is_gradient = n.is_gradient
        for old, out in zip(n.outputs, new.outputs):
            made[old] = out
    results = body.results
    for v in frontier:
        row = body.add_param("chunk", v.type, "chunk/" + v.node.name.rsplit("/", 1)[-1])
        replace_uses(body, v, row)
        results.setdefault("prologue", []).append(made[v])
    op.chunk_steps, op.chunk_blocks = chunk, tuple(blocks)
    remove_dead(body, [])
    toposort(body)
    return len(needed)
