"""Streamed losses weighted by a sequence mask, and opt-in streaming's peak.

- rg.sequence_mask (tf.sequence_mask) against NumPy, and its argument errors.
- A per-step loss of a dynamic_rnn with sequence_length that is multiplied by a sequence mask
  of the same lengths (rg.sequence_mask, TF1's `tf.sequence_mask -> cast -> multiply`, an
  expanded mask on [B, T, H] terms, seq2seq.sequence_loss's weights) is zero at the padded
  steps, so the streamed forward loop keeps skipping the finished rows and the steps past the
  longest sequence (its trip count and active rows stay); values against the unstreamed
  program and against NumPy. A mask of other lengths proves nothing: the loop runs every row.
- Opt-in streaming without a budget never raises the peak: the forward loop's running sums
  (the loss, the head's weight gradients) are summed as they go, not stacked after the loop.
"""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program, numpy_lstm_backward, numpy_lstm_forward
from test_memory_streamed_targets import _fed, _moved

STREAM = {"stream_outputs": "always"}   # (forced: the pass itself is tested)
V = 7


# --- rg.sequence_mask ------------------------------------------------------------------------

def _np_mask(lengths, maxlen=None):
    lengths = np.asarray(lengths)
    maxlen = int(lengths.max()) if maxlen is None else maxlen
    return np.arange(maxlen) < lengths[..., None]


