"""Run a loop node: its body compiled once into Programs, then a plain Python loop over steps."""
from __future__ import annotations

import numpy as np

from .program import Program


def compile_loop(op, node, program):
    """Return the kernel for loop `node` inside `program` (compiles the body now, once)."""
    body = op.body
    ctx = program.ctx
    xp = ctx.xp
    ins = op.in_ports()
    outs = op.out_ports()
    needed = outs.split(program.needed_outputs(node))
    results = body.results
    # only the per-step values someone downstream reads are computed and stacked
    keep_out = [i for i, used in enumerate(needed["output"]) if used]
    keep_res = [i for i, used in enumerate(needed["residual"]) if used]
    params = body.params
    body_inputs = (params["step"] + params.get("carried", []) + params.get("invariant", [])
                   + params.get("sequence", []))
    step_outputs = (results["carried"] + [results["output"][i] for i in keep_out]
                    + [results["residual"][i] for i in keep_res])
    step_prog = Program(body, step_outputs, body_inputs, ctx)
    cond_prog = Program(body, results["cond"], body_inputs, ctx) if results["cond"] else None
    k = len(results["carried"])
    n_out, n_res = len(results["output"]), len(results["residual"])
    n_keep_out = len(keep_out)
    has_trip, reverse, length_from = op.has_trip, op.reverse, op.length_from
    max_iter = op.maximum_iterations
    out_types = [v.type for v in results["output"]]
    res_types = [v.type for v in results["residual"]]
    offload = ctx.options.get("offload_hook")  # the memory planner's residual placement, if any

    def run(*args):
        parts = ins.split(args)
        carried = parts["carried"]
        invariants = parts["invariant"]
        seqs = parts["sequence"]
        length = seqs[length_from].shape[0] if length_from is not None else None
        n = int(parts["trip"][0]) if has_trip else None
        if length is not None:
            n = length if n is None else min(n, length)
        if max_iter is not None:
            n = max_iter if n is None else min(n, max_iter)
        if n is not None:
            n = max(n, 0)
            for s in seqs:
                if s.shape[0] < n:
                    raise ValueError(f"a sequence input has {s.shape[0]} steps, the loop runs {n}")
        stacks_out: list = [None] * n_keep_out
        stacks_res: list = [None] * len(keep_res)
        lists = n is None  # unbounded while-loop: collect per-step values, stack at the end
        steps = 0
        t_iter = range(n - 1, -1, -1) if (reverse and n is not None) else (
            range(n) if n is not None else _count())
        for t in t_iter:
            feed = [np.int32(t), *carried, *invariants, *[s[t] for s in seqs]]
            if cond_prog is not None and not bool(cond_prog.run(feed)[0]):
                break
            res = step_prog.run(feed)
            carried = res[:k]
            ys = res[k:k + n_keep_out]
            rs = res[k + n_keep_out:]
            if lists:
                for j, y in enumerate(ys):
                    stacks_out[j] = (stacks_out[j] or []) + [y]
                for j, r in enumerate(rs):
                    stacks_res[j] = (stacks_res[j] or []) + [r]
            else:
                for j, y in enumerate(ys):
                    if stacks_out[j] is None:
                        stacks_out[j] = xp.zeros((length if length is not None else n,) + y.shape,
                                                 y.dtype)
                    stacks_out[j][t] = y
                for j, r in enumerate(rs):
                    if stacks_res[j] is None:
                        stacks_res[j] = xp.empty((n,) + r.shape, r.dtype)
                    stacks_res[j][t] = r
            steps += 1
        if lists:
            stacks_out = [_stack(xp, s, out_types[keep_out[j]], length) for j, s in enumerate(stacks_out)]
            stacks_res = [_stack(xp, s, res_types[keep_res[j]], None) for j, s in enumerate(stacks_res)]
        elif steps == 0 and (keep_out or keep_res):
            stacks_out, stacks_res = _empty_stacks(step_prog, args, ins, k, n_keep_out, length, xp)
        full_out: list = [None] * n_out
        for j, i in enumerate(keep_out):
            full_out[i] = stacks_out[j]
        full_res: list = [None] * n_res
        for j, i in enumerate(keep_res):
            full_res[i] = stacks_res[j]
        return (np.int32(steps), *carried, *full_out, *full_res)

    return run


def _count():
    t = 0
    while True:
        yield t
        t += 1


def _stack(xp, items, vtype, length):
    if not items:
        if any(d is None for d in vtype.shape):
            raise ValueError("a while_loop that ran zero steps cannot stack per-step values of "
                             f"unknown shape {vtype}")
        return xp.zeros((length or 0,) + vtype.shape, vtype.dtype)
    stacked = xp.stack(items)
    if length is not None and length > len(items):
        pad = xp.zeros((length - len(items),) + stacked.shape[1:], stacked.dtype)
        stacked = xp.concatenate([stacked, pad])
    return stacked


def _empty_stacks(step_prog, args, ins, k, n_keep_out, length, xp):
    """Zero steps ran: learn the per-step shapes by tracing step 0 once, results discarded."""
    parts = ins.split(args)
    seqs = parts["sequence"]
    if seqs and any(s.shape[0] == 0 for s in seqs):
        raise ValueError("cannot run a loop over a sequence of length 0")
    feed = [np.int32(0), *parts["carried"], *parts["invariant"], *[s[0] for s in seqs]]
    res = step_prog.run(feed)
    ys, rs = res[k:k + n_keep_out], res[k + n_keep_out:]
    return ([xp.zeros((length or 0,) + y.shape, y.dtype) for y in ys],
            [xp.zeros((0,) + r.shape, r.dtype) for r in rs])
