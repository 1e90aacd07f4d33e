"""TF1 indexing ops with TF 1.15's semantics: tf.boolean_mask, tf.gather_nd, tf.scatter_nd,
tf.cumsum, tf.reverse (a list of axes), tf.to_float/to_int32/to_int64/to_double.

Values against NumPy references written here with plain loops (edge cases: empty and all-True
masks, a mask at axis > 0, index depths below params' rank, depth 0, repeated scatter indices
added up), static shapes (boolean_mask's leading dim None), index checks that raise
InvalidArgumentError naming the op, the node and the user's line, gradients against
references and central differences, the memory plan of a masked value, the fake CuPy device,
and a save/load round trip of a graph holding the ops."""
import inspect
import os
import sys
import types

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from gradcheck import check_gradients

HERE = os.path.basename(__file__)
RNG = np.random.RandomState(7)


@pytest.fixture(autouse=True)
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def _run(fetches, feed=None):
    return rg.Session().run(fetches, feed)


# --- references (plain loops, independent of the ops' vectorised kernels) -----------------------
def ref_boolean_mask(x, mask, axis=0):
    lead, k = x.shape[:axis], mask.ndim
    picks = [idx for idx in np.ndindex(*mask.shape) if mask[idx]]
    out = np.zeros(lead + (len(picks),) + x.shape[axis + k:], x.dtype)
    for j, idx in enumerate(picks):
        for front in np.ndindex(*lead):
            out[front + (j,)] = x[front + idx]
    return out


def ref_gather_nd(params, indices):
    q = indices.shape[-1]
    out = np.zeros(indices.shape[:-1] + params.shape[q:], params.dtype)
    for pos in np.ndindex(*indices.shape[:-1]):
        out[pos] = params[tuple(int(i) for i in indices[pos])]
    return out


def ref_scatter_nd(indices, updates, shape):
    out = np.zeros(shape, updates.dtype)
    for pos in np.ndindex(*indices.shape[:-1]):
        out[tuple(int(i) for i in indices[pos])] += updates[pos]
    return out


def ref_cumsum(x, axis, exclusive, reverse):
    x = np.moveaxis(x, axis, 0)
    out = np.zeros_like(x)
    n = x.shape[0]
    for i in range(n):
        js = range(i, n) if reverse else range(0, i + 1)
        for j in js:
            if exclusive and j == i:
                continue
            out[i] += x[j]
    return np.moveaxis(out, 0, axis)


# --- the names and their TF 1.15 argument names --------------------------------------------------
@pytest.mark.parametrize("fn,params", [
    ("boolean_mask", ["tensor", "mask", "name", "axis"]),
    ("gather_nd", ["params", "indices", "name", "batch_dims"]),
    ("scatter_nd", ["indices", "updates", "shape", "name"]),
    ("cumsum", ["x", "axis", "exclusive", "reverse", "name"]),
    ("reverse", ["tensor", "axis", "name"]),
    ("to_float", ["x", "name"]), ("to_int32", ["x", "name"]),
    ("to_int64", ["x", "name"]), ("to_double", ["x", "name"]),
])
def test_the_tf1_names_take_tf1s_arguments(fn, params):
    assert list(inspect.signature(getattr(rg, fn)).parameters) == params


# --- boolean_mask --------------------------------------------------------------------------------
MASK_CASES = [   # (tensor shape, mask shape, axis)
    ((5,), (5,), 0), ((6, 3), (6,), 0), ((4, 5, 2), (4, 5), 0), ((3, 6, 2), (6,), 1),
    ((2, 3, 4, 2), (3, 4), 1), ((2, 3, 4), (4,), 2), ((2, 3, 4), (2, 3, 4), 0),
]


