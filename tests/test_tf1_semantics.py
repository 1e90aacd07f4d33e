"""TF1 semantics that ported code relies on silently (review B): what tf.gradients and
tf.while_loop return, tf.where's row selection by a vector condition, constant_initializer's
layout of a list, and run-time id checks (InvalidArgumentError, as TF1's CPU kernels raise).

Each expectation is TF 1.15's documented behaviour; the numbers are checked against NumPy."""
from __future__ import annotations

import collections
import os

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.nn import LSTMStateTuple

HERE = os.path.basename(__file__)


# --- H1: tf.gradients always returns a list -----------------------------------------------------
def test_gradients_of_one_x_is_a_list_so_index_0_is_the_whole_gradient():
    """`tf.gradients(loss, x)[0]` (FGSM, saliency maps) is the gradient, not its first row."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [2, 3], name="x")
        loss = rg.reduce_sum(x * x)
        grads = rg.gradients(loss, x)
        dx = rg.gradients(loss, x)[0]
    assert isinstance(grads, list) and len(grads) == 1
    xv = np.arange(6.0).reshape(2, 3) + 1.0
    got_list, got = rg.Session(g).run([grads, dx], {x: xv})
    np.testing.assert_allclose(got, 2 * xv)
    np.testing.assert_allclose(got_list[0], 2 * xv)


def test_gradients_of_a_tuple_of_xs_is_a_list_with_none_for_unused():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [3], name="x")
        unused = rg.placeholder(rg.float64, [3], name="u")
        grads = rg.gradients(rg.reduce_sum(rg.tanh(x)), (x, unused))
    assert isinstance(grads, list) and grads[1] is None
    xv = np.array([0.1, -0.5, 2.0])
    np.testing.assert_allclose(rg.Session(g).run(grads[0], {x: xv}), 1 - np.tanh(xv) ** 2)


# --- H2: tf.while_loop with one loop variable returns it, not a list -----------------------------
def _run(fetch, feed=None, graph=None):
    return rg.Session(graph or rg.get_default_graph()).run(fetch, feed or {})


def test_while_loop_of_a_list_of_one_returns_the_value():
    """TF1's docs example: `r = tf.while_loop(c, b, [i])` is the tensor, so `r * 2` is 20."""
    g = rg.Graph()
    with g.as_default():
        i = rg.constant(0)
        r = rg.while_loop(lambda i: rg.less(i, 10), lambda i: rg.add(i, 1), [i])
        t = rg.while_loop(lambda i: i < 10, lambda i: (i + 1,), (i,))
        doubled = r * 2
    assert isinstance(r, rg.Value) and isinstance(t, rg.Value)
    assert _run([r, t, doubled], graph=g) == [10, 10, 20]


def test_while_loop_return_same_structure_keeps_the_list():
    g = rg.Graph()
    with g.as_default():
        i = rg.constant(0)
        r = rg.while_loop(lambda i: i < 10, lambda i: [i + 1], [i], return_same_structure=True)
        t = rg.while_loop(lambda i: i < 10, lambda i: (i + 1,), (i,), return_same_structure=True)
        v = rg.while_loop(lambda i: i < 10, lambda i: i + 1, i)   # a Value in, a Value out
        pair = rg.while_loop(lambda a, b: a < 3, lambda a, b: (a + 1, b * 2.0),
                             [i, rg.constant(1.0)])
    assert isinstance(r, list) and len(r) == 1
    assert isinstance(t, tuple) and len(t) == 1
    assert isinstance(v, rg.Value)
    assert isinstance(pair, list) and len(pair) == 2
    assert _run([r[0], t[0], v, pair[0], pair[1]], graph=g) == [10, 10, 10, 3, 8.0]
    with g.as_default(), pytest.raises(TypeError, match=f"return_same_structure.*{HERE}"):
        rg.while_loop(lambda i: i < 10, lambda i: i + 1, [i], return_same_structure="yes")


