"""TF1 ops and losses added for issue 25, against NumPy written here, with gradient checks:
matmul(transpose_a/b=), range, no_op, stop_gradient, placeholder without a shape, the
softmax / sigmoid cross-entropies, l2_loss, embedding_lookup, sequence_loss (contrib.seq2seq and
legacy_seq2seq), fully_connected, xavier_initializer."""
import numpy as np
import pytest

import rnngraph as rg
from gradcheck import check_gradients

RNG = np.random.default_rng(7)


def _run(fetches, feed=None):
    with rg.Session(accelerate=False) as sess:
        sess.run(rg.global_variables_initializer())
        return sess.run(fetches, feed or {})


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def np_log_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def test_matmul_transpose_flags(graph):
    a, b = RNG.standard_normal((4, 3)), RNG.standard_normal((5, 4))
    A, B = rg.constant(a), rg.constant(b)
    r1 = rg.matmul(A, B, transpose_a=True, transpose_b=True)
    r2 = rg.matmul(B, A, adjoint_a=False, transpose_b=False)
    got1, got2 = _run([r1, r2])
    np.testing.assert_allclose(got1, a.T @ b.T, rtol=1e-12)
    np.testing.assert_allclose(got2, b @ a, rtol=1e-12)
    check_gradients(lambda a, b: rg.matmul(a, b, transpose_a=True, transpose_b=True),
                    {"a": a, "b": b})
    with pytest.raises(NotImplementedError, match="a_is_sparse"):
        rg.matmul(A, A, a_is_sparse=True)


def test_range_and_no_op(graph):
    n = rg.placeholder(rg.int32, [])
    r = rg.range(n)
    r2, r3, r4 = rg.range(2, 11, 3), rg.range(1.0, 0.0, -0.25), rg.range(n, 0, -2)
    assert r.shape == (None,) and r2.shape == (3,) and r3.dtype == np.float32
    got = _run([r, r2, r3, r4, rg.no_op()], {n: 5})
    np.testing.assert_array_equal(got[0], np.arange(5))
    np.testing.assert_array_equal(got[1], [2, 5, 8])
    np.testing.assert_array_equal(got[2], [1.0, 0.75, 0.5, 0.25])
    np.testing.assert_array_equal(got[3], [5, 3, 1])
    assert got[0].dtype == np.int32


def test_stop_gradient(graph):
    x = rg.placeholder(rg.float64, [3])
    y = rg.reduce_sum(x * rg.stop_gradient(x))     # d/dx = stop(x), not 2x
    g, = rg.gradients(y, [x])
    xv = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(_run(g, {x: xv}), xv)


def test_placeholder_without_shape_is_a_scalar(graph):
    lr = rg.placeholder(rg.float32)
    assert lr.shape == ()
    assert _run(lr * 2.0, {lr: 0.5}) == 1.0
    with rg.Session() as sess, pytest.raises(ValueError):
        sess.run(lr, {lr: np.ones(3, np.float32)})


def test_softmax_cross_entropy_v1_v2(graph):
    logits, labels = RNG.standard_normal((4, 5)), RNG.dirichlet(np.ones(5), size=4)
    ref = -(labels * np_log_softmax(logits)).sum(1)
    L, Y = rg.constant(logits), rg.constant(labels)
    v1 = rg.nn.softmax_cross_entropy_with_logits(labels=Y, logits=L)
    v2 = rg.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=L)
    ax0 = rg.nn.softmax_cross_entropy_with_logits_v2(labels=rg.transpose(Y), logits=rg.transpose(L),
                                                     axis=0)
    for got in _run([v1, v2, ax0]):
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    check_gradients(lambda y, z: rg.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=z),
                    {"y": labels, "z": logits})
    # v1: no gradient into the labels
    y = rg.placeholder(rg.float64, [4, 5])
    gy, = rg.gradients(rg.reduce_sum(rg.nn.softmax_cross_entropy_with_logits(labels=y, logits=L)),
                       [y])
    assert gy is None or not np.any(_run(gy, {y: labels}))
    with pytest.raises(ValueError, match="named arguments"):
        rg.nn.softmax_cross_entropy_with_logits(Y, L)


