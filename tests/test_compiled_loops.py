"""Compiled loops (backends/numba/loop.py): with the accelerated backend, a plain loop's steps
after the first run as one compiled function. They must give the Python driver's bits, hand
over to it where they cannot run, and compute what an independent NumPy LSTM computes."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import rnngraph as rg  # noqa: E402
from test_memory_chunks import numpy_lstm_backward, numpy_lstm_forward  # noqa: E402


@pytest.fixture(autouse=True)
def _accelerated_from_the_first_run(monkeypatch):
    """Sessions use the numba kernels from their first run (accelerate="auto" would start each
    program on NumPy kernels, where no loop compiles)."""
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)


CELLS = {"lstm": lambda h: rg.nn.LSTMCell(h), "gru": rg.nn.GRUCell,
         "basic": rg.nn.BasicRNNCell,
         "lstm_proj": lambda h: rg.nn.LSTMCell(h, num_proj=3, use_peepholes=True)}


def _model(cell: str, batch: int, T: int, I: int, H: int, seed: int = 0):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, T, I])
        out, _ = rg.nn.dynamic_rnn(CELLS[cell](H), X, dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        grads = rg.gradients(loss, [X] + rg.global_variables())
    x = np.random.default_rng(seed).standard_normal((batch, T, I)).astype(np.float32)
    return g, out, grads, {X: x}


def loop_runs(sess) -> list:
    """LoopRun records of the last call of every loop in `sess`'s programs."""
    return [ex.last_run for prog in sess.programs() for ex in prog.loop_executors()
            if ex.last_run is not None]


def _run_both(g, fetches, feed):
    """(results with compiled loops, results without, the compiled run's LoopRuns)."""
    on = rg.Session(g, seed=4)
    off = rg.Session(g, seed=4, compile_loops=False)
    got, ref = on.run(fetches, feed), off.run(fetches, feed)
    assert all(r.compiled == 0 for r in loop_runs(off))
    return got, ref, loop_runs(on)


def _flat(results):
    out = []
    for r in results:
        out += _flat(r) if isinstance(r, (list, tuple)) else [np.asarray(r)]
    return out


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("batch,H", [(4, 5), (16, 128)], ids=["small", "halves"])
def test_compiled_steps_give_the_python_drivers_bits(cell, batch, H):
    # (16, 128): the step's products are split in column halves, as the NumPy kernel splits them
    T = 6
    g, out, grads, feed = _model(cell, batch, T, 3, H)
    got, ref, runs = _run_both(g, [out, grads], feed)
    for a, b in zip(_flat(got), _flat(ref)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # the forward and the gradient loop: steps 2..T compiled (step 1 allocates the stacks)
    assert [(r.driver_from, r.compiled) for r in runs] == [(1, T - 1), (1, T - 1)]


def test_compiled_lstm_matches_an_independent_numpy_lstm():
    B, T, I, H = 5, 9, 4, 6
    g, out, grads, feed = _model("lstm", B, T, I, H, seed=2)
    sess = rg.Session(g, seed=7)
    y, gr = sess.run([out, grads], feed)
    assert all(r.compiled == T - 1 for r in loop_runs(sess))
    x = feed[next(iter(feed))].astype(np.float64)
    with g.as_default():
        kernel, bias = [sess.read_variable(v).astype(np.float64) for v in rg.global_variables()]
    ys, tape = numpy_lstm_forward(x, kernel, bias)
    dW, db = numpy_lstm_backward(tape, 2 * ys, kernel, I)
    # (float32 throughout, and the fused kernels' rational tanh and sigmoid)
    np.testing.assert_allclose(y, ys, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gr[1], dW, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gr[2], db, rtol=1e-4, atol=1e-4)


def test_a_batch_of_one_hands_the_steps_to_the_python_driver():
    # NumPy multiplies a single row by gemv, which the compiled product does not call: the
    # first compiled step declines and the Python driver runs the loop, with the same bits
    T = 5
    g, out, grads, feed = _model("lstm", 1, T, 3, 4)
    got, ref, runs = _run_both(g, [out, grads], feed)
    for a, b in zip(_flat(got), _flat(ref)):
        assert np.array_equal(a, b)
    assert [(r.driver_from, r.compiled) for r in runs] == [(1, 0), (1, 0)]


def test_a_body_with_an_op_it_cannot_compile_keeps_the_python_driver():
    w = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    g = rg.Graph()
    with g.as_default():
        E = rg.placeholder(rg.float32, [None, 3, 4])
        x0 = rg.placeholder(rg.float32, [3, 4])

        def step(acc, x):   # a mean over rows each step: not among the compiled kernels
            y = rg.tanh(rg.matmul(acc, rg.constant(w)) + x)
            y = y - rg.reduce_mean(y, axis=0, keepdims=True)
            return y, y
        _, ys = rg.lax_scan(step, x0, E)
    rng = np.random.default_rng(3)
    feed = {E: rng.standard_normal((6, 3, 4)).astype(np.float32),
            x0: rng.standard_normal((3, 4)).astype(np.float32)}
    sess = rg.Session(g)
    got = sess.run(ys, feed)
    assert [(r.driver_from, r.compiled) for r in loop_runs(sess)] == [(1, 0)]
    acc, want = feed[x0].astype(np.float64), []
    for t in range(6):
        y = np.tanh(acc @ w + feed[E][t])
        acc = y - y.mean(0, keepdims=True)
        want.append(acc)
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-5)


