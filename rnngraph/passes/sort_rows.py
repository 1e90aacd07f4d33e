"""sort_rows: the batch sort of dynamic_rnn with sequence_length, folded into the products
that pack or unpack the active rows.

dynamic_rnn sorts the batch by length before its loop and restores the caller's order after
it (ops/rows.py). The input gradient comes out of the gradient loop as a product over its
active rows (rows_matmul, unpacked into a zeroed [T, B, I]) and is then unsorted: two passes
over [T, B, I]. Here the product gathers each row straight into its unsorted place instead
(RowsMatMul's `unsort`), one pass (padded S1 BasicRNN: the unsort took ~0.5 ms of ~20).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.rows import PermuteRows
from ..ops.steps import RowsMatMul
from .rewrite import replace_uses, result_values, toposort, uses


def fold_sort_into_products(graph: Graph) -> int:
    count = 0
    readers = uses(graph)
    results = result_values(graph)
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, PermuteRows) or op.axis != 1:
            continue
        y = node.inputs[0]
        src = y.node
        if src.graph is not graph or not isinstance(src.op, RowsMatMul) or src.op.unsort or \
                len(readers.get(y, [])) != 1 or y in results:
            continue   # (another reader needs the sorted product)
        new = graph.add_node(RowsMatMul(src.op.packed, unsort=True),
                             list(src.inputs) + [node.inputs[1]], [node.outputs[0].type],
                             f"{src.name}/unsorted", src.location)
        new.is_gradient = src.is_gradient
        replace_uses(graph, node.outputs[0], new.outputs[0])
        count += 1
    if count:
        toposort(graph)
    return count
