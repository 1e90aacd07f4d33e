"""What the memory planner says when a budget cannot be met or cannot be checked (a fresh-eyes
review of issue 29): a loop of unknown length never "fits" a budget, a budget above the
device's capacity is refused when the Session is made, and the out-of-memory errors name the
run (its fetches and the user's line) and the lever that helps (the host budget)."""
import os
import re

import numpy as np
import pytest

import rnngraph as rg

HERE = os.path.basename(__file__)
B, H = 8, 32


def _while_graph(maximum_iterations=None):
    g = rg.Graph()
    with g.as_default():
        h0 = rg.placeholder(rg.float32, [B, H], name="h0")
        W = rg.get_variable("W", [H, H], initializer=rg.random_normal_initializer(stddev=0.1, seed=1))
        _, hN = rg.while_loop(lambda i, h: i < 40, lambda i, h: (i + 1, rg.tanh(rg.matmul(h, W))),
                              [rg.constant(0), h0], maximum_iterations=maximum_iterations)
        grads = rg.gradients(rg.reduce_sum(hN), [W])
        init = rg.global_variables_initializer()
    feed = {h0: np.random.RandomState(0).randn(B, H).astype(np.float32)}
    return g, grads, init, feed


def _session(g, init, **kw):
    s = rg.Session(g, **kw)
    s.run(init)
    return s


def test_a_loop_of_unknown_length_cannot_fit_a_budget_and_the_run_says_why():
    """Before, its stacks counted 0 bytes: the plan said "fits" at 20,000 bytes and the run
    took 16x that on the CPU."""
    g, grads, init, feed = _while_graph()
    s = _session(g, init, memory_budget=20_000)
    plan = s.memory_plan(grads, feed)
    assert not plan.fits and plan.unknown
    assert "CANNOT BE CHECKED" in str(plan) and "maximum_iterations" in str(plan)
    assert "loop 'while'" in plan.unknown[0]   # the user's loop first, not its gradient
    with pytest.raises(rg.OutOfMemoryError) as e:
        s.run(grads, feed)
    msg = str(e.value)
    assert "cannot be checked" in msg and "maximum_iterations=" in msg
    assert f"built at {HERE}:" in msg and f"at {HERE}:" in msg.split("cannot be checked")[1]


def test_the_plan_the_run_and_the_cli_count_the_same_unknown_sizes():
    """The plan's note counted values, the run's error ops (8 against 2 for one program); the
    CLI words it as the run does (cli.py uses the same ops_unknown)."""
    import re
    g, grads, init, feed = _while_graph()
    s = _session(g, init, memory_budget=20_000)
    plan = s.memory_plan(grads, feed)
    said = f"{len(plan.unknown)} op{'s' if len(plan.unknown) != 1 else ''} make"
    assert re.search(rf"\b{said}s? values whose sizes are unknown", str(plan))
    with pytest.raises(rg.OutOfMemoryError, match=rf"\b{said}s? values whose sizes"):
        s.run(grads, feed)


def test_without_a_budget_a_loop_of_unknown_length_runs():
    g, grads, init, feed = _while_graph()
    s = _session(g, init)
    got = s.run(grads, feed)
    assert np.isfinite(got[0]).all() and s.memory_plan(grads, feed).fits


def test_a_bounded_while_loop_is_planned_and_runs_within_its_budget():
    g, grads, init, feed = _while_graph(maximum_iterations=40)
    want = _session(g, init).run(grads, feed)
    free = _session(g, init, device=rg.SimulatedDevice(10**8))
    free.run(grads, feed)
    peak = free.last_run_report.peak_bytes
    budget = int(peak * 0.6)
    s = _session(g, init, memory_budget=budget, device=rg.SimulatedDevice(budget))
    plan = s.memory_plan(grads, feed)
    assert plan.fits and not plan.unknown
    got = s.run(grads, feed)
    assert s.last_run_report.peak_bytes <= budget
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw, name", [
    (dict(memory_budget=10**6, device=rg.SimulatedDevice(100_000)), "memory_budget"),
    (dict(memory_budget=10**5, host_budget=5_000,
          device=rg.SimulatedDevice(10**6, host_capacity=1_000)), "host_budget")])
