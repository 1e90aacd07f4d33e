"""Gather an embedding per step inside the loops that read it (memory planning only).

`x = embedding_lookup(W, ids)` over [batch, T] ids feeding dynamic_rnn makes a [batch, T, dim]
value the loops read one step at a time (through dynamic_rnn's time-major transpose and, with
sequence_length, its reordering of the rows by length), and its gradient a [T, batch, dim]
stack of the backward loop's input gradients that gather_grad adds into a dense [vocab, dim]
gradient after the loop. Neither is a saved tensor, so no placement of saved tensors moves
them. This pass makes the int ids the loops' sequence input instead:

  forward   the chain gather -> transpose -> permute_rows -> contiguous -> loop is replayed on
            the ids (an int [T, batch] value: a byte per 32 of the gathered one at dim 128),
            each loop reading it gathers its step's rows from W (a loop invariant) in its body;
            `dim` nodes reading the gathered value's leading sizes read the ids' instead.
  backward  a gather_grad of W at those ids whose gradient is a backward loop's output stack
            (through a transpose, the inverse reordering of rows, contiguous copies) becomes a
            carried [vocab, dim] accumulator of that loop: zeros before it, and per step a
            `scatter_add_rows` (ops/scatter.py) of the step's rows at the step's ids, in place
            (the accumulator's buffer is the loop's own). The output stack and the dense
            gather_grad go.

The sum is the same, in another order: per step, the rows of one step, last step first, where
gather_grad adds [batch, T] in row-major order; results agree to rounding, not bit for bit.
The fed ids are then read only through the time-major transpose, so host_sequences (which
runs after this pass) can leave them on the host.

Applies to a gather whose value (and every value of the chain) only such nodes read (loops
reading it as a sequence input alone, `dim` of a leading axis), neither fetched nor returned.
The pass is off unless asked for (`passes={"sink_gather": True}`); the memory planner asks for
it with stream_outputs and host_sequences when a budget cannot be met otherwise.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.fill import Gather, GatherGrad
from ..ops.rows import InvertPermutation, PermuteRows
from ..ops.scatter import AccumulatorZeros, ScatterAddRows
from ..ops.shape import Contiguous, Transpose
from .host_sequences import reads_as_sequence
from .loop_ports import add_invariant, add_sequence, outer_inputs
from .rewrite import replace_uses, result_values, toposort, uses

SUFFIX = "sink_gather"   # the last part of the names of the nodes it makes (runtime/planning.py
#                         looks for them to tell whether the pass changed a program)


def sink_gather(graph: Graph) -> int:
    """Move each embedding gather a loop reads into the loop, and sum its gradient there; how
    many loops changed."""
    made = 0
    cache: dict = {}   # (source, step of the chain) -> the ids' value made for it
    for node in [n for n in graph.nodes if isinstance(n.op, Gather)]:
        readers = uses(graph)
        kept = set(graph.results.get("keep", [])) | result_values(graph)
        params, ids = node.inputs
        if not np.issubdtype(params.dtype, np.floating) or ids.type.rank < 1 or \
                params.type.rank < 1:
            continue
        family = _family(node.outputs[0], ids.type.rank, readers, kept)
        if family is None:
            continue
        memo: dict = {}
        made += _sink_forward(graph, node, family, memo, cache)
        for gg in [n for n in graph.nodes if isinstance(n.op, GatherGrad)
                   and n.inputs[1] is ids and n.inputs[2] is params]:
            made += _sum_backward(graph, gg, cache, uses(graph), kept)
    if made:
        toposort(graph)
    return made


# --- the forward chain --------------------------------------------------------------------------
def _family(v, k: int, readers, kept):
    """[(value, how it derives from its parent, parent, loops reading it, dims reading it),
    ...] of the gathered value `v` (parents first) and the values derived from it by
    transposes of its k leading axes, reorderings of those axes' rows and contiguous copies;
    None if anything else reads one of them, or no loop reads any."""
    out, stack, loops = [], [(v, None, None)], 0
    while stack:
        x, how, parent = stack.pop()
        if x in kept:
            return None
        rank = x.type.rank
        reads_loops, dims = [], []
        for r in readers.get(x, []):
            if isinstance(r.op, Transpose) and r.inputs[0] is x and \
                    tuple(r.op.perm[k:]) == tuple(range(k, rank)):
                stack.append((r.outputs[0], ("transpose", tuple(r.op.perm[:k])), x))
            elif isinstance(r.op, PermuteRows) and r.inputs[0] is x and r.inputs[1] is not x \
                    and r.op.axis < k:
                stack.append((r.outputs[0], ("permute", r.inputs[1], r.op.axis), x))
            elif isinstance(r.op, Contiguous):
                stack.append((r.outputs[0], ("contiguous",), x))
            elif reads_as_sequence(r, x) and not _read_by_prologue(r, x):
                reads_loops.append(r)
            elif r.op.name == "dim" and 0 <= r.op.axis < k:
                dims.append(r)
            else:
                return None
        loops += len(reads_loops)
        out.append((x, how, parent, reads_loops, dims))
    return out if loops else None


def _sink_forward(graph, gather, family, memo, cache) -> int:
    """Build the ids' chain (memo: value -> its ids counterpart) and make the loops read it."""
    params, ids = gather.inputs
    memo[gather.outputs[0]] = ids
    tail = params.type.rank - 1
    changed = 0
    for x, how, parent, loops, dims in family:    # (parents come before their children)
        if how is not None:
            memo[x] = _derive(graph, memo[parent], how, x.node, cache)
        iv = memo[x]
        for d in dims:
            d.inputs = [iv if v is x else v for v in d.inputs]
            graph.version += 1
        for loop in loops:
            _gather_in_loop(loop, x, iv, params, tail)
            changed += 1
    return changed


