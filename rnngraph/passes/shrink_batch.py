"""shrink_batch: loops with active rows (dynamic_rnn with sequence_length) run each step on the
rows whose sequences have not ended, so finished rows stop costing compute.

dynamic_rnn sorts the batch by length once and gives its loop, and the loop's gradient, the
count of active rows per step; the body still masks finished rows, so this pass only allows the
loop kernel to skip them (ops/loop_rows.py says when that is exact; runtime/loop_kernel.py
does it). Switched off, every step runs on the whole batch.

A shrunk loop zeroes the finished rows of its stacks every step, for readers that take whole
stacks. It skips that for stacks whose every reader takes each step's active rows only: the
gradient loop (shrunk, with the same row counts) reading a saved tensor, and the products moved
out of the loops that pack or sum the active rows (padded S1 LSTM: ~4 ms of zeroing a run);
such stacks may also be written packed (`rows_only`). A stack some reader reads for its shape
only (through transposes: the shape of a sum's gradient) is not zeroed either, but stays a
whole array (`unzeroed`).
Likewise an input projection computed before the loop (rows_matmul) that only shrunk loops
read zeroes only the rows they read past the active ones.

A saved program carries these marks; when its passes run again, a loop they chunked (which
then runs whole rows) loses its mark, and the stacks are marked from their readers afresh.
Run with this pass switched off (other passes on), the saved marks are all cleared
(clear_row_marks): every step runs on the whole batch, as in a program compiled without it.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.loop_rows import row_layout
from ..ops.steps import PackRows, RowsMatMul, StepContract, StepSum
from .rewrite import for_each_loop, result_values, uses


def shrink_active_batch(graph: Graph) -> int:
    def mark(_graph, node) -> int:
        op = node.op
        if op.shrink and not _can_shrink(op):   # (a saved program's mark, made before a
            op.shrink = False                   # rerun of the passes chunked the loop)
            op.rows_only = op.unzeroed = ()
            return 1
        if not op.active_rows or op.shrink or not _can_shrink(op):
            return 0
        op.shrink = True
        return 1
    count = for_each_loop(graph, mark)
    _mark_rows_only_stacks(graph)
    return count


def clear_row_marks(graph: Graph) -> int:
    """Unmark every loop and input projection of `graph` (inner loops too): the pass switched
    off on a saved program, whose marks were made when it was compiled. Each step then runs on
    the whole batch and every stack is zeroed past the active rows, whatever chunking the passes
    that do run gave the loops. Returns how many loops were marked."""
    def clear(_graph, node) -> int:
        op = node.op
        marked = bool(getattr(op, "shrink", False) or getattr(op, "rows_only", ()) or
                      getattr(op, "unzeroed", ()))
        if op.name == "loop":
            op.shrink = False
            op.rows_only = op.unzeroed = ()
        return int(marked)
    count = for_each_loop(graph, clear)
    for body in [graph] + [b for n in graph.nodes for b in _bodies(n)]:
        for node in body.nodes:
            if isinstance(node.op, RowsMatMul):
                node.op.only_loops_read = False
    return count


def _bodies(node) -> list:
    """The loop bodies under `node`, nested ones too."""
    out = []
    for body in node.op.subgraphs():
        out.append(body)
        for n in body.nodes:
            out.extend(_bodies(n))
    return out


def _can_shrink(op) -> bool:
    """May loop op run its steps on the active rows only? Not a chunked loop: chunks run whole
    rows (their sums mix rows), so the runtime runs it full width whatever `shrink` says."""
    return op.active_rows and not getattr(op, "chunk_steps", None) and \
        row_layout(op.body) is not None


def _mark_rows_only_stacks(graph: Graph) -> None:
    """Set each shrunk loop's `rows_only` and `unzeroed`: the indices of its stacked outputs and saved tensors
    nobody reads past each step's active rows (so the loop need not zero those rows)."""
    relevant = [n for n in graph.nodes if n.op.subgraphs() or isinstance(n.op, RowsMatMul)]
    if not relevant:   # (a static graph: no loops, nothing to mark)
        return
    readers = uses(graph)
    results = result_values(graph)
    for node in relevant:
        for body in node.op.subgraphs():
            _mark_rows_only_stacks(body)
        op = node.op
        if isinstance(op, RowsMatMul):   # an input projection only shrunk loops read
            rs = readers.get(node.outputs[0], [])
            op.only_loops_read = bool(rs) and node.outputs[0] not in results and all(
                r.op.name == "loop" and _reads_active_rows(r, node.outputs[0], node.inputs[2])
                for r in rs)
        if op.name != "loop" or not op.shrink:
            continue
        rows = op.in_ports().split(node.inputs)["rows"][0]
        ports = op.out_ports()
        indices = [ports.offset(g) + i for g in ("output", "residual")
                   for i in range(ports.sizes[g])]
        op.rows_only = tuple(sorted(
            i for i in indices if node.outputs[i] not in results and readers.get(node.outputs[i])
            and all(_reads_active_rows(r, node.outputs[i], rows) for r in readers[node.outputs[i]])))
        op.unzeroed = tuple(sorted(set(op.rows_only) | {
            i for i in indices if node.outputs[i] not in results and readers.get(node.outputs[i])
            and all(_reads_active_rows(r, node.outputs[i], rows) or
                    _reads_shape(r, node.outputs[i], readers, results)
                    for r in readers[node.outputs[i]])}))


def _reads_shape(reader, v, readers, results) -> bool:
    """Does `reader` read v only for its shape (Op.shape_inputs), itself or through transposes
    read that way?"""
    at = [i for i, u in enumerate(reader.inputs) if u is v]
    if at and all(i in getattr(reader.op, "shape_inputs", ()) for i in at):
        return True
    out = reader.outputs[0] if len(reader.outputs) == 1 else None
    return reader.op.name == "transpose" and out is not None and out not in results and \
        bool(readers.get(out)) and all(_reads_shape(r, out, readers, results)
                                       for r in readers[out])


def _reads_active_rows(reader, v, rows) -> bool:
    """Does `reader` read stack v [steps, batch, ...] only in the rows active at each step?"""
    op = reader.op
    if isinstance(op, StepContract):   # packs the active rows of its stacks
        tail = op.split(reader.inputs)[2]
        return len(tail) == 3 and tail[2] is rows
    if isinstance(op, StepSum):
        return len(reader.inputs) == 3 and reader.inputs[2] is rows
    if isinstance(op, RowsMatMul):
        if op.packed:   # the stack is read for its shape only
            return all(u is not v for u in reader.inputs[:3])
        return reader.inputs[0] is v and reader.inputs[1] is not v and reader.inputs[2] is rows
    if isinstance(op, PackRows):
        return reader.inputs[0] is v and reader.inputs[1] is rows
    if op.name == "loop" and op.shrink and _can_shrink(op):  # a shrunk loop with the same
        #                                                        counts, v a batched sequence
        parts = op.in_ports().split(reader.inputs)
        layout = row_layout(op.body)
        if parts["rows"][0] is not rows or layout is None or \
                any(v in vs for g, vs in parts.items() if g != "sequence"):
            return False
        return all(batched for u, batched in zip(parts["sequence"], layout.sequence) if u is v)
    return False
