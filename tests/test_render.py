"""Rendering: DOT text structure, and real SVG/PNG/PDF laid out by graphviz's `dot`."""
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

import rnngraph as rg
from rnngraph.render import SavedTensorPlan, render, to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
SVG = "{http://www.w3.org/2000/svg}"


# --- graphs ---------------------------------------------------------------------------------
def rnn_scan_graph(with_grad=True):
    """A dynamic loop (scan) of a tanh RNN, its loss and (optionally) its gradient."""
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, None, 3], name="xs")
        h0 = rg.placeholder(rg.float32, [None, 5], name="h0")
        with rg.name_scope("rnn"):
            W = rg.get_variable("W", [3, 5])
            U = rg.get_variable("U", [5, 5])

            def cell(c, x):
                h = rg.tanh(x[0] @ W + c[0] @ U)
                return [h], [h]

            (h_T,), (ys,) = rg.lax_scan(cell, [h0], [xs])
        loss = rg.reduce_sum(ys)
        grads = rg.gradients(loss, [W, U]) if with_grad else []
    return g, loss, grads


def static_graph(T, scope_of=lambda t: f"step_{t}", with_grad=False):
    """T copies of a small cell under per-step scopes, sharing W and U."""
    g = rg.Graph()
    with g.as_default():
        xs = [rg.placeholder(rg.float32, [None, 3], name=f"x{t}") for t in range(T)]
        h = rg.placeholder(rg.float32, [None, 5], name="h0")
        with rg.name_scope("rnn"):
            W = rg.get_variable("W", [3, 5])
            U = rg.get_variable("U", [5, 5])
            for t in range(T):
                with rg.name_scope(scope_of(t)):
                    h = rg.tanh(xs[t] @ W + h @ U)
        loss = rg.reduce_sum(h)
        if with_grad:
            rg.gradients(loss, [W])
    return g, loss


def layered_graph(layers=3):
    """Dense layers under model/cell_<i> (numbered scopes with compute)."""
    g = rg.Graph()
    with g.as_default():
        h = rg.placeholder(rg.float32, [None, 4], name="x")
        with rg.variable_scope("model"):  # names the variables too (name_scope does not)
            for i in range(layers):
                with rg.variable_scope(f"cell_{i}"):
                    W = rg.get_variable("W", [4, 4])
                    h = rg.tanh(h @ W + 1.0)
        rg.reduce_sum(h)
    return g


# --- DOT helpers ----------------------------------------------------------------------------
def clusters(dot):
    return re.findall(r'subgraph "(cluster[^"]*)"', dot)


def node_lines(dot):
    return [ln for ln in dot.splitlines() if re.match(r'\s*"[^"]+" \[', ln)]


def edge_lines(dot):
    return [ln for ln in dot.splitlines() if " -> " in ln]


def node_line(dot, text):
    """The one node statement whose label contains `text`."""
    hits = [ln for ln in node_lines(dot) if text in ln]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def node_id(line):
    return re.match(r'\s*"([^"]+)"', line).group(1)


# --- SVG helpers ----------------------------------------------------------------------------
def svg_structure(path):
    """(cluster titles, node count, edge count) of an SVG written by graphviz."""
    root = ET.parse(path).getroot()
    groups = list(root.iter(f"{SVG}g"))
    titles = [g.find(f"{SVG}title").text for g in groups if g.get("class") == "cluster"]
    nodes = sum(1 for g in groups if g.get("class") == "node")
    edges = sum(1 for g in groups if g.get("class") == "edge")
    return titles, nodes, edges


def svg_texts(path):
    return [t.text for t in ET.parse(path).getroot().iter(f"{SVG}text")]


class FakePlan:
    """A stand-in for the memory planner's plan: placements by residual order."""

    def __init__(self, placements, nbytes=1536):
        self.placements, self.nbytes, self.asked = placements, nbytes, []

    def placement_of(self, value):
        self.asked.append(value)
        i = len(self.asked) - 1
        return self.placements[i % len(self.placements)]

    def bytes_of(self, value):
        return self.nbytes