def _derive(graph, src, how, like, cache):
    """The ids' counterpart of one step of the chain (shared through `cache`: one node per
    step and source)."""
    key = (src, how)
    if key in cache:
        return cache[key]
    if how[0] == "contiguous":
        out = src
    elif how[0] == "transpose":
        op = Transpose(how[1])
        out = _add(graph, op, [src], op.infer(src.type), f"{like.name}/{SUFFIX}", like)
    else:
        op = PermuteRows(how[2])
        out = _add(graph, op, [src, how[1]], op.infer(src.type, how[1].type),
                   f"{like.name}/{SUFFIX}", like)
    cache[key] = out
    return out


def _gather_in_loop(loop, x, iv, params, tail: int) -> None:
    """Loop `loop` reads ids `iv` in place of each sequence input that is `x`, and gathers the
    step's rows of `params` (a new invariant, or the one it has) in its body."""
    op = loop.op
    body = op.body
    w = next((p for p, v in outer_inputs(loop).items() if v is params and
              p in body.params.get("invariant", [])), None)
    if w is None:
        w = add_invariant(loop, params, "capture/" + params.node.name.rsplit("/", 1)[-1])
    seq = op.in_ports().split(loop.inputs)["sequence"]
    for i in [i for i, v in enumerate(seq) if v is x]:
        old = body.params["sequence"][i]
        lead = tuple(old.type.shape[:old.type.rank - tail])
        p = add_sequence(loop, iv, f"ids_{i}", TensorType(lead, iv.dtype))
        g = Gather()
        rows = body.add_node(g, [w, p], [g.infer(w.type, p.type)], f"{loop.name}/{SUFFIX}",
                             loop.location)
        replace_uses(body, old, rows.outputs[0])
        if op.length_from == i:
            op.length_from = body.params["sequence"].index(p)
    toposort(body)
    loop.graph.version += 1


# --- the backward chain -------------------------------------------------------------------------
def _sum_backward(graph, gg, cache, readers, kept) -> int:
    """Replace gather_grad node `gg` by a carried accumulator of the backward loop whose output
    stack its gradient is (0 where its gradient is not such a stack)."""
    g, ids, params = gg.inputs
    k = ids.type.rank
    steps = []   # from gg's input back to the loop's stack
    u = g
    while True:
        if u in kept or len(readers.get(u, [])) != 1:
            return 0
        n = u.node
        if n.op.name == "loop":
            break
        if isinstance(n.op, Transpose) and tuple(n.op.perm[k:]) == \
                tuple(range(k, u.type.rank)):
            inv = tuple(int(j) for j in np.argsort(n.op.perm[:k]))
            steps.append(("transpose", inv))
        elif isinstance(n.op, PermuteRows) and n.op.axis < k and \
                isinstance(n.inputs[1].node.op, InvertPermutation):
            steps.append(("permute", n.inputs[1].node.inputs[0], n.op.axis))
        elif isinstance(n.op, Contiguous):
            steps.append(("contiguous",))
        else:
            return 0
        u = n.inputs[0]
    loop = u.node
    op = loop.op
    ports = op.out_ports()
    j = loop.outputs.index(u) - ports.offset("output")
    if not 0 <= j < ports.sizes["output"] or j in getattr(op, "epilogue_outputs", ()):
        return 0
    iv = ids
    for how in steps:   # the ids in the stack's layout (the forward chain's, where it exists)
        iv = _derive(graph, iv, how, gg, cache)
    body = op.body
    dx = body.results["output"][j]
    tail = params.type.rank - 1
    if dx.dtype != params.dtype or dx.type.rank != iv.type.rank - 1 + tail:
        return 0
    outer = op.in_ports().split(loop.inputs)
    p = next((q for q, v in zip(body.params.get("sequence", []), outer["sequence"])
              if v is iv), None)
    if p is None:
        lead = tuple(dx.type.shape[:dx.type.rank - tail])
        p = add_sequence(loop, iv, "ids", TensorType(lead, iv.dtype))
    # a carried accumulator: zeros made for it, read by this loop alone
    zl = AccumulatorZeros()
    init = _add(graph, zl, [params], zl.infer(params.type), f"{gg.name}/{SUFFIX}/zeros", gg)
    at = op.in_ports().offset("carried") + op.in_ports().sizes["carried"]
    acc = body.add_param("carried", params.type, "grad_acc_embedding")
    loop.inputs.insert(at, init)
    s = ScatterAddRows(in_place=True)
    summed = body.add_node(s, [acc, p, dx], [s.infer(acc.type, p.type, dx.type)],
                           f"{gg.name}/{SUFFIX}", gg.location)
    summed.is_gradient = True
    body.results["carried"].append(summed.outputs[0])
    out_at = ports.offset("carried") + ports.sizes["carried"]
    new = loop._add_output(params.type)
    loop.outputs.pop()
    loop.outputs.insert(out_at, new)
    for i, o in enumerate(loop.outputs):
        o.index = i
    toposort(body)
    replace_uses(graph, gg.outputs[0], new)
    return 1


def _add(graph, op, inputs, out_type, name, like):
    new = graph.add_node(op, inputs, [out_type], name, like.location)
    new.is_gradient = like.is_gradient
    return new.outputs[0]


def _read_by_prologue(loop, v) -> bool:
    """Does a chunked loop's chunk prologue read blocks of sequence input `v` (the hoisted
    input projection)? Its rows are then read a block at a time, not gathered per step."""
    seq = loop.op.in_ports().split(loop.inputs)["sequence"]
    return any(seq[i] is v for i in getattr(loop.op, "chunk_blocks", ()))
