"""Shrinking the active batch: dynamic_rnn with sequence_length runs each step on the rows still
active (rows sorted by length once, restored at the end), forward and backward.

- Exact semantics against the independent NumPy reference, on unsorted lengths with rows of
  length 0, all rows empty, equal lengths and a single row; gradients equal to the full-width
  run (shrink_batch off) and to finite differences.
- The loops really run fewer rows: the rows each step ran on, forward and backward, are the
  counts of lengths > t.
- A cell that mixes rows is never shrunk (the loop keeps full width and masks).
- The row analysis (ops/loop_rows.py) and the new ops.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.nest import flatten, pack_as
from rnngraph.ops import loop_rows
from rnngraph.ops.loop_rows import row_layout
from rnngraph.ops.rows import invert_permutation, permute_rows, sequence_mask, sort_by_length
from rnngraph.ops.steps import StepRows
from rnngraph.runtime import loop_kernel

from rnn_reference import flat_state, run_rnn
from test_rnn_reference import randomize_biases, ref_nested, reference_cell


@pytest.fixture(autouse=True)
def _accelerated_from_the_first_run(monkeypatch):
    """This module's subject includes the numba kernels: sessions use them from their first run
    (Session(accelerate="auto") would start each program on NumPy kernels)."""
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)

D = 3
CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(4),
    "lstm": lambda: rg.nn.LSTMCell(4),
    "lstm_peep_proj_clip": lambda: rg.nn.LSTMCell(4, use_peepholes=True, num_proj=3,
                                                  cell_clip=0.6, proj_clip=0.5),
    "gru": lambda: rg.nn.GRUCell(4),
    "multi": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(3), rg.nn.GRUCell(2)]),
}
LENGTHS = {
    "unsorted_with_zeros": ([3, 0, 7, 1, 7, 0, 2], 7),
    "all_empty": ([0, 0, 0], 4),
    "equal": ([5, 5, 5], 5),
    "shorter_than_max_time": ([2, 4, 1], 6),
    "one_row": ([3], 5),
}


def build(kind, max_time, time_major=False):
    g = rg.Graph()
    with g.as_default():
        cell = CELLS[kind]()
        shape = [max_time, None, D] if time_major else [None, max_time, D]
        X = rg.placeholder(rg.float64, shape, name="X")
        init = [rg.placeholder(rg.float64, [None, n]) for n in flatten(cell.state_size)]
        seq = rg.placeholder(rg.int32, [None], name="seq")
        out, final = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, time_major=time_major,
                                       initial_state=pack_as(cell.state_size, init))
        out_bm = rg.transpose(out, [1, 0, 2]) if time_major else out
        R = rg.placeholder(rg.float64, [None, max_time, cell.output_size])
        loss = rg.reduce_sum(out_bm * R)
        for k, s in enumerate(flatten(final)):
            loss = loss + (k + 1.5) * rg.reduce_sum(s * s)
        grads = rg.gradients(loss, [X] + init + rg.global_variables())
    return dict(g=g, cell=cell, X=X, init=init, seq=seq, R=R, out=out_bm,
                final=flatten(final), loss=loss, grads=grads)


def arrays(m, lengths, max_time, time_major=False, seed=0):
    rng = np.random.default_rng(seed)
    b = len(lengths)
    x = rng.standard_normal((b, max_time, D))
    return dict(x=x, xf=x.transpose(1, 0, 2).copy() if time_major else x,
                init=[rng.standard_normal((b, v.shape[1])) for v in m["init"]],
                r=rng.standard_normal((b, max_time, m["R"].shape[2])),
                seq=np.array(lengths, np.int32))


def feed(m, a):
    f = {m["X"]: a["xf"], m["seq"]: a["seq"], m["R"]: a["r"]}
    f.update(zip(m["init"], a["init"]))
    return f


def session(m, shrink=True):
    sess = rg.Session(m["g"], seed=3, passes={"shrink_batch": shrink})
    randomize_biases(sess)
    return sess


class RowSpy:
    """Records (t, rows) for every step a loop kernel runs on its active rows (the first step
    runs in the loop kernel, the others in its generated driver: both report)."""

    def __init__(self, monkeypatch):
        self.steps = []
        monkeypatch.setattr(loop_kernel.ActiveRows, "observe",
                            lambda rows, t, width: self.steps.append((t, width)), raising=True)


def test_shrunk_gradient_matches_finite_differences():
    lengths, max_time = [3, 0, 5, 1], 5
    m = build("lstm", max_time)
    a = arrays(m, lengths, max_time)
    sess = session(m)
    gx = sess.run(m["grads"][0], feed(m, a))
    rng = np.random.default_rng(1)
    eps = 1e-6
    for _ in range(6):
        idx = (int(rng.integers(4)), int(rng.integers(max_time)), int(rng.integers(D)))
        xp_, xm = a["xf"].copy(), a["xf"].copy()
        xp_[idx] += eps
        xm[idx] -= eps
        lp = sess.run(m["loss"], {**feed(m, a), m["X"]: xp_})
        lm = sess.run(m["loss"], {**feed(m, a), m["X"]: xm})
        np.testing.assert_allclose(gx[idx], (lp - lm) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_shrinking_is_switchable_and_declined_under_a_memory_plan(monkeypatch):
    lengths, max_time = [4, 1, 2], 4
    m = build("gru", max_time)
    a = arrays(m, lengths, max_time)
    spy = RowSpy(monkeypatch)
    session(m, shrink=False).run(m["grads"], feed(m, a))
    assert spy.steps == []
    session(m).run(m["grads"], feed(m, a))
    assert len(spy.steps) == 2 * 4
    want = session(m).run(m["grads"], feed(m, a))
    spy.steps.clear()
    # a memory plan keeps residuals per full step: the loops run full width, results the same
    planned = rg.Session(m["g"], seed=3, memory_budget=10 * 2**20, device=rg.SimulatedDevice(
        capacity=10 * 2**20))
    randomize_biases(planned)
    got = planned.run(m["grads"], feed(m, a))
    assert spy.steps == []
    for g1, g2 in zip(got, want):
        np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-12)


class RowMixingCell(rg.nn.BasicRNNCell):
    """h' = tanh([x, h] K + b) - mean over the batch: rows depend on each other."""

    def __call__(self, inputs, state, scope=None):
        out, new = super().__call__(inputs, state, scope)
        mixed = new - rg.reduce_mean(new, axis=0, keepdims=True)
        return mixed, mixed


