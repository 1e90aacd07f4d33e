"""reuse_outputs: a saved h_{t-1} stack is the loop's own output stack, shifted by one step.

A recurrent weight's gradient, sum_t h_{t-1}^T dz_t, made the forward loop save h_{t-1} at
every step (a [T, B, H] stack) while it also stacks its output y_t = h_t. When the product
after the loop (sink.py's step_contract) is the only reader of that saved stack, it reads
[h_0, y_0, ..., y_{T-2}] straight from the output stack and the initial state instead, and the
loop stops saving it: one [B, H] copy per step and a [T, B, H] stack fewer (S1: 6.5 MB).

The output must equal the next state on the rows the product reads: the same value, or, with
sequence_length, where(active, x, 0) beside the state's where(active, x, h), `active` being
dynamic_rnn's mask of the rows whose counts the product packs by: then they are equal on those
rows (a row active at step t was active at t - 1).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.steps import StepContract
from .loop_ports import outer_inputs
from .rewrite import replace_uses, result_values, toposort, uses


def reuse_output_stacks(graph: Graph) -> int:
    count = 0
    contractions = [n for n in graph.nodes if isinstance(n.op, StepContract)]
    if not contractions:
        return 0
    readers, results = uses(graph), result_values(graph)
    fed = set(graph.results.get("fed", []))   # (the caller's array, not the loop's stack)
    for node in contractions:
        op = node.op
        a_s, starts, tail = op.split(node.inputs)
        rows = tail[2] if len(tail) == 3 else None
        new = {}
        for j, a in enumerate(a_s):
            if j in starts or readers.get(a) != [node] or a in results:
                continue
            found = _shifted_output(a, rows)
            if found is not None and found[0] not in fed:
                new[j] = found
        if not new:
            continue
        stacks = [new[j][0] if j in new else a for j, a in enumerate(a_s)]
        shifted = tuple(sorted(set(starts) | set(new)))
        inits = [starts[j] if j in starts else new[j][1] for j in shifted]
        repl = graph.add_node(StepContract(op.parts, op.ones, shifted), stacks + inits + tail,
                              [node.outputs[0].type], node.name, node.location)
        repl.is_gradient = node.is_gradient
        replace_uses(graph, node.outputs[0], repl.outputs[0])
        count += len(new)
    if count:
        toposort(graph)
    return count


def _shifted_output(a, rows):
    """(output stack, initial state) of the forward loop whose saved stack `a` holds a carried
    state before each step, when an output equals the next state (on the rows read); else None."""
    loop = a.node
    op = loop.op
    if op.name != "loop" or op.reverse or a not in loop.outputs:
        return None
    ports = op.out_ports()
    r = loop.outputs.index(a) - ports.offset("residual")
    body = op.body
    if not 0 <= r < ports.sizes["residual"]:
        return None
    saved = body.results["residual"][r]
    carried = body.params.get("carried", [])
    if saved not in carried:
        return None
    c = carried.index(saved)
    nxt = body.results["carried"][c]
    loop_rows = op.in_ports().split(loop.inputs)["rows"]
    for o, y in enumerate(body.results["output"]):
        if y is nxt or (rows is not None and loop_rows and loop_rows[0] is rows
                        and _equal_on_active_rows(loop, y, nxt, saved, rows)):
            stack = loop.outputs[ports.offset("output") + o]
            if stack.type.shape[1:] != a.type.shape[1:] or stack.dtype != a.dtype:
                return None
            return stack, op.in_ports().split(loop.inputs)["carried"][c]
    return None


def _equal_on_active_rows(loop, y, nxt, state, rows) -> bool:
    """y = where(m, x, anything) and nxt = where(m, x, state), the same x, and m the loop's
    active-row mask (dynamic_rnn's: a sequence slice of sequence_mask, whose row counts are
    `rows`)."""
    a, b = y.node, nxt.node
    if not (a.op.name == b.op.name == "where" and a.inputs[0] is b.inputs[0]
            and a.inputs[1] is b.inputs[1] and b.inputs[2] is state):
        return False
    m = a.inputs[0]
    outer = outer_inputs(loop).get(m)
    if outer is None or m not in loop.op.body.params.get("sequence", []):
        return False
    mask = outer.node.inputs[0] if outer.node.op.name == "expand_dims" and \
        outer.node.op.axis == 2 else None
    counted = rows.node.inputs[0] if rows.node.op.name == "reduce_sum" and \
        tuple(rows.node.op.attrs().get("axis", ())) == (1,) else None
    if counted is not None and counted.node.op.name == "cast":
        counted = counted.node.inputs[0]
    return mask is not None and mask.node.op.name == "sequence_mask" and counted is mask
