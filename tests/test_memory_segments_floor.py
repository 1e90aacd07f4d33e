"""Floors of a static graph's checkpointed segments (issue 29, item 3): the smallest budget a
plan fits, the lowest predicted peak the planner finds (memory_strategy="recompute"), is
never above what the chooser before the dynamic programme reached on the same model, each
figure computed here from the current code:

- constant weights: a constant read again by the recomputed copies of every segment (the
  recurrent weight of a static recurrence) is held from its last reader to the last copies
  reading it, once; it was counted once per segment, so plans of many segments looked a
  segment's worth of weights higher each and the floor of a tanh recurrence rose from
  10,376 to 12,680 B (T 16, B 8, H 16: +22%). The reference: the same chooser counting
  constants as resident (never held longer), as the chooser before it did;
- stretches of equal late-read bytes (the chooser before the programme, its 16 sizes still
  scored): the floor with the programme's plans too is not above theirs (MultiRNNCell of
  LSTM 8, 32, 8);

and every plan that says it fits runs within its budget, at most at its prediction, with the
unplanned run's bits."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.memory import spill
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_segments_dp import _multi
from test_memory_spill import _same_bits, _shapes, _unplanned


def _const_rnn(T=16, B=8, I=4, H=16, seed=0):
    """h_t = tanh(x_t W + h_{t-1} U), W and U constants (nothing trained), the loss the sum of
    every h_t squared, the gradient by the input."""
    rs = np.random.RandomState(seed)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        W = rg.constant((rs.randn(I, H) / 2).astype(np.float32))
        U = rg.constant((rs.randn(H, H) / 4).astype(np.float32))
        h = rg.zeros([B, H], rg.float32)
        loss = 0.0
        for x in rg.unstack(X, axis=1):
            h = rg.tanh(rg.matmul(x, W) + rg.matmul(h, U))
            loss = loss + rg.reduce_sum(h * h)
        fetches = [loss] + rg.gradients(loss, [X])
    return g, fetches, {X: rs.randn(B, T, I).astype(np.float32)}


def _floor(g, fetches, fd, peak) -> int:
    """The lowest predicted peak of a recompute plan (asked for a fiftieth of the peak)."""
    sess = rg.Session(g, device=SimulatedDevice(), memory_budget=peak // 50,
                      memory_strategy="recompute")
    plan = sess.memory_plan(fetches, _shapes(fd))
    assert not plan.fits
    return plan.predicted_peak


def _runs_within(g, fetches, fd, budget, ref) -> None:
    sess = rg.Session(g, device=SimulatedDevice(capacity=int(budget)), memory_budget=int(budget),
                      memory_strategy="recompute")
    plan = sess.memory_plan(fetches, _shapes(fd))
    assert plan.fits, str(plan)
    got = sess.run(fetches, fd, report=True)
    # (the running loss: NumPy's 0-d scalars, a few bytes the meter does not see)
    assert sess.last_run_report.peak_bytes <= plan.predicted_peak <= budget
    _same_bits(got, ref)


@pytest.mark.parametrize("T,H", [(16, 16), (40, 32)])
def test_constant_weights_read_by_every_segment_cost_their_bytes_once(monkeypatch, T, H):
    g, fetches, fd = _const_rnn(T=T, H=H)
    ref, peak = _unplanned(g, fetches, fd)
    floor = _floor(g, fetches, fd, peak)
    with monkeypatch.context() as m:   # (the chooser before: a constant never held longer)
        m.setattr(spill, "_RESIDENT", spill._RESIDENT + ("constant",))
        resident = _floor(g, fetches, fd, peak)
    assert floor <= resident < peak
    segments = [s for s in _plan_at(g, fetches, fd, floor).spilled if s.segment]
    assert len({s.segment for s in segments}) > 2   # (many segments, each reading U)
    _runs_within(g, fetches, fd, floor, ref)


def _plan_at(g, fetches, fd, budget):
    return rg.Session(g, device=SimulatedDevice(), memory_budget=int(budget),
                      memory_strategy="recompute").memory_plan(fetches, _shapes(fd))


def test_a_budget_sweep_of_a_constant_weight_recurrence_runs_as_planned():
    """From the floor to the unplanned peak: each plan that says it fits runs within it."""
    g, fetches, fd = _const_rnn()
    ref, peak = _unplanned(g, fetches, fd)
    floor = _floor(g, fetches, fd, peak)
    fitted = 0
    for budget in np.linspace(floor, peak, 5).astype(int):
        if _plan_at(g, fetches, fd, budget).fits:
            _runs_within(g, fetches, fd, budget, ref)
            fitted += 1
    assert fitted == 5


def test_the_programme_keeps_the_equal_bytes_floor_of_a_multi_rnn_cell(monkeypatch):
    """MultiRNNCell of LSTM 8, 32, 8 (T 12, B 8): the floor with the programme's plans is not
    above the floor of the equal-bytes stretches alone (the chooser before it)."""
    g, fetches, fd = _multi(sizes=(8, 32, 8))
    ref, peak = _unplanned(g, fetches, fd)
    floor = _floor(g, fetches, fd, peak)
    with monkeypatch.context() as m:
        m.setattr(spill, "_dp", lambda *a, **k: None)
        m.setattr(spill, "_best_uniform", lambda *a, **k: None)
        equal_bytes = _floor(g, fetches, fd, peak)
    assert floor <= equal_bytes
    _runs_within(g, fetches, fd, floor, ref)
