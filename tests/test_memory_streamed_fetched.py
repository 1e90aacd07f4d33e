"""stream_outputs with a fetched output: the loop goes on stacking the fetched value (its
outputs y, logits of a dense head, y + b, log_softmax) while the loss and its gradient are
worked out per step, so only the fetched stack stays whole (not its gradient, the head's
temporaries or the loss's). Values against the unstreamed run (the fetched stack bit for bit
where it is the loop's own output), the padded steps of a run with sequence_length, the plan
that fits a budget the unstreamed program cannot, and what is still refused."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program
from test_memory_streamed import STREAM, rerun_saved, run_planned
from test_memory_streamed_targets import _unstreamed

B, I = 4, 3


def _graph(T, H, head, lengths=False, time_major=False, V=6, seed=0):
    """An LSTM over X, `head(y, labels)` -> (loss, fetched tensors); fetches: the loss, every
    variable's gradient, then the fetched tensors."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I] if time_major else [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [None, B] if time_major else [B, None], name="labels")
        S = rg.placeholder(rg.int32, [B], name="S") if lengths else None
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, sequence_length=S,
                                 time_major=time_major)
        loss, shown = head(y, L, V)
        fetches = [loss] + rg.gradients(loss, rg.global_variables()) + shown
    rs = np.random.RandomState(seed)
    lead = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*lead, I).astype(np.float32),
          L: rs.randint(0, V, size=lead).astype(np.int32)}
    if lengths:
        fd[S] = np.array([T, 2, 1, T - 1], np.int32)
    return g, fetches, fd


def _squares(y, L, V):
    return rg.reduce_sum(y * y), [y]


def _bias(y, L, V):   # (not zero where y is: the loop runs every row and step)
    b = rg.get_variable("b", [y.shape[-1]], rg.float32,
                        initializer=rg.constant_initializer(0.5))
    z = y + b
    return rg.reduce_mean(rg.square(z)), [z, y]


def _logits(y, L, V):
    logits = rg.layers.dense(y, V)
    xe = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=L, logits=logits)
    return rg.reduce_mean(xe), [logits]


def _log_probs(y, L, V):
    logp = rg.nn.log_softmax(rg.layers.dense(y, V))
    return -rg.reduce_mean(rg.reduce_sum(rg.one_hot(L, V, dtype=rg.float32) * logp, -1)), [logp]


HEADS = {"squares": _squares, "bias": _bias, "logits": _logits, "log_probs": _log_probs}
STACKS = {"squares": 1, "bias": 2, "logits": 1, "log_probs": 1}   # the forward loop's, streamed
SHOWN = {"squares": 1, "bias": 2, "logits": 1, "log_probs": 1}    # fetched tensors


def _stacks(loop):
    """The loop's stacked per-step outputs (not its residuals)."""
    op = loop.op
    at = op.out_ports().offset("output")
    return loop.outputs[at:at + len(op.body.results["output"])]


def _streams(sess):
    fwd = _loops(_program(sess).graph)[0]
    return fwd, [n.name for n in fwd.op.body.nodes if "/streamed" in n.name]


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("lengths", [False, True])
def test_a_fetched_tensor_is_stacked_while_the_loss_streams(head, lengths):
    T, H = 9, 5
    g, fetches, fd = _graph(T, H, HEADS[head], lengths)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    fwd, moved = _streams(sess)
    assert moved, "the loss does not stream"
    assert len(_stacks(fwd)) == STACKS[head], [o.type for o in _stacks(fwd)]   # none twice
    _close(got, want, rtol=2e-5)
    shown = SHOWN[head]
    for a, b in zip(got[-shown:], want[-shown:]):
        assert a.shape == b.shape and a.dtype == b.dtype
    if head == "squares":   # the loop's own stack, taken back batch-major: the same bits
        assert np.array_equal(got[-1], want[-1])
    if lengths:   # past a row's length: what the whole-tensor ops made there, bit for bit
        for r, n in enumerate(fd[next(k for k in fd if k.name.startswith("S"))]):
            for a, b in zip(got[-shown:], want[-shown:]):
                np.testing.assert_array_equal(a[r, n:], b[r, n:])


def test_a_fetched_time_major_output_is_the_loops_own_stack():
    """Time-major, the fetched y is the stack itself: the loop stacks it once, as before."""
    T, H = 7, 5
    g, fetches, fd = _graph(T, H, _squares, lengths=True, time_major=True)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    fwd, moved = _streams(sess)
    assert moved and len(_stacks(fwd)) == 1
    assert np.array_equal(got[-1], want[-1])
    _close(got, want, rtol=2e-5)


