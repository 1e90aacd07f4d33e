"""The stream_outputs pass on a dense head over an unknown batch and on targets fed per step.

- With the batch unknown, rg.layers.dense multiplies the [B, T, H] output as a batch of [T, H]
  matrices; its kernel's gradient is sum_to(matrix_transpose(y) @ g) over the batch, which is
  x_t^T @ g_t summed over the steps: a carried accumulator of the forward loop, as with a known
  batch (time-major outputs: a product per step, then a sum over time).
- A [B, T, ...] target fed before the loop (`y - Y`) becomes a sequence input of the loops that
  need it, transposed to time-major once before the forward loop, as dynamic_rnn does with its
  input (in the loop's row order where dynamic_rnn sorts by sequence_length: see
  test_memory_streamed_lengths.py).
Results against the unstreamed program and NumPy, the printed and saved IR, the planner on the
simulated device, and the refusals."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program, numpy_lstm_backward, numpy_lstm_forward
from test_memory_streamed import _saved_bytes, _streamed_nodes, rerun_saved, run_planned
from test_memory_streamed_losses import _moved

STREAM = {"stream_outputs": "always"}   # (forced: the pass itself is tested)


def _var(name, shape, dtype, seed):
    init = rg.constant_initializer(np.random.RandomState(seed).randn(*shape) * 0.5)
    return rg.get_variable(name, shape, dtype, initializer=init)


# loss(y, Y) with y the output ([B, T, H], or [T, B, H] time-major) and Y the fed target
# (None where the loss has none); K the dense layer's width (the target's last dim)
LOSSES = {
    "dense": (lambda y, Y: rg.reduce_mean(rg.square(rg.layers.dense(y, 7))), None),
    # zero where y is (no bias): moves with sequence_length too
    "dense_sum": (lambda y, Y: rg.reduce_sum(rg.square(rg.layers.dense(y, 7, use_bias=False))),
                  None),
    "sub": (lambda y, Y: rg.reduce_mean(rg.square(y - Y)), "H"),
    "mse_dense": (lambda y, Y: rg.losses.mean_squared_error(Y, rg.layers.dense(y, 6)), 6),
    "prod": (lambda y, Y: rg.reduce_sum(y * Y) + rg.reduce_sum(rg.square(y)), "H"),
}


def _graph(T, B, H, I, loss, batch="static", lengths=False, dtype=rg.float32, time_major=False,
           seed=0):
    batch = B if batch == "static" else batch
    make, width = LOSSES[loss]
    width = H if width == "H" else width
    g = rg.Graph()
    with g.as_default():
        lead = [None, batch] if time_major else [batch, None]
        X = rg.placeholder(dtype, lead + [I], name="X")
        Y = rg.placeholder(dtype, lead + [width], name="Y") if width else None
        L = rg.placeholder(rg.int32, [batch], name="L") if lengths else None
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=dtype, sequence_length=L,
                                   time_major=time_major)
        value = make(out, Y)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(seed)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(dtype)}
    if Y is not None:
        fd[Y] = rs.randn(*shape, width).astype(dtype)
    if lengths:
        fd[L] = rs.randint(T // 3, T + 1, size=B).astype(np.int32)
        fd[L][1] = T
        fd[L][2] = 1
    return g, fetches, fd


def check_rows_streamed(g, fetches, fd, rows: str, dtype: str) -> None:
    """The program with stream_outputs against the default one: both loops read the fed
    value's rows (the sequence input `rows`), both hold streamed nodes, and the values agree
    (1e-6 relative in float32, 1e-12 in float64)."""
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    fwd, bwd = _rows_read(sess)
    assert rows in fwd and rows in bwd, (fwd, bwd)
    assert all(_moved(sess))
    _close(got, want, rtol=1e-6 if dtype == "float32" else 1e-12)


def _rows_read(sess):
    """Names of the sequence inputs of the forward and the backward loop's bodies."""
    fwd, bwd = _loops(_program(sess).graph)[:2]
    return ({p.node.name for p in fwd.op.body.params["sequence"]},
            {p.node.name for p in bwd.op.body.params["sequence"]})


def _fed(fd, name):
    return next((a for k, a in fd.items() if k.node.name == name), None)


# --- a dense head over an unknown batch ----------------------------------------------------

@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,time_major", [("dense", False), ("dense_sum", False),
                                             ("dense_sum", True)],
                         ids=["dense", "dense_sum", "dense_sum-time_major"])
