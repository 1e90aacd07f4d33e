"""Leave fed sequences in host memory: the rows a loop reads per step (memory planning only).

A fed [B, T, ...] value (dynamic_rnn's batch-major input, a per-step target that
stream_outputs made a sequence input of the loops) reaches its loops through a transpose that
puts time first; a time-major feed reaches them as it is. Either way the device holds the
whole [T, ...] array for the run, though each loop step reads one row of it. This pass
replaces that transpose (or, for a time-major feed, the direct reads) with a `host_rows` node
(ops/host_rows.py): the same value, which the runtime leaves in host memory and hands to the
loops as a handle copying a row, or a chunk block, to the device as they read it.

It applies to a placeholder whose every reader is a loop reading it as a sequence input, a
node reading its shape only, or a transpose moving one axis to the front (the others in order)
whose every reader is such a loop, a shape reader, or a reordering of its rows
(`permute_rows` on axis 1: dynamic_rnn's sort by sequence length, which host_rows then does as
it copies the rows) read by such loops (through `contiguous` nodes or not). A fetched or
otherwise read value stays on the device.
The pass is off unless asked for (`passes={"host_sequences": True}`); the memory planner asks
for it, with stream_outputs, when a budget cannot be met otherwise.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.base import reads_shape_only
from ..ops.host_rows import HostRows, time_major_perm
from ..ops.loop import reads_as_sequence
from ..ops.rows import PermuteRows
from ..ops.shape import Contiguous, Transpose
from .rewrite import replace_uses, result_values, toposort, uses


def host_sequences(graph: Graph) -> int:
    """Route the fed sequences only loops read through `host_rows` nodes; how many nodes."""
    readers = uses(graph)
    kept = set(graph.results.get("keep", [])) | result_values(graph)
    made = 0
    for node in list(graph.nodes):
        if node.op.name != "placeholder":
            continue
        fed = node.outputs[0]
        rs = readers.get(fed, [])
        if not _movable(fed, rs, readers, kept):
            continue
        for p in [p for p in rs if _row_order(p, fed)]:   # a time-major feed, sorted
            _replace(graph, fed, 0, p, readers)
            made += 1
        direct = [r for r in rs if reads_as_sequence(r, fed)]
        if direct:   # a time-major feed
            rows = _add(graph, HostRows(0), [fed], fed.type, f"{node.name}/host_rows", node)
            for r in direct:
                r.inputs = [rows if x is fed else x for x in r.inputs]
            graph.version += 1
            made += 1
        for t in [r for r in rs if _time_major(r)]:
            axis, out = t.op.perm[0], t.outputs[0]
            for p in [p for p in readers.get(out, []) if _row_order(p, out)]:
                _replace(graph, fed, axis, p, readers)
                made += 1
            if [r for r in readers.get(out, []) if not _row_order(r, out)]:
                _replace(graph, fed, axis, t, readers)
                made += 1
    if made:
        toposort(graph)
    return made


def _add(graph, op, inputs, out_type, name, like):
    new = graph.add_node(op, inputs, [out_type], name, like.location)
    new.is_gradient = like.is_gradient
    return new.outputs[0]


def _replace(graph, fed, axis: int, node, readers) -> None:
    """A host_rows node of `fed` (time axis `axis`; in `node`'s row order where `node` is a
    reordering) in place of `node`'s output, for its readers."""
    inputs = [fed, node.inputs[1]] if isinstance(node.op, PermuteRows) else [fed]
    rows = _add(graph, HostRows(axis), inputs, node.outputs[0].type, f"{node.name}/host_rows",
                node)
    _reroute(graph, node.outputs[0], rows, readers)


def _reroute(graph, old, new, readers) -> None:
    """Make the readers of `old` read `new`, and the loops behind its `contiguous` copies too
    (a handle is not copied whole)."""
    for c in [c for c in readers.get(old, []) if isinstance(c.op, Contiguous)]:
        _reroute(graph, c.outputs[0], new, readers)
    replace_uses(graph, old, new)


def _movable(fed, rs, readers, kept) -> bool:
    """Can fed value `fed` (read by nodes `rs`) stay on the host: is every reader a loop
    reading it as a sequence, a shape reader, or a time-major transpose whose value only such
    loops (directly, through `contiguous` copies or through a reordering of its rows) and
    shape readers read? At least one loop must read it."""
    loops = False
    for r in rs:
        if reads_as_sequence(r, fed):
            loops = True
        elif _row_order(r, fed) and _loop_only(r.outputs[0], readers, kept):
            loops = True   # (a time-major feed sorted by length)
        elif _time_major(r) and r.outputs[0] not in kept:
            out = r.outputs[0]
            for x in readers.get(out, []):
                if _row_order(x, out):
                    if not _loop_only(x.outputs[0], readers, kept):
                        return False
                    loops = True
                elif reads_shape_only(x, out):
                    continue
                elif not _loop_only(out, readers, kept, through_rows=True):
                    return False
                else:
                    loops = True
        elif not reads_shape_only(r, fed):
            return False
    return loops


def _row_order(node, v) -> bool:
    """Is `node` a reordering of the rows (axis 1) of the time-major value `v` (dynamic_rnn's
    sort by sequence length), `v` not its order?"""
    return isinstance(node.op, PermuteRows) and node.op.axis == 1 and node.inputs[0] is v \
        and node.inputs[1] is not v


def _time_major(node) -> bool:
    """A transpose moving one axis (not the first) to the front, the others in order."""
    if not isinstance(node.op, Transpose):
        return False
    perm = node.op.perm
    return len(perm) >= 2 and perm[0] != 0 and perm == time_major_perm(len(perm), perm[0])


def _loop_only(v, readers, kept, through_rows=False) -> bool:
    """Is `v` read only by loops as a sequence input (directly or through `contiguous`
    copies) or for its shape, and neither fetched nor returned? `through_rows`: a reordering
    of its rows (checked by the caller) may read it too."""
    if v in kept:
        return False
    for r in readers.get(v, []):
        if isinstance(r.op, Contiguous):
            if not _loop_only(r.outputs[0], readers, kept):
                return False
        elif through_rows and _row_order(r, v) and _loop_only(r.outputs[0], readers, kept):
            continue
        elif not (reads_as_sequence(r, v) or reads_shape_only(r, v)):
            return False
    return True
