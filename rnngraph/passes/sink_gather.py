"""Gather an embedding per step inside the loops that read it (memory planning only).

`x = embedding_lookup(W, ids)` over [batch, T] ids feeding dynamic_rnn makes a [batch, T, dim]
value the loops read one step at a time (through dynamic_rnn's time-major transpose and, with
sequence_length, its reordering of the rows by length), and its gradient a [T, batch, dim]
stack of the backward loop's input gradients that gather_grad adds into a dense [vocab, dim]
gradient after the loop. Neither is a saved tensor, so no placement of saved tensors moves
them. This pass makes the int ids the loops' sequence input instead:

  forward   the chain gather -> transpose / permute_rows / reverse_sequence / contiguous ->
            loop is replayed on the ids (an int [T, batch] value: a byte per 32 of the
            gathered one at dim 128), each loop reading it gathers its step's rows from W (a
            loop invariant) in its body; `dim` nodes reading the gathered value's leading
            sizes read the ids' instead. The chain may branch: bidirectional_dynamic_rnn's
            backward direction reads reverse_sequence(x, lengths), so it reads the ids
            reversed the same way; an encoder and a decoder may read one lookup. A chunked
            loop (the sequence passes in chunks of C steps) whose chunk prologue reads [m, ...]
            blocks of x (the hoisted input projection) reads blocks of ids instead, and its
            prologue gathers the block's rows.
  backward  a gather_grad of W at those ids whose gradient is a backward loop's output stack
            (through a transpose, the inverse reordering of rows, reverse_sequence, contiguous
            copies), or a sum (add_n / add) of such stacks of several loops, becomes a carried
            [vocab, dim] accumulator of each of those loops: per step a `scatter_add_rows`
            (ops/scatter.py) of the step's rows at the step's ids, in place. The output stacks
            and the dense gather_grad go. A chunked backward loop whose epilogue wrote the
            stack's rows (one block product per chunk) computes each step's rows in its steps
            again, as an unchunked one does, and adds them.
  one buffer where the embedding's gradient is a sum over loops (two directions, an encoder
            and a decoder, two lookups of one W at other ids summed by autodiff): the first
            backward loop (in a topological order) starts its accumulator from an
            `accumulator_zeros` made for it, each next one from the one before's result, and
            the sum reads the last one's; so one [vocab, dim] buffer is updated in place by
            each loop in turn, not one per loop and an add. (Loops are never rerun, so no
            loop adds twice into a buffer it was given.)
  norm      where the gradient's rows are also measured (clip_by_global_norm / global_norm
            of an embedding's gradient, TF1's IndexedSlices measure: the sum of squares of
            every looked-up row, repeats not summed first) and they are one loop's stack, that
            loop also carries the sum of the squares of each step's rows, so the stack still
            goes; where the rows of several loops are summed first (two directions) it stays.

The sum is the same, in another order: per step, the rows of one step, last step first, loop
after loop, where gather_grad adds [batch, T] in row-major order; results agree to rounding,
not bit for bit. Where the fed ids are read only through the time-major transpose,
host_sequences (which runs after this pass) can leave them on the host (not where a reversal
reads them too).

Applies to a gather whose value (and every value of the chain) only such nodes read (loops
reading it as a sequence input alone, `dim` of a leading axis), neither fetched nor returned;
the backward part where every term of the gradient's sum is such a stack.
The pass is off unless asked for (`passes={"sink_gather": True}`); the memory planner asks for
it with stream_outputs and host_sequences when a budget cannot be met otherwise.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.elementwise import Add, Square
from ..ops.fill import Fill, Gather, GatherGrad
from ..ops.loop import reads_as_sequence
from ..ops.reduce import AddN, ReduceSum
from ..ops.rows import InvertPermutation, PermuteRows
from ..ops.scatter import AccumulatorZeros, ScatterAddRows
from ..ops.sequence import ReverseSequence
from ..ops.shape import Contiguous, Transpose
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
        _chain(graph)
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
            elif isinstance(r.op, ReverseSequence) and r.inputs[0] is x and \
                    r.inputs[1] is not x and max(r.op.seq_axis, r.op.batch_axis) < k:
                stack.append((r.outputs[0], ("reverse", r.inputs[1], r.op.seq_axis,
                                             r.op.batch_axis), x))
            elif isinstance(r.op, Contiguous):
                stack.append((r.outputs[0], ("contiguous",), x))
            elif reads_as_sequence(r, x):
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
    elif how[0] == "reverse":
        op = ReverseSequence(how[2], how[3])
        out = _add(graph, op, [src, how[1]], op.infer(src.type, how[1].type),
                   f"{like.name}/{SUFFIX}", like)
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
        blocks = list(getattr(op, "chunk_blocks", ()))
        if i in blocks:   # the chunk prologue reads [m, ...] blocks of it: blocks of ids now
            b = blocks.index(i)
            was = body.params["block"][b]
            new = body.add_param("block", TensorType((None,) + lead, iv.dtype), f"block/ids_{i}")
            body.params["block"].pop()
            body.params["block"][b] = new
            g = Gather()
            rows = body.add_node(g, [w, new], [g.infer(w.type, new.type)],
                                 f"{loop.name}/{SUFFIX}_chunk", loop.location)
            replace_uses(body, was, rows.outputs[0])
            body.remove_nodes({was.node})
            blocks[b] = body.params["sequence"].index(p)
            op.chunk_blocks = tuple(blocks)
    toposort(body)
    loop.graph.version += 1


# --- the backward chain -------------------------------------------------------------------------
def _sum_backward(graph, gg, cache, readers, kept) -> int:
    """Replace gather_grad node `gg` by carried [vocab, dim] accumulators of the backward loops
    whose output stacks its gradient sums (one term, or the terms of an add_n / add: a
    bidirectional RNN's two directions, two loops reading one lookup), each stack through its
    chain of transposes, reorderings and reversals. 0 (nothing changed) unless every term is
    such a stack; else how many loops accumulate (their sum is joined into one buffer by
    `_chain`)."""
    g, ids, params = gg.inputs
    norms = [_square_sum(r, g, readers, kept) for r in readers.get(g, []) if r is not gg]
    if g in kept or readers.get(g, []).count(gg) != 1 or None in norms:
        return 0
    if norms:   # (the norm reads the gradient's rows: only where they are one loop's stack)
        readers = {**readers, g: [gg]}
        if _leaves(g, readers, kept, root=True) != [g]:
            return 0
    k, tail = ids.type.rank, params.type.rank - 1
    by_loop: dict = {}   # loop -> [(output index, the chain's steps)]
    for t in _leaves(g, readers, kept, root=True):
        found = _trace(t, k, readers, kept)
        if found is None:
            return 0
        loop, j = found[0], found[1]
        dx = loop.op.body.results["output"][j]
        if dx.dtype != params.dtype or dx.type.rank != k - 1 + tail:
            return 0
        by_loop.setdefault(loop, []).append(found[1:])
    parts = [_accumulate_in(graph, loop, items, ids, params, gg, cache)
             for loop, items in by_loop.items()]
    out = parts[0] if len(parts) == 1 else _add(graph, AddN(), parts, params.type,
                                                  f"{gg.name}/{SUFFIX}/sum", gg)
    replace_uses(graph, gg.outputs[0], out)
    for red in norms:   # (one loop, one stack: checked above)
        (loop, [(j, _)]), = by_loop.items()
        replace_uses(graph, red.outputs[0], _square_sum_in(graph, loop, j, red))
    return len(by_loop)


def _square_sum(node, g, readers, kept):
    """The reduce_sum node of sum(square(g)) over every axis where `node` is that square, read
    by that sum alone (clip_by_global_norm's measure of an embedding's gradient rows,
    train/clipping.py); else None. The sum does not see the order of g's elements, so the
    backward loop can add each step's part as it goes."""
    if not isinstance(node.op, Square) or node.inputs != [g]:
        return None
    sq = node.outputs[0]
    rs = readers.get(sq, [])
    if sq in kept or len(rs) != 1 or not isinstance(rs[0].op, ReduceSum):
        return None
    red = rs[0]
    if red.op.keepdims or red.outputs[0].type.rank != 0 or red.outputs[0].dtype != g.dtype:
        return None
    return red


def _square_sum_in(graph, loop, j, red):
    """Give `loop` a carried scalar, zero before it, to which each step adds the sum of the
    squares of its output j's row; returns the loop's output holding the total (what `red`
    computed from the whole stack, summed in another order)."""
    body = loop.op.body
    dx = body.results["output"][j]
    dtype = red.outputs[0].dtype
    z = Fill((), 0, dtype)
    init = _add(graph, z, [], z.infer(), f"{red.name}/{SUFFIX}/zeros", red)
    acc = _new_carried(loop, init, TensorType((), dtype), "grad_norm_acc")
    made = dx
    for op in (Square(), ReduceSum()):
        node = body.add_node(op, [made], [op.infer(made.type)], f"{red.name}/{SUFFIX}",
                             red.location)
        node.is_gradient = True
        made = node.outputs[0]
    add = Add()
    node = body.add_node(add, [acc, made], [add.infer(acc.type, made.type)],
                         f"{red.name}/{SUFFIX}/sum", red.location)
    node.is_gradient = True
    return _carried_output(graph, loop, node.outputs[0])


def _leaves(v, readers, kept, root=False, inner=None) -> list:
    """The terms `v` sums: the inputs of the add_n / add nodes (of one type, no broadcasting)
    that make it, each inner sum read by its outer one alone; [v] where it is no such sum.
    `inner`: a set the sum nodes walked are added to."""
    n = v.node
    if (not root and (v in kept or len(readers.get(v, [])) != 1)) or \
            n.op.name not in ("add_n", "add") or \
            any(x.type.shape != v.type.shape or x.dtype != v.dtype for x in n.inputs):
        return [v]
    if inner is not None:
        inner.add(n)
    return [leaf for x in n.inputs for leaf in _leaves(x, readers, kept, inner=inner)]


def _trace(u, k: int, readers, kept):
    """(loop, output index, steps) where `u` is a backward loop's output stack through
    transposes of its k leading axes, the inverse reordering of rows, reversals within lengths
    and contiguous copies (steps: from `u` back to the stack), each value read once; else
    None."""
    steps = []
    while True:
        if u in kept or len(readers.get(u, [])) != 1:
            return None
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
        elif isinstance(n.op, ReverseSequence) and max(n.op.seq_axis, n.op.batch_axis) < k:
            steps.append(("reverse", n.inputs[1], n.op.seq_axis, n.op.batch_axis))  # (its own
            #                                                                inverse)
        elif isinstance(n.op, Contiguous):
            steps.append(("contiguous",))
        else:
            return None
        u = n.inputs[0]
    loop = u.node
    ports = loop.op.out_ports()
    j = loop.outputs.index(u) - ports.offset("output")
    if not 0 <= j < ports.sizes["output"]:
        return None
    return loop, j, steps


def _accumulate_in(graph, loop, items, ids, params, gg, cache):
    """Give `loop` a carried accumulator of `params`' gradient, zeros before it, to which each
    step adds the rows of its output stacks `items` ([(output index, steps)]) at the step's
    ids, in place; returns the loop's new output holding the sum."""
    op = loop.op
    body = op.body
    tail = params.type.rank - 1
    epi = list(getattr(op, "epilogue_outputs", ()))
    for j, _ in items:   # (a chunked loop's epilogue wrote the stack's rows: the steps add
        if j in epi:     # theirs now, the step's row computed per step as unchunked)
            del body.results["epilogue_rows"][epi.index(j)]
            epi.remove(j)
    if epi != list(getattr(op, "epilogue_outputs", ())):
        op.epilogue_outputs = tuple(epi)
    zl = AccumulatorZeros()
    init = _add(graph, zl, [params], zl.infer(params.type), f"{gg.name}/{SUFFIX}/zeros", gg)
    acc = _new_carried(loop, init, params.type, "grad_acc_embedding")
    summed = acc
    for j, steps in items:
        iv = ids
        for how in steps:   # the ids in the stack's layout (the forward chain's, where it exists)
            iv = _derive(graph, iv, how, gg, cache)
        dx = body.results["output"][j]
        outer = op.in_ports().split(loop.inputs)
        p = next((q for q, v in zip(body.params.get("sequence", []), outer["sequence"])
                  if v is iv), None)
        if p is None:
            lead = tuple(dx.type.shape[:dx.type.rank - tail])
            p = add_sequence(loop, iv, "ids", TensorType(lead, iv.dtype))
        s = ScatterAddRows(in_place=True)
        node = body.add_node(s, [summed, p, dx], [s.infer(acc.type, p.type, dx.type)],
                             f"{gg.name}/{SUFFIX}", gg.location)
        node.is_gradient = True
        summed = node.outputs[0]
    return _carried_output(graph, loop, summed)


def _new_carried(loop, init, ptype, name):
    """A new carried state of `loop` starting at `init`: its body parameter (the step's result
    for it is given by _carried_output)."""
    op = loop.op
    at = op.in_ports().offset("carried") + op.in_ports().sizes["carried"]
    param = op.body.add_param("carried", ptype, name)
    loop.inputs.insert(at, init)
    return param


def _carried_output(graph, loop, result):
    """Close the carried state _new_carried opened last with the step's `result`: the loop's
    new output holding its final value."""
    op = loop.op
    body = op.body
    body.results["carried"].append(result)
    ports = op.out_ports()
    out_at = ports.offset("carried") + ports.sizes["carried"] - 1
    new = loop._add_output(body.params["carried"][-1].type)
    loop.outputs.pop()
    loop.outputs.insert(out_at, new)
    for i, o in enumerate(loop.outputs):
        o.index = i
    toposort(body)
    graph.version += 1
    return new


# --- one accumulator for a sum of them ----------------------------------------------------------
def _chain(graph) -> int:
    """Where a sum (add_n / add, nested) adds the accumulators of two or more loops (each read
    by that sum alone), each later loop's accumulator starts from the earlier one's result
    instead of its own zeros: one [vocab, dim] buffer, updated in place by each loop in turn
    (loops in a topological order, so no cycle), and the sum adds the last one's result only.
    How many accumulators it joined."""
    toposort(graph)
    pos = {n: i for i, n in enumerate(graph.nodes)}
    readers = uses(graph)
    kept = set(graph.results.get("keep", [])) | result_values(graph)
    joined, inner = 0, set()
    for node in reversed(list(graph.nodes)):   # (outer sums first)
        if node.op.name not in ("add_n", "add") or node in inner:
            continue
        out = node.outputs[0]
        leaves = _leaves(out, readers, kept, root=True, inner=inner)
        accs, loops = [], set()
        for v in leaves:
            loop = _own_accumulator(v, readers, kept)
            if loop is not None and loop not in loops:
                accs.append(v)
                loops.add(loop)
        if len(accs) < 2:
            continue
        accs.sort(key=lambda v: pos[v.node])
        for before, v in zip(accs, accs[1:]):
            v.node.inputs[_init_index(v.node, v)] = before
        joined += len(accs) - 1
        terms = [v for v in leaves if v not in accs[:-1]]
        new = terms[0] if len(terms) == 1 else _add(graph, AddN(), terms, out.type,
                                                     f"{node.name}/{SUFFIX}", node)
        replace_uses(graph, out, new)
        readers = uses(graph)
    if joined:
        toposort(graph)
    return joined


def _init_index(loop, v) -> int:
    """The index in loop.inputs of the initial value of carried output `v`."""
    op = loop.op
    i = loop.outputs.index(v) - op.out_ports().offset("carried")
    return op.in_ports().offset("carried") + i


def _own_accumulator(v, readers, kept):
    """The loop whose carried output `v` is an accumulator this pass made (it starts from an
    accumulator_zeros only that loop reads and each step adds rows into it in place), read
    once and not kept; else None."""
    loop = v.node
    if loop.op.name != "loop" or v in kept or len(readers.get(v, [])) != 1:
        return None
    op = loop.op
    ports = op.out_ports()
    i = loop.outputs.index(v) - ports.offset("carried")
    if not 0 <= i < ports.sizes["carried"]:
        return None
    init = loop.inputs[op.in_ports().offset("carried") + i]
    if not isinstance(init.node.op, AccumulatorZeros) or readers.get(init, []) != [loop]:
        return None
    body = op.body
    param = body.params["carried"][i]
    inner = uses(body)
    r = body.results["carried"][i]
    while isinstance(r.node.op, ScatterAddRows) and r.node.op.in_place:
        r = r.node.inputs[0]
        if len(inner.get(r, [])) != 1:   # (the buffer is the chain's alone)
            return None
    return loop if r is param else None


def _add(graph, op, inputs, out_type, name, like):
    new = graph.add_node(op, inputs, [out_type], name, like.location)
    new.is_gradient = like.is_gradient
    return new.outputs[0]