# --- dynamic loops --------------------------------------------------------------------------
def test_loop_is_a_cluster_holding_its_body_with_a_dashed_back_edge():
    g, loss, _ = rnn_scan_graph(with_grad=False)
    dot = to_dot(g)
    assert "cluster_loop_rnn_scan" in clusters(dot)
    loop = [n for n in g.nodes if n.op.name == "loop"][0]
    body_ops = [n for n in loop.op.body.nodes if n.op.name != "param"]
    # every body node is drawn inside the loop's cluster
    start = dot.index('subgraph "cluster_loop_rnn_scan"')
    inside = dot[start:dot.index("\n    }", start)]
    assert inside.count("<B>matmul</B>") == 2 and "<B>tanh</B>" in inside
    drawn_ops = [ln for ln in node_lines(inside) if "<B>" in ln and "<I>" not in ln]
    assert len(drawn_ops) == len(body_ops)
    # the carried-state back edge: tanh -> carried param, dashed, not constraining the layout
    tanh_id = node_id(node_line(dot, "<B>tanh</B>"))
    carried_id = node_id(node_line(dot, "<I>carried_0</I>"))
    back = [e for e in edge_lines(dot) if e.strip().startswith(f'"{tanh_id}" -> "{carried_id}"')]
    assert len(back) == 1
    assert 'style="dashed"' in back[0] and 'constraint="false"' in back[0]


def test_loop_inputs_enter_through_params_and_outputs_leave_through_ports():
    g, loss, _ = rnn_scan_graph(with_grad=False)
    dot = to_dot(g)
    xs_id = node_id(node_line(dot, "<B>xs</B>"))
    seq_id = node_id(node_line(dot, "<I>sequence: x_0</I>"))
    assert any(e.strip().startswith(f'"{xs_id}" -> "{seq_id}"') for e in edge_lines(dot))
    port_id = node_id(node_line(dot, "stacked output 0"))
    sum_id = node_id(node_line(dot, "<B>reduce_sum</B>"))
    assert any(e.strip().startswith(f'"{port_id}" -> "{sum_id}"') for e in edge_lines(dot))


def test_active_row_counts_enter_a_loop_through_their_own_port():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 4, 3], name="X")
        lengths = rg.placeholder(rg.int32, [None], name="lengths")
        rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(5), X, sequence_length=lengths, dtype=rg.float32)
    dot = to_dot(g)
    rows_id = node_id(node_line(dot, "<I>rows</I>"))
    counts_id = node_id(node_line(dot, "<B>reduce_sum</B>"))  # active rows per step
    assert any(e.strip().startswith(f'"{counts_id}" -> "{rows_id}"') for e in edge_lines(dot))


def test_while_loop_shows_its_condition():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        i, h = rg.while_loop(lambda i, h: i < 5, lambda i, h: (i + 1, rg.tanh(h)), [0, x])
    dot = to_dot(g)
    assert "(while)" in dot
    assert 'shape="diamond"' in node_line(dot, "<I>cond</I>")
    less_id = node_id(node_line(dot, "<B>less</B>"))
    cond_id = node_id(node_line(dot, "<I>cond</I>"))
    assert any(e.strip().startswith(f'"{less_id}" -> "{cond_id}"') for e in edge_lines(dot))


def test_nested_loops_are_nested_clusters():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        xs = rg.placeholder(rg.float32, [None, None, 3], name="xs")

        def outer(c, xx):
            (cc,), _ = rg.lax_scan(lambda c2, x2: ([c2[0] + x2[0]], [c2[0]]), [c[0]],
                               [rg.expand_dims(xx[0], 0)], name="inner")
            return [cc], [cc]

        rg.lax_scan(outer, [x], [xs], name="outer")
    dot = to_dot(g)
    outer_at = dot.index('subgraph "cluster_loop_outer"')
    inner_at = dot.index('subgraph "cluster_loop_outer_inner"')
    assert outer_at < inner_at
    assert dot[outer_at:inner_at].count("{") > dot[outer_at:inner_at].count("}")  # still open


# --- gradients, fetches, plan ---------------------------------------------------------------
def test_gradient_nodes_are_coloured_and_enclosed_in_a_backward_cluster():
    g, loss, grads = rnn_scan_graph()
    dot = to_dot(g)
    assert "cluster_gradients" in clusters(dot)
    assert "cluster_loop_gradients_rnn_scan_grad" in clusters(dot)
    start = dot.index('subgraph "cluster_gradients"')
    before, after = dot[:start], dot[start:]
    grad_nodes = [n for n in g.nodes if n.is_gradient and n.op.name != "loop"]
    assert grad_nodes
    for n in grad_nodes:  # each gradient node is drawn after the cluster opened, in its colour
        line = node_line(after, f"<B>{n.op.name}</B><BR/><FONT POINT-SIZE=\"8\" COLOR=\"#6b7280\">"
                         f"{n.name.rsplit('/', 1)[-1]}</FONT>")
        assert 'fillcolor="#fdebe0"' in line
    assert "#fdebe0" not in before  # no forward node wears the gradient colour


