"""The body a shrunk loop runs on exactly its active rows: its sequence mask known true there.

dynamic_rnn with sequence_length masks every step (ops: where(active, new, old), zero outputs)
so that a step over the whole batch copies finished rows through. A loop that runs each step
on its active rows only (runtime/loop_kernel.py's ActiveRows, rows not rounded up) never shows
the body a finished row: there the mask is true on every row it reads. This makes a copy of
the body that uses it: where(mask, a, b) is a, what only fed the other branch (zeros_like, the
gradient that a finished row passes through) is gone, and sums lose their zero terms. The
padded BasicRNN's steps then compute what the full-length ones do: its forward kernel writes
one output instead of three equal ones, its gradient step no zero array and no sum with it
(padded S1 fwd+bwd, same process: 16.31 -> 16.03 ms, medians). Outputs equal the masked
body's on those rows (x + 0 is x; nothing is multiplied away, so NaNs still propagate); the
loop keeps the masked body for whole-batch steps (memory plans, byte counting) and for steps
rounded up to more rows than are active.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.elementwise import Add, Sub, Where, ZerosLike
from ..ops.fused import Fused
from ..ops.reduce import AddN
from ..passes.rewrite import (clone_body, remove_dead, replace_node, replace_uses,
                               result_values, toposort, uses)

_ZERO = "zero"


def trusting_mask(body: Graph, masks: list) -> tuple[Graph, dict] | None:
    """(a simplified copy of `body`, old value -> new value) when the body params in `masks`
    (bool [rows, 1] sequence slices) are true on every row; None when nothing simplifies."""
    new, vmap = clone_body(body, body.parent)
    true = {vmap[m] for m in masks}
    zero: set = set()
    changed = 0
    for node in list(new.nodes):
        if node not in new.nodes:
            continue
        op = node.op
        if isinstance(op, Fused):
            changed += _simplify_fused(new, node, true, zero)
        elif isinstance(op, Where) and node.inputs[0] in true and \
                node.inputs[1].type == node.outputs[0].type:
            replace_uses(new, node.outputs[0], node.inputs[1])
            changed += 1
        elif isinstance(op, ZerosLike):
            zero.add(node.outputs[0])
        elif isinstance(op, (AddN, Add)) and any(v in zero for v in node.inputs):
            changed += _drop_zero_terms(new, node, zero)
    if not changed:
        return None
    readers, results = uses(new), result_values(new)
    for node in list(new.nodes):   # exports nobody reads now (zeros the readers dropped)
        if isinstance(node.op, Fused) and any(
                not readers.get(v) and v not in results for v in node.outputs):
            op = node.op
            kept = [(ref, v) for ref, v in zip(op.exports, node.outputs)
                    if readers.get(v) or v in results]
            instrs = [(op.n_inputs + j, inner, list(refs)) for j, (inner, refs)
                      in enumerate(op.instrs)]
            _rebuild(new, node, instrs, [r for r, _ in kept], [v for _, v in kept],
                     [v.type for v in node.inputs] + list(op._temp_types))
    remove_dead(new, [])
    toposort(new)   # (rewritten nodes were appended)
    return new, vmap


def _drop_zero_terms(graph: Graph, node, zero: set) -> int:
    """A sum without its terms known to be zero (it is the one term left, or zero itself)."""
    out = node.outputs[0]
    terms = [v for v in node.inputs if v not in zero]
    if not terms:
        zero.add(out)
        return 0
    if len(terms) == 1 and terms[0].type == out.type:
        replace_uses(graph, out, terms[0])
        return 1
    if isinstance(node.op, AddN) and all(t.type == out.type for t in terms):
        replace_node(graph, node, AddN(), terms, "nonzero")
        return 1
    return 0


def _simplify_fused(graph: Graph, node, true: set, zero: set) -> int:
    """Rewrite a fused node whose inputs include a true mask or zeros; its exports that become
    one of its inputs are replaced by that input, and those that become zero are dropped where
    every reader is a sum (the zero is marked for them), else computed as before."""
    op = node.op
    n_in = op.n_inputs
    types = [v.type for v in node.inputs] + list(op._temp_types)
    # each ref's value: a ref (itself or what it simplifies to), or (_ZERO, a ref computing it)
    val: list = [(_ZERO, i) if v in zero else i for i, v in enumerate(node.inputs)]
    true_refs = {i for i, v in enumerate(node.inputs) if v in true}
    instrs = []   # (ref, inner op, resolved refs) of the instructions still computed
    simplified = False
    for j, (inner, refs) in enumerate(op.instrs):
        r = n_in + j
        args = [val[a] for a in refs]
        simplified |= [_ref(a) for a in args] != list(refs)
        same = [types[_ref(a)] == types[r] for a in args]
        result = None
        if isinstance(inner, Where) and _ref(args[0]) in true_refs and same[1]:
            result = args[1]
        elif isinstance(inner, ZerosLike):   # (kept, in case a reader needs the zeros)
            instrs.append((r, inner, [_ref(a) for a in args]))
            val.append((_ZERO, r))
            continue
        elif isinstance(inner, (Add, AddN)):
            terms = [(a, s) for a, s in zip(args, same) if not _is_zero(a)]
            if len(terms) < len(args):
                if not terms and types[_ref(args[0])] == types[r]:
                    result = args[0]
                elif len(terms) == 1 and terms[0][1]:
                    result = terms[0][0]
                elif isinstance(inner, AddN) and all(s for _, s in terms):
                    args = [a for a, _ in terms]
                    inner = AddN()
        elif isinstance(inner, Sub) and _is_zero(args[1]) and same[0]:
            result = args[0]
        if result is None:
            result = r
            simplified |= inner is not op.instrs[j][0]
            instrs.append((r, inner, [_ref(a) for a in args]))
        else:
            simplified = True
        val.append(result)
    if not simplified and not any(_is_zero(val[ref]) for ref in op.exports):
        return 0   # (the same kernel)
    readers = uses(graph)
    results = result_values(graph)
    exports, outs = [], []   # kept refs, and the node outputs they stand for
    for ref, out in zip(op.exports, node.outputs):
        v = val[ref]
        if _is_zero(v) and out not in results and readers.get(out) and \
                all(isinstance(r.op, (AddN, Add)) for r in readers[out]):
            zero.add(out)   # (its readers, later in the body, drop it)
            continue
        if _ref(v) < n_in:   # an input as it is
            replace_uses(graph, out, node.inputs[_ref(v)])
            continue
        if _is_zero(v):
            zero.add(out)
        exports.append(_ref(v))
        outs.append(out)
    _rebuild(graph, node, instrs, exports, outs, types, zero)
    return 1


def _rebuild(graph: Graph, node, instrs, exports, outs, types, zero=frozenset()) -> None:
    """The fused node with only the instructions and inputs `exports` need, in its stead
    (appended: trusting_mask restores the order once; its outputs known to be zero stay marked
    in `zero`)."""
    op = node.op
    n_in = op.n_inputs
    by_ref = {r: (inner, refs) for r, inner, refs in instrs}
    live: set = set()
    stack = list(exports)
    while stack:
        r = stack.pop()
        if r not in live:
            live.add(r)
            if r in by_ref:
                stack.extend(by_ref[r][1])
    inputs = [i for i in range(n_in) if i in live]
    kept = [r for r, _, _ in instrs if r in live]
    renumber = {old: new for new, old in enumerate(inputs + kept)}
    new_instrs = [(by_ref[r][0], tuple(renumber[a] for a in by_ref[r][1])) for r in kept]
    if not exports:
        graph.remove_nodes({node})
        return
    once = list(dict.fromkeys(exports))   # outputs that became one value are one output
    origins = [op._origins[r - n_in] if r - n_in < len(op._origins) else (node.name, "")
               for r in kept]
    new_op = Fused(new_instrs, len(inputs), [renumber[r] for r in once],
                   [types[r] for r in once], [types[r] for r in kept], origins)
    new = graph.add_node(new_op, [node.inputs[i] for i in inputs], [types[r] for r in once],
                         node.name + "/active", node.location)
    new.is_gradient = node.is_gradient
    for ref, old in zip(exports, outs):
        now = new.outputs[once.index(ref)]
        replace_uses(graph, old, now)
        if old in zero:
            zero.add(now)
    graph.remove_nodes({node})


def _is_zero(v) -> bool:
    return isinstance(v, tuple)


def _ref(v) -> int:
    return v[1] if isinstance(v, tuple) else v
