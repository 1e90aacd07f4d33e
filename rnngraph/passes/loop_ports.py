"""Adding ports to an existing loop node (passes move work across the loop boundary)."""
from __future__ import annotations

from ..ir.types import TensorType
from ..ir.value import Value


def outer_inputs(node) -> dict:
    """body param -> the outer value feeding it, for invariant and sequence params."""
    op = node.op
    parts = op.in_ports().split(node.inputs)
    out = {}
    for role in ("invariant", "sequence"):
        for p, v in zip(op.body.params.get(role, []), parts[role]):
            out[p] = v
    return out


def add_invariant(node, outer: Value, label: str) -> Value:
    """A new loop-invariant param of node's body, fed by `outer`."""
    at = node.op.in_ports().offset("sequence")
    p = node.op.body.add_param("invariant", outer.type, label)
    node.inputs.insert(at, outer)
    node.op.body.captures[outer] = p
    node.graph.version += 1
    return p


def add_sequence(node, outer: Value, label: str, step_type: TensorType | None = None) -> Value:
    """A new per-step param of node's body, slicing `outer` [L, ...] at step t; of `step_type`
    where the body sees less than outer's type says (a loop with active rows: batch `?`)."""
    p = node.op.body.add_param("sequence", step_type or TensorType(outer.shape[1:], outer.dtype),
                               label)
    node.inputs.append(outer)
    node.graph.version += 1
    return p


def stacked_output(node, v: Value) -> Value:
    """The node's stacked output of body value v (added as a new per-step output if needed)."""
    op = node.op
    results = op.body.results
    fed = node.graph.results.get("fed", []) if node.graph.results else []
    start = op.out_ports().offset("output")
    for i, y in enumerate(results["output"]):
        stack = node.outputs[start + i]
        if y is v and not any(stack is f for f in fed):   # (a fed one is the caller's array)
            return stack
    at = op.out_ports().offset("residual")
    length = None
    if op.length_from is not None:
        length = op.in_ports().split(node.inputs)["sequence"][op.length_from].shape[0]
    results["output"].append(v)
    new = node._add_output(TensorType((length,) + v.shape, v.dtype))
    node.outputs.pop()
    node.outputs.insert(at, new)
    for i, out in enumerate(node.outputs):
        out.index = i
    node.graph.version += 1
    return new


def steps_output(node) -> Value:
    return node.outputs[0]


def drop_unused_outputs(node, used: set) -> int:
    """Remove per-step output/residual ports nobody reads (the body stops computing them)."""
    op = node.op
    results = op.body.results
    dropped = 0
    epi = getattr(op, "epilogue_outputs", ())   # (chunked loops: outputs their epilogue writes)
    start = op.out_ports().offset("output")
    kept = [i for i in range(len(results["output"])) if node.outputs[start + i] in used]
    if epi:
        rows = results.get("epilogue_rows", [])
        results["epilogue_rows"] = [r for r, i in zip(rows, epi) if i in kept]
        op.epilogue_outputs = tuple(kept.index(i) for i in epi if i in kept)
    if getattr(op, "host_outputs", ()):   # (indices of outputs too: renumbered alike)
        op.host_outputs = tuple(kept.index(i) for i in op.host_outputs if i in kept)
    for group in ("output", "residual"):
        start = op.out_ports().offset(group)
        keep_vals, keep_outs = [], []
        for v, out in zip(results[group], node.outputs[start:start + len(results[group])]):
            if out in used:
                keep_vals.append(v)
                keep_outs.append(out)
        dropped += len(results[group]) - len(keep_vals)
        node.outputs[start:start + len(results[group])] = keep_outs
        results[group] = keep_vals
    if dropped:
        for i, out in enumerate(node.outputs):
            out.index = i
        node.graph.version += 1
    return dropped


def drop_unused_inputs(node) -> int:
    """Remove invariant and sequence ports whose body param nothing reads (after sinking, a
    gradient loop no longer reads the saved inputs of the weight-gradient products; the stack
    then need not be kept for it). The sequence that gives the loop its length stays, unless a
    sequence the body reads has the same static number of steps: that one gives it then."""
    op = node.op
    body = op.body
    read = {v for n in body.nodes for v in n.inputs} | \
        {v for vs in body.results.values() for v in vs}
    parts = op.in_ports().split(node.inputs)
    seq_params = body.params.get("sequence", [])
    if op.length_from is not None and seq_params[op.length_from] not in read:
        steps = parts["sequence"][op.length_from].shape[0]
        twin = next((i for i, (p, v) in enumerate(zip(seq_params, parts["sequence"]))
                     if p in read and steps is not None and v.shape[0] == steps), None)
        if twin is not None:
            op.length_from = twin
    doomed = set()
    for role in ("invariant", "sequence"):
        params = body.params.get(role, [])
        blocks = getattr(op, "chunk_blocks", ())   # (read by the chunk prologue)
        keep = [i for i, p in enumerate(params)
                if p in read or (role == "sequence" and (i == op.length_from or i in blocks))]
        if len(keep) == len(params):
            continue
        if role == "sequence" and op.length_from is not None:
            op.length_from = keep.index(op.length_from)
        if role == "sequence" and getattr(op, "chunk_blocks", ()):
            op.chunk_blocks = tuple(keep.index(i) for i in op.chunk_blocks)
        doomed |= {params[i].node for i in range(len(params)) if i not in keep}
        body.params[role] = [params[i] for i in keep]
        parts[role] = [parts[role][i] for i in keep]
    if not doomed:
        return 0
    body.captures = {outer: p for outer, p in body.captures.items() if p.node not in doomed}
    body.remove_nodes(doomed)
    node.inputs[:] = [v for g in op.in_ports().groups for v in parts[g]]
    node.graph.version += 1
    return len(doomed)
