"""Buffers reused across runs: loop stacks and large products (runtime/buffer_pool.py)."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.ops.steps import rows_matmul
from rnngraph.runtime.buffer_pool import POOL_MIN_BYTES, REFCOUNTS_EXACT, BufferPool

reuse_only = pytest.mark.skipif(not REFCOUNTS_EXACT,
                                reason="buffers are not reused on this interpreter")


def _address(a):
    return a.__array_interface__["data"][0]


@reuse_only
def test_pool_reuses_only_buffers_nobody_holds():
    pool = BufferPool(np)
    a = pool.get(0, (4, 3), np.float32, None)
    a[:] = 7.0
    b = pool.get(0, (4, 3), np.float32, 2)   # `a` is held: a fresh one
    assert b is not a and not b.any()
    b[:] = 5.0
    held = b
    del a
    c = pool.get(0, (4, 3), np.float32, 2)   # a was dropped: reused, rows 2.. zeroed
    assert np.all(c[:2] == 7.0) and not c[2:].any()
    assert np.all(held == 5.0)


@reuse_only
def test_pool_counts_a_view_as_a_holder():
    pool = BufferPool(np)
    a = pool.get(0, (4, 3), np.float32)
    address = _address(a)
    view = a[1:]
    del a
    assert _address(pool.get(0, (4, 3), np.float32)) != address   # the view holds it
    del view
    assert _address(pool.get(0, (4, 3), np.float32)) == address


def _big_matmul_graph():
    rows = POOL_MIN_BYTES // (4 * 64) + 8          # a [rows, 64] float32 product is pooled
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 10, 32])
        w = rg.placeholder(rg.float32, [32, 64])
        y = rg.matmul(x, w)                          # [B, 10, 32] @ [32, 64]: one GEMM
    rng = np.random.default_rng(0)
    feeds = [{x: rng.standard_normal((rows // 10 + 1, 10, 32), np.float32),
              w: rng.standard_normal((32, 64), np.float32)} for _ in range(3)]
    return g, y, feeds, x, w


@reuse_only
def test_large_product_reuses_its_buffer_once_the_caller_dropped_it():
    g, y, feeds, x, w = _big_matmul_graph()
    sess = rg.Session(g)
    first = sess.run(y, feeds[0])
    kept = first.copy()
    second = sess.run(y, feeds[1])             # `first` is held: written elsewhere
    np.testing.assert_array_equal(first, kept)
    assert not np.shares_memory(first, second)
    address = _address(first)
    del first
    third = sess.run(y, feeds[2])              # the dropped buffer is refilled
    assert _address(third) == address
    for got, feed in ((second, feeds[1]), (third, feeds[2])):
        np.testing.assert_allclose(got, feed[x] @ feed[w], rtol=1e-5, atol=1e-5)


def test_a_strided_stack_is_multiplied_through_a_reused_copy():
    """A time-major view of batch-major input ([T, B, K] over [B, T, K]) is copied into a
    buffer reused across runs before the product: each run multiplies its own x."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 50, 16])
        w = rg.placeholder(rg.float32, [16, 128])
        y = rg.matmul(rg.transpose(x, [1, 0, 2]), w)   # [50, B, 128]: pooled
    sess = rg.Session(g)
    rng = np.random.default_rng(3)
    for _ in range(3):
        feed = {x: rng.normal(size=(64, 50, 16)).astype(np.float32),
                w: rng.normal(size=(16, 128)).astype(np.float32)}
        got = sess.run(y, feed)
        assert got.nbytes >= POOL_MIN_BYTES
        np.testing.assert_allclose(got, np.einsum("btk,kn->tbn", feed[x], feed[w]),
                                   rtol=1e-4, atol=1e-4)


def test_large_product_under_byte_accounting_is_fresh_and_counted():
    g, y, feeds, x, w = _big_matmul_graph()
    sess = rg.Session(g)
    a = sess.run(y, feeds[0], report=True)
    peak = sess.last_run_report.peak_bytes
    assert peak >= a.nbytes
    b = sess.run(y, feeds[1], report=True)
    assert not np.shares_memory(a, b)
    np.testing.assert_allclose(b, feeds[1][x] @ feeds[1][w], rtol=1e-5, atol=1e-5)


@reuse_only
def test_rows_matmul_zeroes_rows_a_reused_buffer_held_before():
    steps, batch, k, n = 50, 64, 16, 128             # a [3200, 128] float32 product: pooled
    assert steps * batch * n * 4 >= POOL_MIN_BYTES
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [steps, batch, k])
        w = rg.placeholder(rg.float32, [k, n])
        rows = rg.placeholder(rg.int32, [steps])
        y = rows_matmul(x, w, rows)
    sess = rg.Session(g)
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((steps, batch, k), np.float32)
    ws = rng.standard_normal((k, n), np.float32)
    full = np.full(steps, batch, np.int32)
    address = _address(sess.run(y, {x: xs, w: ws, rows: full}).base)
    fewer = np.sort(rng.integers(0, batch + 1, steps))[::-1].astype(np.int32)
    got = sess.run(y, {x: xs, w: ws, rows: fewer})   # same buffer: rows past each count
    assert _address(got) == address                  # must be zero again
    active = (np.arange(batch)[None, :] < fewer[:, None])[..., None]
    np.testing.assert_allclose(got, (xs @ ws) * active, rtol=1e-5, atol=1e-5)


def test_a_pooled_size_product_still_reports_mismatched_inner_dimensions():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float32, [None, None])
        b = rg.placeholder(rg.float32, [None, None])
        y = rg.matmul(a, b)
    big = np.ones((POOL_MIN_BYTES // 16, 8), np.float32)   # 8 x 4 would reshape to 16 rows
    with pytest.raises(rg.errors.ExecutionError, match="matmul"):
        rg.Session(g).run(y, {a: big, b: np.ones((4, 64), np.float32)})


@reuse_only
def test_sorted_rnn_results_and_packed_scratch_are_reused_safely():
    """dynamic_rnn with sequence_length: the unsorted outputs (permute_rows) and the packed rows
    of the weight-gradient products come from pooled buffers; across runs with other lengths
    the results stay those of the unoptimised graph, and a held output is never overwritten."""
    batch, steps, hidden = 64, 40, 128                # outputs [64, 40, 128] float32: pooled
    assert batch * steps * hidden * 4 >= POOL_MIN_BYTES
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, steps, 8])
        seq = rg.placeholder(rg.int32, [None])
        out, _ = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(hidden), x, dtype=rg.float32,
                                   sequence_length=seq)
        grads = rg.gradients(rg.reduce_sum(out * out), [x] + rg.global_variables())
    fast, plain = rg.Session(g, seed=0), rg.Session(g, seed=0, passes=False)
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((batch, steps, 8), np.float32)
    held = None
    for run in range(3):
        lengths = rng.integers(0, steps + 1, batch).astype(np.int32)
        feed = {x: xs, seq: lengths}
        got, got_grads = fast.run([out, grads], feed)
        want, want_grads = plain.run([out, grads], feed)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        for a, b in zip(got_grads, want_grads):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()))
        if held is None:
            held, kept = got, got.copy()
    np.testing.assert_array_equal(held, kept)         # later runs wrote elsewhere