@pytest.mark.parametrize("maxlen", [None, 0, 3, 6])
@pytest.mark.parametrize("dtype", ["bool", "float32", "int32"])
def test_sequence_mask_is_numpys(maxlen, dtype):
    lengths = np.array([1, 3, 0, 5], np.int32)
    with rg.Graph().as_default():
        S = rg.placeholder(rg.int32, [None], name="S")
        m = rg.sequence_mask(S, maxlen, dtype=getattr(rg, dtype) if dtype != "bool" else
                             rg.bool_)
        got = rg.Session().run(m, {S: lengths})
    want = _np_mask(lengths, maxlen).astype(dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def test_sequence_mask_takes_lists_tensor_maxlen_and_lengths_of_any_rank():
    with rg.Graph().as_default():
        a = rg.sequence_mask([1, 3, 2], 5)
        n = rg.placeholder(rg.int32, [], name="n")
        L = rg.placeholder(rg.int64, [2, 3], name="L")
        b = rg.sequence_mask(L, n, dtype=rg.float64, name="mask")
        c = rg.sequence_mask(L)
        assert b.node.name == "mask" and b.type.shape == (2, 3, None)
        lens = np.array([[0, 4, 2], [1, 1, 3]], np.int64)
        ga, gb, gc = rg.Session().run([a, b, c], {n: 6, L: lens})
    assert np.array_equal(ga, [[1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    assert np.array_equal(gb, _np_mask(lens, 6).astype(np.float64))
    assert np.array_equal(gc, _np_mask(lens))


def test_sequence_mask_refuses_bad_arguments_naming_them():
    with rg.Graph().as_default():
        with pytest.raises(TypeError, match="lengths must be an integer"):
            rg.sequence_mask(rg.placeholder(rg.float32, [3]))
        with pytest.raises(ValueError, match="maxlen must be a scalar"):
            rg.sequence_mask([1, 2], [3, 4])
        with pytest.raises(ValueError, match="maxlen must be a scalar"):
            rg.sequence_mask([1, 2], rg.placeholder(rg.int32, [2]))
        with pytest.raises(TypeError, match="maxlen must be an integer"):
            rg.sequence_mask([1, 2], 2.5)
        with pytest.raises(ValueError, match="maxlen must be >= 0"):
            rg.sequence_mask([1, 2], -1)
        with pytest.raises(TypeError, match="test_memory_streamed_masks.py"):
            rg.sequence_mask([1.0, 2.0])


# --- masked losses keep the forward loop's row skipping ----------------------------------------

def _graph(T, B, H, I, form, time_major=False, dtype=rg.float32, seed=0, full=True):
    """An LSTM over X with lengths S and a masked loss (form) of a dense head against Y;
    fetches: the loss, then every variable's gradient."""
    g = rg.Graph()
    with g.as_default():
        lead = [None, B] if time_major else [B, None]
        X = rg.placeholder(dtype, lead + [I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S")
        S2 = rg.placeholder(rg.int32, [B], name="S2")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=dtype, sequence_length=S,
                                   time_major=time_major)
        if form == "mse_expanded":   # [B, T, H] terms times expand_dims(mask, -1)
            Y = rg.placeholder(dtype, lead + [H], name="Y")
            m = rg.sequence_mask(S, T, dtype=dtype)
            if time_major:
                m = rg.transpose(m, [1, 0])
            d = out - Y
            value = rg.reduce_sum(rg.square(d) * rg.expand_dims(m, -1)) / \
                (rg.reduce_sum(m) * H)
        else:
            Y = rg.placeholder(rg.int32, lead, name="Y")
            logits = rg.layers.dense(out, V)
            if form == "sequence_loss":   # (seq2seq's weights: merged rows)
                value = rg.contrib.seq2seq.sequence_loss(
                    logits, Y, rg.sequence_mask(S, T, dtype=dtype))
            else:
                xent = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=Y, logits=logits)
                if form == "rg":
                    m = rg.sequence_mask(S, T, dtype=dtype)
                elif form == "tf1":   # tf.sequence_mask(L, tf.shape(x)[1]) -> cast
                    m = rg.cast(rg.sequence_mask(S, rg.shape(X)[0 if time_major else 1]),
                                dtype)
                elif form == "default_maxlen":
                    m = rg.cast(rg.sequence_mask(S), dtype)
                elif form == "other_lengths":   # a mask of lengths the loop does not use
                    m = rg.sequence_mask(S2, T, dtype=dtype)
                elif form == "losses":   # tf.losses' weights, the default reduction
                    m = rg.sequence_mask(S, T, dtype=dtype)
                if time_major:
                    m = rg.transpose(m, [1, 0])
                value = rg.losses.sparse_softmax_cross_entropy(Y, logits, weights=m) \
                    if form == "losses" else rg.reduce_sum(xent * m) / rg.reduce_sum(m)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(seed)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(dtype)}
    fd[Y] = rs.randn(*shape, H).astype(dtype) if form == "mse_expanded" else \
        rs.randint(0, V, size=shape).astype(np.int32)
    lens = rs.randint(T // 3, T - 2, size=B).astype(np.int32)
    lens[2] = 1
    if full:
        lens[1] = T
    fd[S], fd[S2] = lens, np.roll(lens, 1)
    return g, fetches, fd


def _forward_loop(sess):
    (fwd,) = [n for n in _loops(_program(sess).graph) if not n.is_gradient]
    return fwd


FORMS = ["rg", "tf1", "default_maxlen", "mse_expanded", "sequence_loss", "losses"]


@pytest.mark.parametrize("form,time_major", [  # (sequence_loss takes batch-major logits)
    (f, tm) for f in FORMS for tm in (False, True) if not (tm and f == "sequence_loss")])
def test_a_masked_loss_keeps_the_forward_loops_row_skipping(form, time_major):
    g, fetches, fd = _graph(13, 4, 5, 3, form, time_major)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    fwd = _forward_loop(sess)
    # the padded steps weigh 0: the loop keeps its trip count (it stops after the longest
    # sequence) and its active rows (the finished rows are not computed)
    assert fwd.op.has_trip and fwd.op.active_rows
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-5)


@pytest.mark.parametrize("full", [True, False], ids=["one_row_full", "all_short"])
@pytest.mark.parametrize("form", ["rg", "mse_expanded", "sequence_loss"])
def test_a_streamed_masked_loss_gives_the_gradients_numpy_computes(form, full):
    """The masked loss and the LSTM's and head's gradients, written out in NumPy (the mask
    weighs each step's term; the loop skipping rows changes nothing)."""
    T, B, H = 11, 4, 6
    g, fetches, fd = _graph(T, B, H, 3, form, dtype=rg.float64, full=full)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert _forward_loop(sess).op.active_rows
    weights = [sess.run(v) for v in g.collections["variables"]]
    W, bias = weights[:2]
    x, Y, lens = _fed(fd, "X"), _fed(fd, "Y"), _fed(fd, "S")
    ys, tape = numpy_lstm_forward(x, W, bias, lens)
    m = (np.arange(T) < lens[:, None]).astype(np.float64)
    if form == "mse_expanded":
        r = ys - Y
        n = m.sum() * H
        want, dys, extra = [np.sum(r * r * m[:, :, None]) / n], 2 * r * m[:, :, None] / n, []
    else:
        K, b = weights[2:]
        z = ys @ K + b
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        onehot = np.eye(V)[Y]
        xent = -np.log((p * onehot).sum(-1))
        n = m.sum() + (1e-12 if form == "sequence_loss" else 0)
        dz = (p - onehot) * m[:, :, None] / n
        want, dys = [np.sum(xent * m) / n], dz @ K.T
        extra = [ys.reshape(-1, H).T @ dz.reshape(-1, V), dz.sum((0, 1))]
    want += list(numpy_lstm_backward(tape, dys, W, x.shape[2])) + extra
    _close(got, want, rtol=1e-10)


def test_a_mask_of_other_lengths_makes_the_forward_loop_run_every_row():
    """A mask of lengths the loop does not stop at proves nothing about the padded steps:
    the loss there is not zero, the loop runs every row of every step (as for an unmasked
    loss), and the values are still the unstreamed ones."""
    g, fetches, fd = _graph(13, 4, 5, 3, "other_lengths")
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    assert all(_moved(sess))
    fwd = _forward_loop(sess)
    assert not fwd.op.has_trip and not fwd.op.active_rows
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-5)


def test_an_unmasked_loss_still_makes_the_forward_loop_run_every_row():
    """The same head without its mask counts the padded steps (TF1): every row runs."""
    T, B, H, I = 13, 4, 5, 3
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        Y = rg.placeholder(rg.int32, [B, None], name="Y")
        S = rg.placeholder(rg.int32, [B], name="S")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, sequence_length=S)
        m = rg.sequence_mask(S, T, dtype=rg.float32)
        xent = rg.nn.sparse_softmax_cross_entropy_with_logits(
            labels=Y, logits=rg.layers.dense(out, V))
        value = rg.reduce_sum(xent + m) / rg.reduce_sum(m)   # (added, not multiplied)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(1)
    fd = {X: rs.randn(B, T, I).astype(np.float32),
          Y: rs.randint(0, V, (B, T)).astype(np.int32), S: np.array([4, 13, 1, 7], np.int32)}
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    fwd = _forward_loop(sess)
    assert not fwd.op.active_rows
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-5)


