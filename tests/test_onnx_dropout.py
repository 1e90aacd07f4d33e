"""ONNX export for inference (to_onnx's inference=True): dropout whose keep probability is 1 at
export leaves the model (no random node, no mask), as torch.onnx exports eval mode; a dropout
that would still drop something raises ExportError naming its keep probability and line.

Checked with onnxruntime against rnngraph's own Session run with the same (default) keep
probabilities, to 1e-5 (float32), on batch sizes the export never saw.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import ExportError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnngraph.io.onnx import compare, export  # noqa: E402

from test_onnx_bidirectional import _init, _lengths  # noqa: E402

TOL = 1e-5
T, IN, H = 6, 3, 5


def _op_types(model):
    """Every op type in the model, subgraphs (Loop/Scan bodies) included."""
    found = []

    def walk(graph):
        for n in graph.node:
            found.append(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
    walk(model.graph)
    return found


def _no_dropout_left(model):
    types = set(_op_types(model))
    assert not types & {"RandomUniform", "RandomUniformLike", "Dropout"}, types
    # the mask's pieces: no comparison of random numbers, no division by the keep probability
    assert "Div" not in types, types


def _check(ex, sess, feeds):
    worst = 0.0
    for feed in feeds:
        errs = compare(ex, sess, feed)
        assert errs
        worst = max(worst, max(errs.values()))
    assert worst < TOL, worst
    return worst


def _wrapped_rnn(cell_fn, variational, seq, keep=None, rate_keras=False):
    """dynamic_rnn over DropoutWrapper(cell) with all three keep probabilities (one
    placeholder_with_default(1.0) each, or `keep`), then nn.dropout on the outputs."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L") if seq else None
        keeps = [rg.placeholder_with_default(1.0, [], name=f"{w}_keep") if keep is None
                 else keep for w in ("input", "output", "state")]
        cell = rg.nn.DropoutWrapper(cell_fn(), input_keep_prob=keeps[0],
                                    output_keep_prob=keeps[1], state_keep_prob=keeps[2],
                                    variational_recurrent=variational, dtype=rg.float32,
                                    seed=3)
        out, state = rg.nn.dynamic_rnn(cell, X, sequence_length=L, dtype=rg.float32)
        rate = rg.placeholder_with_default(0.0, [], name="rate")
        y = rg.nn.dropout(out, rate=rate, seed=5)
    return g, X, L, keeps, rate, {"y": y, "state": state}


CELLS = {
    "lstm": lambda: rg.nn.LSTMCell(H),
    "gru": lambda: rg.nn.GRUCell(H),
    "basic": lambda: rg.nn.BasicRNNCell(H),
}


@pytest.mark.parametrize("route", ["auto", "loop"])
@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("variational", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_dropout_wrapper_at_keep_one_leaves_the_model(cell, variational, seq, route):
    rng = np.random.default_rng(1)
    g, X, L, keeps, rate, fetches = _wrapped_rnn(CELLS[cell], variational, seq)
    sess = _init(g, rng)
    ex = export(fetches, session=sess, route=route)
    _no_dropout_left(ex.model)
    # route 1 still recognises the cell once its masks are gone
    assert ex.routes == {"rnn/while": "rnn" if route == "auto" else "loop" if seq else "scan"}
    # the keep probabilities are not inputs of the model (their defaults were used)
    assert [i.name for i in ex.model.graph.input] == (["X", "L"] if seq else ["X"])
    feeds = []
    for batch in (2, 7):
        feed = {X: rng.normal(size=(batch, T, IN)).astype(np.float32)}
        if seq:
            feed[L] = _lengths(batch, rng)
        feeds.append(feed)
    _check(ex, sess, feeds)
    # the graph does drop units when a keep probability is fed (the test is not vacuous)
    dropped = {**feeds[1], **{k: np.float32(0.5) for k in keeps}}
    a = sess.run(fetches["y"], feed_dict=feeds[1])
    b = sess.run(fetches["y"], feed_dict=dropped)
    assert not np.allclose(a, b)


def test_dropout_wrapper_with_constant_keep_one_and_nn_dropout_rate_zero():
    """Keep probabilities given as numbers: 1.0 builds no mask at all; a tensor constant 1.0
    builds one that the export removes; nn.dropout with keep_prob=ones on a dense layer too."""
    rng = np.random.default_rng(2)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        one = rg.constant(1.0)
        cell = rg.nn.DropoutWrapper(rg.nn.LSTMCell(H), input_keep_prob=one,
                                    output_keep_prob=1.0, state_keep_prob=one)
        out, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
        last = out[:, -1, :]
        dense = rg.layers.dense(rg.nn.dropout(last, keep_prob=rg.cast(one, rg.float32) * 1.0),
                                4, name="dense")
        probs = rg.nn.softmax(dense)
    sess = _init(g, rng)
    ex = export({"probs": probs}, session=sess)
    _no_dropout_left(ex.model)
    assert ex.routes == {"rnn/while": "rnn"}
    feeds = [{X: rng.normal(size=(b, T, IN)).astype(np.float32)} for b in (1, 4)]
    _check(ex, sess, feeds)


def test_nn_dropout_in_a_plain_graph():
    rng = np.random.default_rng(3)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, IN], name="X")
        keep = rg.placeholder_with_default(1.0, [], name="keep")
        h = rg.nn.dropout(rg.tanh(X), keep_prob=keep, noise_shape=[None, 1])
        h = rg.nn.dropout(h, rate=1.0 - keep)       # rate as a tensor: 1 - keep = 0
        y = h * 2.0
    sess = _init(g, rng)
    ex = export({"y": y}, session=sess)
    _no_dropout_left(ex.model)
    types = _op_types(ex.model)
    assert "Less" not in types and "Where" not in types, types
    x = rng.normal(size=(5, IN)).astype(np.float32)
    got = compare(ex, sess, {X: x})
    assert got["y"] < TOL
    # and the value is the graph without dropout, computed here in NumPy
    from rnngraph.io.onnx.check import run_onnxruntime
    out = run_onnxruntime(ex, {X: x})["y"]
    np.testing.assert_allclose(out, np.tanh(x) * 2.0, rtol=1e-6, atol=1e-6)


