"""TF1 session and graph API as ported code uses it: nested feed keys (a model's initial state
fed the state an earlier run returned), fetching by tensor and operation name,
Graph.get_tensor_by_name / get_operation_by_name, Session.as_default, TensorShape/Dimension,
and Saver restoring a checkpoint saved by the same model without random ops."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.ir.types import TensorShape, UNKNOWN_DIMENSION, dimension_value


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- H8: nested feed keys ----------------------------------------------------------------------
def _two_layer_lstm(g, units=3, batch=2, steps=4, depth=2):
    with g.as_default():
        x = rg.placeholder(rg.float32, [batch, steps, depth], name="x")
        cell = rg.nn.rnn_cell.MultiRNNCell([rg.nn.rnn_cell.LSTMCell(units) for _ in range(2)])
        init = cell.zero_state(batch, rg.float32)
        out, state = rg.nn.dynamic_rnn(cell, x, initial_state=init, dtype=rg.float32)
    return x, init, out, state


def test_feeding_a_multirnn_state_tuple_continues_the_sequence():
    """char-rnn's idiom: feed_dict={initial_state: state}, state what the last run returned.
    Two runs over halves of a sequence, chained through the fed state, equal one run over the
    whole sequence (checked against an independent graph that unrolls 8 steps at once)."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((2, 8, 2)).astype(np.float32)
    g = rg.Graph()
    x, init, out, state = _two_layer_lstm(g)
    assert isinstance(init, tuple) and isinstance(init[0], rg.nn.rnn_cell.LSTMStateTuple)
    sess = rg.Session(g)
    with g.as_default():
        sess.run(rg.global_variables_initializer())
    o1, s1 = sess.run([out, state], {x: xs[:, :4]})
    assert isinstance(s1[1], rg.nn.rnn_cell.LSTMStateTuple)
    o2, s2 = sess.run([out, state], {x: xs[:, 4:], init: s1})

    g8 = rg.Graph()
    x8, _, out8, state8 = _two_layer_lstm(g8, steps=8)
    s8 = rg.Session(g8)   # (same seed, same variable names: the same weights)
    with g8.as_default():
        s8.run(rg.global_variables_initializer())
    o8, st8 = s8.run([out8, state8], {x8: xs})
    np.testing.assert_allclose(np.concatenate([o1, o2], axis=1), o8, rtol=1e-5, atol=1e-6)
    for a, b in zip(rg.nest.flatten(s2), rg.nest.flatten(st8)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the fed state changed the result: the second half from a zero state differs
    o2_zero = sess.run(out, {x: xs[:, 4:]})
    assert not np.allclose(o2_zero, o2)


def test_feeding_an_lstm_state_tuple_against_numpy():
    rng = np.random.default_rng(1)
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [1, 1, 2])
        cell = rg.nn.rnn_cell.BasicLSTMCell(3)
        init = cell.zero_state(1, rg.float32)
        _, state = rg.nn.dynamic_rnn(cell, x, initial_state=init, dtype=rg.float32)
        kernel, bias = rg.global_variables()
    sess = rg.Session(g)
    c0 = rng.standard_normal((1, 3)).astype(np.float32)
    h0 = rng.standard_normal((1, 3)).astype(np.float32)
    xv = rng.standard_normal((1, 1, 2)).astype(np.float32)
    # as a value: the LSTMStateTuple of arrays, a plain tuple, a list
    for fed in (rg.nn.rnn_cell.LSTMStateTuple(c0, h0), (c0, h0), [c0, h0]):
        c, h = sess.run(state, {x: xv, init: fed})
        W, b = sess.read_variable(kernel), sess.read_variable(bias)
        z = np.concatenate([xv[:, 0], h0], axis=1) @ W + b
        i, j, f, o = np.split(z, 4, axis=1)   # TF's gate order; forget bias 1.0
        c_want = c0 * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
        np.testing.assert_allclose(c, c_want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h, np.tanh(c_want) * _sigmoid(o), rtol=1e-5, atol=1e-6)


