"""The predicted peak of loops nested in a loop body, against the measured one.

An outer while_loop whose body runs another while_loop: its gradient loop's body runs the inner
loop's gradient loop, whose trip is a row of the step counts the outer forward loop stacked.
The model reads that row's bound (the inner forward loop's steps) and counts the inner
gradient loop's final state as the new buffers a step makes; before, it counted them as the
initial state's arrays (144 B short here, up to 560 B in an audit: plans said they fit and
ran out of memory), found no floor without swap_memory (sizes unknown), and under-counted a
chunked inner loop. At three levels the innermost steps are stacked twice ([outer, middle]
steps): the bound holds for every element. Each run on a simulated device whose capacity is
the budget."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice


def _graph(outer, swap, inner, T=4, B=3, H=8, I=3, levels=2, inner_swap=False):
    """An outer loop of at most `outer` steps whose body runs a loop of `inner` steps, whose
    body (levels=3) runs another loop of `inner` steps."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I], name="X")
        W = rg.get_variable("W", [H, H])
        U = rg.get_variable("U", [I, H])

        def step(j, z):
            return j + 1, rg.tanh(rg.matmul(z, W)) * 0.5 + z

        def middle(j, z):
            j, z = step(j, z)
            return j, rg.while_loop(lambda j, z: j < 5, step, [rg.constant(0), z],
                                    maximum_iterations=inner)[1]

        def body(t, h):
            z = rg.tanh(rg.matmul(h, W) + rg.matmul(rg.gather(X, t), U))
            _, z = rg.while_loop(lambda j, z: j < 5, middle if levels == 3 else step,
                                 [rg.constant(0), z], maximum_iterations=inner,
                                 swap_memory=inner_swap)
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


@pytest.mark.parametrize("outer,swap,inner,levels", [
    (3, False, 2, 2),   # no floor before (the inner gradient loop's stacks had unknown sizes)
    (2, True, 2, 2),    # at the unconstrained peak, a chunked plan ran out of memory before
    (2, False, 2, 3),   # the innermost steps stacked twice: [outer, middle] (an audit)
    (2, True, 0, 2),    # an inner loop of no step: its empty rows' prefetch buffers take a byte
])
def test_budgets_from_the_floor_up_fit_and_run_within_them(outer, swap, inner, levels):
    g, fetches, fd = _graph(outer, swap, inner, levels=levels)
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


def test_a_bound_made_outside_the_outer_loop_reaches_its_inner_loop():
    """An inner loop's maximum_iterations min(N, 3) made outside the outer loop (N fed): the
    bound reaches the body as an invariant, so every size is known (before: 'unknown'),
    exact where N >= 3, and an upper bound where N is smaller."""
    B, H, I = 3, 8, 3
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I], name="X")
        N = rg.placeholder(rg.int32, [], name="N")
        W = rg.get_variable("W", [H, H])
        U = rg.get_variable("U", [I, H])
        m = rg.minimum(N, 3)

        def body(t, h):
            z = rg.tanh(rg.matmul(h, W) + rg.matmul(rg.gather(X, t), U))
            _, z = rg.while_loop(lambda j, z: j < m,
                                 lambda j, z: (j + 1, rg.tanh(rg.matmul(z, W)) * 0.5 + z),
                                 [rg.constant(0), z], maximum_iterations=m)
            return t + 1, z

        _, h = rg.while_loop(lambda t, h: t < rg.shape(X)[0], body,
                             [rg.constant(0), rg.zeros([B, H])], maximum_iterations=2)
        loss = rg.reduce_sum(h * h)
        fetches = [loss] + rg.gradients(loss, [W, U])
    x = np.random.RandomState(0).randn(4, B, I).astype(np.float32)
    for n in (5, 2):
        fd = {X: x, N: np.int32(n)}
        sess = _session(g)
        plan = sess.memory_plan(fetches, fd)
        assert not plan.unknown
        _, measured = _run(sess, fetches, fd)
        assert plan.predicted_peak == measured if n >= 3 else plan.predicted_peak > measured
