"""ONNX export (rg.io.to_onnx) checked by onnxruntime against rnngraph's own Session.

Every cell, with and without sequence_length (unsorted, with a zero-length row), batch- and
time-major, through both routes (ONNX's RNN/LSTM/GRU ops, and Scan/Loop with the body op by
op), run on batch sizes the graph never saw at export: onnxruntime's outputs and final states
must equal rnngraph's to 1e-5 (float32).
"""
from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import ExportError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnngraph.io.onnx import compare, export  # noqa: E402
from rnngraph.io.onnx.check import run_onnxruntime  # noqa: E402

TOL = 1e-5
T, IN, H = 6, 3, 5

CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(H),
    "lstm": lambda: rg.nn.LSTMCell(H),
    "lstm_peepholes": lambda: rg.nn.LSTMCell(H, use_peepholes=True, forget_bias=0.5),
    "lstm_forget0": lambda: rg.nn.LSTMCell(H, forget_bias=0.0),
    "basic_lstm": lambda: rg.nn.BasicLSTMCell(H, forget_bias=0.25),
    "gru": lambda: rg.nn.GRUCell(H),
    "gru_reset_after": lambda: rg.nn.GRUCell(H, reset_after=True),
}


def _lengths(batch, rng):
    """Unsorted lengths in [0, T] with one zero-length and one full row."""
    lens = rng.integers(0, T + 1, size=batch)
    lens[0], lens[-1] = 0, T
    return rng.permutation(lens).astype(np.int32)


def _init(graph):
    sess = rg.Session(graph)
    with graph.as_default():
        sess.run(rg.global_variables_initializer())
    return sess


def _randomize(sess, graph, rng, scale=0.5):
    """Random values for every variable (biases too, so their layout is checked)."""
    for node in graph.nodes:
        if node.op.name == "variable":
            shape = node.outputs[0].shape
            sess.load_variable(node.name, rng.normal(0, scale, size=shape).astype(np.float32))


def _check(exported, sess, feeds, tol=TOL):
    """Max errors over several feeds (batch sizes differ from each other)."""
    worst = {}
    for feed in feeds:
        errs = compare(exported, sess, feed)
        for k, e in errs.items():
            worst[k] = max(worst.get(k, 0.0), e)
    assert worst and max(worst.values()) < tol, worst
    return worst


def _rnn_case(cell_fn, seq, time_major, seed=0):
    rng = np.random.default_rng(seed)
    g = rg.Graph()
    with g.as_default():
        shape = [None, None, IN]
        X = rg.placeholder(rg.float32, shape, name="X")
        L = rg.placeholder(rg.int32, [None], name="L") if seq else None
        out, state = rg.nn.dynamic_rnn(cell_fn(), X, sequence_length=L, dtype=rg.float32,
                                       time_major=time_major)
    sess = _init(g)
    _randomize(sess, g, rng)
    feeds = []
    for batch in (2, 7):
        x = rng.normal(size=(T, batch, IN) if time_major else (batch, T, IN))
        feed = {X: x.astype(np.float32)}
        if seq:
            feed[L] = _lengths(batch, rng)
        feeds.append(feed)
    return g, sess, {"outputs": out, "state": state}, feeds


@pytest.mark.parametrize("route", ["auto", "loop"])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_cells_both_routes(cell, seq, time_major, route):
    g, sess, fetches, feeds = _rnn_case(CELLS[cell], seq, time_major)
    ex = export(fetches, session=sess, route=route)
    (kind,) = ex.routes.values()
    assert kind == ("rnn" if route == "auto" else ("loop" if seq else "scan"))
    op_types = {n.op_type for n in ex.model.graph.node}
    if route == "auto":
        want = {"basic": "RNN", "gru": "GRU"}.get(cell, "LSTM" if "lstm" in cell else "GRU")
        assert want in op_types and not op_types & {"Loop", "Scan"}
    _check(ex, sess, feeds)


