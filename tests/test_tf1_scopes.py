"""TF1 naming and reuse rules: variable_scope / get_variable, tf.Variable uniquification, cell
and layer scopes (dense_1, basic_lstm_cell_1), failed builds rolled back (issue 25 bugs 1, 2, 4)."""
import numpy as np
import pytest

import rnngraph as rg


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def names(g):
    return [v.node.name for v in rg.global_variables(g)]


def test_get_variable_names_follow_variable_scopes_not_name_scopes(graph):
    with rg.variable_scope("a"):
        with rg.name_scope("ns"):
            w = rg.get_variable("w", [2])
        with rg.variable_scope("b"):
            u = rg.get_variable("u", [3])
    assert (w.node.name, u.node.name) == ("a/w", "a/b/u")
    assert rg.get_variable_scope().name == ""


def test_reuse_true_returns_the_variable_and_checks_shape_and_dtype(graph):
    with rg.variable_scope("s"):
        w = rg.get_variable("w", [2, 3])
    with rg.variable_scope("s", reuse=True):
        assert rg.get_variable("w") is w
        assert rg.get_variable("w", [2, 3], rg.float32) is w
        with pytest.raises(ValueError, match="Trying to share variable s/w, but specified shape"):
            rg.get_variable("w", [3, 2])
        with pytest.raises(ValueError, match="specified dtype float64"):
            rg.get_variable("w", dtype=rg.float64)
        with pytest.raises(ValueError, match="Variable s/v does not exist"):
            rg.get_variable("v", [1])
        with rg.variable_scope("inner"):   # reuse is inherited
            assert rg.get_variable_scope().reuse is True


def test_creating_twice_without_reuse_is_refused(graph):
    rg.get_variable("w", [1])
    with pytest.raises(ValueError, match="Variable w already exists, disallowed"):
        rg.get_variable("w", [1])


def test_auto_reuse_and_reuse_variables(graph):
    with rg.variable_scope("m", reuse=rg.AUTO_REUSE):
        a = rg.get_variable("w", [2])
    with rg.variable_scope("m", reuse=rg.AUTO_REUSE):
        assert rg.get_variable("w", [2]) is a
    with rg.variable_scope("n") as scope:
        b = rg.get_variable("w", [2])
        scope.reuse_variables()
        assert rg.get_variable("w") is b
    assert names(graph) == ["m/w", "n/w"]


def test_scope_objects_and_default_names(graph):
    with rg.variable_scope("outer") as outer:
        pass
    with rg.variable_scope(outer):
        v = rg.get_variable("v", [1])
    with rg.variable_scope(None, default_name="blk"):
        b0 = rg.get_variable("w", [1])
    with rg.variable_scope(None, default_name="blk"):
        b1 = rg.get_variable("w", [1])
    assert (v.node.name, b0.node.name, b1.node.name) == ("outer/v", "blk/w", "blk_1/w")
    # a named scope forgets its sub-scope counts when it closes (TF1's rule)
    for _ in range(2):
        with rg.variable_scope("top", reuse=rg.AUTO_REUSE):
            with rg.variable_scope(None, default_name="blk"):
                rg.get_variable("w", [1])
    assert "top/blk/w" in names(graph) and "top/blk_1/w" not in names(graph)


def test_scope_initializer_and_dtype_defaults(graph):
    with rg.variable_scope("s", initializer=rg.constant_initializer(0.5), dtype=rg.float64):
        w = rg.get_variable("w", [2])
        i = rg.get_variable("i", [2], rg.int32, initializer=None)
    with rg.variable_scope("t"):
        k = rg.get_variable("k", [3], rg.int32)   # ints default to zeros
        c = rg.get_variable("c", initializer=np.arange(3, dtype=np.float32))
        z = rg.get_variable("z", [2], initializer=rg.zeros_initializer)   # the class works too
    with rg.Session() as sess:
        sess.run(rg.global_variables_initializer())
        ww, kk, cc, zz = sess.run([w, k, c, z])
    assert w.dtype == np.float64 and np.array_equal(ww, [0.5, 0.5])
    assert i.dtype == np.int32
    assert np.array_equal(kk, [0, 0, 0]) and np.array_equal(cc, [0, 1, 2])
    assert np.array_equal(zz, [0, 0])


