"""Host memory is a budget too: Session(host_budget=...) (default: the device's host capacity,
else the RAM available) bounds what the planner offloads; a simulated device with a host
capacity enforces it. Where offloading would not fit the host, the plan recomputes instead."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.planning import available_ram, host_budget_of
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import STACK_PASSES_OFF, feed, lstm_graph

T = 80


def _setup():
    g, X, fetches = lstm_graph(batch=8, hidden=32, inputs=4, proj=4)
    fd = feed(X, T)
    ref = rg.Session(g, device=SimulatedDevice(), passes=STACK_PASSES_OFF).run(fetches, fd)
    offload = rg.Session(g, device=SimulatedDevice(), memory_budget=1, memory_strategy="auto")
    lean = offload.memory_plan(fetches, fd)     # the leanest plan: saved tensors on the host
    assert lean.host_bytes > 0
    return g, fetches, fd, ref, lean


def test_a_small_host_turns_offloading_into_recomputation():
    g, fetches, fd, ref, lean = _setup()
    budget = lean.min_budget * 2
    roomy = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    plan = roomy.memory_plan(fetches, fd)
    assert plan.fits and plan.host_bytes > 0, str(plan)
    host = plan.host_bytes // 4                   # a host that cannot hold those stacks
    for kw in ({"host_capacity": host}, {}):      # the device's capacity, or a Session budget
        dev = SimulatedDevice(capacity=budget, **kw)
        sess = rg.Session(g, device=dev, memory_budget=budget,
                          **({} if kw else {"host_budget": host}))
        p = sess.memory_plan(fetches, fd)
        assert p.fits and p.host_budget == host and p.host_bytes <= host, str(p)
        assert "recompute" in {s.placement for s in p.saved}
        out = sess.run(fetches, fd)
        assert dev.host_peak <= host
        assert sess.last_run_report.peak_bytes <= budget
        for a, b in zip(out, ref):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_the_simulated_host_enforces_its_capacity():
    g, fetches, fd, ref, lean = _setup()
    # an offload-only plan for a host that cannot take it: the plan says so, the run fails
    dev = SimulatedDevice(host_capacity=lean.host_bytes)
    sess = rg.Session(g, device=dev, memory_budget=lean.min_budget, memory_strategy="offload",
                      host_budget=lean.host_bytes)
    dev.host_capacity = lean.host_bytes // 2   # (told there was room: others took half of it)
    plan = sess.memory_plan(fetches, fd)
    assert plan.host_bytes > dev.host_capacity
    with pytest.raises(rg.OutOfMemoryError, match="host"):
        sess.run(fetches, fd)


def test_swap_memory_beyond_the_host_budget_fails_before_running():
    g, X, fetches = lstm_graph(batch=8, hidden=32, inputs=4, proj=4, swap_memory=True)
    fd = feed(X, T)
    sess = rg.Session(g, host_budget=1000)       # a CPU device: the planner is the judge
    plan = sess.memory_plan(fetches, fd)
    assert not plan.host_fits and not plan.fits and "OVER THE HOST BUDGET" in str(plan)
    with pytest.raises(rg.OutOfMemoryError, match="host_budget=1000"):
        sess.run(fetches, fd)


def test_the_default_host_budget():
    g, X, fetches = lstm_graph(batch=2, hidden=4, inputs=2, proj=None)
    assert host_budget_of(rg.Session(g, device=SimulatedDevice(host_capacity=12345))) == 12345
    assert host_budget_of(rg.Session(g, device=SimulatedDevice(host_capacity=12345),
                                     host_budget=999)) == 999
    ram = available_ram()
    assert ram is None or ram > 0
    import rnngraph.runtime.planning as planning
    sess = rg.Session(g)
    planning_ram = planning.available_ram
    try:   # (the RAM available moves between two calls)
        planning.available_ram = lambda: 123_456_789
        assert host_budget_of(sess) == 123_456_789
    finally:
        planning.available_ram = planning_ram


def test_the_ram_available_is_linuxs_memavailable(tmp_path):
    """MemAvailable counts the page cache the system can reclaim, which free pages leave out;
    without that line (or the file), the free pages."""
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24000000 kB\nMemFree:          400000 kB\n"
                    "MemAvailable:   18000000 kB\nBuffers:          100 kB\n")
    assert available_ram(str(info)) == 18_000_000 * 1024
    info.write_text("MemTotal:       24000000 kB\nMemFree:          400000 kB\n")
    free = available_ram(str(info))
    assert free is None or free > 0
    missing = available_ram(str(tmp_path / "none"))   # (free pages move between calls)
    assert (missing is None) == (free is None) and (missing is None or missing > 0)


def test_more_host_memory_never_turns_a_fitting_plan_away():
    """An LSTM whose outputs are fetched and also held on the host (host_outputs): the host
    options offloading more than the host budget less those outputs are never chosen, so here
    a plan that fits a host budget fits every larger one (the planner used to step to such an
    option once it was within the host budget alone, then stop over budget: T=200, no plan
    from 6.55 to 7.37 MB of host, where 0.8 MB found one), and the run holds to both."""
    T, B, H, I = 200, 16, 64, 8
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables()) + [out]
    fd = {X: np.random.RandomState(0).randn(B, T, I).astype(np.float32)}
    budget = 491_520
    fits = []
    for host in range(819_200, 8_000_001, 409_600):
        plan = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          host_budget=host).memory_plan(fetches, fd)
        assert plan.host_bytes <= host or not plan.fits, str(plan)
        fits.append(plan.fits)
    assert fits[0] and all(fits), fits
    dev = SimulatedDevice(capacity=budget, host_capacity=6_800_000)
    got = rg.Session(g, device=dev, memory_budget=budget).run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6 * np.abs(b).max())
    assert dev.peak_bytes <= budget and dev.host_peak <= 6_800_000


def _two_layers(first=rg.nn.LSTMCell, second=rg.nn.GRUCell, fetch_first=False,
                T2=60, B=8, H=32, I=4):
    """A `first` layer under a `second` one: two loops whose saved tensors the plan places
    (`fetch_first`: the first layer's outputs fetched too)."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        with rg.variable_scope("l1"):
            h, _ = rg.nn.dynamic_rnn(first(H), X, dtype=rg.float32)
        with rg.variable_scope("l2"):
            out, _ = rg.nn.dynamic_rnn(second(H), h, dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables()) + ([h] if fetch_first
                                                                          else [])
    return g, fetches, {X: np.random.RandomState(0).randn(B, T2, I).astype(np.float32)}


def test_more_host_memory_never_turns_a_fitting_plan_away_with_several_loops():
    """Two stacked layers (LSTM, then GRU): a search offloading the first layer took the host
    room the second needed, and stopped over budget (no plan from 0.7 to 0.9 MB of host where
    0.3 MB found one). The planner searches again with the host room shrunk, taking options
    slower and larger than another but lighter on the host; the run holds to both budgets."""
    g, fetches, fd = _two_layers()
    keep = rg.Session(g, device=SimulatedDevice()).memory_plan(fetches, fd).predicted_peak
    budget = keep * 3 // 10
    for host in (300_000, 700_000, 800_000, 900_000, 1_000_000):
        plan = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          host_budget=host).memory_plan(fetches, fd)
        assert plan.fits and plan.host_bytes <= host, (host, str(plan))
    dev = SimulatedDevice(capacity=budget, host_capacity=800_000)
    got = rg.Session(g, device=dev, memory_budget=budget).run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6 * np.abs(b).max())
    assert dev.peak_bytes <= budget and dev.host_peak <= 800_000