def test_nested_keys_of_names_and_memory_plan():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float32, [2], name="a")
        b = rg.placeholder(rg.float32, [2], name="b")
        y = a * 2.0 + b
    sess = rg.Session(g)
    np.testing.assert_allclose(sess.run(y, {("a:0", b): ([1, 2], [10, 20])}), [12, 24])
    plan = sess.memory_plan(y, {(a, b): ((2,), (2,))})
    assert plan is not None


def test_nested_feed_of_the_wrong_structure_names_the_key():
    g = rg.Graph()
    x, init, out, state = _two_layer_lstm(g)
    sess = rg.Session(g)
    xs = np.zeros((2, 4, 2), np.float32)
    s = sess.run(state, {x: xs})
    with pytest.raises(ValueError, match=r"feed_dict key tuple\(LSTMStateTuple\(c=.*is a tuple "
                                         r"of 2 tensors, but its value is a tuple of 1"):
        sess.run(out, {x: xs, init: (s[0],)})
    with pytest.raises(ValueError, match=r"at \[1\] is a LSTMStateTuple of 2 tensors, but its "
                                         r"value is an array of shape \(2, 2, 3\)"):
        sess.run(out, {x: xs, init: (s[0], np.stack(s[1]))})
    with pytest.raises(ValueError, match="feeds .* twice"):
        sess.run(out, {x: xs, init: s, init[0].c: s[0].c})
    assert sess.run(out, {x: xs, init: s}).shape == (2, 4, 3)   # (the session still works)


def test_feed_key_error_says_what_can_be_fed():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2])
        y = x + 1.0
        z = y * 2.0
    sess = rg.Session(g)
    with pytest.raises(TypeError, match=r"feed_dict keys must be tensors of this graph \(a "
                                        r"placeholder, or any other tensor.*got int"):
        sess.run(y, {3: [1.0, 2.0]})
    # a non-placeholder tensor can be fed: its value replaces what it computes
    np.testing.assert_allclose(sess.run(z, {y: [5.0, 6.0]}), [10, 12])


# --- M6: names as fetches, get_tensor_by_name / get_operation_by_name ----------------------------
def test_fetch_by_tensor_name_and_operation_name():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 2], name="X")
        w = rg.get_variable("w", [2, 1], initializer=rg.ones_initializer())
        y = rg.matmul(x, w, name="MatMul")
        step = rg.assign(w, w * 2.0, name="double")
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    sess.run(init)
    xv = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_allclose(sess.run("MatMul:0", {x: xv}), [[3.0]])
    got = sess.run({"y": "MatMul:0", "pair": ("MatMul:0", y)}, {"X:0": xv})
    np.testing.assert_allclose(got["pair"][0], got["pair"][1])
    # an operation name runs the node and gives None (TF1)
    assert sess.run("double") is None
    np.testing.assert_allclose(sess.read_variable(w), [[2.0], [2.0]])
    assert sess.run(["double", "MatMul:0"], {x: xv})[0] is None
    np.testing.assert_allclose(sess.read_variable(w), [[4.0], [4.0]])
    assert step.name == "double:0"
    with pytest.raises(ValueError, match=r"Fetch argument 'nope:0' cannot be interpreted as a "
                                         r"Tensor.*operation, 'nope', does not exist"):
        sess.run("nope:0")
    with pytest.raises(ValueError, match=r"'MatMul:3'.*exists but only has 1 outputs"):
        sess.run(["MatMul:3"])
    with pytest.raises(ValueError, match=r"'nope' refers to an Operation not in the graph"):
        sess.run({"a": "nope"})