def test_unsupported_arguments_are_named(graph):
    with pytest.raises(NotImplementedError, match="constraint="):   # (regularizer= works:
        rg.get_variable("w", [1], constraint=lambda x: x)         # test_tf1_api_gaps.py)
    with pytest.raises(NotImplementedError, match="partitioner="):
        with rg.variable_scope("s", partitioner=object()):
            pass
    with pytest.raises(NotImplementedError, match="collections="):
        rg.Variable(1.0, collections=["x"])


# ---- bug 1: a Variable's initial value may be any tensor ----------------------------------------
def test_variable_from_tensors(graph):
    a = rg.Variable(rg.zeros([2, 3]))
    b = rg.Variable(rg.ones([2, 3]) * 2.0 + rg.constant([[1.0, 2.0, 3.0]]))
    big = rg.Variable(rg.zeros([2**31, 2**31]))   # not evaluated at build time
    assert a.dtype == np.float32 and a.shape == (2, 3) and big.shape == (2**31, 2**31)
    c = rg.Variable(rg.range(5))
    with rg.Session() as sess:
        sess.variables.initialize(a.node.name)
        sess.variables.initialize(b.node.name)
        sess.variables.initialize(c.node.name)
        aa, bb, cc = sess.run([a, b, c])
    np.testing.assert_array_equal(aa, np.zeros((2, 3)))
    np.testing.assert_array_equal(bb, 2.0 + np.array([[1.0, 2.0, 3.0]] * 2))
    np.testing.assert_array_equal(cc, np.arange(5))
    assert cc.dtype == np.int32


def test_variable_from_a_placeholder_is_refused_clearly(graph):
    x = rg.placeholder(rg.float32, [2])
    with pytest.raises(TypeError, match="depends on Placeholder"):
        rg.Variable(x * 2.0)
    assert rg.global_variables(graph) == []


# ---- bug 2: uniquified names --------------------------------------------------------------------
def test_variables_without_names_are_uniquified(graph):
    vs = [rg.Variable(np.float32(k)) for k in range(3)]
    with rg.name_scope("layer"):
        w1, w2 = rg.Variable(1.0, name="w"), rg.Variable(2.0, name="w")
    assert [v.node.name for v in vs] == ["Variable", "Variable_1", "Variable_2"]
    assert (w1.node.name, w2.node.name) == ("layer/w", "layer/w_1")


def test_dense_layers_and_cells_of_one_class_get_distinct_scopes(graph):
    x = rg.placeholder(rg.float32, [None, 4])
    rg.layers.dense(x, 3)
    rg.layers.dense(x, 3)
    rg.layers.dense(x, 2, name="out")
    with rg.variable_scope("model"):
        c1, c2 = rg.nn.rnn_cell.BasicLSTMCell(3), rg.nn.rnn_cell.BasicLSTMCell(3)
        s = c1.zero_state(2, rg.float32)
        c1(x, s)
        c2(x, s)
    assert names(graph) == [
        "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias", "out/kernel", "out/bias",
        "model/basic_lstm_cell/kernel", "model/basic_lstm_cell/bias",
        "model/basic_lstm_cell_1/kernel", "model/basic_lstm_cell_1/bias"]
    assert c2.scope_name == "model/basic_lstm_cell_1"