def test_fetches_are_highlighted():
    g, loss, grads = rnn_scan_graph()
    plain = node_line(to_dot(g), "<B>reduce_sum</B>")
    assert 'penwidth="3"' not in plain
    dot = to_dot(g, fetches=[loss] + grads)
    assert 'penwidth="3"' in node_line(dot, "<B>reduce_sum</B>")
    # the gradients are outputs of the backward loop: their ports are highlighted
    ports = [ln for ln in node_lines(dot) if "final carried" in ln and 'penwidth="3"' in ln]
    assert len(ports) == 2


def test_plan_colours_saved_tensors_by_placement_and_labels_bytes():
    g, loss, grads = rnn_scan_graph()
    plan = FakePlan(["device", "host"], nbytes=1536)
    assert isinstance(plan, SavedTensorPlan)
    dot = to_dot(g, plan=plan)
    loop = [n for n in g.nodes if n.op.name == "loop" and not n.is_gradient][0]
    residuals = loop.op.out_ports().split(loop.outputs)["residual"]
    assert len(residuals) == 2 and plan.asked == residuals  # asked about exactly the saved stacks
    saved = [ln for ln in node_lines(dot) if "<I>saved " in ln]
    assert len(saved) == 2
    assert 'fillcolor="#e6e8ec"' in saved[0] and "device | 1.5 KiB" in saved[0]
    assert 'fillcolor="#c9e0f5"' in saved[1] and "host | 1.5 KiB" in saved[1]
    assert "cluster_legend" in clusters(dot)


def test_plan_without_placement_leaves_residuals_plain_and_bad_plans_are_refused():
    g, loss, grads = rnn_scan_graph()
    dot = to_dot(g, plan=FakePlan([None], nbytes=None))
    assert all('fillcolor="#eef0f4"' in ln for ln in node_lines(dot) if "<I>saved " in ln)
    with pytest.raises(TypeError, match="placement_of"):
        to_dot(g, plan=object())


# --- static unrolls -------------------------------------------------------------------------
def test_static_unroll_has_one_cluster_per_step_and_highlighted_state_edges():
    g, loss = static_graph(4)
    dot = to_dot(g)
    steps = [c for c in clusters(dot) if c.startswith("cluster_step_")]
    assert steps == [f"cluster_step_rnn_step_{t}" for t in range(4)]
    # weights drawn once, outside the steps; each step reads them through a reference
    assert len([ln for ln in node_lines(dot) if 'shape="cylinder", style="filled"' in ln]) == 2
    assert len([ln for ln in node_lines(dot) if 'shape="cylinder", style="dashed' in ln]) == 8
    state = [e for e in edge_lines(dot) if 'color="#c0392b"' in e and "dashed" not in e]
    assert len(state) == 3  # step t's tanh -> step t+1's matmul


def test_long_static_unroll_elides_the_middle_steps_unless_asked():
    g, loss = static_graph(20)
    dot = to_dot(g)
    steps = [c for c in clusters(dot) if c.startswith("cluster_step_")]
    assert steps == [f"cluster_step_rnn_step_{t}" for t in (0, 1, 18, 19)]
    box = node_line(dot, "... 16 steps ...")
    assert "64 nodes" in box  # 16 steps x 4 ops
    box_id = node_id(box)
    into = [e for e in edge_lines(dot) if f'-> "{box_id}"' in e]
    # merged: one edge per outside source (W, U, and the state from step 1); state stays red
    assert len(into) == len({e.split(" -> ")[0] for e in into})
    assert any('color="#c0392b"' in e for e in into)
    full = to_dot(g, all_steps=True, max_size=None)
    assert len([c for c in clusters(full) if c.startswith("cluster_step_")]) == 20
    assert "steps ..." not in full


def test_tf_style_step_names_and_custom_patterns():
    # TF's static_rnn: basic_rnn_cell, basic_rnn_cell_1, basic_rnn_cell_2
    g, _ = static_graph(3, scope_of=lambda t: "basic_rnn_cell" + (f"_{t}" if t else ""))
    steps = [c for c in clusters(to_dot(g)) if c.startswith("cluster_step_")]
    assert steps == ["cluster_step_rnn_basic_rnn_cell", "cluster_step_rnn_basic_rnn_cell_1",
                     "cluster_step_rnn_basic_rnn_cell_2"]
    g, _ = static_graph(3, scope_of=lambda t: f"t{t}")
    assert not [c for c in clusters(to_dot(g)) if c.startswith("cluster_step_")]
    custom = to_dot(g, step_pattern=r"^t(?P<step>\d+)$")
    assert len([c for c in clusters(custom) if c.startswith("cluster_step_")]) == 3
    off = to_dot(static_graph(3)[0], step_pattern=None)
    assert not [c for c in clusters(off) if c.startswith("cluster_step_")]
    assert "cluster_scope_rnn_step_0" in clusters(off)


