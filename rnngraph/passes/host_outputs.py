"""Write loop outputs to host memory row by row (memory planning only).

A loop's stacked output that nothing but the caller reads (a fetched `y` of dynamic_rnn, whose
loss and gradient the stream_outputs pass moved into the loops) still took its whole [T, ...]
stack on the device, until the fetch copied it to the host at the end of the run. So did one
that a later loop reads a row per step (a bidirectional RNN's forward outputs, which the
backward direction's loop reads for a head over both; the gradient rows that loop stacks for
the forward direction's gradient loop). This pass marks such an output in the loop's
`host_outputs` attribute (ops/loop.py): the runtime copies each row to a host array as the
step makes it (runtime/host_outputs.py), so the device holds a row, not T of them; a fetch
hands the caller that host array without a copy, and a loop reads its rows back one at a time
through a `host_rows` node (ops/host_rows.py), which the pass puts in front of it.

An output qualifies when every path from it reaches a fetch or a loop's sequence input
through transposes, row reorderings (permute_rows) and reverse_sequence alone (dynamic_rnn's
batch-major transpose, its unsort by sequence length, a backward direction's reversal): those
run on the host, on the host array. Any other reader (a loss, a gradient, a fed value in its
place), a loop with a condition, or an output the chunk epilogue writes keeps the stack on the
device. The pass is off unless asked for (`passes={"host_outputs": True}`); the memory planner
asks for it, with stream_outputs, when a budget cannot be met otherwise.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.host_rows import HostRows
from ..ops.loop import Loop, host_chain, host_readers_problem
from .rewrite import toposort, uses


def host_outputs(graph: Graph) -> int:
    """Mark the loop outputs only fetches and loops' sequence inputs read (through HOST_LAYOUT
    ops) as written to host memory, the loops reading them through host_rows nodes; how many
    outputs."""
    readers = uses(graph)
    fetched = set(graph.results.get("keep", []))
    fed = set(graph.results.get("fed", []))
    made = routed = 0
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, Loop) or not op.steps_known():
            continue
        outs = op.out_ports().split(node.outputs)["output"]
        marked, routes = set(), []
        for i, v in enumerate(outs):   # (afresh, not from its marks: a loaded program's may
            if i in op.epilogue_outputs:   # be stale)
                continue
            loops: list = []
            if host_readable(v, readers, fetched - fed, fed, loops):
                marked.add(i)
                routes += [r for r in loops if r[1] is not None]
        if marked != set(op.host_outputs):
            made += len(marked ^ set(op.host_outputs))
            new = op.with_body(op.body)
            new.host_outputs = tuple(sorted(marked))
            node.op = new
        routed += _route(graph, routes)
    if made or routed:
        graph.version += 1
    if routed:
        toposort(graph)
    return made + routed


def _route(graph: Graph, routes) -> int:
    """Make each loop of `routes` ((value, loop)) read the rows of the value through one
    host_rows node per value; how many nodes were made."""
    rows: dict = {}   # (Values hash by identity)
    for u, loop in routes:
        if u not in rows:
            made = graph.add_node(HostRows(0), [u], [u.type], f"{u.node.name}/host_rows",
                                  u.node.location)
            made.is_gradient = u.node.is_gradient
            rows[u] = made.outputs[0]
        loop.inputs = [rows[u] if x is u else x for x in loop.inputs]
    return len(rows)


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


def host_readable(v, readers, fetched, fed, loops=None) -> bool:
    """v reaches fetches and loops' sequence inputs alone (ops/loop.py's host_chain: HOST_LAYOUT
    ops, size readers and host_rows nodes only), some value on the way (or v) is fetched or
    read by a loop, and none is fed. `loops`: a list host_chain fills with the loop readers."""
    loops = [] if loops is None else loops
    reached, other = host_chain(v, readers, loops)
    return other is None and (bool(loops) or any(u in fetched for u in reached)) and \
        not any(u in fed for u in reached)
