"""TF1 porting gaps from a fresh-eyes review: tf.reshape with tensors in the target shape (the
"flatten, dense, reshape back to [B, T, V]" idiom), tf.argmax's default axis 0 and its
dimension=/output_type=, tf.argmin, and the reductions reduce_min/prod/any/all/logsumexp with
TF1's deprecated keep_dims=/reduction_indices= on every reduce_*. Forward against NumPy,
gradients against finite differences, static shapes with None, and errors naming the user's
line."""
import importlib.util
import os

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from gradcheck import check_gradients

HERE = os.path.basename(__file__)
RNG = np.random.RandomState(0)


def _run(fetches, feed=None):
    return rg.Session().run(fetches, feed)


@pytest.fixture(autouse=True)
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


# --- tf.reshape with tensors in the target shape ------------------------------------------------
def test_reshape_target_with_runtime_sizes_runs_and_keeps_what_is_known():
    x = rg.placeholder(rg.float32, [None, 5, 4], name="x")
    y = rg.placeholder(rg.float32, [None, None], name="y")
    n = rg.placeholder(rg.int32, [], name="n")
    sv = rg.placeholder(rg.int32, [3], name="sv")
    xn = RNG.randn(2, 5, 4).astype(np.float32)
    yn = RNG.randn(4, 10).astype(np.float32)
    cases = [  # (result, static shape, NumPy)
        (rg.reshape(x, [rg.shape(x)[0], -1]), (None, 20), xn.reshape(2, -1)),
        (rg.reshape(x, [rg.dim(x, 0), 5, 2, 2]), (None, 5, 2, 2), xn.reshape(2, 5, 2, 2)),
        (rg.reshape(x, rg.stack([rg.shape(x)[0], rg.shape(x)[1], 2, -1])), (None, 5, 2, 2),
         xn.reshape(2, 5, 2, 2)),
        (rg.reshape(x, rg.shape(y)), (None, None), xn.reshape(4, 10)),
        (rg.reshape(y, [rg.shape(x)[0], -1]), (None, None), yn.reshape(2, -1)),
        (rg.reshape(x, [rg.shape(x)[0] * rg.shape(x)[1], 4]), (None, 4), xn.reshape(10, 4)),
        (rg.reshape(x, [n, -1]), (None, None), xn.reshape(4, -1)),
        (rg.reshape(x, sv), (None, None, None), xn.reshape(8, 5, 1)),
        (rg.reshape(x, [rg.constant(10), rg.shape(x)[-1], -1]), (10, 4, None),
         xn.reshape(10, 4, 1)),
    ]
    outs = _run([c[0] for c in cases], {x: xn, y: yn, n: 4, sv: [8, 5, 1]})
    for (v, static, want), got in zip(cases, outs):
        assert v.shape == static, (v, static)
        np.testing.assert_array_equal(got, want)


def test_reshape_by_a_static_size_stays_a_static_reshape():
    x = rg.placeholder(rg.float32, [3, None, 4])
    v = rg.reshape(x, [rg.shape(x)[0], -1, rg.shape(x)[2]])
    assert v.op.name == "reshape" and v.shape == (3, None, 4)
    w = rg.reshape(x, rg.shape(rg.zeros([6, 2])))
    assert w.op.name == "reshape" and w.shape == (6, 2)


def test_flatten_dense_reshape_back_idiom_matches_numpy_and_finite_differences():
    T, H, V = 3, 4, 5

    def build(x, w):
        flat = rg.reshape(x, [-1, H])                       # [B*T, H]
        logits = rg.matmul(flat, w)                         # [B*T, V]
        out = rg.reshape(logits, [rg.shape(x)[0], rg.shape(x)[1], V])
        assert out.shape == (None, None, V)
        return out

    xn, wn = RNG.randn(2, T, H), RNG.randn(H, V)
    check_gradients(build, {"x": xn, "w": wn}, shapes={"x": (None, None, H)})
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float64, [None, None, H])
        got = _run(build(x, rg.constant(wn)), {x: xn})
    np.testing.assert_allclose(got, (xn.reshape(-1, H) @ wn).reshape(2, T, V))