def bidirectional(head, T=8, H=4, seed=3, passes=STREAM, device="cpu"):
    """An LSTM forward and a GRU backward direction over X [B, T, I] with sequence_length S,
    `head(fw, bw)` -> (loss, fetched tensors); returns (values with `passes` on `device`,
    unstreamed values, that program's forward loops)."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S")
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(H), rg.nn.GRUCell(H), X, sequence_length=S, dtype=rg.float32)
        loss, shown = head(fw, bw)
        fetches = [loss] + rg.gradients(loss, rg.global_variables()) + shown
    fd = {X: np.random.RandomState(seed).randn(B, T, I).astype(np.float32),
          S: np.array([T, 3, 1, 6], np.int32)}
    sess = rg.Session(g, device=device, passes=passes)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    return got, want, [n for n in _loops(_program(sess).graph) if not n.is_gradient]


def test_fetched_outputs_of_both_directions_stream():
    """bidirectional_dynamic_rnn with both outputs fetched and sum(fw**2) + sum(bw**2) as the
    loss: each direction's loss streams, each output is stacked once (the backward one taken
    back through its reversal)."""
    got, want, forward = bidirectional(
        lambda fw, bw: (rg.reduce_sum(fw * fw) + rg.reduce_sum(bw * bw), [fw, bw]))
    assert len(forward) == 2
    for loop in forward:
        assert any("/streamed" in n.name for n in loop.op.body.nodes)
        assert len(_stacks(loop)) == 1
    assert np.array_equal(got[-2], want[-2]) and np.array_equal(got[-1], want[-1])
    _close(got, want, rtol=2e-5)


def test_a_fetched_streamed_program_saves_and_reruns(tmp_path):
    g, fetches, fd = _graph(6, 4, _logits, lengths=True)
    rerun_saved(rg.Session(g, passes=STREAM), g, fetches, fd, tmp_path)


def test_fetched_merged_rows_stay_whole_and_the_plan_says_why():
    """reshape(y, [-1, H]) fetched: the rows of every step merged, which the loop cannot stack
    as it goes. Nothing moves (the same values bit for bit), and a plan that cannot fit says
    why in its notes, naming the loop."""
    def head(y, L, V):
        rows = rg.reshape(y, [-1, y.shape[-1]])
        return rg.reduce_sum(rows * rows), [rows]
    g, fetches, fd = _graph(40, 16, head)
    _unstreamed(g, fetches, fd)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
    assert not plan.fits
    said = [n for n in plan.notes if n.startswith("stream_outputs: ")]
    assert any("rnn/while" in n and "is fetched or kept whole" in n for n in said), plan.notes
    assert "note: stream_outputs: rnn/while" in str(plan)


@pytest.mark.parametrize("time_major", [False, True])
def test_a_fetched_output_gradient(time_major):
    """dloss/dy fetched. Batch-major it is made per step in the forward loop and stacked (the
    backward loop reads its time-major rows in sorted order, worked out per step there);
    time-major without lengths it is the very value the backward loop reads a row of per
    step, which streaming would keep twice (stacked, and saved for that loop), so nothing
    moves and the plan's notes say why."""
    T, H = 7, 4

    def head(y, L, V):
        loss = rg.reduce_sum(y * y)
        return loss, rg.gradients(loss, [y])
    g, fetches, fd = _graph(T, H, head, lengths=not time_major, time_major=time_major)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    _close(got, want, rtol=2e-5)
    fwd, moved = _streams(sess)
    assert bool(moved) == (not time_major)
    if time_major:
        for a, b in zip(got, want):
            assert np.array_equal(a, b)
        plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
        assert any(n.startswith("stream_outputs: rnn/while") and "is fetched and a loop reads "
                   "its rows" in n for n in plan.notes), plan.notes


@pytest.mark.parametrize("strategy", ["offload", "recompute"])
def test_a_budget_only_the_streamed_program_meets(strategy):
    """T = 120, H = 32, y fetched: the smallest budget a plan fits is well below the unstreamed
    program's (y, its gradient and the loss's temporaries whole); at that budget the plan
    streams the loss, keeps y stacked, and runs within it as predicted, with the
    unconstrained values."""
    T, H = 120, 32
    g, fetches, fd = _graph(T, H, _squares)
    off = rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                     passes={"stream_outputs": False}).memory_plan(fetches, fd)
    budget = rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                        memory_strategy=strategy).memory_plan(fetches, fd).min_budget
    assert budget < 0.8 * off.min_budget, (budget, off.min_budget)
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    got = run_planned(sess, plan, budget, strategy, g, fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    _close(got, want, rtol=2e-5)
    assert np.array_equal(got[-1], want[-1])


# --- review cases ----------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["y + 0.5", "time-major y"])
def test_a_fed_value_the_loop_would_make_is_not_streamed(which):
    """A value the caller feeds replaces what the graph computes: the pass must not work it
    out per step from the loop's rows (it did, silently ignoring the fed value). Nothing moves
    in that loop, forced or under a budget, and the values are those of the fed one."""
    T, H = 7, 5
    time_major = which == "time-major y"
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I] if time_major else [B, None, I], name="X")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, time_major=time_major)
        z = y if time_major else y + 0.5
        loss = rg.reduce_sum(z * z)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(0)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(np.float32), z: rs.randn(*shape, H).astype(np.float32)}
    want = float(np.sum(fd[z].astype(np.float64) ** 2))
    _unstreamed(g, fetches, fd)
    assert abs(rg.Session(g, passes=STREAM).run(fetches[0], fd) - want) < 1e-4 * want
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
    assert any("is fed (the fed value replaces it)" in n for n in plan.notes), plan.notes


def test_a_fetched_int_sum_over_time_keeps_its_dtype():
    """cast(y * 10 + 5, int32) fetched and summed over time: the sum streams (cast is per-step
    work) and the sum over the stacked rows keeps int32 (NumPy's sum gives int64)."""
    def head(y, L, V):
        k = rg.cast(y * 10.0 + 5.0, rg.int32)
        return rg.reduce_sum(y * y), [rg.reduce_sum(k, axis=1), k]
    g, fetches, fd = _graph(6, 4, head)
    got = rg.Session(g, passes=STREAM).run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    for a, b in zip(got[-2:], want[-2:]):
        assert a.dtype == b.dtype == np.int32 and np.array_equal(a, b)
    _close(got, want, rtol=2e-5)
