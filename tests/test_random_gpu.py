"""The CuPy kernel of the random ops draws the words NumPy draws: bits and uniforms identical,
normals to a few ulps (the device's log/cos/sin), dropout masks identical. Needs a CUDA device
(marked `gpu`; tests/conftest.py skips these without one)."""
import numpy as np
import pytest

import rnngraph as rg

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [rg.float32, rg.float64])
def test_gpu_draws_the_cpu_numbers(dtype):
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(3)
        u = rg.random_uniform([1000, 37], dtype=dtype, seed=1)
        n = rg.random_normal([999], dtype=dtype, seed=2, mean=1.0, stddev=2.0)
        t = rg.truncated_normal([500], dtype=dtype, seed=3)
    cpu, gpu = rg.Session(g), rg.Session(g, device="gpu")
    for _ in range(2):
        cu, cn, ct = cpu.run([u, n, t])
        gu, gn, gt = gpu.run([u, n, t])
        np.testing.assert_array_equal(cu, gu)
        tol = 1e-5 if dtype == rg.float32 else 1e-12
        np.testing.assert_allclose(cn, gn, rtol=tol, atol=tol)
        np.testing.assert_allclose(ct, gt, rtol=tol, atol=tol)


def test_gpu_dropout_masks_and_dynamic_rnn_match_the_cpu():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [8, 6, 4])
        cell = rg.nn.rnn_cell.DropoutWrapper(rg.nn.LSTMCell(16, dtype=rg.float64), 0.7, 0.8,
                                             0.9, seed=5)
        out, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
        grads = rg.gradients(rg.reduce_sum(out * out), rg.trainable_variables())
    fd = {X: np.random.default_rng(0).normal(size=(8, 6, 4))}
    a = rg.Session(g).run([out] + grads, fd)
    b = rg.Session(g, device="gpu").run([out] + grads, fd)
    np.testing.assert_array_equal(a[0] == 0, b[0] == 0)      # the same units dropped
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)
