"""The stream_outputs pass on a softmax classification head with labels fed per step.

`reduce_mean(sparse_softmax_cross_entropy_with_logits(labels=L, logits=dense(y, V)))`, L an
int [B, T] placeholder: the cross-entropy works row by row along the class axis, so it moves
into the forward loop (a mean summed per step), the labels becoming a sequence input read a
row per step; its gradient expand_dims(g, -1) * (softmax(logits, -1) - one_hot(L, V)) moves
into the backward loop, the one-hot rows made there from the labels' rows. The reshape form
(logits as [B*T, V] rows, labels as [B*T]) streams alike (with sequence_length: see
test_memory_streamed_lengths.py). With the logits fetched too it streams alike
(test_memory_streamed_fetched.py).
Results against the unstreamed program and NumPy, the printed IR, the planner on the simulated
device, and the refusals."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program, numpy_lstm_backward, numpy_lstm_forward
from test_memory_streamed import _saved_bytes, rerun_saved, run_planned
from test_memory_streamed_targets import (_fed, _moved, _rows_read, _unstreamed,
                                         check_fits_a_tenth_streamed,
                                         check_rows_streamed)

STREAM = {"stream_outputs": "always"}   # (forced: the pass itself is tested)


def _graph(T, B, H, I, V, form="rank3", batch="static", lengths=False, dtype=rg.float32,
           seed=0):
    """An LSTM over X [B, T, I], a dense head of V classes, the mean cross-entropy against
    labels L [B, T]; fetches: the loss, then the gradients of every variable (the LSTM's kernel
    and bias, the head's kernel and bias)."""
    batch = B if batch == "static" else batch
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [batch, None, I], name="X")
        L = rg.placeholder(rg.int32, [batch, None], name="labels")
        S = rg.placeholder(rg.int32, [batch], name="S") if lengths else None
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=dtype, sequence_length=S)
        logits = rg.layers.dense(out, V)
        if form == "reshape":
            xe = rg.nn.sparse_softmax_cross_entropy_with_logits(
                labels=rg.reshape(L, [-1]), logits=rg.reshape(logits, [-1, V]))
        else:
            xe = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=L, logits=logits)
        loss = rg.reduce_mean(xe)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(seed)
    fd = {X: rs.randn(B, T, I).astype(dtype), L: rs.randint(0, V, size=(B, T)).astype(np.int32)}
    if lengths:
        fd[S] = rs.randint(T // 3, T + 1, size=B).astype(np.int32)
        fd[S][1] = T
        fd[S][2] = 1
    return g, fetches, fd


def numpy_softmax_head(ys, K, b, labels):
    """The mean cross-entropy of softmax(ys @ K + b) against labels, and its gradients by ys,
    K and b, in NumPy."""
    z = ys @ K + b
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    B, T = labels.shape
    picked = p[np.arange(B)[:, None], np.arange(T)[None, :], labels]
    loss = -np.mean(np.log(picked))
    dz = p.copy()
    dz[np.arange(B)[:, None], np.arange(T)[None, :], labels] -= 1
    dz /= B * T
    H, V = K.shape
    return loss, dz @ K.T, ys.reshape(-1, H).T @ dz.reshape(-1, V), dz.sum((0, 1))


FORMS = [("rank3", "static"), ("rank3", None), ("reshape", "static"), ("reshape", None)]
FORM_IDS = ["rank3", "rank3-any_batch", "reshape", "reshape-any_batch"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form,batch", FORMS, ids=FORM_IDS)
def test_a_softmax_head_streams_and_gives_the_unstreamed_results(form, batch, dtype):
    g, fetches, fd = _graph(13, 4, 5, 3, 6, form, batch, dtype=getattr(rg, dtype))
    # both loops read the labels' rows: the cross-entropy in the forward loop, the one-hot
    # rows of its gradient in the backward loop
    check_rows_streamed(g, fetches, fd, "labels/streamed_rows", dtype)


@pytest.mark.parametrize("form,batch", FORMS, ids=FORM_IDS)
def test_a_streamed_softmax_head_gives_the_gradients_numpy_computes(form, batch):
    g, fetches, fd = _graph(17, 4, 6, 3, 7, form, batch, dtype=rg.float64)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    W, bias, K, b = (sess.run(v) for v in g.collections["variables"])
    x, labels = _fed(fd, "X"), _fed(fd, "labels")
    ys, tape = numpy_lstm_forward(x, W, bias)
    loss, dys, dK, db = numpy_softmax_head(ys, K, b, labels)
    dW, dbias = numpy_lstm_backward(tape, dys, W, x.shape[2])
    _close(got, [loss, dW, dbias, dK, db], rtol=1e-10)


@pytest.mark.parametrize("form", ["rank3", "reshape"])
def test_the_printed_ir_shows_the_cross_entropy_and_its_gradient_per_step(form):
    """The forward loop computes the cross-entropy of a step's logits against its labels' row
    and sums it; the backward loop computes softmax(logits_t) - one_hot(labels_t) times the
    expanded per-step gradient; the labels reach both loops as one time-major value; no
    [B, T, V] (or [B*T, V]) softmax, one-hot or difference is left outside the loops."""
    g, fetches, fd = _graph(9, 4, 5, 3, 6, form)
    sess = rg.Session(g, passes={**STREAM, "fuse": False, "hoist_sequence": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    text = str(graph)
    fwd, bwd = _loops(graph)[:2]
    fwd_nodes = {n.name for n in fwd.op.body.nodes}
    bwd_nodes = {n.name for n in bwd.op.body.nodes}
    assert {"SparseSoftmaxCrossEntropy/streamed", "ReduceMean/streamed/acc",
            "labels/streamed_rows"} <= fwd_nodes, fwd_nodes
    grad = "gradients/SparseSoftmaxCrossEntropy_grad/"
    assert {grad + "Softmax/streamed", grad + "OneHot/streamed", grad + "ExpandDims/streamed",
            grad + "Sub/streamed", grad + "Mul/streamed", "labels/streamed_rows"} <= bwd_nodes
    assert "SparseSoftmaxCrossEntropy/streamed" in str(fwd.op.body)
    assert grad + "OneHot/streamed" in str(bwd.op.body)
    (t,) = [n for n in graph.nodes if n.name == "labels/streamed/Transpose"]
    assert t.op.perm == (1, 0) and "labels/streamed/Transpose" in text
    readers = [n for n in graph.nodes if t.outputs[0] in n.inputs]
    # (and the check that labels has the loop's steps, reading its shape only)
    checks = [n for n in readers if n.op.name == "check_steps"]
    assert [n.name for n in checks] == ["labels/streamed/check_steps"]
    assert [n for n in readers if n not in checks] == [fwd, bwd]
    assert not [n for n in graph.nodes if n.op.name in (
        "softmax", "one_hot", "sparse_softmax_cross_entropy", "expand_dims", "sub", "mul")]
    _close(got, rg.Session(g).run(fetches, fd))


@pytest.mark.parametrize("form,batch", [("rank3", "static"), ("reshape", None)])
def test_a_saved_and_reloaded_streamed_softmax_head_runs(tmp_path, form, batch):
    g, fetches, fd = _graph(11, 4, 5, 3, 6, form, batch)
    sess = rg.Session(g, passes={**STREAM, "chunk_steps": 4})
    rerun_saved(sess, g, fetches, fd, tmp_path)
    assert all(_moved(sess))


# --- the planner -----------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["offload", "recompute", "auto"])
@pytest.mark.parametrize("form", ["rank3", "reshape"])
def test_a_softmax_head_fits_a_tenth_budget(strategy, form):
    """Without the pass the logits, their softmax, the one-hot labels and the output stack and
    its gradient stay whole, and no plan reaches a tenth of the saved tensors."""
    # (V small: the model counts the head's [H, V] float64 kernel-gradient accumulator in each
    # stored checkpoint of a chunked loop, which the run does not hold; see run_planned)
    T, B, H, I, V = 200, 32, 64, 8, 10
    g, fetches, fd = _graph(T, B, H, I, V, form)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    budget = _saved_bytes(g, fetches, fd) // 10
    off = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                     memory_strategy=strategy, passes={"stream_outputs": False})
    assert not off.memory_plan(fetches, fd).fits
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    _close(run_planned(sess, plan, budget, strategy, g, fetches, fd), ref, rtol=2e-5)


def test_the_issues_t1000_lstm_with_a_softmax_head_fits_a_tenth():
    """Issue 29's case (B=32, H=256, inputs 32, T=1000, no projection) with a 50-class softmax
    head and labels fed per step."""
    T, B, H, I, V = 1000, 32, 256, 32, 50
    check_fits_a_tenth_streamed(*_graph(T, B, H, I, V))


# --- refusals --------------------------------------------------------------------------------

def _custom(make, T=10, B=4, H=5, I=3, V=6):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [B, None], name="labels")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32)
        value = make(rg.layers.dense(out, V), L)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    return g, fetches, {X: rs.randn(B, T, I).astype(np.float32),
                        L: rs.randint(0, V, size=(B, T)).astype(np.int32)}


def test_a_softmax_over_time_is_refused():
    """softmax along the time axis mixes the steps: not a row op."""
    def make(logits, L):
        return rg.reduce_sum(rg.nn.softmax(logits, axis=1) * rg.cast(
            rg.one_hot(L, 6), rg.float32))
    _unstreamed(*_custom(make))


def test_labels_computed_from_the_loops_outputs_are_refused():
    """Labels taken from the logits themselves (argmax) need the whole loop first."""
    def make(logits, L):
        guess = rg.cast(rg.argmax(logits, axis=-1), rg.int32)
        return rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
            labels=guess, logits=logits))
    _unstreamed(*_custom(make))


