"""TF1's control API: rg.control_dependencies and graph collections (rg.get_collection,
rg.add_to_collection, rg.GraphKeys), checked against NumPy and finite differences."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice


def _line() -> str:
    """'test_tf1_control.py:<the caller's line after next>' (where an error must point)."""
    return f"test_tf1_control.py:{inspect.currentframe().f_back.f_lineno + 2}"


def _counter_graph():
    g = rg.Graph()
    with g.as_default():
        c = rg.Variable(0.0, name="c")
        inc = rg.assign(c, c + 1.0, name="inc")
    return g, c, inc


# --- control_dependencies -----------------------------------------------------------------------
def test_identity_under_control_dependencies_reads_the_assigned_value():
    g = rg.Graph()
    with g.as_default():
        v = rg.Variable(1.0, name="v")
        a = rg.assign(v, 5.0)
        plain = rg.identity(v)
        with rg.control_dependencies([a]):
            y = rg.identity(v)
            z = v * 2.0                  # (a variable read by another op: a read after a)
            r = v.read_value()           # (tf.Variable.read_value: a read after a)
        reset = rg.assign(v, 1.0)
    s = rg.Session(g)
    assert s.run(plain) == 1.0                 # the plain identity runs nothing else
    assert s.run(y) == 5.0 and s.run(v) == 5.0  # the assign ran first, and the read sees it
    s.run(reset)
    assert s.run(z) == 10.0
    s.run(reset)
    assert s.run(r) == 5.0 and v.read_value() is v   # (outside a block: the variable)


def test_every_run_of_the_dependent_op_runs_the_dependency_first():
    g, c, inc = _counter_graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")
        with rg.control_dependencies([inc]):
            r = rg.identity(c)
            y = rg.tanh(x) * 2.0
    s = rg.Session(g)
    assert [float(s.run(r)) for _ in range(3)] == [1.0, 2.0, 3.0]
    xs = np.array([0.1, -0.4, 2.0], np.float32)
    np.testing.assert_allclose(s.run(y, {x: xs}), np.tanh(xs) * 2.0, rtol=1e-6)
    assert float(s.run(c)) == 4.0              # y ran inc too, once


def test_no_op_group_and_assign_inside_take_the_dependencies():
    g, c, inc = _counter_graph()
    with g.as_default():
        w = rg.Variable(0.0, name="w")
        with rg.control_dependencies([inc]):
            noop = rg.no_op()
            grouped = rg.group(rg.constant(1.0))
            copy = rg.assign(w, c)                # reads c after inc: the new count
    s = rg.Session(g)
    s.run(noop)
    s.run(grouped)
    assert float(s.run(c)) == 2.0
    assert float(s.run(copy)) == 3.0 and float(s.run(w)) == 3.0


def test_nesting_accumulates_and_none_clears():
    g = rg.Graph()
    with g.as_default():
        a = rg.Variable(0.0, name="a")
        b = rg.Variable(0.0, name="b")
        inc_a, inc_b = rg.assign(a, a + 1.0), rg.assign(b, b + 10.0)
        x = rg.placeholder(rg.float32, [], name="x")
        with rg.control_dependencies([inc_a]):
            with rg.control_dependencies([inc_b]):
                both = x + 1.0
            with rg.control_dependencies(None):
                neither = x * 3.0
            only_a = x - 1.0
    s = rg.Session(g)
    assert s.run(both, {x: 2.0}) == 3.0 and s.run([a, b]) == [1.0, 10.0]
    assert s.run(neither, {x: 2.0}) == 6.0 and s.run([a, b]) == [1.0, 10.0]
    assert s.run(only_a, {x: 2.0}) == 1.0 and s.run([a, b]) == [2.0, 10.0]


def test_the_graph_stays_small_one_identity_per_way_into_the_block():
    g, c, inc = _counter_graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 4], name="x")
        w = rg.get_variable("w", [4, 3])
        bias = rg.get_variable("b", [3], initializer=rg.zeros_initializer())
        before = len(g.nodes)
        with rg.control_dependencies([inc]):
            y = rg.tanh(rg.matmul(x, w) + bias)
    added = [n.op.name for n in g.nodes[before:]]
    # matmul(x, w) has no input built in the block: it reads w after inc, the rest follow
    assert sorted(added) == ["add", "matmul", "read_variable", "tanh"]
    read = next(n for n in g.nodes[before:] if n.op.name == "read_variable")
    assert read.inputs[0] is w and read.inputs[1] is inc
    s = rg.Session(g)
    xs = np.ones((2, 4), np.float32)
    W, B = s.run([w, bias])
    np.testing.assert_allclose(s.run(y, {x: xs}), np.tanh(xs @ W + B), rtol=1e-5)
    assert float(s.run(c)) == 1.0


