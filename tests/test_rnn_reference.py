"""The library's RNNs against the independent NumPy reference (tests/rnn_reference.py).

- The textbook's variable-length example (X_batch 4x2x3, seq_length [2, 1, 2, 2], a
  BasicRNNCell of 5 units): zero outputs past a row's length, state copied through.
- Every cell type, static and dynamic (batch- and time-major), with sequence_length (a row of
  length 0, unsorted lengths) and an explicit initial state, against the reference run with the
  weights read out of the session.
- bidirectional_dynamic_rnn: the backward direction equals running the cell over the reversed
  valid part of each row.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.nest import flatten, pack_as
from rnngraph.nn import LSTMStateTuple

from rnn_reference import RefBasicRNN, RefGRU, RefLSTM, RefMulti, flat_state, run_reversed, run_rnn

TOL = dict(rtol=1e-12, atol=1e-12)

X_BATCH = np.array([
    # t = 0      t = 1
    [[0, 1, 2], [9, 8, 7]],  # instance 0
    [[3, 4, 5], [0, 0, 0]],  # instance 1 (padded with a zero vector)
    [[6, 7, 8], [6, 5, 4]],  # instance 2
    [[9, 0, 1], [3, 2, 1]],  # instance 3
])
SEQ_LENGTH_BATCH = np.array([2, 1, 2, 2])

CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(4),
    "lstm": lambda: rg.nn.LSTMCell(4),
    "lstm_forget_bias": lambda: rg.nn.LSTMCell(4, forget_bias=0.3),
    "lstm_peep_proj_clip": lambda: rg.nn.LSTMCell(4, use_peepholes=True, num_proj=3,
                                                  cell_clip=0.6, proj_clip=0.5),
    "gru": lambda: rg.nn.GRUCell(4),
    "multi": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(3), rg.nn.GRUCell(2),
                                         rg.nn.LSTMCell(4, use_peepholes=True, num_proj=2)]),
}


def reference_cell(cell, sess):
    """The NumPy twin of a library cell, with the weights read out of the session."""
    r = sess.read_variable
    if isinstance(cell, rg.nn.MultiRNNCell):
        return RefMulti([reference_cell(c, sess) for c in cell.cells])
    if isinstance(cell, rg.nn.BasicRNNCell):
        return RefBasicRNN(r(cell.kernel), r(cell.bias))
    if isinstance(cell, rg.nn.GRUCell):
        return RefGRU(r(cell.gate_kernel), r(cell.gate_bias), r(cell.candidate_kernel),
                      r(cell.candidate_bias))
    if isinstance(cell, rg.nn.LSTMCell):
        peep = dict(w_i=r(cell.w_i_diag), w_f=r(cell.w_f_diag), w_o=r(cell.w_o_diag)) \
            if cell.use_peepholes else {}
        return RefLSTM(r(cell.kernel), r(cell.bias), forget_bias=cell.forget_bias,
                       proj=r(cell.proj_kernel) if cell.num_proj else None,
                       cell_clip=cell.cell_clip, proj_clip=cell.proj_clip, **peep)
    raise TypeError(type(cell))


def randomize_biases(sess, seed=7):
    """Biases start at 0 (or 1): give them random values so the reference must use them."""
    rng = np.random.default_rng(seed)
    for v in rg.global_variables(sess.graph):
        if "bias" in v.node.name or "diag" in v.node.name:
            sess.load_variable(v, 0.5 * rng.standard_normal(v.shape))


flat, pack = flatten, pack_as  # the library's own nesting helpers


def ref_nested(structure, leaves):
    """Nest a flat list of arrays like the reference's states (plain tuples)."""
    it = iter(leaves)

    def build(s):
        if isinstance(s, tuple):
            return tuple(build(x) for x in s)
        return next(it)

    return build(structure)


