"""A static unroll as a person reads it: the shared weights drawn once above the step timeline,
the per-step inputs below it (positions parsed from graphviz's SVG), and the gradient's sums
(AddN) named under the step they accumulate for, so they are drawn inside that step's box
instead of as a column beside the timeline."""
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

import rnngraph as rg
from rnngraph.render import render, to_dot

from test_render_layout import static_lstm

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
SVG = "{http://www.w3.org/2000/svg}"
VARIABLE_FILL, PLACEHOLDER_FILL = "#fff4d1", "#e3f4e5"


# --- reading graphviz's SVG ---------------------------------------------------------------------
def _numbers(el):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", el.get("points") or el.get("d"))]


def _extent(g):
    """(x0, y0, x1, y1) of the shapes drawn in a node or cluster group."""
    xs, ys = [], []
    for el in g.iter():
        if el.tag == f"{SVG}ellipse":
            cx, cy, rx, ry = (float(el.get(k)) for k in ("cx", "cy", "rx", "ry"))
            xs += [cx - rx, cx + rx]
            ys += [cy - ry, cy + ry]
        elif el.tag in (f"{SVG}polygon", f"{SVG}path", f"{SVG}polyline"):
            v = _numbers(el)
            xs += v[0::2]
            ys += v[1::2]
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


def layout_of(path):
    """({cluster id: box}, [(node id attribute, texts, fill, box)]) of an SVG written by dot
    (the legend's samples left out)."""
    clusters, nodes = {}, []
    for g in ET.parse(path).getroot().iter(f"{SVG}g"):
        box = _extent(g) if g.get("class") in ("cluster", "node") else None
        if box is None:
            continue
        if g.get("class") == "cluster":
            clusters[g.find(f"{SVG}title").text] = box
        elif not g.find(f"{SVG}title").text.startswith("legend_"):
            shape = next((el for el in g.iter() if el.tag in (f"{SVG}polygon", f"{SVG}path",
                                                               f"{SVG}ellipse")), None)
            texts = [t.text for t in g.iter(f"{SVG}text")]
            nodes.append((g.get("id"), texts, shape.get("fill"), box))
    return clusters, nodes


def step_boxes(clusters, prefix):
    return [box for cid, box in clusters.items() if re.fullmatch(re.escape(prefix) + r"_\d+", cid)]


def inside(box, outer):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


# --- weights above, inputs below ----------------------------------------------------------------
@needs_dot
@pytest.mark.parametrize("T", [2, 10, 50])
def test_weights_are_drawn_above_the_timeline_and_inputs_below_it(tmp_path, T):
    g, loss, grads = static_lstm(T, grad=True)
    # the forward graph as `render` draws it, and the gradient as `rnngraph render --grad` does
    for view, target, opts in (("forward", loss, {}), ("gradient", grads, {"collapse": True})):
        clusters, nodes = layout_of(render(target, tmp_path / f"{view}.svg", **opts))
        forward = step_boxes(clusters, "cluster_step_rnn_step")
        steps = forward + step_boxes(clusters, "cluster_step_gradients_rnn_step")
        assert len(forward) == (4 if T > (6 if opts else 12) else T), view
        if opts:  # collapsed: the cell's weights are one folded box, rnn/lstm_cell
            weights = [box for nid, _, _, box in nodes if nid == "scope:rnn/lstm_cell"]
        else:
            weights = [box for _, texts, fill, box in nodes
                       if fill == VARIABLE_FILL and texts[0] in ("kernel", "bias")]
        inputs = [(texts, box) for _, texts, fill, box in nodes if fill == PLACEHOLDER_FILL]
        folded = T > (6 if opts else 12)  # the middle steps' inputs fold with them
        names = sorted(texts[0] for texts, _ in inputs)
        expected = [f"x{t}" for t in range(T)] if not folded else \
            [f"x{t}" for t in (0, 1, T - 2, T - 1)] + [f"x2 \u2026 x{T - 3}"]
        assert names == sorted(expected), (view, names)
        if folded:
            assert [t[1] for t, _ in inputs if "\u2026" in t[0]] == [f"{T - 4} inputs"]
        inputs = [box for _, box in inputs]
        assert weights, view
        top = min(box[1] for box in steps)          # SVG y grows downwards
        bottom = max(box[3] for box in forward)
        assert max(box[3] for box in weights) < top, view
        assert min(box[1] for box in inputs) > bottom, view


