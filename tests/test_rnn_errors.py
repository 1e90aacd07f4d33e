"""Errors of static_rnn / dynamic_rnn / bidirectional_dynamic_rnn: the exception type the
TensorFlow API documents, and a message that says what is wrong (and, at run time, which line
built the check)."""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import rnngraph as rg


def _graph():
    g = rg.Graph()
    return g, g.as_default()


def _static(cell, X, **kw):
    return rg.nn.static_rnn(cell, rg.unstack(rg.transpose(X, [1, 0, 2])), **kw)


RNNS = {
    "static": _static,
    "dynamic": rg.nn.dynamic_rnn,
}


# --- build time ------------------------------------------------------------------------------
@pytest.mark.parametrize("not_a_cell", [None, 5, "lstm", lambda x, s: (x, s)])
@pytest.mark.parametrize("mode", list(RNNS))
def test_not_a_cell_is_a_type_error(mode, not_a_cell):
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        with pytest.raises(TypeError, match=r"cell must be an instance of RNNCell, got "
                                            + type(not_a_cell).__name__):
            RNNS[mode](not_a_cell, X, dtype=rg.float32)


def test_not_a_cell_bidirectional_and_multi():
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        with pytest.raises(TypeError, match="RNNCell"):
            rg.nn.bidirectional_dynamic_rnn(rg.nn.BasicRNNCell(2), object(), X, dtype=rg.float32)
        with pytest.raises(TypeError, match="RNNCell"):
            rg.nn.bidirectional_dynamic_rnn("fw", rg.nn.BasicRNNCell(2), X, dtype=rg.float32)
        with pytest.raises(TypeError, match="MultiRNNCell takes RNNCells, got int"):
            rg.nn.MultiRNNCell([rg.nn.LSTMCell(2), 3])


@pytest.mark.parametrize("inputs", [None, [], ()], ids=["None", "empty_list", "empty_tuple"])
def test_inputs_none_or_empty_is_a_value_error(inputs):
    g, ctx = _graph()
    with ctx:
        with pytest.raises(ValueError, match="static_rnn: inputs must be a non-empty list"):
            rg.nn.static_rnn(rg.nn.BasicRNNCell(2), inputs, dtype=rg.float32)
        with pytest.raises(ValueError, match="dynamic_rnn: inputs must not be None or empty"):
            rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(2), inputs, dtype=rg.float32)


def test_static_rnn_wants_a_list_dynamic_rnn_wants_rank_3():
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        with pytest.raises(TypeError, match="list of .*unstack"):
            rg.nn.static_rnn(rg.nn.BasicRNNCell(2), X, dtype=rg.float32)
        x2 = rg.placeholder(rg.float32, [None, 3])
        with pytest.raises(ValueError, match="rank >= 3"):
            rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(2), x2, dtype=rg.float32)
        with pytest.raises(ValueError, match=r"\[time, batch, depth\]"):
            rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(2), x2, dtype=rg.float32, time_major=True)


@pytest.mark.parametrize("mode", list(RNNS))
def test_neither_initial_state_nor_dtype_is_a_value_error(mode):
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        with pytest.raises(ValueError, match=f"{mode}_rnn: give either initial_state or dtype"):
            RNNS[mode](rg.nn.LSTMCell(4), X)


@pytest.mark.parametrize("mode", list(RNNS))
def test_initial_state_that_does_not_fit_the_cell(mode):
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        h = rg.placeholder(rg.float32, [None, 4])
        with pytest.raises(ValueError, match="initial_state has 1 tensors, the cell's state has 2"):
            RNNS[mode](rg.nn.LSTMCell(4), X, initial_state=h)
        with pytest.raises(ValueError, match=r"does not fit state size 5"):
            RNNS[mode](rg.nn.BasicRNNCell(5), X, initial_state=h)


@pytest.mark.parametrize("mode", list(RNNS))
@pytest.mark.parametrize("lengths, match", [
    ([2, 1, 2], "sequence_length has 3 entries but the batch size is 4"),
    ("placeholder[5]", "sequence_length has 5 entries but the batch size is 4"),
    ([[2, 1, 2, 2]], "sequence_length must be a vector"),
], ids=["list_of_3", "placeholder_of_5", "matrix"])
def test_sequence_length_batch_mismatch_is_a_value_error(mode, lengths, match):
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [4, 2, 3])
        if lengths == "placeholder[5]":
            lengths = rg.placeholder(rg.int32, [5])
        with pytest.raises(ValueError, match=re.escape(f"{mode}_rnn: {match}")):
            RNNS[mode](rg.nn.BasicRNNCell(5), X, dtype=rg.float32, sequence_length=lengths)


