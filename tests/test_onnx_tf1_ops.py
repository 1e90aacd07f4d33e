"""ONNX export of the ops added for TF1 porting (tile, pad, slice, the newer reductions,
argmin, top_k, a reshape to run-time sizes, identity) and of the TF1 builders made of older
ops (tensordot, einsum, bias_add, xw_plus_b, one_hot with on/off values, gather along an axis,
where with a vector condition, in_top_k, moments): each exported graph is run in onnxruntime
on batch sizes the export never saw, and must give rnngraph Session's values."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import ExportError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnngraph.io.onnx import export  # noqa: E402
from rnngraph.io.onnx.check import run_onnxruntime  # noqa: E402
from rnngraph.ops.elementwise import where_v2  # noqa: E402  (the Where op, NumPy broadcasting)

W = 5


def _ties(batch, rng):
    """[batch, W] floats with repeated values in every row (ties for top_k / argmin)."""
    return rng.integers(-2, 3, size=(batch, W)).astype(np.float32)


def _normal(batch, rng):
    return rng.normal(size=(batch, W)).astype(np.float32)


def _run(build, make=_normal, batches=(1, 3, 4), opset=None, dtype=rg.float32):
    """Export build(x) for x: [None, W] and compare onnxruntime with the Session (exactly for
    ints and bools, to 1e-5 for floats) on several batch sizes; returns the model."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(dtype, [None, W], name="x")
        out = build(x)
        outs = {f"y{i}": v for i, v in enumerate(out if isinstance(out, (tuple, list))
                                                   else [out])}
    sess = rg.Session(g)
    ex = export(outs, opset=opset)
    rng = np.random.default_rng(0)
    for batch in batches:
        feed = {x: make(batch, rng)}
        theirs = run_onnxruntime(ex, feed)
        mine = sess.run(list(outs.values()), feed)
        for (name, v), want in zip(outs.items(), mine):
            got = theirs[name]
            assert got.dtype == np.asarray(want).dtype == v.dtype, (name, got.dtype, v.dtype)
            assert got.shape == np.shape(want), (name, got.shape, np.shape(want))
            if np.issubdtype(v.dtype, np.floating):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(got, want, err_msg=name)
    return ex.model


def _op_types(model):
    return {n.op_type for n in model.graph.node}


# --- tf1_array: tile, pad, slice -------------------------------------------------------------
def test_tile():
    m = _run(lambda x: [rg.tile(x, [2, 3]), rg.tile(x, [1, 0]), rg.tile(x, [3, 1])])
    assert "Tile" in _op_types(m)


@pytest.mark.parametrize("mode", ["CONSTANT", "REFLECT", "SYMMETRIC"])
def test_pad(mode):
    def build(x):
        return [rg.pad(x, [[1, 2], [0, 3]], mode=mode, constant_values=1.5),
                rg.pad(x, [[0, 0], [2, 0]], mode=mode),
                rg.pad(x, [[0, 0], [0, 4 if mode == "REFLECT" else W]], mode=mode)]
    # (REFLECT by 2 rows of the batch axis needs 3 or more rows)
    _run(build, batches=(3, 6) if mode != "CONSTANT" else (1, 3))


def test_pad_of_ints_and_bools():
    _run(lambda x: rg.pad(x, [[1, 0], [0, 2]], constant_values=7), dtype=rg.int32,
         make=lambda b, rng: rng.integers(-9, 9, size=(b, W)).astype(np.int32))
    _run(lambda x: [rg.pad(x, [[1, 0], [0, 2]], constant_values=True),
                    rg.pad(x, [[1, 0], [0, 2]])], dtype=rg.bool_,
         make=lambda b, rng: rng.random((b, W)) < 0.5)


def test_slice():
    m = _run(lambda x: [rg.slice(x, [1, 0], [-1, 2]), rg.slice(x, [0, 2], [1, -1]),
                        rg.slice(x, [0, 0], [-1, -1]), rg.slice(x, [0, 1], [-1, 3])],
             batches=(2, 5))
    assert "Slice" in _op_types(m)