def test_while_loop_of_one_nested_structure_returns_it():
    """One loop variable in TF's count is one tensor: a list holding an LSTMStateTuple (two
    tensors) stays a list; a namedtuple of one field gives the field (TF1: packed[0])."""
    One = collections.namedtuple("One", ["h"])
    g = rg.Graph()
    with g.as_default():
        c0, h0 = rg.constant(np.ones(2)), rg.constant(np.full(2, 2.0))
        state = rg.while_loop(lambda s: rg.reduce_sum(s.c) < 100.0,
                              lambda s: [LSTMStateTuple(s.c * 2.0, s.h + 1.0)],
                              [LSTMStateTuple(c0, h0)])
        one = rg.while_loop(lambda h: rg.reduce_sum(h) < 100.0, lambda h: One(h * 3.0), One(h0))
    assert isinstance(state, list) and isinstance(state[0], LSTMStateTuple)
    assert isinstance(one, rg.Value)
    c, h, o = _run([state[0].c, state[0].h, one], graph=g)
    np.testing.assert_allclose(c, np.full(2, 64.0))   # 2 * 2**k >= 100 first at k = 6
    np.testing.assert_allclose(h, np.full(2, 8.0))
    np.testing.assert_allclose(o, np.full(2, 54.0))   # 4 * 3**k >= 100 first at k = 3


def test_gradient_through_a_while_loop_of_one_variable():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [3], name="x")
        y = rg.while_loop(lambda v: rg.reduce_max(v) < 1e9, lambda v: [v * v], [x],
                          maximum_iterations=3)
        dx, = rg.gradients(rg.reduce_sum(y), x)
    xv = np.array([0.3, -0.7, 0.9])
    got, gy = _run([y, dx], {x: xv}, g)
    np.testing.assert_allclose(got, xv ** 8)   # three squarings
    np.testing.assert_allclose(gy, 8 * xv ** 7)


# --- H3: tf.where(vector, x, y) selects rows --------------------------------------------------
def test_where_with_a_vector_condition_selects_rows():
    """tf.where(finished, zeros, output), as in hand-written decoders: row i from x where
    finished[i]. Before, the condition lined up with the last axis (columns)."""
    cond = np.array([True, False, False])
    xv = np.arange(9.0, dtype=np.float32).reshape(3, 3)
    g = rg.Graph()
    with g.as_default():
        out = rg.where(rg.constant(cond), rg.zeros([3, 3]), rg.constant(xv))
        wide = rg.where(rg.constant(cond), rg.zeros([3, 4]), rg.ones([3, 4]))   # batch != last
        deep = rg.where(rg.constant(cond), rg.constant(np.ones((3, 2, 4))), -1.0)
    got, w, d = _run([out, wide, deep], graph=g)
    np.testing.assert_array_equal(got, np.where(cond[:, None], 0.0, xv))
    np.testing.assert_array_equal(w, np.where(cond[:, None], 0.0, np.ones((3, 4))))
    np.testing.assert_array_equal(d, np.where(cond[:, None, None], np.ones((3, 2, 4)), -1.0))


def test_where_same_shapes_and_scalars_are_elementwise_as_before():
    c = np.array([[True, False], [False, True]])
    v = np.array([True, False])
    g = rg.Graph()
    with g.as_default():
        a = rg.where(rg.constant(c), rg.ones([2, 2]), 0.0)
        b = rg.where(rg.constant(v), rg.constant([1.0, 2.0]), rg.constant([3.0, 4.0]))
    got_a, got_b = _run([a, b], graph=g)
    np.testing.assert_array_equal(got_a, c.astype(np.float32))
    np.testing.assert_array_equal(got_b, [1.0, 4.0])


