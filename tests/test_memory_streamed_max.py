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
from test_memory_streamed_fetched import bidirectional
from test_memory_streamed_targets import _unstreamed

B, I = 4, 3


def _graph(T, H, time_major=False, keepdims=False, cell="lstm", lengths=False, grads=True,
           target=None, seed=0, reduce=rg.reduce_max):
    """max (`reduce`) over time of an RNN's outputs (plus a fed [B, T, H] `target` where
    given); the loss sum(max ** 2); fetches: the loss, the max, then every variable's
    gradient."""
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
        m = reduce(y, axis=0 if time_major else 1, keepdims=keepdims)
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


def _runs_streamed(g, fetches, fd, op="ReduceMax", runs=1):
    """Run streamed and unstreamed (`runs` times each: the last run's values): (streamed
    values, unstreamed values, the names of the streamed forward loop's body nodes, the
    streamed program's loops)."""
    sess, plain = rg.Session(g, passes=STREAM), rg.Session(g)
    for _ in range(runs):
        got, want = sess.run(fetches, fd), plain.run(fetches, fd)
    loops = _loops(_program(sess).graph)
    names = {n.name for n in loops[0].op.body.nodes}
    assert f"{op}/streamed/acc" in names, names
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


def test_a_min_over_time_streams_alike():
    """reduce_min: a running min from the dtype's highest value, its ties counted alike."""
    T, H = 8, 3
    P = np.full((B, T, H), 1e8, np.float32)
    for r, steps in enumerate([(1, 2), (0, 3, 7), (5,), (6, 7)]):
        P[r, list(steps)] = -1e8
    for target in (None, P):
        g, fetches, fd = _graph(T, H, target=target, reduce=rg.reduce_min)
        got, want, _, _ = _runs_streamed(g, fetches, fd, "ReduceMin")
        assert np.array_equal(got[1], want[1])
        _close(got, want, rtol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # (NaN arithmetic, on purpose)
def test_nan_and_inf_in_the_maxed_values_as_the_whole_tensor_op():
    """A NaN at one step makes that max NaN (and its gradient NaN: no step equals it), -inf
    everywhere in a column makes every step a tie; the same in the compiled loops (accelerate
    compiles after a few runs: the last of several runs is compared; the two programs' outputs
    may differ there in their last bits, so the rest is compared to 1e-6)."""
    from rnngraph.runtime.session import HOT_AFTER   # (how many runs before compiling)
    T, H = 6, 3
    P = np.zeros((B, T, H), np.float32)
    P[0, 3, 1] = np.nan
    P[1, :, 2] = -np.inf
    g, fetches, fd = _graph(T, H, target=P)
    got, want, _, _ = _runs_streamed(g, fetches, fd, runs=HOT_AFTER + 2)
    assert np.isnan(got[1][0, 1]) and got[1][1, 2] == -np.inf
    for a, b in zip(got, want):   # (NaN and inf where the whole-tensor op has them)
        assert np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(np.isinf(a),
                                                                           np.isinf(b))
        ok = np.isfinite(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-6,
                                   atol=1e-6 * np.abs(b[ok]).max(initial=0.0))


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


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_max_over_time_with_sequence_length_streams(time_major, cell):
    """With sequence_length the loop runs the rows sorted by length: the running max and its
    count are put back in the caller's row order after the loop, and the backward loop reads
    the max, its count and its gradient (one per row) in its own order, every row run (the
    padded steps' zero outputs count in the max, as in the whole-tensor op). Values as the
    unstreamed run's: a loop run over every row may give outputs whose last bits differ from
    those of a loop over its active rows (BLAS over more rows), so the max too."""
    g, fetches, fd = _graph(8, 4, time_major, cell=cell, lengths=True)
    got, want, _, loops = _runs_streamed(g, fetches, fd)
    _close(got, want, rtol=1e-6)
    assert not any(loop.op.active_rows for loop in loops)   # (every row)


def test_padded_zeros_win_the_max_as_in_the_whole_tensor_op():
    """max over time of -y**2 - 1: below -1 at every step a row runs, and -1 at its padded
    steps (dynamic_rnn's outputs are zero there). So the max of each short row is -1, tied at
    each padded step, and its gradient splits among them: the streamed loop runs every row
    and step so that it sees them, as the whole-tensor op does."""
    T, H = 7, 3

    def graph():
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float32, [B, None, I], name="X")
            S = rg.placeholder(rg.int32, [B], name="S")
            y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, sequence_length=S)
            m = rg.reduce_max(-rg.square(y) - 1.0, axis=1)
            loss = rg.reduce_sum(rg.square(m))
            fetches = [loss, m] + rg.gradients(loss, rg.global_variables())
        return g, fetches, {X: np.random.RandomState(4).randn(B, T, I).astype(np.float32),
                            S: np.array([T, 3, 1, T - 2], np.int32)}
    g, fetches, fd = graph()
    got, want, _, _ = _runs_streamed(g, fetches, fd)
    assert (got[1][1:3] == -1).all()   # (the padded steps' zeros, exactly)
    _close(got, want, rtol=1e-6)


