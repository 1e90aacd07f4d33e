"""Fuse connected elementwise ops (an LSTM's gate math, its backward) into one Fused node.

Groups grow in schedule order: a fusible node joins the groups of its fusible producers when
that cannot create a cycle (no path leaves the group and comes back). Values used outside the
group (or returned by a body) become the fused node's outputs.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.fused import Fused
from ..ir.types import TensorType
from ..ops.elementwise import Binary
from ..ops.shape import ColumnBlock, Concat, Split
from .rewrite import replace_uses, result_values, toposort

MAX_GROUP = 64  # keep generated kernels small enough to read in a profile


def _fusible(node) -> bool:
    return getattr(node.op, "fusible", False) and not node.op.multi_output


def fuse_elementwise(graph: Graph) -> int:
    """Fuse inside loop bodies, where the per-step cost of many small ops is paid T times
    (top-level elementwise work is already batched over all steps by the other passes)."""
    fused = 0
    for node in list(graph.nodes):
        for body in node.op.subgraphs():
            fused += _fuse_graph(body)
            fused += fuse_elementwise(body)
    return fused


def _split_into_blocks(graph: Graph) -> None:
    """A split along the last axis whose parts feed elementwise work becomes one ColumnBlock per
    part, which fused kernels read straight out of the unsplit input (an LSTM's gates)."""
    readers = _readers(graph)
    for node in list(graph.nodes):
        op = node.op
        if not isinstance(op, Split) or node.inputs[0].type.rank < 1 or \
                op.axis % node.inputs[0].type.rank != node.inputs[0].type.rank - 1 or \
                any(v.shape[-1] is None for v in node.outputs) or \
                not any(_fusible(r) for v in node.outputs for r in readers.get(v, [])):
            continue
        x = node.inputs[0]
        results = result_values(graph)

        def pushable(v, reader):
            """z = a + b split into gates: split a and b instead, so the add joins the gate
            kernel; again for a and b (z = (x_proj + bias) + h @ W_h), down to values read
            elsewhere, rank-1 vectors (a bias, read by the kernel at the block's offset) and
            scalars."""
            return isinstance(v.node.op, Binary) and readers.get(v) == [reader] and \
                v not in results and all(
                    i.type.rank == 0 or (i.type.rank in (1, v.type.rank)
                                         and i.shape[-1] == v.shape[-1])
                    for i in v.node.inputs)

        pushed = set()
        frontier = [(x, node)]
        while frontier:
            v, reader = frontier.pop()
            if pushable(v, reader):
                pushed.add(v.node)
                frontier += [(i, v.node) for i in v.node.inputs]
        at = graph.nodes.index(node) + 1
        start = 0

        def insert(op, inputs, vtype, name):
            nonlocal at
            new = graph.add_node(op, inputs, [vtype], name, node.location)
            new.is_gradient = node.is_gradient
            graph.nodes.remove(new)
            graph.nodes.insert(at, new)
            at += 1
            return new.outputs[0]

        def block(u, i, start, stop):
            """Columns start:stop of u, with the pushed ops applied blockwise."""
            if u.type.rank == 0:
                return u
            vtype = TensorType(u.shape[:-1] + (stop - start,), u.dtype)
            if u.node not in pushed:
                return insert(ColumnBlock(start, stop), [u], vtype, f"{node.name}/block_{i}")
            parts = [block(a, i, start, stop) for a in u.node.inputs]
            return insert(u.node.op, parts, vtype, f"{u.node.name}/block_{i}")

        for i, v in enumerate(node.outputs):
            stop = start + v.shape[-1]
            replace_uses(graph, v, block(x, i, start, stop))
            start = stop
        graph.remove_nodes({node} | pushed)


def _fuse_graph(graph: Graph) -> int:
    """Replace one group at a time and regroup: a group is only checked for cycles against the
    graph as it is, so checking all groups first and contracting them after could close a cycle
    through two groups."""
    _split_into_blocks(graph)
    fused = 0
    while True:
        group = next((g for g in _groups(graph) if len(g) >= 2), None)
        if group is None:
            break
        _replace(graph, group)
        toposort(graph)
        fused += 1
    _absorb_joins(graph)
    return fused


def _absorb_joins(graph: Graph) -> None:
    """A last-axis concat of outputs of one fused node joins that node: the kernel writes its
    parts side by side into one [B, n*H] output (an LSTM's gate gradients become dz without a
    concat, and a loop can stack dz in place)."""
    readers = _readers(graph)
    results = result_values(graph)
    for node in list(graph.nodes):
        if not isinstance(node.op, Concat) or len(node.inputs) < 2:
            continue
        parts = node.inputs
        src = parts[0].node
        rank = parts[0].type.rank
        if not isinstance(src.op, Fused) or rank != 2 or node.op.axis % rank != 1 or \
                len(set(parts)) != len(parts) or any(v.node is not src for v in parts) or \
                any(v.shape[1] is None for v in parts):
            continue
        op = src.op
        refs = [op.exports[src.outputs.index(v)] for v in parts]
        instrs = list(op.instrs) + [(Concat(1), tuple(refs))]
        joined = op.n_inputs + len(op.instrs)
        # parts nobody else reads stop being outputs of their own
        keep = [i for i, v in enumerate(src.outputs)
                if v not in parts or readers.get(v) != [node] or v in results]
        exports = [op.exports[i] for i in keep] + [joined]
        types = [src.outputs[i].type for i in keep] + [node.outputs[0].type]
        new_op = Fused(instrs, op.n_inputs, exports, types,
                       list(op._temp_types) + [node.outputs[0].type],
                       list(op._origins) + [(node.name, node.location)])
        new = graph.add_node(new_op, list(src.inputs), types, f"{node.name}/fused", src.location)
        new.is_gradient = src.is_gradient
        graph.nodes.remove(new)
        graph.nodes.insert(graph.nodes.index(node) + 1, new)
        for i, out in zip(keep, new.outputs):
            replace_uses(graph, src.outputs[i], out)
        replace_uses(graph, node.outputs[0], new.outputs[-1])
        graph.remove_nodes({src, node})
        toposort(graph)
        # both afresh: the join renamed src's outputs (a later concat of `new` reads them)
        readers, results = _readers(graph), result_values(graph)


def _readers(graph: Graph) -> dict:
    """Value -> the nodes reading it."""
    readers: dict = {}
    for n in graph.nodes:
        for v in n.inputs:
            readers.setdefault(v, []).append(n)
    return readers


def _groups(graph: Graph) -> list[list]:
    position = {n: i for i, n in enumerate(graph.nodes)}
    producer = {v: n for n in graph.nodes for v in n.outputs}
    group_of: dict = {}
    members: dict[int, list] = {}
    next_id = 0
    for n in graph.nodes:
        if not _fusible(n):
            continue
        # a column block reads its input whole: it starts groups, never joins its producer's
        cands = [] if isinstance(n.op, ColumnBlock) else \
            sorted({group_of[producer[v]] for v in n.inputs
                    if v in producer and producer[v] in group_of})
        merged = [n]
        for g in cands:
            trial = merged + members[g]
            if len(trial) <= MAX_GROUP and not _would_cycle(graph, set(trial), position, producer):
                merged = trial
        gid = next_id
        next_id += 1
        for m in merged:
            old = group_of.get(m)
            if old is not None and old in members:
                del members[old]
            group_of[m] = gid
        members[gid] = sorted(merged, key=position.get)
    return list(members.values())


def _would_cycle(graph, s: set, position, producer) -> bool:
    """True if some path leaves `s` and re-enters it (then `s` cannot become one node)."""
    lo = min(position[n] for n in s)
    hi = max(position[n] for n in s)
    tainted: set = set()
    for n in graph.nodes[lo:hi + 1]:
        from_inside = any(v in producer and (producer[v] in s or producer[v] in tainted)
                          for v in n.inputs)
        if n in s:
            if any(v in producer and producer[v] in tainted for v in n.inputs):
                return True
        elif from_inside:
            tainted.add(n)
    return False


def _replace(graph: Graph, group: list) -> None:
    inside = set(group)
    outputs_of = {v: n for n in group for v in n.outputs}
    ext_inputs: list = []
    refs: dict = {}
    for n in group:
        for v in n.inputs:
            if v not in outputs_of and v not in refs:
                refs[v] = len(ext_inputs)
                ext_inputs.append(v)
    instrs, temp_types = [], []
    for n in group:
        ref = len(ext_inputs) + len(instrs)
        instrs.append((n.op, tuple(refs[v] for v in n.inputs)))
        temp_types.append(n.outputs[0].type)
        refs[n.outputs[0]] = ref
    used_outside = {v for m in graph.nodes if m not in inside for v in m.inputs}
    used_outside |= result_values(graph)
    exports = [n.outputs[0] for n in group if n.outputs[0] in used_outside]
    op = Fused(instrs, len(ext_inputs), [refs[v] for v in exports], [v.type for v in exports],
               temp_types, [(n.name, n.location) for n in group])
    last = group[-1]
    node = graph.add_node(op, ext_inputs, [v.type for v in exports], last.name + "/fused",
                          last.location)
    node.is_gradient = last.is_gradient
    graph.nodes.remove(node)
    graph.nodes.insert(graph.nodes.index(last) + 1, node)
    for old, new in zip(exports, node.outputs):
        replace_uses(graph, old, new)
    graph.remove_nodes(inside)