@pytest.mark.parametrize("xs,ms,axis", MASK_CASES)
@pytest.mark.parametrize("fill", ["random", "none", "all"])
def test_boolean_mask_matches_a_reference(xs, ms, axis, fill):
    a = RNG.randn(*xs)
    m = {"random": RNG.rand(*ms) > 0.5, "none": np.zeros(ms, bool), "all": np.ones(ms, bool)}[fill]
    x = rg.placeholder(rg.float64, xs)
    mp = rg.placeholder(rg.bool_, ms)
    out = rg.boolean_mask(x, mp, axis=axis)
    want = ref_boolean_mask(a, m, axis)
    assert out.shape == xs[:axis] + (None,) + xs[axis + len(ms):]   # the count: data-dependent
    got = _run(out, {x: a, mp: m})
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


def test_boolean_mask_with_a_constant_mask_a_list_and_zero_rows():
    a = np.arange(12, dtype=np.int32).reshape(4, 3)
    got = _run(rg.boolean_mask(a, [True, False, False, True]))
    np.testing.assert_array_equal(got, [[0, 1, 2], [9, 10, 11]])
    empty = rg.placeholder(rg.float32, [None, 3])
    out = _run(rg.boolean_mask(empty, rg.placeholder_with_default(np.zeros(0, bool), [None])),
               {empty: np.zeros((0, 3), np.float32)})
    assert out.shape == (0, 3)


def test_boolean_mask_static_shapes():
    x = rg.placeholder(rg.float32, [None, 5, 3])
    assert rg.boolean_mask(x, rg.placeholder(rg.bool_, [5]), axis=1).shape == (None, None, 3)
    assert rg.boolean_mask(x, rg.placeholder(rg.bool_, [None, 5])).shape == (None, 3)
    assert rg.boolean_mask(x, rg.placeholder(rg.bool_, [None, 5, 3])).shape == (None,)


@pytest.mark.parametrize("xs,ms,kw,exc,word", [
    ((4, 3), (), {}, ValueError, "scalar"),
    ((4, 3), (3,), {}, ValueError, "must match"),
    ((4, 3), (4, 3, 1), {}, ValueError, "does not fit"),
    ((4, 3), (3,), {"axis": 2}, ValueError, "does not fit"),
    ((4, 3), (3,), {"axis": -1}, ValueError, "axis must be >= 0"),
    ((4, 3), (4,), {"axis": rg.constant(0)}, TypeError, "known when the graph is built"),
])
def test_boolean_mask_bad_arguments_name_the_line(xs, ms, kw, exc, word):
    x = rg.placeholder(rg.float32, xs)
    m = rg.placeholder(rg.bool_, ms)
    with pytest.raises(exc, match=word) as info:
        rg.boolean_mask(x, m, **kw)
    assert HERE in str(info.value)


def test_boolean_mask_of_ints_is_refused():
    with pytest.raises(TypeError, match="mask must be bool"):
        rg.boolean_mask(rg.placeholder(rg.float32, [4]), np.array([1, 0, 1, 1]))


def test_boolean_mask_fed_mask_of_another_size_is_an_invalid_argument():
    x = rg.placeholder(rg.float32, [None, 2])
    m = rg.placeholder(rg.bool_, [None])
    out = rg.boolean_mask(x, m, name="picked")
    with pytest.raises(rg.InvalidArgumentError, match=rf"picked.*{HERE}.*boolean_mask: mask "):
        _run(out, {x: np.zeros((3, 2), np.float32), m: np.ones(4, bool)})


@pytest.mark.parametrize("axis,ms", [(0, (4,)), (1, (3,)), (0, (4, 3))])
def test_boolean_mask_gradient_puts_rows_back(axis, ms):
    a = RNG.randn(4, 3, 2)
    m = RNG.rand(*ms) > 0.4
    w = RNG.randn(*ref_boolean_mask(a, m, axis).shape)
    x = rg.placeholder(rg.float64, [None, None, 2])
    mp = rg.placeholder(rg.bool_, [None] * len(ms))
    (gx,) = rg.gradients(rg.reduce_sum(rg.boolean_mask(x, mp, axis=axis) * w), [x])
    want = np.zeros_like(a)
    picks = [idx for idx in np.ndindex(*ms) if m[idx]]
    for j, idx in enumerate(picks):
        want[(slice(None),) * axis + idx] = w[(slice(None),) * axis + (j,)]
    np.testing.assert_array_equal(_run(gx, {x: a, mp: m}), want)


