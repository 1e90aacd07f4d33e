"""The segment schedule of a static graph's recomputation (issue 29, item 3): memory/spill.py
chooses the checkpoints by dynamic programming over the forward chain's cut positions, or
equal stretches where those are as good, and the plan says which. The programme is checked
against every plan of small chains (the model computed here again, value by value), and
the plans it makes against runs: every plan that says it fits runs within its budget,
predicted as measured (but for NumPy's 0-d scalars), with the unplanned run's bits."""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.memory.spill import Chain, _best_uniform, _chain_cost, _dp
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_spill import _same_bits, _shapes, _unplanned


# --- the programme against every plan ----------------------------------------------------------
def _random_chain(rs, K: int) -> Chain:
    values = []
    for w in range(K):
        for _ in range(rs.randint(1, 4)):
            chain = min(K - 1, w + int(rs.rand() < 0.3))        # (a checkpoint: read on)
            early = K if rs.rand() < 0.2 else rs.randint(chain, K)
            values.append((int(rs.randint(10, 200)), w, chain, early))
    ramp = np.cumsum(rs.randint(50, 300, K))
    return Chain(fwd=(400 + ramp + rs.randint(0, 100, K)).astype(np.int64),
                 bwd=(400 + ramp[::-1] + rs.randint(0, 300, K)).astype(np.int64),
                 at=(300 + ramp + rs.randint(0, 100, K)).astype(np.int64),
                 interior=rs.randint(0, 80, K).astype(np.int64),
                 seconds=rs.uniform(0.5, 2.0, K), values=values,
                 reading=int(400 + ramp[-1] + rs.randint(0, 200)),
                 middle=int(400 + ramp[-1] + rs.randint(0, 400)))


def _cost(ch: Chain, plan) -> tuple:
    """(peak, seconds) of `plan` by Chain's rules, one value at a time."""
    stretch = {w: r for r, (u, v, _) in enumerate(plan) for w in range(u, v + 1)}
    off = []   # (bytes, its stretch, its last early reader's unit, its stretch's end)
    for b, made, chain, early in ch.values:
        u, v, again = plan[stretch[made]]
        if again and chain <= v:
            off.append((b, stretch[made], early, v))
    peaks = []
    for w in range(len(ch.fwd)):
        r = stretch[w]
        peaks.append(ch.fwd[w] - sum(b for b, s, e, end in off
                                     if (s == r and e < w) or (s < r and e <= end)))
        peaks.append(ch.bwd[w] - sum(b for b, s, e, end in off if s < r))
    for r, (u, v, again) in enumerate(plan):
        if again:
            peaks.append(ch.at[v] + max(ch.interior[u:v + 1]) -
                         sum(b for b, s, e, end in off if s < r))
    peaks.append(ch.reading - sum(b for b, s, e, end in off if e <= end))
    peaks.append(ch.middle - sum(b for b, s, e, end in off))
    seconds = sum(ch.seconds[w] for u, v, again in plan if again for w in range(u, v + 1))
    return max(peaks), seconds


def _plans(K: int):
    """Every plan: the units cut into stretches, each recomputed, the last kept or not."""
    for cuts in itertools.product((False, True), repeat=K - 1):
        ends = [w for w in range(K - 1) if cuts[w]] + [K - 1]
        parts = [(ends[i - 1] + 1 if i else 0, e) for i, e in enumerate(ends)]
        yield tuple((u, v, True) for u, v in parts)
        yield tuple((u, v, True) for u, v in parts[:-1]) + ((parts[-1][0], K - 1, False),)


