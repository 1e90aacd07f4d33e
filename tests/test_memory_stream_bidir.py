"""stream_outputs through reverse_sequence (issue 29): bidirectional_dynamic_rnn runs its
backward direction over reverse_sequence(x, lengths) and reverses that loop's output stack back
with another reverse_sequence. A reversal along the time axis reorders each row's steps: a sum
over time does not see it, and per-step work commutes with it where a fed operand that varies
over time (a target, labels, a sequence mask) is read through the same reversal. So the
backward direction's output stack, the loss's temporaries over it and its gradient are streamed
like the forward direction's. A head over concat([fw, bw], -1) streams through the backward
direction's loops, which read the forward direction's outputs a row per step; the forward
direction's output stays whole (the plan says why; test_memory_stream_concat.py).

Gradients against NumPy, finite differences and the unstreamed run, with and without
sequence_length (rows of length 0 and T), batch- and time-major; the IR; plans under budgets
(measured peak within the budget and equal to the prediction); opt-in streaming never above
the unplanned peak."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, numpy_lstm_backward, numpy_lstm_forward
from test_memory_embedding_bidir import _bidir, _check_numpy, _program, numeric_grad
from test_memory_streamed import _streamed_nodes, rerun_saved, run_planned

STREAM = {"stream_outputs": "always"}   # (forced: the pass itself is tested)
NO_STREAM = {"stream_outputs": False}


def _model(T, B, H, I, lengths, time_major, head="squares", V=5, dtype=rg.float32, seed=0):
    """A bidirectional LSTM over a fed X. head "squares": sum(fw^2) + sum(bw^2); "bw":
    sum(bw^2) alone; "target": sum(fw^2) + mean((bw - Y)^2), Y fed; "heads": a dense head
    and a sparse softmax cross-entropy per direction (weighted by a sequence mask with
    lengths); "concat": one dense head over concat([fw, bw], -1)."""
    g = rg.Graph()
    with g.as_default():
        lead = [None, B] if time_major else [B, None]
        X = rg.placeholder(dtype, lead + [I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L") if lengths else None
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(H), rg.nn.LSTMCell(H), X, sequence_length=L, dtype=dtype,
            time_major=time_major)
        extra = {}
        if head == "squares":
            loss = rg.reduce_sum(fw * fw) + rg.reduce_sum(bw * bw)
        elif head == "bw":
            loss = rg.reduce_sum(bw * bw)
        elif head == "target":
            Y = extra["Y"] = rg.placeholder(dtype, lead + [H], name="Y")
            loss = rg.reduce_sum(fw * fw) + rg.reduce_mean(rg.square(bw - Y))
        elif head in ("heads", "concat"):
            Y = extra["labels"] = rg.placeholder(rg.int32, lead, name="labels")
            w = None
            if lengths:
                w = rg.sequence_mask(L, T, dtype=dtype)
                w = rg.transpose(w, [1, 0]) if time_major else w
            if head == "heads":
                with rg.variable_scope("head_fw"):
                    lf = rg.layers.dense(fw, V)
                with rg.variable_scope("head_bw"):
                    lb = rg.layers.dense(bw, V)
                loss = rg.losses.sparse_softmax_cross_entropy(Y, lf, weights=1.0 if w is None
                                                              else w) + \
                    rg.losses.sparse_softmax_cross_entropy(Y, lb, weights=1.0 if w is None
                                                           else w)
            else:
                logits = rg.layers.dense(rg.concat([fw, bw], -1), V)
                loss = rg.losses.sparse_softmax_cross_entropy(Y, logits, weights=1.0 if w is
                                                              None else w)
        fetches = [loss] + rg.gradients(loss, rg.global_variables() + [X])
    rs = np.random.RandomState(seed)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(dtype.name if hasattr(dtype, "name") else dtype)}
    if "Y" in extra:
        fd[extra["Y"]] = rs.randn(*shape, H).astype(fd[X].dtype)
    if "labels" in extra:
        fd[extra["labels"]] = rs.randint(0, V, size=shape).astype(np.int32)
    if lengths:
        lens = rs.randint(1, T + 1, size=B)
        lens[0], lens[1] = T, 0   # (a full row and an empty one)
        if B > 2:
            lens[2] = 1
        fd[L] = lens.astype(np.int32)
    return g, fetches, fd


def _fed(fd, name):
    return next((a for k, a in fd.items() if k.node.name == name), None)


def _reverse_within(a, lens):
    """Each row of a [B, T, ...] reversed within its length, in NumPy."""
    out = a.copy()
    for r, n in enumerate(lens):
        out[r, :n] = a[r, :n][::-1]
    return out


def _numpy_bidir(fd, variables, time_major, head):
    """The loss and gradients (fw kernel and bias, bw kernel and bias, X) of `_model`'s
    "squares" or "target" head, written out in NumPy (float64)."""
    x = _fed(fd, "X").astype(np.float64)
    x = x.transpose(1, 0, 2) if time_major else x
    B, T, I = x.shape
    lens = _fed(fd, "L")
    full = np.full(B, T) if lens is None else lens
    Wf, bf, Wb, bb = (v.astype(np.float64) for v in variables)
    yf, tf = numpy_lstm_forward(x, Wf, bf, lens)
    xr = _reverse_within(x, full)
    yr, tb = numpy_lstm_forward(xr, Wb, bb, lens)
    bw = _reverse_within(yr, full)           # the backward direction's outputs, in input order
    loss = np.sum(yf * yf)
    if head == "squares":
        loss += np.sum(bw * bw)
        dbw = 2 * bw
    else:
        Y = _fed(fd, "Y").astype(np.float64)
        Y = Y.transpose(1, 0, 2) if time_major else Y
        loss += np.mean((bw - Y) ** 2)
        dbw = 2 * (bw - Y) / bw.size
    dWf, dbf, dxf = numpy_lstm_backward(tf, 2 * yf, Wf, I, inputs=True)
    dWb, dbb, dxr = numpy_lstm_backward(tb, _reverse_within(dbw, full), Wb, I, inputs=True)
    dx = dxf + _reverse_within(dxr, full)
    return [loss, dWf, dbf, dWb, dbb, dx.transpose(1, 0, 2) if time_major else dx]


def _bw_loops(graph):
    """The backward direction's forward loop and its gradient loop."""
    loops = [n for n in _loops(graph) if "/bw/" in n.name]
    assert len(loops) == 2, [n.name for n in loops]
    return loops


