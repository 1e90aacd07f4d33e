"""More TF1 names porting code reaches for (a fresh-eyes review's list): tf.tensordot,
tf.einsum, tf.nn.top_k, tf.nn.moments, tf.layers.dropout, tf.losses.softmax_cross_entropy, and
Optimizer.compute_gradients' (None, variable) pairs. Forward against NumPy, gradients against
finite differences, static shapes with None, errors of the right type naming the user's line,
and a save/load round trip of a graph holding the new ops."""
import os

import numpy as np
import pytest

import rnngraph as rg

from gradcheck import check_gradients

HERE = os.path.basename(__file__)
RNG = np.random.RandomState(0)


@pytest.fixture(autouse=True)
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def _run(fetches, feed=None):
    return rg.Session().run(fetches, feed)


# --- tensordot -----------------------------------------------------------------------------------
TENSORDOT_CASES = [
    ((2, 3, 4), (4, 5), 1),
    ((2, 3, 4), (3, 4, 5), 2),
    ((2, 3), (4, 5), 0),                     # outer product
    ((2, 3, 4), (4, 3, 5), [[1, 2], [1, 0]]),
    ((2, 3, 4), (5, 2), [[0], [1]]),
    ((3,), (3,), 1),                         # dot product: a scalar
    ((4, 3), (3,), [[1], [0]]),
    ((2, 3, 4), (4, 5), [[-1], [0]]),
]


@pytest.mark.parametrize("sa,sb,axes", TENSORDOT_CASES)
@pytest.mark.parametrize("unknown", [False, True])
def test_tensordot_matches_numpy(sa, sb, axes, unknown):
    a, b = RNG.randn(*sa), RNG.randn(*sb)
    pa = rg.placeholder(rg.float64, [None] * len(sa) if unknown else sa)
    pb = rg.placeholder(rg.float64, [None] * len(sb) if unknown else sb)
    out = rg.tensordot(pa, pb, axes)
    want = np.tensordot(a, b, axes)
    assert out.type.rank == want.ndim
    if not unknown:
        assert out.shape == want.shape   # static shapes stay known
    np.testing.assert_allclose(_run(out, {pa: a, pb: b}), want, rtol=1e-12, atol=1e-12)


def test_tensordot_keeps_known_dims_beside_unknown_ones():
    x = rg.placeholder(rg.float32, [None, None, 8])
    w = rg.placeholder(rg.float32, [8, 16])
    assert rg.tensordot(x, w, 1).shape == (None, None, 16)
    assert rg.tensordot(x, w, [[2], [0]]).shape == (None, None, 16)


@pytest.mark.parametrize("sa,sb,axes", [((2, 3, 4), (4, 5), 1),
                                        ((2, 3, 4), (4, 3, 2), [[1, 2], [1, 0]]),
                                        ((3, 2), (2,), 1)])
def test_tensordot_gradients(sa, sb, axes):
    check_gradients(lambda a, b: rg.tensordot(a, b, axes),
                    {"a": RNG.randn(*sa), "b": RNG.randn(*sb)},
                    shapes={"a": [None] * len(sa), "b": [None] * len(sb)})


@pytest.mark.parametrize("axes,exc,word", [
    (3, ValueError, "axes=3"),
    ([[0], [0, 1]], ValueError, "differ in length"),
    ([[5], [0]], ValueError, "out of range"),
    ([[2], [1]], ValueError, "differ in size"),
    ("x", TypeError, "pair"),
    ([[0.5], [0]], TypeError, "must be ints"),
])
def test_tensordot_bad_axes_name_the_line(axes, exc, word):
    a = rg.placeholder(rg.float32, [2, 3, 4])
    b = rg.placeholder(rg.float32, [4, 5])
    with pytest.raises(exc, match=word) as info:
        rg.tensordot(a, b, axes)
    assert HERE in str(info.value)


