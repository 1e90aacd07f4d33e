"""stream_outputs with a max over time (max-pooling a sequence): reduce_max(y, time) becomes a
running max the forward loop carries, and its gradient's count of tied steps a running count
beside it (c' = c * (m == m') + (x_t == m')), so the backward loop works the gradient out per
step and the output stack is never whole. Values against the unstreamed run (the max and its
ties exact: bit for bit), ties that change the gradient, the plan that fits a budget the
unstreamed program cannot, and what is refused."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program
from test_memory_streamed import STREAM, rerun_saved, run_planned
from test_memory_streamed_targets import _unstreamed

B, I = 4, 3


def _graph(T, H, time_major=False, keepdims=False, cell="lstm", lengths=False, grads=True,
           target=None, seed=0):
    """max over time of an RNN's outputs (plus a fed [B, T, H] `target` where given); the loss
    sum(max ** 2); fetches: the loss, the max, then every variable's gradient."""
    g = rg.Graph()
    with g.as_default():
        lead = [None, B] if time_major else [B, None]
        X = rg.placeholder(rg.float32, lead + [I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S") if lengths else None
        c = {"lstm": rg.nn.LSTMCell, "gru": rg.nn.GRUCell}[cell](H)
        y, _ = rg.nn.dynamic_rnn(c, X, dtype=rg.float32, sequence_length=S,
                                 time_major=time_major)
        P = None
        if target is not None:
            P = rg.placeholder(rg.float32, lead + [H], name="P")
            y = y + P
        m = rg.reduce_max(y, axis=0 if time_major else 1, keepdims=keepdims)
        loss = rg.reduce_sum(rg.square(m))
        fetches = [loss, m] + (rg.gradients(loss, rg.global_variables()) if grads else [])
    rs = np.random.RandomState(seed)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(np.float32)}
    if lengths:
        fd[S] = np.array([T, 2, 1, T - 1], np.int32)
    if target is not None:
        fd[P] = target
    return g, fetches, fd


def _runs_streamed(g, fetches, fd):
    """Run streamed and unstreamed: (streamed values, unstreamed values, the names of the
    streamed forward loop's body nodes, the streamed program's loops)."""
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    loops = _loops(_program(sess).graph)
    names = {n.name for n in loops[0].op.body.nodes}
    assert "ReduceMax/streamed/acc" in names, names
    return got, want, names, loops


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("keepdims", [False, True])
def test_a_max_over_time_streams_with_its_gradient(cell, time_major, keepdims):
    g, fetches, fd = _graph(9, 5, time_major, keepdims, cell)
    got, want, names, _ = _runs_streamed(g, fetches, fd)
    assert any(n.startswith("gradients/ReduceMax_grad/ReduceSum/streamed") for n in names)
    assert np.array_equal(got[1], want[1])   # a max is exact: the same bits
    _close(got, want, rtol=1e-6)


def test_only_the_max_fetched_streams_without_a_backward_loop():
    g, fetches, fd = _graph(9, 5, grads=False)
    got, want, _, loops = _runs_streamed(g, fetches, fd)
    assert len(loops) == 1
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


def test_tied_steps_share_the_gradient_as_the_whole_tensor_op_splits_it():
    """y + P with P = 1e8 at some steps of each row: in float32 those sums are all 1e8 (y is far
    below half an ulp), so the max ties at 2, 3 or 4 steps a row and reduce_max's gradient
    goes a half, a third or a quarter to each. The streamed count gives the same gradients;
    a count of one tie would give 2-4 times as much."""
    T, H = 8, 3
    P = np.full((B, T, H), -1e8, np.float32)
    for r, steps in enumerate([(1, 2), (0, 3, 7), (2, 4, 5, 6), (6, 7)]):
        P[r, list(steps)] = 1e8
    g, fetches, fd = _graph(T, H, target=P)
    got, want, _, _ = _runs_streamed(g, fetches, fd)
    assert np.array_equal(got[1], want[1]) and np.all(got[1] == np.float32(1e8))
    _close(got, want, rtol=1e-6)
    # (1e8 + 16 t: no two steps equal, one step takes the whole gradient of each row)
    untied = np.where(P > 0, np.float32(1e8) + 16 * np.arange(T, dtype=np.float32)[:, None], P)
    key = next(k for k in fd if k.name.startswith("P"))
    other = rg.Session(g, passes=STREAM).run(fetches, {**fd, key: untied})
    assert not np.allclose(other[2], got[2])   # (the ties do change the gradient)


def test_a_max_under_a_budget_only_the_streamed_program_meets():
    """T = 120, H = 32: the smallest budget a plan fits streaming the max is below the
    unstreamed program's (the output stack and its gradient whole) by most of the stack;
    at that budget the plan runs within it as predicted, with the unconstrained values."""
    T, H = 120, 32
    g, fetches, fd = _graph(T, H)
    off = rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                     passes={"stream_outputs": False}).memory_plan(fetches, fd)
    for strategy in ("offload", "recompute"):
        budget = rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                            memory_strategy=strategy).memory_plan(fetches, fd).min_budget
        # (by most of the output stack's bytes: it is never whole)
        assert off.min_budget - budget >= 0.75 * B * T * H * 4, (budget, off.min_budget)
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy=strategy)
        plan = sess.memory_plan(fetches, fd)
        assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
        got = run_planned(sess, plan, budget, strategy, g, fetches, fd)
        _close(got, rg.Session(g).run(fetches, fd), rtol=2e-5)


def test_a_streamed_max_saves_and_reruns(tmp_path):
    g, fetches, fd = _graph(6, 4)
    rerun_saved(rg.Session(g, passes=STREAM), g, fetches, fd, tmp_path)


def test_a_max_over_time_with_sequence_length_stays_whole():
    """With sequence_length the loop runs the rows sorted by length, and the max keeps the
    rows: it would have to be put back in the caller's order, which the pass does not do yet.
    Nothing moves (the same values bit for bit) and the plan's notes name the max."""
    g, fetches, fd = _graph(8, 4, lengths=True)
    _unstreamed(g, fetches, fd)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
    assert any("ReduceMax (reduce_max)" in n for n in plan.notes), plan.notes


def test_a_max_over_the_hidden_axis_is_not_a_running_max():
    """reduce_max over the last axis is per-step work, not a max over time: it is not carried
    (the loss over it, a sum over time, streams as any sum does)."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        loss = rg.reduce_sum(rg.square(rg.reduce_max(y, axis=2)))
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(1).randn(B, 7, I).astype(np.float32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    names = {n.name for n in _loops(_program(sess).graph)[0].op.body.nodes}
    assert "ReduceMax/streamed/acc" not in names
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-6)