def test_a_cell_that_mixes_rows_runs_on_the_whole_batch():
    g = rg.Graph()
    with g.as_default():
        cell = RowMixingCell(3)
        X = rg.placeholder(rg.float64, [None, 4, 2])
        seq = rg.placeholder(rg.int32, [None])
        out, _ = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, dtype=rg.float64)
        static, _ = rg.nn.static_rnn(cell, rg.unstack(rg.transpose(X, [1, 0, 2])),
                                     sequence_length=seq, dtype=rg.float64)
    loops = [n for n in g.nodes if n.op.name == "loop"]
    assert len(loops) == 1 and not loops[0].op.active_rows
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    sess = rg.Session(g, seed=0)
    d, s = sess.run([out, static], {X: x, seq: [4, 1, 2]})
    np.testing.assert_allclose(d, np.stack(s, axis=1), rtol=1e-12, atol=1e-12)


# --- the row analysis --------------------------------------------------------------------------
def test_row_layout_of_an_lstm_and_its_gradient_loop():
    m = build("lstm", 5)
    fwd, = [n for n in m["g"].nodes if n.op.name == "loop" and not n.op.reverse]
    bwd, = [n for n in m["g"].nodes if n.op.name == "loop" and n.op.reverse]
    assert fwd.op.active_rows and bwd.op.active_rows
    lf = row_layout(fwd.op.body, strict=True)
    assert lf.carried == (True, True)            # c, h
    assert lf.sequence == (True, True)           # x_t, the step's mask
    assert all(lf.output) and all(lf.residual)
    lb = row_layout(bwd.op.body)
    n_acc = len(lb.carried) - 2
    assert lb.carried == (True, True) + (False,) * n_acc  # weight-gradient sums: not rows
    assert n_acc >= 2
    # the gradient body sums over rows (weight gradients): only the lenient check accepts it
    assert row_layout(bwd.op.body, strict=True) is None


