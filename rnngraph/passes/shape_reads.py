"""shape_reads: an input read for its shape only reads an equally shaped value computed earlier.

The gradient of a sum is broadcast_like(g, x): x is read for its shape, and that alone keeps x
computed and alive. When x is a permutation of rows (dynamic_rnn's unsorted output) or a
transpose of one, a value of the same shape exists before it: the stack the permutation
reads, transposed the same way (a view). With only gradients fetched, the padded S1 GRU then
no longer unsorts its [100, 64, 256] output (~1.3 ms of ~55).

Ops name such inputs in `shape_inputs` (broadcast_like's `like`, dim, zeros_like/ones_like).
Seen through: permute_rows (same shape as its input) and transpose (re-applied to the earlier
value). Skipping a permutation skips its check that the row counts agree; the shape read is
the same either way, since that check is what makes them agree.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.shape import Transpose
from .rewrite import toposort


def read_shapes_early(graph: Graph) -> int:
    count = 0
    made: dict = {}   # value -> its earlier stand-in (itself when there is none)
    for node in list(graph.nodes):
        if node.op.subgraphs() or not node.op.shape_inputs:
            continue
        for i in node.op.shape_inputs:
            stand_in = _stand_in(graph, node.inputs[i], made)
            if stand_in is not node.inputs[i]:
                node.inputs = node.inputs[:i] + [stand_in] + node.inputs[i + 1:]
                count += 1
    if count:
        toposort(graph)   # new transposes were appended (this also marks the graph changed)
    return count


def _stand_in(graph: Graph, v, made: dict):
    if v in made:
        return made[v]
    node, found = v.node, v
    if node.graph is graph and node.op.name == "permute_rows":
        found = _stand_in(graph, node.inputs[0], made)
    elif node.graph is graph and isinstance(node.op, Transpose):
        inner = _stand_in(graph, node.inputs[0], made)
        if inner is not node.inputs[0]:
            op = Transpose(node.op.perm)
            found = graph.add_node(op, [inner], [op.infer(inner.type)], node.name + "/shape",
                                   node.location).outputs[0]
    made[v] = found
    return found
