"""Diagrams as a person sees them: static unrolls as timelines (step clusters left to right in
SVG coordinates), the collapsed gradient view and --expand, the size guard, cluster titles as
one text element each, colours that match the legend, formats by suffix, and the CLI."""
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

import rnngraph as rg
from rnngraph import examples_registry
from rnngraph.cli import main
from rnngraph.errors import DiagramTooLargeError
from rnngraph.render import MAX_LAYOUT_SIZE, format_for, render, to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
SVG = "{http://www.w3.org/2000/svg}"


def static_lstm(T, grad):
    """rg.nn.static_rnn of an LSTMCell over T steps; with its gradients when `grad`."""
    g = rg.Graph()
    with g.as_default():
        xs = [rg.placeholder(rg.float32, [None, 3], name=f"x{t}") for t in range(T)]
        outputs, _ = rg.nn.static_rnn(rg.nn.LSTMCell(4), xs, dtype=rg.float32)
        loss = rg.reduce_sum(outputs[-1])
        grads = rg.gradients(loss, rg.trainable_variables(g)) if grad else []
    return g, loss, grads


def svg_clusters(path):
    """cluster id -> (left x, the title texts) from graphviz's SVG."""
    out = {}
    for g in ET.parse(path).getroot().iter(f"{SVG}g"):
        if g.get("class") != "cluster":
            continue
        poly = g.find(f"{SVG}polygon")
        if poly is None:
            poly = g.find(f"{SVG}path")
        nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", poly.get("points") or
                                              poly.get("d"))]
        xs = nums[0::2]
        out[g.find(f"{SVG}title").text] = (min(xs), [t.text for t in g.findall(f"{SVG}text")])
    return out


def step_positions(clusters, prefix):
    """[(step k, left x)] for the step clusters whose id starts with `prefix`, by k."""
    found = []
    for cid, (x, _) in clusters.items():
        m = re.fullmatch(re.escape(prefix) + r"_(\d+)", cid)
        if m:
            found.append((int(m.group(1)), x))
    return sorted(found)


# --- timelines ------------------------------------------------------------------------------
@needs_dot
@pytest.mark.parametrize("T", [2, 10, 50])
def test_static_steps_go_left_to_right_in_order_forward_and_gradient(tmp_path, T):
    g, loss, grads = static_lstm(T, grad=True)
    # the gradient view (collapsed, as `rnngraph render --grad` draws it): more than 6 steps
    # fold their middle; and, up to 12 steps, every step drawn
    views = [({"collapse": True}, list(range(T)) if T <= 6 else [0, 1, T - 2, T - 1])]
    if T <= 12:
        views.append(({"collapse": True, "all_steps": True}, list(range(T))))
    for i, (opts, shown) in enumerate(views):
        cl = svg_clusters(render(grads, tmp_path / f"g{i}.svg", **opts))
        fwd = step_positions(cl, "cluster_step_rnn_step")
        bwd = step_positions(cl, "cluster_step_gradients_rnn_step")
        for steps in (fwd, bwd):
            assert [k for k, _ in steps] == shown, opts
            xs = [x for _, x in steps]
            assert xs == sorted(xs) and len(set(xs)) == len(xs), steps  # strictly left to right
    if T > 6:
        dot = to_dot(grads, collapse=True)
        assert dot.count(f"... {T - 4} steps ...") == 2  # forward and gradient both fold
    # the forward view of the same graph, drawn whole: up to 12 steps unfolded
    shown = list(range(T)) if T <= 12 else [0, 1, T - 2, T - 1]
    cl = svg_clusters(render(loss, tmp_path / "f.svg"))
    steps = step_positions(cl, "cluster_step_rnn_step")
    assert [k for k, _ in steps] == shown
    xs = [x for _, x in steps]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_state_edges_run_along_the_timeline_and_the_layout_runs_left_to_right():
    g, loss, grads = static_lstm(4, grad=True)
    dot = to_dot(grads, collapse=True)
    assert "rankdir=LR" in dot
    state = [ln for ln in dot.splitlines() if " -> " in ln and 'color="#c0392b"' in ln
             and "dashed" not in ln]
    forward = [ln for ln in state if 'weight="8"' in ln]
    backward = [ln for ln in state if 'constraint="false"' in ln]
    assert forward and backward and len(forward) + len(backward) == len(state)
    assert "rankdir=TB" in to_dot(rnn_scan())  # no static steps: top to bottom as before
    assert "rankdir=TB" in to_dot(grads, rankdir="TB")


def rnn_scan():
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, None, 3], name="xs")
        rg.nn.dynamic_rnn(rg.nn.LSTMCell(4), xs, dtype=rg.float32)
    return g


# --- collapsed view, expand -----------------------------------------------------------------
def boxes(dot):
    return re.findall(r'id="scope:([^"]+)"', dot)


