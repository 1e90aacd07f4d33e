"""Route 2: a loop node as an ONNX Scan or Loop whose body is exported op by op.

rnngraph's loop (ops/loop.py) runs n = min(trip, length of the `length_from` sequence,
maximum_iterations) steps, stopping early the first time its condition is false; step t reads
slice t of each sequence (t counts down from n-1 when `reverse`) and writes row t of each
output stack, which has as many rows as the `length_from` sequence (else n), rows of steps
that did not run being zero.

- No trip count, no condition, no maximum_iterations: a **Scan** over the sequences (reversed
  scan directions when `reverse`), the step index carried as a counter when the body reads it.
- Otherwise: a **Loop** with trip count n (when bounded) and the condition evaluated before
  each step, as ONNX's Loop does: once outside for step 0 and, inside the body, for the next
  step on the new state. Sequence slices are Gathers at t; the stacked outputs are reversed
  and zero-padded to rnngraph's rows afterwards.

sequence_length needs nothing special here: dynamic_rnn already wrote its semantics into the
body (a per-step mask and `where`: zero outputs, state copied through), and that body is
exported as it is. The loop's `rows` input only lets rnngraph skip finished rows; the body masks
them itself, so the export ignores it.
"""
from __future__ import annotations

import numpy as np

from ...ir.types import TensorType
from .builder import INT64_MIN, Emitter
from .inference import EMPTY

_STEP = TensorType((), np.int32)


def emit_loop(em: Emitter, node, ins, emit_nodes):
    """Export loop `node` (input names `ins`); returns (output names, "scan" or "loop")."""
    op = node.op
    results = op.body.results
    if not op.has_trip and not results["cond"] and op.maximum_iterations is None \
            and op.length_from is not None:
        return _scan(em, node, ins, emit_nodes), "scan"
    return _loop(em, node, ins, emit_nodes), "loop"


def _reads(em, body, value) -> bool:
    view = em.view
    return any(value in view.inputs(n) for n in view.live_nodes(body)) or \
        any(value is view.resolve(r) for role in ("cond", "carried", "output")
            for r in body.results.get(role, []))


def _scan(em, node, ins, emit_nodes):
    op, body = node.op, node.op.body
    parts = op.in_ports().split(ins)
    vparts = op.in_ports().split(node.inputs)
    params = body.params
    outs = op.out_ports().split(node.outputs)
    seqs, lf = parts["sequence"], op.length_from
    length_name = []

    def length():   # the number of steps (int64), written only where something reads it
        if not length_name:
            length_name.append(em.dim(seqs[lf], 0, hint=f"{node.name}/length"))
        return length_name[0]

    # every scan input must have the loop's length; rnngraph lets the others be longer
    scan_inputs = []
    for i, (s, v) in enumerate(zip(seqs, vparts["sequence"])):
        lf_len = vparts["sequence"][lf].shape[0]
        if i == lf or (lf_len is not None and v.shape[0] == lf_len):
            scan_inputs.append(s)
        else:
            scan_inputs.append(em.node("Slice", [s, em.i64([0]), em.unsqueeze(length(), [0]),
                                                 em.i64([0])]))
    sub = em.body()
    body_inputs, body_outputs = [], []
    for p in params.get("carried", []):
        name = sub.fresh(p.node.name)
        sub.bind(p, name)
        body_inputs.append(sub.value_info(name, p.type))
    step = params["step"][0]
    counted = _reads(em, body, step)
    init_states = list(parts["carried"])
    if counted:
        t_in = sub.fresh(f"{node.name}/t")
        sub.bind(step, t_in)
        body_inputs.append(sub.value_info(t_in, _STEP))
        if op.reverse:
            first = em.node("Sub", [em.cast(length(), np.int32), em.scalar(1, np.int32)])
        else:
            first = em.scalar(0, np.int32, "t0")
        init_states.append(first)
    for p in params.get("sequence", []):
        name = sub.fresh(p.node.name)
        sub.bind(p, name)
        body_inputs.append(sub.value_info(name, p.type))
    for p, outer in zip(params.get("invariant", []), parts["invariant"]):
        sub.bind(p, outer)
    sub.used.update(em.view.resolve(v) for role in ('carried', 'output', 'cond')
                    for v in body.results[role])
    emit_nodes(sub, em.view.live_nodes(body))
    for r in results_of(body, "carried"):
        body_outputs.append(_result(sub, r))
    if counted:
        t_next = sub.node("Add", [sub.lookup(step), sub.scalar(-1 if op.reverse else 1,
                                                                np.int32)])
        body_outputs.append(_result_name(sub, t_next, _STEP))
    for r in results_of(body, "output"):
        body_outputs.append(_result(sub, r))
    graph = em.helper.make_graph(sub.nodes, em.fresh(f"{node.name}/body"), body_inputs,
                                 body_outputs)
    n_out = len(results_of(body, "output"))
    finals = [em.fresh(f"{node.name}/final") for _ in outs["carried"]]
    counter_out = [em.fresh(f"{node.name}/t_final")] if counted else []
    stacks = [em.fresh(f"{node.name}/stack") for _ in range(n_out)]
    direction = [1] * len(seqs) if op.reverse else None
    em.node("Scan", init_states + scan_inputs, outputs=finals + counter_out + stacks, body=graph,
            num_scan_inputs=len(seqs), scan_input_directions=direction,
            scan_output_directions=[1] * n_out if op.reverse and n_out else None,
            hint=node.name)
    steps = em.cast(length(), np.int32, hint=f"{node.name}/steps") \
        if outs["steps"][0] in em.used else None
    return [steps] + finals + stacks + [None] * len(outs["residual"])


