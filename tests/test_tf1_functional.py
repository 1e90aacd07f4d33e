"""rg.map_fn, rg.foldl and rg.foldr are TF1's (tf.map_fn, tf.foldl, tf.foldr), each one loop node
(no Python unrolling): values against NumPy loops written here, nested structures, gradients
against central differences, a save and reload, and clear errors naming the caller's line."""
from __future__ import annotations

import collections
import os

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.ops.loop import Loop

from gradcheck import check_gradients

ELEMS = np.array([1, 2, 3, 4, 5, 6], np.int64)
HERE = os.path.basename(__file__)


def _run(build, feed=None):
    g = rg.Graph()
    with g.as_default():
        out = build()
    return rg.Session(g).run(out, feed or {})


def _loops(graph) -> list:
    return [n for n in graph.nodes if isinstance(n.op, Loop)]


# --- map_fn --------------------------------------------------------------------------------------
def test_map_fn_tf1_documentation_examples():
    """tf.map_fn's docstring: squares, a product of two elems (dtype=), a pair out (dtype=)."""
    alternates = np.array([-1, 1, -1, 1, -1, 1], np.int64)
    np.testing.assert_array_equal(_run(lambda: rg.map_fn(lambda x: x * x, rg.constant(ELEMS))),
                                  ELEMS ** 2)
    got = _run(lambda: rg.map_fn(lambda x: x[0] * x[1],
                                 (rg.constant(ELEMS), rg.constant(alternates)), dtype=rg.int64))
    np.testing.assert_array_equal(got, ELEMS * alternates)
    pair = _run(lambda: rg.map_fn(lambda x: (x, -x), rg.constant(ELEMS),
                                  dtype=(rg.int64, rg.int64)))
    assert isinstance(pair, tuple) and len(pair) == 2
    np.testing.assert_array_equal(pair[0], ELEMS)
    np.testing.assert_array_equal(pair[1], -ELEMS)


def test_map_fn_is_one_loop_over_a_length_known_at_run_time():
    rs = np.random.RandomState(0)
    w = rs.randn(4, 2)
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [None, 3, 4], name="x")
        y = rg.map_fn(lambda m: rg.tanh(rg.matmul(m, w)), x)
    assert y.shape == (None, 3, 2) and y.dtype == np.float64
    loops = _loops(g)
    assert len(loops) == 1 and loops[0].op.body.results["carried"] == []
    matmuls = [n for n in loops[0].op.body.nodes if n.op.name == "matmul"]
    assert len(matmuls) == 1          # fn traced once, not once per element
    sess = rg.Session(g)
    for n in (5, 1, 0):
        xs = rs.randn(n, 3, 4)
        got = sess.run(y, {x: xs})
        want = np.stack([np.tanh(m @ w) for m in xs]) if n else np.zeros((0, 3, 2))
        assert got.shape == (n, 3, 2)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_map_fn_nested_elems_and_a_namedtuple_output():
    Out = collections.namedtuple("Out", "total scaled")
    rs = np.random.RandomState(1)
    a, b = rs.randn(5, 3).astype(np.float32), np.arange(5, dtype=np.int32)
    got = _run(lambda: rg.map_fn(
        lambda e: Out(rg.reduce_sum(e[0][0]) + e[1], e[0][0] * rg.cast(e[0][1], rg.float32)),
        ((rg.constant(a), rg.constant(b)), rg.constant(2.0 * np.ones(5, np.float32))),
        dtype=Out(rg.float32, rg.float32)))
    assert isinstance(got, Out)
    np.testing.assert_allclose(got.total, a.sum(1) + 2.0, rtol=1e-6)
    np.testing.assert_allclose(got.scaled, a * b[:, None], rtol=1e-6)
    # no dtype: the output has elems' structure and dtypes
    same = _run(lambda: rg.map_fn(lambda e: (e[1], e[0] + 1.0), (rg.constant(a), rg.constant(a))))
    np.testing.assert_allclose(same[0], a)
    np.testing.assert_allclose(same[1], a + 1.0)


def test_map_fn_outputs_that_do_not_depend_on_the_element():
    """fn returning a number, a constant or a captured outer tensor: one row per element."""
    rs = np.random.RandomState(2)
    v = rs.randn(3)
    got = _run(lambda: rg.map_fn(lambda e: (2.5, rg.constant(v)), rg.constant(np.ones(4)),
                                 dtype=(rg.float32, rg.float64)))
    np.testing.assert_array_equal(got[0], np.full(4, 2.5, np.float32))
    assert got[0].dtype == np.float32
    np.testing.assert_array_equal(got[1], np.tile(v, (4, 1)))