# --- einsum --------------------------------------------------------------------------------------
EINSUM_CASES = [
    ("ij,jk->ik", (2, 3), (3, 4)),
    ("bth,hu->btu", (2, 3, 4), (4, 5)),          # a dense layer over time
    ("bqd,bkd->bqk", (2, 3, 4), (2, 5, 4)),      # attention scores: batch + contraction
    ("bqk,bkd->bqd", (2, 3, 5), (2, 5, 4)),      # attention context
    ("bhqd,bhkd->bhqk", (2, 3, 4, 5), (2, 3, 6, 5)),   # two batch labels
    ("btd,d->bt", (2, 3, 4), (4,)),              # Bahdanau's v . tanh(...)
    ("bd,btd->bt", (2, 4), (2, 3, 4)),           # Luong's dot score
    ("i,j->ij", (2,), (3,)),                     # outer
    ("ij,ij->i", (2, 3), (2, 3)),                # rowwise dot: batch label, no free ones
    ("ij,jk->ki", (2, 3), (3, 4)),               # output order
    ("abcd,cdbe->eab", (2, 3, 4, 5), (4, 5, 3, 6)),
    ("ij,jk", (2, 3), (3, 4)),                   # implicit output: ik
    ("ba,ca", (2, 3), (4, 3)),                   # implicit output, alphabetical: bc
    ("ij,kl->", (2, 3), (4, 5)),                 # everything summed
    ("ij,jk->i", (2, 3), (3, 4)),                # a free label summed after the product
    ("ij,k->ik", (2, 3), (4,)),                  # a label of one operand summed away first
    ("ij->ji", (2, 3)),
    ("btd->bd", (2, 3, 4)),
    ("btd->", (2, 3, 4)),
    ("btd->dtb", (2, 3, 4)),
    ("ij", (2, 3)),                              # implicit: identity
    ("ji", (2, 3)),                              # implicit: transposed
]


