"""ONNX export, route 1 without the scaffolding: bidirectional_dynamic_rnn as ONE ONNX
RNN/LSTM/GRU op with direction="bidirectional", and dynamic_rnn with sequence_length without
the sort-by-length / unsort nodes around its op (ONNX's ops take the rows in any order).

Results are checked with onnxruntime against rnngraph's Session (1e-5, float32) on unsorted
lengths with a zero-length and a full row, and a bidirectional RNN against a NumPy
computation written here (the backward direction reads each row reversed within its length).
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnngraph.io.onnx import compare, export  # noqa: E402
from rnngraph.io.onnx.check import run_onnxruntime  # noqa: E402

TOL = 1e-5
T, IN, H = 6, 3, 5
RECURRENT = {"RNN", "LSTM", "GRU"}
SORTING = {"TopK", "ScatterElements", "ReverseSequence"}


def _init(graph, rng):
    sess = rg.Session(graph)
    with graph.as_default():
        sess.run(rg.global_variables_initializer())
    for node in graph.nodes:
        if node.op.name == "variable" and node.outputs[0].dtype == np.float32:
            shape = node.outputs[0].shape
            sess.load_variable(node.name, rng.normal(0, 0.5, size=shape).astype(np.float32))
    return sess


def _lengths(batch, rng):
    lens = rng.integers(0, T + 1, size=batch)
    lens[0], lens[-1] = 0, T
    return rng.permutation(lens).astype(np.int32)


def _types(model):
    return [n.op_type for n in model.graph.node]


def _check(ex, sess, feeds):
    worst = {}
    for feed in feeds:
        for k, e in compare(ex, sess, feed).items():
            worst[k] = max(worst.get(k, 0.0), e)
    assert worst and max(worst.values()) < TOL, worst


def _feeds(X, L, time_major, rng, batches=(3, 6)):
    feeds = []
    for b in batches:
        x = rng.normal(size=(T, b, IN) if time_major else (b, T, IN)).astype(np.float32)
        feed = {X: x}
        if L is not None:
            feed[L] = _lengths(b, rng)
        feeds.append(feed)
    return feeds


PAIRS = {
    "lstm": (lambda: rg.nn.LSTMCell(H), lambda: rg.nn.LSTMCell(H, forget_bias=0.25)),
    "lstm_peepholes_one_side": (lambda: rg.nn.LSTMCell(H, use_peepholes=True),
                                lambda: rg.nn.BasicLSTMCell(H)),
    "gru": (lambda: rg.nn.GRUCell(H), lambda: rg.nn.GRUCell(H)),
    "gru_reset_after": (lambda: rg.nn.GRUCell(H, reset_after=True),
                        lambda: rg.nn.GRUCell(H, reset_after=True)),
    "rnn": (lambda: rg.nn.BasicRNNCell(H), lambda: rg.nn.BasicRNNCell(H)),
}


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("pair", list(PAIRS))
def test_bidirectional_is_one_op(pair, seq, time_major):
    rng = np.random.default_rng(11)
    g = rg.Graph()
    with g.as_default():
        shape = [None, None, IN]
        X = rg.placeholder(rg.float32, shape, name="X")
        L = rg.placeholder(rg.int32, [None], name="L") if seq else None
        fw_cell, bw_cell = PAIRS[pair]
        (fw, bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            fw_cell(), bw_cell(), X, sequence_length=L, dtype=rg.float32,
            time_major=time_major)
        both = rg.concat([fw, bw], axis=2)
    sess = _init(g, rng)
    ex = export({"outputs": both, "fw": s_fw, "bw": s_bw}, session=sess)
    types = _types(ex.model)
    recurrent = [n for n in ex.model.graph.node if n.op_type in RECURRENT]
    assert len(recurrent) == 1, types
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in recurrent[0].attribute}
    assert attrs["direction"] == b"bidirectional"
    assert not SORTING & set(types), types   # no reversing, sorting or unsorting left
    assert set(ex.routes.values()) == {"rnn-bidirectional"}
    _check(ex, sess, _feeds(X, L, time_major, rng))


@pytest.mark.parametrize("seq", [False, True])
def test_bidirectional_rnn_against_numpy(seq):
    """The fused op's outputs against a bidirectional RNN written in NumPy: the backward
    direction runs over each row's first len steps reversed, its outputs put back in place;
    steps past a row's length are zero in both; a zero-length row keeps its initial state."""
    rng = np.random.default_rng(12)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L") if seq else None
        h0f = rg.placeholder(rg.float32, [None, H], name="h0f")
        h0b = rg.placeholder(rg.float32, [None, H], name="h0b")
        cf, cb = rg.nn.BasicRNNCell(H), rg.nn.BasicRNNCell(H)
        (fw, bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            cf, cb, X, sequence_length=L, initial_state_fw=h0f, initial_state_bw=h0b)
    sess = _init(g, rng)
    ex = export({"fw": fw, "bw": bw, "s_fw": s_fw, "s_bw": s_bw}, session=sess)
    assert sum(t in RECURRENT for t in _types(ex.model)) == 1
    kf, bf = (sess.read_variable(v.node.name) for v in (cf.kernel, cf.bias))
    kb, bb = (sess.read_variable(v.node.name) for v in (cb.kernel, cb.bias))
    batch = 5
    x = rng.normal(size=(batch, T, IN)).astype(np.float32)
    lens = _lengths(batch, rng) if seq else np.full(batch, T, np.int32)
    init_f = rng.normal(size=(batch, H)).astype(np.float32)
    init_b = rng.normal(size=(batch, H)).astype(np.float32)
    feed = {X: x, h0f: init_f, h0b: init_b}
    if seq:
        feed[L] = lens
    got = run_onnxruntime(ex, feed)
    want_fw = np.zeros((batch, T, H))
    want_bw = np.zeros((batch, T, H))
    fin_f, fin_b = init_f.astype(np.float64), init_b.astype(np.float64)
    for b in range(batch):
        h = init_f[b].astype(np.float64)
        for t in range(lens[b]):
            h = np.tanh(np.concatenate([x[b, t], h]) @ kf + bf)
            want_fw[b, t] = h
        fin_f[b] = h
        h = init_b[b].astype(np.float64)
        for t in reversed(range(lens[b])):
            h = np.tanh(np.concatenate([x[b, t], h]) @ kb + bb)
            want_bw[b, t] = h
        fin_b[b] = h
    np.testing.assert_allclose(got["fw"], want_fw, atol=1e-5)
    np.testing.assert_allclose(got["bw"], want_bw, atol=1e-5)
    np.testing.assert_allclose(got["s_fw"], fin_f, atol=1e-5)
    np.testing.assert_allclose(got["s_bw"], fin_b, atol=1e-5)
    _check(ex, sess, [feed])


