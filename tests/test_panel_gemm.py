"""Our packed-weight GEMM (ops/panel_gemm.py) and the pack_weights pass that uses it in loops:
products equal NumPy's on every edge of the blocking (rows past a multiple of 6, columns past
a multiple of 16, tiny and empty sizes, strided rows), one thread and two give the same bits,
and a graph computes the same with the pass on and off."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.numba import panel_gemm


@pytest.fixture(autouse=True)
def _accelerated_from_the_first_run(monkeypatch):
    """This module's subject includes the numba kernels: sessions use them from their first run
    (Session(accelerate="auto") would start each program on NumPy kernels), and loops run the
    packed GEMM, which they do only with the helper thread opted in."""
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)
    monkeypatch.setattr(rg.config, "cpu_helper_thread", True)

needs_kernels = pytest.mark.skipif(not panel_gemm.available(),
                                   reason="needs numba on Linux x86-64 with AVX2/FMA")
F32 = np.float32


def _pair(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)).astype(F32), rng.standard_normal((k, n)).astype(F32)


def _close(got, a, w):
    """Within float32 rounding of the exact product (summing k terms of |a||w|)."""
    exact = a.astype(np.float64) @ w.astype(np.float64)
    bound = 4 * a.shape[1] * np.finfo(F32).eps * (np.abs(a).astype(np.float64) @ np.abs(w)) + 1e-30
    assert got.shape == exact.shape and got.dtype == F32
    assert np.all(np.abs(got - exact) <= bound)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("k", [1, 3, 20])
def test_pack_puts_each_16_columns_in_a_panel_with_zeros_past_n(k, n):
    _, w = _pair(1, k, n)
    panels = panel_gemm.pack(np, w)
    assert panels.shape == (-(-n // 16), k, 16)
    wide = np.zeros((k, panels.shape[0] * 16), F32)
    wide[:, :n] = w
    for p in range(panels.shape[0]):
        np.testing.assert_array_equal(panels[p], wide[:, 16 * p:16 * p + 16])


@needs_kernels
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 64])
@pytest.mark.parametrize("k,n", [(1, 1), (3, 5), (17, 33), (150, 600), (256, 64), (40, 16)])
def test_products_equal_numpy_on_every_blocking_edge(m, k, n):
    a, w = _pair(m, k, n, seed=m * 1000 + k + n)
    _close(panel_gemm.matmul(a, panel_gemm.pack(np, w), n), a, w)


@needs_kernels
@pytest.mark.parametrize("n", [600, 64, 40])
def test_a_rows_product_has_the_same_bits_whatever_rows_share_the_product(n):
    """Rows left below a block of 6 go through wide kernels (1 row: 4 panels at once, 2 rows:
    2) where whole panels allow, else one panel at a time: each output is the same chain of
    FMAs, so a row's result does not depend on how many rows the product has (what a loop
    running only its active rows relies on to match the full batch)."""
    a, w = _pair(64, 150, n, seed=n)
    panels = panel_gemm.pack(np, w)
    whole = panel_gemm.matmul(a, panels, n)
    _close(whole, a, w)
    for m in (1, 2, 3, 7, 8, 13, 14, 33):
        np.testing.assert_array_equal(panel_gemm.matmul(a[:m], panels, n), whole[:m])
        np.testing.assert_array_equal(panel_gemm.matmul(a[m:m + 1], panels, n), whole[m:m + 1])


@needs_kernels
def test_strided_and_transposed_rows_and_out():
    a, w = _pair(9, 30, 21)
    wide = np.zeros((9, 50), F32)
    wide[:, 7:37] = a
    view = wide[:, 7:37]                           # row stride 50: read in place
    panels = panel_gemm.pack(np, w)
    _close(panel_gemm.matmul(view, panels, 21), a, w)
    at = np.asfortranarray(a)                      # column-major: copied first
    _close(panel_gemm.matmul(at, panels, 21), a, w)
    out = np.full((9, 21), np.nan, F32)
    assert panel_gemm.matmul(a, panels, 21, out=out) is out
    _close(out, a, w)


@needs_kernels
def test_empty_sizes():
    a, w = _pair(0, 4, 5)
    assert panel_gemm.matmul(a, panel_gemm.pack(np, w), 5).shape == (0, 5)
    a, w = _pair(3, 0, 5)
    np.testing.assert_array_equal(panel_gemm.matmul(a, panel_gemm.pack(np, w), 5),
                                  np.zeros((3, 5), F32))


@needs_kernels
def test_bad_inputs_are_rejected():
    a, w = _pair(4, 6, 8)
    with pytest.raises(TypeError, match="float32"):
        panel_gemm.matmul(a.astype(np.float64), panel_gemm.pack(np, w), 8)
    with pytest.raises(ValueError, match="does not match"):
        panel_gemm.matmul(a[:, :5], panel_gemm.pack(np, w), 8)
    with pytest.raises(ValueError, match="does not match"):
        panel_gemm.matmul(a, panel_gemm.pack(np, w), 17)


@needs_kernels
@pytest.mark.parametrize("m,k,n", [(64, 256, 1024), (32, 150, 600), (13, 40, 48)])
def test_two_threads_give_the_bits_of_one(m, k, n):
    a, w = _pair(m, k, n)
    panels = panel_gemm.pack(np, w)
    one = panel_gemm.matmul(a, panels, n)
    panel_gemm.loop_begin()
    try:
        both = [panel_gemm.matmul(a, panels, n) for _ in range(50)]
    finally:
        panel_gemm.loop_end()
    for got in both:
        np.testing.assert_array_equal(got, one)
    _close(one, a, w)


@needs_kernels
def test_the_helper_sleeps_outside_loops_and_nests():
    assert panel_gemm.loop_begin()
    helper = panel_gemm._STATE["helper"]
    assert panel_gemm.loop_begin()
    panel_gemm.loop_end()
    assert panel_gemm.spinning() is helper.ctl
    panel_gemm.loop_end()
    assert panel_gemm.spinning() is None and helper.depth == 0 and helper.owner is None
    assert helper.thread.daemon and helper.thread.is_alive()


def _on_another_thread(fn):
    """fn() run on a new Python thread (its result, or its exception raised here)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:   # noqa: BLE001 - re-raised below
            box["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@needs_kernels
def test_a_second_threads_loop_computes_alone_with_the_same_bits():
    a, w = _pair(32, 150, 600)
    panels = panel_gemm.pack(np, w)
    assert panel_gemm.loop_begin()
    try:
        before = panel_gemm.split_counts()
        both = panel_gemm.matmul(a, panels, 600)
        assert panel_gemm.split_counts()["products"] == before["products"] + 1

        def elsewhere():
            took = panel_gemm.loop_begin()   # the helper is this thread's: not its
            return took, panel_gemm.matmul(a, panels, 600), panel_gemm.split_counts()
        took, alone, counts = _on_another_thread(elsewhere)
    finally:
        panel_gemm.loop_end()
    assert not took and counts["products"] == before["products"] + 1
    np.testing.assert_array_equal(alone, both)


@needs_kernels
def test_quiet_blas_leaves_numpy_products_working():
    a, w = _pair(300, 200, 100)
    before = a @ w
    panel_gemm.quiet_blas()
    panel_gemm.quiet_blas()
    np.testing.assert_array_equal(a @ w, before)


# --- the pass -------------------------------------------------------------------------------

CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(7),
    "lstm": lambda: rg.nn.LSTMCell(20),
    "lstm_peephole_proj": lambda: rg.nn.LSTMCell(9, use_peepholes=True, num_proj=5,
                                                 cell_clip=2.0),
    "gru": lambda: rg.nn.GRUCell(17),
    "multi": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(8), rg.nn.GRUCell(6)]),
}
B, T, I = 7, 6, 5