def test_a_budget_above_the_device_capacity_is_refused_when_the_session_is_made(kw, name):
    g, grads, init, feed = _while_graph(maximum_iterations=40)
    with pytest.raises(ValueError) as e:
        rg.Session(g, **kw)
    msg = str(e.value)
    assert msg.startswith(f"{name}=") and "capacity" in msg and f"{HERE}:" in msg


def test_a_budget_at_the_capacity_is_accepted():
    g, grads, init, feed = _while_graph(maximum_iterations=40)
    s = rg.Session(g, memory_budget=100_000, device=rg.SimulatedDevice(100_000))
    assert s.memory_budget == 100_000


def _lstm(T=30):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, T, 3], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(16), X, dtype=rg.float32)
        loss = rg.reduce_mean(rg.square(out))
        grads = rg.gradients(loss, rg.trainable_variables())
        init = rg.global_variables_initializer()
    return g, loss, grads, init, {X: np.random.RandomState(0).randn(4, T, 3).astype(np.float32)}


def test_an_unmeetable_budget_names_the_run_and_the_smallest_budget_that_fits():
    g, loss, grads, init, feed = _lstm()
    s = _session(g, init, memory_budget=100)
    with pytest.raises(rg.OutOfMemoryError) as e:
        s.run([loss] + grads, feed)
    msg = str(e.value)
    assert f"'{loss.name}'" in msg and f"at {HERE}:" in msg   # the first fetch, the run's line
    floor = s.memory_plan([loss] + grads, feed).min_budget
    assert f"smallest budget a plan was found to fit is {floor} bytes" in msg
    assert "host_budget" not in msg   # (the session set none: not a lever worth naming)
    assert _session(g, init, memory_budget=floor).memory_plan([loss] + grads, feed).fits


def test_with_a_host_budget_the_error_names_it_as_a_lever():
    g, loss, grads, init, feed = _lstm()
    s = _session(g, init, memory_budget=100, host_budget=1_000, memory_strategy="offload")
    with pytest.raises(rg.OutOfMemoryError,
                       match=r"at host_budget=1000 bytes, 1000 B: a larger host budget may "):
        s.run(grads, feed)


def test_the_simulated_host_running_out_names_the_loop_and_the_stack():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, 30, 3], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(16), X, dtype=rg.float32, swap_memory=True)
        grads = rg.gradients(rg.reduce_mean(rg.square(out)), rg.trainable_variables())
        init = rg.global_variables_initializer()
    s = _session(g, init, device=rg.SimulatedDevice(10**8, host_capacity=1_000))
    with pytest.raises(rg.OutOfMemoryError) as e:
        s.run(grads, {X: np.zeros((4, 30, 3), np.float32)})
    msg = str(e.value)
    assert "simulated host memory exhausted" in msg and "host capacity of 1000 bytes" in msg
    assert "of loop 'rnn/while' (built at " + HERE in msg and "host_budget=" in msg
    # the stack by the user's op (as the printed plan names it), and as compiled where renamed
    assert re.search(r"offloading the saved stack rnn/while/lstm_cell/\w+ (\(compiled as "
                     r"[\w/:]+\) )?of loop", msg), msg


def test_a_loop_that_recomputes_nothing_has_no_checkpoint_schedule():
    g, loss, grads, init, feed = _lstm()
    (lp,) = _session(g, init).memory_plan(grads, feed).loops
    assert lp.checkpoint_schedule == "none"
    s = _session(g, init, memory_budget=10**9, memory_strategy="recompute")
    assert all(lp.checkpoint_schedule == "none" for lp in s.memory_plan(grads, feed).loops)