def test_rnn_route_matches_independent_numpy_lstm():
    """The ONNX LSTM's output against the LSTM equations written here in NumPy (TF's gate
    order i, j, f, o with the forget bias), not against rnngraph."""
    rng = np.random.default_rng(3)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        cell = rg.nn.LSTMCell(H, forget_bias=0.7)
        out, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
    sess = _init(g)
    _randomize(sess, g, rng)
    ex = export({"out": out}, session=sess)
    x = rng.normal(size=(4, T, IN)).astype(np.float32)
    got = run_onnxruntime(ex, {X: x})["out"]
    k = sess.read_variable(cell.kernel).astype(np.float64)
    b = sess.read_variable(cell.bias).astype(np.float64)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    c = h = np.zeros((4, H))
    want = []
    for t in range(T):
        z = np.concatenate([x[:, t], h], 1) @ k + b
        i, j, f, o = np.split(z, 4, axis=1)
        c = sig(f + 0.7) * c + sig(i) * np.tanh(j)
        h = sig(o) * np.tanh(c)
        want.append(h)
    np.testing.assert_allclose(got, np.stack(want, 1), atol=1e-5)


@pytest.mark.parametrize("route", ["auto", "loop"])
def test_nonzero_initial_state_and_zero_length_rows(route):
    """A zero-length row's final state is its initial state (not zeros)."""
    rng = np.random.default_rng(1)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        c0 = rg.placeholder(rg.float32, [None, H], name="c0")
        h0 = rg.placeholder(rg.float32, [None, H], name="h0")
        init = rg.nn.LSTMStateTuple(c0, h0)
        out, state = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, sequence_length=L,
                                       initial_state=init)
    sess = _init(g)
    _randomize(sess, g, rng)
    ex = export({"outputs": out, "state": state}, session=sess, route=route)
    feed = {X: rng.normal(size=(4, T, IN)).astype(np.float32),
            L: np.array([3, 0, 6, 1], np.int32),
            c0: rng.normal(size=(4, H)).astype(np.float32),
            h0: rng.normal(size=(4, H)).astype(np.float32)}
    got = run_onnxruntime(ex, feed)
    np.testing.assert_allclose(got["state/h"][1], feed[h0][1], atol=1e-6)
    np.testing.assert_allclose(got["state/c"][1], feed[c0][1], atol=1e-6)
    assert not got["outputs"][1].any() and not got["outputs"][0, 3:].any()
    _check(ex, sess, [feed])


@pytest.mark.parametrize("route", ["auto", "loop"])
@pytest.mark.parametrize("seq", [False, True])
def test_multi_rnn_cell_stacked(seq, route):
    cells = lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(H), rg.nn.GRUCell(4),  # noqa: E731
                                        rg.nn.BasicRNNCell(3)])
    g, sess, fetches, feeds = _rnn_case(cells, seq, False, seed=2)
    ex = export(fetches, session=sess, route=route)
    ops = [n.op_type for n in ex.model.graph.node]
    if route == "auto":
        assert [o for o in ops if o in ("LSTM", "GRU", "RNN")] == ["LSTM", "GRU", "RNN"]
    _check(ex, sess, feeds)


@pytest.mark.parametrize("route", ["auto", "loop"])
@pytest.mark.parametrize("seq", [False, True])
def test_bidirectional(seq, route):
    rng = np.random.default_rng(4)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L") if seq else None
        (fw, bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(H), rg.nn.GRUCell(H), X, sequence_length=L, dtype=rg.float32)
        both = rg.concat([fw, bw], axis=2)
    sess = _init(g)
    _randomize(sess, g, rng)
    ex = export({"outputs": both, "fw": s_fw, "bw": s_bw}, session=sess, route=route)
    feeds = []
    for batch in (3, 5):
        feed = {X: rng.normal(size=(batch, T, IN)).astype(np.float32)}
        if seq:
            feed[L] = _lengths(batch, rng)
        feeds.append(feed)
    _check(ex, sess, feeds)


