"""The general while_loop: runs a data-dependent number of steps, differentiates (against a
closed form and central differences), bounds with maximum_iterations, and carries
namedtuples (LSTMStateTuple) as loop variables."""
from __future__ import annotations

import math

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.nn import LSTMStateTuple

EPS = 1e-6


def geometric_graph(maximum_iterations=None):
    """x <- 1.5 x + c while x <= threshold (a counter i counts the steps)."""
    g = rg.Graph()
    with g.as_default():
        x0 = rg.placeholder(rg.float64, [], name="x0")
        c = rg.placeholder(rg.float64, [], name="c")
        thr = rg.placeholder(rg.float64, [], name="threshold")
        i, x = rg.while_loop(lambda i, x: x <= thr,
                             lambda i, x: (i + 1, x * 1.5 + c),
                             [rg.constant(0), x0], maximum_iterations=maximum_iterations)
        dx0, dc = rg.gradients(x, [x0, c])
    return g, (x0, c, thr), (i, x, dx0, dc)


def closed_form(x0, c, thr, max_iter=None):
    """x_n = 1.5^n x0 + 2 c (1.5^n - 1); n = first n with x_n > thr (at most max_iter)."""
    n, x = 0, x0
    while x <= thr and (max_iter is None or n < max_iter):
        n += 1
        x = 1.5 ** n * x0 + 2 * c * (1.5 ** n - 1)
    return n, x, 1.5 ** n, 2 * (1.5 ** n - 1)


@pytest.mark.parametrize("x0, c, thr, max_iter", [
    (1.0, 0.5, 100.0, None),    # 10 steps
    (0.3, 0.1, 7.0, None),
    (1.0, 0.5, 100.0, 4),       # maximum_iterations stops it first
    (5.0, 0.0, 2.0, None),      # the condition is false at once: zero steps
    (1.0, 0.5, 100.0, 0),       # maximum_iterations=0
])
def test_geometric_while_loop_value_and_gradient(x0, c, thr, max_iter):
    g, (X0, C, THR), (i, x, dx0, dc) = geometric_graph(max_iter)
    sess = rg.Session(g)
    feed = {X0: x0, C: c, THR: thr}
    i_v, x_v, dx0_v, dc_v = sess.run([i, x, dx0, dc], feed)
    n, x_ref, dx0_ref, dc_ref = closed_form(x0, c, thr, max_iter)
    assert int(i_v) == n
    if max_iter is not None:
        assert n <= max_iter
    assert math.isclose(float(x_v), x_ref, rel_tol=1e-12)
    assert math.isclose(float(dx0_v), dx0_ref, rel_tol=1e-12)
    assert math.isclose(float(dc_v), dc_ref, rel_tol=1e-12, abs_tol=1e-12)
    # central differences (the step count does not change under a tiny perturbation)
    for ph, base, sym in ((X0, x0, dx0_v), (C, c, dc_v)):
        plus = sess.run(x, {**feed, ph: base + EPS})
        minus = sess.run(x, {**feed, ph: base - EPS})
        assert math.isclose(float(sym), (plus - minus) / (2 * EPS), rel_tol=1e-6, abs_tol=1e-6)


def test_while_loop_compiles_once_and_runs_different_step_counts():
    g, (X0, C, THR), (i, x, dx0, _) = geometric_graph(maximum_iterations=50)
    sess = rg.Session(g)
    for thr in (1.0, 10.0, 1e3, 1e6):
        i_v, x_v, d_v = sess.run([i, x, dx0], {X0: 1.0, C: 0.0, THR: thr})
        n = closed_form(1.0, 0.0, thr, 50)[0]
        assert int(i_v) == n and math.isclose(float(d_v), 1.5 ** n, rel_tol=1e-12)