def test_dense_reuse_shares_variables(graph):
    x = rg.placeholder(rg.float32, [None, 4])
    y1 = rg.layers.dense(x, 3, name="fc")
    y2 = rg.layers.dense(x, 3, name="fc", reuse=True)
    assert names(graph) == ["fc/kernel", "fc/bias"]
    with rg.Session() as sess:
        sess.run(rg.global_variables_initializer())
        a, b = sess.run([y1, y2], {x: np.ones((2, 4), np.float32)})
    np.testing.assert_array_equal(a, b)


def test_second_dynamic_rnn_in_the_same_scope_collides_as_in_tf(graph):
    x = rg.placeholder(rg.float32, [None, 3, 2])
    rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(4), x, dtype=rg.float32)
    before = len(graph.nodes)
    with pytest.raises(ValueError, match="rnn/basic_rnn_cell/kernel already exists"):
        rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(4), x, dtype=rg.float32)
    # ... and the failed call left nothing behind (bug 4)
    assert len(graph.nodes) == before
    out, _ = rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(4), x, dtype=rg.float32, scope="rnn2")
    assert "rnn2/basic_rnn_cell/kernel" in names(graph)


def test_shared_weights_through_reuse(graph):
    x = rg.placeholder(rg.float32, [None, 3, 2])
    cell = rg.nn.rnn_cell.GRUCell(4)
    with rg.variable_scope("enc"):
        rg.nn.dynamic_rnn(cell, x, dtype=rg.float32)
    n = len(rg.global_variables(graph))
    with rg.variable_scope("enc", reuse=True):
        rg.nn.dynamic_rnn(rg.nn.rnn_cell.GRUCell(4), x, dtype=rg.float32)
    assert len(rg.global_variables(graph)) == n


# ---- bug 4: a cell call that raises leaves nothing ----------------------------------------------
class _Flaky(rg.nn.rnn_cell.RNNCell):
    fail = True

    @property
    def state_size(self):
        return 3

    @property
    def output_size(self):
        return 3

    def call(self, inputs, state):
        w = rg.get_variable("w", [inputs.shape[-1], 3])
        if _Flaky.fail:
            raise RuntimeError("boom")
        h = rg.tanh(rg.matmul(inputs, w) + state)
        return h, h


def test_failed_cell_call_is_rolled_back(graph):
    x = rg.placeholder(rg.float32, [2, 4])
    cell = _Flaky()
    s = cell.zero_state(2, rg.float32)
    n_nodes = len(graph.nodes)
    with pytest.raises(RuntimeError, match="boom"):
        cell(x, s)
    assert len(graph.nodes) == n_nodes and rg.global_variables(graph) == []
    _Flaky.fail = False
    try:
        out, _ = cell(x, s)
    finally:
        _Flaky.fail = True
    assert names(graph) == ["private__flaky/w"]   # TF's snake case of the class name
    assert cell.variables == rg.global_variables(graph)


def test_device_is_accepted_and_recorded(graph):
    with rg.device("/gpu:0"):
        x = rg.placeholder(rg.float32, [2])
        y = x * 2.0
    with rg.device("/device:CPU:0"):
        pass
    assert [d[1] for d in graph.collections["devices"]] == ["/gpu:0", "/device:CPU:0"]
    with pytest.raises(ValueError, match="not a device string"):
        rg.device("gpu please")
    with pytest.raises(NotImplementedError, match="device functions"):
        rg.device(lambda op: "/cpu:0")
    with rg.Session() as sess:
        np.testing.assert_array_equal(sess.run(y, {x: [1.0, 2.0]}), [2.0, 4.0])


def test_cell_with_reuse_true_shares_the_variables_under_its_name(graph):
    x = rg.placeholder(rg.float32, [2, 3])
    a = rg.nn.rnn_cell.GRUCell(4)
    b = rg.nn.rnn_cell.GRUCell(4, reuse=True)
    a(x, a.zero_state(2, rg.float32))
    b(x, b.zero_state(2, rg.float32))
    assert len(rg.global_variables(graph)) == 4
    assert a.variables == b.variables and b.scope_name == "gru_cell"
