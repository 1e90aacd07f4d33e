"""Dead-code elimination: nodes nothing kept reads, a loop's per-step outputs nobody reads (its
body then stops computing them) and a loop's inputs its body never reads. The other passes
leave dead code behind; with this pass on, it is swept after each of them."""
from __future__ import annotations

from ..ir.graph import Graph
from .loop_ports import drop_unused_inputs, drop_unused_outputs
from .rewrite import remove_dead, result_values


def eliminate_dead_code(graph: Graph, keep=()) -> int:
    """Remove dead nodes (and dead loop outputs) in `graph` and its loop bodies; how many."""
    removed = remove_dead(graph, list(keep))
    loops = [node for node in graph.nodes if node.op.subgraphs()]
    used = ({v for n in graph.nodes for v in n.inputs} | result_values(graph)) if loops else set()
    dropped_inputs = 0
    for node in loops:
        removed += drop_unused_outputs(node, used)
        removed += eliminate_dead_code(node.op.body)
        if node.op.name == "loop":
            dropped_inputs += drop_unused_inputs(node)
    if dropped_inputs:   # what only those inputs read is dead now
        removed += dropped_inputs + eliminate_dead_code(graph, keep)
    return removed
