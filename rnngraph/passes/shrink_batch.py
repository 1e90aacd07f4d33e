"""shrink_batch: loops with active rows (dynamic_rnn with sequence_length) run each step on the
rows whose sequences have not ended, so finished rows stop costing compute.

dynamic_rnn sorts the batch by length once and gives its loop, and the loop's gradient, the
count of active rows per step; the body still masks finished rows, so this pass only allows the
loop kernel to skip them (ops/loop_rows.py says when that is exact; runtime/loop_kernel.py
does it). Switched off, every step runs on the whole batch.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.loop_rows import row_layout
from .rewrite import for_each_loop


def shrink_active_batch(graph: Graph) -> int:
    def mark(_graph, node) -> int:
        op = node.op
        if not op.active_rows or op.shrink or row_layout(op.body) is None:
            return 0
        op.shrink = True
        return 1
    return for_each_loop(graph, mark)
