"""The plan's predicted peak against the peak the simulated device measures, on different graphs
(kept, offloaded, recomputed saved tensors; one and two layers; LSTM, GRU, a bidirectional
pair). The issue asks for 10%; the simulation replays the executor's liveness, so in practice
the two agree to the byte."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import feed, lstm_graph


def _bidirectional():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [8, None, 4], name="X")
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(rg.nn.LSTMCell(32), rg.nn.GRUCell(32), X,
                                                      dtype=rg.float32, swap_memory=True)
        loss = rg.reduce_sum(fw * bw)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    return g, X, fetches


CASES = {
    "lstm, budget (planner's choice)": (lambda: lstm_graph(batch=32, hidden=128, proj=16),
                                        dict(memory_budget=2_500_000)),
    "2-layer gru, recompute": (lambda: lstm_graph(batch=16, hidden=64, cell="gru", layers=2),
                               dict(memory_budget=2_000_000, memory_strategy="recompute")),
    "bidirectional lstm+gru, swap_memory": (_bidirectional, {}),
    "lstm, unconstrained, default passes": (lambda: lstm_graph(batch=16, hidden=64), {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_predicted_peak_is_within_ten_percent_of_the_measured_peak(case):
    build, kw = CASES[case]
    g, X, fetches = build()
    fd = feed(X, 150)
    sess = rg.Session(g, device=SimulatedDevice(), **kw)
    plan = sess.memory_plan(fetches, {X: fd[X].shape})
    sess.run(fetches, fd)
    measured = sess.last_run_report.peak_bytes
    if kw:  # runs that follow a plan report its prediction next to the measurement
        assert sess.last_run_report.predicted_peak == plan.predicted_peak
    assert abs(plan.predicted_peak - measured) <= 0.10 * measured, (plan.predicted_peak, measured)


def test_the_cases_exercise_every_placement():
    seen = set()
    for build, kw in CASES.values():
        g, X, fetches = build()
        sess = rg.Session(g, device=SimulatedDevice(), **kw)
        plan = sess.memory_plan(fetches, {X: (X.shape[0], 150, X.shape[2])})
        seen |= {s.placement for s in plan.saved}
    assert seen == {"device", "host", "recompute"}


def test_prediction_follows_the_number_of_steps():
    g, X, fetches = lstm_graph(batch=16, hidden=64, swap_memory=True)
    sess = rg.Session(g, device=SimulatedDevice())
    for T in (20, 80):
        fd = feed(X, T)
        plan = sess.memory_plan(fetches, fd)          # arrays work as well as shapes
        sess.run(fetches, fd)
        assert plan.loops[0].steps == T
        assert sess.last_run_report.peak_bytes == plan.predicted_peak
        assert np.isclose(sess.last_run_report.bytes_to_host,
                          sum(s.total_bytes for s in plan.saved))