@pytest.mark.parametrize("case", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
@pytest.mark.parametrize("unknown", [False, True])
def test_einsum_matches_numpy(case, unknown):
    eq, shapes = case[0], case[1:]
    arrays = [RNG.randn(*s) for s in shapes]
    phs = [rg.placeholder(rg.float64, [None] * len(s) if unknown else s) for s in shapes]
    out = rg.einsum(eq, *phs)
    want = np.einsum(eq, *arrays)
    assert out.type.rank == want.ndim
    if not unknown:
        assert out.shape == want.shape
    np.testing.assert_allclose(_run(out, dict(zip(phs, arrays))), want, rtol=1e-12,
                               atol=1e-12)


def test_einsum_mixed_known_and_unknown_dims_and_float32():
    q = rg.placeholder(rg.float32, [None, None, 8])
    k = rg.placeholder(rg.float32, [None, 7, 8])
    s = rg.einsum("bqd,bkd->bqk", q, k)
    assert s.shape == (None, None, 7) and s.dtype == np.float32
    qa, ka = RNG.randn(2, 3, 8).astype(np.float32), RNG.randn(2, 7, 8).astype(np.float32)
    np.testing.assert_allclose(_run(s, {q: qa, k: ka}), np.einsum("bqd,bkd->bqk", qa, ka),
                               rtol=1e-5, atol=1e-5)
    assert rg.einsum("bqk,bkd->bqd", s, k).shape == (None, None, 8)


@pytest.mark.parametrize("eq,shapes", [
    ("bqd,bkd->bqk", [(2, 3, 4), (2, 5, 4)]),
    ("btd,d->bt", [(2, 3, 4), (4,)]),
    ("abcd,cdbe->eab", [(2, 3, 2, 2), (2, 2, 3, 2)]),
    ("ij,k->ik", [(2, 3), (2,)]),
    ("i,j->ij", [(2,), (3,)]),
    ("btd->db", [(2, 3, 4)]),
])
def test_einsum_gradients(eq, shapes):
    names = ["a", "b"][:len(shapes)]
    check_gradients(lambda **kw: rg.einsum(eq, *[kw[n] for n in names]),
                    {n: RNG.randn(*s) for n, s in zip(names, shapes)},
                    shapes={n: [None] * len(s) for n, s in zip(names, shapes)})


@pytest.mark.parametrize("eq,n,exc,word", [
    ("...ij,jk->...ik", 2, NotImplementedError, "ellipsis"),
    ("ii->", 1, NotImplementedError, "repeated within one operand"),
    ("ij,jj->i", 2, NotImplementedError, "'jj'"),
    ("ij,jk,kl->il", 3, NotImplementedError, "3 operands"),
    ("ij,jk->ik", 1, ValueError, "names 2 operand"),
    ("ij,jk->iz", 2, ValueError, "'z'"),
    ("ij,jk->ii", 2, ValueError, "repeated in the output"),
    ("ijk,jk->ik", 2, ValueError, "rank"),
    ("ij,ik->jk", 2, ValueError, "sizes"),    # i: 2 vs 4
    ("i1,1k->ik", 2, ValueError, "not an index label"),
])
def test_einsum_bad_equations_raise_naming_the_line(eq, n, exc, word):
    a = rg.placeholder(rg.float32, [2, 3])
    b = rg.placeholder(rg.float32, [4, 3] if "ij,ik" in eq else [3, 3])
    c = rg.placeholder(rg.float32, [3, 3])
    with pytest.raises(exc, match=word) as info:
        rg.einsum(eq, *[a, b, c][:n])
    assert HERE in str(info.value)
    assert eq in str(info.value) or exc is ValueError


def test_einsum_name_names_the_result():
    a = rg.placeholder(rg.float32, [2, 3])
    b = rg.placeholder(rg.float32, [3, 4])
    assert rg.einsum("ij,jk->ik", a, b, name="scores").name.startswith("scores")
    assert rg.tensordot(a, b, 1, name="td").name.startswith("td")


# --- top_k ---------------------------------------------------------------------------------------
def test_top_k_matches_tf1s_documented_example_ties_lower_index_first():
    x = rg.constant(np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0], np.int32))
    values, indices = rg.nn.top_k(x, k=3)
    v, i = _run([values, indices])
    np.testing.assert_array_equal(i, [0, 1, 3])
    np.testing.assert_array_equal(v, [1, 1, 1])
    assert indices.dtype == np.int32 and values.dtype == np.int32
    v, i = _run(list(rg.nn.top_k(rg.constant(np.array([1, 2, 98, 1, 1, 99, 3, 1, 3, 96, 4, 1],
                                                          np.int32)), 3)))
    np.testing.assert_array_equal(v, [99, 98, 96])
    np.testing.assert_array_equal(i, [5, 2, 9])


def _np_top_k(a, k):
    # reference: a stable descending sort by a Python key (position breaks ties)
    idx = np.zeros(a.shape[:-1] + (k,), np.int64)
    for pos in np.ndindex(*a.shape[:-1]):
        row = list(a[pos])
        idx[pos] = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
    return np.take_along_axis(a, idx, -1), idx


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_top_k_matches_a_reference_on_rows_with_ties(dtype):
    a = RNG.randint(0, 4, size=(3, 2, 7)).astype(dtype)
    x = rg.placeholder(dtype, [None, 2, None])
    values, indices = rg.nn.top_k(x, 4, sorted=True)
    assert values.shape == (None, 2, 4) and indices.shape == (None, 2, 4)
    v, i = _run([values, indices], {x: a})
    want_v, want_i = _np_top_k(a, 4)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v)
    assert v.dtype == dtype and i.dtype == np.int32


def test_top_k_of_extreme_ints_and_k_zero_and_k_all():
    a = np.array([[np.iinfo(np.int64).min, 5, np.iinfo(np.int64).max, 2**60 + 1, 2**60]])
    x = rg.constant(a)
    v, i = _run(list(rg.nn.top_k(x, 5)))
    np.testing.assert_array_equal(i, [[2, 3, 4, 1, 0]])
    np.testing.assert_array_equal(v, a[:, [2, 3, 4, 1, 0]])
    v0, i0 = _run(list(rg.nn.top_k(x, 0)))
    assert v0.shape == (1, 0) and i0.shape == (1, 0)