@pytest.mark.parametrize("form", ["list", "stack", "shape_of", "vector"])
def test_reshape_gradient_by_finite_differences_with_unknown_dims(form):
    def build(x, y):
        if form == "list":
            t = [rg.shape(x)[0], -1]
        elif form == "stack":
            t = rg.stack([rg.shape(x)[1], rg.shape(x)[0] * 3])
        elif form == "shape_of":
            t = rg.shape(y)
        else:   # an opaque vector: read entry by entry at run time
            t = rg.cast(rg.shape(y), rg.int64) * rg.constant(np.array([1, 1], np.int64))
        return rg.reshape(x, t) * y
    xn, yn = RNG.randn(2, 3, 2), RNG.randn(2, 6)
    if form == "stack":
        yn = RNG.randn(3, 6)
        xn = RNG.randn(2, 3, 3)
    check_gradients(build, {"x": xn, "y": yn}, shapes={"x": (None, None, None), "y": (None, None)})


def test_reshape_with_runtime_sizes_inside_a_scan_and_a_while_loop():
    x = rg.placeholder(rg.float64, [None, None, 6], name="x")      # [T, B, 6]
    w = rg.placeholder(rg.float64, [3, 3], name="w")
    xn, wn = RNG.randn(4, 2, 6), RNG.randn(3, 3)

    def stepper(w):
        def step(acc, xt):        # each step: [B, 6] -> [B, 2, 3] @ w -> [B, 6]
            r = rg.reshape(xt, [rg.shape(xt)[0], 2, -1])
            assert r.shape == (None, 2, 3)
            return acc + rg.reshape(rg.matmul(r, w), rg.shape(xt))
        return step

    acc0 = rg.zeros([rg.dim(x, 1), 6], rg.float64)
    ys = rg.scan(stepper(w), x, initializer=acc0)
    want, acc = [], np.zeros((2, 6))
    for t in range(4):
        acc = acc + (xn[t].reshape(2, 2, 3) @ wn).reshape(2, 6)
        want.append(acc)
    np.testing.assert_allclose(_run(ys, {x: xn, w: wn}), np.stack(want))

    # a while_loop whose body reshapes by the size of an outer value
    def body(i, h):
        return i + 1, rg.tanh(rg.reshape(rg.matmul(rg.reshape(h, [-1, 3]), w),
                                         [rg.shape(x)[1], -1]))
    _, hN = rg.while_loop(lambda i, h: i < 3, body, [rg.constant(0), x[0]])
    h = xn[0]
    for _ in range(3):
        h = np.tanh((h.reshape(-1, 3) @ wn).reshape(2, -1))
    np.testing.assert_allclose(_run(hN, {x: xn, w: wn}), h)

    def loss(x, w):
        return rg.scan(stepper(w), x, initializer=rg.zeros([rg.dim(x, 1), 6], rg.float64))
    check_gradients(loss, {"x": xn, "w": wn}, shapes={"x": (None, None, 6)})


def _idiom_model(target):
    B, T, I, H, V = 4, 6, 3, 8, 5
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, I], name="X")
        Y = rg.placeholder(rg.int32, [None, None], name="Y")
        out, _ = rg.nn.dynamic_rnn(rg.nn.rnn_cell.GRUCell(H), X, dtype=rg.float32)
        logits = rg.layers.dense(rg.reshape(out, [-1, H]), V)
        logits = rg.reshape(logits, target(X, V))
        loss = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(labels=Y,
                                                                             logits=logits))
        fetches = [loss] + rg.gradients(loss, rg.trainable_variables())
        init = rg.global_variables_initializer()
    rs = np.random.RandomState(1)
    fd = {X: rs.randn(B, T, I).astype(np.float32), Y: rs.randint(0, V, (B, T)).astype(np.int32)}
    return g, fetches, init, fd


def _session(g, init, budget=None):
    s = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    s.run(init)
    return s


