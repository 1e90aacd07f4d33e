"""Loop-invariant code motion: body nodes computed only from loop invariants (weights) and
constants run once before the loop instead of every step (e.g. slicing a kernel, W^T)."""
from __future__ import annotations

from ..ir.graph import Graph
from .loop_ports import add_invariant, outer_inputs
from .rewrite import for_each_loop, remove_dead, replace_uses, toposort


def _is_loop(node) -> bool:
    return bool(node.op.subgraphs())


def variant_values(body: Graph) -> set:
    """Values of a body that may change between steps."""
    variant = set()
    for role in ("step", "carried", "sequence", "block", "chunk", "gathered", "chunk_len"):
        variant.update(body.params.get(role, []))
    for n in body.nodes:
        if n.op.stateful or _is_loop(n) or any(v in variant for v in n.inputs):
            variant.update(n.outputs)
    return variant


def hoist_invariants(graph: Graph) -> int:
    """Apply to every loop in `graph` (inner loops first). Returns the number of nodes moved."""
    return for_each_loop(graph, _hoist)


def _hoist(graph: Graph, loop) -> int:
    body = loop.op.body
    variant = variant_values(body)
    outer = outer_inputs(loop)
    lifted: dict = {}  # body value -> outer value
    count = 0

    def outer_of(v):
        if v in lifted:
            return lifted[v]
        if v in outer and v.node.op.role == "invariant":
            return outer[v]
        if v.node.op.name == "constant":  # constants are copied out as they are
            c = graph.add_node(v.node.op, [], [v.type], v.node.name, v.node.location)
            lifted[v] = c.outputs[0]
            return lifted[v]
        return None

    for n in body.nodes:
        if n.op.name in ("param", "constant") or any(v in variant for v in n.inputs):
            continue
        ins = [outer_of(v) for v in n.inputs]
        if any(v is None for v in ins) or not n.inputs:
            continue
        new = graph.add_node(n.op, ins, [v.type for v in n.outputs], n.name, n.location)
        new.is_gradient = n.is_gradient
        for old, out in zip(n.outputs, new.outputs):
            lifted[old] = out
        count += 1
    if not count:
        return 0
    users = {v for n in body.nodes if n.op.name != "param" and n not in
             {lv.node for lv in lifted} for v in n.inputs}
    users |= {v for vs in body.results.values() for v in vs}
    for old, out in lifted.items():
        if old in users and old.node.op.name != "constant":
            replace_uses(body, old, add_invariant(loop, out, "hoisted/" + old.node.name.rsplit("/", 1)[-1]))
    remove_dead(body, [])
    toposort(body)   # (the new params come last; their readers are earlier)
    return count
