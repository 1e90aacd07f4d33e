"""Per-step products between OpenBLAS's one-thread threshold and SPLIT_MAX_MNK run as two column
halves (backends/numpy/kernels.py): the same product, in two calls of whole-vector widths."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.numpy import kernels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(16, 128, 512), (16, 512, 128), (32, 150, 600), (32, 600, 150),
                                   (16, 128, 500), (16, 2000, 64), (3, 5, 7)])
def test_blocks_give_the_product(m, k, n, dtype):
    rng = np.random.default_rng(m * k + n)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    got = kernels.by_columns(a, b)
    assert got.shape == (m, n) and got.dtype == dtype and got.flags.c_contiguous
    exact = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, exact, rtol=tol, atol=tol * np.sqrt(k))


@pytest.mark.parametrize("m,k,n", [(16, 128, 512), (16, 512, 128), (16, 128, 384), (16, 384, 128),
                                   (16, 128, 500), (16, 128, 17)])
def test_two_halves_of_whole_vectors(monkeypatch, m, k, n):
    blocks = []
    real = np.matmul

    def spy(a, b, out=None):
        blocks.append((a.shape[0], a.shape[1], b.shape[1]))
        return real(a, b, out=out)
    monkeypatch.setattr(kernels.np, "matmul", spy)
    a, b = np.ones((m, k), np.float32), np.ones((k, n), np.float32)
    np.testing.assert_array_equal(kernels.by_columns(a, b), np.full((m, n), float(k)))
    widths = [nb for mb, kb, nb in blocks if (mb, kb) == (m, k)]
    assert len(blocks) == 2 and len(widths) == 2 and sum(widths) == n
    assert widths[0] % 16 == 0 and widths[0] >= widths[1]   # (the first in whole vectors)


def test_a_matrix_too_narrow_to_halve_is_one_product(monkeypatch):
    blocks = []
    real = np.matmul
    monkeypatch.setattr(kernels.np, "matmul",
                        lambda a, b, out=None: blocks.append(b.shape) or real(a, b, out=out))
    a, b = np.ones((16, 128), np.float32), np.ones((128, 16), np.float32)
    np.testing.assert_array_equal(kernels.by_columns(a, b), np.full((16, 16), 128.0))
    assert blocks == [(128, 16)]


def test_mismatched_and_integer_operands_take_the_plain_product():
    with pytest.raises(ValueError):
        kernels.by_columns(np.ones((16, 128), np.float32), np.ones((64, 512), np.float32))
    ints = kernels.by_columns(np.ones((16, 128), np.int64), np.ones((128, 512), np.int64))
    assert ints.dtype == np.int64 and (ints == 128).all()


def test_a_loop_of_such_products_equals_the_unblocked_loop(monkeypatch):
    # S3-sized steps: the dynamic LSTM's outputs and gradients, blocked and not
    def run():
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float64, [None, 5, 64])
            out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(128), X, dtype=rg.float64)
            grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
        x = np.random.default_rng(0).standard_normal((16, 5, 64))
        return rg.Session(g, seed=1).run([out, grads], {X: x})
    calls = []
    real = kernels.by_columns
    monkeypatch.setattr(kernels, "by_columns", lambda a, b: calls.append(a.shape) or real(a, b))
    blocked = run()
    assert (16, 128) in calls   # h_{t-1} @ W_h, every step
    monkeypatch.setattr(kernels, "SPLIT_MAX_MNK", 0)
    calls.clear()
    plain = run()
    assert calls == []
    np.testing.assert_allclose(blocked[0], plain[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(blocked[1], plain[1]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)