def _loop(em, node, ins, emit_nodes):
    op, body = node.op, node.op.body
    parts = op.in_ports().split(ins)
    params = body.params
    outs = op.out_ports().split(node.outputs)
    seqs, lf = parts["sequence"], op.length_from
    # the trip count n (int64), when the loop is bounded
    bound = []
    if op.has_trip:
        bound.append(em.cast(parts["trip"][0], np.int64))
    length = em.dim(seqs[lf], 0, hint=f"{node.name}/length") if lf is not None else None
    if length is not None:
        bound.append(length)
    if op.maximum_iterations is not None:
        bound.append(em.scalar(op.maximum_iterations, np.int64, "maximum_iterations"))
    n = None
    if bound:
        n = bound[0] if len(bound) == 1 else em.node("Min", bound)
        n = em.node("Max", [n, em.scalar(0, np.int64)], hint=f"{node.name}/n")
    backwards = op.reverse and n is not None
    cond_value = body.results["cond"][0] if body.results["cond"] else None
    step = params["step"][0]
    steps_used = outs["steps"][0] in em.used
    counted = steps_used and cond_value is not None
    # the body
    sub = em.body()
    iter_in, cond_in = sub.fresh(f"{node.name}/iter"), sub.fresh(f"{node.name}/cond_in")
    body_inputs = [sub.value_info(iter_in, TensorType((), np.int64)),
                   sub.value_info(cond_in, TensorType((), np.bool_))]
    for p in params.get("carried", []):
        name = sub.fresh(p.node.name)
        sub.bind(p, name)
        body_inputs.append(sub.value_info(name, p.type))
    if counted:
        k_in = sub.fresh(f"{node.name}/count")
        body_inputs.append(sub.value_info(k_in, _STEP))
    t64 = sub.node("Sub", [sub.node("Sub", [n, sub.scalar(1, np.int64)]), iter_in]) \
        if backwards else iter_in
    if _reads(em, body, step):
        sub.bind(step, sub.cast(t64, np.int32, hint=f"{node.name}/t"))
    for p, s in zip(params.get("sequence", []), seqs):
        sub.bind(p, sub.node("Gather", [s, t64], axis=0, hint=p.node.name))
    for p, outer in zip(params.get("invariant", []), parts["invariant"]):
        sub.bind(p, outer)
    sub.used.update(em.view.resolve(v) for role in ('carried', 'output', 'cond')
                    for v in body.results[role])
    emit_nodes(sub, em.view.live_nodes(body))
    carried_results = results_of(body, "carried")
    body_outputs = []
    cond_nodes = em.view.ancestors(body, [em.view.resolve(cond_value)]) \
        if cond_value is not None else []
    if cond_value is not None:   # the condition of the next step, on the new state
        t_next = sub.node("Add", [t64, sub.scalar(-1 if backwards else 1, np.int64)])
        mapping = {step: sub.cast(t_next, np.int32)}
        mapping.update({p: sub.lookup(r) for p, r in zip(params.get("carried", []),
                                                          carried_results)})
        fork = sub.fork(mapping)
        emit_nodes(fork, cond_nodes)
        body_outputs.append(_result_name(sub, fork.lookup(cond_value),
                                         TensorType((), np.bool_)))
    else:
        body_outputs.append(_result_name(sub, cond_in, TensorType((), np.bool_)))
    for r in carried_results:
        body_outputs.append(_result(sub, r))
    if counted:
        k_next = sub.node("Add", [k_in, sub.scalar(1, np.int32)])
        body_outputs.append(_result_name(sub, k_next, _STEP))
    out_results = results_of(body, "output")
    for r in out_results:
        body_outputs.append(_result(sub, r))
    graph = em.helper.make_graph(sub.nodes, em.fresh(f"{node.name}/body"), body_inputs,
                                 body_outputs)
    # the condition of the first step, outside
    cond_init = ""
    if cond_value is not None:
        t0 = em.node("Sub", [n, em.scalar(1, np.int64)]) if backwards else \
            em.scalar(0, np.int64, "t0")
        mapping = {step: em.cast(t0, np.int32)}
        mapping.update(dict(zip(params.get("carried", []), parts["carried"])))
        mapping.update(dict(zip(params.get("invariant", []), parts["invariant"])))
        fork = em.fork(mapping)
        emit_nodes(fork, cond_nodes)
        cond_init = fork.lookup(cond_value)
    finals = [em.fresh(f"{node.name}/final") for _ in outs["carried"]]
    counter = [em.fresh(f"{node.name}/count_final")] if counted else []
    raw = [em.fresh(f"{node.name}/scan") for _ in out_results]
    init_count = [em.scalar(0, np.int32, "count0")] if counted else []
    em.node("Loop", [n or "", cond_init] + list(parts["carried"]) + init_count,
            outputs=finals + counter + raw, body=graph, hint=node.name)
    # steps run, and the stacks laid out as rnngraph's
    steps = None   # (with a condition and nobody reading it, the count is not kept)
    if counted:
        steps = counter[0]
    elif cond_value is None and steps_used:
        steps = em.cast(n, np.int32, hint=f"{node.name}/steps")
    stacks = []
    for r, s in zip(out_results, raw):
        if not backwards and lf is None:   # as many rows as steps ran, as rnngraph's
            stacks.append(s)
            continue
        ran = em.dim(s, 0)
        if backwards:
            s = em.node("Slice", [s, em.i64([-1]), em.i64([INT64_MIN]), em.i64([0]),
                                  em.i64([-1])])
            lead = em.node("Sub", [n, ran])
        else:
            lead = em.scalar(0, np.int64)
        total = length if length is not None else n
        tail = em.node("Sub", [em.node("Sub", [total, ran]), lead])
        rest = [em.i64([0] * r.type.rank)] if r.type.rank else []
        pads = em.node("Concat", [em.unsqueeze(lead, [0])] + rest + [em.unsqueeze(tail, [0])]
                       + rest, axis=0)
        stacks.append(em.node("Pad", [s, pads], hint=f"{node.name}/stack"))
    return [steps] + finals + stacks + [None] * len(outs["residual"])


def results_of(body, role):
    return list(body.results.get(role, []))


def _result(sub: Emitter, value):
    return _result_name(sub, sub.lookup(value), value.type)


def _result_name(sub: Emitter, name: str, ttype):
    """A body output: always a fresh name (an input or an outer name cannot be one)."""
    out = sub.node("Identity", [name], hint="result")
    return sub.value_info(out, ttype)


def live_nodes(body, view=None) -> list:
    """The body nodes the next state, the outputs and the condition need, in body order: not
    those only the residuals (values saved for a gradient loop) need, nor (with an
    inference.View) a removed dropout mask."""
    return (view or EMPTY).live_nodes(body)