def test_keras_cell_dropout_rates_at_zero():
    rng = np.random.default_rng(5)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        r = rg.placeholder_with_default(0.0, [], name="r")
        out, state = rg.nn.dynamic_rnn(rg.nn.GRUCell(H, dropout=r, recurrent_dropout=r), X,
                                       dtype=rg.float32)
    sess = _init(g, rng)
    ex = export({"out": out, "state": state}, session=sess)
    _no_dropout_left(ex.model)
    assert ex.routes == {"rnn/while": "rnn"}
    _check(ex, sess, [{X: rng.normal(size=(3, T, IN)).astype(np.float32)}])


def test_fed_keep_probability_is_named_with_its_line():
    g, X, L, keeps, rate, fetches = _wrapped_rnn(CELLS["lstm"], False, True)
    sess = _init(g, np.random.default_rng(0))
    with pytest.raises(ExportError) as err:
        export(fetches, session=sess, feeds=[X, L, keeps[1]])
    msg = str(err.value)
    assert "output_keep" in msg and "is fed" in msg and "inference=True" in msg
    assert re.search(r"test_onnx_dropout\.py:\d+", msg), msg
    assert "out of feeds" in msg   # the hint


def test_keep_probability_not_one_is_named():
    g, X, L, keeps, rate, fetches = _wrapped_rnn(CELLS["gru"], True, False, keep=None)
    with g.as_default():
        y = rg.nn.dropout(fetches["y"], keep_prob=0.75)
    sess = _init(g, np.random.default_rng(0))
    with pytest.raises(ExportError, match=r"keep probability .* is 0\.75 at export, not 1"):
        export({"y": y}, session=sess)
    # a placeholder without a default is not known at export either
    g2 = rg.Graph()
    with g2.as_default():
        X2 = rg.placeholder(rg.float32, [None, IN], name="X2")
        k = rg.placeholder(rg.float32, [], name="k")
        y2 = rg.nn.dropout(X2, keep_prob=k)
    with pytest.raises(ExportError, match=r"placeholder 'k'.*dropout|dropout.*placeholder 'k'"):
        export({"y": y2}, feeds=[X2])


def test_inference_false_exports_the_graph_as_built():
    g, X, L, keeps, rate, fetches = _wrapped_rnn(CELLS["lstm"], False, False)
    sess = _init(g, np.random.default_rng(0))
    with pytest.raises(ExportError, match=r"random_standard .*inference=True"):
        export(fetches, session=sess, inference=False)
    # the fetches that do not go through dropout still export with inference=False
    with g.as_default():
        plain = rg.tanh(X)
    ex = export({"p": plain}, session=sess, inference=False)
    assert [n.op_type for n in ex.model.graph.node] == ["Tanh", "Identity"]
