"""The stream_outputs pass on per-step targets and labels of a dynamic_rnn with sequence_length.

dynamic_rnn sorts the batch by length (longest first), runs its loop over the sorted rows
until the longest sequence ends, and unsorts the outputs, which are zero past each row's
length; the loss over those padded steps still counts them (TF1 semantics: `(0 - Y)**2`, the
cross-entropy of the head's bias). Streamed:
- the fed target Y (or labels L) reaches both loops in the loop's row order: transposed to
  time-major and its rows taken in dynamic_rnn's sort order before the forward loop
  (`permute_rows(transpose(Y), order, axis=1)`, which host_sequences folds into host_rows);
- a streamed sum that is not zero where the outputs are (the rows and steps that did not run)
  makes the forward loop run every row of every step: its trip count and its active-rows hint
  are dropped, its body masking the finished rows (zero outputs, the state kept) as before;
  the backward loop keeps its active rows where its per-step work does not count rows.
Results against the unstreamed program, against NumPy, on the planner's simulated device under
a budget below the unstreamed floor, with the target on the host; static unrolling; refusals."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.passes.stream_outputs import stream_output_consumers
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program, numpy_lstm_backward, numpy_lstm_forward
from test_memory_streamed import _saved_bytes, _streamed_nodes, run_planned
from test_memory_streamed_softmax import numpy_softmax_head
from test_memory_streamed_targets import _fed, _moved, _rows_read, _unstreamed

STREAM = {"stream_outputs": "always"}   # (forced: the pass itself is tested)
K_WIDTH, CLASSES = 6, 7


def _loss(kind, y, Y):
    """kind's loss of the outputs y against the fed Y (targets, or int labels)."""
    if kind == "mse":
        return rg.reduce_mean(rg.square(y - Y))
    if kind == "mse_dense":
        return rg.losses.mean_squared_error(Y, rg.layers.dense(y, K_WIDTH))
    logits = rg.layers.dense(y, CLASSES)
    if kind == "softmax":
        return rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
            labels=Y, logits=logits))
    assert kind == "softmax_reshape"
    return rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
        labels=rg.reshape(Y, [-1]), logits=rg.reshape(logits, [-1, CLASSES])))


