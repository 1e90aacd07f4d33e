"""Tools every pass uses: clone a graph, replace the uses of a value, restore topological order.

Passes run on a clone made at compile time, so the user's graph (and what `print` shows of it)
is never changed by optimisation.
"""
from __future__ import annotations

import copy

from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.value import Value


def clone(graph: Graph, roots: list[Value]) -> tuple[Graph, dict]:
    """Copy the part of `graph` that `roots` need (loop bodies deep-copied); return the copy and
    the map old Value -> new Value."""
    needed: set[Node] = set()
    stack = [v.node for v in roots]
    mark, pop, push = needed.add, stack.pop, stack.append
    while stack:
        n = pop()
        if n not in needed:
            mark(n)
            for v in n.inputs:
                push(v.node)
    new = Graph(name=graph.name)
    vmap: dict[Value, Value] = {}
    _copy_nodes(graph, new, [n for n in graph.nodes if n in needed], vmap)
    for key, items in graph.collections.items():   # Values: the copies (those copied); data as is
        values = all(isinstance(v, Value) for v in items)
        new.collections[key] = [vmap[v] for v in items if v in vmap] if values else list(items)
    return new, vmap


def _copy_nodes(src: Graph, dst: Graph, nodes, vmap: dict) -> None:
    append, by_name = dst.nodes.append, dst._by_name
    for n in nodes:
        op = n.op
        if op.subgraphs():
            op = _clone_loop_op(op, dst, vmap)
        try:
            inputs = [vmap[v] for v in n.inputs]
        except KeyError:
            missing = [v for v in n.inputs if v not in vmap]
            raise ValueError(f"the graph has a cycle (or a node out of order): {n.describe()} reads "
                             f"'{missing[0].node.name}' ({missing[0].name}), which is not computed before it; "
                             "rg.verify(graph) shows where") from None
        node = Node(dst, op, inputs, n.name, n.location)
        node.is_gradient = n.is_gradient
        for v in n.outputs:
            vmap[v] = node._add_output(v.type)
        append(node)
        by_name[node.name] = node
        if op.name == "param":
            dst.params.setdefault(op.role, []).append(node.outputs[0])
    dst.version += 1


def _clone_loop_op(op, outer: Graph, vmap: dict):
    new_op = copy.copy(op)
    new_op._body, _ = clone_body(op.body, outer, vmap)
    new_op._vjp_cache = {}
    return new_op


def clone_body(body: Graph, outer: Graph, vmap: dict | None = None) -> tuple[Graph, dict]:
    """A copy of loop body `body` (params, captures, results) inside `outer`, and the map
    old Value -> new Value (`vmap`, extended, if given)."""
    vmap = {} if vmap is None else vmap
    new_body = Graph(parent=outer, name=body.name)
    # (no name scope: passes give new nodes full names themselves)
    # params first, in their role order, so ports line up with the node's inputs
    _copy_nodes(body, new_body, body.nodes, vmap)
    new_body.params = {role: [vmap[p] for p in ps] for role, ps in body.params.items()}
    new_body.captures = {vmap.get(o, o): vmap[p] for o, p in body.captures.items()}
    new_body.results = {role: [vmap[v] for v in vs] for role, vs in body.results.items()}
    return new_body, vmap


def for_each_loop(graph: Graph, per_loop) -> int:
    """Run `per_loop(graph, loop_node)` on every loop of `graph`, inner loops first; restore
    topological order if anything changed. Returns the summed counts."""
    count = 0
    for node in list(graph.nodes):
        if node.op.subgraphs():
            count += for_each_loop(node.op.body, per_loop)
            count += per_loop(graph, node)
    if count:
        toposort(graph)
    return count


def uses(graph: Graph) -> dict[Value, list[Node]]:
    """value -> nodes of `graph` reading it."""
    out: dict[Value, list[Node]] = {}
    get = out.get
    for n in graph.nodes:
        for v in n.inputs:
            readers = get(v)
            if readers is None:   # (not setdefault: that builds a list per input)
                out[v] = [n]
            else:
                readers.append(n)
    return out


def result_values(graph: Graph) -> set:
    """Values a body returns (they count as used)."""
    return {v for vs in graph.results.values() for v in vs}


def replace_uses(graph: Graph, old: Value, new: Value, skip=()) -> None:
    """Make every reader of `old` in `graph` (and the body's results) read `new` instead, but
    the nodes in `skip`."""
    for n in graph.nodes:
        if n not in skip and any(v is old for v in n.inputs):
            n.inputs = [new if v is old else v for v in n.inputs]
    results = graph.results
    if results:
        for role, vs in results.items():
            results[role] = [new if v is old else v for v in vs]
    graph.version += 1


def replace_node(graph: Graph, old: Node, op, inputs: list, suffix: str) -> Node:
    """A node computing `op` on `inputs` in place of `old` (same output types, name + suffix,
    location and gradient mark), whose outputs every reader of old's now reads."""
    new = graph.add_node(op, inputs, [v.type for v in old.outputs], f"{old.name}/{suffix}",
                         old.location)
    new.is_gradient = old.is_gradient
    for was, now in zip(old.outputs, new.outputs):
        replace_uses(graph, was, now)
    return new


def substitute(node: Node, mapping: dict) -> None:
    """Make `node` read mapping[v] instead of v (one node; passes call it in schedule order so a
    whole graph is rewritten in one sweep instead of one sweep per replaced value)."""
    if mapping and not mapping.keys().isdisjoint(node.inputs):
        node.inputs = [mapping.get(v, v) for v in node.inputs]


def substitute_results(graph: Graph, mapping: dict) -> None:
    results = graph.results
    if results and mapping:
        for role, vs in results.items():
            results[role] = [mapping.get(v, v) for v in vs]
    graph.version += 1


def toposort(graph: Graph) -> None:
    """Restore a topological order after passes appended nodes that earlier nodes now read;
    stable: nodes keep their relative order where dependencies allow."""
    position = {n: i for i, n in enumerate(graph.nodes)}
    produced_by = {v: v.node for n in graph.nodes for v in n.outputs}
    done: set = set()
    order: list = []

    def visit(n, path=()):
        if n in done:
            return
        stack = [(n, iter(sorted({produced_by[v] for v in n.inputs if v in produced_by},
                                 key=position.get)))]
        onstack = {n}
        while stack:
            node, deps = stack[-1]
            for d in deps:
                if d not in done:
                    if d in onstack:
                        raise AssertionError(f"cycle through {d.name}")
                    onstack.add(d)
                    stack.append((d, iter(sorted({produced_by[v] for v in d.inputs
                                                  if v in produced_by}, key=position.get))))
                    break
            else:
                stack.pop()
                onstack.discard(node)
                done.add(node)
                order.append(node)

    for n in graph.nodes:
        visit(n)
    graph.nodes = order
    graph.version += 1


def remove_dead(graph: Graph, keep: list[Value]) -> int:
    """Drop nodes nothing in `keep` (or the body's results) depends on. Returns how many.
    Params and stateful nodes stay."""
    live: set = set()
    stack = [v.node for v in keep] + [v.node for v in result_values(graph)]
    mark, pop, push = live.add, stack.pop, stack.append   # (a 60,000-node graph: once a pass)
    while stack:
        n = pop()
        if n not in live:
            mark(n)
            for v in n.inputs:
                push(v.node)
    doomed = {n for n in graph.nodes
              if n not in live and n.op.name != "param" and not n.op.stateful}
    if doomed:
        graph.remove_nodes(doomed)
    return len(doomed)