def test_a_masked_loss_runs_under_a_budget_below_the_unstreamed_floor():
    """Planned with a budget a tenth of the saved tensors: the plan streams, fits, runs
    within the budget (predicted as measured to 2%) with the unconstrained values, and its
    forward loop keeps its active rows."""
    from test_memory_streamed import _saved_bytes
    T, B, H, I = 200, 32, 64, 8
    g, fetches, fd = _graph(T, B, H, I, "rg", full=False)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    budget = _saved_bytes(g, fetches, fd) // 10
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "stream_outputs" in plan.passes_on, str(plan)
    got = sess.run(fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= budget
    assert abs(plan.predicted_peak - peak) <= 0.02 * peak, (plan.predicted_peak, peak)
    streamed = [n for p in sess.programs() for n in _loops(p.graph) if not n.is_gradient and
                any("/streamed" in b.name for b in n.op.body.nodes)]
    assert streamed and all(n.op.active_rows for n in streamed)
    _close(got, ref, rtol=2e-5)


@pytest.mark.parametrize("form", ["rg", "tf1", "default_maxlen", "losses"])
def test_a_mask_of_a_run_time_length_is_counted(form):
    """A mask whose length is read at run time (TF1's `sequence_mask(S, tf.shape(X)[1])`, or
    max(S)) has its size in the plan (the range's length from the shape, or bounded by the
    checked lengths): it was counted as 0 bytes, and a plan said "fits" then ran out."""
    g, fetches, fd = _graph(40, 6, 16, 3, form)
    sess = rg.Session(g, device=SimulatedDevice(), passes=STREAM)
    plan = sess.memory_plan(fetches, fd)
    sess.run(fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= plan.predicted_peak <= peak * 1.02, (plan.predicted_peak, peak)
    assert "unknown" not in str(plan), str(plan)


# --- opt-in streaming never raises the peak ----------------------------------------------------

def _head_graph(T, B, H, I, head, dtype, lengths):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [B, None, I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S") if lengths else None
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=dtype, sequence_length=S)
        logits = rg.layers.dense(out, V * 8)
        if head == "softmax":
            Y = rg.placeholder(rg.int32, [B, None], name="Y")
            value = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
                labels=Y, logits=logits))
        else:
            Y = rg.placeholder(dtype, [B, None, V * 8], name="Y")
            value = rg.losses.mean_squared_error(Y, logits)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(B, T, I).astype(dtype),
          Y: rs.randint(0, V * 8, (B, T)).astype(np.int32) if head == "softmax" else
          rs.randn(B, T, V * 8).astype(dtype)}
    if lengths:
        fd[S] = rs.randint(1, T + 1, size=B).astype(np.int32)
    return g, fetches, fd


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("head", ["softmax", "mse"])
def test_opt_in_streaming_never_raises_the_peak(head, dtype, lengths):
    """Session(passes={"stream_outputs": True}) without a budget: the measured peak is at
    most the unplanned one (before, the forward loop's per-step products of the dense head's
    kernel gradient were stacked after it, in float64: 1.3-3.3x), the values the same."""
    g, fetches, fd = _head_graph(60, 8, 16, 4, head, getattr(rg, dtype), lengths)
    peaks, values = [], []
    for passes in (True, STREAM):
        sess = rg.Session(g, device=SimulatedDevice(), passes=passes)
        values.append(sess.run(fetches, fd))
        peaks.append(sess.last_run_report.peak_bytes)
    assert peaks[1] <= peaks[0], peaks
    _close(values[1], values[0], rtol=1e-5 if dtype == "float32" else 1e-12)


