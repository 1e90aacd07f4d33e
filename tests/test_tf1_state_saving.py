"""static_state_saving_rnn and VariableStateSaver (issue 25): each run starts from the state the
previous run saved; checked against static_rnn run twice with the state carried by hand in
NumPy, and against a NumPy RNN."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.nest import flatten
from rnngraph.ops.misc import with_dependencies
from gradcheck import check_gradients

B, T, D = 3, 4, 2


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def _inputs():
    return [rg.placeholder(rg.float32, [B, D], name=f"x{t}") for t in range(T)]


def _batches(seed, n=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((T, B, D)).astype(np.float32) for _ in range(n)]


def _feed(xs, chunk):
    return {x: chunk[t] for t, x in enumerate(xs)}


def _carried_by_hand(sess, xs, ref_outs, ref_state, init_phs, chunks, zero):
    """static_rnn run once per chunk, its final state fed back by hand as the next initial."""
    state, results = zero, []
    for chunk in chunks:
        feed = _feed(xs, chunk)
        feed.update({ph: s for ph, s in zip(flatten(init_phs), flatten(state))})
        outs, state = sess.run([ref_outs, ref_state], feed)
        results.append((outs, state))
    return results


def test_basic_rnn_state_is_carried_between_runs(graph):
    xs = _inputs()
    cell = rg.nn.rnn_cell.BasicRNNCell(5)
    saver = rg.contrib.rnn.VariableStateSaver(B, {"h": 5})
    outs, state = rg.contrib.rnn.static_state_saving_rnn(cell, xs, saver, "h")
    h0 = rg.placeholder(rg.float32, [B, 5], name="h0")
    ref_outs, ref_state = rg.nn.static_rnn(cell, xs, initial_state=h0)   # the same weights
    assert [v.node.name for v in rg.trainable_variables(graph)] == \
        ["rnn/basic_rnn_cell/kernel", "rnn/basic_rnn_cell/bias"]
    assert [v.node.name for v in saver.variables] == ["state_saver/h"]
    init = rg.global_variables_initializer()
    chunks = _batches(0)
    with rg.Session(accelerate=False) as sess:
        sess.run(init)
        w, b = sess.run(rg.trainable_variables(graph))
        got = [sess.run([outs, state], _feed(xs, c)) for c in chunks]
        want = _carried_by_hand(sess, xs, ref_outs, ref_state, h0, chunks,
                                np.zeros((B, 5), np.float32))
        np.testing.assert_allclose(sess.run(saver.state("h")), want[-1][1], rtol=1e-6)
    h = np.zeros((B, 5), np.float32)
    for (g_outs, g_state), (w_outs, w_state), chunk in zip(got, want, chunks):
        np.testing.assert_allclose(np.stack(g_outs), np.stack(w_outs), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(g_state, w_state, rtol=1e-6, atol=1e-7)
        for t in range(T):   # NumPy: tanh([x, h] W + b), the state never reset between chunks
            h = np.tanh(np.concatenate([chunk[t], h], 1) @ w + b)
            np.testing.assert_allclose(g_outs[t], h, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got[0][1], got[1][1])


def test_lstm_tuple_state_with_a_tuple_of_names(graph):
    xs = _inputs()
    cell = rg.nn.rnn_cell.BasicLSTMCell(3)
    saver = rg.contrib.rnn.VariableStateSaver.for_cell(cell, B, ("c", "h"))
    assert saver.state_names == ["c", "h"]
    outs, state = rg.contrib.rnn.static_state_saving_rnn(cell, xs, saver, ("c", "h"))
    assert isinstance(state, rg.nn.rnn_cell.LSTMStateTuple)
    init_phs = rg.nn.rnn_cell.LSTMStateTuple(rg.placeholder(rg.float32, [B, 3]),
                                             rg.placeholder(rg.float32, [B, 3]))
    ref_outs, ref_state = rg.nn.static_rnn(cell, xs, initial_state=init_phs)
    init = rg.global_variables_initializer()
    chunks = _batches(1)
    zero = (np.zeros((B, 3), np.float32),) * 2
    with rg.Session(accelerate=False) as sess:
        sess.run(init)
        got = [sess.run([outs, state], _feed(xs, c)) for c in chunks]
        want = _carried_by_hand(sess, xs, ref_outs, ref_state, init_phs, chunks, zero)
        saved = sess.run([saver.state("c"), saver.state("h")])
    for (g_outs, g_state), (w_outs, w_state) in zip(got, want):
        np.testing.assert_allclose(np.stack(g_outs), np.stack(w_outs), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(g_state.c, w_state.c, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(g_state.h, w_state.h, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(saved[0], want[-1][1].c, rtol=1e-6)
    np.testing.assert_allclose(saved[1], want[-1][1].h, rtol=1e-6)


def test_multi_rnn_cell_nested_names_and_sequence_length(graph):
    xs = _inputs()
    lengths = rg.placeholder(rg.int32, [B], name="lengths")
    cell = rg.nn.rnn_cell.MultiRNNCell([rg.nn.rnn_cell.GRUCell(3), rg.nn.rnn_cell.GRUCell(2)])
    saver = rg.contrib.rnn.VariableStateSaver(B, {"layer0": 3, "layer1": 2})
    outs, state = rg.contrib.rnn.static_state_saving_rnn(cell, xs, saver, ("layer0", "layer1"),
                                                         sequence_length=lengths)
    init_phs = (rg.placeholder(rg.float32, [B, 3]), rg.placeholder(rg.float32, [B, 2]))
    ref_outs, ref_state = rg.nn.static_rnn(cell, xs, initial_state=init_phs,
                                           sequence_length=lengths)
    init = rg.global_variables_initializer()
    chunks = _batches(2)
    lens = np.array([4, 1, 0], np.int32)   # row 2 is past its end: its state is kept
    with rg.Session(accelerate=False) as sess:
        sess.run(init)
        got = [sess.run([outs, state], {**_feed(xs, c), lengths: lens}) for c in chunks]
        st = (np.zeros((B, 3), np.float32), np.zeros((B, 2), np.float32))
        for (g_outs, g_state), chunk in zip(got, chunks):
            feed = {**_feed(xs, chunk), lengths: lens, init_phs[0]: st[0], init_phs[1]: st[1]}
            w_outs, st = sess.run([ref_outs, ref_state], feed)
            np.testing.assert_allclose(np.stack(g_outs), np.stack(w_outs), rtol=1e-6, atol=1e-7)
            for a, b in zip(g_state, st):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert np.all(got[-1][1][0][2] == 0) and np.all(got[-1][1][1][2] == 0)
    assert not np.allclose(got[0][1][0][:2], got[1][1][0][:2])


def test_fetching_the_loss_or_the_train_op_saves_the_state(graph):
    xs = _inputs()
    cell = rg.nn.rnn_cell.BasicRNNCell(4)
    saver = rg.contrib.rnn.VariableStateSaver(B, {"h": 4})
    outs, state = rg.contrib.rnn.static_state_saving_rnn(cell, xs, saver, "h")
    loss = rg.reduce_mean(rg.square(outs[-1]))
    train = rg.train.GradientDescentOptimizer(0.5).minimize(loss)
    assert saver.variables[0] not in rg.trainable_variables(graph)
    reset = saver.reset()
    init = rg.global_variables_initializer()
    chunk = _batches(3, 1)[0]
    with rg.Session(accelerate=False) as sess:
        sess.run(init)
        w_before = sess.run(rg.trainable_variables(graph))
        final = sess.run(state, _feed(xs, chunk))          # a run that saves
        np.testing.assert_allclose(sess.run(saver.state("h")), final, rtol=1e-6)
        sess.run(reset)
        np.testing.assert_array_equal(sess.run(saver.state("h")), np.zeros((B, 4)))
        sess.run(loss, _feed(xs, chunk))                   # the loss depends on the save
        np.testing.assert_allclose(sess.run(saver.state("h")), final, rtol=1e-6)
        sess.run(reset)
        sess.run(train, _feed(xs, chunk))                  # the train op too
        np.testing.assert_allclose(sess.run(saver.state("h")), final, rtol=1e-6)
        assert not np.allclose(sess.run(rg.trainable_variables(graph))[0], w_before[0])
        sess.run(outs[0], _feed(xs, chunk))                # an early output does not save
        np.testing.assert_allclose(sess.run(saver.state("h")), final, rtol=1e-6)


def test_initial_value_and_reset_of_some_states(graph):
    saver = rg.contrib.rnn.VariableStateSaver(2, {"a": 3, "b": (2, 2)}, initial_value=0.5,
                                              name="mine")
    assert [v.node.name for v in saver.variables] == ["mine/a", "mine/b"]
    assert saver.state("b").shape == (2, 2, 2)
    save = saver.save_state("a", rg.ones([2, 3]))
    reset_a = saver.reset("a")
    init = rg.global_variables_initializer()
    with rg.Session() as sess:
        sess.run(init)
        np.testing.assert_array_equal(sess.run(saver.state("b")), np.full((2, 2, 2), 0.5))
        sess.run(save)
        np.testing.assert_array_equal(sess.run(saver.state("a")), np.ones((2, 3)))
        sess.run(reset_a)
        np.testing.assert_array_equal(sess.run(saver.state("a")), np.full((2, 3), 0.5))
    other = rg.contrib.rnn.VariableStateSaver(2, {"a": 3}, name="mine")
    assert other.variables[0].node.name == "mine_1/a"


def test_errors_name_the_problem(graph):
    xs = _inputs()
    lstm = rg.nn.rnn_cell.BasicLSTMCell(3)
    saver = rg.contrib.rnn.VariableStateSaver(B, {"c": 3, "h": 3})
    with pytest.raises(ValueError, match="same type as cell.state_size"):
        rg.contrib.rnn.static_state_saving_rnn(lstm, xs, saver, "c")
    with pytest.raises(ValueError, match="2 parts"):
        rg.contrib.rnn.static_state_saving_rnn(lstm, xs, saver, ("c", "h", "x"))
    with pytest.raises(TypeError, match="state_saver"):
        rg.contrib.rnn.static_state_saving_rnn(lstm, xs, object(), ("c", "h"))
    with pytest.raises(KeyError, match="'nope'"):
        saver.state("nope")
    with pytest.raises(ValueError, match="state 'c' is f32\\[3,3\\]"):
        saver.save_state("c", rg.zeros([3, 4]))
    with pytest.raises(ValueError, match="batch_size"):
        rg.contrib.rnn.VariableStateSaver(0, {"h": 3})
    with pytest.raises(ValueError, match="state name"):
        rg.contrib.rnn.VariableStateSaver(2, {"bad name": 3})
    with pytest.raises(ValueError, match="size of state 'h'"):
        rg.contrib.rnn.VariableStateSaver(2, {"h": -1})
    with pytest.raises(ValueError, match="does not broadcast"):
        rg.contrib.rnn.VariableStateSaver(2, {"h": 3}, initial_value=np.zeros(4))
    with pytest.raises(TypeError):
        rg.contrib.rnn.static_state_saving_rnn("not a cell", xs, saver, "h")


def test_a_saved_graph_with_state_saving_loads_and_runs(graph, tmp_path):
    xs = _inputs()
    cell = rg.nn.rnn_cell.BasicRNNCell(2)
    saver = rg.contrib.rnn.VariableStateSaver(B, {"h": 2})
    outs, state = rg.contrib.rnn.static_state_saving_rnn(cell, xs, saver, "h")
    init = rg.global_variables_initializer()
    chunk = _batches(4, 1)[0]
    with rg.Session(accelerate=False) as sess:
        sess.run(init)
        want = sess.run(state, _feed(xs, chunk))
        path = rg.save(str(tmp_path / "ss.rg"), graph, session=sess)
    loaded, values = rg.load(path)
    assert loaded.get_node(state.node.name).op.name == "identity"
    np.testing.assert_allclose(values["state_saver/h"], want, rtol=1e-6)


# --- the identity op that orders the outputs after the saves -------------------------------------
def test_identity_gradient_matches_finite_differences():
    check_gradients(lambda x: rg.identity(rg.tanh(x)) * 2.0,
                    {"x": np.linspace(-1, 1, 6).reshape(2, 3)})


def test_identity_with_dependencies_gradient_flows_to_the_value_only():
    sym, _ = check_gradients(lambda x, y: with_dependencies([rg.exp(y)], x * 3.0),
                             {"x": np.ones((2, 2)), "y": np.ones(3)}, allow_none=True)
    assert sym["y"] is None or np.all(sym["y"] == 0)


def test_with_dependencies_runs_its_dependencies(graph):
    v = rg.Variable(np.zeros(2, np.float32), name="v")
    x = rg.placeholder(rg.float32, [2])
    y = with_dependencies([rg.assign(v, x * 2.0)], x + 1.0)
    assert rg.identity(x).node.op.name == "identity"
    init = rg.global_variables_initializer()
    with rg.Session() as sess:
        sess.run(init)
        np.testing.assert_array_equal(sess.run(y, {x: [1.0, 2.0]}), [2.0, 3.0])
        np.testing.assert_array_equal(sess.run(v), [2.0, 4.0])
