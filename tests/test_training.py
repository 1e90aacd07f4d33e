"""Optimizers (SGD, momentum, Adam) against hand-written NumPy updates; training end to end."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg


# --- a tiny least-squares problem, with its gradient by hand ---------------------------------------
RNG = np.random.default_rng(0)
A = RNG.normal(size=(6, 3)).astype(np.float64)
B = RNG.normal(size=(6, 2)).astype(np.float64)
W0 = RNG.normal(size=(3, 2)).astype(np.float64)
C0 = RNG.normal(size=(2,)).astype(np.float64)


def _np_loss_and_grads(w, c):
    r = A @ w + c - B
    loss = np.mean(r ** 2)
    g = 2.0 * r / r.size
    return loss, A.T @ g, g.sum(axis=0)


def _problem(optimizer):
    g = rg.Graph()
    with g.as_default():
        w = rg.Variable(W0, name="w")
        c = rg.Variable(C0, name="c")
        loss = rg.reduce_mean(rg.square(rg.matmul(rg.constant(A), w) + c - rg.constant(B)))
        train = optimizer.minimize(loss)
    return g, w, c, loss, train


def _run(optimizer, steps):
    g, w, c, loss, train = _problem(optimizer)
    sess = rg.Session(g)
    history = []
    for _ in range(steps):
        history.append((sess.read_variable(w), sess.read_variable(c)))
        sess.run(train)
    history.append((sess.read_variable(w), sess.read_variable(c)))
    return sess, history, loss


def _numpy_sgd(lr, steps):
    w, c, out = W0.copy(), C0.copy(), []
    for _ in range(steps + 1):
        out.append((w.copy(), c.copy()))
        _, gw, gc = _np_loss_and_grads(w, c)
        w, c = w - lr * gw, c - lr * gc
    return out


def _numpy_momentum(lr, mu, steps, nesterov=False):
    w, c = W0.copy(), C0.copy()
    vw, vc = np.zeros_like(w), np.zeros_like(c)
    out = []
    for _ in range(steps + 1):
        out.append((w.copy(), c.copy()))
        _, gw, gc = _np_loss_and_grads(w, c)
        vw, vc = mu * vw + gw, mu * vc + gc
        if nesterov:
            w, c = w - lr * (mu * vw + gw), c - lr * (mu * vc + gc)
        else:
            w, c = w - lr * vw, c - lr * vc
    return out


def _numpy_adam(lr, b1, b2, eps, steps):
    """Kingma & Ba's Adam in TF1's form: bias correction folded into the step size."""
    w, c = W0.copy(), C0.copy()
    m = [np.zeros_like(w), np.zeros_like(c)]
    v = [np.zeros_like(w), np.zeros_like(c)]
    out = []
    for t in range(1, steps + 2):
        out.append((w.copy(), c.copy()))
        _, gw, gc = _np_loss_and_grads(w, c)
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        new = []
        for i, (p, g) in enumerate(((w, gw), (c, gc))):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            new.append(p - lr_t * m[i] / (np.sqrt(v[i]) + eps))
        w, c = new
    return out


def _assert_history(got, want):
    for step, ((w, c), (w_ref, c_ref)) in enumerate(zip(got, want)):
        np.testing.assert_allclose(w, w_ref, rtol=1e-10, atol=1e-12, err_msg=f"step {step}: w")
        np.testing.assert_allclose(c, c_ref, rtol=1e-10, atol=1e-12, err_msg=f"step {step}: c")


# --- exact updates ---------------------------------------------------------------------------------
def test_sgd_matches_numpy():
    _, got, _ = _run(rg.train.GradientDescentOptimizer(0.1), 5)
    _assert_history(got, _numpy_sgd(0.1, 5))


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_numpy(nesterov):
    _, got, _ = _run(rg.train.MomentumOptimizer(0.05, momentum=0.9, use_nesterov=nesterov), 6)
    _assert_history(got, _numpy_momentum(0.05, 0.9, 6, nesterov))


@pytest.mark.parametrize("lr,b1,b2,eps", [(0.001, 0.9, 0.999, 1e-8), (0.1, 0.8, 0.99, 1e-3)])
def test_adam_matches_numpy(lr, b1, b2, eps):
    sess, got, _ = _run(rg.train.AdamOptimizer(lr, beta1=b1, beta2=b2, epsilon=eps), 6)
    _assert_history(got, _numpy_adam(lr, b1, b2, eps, 6))
    step = [n for n in sess.graph.nodes if n.op.name == "variable" and n.name.endswith("step")]
    assert len(step) == 1 and sess.read_variable(step[0].name) == 6


def test_aliases():
    assert rg.train.SGD is rg.train.GradientDescentOptimizer
    assert rg.train.Momentum is rg.train.MomentumOptimizer
    assert rg.train.Adam is rg.train.AdamOptimizer


# --- they decrease a loss --------------------------------------------------------------------------
@pytest.mark.parametrize("opt", [
    lambda: rg.train.GradientDescentOptimizer(0.05),
    lambda: rg.train.MomentumOptimizer(0.02, momentum=0.9),
    lambda: rg.train.AdamOptimizer(0.05),
], ids=["sgd", "momentum", "adam"])
def test_optimizers_decrease_the_loss(opt):
    g, w, c, loss, train = _problem(opt())
    sess = rg.Session(g)
    losses = []
    for _ in range(60):
        losses.append(float(sess.run(loss)))
        sess.run(train)
    sol = np.linalg.lstsq(np.c_[A, np.ones(6)], B, rcond=None)[0]  # the least-squares optimum
    best = _np_loss_and_grads(sol[:3], sol[3])[0]
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] >= best - 1e-9
    assert sum(b > a for a, b in zip(losses, losses[1:])) <= 10  # mostly downhill


def test_train_op_fetched_with_loss_reports_the_pre_update_loss():
    g, w, c, loss, train = _problem(rg.train.GradientDescentOptimizer(0.1))
    sess = rg.Session(g)
    before = sess.run(loss)
    l, _ = sess.run([loss, train])
    assert l == pytest.approx(before, rel=1e-12)
    assert sess.run(loss) < before


def test_only_var_list_is_updated():
    g = rg.Graph()
    with g.as_default():
        a = rg.Variable(np.float32(1.0), name="a")
        b = rg.Variable(np.float32(2.0), name="b")
        loss = rg.square(a * b - 1.0)
        train = rg.train.AdamOptimizer(0.1).minimize(loss, var_list=[a])
    sess = rg.Session(g)
    sess.run(train)
    assert sess.read_variable("b") == 2.0 and sess.read_variable("a") != 1.0


def test_optimizer_errors():
    with pytest.raises(ValueError, match="learning_rate"):
        rg.train.AdamOptimizer(0.0)
    g = rg.Graph()
    with g.as_default():
        rg.Variable(np.float32(1.0), name="a")
        x = rg.placeholder(rg.float32, [], name="x")
        with pytest.raises(ValueError, match="does not depend"):
            rg.train.GradientDescentOptimizer(0.1).minimize(rg.square(x))


# --- recurrent training ------------------------------------------------------------------------------
def test_rnn_regression_trains():
    """A BasicRNNCell learns to output the running sum of its inputs (BPTT through the loop)."""
    rng = np.random.default_rng(1)
    xs = rng.uniform(-1, 1, size=(64, 5, 1)).astype(np.float32)
    ys = np.cumsum(xs, axis=1)[:, -1, :] / 3.0
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 5, 1])
        Y = rg.placeholder(rg.float32, [None, 1])
        _, state = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(8), X, dtype=rg.float32)
        pred = rg.layers.dense(state, 1)
        loss = rg.losses.mean_squared_error(Y, pred)
        train = rg.train.AdamOptimizer(0.02).minimize(loss)
    sess = rg.Session(g, seed=0)
    first = sess.run(loss, {X: xs, Y: ys})
    for _ in range(150):
        sess.run(train, {X: xs, Y: ys})
    assert sess.run(loss, {X: xs, Y: ys}) < 0.1 * first


def test_classifier_learns_digits_quickly():
    from rnngraph.demo import build_classifier, load_digit_sequences, train
    data = load_digit_sequences(seed=0)
    model = build_classifier(n_neurons=32, learning_rate=0.01)
    result = train(model, data, n_epochs=3, batch_size=64, seed=0, progress=False)
    assert result.test_accuracy > 0.6  # chance is 0.1
    assert len(result.history) == 3 and result.history[-1][1] < result.history[0][1]


@pytest.mark.parametrize("cell", ["basic", "lstm", "gru"])
def test_static_and_dynamic_classifiers_train_identically(cell):
    from rnngraph.demo import build_classifier, load_digit_sequences
    data = load_digit_sequences(seed=0)
    feed_x, feed_y = data.X_train[:40], data.y_train[:40]
    losses = {}
    for unroll in ("dynamic", "static"):
        m = build_classifier(cell=cell, n_neurons=6, unroll=unroll, learning_rate=0.01)
        sess = rg.Session(m.graph, seed=3)
        losses[unroll] = [sess.run([m.loss, m.training_op], {m.X: feed_x, m.y: feed_y})[0]
                          for _ in range(4)]
    np.testing.assert_allclose(losses["dynamic"], losses["static"], rtol=1e-5)