def _moving_mean_model(graph, use_block: bool):
    with graph.as_default():
        x = rg.placeholder(rg.float32, [None, 2], name="x")
        t = rg.placeholder(rg.float32, [None, 1], name="t")
        w = rg.get_variable("w", [2, 1], initializer=rg.constant_initializer([[0.5], [-0.3]]))
        mm = rg.get_variable("moving_mean", [2], initializer=rg.zeros_initializer(),
                             trainable=False)
        rg.add_to_collection(rg.GraphKeys.UPDATE_OPS,
                             rg.assign(mm, mm * 0.9 + rg.reduce_mean(x, 0) * 0.1))
        loss = rg.reduce_mean(rg.square(rg.matmul(x, w) - t))
        opt = rg.train.GradientDescentOptimizer(0.1)
        if use_block:
            update_ops = rg.get_collection(rg.GraphKeys.UPDATE_OPS)
            with rg.control_dependencies(update_ops):
                train_op = opt.minimize(loss)
        else:
            train_op = opt.minimize(loss)
    return x, t, w, mm, loss, train_op


def test_update_ops_idiom_trains_and_updates_the_moving_mean():
    g = rg.Graph()
    x, t, w, mm, loss, train_op = _moving_mean_model(g, use_block=True)
    rng = np.random.default_rng(0)
    s = rg.Session(g)
    W, M = np.array([[0.5], [-0.3]]), np.zeros(2)
    for _ in range(4):
        xs = rng.standard_normal((5, 2)).astype(np.float32)
        ts = rng.standard_normal((5, 1)).astype(np.float32)
        s.run(train_op, {x: xs, t: ts})
        M = M * 0.9 + xs.mean(0) * 0.1
        W = W - 0.1 * (2.0 / 5) * xs.T @ (xs @ W - ts)
    np.testing.assert_allclose(s.run(mm), M, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.run(w), W, rtol=1e-5, atol=1e-6)
    # without the block the train op leaves the moving mean alone (the block is what runs it)
    g2 = rg.Graph()
    x2, t2, _, mm2, _, train2 = _moving_mean_model(g2, use_block=False)
    s2 = rg.Session(g2)
    s2.run(train2, {x2: np.ones((5, 2), np.float32), t2: np.ones((5, 1), np.float32)})
    np.testing.assert_array_equal(s2.run(mm2), np.zeros(2))


def test_gradients_ignore_the_dependencies():
    g, c, inc = _counter_graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [3], name="x")
        w = rg.Variable(np.array([0.5, -1.0, 2.0]), name="w")
        with rg.control_dependencies([inc]):
            y = rg.exp(x) * 3.0 + rg.identity(w) ** 2.0   # identity(w): a read after inc
        loss = rg.reduce_sum(y * np.array([1.0, 2.0, 3.0]))
        gx, gw = rg.gradients(loss, [x, w])
        gc = rg.gradients(loss, [c])[0]
        w_in = rg.placeholder(rg.float64, [3], name="w_in")
        set_w = rg.assign(w, w_in)
    assert gc is None                     # no gradient reaches the dependency
    s = rg.Session(g)
    xs = np.array([0.2, -0.5, 1.0])
    got_x, got_w = s.run([gx, gw], {x: xs})
    np.testing.assert_allclose(got_x, 3.0 * np.exp(xs) * [1, 2, 3], rtol=1e-12)
    np.testing.assert_allclose(got_w, 2.0 * np.array([0.5, -1.0, 2.0]) * [1, 2, 3], rtol=1e-12)
    # w's gradient against central differences of the loss (w set through assign)
    w0, eps, num = np.array([0.5, -1.0, 2.0]), 1e-6, np.zeros(3)
    for i in range(3):
        vals = []
        for sign in (1, -1):
            wi = w0.copy()
            wi[i] += sign * eps
            s.run(set_w, {w_in: wi})
            vals.append(s.run(loss, {x: xs}))
        num[i] = (vals[0] - vals[1]) / (2 * eps)
    np.testing.assert_allclose(got_w, num, rtol=1e-6)


