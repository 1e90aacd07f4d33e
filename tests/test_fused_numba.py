"""The numba form of float32 fused kernels equals the NumPy form (ops/fused_numba.py).

- its rational tanh and sigmoid against NumPy's on a dense grid;
- whole LSTM/GRU/BasicRNN forward+backward runs (with and without sequence_length, so masks
  broadcast per row) with numba on and off, and that numba really ran every fused kernel;
- every way an input can broadcast (full, strided gate slices, per row, per column, scalar,
  a vector read in column blocks);
- a shape mismatch in a dimension unknown at build time still raises the fused kernel's error.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.numba import fused as fused_numba


@pytest.fixture(autouse=True)
def _accelerated_from_the_first_run(monkeypatch):
    """This module's subject includes the numba kernels: sessions use them from their first run
    (Session(accelerate="auto") would start each program on NumPy kernels)."""
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)

pytest.importorskip("numba")


@pytest.fixture
def count_numba(monkeypatch):
    """Counts fused nodes compiled with numba (kernels made, not None)."""
    made = []
    original = fused_numba.numba_kernel

    def spy(op, node, fallback=None):
        k = original(op, node, fallback)
        made.append(k is not None)
        return k
    monkeypatch.setattr(fused_numba, "numba_kernel", spy)
    return made


def _with_numba(monkeypatch, on: bool):
    monkeypatch.setenv("RNNGRAPH_NUMBA", "1" if on else "0")


def test_rational_tanh_and_sigmoid_are_accurate():
    import numba  # noqa: F401
    namespace: dict = {}
    exec(fused_numba._PRELUDE, namespace)  # noqa: S102
    x = np.linspace(-30, 30, 200_001).astype(np.float32)
    tanh = np.array([namespace["_tanh"](v) for v in x[::50]], np.float32)
    sig = np.array([namespace["_sigmoid"](v) for v in x[::50]], np.float32)
    ref = x[::50].astype(np.float64)
    assert np.abs(tanh - np.tanh(ref)).max() < 5e-7
    assert np.abs(sig - 1 / (1 + np.exp(-ref))).max() < 5e-7
    assert tanh.max() <= 1 and tanh.min() >= -1


CELLS = {"lstm": lambda: rg.nn.LSTMCell(16), "gru": lambda: rg.nn.GRUCell(16),
         "basic": lambda: rg.nn.BasicRNNCell(16)}


@pytest.mark.parametrize("lengths", [None, [6, 0, 3, 5]], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_rnn_runs_equal_with_and_without_numba(kind, lengths, monkeypatch, count_numba):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 6, 5])
        seq = rg.placeholder(rg.int32, [None])
        out, state = rg.nn.dynamic_rnn(CELLS[kind](), X, dtype=rg.float32,
                                       sequence_length=seq if lengths else None)
        loss = rg.reduce_sum(out * out) + rg.reduce_sum(rg.nest.flatten(state)[-1])
        grads = rg.gradients(loss, [X] + rg.global_variables())
    feed = {X: np.random.default_rng(0).standard_normal((4, 6, 5)).astype(np.float32)}
    if lengths:
        feed[seq] = np.array(lengths, np.int32)
    results = []
    for on in (True, False):
        _with_numba(monkeypatch, on)
        count_numba.clear()
        results.append(rg.Session(g, seed=1).run([out, grads], feed))
        if on:
            assert count_numba and all(count_numba), "a fused kernel fell back to NumPy"
    (o1, g1), (o2, g2) = results
    np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=2e-6)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()))


def _scan_graph():
    """A loop whose fused step reads its inputs in every broadcasting pattern."""
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [3, None, 8])       # per step: full [batch, 8]
        x4 = rg.placeholder(rg.float32, [None, 32])
        c0 = rg.placeholder(rg.float32, [None, 8])
        gate = rg.placeholder(rg.float32, [None, 32])      # sliced: strided [batch, 8] blocks
        w = rg.placeholder(rg.float32, [8])                # one value per column
        rows = rg.placeholder(rg.float32, [None, 1])       # one value per row
        bias = rg.placeholder(rg.float32, [32])            # a vector read in column blocks
        blocks = rg.split(gate, 4, axis=1)

        def step(carry, x):
            c, = carry
            x, = x
            wide = rg.split(x4 + bias, 4, axis=1)           # [batch, 32] + [32], split: blocks
            z = rg.tanh(c * w + x * 0.5) + rg.sigmoid(blocks[1]) * blocks[3] + wide[2] * wide[0]
            new = rg.where(rg.greater(rows, 0.0), z - rows, c)
            return [new], [rg.relu(new) * 2.0]
        final, ys = rg.lax_scan(step, [c0], [xs])
    return g, (xs, c0, gate, w, rows, x4, bias), final[0], ys[0]


def _scan_feed(inputs, seed=2, **arrays):
    """Random values for _scan_graph's placeholders (batch 5); `arrays` replaces some by name."""
    xs, c0, gate, w, rows, x4, bias = inputs
    rng = np.random.default_rng(seed)
    values = dict(xs=rng.standard_normal((3, 5, 8)), c0=rng.standard_normal((5, 8)),
                  gate=rng.standard_normal((5, 32)), w=rng.standard_normal(8),
                  rows=np.array([[1.0], [-1.0], [0.5], [2.0], [-3.0]]),
                  x4=rng.standard_normal((5, 32)), bias=rng.standard_normal(32))
    values.update(arrays)
    return {xs: values["xs"].astype(np.float32), c0: values["c0"].astype(np.float32),
            gate: values["gate"].astype(np.float32), w: values["w"].astype(np.float32),
            rows: values["rows"].astype(np.float32), x4: values["x4"].astype(np.float32),
            bias: values["bias"].astype(np.float32)}


def test_every_broadcast_pattern_matches(monkeypatch, count_numba):
    g, inputs, final, ys = _scan_graph()
    feed = _scan_feed(inputs)
    results = []
    for on in (True, False):
        _with_numba(monkeypatch, on)
        count_numba.clear()
        results.append(rg.Session(g).run([final, ys], feed))
        if on:
            assert count_numba == [True]
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


def test_unknown_dimension_mismatch_still_reported(monkeypatch):
    g, inputs, final, ys = _scan_graph()
    _with_numba(monkeypatch, True)
    feed = _scan_feed(inputs, c0=np.ones((4, 8)))   # batch 4, not 5
    with pytest.raises(rg.errors.InvalidArgumentError,
                       match="differ in a dimension unknown at build time"):
        rg.Session(g).run(final, feed)


def test_float64_programs_keep_the_numpy_kernel(monkeypatch, count_numba):
    _with_numba(monkeypatch, True)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, 3, 2])
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(4), X, dtype=rg.float64)
    rg.Session(g).run(out, {X: np.ones((2, 3, 2))})
    assert count_numba and not any(count_numba)


def test_nan_and_inf_survive_the_compiled_kernel(monkeypatch, count_numba):
    """Fast-math here must not assume finite values: check_numerics relies on NaN showing."""
    g, inputs, final, ys = _scan_graph()
    _with_numba(monkeypatch, True)
    x = np.random.default_rng(3).standard_normal((3, 5, 8))
    x[0, 2, 3] = np.nan
    feed = _scan_feed(inputs, xs=x, rows=np.ones((5, 1)))
    out = rg.Session(g).run(final, feed)
    assert count_numba == [True]
    assert np.isnan(out[2, 3]) and np.isfinite(np.delete(out, 2, axis=0)).all()