def _graph(T, B, H, I, kind, time_major=False, batch="static", dtype=rg.float32,
           lengths="full", seed=0):
    """An LSTM over X with sequence_length S and kind's loss against Y; fetches: the loss,
    then every variable's gradient. lengths "full": one row runs every step; "short": none
    does (the loop stops before the end of the stacks: the padded steps count in the loss)."""
    batch = B if batch == "static" else batch
    labels = kind.startswith("softmax")
    g = rg.Graph()
    with g.as_default():
        lead = [None, batch] if time_major else [batch, None]
        X = rg.placeholder(dtype, lead + [I], name="X")
        Y = rg.placeholder(rg.int32, lead, name="Y") if labels else \
            rg.placeholder(dtype, lead + [K_WIDTH if kind == "mse_dense" else H], name="Y")
        S = rg.placeholder(rg.int32, [batch], name="S")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=dtype, sequence_length=S,
                                   time_major=time_major)
        value = _loss(kind, out, Y)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(seed)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(dtype)}
    fd[Y] = rs.randint(0, CLASSES, size=shape).astype(np.int32) if labels else \
        rs.randn(*shape, Y.shape[-1]).astype(dtype)
    lens = rs.randint(T // 3, T + 1, size=B).astype(np.int32)
    lens[2] = 1
    if lengths == "full":
        lens[1] = T
    else:
        lens = np.minimum(lens, T - 3)
    fd[S] = lens
    return g, fetches, fd


KINDS = ["mse", "mse_dense", "softmax", "softmax_reshape"]
LAYOUTS = [(False, "static"), (False, None), (True, None)]
LAYOUT_IDS = ["batch_major", "batch_major-any_batch", "time_major-any_batch"]


def _forward_loop(sess):
    (fwd,) = [n for n in _loops(_program(sess).graph) if not n.is_gradient]
    return fwd


@pytest.mark.parametrize("lengths", ["full", "short"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("time_major,batch", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_targets_and_labels_with_lengths_give_the_unstreamed_results(kind, time_major, batch,
                                                                      dtype, lengths):
    g, fetches, fd = _graph(13, 4, 5, 3, kind, time_major, batch, getattr(rg, dtype),
                            lengths)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    fwd_nodes, bwd_nodes = _moved(sess)
    assert fwd_nodes and bwd_nodes
    fwd, bwd = _rows_read(sess)
    assert "Y/streamed_rows" in fwd and "Y/streamed_rows" in bwd, (fwd, bwd)
    # the loss is not zero where the outputs are: the forward loop runs every row of every
    # step (no trip count, no active rows)
    loop = _forward_loop(sess)
    assert not loop.op.has_trip and not loop.op.active_rows
    _close(got, want, rtol=1e-6 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("lengths", ["full", "short"])
@pytest.mark.parametrize("time_major,batch", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_streamed_losses_with_lengths_give_the_gradients_numpy_computes(kind, time_major,
                                                                         batch, lengths):
    """The loss over every step of every row, the outputs zero past a row's length (TF1), and
    the gradients of the LSTM and of the head, written out in NumPy over the caller's rows."""
    g, fetches, fd = _graph(17, 4, 6, 3, kind, time_major, batch, rg.float64, lengths)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    weights = [sess.run(v) for v in g.collections["variables"]]
    W, bias = weights[:2]
    x, Y, lens = _fed(fd, "X"), _fed(fd, "Y"), _fed(fd, "S")
    if time_major:
        x, Y = x.swapaxes(0, 1), Y.swapaxes(0, 1)
    ys, tape = numpy_lstm_forward(x, W, bias, lens)
    assert not ys[2, 1:].any() and (lengths == "full" or not ys[:, -3:].any())
    if kind == "mse":
        r = ys - Y
        want, dys, extra = [np.mean(r * r)], 2 * r / r.size, []
    elif kind == "mse_dense":
        K, b = weights[2:]
        r = ys @ K + b - Y
        dr = 2 * r / r.size
        want, dys = [np.mean(r * r)], dr @ K.T
        extra = [ys.reshape(-1, ys.shape[2]).T @ dr.reshape(-1, K_WIDTH), dr.sum((0, 1))]
    else:
        loss, dys, dK, db = numpy_softmax_head(ys, *weights[2:], Y)
        want, extra = [loss], [dK, db]
    want += list(numpy_lstm_backward(tape, dys, W, x.shape[2])) + extra
    _close(got, want, rtol=1e-10)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("kind", ["mse", "softmax"])
def test_the_printed_ir_reads_the_target_in_the_loops_row_order(kind, time_major):
    """The target reaches both loops as one time-major value whose rows are taken in
    dynamic_rnn's sort order (the same SortByLength the input is permuted by), made before the
    forward loop; the forward loop has neither trip count nor active rows, the backward loop
    keeps its active rows (the target's rows there open, batched like the others); no
    [B, T, ...] difference or cross-entropy is left outside the loops."""
    g, fetches, fd = _graph(9, 4, 5, 3, kind, time_major, dtype=rg.float32, lengths="short")
    sess = rg.Session(g, passes={**STREAM, "fuse": False, "hoist_sequence": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    text = str(graph)
    fwd, bwd = _loops(graph)[:2]
    (Y,) = [n.outputs[0] for n in graph.nodes if n.name == "Y"]
    (p,) = [n for n in graph.nodes if n.name == "Y/streamed/PermuteRows"]
    assert p.op.axis == 1 and p.inputs[1].node.op.name == "sort_by_length"
    (x_sorted,) = [n for n in graph.nodes if n.name == "rnn/sort_by_length/PermuteRows"]
    assert p.inputs[1] is x_sorted.inputs[1]
    if time_major:
        assert p.inputs[0] is Y and "Y/streamed/Transpose" not in text
    else:
        t = p.inputs[0].node
        assert t.name == "Y/streamed/Transpose" and t.inputs == [Y]
        assert t.op.perm == tuple([1, 0] + list(range(2, Y.type.rank)))
    # (and the check that Y has the loop's steps, reading its shape only: ops/sequence.py)
    assert [n for n in graph.nodes if p.outputs[0] in n.inputs] == [
        n for n in graph.nodes if n.name == "Y/streamed/check_steps"] + [fwd, bwd]
    assert graph.nodes.index(p) < graph.nodes.index(fwd)
    assert not fwd.op.has_trip and not fwd.op.active_rows
    assert bwd.op.active_rows and bwd.op.shrink   # (it runs the active rows only)
    (row,) = [q for q in bwd.op.body.params["sequence"] if q.node.name == "Y/streamed_rows"]
    assert row.type.shape[0] is None
    assert "Y/streamed/PermuteRows" in text
    assert not [n for n in graph.nodes if n.op.name in (
        "sub", "square", "sparse_softmax_cross_entropy", "softmax", "one_hot")]
    _close(got, rg.Session(g).run(fetches, fd))


@pytest.mark.parametrize("kind", ["mse", "softmax_reshape"])
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
def test_host_sequences_reads_the_sorted_target_rows_from_the_host(kind, time_major):
    """With host_sequences the target's transpose and row order become one host_rows node
    (the fed array stays on the host, rows copied in the sort order as the loops read them);
    the values are those of the program without it, bit for bit."""
    g, fetches, fd = _graph(11, 4, 5, 3, kind, time_major, None, lengths="short")
    host = rg.Session(g, passes={**STREAM, "host_sequences": True})
    got = host.run(fetches, fd)
    graph = _program(host).graph
    (Y,) = [n.outputs[0] for n in graph.nodes if n.name == "Y"]
    readers = [n for n in graph.nodes if Y in n.inputs]
    assert [n.op.name for n in readers] == ["host_rows"], readers
    (rows,) = readers
    assert len(rows.inputs) == 2 and rows.inputs[1].node.op.name == "sort_by_length"
    assert rows.op.time_axis == (0 if time_major else 1)
    fwd, bwd = _loops(graph)[:2]
    assert [n for n in graph.nodes if rows.outputs[0] in n.inputs and
            n.op.name != "check_steps"] == [fwd, bwd]
    for a, b in zip(got, rg.Session(g, passes=STREAM).run(fetches, fd)):
        assert np.array_equal(a, b)


# --- the planner -----------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["offload", "recompute", "auto"])
@pytest.mark.parametrize("kind,time_major", [("mse", False), ("softmax", False),
                                             ("mse_dense", True)],
                         ids=["mse", "softmax", "mse_dense-time_major"])
def test_a_target_with_lengths_runs_under_a_budget_below_the_unstreamed_floor(kind, time_major,
                                                                              strategy):
    """Without streaming (the pass refused these before) the floor is 37-68% of the saved
    tensors; streamed, with the target left on the host, a tenth of them fits: the run stays
    within it, the prediction is what run_planned checks, the values are the unconstrained
    ones."""
    T, B, H, I = 200, 32, 64, 8
    g, fetches, fd = _graph(T, B, H, I, kind, time_major, lengths="short")
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    tenth = _saved_bytes(g, fetches, fd) // 10

    def plan_at(budget, **options):
        return rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy=strategy, **options).memory_plan(fetches, fd)

    off = plan_at(tenth, passes={"stream_outputs": False})
    assert not off.fits and off.min_budget > 3 * tenth, (off.min_budget, tenth)
    check_streamed_plan(g, fetches, fd, tenth, strategy, "Y", ref)


def check_streamed_plan(g, fetches, fd, budget, strategy, fed_name, ref):
    """At `budget`, the plan streams with `fed_name` left on the host, and runs (within the
    budget, predicted as run_planned checks) with `ref`'s values."""
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and plan.passes_on == ("stream_outputs", "host_sequences"), str(plan)
    assert fed_name in {name for name, _ in plan.host_fed}, plan.host_fed
    _close(run_planned(sess, plan, budget, strategy, g, fetches, fd), ref, rtol=2e-5)


# --- static unrolling, refusals --------------------------------------------------------------

def test_static_unrolling_with_lengths_is_unaffected():
    """static_rnn builds no loop: the pass has nothing to stream, the program and its values
    are the unstreamed ones bit for bit."""
    T, B, H, I = 6, 4, 5, 3
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        Y = rg.placeholder(rg.float32, [B, T, H], name="Y")
        S = rg.placeholder(rg.int32, [B], name="S")
        outs, _ = rg.nn.static_rnn(rg.nn.LSTMCell(H), rg.unstack(X, axis=1), dtype=rg.float32,
                                   sequence_length=S)
        value = rg.reduce_mean(rg.square(rg.stack(outs, axis=1) - Y))
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(B, T, I).astype(np.float32), Y: rs.randn(B, T, H).astype(np.float32),
          S: np.array([6, 2, 1, 4], np.int32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert not any(_streamed_nodes(p.graph) for p in sess.programs())
    for a, b in zip(got, rg.Session(g).run(fetches, fd)):
        assert np.array_equal(a, b)


class _BatchMeanCell(rg.nn.RNNCell):
    """A cell whose step mixes rows (it adds the batch mean of its input): dynamic_rnn's loop
    then runs every row and has no active rows, only its trip count."""

    def __init__(self, units):
        super().__init__()
        self._cell = rg.nn.BasicRNNCell(units)

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._cell.output_size

    def __call__(self, x, state, scope=None):
        return self._cell(x + rg.reduce_mean(x, axis=0, keepdims=True), state)


def _mixing(loss, T=10, B=4, H=5, I=3):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        Y = rg.placeholder(rg.float32, [B, None, H], name="Y")
        S = rg.placeholder(rg.int32, [B], name="S")
        out, _ = rg.nn.dynamic_rnn(_BatchMeanCell(H), X, dtype=rg.float32, sequence_length=S)
        value = loss(out, Y)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    return g, fetches, {X: rs.randn(B, T, I).astype(np.float32),
                        Y: rs.randn(B, T, H).astype(np.float32),
                        S: np.array([7, 3, 1, 5], np.int32)}


def test_a_loop_whose_body_mixes_rows_keeps_its_trip_and_is_refused():
    """Without active rows the pass cannot tell that the steps past the trip count would
    leave the state as it is: a loss not zero there is refused (the program unstreamed; the
    pass says why when asked); one that is zero there (y * Y) still streams, the loop keeping
    its trip count."""
    g, fetches, fd = _mixing(lambda y, Y: rg.reduce_mean(rg.square(y - Y)))
    assert not _loops(g)[0].op.active_rows and _loops(g)[0].op.has_trip
    _unstreamed(g, fetches, fd)
    why = []   # (the pass says why, for a plan's notes)
    assert stream_output_consumers(g, refusals=why) == 0 and not _streamed_nodes(g)
    assert why == ["rnn/while: its output stays whole: ReduceMean is not zero where the "
                   "outputs are, and the steps past the loop's trip count are not known to be "
                   "idle (no active rows: its body mixes rows; or not dynamic_rnn's trip "
                   "count)"], why
    why = []
    assert stream_output_consumers(_mixing(lambda y, Y: rg.reduce_sum(y * Y))[0],
                                   refusals=why) and why == []
    g, fetches, fd = _mixing(lambda y, Y: rg.reduce_sum(y * Y))
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess)) and _forward_loop(sess).op.has_trip
    _close(got, rg.Session(g).run(fetches, fd))


@pytest.mark.parametrize("time_major", [False, True])
def test_a_target_shared_by_every_row_streams_with_sequence_length(time_major):
    """Y with a batch of 1 ([1, T, H], or [T, 1, H] time-major) broadcasts to every row: its
    row is the same in any row order, so it is not reordered (it was, and the streamed
    program failed on a permutation of B rows of a 1-row value), and it keeps its one row
    in a loop with active rows. Under a budget the planner streams it and runs."""
    T, B, H, I = 40, 6, 8, 3
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I] if time_major else [B, None, I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S")
        Y = rg.placeholder(rg.float32, [None, 1, H] if time_major else [1, None, H], name="Y")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, sequence_length=S,
                                   time_major=time_major)
        loss = rg.reduce_mean(rg.square(out - Y))
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(3)
    fd = {X: rs.randn(*((T, B, I) if time_major else (B, T, I))).astype(np.float32),
          Y: rs.randn(*((T, 1, H) if time_major else (1, T, H))).astype(np.float32),
          S: np.array([T, 3, 17, 1, 40, 22], np.int32)}
    want = rg.Session(g).run(fetches, fd)
    sess = rg.Session(g, passes=dict(STREAM, host_sequences=True))
    got = sess.run(fetches, fd)
    assert _streamed_nodes(_program(sess).graph)
    _close(got, want)
    budget = _saved_bytes(g, fetches, fd) // 3
    planned = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    plan = planned.memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on
    _close(planned.run(fetches, fd), want)