def test_dynamic_rnn_built_inside_runs_the_dependency_and_plans_memory():
    def build(use_block):
        g = rg.Graph()
        with g.as_default():
            x = rg.placeholder(rg.float32, [None, 5, 3], name="x")
            c = rg.Variable(0.0, name="c", trainable=False)
            inc = rg.assign(c, c + 1.0)
            cell = rg.nn.rnn_cell.GRUCell(4)
            if use_block:
                with rg.control_dependencies([inc]):
                    out, _ = rg.nn.dynamic_rnn(cell, x, dtype=rg.float32)
            else:
                out, _ = rg.nn.dynamic_rnn(cell, x, dtype=rg.float32)
            loss = rg.reduce_sum(out * out)
            grads = rg.gradients(loss, rg.trainable_variables())
        return g, x, c, out, loss, grads
    xs = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    g0, x0, c0, out0, loss0, grads0 = build(False)
    g1, x1, c1, out1, loss1, grads1 = build(True)
    s0, s1 = rg.Session(g0), rg.Session(g1)
    want = s0.run([loss0] + grads0, {x0: xs})
    got = s1.run([loss1] + grads1, {x1: xs})
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert float(s1.run(c1)) == 1.0 and float(s0.run(c0)) == 0.0
    p0 = rg.Session(g0, device=SimulatedDevice()).memory_plan([loss0] + grads0, {x0: (2, 5, 3)})
    p1 = rg.Session(g1, device=SimulatedDevice()).memory_plan([loss1] + grads1, {x1: (2, 5, 3)})
    assert p1.loops and p1.predicted_peak == p0.predicted_peak   # the identity is a view


def test_dependencies_survive_save_and_load(tmp_path):
    g, c, inc = _counter_graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        with rg.control_dependencies([inc]):
            y = rg.identity(x * 2.0, name="y")
            r = rg.identity(c, name="r")
        rg.add_to_collection(rg.GraphKeys.UPDATE_OPS, inc)
        rg.add_to_collection("my_outputs", y)
    path = rg.save(str(tmp_path / "m.npz"), g)
    g2, _ = rg.load(path)
    y2, r2, x2 = g2.get_tensor_by_name("y:0"), g2.get_tensor_by_name("r:0"), \
        g2.get_tensor_by_name("x:0")
    with g2.as_default():
        assert [v.node.name for v in rg.get_collection(rg.GraphKeys.UPDATE_OPS)] == ["inc"]
        assert rg.get_collection("my_outputs") == [y2]
    s = rg.Session(g2)
    np.testing.assert_array_equal(s.run(y2, {x2: np.array([1.0, 2.0], np.float32)}), [2.0, 4.0])
    assert float(s.run(r2)) == 2.0    # y's run incremented once; r's read follows its own


def test_control_dependencies_errors_name_the_users_line():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        where = _line()
        with pytest.raises(TypeError, match=f"Tensor or Operation.*{where}"):
            with rg.control_dependencies([3.0]):
                pass
        where = _line()
        with pytest.raises(TypeError, match=f"takes a list.*{where}"):
            with rg.control_dependencies(x):
                pass
    other = rg.Graph()
    with other.as_default():
        where = _line()
        with pytest.raises(ValueError, match=f"another graph.*{where}"):
            with rg.control_dependencies([x]):
                pass
    assert g.control_frames == [] and other.control_frames == []


def test_an_operation_from_the_graph_is_a_dependency_and_the_graph_method():
    g, c, inc = _counter_graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [], name="x")
        with rg.control_dependencies([g.get_operation_by_name("inc")]):
            y = x + 1.0
        with rg.get_default_graph().control_dependencies([inc]):   # tf.Graph's method
            z = x * 5.0
    with g.control_dependencies([inc]):   # (g not the default graph: its values say where)
        r = rg.identity(c)
    s = rg.Session(g)
    assert s.run(y, {x: 1.0}) == 2.0 and float(s.run(c)) == 1.0
    assert s.run(z, {x: 1.0}) == 5.0 and float(s.run(c)) == 2.0
    assert float(s.run(r)) == 3.0