def test_row_layout_declines_a_while_loop_with_a_condition():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [None, 2])
        rg.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * 2.0), [rg.constant(0), x])
    loop, = [n for n in g.nodes if n.op.name == "loop"]
    assert row_layout(loop.op.body) is None


# --- the ops -----------------------------------------------------------------------------------
def test_sort_invert_permute_and_mask():
    g = rg.Graph()
    with g.as_default():
        lengths = rg.placeholder(rg.int32, [None])
        x = rg.placeholder(rg.float64, [None, 2])
        order = sort_by_length(lengths)
        inv = invert_permutation(order)
        y = permute_rows(permute_rows(x, order), inv)
        mask = sequence_mask(lengths, 4)
    lens = np.array([2, 4, 0, 4, 1], np.int32)
    xv = np.arange(10.0).reshape(5, 2)
    o, i, yv, mv = rg.Session(g).run([order, inv, y, mask], {lengths: lens, x: xv})
    np.testing.assert_array_equal(o, [1, 3, 0, 4, 2])  # longest first, ties in input order
    np.testing.assert_array_equal(o[i], np.arange(5))
    np.testing.assert_array_equal(yv, xv)
    np.testing.assert_array_equal(mv, np.arange(4)[:, None] < lens[None, :])


def test_permuting_a_broadcast_is_no_copy():
    """Rows that are all one (the gradient of a sum, broadcast) are their own permutation."""
    g = rg.Graph()
    with g.as_default():
        lengths = rg.placeholder(rg.int32, [None])
        row = rg.placeholder(rg.float64, [1, 3])
        y = permute_rows(rg.broadcast_to(row, [5, 3]), sort_by_length(lengths))
    out = rg.Session(g).run(y, {lengths: np.array([2, 4, 0, 4, 1], np.int32),
                                row: np.array([[1.0, 2.0, 3.0]])})
    np.testing.assert_array_equal(out, np.tile([1.0, 2.0, 3.0], (5, 1)))
    assert out.strides[0] == 0


@pytest.mark.parametrize("time_major", [False, True])
def test_permuting_along_the_outermost_axis_in_memory(time_major):
    """The batch axis of a time-major view of batch-major input is outermost in memory: its
    rows move whole, and the result is the same kind of view. Values as np.take either way,
    across runs with new permutations (the result lands in a reused buffer)."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [4, None, 3] if time_major else [None, 4, 3])
        perm = rg.placeholder(rg.int32, [None])
        xt = x if time_major else rg.transpose(x, [1, 0, 2])   # [time, batch, 3]
        y = permute_rows(xt, perm, axis=1)
    sess = rg.Session(g)
    rng = np.random.default_rng(0)
    for _ in range(3):
        xv = rng.standard_normal((5, 4, 3) if not time_major else (4, 5, 3), dtype=np.float32)
        p = rng.permutation(5).astype(np.int32)
        out = sess.run(y, {x: xv, perm: p})
        expected = np.take(xv if time_major else xv.transpose(1, 0, 2), p, axis=1)
        np.testing.assert_array_equal(out, expected)
        assert out.shape == (4, 5, 3)
        # batch-major input: batch rows outermost in the result's memory too
        assert (out.strides[1] > out.strides[0]) == (not time_major)


def test_permute_rows_names_the_mismatch():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [None, 2])
        perm = rg.placeholder(rg.int32, [None])
        y = permute_rows(x, perm)
    with pytest.raises(rg.errors.InvalidArgumentError, match=r"shape \(3, 2\) has 3 rows along "
                       r"axis 0 but the batch has 2"):
        rg.Session(g).run(y, {x: np.zeros((3, 2)), perm: np.array([1, 0], np.int32)})