@pytest.mark.parametrize("target", [
    lambda X, V: [rg.shape(X)[0], rg.shape(X)[1], V],
    lambda X, V: rg.stack([rg.shape(X)[0], rg.shape(X)[1], V]),
    lambda X, V: [rg.shape(X)[0], -1, V],
], ids=["list", "stack", "minus_one"])
def test_the_memory_planner_sizes_a_reshape_by_the_shapes_of_fed_values(target):
    g, fetches, init, fd = _idiom_model(target)
    want = _session(g, init).run(fetches, fd)
    peak = _session(g, init).memory_plan(fetches, fd).predicted_peak
    floor = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(
        fetches, fd).min_budget
    for budget in (peak, floor):
        s = _session(g, init, budget)
        plan = s.memory_plan(fetches, fd)
        assert plan.fits and not plan.unknown, str(plan)
        got = s.run(fetches, fd)
        assert s.last_run_report.peak_bytes <= plan.predicted_peak <= budget
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_reshape_by_a_computed_size_cannot_be_checked_against_a_budget():
    g, fetches, init, fd = _idiom_model(lambda X, V: [rg.shape(X)[0] * 1, -1, V])
    plan = _session(g, init, 10**6).memory_plan(fetches, fd)
    assert not plan.fits and "CANNOT BE CHECKED" in str(plan)
    assert any("reshape_dynamic" in u and HERE in u for u in plan.unknown)


def test_reshape_with_runtime_sizes_saves_and_loads(tmp_path):
    x = rg.placeholder(rg.float32, [None, 5, 4], name="x")
    y = rg.placeholder(rg.float32, [None, None], name="y")
    out = rg.reshape(x, [rg.shape(y)[0], -1]) + 1.0
    out2 = rg.reshape(x, rg.shape(y)) * 2.0
    g = rg.get_default_graph()
    path = rg.save(tmp_path / "m.npz", graph=g, fetches={"a": out, "b": out2})
    saved = rg.io.read(path)
    xn, yn = RNG.randn(2, 5, 4).astype(np.float32), np.zeros((4, 10), np.float32)
    s2 = saved.session()
    feed = {saved.graph.get_value("x:0"): xn, saved.graph.get_value("y:0"): yn}
    a, b = s2.run([saved.fetches["a"], saved.fetches["b"]], feed)
    np.testing.assert_array_equal(a, xn.reshape(4, -1) + 1)
    np.testing.assert_array_equal(b, xn.reshape(4, 10) * 2)
    assert saved.fetches["a"].shape == (None, None)


def test_onnx_export_of_a_runtime_reshape():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rnngraph.io.onnx import compare, export
    x = rg.placeholder(rg.float32, [None, 5, 4], name="x")
    out = rg.reshape(x, [rg.shape(x)[0] * 2, -1])
    ex = export(out)
    sess = rg.Session(rg.get_default_graph())
    for b in (1, 3):
        assert compare(ex, sess, {x: RNG.randn(b, 5, 4).astype(np.float32)}) == {out.node.name: 0.0}


def test_bad_target_shapes_are_refused_naming_the_line():
    x = rg.placeholder(rg.float32, [None, 5, 4])
    n = rg.placeholder(rg.int32, [])
    with pytest.raises(TypeError, match=rf"reshape at {HERE}:\d+.*1\.5"):
        rg.reshape(x, [1.5, -1])
    with pytest.raises(TypeError, match=rf"reshape at {HERE}:\d+.*scalar int32/int64"):
        rg.reshape(x, [rg.placeholder(rg.float32, []), -1])
    with pytest.raises(TypeError, match=rf"reshape at {HERE}:\d+.*1-D int32/int64"):
        rg.reshape(x, rg.placeholder(rg.int32, [2, 2]))
    with pytest.raises(rg.ShapeError, match=rf"reshape at {HERE}:\d+.*must be known"):
        rg.reshape(x, rg.placeholder(rg.int32, [None]))
    with pytest.raises(rg.ShapeError, match=rf"at {HERE}:\d+.*more than one -1"):
        rg.reshape(x, [n, -1, -1])
    # x's own unknown batch cancels: 5*4 elements per row do not make 3
    with pytest.raises(rg.ShapeError, match=rf"at {HERE}:\d+.*cannot reshape"):
        rg.reshape(x, [rg.shape(x)[0], 3])
    with pytest.raises(rg.ShapeError, match=rf"at {HERE}:\d+.*cannot reshape"):
        rg.reshape(x, [rg.shape(x)[0], -1, 3])


def test_a_bad_runtime_target_is_an_invalid_argument_error_naming_the_line():
    x = rg.placeholder(rg.float32, [None, None])
    n = rg.placeholder(rg.int32, [])
    y = rg.reshape(x, [n, 3])
    with pytest.raises(rg.InvalidArgumentError, match=rf"built at {HERE}:\d+.*8 values.*\[5, 3\]"):
        _run(y, {x: np.ones((2, 4), np.float32), n: 5})
    with pytest.raises(rg.InvalidArgumentError, match=r"\[-2, 3\]"):
        _run(y, {x: np.ones((2, 3), np.float32), n: -2})


