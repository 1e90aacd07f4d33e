"""Graph -> networkx.DiGraph, for analysis with networkx's algorithms.

One networkx node per IR node, keyed by the node's name. Loop bodies are included with keys
`<loop key>/body/<inner name>` (recursively for nested loops). Node attributes:

  op           the op's name ("matmul", "loop", "param", ...)
  shape, dtype the output's shape tuple (None for unknown dims) and dtype name; for a node
               with several outputs, a tuple with one entry per output
  types        the output types as strings, e.g. ["f32[?,5]"]
  scope        the name scope ("rnn/layer_0"; "" at top level)
  location     the user's line that built the node
  is_gradient  True for gradient nodes, and for everything inside a gradient loop
  parent_loop  the key of the loop node whose body holds the node (None at top level)
  role         for body params: "step", "carried", "invariant" or "sequence"
  order        creation index within its own graph (creation order is a topological order)

Edges u -> v carry `type` (the value's type string) and `values` (the value names; several
when v reads more than one output of u). A loop node also has edges from its inputs'
producers to the body params they feed (attribute `role`) and from the body results to the
loop node (`role` "carried", "output", "residual" or "cond"; `roles` lists them all when one
result serves several, e.g. a state that is also the per-step output). The carried-state back edges
(result -> carried param) would make cycles, so they are listed in
`G.graph["back_edges"]` instead; the DiGraph stays acyclic.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.node import Node


def to_networkx(graph: Graph):
    """The graph (with its loop bodies) as a networkx.DiGraph; see the module docstring."""
    import networkx as nx   # optional: networkx may be missing

    G = nx.DiGraph(name=graph.name, back_edges=[])
    _add_graph(G, graph, prefix="", parent_loop=None, grad=False)
    return G


def _attrs(node: Node, order: int, parent_loop: str | None, grad: bool) -> dict:
    outs = node.outputs
    shapes = tuple(v.shape for v in outs)
    dtypes = tuple(v.dtype.name for v in outs)
    one = len(outs) == 1
    a = {"op": node.op.name, "shape": shapes[0] if one else shapes,
         "dtype": dtypes[0] if one else dtypes, "types": [str(v.type) for v in outs],
         "scope": node.name.rsplit("/", 1)[0] if "/" in node.name else "",
         "location": node.location, "is_gradient": bool(node.is_gradient or grad),
         "parent_loop": parent_loop, "order": order}
    if node.op.name == "param":
        a["role"] = node.op.role
    return a


def _link(G, u: str, v: str, value, role: str | None = None):
    """Add u -> v for `value`, merging with an existing edge (a DiGraph has no parallel edges)."""
    if not G.has_edge(u, v):
        G.add_edge(u, v, type=str(value.type), values=[], **({"role": role, "roles": []}
                                                            if role else {}))
    e = G.edges[u, v]
    e["values"].append(value.name)
    if role:
        e["roles"].append(role)


def _add_graph(G, graph: Graph, prefix: str, parent_loop: str | None, grad: bool):
    for i, node in enumerate(graph.nodes):
        G.add_node(prefix + node.name, **_attrs(node, i, parent_loop, grad))
    for node in graph.nodes:
        key = prefix + node.name
        for v in node.inputs:
            _link(G, prefix + v.node.name, key, v)
        for body in node.op.subgraphs():
            _add_body(G, node, key, body, prefix, grad or node.is_gradient)


def _add_body(G, loop: Node, key: str, body: Graph, prefix: str, grad: bool):
    inner = key + "/body/"
    _add_graph(G, body, inner, key, grad)
    ins = loop.op.in_ports().split(loop.inputs)
    for role in ("carried", "invariant", "sequence"):
        for v, p in zip(ins[role], body.params.get(role, [])):
            _link(G, prefix + v.node.name, inner + p.node.name, v, role=role)
    for role, results in body.results.items():
        for r in results:
            _link(G, inner + r.node.name, key, r, role=role)
    for r, p in zip(body.results["carried"], body.params.get("carried", [])):
        G.graph["back_edges"].append((inner + r.node.name, inner + p.node.name))
