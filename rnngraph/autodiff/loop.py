"""The loop's vjp: a loop node that runs backwards over the forward loop's saved residuals.

Differentiating the forward body B builds a backward body BB. Whenever a gradient rule needs a
forward value v of B, BB's capture function decides where v comes from:
  step t / invariant / sequence slice of B -> the same port of BB (invariants are not stacked)
  a value computed only from invariants     -> recomputed inside BB (e.g. a transposed weight)
  anything else (carried state, activations) -> a *residual*: B also returns v per step, the
                                               forward loop stacks it, BB reads it at step t.
Gradients of invariants (shared weights) are summed over steps in carried accumulators.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import get_default_graph
from ..ir.types import TensorType
from ..ir.value import Value
from ..ops import elementwise as ew
from ..ops.base import apply
from ..ops.loop import Loop, copy_body, new_body, prune_body


def _is_float(v: Value) -> bool:
    return np.issubdtype(v.dtype, np.floating)


def _variant_nodes(body) -> set:
    """Nodes of the body whose outputs change from step to step (depend on t, carried or
    sequences), and every nested loop: its gradient reads its residual stacks, outputs it
    gains after this set is made, and the outer backward loop saves them rather than run the
    inner loop again in each of its steps."""
    variant = set()
    for role in ("step", "carried", "sequence"):
        variant.update(v.node for v in body.params.get(role, []))
    for node in body.nodes:
        if node.op.stateful or node.op.subgraphs() or any(v.node in variant
                                                          for v in node.inputs):
            variant.add(node)
    return variant


def loop_vjp(op: Loop, node, gs: list):
    from . import backprop   # cycle: autodiff/__init__.py imports this module

    body = op.body
    ins = op.in_ports().split(node.inputs)
    gparts = op.out_ports().split(gs)
    outs = op.out_ports().split(node.outputs)
    params = body.params
    c_params = params.get("carried", [])
    w_params = params.get("invariant", [])
    x_params = params.get("sequence", [])
    variant = _variant_nodes(body)

    bb = new_body(body.name + "_grad")
    seq_outer: list[Value] = []          # outer value feeding each BB sequence param
    seq_param_of: dict[Value, Value] = {}
    memo: dict[Value, Value] = {}

    def seq_param(outer: Value, label: str, like: Value | None = None) -> Value:
        if outer not in seq_param_of:
            t = TensorType(outer.shape[1:], outer.dtype)
            if op.active_rows and like is not None and like.type.rank and like.shape[0] is None:
                t = TensorType((None,) + t.shape[1:], t.dtype)  # batch rows, as in the forward
            seq_param_of[outer] = bb.add_param("sequence", t, label)
            seq_outer.append(outer)
        return seq_param_of[outer]

    pending: dict[Value, Value] = {}     # BB param -> forward value it will be the residual of

    def residual(v: Value) -> Value:
        # committed only if the param survives pruning: no stack for a value no rule reads
        p = bb.add_param("sequence", v.type, f"saved_{_short(v)}")
        pending[p] = v
        return p

    def commit_residual(v: Value) -> Value:
        saved = body.results["residual"]
        if v not in saved:
            saved.append(v)
            node._add_output(TensorType((None,) + v.shape, v.dtype))
            node.graph.version += 1
        # a value of the forward loop's graph: the backward loop node, built in the default
        # graph, maps it there (the same graph, or an outer backward body that saves it)
        return node.outputs[op.out_ports().offset("residual") + saved.index(v)]

    def resolve(v: Value) -> Value:
        if v.graph is not body:
            return bb.capture_outer(v)
        if v in memo:
            return memo[v]
        n = v.node
        if n.op.name == "param":
            role = n.op.role
            if role == "step":
                out = t
            elif role == "invariant":
                out = bb.capture_outer(ins["invariant"][w_params.index(v)])
            elif role == "sequence":
                i = x_params.index(v)
                out = seq_param(ins["sequence"][i], f"x_{i}", like=v)
            else:  # the carried state entering this step
                out = residual(v)
        elif n not in variant:
            with bb.name_scope("recompute"):
                res = apply(n.op, [resolve(i) for i in n.inputs])
            out = res[v.index] if isinstance(res, list) else res
        else:
            out = residual(v)
        memo[v] = out
        return out

    bb.capture_fn = resolve
    with bb.as_default():
        t = bb.add_param("step", TensorType((), np.int32), "t")
        float_c = [i for i, c in enumerate(c_params) if _is_float(c)]
        ct_c = {i: bb.add_param("carried", c_params[i].type, f"ct_carried_{i}") for i in float_c}
        seeds: dict[Value, Value] = {}

        def seed(v, g):
            seeds[v] = ew.add(seeds[v], g) if v in seeds else g

        for i in float_c:
            seed(body.results["carried"][i], ct_c[i])
        for j, y in enumerate(body.results["output"]):
            if gparts["output"][j] is not None and _is_float(y):
                seed(y, seq_param(gparts["output"][j], f"ct_output_{j}", like=y))
        float_w = [i for i, w in enumerate(w_params) if _is_float(w)]
        float_x = [i for i, x in enumerate(x_params) if _is_float(x)]
        wrt = [c_params[i] for i in float_c] + [w_params[i] for i in float_w] + \
              [x_params[i] for i in float_x]
        grads = backprop(body, seeds, wrt, node.name + "/") if seeds else [None] * len(wrt)
        g_c = grads[:len(float_c)]
        g_w = grads[len(float_c):len(float_c) + len(float_w)]
        g_x = grads[len(float_c) + len(float_w):]

        next_ct = [g if g is not None else ew.zeros_like(ct_c[i]) for i, g in zip(float_c, g_c)]
        acc_idx = [i for i, g in zip(float_w, g_w) if g is not None]
        accs = [bb.add_param("carried", w_params[i].type, f"grad_acc_{i}") for i in acc_idx]
        next_acc = [ew.add(a, g) for a, g in zip(accs, [g for g in g_w if g is not None])]
        x_idx = [i for i, g in zip(float_x, g_x) if g is not None]
        x_grads = [g for g in g_x if g is not None]
        length_from = None
        if x_grads and op.length_from is not None:
            seq_param(ins["sequence"][op.length_from], f"x_{op.length_from}",
                      like=x_params[op.length_from])
            length_from = -1  # resolved to an index after pruning
    bb.capture_fn = None
    bb.results["carried"] = next_ct + next_acc
    bb.results["output"] = x_grads
    lf_param = seq_param_of[ins["sequence"][op.length_from]] if length_from is not None else None
    prune_body(bb, keep_params=(lf_param,) if lf_param is not None else ())
    outer_of = {p: o for o, p in seq_param_of.items()}
    graph = get_default_graph()
    scope, _, leaf = graph.current_scope().rpartition("/")  # the vjp scope is '<...>/<loop>_grad'
    if node.graph is not graph and _steps_may_vary(op, node):
        # a loop nested in a loop body being differentiated, whose step count may change from
        # one outer step to the next: the outer loop could not stack its residual stacks, so
        # the backward body runs this loop forward again (a copy) and reads that copy's stacks
        copied, vmap = copy_body(body, graph)
        for p in bb.params.get("sequence", []):
            v = vmap.get(pending.get(p))
            if v is not None and v not in copied.results["residual"]:
                copied.results["residual"].append(v)
        again = op.with_body(copied)
        with graph.absolute_scope(scope):
            fwd = again.out_ports().split(apply(again, node.inputs, name=f"{leaf}/forward"))
        # the copy's captures are the values its node reads here, not the forward body's
        ins_here = again.in_ports().split(fwd["steps"][0].node.inputs)["invariant"]
        copied.captures = dict(zip(ins_here, copied.params.get("invariant", [])))
        res_of = dict(zip(copied.results["residual"], fwd["residual"]))
        seq_outer = [outer_of[p] if p in outer_of else res_of[vmap[pending[p]]]
                     for p in bb.params.get("sequence", [])]
        outs = {g: fwd[g] for g in ("steps", "carried")}
    else:
        seq_outer = [outer_of[p] if p in outer_of else commit_residual(pending[p])
                     for p in bb.params.get("sequence", [])]
    if lf_param is not None:
        length_from = bb.params["sequence"].index(lf_param)

    # the backward loop node, in the graph where the gradient is being built
    init_ct = [gparts["carried"][i] if gparts["carried"][i] is not None
               else ew.zeros_like(outs["carried"][i]) for i in float_c]
    init_acc = [ew.zeros_like(ins["invariant"][i]) for i in acc_idx]
    invariants = list(bb.captures.keys())
    bwd = Loop(bb, has_trip=True, reverse=not op.reverse, length_from=length_from,
               parallel_iterations=op.parallel_iterations, swap_memory=op.swap_memory,
               active_rows=op.active_rows)  # a row inactive forward sends gradient straight on
    with graph.absolute_scope(scope):
        results = apply(bwd, [outs["steps"][0]] + ins["rows"] + init_ct + init_acc + invariants +
                        seq_outer, name=leaf)
    rparts = bwd.out_ports().split(results)
    final = rparts["carried"]

    in_grads: list = [None] * len(node.inputs)
    off = op.in_ports()
    for i, g in zip(float_c, final[:len(float_c)]):
        in_grads[off.offset("carried") + i] = g
    for i, g in zip(acc_idx, final[len(float_c):]):
        in_grads[off.offset("invariant") + i] = g
    for i, g in zip(x_idx, rparts["output"]):
        in_grads[off.offset("sequence") + i] = g
    return in_grads


def _steps_may_vary(op: Loop, node) -> bool:
    """May loop `node`, nested in a loop body, run a different number of steps in different
    steps of the enclosing loop? Yes if its trip count, or a value its condition depends on
    (through its carried state too), is computed from step-varying values of the enclosing
    body, or a length_from sequence of unknown length is not a slice of an outer sequence.
    A body holding stateful nodes (random draws) is never run again: its residuals are saved,
    and stacking them fails at run time if the step counts do differ."""
    if _stateful(op.body):
        return False
    ins = op.in_ports().split(node.inputs)
    variant = _variant_nodes(node.graph)
    if op.has_trip and ins["trip"][0].node in variant:
        return True
    if op.has_cond():
        return _cond_may_vary(op, ins, variant)
    if op.has_trip or op.length_from is None:
        return False
    seq = ins["sequence"][op.length_from]
    return seq.shape[0] is None and seq.node in variant and seq.node.op.name != "param"


def _cond_may_vary(op: Loop, ins: dict, variant: set) -> bool:
    """Does the loop's condition read (through the body, its carried state included) a value
    that changes from one step of the enclosing loop to the next?"""
    body = op.body
    params, results = body.params, body.results["carried"]
    carried, invariant = params.get("carried", []), params.get("invariant", [])
    seen, stack = set(), [body.results["cond"][0].node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op.name != "param":
            stack.extend(v.node for v in n.inputs)
            continue
        v = n.outputs[0]
        if v in carried:
            i = carried.index(v)
            if ins["carried"][i].node in variant:
                return True
            stack.append(results[i].node)
        elif v in invariant:
            if ins["invariant"][invariant.index(v)].node in variant:
                return True
        elif n.op.role != "step":
            return True    # a sequence slice (or a chunk param): assume it varies
    return False


def _stateful(body) -> bool:
    return any(n.op.stateful or any(_stateful(b) for b in n.op.subgraphs()) for n in body.nodes)


def _short(v: Value) -> str:
    return v.node.name.rsplit("/", 1)[-1].replace(":", "_")