# --- argmax / argmin ------------------------------------------------------------------------
def test_argmax_without_axis_reduces_axis_0_as_tf1():
    xn = np.array([[0.0, 5.0, 1.0], [3.0, 0.0, 2.0]], np.float32)
    x = rg.placeholder(rg.float32, [None, 3])
    outs = [rg.argmax(x), rg.argmin(x), rg.argmax(x, dimension=1), rg.argmin(x, 1),
            rg.argmax(x, axis=-1, output_type=rg.int32), rg.argmin(x, output_type=np.int32)]
    assert [o.shape for o in outs] == [(3,), (3,), (None,), (None,), (None,), (3,)]
    assert [o.dtype for o in outs] == [np.int64] * 4 + [np.int32] * 2
    got = _run(outs, {x: xn})
    want = [xn.argmax(0), xn.argmin(0), xn.argmax(1), xn.argmin(1), xn.argmax(1), xn.argmin(0)]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert got[4].dtype == np.int32 and got[0].dtype == np.int64


def test_argmax_argument_errors_name_the_line():
    x = rg.placeholder(rg.float32, [2, 3])
    with pytest.raises(ValueError, match=rf"argmax at {HERE}:\d+.*both 'axis' and 'dimension'"):
        rg.argmax(x, 0, dimension=1)
    with pytest.raises(TypeError, match=rf"argmin at {HERE}:\d+.*output_type"):
        rg.argmin(x, output_type=rg.float32)
    with pytest.raises(rg.ShapeError, match=rf"argmin .*at {HERE}:\d+.*out of range"):
        rg.argmin(x, 2)


# --- reductions --------------------------------------------------------------------------------
def _np_logsumexp(a, axis=None, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), [2, 0]])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(axis, keepdims):
    xn = RNG.randn(3, 4, 2)
    bn = xn > 0.3
    x = rg.placeholder(rg.float64, [None, 4, None])
    b = rg.placeholder(rg.bool_, [None, 4, None])
    ax = tuple(axis) if isinstance(axis, list) else axis
    outs = {"min": rg.reduce_min(x, axis, keepdims), "prod": rg.reduce_prod(x, axis, keepdims),
            "lse": rg.reduce_logsumexp(x, axis, keepdims), "any": rg.reduce_any(b, axis, keepdims),
            "all": rg.reduce_all(b, axis, keepdims)}
    want = {"min": np.min(xn, ax, keepdims=keepdims), "prod": np.prod(xn, ax, keepdims=keepdims),
            "lse": _np_logsumexp(xn, ax, keepdims), "any": np.any(bn, ax, keepdims=keepdims),
            "all": np.all(bn, ax, keepdims=keepdims)}
    got = _run(outs, {x: xn, b: bn})
    for k in outs:
        assert got[k].shape == want[k].shape, k
        assert outs[k].type.accepts(got[k].shape), k
        assert got[k].dtype == (np.bool_ if k in ("any", "all") else np.float64), k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, err_msg=k)


def test_reduction_static_shapes_keep_none():
    x = rg.placeholder(rg.float32, [None, 4, None])
    assert rg.reduce_min(x, 1).shape == (None, None)
    assert rg.reduce_prod(x, -1, keepdims=True).shape == (None, 4, 1)
    assert rg.reduce_logsumexp(x, [0, 2]).shape == (4,)
    assert rg.reduce_any(x > 0, 0).shape == (4, None)
    assert rg.reduce_all(x > 0).shape == ()


