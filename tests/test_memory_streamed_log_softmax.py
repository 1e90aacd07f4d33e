"""The stream_outputs pass on log_softmax losses and their gradients.

Losses written with log_softmax over a dense head, against labels fed per step:
- `-reduce_mean(reduce_sum(one_hot(L, V) * log_softmax(logits), -1))`, L int [B, T];
- `reduce_mean(softmax_cross_entropy_with_logits_v2(labels=P, logits=logits))`, P a fed
  [B, T, V] distribution (and the v1 form, which stops P's gradient).
Sums along the class axis alone (the per-row cross-entropy; log_softmax's gradient
g - exp(y) * reduce_sum(g, -1, keepdims=True)) and the broadcast of a [.., 1] gradient back
along that axis are row ops: they join the per-step region like softmax does, so the loss moves
into the forward loop and its gradient into the backward loop, and no [B, T, V] value is made.
Results against the unstreamed program and NumPy, with and without sequence_length, the printed
IR, the planner under a tenth of the saved tensors, and a refusal."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program, numpy_lstm_backward, numpy_lstm_forward
from test_memory_streamed import _saved_bytes, _streamed_nodes
from test_memory_streamed_lengths import check_streamed_plan
from test_memory_streamed_targets import _fed, _moved, _rows_read, _unstreamed

STREAM = {"stream_outputs": "always"}   # (forced: the pass itself is tested)
V = 6


def _loss(form, logits, P, dtype):
    if form == "onehot":
        return -rg.reduce_mean(rg.reduce_sum(
            rg.one_hot(P, V, dtype=dtype) * rg.nn.log_softmax(logits), -1))
    if form == "v2":
        return rg.reduce_mean(rg.nn.softmax_cross_entropy_with_logits_v2(labels=P,
                                                                         logits=logits))
    assert form == "v1"
    return rg.reduce_mean(rg.nn.softmax_cross_entropy_with_logits(labels=P, logits=logits))


def _graph(T, B, H, I, form, time_major=False, batch="static", dtype=rg.float32,
           lengths=False, seed=0):
    """An LSTM over X, a dense head of V classes and form's loss against the labels P (int
    [B, T] for "onehot", else [B, T, V] distributions); fetches: the loss, then every
    variable's gradient (the LSTM's kernel and bias, the head's kernel and bias)."""
    batch = B if batch == "static" else batch
    g = rg.Graph()
    with g.as_default():
        lead = [None, batch] if time_major else [batch, None]
        X = rg.placeholder(dtype, lead + [I], name="X")
        P = rg.placeholder(rg.int32, lead, name="labels") if form == "onehot" else \
            rg.placeholder(dtype, lead + [V], name="labels")
        S = rg.placeholder(rg.int32, [batch], name="S") if lengths else None
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=dtype, sequence_length=S,
                                   time_major=time_major)
        logits = rg.layers.dense(out, V)
        value = _loss(form, logits, P, dtype)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(seed)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(dtype)}
    if form == "onehot":
        fd[P] = rs.randint(0, V, size=shape).astype(np.int32)
    else:
        p = rs.rand(*shape, V) + 0.1
        fd[P] = (p / p.sum(-1, keepdims=True)).astype(dtype)
    if lengths:
        fd[S] = np.minimum(rs.randint(T // 3, T + 1, size=B), T - 2).astype(np.int32)
        fd[S][2] = 1
    return g, fetches, fd


FORMS = ["onehot", "v2", "v1"]
LAYOUTS = [(False, "static"), (False, None), (True, None)]
LAYOUT_IDS = ["batch_major", "batch_major-any_batch", "time_major-any_batch"]


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("time_major,batch", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("form", FORMS)
def test_log_softmax_losses_stream_and_give_the_unstreamed_results(form, time_major, batch,
                                                                   dtype, lengths):
    g, fetches, fd = _graph(13, 4, 5, 3, form, time_major, batch, getattr(rg, dtype), lengths)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    assert all(_moved(sess))
    fwd, bwd = _rows_read(sess)   # both loops read the labels' rows
    assert "labels/streamed_rows" in fwd and "labels/streamed_rows" in bwd, (fwd, bwd)
    _close(got, want, rtol=1e-6 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("time_major,batch", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("form", FORMS)
def test_streamed_log_softmax_losses_give_the_gradients_numpy_computes(form, time_major, batch,
                                                                       lengths):
    """The mean over every step of every row of -sum(P * log_softmax(y K + b)), the outputs
    zero past a row's length (TF1), and its gradients, in NumPy: by the logits
    (softmax * sum(P) - P) / (B T)."""
    g, fetches, fd = _graph(17, 4, 6, 3, form, time_major, batch, rg.float64, lengths)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    W, bias, K, b = (sess.run(v) for v in g.collections["variables"])
    x, P, lens = _fed(fd, "X"), _fed(fd, "labels"), _fed(fd, "S")
    if time_major:
        x, P = x.swapaxes(0, 1), P.swapaxes(0, 1)
    if form == "onehot":
        P = np.eye(V)[P]
    ys, tape = numpy_lstm_forward(x, W, bias, lens)
    z = ys @ K + b
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    n = P.shape[0] * P.shape[1]
    loss = -np.sum(P * logp) / n
    dz = (np.exp(logp) * P.sum(-1, keepdims=True) - P) / n
    dW, dbias = numpy_lstm_backward(tape, dz @ K.T, W, x.shape[2])
    dK = ys.reshape(-1, ys.shape[2]).T @ dz.reshape(-1, V)
    _close(got, [loss, dW, dbias, dK, dz.sum((0, 1))], rtol=1e-10)


@pytest.mark.parametrize("form", ["onehot", "v1"])
def test_the_printed_ir_shows_log_softmax_and_its_gradient_per_step(form):
    """The forward loop computes the per-row cross-entropy of a step and sums it; the backward
    loop computes log_softmax's gradient g - exp(y) * sum(g) per step (the sum along the class
    axis, the broadcast of the cross-entropy's gradient back along it); no [B, T, V] value is
    left outside the loops."""
    g, fetches, fd = _graph(9, 4, 5, 3, form)
    sess = rg.Session(g, passes={**STREAM, "fuse": False, "hoist_sequence": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    fwd, bwd = _loops(graph)[:2]
    fwd_nodes = {n.name for n in _streamed_nodes(fwd.op.body)}
    bwd_nodes = {n.name for n in _streamed_nodes(bwd.op.body)}
    assert any(n.endswith("LogSoftmax/streamed") for n in fwd_nodes), fwd_nodes
    assert any(n.startswith("ReduceMean/streamed") for n in fwd_nodes), fwd_nodes
    grads = {n for n in bwd_nodes if "LogSoftmax_grad/" in n}
    assert {n.split("LogSoftmax_grad/")[1] for n in grads} >= \
        {"ReduceSum/streamed", "Exp/streamed", "Mul/streamed", "Sub/streamed"}, grads
    assert any("BroadcastLike/streamed" in n for n in bwd_nodes), bwd_nodes
    # (the fed distributions reach the loops through one time-major transpose)
    assert not [n for n in graph.nodes if n.outputs and n.outputs[0].type.rank == 3
                and n.outputs[0].type.shape[-1] == V and n.op.name != "placeholder"
                and n.name != "labels/streamed/Transpose"]
    _close(got, rg.Session(g).run(fetches, fd))


@pytest.mark.parametrize("strategy", ["offload", "recompute", "auto"])
@pytest.mark.parametrize("form,lengths", [("onehot", False), ("v2", False), ("v1", True)],
                         ids=["onehot", "v2", "v1-sequence_length"])
def test_a_log_softmax_loss_runs_under_a_budget_below_the_unstreamed_floor(form, lengths,
                                                                           strategy):
    """Without the pass the logits, their log_softmax and its gradient, the output stack and
    its gradient stay whole: the floor is 39-41% of the saved tensors. Streamed, with the
    labels left on the host, the smallest budget is about a tenth of them (at T = 100 the
    weights and chunk buffers are a larger share than at T = 1000, where 6.2% fits): the run
    stays within it and gives the unconstrained values."""
    T, B, H, I = 100, 32, 64, 8
    g, fetches, fd = _graph(T, B, H, I, form, lengths=lengths)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    tenth = _saved_bytes(g, fetches, fd) // 10

    def plan_at(budget, **options):
        return rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy=strategy, **options).memory_plan(fetches, fd)

    off = plan_at(tenth, passes={"stream_outputs": False})
    on = plan_at(tenth)
    assert not off.fits
    budget = tenth if on.fits else on.min_budget
    assert budget < 1.1 * tenth and 3 * budget < off.min_budget, (budget, tenth, off.min_budget)
    check_streamed_plan(g, fetches, fd, budget, strategy, "labels", ref)


def test_a_log_softmax_over_time_is_refused():
    """log_softmax along the time axis mixes the steps: not a row op."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, None, 3], name="X")
        L = rg.placeholder(rg.int32, [4, None], name="labels")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        logits = rg.layers.dense(out, V)
        value = -rg.reduce_mean(rg.reduce_sum(
            rg.one_hot(L, V, dtype=rg.float32) * rg.nn.log_softmax(logits, axis=1), -1))
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    _unstreamed(g, fetches, {X: rs.randn(4, 10, 3).astype(np.float32),
                             L: rs.randint(0, V, size=(4, 10)).astype(np.int32)})
