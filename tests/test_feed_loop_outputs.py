"""Feeding a value a loop makes while the loop still runs for its other outputs (TF1's feeds
replace a tensor for every reader): the loss reads the fed array, and the gradients flow
through the loop's own activations. Before, the loop's output overwrote the fed array's slot
(the loss read the loop's output) and the weight gradient's product read the fed array as the
loop's saved h[t-1] (reuse_outputs)."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

B, I, H, T = 3, 2, 4, 5


def _rnn(time_major=True, cell="basic"):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I] if time_major else [B, None, I], name="X")
        c = rg.nn.BasicRNNCell(H) if cell == "basic" else rg.nn.LSTMCell(H)
        y, state = rg.nn.dynamic_rnn(c, X, dtype=rg.float32, time_major=time_major)
        loss = rg.reduce_sum(y * y)
        grads = rg.gradients(loss, rg.trainable_variables())
    return g, X, y, state, loss, grads


def _bptt(W, b, x, dys):
    """NumPy BPTT of a BasicRNN (tanh) over time-major x for output gradients dys: dW, db."""
    h = np.zeros((B, H))
    hs, prev = [], []
    for t in range(len(x)):
        prev.append(h)
        h = np.tanh(np.concatenate([x[t], h], 1) @ W + b)
        hs.append(h)
    dW, db, dh = np.zeros(W.shape), np.zeros(b.shape), np.zeros((B, H))
    for t in reversed(range(len(x))):
        dz = (dh + dys[t]) * (1 - hs[t] ** 2)
        dW += np.concatenate([x[t], prev[t]], 1).T @ dz
        db += dz.sum(0)
        dh = dz @ W[I:].T
    return dW, db


@pytest.mark.parametrize("passes", [True, False])
@pytest.mark.parametrize("device", ["cpu", "simulated"])
def test_a_fed_loop_output_is_read_by_the_loss_and_the_gradient_uses_the_loops_values(
        passes, device):
    g, X, y, _, loss, grads = _rnn()
    rs = np.random.RandomState(0)
    x = rs.randn(T, B, I).astype(np.float32)
    yf = rs.randn(T, B, H).astype(np.float32)
    sess = rg.Session(g, device=SimulatedDevice() if device == "simulated" else device,
                      passes=passes)
    got_loss, dW, db = sess.run([loss] + grads, {X: x, y: yf})
    np.testing.assert_allclose(got_loss, np.sum(yf.astype(np.float64) ** 2), rtol=1e-5)
    with g.as_default():
        W, b = sess.run(rg.trainable_variables())
    want_dW, want_db = _bptt(W.astype(np.float64), b.astype(np.float64), x, 2.0 * yf)
    np.testing.assert_allclose(dW, want_dW, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, want_db, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lengths", [False, True])
def test_a_fed_batch_major_lstm_output_gives_the_gradients_of_its_linear_stand_in(lengths):
    """y fed: d(sum(y**2))/dW with y fed equals d(sum(y * 2 y_fed))/dW with nothing fed (the
    same output gradient, 2 y_fed, through the loop's own activations)."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S") if lengths else None
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, sequence_length=S)
        C = rg.placeholder(rg.float32, [B, None, H], name="C")
        ws = rg.trainable_variables()
        fed_grads = rg.gradients(rg.reduce_sum(y * y), ws)
        linear_grads = rg.gradients(rg.reduce_sum(y * C), ws)
    rs = np.random.RandomState(1)
    x = rs.randn(B, T, I).astype(np.float32)
    yf = rs.randn(B, T, H).astype(np.float32)
    fd = {X: x}
    if lengths:
        fd[S] = np.array([T, 2, 4], np.int32)
        yf[1, 2:] = 0   # (past a row's length y is zero: its gradient is not looked at)
        yf[2, 4:] = 0
    sess = rg.Session(g)
    got = sess.run(fed_grads, {**fd, y: yf})
    want = sess.run(linear_grads, {**fd, C: 2.0 * yf})
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)