def test_static_rnn_from_nn_is_drawn_per_step():
    nn = getattr(rg, "nn", None)
    if nn is None or not hasattr(nn, "static_rnn") or not hasattr(nn, "BasicRNNCell"):
        pytest.skip("rg.nn.static_rnn is not available yet")
    g = rg.Graph()
    with g.as_default():
        xs = [rg.placeholder(rg.float32, [None, 3], name=f"x{t}") for t in range(14)]
        outputs, state = nn.static_rnn(nn.BasicRNNCell(5), xs, dtype=rg.float32)
    dot = to_dot(g)
    steps = [c for c in clusters(dot) if c.startswith("cluster_step_")]
    assert len(steps) == 4 and all("step_" in c for c in steps)  # 2 first, 2 last
    assert "... 10 steps ..." in dot


# --- scopes and collapsing -------------------------------------------------------------------
def test_name_scopes_are_nested_clusters():
    g = layered_graph()
    dot = to_dot(g, step_pattern=None, legend=False)
    cs = clusters(dot)
    assert cs[0] == "cluster_scope_model"
    assert cs[1:] == [f"cluster_scope_model_cell_{i}" for i in range(3)]


def test_max_depth_collapses_scopes_into_counted_boxes_with_merged_edges():
    g = layered_graph()
    dot = to_dot(g, max_depth=1, step_pattern=None, legend=False)
    assert clusters(dot) == ["cluster_scope_model"]
    boxes = [ln for ln in node_lines(dot) if 'shape="box3d"' in ln]
    assert len(boxes) == 3  # a 3-layer network reads as 3 boxes
    for i, ln in enumerate(boxes):
        assert f"model/cell_{i}" in ln and "5 nodes" in ln  # W, matmul, const, add, tanh
    ids = [node_id(b) for b in boxes]
    assert len([e for e in edge_lines(dot) if f'"{ids[0]}" -> "{ids[1]}"' in e]) == 1
    top = to_dot(g, max_depth=0, legend=False)
    assert clusters(top) == [] and "<B>model</B>" in top and "15 nodes" in top


def test_max_depth_folds_scopes_inside_a_loop_body():
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, None, 4], name="xs")
        h0 = rg.placeholder(rg.float32, [None, 4], name="h0")
        Ws = [rg.get_variable(f"W{i}", [4, 4]) for i in range(3)]

        def step(c, x):
            h = x[0] + c[0]
            for i, W in enumerate(Ws):
                with rg.name_scope(f"layer_{i}"):
                    h = rg.tanh(h @ W)
            return [h], [h]

        with rg.name_scope("rnn"):
            rg.lax_scan(step, [h0], [xs], name="while")
    dot = to_dot(g, max_depth=2)
    assert len([ln for ln in node_lines(dot) if 'shape="box3d"' in ln]) == 3
    assert "cluster_loop_rnn_while" in clusters(dot)
    # steps are not looked for inside a loop body: layer_0..2 are layers, not time steps
    assert not [c for c in clusters(to_dot(g)) if c.startswith("cluster_step_")]


# --- labels and options ----------------------------------------------------------------------
def test_node_labels_and_shapes():
    g, loss, _ = rnn_scan_graph(with_grad=False)
    dot = to_dot(g)
    mm = node_line(dot, "<B>matmul</B><BR/><FONT POINT-SIZE=\"8\" COLOR=\"#6b7280\">MatMul<")
    assert "f32[?,5]" in mm and 'shape="box"' in mm
    assert 'shape="cylinder"' in node_line(dot, "<B>W</B>")
    assert 'shape="invhouse"' in node_line(dot, "<B>xs</B>")
    g2 = rg.Graph()
    with g2.as_default():
        x = rg.placeholder(rg.float32, [None, 2], name="x")
        y = x * 2.5
    const = node_line(to_dot(g2), "2.5")
    assert 'fontsize="7"' in const and "#a8a8a8" in const


def test_edge_labels_show_types_and_can_be_turned_off():
    g, loss, _ = rnn_scan_graph(with_grad=False)
    assert any('label="f32[?,5]"' in e for e in edge_lines(to_dot(g)))
    quiet = to_dot(g, edge_labels=False)
    assert not any('label="f32' in e for e in edge_lines(quiet))
    assert any('label="next"' in e for e in edge_lines(quiet))  # the back edge keeps its word