def test_a_dense_head_over_an_unknown_batch_gives_the_unstreamed_results(loss, time_major,
                                                                         dtype, lengths):
    g, fetches, fd = _graph(13, 4, 5, 3, loss, None, lengths, getattr(rg, dtype), time_major)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    fwd, bwd = _moved(sess)
    # (with lengths and a bias, or a mean over the unknown batch, the forward loop runs every
    # row of every step: see test_memory_streamed_lengths.py)
    assert fwd and bwd, (fwd, bwd)
    if fwd:   # the kernel's gradient (a product summed over the batch) is summed per step
        assert "gradients/dense/MatMul_grad/SumTo/streamed/acc" in fwd
    _close(got, want, rtol=1e-6 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_a_streamed_dense_head_gives_the_gradients_numpy_computes(lengths, time_major):
    """sum((y @ K)**2) over an unknown batch: the loss, K's gradient 2 y^T (y K) over every
    row of every step, and the cell's gradients, in NumPy."""
    g, fetches, fd = _graph(17, 4, 6, 3, "dense_sum", None, lengths, rg.float64, time_major)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    W, bias, K = (sess.run(v) for v in g.collections["variables"])
    x = _fed(fd, "X")
    x = x.transpose(1, 0, 2) if time_major else x
    ys, tape = numpy_lstm_forward(x, W, bias, _fed(fd, "L"))
    z = ys @ K
    dW, dbias = numpy_lstm_backward(tape, 2 * z @ K.T, W, x.shape[2])
    dK = 2 * ys.reshape(-1, ys.shape[2]).T @ z.reshape(-1, z.shape[2])
    _close(got, [np.sum(z * z), dW, dbias, dK], rtol=1e-10)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_the_printed_ir_shows_the_batched_kernel_gradient_summed_per_step(lengths):
    """The forward loop computes y_t @ K and sums x_t^T @ g_t over the steps (in float64, cast
    back after the loop); the backward loop computes the product again from the saved y_t;
    no [B, T, ...] product is left outside the loops."""
    g, fetches, fd = _graph(9, 4, 5, 3, "dense_sum", None, lengths)
    sess = rg.Session(g, passes={**STREAM, "fuse": False, "hoist_sequence": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    text = str(graph)
    fwd, bwd = _loops(graph)[:2]
    sums = {n.name for n in fwd.op.body.nodes}
    assert {"dense/MatMul/streamed", "dense/kernel/streamed",
            "gradients/dense/MatMul_grad/MatrixTranspose_1/streamed",
            "gradients/dense/MatMul_grad/MatMul_1/streamed",
            "gradients/dense/MatMul_grad/SumTo/streamed/wide"} <= sums
    assert "gradients/dense/MatMul_grad/MatMul_1/streamed" in str(fwd.op.body)
    assert "gradients/dense/MatMul_grad/SumTo/streamed/narrow" in text
    assert {"rnn/while/streamed_rows", "dense/MatMul/streamed",
            "gradients/dense/MatMul_grad/MatMul/streamed"} <= {n.name for n in bwd.op.body.nodes}
    assert not [n for n in graph.nodes if n.op.name in ("matmul", "matrix_transpose", "sum_to",
                                                        "mul", "square", "transpose")
                and n.outputs[0].type.rank == 3 and n.outputs[0].type.shape[-1] != 3]
    _close(got, rg.Session(g).run(fetches, fd))


# --- targets fed per step ------------------------------------------------------------------

TARGETS = [("sub", "static", False), ("sub", None, False), ("sub", None, True),
           ("mse_dense", "static", False), ("mse_dense", None, False), ("prod", None, False)]
TARGET_IDS = ["sub", "sub-any_batch", "sub-time_major", "mse_dense", "mse_dense-any_batch",
              "prod-any_batch"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,batch,time_major", TARGETS, ids=TARGET_IDS)
def test_a_fed_target_streams_and_gives_the_unstreamed_results(loss, batch, time_major, dtype):
    g, fetches, fd = _graph(13, 4, 5, 3, loss, batch, False, getattr(rg, dtype), time_major)
    # both loops read the target's rows: the loss in the forward loop, the output gradient
    # (2 (y_t - Y_t) g) in the backward loop
    check_rows_streamed(g, fetches, fd, "Y/streamed_rows", dtype)


@pytest.mark.parametrize("loss,batch,time_major", TARGETS, ids=TARGET_IDS)
def test_a_streamed_fed_target_gives_the_gradients_numpy_computes(loss, batch, time_major):
    g, fetches, fd = _graph(17, 4, 6, 3, loss, batch, False, rg.float64, time_major)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    weights = [sess.run(v) for v in g.collections["variables"]]
    W, bias = weights[:2]
    x, Y = _fed(fd, "X"), _fed(fd, "Y")
    if time_major:
        x, Y = x.transpose(1, 0, 2), Y.transpose(1, 0, 2)
    ys, tape = numpy_lstm_forward(x, W, bias)
    if loss == "sub":
        r = ys - Y
        want = [np.mean(r * r)]
        dys = 2 * r / r.size
    elif loss == "prod":
        want = [np.sum(ys * Y) + np.sum(ys * ys)]
        dys = Y + 2 * ys
    else:
        K, b = weights[2:]
        r = ys @ K + b - Y
        dr = 2 * r / r.size
        want = [np.mean(r * r)]
        dys = dr @ K.T
        extra = [ys.reshape(-1, ys.shape[2]).T @ dr.reshape(-1, dr.shape[2]), dr.sum((0, 1))]
    want += list(numpy_lstm_backward(tape, dys, W, x.shape[2]))
    if loss == "mse_dense":
        want += extra
    _close(got, want, rtol=1e-10)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
def test_the_printed_ir_shows_the_target_read_row_by_row(time_major):
    """The target reaches the loops as one time-major value (a Transpose swapping its first two
    axes, as dynamic_rnn's input does, or the time-major feed itself), read by both loops as a
    sequence input and by nothing else; no [B, T, H] difference is left outside the loops."""
    g, fetches, fd = _graph(9, 4, 5, 3, "sub", None, False, rg.float32, time_major)
    sess = rg.Session(g, passes={**STREAM, "fuse": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    text = str(graph)
    fwd, bwd = _loops(graph)[:2]
    (Y,) = [n.outputs[0] for n in graph.nodes if n.name == "Y"]
    if time_major:
        seq, readers = Y, [n for n in graph.nodes if Y in n.inputs]
        assert "Y/streamed/Transpose" not in text
    else:
        (t,) = [n for n in graph.nodes if n.name == "Y/streamed/Transpose"]
        assert t.op.perm == (1, 0, 2) and t.inputs == [Y]
        assert "Y/streamed/Transpose" in text
        assert [n for n in graph.nodes if Y in n.inputs] == [t]
        seq, readers = t.outputs[0], [n for n in graph.nodes if t.outputs[0] in n.inputs]
    # (and the check that Y has the loop's steps, reading its shape only)
    checks = [n for n in readers if n.op.name == "check_steps"]
    assert [n.name for n in checks] == ["Y/streamed/check_steps"]
    assert [n for n in readers if n not in checks] == [fwd, bwd]
    for loop in (fwd, bwd):
        parts = loop.op.in_ports().split(loop.inputs)
        names = [p.node.name for p in loop.op.body.params["sequence"]]
        assert parts["sequence"][names.index("Y/streamed_rows")] is seq
        assert seq not in parts["invariant"]
        assert "Y/streamed_rows" in str(loop.op.body)
    assert "Sub/streamed" in {n.name for n in fwd.op.body.nodes}
    assert not [n for n in graph.nodes if n.op.name in ("sub", "square", "mul", "div")
                and n.outputs[0].type.rank == 3]
    _close(got, rg.Session(g).run(fetches, fd))


@pytest.mark.parametrize("loss,batch", [("sub", None), ("mse_dense", "static"),
                                        ("dense", None)])
def test_a_saved_and_reloaded_streamed_target_runs(tmp_path, loss, batch):
    g, fetches, fd = _graph(11, 4, 5, 3, loss, batch)
    sess = rg.Session(g, passes={**STREAM, "chunk_steps": 4})
    rerun_saved(sess, g, fetches, fd, tmp_path)
    assert all(_moved(sess))


# --- the planner -----------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["offload", "recompute", "auto"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_a_dense_head_over_an_unknown_batch_fits_a_tenth_budget(strategy, lengths):
    """Before this change the stack, its gradient and the head's [B, T, K] products stayed
    whole with the batch unknown, and no plan reached a tenth of the saved tensors."""
    T, B, H, I = 200, 32, 64, 8
    g, fetches, fd = _graph(T, B, H, I, "dense_sum" if lengths else "dense", None, lengths)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    budget = _saved_bytes(g, fetches, fd) // 10
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    off = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                     memory_strategy=strategy, passes={"stream_outputs": False})
    assert not off.memory_plan(fetches, fd).fits   # (it did not fit without the pass)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    _close(run_planned(sess, plan, budget, strategy, g, fetches, fd), ref, rtol=2e-5)


def test_the_issues_t1000_lstm_with_a_dense_head_over_any_batch_fits_a_tenth():
    """Issue 29's case (B=32, H=256, inputs 32, T=1000, no projection), the batch unknown, the
    loss mean(dense(y, 7)**2)."""
    T, B, H, I = 1000, 32, 256, 32
    check_fits_a_tenth_streamed(*_graph(T, B, H, I, "dense", None))


def check_fits_a_tenth_streamed(g, fetches, fd):
    """A tenth of the saved tensors does not fit unstreamed, fits streamed, and runs within
    it (predicted at most 1% above: recomputed checkpoints of a chunked loop hold their
    chunk's accumulators) with the unconstrained values."""
    budget = _saved_bytes(g, fetches, fd) // 10
    off = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                     passes={"stream_outputs": False})
    assert not off.memory_plan(fetches, fd).fits
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    got = sess.run(fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= budget
    assert 0 <= plan.predicted_peak - peak <= 0.01 * peak, (plan.predicted_peak, peak)
    _close(got, rg.Session(g, device=SimulatedDevice()).run(fetches, fd), rtol=2e-5)


@pytest.mark.parametrize("loss,batch", [("sub", None), ("mse_dense", None),
                                        ("sub", "static")])
def test_a_fed_target_lowers_the_smallest_budget_and_runs_under_it(loss, batch):
    """The target [B, T, H] itself stays on the device unless the planner also leaves it on
    the host, so a tenth is not asserted: the plan's smallest budget with streaming is far
    below the one without, and a run at that budget (or at a tenth, if that fits) stays
    within it and gives the unconstrained results."""
    T, B, H, I = 200, 32, 64, 8
    g, fetches, fd = _graph(T, B, H, I, loss, batch)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    saved = _saved_bytes(g, fetches, fd)
    tenth = saved // 10

    def smallest(**options):
        plan = rg.Session(g, device=SimulatedDevice(capacity=tenth), memory_budget=tenth,
                          **options).memory_plan(fetches, fd)
        return tenth if plan.fits else plan.min_budget

    without = smallest(passes={"stream_outputs": False})
    budget = smallest()
    assert without > tenth and budget < 0.6 * without, (budget, without, saved)
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    _close(run_planned(sess, plan, budget, "auto", g, fetches, fd), ref, rtol=2e-5)


# --- refusals --------------------------------------------------------------------------------

def _unstreamed(g, fetches, fd):
    """The pass leaves the program as it was: no streamed node, the same values bit for bit."""
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert not _streamed_nodes(_program(sess).graph)
    for a, b in zip(got, rg.Session(g).run(fetches, fd)):
        assert np.array_equal(a, b)


def _custom(make, T=10, B=4, H=5, I=3):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, I], name="X")
        Y = rg.placeholder(rg.float32, [None, None, H], name="Y")
        out, state = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32)
        value = make(out, state, Y)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    return g, fetches, {X: rs.randn(B, T, I).astype(np.float32),
                        Y: rs.randn(B, T, H).astype(np.float32)}


def test_a_target_computed_from_the_loops_outputs_is_refused():
    """The final state repeated over time is [B, T, H] but needs the whole loop first."""
    def make(y, state, Y):
        late = rg.stack([state.h] * 10, axis=1)
        return rg.reduce_sum(rg.square(y - late))
    _unstreamed(*_custom(make))


def test_a_target_whose_gradient_is_taken_has_it_stacked():
    """A trainable [B, T, H] target: its gradient (fetched, as every variable's) is region
    work made whole again: the forward loop works it out per step and stacks it, as it does a
    fetched output (test_memory_streamed_fetched.py), while the loss streams."""
    def make(y, state, Y):
        v = _var("target", [4, 10, 5], rg.float32, 5)
        return rg.reduce_mean(rg.square(y - v))
    g, fetches, fd = _custom(make)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    fwd = _loops(_program(sess).graph)[0]
    names = {n.name for n in fwd.op.body.nodes}
    assert "ReduceMean/streamed" in names and any(
        n.startswith("gradients/Sub_grad/Neg/streamed") for n in names), names
    assert got[-1].shape == (4, 10, 5)
    _close(got, rg.Session(g).run(fetches, fd), rtol=2e-5)


def test_a_target_broadcast_over_time_is_an_invariant_not_a_sequence():
    """Y[:, :1] (time of size 1, [B, 1, H]) is the same at every step: read as an invariant."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, None, 3], name="X")
        Y = rg.placeholder(rg.float32, [4, 1, 5], name="Y")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        value = rg.reduce_mean(rg.square(out - Y))
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(4, 10, 3).astype(np.float32), Y: rs.randn(4, 1, 5).astype(np.float32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    fwd, bwd = _moved(sess)
    assert "Y/streamed" in fwd and "Y/streamed_rows" not in set().union(*_rows_read(sess))
    _close(got, rg.Session(g).run(fetches, fd))
