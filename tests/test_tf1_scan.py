"""rg.scan is TF1's tf.scan (`fn(a, x) -> a`, the stacked accumulators; no initializer: the first
element starts it), so TF1 code runs after renaming tf. to rg.; rg.lax_scan is JAX's form. Values
against NumPy loops written here, gradients against central differences."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import rnngraph as rg

from gradcheck import check_gradients

ELEMS = np.array([1, 2, 3, 4, 5, 6], np.int64)


def _run(build):
    g = rg.Graph()
    with g.as_default():
        out = build()
    return rg.Session(g).run(out)


def test_the_tf1_documentation_examples():
    """tf.scan's docstring: a running sum, forwards and reversed, and Fibonacci numbers."""
    np.testing.assert_array_equal(_run(lambda: rg.scan(lambda a, x: a + x, ELEMS)),
                                  [1, 3, 6, 10, 15, 21])
    np.testing.assert_array_equal(_run(lambda: rg.scan(lambda a, x: a + x, ELEMS, reverse=True)),
                                  [21, 20, 18, 15, 11, 6])
    fib = _run(lambda: rg.scan(lambda a, _: (a[1], a[0] + a[1]), ELEMS,
                               initializer=(np.int64(0), np.int64(1))))
    a, b, want = 0, 1, []
    for _ in ELEMS:
        a, b = b, a + b
        want.append((a, b))
    np.testing.assert_array_equal(np.stack(fib, 1), want)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_init", [False, True])
def test_a_matrix_recurrence_against_numpy(reverse, with_init):
    rs = np.random.RandomState(0)
    xs = rs.randn(7, 3, 4).astype(np.float32)
    w = rs.randn(4, 4).astype(np.float32) * 0.5
    init = rs.randn(3, 4).astype(np.float32)
    got = _run(lambda: rg.scan(lambda a, x: rg.tanh(rg.matmul(a, w) + x), rg.constant(xs),
                               initializer=rg.constant(init) if with_init else None,
                               reverse=reverse))
    order = list(range(7))[::-1] if reverse else list(range(7))
    want = np.zeros_like(xs)
    a = init if with_init else xs[order[0]]
    if not with_init:
        want[order[0]] = a
        order = order[1:]
    for i in order:
        a = np.tanh(a @ w + xs[i])
        want[i] = a
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_nested_elems_and_a_namedtuple_accumulator():
    Acc = collections.namedtuple("Acc", "total product")
    e1, e2 = np.arange(1.0, 6.0), np.linspace(0.5, 1.5, 5)
    got = _run(lambda: rg.scan(lambda a, x: Acc(a.total + x[0], a.product * x[1]),
                               (rg.constant(e1), rg.constant(e2)),
                               initializer=Acc(rg.constant(0.0, rg.float64), rg.constant(1.0, rg.float64))))
    assert isinstance(got, Acc)
    np.testing.assert_allclose(got.total, np.cumsum(e1), rtol=1e-6)
    np.testing.assert_allclose(got.product, np.cumprod(e2), rtol=1e-6)
    pair = _run(lambda: rg.scan(lambda a, x: (a[0] + x[0], a[1] * x[1]),
                                (rg.constant(e1), rg.constant(e2))))   # no initializer
    assert isinstance(pair, tuple)
    np.testing.assert_allclose(pair[0], np.cumsum(e1), rtol=1e-6)
    np.testing.assert_allclose(pair[1], np.cumprod(e2), rtol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_match_central_differences(reverse):
    rs = np.random.RandomState(1)

    def with_init(xs, c, w):
        return rg.scan(lambda a, x: rg.tanh(a * w + x), xs, initializer=c, reverse=reverse)

    def without(xs, w):
        return rg.scan(lambda a, x: a * rg.sigmoid(x + w), xs, reverse=reverse)
    check_gradients(with_init, {"xs": rs.randn(5, 3), "c": rs.randn(3), "w": rs.randn(3)})
    check_gradients(without, {"xs": rs.randn(5, 3), "w": rs.randn(3)})


def test_back_prop_false_stops_the_gradient():
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float64, [4], name="xs")
        ys = rg.scan(lambda a, x: a * x, xs, back_prop=False)
        kept = rg.scan(lambda a, x: a * x, xs)
        grads = rg.gradients(rg.reduce_sum(ys) + rg.reduce_sum(kept), [xs])
    x = np.array([1.0, 2.0, 3.0, 4.0])
    got, = rg.Session(g).run(grads, {xs: x})
    want = [sum(np.prod(x[:k + 1]) / x[i] for k in range(i, 4)) for i in range(4)]
    np.testing.assert_allclose(got, want)   # only the kept scan's


def test_lax_scan_is_jax_form():
    final, ys = _run(lambda: rg.lax_scan(lambda c, x: (c + x, c * x), rg.constant(1.0),
                                         rg.constant(np.arange(1.0, 4.0, dtype=np.float32))))
    assert final == 7.0
    np.testing.assert_array_equal(ys, [1.0, 4.0, 12.0])


def test_bad_arguments_are_clear_errors():
    g = rg.Graph()
    with g.as_default():
        with pytest.raises(TypeError, match="fn must be a callable"):
            rg.scan("a + x", ELEMS)
        with pytest.raises(ValueError, match="elems must have a first dimension"):
            rg.scan(lambda a, x: a + x, rg.constant(3.0))
        with pytest.raises(ValueError, match="fn returned 2 tensors for an accumulator of 1"):
            rg.scan(lambda a, x: (a, x), rg.constant(np.ones(3)))
