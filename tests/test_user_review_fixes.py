"""Defects a fresh-eyes user review found (issue 29), each pinned by its user-facing contract:
loop arguments checked when the loop is built, a missing feed named by the user's fetches,
memory_plan refusing the feeds a run refuses, argument type errors of the right type naming
the user's line, no stale run report, one byte-unit style in the CLI."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import InvalidArgumentError
from rnngraph.ops.loop import Loop

FILE = os.path.basename(__file__)


def here() -> str:
    """'this_file.py:LINE' of the caller's line (what error messages must quote)."""
    return f"{FILE}:{sys._getframe(1).f_lineno}"


def _state(g):
    return len(g.nodes), [v.name for v in rg.global_variables()]


# --- A. loop arguments ------------------------------------------------------------------------
def _dynamic(x, **kw):
    return rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(3), x, dtype=rg.float32, **kw)


# one line each: the error must quote the line that called the builder
BUILDERS = {
    "dynamic_rnn": lambda x, **kw: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(3), x, dtype=rg.float32, **kw),  # noqa: E501
    "bidirectional_dynamic_rnn": lambda x, **kw: rg.nn.bidirectional_dynamic_rnn(rg.nn.BasicRNNCell(3), rg.nn.BasicRNNCell(3), x, dtype=rg.float32, **kw),  # noqa: E501
    "while_loop": lambda x, **kw: rg.while_loop(lambda i: i < 3, lambda i: i + 1, [0], **kw),  # noqa: E501
    "scan": lambda x, **kw: rg.scan(lambda a, e: a + e, x, **kw),
}
BAD = [(dict(parallel_iterations=0), ValueError, "parallel_iterations"),
       (dict(parallel_iterations=-3), ValueError, "parallel_iterations"),
       (dict(parallel_iterations=2**31), ValueError, "parallel_iterations"),
       (dict(parallel_iterations=2.5), TypeError, "parallel_iterations"),
       (dict(parallel_iterations="32"), TypeError, "parallel_iterations"),
       (dict(parallel_iterations=True), TypeError, "parallel_iterations"),
       (dict(swap_memory="False"), TypeError, "swap_memory"),
       (dict(swap_memory=None), TypeError, "swap_memory"),
       (dict(swap_memory=1), TypeError, "swap_memory")]


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("kw,exc,arg", BAD, ids=[repr(b[0]) for b in BAD])
def test_loop_arguments_are_checked_when_built(builder, kw, exc, arg):
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [4, 5, 3], name="X")
        before = _state(g)
        with pytest.raises(exc) as info:
            BUILDERS[builder](x, **kw)
        msg = str(info.value)
        loc = f"{FILE}:{BUILDERS[builder].__code__.co_firstlineno}"
        assert arg in msg and builder in msg and loc in msg, msg
        assert repr(kw[arg]) in msg or str(kw[arg]) in msg, msg
        assert _state(g) == before   # nothing half-built: no node, no variable


def test_loop_arguments_numpy_types_are_accepted_and_saved(tmp_path):
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [4, 5, 3], name="X")
        _dynamic(x, parallel_iterations=np.int64(4), swap_memory=np.bool_(True))
    loop = next(n for n in g.nodes if n.op.name == "loop")
    assert type(loop.op.parallel_iterations) is int and loop.op.parallel_iterations == 4
    assert type(loop.op.swap_memory) is bool and loop.op.swap_memory is True
    path = str(tmp_path / "g.npz")
    rg.save(path, g)
    g2, _ = rg.load(path)
    loop2 = next(n for n in g2.nodes if n.op.name == "loop")
    assert (loop2.op.parallel_iterations, loop2.op.swap_memory) == (4, True)


def test_a_string_swap_memory_does_not_turn_swapping_on():
    """Before, swap_memory='False' (a true string) made the loop offload its saved tensors."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [4, 5, 3], name="X")
        with pytest.raises(TypeError, match="swap_memory"):
            _dynamic(x, swap_memory="False")
        assert not [n for n in g.nodes if n.op.name == "loop"]


def test_the_loop_op_itself_refuses_bad_arguments():
    """The loop node's constructor (every builder, copies and the loader go through it) holds
    the same rule as the saved file's schema."""
    body = rg.Graph()
    with pytest.raises(ValueError, match="parallel_iterations"):
        Loop(body, has_trip=True, parallel_iterations=0)
    with pytest.raises(TypeError, match="swap_memory"):
        Loop(body, has_trip=True, swap_memory="no")


# --- B. a missing feed names the user's fetches -----------------------------------------------
def _seq_model():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, None, 4], name="X")
        lengths = rg.placeholder(rg.int32, [None], name="L")
        lengths_line = f"{FILE}:{sys._getframe().f_lineno - 1}"
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(8), x, sequence_length=lengths,
                                   dtype=rg.float32)
        loss = rg.reduce_mean(rg.square(out))
        grads = rg.gradients(loss, rg.trainable_variables())
        init = rg.global_variables_initializer()
    return g, x, lengths, lengths_line, grads, init


@pytest.mark.parametrize("how", ["run", "memory_plan"])
def test_missing_feed_names_the_users_fetches(how):
    g, x, lengths, lengths_line, grads, init = _seq_model()
    sess = rg.Session(g)
    sess.run(init)
    feed = {x: np.zeros((8, 20, 4), np.float32)}
    with pytest.raises(ValueError) as info:
        sess.run(grads, feed) if how == "run" else sess.memory_plan(grads, feed)
    msg = str(info.value)
    assert "placeholder 'L'" in msg and lengths_line in msg, msg
    for v in grads:   # the user's fetches, not the compiled program's internal values
        assert f"'{v.name}'" in msg, msg
    assert "kernel_grad" not in msg and "AddN" not in msg, msg