def test_deprecated_keep_dims_and_reduction_indices_on_every_reduction():
    xn = RNG.rand(2, 3) + 0.5
    x = rg.constant(xn)
    b = rg.constant(xn > 1.0)
    fns = {rg.reduce_sum: np.sum, rg.reduce_mean: np.mean, rg.reduce_max: np.max,
           rg.reduce_min: np.min, rg.reduce_prod: np.prod, rg.reduce_logsumexp: _np_logsumexp}
    for fn, ref in fns.items():
        outs = [fn(x, reduction_indices=1), fn(x, keep_dims=True), fn(x, [1], keep_dims=True),
                fn(x, reduction_indices=[0], keepdims=True)]
        want = [ref(xn, axis=1), ref(xn, axis=None, keepdims=True),
                ref(xn, axis=1, keepdims=True), ref(xn, axis=0, keepdims=True)]
        for o, w, g in zip(outs, want, _run(outs)):
            assert g.shape == np.shape(w) and o.shape == np.shape(w), fn.__name__
            np.testing.assert_allclose(g, w, rtol=1e-12, err_msg=fn.__name__)
    for fn, ref in {rg.reduce_any: np.any, rg.reduce_all: np.all}.items():
        g = _run(fn(b, reduction_indices=0, keep_dims=True))
        np.testing.assert_array_equal(g, ref(xn > 1.0, axis=0, keepdims=True))
    for fn in list(fns) + [rg.reduce_any, rg.reduce_all]:
        arg = b if fn in (rg.reduce_any, rg.reduce_all) else x
        with pytest.raises(ValueError, match=rf"at {HERE}:\d+.*both 'axis' and "
                                             "'reduction_indices'"):
            fn(arg, 0, reduction_indices=0)
        with pytest.raises(ValueError, match=rf"at {HERE}:\d+.*both 'keepdims' and 'keep_dims'"):
            fn(arg, keepdims=True, keep_dims=True)


def test_reduction_input_errors_name_the_line():
    x = rg.placeholder(rg.float32, [2, 3])
    with pytest.raises(TypeError, match=rf"reduce_any .*at {HERE}:\d+.*bool"):
        rg.reduce_any(x)
    with pytest.raises(TypeError, match=rf"reduce_min .*at {HERE}:\d+.*bool"):
        rg.reduce_min(x > 0)
    with pytest.raises(TypeError, match=rf"reduce_logsumexp .*at {HERE}:\d+.*floating"):
        rg.reduce_logsumexp(rg.cast(x, rg.int32))
    with pytest.raises(rg.ShapeError, match=rf"reduce_prod .*at {HERE}:\d+.*out of range"):
        rg.reduce_prod(x, 2)
    with pytest.raises(TypeError, match=rf"reduce_min at {HERE}:\d+.*axis"):
        rg.reduce_min(x, 1.0)


def test_reduce_logsumexp_is_stable_for_large_and_infinite_inputs():
    xn = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 0.0]],
                  np.float32)
    got = _run(rg.reduce_logsumexp(rg.constant(xn), axis=1))
    np.testing.assert_allclose(got, [1000 + np.log(2), -np.inf, np.log(2)], rtol=1e-6)
    assert got.dtype == np.float32
    big = _run(rg.reduce_logsumexp(rg.constant(np.array([np.inf, 1.0]))))
    assert big == np.inf


@pytest.mark.parametrize("axis", [None, 1, (0, 2)])
def test_reduction_gradients_by_finite_differences(axis):
    xn = RNG.randn(2, 3, 2) + 0.1   # distinct entries: no ties
    shapes = {"x": (None, 3, None)}
    check_gradients(lambda x: rg.reduce_min(x, axis), {"x": xn}, shapes=shapes)
    check_gradients(lambda x: rg.reduce_logsumexp(x, axis, keepdims=True), {"x": xn},
                    shapes=shapes)
    check_gradients(lambda x: rg.reduce_prod(x, axis), {"x": xn}, shapes=shapes)


def test_reduce_prod_gradient_with_zeros():
    xn = np.array([[2.0, 0.0, 3.0, 4.0], [0.0, 5.0, 0.0, 1.5], [1.0, 2.0, -1.0, 0.5]])
    check_gradients(lambda x: rg.reduce_prod(x, 1), {"x": xn})
    check_gradients(lambda x: rg.reduce_prod(x, 0, keepdims=True), {"x": xn})
    check_gradients(lambda x: rg.reduce_prod(x), {"x": xn[2:]})
    x = rg.constant(xn)
    (g,) = rg.gradients(rg.reduce_sum(rg.reduce_prod(x, 1)), [x])
    np.testing.assert_array_equal(_run(g), [[0, 24, 0, 0], [0, 0, 0, 0], [-1, -0.5, 1, -2]])