@pytest.mark.parametrize("seed", range(12))
def test_the_programme_finds_the_fastest_plan_that_fits_or_the_lowest(seed):
    rs = np.random.RandomState(seed)
    ch = _random_chain(rs, K=rs.randint(3, 8))
    plans = [(p, _cost(ch, p)) for p in _plans(len(ch.fwd))]
    lowest = min(peak for _, (peak, _) in plans)
    highest = max(peak for _, (peak, _) in plans)
    for budget in np.linspace(lowest - 50, highest, 9).astype(int):
        got = _dp(ch, int(budget))
        fits = [(secs, p) for p, (peak, secs) in plans if peak <= budget]
        if fits:
            secs, best = min(fits)
            if not any(again for _, _, again in best):
                assert got is None
                continue
            peak, t = _cost(ch, got)
            assert peak <= budget and t == pytest.approx(secs, abs=1e-12)
            assert _chain_cost(ch, got) == pytest.approx((peak, t))
            # equal stretches are one of the plans: never faster where they fit
            uni = _best_uniform(ch, int(budget))
            if uni is not None and _cost(ch, uni)[0] <= budget:
                assert _cost(ch, uni)[1] >= t - 1e-12
        else:   # (nothing fits: the lowest peak, to the search's byte; None: keeping all)
            kept = ((0, len(ch.fwd) - 1, False),)
            assert _cost(ch, got or kept)[0] <= lowest + max(1, highest // 10000)


def test_cuts_anywhere_beat_equal_stretches_on_an_uneven_chain():
    """Ten units, each passing a 300-byte state to the next (a cut keeps it); units 1, 2, 6
    and 9 make ten times the bytes of the others and take four times as long (a wide
    layer). At 3,000 and 3,200 bytes no equal stretches fit where the programme's cuts do, in
    18 and 17 s (the fastest plans there are); at 3,600 equal stretches take 17 s, the
    programme's 16 s."""
    K, wide = 10, {1, 2, 6, 9}
    values, fwd, total = [], [], 0
    for w in range(K):
        values.append((1000 if w in wide else 100, w, w, w))
        if w + 1 < K:
            values.append((300, w, w + 1, w + 1))
        total += (1000 if w in wide else 100) + 300
        fwd.append(500 + total)
    fwd = np.array(fwd, dtype=np.int64)
    ch = Chain(fwd=fwd, bwd=fwd.copy(), at=fwd.copy(), interior=np.zeros(K, np.int64),
               seconds=np.array([4.0 if w in wide else 1.0 for w in range(K)]),
               values=values, reading=int(fwd[-1]), middle=int(fwd[-1]))
    plans = [(p, _cost(ch, p)) for p in _plans(K)]
    for budget, fastest, equal in ((3000, 18.0, None), (3200, 17.0, None), (3600, 16.0, 17.0)):
        got, uni = _cost(ch, _dp(ch, budget)), _cost(ch, _best_uniform(ch, budget))
        assert got[0] <= budget and got[1] == fastest
        assert fastest == min(secs for _, (peak, secs) in plans if peak <= budget)
        if equal is None:
            assert uni[0] > budget
        else:
            assert uni[0] <= budget and uni[1] == equal


# --- plans that run -----------------------------------------------------------------------------
def _multi(T=12, B=8, I=4, sizes=(24, 6), seed=0):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        cell = rg.nn.MultiRNNCell([rg.nn.LSTMCell(h) for h in sizes])
        outs, _ = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), dtype=rg.float32)
        loss = rg.reduce_sum(rg.stack(outs) ** 2)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    return g, fetches, {X: np.random.RandomState(seed).randn(B, T, I).astype(np.float32)}


def _wide_head(T=16, B=4, H=8, I=3, W=96, k=4, seed=0):
    """A static LSTM with a wide tanh head on every k-th step's output (fixed weights: a
    variable not trained, so no weight gradient adds to the peak)."""
    rs = np.random.RandomState(seed)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        cell = rg.nn.LSTMCell(H)
        xs = rg.unstack(X, axis=1)
        Wh = rg.get_variable("head", [H, W], rg.float32, trainable=False,
                             initializer=rg.constant_initializer(
                                 (rs.randn(H, W) / 4).astype(np.float32)))
        state = cell.zero_state(B, rg.float32)
        loss = 0.0
        with rg.variable_scope("rnn"):
            for t in range(T):
                with g.name_scope(f"step_{t}"):
                    out, state = cell(xs[t], state)
                    loss = loss + rg.reduce_sum(out ** 2)
                    if t % k == k - 1:
                        z = rg.tanh(rg.matmul(out, Wh))
                        loss = loss + rg.reduce_sum(z * z)
        fetches = [loss] + rg.gradients(loss, rg.trainable_variables())
    return g, fetches, {X: rs.randn(B, T, I).astype(np.float32)}