@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("cell", ["projection", "clip", "relu"])
def test_cells_route_one_cannot_express_go_to_loops(cell, seq):
    make = {"projection": lambda: rg.nn.LSTMCell(H, num_proj=3, use_peepholes=True),
            "clip": lambda: rg.nn.LSTMCell(H, cell_clip=0.3),
            "relu": lambda: rg.nn.BasicRNNCell(H, activation=rg.nn.relu)}[cell]
    g, sess, fetches, feeds = _rnn_case(make, seq, False, seed=5)
    ex = export(fetches, session=sess)
    assert set(ex.routes.values()) == {"loop" if seq else "scan"}
    _check(ex, sess, feeds)
    with pytest.raises(ExportError, match=r"route='rnn'.*rnn/while.*test_onnx\.py:\d+"):
        export(fetches, session=sess, route="rnn")


def test_static_rnn_is_plain_onnx():
    rng = np.random.default_rng(6)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, T, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        xs = rg.unstack(rg.transpose(X, perm=[1, 0, 2]), num=T)
        outs, state = rg.nn.static_rnn(rg.nn.LSTMCell(H), xs, dtype=rg.float32,
                                       sequence_length=L)
        y = rg.stack(outs, axis=1)
    sess = _init(g)
    _randomize(sess, g, rng)
    ex = export({"y": y, "state": state}, session=sess)
    assert not ex.routes
    assert not {n.op_type for n in ex.model.graph.node} & {"Loop", "Scan", "LSTM"}
    feeds = [{X: rng.normal(size=(b, T, IN)).astype(np.float32), L: _lengths(b, rng)}
             for b in (2, 6)]
    _check(ex, sess, feeds)


def test_classifier_dense_softmax_argmax_and_dynamic_axes():
    rng = np.random.default_rng(7)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="lengths")
        _, state = rg.nn.dynamic_rnn(rg.nn.GRUCell(H), X, sequence_length=L, dtype=rg.float32)
        logits = rg.layers.dense(state, 4, name="dense")
        probs = rg.nn.softmax(logits)
        pred = rg.argmax(logits, axis=1)
    sess = _init(g)
    _randomize(sess, g, rng)
    model = rg.io.to_onnx({"probs": probs, "pred": pred}, None, session=sess)
    onnx.checker.check_model(model, full_check=True)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input}
    assert dims == {"X": ["batch", "time", IN], "lengths": ["batch"]}
    inits = {i.name for i in model.graph.initializer}
    assert {"dense/kernel", "dense/bias"} <= inits
    assert any(n.startswith("rnn/gru_cell/gates/kernel") for n in inits)
    ex = export({"probs": probs, "pred": pred}, session=sess)
    feeds = [{X: rng.normal(size=(b, T, IN)).astype(np.float32), L: _lengths(b, rng)}
             for b in (1, 9)]
    _check(ex, sess, feeds)


def test_time_major_axes_and_user_dynamic_axes():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H), X, dtype=rg.float32, time_major=True)
    sess = _init(g)
    model = rg.io.to_onnx(out, None, session=sess)
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]]
    assert dims == ["time", "batch"]
    model = rg.io.to_onnx(out, None, session=sess, dynamic_axes={"X": {0: "steps", 1: "N"}})
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]]
    assert dims == ["steps", "N"]
    with pytest.raises(ValueError, match="dynamic_axes names 'Y'"):
        rg.io.to_onnx(out, None, session=sess, dynamic_axes={"Y": {0: "b"}})


def test_while_loop_with_data_dependent_condition_is_a_loop():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None], name="x")
        limit = rg.placeholder(rg.float32, [], name="limit")
        i0 = rg.constant(0, rg.int32)
        i, y = rg.while_loop(lambda i, y: rg.less(rg.reduce_sum(y), limit),
                             lambda i, y: (i + 1, y * 1.5 + 0.25), [i0, x])
    sess = _init(g)
    ex = export({"i": i, "y": y}, session=sess)
    assert ex.routes == {"while": "loop"}
    feeds = [{x: np.array([0.5, 1.0, 0.1], np.float32), limit: np.float32(l)}
             for l in (0.0, 3.0, 50.0)]
    got = run_onnxruntime(ex, feeds[2])
    want = sess.run([i, y], feeds[2])
    assert int(got["i"]) == int(want[0]) > 2
    _check(ex, sess, feeds)