def test_boolean_mask_numerical_gradient():
    m = np.array([[True, False], [True, True], [False, False]])
    check_gradients(lambda x: rg.boolean_mask(rg.tanh(x), m, axis=1) ** 2.0,
                    {"x": RNG.randn(2, 3, 2, 2)})


def test_boolean_mask_memory_plan_counts_a_known_mask_and_bounds_a_fed_one():
    x = rg.placeholder(rg.float64, [None, 8])
    known = rg.boolean_mask(x, np.array([True, False] * 4), axis=1)   # 4 of 8 columns
    m = rg.placeholder(rg.bool_, [None])
    fed = rg.boolean_mask(x, m)
    a = RNG.randn(6, 8)
    for out, feed, exact in [(known * 2.0, {x: a}, True),
                             (fed * 2.0, {x: a, m: np.arange(6) % 3 == 0}, False)]:
        sess = rg.Session(device=SimulatedDevice())
        plan = sess.memory_plan(out, feed)
        assert not plan.unknown
        sess.run(out, feed, report=True)
        measured = sess.last_run_report.peak_bytes
        if exact:
            assert plan.predicted_peak == measured
        else:   # every row kept, at most: 2 of the 6 rows are
            assert plan.predicted_peak >= measured + 2 * 4 * 8 * 8


# --- gather_nd -----------------------------------------------------------------------------------
ND_CASES = [   # (params shape, indices shape): the index depth q = indices.shape[-1]
    ((4, 5), (3, 2)), ((4, 5), (3, 1)), ((4, 5, 2), (2, 3, 2)), ((4, 5, 2), (6, 3)),
    ((4,), (5, 1)), ((4, 5), (0, 2)), ((3, 2), (2, 0)), ((4, 5, 2), (2,)),
]


def _indices(pshape, ishape, dtype=np.int32):
    q = ishape[-1]
    cols = [RNG.randint(0, pshape[j], size=ishape[:-1]) for j in range(q)]
    return (np.stack(cols, -1) if q else np.zeros(ishape)).astype(dtype)


@pytest.mark.parametrize("ps,is_", ND_CASES)
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_gather_nd_matches_a_reference(ps, is_, dtype):
    a = RNG.randn(*ps)
    idx = _indices(ps, is_, dtype)
    x = rg.placeholder(rg.float64, ps)
    out = rg.gather_nd(x, idx)
    want = ref_gather_nd(a, idx)
    assert out.shape == want.shape
    np.testing.assert_array_equal(_run(out, {x: a}), want)


def test_gather_nd_tf1s_documented_examples():
    p = np.array([[1, 2], [3, 4]], np.int64)   # (the docs' ['a', 'b'], ['c', 'd'])
    np.testing.assert_array_equal(_run(rg.gather_nd(p, [[0, 0], [1, 1]])), p[[0, 1], [0, 1]])
    np.testing.assert_array_equal(_run(rg.gather_nd(p, [[1], [0]])), p[[1, 0]])
    np.testing.assert_array_equal(_run(rg.gather_nd(p, [[[0, 1]], [[1, 0]]])),
                                  [[p[0, 1]], [p[1, 0]]])


def test_gather_nd_static_shapes_keep_unknown_dims():
    p = rg.placeholder(rg.float32, [None, 4, 5])
    assert rg.gather_nd(p, rg.placeholder(rg.int32, [7, 2])).shape == (7, 5)
    assert rg.gather_nd(p, rg.placeholder(rg.int64, [None, 3, 1])).shape == (None, 3, 4, 5)