def test_no_search_again_where_even_the_leanest_options_are_over(monkeypatch):
    """Searching again with the host room shrunk cannot help where each loop's leanest option,
    whatever its host bytes, is over the budget: one search per plan there, as before (the
    searches again made a four-layer plan that cannot fit take 2.6x as long; a review)."""
    import rnngraph.memory.planner as planner
    import rnngraph.runtime.planning as planning
    calls = {"plans": 0, "searches": 0}

    def counted(fn, key):
        def wrapper(*a, **k):
            calls[key] += 1
            return fn(*a, **k)
        return wrapper

    g, fetches, fd = _two_layers()
    keep = rg.Session(g, device=SimulatedDevice()).memory_plan(fetches, fd).predicted_peak
    monkeypatch.setattr(planning, "make_plan", counted(planning.make_plan, "plans"))
    monkeypatch.setattr(planner, "_search", counted(planner._search, "searches"))
    budget = keep * 12 // 100
    plan = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      host_budget=600_000).memory_plan(fetches, fd)
    assert not plan.fits and plan.min_budget > budget, str(plan)
    assert calls["searches"] == calls["plans"] > 0, calls


def test_a_fit_found_by_shrinking_the_host_room_does_not_displace_a_faster_one():
    """Two layers whose outputs are both fetched, a host budget just above what offloading
    needs: chunks of 16 now fit too, by recomputing where the shrunk host room (the search
    again) sends them, at 38x the predicted extra time of chunks of 4, which offload and fit
    (a review). The session keeps the fastest chunk size that fits."""
    g, fetches, fd = _two_layers(rg.nn.GRUCell, rg.nn.LSTMCell, fetch_first=True)
    keep = rg.Session(g, device=SimulatedDevice()).memory_plan(fetches, fd).predicted_peak
    budget, host = keep * 4 // 10, 811_106

    def plan_of(**kw):
        return rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          host_budget=host, **kw).memory_plan(fetches, fd)

    plan = plan_of()
    assert plan.fits and plan.host_bytes <= host, str(plan)
    fitting = [p for p in (plan_of(passes={"chunk_steps": c}) for c in (4, 16)) if p.fits]
    assert len(fitting) == 2 and fitting[1].extra_time > 10 * fitting[0].extra_time
    assert plan.extra_time <= min(p.extra_time for p in fitting) * 1.05, str(plan)
    dev = SimulatedDevice(capacity=budget, host_capacity=host)
    got = rg.Session(g, device=dev, memory_budget=budget).run(fetches, fd)
    for a, b in zip(got, rg.Session(g).run(fetches, fd)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6 * np.abs(b).max())
    assert dev.peak_bytes <= budget and dev.host_peak <= host


def test_a_host_capacity_set_later_is_planned_for_at_once():
    """A Session without a host_budget plans for its device's host capacity: set anew, the
    next plan is made for it, not taken from the plans of the old one (a review)."""
    g, X, fetches = lstm_graph(batch=8, hidden=32, inputs=4, proj=4)
    fd = feed(X, T)
    dev = SimulatedDevice()
    floor = rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                       memory_strategy="offload").memory_plan(fetches, fd).min_budget
    dev.capacity = floor
    sess = rg.Session(g, device=dev, memory_budget=floor)
    wide = sess.memory_plan(fetches, fd)
    assert wide.fits and wide.host_bytes > 0, str(wide)
    dev.host_capacity = wide.host_bytes // 4
    narrow = sess.memory_plan(fetches, fd)
    assert narrow.host_budget == wide.host_bytes // 4, str(narrow)
    assert narrow.host_bytes <= narrow.host_budget or not narrow.fits, str(narrow)
