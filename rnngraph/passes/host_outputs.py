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
from ..ops.loop import Loop, host_chain, host_readers_problem
from .rewrite import uses


def host_outputs(graph: Graph) -> int:
    """Mark the loop outputs only fetches read (through HOST_LAYOUT ops) as written to host
    memory; how many outputs."""
    readers = uses(graph)
    fetched = set(graph.results.get("keep", []))
    fed = set(graph.results.get("fed", []))
    made = 0
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, Loop) or not op.steps_known():
            continue
        outs = op.out_ports().split(node.outputs)["output"]
        # (afresh, not from the marks it has: a loaded program's may be stale)
        marked = {i for i, v in enumerate(outs) if i not in op.epilogue_outputs and
                  only_fetched(v, readers, fetched - fed, fed)}
        if marked != set(op.host_outputs):
            made += len(marked ^ set(op.host_outputs))
            new = op.with_body(op.body)
            new.host_outputs = tuple(sorted(marked))
            node.op = new
    if made:
        graph.version += 1
    return made


def clear_host_marks(graph: Graph, keep_valid: bool = False) -> int:
    """Unmark the loops of `graph`: the pass switched off on a saved program, whose marks
    were made when it was compiled (the passes that ran since may read those outputs; nodes
    added since may too). `keep_valid`: only those whose outputs something else now reads
    (no pass ran). Returns how many loops were unmarked."""
    count = 0
    for node in graph.nodes:
        if getattr(node.op, "host_outputs", ()) and not (
                keep_valid and host_readers_problem(node) is None):
            new = node.op.with_body(node.op.body)
            new.host_outputs = ()
            node.op = new
            count += 1
    if count:
        graph.version += 1
    return count


def only_fetched(v, readers, fetched, fed) -> bool:
    """v reaches the caller alone (ops/loop.py's host_chain: HOST_LAYOUT ops and Dim nodes
    only), some value on the way (or v) is fetched, and none is fed."""
    reached, other = host_chain(v, readers)
    return other is None and any(u in fetched for u in reached) and \
        not any(u in fed for u in reached)