def test_collapsed_view_has_one_box_per_scope_and_expand_opens_one():
    ex = examples_registry.build("lstm", grad=True)
    grads = [v for k, v in ex.fetches.items() if k.startswith("gradient/")]
    dot = to_dot(grads, collapse=True)
    assert "gradients/rnn" in boxes(dot) and "rnn/while/lstm_cell" in boxes(dot)
    assert re.search(r"gradients/rnn</B><BR/>.*?(\d+) nodes", dot)
    opened = to_dot(grads, collapse=True, expand="gradients/rnn")
    assert "gradients/rnn" not in boxes(opened)
    assert "cluster_loop_gradients_rnn_while_grad" in opened  # its loop is drawn now
    # one level opens: scopes inside the gradient loop's body stay boxes
    assert any(b.startswith("gradients/rnn/while_grad/") for b in boxes(opened))
    deeper = to_dot(grads, collapse=True, expand=["gradients/rnn/while_grad/lstm_cell"])
    assert "gradients/rnn/while_grad/lstm_cell" not in boxes(deeper)
    with pytest.raises(ValueError, match="expand"):
        to_dot(grads, collapse=True, expand=[""])


def test_recompute_scopes_in_gradient_loops_are_not_called_recompute():
    ex = examples_registry.build("lstm", grad=True)
    dot = to_dot(ex.graph)
    assert "forward ops redone each step" in dot
    assert not re.search(r"label=<<B>recompute</B>>", dot)


def test_saved_loop_outputs_say_they_are_for_the_backward_pass():
    dot = to_dot(examples_registry.build("lstm", grad=True).graph)
    saved = [ln for ln in dot.splitlines() if "<I>saved " in ln]
    assert saved and all("kept for the backward pass" in ln for ln in saved)


# --- size guard -----------------------------------------------------------------------------
def test_size_guard_folds_an_unasked_view_and_refuses_an_asked_one():
    g, loss, grads = static_lstm(50, grad=True)
    with pytest.raises(DiagramTooLargeError, match=r"max_depth=1.*all_steps"):
        to_dot(grads, all_steps=True)
    whole = dot_size(to_dot(grads, max_size=None))
    text = to_dot(grads, max_size=whole - 1)  # nobody asked for this view: folded, with a note
    assert "scopes folded" in text and boxes(text)
    assert dot_size(text) < whole
    with pytest.raises(DiagramTooLargeError, match="max_size=10"):
        to_dot(grads, max_size=10)  # even folded it is too large
    assert "scopes folded" not in to_dot(grads, all_steps=True, max_size=None)
    with pytest.raises(ValueError, match="max_size"):
        to_dot(grads, max_size=0)


@needs_dot
@pytest.mark.parametrize("name", examples_registry.names())
@pytest.mark.parametrize("unroll", [None, "static"])
def test_every_example_with_grad_renders_within_the_size_guard(tmp_path, capsys, name, unroll):
    """What `rnngraph render NAME --grad` draws stays under the guard's node + edge budget
    (measured: what dot lays out in under 10 s on the build machine), and the file is written."""
    argv = ["render", name, "--grad", "-o", str(tmp_path / "g.svg")]
    if unroll:
        argv += ["--unroll", unroll]
    code = main(argv + ["--title", ""])
    err = capsys.readouterr().err
    if code != 0 and ("supports --unroll" in err or "is always" in err):
        pytest.skip(f"{name} has no {unroll} form")
    assert code == 0, err
    root = ET.parse(tmp_path / "g.svg").getroot()
    nodes = sum(1 for g in root.iter(f"{SVG}g") if g.get("class") == "node")
    edges = sum(1 for g in root.iter(f"{SVG}g") if g.get("class") == "edge")
    assert 0 < nodes + edges <= MAX_LAYOUT_SIZE


def test_render_refuses_a_file_past_the_guard_naming_the_options(tmp_path):
    g, loss, grads = static_lstm(50, grad=True)
    with pytest.raises(DiagramTooLargeError, match="all_steps"):
        render(grads, tmp_path / "big.svg", all_steps=True)
    assert not (tmp_path / "big.svg").exists()


def dot_size(text):
    """Drawn nodes + drawn edges of DOT text (the timeline's hidden gates not counted)."""
    lines = text.splitlines()
    nodes = sum(1 for ln in lines if re.match(r'\s*"[^"]+" \[', ln) and "style=invis" not in ln)
    edges = sum(1 for ln in lines if " -> " in ln and "invis" not in ln)
    return nodes + edges


