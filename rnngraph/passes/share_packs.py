"""share_packs: a stack that several products read by its active rows is packed once.

With sequence_length the products moved out of the loops (hoist_sequence, sink, join_slices)
each copy the active rows of the stacks they read into one matrix. The gradient loop's dz
is read by two of them, the weight gradient (step_contract) and the input gradient
(rows_matmul), which packed the same ~13 MB each (padded S1 LSTM: ~1.5 ms a pack). Here they
read one pack_rows instead. A run with every row active packs nothing either way (the stack
is read as one matrix), so this changes nothing there.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.steps import PackRows, RowsMatMul, StepContract
from .rewrite import replace_node, toposort


def share_packs(graph: Graph) -> int:
    """Rewrite the packing readers of each (stack, rows) read by two or more; return how many
    stacks are now packed once."""
    count = 0
    readers: dict = {}   # (stack, rows) -> products that pack the stack's active rows
    for node in graph.nodes:
        for body in node.op.subgraphs():
            count += share_packs(body)
        op = node.op
        if isinstance(op, StepContract) and not op.packed_b:
            b, _, *rows = op.split(node.inputs)[2]
            if rows:
                readers.setdefault((b, rows[0]), []).append(node)
        elif isinstance(op, RowsMatMul) and not op.packed:
            readers.setdefault((node.inputs[0], node.inputs[2]), []).append(node)
    for (stack, rows), nodes in readers.items():
        if len(nodes) < 2 or stack.type.rank != 3:
            continue
        op = PackRows()
        pack = graph.add_node(op, [stack, rows], [op.infer(stack.type, rows.type)],
                              f"{nodes[0].name}/packed_rows", nodes[0].location)
        pack.is_gradient = all(n.is_gradient for n in nodes)
        packed = pack.outputs[0]
        for node in nodes:
            op = node.op
            if isinstance(op, StepContract):
                new_op = StepContract(op.parts, op.ones, op.shifted, packed_b=True)
                inputs = list(node.inputs)
                inputs[op.parts + len(op.shifted)] = packed   # b
            else:
                new_op = RowsMatMul(packed=True)
                inputs = [packed, node.inputs[1], rows, stack]   # (the stack for its shape)
            replace_node(graph, node, new_op, inputs, "shared")
        count += 1
    if count:
        toposort(graph)
    return count