def _run(cell_name, passes, seq=None, dtype=rg.float32):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [B, T, I])
        lengths = None if seq is None else rg.constant(np.array(seq, np.int32))
        out, state = rg.nn.dynamic_rnn(CELLS[cell_name](), X, dtype=dtype,
                                       sequence_length=lengths)
        loss = rg.reduce_sum(out * out) + sum(rg.reduce_sum(s * s)
                                              for s in rg.nest.flatten(state))
        grads = rg.gradients(loss, [X] + rg.global_variables())
        sess = rg.Session(g, seed=3, passes=passes)
        x = np.random.default_rng(5).normal(size=X.shape).astype(np.dtype(dtype))
        out, state, grads = sess.run([out, rg.nest.flatten(state), grads], {X: x})
        return [out] + list(state) + list(grads), sess


def _program_graph(sess):
    (prog,) = sess.programs()
    return prog.graph


@needs_kernels
@pytest.mark.parametrize("seq", [None, [6, 0, 2, 6, 1, 3, 5]], ids=["full", "lengths"])
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_pass_preserves_outputs_and_gradients(cell_name, seq):
    ref, _ = _run(cell_name, {"pack_weights": False}, seq)
    got, sess = _run(cell_name, True, seq)
    assert sess.pass_stats["pack_weights"] > 0
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@needs_kernels
def test_pass_packs_each_weight_once_outside_the_loops():
    _, sess = _run("lstm", True)
    graph = _program_graph(sess)
    loops = [n for n in graph.nodes if n.op.name == "loop"]
    assert len(loops) == 2
    for loop in loops:
        ops = [n.op.name for n in loop.op.body.nodes]
        assert ops.count("panel_matmul") == 1 and "matmul" not in ops
    packs = [n for n in graph.nodes if n.op.name == "pack_panels"]
    assert len(packs) == 2          # W_h for the forward loop, W_h^T for the gradient loop
    assert {p.outputs[0].shape for p in packs} == {(5, 20, 16), (2, 80, 16)}


@needs_kernels
def test_pass_leaves_float64_graphs_alone():
    _, sess = _run("lstm", True, dtype=rg.float64)
    assert sess.pass_stats["pack_weights"] == 0
    graph = _program_graph(sess)
    assert not any(n.op.name == "pack_panels" for n in graph.nodes)