# --- the TF1 head over reshaped outputs ---------------------------------------------------------

def _reshaped_head(T, B, H, I, back, static_time, static_batch=True, time_major=False,
                   dtype=rg.float32):
    """dense(reshape(outputs, [-1, H]), V) reshaped back to `back` (time -1 or T), a softmax
    cross-entropy against labels Y; fetches: the loss and every variable's gradient."""
    g = rg.Graph()
    with g.as_default():
        b, t = (B if static_batch else None), (T if static_time else None)
        lead = [t, b] if time_major else [b, t]
        X = rg.placeholder(dtype, lead + [I], name="X")
        Y = rg.placeholder(rg.int32, lead, name="Y")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=dtype, time_major=time_major)
        logits = rg.reshape(rg.layers.dense(rg.reshape(out, [-1, H]), V), back)
        value = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
            labels=Y, logits=logits))
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(3)
    shape = (T, B) if time_major else (B, T)
    fd = {X: rs.randn(*shape, I).astype(dtype), Y: rs.randint(0, V, shape).astype(np.int32)}
    return g, fetches, fd


SPLITS = [  # (back, static time, static batch, time-major)
    ([-1, 9, V], True, False, False), ([-1, 9, V], True, True, False),
    ([4, -1, V], False, True, False), ([9, -1, V], True, False, True),
    ([9, 4, V], True, True, True)]