@pytest.mark.parametrize("bad,at", [([[0, 1], [-1, 0]], "indices[1] = [-1, 0]"),
                                     ([[0, 1], [2, 5]], "indices[1] = [2, 5]"),
                                     ([[3, 0]], "indices[0] = [3, 0]")])
def test_gather_nd_index_outside_params_is_an_invalid_argument(bad, at):
    x = rg.placeholder(rg.float32, [None, 5])
    out = rg.gather_nd(x, rg.placeholder(rg.int32, [None, 2], name="ids"), name="g")
    ids = rg.get_default_graph().get_value("ids")
    with pytest.raises(rg.InvalidArgumentError) as info:
        _run(out, {x: np.zeros((3, 5), np.float32), ids: np.array(bad, np.int32)})
    msg = str(info.value)
    assert "gather_nd" in msg and at in msg and "param shape [3,5]" in msg and HERE in msg, msg


def test_gather_nd_gradient_index_check_and_nested_position():
    x = rg.placeholder(rg.float64, [3, 2])
    ids = rg.placeholder(rg.int32, [2, 2, 1])
    with pytest.raises(rg.InvalidArgumentError, match=r"indices\[1,0\] = \[3\]"):
        _run(rg.gather_nd(x, ids), {x: np.zeros((3, 2)), ids: np.array([[[0], [1]], [[3], [0]]])})


@pytest.mark.parametrize("kw,exc,word", [
    (dict(indices=np.zeros((2, 3), np.int32)), ValueError, "index depth 3"),
    (dict(indices=np.zeros((2, 1), np.float32)), TypeError, "int32 or int64"),
    (dict(indices=np.int32(0)), ValueError, "rank >= 1"),
    (dict(indices=np.zeros((2, 1), np.int32), batch_dims=1), ValueError, "batch_dims"),
])
def test_gather_nd_bad_arguments_name_the_line(kw, exc, word):
    with pytest.raises(exc, match=word) as info:
        rg.gather_nd(rg.placeholder(rg.float32, [4, 5]), **kw)
    assert HERE in str(info.value)


def test_gather_nd_needs_the_index_depth_when_built():
    with pytest.raises(ValueError, match="index depth"):
        rg.gather_nd(rg.placeholder(rg.float32, [4, 5]), rg.placeholder(rg.int32, [3, None]))


def test_gather_nd_gradient_adds_repeated_rows():
    a = RNG.randn(4, 3, 2)
    idx = np.array([[0, 1], [3, 2], [0, 1], [0, 1]], np.int32)
    w = RNG.randn(4, 2)
    x = rg.placeholder(rg.float64, [None, 3, 2])
    (gx,) = rg.gradients(rg.reduce_sum(rg.gather_nd(x, idx) * w), [x])
    want = np.zeros_like(a)
    for row, (i, j) in enumerate(idx):
        want[i, j] += w[row]
    np.testing.assert_allclose(_run(gx, {x: a}), want, rtol=1e-15)


# --- scatter_nd ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,is_", [((4, 5), (6, 2)), ((4, 5), (3, 1)), ((4, 5, 2), (2, 3, 2)),
                                       ((8,), (10, 1)), ((4, 5), (0, 2)), ((3, 2), (2, 0))])
def test_scatter_nd_matches_a_reference_adding_up_repeats(shape, is_):
    idx = _indices(shape, is_)
    u = RNG.randn(*(is_[:-1] + shape[is_[-1]:]))
    out = rg.scatter_nd(idx, rg.placeholder_with_default(u, u.shape), list(shape))
    assert out.shape == shape
    np.testing.assert_allclose(_run(out), ref_scatter_nd(idx, u, shape), rtol=1e-14)


def test_scatter_nd_tf1s_documented_example_and_repeats_summed():
    idx = np.array([[4], [3], [1], [7]])
    got = _run(rg.scatter_nd(idx, np.array([9, 10, 11, 12], np.int32), [8]))
    np.testing.assert_array_equal(got, [0, 11, 0, 10, 9, 0, 0, 12])
    assert got.dtype == np.int32
    got = _run(rg.scatter_nd([[1], [1], [1]], np.array([1.0, 2.5, 4.0]), np.array([3])))
    np.testing.assert_array_equal(got, [0.0, 7.5, 0.0])


