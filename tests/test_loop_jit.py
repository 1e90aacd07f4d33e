"""Loops compiled whole (runtime/loop_jit.py): once a loop is hot, its steps run in one numba
function. Its results must be the Python driver's to the bit, with and without active rows, and
wherever it cannot run (a kernel declining its arrays, a test observing the steps) the Python
driver must take over."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.numba import loop_jit


@pytest.fixture(autouse=True)
def _accelerated_from_the_first_run(monkeypatch):
    """This module's subject includes the numba kernels: sessions use them from their first run
    (Session(accelerate="auto") would start each program on NumPy kernels)."""
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)

pytestmark = pytest.mark.skipif(not loop_jit.available(np),
                                reason="needs numba and an x86-64 CPU with AVX2/FMA")

B, T, I, H = 5, 7, 3, 16


@pytest.fixture
def compiled(monkeypatch):
    """Counts compiled loops built (or declined), their runs, and their hand-backs to Python."""
    counts = {"built": 0, "declined": 0, "runs": 0, "handed_back": 0}
    original = loop_jit.jit_driver

    def spy(prog, k, n_inv, n_seq, rows, carried_rows, python, node=None, shared=()):
        def handed_back(*a):
            counts["handed_back"] += 1
            return python(*a)
        drive = original(prog, k, n_inv, n_seq, rows, carried_rows, handed_back, node,
                         shared=shared)
        counts["built" if drive is not None else "declined"] += 1
        if drive is None:
            return None

        def counted(*a):
            counts["runs"] += 1
            return drive(*a)
        return counted
    monkeypatch.setattr(loop_jit, "jit_driver", spy)
    return counts


def _model(cell: str, lengths: bool):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, T, I])
        seq = rg.placeholder(rg.int32, [None]) if lengths else None
        make = {"lstm": rg.nn.LSTMCell, "gru": rg.nn.GRUCell, "basic": rg.nn.BasicRNNCell}[cell]
        out, state = rg.nn.dynamic_rnn(make(H), X, dtype=rg.float32, sequence_length=seq)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
    return g, X, seq, [out] + list(rg.nest.flatten(state)) + grads


def _runs(cell, lengths, compile_loops, n=4):
    g, X, seq, fetches = _model(cell, lengths is not None)
    sess = rg.Session(g, compile_loops=compile_loops)
    x = np.random.default_rng(3).standard_normal((B, T, I)).astype(np.float32)
    feed = {X: x}
    if seq is not None:
        feed[seq] = np.asarray(lengths, np.int32)
    return [sess.run(fetches, feed) for _ in range(n)]


@pytest.mark.parametrize("cell,lengths", [
    ("lstm", [7, 3, 0, 5, 1]), ("gru", [2, 7, 7, 0, 4]), ("basic", [1, 6, 3, 7, 0]),
    ("lstm", None)])
def test_compiled_loops_equal_the_python_driver_to_the_bit(cell, lengths, compiled):
    python = _runs(cell, lengths, compile_loops=False)
    assert compiled["built"] == 0
    jit = _runs(cell, lengths, compile_loops=True)
    # the first JIT_AFTER runs are Python's; the next compiles both loops (forward and
    # gradient), and they run compiled from then on
    assert compiled["built"] == 2 and compiled["declined"] == 0
    assert compiled["runs"] == 2 * (4 - loop_jit.JIT_AFTER) and compiled["handed_back"] == 0
    for ours, ref in zip(jit[-1], python[-1]):
        np.testing.assert_array_equal(ours, ref)
    for ours, ref in zip(jit[-1], jit[0]):
        np.testing.assert_array_equal(ours, ref)


def test_a_declining_kernel_hands_the_loop_back_to_python(compiled, monkeypatch):
    """A fused kernel that declines its arrays (a shape mismatch) stops the compiled loop at
    that step; the Python driver runs the step again, and the rest, with the same results.
    (Shapes that would decline fail the loop's first step already, which runs in Python, so
    the kernel's answer is forced here.)"""
    from numba import cfunc, types

    from rnngraph.backends.numba import fused as fused_numba

    @cfunc(types.int64(types.int64, types.int64, types.int64))
    def decline(block, r0, r1):
        return 0
    real = fused_numba.CompiledForm.addresses
    monkeypatch.setattr(fused_numba.CompiledForm, "addresses",
                        property(lambda form: (decline.address, real.fget(form)[1])))
    lengths = [7, 3, 0, 5, 1]
    python = _runs("lstm", lengths, compile_loops=False)
    jit = _runs("lstm", lengths, compile_loops=True)
    assert compiled["built"] == 2 and compiled["handed_back"] == compiled["runs"] > 0
    for ours, ref in zip(jit[-1], python[-1]):
        np.testing.assert_array_equal(ours, ref)


def test_compile_loops_false_and_check_numerics_keep_the_python_driver(compiled):
    _runs("basic", [1, 6, 3, 7, 0], compile_loops=False, n=5)
    g, X, seq, fetches = _model("basic", True)
    sess = rg.Session(g, check_numerics=True)
    feed = {X: np.ones((B, T, I), np.float32), seq: np.array([1, 6, 3, 7, 0], np.int32)}
    for _ in range(5):
        sess.run(fetches, feed)
    assert compiled["built"] == 0 and compiled["runs"] == 0


def test_training_with_compiled_loops_gives_the_python_drivers_variables(compiled):
    """Adam on a two-layer (LSTM, GRU) classifier with lengths (some zero): the weights change
    every run, so the packed weights and the compiled loops see new values each time."""
    from test_determinism import all_variables, build_model, feed

    trained = []
    for compile_loops in (False, True):
        m = build_model()
        sess = rg.Session(m["graph"], compile_loops=compile_loops)
        losses = [sess.run([m["train"], m["loss"]], feed(m, step))[1] for step in range(6)]
        trained.append((losses, all_variables(m, sess)))
    (py_losses, py_vars), (jit_losses, jit_vars) = trained
    assert compiled["built"] >= 2 and compiled["runs"] > 0 and compiled["handed_back"] == 0
    assert py_losses == jit_losses
    assert py_vars.keys() == jit_vars.keys()
    for name in py_vars:
        np.testing.assert_array_equal(jit_vars[name], py_vars[name], err_msg=name)


def test_threads_running_one_compiled_loop_get_the_serial_results(compiled):
    import threading

    g, X, seq, fetches = _model("gru", True)
    sess = rg.Session(g, compile_loops=True)
    rng = np.random.default_rng(5)
    feeds = [{X: rng.standard_normal((B, T, I)).astype(np.float32),
              seq: rng.integers(0, T + 1, B).astype(np.int32)} for _ in range(4)]
    for f in feeds:
        sess.run(fetches, f)   # (the loops are compiled from here on)
    serial = [sess.run(fetches, f) for f in feeds]
    got = [None] * len(feeds)

    def worker(i):
        for _ in range(5):
            got[i] = sess.run(fetches, feeds[i])
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compiled["built"] == 2 and compiled["runs"] >= 2 * 4 * 6
    for ours, ref in zip(got, serial):
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["basic", "lstm"])
def test_a_gradient_loop_over_a_padded_batch_gives_the_python_drivers_bits(cell, monkeypatch):
    """Backwards over a padded batch, rows join as t descends; the compiled gradient loop gives
    the Python driver's bits. Its state is the masked where(...) of the body (the exact-row
    bodies, whose dh product went straight into the parked rows, were measured and removed),
    so no product is computed into parked rows."""
    sources = []
    original = loop_jit._source

    def spy(*args, **kwargs):
        source, extras = original(*args, **kwargs)
        sources.append(source)
        return source, extras
    monkeypatch.setattr(loop_jit, "_source", spy)
    lengths = [2, 7, 0, 5, 3]
    python = _runs(cell, lengths, compile_loops=False)
    jit = _runs(cell, lengths, compile_loops=True)
    assert len(sources) == 2   # the forward loop's and the gradient loop's
    assert not any("= product_into(" in s for s in sources)
    for ours, ref in zip(jit[-1], python[-1]):
        np.testing.assert_array_equal(ours, ref)