def test_graph_lookups_by_name():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        with rg.name_scope("layer"):
            y = rg.tanh(x, name="act")
    assert g.get_tensor_by_name("x:0") is x
    assert g.get_tensor_by_name("layer/act:0") is y
    node = g.get_operation_by_name("layer/act")
    assert node is y.node and node.outputs == [y] and node.values() == (y,)
    assert node.name == "layer/act" and node.type == "tanh"
    with pytest.raises(KeyError, match=r"'layer/nope:0' refers to a Tensor which does not "
                                       r"exist\. The operation, 'layer/nope', does not exist"):
        g.get_tensor_by_name("layer/nope:0")
    with pytest.raises(KeyError, match=r"'x:1'.*exists but only has 1 outputs"):
        g.get_tensor_by_name("x:1")
    with pytest.raises(ValueError, match=r"'x' looks like an \(invalid\) Operation name"):
        g.get_tensor_by_name("x")
    with pytest.raises(ValueError, match=r"'x:0' appears to refer to a Tensor"):
        g.get_operation_by_name("x:0")
    with pytest.raises(KeyError, match=r"'nope' refers to an Operation not in the graph"):
        g.get_operation_by_name("nope")
    assert g.get_operations()[0] is x.node


# --- Session.as_default, Operation.run ------------------------------------------------------------
def test_session_as_default_makes_eval_and_run_work_and_leaves_it_open():
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [2], initializer=rg.zeros_initializer())
        inc = rg.assign(w, w + 1.0, name="inc")
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    with pytest.raises(RuntimeError, match="no default session"):
        w.eval()
    with sess.as_default() as s:
        assert s is sess and rg.get_default_session() is sess
        init.run()
        g.get_operation_by_name("inc").run()
        np.testing.assert_allclose(w.eval(), [1.0, 1.0])
    with pytest.raises(RuntimeError, match="no default session"):
        w.eval()
    np.testing.assert_allclose(sess.run(inc), [2.0, 2.0])   # not closed by the block


# --- H11: TensorShape and Dimension --------------------------------------------------------------
def test_tensorshape_api_on_shape_and_get_shape():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 5, 3])
    for s in (x.shape, x.get_shape()):
        assert isinstance(s, rg.TensorShape) and isinstance(s, tuple)
        assert s == (None, 5, 3) and hash(s) == hash((None, 5, 3))
        assert s.as_list() == [None, 5, 3] and type(s.as_list()[1]) is int
        assert s.ndims == 3 and s.rank == 3 and len(s) == 3
        assert not s.is_fully_defined() and rg.TensorShape(s[1:]).is_fully_defined()
        assert s.num_elements() is None and rg.TensorShape(s[1:]).num_elements() == 15
        assert s[1:] == (5, 3)
        assert s[-1].value == 3 and int(s[-1]) == 3 and s[-1] == 3
        assert [dimension_value(d) for d in s.dims] == [None, 5, 3]
        assert s.is_compatible_with([7, 5, None]) and not s.is_compatible_with([7, 4, 3])
        assert s.merge_with([7, None, 3]).as_list() == [7, 5, 3]
        assert s.concatenate([2]).as_list() == [None, 5, 3, 2]
        with pytest.raises(ValueError):
            s.assert_has_rank(2)
        with pytest.raises(ValueError):
            s.merge_with([None, 4, 3])
    # x.shape: an unknown dim is None (rnngraph code tests `is None`); get_shape(): TF1's
    # Dimension(None), whose .value is None
    assert x.shape[0] is None
    assert x.get_shape()[0].value is None and x.get_shape()[0] is UNKNOWN_DIMENSION
    assert [d.value for d in x.get_shape()] == [None, 5, 3]
    tail = x.get_shape()[1:]
    assert isinstance(tail, rg.TensorShape) and tail.as_list() == [5, 3]
    assert tail.is_fully_defined() and tail.num_elements() == 15 and tail[0].value == 5
    assert type(x.shape[1:]) is tuple   # (x.shape indexes at the tuple's speed: plain slices)
    assert rg.dimension_value(x.get_shape()[0]) is None and rg.dimension_value(x.shape[1]) == 5
    assert x.get_shape().as_list()[-1] == 3