def test_bidirectional_that_cannot_fuse_stays_two_ops():
    """Different cells (LSTM forward, GRU backward) or stacked layers: two ops, as before,
    still equal to rnngraph; the sorting is gone all the same."""
    rng = np.random.default_rng(13)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        (fw, bw), states = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(H), rg.nn.GRUCell(H), X, sequence_length=L, dtype=rg.float32)
        with rg.variable_scope("stacked"):
            (fw2, bw2), states2 = rg.nn.bidirectional_dynamic_rnn(
                rg.nn.MultiRNNCell([rg.nn.GRUCell(H), rg.nn.GRUCell(H)]),
                rg.nn.MultiRNNCell([rg.nn.GRUCell(H), rg.nn.GRUCell(H)]), X,
                sequence_length=L, dtype=rg.float32)
    sess = _init(g, rng)
    ex = export({"fw": fw, "bw": bw, "states": states, "fw2": fw2, "bw2": bw2,
                 "states2": states2}, session=sess)
    types = _types(ex.model)
    assert types.count("LSTM") == 1 and types.count("GRU") == 1 + 4, types
    assert "TopK" not in types and "ScatterElements" not in types, types
    _check(ex, sess, _feeds(X, L, False, rng))


def test_bidirectional_with_dropout_wrappers_at_keep_one_fuses():
    rng = np.random.default_rng(14)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        keep = rg.placeholder_with_default(1.0, [], name="keep")
        cells = [rg.nn.DropoutWrapper(rg.nn.GRUCell(H), input_keep_prob=keep,
                                      output_keep_prob=keep, state_keep_prob=keep)
                 for _ in range(2)]
        (fw, bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            cells[0], cells[1], X, sequence_length=L, dtype=rg.float32)
    sess = _init(g, rng)
    ex = export({"fw": fw, "bw": bw, "s_fw": s_fw, "s_bw": s_bw}, session=sess)
    assert _types(ex.model).count("GRU") == 1
    _check(ex, sess, _feeds(X, L, False, rng))


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru", "multi"])
def test_sequence_length_without_sorting(cell, time_major):
    """dynamic_rnn with sequence_length: the op reads the user's rows and lengths directly;
    no TopK / ScatterElements / row Gathers, far fewer nodes than the sorted export had."""
    rng = np.random.default_rng(15)
    make = {"lstm": lambda: rg.nn.LSTMCell(H, use_peepholes=True),
            "gru": lambda: rg.nn.GRUCell(H),
            "multi": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(H), rg.nn.GRUCell(H)])}
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        out, state = rg.nn.dynamic_rnn(make[cell](), X, sequence_length=L, dtype=rg.float32,
                                       time_major=time_major)
    sess = _init(g, rng)
    ex = export({"out": out, "state": state}, session=sess)
    types = _types(ex.model)
    assert "TopK" not in types and "ScatterElements" not in types, types
    # the only Gathers left read sizes (Shape -> Gather) or pick a direction, not rows
    shapes = {o for n in ex.model.graph.node if n.op_type == "Shape" for o in n.output}
    assert all(n.input[0] in shapes for n in ex.model.graph.node if n.op_type == "Gather")
    assert sum(t in RECURRENT for t in types) == (2 if cell == "multi" else 1)
    # the same results as the loop route, which keeps the sorting in its body's scaffolding
    _check(ex, sess, _feeds(X, L, time_major, rng))
    looped = export({"out": out, "state": state}, session=sess, route="loop")
    assert len(ex.model.graph.node) < len(looped.model.graph.node)