@pytest.mark.parametrize("build", [_multi, _wide_head], ids=["multi_rnn", "wide_head"])
def test_a_budget_sweep_of_uneven_static_graphs_runs_as_planned(build):
    """From the recompute-only floor to the unplanned peak: a plan that says it fits runs
    within its budget, at the predicted peak, with the unplanned run's bits, and says which
    schedule its segments follow."""
    g, fetches, fd = build()
    ref, peak = _unplanned(g, fetches, fd)
    low = rg.Session(g, device=SimulatedDevice(), memory_budget=peak // 50,
                     memory_strategy="recompute")
    floor = low.memory_plan(fetches, _shapes(fd)).min_budget
    assert floor is not None and floor < peak // 2
    fitted, schedules = 0, set()
    for budget in np.linspace(floor, peak, 6).astype(int):
        sess = rg.Session(g, device=SimulatedDevice(capacity=int(budget)),
                          memory_budget=int(budget), memory_strategy="recompute")
        plan = sess.memory_plan(fetches, _shapes(fd))
        if budget == floor:
            assert plan.fits, str(plan)
        if not plan.fits:
            continue
        got = sess.run(fetches, fd, report=True)
        fitted += 1
        measured = sess.last_run_report.peak_bytes
        # (the wide head's running loss: NumPy's 0-d scalars, 4 B the meter does not see)
        assert measured <= plan.predicted_peak <= min(budget, measured + 8)
        _same_bits(got, ref)
        segments = [s for s in plan.spilled if s.segment]
        if segments:
            (count,) = {s.segments for s in segments}
            (schedule,) = {s.schedule for s in segments}
            assert count == max(s.segment for s in segments)
            schedules.add(schedule)
            # (a plan lists its largest values only: the segments it shows, all of this form)
            shown = re.findall(r"\(segment \d+ of \d+, \w+\)", str(plan))
            assert all(m.endswith(f" of {count}, {schedule})") for m in shown)
            assert re.search(rf"recomputed as {len({s.segment for s in segments})} "
                             rf"checkpointed segments?, {schedule} schedule", str(plan))
    assert fitted >= 5 and schedules <= {"uniform", "dp"} and schedules


def _review_gru(T: int, B: int, I: int, head: bool = False, const: bool = False,
                dtype=rg.float32, npdt=np.float32) -> tuple:
    """A static GRU(8) through static_rnn: a constant input projection per step (`const`),
    a dense tanh head of 24 units on every output (`head`); the loss sums the squares."""
    rs = np.random.RandomState(0)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [B, T, I], name="X")
        fd = {X: rs.randn(B, T, I).astype(npdt)}
        xs = rg.unstack(X, axis=1)
        if const:
            C = rg.constant((rs.randn(I, I) / 2).astype(npdt))
            xs = [rg.matmul(x, C) for x in xs]
        outs, _ = rg.nn.static_rnn(rg.nn.GRUCell(8), xs, dtype=dtype)
        if head:
            outs = [rg.layers.dense(o, 24, activation=rg.tanh, name="head",
                                    reuse=rg.nn.AUTO_REUSE) for o in outs]
        loss = rg.reduce_sum(rg.stack(outs) ** 2)
        fetches = [loss] + rg.gradients(loss, rg.trainable_variables())
    return g, fetches, fd


@pytest.mark.parametrize("case", [
    "head_gru_40012",
    # (the step profile puts the fastest plan at 43,352 B, it runs at 43,544: the planner's
    # retry, runtime/planning.py, lowers its target below the profile's estimate too)
    "const_gru_f64_43524"])
def test_budgets_the_equal_size_segments_fit_still_fit(case):
    """The chain's model is off (above the step profile on the head GRU: its lowest peak
    55,784 B where plans of 40,012 B exist): plans for more targets, and stretches of equal
    bytes, are scored on the step profile, so that budgets the earlier chooser of equal
    stretches fitted still fit, and run within them."""
    if case == "head_gru_40012":
        g, fetches, fd = _review_gru(T=20, B=8, I=4, head=True)
        budget = 40012
    else:
        g, fetches, fd = _review_gru(T=14, B=8, I=3, const=True, dtype=rg.float64,
                                     npdt=np.float64)
        budget = 43524
    ref, peak = _unplanned(g, fetches, fd)
    assert budget < peak
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy="recompute")
    plan = sess.memory_plan(fetches, _shapes(fd))
    assert plan.fits and plan.predicted_peak <= budget, str(plan)
    got = sess.run(fetches, fd, report=True)
    assert sess.last_run_report.peak_bytes <= plan.predicted_peak
    _same_bits(got, ref)