def test_rankdir_title_and_bad_options():
    g, loss, _ = rnn_scan_graph(with_grad=False)
    assert "rankdir=TB" in to_dot(g)
    dot = to_dot(g, rankdir="LR", title="my model")
    assert "rankdir=LR" in dot and 'label="my model"' in dot
    with pytest.raises(ValueError, match="rankdir"):
        to_dot(g, rankdir="sideways")
    with pytest.raises(ValueError, match="max_depth"):
        to_dot(g, max_depth=-1)


def test_to_dot_is_pure_and_deterministic():
    g, loss, grads = rnn_scan_graph()
    n, version = len(g.nodes), g.version
    assert to_dot(g, plan=FakePlan(["host"])) == to_dot(g, plan=FakePlan(["host"]))
    assert (len(g.nodes), g.version) == (n, version)


def test_values_draw_only_what_they_depend_on_and_are_fetched():
    g, loss, grads = rnn_scan_graph()
    dot = to_dot(loss)  # the forward part only
    assert "cluster_gradients" not in clusters(dot)
    assert "cluster_loop_rnn_scan" in clusters(dot)
    assert 'penwidth="3"' in node_line(dot, "<B>reduce_sum</B>")
    with pytest.raises(ValueError):
        to_dot([])


# --- real files -----------------------------------------------------------------------------
@needs_dot
def test_svg_has_the_clusters_and_nodes_of_the_dot_text(tmp_path):
    g, loss, grads = rnn_scan_graph()
    dot = to_dot(g, fetches=[loss])
    path = render(g, tmp_path / "model.svg", fetches=[loss])
    assert path == str(tmp_path / "model.svg")
    titles, nodes, edges = svg_structure(path)
    assert set(titles) == set(clusters(dot))
    assert {"cluster_scope_rnn", "cluster_loop_rnn_scan", "cluster_gradients",
            "cluster_loop_gradients_rnn_scan_grad"} <= set(titles)
    assert nodes == len(node_lines(dot))
    assert edges == len(edge_lines(dot))
    texts = svg_texts(path)
    assert "matmul" in texts and "f32[?,5]" in texts and "next" in texts


@needs_dot
def test_svg_of_a_long_static_unroll(tmp_path):
    g, loss = static_graph(15)
    titles, nodes, _ = svg_structure(render(g, tmp_path / "static.svg", legend=False))
    assert sorted(t for t in titles if t.startswith("cluster_step_")) == \
        sorted(f"cluster_step_rnn_step_{t}" for t in (0, 1, 13, 14))
    assert "... 11 steps ..." in svg_texts(tmp_path / "static.svg")
    # 4 inputs + 1 box of the middle steps' 11 inputs + h0 + W + U + 4 steps x 4 ops + 1 box +
    # reduce_sum, and a reference to W and to U in each step and in the box
    assert nodes == 4 + 1 + 1 + 2 + 16 + 1 + 1 + 5 * 2
    assert "11 inputs" in svg_texts(tmp_path / "static.svg")
    titles_all, nodes_all, _ = svg_structure(render(g, tmp_path / "all.svg", all_steps=True,
                                                    max_size=None,
                                                    legend=False))
    assert len([t for t in titles_all if t.startswith("cluster_step_")]) == 15
    assert nodes_all == 15 + 1 + 2 + 15 * 4 + 1 + 15 * 2


@needs_dot
def test_svg_of_collapsed_layers(tmp_path):
    titles, nodes, edges = svg_structure(render(layered_graph(), tmp_path / "layers.svg",
                                                max_depth=1, step_pattern=None, legend=False))
    assert titles == ["cluster_scope_model"]
    assert nodes == 1 + 3 + 1  # x, three layer boxes, reduce_sum
    assert edges == 4


@needs_dot
@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_render_formats(tmp_path, fmt, magic):
    g, loss, grads = rnn_scan_graph()
    by_suffix = render(g, tmp_path / f"a.{fmt}")
    by_arg = render(g, tmp_path / "b", format=fmt)
    assert by_arg == str(tmp_path / f"b.{fmt}")
    for p in (by_suffix, by_arg):
        assert open(p, "rb").read(len(magic)) == magic


def test_render_dot_format_writes_the_text(tmp_path):
    g, loss, _ = rnn_scan_graph(with_grad=False)
    path = render(g, tmp_path / "sub" / "g.dot")
    assert open(path).read() == to_dot(g)
    assert render(g, tmp_path / "g.gv").endswith("g.gv")
    with pytest.raises(ValueError, match="format"):
        render(g, tmp_path / "g.jpg", format="jpg")