def test_scatter_nd_runtime_shapes():
    x = rg.placeholder(rg.float32, [None, 3])
    n = rg.placeholder(rg.int32, [])
    idx = np.array([[1, 2], [0, 0]], np.int32)
    u = np.array([5.0, 7.0], np.float32)
    like = rg.scatter_nd(idx, u, rg.shape(x))
    sized = rg.scatter_nd(idx, u, [n, 3])
    assert like.shape == (None, 3) and sized.shape == (None, 3)
    got = _run([like, sized], {x: np.zeros((4, 3), np.float32), n: 2})
    np.testing.assert_array_equal(got[0], ref_scatter_nd(idx, u, (4, 3)))
    np.testing.assert_array_equal(got[1], ref_scatter_nd(idx, u, (2, 3)))
    vec = rg.scatter_nd(idx, u, rg.placeholder_with_default(np.array([3, 3], np.int32), [2]))
    assert vec.shape == (None, None)
    np.testing.assert_array_equal(_run(vec), ref_scatter_nd(idx, u, (3, 3)))


@pytest.mark.parametrize("bad,at", [([[1], [-2]], "indices[1] = [-2]"),
                                     ([[4], [0]], "indices[0] = [4]")])
def test_scatter_nd_index_outside_the_shape_is_an_invalid_argument(bad, at):
    ids = rg.placeholder(rg.int64, [None, 1])
    out = rg.scatter_nd(ids, np.ones((2, 3)), [4, 3], name="s")
    with pytest.raises(rg.InvalidArgumentError) as info:
        _run(out, {ids: np.array(bad)})
    msg = str(info.value)
    assert "scatter_nd" in msg and at in msg and "shape [4,3]" in msg and HERE in msg, msg


def test_scatter_nd_shape_errors():
    with pytest.raises(ValueError, match="updates must have shape") as info:
        rg.scatter_nd(np.zeros((2, 1), np.int32), np.ones((2, 4)), [4, 3])
    assert HERE in str(info.value)
    with pytest.raises(ValueError, match="index depth 3"):
        rg.scatter_nd(np.zeros((2, 3), np.int32), np.ones(2), [4, 3])
    with pytest.raises(TypeError, match="1-D int tensor"):
        rg.scatter_nd(np.zeros((2, 1), np.int32), np.ones(2), rg.placeholder(rg.int32, [None]))
    u = rg.placeholder(rg.float32, [None])
    out = rg.scatter_nd(np.zeros((2, 1), np.int32), u, [4])
    with pytest.raises(rg.InvalidArgumentError, match="updates of shape"):
        _run(out, {u: np.ones(3, np.float32)})
    n = rg.placeholder(rg.int32, [])
    out = rg.scatter_nd(np.zeros((2, 1), np.int32), np.ones(2), [n])
    with pytest.raises(rg.InvalidArgumentError, match="empty output shape"):
        _run(out, {n: 0})


def test_scatter_nd_gradient_is_gather_nd_of_the_cotangent():
    idx = np.array([[2, 1], [0, 0], [2, 1]], np.int32)
    u = rg.placeholder(rg.float64, [3])
    w = RNG.randn(3, 2)
    (gu,) = rg.gradients(rg.reduce_sum(rg.scatter_nd(idx, u, [3, 2]) * w), [u])
    np.testing.assert_array_equal(_run(gu, {u: RNG.randn(3)}), [w[2, 1], w[0, 0], w[2, 1]])
    check_gradients(lambda v: rg.scatter_nd(idx, v * v, [3, 2]), {"v": RNG.randn(3)})