# --- the textbook example --------------------------------------------------------------------
def _book_graph(mode, with_seq=True):
    n_steps, n_inputs, n_neurons = 2, 3, 5
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
        seq_length = rg.placeholder(rg.int32, [None]) if with_seq else None
        basic_cell = rg.nn.BasicRNNCell(num_units=n_neurons)
        if mode == "dynamic":
            outputs, states = rg.nn.dynamic_rnn(basic_cell, X, dtype=rg.float32,
                                                sequence_length=seq_length)
        else:
            X_seqs = rg.unstack(rg.transpose(X, perm=[1, 0, 2]))
            output_seqs, states = rg.nn.static_rnn(basic_cell, X_seqs, dtype=rg.float32,
                                                   sequence_length=seq_length)
            outputs = rg.transpose(rg.stack(output_seqs), perm=[1, 0, 2])
        init = rg.global_variables_initializer()
    return g, X, seq_length, basic_cell, outputs, states, init


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_book_variable_length_example(mode):
    g, X, seq_length, cell, outputs, states, init = _book_graph(mode)
    with rg.Session(g) as sess:
        init.run()
        outputs_val, states_val = sess.run(
            [outputs, states], feed_dict={X: X_BATCH, seq_length: SEQ_LENGTH_BATCH})
        ref = RefBasicRNN(sess.read_variable(cell.kernel), sess.read_variable(cell.bias))
    assert outputs_val.dtype == np.float32 and states_val.dtype == np.float32
    assert outputs_val.shape == (4, 2, 5) and states_val.shape == (4, 5)
    # the second instance's output at the second step is a zero vector
    np.testing.assert_array_equal(outputs_val[1, 1], np.zeros(5, np.float32))
    assert np.all(outputs_val[[0, 2, 3]] != 0) and np.all(outputs_val[1, 0] != 0)
    # its state is its t = 0 output (copied through); the others' is their last output
    np.testing.assert_array_equal(states_val[1], outputs_val[1, 0])
    for b in (0, 2, 3):
        np.testing.assert_array_equal(states_val[b], outputs_val[b, 1])
    ref_out, ref_state = run_rnn(ref, X_BATCH, sequence_length=SEQ_LENGTH_BATCH)
    np.testing.assert_allclose(outputs_val, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(states_val, ref_state, rtol=1e-5, atol=1e-6)


def test_book_example_without_sequence_length_runs_the_padding():
    """Without sequence_length the padded step is an ordinary step: non-zero output, and the
    result agrees with the dynamic graph fed the same weights (the book's static version)."""
    vals = []
    for mode in ("static", "dynamic"):
        g, X, _, cell, outputs, states, init = _book_graph(mode, with_seq=False)
        with rg.Session(g) as sess:
            init.run()
            vals.append(sess.run([outputs, states], feed_dict={X: X_BATCH}))
    (o_s, s_s), (o_d, s_d) = vals
    assert np.all(o_s[1, 1] != 0)
    np.testing.assert_array_equal(s_s, o_s[:, 1])
    np.testing.assert_allclose(o_d, o_s, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s_d, s_s, rtol=1e-6, atol=1e-6)


# --- every cell against the reference --------------------------------------------------------
@pytest.mark.parametrize("mode", ["dynamic", "dynamic_time_major", "static"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_matches_numpy_reference(kind, mode):
    Bn, Tn, Dn = 5, 6, 3
    lengths = np.array([4, 0, 6, 1, 3], np.int32)  # unsorted, one empty row, one full row
    time_major = mode == "dynamic_time_major"
    g = rg.Graph()
    with g.as_default():
        cell = CELLS[kind]()
        X = rg.placeholder(rg.float64, [Tn, None, Dn] if time_major else [None, Tn, Dn])
        init_ph = [rg.placeholder(rg.float64, [None, n]) for n in flat(cell.state_size)]
        init = pack(cell.state_size, init_ph)
        seq = rg.placeholder(rg.int32, [None])
        if mode == "static":
            outs, final = rg.nn.static_rnn(cell, rg.unstack(rg.transpose(X, [1, 0, 2])),
                                           initial_state=init, sequence_length=seq)
            out = rg.transpose(rg.stack(outs), [1, 0, 2])
        else:
            out, final = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, initial_state=init,
                                           time_major=time_major)
            if time_major:
                out = rg.transpose(out, [1, 0, 2])
    rng = np.random.default_rng(11)
    x = rng.standard_normal((Bn, Tn, Dn))
    s0 = [rng.standard_normal((Bn, v.shape[1])) for v in init_ph]
    sess = rg.Session(g, seed=3)
    randomize_biases(sess)
    feed = {X: x.transpose(1, 0, 2) if time_major else x, seq: lengths, **dict(zip(init_ph, s0))}
    out_v, final_v = sess.run([out, flat(final)], feed)

    ref = reference_cell(cell, sess)
    ref_out, ref_final = run_rnn(ref, x, ref_nested(cell.state_size, s0), lengths)
    assert out_v.shape == ref_out.shape == (Bn, Tn, cell.output_size)
    np.testing.assert_allclose(out_v, ref_out, **TOL)
    ref_flat = flat_state(ref_final)
    assert len(final_v) == len(ref_flat)
    for a, b in zip(final_v, ref_flat):
        np.testing.assert_allclose(a, b, **TOL)
    # the semantics spelled out: zeros past the length, the empty row keeps its initial state
    for b, n in enumerate(lengths):
        assert np.all(out_v[b, n:] == 0)
    for a, s in zip(final_v, s0):
        np.testing.assert_array_equal(a[1], s[1])


def test_lstm_state_is_an_lstm_state_tuple_and_output_is_h():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, 4, 2])
        cell = rg.nn.LSTMCell(3, num_proj=2)
        out, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
    assert isinstance(state, LSTMStateTuple)
    assert state.c.shape == (None, 3) and state.h.shape == (None, 2)
    assert out.shape == (None, 4, 2)
    sess = rg.Session(g)
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    o, (c, h) = sess.run([out, state], {X: x})
    np.testing.assert_array_equal(o[:, -1], h)
    ref_out, (rc, rh) = run_rnn(reference_cell(cell, sess), x)
    np.testing.assert_allclose(o, ref_out, **TOL)
    np.testing.assert_allclose(c, rc, **TOL)