def test_where_vector_condition_with_unknown_batch_and_its_gradient():
    """Rows picked at run time with the batch unknown at build time; the gradient sends each
    row's cotangent to x or y by the row's flag (checked against NumPy)."""
    rng = np.random.default_rng(0)
    cv = np.array([True, False, True, True])
    xv, yv, rv = (rng.standard_normal((4, 2, 3)) for _ in range(3))
    g = rg.Graph()
    with g.as_default():
        c = rg.placeholder(rg.bool_, [None], name="c")
        x = rg.placeholder(rg.float64, [None, 2, 3], name="x")
        y = rg.placeholder(rg.float64, [None, 2, 3], name="y")
        r = rg.placeholder(rg.float64, [None, 2, 3], name="r")
        out = rg.where(c, x, y)
        dx, dy = rg.gradients(rg.reduce_sum(out * r), [x, y])
    got, gx, gy = _run([out, dx, dy], {c: cv, x: xv, y: yv, r: rv}, g)
    rows = cv[:, None, None]
    np.testing.assert_allclose(got, np.where(rows, xv, yv))
    np.testing.assert_allclose(gx, np.where(rows, rv, 0.0))
    np.testing.assert_allclose(gy, np.where(rows, 0.0, rv))


def test_where_vector_condition_of_the_wrong_length_names_the_line():
    g = rg.Graph()
    with g.as_default():
        cond = rg.constant([True, False, True])
        with pytest.raises(ValueError, match=f"where at {HERE}:[0-9]+.*size 3.*got 4"):
            rg.where(cond, rg.zeros([4, 3]), rg.ones([4, 3]))
        with pytest.raises(rg.ShapeError):
            rg.where(cond, rg.zeros([3, 3]), rg.ones([2, 3]))   # x and y themselves differ


# --- H10: constant_initializer lays a list out over the shape -------------------------------------
def test_constant_initializer_list_is_reshaped_padded_with_its_last_value_or_refused():
    g = rg.Graph()
    with g.as_default():
        good = rg.get_variable("good", [2], initializer=rg.constant_initializer(5.0))
        full = rg.get_variable("full", [2, 2], initializer=rg.constant_initializer([1, 2, 3, 4]))
        short = rg.get_variable("short", [2, 2], initializer=rg.constant_initializer([1.0, 2.0]))
        one = rg.get_variable("one", [3], initializer=rg.constant_initializer([7.0]))
        flat = rg.get_variable("flat", [4], initializer=rg.constant_initializer(
            np.array([[1.0, 2.0], [3.0, 4.0]])))           # row-major, not by the array's shape
        ints = rg.get_variable("ints", [3], rg.int32, initializer=rg.constant_initializer([4, 5]))
        n_vars = len(rg.global_variables())
        with pytest.raises(ValueError, match=f"'long' \\(at {HERE}:[0-9]+\\).*too many values, "
                                             "5 for shape \\[2, 2\\]"):
            rg.get_variable("long", [2, 2], initializer=rg.constant_initializer([1, 2, 3, 4, 5]))
        assert len(rg.global_variables()) == n_vars   # nothing built
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    sess.run(init)
    sess.run(init)   # a refused initializer leaves nothing behind to fail on
    got = sess.run([good, full, short, one, flat, ints])
    np.testing.assert_array_equal(got[0], [5.0, 5.0])
    np.testing.assert_array_equal(got[1], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(got[2], [[1, 2], [2, 2]])   # TF1 pads (not [1, 2] twice)
    np.testing.assert_array_equal(got[3], [7, 7, 7])
    np.testing.assert_array_equal(got[4], [1, 2, 3, 4])
    assert got[5].dtype == np.int32 and got[5].tolist() == [4, 5, 5]


def test_constant_initializer_from_a_variable_scope_is_checked_per_variable():
    g = rg.Graph()
    with g.as_default():
        with rg.variable_scope("s", initializer=rg.constant_initializer([1.0, 2.0, 3.0])):
            a = rg.get_variable("a", [3])
            b = rg.get_variable("b", [2, 2])
            with pytest.raises(ValueError, match="'s/c'.*too many values, 3 for shape \\[2\\]"):
                rg.get_variable("c", [2])
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    sess.run(init)
    np.testing.assert_array_equal(sess.run(a), [1, 2, 3])
    np.testing.assert_array_equal(sess.run(b), [[1, 2], [3, 3]])


# --- H4 / M4: ids out of range raise InvalidArgumentError ---------------------------------------
def _embedding_graph():
    g = rg.Graph()
    with g.as_default():
        E = rg.get_variable("E", [5, 2], initializer=rg.constant_initializer(
            np.arange(10.0).reshape(5, 2)))
        ids = rg.placeholder(rg.int32, [None], name="ids")
        rows = rg.nn.embedding_lookup(E, ids)
        dE, = rg.gradients(rg.reduce_sum(rows * rows), E)
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    sess.run(init)
    return sess, ids, rows, dE


@pytest.mark.parametrize("bad,at", [(-1, 1), (5, 2), (7, 0)])
def test_embedding_lookup_id_out_of_range_raises_invalid_argument(bad, at):
    sess, ids, rows, dE = _embedding_graph()
    fed = [1, 2, 3]
    fed[at] = bad
    with pytest.raises(rg.InvalidArgumentError,
                       match=f"gather .*built at {HERE}:[0-9]+.*indices\\[{at}\\] = {bad} is "
                             "not in \\[0, 5\\)"):
        sess.run(rows, {ids: fed})
    with pytest.raises(rg.InvalidArgumentError, match=f"= {bad} is not in \\[0, 5\\)"):
        sess.run(dE, {ids: fed})   # the gradient alone (gather_grad) checks too
    # the session stays usable; in range the gradient is NumPy's add.at of 2 * rows
    E = np.arange(10.0).reshape(5, 2)
    got, grad = sess.run([rows, dE], {ids: [4, 0, 4]})
    ref = np.zeros_like(E)
    np.add.at(ref, [4, 0, 4], 2 * E[[4, 0, 4]])
    np.testing.assert_array_equal(got, E[[4, 0, 4]])
    np.testing.assert_allclose(grad, ref)


def test_gather_of_2d_ids_names_the_position():
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int64, [2, 2], name="ids")
        out = rg.gather(rg.constant([1.0, 2.0, 3.0]), ids)
    with pytest.raises(rg.InvalidArgumentError, match="indices\\[1,0\\] = -3 is not in \\[0, 3\\)"):
        rg.Session(g).run(out, {ids: np.array([[0, 2], [-3, 1]])})
    assert rg.Session(g).run(out, {ids: np.array([[0, 2], [2, 1]])}).tolist() == [[1, 3], [3, 2]]