def test_reduce_min_and_max_split_the_gradient_among_ties():
    xn = np.array([[1.0, 1.0, 3.0, 1.0], [2.0, 5.0, 5.0, 0.0]])
    x = rg.constant(xn)
    gmin, gmax = (rg.gradients(rg.reduce_sum(f(x, 1) * rg.constant(np.array([1.0, 6.0]))), [x])[0]
                  for f in (rg.reduce_min, rg.reduce_max))
    a, b = _run([gmin, gmax])
    np.testing.assert_allclose(a, [[1 / 3, 1 / 3, 0, 1 / 3], [0, 0, 0, 6]])
    np.testing.assert_allclose(b, [[0, 0, 1, 0], [0, 3, 3, 0]])


def test_reduce_any_and_all_have_no_gradient_path():
    x = rg.placeholder(rg.float32, [3])
    y = rg.cast(rg.reduce_any(x > 0), rg.float32) * x
    (g,) = rg.gradients(rg.reduce_sum(y), [x])
    np.testing.assert_array_equal(_run(g, {x: [1.0, -1.0, 2.0]}), [1.0, 1.0, 1.0])


def test_new_reductions_save_and_load(tmp_path):
    x = rg.placeholder(rg.float64, [None, 3], name="x")
    outs = {"min": rg.reduce_min(x, 1), "prod": rg.reduce_prod(x, keepdims=True),
            "lse": rg.reduce_logsumexp(x, [0]), "any": rg.reduce_any(x > 0, 0),
            "all": rg.reduce_all(x > -1), "argmin": rg.argmin(x), "argmax": rg.argmax(x, 1)}
    loss = rg.reduce_sum(outs["prod"]) + rg.reduce_sum(outs["lse"]) + rg.reduce_sum(outs["min"])
    (outs["grad"],) = rg.gradients(loss, [x])
    xn = RNG.randn(4, 3)
    want = _run(outs, {x: xn})
    path = rg.save(tmp_path / "r.npz", graph=rg.get_default_graph(), fetches=outs)
    saved = rg.io.read(path)
    got = saved.session().run(saved.fetches, {saved.graph.get_value("x:0"): xn})
    for k in outs:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_onnx_export_of_a_new_reduction_names_it_when_it_has_no_mapping():
    pytest.importorskip("onnx")
    from rnngraph.io.onnx.ops import TABLE   # (the ops export maps)
    x = rg.placeholder(rg.float32, [None, 3], name="x")
    for fn in (rg.reduce_min, rg.reduce_prod, rg.reduce_logsumexp):
        out = fn(x, 1)
        if out.op.name in TABLE:
            continue
        with pytest.raises(rg.ExportError, match=out.op.name):
            rg.io.to_onnx(out, None)


# --- tile, pad, slice, bias_add, xw_plus_b, squeeze_dims=, one_hot values, gather(axis=) -------
def test_tile_pad_slice_match_numpy_with_unknown_dims():
    xn = RNG.randn(3, 2, 4)
    x = rg.placeholder(rg.float64, [None, 2, None])
    outs = {"tile": rg.tile(x, [2, 1, 3]), "tile0": rg.tile(x, np.array([1, 0, 1])),
            "pad": rg.pad(x, [[1, 2], [0, 1], [2, 0]], constant_values=-1.5),
            "reflect": rg.pad(x, [[2, 1], [1, 1], [0, 3]], "REFLECT"),
            "symmetric": rg.pad(x, [[3, 0], [2, 2], [4, 1]], mode="symmetric"),
            "slice": rg.slice(x, [1, 0, 1], [-1, 2, 2]),
            "slice0": rg.slice(x, [0, 1, 0], [2, 1, -1])}
    want = {"tile": np.tile(xn, [2, 1, 3]), "tile0": np.tile(xn, [1, 0, 1]),
            "pad": np.pad(xn, [[1, 2], [0, 1], [2, 0]], constant_values=-1.5),
            "reflect": np.pad(xn, [[2, 1], [1, 1], [0, 3]], "reflect"),
            "symmetric": np.pad(xn, [[3, 0], [2, 2], [4, 1]], "symmetric"),
            "slice": xn[1:, 0:2, 1:3], "slice0": xn[0:2, 1:2, 0:]}
    statics = {"tile": (None, 2, None), "tile0": (None, 0, None), "pad": (None, 3, None),
               "reflect": (None, 4, None), "symmetric": (None, 6, None),
               "slice": (None, 2, 2), "slice0": (2, 1, None)}
    got = _run(outs, {x: xn})
    for k in outs:
        assert outs[k].shape == statics[k], k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_reflect_and_symmetric_pad_gradients_by_finite_differences():
    for mode in ("REFLECT", "SYMMETRIC"):
        check_gradients(lambda x, m=mode: rg.pad(x, [[2, 1], [0, 2]], m), {"x": RNG.randn(3, 3)},
                        shapes={"x": (None, None)})