# --- C. memory_plan refuses what the run refuses; shapes as lists ------------------------------
@pytest.mark.parametrize("budget", [None, 50_000])
def test_memory_plan_refuses_a_sequence_length_of_the_wrong_batch(budget):
    g, x, lengths, _, grads, init = _seq_model()
    sess = rg.Session(g, memory_budget=budget)
    sess.run(init)
    xs = np.zeros((8, 20, 4), np.float32)
    with pytest.raises(InvalidArgumentError) as ran:
        sess.run(grads, {x: xs, lengths: np.full(7, 20, np.int32)})
    with pytest.raises(InvalidArgumentError) as planned:
        sess.memory_plan(grads, {x: (8, 20, 4), lengths: (7,)})
    assert str(planned.value) == str(ran.value)
    assert "7 entries" in str(ran.value) and "batch size 8" in str(ran.value)
    # lengths given as an array: their values are checked against the time dimension too
    with pytest.raises(InvalidArgumentError) as ran:
        sess.run(grads, {x: xs, lengths: np.full(8, 21, np.int32)})
    with pytest.raises(InvalidArgumentError) as planned:
        sess.memory_plan(grads, {x: xs, lengths: np.full(8, 21, np.int32)})
    assert str(planned.value) == str(ran.value)


def test_memory_plan_takes_a_list_as_a_shape():
    g, x, lengths, _, grads, init = _seq_model()
    sess = rg.Session(g, memory_budget=50_000)
    as_tuple = sess.memory_plan(grads, {x: (8, 20, 4), lengths: (8,)})
    as_list = sess.memory_plan(grads, {x: [8, 20, 4], lengths: [20] * 8})
    as_arrays = sess.memory_plan(grads, {x: np.zeros((8, 20, 4), np.float32),
                                         lengths: np.full(8, 20, np.int32)})
    assert as_list.predicted_peak == as_tuple.predicted_peak == as_arrays.predicted_peak
    # for a rank-1 placeholder a list is a value, as in feed_dict: 3 lengths for 8 rows
    with pytest.raises(rg.InvalidArgumentError):
        sess.memory_plan(grads, {x: (8, 20, 4), lengths: [20, 20, 20]})
    # and a tuple is a shape: the error says how to give a value
    with pytest.raises(ValueError, match="pass it as a list or an array"):
        sess.memory_plan(grads, {x: (8, 20, 4), lengths: (20, 20, 20)})


@pytest.mark.parametrize("bad,fragment", [((8, None, 4), "every dimension known"),
                                          ([8, None, 4], "every dimension known"),
                                          ("8,20,4", "got str '8,20,4'")])
def test_memory_plan_refuses_unknown_dims_and_strings(bad, fragment):
    g, x, lengths, _, grads, init = _seq_model()
    sess = rg.Session(g, memory_budget=50_000)
    with pytest.raises(TypeError) as info:
        sess.memory_plan(grads, {x: bad, lengths: (8,)})
    msg = str(info.value)
    assert "placeholder 'X'" in msg and fragment in msg and FILE in msg, msg


# --- D. argument types, stale reports, units ---------------------------------------------------
@pytest.mark.parametrize("value,exc", [(1, TypeError), (None, TypeError), ("swap", ValueError)])
def test_memory_strategy_type(value, exc):
    with pytest.raises(exc) as info:
        loc = here(); rg.Session(rg.Graph(), memory_strategy=value)   # noqa: E702
    assert "memory_strategy" in str(info.value) and loc in str(info.value), str(info.value)


@pytest.mark.parametrize("value,exc", [("16", TypeError), (2.5, TypeError), (True, TypeError),
                                       (0, ValueError), (-4, ValueError)])
def test_chunk_steps_type(value, exc):
    with pytest.raises(exc) as info:
        loc = here(); rg.Session(rg.Graph(), passes={"chunk_steps": value})   # noqa: E702
    assert "chunk_steps" in str(info.value) and loc in str(info.value), str(info.value)


def test_a_plain_run_clears_the_last_report():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [4, 20, 3], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(8), x, dtype=rg.float32)
        loss = rg.reduce_mean(rg.square(out))
        init = rg.global_variables_initializer()
    feed = {x: np.ones((4, 20, 3), np.float32)}
    sess = rg.Session(g)
    sess.run(init)
    sess.run(loss, feed, report=True)
    assert sess.last_run_report is not None and sess.last_run_report.peak_bytes > 0
    sess.run(loss, feed)
    assert sess.last_run_report is None
    # a budgeted run on the CPU measures only when asked, like any other run
    budgeted = rg.Session(g, memory_budget=10**7)
    budgeted.run(init)
    budgeted.run(loss, feed, report=True)
    assert budgeted.last_run_report is not None
    budgeted.run(loss, feed)
    assert budgeted.last_run_report is None
    # a device with a capacity to hold to measures every run: each run's own report
    sim = rg.Session(g, memory_budget=10**7, device=rg.SimulatedDevice())
    sim.run(init)
    sim.run(loss, feed, report=True)
    first = sim.last_run_report
    sim.run(loss, feed)
    assert sim.last_run_report is not None and sim.last_run_report is not first


def test_cli_prints_bytes_in_the_plans_units(capsys):
    from rnngraph.cli import main
    assert main(["plan", "seq_length", "--budget", "512"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "KiB" in text and " KB" not in text and " MB" not in text, text
    assert "budget 512 B" in out.out
