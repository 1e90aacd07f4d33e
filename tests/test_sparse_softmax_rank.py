"""sparse_softmax_cross_entropy_with_logits with labels of any rank (TF1's rule): labels of
shape S, logits of shape S + [C], a loss of shape S. Checked against NumPy written here, by
finite differences, static against unknown dims, through a dynamic_rnn + dense training step,
on every CPU backend (and the CuPy device's logic on a fake device), and through ONNX."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import ExecutionError, ShapeError

from gradcheck import check_gradients

xent = rg.nn.sparse_softmax_cross_entropy_with_logits
C = 5
LABEL_SHAPES = [(), (4,), (3, 4), (2, 3, 4)]   # ranks 0 to 3


def np_xent(labels, logits):
    """-log softmax(logits)[label] along the last axis, in float64, by log-sum-exp."""
    z = np.asarray(logits, np.float64)
    top = z.max(axis=-1)
    lse = top + np.log(np.exp(z - top[..., None]).sum(axis=-1))
    picked = np.take_along_axis(z, np.asarray(labels, np.int64)[..., None], axis=-1)[..., 0]
    return lse - picked


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def data(shape, dtype=np.float64, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, size=shape).astype(np.int32)
    logits = (rng.standard_normal(shape + (C,)) * scale).astype(dtype)
    return labels, logits


def build(label_shape, logits_shape, dtype=rg.float32, label_dtype=rg.int32):
    L = rg.placeholder(label_dtype, label_shape, name="labels")
    Z = rg.placeholder(dtype, logits_shape, name="logits")
    return L, Z, xent(labels=L, logits=Z)


# --- forward: ranks 0-3, float32 and float64, static and unknown dims -----------------------------
@pytest.mark.parametrize("dims", ["static", "unknown"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", LABEL_SHAPES, ids=lambda s: f"labels-rank{len(s)}")
def test_forward_against_numpy(shape, dtype, dims):
    labels, logits = data(shape, dtype)
    g = rg.Graph()
    with g.as_default():
        if dims == "static":
            L, Z, out = build(shape, shape + (C,), dtype)
            assert out.shape == shape
        else:
            L, Z, out = build((None,) * len(shape), (None,) * (len(shape) + 1), dtype)
            assert out.shape == (None,) * len(shape)
        assert out.dtype == dtype
    got = rg.Session(g).run(out, {L: labels, Z: logits})
    assert got.dtype == dtype and got.shape == shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, np_xent(labels, logits), rtol=tol, atol=tol)


def test_int64_labels_and_huge_logits_stay_finite():
    labels = np.array([[0, 2], [1, 1]], np.int64)
    logits = np.zeros((2, 2, 3), np.float32)
    logits[..., 0] = 1e4   # exp would overflow unshifted
    g = rg.Graph()
    with g.as_default():
        L, Z, out = build((2, 2), (2, 2, 3), label_dtype=rg.int64)
    got = rg.Session(g).run(out, {L: labels, Z: logits})
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np_xent(labels, logits), rtol=1e-6)


def test_static_and_unknown_dims_merge_into_the_result_type():
    with rg.Graph().as_default():
        assert build((None, 4), (3, None, C))[2].shape == (3, 4)
        assert build((3, None), (None, None, None))[2].shape == (3, None)
        assert build((None, None, 2), (7, None, None, C), rg.float64)[2].type == \
            rg.placeholder(rg.float64, (7, None, 2)).type


def test_static_and_unknown_dims_give_the_same_values_and_gradients():
    labels, logits = data((3, 4), np.float32, seed=1)
    results = []
    for shapes in [((3, 4), (3, 4, C)), ((None, None), (None, None, None)),
                   ((None, 4), (3, None, C))]:
        g = rg.Graph()
        with g.as_default():
            L, Z, out = build(*shapes)
            grad = rg.gradients(rg.reduce_sum(out * out), [Z])[0]
        results.append(rg.Session(g).run([out, grad], {L: labels, Z: logits}))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_empty_batch():
    for shape in [(0,), (0, 4), (2, 0, 3)]:
        labels, logits = data(shape)
        g = rg.Graph()
        with g.as_default():
            L, Z, out = build((None,) * len(shape), (None,) * (len(shape) + 1), rg.float64)
            grad = rg.gradients(rg.reduce_sum(out), [Z])[0]
        got, dz = rg.Session(g).run([out, grad], {L: labels, Z: logits})
        assert got.shape == shape and dz.shape == shape + (C,)


# --- gradients ------------------------------------------------------------------------------------
_L2 = data((3, 4), seed=2)[0]
_L3 = data((2, 2, 3), seed=3)[0]


@pytest.mark.parametrize("unknown", [False, True], ids=["static", "unknown"])
def test_gradcheck_rank2_labels(unknown):
    logits = data((3, 4), seed=2)[1]
    shapes = {"logits": (None, None, None)} if unknown else None
    check_gradients(lambda logits: xent(labels=_L2, logits=logits), {"logits": logits},
                    shapes=shapes)


def test_gradcheck_rank0_and_rank3_labels_and_second_order():
    check_gradients(lambda logits: xent(labels=np.int32(3), logits=logits),
                    {"logits": data((), seed=5)[1]})
    logits = data((2, 2, 3), seed=3)[1]
    check_gradients(lambda logits: xent(labels=_L3, logits=logits), {"logits": logits})
    check_gradients(
        lambda logits: rg.gradients(rg.reduce_sum(xent(labels=_L2, logits=logits) ** 2.0),
                                    [logits])[0],
        {"logits": data((3, 4), seed=4)[1]})


def test_gradient_against_numpy():
    """d sum(w * xent) / d logits = w[..., None] * (softmax(logits) - one_hot(labels))."""
    labels, logits = data((2, 3, 4), seed=5)
    w = np.random.default_rng(6).standard_normal((2, 3, 4))
    g = rg.Graph()
    with g.as_default():
        L, Z, out = build((None, None, None), (None, None, None, None), rg.float64)
        grad = rg.gradients(rg.reduce_sum(out * w), [Z])[0]
    got = rg.Session(g).run(grad, {L: labels, Z: logits})
    want = w[..., None] * (np_softmax(logits) - np.eye(C)[labels])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# --- end to end: dynamic_rnn + dense + the per-step loss ------------------------------------------
B, T, IN, H, V = 3, 6, 4, 7, 5


def _seq_model(flat: bool):
    """A sequence model's loss written either way: [B, T] labels against [B, T, V] logits, or
    both reshaped to [B*T] and [B*T, V] (what users had to write before)."""
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(7)
        X = rg.placeholder(rg.float64, [None, None, IN], name="X")
        Y = rg.placeholder(rg.int32, [None, None], name="Y")
        out, _ = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H), X, dtype=rg.float64)
        logits = rg.layers.dense(out, V, name="head")
        if flat:
            per_step = xent(labels=rg.reshape(Y, [-1]), logits=rg.reshape(logits, [-1, V]))
        else:
            per_step = xent(labels=Y, logits=logits)
            assert per_step.shape == (None, None)
        loss = rg.reduce_mean(per_step)
        params = rg.trainable_variables()
        grads = rg.gradients(loss, params)
        train = rg.train.GradientDescentOptimizer(0.5).minimize(loss)
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    sess.run(init)
    return sess, X, Y, out, logits, loss, params, grads, train


def test_dynamic_rnn_dense_loss_gradients():
    rng = np.random.default_rng(8)
    fd_x = rng.standard_normal((B, T, IN))
    fd_y = rng.integers(0, V, size=(B, T)).astype(np.int32)
    seq = _seq_model(flat=False)
    flat = _seq_model(flat=True)
    sess, X, Y, out, logits, loss, params, grads, _ = seq
    names = [p.name.split(":")[0] for p in params]
    assert names == [p.name.split(":")[0] for p in flat[6]]
    outs, z, l, gs = sess.run([out, logits, loss, grads], {X: fd_x, Y: fd_y})
    # the same initial weights (one seed), so the two formulations agree to rounding
    fsess, fX, fY = flat[:3]
    fl, fgs = fsess.run([flat[5], flat[7]], {fX: fd_x, fY: fd_y})
    np.testing.assert_allclose(l, fl, rtol=1e-13)
    for name, a, b in zip(names, gs, fgs):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14, err_msg=name)
    # the loss and the head's gradients from NumPy, given the RNN's outputs
    np.testing.assert_allclose(l, np_xent(fd_y, z).mean(), rtol=1e-12)
    dz = (np_softmax(z) - np.eye(V)[fd_y]) / (B * T)
    by_name = dict(zip(names, gs))
    np.testing.assert_allclose(by_name["head/kernel"],
                               outs.reshape(-1, H).T @ dz.reshape(-1, V), rtol=1e-10)
    np.testing.assert_allclose(by_name["head/bias"], dz.sum(axis=(0, 1)), rtol=1e-10,
                               atol=1e-15)


def test_dynamic_rnn_dense_loss_training_step():
    """One SGD step with the [B, T] loss moves every weight by -lr * its gradient, exactly as
    the reshaped formulation does; a few steps lower the loss."""
    rng = np.random.default_rng(9)
    fd_x = rng.standard_normal((B, T, IN))
    fd_y = rng.integers(0, V, size=(B, T)).astype(np.int32)
    results = []
    for flat in (False, True):
        sess, X, Y, _, _, loss, params, grads, train = _seq_model(flat)
        fd = {X: fd_x, Y: fd_y}
        before, gs, first = sess.run([params, grads, loss], fd)
        sess.run(train, fd)
        after = sess.run(params)
        for b, gr, a in zip(before, gs, after):
            np.testing.assert_allclose(a, b - 0.5 * gr, rtol=1e-12, atol=1e-14)
        for _ in range(20):
            sess.run(train, fd)
        last = sess.run(loss, fd)
        assert last < 0.8 * first
        results.append(after)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)


# --- rg.losses and the dense (probability labels) forms -------------------------------------------
def test_losses_sparse_softmax_cross_entropy_rank2():
    labels, logits = data((3, 4), np.float32, seed=10)
    g = rg.Graph()
    with g.as_default():
        L = rg.placeholder(rg.int32, [None, None])
        Z = rg.placeholder(rg.float32, [None, None, C])
        loss = rg.losses.sparse_softmax_cross_entropy(L, Z)
        assert loss.shape == ()
    got = rg.Session(g).run(loss, {L: labels, Z: logits})
    np.testing.assert_allclose(got, np_xent(labels, logits).mean(), rtol=1e-5)


@pytest.mark.parametrize("fn", ["softmax_cross_entropy_with_logits",
                                "softmax_cross_entropy_with_logits_v2"])
def test_dense_softmax_cross_entropy_rank3(fn):
    rng = np.random.default_rng(11)
    probs = np_softmax(rng.standard_normal((2, 3, C)))
    logits = rng.standard_normal((2, 3, C)) * 3.0
    g = rg.Graph()
    with g.as_default():
        P = rg.placeholder(rg.float64, [None, None, C])
        Z = rg.placeholder(rg.float64, [None, None, None])
        out = getattr(rg.nn, fn)(labels=P, logits=Z)
        assert out.shape == (None, None)
        grad = rg.gradients(rg.reduce_sum(out), [Z])[0]
    got, dz = rg.Session(g).run([out, grad], {P: probs, Z: logits})
    log_sm = logits - logits.max(-1, keepdims=True)
    log_sm -= np.log(np.exp(log_sm).sum(-1, keepdims=True))
    np.testing.assert_allclose(got, -(probs * log_sm).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(dz, np_softmax(logits) - probs, rtol=1e-10, atol=1e-14)
    # the sparse and dense forms agree on one-hot labels
    labels = rng.integers(0, C, size=(2, 3))
    with g.as_default():
        L = rg.placeholder(rg.int32, [None, None])
        pair = [getattr(rg.nn, fn)(labels=rg.one_hot(L, C, rg.float64), logits=Z),
                xent(labels=L, logits=Z)]
    a, b = rg.Session(g).run(pair, {L: labels, Z: logits})
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_dense_softmax_cross_entropy_v2_gradcheck_rank3():
    rng = np.random.default_rng(12)
    check_gradients(lambda labels, logits: rg.nn.softmax_cross_entropy_with_logits_v2(
        labels=labels, logits=logits),
        {"labels": np_softmax(rng.standard_normal((2, 2, 3))),
         "logits": rng.standard_normal((2, 2, 3))})


# --- errors ---------------------------------------------------------------------------------------
def _build_error(label_shape, logits_shape):
    g = rg.Graph()
    with g.as_default():
        L = rg.placeholder(rg.int32, label_shape)
        Z = rg.placeholder(rg.float32, logits_shape)
        n = len(g.nodes)
        with pytest.raises(ShapeError) as info:
            xent(labels=L, logits=Z)
        assert len(g.nodes) == n   # nothing half-built
    msg = str(info.value)
    assert "test_sparse_softmax_rank.py:" in msg, msg   # the user's line
    assert "sparse_softmax_cross_entropy" in msg, msg
    return msg


@pytest.mark.parametrize("labels,logits,needles", [
    ((2, 3), (2, 4, 5), ["labels [2,3] and logits [2,4,5]", "without its last (class) axis, [2,4]",
                         "dim 1 is 3 in labels and 4 in logits"]),
    ((2, 4, 5), (2, 4, 5), ["labels [2,4,5] and logits [2,4,5]", "rank 3, not 2"]),
    ((8,), (2, 4, 5), ["labels [8] and logits [2,4,5]", "rank 1, not 2"]),
    ((None, 3), (None, 4, None), ["labels [?,3] and logits [?,4,?]", "dim 1 is 3 in labels"]),
    ((), (), ["logits must have rank >= 1"]),
])
def test_shape_mismatch_names_both_shapes_and_the_line(labels, logits, needles):
    msg = _build_error(labels, logits)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_runtime_mismatch_of_unknown_dims_is_an_error():
    g = rg.Graph()
    with g.as_default():
        L, Z, out = build((None, None), (None, None, None))
    sess = rg.Session(g)
    # same element count, different layout: must not be reinterpreted silently
    with pytest.raises(ExecutionError) as info:
        sess.run(out, {L: np.zeros((2, 3), np.int32), Z: np.zeros((3, 2, C), np.float32)})
    msg = str(info.value)
    assert "labels [2, 3] and logits [3, 2, 5] do not match" in msg, msg
    assert "test_sparse_softmax_rank.py:" in msg, msg


def test_type_errors():
    with rg.Graph().as_default():
        with pytest.raises(TypeError, match="labels must be integer"):
            xent(labels=rg.placeholder(rg.float32, [2, 3]),
                 logits=rg.placeholder(rg.float32, [2, 3, C]))
        with pytest.raises(TypeError, match="logits must be floating point"):
            xent(labels=rg.placeholder(rg.int32, [2, 3]),
                 logits=rg.placeholder(rg.int32, [2, 3, C]))


def test_out_of_range_labels_rank2_as_rank1():
    labels, logits = data((2, 3), np.float32)
    g = rg.Graph()
    with g.as_default():
        L, Z, out = build((None, None), (None, None, C))
    for bad in (C, -1):
        wrong = labels.copy()
        wrong[1, 2] = bad
        with pytest.raises(ExecutionError, match=r"labels must be in \[0, 5\)"):
            rg.Session(g).run(out, {L: wrong, Z: logits})


# --- backends -------------------------------------------------------------------------------------
def _backend_case():
    labels, logits = data((2, 3, 4), np.float32, seed=13)
    g = rg.Graph()
    with g.as_default():
        L, Z, out = build((None, None, None), (None, None, None, C))
        grad = rg.gradients(rg.reduce_sum(out * out), [Z])[0]
    want_out = np_xent(labels, logits)
    want_grad = 2 * want_out[..., None] * (np_softmax(logits.astype(np.float64))
                                           - np.eye(C)[labels])
    return g, [out, grad], {L: labels, Z: logits}, [want_out, want_grad]


def _close(got, want):
    for a, b in zip(got, want):
        assert type(a) is np.ndarray and a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_accelerated_cpu_backend():
    pytest.importorskip("numba")
    g, fetches, fd, want = _backend_case()
    _close(rg.Session(g, accelerate=True).run(fetches, fd), want)


def test_cupy_device_logic_on_a_fake_device():
    from fake_cupy import FakeCupy
    from rnngraph.backends.cupy.device import CupyDevice
    fake = FakeCupy()
    g, fetches, fd, want = _backend_case()
    _close(rg.Session(g, device=CupyDevice(xp=fake, workspace_bytes=0)).run(fetches, fd), want)
    assert fake.count("read") > 0   # kernels ran on (fake) device arrays
    assert [e[2] for e in fake.events if e[:2] == ("host_read", "asnumpy")] == \
        [(2, 3, 4), (2, 3, 4, 5)]      # only the two results came back to the host


@pytest.mark.gpu
def test_cupy_device():
    from rnngraph.backends.cupy.device import CupyDevice
    g, fetches, fd, want = _backend_case()
    _close(rg.Session(g, device=CupyDevice()).run(fetches, fd), want)


# --- saved files ----------------------------------------------------------------------------------
def test_save_and_read_keep_the_rank2_loss(tmp_path):
    labels, logits = data((3, 4), np.float32, seed=14)
    g = rg.Graph()
    with g.as_default():
        L, Z, out = build((None, None), (None, 4, C))
        grad = rg.gradients(rg.reduce_sum(out), [Z])[0]
    path = rg.io.save(tmp_path / "xent.npz", g, fetches={"xent": out, "grad": grad,
                                                         "labels": L, "logits": Z})
    saved = rg.io.read(path)
    f = saved.fetches
    assert f["xent"].shape == (None, 4) and f["grad"].shape == (None, 4, C)
    got = saved.session().run([f["xent"], f["grad"]], {f["labels"]: labels, f["logits"]: logits})
    np.testing.assert_allclose(got[0], np_xent(labels, logits), rtol=1e-5)
    np.testing.assert_allclose(got[1], np_softmax(logits.astype(np.float64)) - np.eye(C)[labels],
                               rtol=1e-5, atol=1e-6)


# --- ONNX -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_onnx_export_any_rank(rank):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rnngraph.io.onnx import compare, export
    g = rg.Graph()
    with g.as_default():
        L, Z, out = build((None,) * rank, (None,) * rank + (C,))
        total = rg.reduce_sum(out)
    sess = rg.Session(g)
    ex = export({"xent": out, "total": total}, session=sess)
    for seed, shape in enumerate([(2, 3, 4)[:rank], (3, 1, 2)[:rank]]):
        labels, logits = data(shape, np.float32, seed=20 + seed)
        errs = compare(ex, sess, {L: labels, Z: logits})
        assert errs and max(errs.values()) < 1e-5, errs