# --- bidirectional ---------------------------------------------------------------------------
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("with_seq", [True, False], ids=["seq_len", "full"])
def test_bidirectional_dynamic_rnn_matches_reference(with_seq, time_major):
    Bn, Tn, Dn = 4, 5, 3
    lengths = np.array([3, 0, 5, 2], np.int32) if with_seq else np.full(Bn, Tn, np.int32)
    g = rg.Graph()
    with g.as_default():
        cell_fw = rg.nn.LSTMCell(3)
        cell_bw = rg.nn.GRUCell(2)
        X = rg.placeholder(rg.float64, [Tn, None, Dn] if time_major else [None, Tn, Dn])
        seq = rg.placeholder(rg.int32, [None]) if with_seq else None
        h0_bw = rg.placeholder(rg.float64, [None, 2])
        (out_fw, out_bw), (st_fw, st_bw) = rg.nn.bidirectional_dynamic_rnn(
            cell_fw, cell_bw, X, sequence_length=seq, initial_state_bw=h0_bw, dtype=rg.float64,
            time_major=time_major)
        assert isinstance(st_fw, LSTMStateTuple)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((Bn, Tn, Dn))
    h0 = rng.standard_normal((Bn, 2))
    sess = rg.Session(g, seed=1)
    randomize_biases(sess)
    feed = {X: x.transpose(1, 0, 2) if time_major else x, h0_bw: h0}
    if with_seq:
        feed[seq] = lengths
    ofw, obw, (c_fw, h_fw), s_bw = sess.run([out_fw, out_bw, st_fw, st_bw], feed)
    if time_major:
        ofw, obw = ofw.transpose(1, 0, 2), obw.transpose(1, 0, 2)

    ref_fw_out, (ref_c, ref_h) = run_rnn(reference_cell(cell_fw, sess), x, None, lengths)
    np.testing.assert_allclose(ofw, ref_fw_out, **TOL)
    np.testing.assert_allclose(c_fw, ref_c, **TOL)
    np.testing.assert_allclose(h_fw, ref_h, **TOL)

    ref_bw_out, ref_bw_state = run_reversed(reference_cell(cell_bw, sess), x, lengths, h0)
    np.testing.assert_allclose(obw, ref_bw_out, **TOL)
    np.testing.assert_allclose(s_bw, ref_bw_state, **TOL)
    for b, n in enumerate(lengths):
        assert np.all(obw[b, n:] == 0) and np.all(ofw[b, n:] == 0)
        if n:  # the backward output at the row's last valid step saw only that step's input
            one_step, _ = run_rnn(reference_cell(cell_bw, sess), x[b:b + 1, n - 1:n], h0[b:b + 1])
            np.testing.assert_allclose(obw[b, n - 1], one_step[0, 0], **TOL)
