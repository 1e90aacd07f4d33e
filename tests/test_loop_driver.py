"""The generated loop driver (runtime/loop_driver.py): steps after the first run as one
generated function with the body's code inlined. It must compute what the interpreted loop
computes, and report a failing step's node like the Program does."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.numba import fused as fused_numba
from rnngraph.runtime import loop_kernel


@pytest.fixture(autouse=True)
def _accelerated_from_the_first_run(monkeypatch):
    """This module's subject includes the numba kernels: sessions use them from their first run
    (Session(accelerate="auto") would start each program on NumPy kernels)."""
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)


def loop_runs(sess) -> list:
    """LoopRun records of the last call of every loop in `sess`'s programs (the gradient
    program holds the forward loop and the gradient loop)."""
    return [ex.last_run for prog in sess.programs() for ex in prog.loop_executors()
            if ex.last_run is not None]


@pytest.mark.parametrize("lengths", [None, [2, 6, 0, 4]], ids=["full", "active_rows"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_driver_runs_the_steps_after_the_first_and_equals_the_interpreter(cell, lengths):
    T = 6
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, T, 3])
        seq = rg.placeholder(rg.int32, [None])
        make = {"lstm": rg.nn.LSTMCell, "gru": rg.nn.GRUCell}[cell]
        out, state = rg.nn.dynamic_rnn(make(4), X, dtype=rg.float32,
                                       sequence_length=seq if lengths else None)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
    feed = {X: np.random.default_rng(1).standard_normal((4, T, 3)).astype(np.float32)}
    if lengths:
        feed[seq] = np.array(lengths, np.int32)
    sess = rg.Session(g, seed=3)
    fast = sess.run([out, grads], feed)
    # forward and gradient loop: steps 2..T in the driver (shrinking rows with lengths)
    runs = loop_runs(sess)
    assert [(r.driver_from, r.steps, r.active_rows) for r in runs] == \
        [(1, T, lengths is not None)] * 2
    if fused_numba.available():   # the gate kernel writes its stacked outputs in place
        assert max(r.in_place for r in runs) >= (1 if lengths else 4), runs
    interpreted = sess.run([out, grads], feed, report=True)   # tracked: no generated code
    tracked = [r for r in loop_runs(sess) if r not in runs]
    assert [(r.driver_from, r.steps) for r in tracked] == [(None, T)] * 2
    # full rows: the same arithmetic, bit for bit; active rows: the interpreter masks full width
    same = np.testing.assert_array_equal if lengths is None else \
        (lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6))
    same(fast[0], interpreted[0])
    for a, b in zip(fast[1], interpreted[1]):
        same(a, b)
    for b, n in enumerate(lengths or []):
        assert not fast[0][b, n:].any() and not fast[1][0][b, n:].any()


def test_a_step_failing_in_the_driver_names_its_node():
    g = rg.Graph()
    with g.as_default():
        table = rg.constant(np.arange(5.0))
        idx = rg.placeholder(rg.int32, [None])
        def add(acc, i):
            acc = acc + rg.gather(table, i, name="lookup")
            return acc, acc
        _, total = rg.lax_scan(add, rg.constant(0.0, dtype=rg.float64), idx)
    sess = rg.Session(g)
    np.testing.assert_allclose(sess.run(total, {idx: np.array([1, 2, 4], np.int32)}),
                               [1.0, 3.0, 7.0])
    assert [r.driver_from for r in loop_runs(sess)] == [1]   # steps 2.. in the driver
    with pytest.raises(rg.errors.ExecutionError, match="gather 'scan/lookup'.*failed"):
        sess.run(total, {idx: np.array([1, 2, 9], np.int32)})   # the third step fails


def test_a_kernel_writing_in_place_falls_back_and_still_fills_its_destination():
    declined = lambda out, *args: False                     # noqa: E731 - a compiled kernel's
    fallback = lambda a: (a + 1, a * 2)                     # noqa: E731 - "shape mismatch"
    run = fused_numba.kernel_caller(declined, fallback, 1, [1, 1], "rows, cols = a0.shape", (1,))
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    dest = np.zeros((2, 3), np.float32)
    first, second = run(a, dest)
    np.testing.assert_array_equal(first, a + 1)
    np.testing.assert_array_equal(dest, a * 2)
    np.testing.assert_array_equal(second, a * 2)


def test_a_value_the_body_returns_twice_is_stacked_once():
    # BasicRNN's output y_t is its state h_t, which the gradient loop also reads: one stack.
    # (With sequence_length the output is the masked where(...), another value than h_t.)
    lengths = None
    T = 6
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, T, 3])
        seq = rg.placeholder(rg.int32, [None])
        out, state = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(5), X, dtype=rg.float32,
                                       sequence_length=seq if lengths else None)
        grads = rg.gradients(rg.reduce_sum(out * out) + rg.reduce_sum(state),
                             [X] + rg.global_variables())
    feed = {X: np.random.default_rng(2).standard_normal((4, T, 3)).astype(np.float32)}
    if lengths:
        feed[seq] = np.array(lengths, np.int32)
    sess = rg.Session(g, seed=1)
    runs, shared = [], []
    for _ in range(4):   # (the last on numba's kernels)
        runs.append(sess.run([out, grads], feed))
        # the forward loop writes the output and the saved state into one stack
        shared.append([r.shared for r in loop_runs(sess) if r.shared])
    assert all(len(s) == 1 and len(s[0]) == 1 for s in shared), shared
    interpreted = sess.run([out, grads], feed, report=True)   # tracked: a stack per value
    for fast in runs:
        np.testing.assert_allclose(fast[0], interpreted[0], rtol=1e-5, atol=1e-6)
        for a, b in zip(fast[1], interpreted[1]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_which_values_share_a_stack():
    share = loop_kernel.shared_values
    assert share([4, 7, 4], [0, 0, 0]) == (-1, -1, 0)
    assert share([4, 4], [1, 0]) == (-1, 0)     # a residual: the first steps of an output
    assert share([4, 4], [0, 1]) == (-1, -1)    # it would need more steps than there are
    batched = [True, True]
    assert share([4, 4], [0, 0], batched, [False, False]) == (-1, 0)
    assert share([4, 4], [0, 0], batched, [False, True]) == (-1, 0)
    # finished rows: the later value's are read, the earlier one leaves them unzeroed
    assert share([4, 4], [0, 0], batched, [True, False]) == (-1, -1)
    assert share([4, 4], [0, 0], [True, False], [True, True]) == (-1, -1)