def test_scatter_add_rows_checks_its_ids():
    from rnngraph.ops.scatter import scatter_add_rows
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [None], name="ids")
        out = scatter_add_rows(rg.zeros([3, 2]), ids, rg.ones([2, 2]))
    with pytest.raises(rg.InvalidArgumentError, match="scatter_add_rows.*indices\\[1\\] = 3"):
        rg.Session(g).run(out, {ids: [0, 3]})
    np.testing.assert_array_equal(rg.Session(g).run(out, {ids: [2, 2]}),
                                  [[0, 0], [0, 0], [2, 2]])


def _embedded_rnn():
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [2, None], name="ids")
        W = rg.get_variable("emb", [6, 3], initializer=rg.random_normal_initializer(seed=1))
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), rg.nn.embedding_lookup(W, ids),
                                   dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    return g, ids, fetches


SINK = {"stream_outputs": "always", "host_sequences": True, "sink_gather": True,
        "hoist_sequence": False, "sink_accumulators": False, "sink_outputs": False}


@pytest.mark.parametrize("passes", [None, SINK], ids=["whole", "sink_gather"])
def test_embedding_ids_out_of_range_raise_in_rnn_models(passes):
    """With sink_gather each step gathers its rows inside the loops (and the backward loop
    scatters them): those per-step gathers raise too, and in-range runs are unchanged."""
    g, ids, fetches = _embedded_rnn()
    good = np.array([[0, 5, 2, 1], [3, 3, 4, 0]], np.int32)
    ref = rg.Session(g, seed=3).run(fetches, {ids: good})
    sess = rg.Session(g, seed=3, passes=passes) if passes else rg.Session(g, seed=3)
    for a, b in zip(sess.run(fetches, {ids: good}), ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if passes:   # the lookup runs per step in the loops, its gradient scatters per step
        (prog,) = [p for p in sess.programs() if any(n.op.name == "loop" for n in p.graph.nodes)]
        inside = [n.op.name for loop in prog.graph.nodes if loop.op.name == "loop"
                  for n in loop.op.body.nodes]
        outside = [n.op.name for n in prog.graph.nodes]
        assert "gather" in inside and "scatter_add_rows" in inside
        assert "gather" not in outside and "gather_grad" not in outside
    for bad in (-1, 6):
        fed = good.copy()
        fed[1, 2] = bad
        with pytest.raises(rg.InvalidArgumentError, match=f"= {bad} is not in \\[0, 6\\)"):
            sess.run(fetches, {ids: fed})
    for a, b in zip(sess.run(fetches, {ids: good}), ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gather_inside_a_while_loop_raises():
    g = rg.Graph()
    with g.as_default():
        table = rg.constant(np.arange(4.0))
        ids = rg.placeholder(rg.int32, [None], name="ids")
        n = rg.dim(ids, 0)
        _, total = rg.while_loop(lambda t, s: t < n,
                                 lambda t, s: (t + 1, s + rg.gather(table, rg.gather(ids, t))),
                                 [rg.constant(0), rg.constant(0.0, rg.float64)])
    sess = rg.Session(g)
    assert sess.run(total, {ids: [1, 3, 3]}) == 7.0
    with pytest.raises(rg.InvalidArgumentError, match="is not in \\[0, 4\\)"):
        sess.run(total, {ids: [1, -2, 3]})


def test_embedding_ids_out_of_range_raise_with_the_accelerated_backend(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)
    g, ids, fetches = _embedded_rnn()
    sess = rg.Session(g, seed=3, accelerate=True)
    good = np.array([[0, 5, 2, 1], [3, 3, 4, 0]], np.int32)
    ref = rg.Session(g, seed=3, accelerate=False).run(fetches, {ids: good})
    for a, b in zip(sess.run(fetches, {ids: good}), ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(rg.InvalidArgumentError, match="= -1 is not in \\[0, 6\\)"):
        sess.run(fetches, {ids: np.where(good == 4, -1, good)})


@pytest.mark.parametrize("label", [3, -1])
def test_sparse_xent_label_out_of_range_raises_invalid_argument(label):
    g = rg.Graph()
    with g.as_default():
        lab = rg.placeholder(rg.int32, [None], name="lab")
        logits = rg.placeholder(rg.float32, [None, 3], name="logits")
        xent = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=lab, logits=logits)
    sess = rg.Session(g)
    with pytest.raises(rg.InvalidArgumentError, match=f"built at {HERE}:[0-9]+.*\\[0, 3\\)"):
        sess.run(xent, {lab: [0, label], logits: np.zeros((2, 3))})
    np.testing.assert_allclose(sess.run(xent, {lab: [0, 2], logits: np.zeros((2, 3))}),
                               np.full(2, np.log(3.0)), rtol=1e-6)


def test_reverse_sequence_lengths_are_checked():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        lengths = rg.placeholder(rg.int32, [None], name="lengths")
        out = rg.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    sess = rg.Session(g)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    for bad, msg in [([1, 5], "seq_lengths\\[1\\] = 5 is not in \\[0, 3\\]"),
                     ([-1, 2], "seq_lengths\\[0\\] = -1 is not in \\[0, 3\\]"),
                     ([1], "seq_lengths has 1 entries but x has 2 rows")]:
        with pytest.raises(rg.InvalidArgumentError, match=f"built at {HERE}:[0-9]+.*{msg}"):
            sess.run(out, {x: xv, lengths: bad})
    np.testing.assert_array_equal(sess.run(out, {x: xv, lengths: [3, 2]}),
                                  [[2, 1, 0], [4, 3, 5]])


def test_a_constant_initializer_saved_before_tf1s_layout_keeps_its_broadcast_meaning():
    """Files written before constant_initializer followed TF1 (pad with the last value) hold no
    `layout`: they are read with the broadcasting they were saved with, so a reloaded graph
    initialises as it did when saved; new files say `tf1`."""
    from rnngraph.io.codec import ArrayTable, Decoder, encode_value
    from rnngraph.ops import initializers as inits
    arrays = ArrayTable()
    record = encode_value(inits.Constant([1.0, 2.0, 3.0]), arrays, "test")
    assert record["params"].pop("layout") == "tf1"   # (as a file written before it was)
    old = Decoder({}, arrays).value(record)
    assert old.layout == "broadcast"
    np.testing.assert_array_equal(old((2, 3), np.float32, None), [[1, 2, 3], [1, 2, 3]])
    new = inits.Constant([1.0, 2.0, 3.0])
    assert new.params()["layout"] == "tf1"
    np.testing.assert_array_equal(new((2, 3), np.float32, None), [[1, 2, 3], [3, 3, 3]])
    with pytest.raises(ValueError, match="does not broadcast"):
        old.check_shape((2, 4), "a variable")
    g = rg.Graph()   # a new save round-trips the tf1 layout
    with g.as_default():
        b = rg.get_variable("b", [2, 3], initializer=rg.constant_initializer([1.0, 2.0]))
        init = rg.global_variables_initializer()
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.rgz")
        rg.save(path, graph=g, fetches={"b": b, "init": init})
        loaded = rg.io.read(path)
    sess = rg.Session(loaded.graph)
    sess.run(loaded.fetches["init"])
    np.testing.assert_array_equal(sess.run(loaded.fetches["b"]), [[1, 2, 2], [2, 2, 2]])


# --- a loop body returning a value of the enclosing graph unchanged ------------------------------
def test_a_loop_body_may_return_an_outer_tensor_unchanged():
    """TF1 allows a while_loop / scan body to return a tensor built outside the loop as it is
    (it is read as a loop invariant). Before, the graph built and its run failed: the value
    was not in the graph being compiled. Gradients reach the outer tensor once per step."""
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float64, [2], name="a")
        x = rg.placeholder(rg.float64, [None, 2], name="x")
        s = rg.scan(lambda acc, xi: a, x, initializer=rg.zeros([2], rg.float64))
        _, w = rg.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, a),
                             [rg.constant(0), rg.zeros([2], rg.float64)])
        loss = rg.reduce_sum(s * x) + rg.reduce_sum(w)
        da, dx = rg.gradients(loss, [a, x])
    fa, fx = np.array([1.0, -2.0]), np.arange(6.0).reshape(3, 2)
    got = rg.Session(g).run([s, w, da, dx], {a: fa, x: fx})
    np.testing.assert_array_equal(got[0], np.tile(fa, (3, 1)))
    np.testing.assert_array_equal(got[1], fa)
    np.testing.assert_array_equal(got[2], fx.sum(axis=0) + 1.0)
    np.testing.assert_array_equal(got[3], np.tile(fa, (3, 1)))