def test_while_loop_with_maximum_iterations():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        y = rg.while_loop(lambda y: rg.reduce_max(y) < 1e6, lambda y: [y * 2.0], [x],
                         maximum_iterations=4)
    sess = _init(g)
    ex = export({"y": y}, session=sess)
    _check(ex, sess, [{x: np.array([1.0, 3.0], np.float32)},
                      {x: np.array([1e6, 1.0], np.float32)}])


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_forward_and_reverse(reverse):
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, None, 2], name="xs")
        init = rg.placeholder(rg.float32, [None, 2], name="init")
        final, ys = rg.lax_scan(lambda c, x: (rg.tanh(c * 0.9 + x), c * x), init, xs,
                            reverse=reverse)
    sess = _init(g)
    ex = export({"final": final, "ys": ys}, session=sess)
    assert ex.routes == {"scan": "scan"}
    rng = np.random.default_rng(8)
    feeds = [{xs: rng.normal(size=(t, b, 2)).astype(np.float32),
              init: rng.normal(size=(b, 2)).astype(np.float32)} for t, b in ((5, 3), (1, 4))]
    _check(ex, sess, feeds)


@pytest.mark.parametrize("trip", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_loop_reading_its_step_index(reverse, trip):
    """With a trip count: an ONNX Loop, rows past the trip count zero, reversed steps landing
    at t. Without: a Scan carrying t as a counter (counting down when reversed)."""
    from rnngraph.ops.loop import build_loop
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, 3], name="xs")
        n = rg.placeholder(rg.int32, [], name="n") if trip else None

        def step(t, carried, seqs):
            (c,), (x,) = carried, seqs
            y = c + x * rg.cast(t, rg.float32)
            return [y], [y * 2.0]

        c0 = rg.zeros([3])
        steps, (final,), (ys,) = build_loop(step, [c0], [xs], n, reverse=reverse)
    sess = _init(g)
    ex = export({"steps": steps, "final": final, "ys": ys}, session=sess)
    assert ex.routes == {"while": "loop" if trip else "scan"}
    rng = np.random.default_rng(9)
    feeds = [{xs: rng.normal(size=(6, 3)).astype(np.float32)} for _ in range(3)]
    if trip:
        for feed, k in zip(feeds, (2, 6, 9)):
            feed[n] = np.int32(k)
    _check(ex, sess, feeds)


def test_unmappable_op_names_op_node_and_line():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 4], name="X")
        w = rg.get_variable("w", [4, 2])
        loss = rg.reduce_mean(rg.square(rg.matmul(X, w)))
        (gw,) = rg.gradients(loss, [w]); line = sys._getframe().f_lineno  # noqa: E702
        train = rg.train.GradientDescentOptimizer(0.1).minimize(loss)
    sess = _init(g)
    with pytest.raises(ExportError) as info:
        export({"g": gw}, session=sess)
    msg = str(info.value)
    assert re.search(r"op '\w+' has no ONNX mapping", msg) and f"test_onnx.py:{line}" in msg
    with pytest.raises(ExportError, match="inference graphs only"):
        export({"train": train}, session=sess)
    with pytest.raises(ExportError, match="pass session="):
        export({"loss": loss})


def test_feeds_cut_the_graph_and_missing_feeds_are_named():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float32, [None, 3], name="a")
        b = rg.placeholder(rg.float32, [None, 3], name="b")
        h = rg.tanh(a, name="h")
        y = rg.add(h, b, name="y")
    sess = _init(g)
    ex = export({"y": y}, feeds={"h_in": h, "b": b}, session=sess)
    assert list(ex.inputs) == ["h_in", "b"]
    with pytest.raises(ExportError, match=r"placeholder 'b' .*needed but not fed"):
        export({"y": y}, feeds=[a], session=sess)


def test_opset_17_and_saved_file(tmp_path):
    g, sess, fetches, feeds = _rnn_case(CELLS["gru"], True, False, seed=10)
    path = tmp_path / "m.onnx"
    ex = export(fetches, path, session=sess, opset=17)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.opset_import[0].version == 17
    _check(ex, sess, feeds)
    with pytest.raises(ValueError, match="opset"):
        export(fetches, session=sess, opset=12)