def test_gather_nd_then_scatter_nd_numerical_second_order():
    idx = np.array([[1], [0], [1]], np.int32)
    check_gradients(lambda x: rg.gradients(rg.reduce_sum(rg.gather_nd(x, idx) ** 3.0), [x])[0],
                    {"x": RNG.randn(2, 3)})


# --- cumsum, reverse, casts ----------------------------------------------------------------------
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cumsum_matches_a_reference(exclusive, reverse, axis):
    a = RNG.randn(3, 4, 2)
    x = rg.placeholder(rg.float64, [None, 4, 2])
    got = _run(rg.cumsum(x, axis, exclusive=exclusive, reverse=reverse), {x: a})
    np.testing.assert_allclose(got, ref_cumsum(a, axis, exclusive, reverse), rtol=1e-13,
                               atol=1e-14)


def test_cumsum_tf1s_documented_examples_ints_and_empty():
    a = np.array([1, 2, 3], np.int32)   # tf.cumsum docs: a, b, c
    assert _run(rg.cumsum(a)).tolist() == [1, 3, 6]
    assert _run(rg.cumsum(a, exclusive=True)).tolist() == [0, 1, 3]
    assert _run(rg.cumsum(a, reverse=True)).tolist() == [6, 5, 3]
    assert _run(rg.cumsum(a, exclusive=True, reverse=True)).tolist() == [5, 3, 0]
    assert _run(rg.cumsum(a)).dtype == np.int32
    assert _run(rg.cumsum(np.zeros((0, 2), np.float32), exclusive=True)).shape == (0, 2)


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum_gradient(exclusive, reverse):
    check_gradients(lambda x: rg.cumsum(x * x, 0, exclusive=exclusive, reverse=reverse),
                    {"x": RNG.randn(4, 3)})


def test_cumsum_bad_arguments():
    with pytest.raises(TypeError, match="known when the graph is built"):
        rg.cumsum(np.ones(3), rg.constant(0))
    with pytest.raises(ValueError, match="out of range") as info:
        rg.cumsum(np.float32(1.0))
    assert HERE in str(info.value)
    with pytest.raises(TypeError, match="number type"):
        rg.cumsum(np.ones(3, bool))


def test_reverse_matches_numpy_and_takes_an_axis_list():
    a = RNG.randn(3, 4, 2)
    x = rg.placeholder(rg.float64, [None, 4, 2])
    outs = [rg.reverse(x, [0, -1]), rg.reverse(x, [1]), rg.reverse(x, []), rg.reverse(x, 2),
            rg.reverse(x, np.array([2, 1]))]
    got = _run(outs, {x: a})
    want = [a[::-1, :, ::-1], a[:, ::-1], a, a[:, :, ::-1], a[:, ::-1, ::-1]]
    for g_, w_ in zip(got, want):
        np.testing.assert_array_equal(g_, w_)
    assert outs[0].shape == (None, 4, 2)


def test_reverse_gradient_and_bad_axes():
    check_gradients(lambda x: rg.reverse(x, [1]) * np.arange(6.0).reshape(2, 3),
                    {"x": RNG.randn(2, 3)})
    x = rg.placeholder(rg.float32, [2, 3])
    with pytest.raises(ValueError, match="more than once") as info:
        rg.reverse(x, [0, -2])
    assert HERE in str(info.value)
    with pytest.raises(ValueError, match="out of range"):
        rg.reverse(x, [2])
    with pytest.raises(TypeError, match="known when the graph is built"):
        rg.reverse(x, rg.constant([0]))


def test_to_float_to_int_casts():
    a = np.array([-1.7, 0.5, 2.9])
    outs = [rg.to_float(a), rg.to_double(np.float32(2.5)), rg.to_int32(a), rg.to_int64(a)]
    got = _run(outs)
    assert [v.dtype for v in got] == [np.float32, np.float64, np.int32, np.int64]
    assert got[2].tolist() == [-1, 0, 2] and got[3].tolist() == [-1, 0, 2]   # toward 0