def test_a_loop_condition_may_be_an_outer_bool():
    g = rg.Graph()
    with g.as_default():
        go = rg.placeholder(rg.bool, [], name="go")
        n = rg.while_loop(lambda i: go, lambda i: i + 1, [rg.constant(0)],
                          maximum_iterations=5)
    sess = rg.Session(g)
    assert sess.run(n, {go: True}) == 5 and sess.run(n, {go: False}) == 0
    assert rg.bool == np.dtype(bool)   # (tf.bool)


@pytest.mark.parametrize("how", ["assign_add", "under_control_dependencies"])
def test_an_assign_inside_a_loop_body_is_refused(how):
    """TF1 runs an assign in a while_loop body once per step; rnngraph writes a run's variables
    once, so the variable ended at 1.0 (passes on) or 0.0 (off) where TF1 gives 4.0, silently.
    Now it is a NotImplementedError naming the op, the variable and the user's line."""
    g = rg.Graph()
    with g.as_default():
        acc = rg.Variable(0.0, name="acc")

        def body(i, s):
            up = rg.assign_add(acc, 1.0)
            if how == "assign_add":
                return i + 1, s + up * 0.0
            with rg.control_dependencies([up]):
                return i + 1, s + 1.0
        with pytest.raises(NotImplementedError,
                           match=r"assign 'while/AssignAdd' \(built at test_tf1_semantics.py:\d+\) "
                                 r"writes 'acc:0' inside a loop body"):
            rg.while_loop(lambda i, s: i < 4, body, [rg.constant(0), rg.constant(0.0)])
