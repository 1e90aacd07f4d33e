"""tf.losses' weights and reductions (rg.losses.sparse_softmax_cross_entropy, mean_squared_error,
compute_weighted_loss, Reduction) and the losses collection (add_loss, get_losses,
get_total_loss): values against NumPy written here, gradients against central differences."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg

from gradcheck import check_gradients

R = rg.losses.Reduction
B, T, C = 4, 5, 3
RS = np.random.RandomState(0)
LOGITS = RS.randn(B, T, C)
LABELS = RS.randint(0, C, size=(B, T)).astype(np.int32)
MASK = (np.arange(T)[None, :] < np.array([5, 3, 1, 0])[:, None]).astype(np.float64)


def _ce(logits, labels):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, labels[..., None], -1)[..., 0]


def _reduce(losses, w, reduction):
    weighted = losses * w
    spread = np.broadcast_to(w, losses.shape)
    if reduction == R.NONE:
        return weighted
    total = weighted.sum()
    den = {R.SUM: 1.0, R.SUM_OVER_BATCH_SIZE: losses.size, R.MEAN: spread.sum(),
           R.SUM_BY_NONZERO_WEIGHTS: float(np.count_nonzero(spread))}[reduction]
    return 0.0 if den == 0 else total / den


def _run(build):
    g = rg.Graph()
    with g.as_default():
        out = build()
    return rg.Session(g).run(out)


@pytest.mark.parametrize("reduction", R.all())
@pytest.mark.parametrize("weights", ["one", "number", "zero", "mask", "rows", "zeros"])
def test_sparse_softmax_cross_entropy_weights_and_reductions(weights, reduction):
    w = {"one": 1.0, "number": 2.5, "zero": 0.0, "mask": MASK,
         "rows": np.array([[1.0], [0.5], [0.0], [2.0]]), "zeros": np.zeros((B, T))}[weights]
    got = _run(lambda: rg.losses.sparse_softmax_cross_entropy(
        rg.constant(LABELS), rg.constant(LOGITS), weights=w, reduction=reduction))
    np.testing.assert_allclose(got, _reduce(_ce(LOGITS, LABELS), w, reduction), rtol=1e-12,
                               atol=1e-15)


@pytest.mark.parametrize("reduction", R.all())
def test_mean_squared_error_weights_and_reductions(reduction):
    pred, lab = RS.randn(B, T), RS.randn(B, T)
    got = _run(lambda: rg.losses.mean_squared_error(rg.constant(lab), rg.constant(pred),
                                                    weights=MASK, reduction=reduction))
    np.testing.assert_allclose(got, _reduce((pred - lab) ** 2, MASK, reduction), rtol=1e-12)
    plain = _run(lambda: rg.losses.mean_squared_error(rg.constant(lab), rg.constant(pred)))
    np.testing.assert_allclose(plain, np.mean((pred - lab) ** 2), rtol=1e-12)


def test_a_masked_sequence_loss_has_the_gradient_of_its_definition():
    def masked(logits):
        return rg.losses.sparse_softmax_cross_entropy(rg.constant(LABELS), logits, weights=MASK)

    def mean(logits, weights):
        return rg.losses.sparse_softmax_cross_entropy(rg.constant(LABELS), logits,
                                                      weights=weights, reduction=R.MEAN)
    check_gradients(masked, {"logits": LOGITS})
    check_gradients(mean, {"logits": LOGITS, "weights": RS.rand(B, 1) + 0.1})


def test_all_zero_weights_give_zero_and_a_zero_gradient():
    g = rg.Graph()
    with g.as_default():
        logits = rg.constant(LOGITS)
        loss = rg.losses.sparse_softmax_cross_entropy(rg.constant(LABELS), logits,
                                                      weights=np.zeros((B, T)))
        grad, = rg.gradients(loss, [logits])
    got, dlogits = rg.Session(g).run([loss, grad])
    assert got == 0.0 and np.all(dlogits == 0.0)


def test_bad_weights_and_reductions_are_clear_errors():
    g = rg.Graph()
    with g.as_default():
        zeros, ones = rg.constant(np.zeros((B, T))), rg.constant(np.ones((B, T)))
        with pytest.raises(ValueError, match=r"weights of shape \[3\] cannot weight losses of "
                                             r"shape \[4, 5\]"):
            rg.losses.mean_squared_error(zeros, ones, weights=np.ones(3))
        with pytest.raises(ValueError, match="reduction must be one of"):
            rg.losses.mean_squared_error(zeros, ones, reduction="mean")
        assert len(g.nodes) == 2
        with pytest.raises(ValueError, match=r"weights of shape \[2, 5\] cannot weight"):
            rg.losses.sparse_softmax_cross_entropy(LABELS, LOGITS, weights=np.ones((2, T)))
        assert rg.losses.get_losses() == [] and len(g.nodes) == 2   # refused: nothing added
    with g.as_default():   # unknown dimensions are not refused
        x = rg.placeholder(rg.float64, [None, T])
        rg.losses.mean_squared_error(x, rg.constant(np.ones((1, T))), weights=np.ones((B, 1)))


def test_the_losses_collection_and_the_total_loss():
    g = rg.Graph()
    with g.as_default():
        a = rg.losses.mean_squared_error(rg.constant(np.zeros(3)), rg.constant(np.ones(3)))
        with rg.name_scope("head"):
            b = rg.losses.sparse_softmax_cross_entropy(rg.constant(LABELS), rg.constant(LOGITS))
        rg.losses.mean_squared_error(rg.constant(np.zeros(3)), rg.constant(np.ones(3)),
                                     loss_collection=None)
        extra = rg.constant(0.25, rg.float64)
        rg.losses.add_loss(extra)
        assert rg.losses.get_losses() == [a, b, extra]
        assert rg.losses.get_losses(scope="head") == [b]
        total = rg.losses.get_total_loss()
    got_a, got_b, got_total = rg.Session(g).run([a, b, total])
    assert got_total == pytest.approx(got_a + got_b + 0.25, rel=1e-12)
    with rg.Graph().as_default():
        with pytest.raises(ValueError, match="no losses were made"):
            rg.losses.get_total_loss()


def test_a_compiled_program_with_a_collected_loss_saves_and_loads(tmp_path):
    """A program's graph (a clone, rewritten by passes) holds its own copies of collected
    Values, and a file of it loads: before, the clone kept the user graph's Values, and a pass
    that replaced the loss left an entry the loader refused."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [3, 6, 2], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), X, dtype=rg.float32)
        loss = rg.losses.mean_squared_error(rg.zeros_like(out), out)
        grads = rg.gradients(loss, rg.global_variables())
    sess = rg.Session(g, passes={"stream_outputs": "always"})
    fd = {X: np.ones((3, 6, 2), np.float32)}
    want = sess.run([loss] + grads, fd)
    prog = max(sess.programs(), key=lambda p: len(p.nodes))
    made = {v for n in prog.graph.nodes for v in n.outputs}
    assert all(v.graph is prog.graph for v in prog.graph.collections["losses"])
    assert set(prog.graph.collections["variables"]) <= made
    path = rg.io.save(str(tmp_path / "p.rg"), graph=prog.graph,
                      fetches={f"out_{i}": v for i, v in enumerate(prog.outputs)})
    saved = rg.io.read(path)
    rg.verify(saved.graph)
    assert len(want) == len(prog.outputs)


@pytest.mark.parametrize("reduction", R.all())
@pytest.mark.parametrize("wshape", [(B, T), (B, 1), (1, T), ()])
def test_weights_and_losses_of_unknown_sizes(wshape, reduction):
    """The denominators read the sizes from the shapes at run time (never the loss values):
    placeholders with unknown dimensions (a broadcast one static, as rnngraph requires) give
    NumPy's figures."""
    w = RS.rand(*wshape) * (RS.rand(*wshape) > 0.3)
    g = rg.Graph()
    with g.as_default():
        labels = rg.placeholder(rg.int32, [None, None])
        logits = rg.placeholder(rg.float64, [None, None, C])
        weights = rg.placeholder(rg.float64, [1 if d == 1 else None for d in wshape])
        loss = rg.losses.sparse_softmax_cross_entropy(labels, logits, weights=weights,
                                                      reduction=reduction)
    got = rg.Session(g).run(loss, {labels: LABELS, logits: LOGITS, weights: w})
    np.testing.assert_allclose(got, _reduce(_ce(LOGITS, LABELS), w, reduction), rtol=1e-12)