def test_fn_may_return_an_outer_tensor_as_it_is():
    """fn returning a tensor built outside it (no op on it inside): the loop reads it each
    step; its gradient is the sum over the steps."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [None], name="x")
        w = rg.placeholder(rg.float64, [2], name="w")
        m = rg.map_fn(lambda e: w, x)
        f = rg.foldl(lambda a, e: w, x, initializer=rg.zeros([2], rg.float64))
        gw, = rg.gradients(rg.reduce_sum(m * np.array([[1.0, 2.0]])) + rg.reduce_sum(f), [w])
    got = rg.Session(g).run([m, f, gw], {x: np.ones(3), w: np.array([5.0, 6.0])})
    np.testing.assert_array_equal(got[0], [[5.0, 6.0]] * 3)
    np.testing.assert_array_equal(got[1], [5.0, 6.0])
    np.testing.assert_array_equal(got[2], [3.0 + 1.0, 6.0 + 1.0])


def test_map_fn_nested_in_map_fn_and_around_a_scan():
    rs = np.random.RandomState(3)
    xs = rs.randn(4, 5, 3)
    got = _run(lambda: rg.map_fn(lambda m: rg.map_fn(lambda r: rg.reduce_sum(r * r), m),
                                 rg.constant(xs)))
    np.testing.assert_allclose(got, (xs ** 2).sum(-1), rtol=1e-12)
    sums = _run(lambda: rg.map_fn(lambda m: rg.scan(lambda a, r: a + r, m), rg.constant(xs)))
    np.testing.assert_allclose(sums, np.cumsum(xs, axis=1), rtol=1e-12)


def test_map_fn_gradients_match_central_differences():
    rs = np.random.RandomState(4)

    def one(x, w):
        return rg.map_fn(lambda r: rg.tanh(rg.matmul(rg.expand_dims(r, 0), w))[0] * r[0], x)

    def pair(x, y):
        out = rg.map_fn(lambda e: (e[0] * rg.sigmoid(e[1]), rg.reduce_sum(e[0] * e[0])),
                        (x, y), dtype=(rg.float64, rg.float64))
        return list(out)
    check_gradients(one, {"x": rs.randn(4, 3), "w": rs.randn(3, 3)})
    check_gradients(pair, {"x": rs.randn(5, 2), "y": rs.randn(5, 2)})
    check_gradients(one, {"x": rs.randn(4, 3), "w": rs.randn(3, 3)},
                    shapes={"x": (None, 3), "w": (3, 3)})


def test_map_fn_back_prop_false_stops_the_gradient():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [3], name="x")
        stopped = rg.map_fn(lambda e: e * e, x, back_prop=False)
        kept = rg.map_fn(lambda e: e * e * e, x)
        grad, = rg.gradients(rg.reduce_sum(stopped) + rg.reduce_sum(kept), [x])
    xv = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(rg.Session(g).run(grad, {x: xv}), 3 * xv ** 2)


# --- foldl / foldr -------------------------------------------------------------------------------
def test_fold_tf1_documentation_examples():
    assert _run(lambda: rg.foldl(lambda a, x: a + x, rg.constant(ELEMS))) == 21
    assert _run(lambda: rg.foldr(lambda a, x: a + x, rg.constant(ELEMS))) == 21
    # order matters: digits read left to right, and right to left
    assert _run(lambda: rg.foldl(lambda a, x: a * 10 + x, rg.constant(ELEMS))) == 123456
    assert _run(lambda: rg.foldr(lambda a, x: a * 10 + x, rg.constant(ELEMS))) == 654321
    assert _run(lambda: rg.foldl(lambda a, x: a * 10 + x, rg.constant(ELEMS),
                                 initializer=np.int64(7))) == 7123456
    assert _run(lambda: rg.foldr(lambda a, x: a * 10 + x, rg.constant(ELEMS),
                                 initializer=np.int64(7))) == 7654321


@pytest.mark.parametrize("fold", ["foldl", "foldr"])
@pytest.mark.parametrize("with_init", [False, True])
def test_fold_matrix_recurrence_against_numpy(fold, with_init):
    rs = np.random.RandomState(5)
    xs = rs.randn(6, 2, 3)
    w = rs.randn(3, 3) * 0.5
    init = rs.randn(2, 3)
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [None, 2, 3], name="x")
        out = getattr(rg, fold)(lambda a, e: rg.tanh(rg.matmul(a, w) + e), x,
                                initializer=rg.constant(init) if with_init else None)
    assert len(_loops(g)) == 1
    order = list(range(6))[::-1] if fold == "foldr" else list(range(6))
    a = init if with_init else xs[order.pop(0)]
    for i in order:
        a = np.tanh(a @ w + xs[i])
    np.testing.assert_allclose(rg.Session(g).run(out, {x: xs}), a, rtol=1e-12)


def test_fold_nested_elems_and_accumulators():
    Acc = collections.namedtuple("Acc", "total product")
    e1, e2 = np.arange(1.0, 6.0), np.linspace(0.5, 1.5, 5)
    got = _run(lambda: rg.foldl(lambda a, x: Acc(a.total + x[0], a.product * x[1]),
                                (rg.constant(e1), rg.constant(e2)),
                                initializer=Acc(rg.constant(0.0, rg.float64),
                                                rg.constant(1.0, rg.float64))))
    assert isinstance(got, Acc)
    np.testing.assert_allclose(got.total, e1.sum())
    np.testing.assert_allclose(got.product, np.prod(e2))
    # no initializer: the last element pair starts foldr, in elems' structure
    pair = _run(lambda: rg.foldr(lambda a, x: (a[0] - x[0], a[1] * 2 + x[1]),
                                 [rg.constant(e1), rg.constant(e2)]))
    assert isinstance(pair, list)
    t, p = e1[-1], e2[-1]
    for i in range(3, -1, -1):
        t, p = t - e1[i], p * 2 + e2[i]
    np.testing.assert_allclose(pair, [t, p])


@pytest.mark.parametrize("fold", ["foldl", "foldr"])
def test_fold_gradients_match_central_differences(fold):
    rs = np.random.RandomState(6)
    f = getattr(rg, fold)

    def with_init(xs, c, w):
        return f(lambda a, x: rg.tanh(a * w + x), xs, initializer=c)

    def without(xs, w):
        return f(lambda a, x: a * rg.sigmoid(x + w), xs)

    def nested(xs, c):
        out = f(lambda a, x: (a[0] * x, a[1] + a[0] * x), xs, initializer=(c, c * 0.0))
        return list(out)
    check_gradients(with_init, {"xs": rs.randn(5, 3), "c": rs.randn(3), "w": rs.randn(3)})
    check_gradients(without, {"xs": rs.randn(5, 3), "w": rs.randn(3)})
    check_gradients(nested, {"xs": rs.randn(4, 2), "c": rs.randn(2)})


def test_fold_back_prop_false_stops_the_gradient():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [4], name="x")
        stopped = rg.foldl(lambda a, e: a * e, x, back_prop=False)
        kept = rg.foldr(lambda a, e: a + e * e, x)
        grad, = rg.gradients(stopped + kept, [x])
    xv = np.array([1.0, 2.0, 3.0, 4.0])
    got = rg.Session(g).run(grad, {x: xv})
    np.testing.assert_allclose(got, [2.0, 4.0, 6.0, 1.0])   # the last element starts foldr: 1


# --- save and reload -----------------------------------------------------------------------------
def test_a_graph_of_map_fn_and_folds_saves_and_reloads(tmp_path):
    rs = np.random.RandomState(7)
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        w = rg.get_variable("w", [3, 3], dtype=rg.float32)
        m = rg.map_fn(lambda r: (rg.tanh(rg.matmul(rg.expand_dims(r, 0), w))[0],
                                 rg.reduce_sum(r)), x, dtype=(rg.float32, rg.float32))
        fl = rg.foldl(lambda a, r: a * 0.5 + r, m[0])
        fr = rg.foldr(lambda a, r: (a[0] + r[1], a[1] * r[0]), (x, m[1]),
                      initializer=(rg.constant(0.0), rg.ones([3])))
        loss = rg.reduce_sum(fl) + fr[0] + rg.reduce_sum(fr[1])
        grads = rg.gradients(loss, [x, w])
    fetches = [m[0], m[1], fl, fr[0], fr[1], grads[0], grads[1]]
    feed = {x: rs.randn(5, 3).astype(np.float32)}
    sess = rg.Session(g, seed=3)
    want = sess.run(fetches, feed)
    path = rg.save(tmp_path / "functional.npz", session=sess)
    saved = rg.io.read(path)
    g2 = saved.graph
    assert rg.format_graph(g2) == rg.format_graph(g)
    rg.verify(g2)
    got = saved.session().run([g2.get_value(v.name) for v in fetches],
                              {g2.get_value(x.name): feed[x]})
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_the_compiler_passes_and_a_memory_plan_keep_the_values():
    """The passes and the memory planner rewrite loops (hoisted products, chunks, offloads):
    map_fn's and foldl's outputs and gradients stay those of the graph run as built."""
    rs = np.random.RandomState(8)
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 8, 16], name="x")
        w = rg.get_variable("w", [16, 16], dtype=rg.float32)
        m = rg.map_fn(lambda r: rg.tanh(rg.matmul(r, w)), x)
        fl = rg.foldl(lambda a, r: a * 0.5 + r, m)
        grads = rg.gradients(rg.reduce_sum(fl * fl), [x, w])
    fetches = [m, fl, grads[0], grads[1]]
    feed = {x: rs.randn(40, 8, 16).astype(np.float32)}
    want = rg.Session(g, seed=3, passes=False, accelerate=False).run(fetches, feed)
    for kw in ({}, {"memory_budget": 60_000, "device": rg.SimulatedDevice()}):
        got = rg.Session(g, seed=3, **kw).run(fetches, feed)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


# --- errors --------------------------------------------------------------------------------------
def _line_of(marker: str) -> str:
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if marker in line and "_line_of" not in line:
                return f"{HERE}:{i}"
    raise AssertionError(marker)


def test_wrong_structure_or_dtype_from_fn_names_the_callers_line():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        with pytest.raises(ValueError) as e:
            rg.map_fn(lambda r: (r, r), x)   # marker: map pair
        assert "not the structure of elems" in str(e.value) and "dtype=" in str(e.value)
        assert _line_of("marker: map pair") in str(e.value)
        with pytest.raises(TypeError) as e:
            rg.map_fn(lambda r: rg.cast(r, rg.int32), x)   # marker: map cast
        assert "fn returned int32 for output 0" in str(e.value)
        assert "float32" in str(e.value) and _line_of("marker: map cast") in str(e.value)
        with pytest.raises(TypeError, match="fn returned float32 for output 1"):
            rg.map_fn(lambda r: (rg.cast(r, rg.int32), r), x, dtype=(rg.int32, rg.int32))
        with pytest.raises(ValueError, match="not the structure of dtype"):
            rg.map_fn(lambda r: r, x, dtype=(rg.float32, rg.float32))
        with pytest.raises(TypeError, match="fn returned None"):
            rg.map_fn(lambda r: None, x)
        with pytest.raises(ValueError) as e:
            rg.foldl(lambda a, r: (a, r), x)   # marker: foldl pair
        assert "foldl: fn returned" in str(e.value) and "dtype=" not in str(e.value)
        assert _line_of("marker: foldl pair") in str(e.value)
        with pytest.raises(TypeError) as e:
            rg.foldr(lambda a, r: rg.cast(a, rg.float64), x, initializer=rg.zeros([3]))  # foldr
        assert "initializer gives float32" in str(e.value)
        assert _line_of("[3]))  # foldr") in str(e.value)


def test_bad_arguments_are_clear_errors():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [4, 3], name="x")
        for f in (rg.map_fn, rg.foldl, rg.foldr):
            with pytest.raises(TypeError, match="fn must be a callable"):
                f("x * 2", x)
            with pytest.raises(ValueError, match="1\\+ dimensional.*not scalars"):
                f(lambda *a: a[-1], rg.constant(3.0))
            with pytest.raises(ValueError, match="one first dimension"):
                f(lambda *a: a[-1], (x, rg.zeros([5])))
            with pytest.raises(ValueError, match="at least one tensor"):
                f(lambda *a: a[-1], ())
            with pytest.raises(TypeError, match="parallel_iterations must be an int"):
                f(lambda *a: a[-1], x, parallel_iterations=2.5)
        with pytest.raises(TypeError, match="not a dtype"):
            rg.map_fn(lambda r: r, x, dtype="no such type")


def test_elems_of_unequal_lengths_at_run_time_raise():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [None], name="x")
        y = rg.placeholder(rg.float64, [None], name="y")
        m = rg.map_fn(lambda e: e[0] * e[1], (x, y), dtype=rg.float64)
    with pytest.raises(rg.ExecutionError, match="has 3 steps, the loop runs 4"):
        rg.Session(g).run(m, {x: np.ones(4), y: np.ones(3)})