def test_an_invariant_reshaped_operand_stays_an_invariant():
    """A reshaped [V] offset added to the logits is the same at every step (read as an
    invariant, not as rows of a fed value); the head still streams."""
    def make(logits, L):
        shift = _var_like("shift", [1, 6])
        return rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
            labels=L, logits=logits + rg.reshape(shift, [6])))
    g, fetches, fd = _custom(make)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    fwd, bwd = _rows_read(sess)
    assert "labels/streamed_rows" in fwd and "labels/streamed_rows" in bwd
    assert not any(name.startswith("Reshape") or name.startswith("shift")
                   for name in fwd | bwd), (fwd, bwd)
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-6)


def _var_like(name, shape):
    init = rg.constant_initializer(np.random.RandomState(3).randn(*shape) * 0.5)
    return rg.get_variable(name, shape, rg.float32, initializer=init)


def test_a_log_softmax_loss_streams_with_its_gradient():
    """-sum(log_softmax(logits) * one_hot(L)): log_softmax is a row op, one_hot(L) is made per
    step from the labels' rows, and its gradient's sum of g along the class axis (keepdims) is
    a row op too: the loss moves into the forward loop, its gradient into the backward loop
    (more forms in test_memory_streamed_log_softmax.py)."""
    def make(logits, L):
        return -rg.reduce_sum(rg.nn.log_softmax(logits) * rg.one_hot(L, 6, dtype=rg.float32))
    g, fetches, fd = _custom(make)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    fwd, bwd = _moved(sess)
    assert {"LogSoftmax/streamed", "OneHot/streamed", "ReduceSum/streamed/acc"} <= fwd, fwd
    assert "gradients/LogSoftmax_grad/ReduceSum/streamed" in bwd, bwd
    fwd, bwd = _rows_read(sess)
    assert "labels/streamed_rows" in fwd and "labels/streamed_rows" in bwd
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-6)
