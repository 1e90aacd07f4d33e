"""Write fetched loop outputs to host memory row by row (memory planning only).

A loop's stacked output that nothing but the caller reads (a fetched `y` of dynamic_rnn, whose
loss and gradient the stream_outputs pass moved into the loops) still took its whole [T, ...]
stack on the device, until the fetch copied it to the host at the end of the run. This pass
marks such an output in the loop's `host_outputs` attribute (ops/loop.py): the runtime copies
each row to a host array as the step makes it (runtime/host_outputs.py), so the device holds
a row, not T of them, and the fetch hands the caller that host array without a copy.

An output qualifies when every path from it reaches a fetch through transposes, row
reorderings (permute_rows) and reverse_sequence alone (dynamic_rnn's batch-major transpose,
its unsort by sequence length, a backward direction's reversal): those run on the host, on the
host array. Any other reader (a loss, a gradient, another loop, a fed value in its place), a
loop with a condition, or an output the chunk epilogue writes keeps the stack on the device.
The pass is off unless asked for (`passes={"host_outputs": True}`); the memory planner asks for
it, with stream_outputs, when a budget cannot be met otherwise.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.loop import Loop
from ..ops.rows import PermuteRows
from ..ops.sequence import ReverseSequence
from ..ops.shape import Dim, Transpose
from .rewrite import uses

# the layout ops that run on the host array (their first input; the others are small
# device values: permutations, lengths)
HOST_LAYOUT = (Transpose, PermuteRows, ReverseSequence)


def host_outputs(graph: Graph) -> int:
    """Mark the loop outputs only fetches read (through HOST_LAYOUT ops) as written to host
    memory; how many outputs."""
    readers = uses(graph)
    fetched = {v for v in graph.results.get("keep", [])}
    fed = set(graph.results.get("fed", []))
    made = 0
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, Loop) or not op.steps_known():
            continue
        outs = op.out_ports().split(node.outputs)["output"]
        marked = set(op.host_outputs)
        for i, v in enumerate(outs):
            if i not in marked and i not in op.epilogue_outputs and \
                    only_fetched(v, readers, fetched - fed, fed):
                marked.add(i)
        if marked != set(op.host_outputs):
            made += len(marked) - len(op.host_outputs)
            new = op.with_body(op.body)
            new.host_outputs = tuple(sorted(marked))
            node.op = new
    if made:
        graph.version += 1
    return made


def only_fetched(v, readers, fetched, fed) -> bool:
    """v reaches the caller alone: every reader is a HOST_LAYOUT op reading it as its first
    input only, recursively, or a Dim reading its size, and some value on the way (or v) is
    fetched; none is fed."""
    todo, seen, any_fetched = [v], set(), False
    while todo:
        u = todo.pop()
        if u in seen:
            continue
        seen.add(u)
        if u in fed:
            return False
        any_fetched = any_fetched or u in fetched
        for r in readers.get(u, []):
            if isinstance(r.op, Dim):   # (a size: the host array has it too)
                continue
            if not isinstance(r.op, HOST_LAYOUT) or r.inputs[0] is not u or \
                    any(x is u for x in r.inputs[1:]):
                return False
            todo.extend(r.outputs)
    return any_fetched
