"""stream_outputs through concat([fw, bw], -1) (issue 29): a dense head and a sparse softmax
cross-entropy over both directions of bidirectional_dynamic_rnn concatenated (a tagger), with
or without sequence_length mask weights. The forward direction's loop runs first, so the
backward direction's loop reads its outputs a row per step (through the same reversal, transpose
and row order as a fed target) and streams the head, its loss and its gradient; the gradient's
piece for the forward direction is stacked by that loop and read back whole by the forward
direction's gradient loop. The forward direction's output stack stays whole (the plan says why).

Gradients against NumPy (float64 reference), finite differences (float64) and the unstreamed
run, with and without sequence_length (rows of length 0 and T), batch- and time-major; the IR;
plans under budgets (measured peak within the budget and equal to the prediction); a saved
program run again."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, numpy_lstm_backward, numpy_lstm_forward
from test_memory_embedding_bidir import _program, numeric_grad
from test_memory_stream_bidir import (CASES, IDS, _bw_loops, _fed, _floor, _model,
                                      _reverse_within, _whole_bw_outputs)
from test_memory_streamed import _streamed_nodes, rerun_saved, run_planned

STREAM = {"stream_outputs": "always"}   # (forced: the pass itself is tested)
NO_STREAM = {"stream_outputs": False}


def _fw_loops(graph):
    loops = [n for n in graph.nodes if n.op.name == "loop" and "/fw/" in n.name]
    assert len(loops) == 2, [n.name for n in loops]
    return loops


def _numpy_concat_head(fd, variables, time_major):
    """The loss and gradients (fw kernel and bias, bw kernel and bias, dense kernel and bias,
    X) of `_model`'s "concat" head, written out in NumPy (float64): logits = concat([fw, bw],
    -1) @ K + c, a sparse softmax cross-entropy weighted by the sequence mask (TF1's sum over
    the nonzero weights), or its mean without lengths."""
    x = _fed(fd, "X").astype(np.float64)
    labels = _fed(fd, "labels")
    if time_major:
        x, labels = x.transpose(1, 0, 2), labels.T
    B, T, I = x.shape
    lens = _fed(fd, "L")
    full = np.full(B, T) if lens is None else lens
    Wf, bf, Wb, bb, K, c = (v.astype(np.float64) for v in variables)
    H = Wf.shape[1] // 4
    yf, tf = numpy_lstm_forward(x, Wf, bf, lens)
    yr, tb = numpy_lstm_forward(_reverse_within(x, full), Wb, bb, lens)
    cat = np.concatenate([yf, _reverse_within(yr, full)], -1)
    logits = cat @ K + c
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    xent = -np.take_along_axis(logp, labels[..., None].astype(np.int64), -1)[..., 0]
    w = np.ones((B, T)) if lens is None else (np.arange(T)[None] < lens[:, None]).astype(float)
    n = np.count_nonzero(w)
    loss = np.sum(w * xent) / n
    dlogits = (np.exp(logp) - np.eye(K.shape[1])[labels]) * (w / n)[..., None]
    dK = cat.reshape(-1, 2 * H).T @ dlogits.reshape(-1, K.shape[1])
    dc = dlogits.sum((0, 1))
    dcat = dlogits @ K.T
    dWf, dbf, dxf = numpy_lstm_backward(tf, dcat[..., :H], Wf, I, inputs=True)
    dWb, dbb, dxr = numpy_lstm_backward(tb, _reverse_within(dcat[..., H:], full), Wb, I,
                                        inputs=True)
    dx = dxf + _reverse_within(dxr, full)
    return [loss, dWf, dbf, dWb, dbb, dK, dc, dx.transpose(1, 0, 2) if time_major else dx]


def _whole_head_values(graph, H, V):
    """Nodes outside the loops holding a [T, B, 2H] or [T, B, V] value of the head (the
    concatenated outputs, the logits, their gradients), merged into rows or not."""
    return [n.name for n in graph.nodes if "/streamed" not in n.name and n.op.name != "loop"
            and n.outputs and n.outputs[0].type.rank >= 2
            and n.outputs[0].type.shape[-1] in (2 * H, V)
            and None in n.outputs[0].type.shape]


# --- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths,time_major", CASES, ids=IDS)
def test_a_head_over_both_directions_concatenated_streams_as_numpy_computes(lengths, time_major):
    """The backward direction's loops stream the head (its concat reading the forward
    direction's rows per step), against two NumPy LSTMs and the head written out, and against
    the unstreamed run; no [T, B, 2H] or [T, B, V] value and no whole backward-direction output
    is left outside the loops."""
    T, B, H, I, V = 12, 4, 5, 3, 7
    g, fetches, fd = _model(T, B, H, I, lengths, time_major, head="concat", V=V)
    sess = rg.Session(g, passes={**STREAM, "fuse": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    fwd, bwd = _bw_loops(graph)
    assert _streamed_nodes(fwd.op.body) and _streamed_nodes(bwd.op.body)
    assert [n for n in fwd.op.body.nodes if n.op.name == "concat_grad"]
    whole = [n for n in _whole_bw_outputs(graph, H) if "/fw/" not in n]   # (fw's: whole)
    assert not whole, whole
    assert not _whole_head_values(graph, H, V), _whole_head_values(graph, H, V)
    # the forward direction's loops are left as they were: its output read whole
    assert not any(_streamed_nodes(n.op.body) for n in _fw_loops(graph))
    if lengths:   # (masked: zero where the loops do not run, which keep their active rows)
        assert fwd.op.active_rows and bwd.op.active_rows
    want = _numpy_concat_head(fd, [sess.run(v) for v in g.collections["variables"]],
                              time_major)
    _close(got, want, rtol=2e-5)
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_concat_head_gradients_match_finite_differences(lengths):
    """float64: d loss / d X of the streamed program (the forward direction's gradient read
    back from the rows the backward direction's loop stacked) against central differences of
    its loss, every entry."""
    T, B, H, I = 5, 3, 3, 2
    g, fetches, fd = _model(T, B, H, I, lengths, False, head="concat", V=4, dtype=rg.float64)
    sess = rg.Session(g, passes=STREAM)
    out = sess.run(fetches, fd)
    fwd, bwd = _bw_loops(_program(sess).graph)
    assert _streamed_nodes(fwd.op.body) and _streamed_nodes(bwd.op.body)
    X = next(k for k in fd if k.node.name == "X")
    np.testing.assert_allclose(out[-1], numeric_grad(sess, fetches[0], fd, X, fd[X]),
                               rtol=1e-6, atol=1e-8)


def test_an_unmasked_loss_with_lengths_runs_every_row():
    """Without sequence_length the unmasked cross-entropy is not zero at zero outputs; with
    lengths and no mask weights (TF1 counts the padded steps against the labels) the backward
    direction's loop runs every row of every step (its gradient piece for the forward
    direction is then whole at the padded steps too), as the unstreamed run computes."""
    T, B, H, I, V = 9, 4, 5, 3, 6
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L")
        Y = rg.placeholder(rg.int32, [B, None], name="labels")
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(H), rg.nn.LSTMCell(H), X, sequence_length=L, dtype=rg.float32)
        logits = rg.layers.dense(rg.concat([fw, bw], 2), V)
        loss = rg.losses.sparse_softmax_cross_entropy(Y, logits)
        fetches = [loss] + rg.gradients(loss, rg.global_variables() + [X])
    rs = np.random.RandomState(3)
    fd = {X: rs.randn(B, T, I).astype(np.float32), L: np.array([T, 0, 1, 5], np.int32),
          Y: rs.randint(0, V, size=(B, T)).astype(np.int32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    fwd, bwd = _bw_loops(_program(sess).graph)
    assert _streamed_nodes(fwd.op.body) and not fwd.op.active_rows
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)


def test_a_concat_of_one_loops_outputs_along_the_last_axis_streams():
    """concat([y, 2 * y], -1) of one dynamic_rnn's outputs under a dense head: per-step work
    of that loop (its gradient's two pieces both region work: nothing made whole), against the
    unstreamed run and the same head over [y, 2y] written out as one dense layer of y."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, None, 3], name="X")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        logits = rg.layers.dense(rg.concat([y, y * 2.0], -1), 6)
        loss = rg.reduce_sum(logits * logits)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(0).randn(4, 7, 3).astype(np.float32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    assert _streamed_nodes(graph)
    assert not [n for n in graph.nodes if n.op.name in ("concat", "concat_grad")]
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)
    out, (K, c) = rg.Session(g).run(y, fd), [sess.run(v) for v in g.collections["variables"][2:]]
    ref = (out @ K[:5] + 2.0 * out @ K[5:] + c).astype(np.float64)
    np.testing.assert_allclose(got[0], np.sum(ref * ref), rtol=1e-5)


def test_a_concat_along_time_stays_whole():
    """concat([y, y], 1) of one dynamic_rnn's outputs (along time: not per-step work) leaves
    the output stack whole, values unchanged bit for bit."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, None, 3], name="X")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        c = rg.concat([y, y * 2.0], 1)
        loss = rg.reduce_sum(c * c)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(0).randn(4, 7, 3).astype(np.float32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert not _streamed_nodes(_program(sess).graph)
    for a, b in zip(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd)):
        assert np.array_equal(a, b)


# --- the IR ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_a_saved_concat_head_program_runs_again(tmp_path, lengths):
    """The program a plan at the smallest budget compiles (streamed, saved tensors placed,
    fused kernels included), saved, read back and run: the same values bit for bit."""
    g, fetches, fd = _model(9, 4, 5, 3, lengths, False, head="concat")
    floor = _floor(g, fetches, fd)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=floor).memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    sess = rg.Session(g, device=SimulatedDevice(), passes=plan.passes)
    sess.run(fetches, fd)
    assert [n for n in _program(sess).graph.nodes if n.op.name == "loop" and "/bw/" in n.name
            and [b for b in n.op.body.nodes if b.op.name == "concat" and "/streamed" in b.name]]
    rerun_saved(sess, g, fetches, fd, tmp_path)


# --- under a budget -------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_the_concat_head_floor_is_lower_and_a_budget_sweep_runs_as_predicted(lengths):
    """T=40: streaming the backward direction through the concat lowers the smallest budget
    the planner finds (below the floor without streaming); the plan says the forward
    direction's outputs stay whole and why; on a sweep from the floor to the unconstrained peak
    every plan fits, runs within its budget, its measured peak the prediction, and the values
    are the unconstrained run's."""
    g, fetches, fd = _model(40, 8, 16, 4, lengths, False, head="concat", V=24)
    free = rg.Session(g, device=SimulatedDevice())
    ref = free.run(fetches, fd, report=True)
    top = free.last_run_report.peak_bytes
    floor = _floor(g, fetches, fd)
    assert floor < _floor(g, fetches, fd, passes=NO_STREAM)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=floor).memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    low = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
    said = [n for n in low.notes if n.startswith("stream_outputs: ")]
    assert any("fw/while: its output stays whole" in n and "Concat" in n for n in said), said
    assert not any("bw/while: its output stays whole" in n for n in said), said
    for budget in np.linspace(floor, top, 4).astype(np.int64):
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy="offload")
        plan = sess.memory_plan(fetches, fd)
        assert plan.fits, (budget, str(plan))
        got = run_planned(sess, plan, budget, "offload", g, fetches, fd)
        _close(got, ref, rtol=1e-5)


def test_opt_in_streaming_of_the_concat_head_never_raises_the_peak():
    """passes={"stream_outputs": True} without a budget: the measured peak is at most the
    unplanned one's, the values the same."""
    for lengths in (False, True):
        g, fetches, fd = _model(30, 8, 16, 4, lengths, False, head="concat", V=40)
        plain = rg.Session(g, device=SimulatedDevice())
        want = plain.run(fetches, fd)
        sess = rg.Session(g, device=SimulatedDevice(), passes={"stream_outputs": True})
        got = sess.run(fetches, fd)
        assert sess.last_run_report.peak_bytes <= plain.last_run_report.peak_bytes
        assert _streamed_nodes(_program(sess).graph), lengths   # (it did not stand down)
        _close(got, want, rtol=1e-5)
