"""The log-uniform candidate sampler and the sampled losses (tf.nn.sampled_softmax_loss,
tf.nn.nce_loss) against NumPy written here, with gradient checks."""
import numpy as np
import pytest

import rnngraph as rg
from gradcheck import check_gradients

RNG = np.random.default_rng(3)


def log_uniform_p(k, range_max):
    return np.log((k + 2.0) / (k + 1.0)) / np.log(range_max + 1.0)


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def test_sampler_unique_and_counts(graph):
    labels = rg.placeholder(rg.int64, [3, 2])
    s, te, se = rg.nn.log_uniform_candidate_sampler(labels, 2, 6, True, 30)
    s2, te2, se2 = rg.nn.log_uniform_candidate_sampler(labels, 2, 6, False, 30)
    lab = np.array([[0, 1], [5, 29], [2, 2]])
    with rg.Session() as sess:
        a = sess.run([s, te, se, s2, te2, se2], {labels: lab})
        b = sess.run(s, {labels: lab})
    sampled, true_exp, samp_exp = a[:3]
    assert sampled.dtype == np.int64 and len(set(sampled.tolist())) == 6
    assert np.all((sampled >= 0) & (sampled < 30)) and not np.array_equal(sampled, b)
    # unique: 1 - (1 - p) ** tries for one number of tries shared by all classes
    tries = np.log1p(-true_exp[0, 0].astype(np.float64)) / np.log1p(-log_uniform_p(0, 30))
    assert tries >= 6
    np.testing.assert_allclose(true_exp, -np.expm1(tries * np.log1p(-log_uniform_p(lab, 30))),
                               rtol=1e-5)
    np.testing.assert_allclose(samp_exp, -np.expm1(tries * np.log1p(-log_uniform_p(sampled, 30))),
                               rtol=1e-5)
    # not unique: num_sampled * p
    np.testing.assert_allclose(a[4], 6 * log_uniform_p(lab, 30), rtol=1e-6)
    np.testing.assert_allclose(a[5], 6 * log_uniform_p(a[3], 30), rtol=1e-6)


def test_sampler_follows_the_distribution(graph):
    labels = rg.constant(np.zeros((1, 1), np.int64))
    s, _, _ = rg.nn.log_uniform_candidate_sampler(labels, 1, 4000, False, 10)
    with rg.Session() as sess:
        draws = sess.run(s)
    freq = np.bincount(draws, minlength=10) / 4000
    np.testing.assert_allclose(freq, log_uniform_p(np.arange(10), 10), atol=0.03)
    with pytest.raises(ValueError, match="cannot draw 11 unique classes"):
        rg.nn.log_uniform_candidate_sampler(labels, 1, 11, True, 10)


def _np_logits(w, b, labels, x, sampled, te, se, remove):
    true_logits = (x[:, None, :] * w[labels]).sum(2) + b[labels] - np.log(te)
    samp = x @ w[sampled].T + b[sampled] - np.log(se)
    if remove:
        hit = (labels[:, :, None] == sampled[None, None, :]).any(1)
        samp = samp - hit * np.finfo(np.float32).max
    nt = labels.shape[1]
    return (np.concatenate([true_logits, samp], 1),
            np.concatenate([np.full(true_logits.shape, 1.0 / nt), np.zeros(samp.shape)], 1))


def test_sampled_softmax_and_nce_with_given_samples(graph):
    C, D, B = 12, 3, 4
    w, b, x = RNG.standard_normal((C, D)), RNG.standard_normal(C), RNG.standard_normal((B, D))
    labels = np.array([[1, 3], [2, 0], [7, 7], [11, 5]])
    sampled = np.array([3, 4, 9, 0, 6])
    te, se = RNG.random((B, 2)) + 0.1, RNG.random(5) + 0.1
    values = (rg.constant(sampled), rg.constant(te), rg.constant(se))
    sm = rg.nn.sampled_softmax_loss(rg.constant(w), rg.constant(b), labels, rg.constant(x), 5, C,
                                    num_true=2, sampled_values=values)
    nce = rg.nn.nce_loss(rg.constant(w), rg.constant(b), labels, rg.constant(x), 5, C,
                         num_true=2, sampled_values=values)
    with rg.Session() as sess:
        got_sm, got_nce = sess.run([sm, nce])
    logits, targets = _np_logits(w, b, labels, x, sampled, te, se, True)
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(got_sm, -(targets * logp).sum(1), rtol=1e-10)
    logits, targets = _np_logits(w, b, labels, x, sampled, te, se, False)
    ref = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
    np.testing.assert_allclose(got_nce, ref.sum(1), rtol=1e-10)

    for loss in (rg.nn.sampled_softmax_loss, rg.nn.nce_loss):
        check_gradients(lambda w, b, x: loss(w, b, labels, x, 5, C, num_true=2,
                                             sampled_values=(sampled, te, se)),
                        {"w": w, "b": b, "x": x})


def test_sampled_softmax_trains_a_classifier(graph):
    C, D = 50, 8
    x = rg.placeholder(rg.float32, [None, D])
    y = rg.placeholder(rg.int32, [None])
    W = rg.get_variable("W", [C, D])
    b = rg.get_variable("b", [C], initializer=rg.zeros_initializer())
    h = rg.layers.dense(x, D, activation=rg.tanh)
    loss = rg.reduce_mean(rg.nn.sampled_softmax_loss(W, b, rg.expand_dims(y, 1), h, 10, C))
    full = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=rg.matmul(h, W, transpose_b=True) + b))
    train = rg.train.AdamOptimizer(0.05).minimize(loss)
    xs = RNG.standard_normal((64, D)).astype(np.float32)
    ys = (np.abs(xs[:, :3]).argmax(1) * 7).astype(np.int32)
    with rg.Session() as sess:
        sess.run(rg.global_variables_initializer())
        before = sess.run(full, {x: xs, y: ys})
        for _ in range(60):
            sess.run(train, {x: xs, y: ys})
        after = sess.run(full, {x: xs, y: ys})
    assert after < 0.5 * before