def test_top_k_gradient_reaches_the_picked_entries():
    def build(x):
        return rg.nn.top_k(x, 2)[0]
    a = RNG.randn(3, 5)   # distinct values: the finite differences keep the same picks
    sym, _ = check_gradients(build, {"x": a}, shapes={"x": [None, 5]})
    picked = np.argsort(-a, axis=-1)[:, :2]
    mask = np.zeros_like(a, bool)
    np.put_along_axis(mask, picked, True, -1)
    assert np.all(sym["x"][~mask] == 0) and np.all(sym["x"][mask] != 0)
    check_gradients(lambda x: rg.nn.top_k(x, 3)[0], {"x": RNG.randn(2, 3, 4)},
                    shapes={"x": [None, None, None]})


def test_top_k_second_order_gradient():
    x = rg.placeholder(rg.float64, [2, 4])
    w = rg.placeholder(rg.float64, [2, 2])
    v, _ = rg.nn.top_k(x, 2)
    (g,) = rg.gradients(rg.reduce_sum(v * v * w), [x])
    (gg,) = rg.gradients(rg.reduce_sum(g * g), [w])
    a, wa = np.array([[1.0, 4.0, 3.0, 2.0], [0.5, -1.0, 2.0, 7.0]]), RNG.randn(2, 2)
    # g at the picks is 2 v w; sum g^2 = sum 4 v^2 w^2; d/dw = 8 v^2 w
    top = np.array([[4.0, 3.0], [7.0, 2.0]])
    np.testing.assert_allclose(_run(gg, {x: a, w: wa}), 8 * top ** 2 * wa, rtol=1e-12)


@pytest.mark.parametrize("k,exc,word", [(6, ValueError, "at least k=6"),
                                        (-1, ValueError, ">= 0"),
                                        (1.5, TypeError, "k must be an int")])
def test_top_k_bad_k_names_the_line(k, exc, word):
    x = rg.placeholder(rg.float32, [None, 5])
    with pytest.raises(exc, match=word) as info:
        rg.nn.top_k(x, k)
    assert HERE in str(info.value)


def test_top_k_with_too_few_columns_at_run_time_is_an_invalid_argument():
    x = rg.placeholder(rg.float32, [None, None])
    v, _ = rg.nn.top_k(x, 3)
    with pytest.raises(rg.InvalidArgumentError, match="at least k=3"):
        _run(v, {x: np.zeros((2, 2), np.float32)})


def test_top_k_on_the_fake_cupy_device():
    from fake_cupy import FakeCupy
    from rnngraph.backends.cupy.device import CupyDevice
    g = rg.get_default_graph()
    x = rg.placeholder(rg.float64, [None, 6])
    v, i = rg.nn.top_k(x, 3)
    (gx,) = rg.gradients(rg.reduce_sum(v * np.arange(3.0)), [x])
    # distinct values: the fake's argsort is NumPy's default (not stable) sort, where CuPy's
    # is stable; ties are covered on NumPy above
    a = np.stack([RNG.permutation(6) for _ in range(4)]).astype(np.float64)
    got = rg.Session(g, device=CupyDevice(xp=FakeCupy(), workspace_bytes=0)).run(
        [v, i, gx], {x: a})
    want = rg.Session(g).run([v, i, gx], {x: a})
    for a_, b_ in zip(got, want):
        np.testing.assert_array_equal(a_, b_)


# --- moments -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axes,keep", [([0], False), ([0, 1], False), ([2], True), ([0, 2], True),
                                       (1, False)])