def _whole_bw_outputs(graph, H):
    """Nodes outside the loops that hold the backward direction's [T, B, H] outputs or their
    gradient: reverse_sequence, transpose, permute_rows and elementwise ops of rank 3 whose
    last dim is H (not a fed target made time-major and reversed for the loops to read)."""
    return [n.name for n in graph.nodes if "/streamed" not in n.name
            and n.op.name in ("reverse_sequence", "transpose", "permute_rows", "mul", "add_n",
                             "sub", "square")
            and n.outputs and n.outputs[0].type.rank == 3
            and n.outputs[0].type.shape[-1] == H]


CASES = [(False, False), (True, False), (False, True), (True, True)]
IDS = ["full-batch_major", "sequence_length-batch_major", "full-time_major",
       "sequence_length-time_major"]


# --- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths,time_major", CASES, ids=IDS)
@pytest.mark.parametrize("head", ["squares", "target"])
def test_streamed_bidirectional_gradients_are_the_ones_numpy_computes(lengths, time_major,
                                                                      head):
    """Both directions streamed (the backward one through both reverse_sequences; a target
    read through the same reversal), against two NumPy LSTMs, the second over the inputs
    reversed within their lengths, and against the unstreamed run."""
    T, B, H, I = 13, 5, 6, 3
    g, fetches, fd = _model(T, B, H, I, lengths, time_major, head)
    sess = rg.Session(g, passes={**STREAM, "fuse": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    fwd, bwd = _bw_loops(graph)
    assert _streamed_nodes(fwd.op.body) and _streamed_nodes(bwd.op.body)
    assert not _whole_bw_outputs(graph, H), _whole_bw_outputs(graph, H)
    want = _numpy_bidir(fd, [sess.run(v) for v in g.collections["variables"]], time_major,
                        head)
    _close(got, want, rtol=2e-5)
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)


@pytest.mark.parametrize("lengths,time_major", CASES, ids=IDS)
def test_separate_heads_stream_with_their_labels_and_mask_read_reversed(lengths, time_major):
    """A dense head and a (masked, with lengths) sparse softmax cross-entropy per direction:
    the backward direction's labels and sequence mask are read per step through the same
    reversal; no [T, B, V] or [T, B, H] value of it is left outside the loops. Against the
    unstreamed run."""
    T, B, H, I, V = 12, 4, 5, 3, 7
    g, fetches, fd = _model(T, B, H, I, lengths, time_major, head="heads", V=V)
    sess = rg.Session(g, passes={**STREAM, "fuse": False})
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    fwd, bwd = _bw_loops(graph)
    assert _streamed_nodes(fwd.op.body) and _streamed_nodes(bwd.op.body)
    assert not _whole_bw_outputs(graph, H) and not _whole_bw_outputs(graph, V)
    # (the labels reversed once before the loop, then read a row per step)
    assert [n for n in graph.nodes if n.op.name == "reverse_sequence" and
            n.name.startswith("labels/streamed")]
    if lengths:   # (masked: zero where the loops do not run, which keep their active rows)
        assert fwd.op.active_rows and bwd.op.active_rows
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_streamed_gradients_match_finite_differences(lengths):
    """float64, the separate heads (the backward one streamed through the reversals): d loss
    / d X of the streamed program against central differences of its loss, every entry."""
    T, B, H, I = 5, 3, 3, 2
    g, fetches, fd = _model(T, B, H, I, lengths, False, head="heads", V=4, dtype=rg.float64)
    sess = rg.Session(g, passes=STREAM)
    out = sess.run(fetches, fd)
    fwd, bwd = _bw_loops(_program(sess).graph)
    assert _streamed_nodes(fwd.op.body) and _streamed_nodes(bwd.op.body)
    X = next(k for k in fd if k.node.name == "X")
    np.testing.assert_allclose(out[-1], numeric_grad(sess, fetches[0], fd, X, fd[X]),
                               rtol=1e-6, atol=1e-8)


def test_the_backward_direction_alone_streams_and_the_embedding_model_matches_numpy():
    """sum(bw^2) alone (the forward direction's outputs unused) streams; and the embedding
    model of test_memory_embedding_bidir (both directions' outputs in the loss) streamed
    with sink_gather, against its NumPy check."""
    g, fetches, fd = _model(10, 4, 5, 3, True, False, head="bw")
    fetches = [f for f in fetches if f is not None]
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    fwd, bwd = _bw_loops(_program(sess).graph)
    assert _streamed_nodes(fwd.op.body) and _streamed_nodes(bwd.op.body)
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)
    for lengths in (False, True):
        g, fetches, fd = _bidir(11, 4, 5, 7, 3, lengths)
        sess = rg.Session(g, passes={**STREAM, "sink_gather": True})
        got = sess.run(fetches, fd)
        graph = _program(sess).graph
        assert all(_streamed_nodes(n.op.body) for n in _loops(graph))
        _check_numpy(sess, g, fd, got, lengths)