def test_max_pooling_both_directions_with_lengths():
    """bidirectional_dynamic_rnn with sequence_length, each direction max-pooled over time (the
    backward one through its reversal, which a max does not see), the pooled vectors
    concatenated under a dense layer: both directions' maxes stream."""
    def head(fw, bw):
        pooled = rg.concat([rg.reduce_max(fw, axis=1), rg.reduce_max(bw, axis=1)], -1)
        return rg.reduce_mean(rg.square(rg.layers.dense(pooled, 3))), [pooled]
    got, want, forward = bidirectional(head, seed=6)
    assert len(forward) == 2 and all(
        any(n.name.endswith("/streamed/acc") and "ReduceMax" in n.name
            for n in loop.op.body.nodes) for loop in forward)
    _close([got[-1]], [want[-1]], rtol=1e-6)
    _close(got, want, rtol=1e-6)


def _weighted(batch, weight_rows, H, cell="lstm"):
    """An RNN over X [batch, T, I] with lengths S, and a per-row weight W [weight_rows, 1, H]:
    (graph, X, S, W, outputs y); the caller adds its loss in the graph."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [batch, None, I], name="X")
        S = rg.placeholder(rg.int32, [batch], name="S")
        W = rg.placeholder(rg.float32, [weight_rows, 1, H], name="W")
        c = {"lstm": rg.nn.LSTMCell, "gru": rg.nn.GRUCell}[cell](H)
        y, _ = rg.nn.dynamic_rnn(c, X, dtype=rg.float32, sequence_length=S)
    return g, X, S, W, y


@pytest.mark.parametrize("weight_rows", [None, B])
def test_the_batch_unknown_when_the_graph_is_built(weight_rows, tmp_path):
    """With lengths and X's batch unknown when the graph is built: the max over time streams
    (its running max starts from a fill of the rows the loop's input has), batches of other
    sizes in the same session too; a per-row weight W of shape [weight_rows, 1, H] streams
    where its rows are static, not where it could be one row broadcast to all. The values
    are the unstreamed run's either way; the streamed max saves and reruns."""
    T, H = 6, 4
    g, X, S, W, y = _weighted(None, weight_rows, H)
    with g.as_default():
        pooled = rg.reduce_max(y, axis=1)
        weighted = rg.reduce_sum(rg.square(y * W))
        fetches = [weighted] + rg.gradients(weighted, rg.global_variables())
        pool = [pooled] + rg.gradients(rg.reduce_sum(rg.square(pooled)), rg.global_variables())
    rs = np.random.RandomState(8)
    fd = {X: rs.randn(B, T, I).astype(np.float32), S: np.array([3, T, 1, 5], np.int32),
          W: rs.randn(B, 1, H).astype(np.float32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    streamed = any("/streamed" in n.name for n in _loops(_program(sess).graph)[0].op.body.nodes)
    assert streamed == (weight_rows is not None)
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-6)
    sess = rg.Session(g, passes=STREAM)
    for rows, steps in ((B, T), (2, 9), (5, 3)):
        feed = {X: rs.randn(rows, steps, I).astype(np.float32),
                S: rs.randint(0, steps + 1, size=rows).astype(np.int32)}
        _close(sess.run(pool, feed), rg.Session(g).run(pool, feed), rtol=1e-6)
    names = {n.name for n in _loops(_program(sess).graph)[0].op.body.nodes}
    assert "ReduceMax/streamed/acc" in names, names
    rerun_saved(rg.Session(g, passes=STREAM), g, pool, feed, tmp_path)   # (its fill, too)


def test_a_max_over_the_hidden_axis_is_not_a_running_max():
    """reduce_max over the last axis is not a max over time: it is not carried. (Nor is it per-
    step row work yet, as a sum over the last axis is: nothing moves, the plan's note names
    it, and the values are the unstreamed ones bit for bit.)"""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        loss = rg.reduce_sum(rg.square(rg.reduce_max(y, axis=2)))
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(1).randn(B, 7, I).astype(np.float32)}
    _unstreamed(g, fetches, fd)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
    assert any("ReduceMax (reduce_max) reads" in n for n in plan.notes), plan.notes


# --- review cases ----------------------------------------------------------------------------

def test_a_nan_step_makes_the_max_nan_in_the_compiled_loop():
    """numba's max(a, nan) is a: the running max must not be that (the fused form of maximum
    keeps a NaN operand, as np.maximum does)."""
    pytest.importorskip("numba")
    T, H = 6, 3
    P = np.zeros((B, T, H), np.float32)
    P[0, 2, 1] = np.nan
    g, fetches, fd = _graph(T, H, target=P, grads=False)
    got = rg.Session(g, passes=STREAM, accelerate=True).run(fetches, fd)
    want = rg.Session(g, accelerate=False).run(fetches, fd)
    assert np.isnan(got[1][0, 1]) and np.array_equal(np.isnan(got[1]), np.isnan(want[1]))


def test_the_tie_count_fuses_with_the_cell():
    """The running count is made with where(), not cast(equal()): no fused kernel of the
    forward loop exports a bool (a kernel with mixed export types is not compiled by numba,
    which ran the cell on NumPy kernels there)."""
    g, fetches, fd = _graph(6, 4)
    sess = rg.Session(g, passes=STREAM)
    sess.run(fetches, fd)
    fwd = _loops(_program(sess).graph)[0]
    fused = [n for n in fwd.op.body.nodes if n.op.name == "fused"]
    assert fused and not any(np.dtype(v.type.dtype) == np.bool_ for n in fused
                             for v in n.outputs), [(n.name, [v.type for v in n.outputs])
                                                    for n in fused]


def test_a_fetched_count_of_ties_shares_the_running_count():
    """The loss's gradient counts the ties of the max, and so does a fetched
    reduce_sum(cast(equal(y, max)), 1): both read the one running count (int32 for the
    fetched one), and no whole-tensor equal(y, max) is left."""
    T, H = 8, 3
    P = np.full((B, T, H), -1e8, np.float32)
    P[:, 2:5] = 1e8
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        Q = rg.placeholder(rg.float32, [B, None, H], name="P")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32)
        y = y + Q
        m = rg.reduce_max(y, axis=1)
        ties = rg.reduce_sum(rg.cast(rg.equal(y, rg.expand_dims(m, 1)), rg.int32), axis=1)
        loss = rg.reduce_sum(rg.square(m))
        fetches = [loss, m, ties] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(2).randn(B, T, I).astype(np.float32), Q: P}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    assert got[2].dtype == np.int32 and np.array_equal(got[2], want[2]) and (got[2] == 3).all()
    _close(got, want, rtol=1e-6)
    graph = _program(sess).graph
    assert not [n.name for n in graph.nodes if n.op.name == "equal"]   # (none over all of y)
    assert "ReduceMax/streamed/acc" in {n.name for n in _loops(graph)[0].op.body.nodes}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("head", ["max", "weight"])