def test_bias_add_and_xw_plus_b():
    b4 = np.arange(W, dtype=np.float32)

    def build(x):
        nchw = rg.reshape(x, [-1, W, 1, 1]) * np.ones((1, 1, 2, 3), np.float32)
        return [rg.nn.bias_add(x, b4), rg.nn.bias_add(nchw, b4, data_format="NCHW"),
                rg.nn.xw_plus_b(x, np.ones((W, 3), np.float32), np.arange(3, dtype=np.float32))]
    _run(build)


def test_gather_along_an_axis():
    idx = np.array([[0, 4], [2, 2]], np.int32)
    _run(lambda x: [rg.gather(x, idx, axis=1), rg.gather(x, np.array([3, 0], np.int32), axis=-1),
                    rg.gather(x, np.array([0, 0], np.int64), axis=0)], batches=(1, 3))


# --- reductions and argmin -------------------------------------------------------------------
@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("fn", [rg.reduce_min, rg.reduce_prod, rg.reduce_logsumexp])
def test_reductions(fn, opset):
    def build(x):
        return [fn(x, 1), fn(x, 0, keepdims=True), fn(x), fn(x, [0, 1], keepdims=True),
                fn(x, -1, keepdims=True), fn(x, [])]
    _run(build, opset=opset)


def test_reduce_logsumexp_of_large_and_infinite_entries():
    """Stable where exp overflows; a row of -inf gives -inf (not NaN); +inf gives +inf."""
    def make(batch, rng):
        x = rng.normal(size=(batch, W)).astype(np.float32) * 100 + 500
        x[0] = -np.inf
        if batch > 1:   # (+inf among small entries: rnngraph's exp of the rest stays finite)
            x[1] = rng.normal(size=W)
            x[1, 2] = np.inf
        return x
    _run(lambda x: [rg.reduce_logsumexp(x, 1), rg.reduce_logsumexp(x, 1, keepdims=True)],
         make=make)


@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_any_and_all(opset):
    def build(x):
        b = rg.greater(x, 0.0)
        return [rg.reduce_any(b, 1), rg.reduce_all(b, 1), rg.reduce_any(b),
                rg.reduce_all(b, 0, keepdims=True), rg.reduce_any(b, [])]

    def make(batch, rng):
        x = rng.normal(size=(batch, W)).astype(np.float32)
        x[0] = 1.0          # all true
        if batch > 1:
            x[1] = -1.0     # none true
        return x
    _run(build, make=make, opset=opset)


def test_empty_reductions():
    """Reducing over no entries: reduce_min the dtype's largest value (inf), reduce_prod 1,
    reduce_any False, reduce_all True, reduce_logsumexp -inf, as rnngraph's."""
    def build(x):
        b = rg.greater(x, 0.0)
        return [rg.reduce_min(x, 0), rg.reduce_prod(x, 0), rg.reduce_any(b, 0),
                rg.reduce_all(b, 0), rg.reduce_logsumexp(x, 0)]
    _run(build, batches=(0, 2))


def test_argmin_with_ties_takes_the_first():
    _run(lambda x: [rg.argmin(x, 1), rg.argmin(x, 0), rg.argmin(x, 1, output_type=rg.int32),
                    rg.argmax(x, -1)], make=_ties, batches=(1, 4, 7))


# --- top_k, in_top_k, moments ----------------------------------------------------------------
def test_top_k_values_and_indices_with_ties():
    """Equal values in the order of their positions (as TF1's kernel and rnngraph's)."""
    def build(x):
        v2, i2 = rg.nn.top_k(x, 2)
        v5, i5 = rg.nn.top_k(x, W)
        return [v2, i2, v5, i5]
    m = _run(build, make=_ties, batches=(1, 4, 9))
    assert "TopK" in _op_types(m)


def test_top_k_of_a_rank_3_input():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, None, W], name="x")
        v, i = rg.nn.top_k(x, 3)
    sess = rg.Session(g)
    ex = export({"v": v, "i": i})
    rng = np.random.default_rng(1)
    for shape in ((2, 3, W), (1, 1, W)):
        feed = {x: rng.integers(0, 3, size=shape).astype(np.float32)}
        got = run_onnxruntime(ex, feed)
        want_v, want_i = sess.run([v, i], feed)
        np.testing.assert_array_equal(got["v"], want_v)
        np.testing.assert_array_equal(got["i"], want_i)