def test_moments_match_numpy(axes, keep):
    a = RNG.randn(3, 4, 5)
    x = rg.placeholder(rg.float64, [None, 4, None])
    mean, var = rg.nn.moments(x, axes, keep_dims=keep)
    m, v = _run([mean, var], {x: a})
    ax = tuple(np.atleast_1d(axes))
    np.testing.assert_allclose(m, a.mean(axis=ax, keepdims=keep), rtol=1e-12)
    np.testing.assert_allclose(v, a.var(axis=ax, keepdims=keep), rtol=1e-12)
    assert mean.type.rank == m.ndim and var.type.rank == v.ndim


def test_moments_keepdims_alias_and_float16():
    x = rg.placeholder(rg.float16, [2, 3])
    mean, var = rg.nn.moments(x, [1], keepdims=True)
    assert mean.dtype == np.float16 and mean.shape == (2, 1)
    a = RNG.randn(2, 3).astype(np.float16)
    m, v = _run([mean, var], {x: a})
    np.testing.assert_allclose(m, a.astype(np.float32).mean(1, keepdims=True), rtol=1e-3)
    np.testing.assert_allclose(v, a.astype(np.float32).var(1, keepdims=True), rtol=1e-2,
                               atol=1e-3)


def test_moments_gradients():
    check_gradients(lambda x: list(rg.nn.moments(x, [0, 2])), {"x": RNG.randn(3, 2, 4)},
                    shapes={"x": [None, 2, None]})


def test_moments_bad_axis_names_the_line():
    x = rg.placeholder(rg.float32, [2, 3])
    with pytest.raises(ValueError) as info:
        rg.nn.moments(x, [4])
    assert HERE in str(info.value)


# --- tf.layers.dropout ---------------------------------------------------------------------------
def test_layers_dropout_is_the_identity_unless_training():
    x = rg.placeholder(rg.float32, [None, 100])
    a = np.ones((3, 100), np.float32)
    g = rg.get_default_graph()
    before = len(g.nodes)
    y = rg.layers.dropout(x, rate=0.5)
    assert not any(n.op.name.startswith("random") for n in g.nodes[before:])   # nothing drawn
    np.testing.assert_array_equal(_run(y, {x: a}), a)
    y2 = rg.layers.dropout(x, 0.5, training=False)
    np.testing.assert_array_equal(_run(y2, {x: a}), a)


def test_layers_dropout_training_true_drops_and_scales():
    x = rg.placeholder(rg.float32, [None, 1000])
    y = rg.layers.dropout(x, rate=0.25, training=True, seed=3)
    out = _run(y, {x: np.ones((4, 1000), np.float32)})
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.2 < np.mean(out == 0) < 0.3


def test_layers_dropout_with_a_bool_tensor_and_noise_shape():
    x = rg.placeholder(rg.float32, [None, 50])
    training = rg.placeholder(rg.bool_, [])
    y = rg.layers.dropout(x, rate=0.5, noise_shape=[1, 50], seed=1, training=training)
    a = np.ones((6, 50), np.float32)
    np.testing.assert_array_equal(_run(y, {x: a, training: False}), a)
    out = _run(y, {x: a, training: True})
    assert np.all(out == out[0])          # one mask shared along the batch
    assert set(np.unique(out)) == {0.0, 2.0}


def test_layers_dropout_gradient_is_masked_and_scaled():
    x = rg.placeholder(rg.float64, [3, 40])
    y = rg.layers.dropout(x, rate=0.5, training=True, seed=2)
    (g,) = rg.gradients(rg.reduce_sum(y * 3.0), [x])
    out, gv = _run([y, g], {x: np.ones((3, 40))})
    np.testing.assert_array_equal(gv, np.where(out != 0, 6.0, 0.0))


@pytest.mark.parametrize("kw,exc,word", [
    (dict(rate=1.0), ValueError, r"rate must be a number in \[0, 1\)"),
    (dict(rate=-0.1, training=True), ValueError, "rate"),
    (dict(training="yes"), TypeError, "training must be"),
    (dict(training=1), TypeError, "training must be"),
])
def test_layers_dropout_bad_arguments_name_the_line(kw, exc, word):
    x = rg.placeholder(rg.float32, [None, 4])
    with pytest.raises(exc, match=word) as info:
        rg.layers.dropout(x, **kw)
    assert HERE in str(info.value)