def test_tensorshape_and_dimension_constructors():
    s = rg.TensorShape([None, 4])
    assert s == (None, 4) and s.as_list() == [None, 4]
    assert rg.TensorShape(3).as_list() == [3]
    assert rg.TensorShape(s) is s
    assert rg.Dimension(4).value == 4 and rg.Dimension(4) + 1 == 5
    assert rg.Dimension(None).value is None and rg.Dimension(None) is UNKNOWN_DIMENSION
    assert (rg.Dimension(None) * 2).value is None and (3 + rg.Dimension(None)).value is None
    with pytest.raises(ValueError):
        rg.Dimension(-2)
    with pytest.raises(TypeError):
        int(rg.Dimension(None))
    with pytest.raises(rg.ShapeError):
        rg.TensorShape(None)   # (rnngraph needs every rank)
    # shapes from get_shape() (with Dimension(None)) build new tensors
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 5])
        y = rg.placeholder(rg.float32, x.get_shape())
        w = rg.get_variable("w", [x.get_shape()[-1], 2])
        z = rg.zeros(x.get_shape()[1:])
    assert y.shape == (None, 5) and w.shape == (5, 2) and z.shape == (5,)
    assert pickle.loads(pickle.dumps(x.shape)) == x.shape
    assert pickle.loads(pickle.dumps(x.get_shape()))[0].value is None
    # shapes print as before (tuples of ints and None)
    assert repr(x.shape) == "(None, 5)" and str(x.shape[1]) == "5"
    assert isinstance(TensorShape((2,))[0], int)


def test_saved_graph_with_tensorshape_attributes_round_trips(tmp_path):
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        w = rg.get_variable("w", [3, 2])
        y = rg.matmul(x, w, name="y")
    sess = rg.Session(g)
    rg.save(str(tmp_path / "m.npz"), g, session=sess, fetches={"y": y})
    graph, values = rg.load(str(tmp_path / "m.npz"))
    y2 = graph.get_tensor_by_name("y:0")
    assert y2.shape == (None, 2) and isinstance(y2.shape, rg.TensorShape)
    assert graph.get_tensor_by_name("x:0").get_shape().as_list() == [None, 3]
    np.testing.assert_array_equal(values["w"], sess.read_variable(w))


# --- H9: the run counter and checkpoints ---------------------------------------------------------
def _gru_model(keep):
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3, 2], name="x")
        cell = rg.nn.rnn_cell.GRUCell(4)
        if keep < 1:
            cell = rg.nn.rnn_cell.DropoutWrapper(cell, output_keep_prob=keep)
        out, _ = rg.nn.dynamic_rnn(cell, x, dtype=rg.float32)
        saver = rg.train.Saver()
        explicit = rg.train.Saver(rg.global_variables())
    return g, x, out, saver, explicit


@pytest.mark.parametrize("which", ["default", "explicit"])
def test_model_with_dropout_restores_a_checkpoint_saved_without_it(tmp_path, which):
    g0, x0, out0, saver0, _ = _gru_model(1.0)
    s0 = rg.Session(g0, seed=3)
    saved = saver0.save(s0, str(tmp_path / "m"))
    weights = {v.node.name: s0.read_variable(v) for v in rg.global_variables(g0)}

    g1, x1, out1, saver1, explicit1 = _gru_model(0.5)
    names = [v.node.name for v in rg.global_variables(g1)]
    assert "random/run_counter" not in names   # (as TF1; Saver() saves it: see the test below)
    s1 = rg.Session(g1, seed=7)
    s1.run(out1, {x1: np.ones((2, 3, 2), np.float32)})    # the counter moves on: 1
    (saver1 if which == "default" else explicit1).restore(s1, saved)
    for name, value in weights.items():
        np.testing.assert_array_equal(s1.read_variable(name), value)
    assert int(s1.read_variable("random/run_counter")) == 1   # left as it was
    # and the restored model runs (dropout draws from the session's counter)
    assert s1.run(out1, {x1: np.ones((2, 3, 2), np.float32)}).shape == (2, 3, 4)


