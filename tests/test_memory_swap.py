"""dynamic_rnn(swap_memory=True): every saved per-step tensor of that loop lives on the host
between the passes; parallel_iterations bounds the rows prefetched back at once."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import feed, lstm_graph, residual_outputs

T = 200


def _run(g, X, fetches, fd, **kw):
    sess = rg.Session(g, device=SimulatedDevice(), **kw)
    out = sess.run(fetches, fd)
    return sess, out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_swap_memory_puts_every_saved_tensor_on_the_host(cell):
    g0, X0, f0 = lstm_graph(batch=16, hidden=64, cell=cell)
    g1, X1, f1 = lstm_graph(batch=16, hidden=64, cell=cell, swap_memory=True)
    fd0, fd1 = feed(X0, T), feed(X1, T)
    plan = rg.Session(g1, device=SimulatedDevice()).memory_plan(f1, {X1: (16, T, 16)})
    assert plan.budget is None and plan.loops
    assert all(s.placement == "host" for s in plan.saved), str(plan)
    assert all("swap_memory" in s.why for s in plan.saved)
    for v in residual_outputs(g1):
        assert plan.placement_of(v) == "host"
    s1, got = _run(g1, X1, f1, fd1)
    saved = sum(s.total_bytes for s in plan.saved)
    rep = s1.last_run_report
    assert rep.bytes_to_host == saved          # every row of every saved tensor went out ...
    assert rep.bytes_to_device == saved        # ... and came back once, ahead of its use
    # unchanged results: the same program without swapping (same passes), bit for bit
    s0, ref = _run(g0, X0, f0, fd0, passes={k: False for k in plan.passes_off} or True)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert rep.peak_bytes < s0.last_run_report.peak_bytes - 0.9 * saved
    assert s0.last_run_report.bytes_to_host == 0


def test_swap_memory_on_the_plain_cpu_device():
    g1, X1, f1 = lstm_graph(batch=8, hidden=32, swap_memory=True)
    g0, X0, f0 = lstm_graph(batch=8, hidden=32)
    sess = rg.Session(g1)                      # untracked: no byte counting, same handles
    got = sess.run(f1, feed(X1, 50))
    plan = sess.memory_plan(f1, feed(X1, 50))
    ref = rg.Session(g0, passes={k: False for k in plan.passes_off} or True).run(f0, feed(X0, 50))
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert sess.device.bytes_to_host == sum(s.total_bytes for s in plan.saved)
    assert sess.last_run_report is None


@pytest.mark.parametrize("pi, depth", [(1, 1), (32, 2)])
def test_parallel_iterations_bounds_the_rows_in_flight(pi, depth):
    g, X, f = lstm_graph(batch=16, hidden=64, swap_memory=True, parallel_iterations=pi)
    sess = rg.Session(g, device=SimulatedDevice())
    plan = sess.memory_plan(f, {X: (16, T, 16)})
    assert [lp.prefetch_depth for lp in plan.loops] == [depth]
    assert f"prefetch depth {depth}" in str(plan)
    sess.run(f, feed(X, T))
    assert sess.last_run_report.peak_bytes == plan.predicted_peak


def test_swap_memory_is_kept_under_a_budget_too():
    g, X, f = lstm_graph(batch=16, hidden=64, swap_memory=True)
    sess = rg.Session(g, device=SimulatedDevice(), memory_budget=10**9,
                      memory_strategy="recompute")
    plan = sess.memory_plan(f, {X: (16, T, 16)})
    assert {s.placement for s in plan.saved} == {"host"}


def _while_graph(swap_memory, maximum_iterations=None):
    g = rg.Graph()
    with g.as_default():
        x0 = rg.placeholder(rg.float64, [3, 100], name="x0")
        w = rg.get_variable("w", [100, 100], rg.float64)
        i, x = rg.while_loop(lambda i, x: rg.reduce_sum(x) < 1e4,
                             lambda i, x: (i + 1, rg.tanh(x @ w) * 1.1 + x),
                             [rg.constant(0), x0], maximum_iterations=maximum_iterations,
                             swap_memory=swap_memory)
        loss = rg.reduce_sum(x * x)
    return g, x0, [i, loss] + rg.gradients(loss, [x0, w])


@pytest.mark.parametrize("maximum_iterations, kw", [
    (None, {}),                                                   # steps unknown: rows appended
    (40, {}),
    (40, dict(memory_budget=200_000, memory_strategy="recompute")),
])
def test_while_loops_swap_and_recompute(maximum_iterations, kw):
    swap = not kw
    g, x0, fetches = _while_graph(swap, maximum_iterations)
    fd = {x0: np.full((3, 100), 0.01)}
    ref = rg.Session(g, passes=False).run(fetches, fd)
    sess = rg.Session(g, device=SimulatedDevice(), passes=False, **kw)
    plan = sess.memory_plan(fetches, fd)
    got = sess.run(fetches, fd)
    want = "host" if swap else "recompute"
    assert {s.placement for s in plan.saved} == {want}
    assert ref[0] > 5                                             # it looped
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    rep = sess.last_run_report
    assert (rep.bytes_to_host > 0) == swap
    # (NumPy returns some scalars as Python/NumPy scalars, which no device would hold: bytes)
    assert abs(rep.peak_bytes - plan.predicted_peak) <= 64