def test_sigmoid_cross_entropy_and_l2_loss(graph):
    x, z = RNG.standard_normal((3, 4)) * 5, RNG.random((3, 4))
    p = 1 / (1 + np.exp(-x))
    ref = -(z * np.log(p) + (1 - z) * np.log(1 - p))
    got, l2 = _run([rg.nn.sigmoid_cross_entropy_with_logits(labels=rg.constant(z),
                                                            logits=rg.constant(x)),
                    rg.nn.l2_loss(rg.constant(x))])
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    np.testing.assert_allclose(l2, (x ** 2).sum() / 2, rtol=1e-12)
    check_gradients(lambda z, x: rg.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x),
                    {"z": z, "x": x})
    check_gradients(lambda x: rg.nn.l2_loss(x), {"x": x})


def test_embedding_lookup(graph):
    params = RNG.standard_normal((6, 3))
    ids = np.array([[0, 5, 5], [2, 1, 0]], np.int32)
    P = rg.constant(params)
    e2 = rg.nn.embedding_lookup(P, ids)
    e1 = rg.nn.embedding_lookup([P], rg.constant(ids[0]))
    got2, got1 = _run([e2, e1])
    np.testing.assert_array_equal(got2, params[ids])
    np.testing.assert_array_equal(got1, params[ids[0]])
    assert e2.shape == (2, 3, 3)
    check_gradients(lambda p: rg.nn.embedding_lookup(p, rg.constant(ids)), {"p": params})
    with pytest.raises(NotImplementedError, match="shards"):
        rg.nn.embedding_lookup([P, P], ids)
    with pytest.raises(TypeError, match="ids must be int32"):
        rg.nn.embedding_lookup(P, rg.constant([0.0]))


def _np_seq_xent(logits, targets):
    return -np.take_along_axis(np_log_softmax(logits), targets[..., None], -1)[..., 0]


def test_sequence_loss_variants(graph):
    B, T, C = 3, 4, 5
    logits = RNG.standard_normal((B, T, C))
    targets = RNG.integers(0, C, (B, T)).astype(np.int32)
    weights = (RNG.random((B, T)) > 0.3).astype(np.float64)
    weights[0, 0] = 1.0
    xent = _np_seq_xent(logits, targets) * weights
    L, Y, W = rg.constant(logits), rg.constant(targets), rg.constant(weights)
    sl = rg.contrib.seq2seq.sequence_loss
    cases = {
        "both": (sl(L, Y, W), xent.sum() / (weights.sum() + 1e-12)),
        "time": (sl(L, Y, W, average_across_batch=False), xent.sum(1) / (weights.sum(1) + 1e-12)),
        "batch": (sl(L, Y, W, average_across_timesteps=False),
                  xent.sum(0) / (weights.sum(0) + 1e-12)),
        "none": (sl(L, Y, W, average_across_timesteps=False, average_across_batch=False), xent),
        "sums": (sl(L, Y, W, average_across_timesteps=False, average_across_batch=False,
                    sum_over_timesteps=True, sum_over_batch=True),
                 xent.sum() / np.count_nonzero(weights)),
    }
    got = _run({k: v[0] for k, v in cases.items()})
    for k, (_, ref) in cases.items():
        np.testing.assert_allclose(got[k], ref, rtol=1e-10, err_msg=k)
    check_gradients(lambda z: sl(z, targets, weights), {"z": logits})
    with pytest.raises(ValueError, match="cannot be set to True at same time"):
        sl(L, Y, W, sum_over_timesteps=True)