def test_run_counter_still_saved_and_restored_when_the_checkpoint_has_it(tmp_path):
    g, x, out, saver, _ = _gru_model(0.5)
    xs = np.ones((2, 3, 2), np.float32)
    s1 = rg.Session(g)
    s1.run(out, {x: xs})
    prefix = saver.save(s1, str(tmp_path / "m"))
    want = s1.run(out, {x: xs})          # the second run's dropout masks
    s2 = rg.Session(g)
    saver.restore(s2, prefix)
    np.testing.assert_array_equal(s2.run(out, {x: xs}), want)
    # a model variable missing from a checkpoint is still an error
    g2 = rg.Graph()
    with g2.as_default():
        rg.get_variable("other", [2])
        other_saver = rg.train.Saver()
    with pytest.raises(KeyError, match="holds no variable 'other'"):
        other_saver.restore(rg.Session(g2), prefix)


# --- Variable.assign / assign_add / assign_sub ------------------------------------------------
def test_variable_assign_methods():
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [2], initializer=rg.constant_initializer(1.0))
        x = rg.placeholder(rg.float32, [2])
        set_w = w.assign(x)
        add_w = w.assign_add(rg.constant([0.5, 1.5]))
        sub_w = w.assign_sub(x, name="down")
    sess = rg.Session(g)
    np.testing.assert_allclose(sess.run(set_w, {x: [3.0, 4.0]}), [3.0, 4.0])
    np.testing.assert_allclose(sess.run(add_w), [3.5, 5.5])
    np.testing.assert_allclose(sess.run(sub_w, {x: [1.0, 1.0]}), [2.5, 4.5])
    np.testing.assert_allclose(sess.read_variable(w), [2.5, 4.5])
    assert sub_w.node.name == "down" and w.read_value() is w
    with pytest.raises(TypeError, match="assign needs a variable"):
        x.assign([1.0, 2.0])


def test_running_a_train_op_gives_none_and_fetching_none_is_a_type_error():
    """TF1: minimize's result, tf.group and tf.no_op are operations: sess.run gives None for
    them (beside the values fetched with them); sess.run(None) is a TypeError."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 2])
        w = rg.get_variable("w", [2, 1], initializer=rg.ones_initializer())
        loss = rg.reduce_mean(rg.matmul(x, w))
        train = rg.train.GradientDescentOptimizer(0.5).minimize(loss)
        nothing = rg.no_op()
        with rg.Session() as sess:
            sess.run(rg.global_variables_initializer())
            feed = {x: np.ones((2, 2), np.float32)}
            assert sess.run(train, feed) is None
            got_loss, got_train = sess.run([loss, train], feed)
            assert got_train is None and np.isclose(got_loss, 1.0)   # w ones - 0.5 after one step
            assert sess.run(nothing) is None
            np.testing.assert_allclose(sess.run(w), np.zeros((2, 1)))   # both steps applied
            assert sess.run(rg.global_variables_initializer()) is None   # (an operation too)
            with pytest.raises(TypeError, match="Fetch argument None has invalid type"):
                sess.run(None)
            assert sess.run([loss, None], feed)[1] is None   # None inside a structure stays


def test_feeding_an_array_to_a_placeholder_made_without_shape_says_why():
    p = rg.placeholder(rg.float32)   # TF1: unknown rank; here a scalar
    with pytest.raises(ValueError, match=r"made without shape= is a scalar.*give it shape="):
        rg.Session().run(p * 2, {p: np.ones((2, 2), np.float32)})
    q = rg.placeholder(rg.float32, [None, 3])   # a shaped one: no such hint
    with pytest.raises(ValueError) as e:
        rg.Session().run(q * 2, {q: np.ones((2, 2), np.float32)})
    assert "without shape=" not in str(e.value)