def test_sorted_values_read_elsewhere_are_still_exported():
    """A value between the sorting and the loop that the user also fetches: the sorted op
    stays for it, and both fetches are right."""
    rng = np.random.default_rng(16)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        out, state = rg.nn.dynamic_rnn(rg.nn.GRUCell(H), X, sequence_length=L,
                                       dtype=rg.float32)
    loop = next(n for n in g.nodes if n.op.name == "loop")
    raw = loop.op.out_ports().split(loop.outputs)["output"][0]   # rows in sorted order
    sess = _init(g, rng)
    ex = export({"out": out, "raw": raw}, session=sess)
    assert _types(ex.model).count("GRU") == 2   # the user's rows, and the sorted rows
    _check(ex, sess, _feeds(X, L, False, rng))


def test_feeds_cutting_before_the_sorting_keep_the_sorted_op():
    """Feeding the time-major copy of the inputs (not X itself): the op cannot read X, so the
    export keeps the sorted op, and its results are still right."""
    rng = np.random.default_rng(17)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        out, state = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, sequence_length=L,
                                       dtype=rg.float32)
    loop = next(n for n in g.nodes if n.op.name == "loop")
    sorted_x = loop.op.in_ports().split(loop.inputs)["sequence"][0]   # permute_rows(...)
    time_major = sorted_x.node.inputs[0]                             # transpose(X)
    assert time_major.node.op.name == "transpose"
    sess = _init(g, rng)
    ex = export({"out": out, "state": state}, session=sess, feeds={"Xt": time_major, "L": L})
    assert [i.name for i in ex.model.graph.input] == ["Xt", "L"]
    assert _types(ex.model).count("LSTM") == 1
    feeds = []
    for b in (2, 5):
        feeds.append({time_major: rng.normal(size=(T, b, IN)).astype(np.float32),
                      L: _lengths(b, rng)})
    _check(ex, sess, feeds)
