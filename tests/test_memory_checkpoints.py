"""Binomial checkpointing (Revolve): the schedule's cost against a dynamic program written
here, the online policy the executor follows reaching that optimum, and a run under a binomial
plan giving the gradients of the run without a plan, bit for bit, at the predicted peak."""
from functools import lru_cache

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.memory.checkpoints import BinomialEvery, revolve_cost, simulate, split
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import STACK_PASSES_OFF, feed, lstm_graph


@lru_cache(maxsize=None)
def brute(L, s):
    """Fewest advances reversing L steps from a stored state with s free slots, by trying
    every first advance (Gruslys et al.'s recursion, unrolled here independently)."""
    if L <= 1:
        return 0
    if s == 0:
        return sum(range(L))          # re-advance from the start for each step
    return min(y + brute(L - y, s - 1) + brute(y, s) for y in range(1, L))


def test_the_closed_form_is_the_dynamic_program():
    for L in range(1, 90):
        for s in range(0, 6):
            assert revolve_cost(L, s) == brute(L, s), (L, s)


def test_split_is_an_optimal_first_advance():
    for L in range(2, 90):
        for s in range(1, 6):
            y = split(L, s)
            assert 1 <= y < L
            assert y + brute(L - y, s - 1) + brute(y, s) == brute(L, s), (L, s, y)


@pytest.mark.parametrize("n,slots", [(1, 3), (2, 1), (17, 1), (40, 3), (120, 5), (300, 12)])
def test_the_online_policy_reaches_the_optimum(n, slots):
    r = simulate(n, slots)
    assert r["tapes"] == n
    assert len(r["forward"]) <= slots and r["peak"] <= slots
    assert r["forward"] == sorted(set(r["forward"])) and all(0 < p < n for p in r["forward"])
    # the forward pass advances to the last state it stores for free; the rest is extra
    chain = r["forward"][-1] if r["forward"] else 0
    first_request = (n - 1) - chain       # from the last stored state to step n-1
    assert r["advances"] + chain + first_request == brute(n, slots)


def test_fewer_slots_cost_more_steps():
    costs = [simulate(200, s)["advances"] for s in (1, 2, 4, 8, 16)]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]


def test_binomial_every_is_the_interval_one_carrying_its_slots():
    b = BinomialEvery(7)
    assert b == 1 and int(b) == 1 and b.slots == 7


@pytest.mark.parametrize("steps", [2, 23])
def test_a_binomial_plan_gives_the_same_gradients_bit_for_bit(steps):
    g, X, fetches = lstm_graph(batch=4, hidden=16, inputs=3, proj=4)
    fd = feed(X, steps)
    ref = rg.Session(g, device=SimulatedDevice(), passes=STACK_PASSES_OFF).run(fetches, fd)
    sess = rg.Session(g, device=SimulatedDevice(), memory_budget=1, memory_strategy="recompute")
    plan = sess.memory_plan(fetches, fd)
    out = sess.run(fetches, fd)
    (lp,) = plan.loops
    if steps > 2:
        assert lp.checkpoint_schedule == "binomial" and "binomial checkpoints" in str(plan)
        assert lp.replayed_steps > steps
        assert {s.placement for s in plan.saved} == {"recompute"}
    same_passes = set(plan.passes_off) == {k for k, on in STACK_PASSES_OFF.items() if not on}
    for a, b in zip(out, ref):
        if same_passes:    # the same program: bit for bit
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())
    assert sess.last_run_report.peak_bytes == plan.predicted_peak


def test_a_second_read_of_a_binomial_stack_replays_from_the_start():
    """Two backward passes over the same forward loop (two gradient requests): each walks the
    residuals in reverse; the second starts again from the initial state."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [3, None, 2], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(5), X, dtype=rg.float32)
        loss1 = rg.reduce_sum(out * out)
        loss2 = rg.reduce_sum(rg.tanh(out))
        w = rg.global_variables()
        fetches = rg.gradients(loss1, w) + rg.gradients(loss2, w)
    fd = {X: np.random.RandomState(3).randn(3, 19, 2).astype(np.float32)}
    ref = rg.Session(g, device=SimulatedDevice(), passes=False).run(fetches, fd)
    sess = rg.Session(g, device=SimulatedDevice(), passes=False, memory_budget=1,
                      memory_strategy="recompute")
    out = sess.run(fetches, fd)
    for a, b in zip(out, ref):
        assert np.array_equal(a, b)
