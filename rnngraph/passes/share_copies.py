"""share_copies: a strided stack that several large products would each copy is copied once.

dynamic_rnn reads batch-major input through a time-major view (a transpose). The input
projections computed before the loop (hoist_sequence) and the weight gradients after it
(sink, join_slices) each need those rows contiguous and copied the view for themselves: a GRU
copies x four times a run (S1: ~0.5 ms a copy). Here they read one `contiguous` node instead,
whose copy goes into a buffer reused across runs (ops/shape.py's Contiguous says when it
copies at all).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.linalg import MatMul
from ..ops.shape import Contiguous, Transpose
from ..ops.steps import StepContract
from .rewrite import substitute, toposort, uses


def share_copies(graph: Graph) -> int:
    """Route the copying readers of each transposed stack read by two or more through one
    `contiguous` node; return how many stacks are now copied once."""
    count = 0
    for node in graph.nodes:
        for body in node.op.subgraphs():
            count += share_copies(body)
    strided = [n.outputs[0] for n in graph.nodes if isinstance(n.op, Transpose)
               and n.op.perm != tuple(range(len(n.op.perm))) and n.outputs[0].type.rank == 3]
    if not strided:
        return count
    readers = uses(graph)
    for v in strided:
        copying = [r for r in readers.get(v, []) if _copies(r, v)]
        if len(copying) < 2:
            continue
        copy = graph.add_node(Contiguous(), [v], [v.type], f"{v.node.name}/contiguous",
                              v.node.location)
        copy.is_gradient = all(r.is_gradient for r in copying)
        for r in copying:
            substitute(r, {v: copy.outputs[0]})
        count += 1
    if count:
        toposort(graph)
    return count


def _copies(reader, v) -> bool:
    """Does `reader` copy the strided stack `v` for itself: a product over all its rows (v as
    the left operand) or a weight gradient reading it as one of its parts?"""
    op = reader.op
    if isinstance(op, MatMul):
        return reader.inputs[0] is v and reader.inputs[1] is not v and \
            reader.inputs[1].type.rank == 2
    if isinstance(op, StepContract):
        a_s, _, tail = op.split(reader.inputs)
        return any(a is v for a in a_s) and all(t is not v for t in tail)
    return False