# --- the fake CuPy device ------------------------------------------------------------------------
def test_the_ops_on_the_fake_cupy_device(monkeypatch):
    from fake_cupy import FakeCupy
    from rnngraph.backends.cupy.device import CupyDevice
    # the scatters call cupyx.scatter_add off NumPy (ops/fill._scatter_add): NumPy's add.at
    # stands in for it on the fake's host arrays, for this test only
    monkeypatch.setitem(sys.modules, "cupyx", types.SimpleNamespace(scatter_add=np.add.at))
    g = rg.get_default_graph()
    x = rg.placeholder(rg.float64, [None, 3])
    m = rg.placeholder(rg.bool_, [None])
    ids = rg.placeholder(rg.int32, [None, 2])
    y = rg.reduce_sum(rg.boolean_mask(x, m) ** 2.0) + \
        rg.reduce_sum(rg.gather_nd(x, ids) * np.array([1.0, 2.0, 3.0])) + \
        rg.reduce_sum(rg.scatter_nd(ids, rg.gather_nd(x, ids), rg.shape(x)) ** 2.0) + \
        rg.reduce_sum(rg.cumsum(rg.reverse(x, [0]), 1, exclusive=True) ** 2.0)
    (gx,) = rg.gradients(y, [x])
    feed = {x: RNG.randn(4, 3), m: np.array([True, False, True, True]),
            ids: np.array([[0, 2], [3, 1], [0, 2]], np.int32)}
    device = CupyDevice(xp=FakeCupy(), workspace_bytes=0)
    got = rg.Session(g, device=device).run([y, gx], feed)
    want = rg.Session(g).run([y, gx], feed)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13)
    with pytest.raises(rg.InvalidArgumentError, match=r"indices\[1\] = \[4, 1\]"):
        rg.Session(g, device=CupyDevice(xp=FakeCupy(), workspace_bytes=0)).run(
            y, {**feed, ids: np.array([[0, 2], [4, 1], [0, 2]], np.int32)})


# --- saving and loading --------------------------------------------------------------------------
def test_a_graph_with_the_indexing_ops_saves_and_loads(tmp_path, graph):
    x = rg.placeholder(rg.float64, [None, 4], name="x")
    m = rg.placeholder(rg.bool_, [None], name="m")
    w = rg.get_variable("w", [4, 4], rg.float64)
    h = rg.matmul(x, w)
    idx = np.array([[0, 1], [2, 3], [0, 1]], np.int32)
    picked = rg.boolean_mask(h, m)
    nd = rg.gather_nd(h, idx)
    sc = rg.scatter_nd(idx, nd, rg.shape(h))
    cs = rg.cumsum(rg.reverse(h, [0, 1]), 1, exclusive=True, reverse=True)
    loss = rg.reduce_sum(picked ** 2.0) + rg.reduce_sum(nd) + rg.reduce_sum(sc * cs) + \
        rg.reduce_sum(rg.boolean_mask(h, np.array([False, True, True, False]), axis=1))
    (gw,) = rg.gradients(loss, [w])
    sess = rg.Session(graph, seed=1)
    sess.run(rg.global_variables_initializer())
    fetches = {"picked": picked, "sc": sc, "cs": cs, "loss": loss, "gw": gw,
               "f": rg.to_float(loss)}
    feed = {x: RNG.randn(5, 4), m: np.array([True, False, False, True, True])}
    want = sess.run(fetches, feed)
    path = rg.save(tmp_path / "m.npz", session=sess, fetches=fetches)
    saved = rg.io.read(path)
    rg.verify(saved.graph)
    ops = {n.op.name for n in saved.graph.nodes}
    assert {"boolean_mask", "boolean_mask_grad", "gather_nd", "gather_nd_grad", "scatter_nd",
            "cumsum", "reverse"} <= ops
    got = saved.session().run(saved.fetches, {saved.graph.get_value(x.name): feed[x],
                                              saved.graph.get_value(m.name): feed[m]})
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