def test_demo_classifier_same_predictions_on_the_test_set():
    pytest.importorskip("sklearn")
    from rnngraph.demo import build_classifier, load_digit_sequences, train
    data = load_digit_sequences()
    model = build_classifier("lstm", n_neurons=24)
    result = train(model, data, n_epochs=2, progress=False)
    sess = result.session
    with model.graph.as_default():
        pred = rg.argmax(model.logits, axis=1)
    ex = export({"logits": model.logits, "pred": pred}, session=sess)
    assert ex.routes and set(ex.routes.values()) == {"rnn"}
    got = run_onnxruntime(ex, {model.X: data.X_test})
    want_logits, want_pred = sess.run([model.logits, pred], {model.X: data.X_test})
    np.testing.assert_array_equal(got["pred"], want_pred)
    np.testing.assert_allclose(got["logits"], want_logits, atol=1e-4)


def test_nested_loops_read_outer_values():
    """A while_loop inside a scan's body: the inner Loop reads the scan's slice and an
    outer placeholder from the graphs around it."""
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, 2], name="xs")
        scale = rg.placeholder(rg.float32, [], name="scale")
        c0 = rg.zeros([2])

        def step(c, x):
            y = rg.while_loop(lambda y: rg.reduce_sum(y) < 10.0,
                              lambda y: [y * scale + x], [c + 1.0], maximum_iterations=5)
            return y * 0.1, y

        final, ys = rg.lax_scan(step, c0, xs)
    sess = _init(g)
    ex = export({"final": final, "ys": ys}, session=sess)
    assert sorted(ex.routes.values()) == ["loop", "scan"]
    inner = [n for n in ex.model.graph.node if n.op_type == "Scan"][0]
    assert any(n.op_type == "Loop" for n in inner.attribute[0].g.node)
    rng = np.random.default_rng(11)
    _check(ex, sess, [{xs: rng.uniform(0, 1, size=(t, 2)).astype(np.float32),
                       scale: np.float32(s)} for t, s in ((4, 1.5), (1, 0.5))])


