"""Forward results of the reduce / shape / nn / fill / checks ops against direct NumPy, static
shapes against runtime shapes, and build-time errors that name the op, the shapes and the line."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import ExecutionError, ShapeError

rng = np.random.default_rng(7)


def run(build, shapes=None, **arrays):
    """Run build(**placeholders) on `arrays`; check each result against its static type."""
    shapes = shapes or {}
    g = rg.Graph()
    with g.as_default():
        phs = {k: rg.placeholder(a.dtype, shapes.get(k, a.shape), name=k)
               for k, a in arrays.items()}
        out = build(**phs)
        outs = out if isinstance(out, (list, tuple)) else [out]
        got = rg.Session(g).run(list(outs), {phs[k]: a for k, a in arrays.items()})
    for v, r in zip(outs, got):
        assert isinstance(r, np.ndarray), f"{v.name} gave {type(r).__name__}, not an array"
        assert r.dtype == v.dtype, f"{v.name}: static dtype {v.dtype}, ran {r.dtype}"
        assert v.type.accepts(r.shape), f"{v.name}: static type {v.type}, ran shape {r.shape}"
    return got if isinstance(out, (list, tuple)) else got[0]


X = rng.standard_normal((2, 3, 4))
UNKNOWN = {"x": (None, None, 4)}


# --- reductions -----------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (2, 0), ()])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("fn,ref", [(rg.reduce_sum, np.sum), (rg.reduce_mean, np.mean),
                                    (rg.reduce_max, np.max)])
@pytest.mark.parametrize("shapes", [None, UNKNOWN], ids=["static", "unknown"])
def test_reductions(fn, ref, axis, keepdims, shapes):
    got = run(lambda x: fn(x, axis, keepdims), shapes, x=X)
    np.testing.assert_allclose(got, ref(X, axis=axis, keepdims=keepdims), rtol=1e-12)


def test_reduce_keeps_float32_and_int_dtypes():
    x32 = X.astype(np.float32)
    assert run(lambda x: rg.reduce_sum(x, 1), x=x32).dtype == np.float32
    xi = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(run(lambda x: rg.reduce_sum(x, 0), x=xi), xi.sum(0))
    np.testing.assert_array_equal(run(lambda x: rg.reduce_max(x), x=xi), 11)


def test_reduce_static_shapes():
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [None, 3, 4])
        assert rg.reduce_sum(x, 1).shape == (None, 4)
        assert rg.reduce_mean(x, (0, -1), keepdims=True).shape == (1, 3, 1)
        assert rg.reduce_max(x).shape == ()


def test_add_n():
    a, b, c = (rng.standard_normal((3, 4)) for _ in range(3))
    np.testing.assert_allclose(run(lambda a, b, c: rg.add_n([a, b, c]), a=a, b=b, c=c), a + b + c)
    got = run(lambda a: rg.add_n([a, a]), a=a)
    np.testing.assert_allclose(got, 2 * a)
    np.testing.assert_allclose(a + b + c, a + b + c)  # inputs not written in place
    with rg.Graph().as_default():
        p = rg.placeholder(rg.float32, [2])
        assert rg.add_n([p]) is p


# --- shape ops ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [None, UNKNOWN], ids=["static", "unknown"])
def test_reshape_transpose_expand_squeeze(shapes):
    np.testing.assert_array_equal(run(lambda x: rg.reshape(x, [6, -1]), shapes, x=X),
                                  X.reshape(6, -1))
    np.testing.assert_array_equal(run(lambda x: rg.reshape(x, [-1]), shapes, x=X), X.reshape(-1))
    np.testing.assert_array_equal(run(lambda x: rg.transpose(x), shapes, x=X), X.T)
    np.testing.assert_array_equal(run(lambda x: rg.transpose(x, [1, 2, 0]), shapes, x=X),
                                  X.transpose(1, 2, 0))
    for axis in (0, 1, 3, -1, -4):
        np.testing.assert_array_equal(run(lambda x: rg.expand_dims(x, axis), shapes, x=X),
                                      np.expand_dims(X, axis))
    y = X.reshape(2, 1, 3, 1, 4)
    sh = {"x": (None, None, None, 1, 4)} if shapes else None
    np.testing.assert_array_equal(run(lambda x: rg.squeeze(x, [1, -2]), sh, x=y), X)
    np.testing.assert_array_equal(run(lambda x: rg.squeeze(x, 3), sh, x=y), y.squeeze(3))
    np.testing.assert_array_equal(run(lambda x: rg.reshape_like(rg.reshape(x, [-1]), x),
                                      shapes, x=X), X)


def test_reshape_static_shapes():
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [None, 3, 4])
        assert rg.reshape(x, [-1, 12]).shape == (None, 12)
        assert rg.reshape(rg.placeholder(rg.float32, [2, 3, 4]), [4, -1]).shape == (4, 6)
        assert rg.squeeze(rg.placeholder(rg.float32, [1, None, 1])).shape == (None,)
        assert rg.transpose(x).shape == (4, 3, None)


@pytest.mark.parametrize("shapes", [None, {"a": (None, None), "b": (None, None)}],
                         ids=["static", "unknown"])
def test_concat_split_stack_unstack(shapes):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 5))
    np.testing.assert_array_equal(run(lambda a, b: rg.concat([a, b, a], -1), shapes, a=a, b=b),
                                  np.concatenate([a, b, a], -1))
    c = np.concatenate([a, b], 1)
    parts = run(lambda a, b: rg.split(rg.concat([a, b], 1), [3, -1], axis=1), shapes, a=a, b=b)
    np.testing.assert_array_equal(parts[0], a)
    np.testing.assert_array_equal(parts[1], b)
    parts = run(lambda a, b: rg.split(rg.concat([a, b], 1), 4, axis=1), shapes, a=a, b=b)
    for p, q in zip(parts, np.split(c, 4, 1)):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(
        run(lambda a, b: rg.stack([a, a * 2.0], axis=1), shapes, a=a, b=b), np.stack([a, a * 2], 1))
    rows = run(lambda a, b: rg.unstack(a, num=2), shapes, a=a, b=b)
    for r, q in zip(rows, a):
        np.testing.assert_array_equal(r, q)


def test_static_shapes_of_concat_split_stack():
    with rg.Graph().as_default():
        a = rg.placeholder(rg.float32, [None, 3])
        b = rg.placeholder(rg.float32, [2, 5])
        assert rg.concat([a, b], 1).shape == (2, 8)
        assert rg.concat([a, a], 0).shape == (None, 3)
        assert [p.shape for p in rg.split(b, [1, -1, 2], 1)] == [(2, 1), (2, 2), (2, 2)]
        assert rg.stack([a, b[:, :3]], -1).shape == (2, 3, 2)
        assert [u.shape for u in rg.unstack(b, axis=1)] == [(2,)] * 5


def test_unstack_needs_num_when_unknown():
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [None, 3])
        with pytest.raises(ValueError, match="pass num="):
            rg.unstack(x)
        assert len(rg.unstack(x, axis=1)) == 3


def test_unstack_and_split_check_runtime_sizes():
    with pytest.raises(ExecutionError, match="unstack"):
        run(lambda x: rg.unstack(x, num=3), {"x": (None, 2)}, x=np.zeros((4, 2)))
    with pytest.raises(ExecutionError, match="split"):
        run(lambda x: rg.split(x, [1, 2], 0), {"x": (None,)}, x=np.zeros(4))


KEYS = [1, -1, slice(1, None), slice(None, None, -1), slice(3, 0, -2), (Ellipsis, 1),
        (None, slice(1, 3)), (1, None, slice(None, None, 2)), (slice(None), -2), (0, -1, 2),
        (Ellipsis,), (0, Ellipsis, None), np.int64(1), (slice(5, 9),)]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
@pytest.mark.parametrize("shapes", [None, UNKNOWN], ids=["static", "unknown"])
def test_getitem(key, shapes):
    np.testing.assert_array_equal(run(lambda x: x[key], shapes, x=X), X[key])


def test_getitem_static_shape_and_repr():
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [None, 5])
        y = x[1:, ::2, None]
        assert y.shape == (None, 3, 1)
        assert x[..., 0].shape == (None,)
        assert repr(y.node.op) == "getitem[1:, ::2, None]"
        assert y.node.op.key == (("slice", 1, None, None), ("slice", None, None, 2), "newaxis")


def test_getitem_rejects_advanced_indexing():
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [3, 4])
        with pytest.raises(TypeError, match="gather"):
            x[rg.constant([0, 1])]
        with pytest.raises(TypeError, match=r"getitem at test_op_forward.py:\d+: unsupported"):
            x[[0, 1]]


def test_broadcast_to_shape_dim():
    x = rng.standard_normal((3, 1))
    np.testing.assert_array_equal(run(lambda x: rg.broadcast_to(x, [2, 3, 4]), x=x),
                                  np.broadcast_to(x, (2, 3, 4)))
    got = run(lambda x: [rg.shape(x), rg.dim(x, 0), rg.dim(x, -1)], UNKNOWN, x=X)
    np.testing.assert_array_equal(got[0], [2, 3, 4])
    assert got[0].dtype == np.int32 and got[1].shape == () and got[1] == 2 and got[2] == 4


# --- nn -------------------------------------------------------------------------------------------
def np_log_softmax(x, axis):
    m = x.max(axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis, keepdims=True))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_log_softmax(axis):
    np.testing.assert_allclose(run(lambda x: rg.softmax(x, axis), x=X),
                               np.exp(np_log_softmax(X, axis)), rtol=1e-12)
    np.testing.assert_allclose(run(lambda x: rg.log_softmax(x, axis), x=X),
                               np_log_softmax(X, axis), rtol=1e-12)


def test_softmax_is_stable_for_huge_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    got = run(lambda x: rg.softmax(x), x=x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    np.testing.assert_allclose(run(lambda x: rg.log_softmax(x), x=x)[0], [0, -1000, -2000])


def test_sparse_softmax_cross_entropy():
    logits = rng.standard_normal((4, 5)) * 10
    labels = np.array([0, 4, 2, 4], dtype=np.int32)
    got = run(lambda labels, logits: rg.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits), {"labels": (None,), "logits": (None, None)},
        labels=labels, logits=logits)
    np.testing.assert_allclose(got, -np_log_softmax(logits, 1)[np.arange(4), labels], rtol=1e-12)


def test_sparse_xent_keyword_only_and_label_range():
    with rg.Graph().as_default():
        with pytest.raises(ValueError, match="keyword"):
            rg.sparse_softmax_cross_entropy_with_logits(rg.constant([0]), rg.constant([[0.0]]))
    with pytest.raises(ExecutionError, match=r"labels must be in \[0, 3\)"):
        run(lambda logits: rg.sparse_softmax_cross_entropy_with_logits(
            labels=np.array([0, 3]), logits=logits), logits=np.zeros((2, 3)))


def test_one_hot():
    idx = np.array([[0, 2], [3, -1]], dtype=np.int32)  # 3 and -1 are out of range: zero rows
    got = run(lambda i: rg.one_hot(i, 3), i=idx)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [[[1, 0, 0], [0, 0, 1]], [[0, 0, 0], [0, 0, 0]]])
    x = np.zeros((2, 4))
    got = run(lambda i, x: rg.one_hot(i, rg.dim(x, 1), rg.int32), {"x": (None, None)},
              i=idx[0], x=x)
    np.testing.assert_array_equal(got, np.eye(4, dtype=np.int32)[[0, 2]])


# --- fill, gather, check_numerics -----------------------------------------------------------------
def test_zeros_ones_fill_with_runtime_sizes():
    x = np.zeros((3, 5))
    got = run(lambda x: [rg.zeros([rg.dim(x, 0), 2]), rg.ones([2, rg.dim(x, 1)], rg.int32),
                         rg.fill([rg.dim(x, 1)], 7), rg.fill([], 1.5, rg.float64),
                         rg.zeros(3, rg.bool_)], {"x": (None, None)}, x=x)
    np.testing.assert_array_equal(got[0], np.zeros((3, 2), np.float32))
    np.testing.assert_array_equal(got[1], np.ones((2, 5), np.int32))
    np.testing.assert_array_equal(got[2], np.full(5, 7, np.int32))
    assert got[3] == 1.5 and got[3].dtype == np.float64
    assert got[4].dtype == np.bool_ and not got[4].any()
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [None, 5])
        z = rg.zeros([rg.dim(x, 0), 5])
        assert z.shape == (None, 5) and z.dtype == np.float32
        assert z.node.op.attrs() == {"shape": (None, 5), "dtype": "float32", "value": 0.0}


def test_gather():
    params = rng.standard_normal((5, 3))
    idx = np.array([[0, 4], [4, 1]], dtype=np.int64)
    got = run(lambda p, i: rg.gather(p, i), {"p": (None, 3)}, p=params, i=idx)
    np.testing.assert_array_equal(got, params[idx])
    with rg.Graph().as_default():
        assert rg.gather(rg.placeholder(rg.float32, [None, 3]), [1, 2]).shape == (2, 3)


def test_gather_gradient_adds_repeated_rows():
    g = rg.Graph()
    with g.as_default():
        p = rg.placeholder(rg.float64, [4, 2])
        dp = rg.gradients(rg.reduce_sum(rg.gather(p, [1, 3, 1, 1])), [p])[0]
        got = rg.Session(g).run(dp, {p: np.zeros((4, 2))})
    np.testing.assert_array_equal(got, [[0, 0], [3, 3], [0, 0], [1, 1]])


def test_check_numerics():
    x = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(run(lambda x: rg.check_numerics(x, "fine"), x=x), x)
    bad = x.copy()
    bad[0, 1] = np.nan
    bad[1, 2] = np.inf
    for exc in (FloatingPointError, ExecutionError):
        with pytest.raises(exc, match="loss exploded: .*1 NaN and 1 Inf"):
            run(lambda x: rg.check_numerics(x * 2.0, "loss exploded"), x=bad)


# --- build-time errors: the op, the shapes and the user's line ------------------------------------
def _error(build, exc=ShapeError):
    with rg.Graph().as_default():
        with pytest.raises(exc) as info:
            build()
    msg = str(info.value)
    assert "test_op_forward.py:" in msg, msg  # the user's line that built the node
    return msg


def ph(*shape, dtype=rg.float32):
    return rg.placeholder(dtype, shape)


@pytest.mark.parametrize("build,needles", [
    (lambda: rg.reduce_sum(ph(2, 3), 2), ["reduce_sum", "axis 2 is out of range", "f32[2,3]"]),
    (lambda: rg.reduce_max(ph(2, 3), (0, -2)), ["reduce_max", "duplicate axis"]),
    (lambda: rg.add_n([ph(2, 3), ph(3, 2)]), ["add_n", "f32[2,3]", "f32[3,2]"]),
    (lambda: rg.reshape(ph(2, 3), [4, 2]), ["reshape", "6 elements", "[4, 2]", "f32[2,3]"]),
    (lambda: rg.reshape(ph(2, 3), [4, -1]), ["reshape", "f32[2,3]"]),
    (lambda: rg.reshape(ph(None, 3), [4, 5]), ["reshape", "multiple of 3", "f32[?,3]"]),
    (lambda: rg.reshape(ph(2, 3), [-1, -1]), ["reshape", "more than one -1"]),
    (lambda: rg.transpose(ph(2, 3), [0, 0]), ["transpose", "not a permutation", "[2,3]"]),
    (lambda: rg.expand_dims(ph(2, 3), 4), ["expand_dims", "axis 4 is out of range"]),
    (lambda: rg.squeeze(ph(2, 3), 0), ["squeeze", "size is 2, not 1", "f32[2,3]"]),
    (lambda: rg.concat([ph(2, 3), ph(3, 3)], 1), ["concat", "dim 0", "[2,3], [3,3]"]),
    (lambda: rg.concat([ph(2, 3), ph(2)], 0), ["concat", "one rank"]),
    (lambda: rg.split(ph(2, 5), 2, 1), ["split", "size 5", "2 equal parts"]),
    (lambda: rg.split(ph(2, 5), [2, 2], 1), ["split", "do not add up to size 5"]),
    (lambda: rg.stack([ph(2, 3), ph(2, 4)]), ["stack", "[2,3], [2,4]"]),
    (lambda: rg.unstack(ph(2, 3), num=3), ["unstack", "num=3", "f32[2,3]"]),
    (lambda: rg.unstack(ph(2, 3), axis=2), ["unstack", "axis 2 is out of range"]),
    (lambda: ph(2, 3)[0, 0, 0], ["getitem", "too many indices", "f32[2,3]"]),
    (lambda: ph(2, 3)[:, 3], ["getitem", "index 3 is out of range for axis 1 with size 3"]),
    (lambda: rg.broadcast_to(ph(2, 3), [3, 3]), ["broadcast_to", "cannot broadcast [2,3]"]),
    (lambda: rg.dim(ph(2, 3), 2), ["dim", "axis 2 is out of range for rank 2"]),
    (lambda: rg.softmax(ph(2, 3), 2), ["softmax", "axis 2"]),
    (lambda: rg.sparse_softmax_cross_entropy_with_logits(labels=ph(3, dtype=rg.int32),
                                                         logits=ph(2, 5)),
     ["sparse_softmax_cross_entropy", "dim 0 is 3 in labels and 2 in logits", "i32[3]",
      "f32[2,5]"]),
    (lambda: rg.sparse_softmax_cross_entropy_with_logits(labels=ph(2, 1, dtype=rg.int32),
                                                         logits=ph(2, 5)),
     ["labels [2,1] and logits [2,5]", "without its last (class) axis, [2]", "rank 2, not 1"]),
])
def test_shape_errors(build, needles):
    msg = _error(build)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


@pytest.mark.parametrize("build,needles", [
    (lambda: rg.reduce_mean(ph(2, dtype=rg.bool_)), ["reduce_mean", "floating point"]),
    (lambda: rg.reduce_sum(ph(2, dtype=rg.bool_)), ["reduce_sum", "bool"]),
    (lambda: rg.concat([ph(2), ph(2, dtype=rg.float64)], 0), ["concat", "dtypes differ"]),
    (lambda: rg.sparse_softmax_cross_entropy_with_logits(labels=ph(2), logits=ph(2, 5)),
     ["labels must be integer"]),
    (lambda: rg.one_hot(ph(2), 3), ["one_hot", "indices must be integers"]),
    (lambda: rg.gather(ph(4, 2), ph(2)), ["gather", "indices must be integers"]),
    (lambda: rg.zeros([ph(2, dtype=rg.int32), 3]), ["fill", "scalar int"]),
    (lambda: rg.check_numerics(ph(2, dtype=rg.int32), "m"), ["check_numerics", "floating"]),
])
def test_type_errors(build, needles):
    msg = _error(build, TypeError)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