# --- titles, colours, fonts -----------------------------------------------------------------
@needs_dot
def test_cluster_titles_are_single_text_elements_in_a_measured_font(tmp_path):
    ex = examples_registry.build("lstm", grad=True)
    path = render(ex.graph, tmp_path / "g.svg", max_depth=2)
    cl = svg_clusters(path)
    loops = {cid: texts for cid, (_, texts) in cl.items() if cid.startswith("cluster_loop")}
    assert loops
    for cid, texts in loops.items():
        assert texts[0].startswith("loop ") and "rnn/while" in texts[0], (cid, texts)
    assert cl["cluster_gradients"][1][0] == "backward: gradients"
    for cid, (_, texts) in cl.items():
        assert len(texts) == 1, (cid, texts)  # one title, one element
    fonts = {t.get("font-family") for t in ET.parse(path).getroot().iter(f"{SVG}text")}
    assert fonts == {"DejaVu Sans"} or all("DejaVu Sans" in (f or "") for f in fonts)


def legend_and_nodes(path):
    """(legend label -> fill, [(node label texts, fill)]) from an SVG."""
    legend, nodes = {}, []
    root = ET.parse(path).getroot()
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        shape = g.find(f"{SVG}polygon")
        if shape is None:
            shape = g.find(f"{SVG}path")
        fill = shape.get("fill") if shape is not None else None
        texts = [t.text for t in g.findall(f"{SVG}text")]
        if g.find(f"{SVG}title").text.startswith("legend_"):
            legend[" ".join(texts)] = fill
        else:
            nodes.append((texts, fill))
    return legend, nodes


class Plan:
    def __init__(self, where):
        self.where = where

    def placement_of(self, value):
        return self.where

    def bytes_of(self, value):
        return 4096


@needs_dot
@pytest.mark.parametrize("where", ["device", "host", "recompute"])
def test_colours_match_the_legend(tmp_path, where):
    ex = examples_registry.build("lstm", grad=True)
    path = render(ex.graph, tmp_path / "g.svg", plan=Plan(where), collapse=True)
    legend, nodes = legend_and_nodes(path)
    saved = [fill for texts, fill in nodes if texts and texts[0].startswith("saved ")]
    assert saved and set(saved) == {legend[f"saved, {_WHERE[where]}"]}
    grads = [fill for texts, fill in nodes if "ones_like" in texts]
    assert grads == [legend["gradient op"]]
    placeholders = [fill for texts, fill in nodes if "input_sequences" in texts]
    assert placeholders == [legend["placeholder (input)"]]
    fills = {legend[f"saved, {w}"] for w in _WHERE.values()}
    assert len(fills) == 3  # three placements, three colours
    assert legend["saved, kept on the device"] in ("#e6e8ec",)  # the normal case is neutral


_WHERE = {"device": "kept on the device", "host": "offloaded to host memory",
          "recompute": "recomputed"}


# --- formats --------------------------------------------------------------------------------
def test_the_suffix_decides_the_format_and_an_unknown_one_is_an_error(tmp_path):
    assert [format_for(f"a.{s}") for s in ("svg", "png", "pdf", "dot", "html")] == \
        ["svg", "png", "pdf", "dot", "html"]
    assert format_for("a") == "svg" and format_for("a", "png") == "png"
    with pytest.raises(ValueError, match=r"\.jpg"):
        format_for("foo.jpg")
    with pytest.raises(ValueError, match="contradicts"):
        format_for("foo.svg", "png")
    g = rnn_scan()
    with pytest.raises(ValueError, match="suffix"):
        render(g, tmp_path / "foo.jpg")
    assert not (tmp_path / "foo.jpg").exists()


def test_cli_unknown_suffix_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    code = main(["render", "basic_rnn", "-o", str(tmp_path / "foo.jpg")])
    assert code == 1
    assert "foo.jpg" in capsys.readouterr().err
    assert not (tmp_path / "foo.jpg").exists()


@needs_dot
@pytest.mark.parametrize("suffix,magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"),
                                          ("svg", b"<?xml"), ("dot", b"digraph")])
def test_cli_writes_the_format_its_suffix_names(tmp_path, capsys, suffix, magic):
    out = tmp_path / f"m.{suffix}"
    assert main(["render", "basic_rnn", "--grad", "-o", str(out)]) == 0
    assert out.read_bytes()[:len(magic)] == magic


@needs_dot
def test_cli_grad_is_collapsed_by_default_and_expand_opens_a_scope(tmp_path, capsys):
    out = tmp_path / "g.dot"
    assert main(["render", "lstm", "--grad", "-o", str(out)]) == 0
    assert "gradients/rnn" in boxes(out.read_text())
    assert main(["render", "lstm", "--grad", "--expand", "gradients/rnn", "-o", str(out)]) == 0
    assert "gradients/rnn" not in boxes(out.read_text())
    assert main(["render", "lstm", "--grad", "--max-depth", "3", "-o", str(out)]) == 0
    assert "gradients/rnn" not in boxes(out.read_text())