@pytest.mark.parametrize("back,static_time,static_batch,time_major", SPLITS,
                         ids=["bm-time_known", "bm-both_known", "bm-batch_known",
                              "tm-time_known", "tm-both_static"])
def test_the_tf1_reshaped_dense_head_streams_where_the_split_is_provable(
        back, static_time, static_batch, time_major):
    """reshape(dense(reshape(y, [-1, H]), V), back) splits the merged rows back into batch and
    time whatever the run (the steps or the batch static where the other is -1): streamed,
    with the unstreamed values and NumPy's."""
    T, B, H = 9, 4, 5
    g, fetches, fd = _reshaped_head(T, B, H, 3, back, static_time, static_batch, time_major,
                                    rg.float64)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    fwd = _forward_loop(sess)
    assert any("/streamed" in n.name for n in fwd.op.body.nodes)
    assert not [n for n in graph.nodes if n.op.name in ("sparse_softmax_cross_entropy",
                                                        "softmax", "one_hot")]
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-10)
    from test_memory_streamed_softmax import numpy_softmax_head
    W, bias, K, b = [sess.run(v) for v in g.collections["variables"]]
    x, Y = _fed(fd, "X"), _fed(fd, "Y")
    if time_major:
        x, Y = x.swapaxes(0, 1), Y.swapaxes(0, 1)
    ys, tape = numpy_lstm_forward(x, W, bias)
    loss, dys, dK, db = numpy_softmax_head(ys, K, b, Y)
    want = [loss] + list(numpy_lstm_backward(tape, dys, W, x.shape[2])) + [dK, db]
    _close(got, want, rtol=1e-10)


@pytest.mark.parametrize("back,static_batch,time_major,fix", [
    ([-1, 9, V], True, False, "reshape to [4, -1, 7]"),
    ([-1, 9, V], False, False, "a static batch size and reshape to [batch, -1, 7]"),
    ([9, -1, V], True, True, "reshape to [-1, 4, 7]")], ids=["bm", "bm-any_batch", "tm"])
def test_an_unprovable_split_is_left_whole_and_the_note_says_why(back, static_batch,
                                                                  time_major, fix):
    """With the steps unknown at build time, reshaping the merged rows to [-1, 9, V] (or
    [9, -1, V]) need not give back the batch and time axes (any multiple of 9 rows reshapes):
    the output stays whole, and the note names the reshape, why, and what to write instead;
    the values are the unstreamed ones."""
    from rnngraph.passes.stream_outputs import stream_output_consumers
    g, fetches, fd = _reshaped_head(9, 4, 5, 3, back, False, static_batch, time_major)
    notes = []
    assert stream_output_consumers(g, refusals=notes) == 0
    (note,) = notes
    assert "Reshape_1 reshapes the merged" in note and str(back).replace(" ", "") in \
        note.replace(" ", ""), note
    assert "the number of steps is not known when the graph is built" in note, note
    assert "give the input a static time dimension" in note and fix in note, note
    g, fetches, fd = _reshaped_head(9, 4, 5, 3, back, False, static_batch, time_major)
    sess = rg.Session(g, passes=STREAM)
    _close(sess.run(fetches, fd), rg.Session(g).run(fetches, fd), rtol=1e-6)
    assert not any("/streamed" in n.name for n in _forward_loop(sess).op.body.nodes)


# --- a streamed target must have the loop's steps ----------------------------------------------

