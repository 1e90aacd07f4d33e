"""Budgets and capacities as users write them: any integral number type is a byte count;
zero, negative, fractional below one byte, inf, NaN and non-numbers are refused with an error
naming the argument and the user's line; memory_plan plans for the shape it is given;
`rnngraph plan` fails (exit 1) when the plan does not fit and says the smallest budget."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.cli import main
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import feed, lstm_graph

GOOD = [(np.int64(10**9), 10**9), (np.int32(4096), 4096), (np.uint16(512), 512), (10**12, 10**12),
        (2.5e9, 2_500_000_000), (np.float32(3e6), 3_000_000), (1.5, 1),
        (np.array(10**6), 10**6)]   # (a 0-d array, as np.prod gives a size)
BAD = [(0, ValueError, "positive"), (-5, ValueError, "positive"), (np.int64(-1), ValueError, ""),
       (0.5, ValueError, "at least one byte"), (float("inf"), ValueError, "finite"),
       (float("-inf"), ValueError, "finite"), (float("nan"), ValueError, "finite"),
       (True, TypeError, "bool"), ("1GB", TypeError, "str"), ([100], TypeError, "list"),
       (np.array([100]), TypeError, "ndarray"), (np.array(-3), ValueError, "positive")]


@pytest.mark.parametrize("value,expected", GOOD)
def test_budgets_accept_any_integral_number_type(value, expected):
    sess = rg.Session(rg.Graph(), memory_budget=value, host_budget=value)
    assert sess.memory_budget == expected and type(sess.memory_budget) is int
    assert sess.host_budget == expected
    dev = SimulatedDevice(capacity=value, host_capacity=value)
    assert dev.capacity == expected and dev.host_capacity == expected


@pytest.mark.parametrize("value,error,words", BAD)
@pytest.mark.parametrize("arg", ["memory_budget", "host_budget"])
def test_bad_budgets_are_refused_naming_the_argument_and_line(arg, value, error, words):
    with pytest.raises(error, match=arg) as info:
        rg.Session(rg.Graph(), **{arg: value})
    assert words in str(info.value) and "test_memory_inputs.py:" in str(info.value)


@pytest.mark.parametrize("value,error,words", BAD)
@pytest.mark.parametrize("arg", ["capacity", "host_capacity"])
def test_bad_capacities_are_refused(arg, value, error, words):
    with pytest.raises(error, match=arg):
        SimulatedDevice(**{arg: value})


def test_a_capacity_set_later_is_checked_too():
    dev = SimulatedDevice(capacity=1000)
    with pytest.raises(ValueError, match="capacity"):
        dev.capacity = -1
    assert dev.capacity == 1000
    dev.capacity = np.int64(2000)
    assert dev.capacity == 2000 and dev.meter.capacity == 2000


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (float("nan"), ValueError),
                                        (0.5, ValueError), ("x", TypeError)])
def test_a_host_capacity_set_later_is_checked_too(bad, error):
    dev = SimulatedDevice(capacity=1000, host_capacity=500)
    with pytest.raises(error, match="SimulatedDevice.host_capacity"):
        dev.host_capacity = bad
    assert dev.host_capacity == 500
    dev.host_capacity = np.uint32(700)
    assert dev.host_capacity == 700 and type(dev.host_capacity) is int
    assert "host capacity 700 B" in dev.describe(), dev.describe()
    dev.host_capacity = None
    assert dev.host_capacity is None and "host" not in dev.describe()


def test_memory_plan_plans_for_the_shape_given():
    g, X, fetches = lstm_graph(batch=4, hidden=8, inputs=3, proj=None)
    sess = rg.Session(g, device=SimulatedDevice(), memory_budget=10**6)
    by_ints = sess.memory_plan(fetches, {X: (4, 20, 3)})
    by_numpy_ints = sess.memory_plan(fetches, {X: (np.int64(4), np.int32(20), 3)})
    by_array = sess.memory_plan(fetches, feed(X, 20))
    assert by_ints.predicted_peak == by_numpy_ints.predicted_peak == by_array.predicted_peak
    assert {s.steps for s in by_ints.saved} == {20}
    with pytest.raises(TypeError, match="tuple of ints"):
        sess.memory_plan(fetches, {X: (4.0, 20.0, 3.0)})
    with pytest.raises(ValueError, match="negative"):
        sess.memory_plan(fetches, {X: (4, -20, 3)})
    with pytest.raises(ValueError, match="expects shape"):
        sess.memory_plan(fetches, {X: (5, 20, 3)})     # the batch is fixed at 4


def test_rnngraph_plan_exits_1_when_the_plan_does_not_fit(capsys):
    assert main(["plan", "lstm", "--budget", "64MB", "--batch", "4"]) == 0
    assert "(fits)" in capsys.readouterr().out
    assert main(["plan", "lstm", "--budget", "2KB", "--batch", "4"]) == 1
    captured = capsys.readouterr()
    assert "OVER BUDGET" in captured.out
    assert "does not fit the budget of 2048 bytes" in captured.err
    need = int(captured.err.split("try --budget ")[1].split()[0])
    assert need > 2048
    # the budget it names is one a plan fits
    assert main(["plan", "lstm", "--budget", str(need), "--batch", "4"]) == 0
    assert "(fits)" in capsys.readouterr().out


def test_an_unmeetable_budget_fails_before_running_and_names_the_smallest_one():
    g, X, fetches = lstm_graph(batch=4, hidden=8, inputs=3, proj=None)
    fd = feed(X, 12)
    sess = rg.Session(g, memory_budget=1)            # the CPU device: the planner judges
    plan = sess.memory_plan(fetches, fd)
    assert not plan.fits and plan.min_budget > 1
    assert f"{plan.min_budget} bytes" in str(plan)
    with pytest.raises(rg.OutOfMemoryError, match=f"smallest budget a plan was found to fit is "
                                                  f"{plan.min_budget} bytes"):
        sess.run(fetches, fd)
    roomy = rg.Session(g, memory_budget=plan.min_budget)
    assert roomy.memory_plan(fetches, fd).fits
    roomy.run(fetches, fd)
