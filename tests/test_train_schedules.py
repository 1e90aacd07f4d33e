"""Learning rates as tensors, the global step, schedules against their closed forms, gradient
clipping against NumPy, RMSProp and Adagrad against NumPy implementations, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import rnngraph as rg


def _run_schedule(make, steps=25):
    """The schedule's value at global steps 0 .. steps-1, stepping the global step with a
    training op (minimize(..., global_step=))."""
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [2], initializer=rg.initializers.Constant(1.0))
        gs = rg.train.get_or_create_global_step()
        lr = make(gs)
        train = rg.train.GradientDescentOptimizer(lr).minimize(rg.reduce_sum(w * w),
                                                                global_step=gs)
    sess = rg.Session(g)
    got = []
    for _ in range(steps):
        got.append(float(sess.run(lr)))
        sess.run(train)
    assert int(sess.read_variable(gs)) == steps
    return np.array(got)


STEPS = np.arange(25, dtype=np.float64)


def test_exponential_decay():
    got = _run_schedule(lambda gs: rg.train.exponential_decay(0.5, gs, 7, 0.8))
    np.testing.assert_allclose(got, 0.5 * 0.8 ** (STEPS / 7), rtol=1e-6)
    got = _run_schedule(lambda gs: rg.train.exponential_decay(0.5, gs, 7, 0.8, staircase=True))
    np.testing.assert_allclose(got, 0.5 * 0.8 ** np.floor(STEPS / 7), rtol=1e-6)


def test_polynomial_decay():
    got = _run_schedule(lambda gs: rg.train.polynomial_decay(0.3, gs, 10, 0.01, power=2.0))
    s = np.minimum(STEPS, 10)
    np.testing.assert_allclose(got, (0.3 - 0.01) * (1 - s / 10) ** 2 + 0.01, rtol=1e-6)
    got = _run_schedule(lambda gs: rg.train.polynomial_decay(0.3, gs, 10, 0.01, cycle=True))
    d = 10 * np.maximum(1, np.ceil(STEPS / 10))
    np.testing.assert_allclose(got, (0.3 - 0.01) * (1 - STEPS / d) + 0.01, rtol=1e-6)


def test_cosine_decay():
    got = _run_schedule(lambda gs: rg.train.cosine_decay(0.2, gs, 16, alpha=0.1))
    s = np.minimum(STEPS, 16)
    want = 0.2 * (0.9 * 0.5 * (1 + np.cos(np.pi * s / 16)) + 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_piecewise_constant():
    got = _run_schedule(lambda gs: rg.train.piecewise_constant(gs, [5, 12], [1.0, 0.5, 0.1]))
    want = np.where(STEPS <= 5, 1.0, np.where(STEPS <= 12, 0.5, 0.1))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_placeholder_learning_rate_changes_every_run_as_plain_sgd_does():
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [3], initializer=rg.initializers.Constant([1.0, -2.0, 0.5]))
        lr = rg.placeholder(rg.float32, [])
        train = rg.train.GradientDescentOptimizer(lr).minimize(rg.reduce_sum(w * w))
    sess = rg.Session(g)
    want = np.array([1.0, -2.0, 0.5], np.float32)
    for rate in (0.1, 0.01, 0.3):
        sess.run(train, {lr: rate})
        want = want - np.float32(rate) * 2 * want
        np.testing.assert_allclose(sess.read_variable(w), want, rtol=1e-6)


def test_changing_a_built_in_learning_rate_afterwards_raises_instead_of_being_ignored():
    with rg.Graph().as_default():
        w = rg.get_variable("w", [1])
        opt = rg.train.AdamOptimizer(0.1)
        opt.learning_rate = 0.2            # before minimize: fine
        assert opt.learning_rate == 0.2
        opt.minimize(rg.reduce_sum(w))
        with pytest.raises(AttributeError, match="pass a tensor as the learning rate"):
            opt.learning_rate = 0.5


# --- optimizers against NumPy --------------------------------------------------------------------
W0 = np.array([[0.5, -1.0], [2.0, 0.25]], np.float64)
X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.7]])


def _loss_grad(w):
    """loss = sum((X @ w)^2) / 2 -> d/dw = X^T X w."""
    return X.T @ (X @ w)


def _train(opt, steps=6):
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [2, 2], rg.float64, initializer=rg.initializers.Constant(W0))
        loss = rg.reduce_sum(rg.square(rg.matmul(rg.constant(X), w))) * 0.5
        train = opt.minimize(loss)
    sess = rg.Session(g)
    out = []
    for _ in range(steps):
        sess.run(train)
        out.append(sess.read_variable(w))
    return out


@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.5, False), (0.3, True)])
def test_rmsprop_matches_numpy(momentum, centered):
    got = _train(rg.train.RMSPropOptimizer(0.01, decay=0.9, momentum=momentum, epsilon=1e-6,
                                           centered=centered))
    w, ms, mg, mom = W0.copy(), np.ones_like(W0), np.zeros_like(W0), np.zeros_like(W0)
    for step in got:
        g = _loss_grad(w)
        ms = 0.9 * ms + 0.1 * g * g
        denom = ms
        if centered:
            mg = 0.9 * mg + 0.1 * g
            denom = ms - mg * mg
        mom = momentum * mom + 0.01 * g / np.sqrt(denom + 1e-6)
        w = w - mom
        np.testing.assert_allclose(step, w, rtol=1e-12)


def test_adagrad_matches_numpy():
    got = _train(rg.train.AdagradOptimizer(0.1, initial_accumulator_value=0.2))
    w, acc = W0.copy(), np.full_like(W0, 0.2)
    for step in got:
        g = _loss_grad(w)
        acc = acc + g * g
        w = w - 0.1 * g / np.sqrt(acc)
        np.testing.assert_allclose(step, w, rtol=1e-12)


# --- clipping against NumPy -------------------------------------------------------------------------
def test_clip_by_global_norm_matches_numpy():
    a = np.array([[3.0, -4.0], [1.0, 2.0]])
    b = np.array([12.0, -0.5, 1.0])
    for clip in (1.0, 5.0, 100.0):
        g = rg.Graph()
        with g.as_default():
            ta, tb = rg.constant(a), rg.constant(b)
            (ca, none, cb), norm = rg.train.clip_by_global_norm([ta, None, tb], clip)
        assert none is None
        va, vb, vn = rg.Session(g).run([ca, cb, norm])
        gn = math.sqrt((a ** 2).sum() + (b ** 2).sum())
        scale = clip / max(gn, clip)
        np.testing.assert_allclose(vn, gn, rtol=1e-12)
        np.testing.assert_allclose(va, a * scale, rtol=1e-12)
        np.testing.assert_allclose(vb, b * scale, rtol=1e-12)


def test_clip_by_norm_and_by_value_match_numpy():
    t = np.array([[3.0, 4.0], [0.3, 0.4]])
    g = rg.Graph()
    with g.as_default():
        c = rg.constant(t)
        whole = rg.train.clip_by_norm(c, 2.0)
        rows = rg.train.clip_by_norm(c, 2.0, axes=[1])
        vals = rg.train.clip_by_value(c, 0.35, 3.5)
    vw, vr, vv = rg.Session(g).run([whole, rows, vals])
    np.testing.assert_allclose(vw, t * 2.0 / np.linalg.norm(t), rtol=1e-12)
    row_norm = np.linalg.norm(t, axis=1, keepdims=True)
    np.testing.assert_allclose(vr, t * 2.0 / np.maximum(row_norm, 2.0), rtol=1e-12)
    np.testing.assert_allclose(vv, np.clip(t, 0.35, 3.5))


def test_clipped_training_matches_numpy():
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [2, 2], rg.float64, initializer=rg.initializers.Constant(W0))
        loss = rg.reduce_sum(rg.square(rg.matmul(rg.constant(X), w))) * 0.5
        opt = rg.train.GradientDescentOptimizer(0.1)
        gv = opt.compute_gradients(loss)
        clipped, _ = rg.train.clip_by_global_norm([gr for gr, _ in gv], 1.0)
        train = opt.apply_gradients(zip(clipped, [v for _, v in gv]))
    sess = rg.Session(g)
    want = W0.copy()
    for _ in range(4):
        sess.run(train)
        gr = _loss_grad(want)
        want = want - 0.1 * gr * 1.0 / max(np.linalg.norm(gr), 1.0)
        np.testing.assert_allclose(sess.read_variable(w), want, rtol=1e-12)


# --- bad input ---------------------------------------------------------------------------------------
def test_bad_input_names_the_argument_and_the_line():
    with rg.Graph().as_default():
        gs = rg.train.get_or_create_global_step()
        assert rg.train.get_or_create_global_step() is gs
        with pytest.raises(ValueError, match=r"boundaries must be strictly increasing.*test_train"):
            rg.train.piecewise_constant(gs, [10, 5], [1.0, 0.5, 0.1])
        with pytest.raises(ValueError, match=r"values needs one more entry"):
            rg.train.piecewise_constant(gs, [5, 10], [1.0, 0.5])
        with pytest.raises(ValueError, match=r"decay_rate must be >= 0.*test_train"):
            rg.train.exponential_decay(0.1, gs, 10, -0.5)
        with pytest.raises(ValueError, match=r"decay_steps must be > 0.*test_train"):
            rg.train.exponential_decay(0.1, gs, 0, 0.5)
        with pytest.raises(ValueError, match=r"decay_steps must be > 0"):
            rg.train.cosine_decay(0.1, gs, -3)
        with pytest.raises(ValueError, match=r"power must be >= 0"):
            rg.train.polynomial_decay(0.1, gs, 10, power=-1.0)
        with pytest.raises(ValueError, match=r"learning_rate must be > 0.*test_train"):
            rg.train.RMSPropOptimizer(0.0)
        with pytest.raises(TypeError, match=r"learning_rate must be a float scalar tensor"):
            rg.train.AdamOptimizer(rg.placeholder(rg.float32, [3]))
        with pytest.raises(ValueError, match=r"decay must be in \[0.0, 1.0\]"):
            rg.train.RMSPropOptimizer(0.1, decay=1.5)
        with pytest.raises(ValueError, match=r"initial_accumulator_value must be > 0"):
            rg.train.AdagradOptimizer(0.1, initial_accumulator_value=0.0)
        with pytest.raises(ValueError, match=r"clip_norm must be > 0.*test_train"):
            rg.train.clip_by_global_norm([rg.constant([1.0])], -1.0)
        with pytest.raises(TypeError, match=r"t_list must be a list"):
            rg.train.clip_by_global_norm(rg.constant([1.0]), 1.0)
        with pytest.raises(TypeError, match=r"global_step must be a variable"):
            w = rg.get_variable("w", [1])
            rg.train.GradientDescentOptimizer(0.1).minimize(rg.reduce_sum(w),
                                                             global_step=rg.constant(0))
        with pytest.raises(ValueError, match="already has a global step"):
            rg.train.create_global_step()


def test_clipping_has_tf1s_top_level_names():
    # TF1 code calls tf.clip_by_global_norm / tf.clip_by_norm / tf.global_norm: renamed, rg.*
    t = np.array([3.0, 4.0])
    g = rg.Graph()
    with g.as_default():
        x = rg.constant(t)
        (clipped,), norm = rg.clip_by_global_norm([x], 2.5)
        by_norm = rg.clip_by_norm(x, 1.0)
        total = rg.global_norm([x, x])
    got = rg.Session(g).run([clipped, norm, by_norm, total])
    np.testing.assert_allclose(got[0], t * 0.5, rtol=1e-12)
    np.testing.assert_allclose(got[1], 5.0, rtol=1e-12)
    np.testing.assert_allclose(got[2], t / 5.0, rtol=1e-12)
    np.testing.assert_allclose(got[3], np.sqrt(50.0), rtol=1e-12)