def test_vector_while_loop_gradient_matches_finite_differences():
    """x <- tanh(W x) + x * a, while max|x| < 3, at most 7 steps; d sum(x * r) / d (x0, W, a)."""
    g = rg.Graph()
    with g.as_default():
        x0 = rg.placeholder(rg.float64, [2, 3])
        W = rg.placeholder(rg.float64, [3, 3])
        a = rg.placeholder(rg.float64, [3])
        r = rg.placeholder(rg.float64, [2, 3])
        x = rg.while_loop(lambda x: rg.reduce_max(rg.abs(x)) < 3.0,
                          lambda x: rg.tanh(rg.matmul(x, W)) + x * a, x0, maximum_iterations=7)
        loss = rg.reduce_sum(x * r)
        grads = rg.gradients(loss, [x0, W, a])
    rng = np.random.default_rng(0)
    vals = [0.5 * rng.standard_normal((2, 3)), rng.standard_normal((3, 3)),
            1.0 + 0.3 * rng.random(3), rng.standard_normal((2, 3))]
    phs = [x0, W, a, r]
    sess = rg.Session(g)
    feed = dict(zip(phs, vals))
    sym = sess.run(grads, feed)
    # the same loop in NumPy
    xv, steps = vals[0], 0
    while np.abs(xv).max() < 3.0 and steps < 7:
        xv, steps = np.tanh(xv @ vals[1]) + xv * vals[2], steps + 1
    assert 0 < steps
    np.testing.assert_allclose(sess.run(x, feed), xv, rtol=1e-12)
    for k in range(3):
        num = np.zeros_like(vals[k])
        view = vals[k].reshape(-1)
        for j in range(view.size):
            orig = view[j]
            view[j] = orig + EPS
            p = sess.run(loss, feed)
            view[j] = orig - EPS
            m = sess.run(loss, feed)
            view[j] = orig
            num.reshape(-1)[j] = (p - m) / (2 * EPS)
        np.testing.assert_allclose(sym[k], num, rtol=1e-6, atol=1e-8)


def _lstm_like_numpy(c, h, W, steps):
    for _ in range(steps):
        c = 0.5 * c + np.tanh(h @ W)
        h = np.tanh(c)
    return c, h


def _finite_differences(f, arrays):
    grads = []
    for a in arrays:
        num = np.zeros_like(a)
        view = a.reshape(-1)
        for j in range(view.size):
            orig = view[j]
            view[j] = orig + EPS
            p = f()
            view[j] = orig - EPS
            m = f()
            view[j] = orig
            num.reshape(-1)[j] = (p - m) / (2 * EPS)
        grads.append(num)
    return grads


def _check_state_loop(build_loop):
    """build_loop(c0, h0, W, step) -> final LSTMStateTuple after 4 steps of
    c <- c/2 + tanh(h W), h <- tanh(c). Checks values and d(sum c^2 + sum h)/d(c0, h0, W)."""
    g = rg.Graph()
    with g.as_default():
        c0 = rg.placeholder(rg.float64, [None, 3])
        h0 = rg.placeholder(rg.float64, [None, 3])
        W = rg.placeholder(rg.float64, [3, 3])

        def step(state):
            c2 = state.c * 0.5 + rg.tanh(rg.matmul(state.h, W))
            return LSTMStateTuple(c2, rg.tanh(c2))

        final = build_loop(c0, h0, step)
        assert isinstance(final, LSTMStateTuple)
        loss = rg.reduce_sum(final.c * final.c) + rg.reduce_sum(final.h)
        grads = rg.gradients(loss, [c0, h0, W])
    rng = np.random.default_rng(1)
    vals = [rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal((3, 3))]
    sess = rg.Session(g)
    (c_v, h_v), sym = sess.run([final, grads], dict(zip([c0, h0, W], vals)))
    c_ref, h_ref = _lstm_like_numpy(*vals, steps=4)
    np.testing.assert_allclose(c_v, c_ref, rtol=1e-12)
    np.testing.assert_allclose(h_v, h_ref, rtol=1e-12)

    def loss_np():
        c, h = _lstm_like_numpy(*vals, steps=4)
        return np.sum(c * c) + np.sum(h)

    for k, num in enumerate(_finite_differences(loss_np, vals)):
        np.testing.assert_allclose(sym[k], num, rtol=1e-6, atol=1e-8)


