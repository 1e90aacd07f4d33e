"""stream_outputs' concat: a head over concat([fw, bw], -1) of bidirectional_dynamic_rnn's two
directions (memory planning only; see stream_outputs.py).

The two directions' loops run one after the other, so for the one that runs last the other's
output is a value computed before it (and not from its outputs) that varies over time as its
own output does: like a fed target, it is read a row per step, through the same reversal,
transposes and row order (stream_outputs' _time_major). A concat along an axis that is neither
time nor the rows is then per-step work of that loop, and so is its gradient concat_grad(g,
*xs), which cuts g into pieces shaped like the operands (per step: a step's row of g cut like
the operands' rows). The backward loops read the other direction's rows from a residual the
forward loop saves (a saved tensor a plan may offload), not from the whole sequence.

The piece of a region operand is region work as any other value; the piece of a fed operand
(the other direction's output gradient, which that direction's backward loop reads whole, a row
per step, after this loop) is an exit: the forward loop computes its row per step and stacks it
as one more output (time-major, in the loop's row and step order), and that stack, taken back
through the region's reorderings and transposes, replaces it. The stack is zero where the loop
does not run (the rows and steps it skips), so the exit's work must vanish there (a masked
loss); else the loop runs every row of every step, as for a sum that does not vanish.
"""
from __future__ import annotations

import numpy as np

from ..ops.elementwise import Add
from ..ops.fill import Fill
from ..ops.rows import PermuteRows
from ..ops.sequence import ReverseSequence
from ..ops.shape import ConcatGrad, Dim, Transpose
from .loop_ports import stacked_output
from .rewrite import replace_uses


def before_loop(u, loop) -> bool:
    """u is computed before `loop` in its graph's order (what the loop reads as a sequence
    must be: the other direction of a concat runs first)."""
    nodes = loop.graph.nodes
    return u.node in nodes and nodes.index(u.node) < nodes.index(loop)


def concat_layout(n, axis):
    """The layout of concat(*xs) or concat_grad(g, *xs) as per-step work over the region
    values among its operands (one layout: theirs; a concat_grad's g must be one): along an axis
    that is neither time nor the rows (nor reordered), of operands of one rank; its other
    operands are checked as sequences fed before the loop (stream_outputs). False where it
    cannot move."""
    op = n.op
    if isinstance(op, ConcatGrad) and n.inputs[0] not in axis:
        return False   # (cuts a gradient that is not region work, or not yet)
    rank = n.inputs[0].type.rank
    layouts = {axis[u] for u in n.inputs if u in axis}
    if len(layouts) != 1 or any(u.type.rank != rank for u in n.inputs) or rank < 2:
        return False
    layout = next(iter(layouts))
    a, perms, merged = layout
    c = op.axis % rank
    if c == a or any(p == c for _, p in perms) or not merged and (a > 1 or c < 2):
        return False
    return layout


def concat_step(body, n, ins) -> list:
    """concat or concat_grad node n at one step in `body`, of the lowered operands `ins` (the
    time axis gone, or merged rows: the axis counted from the end is the same); its outputs."""
    rank = n.inputs[0].type.rank
    op = type(n.op)(n.op.axis % rank - rank)
    types = op.infer(*[u.type for u in ins])
    new = body.add_node(op, ins, list(types) if isinstance(types, (list, tuple)) else [types],
                        f"{n.name}/streamed", n.location)
    new.is_gradient = n.is_gradient
    return new.outputs


def materialize_exit(graph, loop, e, row, layout, reversal, after, moved=()) -> None:
    """Make region value e whole from its row `row` in the forward loop's body: stacked as an
    output of the loop ([T, B, ...] in the loop's step and row order), then taken through the
    region's reorderings (`layout`: (time axis, reorderings, merged)) in their order, on the
    time-major stack (reverse_sequence along axis 0 of rows axis 1, within the reversal's
    lengths, or over every step where those were read from the region's own dims: `after`
    says a value is computed from the loop's outputs; permute_rows on axis 1), and transposed to
    e's time axis. Its readers read that instead, but the nodes in `moved` (per-step work the
    loops now do: e fetched and read by it). `reversal`: the layout's reversal class."""
    a, perms, merged = layout
    assert not merged and a <= 1, layout   # (concat_layout: the rows of a [B, T, ...] value)
    v = stacked_output(loop, row)
    name, loc = e.node.name, e.node.location

    def add(op, ins, label):
        node = graph.add_node(op, ins, [op.infer(*[u.type for u in ins])],
                              f"{name}/streamed/{label}", loc)
        node.is_gradient = e.node.is_gradient
        return node.outputs[0]
    for idx, _ in perms:
        if isinstance(idx, reversal):
            lengths = idx.lengths
            if after(lengths):   # (every step of each row: the stack's own dims)
                rows = add(Dim(1), [v], "rows")
                zeros = add(Fill((None,), 0, np.int32), [rows], "lengths")
                lengths = add(Add(), [zeros, add(Dim(0), [v], "steps")], "lengths")
            v = add(ReverseSequence(0, 1), [v, lengths], "ReverseSequence")
        else:
            v = add(PermuteRows(1), [v, idx], "PermuteRows")
    swap = (1, 0) + tuple(range(2, v.type.rank))
    back = [r for r in graph.nodes if e in r.inputs and r not in moved]
    if a and back and all(isinstance(r.op, Transpose) and tuple(r.op.perm) == swap
                          for r in back):
        for r in back:   # (read back time-major, as the other direction's gradient loop
            # reads it: the two transposes cancel)
            replace_uses(graph, r.outputs[0], v)
        v.type = back[0].outputs[0].type if len(back) == 1 else v.type
    else:
        if a:
            v = add(Transpose(swap), [v], "Transpose")
        # (the same dims at run time: e's static ones, which the loop's stack may not know)
        v.type = e.type
        replace_uses(graph, e, v, skip=moved)   # (moved: gone with the whole-tensor work)
