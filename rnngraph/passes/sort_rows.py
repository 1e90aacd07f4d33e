"""sort_rows: the batch sort of dynamic_rnn with sequence_length, folded into the products
that pack or unpack the active rows.

dynamic_rnn sorts the batch by length before its loop and restores the caller's order after
it (ops/rows.py). Around the loops, only products read the sorted input and make the unsorted
input gradient, and they copy the active rows anyway:

- the input gradient comes out of the gradient loop as a product over its active rows
  (rows_matmul, unpacked into a zeroed [T, B, I]) and was then unsorted: two passes over
  [T, B, I]. The product now gathers each row straight into its unsorted place (RowsMatMul's
  `unsort`), one pass (padded S1 BasicRNN: the unsort took ~0.5 ms of ~20). Where the input
  gradient is a sum of such products (a GRU: one per projection kernel), each gathers into
  place and the sum needs no unsort (padded S1 GRU: a 0.55 ms unsort gone);
- the sorted input x [T, B, I] was read by the input projection and the weight gradient, each
  packing its active rows. When nothing else reads it (the loops no longer do once the
  projection is hoisted), one pack gathers them from the unsorted input (PackRows' `gather`)
  and both read that pack: x is not sorted as a whole (another ~0.5 ms there).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.reduce import AddN
from ..ops.rows import PermuteRows
from ..ops.steps import PackRows, RowsMatMul, StepContract
from .rewrite import replace_node, replace_uses, result_values, toposort, uses


def fold_sort_into_products(graph: Graph) -> int:
    if not any(isinstance(n.op, PermuteRows) and n.op.axis == 1 for n in graph.nodes):
        return 0   # (no sorted batch: spare a large static graph the readers map)
    count = _gather_packs(graph)
    readers = uses(graph)
    results = result_values(graph)
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, PermuteRows) or op.axis != 1:
            continue
        y = node.inputs[0]
        src = y.node
        if len(readers.get(y, [])) != 1 or y in results:
            continue   # (another reader needs the sorted value)
        if src.graph is graph and isinstance(src.op, AddN) and \
                all(_foldable(v, src, readers, results) for v in src.inputs):
            # a sum of such products (a GRU's input gradient: one per projection): each
            # gathers into the caller's order, and their sum needs no unsort after it
            terms = [_unsorted(graph, v.node, node).outputs[0] for v in src.inputs]
            total = graph.add_node(AddN(), terms, [node.outputs[0].type],
                                   f"{src.name}/unsorted", src.location)
            total.is_gradient = src.is_gradient
            replace_uses(graph, node.outputs[0], total.outputs[0])
            count += len(terms)
        elif _foldable(y, node, readers, results):
            replace_uses(graph, node.outputs[0], _unsorted(graph, src, node).outputs[0])
            count += 1
    if count:
        toposort(graph)
    return count


def _foldable(v, reader, readers, results) -> bool:
    """Is v a product over active rows in sorted order that only `reader` reads?"""
    src = v.node
    return src.graph is reader.graph and isinstance(src.op, RowsMatMul) and \
        not src.op.unsort and readers.get(v) == [reader] and v not in results


def _unsorted(graph: Graph, src, permute):
    """RowsMatMul `src` gathering its rows into the order `permute` (a PermuteRows) makes."""
    new = graph.add_node(RowsMatMul(src.op.packed, unsort=True),
                         list(src.inputs) + [permute.inputs[1]], [permute.outputs[0].type],
                         f"{src.name}/unsorted", src.location)
    new.is_gradient = src.is_gradient
    return new


def _gather_packs(graph: Graph) -> int:
    """Sorted stacks s = permute_rows(x, perm, axis=1) that only packing products read: they
    read one pack gathered from x instead, and s is dead."""
    count = 0
    readers = uses(graph)
    results = result_values(graph)
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, PermuteRows) or op.axis != 1 or node.inputs[0].type.rank != 3:
            continue
        s, (x, perm) = node.outputs[0], node.inputs
        plan = [(_rewrite_for(r, s), r) for r in readers.get(s, [])]
        rows = {counts for (_, counts), _ in plan if counts is not None}
        if s in results or not plan or any(make is None for (make, _), _ in plan) or \
                len(rows) > 1 or not all(_keeps_types(make, reader, x) for (make, _), reader
                                         in plan if make != "pack"):
            continue
        packed = None
        if rows:
            gather = PackRows(gather=True)
            row_counts = rows.pop()
            pack = graph.add_node(gather, [x, row_counts, perm],
                                  [gather.infer(x.type, row_counts.type, perm.type)],
                                  f"{node.name}/packed_rows", node.location)
            pack.is_gradient = node.is_gradient
            packed = pack.outputs[0]
        # (packs of s last: the readers of those packs are rewritten from their inputs first)
        for (make, _), reader in sorted(plan, key=lambda entry: entry[0][0] == "pack"):
            if make == "pack":   # a pack of s: the gathered pack is that
                replace_uses(graph, reader.outputs[0], packed)
                continue
            replace_node(graph, reader, *make(x, packed), "gathered")
        count += 1
    if count:
        toposort(graph)
    return count


def _keeps_types(make, reader, x) -> bool:
    """Does the rewritten reader's rule give the type `reader` states? Not where s knows its
    batch and x does not (constant lengths, an unknown batch): the product stays on s then."""
    op, ins = make(x, None)   # (None: the pack, whose type does not decide the result's)
    if not isinstance(op, RowsMatMul):
        return True
    pack = TensorType((None, x.shape[-1]), x.dtype)
    return op.infer(*[pack if v is None else v.type for v in ins]) == reader.outputs[0].type


def _rewrite_for(reader, s):
    """(make(x, pack) -> (op, inputs) reading x or the pack instead of s, or "pack" when the
    reader is a pack of s; the rows the pack must hold, or None), or (None, None) when
    `reader` needs s itself."""
    op, ins = reader.op, list(reader.inputs)
    if isinstance(op, RowsMatMul) and not op.packed and ins[0] is s and \
            all(v is not s for v in ins[1:]):
        rest = ins[3:]   # (the perm of an unsorting product)
        return (lambda x, pack: (RowsMatMul(True, op.unsort), [pack, ins[1], ins[2], x] + rest),
                ins[2])
    if isinstance(op, RowsMatMul) and op.packed and ins[3] is s and \
            all(v is not s for v in ins[:3] + ins[4:]):
        return (lambda x, pack: (op, ins[:3] + [x] + ins[4:]), None)   # s for its shape only
    if isinstance(op, PackRows) and not op.gather and ins[0] is s and ins[1] is not s:
        return ("pack", ins[1])
    if isinstance(op, StepContract):
        a_s, starts, tail = op.split(ins)
        parts = [j for j, a in enumerate(a_s) if a is s]
        if len(tail) == 3 and parts and not any(j in op.shifted for j in parts) and \
                all(v is not s for v in list(starts.values()) + tail) and \
                len(set(parts) | set(op.packed_parts)) < op.parts:
            def make(x, pack):
                new_ins = [pack if j in parts else v for j, v in enumerate(ins)]
                return (StepContract(op.parts, op.ones, op.shifted, op.packed_b,
                                     tuple(sorted(set(op.packed_parts) | set(parts)))), new_ins)
            return (make, tail[2])
    return (None, None)