def test_a_time_major_gru_gives_the_python_drivers_bits():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 7, 5])
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(5), rg.transpose(X, [1, 0, 2]),
                                   dtype=rg.float32, time_major=True)
        grads = rg.gradients(rg.reduce_sum(rg.tanh(out) * out), [X] + rg.global_variables())
    feed = {X: np.random.default_rng(5).standard_normal((3, 7, 5)).astype(np.float32)}
    got, ref, runs = _run_both(g, [out, grads], feed)
    for a, b in zip(_flat(got), _flat(ref)):
        assert np.array_equal(a, b)
    assert [r.compiled for r in runs] == [6, 6]


def test_a_one_column_half_is_left_to_the_python_driver():
    # LSTMCell(33) at batch 64: the backward step's [64, 132] @ [132, 33] splits into halves
    # of 32 columns and 1 column, and NumPy multiplies a one-column half by gemv (other bits
    # than a GEMM): that loop keeps the Python driver, the forward loop is compiled
    T = 4
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, T, 3])
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(33), X, dtype=rg.float32)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
    feed = {X: np.random.default_rng(6).standard_normal((64, T, 3)).astype(np.float32)}
    got, ref, runs = _run_both(g, [out, grads], feed)
    for a, b in zip(_flat(got), _flat(ref)):
        assert np.array_equal(a, b)
    assert [r.compiled for r in runs] == [T - 1, 0]


def _scan_graph(step, init_shape, xs_shape, dtype=rg.float32):
    g = rg.Graph()
    with g.as_default():
        XS = rg.placeholder(dtype, xs_shape)
        A0 = rg.placeholder(rg.float32, init_shape)
        final, ys = rg.lax_scan(step, A0, XS)
    return g, XS, A0, final, ys


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_check_numerics_keeps_the_python_driver_and_names_the_node():
    B, H, T = 4, 8, 40
    g = rg.Graph()
    with g.as_default():
        XS = rg.placeholder(rg.float32, [T, B, H])
        A0 = rg.placeholder(rg.float32, [B, H])
        W = rg.placeholder(rg.float32, [H, H])
        final, _ = rg.lax_scan(lambda acc, x: (rg.matmul(acc, W, name="grow") * x, acc), A0, XS)
    feed = {XS: np.full((T, B, H), 3.0, np.float32), A0: np.ones((B, H), np.float32),
            W: np.full((H, H), 4.0, np.float32)}   # x96 a step: Inf after ~20 steps
    with pytest.raises(rg.errors.NumericsError, match="matmul 'scan/grow'"):
        rg.Session(g, check_numerics=True).run(final, feed)


def test_a_stacked_value_that_changes_shape_is_reported_at_its_node():
    # a carried value of static shape [None, None] grows each step and is stacked: the stack's
    # row (from step 1) no longer fits; the Python driver names the concat that made it
    g, XS, A0, final, ys = _scan_graph(lambda acc, x: (rg.concat([acc, x], axis=1), acc),
                                       [None, None], [4, 3, 2])
    feed = {XS: np.ones((4, 3, 2), np.float32), A0: np.ones((3, 2), np.float32)}
    for compile_loops in (True, False):
        with pytest.raises(rg.ExecutionError, match="concat 'scan/"):
            rg.Session(g, compile_loops=compile_loops).run([final, ys], feed)


def test_scalar_rows_keep_the_python_driver():
    g, XS, A0, final, ys = _scan_graph(lambda acc, x: (acc + acc, x), [3, 4], [6])
    feed = {XS: np.arange(6, dtype=np.float32), A0: np.ones((3, 4), np.float32)}
    got, ref, runs = _run_both(g, [final, ys], feed)
    for a, b in zip(_flat(got), _flat(ref)):
        assert np.array_equal(a, b)
    np.testing.assert_array_equal(got[0], np.full((3, 4), 64.0, np.float32))
    np.testing.assert_array_equal(got[1], np.arange(6, dtype=np.float32))
    assert [(r.driver_from, r.compiled) for r in runs] == [(1, 0)]


def test_a_long_loop_runs_compiled_over_several_calls():
    # (each compiled call runs the steps that fit in a few milliseconds: 3000 steps take
    # several calls, backwards too, across which carried values and stacks continue)
    T = 3000
    g, out, grads, feed = _model("gru", 8, T, 3, 16, seed=8)
    got, ref, runs = _run_both(g, [out, grads], feed)
    for a, b in zip(_flat(got), _flat(ref)):
        assert np.array_equal(a, b)
    assert [r.compiled for r in runs] == [T - 1, T - 1]