def test_in_top_k_and_moments():
    targets = np.array([0, 1, 4], np.int32)   # (three rows: the batch is fed as 3)

    def build(x):
        hits = [rg.nn.in_top_k(x, targets, k) for k in (1, 2, 3)]
        mean, var = rg.nn.moments(x, [0], name="m")
        return hits + [mean, var]
    _run(build, make=_ties, batches=(3,))


# --- contractions and run-time reshapes ------------------------------------------------------
def test_tensordot_and_einsum():
    w = np.arange(W * 3, dtype=np.float32).reshape(W, 3) / 10

    def build(x):
        x3 = rg.reshape(x, [rg.shape(x)[0], 1, W]) * np.ones((1, 2, 1), np.float32)
        return [rg.tensordot(x, w, 1), rg.tensordot(x3, w, [[2], [0]]),
                rg.einsum("bi,bi->b", x, x), rg.einsum("btd,bsd->bts", x3, x3),
                rg.einsum("bi,j->bij", x, np.ones(3, np.float32)),
                rg.einsum("btd->bd", x3)]
    m = _run(build)
    assert "Reshape" in _op_types(m)


def test_reshape_to_run_time_sizes():
    """reshape_dynamic's three kinds of entries: a size of an input, a scalar tensor, an
    entry of a shape vector; and a reshape to an empty batch (a 0 is a size, not a copy)."""
    def build(x):
        n = rg.shape(x)[0]
        return [rg.reshape(x, [n, W, 1]),                  # ('dim', ...) entries
                rg.reshape(x, [n * 5, 1]),                 # a computed scalar
                rg.reshape(x, rg.shape(x)),                # a shape vector
                rg.identity(x, name="same")]
    _run(build, batches=(0, 1, 3))
    # a -1 beside run-time sizes (rnngraph refuses it on an empty input, as NumPy)
    _run(lambda x: [rg.reshape(x, [-1, rg.shape(x)[0]]), rg.reshape(x, [rg.shape(x)[0], -1])],
         batches=(1, 3))


def test_one_hot_with_on_and_off_values_and_where_v2():
    def build(x):
        idx = rg.argmax(x, 1)
        cond = np.array([True, False, True, False, True])
        return [rg.one_hot(idx, 4, on_value=5.0, off_value=-1.0),
                rg.one_hot(rg.cast(idx, rg.int32), W, on_value=3, off_value=1, axis=0),
                where_v2(cond, x, -x),
                rg.where(rg.greater(rg.reduce_sum(x, 1), 0.0), x, -x)]
    _run(build)


# --- what stays unmappable -------------------------------------------------------------------
def test_a_gradient_op_still_names_itself():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, W], name="x")
        grad, = rg.gradients(rg.reduce_sum(rg.tile(x, [2, 1]) ** 2), [x])
    with pytest.raises(ExportError, match=r"op 'tile_grad' has no ONNX mapping.*gradient op"):
        export(grad)


@pytest.mark.parametrize("kind", ["no_op", "assign_around_the_model", "identity", "read_value"])
def test_a_model_built_under_control_dependencies_exports(kind):
    """The dependencies order a run (an assign before a read); an inference export has no
    order to keep: it exports the values, and the model computes what the session does.
    Before, every such model failed to export (the dependency looked like a training op, or
    was an input that was not exported)."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 4, 3], name="x")
        count = rg.Variable(0, name="count")
        up = rg.assign_add(count, 1)
        W = rg.get_variable("W", [8, 2])
        deps = [rg.no_op()] if kind == "no_op" else [up]
        if kind in ("no_op", "assign_around_the_model"):
            with rg.control_dependencies(deps):
                _, st = rg.nn.dynamic_rnn(rg.nn.GRUCell(8), x, dtype=rg.float32)
                y = rg.matmul(st, W)
        else:
            _, st = rg.nn.dynamic_rnn(rg.nn.GRUCell(8), x, dtype=rg.float32)
            with rg.control_dependencies(deps):
                y = rg.matmul(st, W.read_value()) if kind == "read_value" else \
                    rg.identity(rg.matmul(st, W))
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    sess.run(init)
    xv = np.random.RandomState(0).randn(2, 4, 3).astype(np.float32)
    model = rg.io.to_onnx({"y": y}, None, session=sess)
    got = ort.InferenceSession(model.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": xv})[0]
    np.testing.assert_allclose(got, sess.run(y, {x: xv}), rtol=1e-5, atol=1e-6)