def test_legacy_seq2seq_losses(graph):
    B, T, C = 2, 3, 4
    logits = [RNG.standard_normal((B, C)) for _ in range(T)]
    targets = [RNG.integers(0, C, B).astype(np.int32) for _ in range(T)]
    weights = [np.ones(B), np.ones(B), np.array([1.0, 0.0])]
    xent = np.stack([_np_seq_xent(l[:, None], t[:, None])[:, 0] * w
                     for l, t, w in zip(logits, targets, weights)])
    per_ex = xent.sum(0) / (np.sum(weights, 0) + 1e-12)
    lg = [rg.constant(x) for x in logits]
    tg = [rg.constant(x) for x in targets]
    wg = [rg.constant(x) for x in weights]
    by_ex = rg.contrib.legacy_seq2seq.sequence_loss_by_example(lg, tg, wg)
    cost = rg.contrib.legacy_seq2seq.sequence_loss(lg, tg, wg)
    got_ex, got_cost = _run([by_ex, cost])
    np.testing.assert_allclose(got_ex, per_ex, rtol=1e-10)
    np.testing.assert_allclose(got_cost, per_ex.sum() / B, rtol=1e-10)
    check_gradients(lambda a, b, c: rg.contrib.legacy_seq2seq.sequence_loss([a, b, c], targets,
                                                                            weights),
                    {"a": logits[0], "b": logits[1], "c": logits[2]})


def test_legacy_rnn_decoder_and_basic_rnn_seq2seq(graph):
    B, D, H = 2, 3, 4
    enc = [rg.constant(RNG.standard_normal((B, D)).astype(np.float32)) for _ in range(2)]
    dec = [rg.constant(RNG.standard_normal((B, D)).astype(np.float32)) for _ in range(3)]
    outs, state = rg.contrib.legacy_seq2seq.basic_rnn_seq2seq(enc, dec,
                                                              rg.nn.rnn_cell.BasicRNNCell(H))
    names = [v.node.name for v in rg.global_variables(graph)]
    assert names == ["basic_rnn_seq2seq/rnn/basic_rnn_cell/kernel",
                     "basic_rnn_seq2seq/rnn/basic_rnn_cell/bias",
                     "basic_rnn_seq2seq/rnn_decoder/basic_rnn_cell/kernel",
                     "basic_rnn_seq2seq/rnn_decoder/basic_rnn_cell/bias"]
    with rg.Session(accelerate=False) as sess:
        sess.run(rg.global_variables_initializer())
        o, s, e, d = sess.run([outs, state, enc, dec])
        v = [sess.read_variable(n) for n in names]
    h = np.zeros((B, H))
    for x in e:
        h = np.tanh(np.concatenate([x, h], 1) @ v[0] + v[1])
    for t, x in enumerate(d):
        h = np.tanh(np.concatenate([x, h], 1) @ v[2] + v[3])
        np.testing.assert_allclose(o[t], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, h, rtol=1e-5, atol=1e-6)


def test_fully_connected_and_xavier(graph):
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    X = rg.placeholder(rg.float32, [None, 3])
    y1 = rg.contrib.layers.fully_connected(X, 4)
    y2 = rg.contrib.layers.fully_connected(X, 2, activation_fn=None,
                                           weights_initializer=rg.contrib.layers.xavier_initializer())
    with rg.variable_scope("h"):
        rg.contrib.layers.fully_connected(X, 2, scope="fc")
    rg.contrib.layers.fully_connected(X, 2, scope="h/fc", reuse=True)   # shares h/fc
    names = [v.node.name for v in rg.global_variables(graph)]
    assert names == ["fully_connected/weights", "fully_connected/biases",
                     "fully_connected_1/weights", "fully_connected_1/biases",
                     "h/fc/weights", "h/fc/biases"]
    with rg.Session(accelerate=False) as sess:
        sess.run(rg.global_variables_initializer())
        a, b = sess.run([y1, y2], {X: x})
        w1, b1, w2, b2 = (sess.read_variable(n) for n in names[:4])
    np.testing.assert_allclose(a, np.maximum(x @ w1 + b1, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, x @ w2 + b2, rtol=1e-5, atol=1e-6)
    limit = np.sqrt(6.0 / (3 + 2))
    assert np.all(np.abs(w2) <= limit) and np.all(b2 == 0)
    with pytest.raises(NotImplementedError, match="normalizer_fn="):
        rg.contrib.layers.fully_connected(X, 2, normalizer_fn=lambda z: z)