def test_a_fed_final_state_replaces_the_loops_for_its_readers():
    """The final state fed while the outputs are fetched: the loop runs for y, and a reader
    of the state sees the fed array."""
    g, X, y, state, _, _ = _rnn(cell="basic")
    with g.as_default():
        doubled = state * 2.0
    rs = np.random.RandomState(2)
    x = rs.randn(T, B, I).astype(np.float32)
    sf = rs.randn(B, H).astype(np.float32)
    free_y = rg.Session(g).run(y, {X: x})
    got_y, got_d = rg.Session(g).run([y, doubled], {X: x, state: sf})
    assert np.array_equal(got_y, free_y)
    np.testing.assert_allclose(got_d, 2 * sf)


def test_a_fed_loop_output_under_a_memory_plan():
    """The simulated device with a budget: the fed y is counted once (the caller's), the
    loop's own y is not stacked, and the values are as above."""
    g, X, y, _, loss, grads = _rnn(cell="lstm")
    rs = np.random.RandomState(3)
    fd = {X: rs.randn(40, B, I).astype(np.float32), y: rs.randn(40, B, H).astype(np.float32)}
    want = rg.Session(g).run([loss] + grads, fd)
    keep_all = rg.Session(g, device=SimulatedDevice()).memory_plan([loss] + grads, fd) \
        .keep_all_peak
    sess = rg.Session(g, device=SimulatedDevice(capacity=keep_all), memory_budget=keep_all)
    got = sess.run([loss] + grads, fd)
    plan = sess.memory_plan([loss] + grads, fd)
    assert sess.last_run_report.peak_bytes <= plan.predicted_peak
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], np.sum(fd[y].astype(np.float64) ** 2), rtol=1e-5)


def test_a_fed_split_output_under_a_budget_is_planned():
    """parts[1] of a split fed next to a loop, under a budget only recomputation or spilling
    meets: the planner's model writes the fed part to a slot of its own (its keys crashed
    the spill chooser), and at the smallest budget found the run fits with the values of an
    unbudgeted run."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [T, B, I], name="X")
        W0 = rg.get_variable("W0", [I, 3 * H])
        parts = rg.split(rg.tanh(rg.matmul(rg.reshape(X, [T * B, I]), W0)), 3, axis=1)
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, time_major=True)
        loss = rg.reduce_sum(parts[0] * parts[1]) + rg.reduce_sum(y * y)
        fetches = [loss] + rg.gradients(loss, rg.trainable_variables())
    rs = np.random.RandomState(4)
    fd = {X: rs.randn(T, B, I).astype(np.float32),
          parts[1]: rs.randn(T * B, H).astype(np.float32)}
    want = rg.Session(g).run(fetches, fd)
    floor = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd) \
        .min_budget
    sess = rg.Session(g, device=SimulatedDevice(capacity=floor), memory_budget=floor)
    got = sess.run(fetches, fd)
    assert sess.last_run_report.peak_bytes <= floor
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("passes", [True, False])
def test_a_fed_tensor_is_not_merged_with_its_twin(passes):
    """a1 = tanh(x) fed, a2 = tanh(x) fetched (and constants alike): cse merged the two, so
    the fetch returned the fed array; TF1 replaces the fed tensor alone."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")
        a1, a2 = rg.tanh(x), rg.tanh(x)
        c1, c2 = rg.constant(2.0) * 3.0, rg.constant(2.0) * 3.0
    xv = np.array([0.1, 0.2, 0.3], np.float32)
    nine = np.full(3, 9.0, np.float32)
    sess = rg.Session(g, passes=passes)
    np.testing.assert_allclose(sess.run(a2, {x: xv, a1: nine}), np.tanh(xv), rtol=1e-6)
    np.testing.assert_allclose(sess.run(a1, {x: xv, a2: nine}), np.tanh(xv), rtol=1e-6)
    assert sess.run([c1, c2], {c1: 100.0}) == [100.0, 6.0]