def _target_graph(kind, lengths):
    T, B, H, I = 9, 4, 5, 3
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S") if lengths else None
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, sequence_length=S)
        if kind == "mse":
            Y = rg.placeholder(rg.float32, [B, None, H], name="Y")
            value = rg.reduce_mean(rg.square(out - Y))
        else:
            Y = rg.placeholder(rg.int32, [B, None], name="Y")
            value = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
                labels=Y, logits=rg.layers.dense(out, V)))
        grads = rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(B, T, I).astype(np.float32)}
    if lengths:
        fd[S] = np.array([3, 9, 1, 6], np.int32)
    return g, value, grads, fd, Y


@pytest.mark.parametrize("steps", [11, 7], ids=["longer", "shorter"])
@pytest.mark.parametrize("host", [False, True], ids=["device", "host_sequences"])
@pytest.mark.parametrize("fetch", ["loss", "gradients"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("kind", ["mse", "softmax"])
def test_a_target_with_other_steps_than_the_loop_is_an_error(kind, lengths, fetch, host,
                                                              steps):
    """TF1 refuses a per-step target with more (or fewer) steps than the outputs
    (incompatible shapes); so does the unstreamed program, and so does the streamed one, with
    an InvalidArgumentError naming the target and the user's line that reads it, whether the
    loss or only the gradients are fetched (the backward loop alone reads the target then)."""
    g, value, grads, fd, Y = _target_graph(kind, lengths)
    B = fd[next(iter(fd))].shape[0]
    rs = np.random.RandomState(1)
    fd[Y] = rs.randn(B, steps, 5).astype(np.float32) if kind == "mse" else \
        rs.randint(0, V, (B, steps)).astype(np.int32)
    fetches = [value] + grads if fetch == "loss" else grads
    with pytest.raises(rg.ExecutionError):   # (a sparse cross-entropy: a ShapeError inside)
        rg.Session(g).run(fetches, fd)
    passes = {**STREAM, "host_sequences": host}
    with pytest.raises(rg.InvalidArgumentError,
                       match=rf"'Y' has {steps} steps but the loop reading it per step runs "
                             r"over 9 .*test_memory_streamed_masks\.py"):
        rg.Session(g, passes=passes).run(fetches, fd)


def test_a_target_of_the_loops_steps_runs_and_static_steps_need_no_check():
    """The right number of steps runs with the unstreamed values; where both the target's and
    the loop's steps are static the graph holds no run-time check."""
    g, value, grads, fd, Y = _target_graph("mse", True)
    fd[Y] = np.random.RandomState(1).randn(4, 9, 5).astype(np.float32)
    sess = rg.Session(g, passes=STREAM)
    got = sess.run([value] + grads, fd)
    assert [n for n in _program(sess).graph.nodes if n.op.name == "check_steps"]
    _close(got, rg.Session(g).run([value] + grads, fd), rtol=1e-5)
    g, fetches, fd = _reshaped_head(9, 4, 5, 3, [-1, 9, V], True)
    sess = rg.Session(g, passes=STREAM)
    sess.run(fetches, fd)
    graph = _program(sess).graph
    assert any("/streamed" in n.name for n in _forward_loop(sess).op.body.nodes)
    assert not [n for n in graph.nodes if n.op.name == "check_steps"]


def test_sequence_mask_compares_in_the_dtype_of_a_tensor_maxlen():
    """As TF1: the lengths are cast to maxlen's dtype, never maxlen to the lengths' (an int8
    lengths vector wrapped a tensor maxlen of 300 to 44)."""
    g = rg.Graph()
    with g.as_default():
        lengths = rg.constant(np.array([3, 120], np.int8))
        wide = rg.sequence_mask(lengths, rg.constant(np.int64(300)))
        u8 = rg.sequence_mask(rg.constant(np.array([1, 255], np.uint8)),
                              rg.constant(np.int32(256)))
    got_wide, got_u8 = rg.Session(g).run([wide, u8])
    np.testing.assert_array_equal(got_wide, _np_mask(np.array([3, 120]), 300))
    np.testing.assert_array_equal(got_u8, _np_mask(np.array([1, 255]), 256))