def test_tile_pad_slice_errors_name_the_line():
    x = rg.placeholder(rg.float32, [3, None])
    with pytest.raises(rg.ShapeError, match=rf"tile .*at {HERE}:\d+.*one entry per axis"):
        rg.tile(x, [2])
    with pytest.raises(TypeError, match=rf"tile at {HERE}:\d+.*known when the graph is built"):
        rg.tile(x, rg.shape(x))
    with pytest.raises(ValueError, match=rf"pad at {HERE}:\d+.*CONSTANT, REFLECT, SYMMETRIC"):
        rg.pad(x, [[1, 1], [0, 0]], "EDGE")
    with pytest.raises(rg.ShapeError, match=rf"pad .*at {HERE}:\d+.*at most 2"):
        rg.pad(x, [[3, 0], [0, 0]], "REFLECT")
    with pytest.raises(rg.ShapeError, match=rf"pad .*at {HERE}:\d+.*>= 0"):
        rg.pad(x, [[-1, 0], [0, 0]])
    with pytest.raises(rg.ShapeError, match=rf"slice .*at {HERE}:\d+.*axis 0.*not inside"):
        rg.slice(x, [2, 0], [2, -1])
    with pytest.raises(rg.ShapeError, match=rf"slice .*at {HERE}:\d+.*one entry per axis"):
        rg.slice(x, [0], [1])
    y = rg.pad(x, [[0, 0], [3, 0]], "REFLECT")   # the unknown dim is checked when it runs
    with pytest.raises(rg.InvalidArgumentError, match=rf"built at {HERE}:\d+.*at most 1"):
        _run(y, {x: np.ones((3, 2), np.float32)})
    z = rg.slice(x, [0, 1], [2, 3])   # a block outside the fed input: no shorter result
    assert z.shape == (2, 3)
    with pytest.raises(rg.InvalidArgumentError, match=rf"built at {HERE}:\d+.*not inside size 2"):
        _run(z, {x: np.ones((3, 2), np.float32)})
    np.testing.assert_array_equal(_run(z, {x: np.arange(12.0).reshape(3, 4)}),
                                  np.arange(12.0).reshape(3, 4)[:2, 1:])


def test_bias_add_and_xw_plus_b():
    xn, wn, bn = RNG.randn(4, 3), RNG.randn(3, 5), RNG.randn(5)
    x = rg.placeholder(rg.float64, [None, 3])
    v = rg.placeholder(rg.float64, [None, 5, 2, 2])
    vn = RNG.randn(2, 5, 2, 2)
    outs = [rg.nn.xw_plus_b(x, wn, bn), rg.nn.bias_add(rg.matmul(x, wn), bn),
            rg.nn.bias_add(v, bn, data_format="NCHW"),
            rg.nn.bias_add(vn[..., :1, :1].reshape(2, 1, 5), bn)]
    got = _run(outs, {x: xn, v: vn})
    np.testing.assert_allclose(got[0], xn @ wn + bn)
    np.testing.assert_allclose(got[1], xn @ wn + bn)
    np.testing.assert_allclose(got[2], vn + bn[:, None, None])
    np.testing.assert_allclose(got[3], vn[..., :1, :1].reshape(2, 1, 5) + bn)
    assert outs[0].shape == (None, 5) and outs[2].shape == (None, 5, 2, 2)
    with pytest.raises(rg.ShapeError, match=rf"bias_add at {HERE}:\d+.*size 4.*size 5"):
        rg.nn.bias_add(rg.matmul(x, wn), np.zeros(4))
    with pytest.raises(rg.ShapeError, match=rf"bias_add at {HERE}:\d+.*1-D"):
        rg.nn.bias_add(x, np.zeros((1, 3)))