@pytest.mark.parametrize("mode", list(RNNS))
@pytest.mark.parametrize("lengths", ["placeholder", [2.0, 1.0, 2.0, 2.0]],
                         ids=["float_placeholder", "float_list"])
def test_float_sequence_length_is_a_type_error(mode, lengths):
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        if lengths == "placeholder":
            lengths = rg.placeholder(rg.float32, [None])
        with pytest.raises(TypeError, match=f"{mode}_rnn: sequence_length must be int32/int64, "
                                            "got float32"):
            RNNS[mode](rg.nn.BasicRNNCell(5), X, dtype=rg.float32, sequence_length=lengths)


def test_bidirectional_float_sequence_length_is_a_type_error():
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        with pytest.raises(TypeError, match="sequence_length must be int32/int64"):
            rg.nn.bidirectional_dynamic_rnn(rg.nn.BasicRNNCell(2), rg.nn.BasicRNNCell(2), X,
                                            sequence_length=[1.5, 2.0], dtype=rg.float32)


# --- run time --------------------------------------------------------------------------------
def _caller_line() -> int:
    return inspect.currentframe().f_back.f_lineno


def _runtime_graph(mode):
    """An RNN whose sequence_length is fed at run time; `line` is the line that built it."""
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, 3])
        seq = rg.placeholder(rg.int32, [None])
        cell = rg.nn.BasicRNNCell(5)
        if mode == "static":
            xs = rg.unstack(rg.transpose(X, [1, 0, 2]))
            line = _caller_line() + 1
            outs, state = rg.nn.static_rnn(cell, xs, dtype=rg.float32, sequence_length=seq)
            out = rg.stack(outs)
        else:
            line = _caller_line() + 1
            out, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32, sequence_length=seq)
    return g, X, seq, out, state, line


@pytest.mark.parametrize("lengths, bad", [([2, -1, 2, 2], "sequence_length[1] = -1"),
                                          ([2, 1, 3, 2], "sequence_length[2] = 3")])
@pytest.mark.parametrize("mode", list(RNNS))
def test_sequence_length_out_of_range_at_run_time(mode, lengths, bad):
    g, X, seq, out, state, line = _runtime_graph(mode)
    sess = rg.Session(g)
    x = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(rg.InvalidArgumentError) as info:
        sess.run([out, state], {X: x, seq: lengths})
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert bad in msg and "outside [0, max_time = 2]" in msg, msg
    assert f"test_rnn_errors.py:{line}" in msg, msg  # the line that built the RNN
    # valid lengths run fine afterwards (the check is per run, not sticky)
    sess.run(out, {X: x, seq: [2, 0, 1, 2]})


@pytest.mark.parametrize("lengths", [[2, 1, 2], [2]], ids=["3_entries", "1_entry"])
@pytest.mark.parametrize("mode", list(RNNS))
def test_sequence_length_batch_mismatch_at_run_time(mode, lengths):
    """Batch sizes known only at run time: an InvalidArgumentError naming sequence_length and
    both sizes (a single length must not broadcast over the batch)."""
    g, X, seq, out, state, line = _runtime_graph(mode)
    sess = rg.Session(g)
    with pytest.raises(rg.InvalidArgumentError) as info:
        sess.run([out, state], {X: np.zeros((4, 2, 3)), seq: lengths})
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert f"sequence_length has {len(lengths)} entries but the inputs have batch size 4" in msg
    assert f"test_rnn_errors.py:{line}" in msg, msg


def test_dynamic_rnn_unknown_input_depth_is_a_clear_value_error():
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, None])
        with pytest.raises(ValueError, match=r"(?i)(depth|last dim\w*|input size).*known"):
            rg.nn.dynamic_rnn(rg.nn.LSTMCell(3), X, dtype=rg.float32)


def test_static_rnn_unknown_input_depth_is_a_value_error():
    g, ctx = _graph()
    with ctx:
        X = rg.placeholder(rg.float32, [None, 2, None])
        with pytest.raises(ValueError, match="known input size"):
            _static(rg.nn.LSTMCell(3), X, dtype=rg.float32)