# --- collections --------------------------------------------------------------------------------
def test_collections_of_variables_losses_and_summaries():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        with rg.variable_scope("enc"):
            w = rg.get_variable("w", [3, 2])
        step = rg.train.get_or_create_global_step()
        keep = rg.nn.dropout(x, keep_prob=0.5)     # a random op: the graph gets a run counter
        loss = rg.losses.mean_squared_error(rg.zeros_like(keep), keep)
        summ = rg.summary.scalar("loss", loss)
        K = rg.GraphKeys
        assert rg.get_collection(K.GLOBAL_VARIABLES) == rg.global_variables() == [w, step]
        assert rg.get_collection(K.TRAINABLE_VARIABLES) == rg.trainable_variables() == [w]
        assert rg.get_collection(K.GLOBAL_VARIABLES, scope="enc") == [w]
        assert rg.get_collection(K.GLOBAL_VARIABLES, scope="dec") == []
        assert rg.get_collection(K.LOSSES) == rg.losses.get_losses() == [loss]
        assert rg.get_collection(K.SUMMARIES) == [summ]
        assert rg.get_collection(K.GLOBAL_STEP) == [step]
        assert rg.get_collection("nothing here") == []
        assert {"variables", "trainable_variables", "losses", "summaries",
                "global_step"} <= set(rg.get_all_collection_keys())
        merged = rg.summary.merge(rg.get_collection(K.SUMMARIES))
    assert "random/run_counter" in [n.name for n in g.nodes]   # (there, but not listed)
    assert merged is not None


def test_add_to_collection_and_the_ref():
    g = rg.Graph()
    with g.as_default():
        a = rg.constant(1.0, name="a")
        b = rg.constant(2.0, name="b")
        rg.add_to_collection("mine", a)
        rg.add_to_collections(["mine", "yours"], b)
        ref = rg.get_collection_ref("mine")
        assert ref == [a, b] and rg.get_collection("yours") == [b]
        copy = rg.get_collection("mine")
        copy.append(a)                       # a copy: the collection stays
        ref.remove(a)                        # the list itself: the collection changes
        assert rg.get_collection("mine") == [b]
        rg.add_to_collection(rg.GraphKeys.LOSSES, a * 3.0)   # as tf.losses.add_loss
        assert len(rg.losses.get_losses()) == 1
        assert float(rg.Session(g).run(rg.losses.get_total_loss())) == 3.0


def test_collection_errors():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        where = _line()
        with pytest.raises(ValueError, match=f"'variables' is kept by rnngraph.*{where}"):
            rg.add_to_collection(rg.GraphKeys.GLOBAL_VARIABLES, x)
        with pytest.raises(ValueError, match="'trainable_variables' is kept by rnngraph"):
            rg.get_collection_ref(rg.GraphKeys.TRAINABLE_VARIABLES)
        where = _line()
        with pytest.raises(TypeError, match=f"hold tensors and ops.*{where}"):
            rg.add_to_collection("mine", "a string")
        with pytest.raises(TypeError, match="non-empty str"):
            rg.get_collection(None)
        with pytest.raises(ValueError, match="one scalar variable"):
            rg.add_to_collection(rg.GraphKeys.GLOBAL_STEP, x)


def test_a_hand_made_global_step_can_be_collected():
    g = rg.Graph()
    with g.as_default():
        step = rg.Variable(0, name="global_step", trainable=False, dtype=rg.int64)
        rg.add_to_collection(rg.GraphKeys.GLOBAL_STEP, step)
        assert rg.train.get_global_step() is step


@pytest.mark.parametrize("listed", [False, True], ids=["Saver()", "Saver(global_variables())"])
def test_run_counter_is_not_a_global_variable_but_saver_keeps_it(tmp_path, listed):
    """Saver() saves the counter; so does a Saver given every global variable (the usual TF1
    `Saver(tf.global_variables())`: before, that restore started the random stream over)."""
    g = rg.Graph()
    with g.as_default():
        v = rg.get_variable("w", [2])
        u = rg.random_uniform([4], seed=1)
        assert [x.node.name for x in rg.global_variables()] == ["w"]
        saver = rg.train.Saver(rg.global_variables() if listed else None)
    s1 = rg.Session(g)
    s1.run(u)
    prefix = saver.save(s1, str(tmp_path / "m"))
    want = [s1.run(u) for _ in range(2)]
    s2 = rg.Session(g)
    saver.restore(s2, prefix)
    got = [s2.run(u) for _ in range(2)]
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)   # the restored counter continues the stream
    assert not np.array_equal(want[0], want[1])
    np.testing.assert_array_equal(s2.run(v), s1.run(v))