def test_pass_does_nothing_without_numba(monkeypatch):
    monkeypatch.setenv("RNNGRAPH_NUMBA", "0")
    _, sess = _run("gru", True)
    assert sess.pass_stats["pack_weights"] == 0


@needs_kernels
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("seq", [None, [9, 3, 0, 9, 5, 1, 9, 2, 7, 4, 9, 6, 8, 9, 3, 1]],
                         ids=["full", "lengths"])
def test_splitting_over_two_threads_gives_the_bits_of_one(cell, seq, monkeypatch):
    """With the helper thread opted in (rg.config.cpu_helper_thread), loops large enough that
    products and gate kernels are split (rows x cols >= 2048) give the same bits as with every
    call on one thread (the same run on a second Python thread while the helper serves the
    first)."""
    monkeypatch.setattr(rg.config, "cpu_helper_thread", True)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [16, 9, 12])
        lengths = None if seq is None else rg.constant(np.array(seq, np.int32))
        make = {"lstm": lambda: rg.nn.LSTMCell(160), "gru": lambda: rg.nn.GRUCell(160)}[cell]
        out, state = rg.nn.dynamic_rnn(make(), X, dtype=rg.float32, sequence_length=lengths)
        loss = rg.reduce_sum(out * out)
        grads = rg.gradients(loss, [X] + rg.global_variables())
    sess = rg.Session(g, seed=1)
    feed = {X: np.random.default_rng(2).normal(size=(16, 9, 12)).astype(F32)}
    before = panel_gemm.split_counts()
    both = sess.run([out, grads], feed)
    after = panel_gemm.split_counts()
    assert after["products"] > before["products"] and after["kernels"] > before["kernels"]
    assert panel_gemm.loop_begin()   # the helper is busy with "our" loop: the run computes alone
    try:
        one = _on_another_thread(lambda: sess.run([out, grads], feed))
    finally:
        panel_gemm.loop_end()
    assert panel_gemm.split_counts() == after
    for x, y in zip(rg.nest.flatten(both), rg.nest.flatten(one)):
        np.testing.assert_array_equal(x, y)


@needs_kernels
def test_a_loop_that_fails_leaves_the_helper_asleep(monkeypatch):
    monkeypatch.setattr(rg.config, "cpu_helper_thread", True)
    g = rg.Graph()
    with g.as_default():
        table = rg.constant(np.arange(80, dtype=F32).reshape(5, 16))
        w = rg.placeholder(rg.float32, [16, 16])
        idx = rg.placeholder(rg.int32, [None])

        def step(acc, i):
            acc = rg.matmul(acc, w) + rg.gather(table, i, name="lookup")
            return acc, acc
        _, total = rg.lax_scan(step, rg.constant(np.zeros((1, 16), F32)), idx)
    sess = rg.Session(g)
    feed = {w: np.eye(16, dtype=F32) * 0.5}
    good = sess.run(total, {**feed, idx: np.array([1, 2, 4], np.int32)})
    assert sess.pass_stats["pack_weights"] == 1
    np.testing.assert_allclose(good[-1][0], np.arange(64, 80) + 0.5 * (np.arange(32, 48) +
                                                                        0.5 * np.arange(16, 32)))
    with pytest.raises(rg.errors.ExecutionError, match="gather 'scan/lookup'.*failed"):
        sess.run(total, {**feed, idx: np.array([1, 2, 9], np.int32)})
    assert panel_gemm._STATE["helper"].depth == 0


@needs_kernels
def test_quiet_blas_waits_for_a_moment_alone_unless_forced(monkeypatch):
    monkeypatch.setitem(panel_gemm._STATE, "quiet", False)
    monkeypatch.setattr(panel_gemm, "_blas_controls", lambda: [])   # (nothing stopped here)
    monkeypatch.delenv("RNNGRAPH_QUIET_BLAS", raising=False)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not panel_gemm.quiet_blas()
        monkeypatch.setenv("RNNGRAPH_QUIET_BLAS", "1")
        assert panel_gemm.quiet_blas()
    finally:
        release.set()
        other.join()
    assert panel_gemm.quiet_blas()


@needs_kernels
def test_the_pass_waits_for_the_helper_thread_opt_in(monkeypatch):
    """On one thread our GEMM did not beat OpenBLAS anywhere: loops use it only where the user
    opted in to the helper thread."""
    monkeypatch.setattr(rg.config, "cpu_helper_thread", False)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 5, 3])
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(8), X, dtype=rg.float32)
    feed = {X: np.ones((2, 5, 3), F32)}
    sess = rg.Session(g)
    plain = sess.run(out, feed)
    assert sess.pass_stats["pack_weights"] == 0
    monkeypatch.setattr(rg.config, "cpu_helper_thread", True)
    sess = rg.Session(g)
    packed = sess.run(out, feed)
    assert sess.pass_stats["pack_weights"] == 1
    np.testing.assert_allclose(packed, plain, rtol=1e-5, atol=1e-6)
