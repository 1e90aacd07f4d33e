"""The saved-tensor planner: a pure function from a compiled schedule to a printable plan."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.memory import CPU_PROFILE, GPU_PROFILE, make_plan
from rnngraph.memory.planner import _best_interval, _pareto, _Option
from rnngraph.memory.shapes import infer_shapes
from rnngraph.memory.simulate import LoopChoice
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import STACK_PASSES_OFF, feed, lstm_graph


def _compiled(g, fetches, X, passes=STACK_PASSES_OFF):
    sess = rg.Session(g, device=SimulatedDevice(), passes=passes)
    return sess, sess.compile(fetches, [X])


def test_shapes_are_inferred_through_loop_bodies_with_unknown_batch():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, 3], name="X")   # batch and time unknown
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        loss = rg.reduce_sum(out)
        grads = rg.gradients(loss, rg.global_variables())
    sess, prog = _compiled(g, [loss] + grads, X)
    info = infer_shapes(prog.graph, prog.nodes, {prog.inputs[0]: (7, 11, 3)})
    loops = [n for n in prog.nodes if n.op.name == "loop"]
    assert [info.steps[n] for n in loops] == [11, 11]        # the backward trip is known too
    fwd = loops[0]
    for r in fwd.op.body.results["residual"]:
        assert info.type(r).shape[0] == 7                       # batch from the zero state's fill
    plan = sess.memory_plan([loss] + grads, {X: (7, 11, 3)})
    assert all(s.bytes_per_step == 7 * 5 * 4 for s in plan.saved)


def test_the_plan_is_a_pure_function_of_the_schedule():
    g, X, fetches = lstm_graph(batch=8, hidden=32)
    _, prog = _compiled(g, fetches, X)
    version = prog.graph.version
    feeds = {prog.inputs[0]: (8, 60, 16)}
    a = make_plan(prog.schedule, feeds, budget=200_000)
    b = make_plan(prog.schedule, feeds, budget=200_000)
    assert str(a) == str(b) and prog.graph.version == version
    assert a.fits and a.predicted_peak <= 200_000 < a.keep_all_peak


def test_budgets_from_loose_to_tight_move_tensors_off_the_device():
    g, X, fetches = lstm_graph(batch=8, hidden=32)
    _, prog = _compiled(g, fetches, X)
    feeds = {prog.inputs[0]: (8, 60, 16)}
    loose = make_plan(prog.schedule, feeds, budget=10**9)
    assert {s.placement for s in loose.saved} == {"device"} and loose.extra_time == 0
    assert loose.predicted_peak == loose.keep_all_peak
    tight = make_plan(prog.schedule, feeds, budget=loose.keep_all_peak // 3)
    assert tight.fits and "device" != {s.placement for s in tight.saved}
    assert tight.extra_time > 0
    impossible = make_plan(prog.schedule, feeds, budget=1000)
    assert not impossible.fits and "OVER BUDGET" in str(impossible)
    assert any("no placement fits" in n for n in impossible.notes)


def test_strategies_restrict_the_placements():
    g, X, fetches = lstm_graph(batch=8, hidden=32)
    _, prog = _compiled(g, fetches, X)
    feeds = {prog.inputs[0]: (8, 60, 16)}
    budget = make_plan(prog.schedule, feeds).keep_all_peak // 3
    off = make_plan(prog.schedule, feeds, budget, strategy="offload")
    rec = make_plan(prog.schedule, feeds, budget, strategy="recompute")
    assert "recompute" not in {s.placement for s in off.saved}
    assert "host" not in {s.placement for s in rec.saved}
    assert "recompute" in {s.placement for s in rec.saved}
    uniform = make_plan(prog.schedule, feeds, budget, strategy="recompute", checkpoints="uniform")
    (lp,) = uniform.loops
    assert lp.checkpoint_schedule == "uniform" and lp.checkpoint_slots == 0
    assert 1 <= lp.checkpoint_every <= 60
    assert f"checkpoint every {lp.checkpoint_every} steps" in str(uniform)
    with pytest.raises(ValueError, match="memory strategy"):
        make_plan(prog.schedule, feeds, budget, strategy="magic")


def test_the_cost_model_prefers_hidden_transfers_on_a_gpu():
    g, X, fetches = lstm_graph(batch=8, hidden=32)
    _, prog = _compiled(g, fetches, X)
    feeds = {prog.inputs[0]: (8, 60, 16)}
    budget = make_plan(prog.schedule, feeds).keep_all_peak // 3
    gpu = make_plan(prog.schedule, feeds, budget, profile=GPU_PROFILE, device="gpu")
    assert gpu.fits and "host" in {s.placement for s in gpu.saved}
    assert gpu.loops[0].prefetch_depth >= 2        # asynchronous copies: prefetch ahead
    # a link 10^6 times slower makes recomputing cheaper than moving bytes
    slow = CPU_PROFILE.__class__(d2h_bytes_per_s=1e3, h2d_bytes_per_s=1e3)
    feeds = {prog.inputs[0]: (8, 400, 16)}
    budget = make_plan(prog.schedule, feeds).keep_all_peak // 3
    assert "recompute" not in {s.placement for s in make_plan(prog.schedule, feeds, budget).saved}
    plan = make_plan(prog.schedule, feeds, budget, profile=slow)
    assert plan.fits and {s.placement for s in plan.saved} == {"recompute"}


def test_residuals_read_outside_a_loop_stay_on_the_device_and_say_why():
    g, X, fetches = lstm_graph(batch=8, hidden=32)
    sess, prog = _compiled(g, fetches, X, passes=True)  # sinking reads a residual stack after the loop
    plan = make_plan(prog.schedule, {prog.inputs[0]: (8, 60, 16)}, budget=1000)
    pinned = [s for s in plan.saved if s.why.startswith("read by")]
    if not pinned:
        pytest.skip("the compiler passes no longer read residual stacks outside loops")
    assert all(s.placement == "device" for s in pinned)
    assert "read by" in str(plan)


def test_checkpoint_interval_balances_checkpoints_and_the_replayed_segment():
    k, mem = _best_interval(10000, 1000, 10000)       # ~ sqrt(10000 * 1000 / 10000) = 31.6
    assert 30 <= k <= 33
    assert mem == min((-(-10000 // j) - 1) * 1000 + j * 10000 for j in range(1, 200))
    assert _best_interval(0, 10, 10) == (1, 0)


def test_pareto_keeps_only_options_nothing_beats():
    c = LoopChoice({})
    opts = [_Option(100, 0.0, c), _Option(50, 1.0, c), _Option(60, 2.0, c), _Option(10, 3.0, c)]
    assert [(o.bytes, o.time) for o in _pareto(opts)] == [(100, 0.0), (50, 1.0), (10, 3.0)]


def test_a_graph_without_loops_has_an_empty_plan():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [4, 4], name="x")
        y = rg.reduce_sum(x * x)
    plan = rg.Session(g, device=SimulatedDevice()).memory_plan(y, {x: (4, 4)})
    assert plan.loops == [] and "no loop saves" in str(plan)
    assert plan.predicted_peak >= 2 * 64


def test_memory_plan_accepts_arrays_shapes_and_names():
    g, X, fetches = lstm_graph(batch=4, hidden=8, swap_memory=True)
    sess = rg.Session(g, device=SimulatedDevice())
    a = sess.memory_plan(fetches, feed(X, 9))
    b = sess.memory_plan(fetches, {"X": (4, 9, 16)})
    c = sess.memory_plan(fetches, {X: np.zeros((4, 9, 16), np.float32).tolist()})  # array-like
    assert a.predicted_peak == b.predicted_peak == c.predicted_peak
    assert a.loops[0].steps == 9


def test_a_plan_that_cannot_fit_names_what_holds_the_device_at_its_peak():
    """Without a projection the output stack and the loss's [T, B, H] temporaries are not
    saved tensors: no placement moves them, and the plan says so by name and size."""
    T, B, H = 50, 4, 32
    g, X, fetches = lstm_graph(batch=B, hidden=H, inputs=3, proj=None)
    sess = rg.Session(g, device=SimulatedDevice(), memory_budget=1)
    plan = sess.memory_plan(fetches, {X: (B, T, 3)})
    assert not plan.fits
    (note,) = [n for n in plan.notes if n.startswith("at the predicted peak")]
    # the output stack's gradient, one [T, B, H] float32 stack (25.0 KiB), named
    stack = T * B * H * 4
    assert f"'gradients/rnn/Transpose_1_grad/AddN' (add_n) {rg.memory.fmt_bytes(stack)}" \
        in note
    assert "loop 'gradients/rnn/while_grad' while it runs" in note
    assert f"'X' (fed) {rg.memory.fmt_bytes(T * B * 3 * 4)}" in note
    assert note.endswith(f"(of {rg.memory.fmt_bytes(plan.predicted_peak)})")


def test_recomputation_is_priced_at_the_fed_batch_not_at_one_row():
    """A batch unknown before running is the fed batch in the cost model, as in the byte
    counts: the same LSTM with its batch known or not gets the same recompute time (before, an
    unknown dim counted 1 in the FLOPs, so a plan priced recomputation B times too cheap and
    chose it over offloading where it was the slower of the two)."""
    times = []
    for batch in (16, None):
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float32, [batch, None, 8], name="X")
            out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(32), X, dtype=rg.float32)
            loss = rg.reduce_sum(out * out)
            fetches = [loss] + rg.gradients(loss, rg.global_variables())
        x = np.random.RandomState(0).randn(16, 50, 8).astype(np.float32)
        sess = rg.Session(g, device=SimulatedDevice(), memory_budget=60_000,
                          memory_strategy="recompute", passes=STACK_PASSES_OFF)
        plan = sess.memory_plan(fetches, {X: x})
        assert plan.bytes_by_placement()["recompute"] > 0, str(plan)
        times.append(plan.extra_time)
    # (the unknown batch also makes the program's shape ops run: a few more nodes)
    assert times[1] == pytest.approx(times[0], rel=0.05), times


def test_packed_active_rows_are_counted_at_most_every_row():
    """With sequence_length and the input's gradient, the products over the active rows pack
    them first (pack_rows: as many rows as the lengths say, known only when the run starts).
    The model counts every row, so a plan that says it fits runs: before, it counted nothing,
    and the run at the predicted peak ran out of memory 6,984 bytes short."""
    B, T, H, I = 3, 40, 6, 48
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(H), X, dtype=rg.float32, sequence_length=L)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables() + [X])
    fd = {X: np.random.RandomState(0).randn(B, T, I).astype(np.float32),
          L: np.array([40, 17, 40], np.int32)}
    budget = rg.Session(g, device=SimulatedDevice()).memory_plan(fetches, fd).predicted_peak
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy="offload")
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits
    got = sess.run(fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= plan.predicted_peak <= 1.05 * peak, (plan.predicted_peak, peak)
    want = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("strategy", ["recompute", "auto"])
def test_the_smallest_budget_reported_is_one_a_plan_fits(strategy):
    """A plan that does not fit names the smallest budget found; the plan made at that budget
    fits and runs within it. Before, each program variant reported its own floor, and at the
    smallest of them the planner picked another: a bidirectional GRU/LSTM with recompute
    reported 23,796 B, whose plan needed 23,916 B and ran out of memory."""
    T, B, I, H = 30, 4, 3, 8
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L")
        (a, b), _ = rg.nn.bidirectional_dynamic_rnn(rg.nn.GRUCell(H), rg.nn.LSTMCell(H), X,
                                                    dtype=rg.float32, sequence_length=L)
        loss = rg.reduce_sum(a) + rg.reduce_sum(b)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(0).randn(B, T, I).astype(np.float32),
          L: np.array([30, 3, 11, 30], np.int32)}
    low = rg.Session(g, device=SimulatedDevice(), memory_budget=1, memory_strategy=strategy)
    floor = low.memory_plan(fetches, fd).min_budget
    assert floor is not None
    sess = rg.Session(g, device=SimulatedDevice(capacity=floor), memory_budget=floor,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits, str(plan)
    sess.run(fetches, fd)
    assert sess.last_run_report.peak_bytes <= floor
