"""networkx export: one node per IR node, loop bodies prefixed, checked with networkx algorithms."""
import networkx as nx
import pytest

import rnngraph as rg
from rnngraph.render import to_networkx


def rnn_with_grad():
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, None, 3], name="xs")
        h0 = rg.placeholder(rg.float32, [None, 5], name="h0")
        with rg.variable_scope("rnn"):
            W = rg.get_variable("W", [3, 5])
            U = rg.get_variable("U", [5, 5])
            (h_T,), (ys,) = rg.lax_scan(lambda c, x: ([rg.tanh(x[0] @ W + c[0] @ U)],) * 2,
                                    [h0], [xs])
        loss = rg.reduce_sum(ys) + rg.reduce_sum(h_T * h_T)
        rg.gradients(loss, [W, U, h0])
    return g


def static_unroll(T=4):
    g = rg.Graph()
    with g.as_default():
        h = rg.placeholder(rg.float32, [None, 5], name="h0")
        W = rg.get_variable("W", [5, 5])
        for t in range(T):
            with rg.name_scope(f"rnn/step_{t}"):
                h = rg.tanh(h @ W)
        rg.gradients(rg.reduce_sum(h), [W])
    return g


def all_nodes(graph, prefix=""):
    """(key, node) for every IR node, loop bodies included, keyed like to_networkx."""
    for n in graph.nodes:
        yield prefix + n.name, n
        for body in n.op.subgraphs():
            yield from all_nodes(body, prefix + n.name + "/body/")


def loops(g):
    return [n for n in g.nodes if n.op.name == "loop"]


@pytest.mark.parametrize("build", [rnn_with_grad, static_unroll])
def test_one_networkx_node_per_ir_node_with_attributes(build):
    g = build()
    G = to_networkx(g)
    expected = dict(all_nodes(g))
    assert set(G.nodes) == set(expected)
    for key, node in expected.items():
        a = G.nodes[key]
        assert a["op"] == node.op.name
        assert a["location"] == node.location
        assert a["scope"] == (node.name.rsplit("/", 1)[0] if "/" in node.name else "")
        assert a["types"] == [str(v.type) for v in node.outputs]
        if len(node.outputs) == 1:
            assert a["shape"] == node.outputs[0].shape
            assert a["dtype"] == node.outputs[0].dtype.name
        else:
            assert a["shape"] == tuple(v.shape for v in node.outputs)
    assert G.nodes[[k for k in expected if k.endswith("W")][0]]["shape"] in ((3, 5), (5, 5))


@pytest.mark.parametrize("build", [rnn_with_grad, static_unroll])
def test_graph_is_a_dag_whose_top_level_edges_follow_creation_order(build):
    g = build()
    G = to_networkx(g)
    assert nx.is_directed_acyclic_graph(G)
    order = list(nx.topological_sort(G))
    assert len(order) == G.number_of_nodes()
    created = {n.name: i for i, n in enumerate(g.nodes)}
    for u, v in G.edges:
        if u in created and v in created:
            assert created[u] < created[v], (u, v)
    # the creation order itself is a valid topological order of the top level
    top = G.subgraph(created)
    pos = {k: created[k] for k in top}
    assert all(pos[u] < pos[v] for u, v in top.edges)


def test_edges_carry_value_types():
    g = rnn_with_grad()
    G = to_networkx(g)
    loop = loops(g)[0]
    e = G.edges["xs", loop.name]
    assert e["type"] == "f32[?,?,3]" and e["values"] == ["xs:0"]
    for u, v, data in G.edges(data=True):
        assert data["type"].startswith(("f32[", "i32[", "bool[")), (u, v, data)


def test_loop_bodies_are_prefixed_and_wired_to_their_loop():
    g = rnn_with_grad()
    G = to_networkx(g)
    loop = [n for n in loops(g) if not n.is_gradient][0]
    key, body = loop.name, loop.op.body
    inner = [k for k, d in G.nodes(data=True) if d["parent_loop"] == key]
    assert sorted(inner) == sorted(f"{key}/body/{n.name}" for n in body.nodes)
    assert all(G.nodes[k]["parent_loop"] is None for k in (n.name for n in g.nodes))
    # loop inputs -> body params
    ins = loop.op.in_ports().split(loop.inputs)
    for role in ("carried", "invariant", "sequence"):
        for v, p in zip(ins[role], body.params[role]):
            edge = G.edges[v.node.name, f"{key}/body/{p.node.name}"]
            assert edge["role"] == role and edge["type"] == str(v.type)
            assert G.nodes[f"{key}/body/{p.node.name}"]["role"] == role
    # body results -> the loop node (its outputs)
    for role in ("carried", "output", "residual"):
        for r in body.results[role]:
            assert G.has_edge(f"{key}/body/{r.node.name}", key)
    # tanh is the next state, the per-step output and a saved residual: one edge, three roles
    tanh = f"{key}/body/{body.results['carried'][0].node.name}"
    assert G.edges[tanh, key]["roles"] == ["carried", "output", "residual"]
    # the carried-state back edge would be a cycle: it is listed, not drawn
    back = (f"{key}/body/{body.results['carried'][0].node.name}",
            f"{key}/body/{body.params['carried'][0].node.name}")
    assert back in G.graph["back_edges"] and not G.has_edge(*back)


def test_gradient_flag_and_gradient_loop_bodies():
    g = rnn_with_grad()
    G = to_networkx(g)
    fwd, bwd = sorted(loops(g), key=lambda n: n.is_gradient)
    assert not G.nodes[fwd.name]["is_gradient"] and G.nodes[bwd.name]["is_gradient"]
    assert all(G.nodes[f"{bwd.name}/body/{n.name}"]["is_gradient"] for n in bwd.op.body.nodes)
    assert not any(G.nodes[f"{fwd.name}/body/{n.name}"]["is_gradient"] for n in fwd.op.body.nodes)
    # the backward loop reads the weights (invariants) and the forward loop's saved stacks
    assert nx.has_path(G, "rnn/W", bwd.name) and G.has_edge(fwd.name, bwd.name)


def test_nested_loops_nest_their_prefixes():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        xs = rg.placeholder(rg.float32, [None, None, 3], name="xs")

        def outer(c, xx):
            (cc,), _ = rg.lax_scan(lambda c2, x2: ([c2[0] + x2[0]], [c2[0]]), [c[0]],
                               [rg.expand_dims(xx[0], 0)], name="inner")
            return [cc], [cc]

        rg.lax_scan(outer, [x], [xs], name="outer")
    G = to_networkx(g)
    inner_loop = [k for k, d in G.nodes(data=True) if d["op"] == "loop" and d["parent_loop"]]
    assert inner_loop == ["outer/body/outer/inner"]
    nested = [k for k, d in G.nodes(data=True) if d["parent_loop"] == inner_loop[0]]
    assert nested and all(k.startswith("outer/body/outer/inner/body/") for k in nested)
    assert nx.is_directed_acyclic_graph(G)