@needs_dot
def test_each_step_reads_the_shared_weights_through_a_reference(tmp_path):
    g, loss, grads = static_lstm(3, grad=False)
    dot = to_dot(loss)
    # drawn once, in a cluster of their own named after their scope
    assert dot.count('<B>kernel</B>') == 1 and dot.count('<B>bias</B>') == 1
    assert "rnn/lstm_cell: weights shared by every step" in dot
    clusters, nodes = layout_of(render(loss, tmp_path / "f.svg"))
    refs = [(texts, box) for _, texts, fill, box in nodes if fill == "#fffdf3"]
    for k in range(3):  # each step box holds a reference to each weight it reads
        box = clusters[f"cluster_step_rnn_step_{k}"]
        names = sorted(texts[0] for texts, b in refs if inside(b, box))
        assert names == ["bias", "kernel"], (k, names)


# --- the gradient's sums, named under their step ------------------------------------------------
def test_gradient_sums_are_named_under_the_step_they_accumulate_for():
    T = 10
    g, loss, grads = static_lstm(T, grad=True)
    sums = [n for n in g.nodes if n.is_gradient and n.op.name == "add_n"]
    assert sums
    assert not [n.name for n in sums if re.fullmatch(r"gradients/AddN(_\d+)?", n.name)]
    by_step = {}
    for n in sums:
        # gradients/<forward node>_grad/AddN: the forward node whose outputs' cotangents it sums
        m = re.fullmatch(r"gradients/(.+)_grad/AddN(_\d+)?", n.name)
        assert m, n.name
        forward = g.get_node(m.group(1)) if hasattr(g, "get_node") else \
            next(f for f in g.nodes if f.name == m.group(1))
        assert not forward.is_gradient
        # the sum reads one cotangent per reader of that forward node
        readers = [r for r in g.nodes if not r.is_gradient and
                   any(v.node is forward for v in r.inputs)]
        assert len(n.inputs) == len(readers) >= 2, n.name
        step = re.match(r"rnn/step_(\d+)/", forward.name)
        if step:
            by_step.setdefault(int(step.group(1)), []).append(n.name)
            assert n.name.startswith(f"gradients/rnn/step_{step.group(1)}/"), n.name
    # an LSTM step's cell state c is read twice, by tanh in its step and by the next step's
    # forget gate; the last step's only by tanh: one sum in each step but the last
    assert sorted(by_step) == list(range(T - 1))
    assert all(len(v) == 1 for v in by_step.values()), by_step
    # and a shared weight's gradient, summed over the steps, is named after the weight
    assert sorted(v.node.name for v in grads) == ["gradients/rnn/lstm_cell/bias_grad/AddN",
                                                  "gradients/rnn/lstm_cell/kernel_grad/AddN"]


@needs_dot
def test_no_column_of_sums_beside_the_gradient_timeline(tmp_path):
    g, loss, grads = static_lstm(10, grad=True)
    # every node shown (middle steps folded), as to_dot draws a gradient when asked for all
    path = render(grads, tmp_path / "g.svg", max_steps=6, max_size=None)
    clusters, nodes = layout_of(path)
    steps = step_boxes(clusters, "cluster_step_gradients_rnn_step")
    assert len(steps) == 4
    sums = [(texts, box) for _, texts, _, box in nodes if texts and texts[0] == "add_n"]
    outside = [texts for texts, box in sums if not any(inside(box, s) for s in steps)]
    # only the two weight gradients (summed over every step) are outside the steps, in the
    # weights' own scope
    assert sorted(t[1] for t in outside) == ["AddN", "AddN"]
    scope = clusters["cluster_scope_gradients_rnn_lstm_cell"]
    assert all(inside(box, scope) for texts, box in sums if texts in outside)
    # drawn steps 0, 1, 8 and 9: one sum in each but the last (see above)
    assert len(sums) - len(outside) == 3
