"""contiguous_weights: a transposed weight that a loop's products read every step is laid out
C-contiguously once, before the loop.

The backward loop of an RNN multiplies each step's gate gradients by W^T, a transposed view
of the forward weight (the matmul vjp's `matrix_transpose`), which licm hoists out of the loop
as an invariant. OpenBLAS's fast path for small products does not take a transposed operand,
so the loop reads a `contiguous` node instead (docs/performance.md has the measurements;
ops/shape.py's Contiguous says when it copies: never in a tracked run, so the memory
planner's byte model holds). Only transposes computed in the graph that holds the loop are
seen: an inner loop whose weight reaches it through its outer loop's params keeps the view.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.linalg import MatMul, MatrixTranspose
from ..ops.shape import Contiguous, Transpose
from .loop_ports import outer_inputs
from .rewrite import for_each_loop, substitute


def lay_out_loop_weights(graph: Graph) -> int:
    """Route every loop's transposed 2-D weights read as the right operand of a per-step
    product through a `contiguous` node; return how many weights now are."""
    return for_each_loop(graph, _lay_out)


def _lay_out(graph: Graph, loop) -> int:
    body = loop.op.body
    outer = outer_inputs(loop)
    invariant = set(body.params.get("invariant", []))
    copies: dict = {}   # outer transposed weight -> its contiguous copy
    for node in body.nodes:
        if type(node.op) is not MatMul:
            continue
        w = node.inputs[1]
        if w not in invariant or w.type.rank != 2 or node.inputs[0].type.rank != 2:
            continue
        source = outer[w]
        if source in copies or not _transposed(source, graph):
            continue
        copy = graph.add_node(Contiguous(), [source], [source.type],
                              f"{source.node.name}/contiguous", source.node.location)
        copy.is_gradient = source.node.is_gradient
        copies[source] = copy.outputs[0]
    substitute(loop, copies)
    return len(copies)


def _transposed(v, graph: Graph) -> bool:
    """Is `v` a transposed view of a matrix, computed in `graph` itself (not a param)?"""
    node = v.node
    if node is None or node.graph is not graph or v.type.rank != 2:
        return False
    return isinstance(node.op, MatrixTranspose) or \
        (isinstance(node.op, Transpose) and node.op.perm == (1, 0))