# --- what stays whole -----------------------------------------------------------------------------
def test_a_head_over_both_directions_concatenated_leaves_the_first_direction_whole():
    """concat([fw, bw], -1) under one dense head: the forward direction's loop runs first, so
    the backward direction's loops stream the head, reading its outputs a row per step; the
    forward direction's output stays whole (its loops as they were), the plan's notes say why,
    and the values are the unstreamed ones up to the order of the sums."""
    g, fetches, fd = _model(10, 4, 5, 3, True, False, head="concat")
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    fwd, bwd = _bw_loops(graph)
    assert _streamed_nodes(fwd.op.body) and _streamed_nodes(bwd.op.body)
    assert not any(_streamed_nodes(n.op.body) for n in _loops(graph) if "/fw/" in n.name)
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
    said = [n for n in plan.notes if n.startswith("stream_outputs: ")]
    assert any("fw/while: its output stays whole" in n and "Concat" in n for n in said), \
        plan.notes
    assert not any("bw/while" in n for n in said), plan.notes


@pytest.mark.parametrize("which", ["other_lengths", "batch_sum"])
def test_a_reversal_it_cannot_prove_is_left_whole(which):
    """reverse_sequence within lengths that are not the loop's (not checked to lie within the
    steps), and a sum over the batch alone after a reversal (a [T, H] value whose rows mix
    steps of the loop): the output stays whole, values unchanged."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, None, 3], name="X")
        K = rg.placeholder(rg.int32, [4], name="K")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        if which == "other_lengths":
            r = rg.reverse_sequence(y, K, seq_axis=1, batch_axis=0)
            loss = rg.reduce_sum(r * r)
        else:
            full = rg.fill([rg.dim(y, 0)], 0, np.int32) + rg.dim(y, 1)
            r = rg.reverse_sequence(y, full, seq_axis=1, batch_axis=0)
            s = rg.reduce_sum(r, axis=0)
            loss = rg.reduce_sum(s * s)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(0).randn(4, 9, 3).astype(np.float32),
          K: np.array([9, 3, 0, 5], np.int32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert not _streamed_nodes(_program(sess).graph)
    for a, b in zip(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd)):
        assert np.array_equal(a, b)


def test_a_user_reversal_of_every_step_streams():
    """reverse_sequence(y, fill([dim(y, 0)], 0) + dim(y, 1)) of a dynamic_rnn's outputs (a
    full reversal, as bidirectional_dynamic_rnn builds without sequence_length), times a fed
    target: the target is read through the same reversal."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, None, 3], name="X")
        Y = rg.placeholder(rg.float32, [4, None, 5], name="Y")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        full = rg.fill([rg.dim(y, 0)], 0, np.int32) + rg.dim(y, 1)
        r = rg.reverse_sequence(y, full, seq_axis=1, batch_axis=0)
        loss = rg.reduce_sum(r * Y)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(4, 9, 3).astype(np.float32), Y: rs.randn(4, 9, 5).astype(np.float32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert _streamed_nodes(_program(sess).graph)
    _close(got, rg.Session(g, passes=NO_STREAM).run(fetches, fd), rtol=1e-6)
    # the loss against NumPy: the reversed outputs times Y is the outputs times Y reversed
    out = rg.Session(g, passes=NO_STREAM).run(y, fd)
    np.testing.assert_allclose(got[0], np.sum(out * fd[Y][:, ::-1]), rtol=1e-5)


# --- the IR ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_a_saved_streamed_bidirectional_program_runs_again(tmp_path, lengths):
    g, fetches, fd = _model(9, 4, 5, 3, lengths, False, head="target")
    rerun_saved(rg.Session(g, passes=STREAM), g, fetches, fd, tmp_path)


# --- under a budget -------------------------------------------------------------------------------
def _floor(g, fetches, fd, passes=True):
    return rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                      passes=passes).memory_plan(fetches, fd).min_budget


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_the_bidirectional_floor_is_lower_and_a_budget_sweep_runs_as_predicted(lengths):
    """The embedding model with both output sequences in the loss (T=60): streaming the
    backward direction lowers the smallest budget the planner finds; on a sweep from there to
    the unconstrained peak every plan fits, runs within its budget, its measured peak the
    prediction, and the values are the unconstrained run's."""
    g, fetches, fd = _bidir(60, 8, 16, 50, 8, lengths)
    free = rg.Session(g, device=SimulatedDevice())
    ref = free.run(fetches, fd, report=True)
    top = free.last_run_report.peak_bytes
    floor = _floor(g, fetches, fd)
    plan = rg.Session(g, device=SimulatedDevice(), memory_budget=floor).memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    assert not any("bw/while: its output stays whole" in n for n in plan.notes), plan.notes
    for budget in np.linspace(floor, top, 5).astype(np.int64):
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy="offload")
        plan = sess.memory_plan(fetches, fd)
        assert plan.fits, (budget, str(plan))
        got = run_planned(sess, plan, budget, "offload", g, fetches, fd)
        _close(got, ref, rtol=1e-5)


def test_opt_in_streaming_of_both_directions_never_raises_the_peak():
    """passes={"stream_outputs": True} without a budget: where it runs streamed, the measured
    peak is at most the unplanned one's and the plan predicts it."""
    for head, lengths in (("squares", False), ("heads", True), ("target", False)):
        g, fetches, fd = _model(30, 8, 16, 4, lengths, False, head=head, V=40)
        plain = rg.Session(g, device=SimulatedDevice())
        want = plain.run(fetches, fd)
        sess = rg.Session(g, device=SimulatedDevice(), passes={"stream_outputs": True})
        got = sess.run(fetches, fd)
        assert sess.last_run_report.peak_bytes <= plain.last_run_report.peak_bytes, head
        _close(got, want, rtol=1e-5)
