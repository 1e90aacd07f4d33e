"""The predicted peak of loops nested in a loop body, against the measured one.

An outer while_loop whose body runs another while_loop: its gradient loop's body runs the inner
loop's gradient loop, whose trip is a row of the step counts the outer forward loop stacked.
The model reads that row's bound (the inner forward loop's steps) and counts the inner
gradient loop's final state as the new buffers a step makes; before, it counted them as the
initial state's arrays (144 B short here, up to 560 B in an audit: plans said they fit and
ran out of memory), found no floor without swap_memory (sizes unknown), and under-counted a
chunked inner loop. Each run on a simulated device whose capacity is the budget."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice


def _graph(outer, swap, inner, T=4, B=3, H=8, I=3):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I], name="X")
        W = rg.get_variable("W", [H, H])
        U = rg.get_variable("U", [I, H])

        def body(t, h):
            z = rg.tanh(rg.matmul(h, W) + rg.matmul(rg.gather(X, t), U))
            _, z = rg.while_loop(lambda j, z: j < 5,
                                 lambda j, z: (j + 1, rg.tanh(rg.matmul(z, W)) * 0.5 + z),
                                 [rg.constant(0), z], maximum_iterations=inner)
            return t + 1, z

        _, h = rg.while_loop(lambda t, h: t < rg.shape(X)[0], body,
                             [rg.constant(0), rg.zeros([B, H])], maximum_iterations=outer,
                             swap_memory=swap)
        loss = rg.reduce_sum(h * h)
        fetches = [loss] + rg.gradients(loss, [W, U])
    fd = {X: np.random.RandomState(0).randn(T, B, I).astype(np.float32)}
    return g, fetches, fd


def _session(g, budget=None):
    dev = SimulatedDevice() if budget is None else SimulatedDevice(capacity=int(budget))
    sess = rg.Session(g, device=dev, memory_budget=None if budget is None else int(budget))
    with g.as_default():
        sess.run(rg.global_variables_initializer())
    return sess


def _run(sess, fetches, fd):
    out = sess.run(fetches, fd, report=True)
    return out, sess.last_run_report.peak_bytes


@pytest.mark.parametrize("outer,swap,inner,T,I", [
    (2, True, 1, 4, 3),    # 3,756 predicted against 3,900 measured before (X's running sum)
    (2, True, 1, 6, 3),    # ... the gap followed X's size: 216 B
    (3, True, 2, 4, 5),
    (2, False, 3, 4, 3),   # 4,372 against 4,404 before
    (1, True, 1, 4, 3),    # one outer step: one prefetch row per offloaded stack, not two
])
def test_a_nested_loop_is_predicted_as_measured_without_a_budget(outer, swap, inner, T, I):
    g, fetches, fd = _graph(outer, swap, inner, T=T, I=I)
    sess = _session(g)
    plan = sess.memory_plan(fetches, fd)
    assert not plan.unknown   # (every size known: the inner gradient loop's steps included)
    _, measured = _run(sess, fetches, fd)
    assert plan.predicted_peak == measured


@pytest.mark.parametrize("outer,swap,inner", [
    (3, False, 2),   # no floor before (the inner gradient loop's stacks had unknown sizes)
    (2, True, 2),    # at the unconstrained peak, a chunked plan ran out of memory before
])
def test_budgets_from_the_floor_up_fit_and_run_within_them(outer, swap, inner):
    g, fetches, fd = _graph(outer, swap, inner)
    ref, top = _run(_session(g), fetches, fd)
    floor = _session(g, 1).memory_plan(fetches, fd).min_budget
    assert floor is not None and floor < top
    for k in range(5):
        budget = floor + (top - floor) * k // 4
        sess = _session(g, budget)
        plan = sess.memory_plan(fetches, fd)
        assert plan.fits, (budget, str(plan))
        out, measured = _run(sess, fetches, fd)
        assert measured == sess.last_run_report.predicted_peak <= budget, (budget, measured)
        for a, b in zip(out, ref):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * (np.abs(b).max() or 1.0))