def test_while_loop_over_a_list_holding_an_lstm_state_tuple():
    """loop_vars = [LSTMStateTuple(c, h)]: body(state) gets the tuple, returns [new_state]."""
    def build(c0, h0, step):
        (final,) = rg.while_loop(lambda s: rg.reduce_sum(s.c * s.c) < 1e9,
                                 lambda s: [step(s)], [LSTMStateTuple(c0, h0)],
                                 maximum_iterations=4)
        return final
    _check_state_loop(build)


def test_while_loop_over_counter_and_lstm_state_tuple():
    """Nested loop_vars (i, LSTMStateTuple(c, h)), like tf.while_loop's (i, Pair(j, k)) example;
    the step count comes from the int counter."""
    def build(c0, h0, step):
        i, final = rg.while_loop(lambda i, s: i < 4, lambda i, s: (i + 1, step(s)),
                                 (rg.constant(0), LSTMStateTuple(c0, h0)))
        return final
    _check_state_loop(build)


def test_while_loop_over_lstm_state_tuple_unpacks_fields_like_tf():
    """loop_vars = LSTMStateTuple(c, h): TF calls cond(c, h) and body(c, h)."""
    def build(c0, h0, step):
        return rg.while_loop(lambda c, h: rg.reduce_sum(c * c) < 1e9,
                             lambda c, h: step(LSTMStateTuple(c, h)),
                             LSTMStateTuple(c0, h0), maximum_iterations=4)
    _check_state_loop(build)


def test_while_loop_errors():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [2])
        with pytest.raises(TypeError, match="callable"):
            rg.while_loop(None, lambda x: x, x)
        with pytest.raises(TypeError, match="bool scalar"):
            rg.while_loop(lambda x: x, lambda x: x + 1.0, x)  # cond is not a bool scalar
        with pytest.raises(ValueError, match="state values"):
            rg.while_loop(lambda a, b: a < b, lambda a, b: (a,), [rg.constant(0), rg.constant(1)])
        with pytest.raises(TypeError, match="loop variable 0"):
            rg.while_loop(lambda a: rg.reduce_sum(a) < 3.0, lambda a: rg.cast(a, rg.int32), x)


def test_scan_takes_single_values_like_lax_scan_and_lists_like_before():
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float64, [None, 2])
        final, ys = rg.lax_scan(lambda c, x: (c + x, c * x), rg.zeros([2], rg.float64), xs)
        (f2,), (ys2,) = rg.lax_scan(lambda c, x: ([c[0] + x[0]], [c[0] * x[0]]),
                                [rg.zeros([2], rg.float64)], [xs])
    x = np.arange(8.0).reshape(4, 2)
    got = rg.Session(g).run([final, ys, f2, ys2], {xs: x})
    prefix = np.concatenate([np.zeros((1, 2)), np.cumsum(x, axis=0)[:-1]])
    np.testing.assert_allclose(got[0], x.sum(axis=0))
    np.testing.assert_allclose(got[1], prefix * x)
    np.testing.assert_allclose(got[2], got[0])
    np.testing.assert_allclose(got[3], got[1])


def test_iterating_a_value_needs_a_known_first_dimension():
    g = rg.Graph()
    with g.as_default():
        known = rg.placeholder(rg.float64, [3, 2])
        unknown = rg.placeholder(rg.float64, [None, 2])
        rows = list(known)
        with pytest.raises(TypeError, match="first dimension is unknown"):
            list(unknown)
    assert len(rows) == 3 and all(r.shape == (2,) for r in rows)
    got = rg.Session(g).run(rows, {known: np.arange(6.0).reshape(3, 2)})
    np.testing.assert_allclose(np.stack(got), np.arange(6.0).reshape(3, 2))