def test_layers_dropout_float_training_tensor_is_refused():
    x = rg.placeholder(rg.float32, [None, 4])
    with pytest.raises(TypeError, match="scalar bool tensor") as info:
        rg.layers.dropout(x, training=rg.placeholder(rg.float32, []))
    assert HERE in str(info.value)


# --- tf.losses.softmax_cross_entropy -------------------------------------------------------------
def _np_xent(labels, logits):
    z = logits - logits.max(-1, keepdims=True)
    return -(labels * (z - np.log(np.exp(z).sum(-1, keepdims=True)))).sum(-1)


def test_softmax_cross_entropy_default_is_the_mean():
    logits = RNG.randn(5, 4)
    labels = np.eye(4)[RNG.randint(0, 4, 5)]
    lp = rg.placeholder(rg.float64, [None, 4])
    yp = rg.placeholder(rg.int32, [None, 4])      # int labels are cast to the logits' dtype
    loss = rg.losses.softmax_cross_entropy(yp, lp)
    assert loss.shape == ()
    np.testing.assert_allclose(_run(loss, {lp: logits, yp: labels.astype(np.int32)}),
                               _np_xent(labels, logits).mean(), rtol=1e-12)
    assert loss in rg.losses.get_losses()


def test_softmax_cross_entropy_weights_and_label_smoothing():
    logits = RNG.randn(4, 3)
    labels = np.eye(3)[[0, 2, 1, 1]]
    w = np.array([1.0, 0.0, 2.0, 0.5])
    lp = rg.placeholder(rg.float64, [None, None])
    loss = rg.losses.softmax_cross_entropy(rg.constant(labels), lp, weights=rg.constant(w),
                                           label_smoothing=0.1)
    smooth = labels * 0.9 + 0.1 / 3
    want = (_np_xent(smooth, logits) * w).sum() / 3    # 3 nonzero weights
    np.testing.assert_allclose(_run(loss, {lp: logits}), want, rtol=1e-12)
    none = rg.losses.softmax_cross_entropy(rg.constant(labels), lp, weights=2.0,
                                           reduction=rg.losses.Reduction.NONE)
    np.testing.assert_allclose(_run(none, {lp: logits}), 2.0 * _np_xent(labels, logits),
                               rtol=1e-12)


def test_softmax_cross_entropy_gradients_and_no_gradient_into_labels():
    labels = np.eye(3)[[0, 2, 1]] * 0.8 + 0.2 / 3
    check_gradients(lambda logits: rg.losses.softmax_cross_entropy(
        rg.constant(labels), logits, weights=rg.constant(np.array([1.0, 0.0, 3.0])),
        label_smoothing=0.2), {"logits": RNG.randn(3, 3)}, shapes={"logits": [None, 3]})
    y = rg.placeholder(rg.float64, [3, 3])
    lg = rg.placeholder(rg.float64, [3, 3])
    assert rg.gradients(rg.losses.softmax_cross_entropy(y, lg), [y]) == [None]


@pytest.mark.parametrize("labels_shape,kw,exc,word", [
    ([None, 5], {}, ValueError, "same shape"),
    ([3, 4], dict(weights=np.ones((2,))), ValueError, "cannot weight"),
    ([3, 4], dict(reduction="mean"), ValueError, "reduction must be"),
    ([3, 4], dict(label_smoothing="a"), TypeError, "label_smoothing"),
])
def test_softmax_cross_entropy_bad_input_names_the_line(labels_shape, kw, exc, word):
    logits = rg.placeholder(rg.float32, [3, 4])
    labels = rg.placeholder(rg.float32, labels_shape)
    with pytest.raises(exc, match=word) as info:
        rg.losses.softmax_cross_entropy(labels, logits, **kw)
    assert HERE in str(info.value)