def test_inside_and_around_a_while_loop():
    g, c, inc = _counter_graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")

        def body(i, acc):   # a block inside the body: the outer assign runs once, before the loop
            with rg.control_dependencies([inc]):
                return i + 1, acc + x * rg.cast(i, rg.float32)
        _, inside = rg.while_loop(lambda i, acc: i < 3, body, [rg.constant(0), rg.zeros([3])])
        with rg.control_dependencies([inc]):
            _, around = rg.while_loop(lambda i, acc: i < 3, lambda i, acc: (i + 1, acc + x * x),
                                      [rg.constant(0), rg.zeros([3])])
        dx = rg.gradients(rg.reduce_sum(around), [x])[0]
    s = rg.Session(g)
    xs = np.array([1.0, -2.0, 0.5], np.float32)
    np.testing.assert_allclose(s.run(inside, {x: xs}), 3.0 * xs)
    assert float(s.run(c)) == 1.0
    got, grad = s.run([around, dx], {x: xs})
    np.testing.assert_allclose(got, 3.0 * xs * xs, rtol=1e-6)
    np.testing.assert_allclose(grad, 6.0 * xs, rtol=1e-6)
    assert float(s.run(c)) == 2.0


def test_an_op_of_variables_only_reads_all_of_them_after_the_dependencies():
    g = rg.Graph()
    with g.as_default():
        a = rg.Variable(1.0, name="a")
        b = rg.Variable(2.0, name="b")
        set_both = rg.group(rg.assign(a, 10.0), rg.assign(b, 20.0))
        with rg.control_dependencies([set_both]):
            total = a + b
            again = a * 3.0          # the block's read of a is made once
    assert [n.op.name for n in g.nodes].count("read_variable") == 2
    assert float(rg.Session(g).run(total)) == 30.0
    assert float(rg.Session(g).run(again)) == 30.0


def test_regularization_losses_collection_adds_to_the_total_loss():
    g = rg.Graph()
    with g.as_default():
        w = rg.Variable(np.array([1.0, -2.0, 3.0]), name="w")
        data = rg.reduce_sum(w * 0.5)
        rg.losses.add_loss(data)
        assert float(rg.Session(g).run(rg.losses.get_regularization_loss())) == 0.0
        l2 = rg.nn.l2_loss(w) * 0.1
        rg.add_to_collection(rg.GraphKeys.REGULARIZATION_LOSSES, l2)
        assert rg.losses.get_regularization_losses() == [l2]
        total = rg.losses.get_total_loss()
        data_only = rg.losses.get_total_loss(add_regularization_losses=False)
        reg = rg.losses.get_regularization_loss()
    s = rg.Session(g)
    w0 = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(s.run(total), (w0 * 0.5).sum() + 0.1 * (w0 ** 2).sum() / 2)
    np.testing.assert_allclose(s.run(data_only), (w0 * 0.5).sum())
    np.testing.assert_allclose(s.run(reg), 0.1 * (w0 ** 2).sum() / 2)


@pytest.mark.parametrize("passes", [False, True, {"stream_outputs": True, "host_sequences": True,
                                                  "sink_gather": True}])
def test_every_pass_setting_keeps_the_dependencies(passes):
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [None, 4], name="ids")
        emb = rg.get_variable("emb", [6, 3])
        c = rg.Variable(0.0, name="c", trainable=False)
        inc = rg.assign(c, c + 1.0)
        rg.add_to_collection(rg.GraphKeys.UPDATE_OPS, inc)
        out, _ = rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(3),
                                   rg.nn.embedding_lookup(emb, ids), dtype=rg.float32)
        loss = rg.reduce_mean(rg.square(out))
        with rg.control_dependencies(rg.get_collection(rg.GraphKeys.UPDATE_OPS)):
            train_op = rg.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
        plain = rg.train.MomentumOptimizer(0.1, 0.9, name="Momentum2").minimize(loss)
    grads = [n for n in g.nodes if n.op.name == "gather_grad"]
    assert grads and all(n.inputs[2] is emb for n in grads)   # (what makes the update sparse)
    # rows 4 and 5 only in the first batch: TF1's sparse Momentum leaves them alone after
    batches = [np.array([[0, 1, 2, 3], [5, 5, 4, 0]], np.int32),
               np.array([[0, 1, 1, 0], [2, 2, 3, 3]], np.int32)]
    s, ref = rg.Session(g, passes=passes), rg.Session(g, passes=False)
    for xs in batches:
        s.run(train_op, {ids: xs})
    assert float(s.run(c)) == 2.0
    # the block changes nothing else: the same (sparse) updates as the plain train op's
    first = None
    for xs in batches:
        ref.run(plain, {ids: xs})
        first = ref.run(emb) if first is None else first
    got = s.run(emb)
    np.testing.assert_allclose(got, ref.run(emb), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[4:], first[4:], rtol=1e-6)   # untouched by the 2nd step
    assert float(ref.run(c)) == 0.0