@pytest.mark.parametrize("route", ["auto", "loop"])
def test_cli_export_example_with_check(tmp_path, capsys, route):
    from rnngraph.cli import main
    out = tmp_path / "seq.onnx"
    assert main(["export", "seq_length", "-o", str(out), "--check", "--route", route]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "check passed" in text
    errors = [float(e) for e in re.findall(r"max \|onnxruntime - rnngraph\| = (\S+)", text)]
    assert len(errors) == 2 and max(errors) < TOL
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_cli_export_saved_file(tmp_path, capsys):
    from rnngraph.cli import main
    g, sess, fetches, _ = _rnn_case(CELLS["lstm_peepholes"], True, False, seed=12)
    saved = tmp_path / "model.npz"
    rg.save(str(saved), session=sess, fetches={"outputs": fetches["outputs"],
                                               "h": fetches["state"].h})
    out = tmp_path / "model.onnx"
    assert main(["export", str(saved), "-o", str(out), "--check", "--batch", "4"]) == 0
    text = capsys.readouterr().out
    assert "outputs, h" in text and "rnn/while: rnn" in text and "check passed" in text
    # the saved weights, not fresh ones: the exported model matches the original session
    ex = export({"outputs": fetches["outputs"]}, session=sess)
    model = onnx.load(str(out))
    mine = {i.name: onnx.numpy_helper.to_array(i) for i in ex.model.graph.initializer}
    theirs = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for name in mine:
        if name.endswith(("onnx_W", "onnx_R", "onnx_B", "onnx_P")):
            np.testing.assert_array_equal(mine[name], theirs[name])


def test_cli_export_names_what_cannot_be_exported(tmp_path, capsys):
    from rnngraph.cli import main
    assert main(["export", "lstm", "-o", str(tmp_path / "x.onnx"), "--route", "rnn",
                 "--opset", "17"]) == 0
    assert main(["export", "nonexistent_example"]) != 0
    assert "neither a file nor a built-in example" in capsys.readouterr().err


def test_shape_and_indexing_ops():
    """Ops the table maps that the RNN tests do not reach, against rnngraph on two shapes."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 4, 6], name="x")
        idx = rg.placeholder(rg.int32, [None], name="idx")
        keep = rg.placeholder_with_default(rg.constant(0.5), [], name="keep")
        n = rg.dim(x, 0)
        outs = {
            "getitem": x[:, ::-2, None, 1],
            "getitem_neg": x[-1, 1:3, ...],
            "reshape": rg.reshape(x, [-1, 6]),
            "squeeze": rg.squeeze(rg.expand_dims(x, 1), [1]),
            "split": rg.split(x, [2, -1, 1], axis=2)[1],
            "unstack": rg.unstack(x, axis=1)[2],
            "stack": rg.stack([x[:, 0], x[:, 1]], axis=-1),
            "reduce": rg.reduce_mean(x, axis=[1, 2], keepdims=True) + rg.reduce_max(x),
            "onehot": rg.one_hot(idx, 5),
            "gather": rg.gather(rg.reshape(x, [-1, 6]), idx),
            "range": rg.range(0, n) * 2,
            "fill": rg.fill([n, 2], 3.0) * keep,
            "reverse": rg.reverse_sequence(x, rg.fill([n], 3, rg.int32), seq_axis=1,
                                           batch_axis=0),
            "mask": rg.cast(rg.sequence_mask(idx, 4) if hasattr(rg, "sequence_mask") else
                            rg.less(rg.cast(idx, rg.float32), 2.0), rg.float32),
            "logsm": rg.nn.log_softmax(x, axis=1),
            "where": rg.where(rg.greater(x, 0.0), rg.square(x), rg.negative(x)),
            "transpose": rg.matrix_transpose(x) @ x,
            "concat": rg.concat([x, rg.sigmoid(x)], axis=-1),
            "xent": rg.nn.sparse_softmax_cross_entropy_with_logits(
                labels=rg.maximum(idx, 0), logits=x[:, 0]),
            "argmax": rg.argmax(x, axis=2),
        }
    sess = _init(g)
    ex = export(outs, session=sess)
    rng = np.random.default_rng(13)
    _check(ex, sess, [{x: rng.normal(size=(b, 4, 6)).astype(np.float32),
                       idx: rng.integers(-1, 6, size=b).astype(np.int32)} for b in (3, 5)])


def test_float64_goes_to_loops_static_shapes():
    """float64 cells take route 2 under route='auto' (onnxruntime's RNN ops are float32 only);
    placeholders with every dim static export with static dims."""
    rng = np.random.default_rng(14)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [4, 5, 3], name="X")
        L = rg.placeholder(rg.int32, [4], name="L")
        out, st = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), X, sequence_length=L, dtype=rg.float64)
    sess = _init(g)
    ex = export({"out": out, "state": st}, session=sess)
    assert ex.routes == {"rnn/while": "loop"}
    dims = [d.dim_value for d in ex.model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [4, 5, 3]
    _check(ex, sess, [{X: rng.normal(size=(4, 5, 3)), L: np.array([5, 0, 2, 3], np.int32)}],
           tol=1e-12)
    assert {n.op_type for n in export(out, session=sess, route="rnn").model.graph.node} \
        >= {"GRU"}


def test_unmappable_op_inside_a_loop_body_names_its_line(monkeypatch):
    from rnngraph.io.onnx import ops as onnx_ops
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, IN], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H), X, dtype=rg.float32)
        line = sys._getframe().f_lineno - 1
    sess = _init(g)
    monkeypatch.delitem(onnx_ops.TABLE, "tanh")   # as if tanh had no ONNX mapping
    with pytest.raises(ExportError, match=rf"op 'tanh' has no ONNX mapping: tanh "
                                          rf"'rnn/while/[^']*' \(built at "
                                          rf"test_onnx\.py:{line}\)"):
        export(out, session=sess, route="loop")
    assert export(out, session=sess).routes == {"rnn/while": "rnn"}   # route 1 needs no tanh