def test_a_streamed_program_with_lengths_saves_and_reruns(cell, head, tmp_path):
    """With lengths the backward loop runs every row and reads invariants one per row: their
    body params are typed with the rows unknown, as the loop's other values, so the saved
    program's types are those its ops infer when it is read back (they were not)."""
    T, H = 6, 4
    g, X, S, W, y = _weighted(B, B, H, cell)
    with g.as_default():
        loss = rg.reduce_sum(rg.square(rg.reduce_max(y, axis=1) if head == "max" else y * W))
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(2)
    fd = {X: rs.randn(B, T, I).astype(np.float32), S: np.array([T, 3, 3, 0], np.int32)}
    if head == "weight":
        fd[W] = rs.randn(B, 1, H).astype(np.float32)
    sess = rg.Session(g, passes=STREAM)
    _close(sess.run(fetches, fd), rg.Session(g).run(fetches, fd), rtol=1e-6)
    rerun_saved(sess, g, fetches, fd, tmp_path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # (0 / 0: no step equals the fed max)
@pytest.mark.parametrize("lengths", [False, True])
def test_a_fed_max_is_not_streamed(lengths):
    """The max fed by the caller replaces the one the loop would carry: nothing moves, and
    the values are those of the fed max (the unstreamed run's, NaN gradients included)."""
    g, fetches, fd = _graph(7, 4, lengths=lengths)
    m = fetches[1]
    fd[m] = np.ones((B, 4), np.float32)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches[:1] + fetches[2:], fd)
    want = rg.Session(g).run(fetches[:1] + fetches[2:], fd)
    assert np.isclose(got[0], 4 * B)   # (sum(1 ** 2): the fed max)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(
        fetches[:1] + fetches[2:], fd)
    assert any("ReduceMax is fed" in n for n in plan.notes), plan.notes