# --- Optimizer.compute_gradients / apply_gradients -----------------------------------------------
def _two_variables():
    w = rg.get_variable("w", [2], rg.float64, initializer=rg.constant_initializer(1.0))
    u = rg.get_variable("u", [2], rg.float64, initializer=rg.constant_initializer(5.0))
    return w, u


def test_compute_gradients_pairs_none_with_unused_variables():
    w, u = _two_variables()
    loss = rg.reduce_sum(w * w)
    opt = rg.train.GradientDescentOptimizer(0.5)
    gv = opt.compute_gradients(loss)
    assert [v for _, v in gv] == [w, u]
    assert gv[0][0] is not None and gv[1][0] is None
    train = opt.apply_gradients(gv)          # the None pair is skipped
    sess = rg.Session()
    sess.run(train)
    np.testing.assert_allclose(sess.read_variable(w), [0.0, 0.0])
    np.testing.assert_allclose(sess.read_variable(u), [5.0, 5.0])


@pytest.mark.parametrize("cls", ["GradientDescentOptimizer", "MomentumOptimizer",
                                 "AdamOptimizer", "RMSPropOptimizer", "AdagradOptimizer"])
def test_minimize_with_an_unused_variable_trains_the_used_one(cls):
    w, u = _two_variables()
    opt = getattr(rg.train, cls)(0.1)
    train = opt.minimize(rg.reduce_sum(w * w))
    sess = rg.Session()
    sess.run(rg.global_variables_initializer())
    sess.run(train)
    assert np.all(sess.read_variable(w) < 1.0)
    np.testing.assert_array_equal(sess.read_variable(u), [5.0, 5.0])


def test_no_gradient_for_any_variable_raises_tf1s_value_error_naming_the_line():
    w, u = _two_variables()
    x = rg.placeholder(rg.float64, [2])
    loss = rg.reduce_sum(x * x)
    opt = rg.train.GradientDescentOptimizer(0.1)
    gv = opt.compute_gradients(loss)
    assert [g for g, _ in gv] == [None, None]
    with pytest.raises(ValueError, match="No gradients provided for any variable") as info:
        opt.apply_gradients(gv)
    assert HERE in str(info.value) and "'w'" in str(info.value)
    with pytest.raises(ValueError, match="No gradients provided for any variable, check your "
                                         "graph") as info:
        opt.minimize(loss)
    assert HERE in str(info.value)


def test_compute_gradients_with_no_variables_raises():
    x = rg.placeholder(rg.float64, [2])
    with pytest.raises(ValueError, match="No variables to optimize"):
        rg.train.AdamOptimizer().compute_gradients(rg.reduce_sum(x))


# --- saving and loading a graph with the new ops ------------------------------------------------
def test_a_graph_with_the_new_ops_saves_and_loads(tmp_path, graph):
    x = rg.placeholder(rg.float64, [None, None, 4], name="x")
    w = rg.get_variable("w", [4, 3], rg.float64)
    scores = rg.einsum("btd,dk->btk", x, w)
    att = rg.tensordot(scores, rg.constant(np.arange(3.0)), 1)
    values, indices = rg.nn.top_k(att, 2)
    mean, var = rg.nn.moments(x, [0, 1])
    loss = rg.reduce_sum(values) + rg.reduce_sum(var)
    (gw,) = rg.gradients(loss, [w])
    sess = rg.Session(graph, seed=1)
    sess.run(rg.global_variables_initializer())
    fetches = {"values": values, "indices": indices, "mean": mean, "gw": gw}
    a = RNG.randn(2, 5, 4)
    want = sess.run(fetches, {x: a})
    path = rg.save(tmp_path / "m.npz", session=sess, fetches=fetches)
    saved = rg.io.read(path)
    rg.verify(saved.graph)
    got = saved.session().run(saved.fetches, {saved.graph.get_value(x.name): a})
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12)