def test_squeeze_dims_one_hot_values_and_gather_axis():
    x = rg.placeholder(rg.float32, [None, 1, 3, 1])
    xn = RNG.randn(2, 1, 3, 1).astype(np.float32)
    sq = rg.squeeze(x, squeeze_dims=[1])
    assert sq.shape == (None, 3, 1)
    np.testing.assert_array_equal(_run(sq, {x: xn}), xn[:, 0])
    with pytest.raises(ValueError, match=rf"squeeze at {HERE}:\d+.*both"):
        rg.squeeze(x, 1, squeeze_dims=[1])

    ids = rg.constant(np.array([[0, 2], [3, 1]], np.int32))
    ref = np.eye(4)[[[0, 2], [3, 1]]]
    oh = {"plain": rg.one_hot(ids, 4), "vals": rg.one_hot(ids, 4, on_value=5.0, off_value=-1.0),
          "ints": rg.one_hot(ids, 4, 7, 2), "axis0": rg.one_hot(ids, 4, axis=0),
          "axis1": rg.one_hot(ids, 4, 1.0, 0.0, axis=1, dtype=rg.float64),
          "old_order": rg.one_hot(ids, 4, rg.float64)}
    got = _run(oh)
    np.testing.assert_array_equal(got["plain"], ref)
    np.testing.assert_array_equal(got["vals"], np.where(ref == 1, 5.0, -1.0))
    np.testing.assert_array_equal(got["ints"], np.where(ref == 1, 7, 2))
    np.testing.assert_array_equal(got["axis0"], np.moveaxis(ref, -1, 0))
    np.testing.assert_array_equal(got["axis1"], np.moveaxis(ref, -1, 1))
    assert [got[k].dtype for k in oh] == [np.float32, np.float32, np.int32, np.float32,
                                          np.float64, np.float64]
    with pytest.raises(TypeError, match=rf"one_hot at {HERE}:\d+.*different dtypes"):
        rg.one_hot(ids, 4, on_value=1.0, off_value=0)

    p = rg.placeholder(rg.float64, [2, None, 3])
    pn = RNG.randn(2, 4, 3)
    idx = np.array([[3, 0], [1, 1]], np.int32)
    g1, g2, g0 = rg.gather(p, idx, axis=1), rg.gather(p, [2, 0], axis=-1), rg.gather(p, [1])
    assert g1.shape == (2, 2, 2, 3) and g2.shape == (2, None, 2) and g0.shape == (1, None, 3)
    a, b, c = _run([g1, g2, g0], {p: pn})
    np.testing.assert_array_equal(a, np.take(pn, idx, axis=1))
    np.testing.assert_array_equal(b, np.take(pn, [2, 0], axis=2))
    np.testing.assert_array_equal(c, pn[[1]])
    with pytest.raises(rg.ShapeError, match=rf"gather at {HERE}:\d+.*out of range"):
        rg.gather(p, idx, axis=3)


def test_tile_and_pad_save_and_load_and_onnx_names_them(tmp_path):
    x = rg.placeholder(rg.float64, [None, 3], name="x")
    outs = {"t": rg.tile(x, [2, 1]), "p": rg.pad(x, [[1, 0], [2, 1]], "SYMMETRIC")}
    (outs["g"],) = rg.gradients(rg.reduce_sum(outs["t"] * 2.0) + rg.reduce_sum(outs["p"]), [x])
    xn = RNG.randn(2, 3)
    want = _run(outs, {x: xn})
    path = rg.save(tmp_path / "t.npz", graph=rg.get_default_graph(), fetches=outs)
    saved = rg.io.read(path)
    got = saved.session().run(saved.fetches, {saved.graph.get_value("x:0"): xn})
    for k in outs:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    if importlib.util.find_spec("onnx") is not None:
        from rnngraph.io.onnx.ops import TABLE
        for v in (outs["t"], outs["p"]):
            if v.op.name not in TABLE:
                with pytest.raises(rg.ExportError, match=v.op.name):
                    rg.io.to_onnx(v, None)


@pytest.mark.parametrize("axis, shape", [(0, (0, 4)), (None, (0, 4)), (1, (0, 4)), (1, (3, 0))])
def test_reduce_prod_gradient_of_an_empty_input_is_empty(axis, shape):
    """No element to multiply: the gradient is x's (empty) shape, as TF1 gives (the product
    of the others' reshape refused a zero-size input)."""
    x = rg.placeholder(rg.float64, [None, None])
    g = rg.gradients(rg.reduce_sum(rg.reduce_prod(x, axis)), [x])[0]
    got = rg.Session().run(g, {x: np.zeros(shape)})
    assert got.shape == shape
