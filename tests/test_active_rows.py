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


@pytest.mark.parametrize("align", [1, 4], ids=["exact_rows", "rows_rounded_up"])
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("case", list(LENGTHS))
@pytest.mark.parametrize("kind", list(CELLS))
def test_shrunk_loops_keep_exact_semantics(kind, case, time_major, align, monkeypatch):
    lengths, max_time = LENGTHS[case]
    m = build(kind, max_time, time_major)
    a = arrays(m, lengths, max_time, time_major)
    spy = RowSpy(monkeypatch)
    monkeypatch.setattr(loop_rows, "ROW_ALIGN", align)
    sess = session(m)
    out, final, grads = sess.run([m["out"], m["final"], m["grads"]], feed(m, a))

    # the rows each step ran on: lengths > t, forward then backward (reverse order), rounded
    # up to a multiple of `align`, a single row staying one (the extra rows are finished ones)
    trip = min(max(max(lengths), 1), max_time)
    counts = [int(sum(n > t for n in lengths)) for t in range(trip)]
    active = [c if c <= 1 else min(len(lengths), -(-c // align) * align) for c in counts]
    want = list(zip(range(trip), active)) + list(zip(reversed(range(trip)), reversed(active)))
    assert spy.steps == want

    # outputs and final state against the reference, written from the equations
    ref = reference_cell(m["cell"], sess)
    init = ref_nested(m["cell"].state_size, a["init"])
    ref_out, ref_state = run_rnn(ref, a["x"], init, a["seq"])
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)
    for got, exp in zip(final, flat_state(ref_state)):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)
    for b, n in enumerate(lengths):
        assert not out[b, n:].any()  # exactly zero past each row's length

    # gradients equal the full-width (masked) run's
    full = session(m, shrink=False).run(m["grads"], feed(m, a))
    for g1, g2 in zip(grads, full):
        np.testing.assert_allclose(g1, g2, rtol=1e-11, atol=1e-12)
    gx = grads[0].transpose(1, 0, 2) if time_major else grads[0]
    for b, n in enumerate(lengths):
        assert not gx[b, n:].any()  # inputs past a row's length get no gradient


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_session_reusing_its_stacks_leaks_nothing_from_a_longer_run(kind):
    """Stacks are reused across runs; rows that finish earlier in a later run must read zero,
    not the previous run's values."""
    max_time = 6
    m = build(kind, max_time)
    sess = session(m)
    long = arrays(m, [6, 6, 6, 6], max_time)
    sess.run([m["out"], m["grads"]], feed(m, long))   # fills every row of every stack
    short = arrays(m, [2, 0, 5, 1], max_time, seed=1)
    out, grads = sess.run([m["out"], m["grads"]], feed(m, short))
    fresh_out, fresh_grads = session(m).run([m["out"], m["grads"]], feed(m, short))
    np.testing.assert_array_equal(out, fresh_out)
    for g1, g2 in zip(grads, fresh_grads):
        np.testing.assert_array_equal(g1, g2)
    for b, n in enumerate(short["seq"]):
        assert not out[b, n:].any() and not grads[0][b, n:].any()


def _nan_filled_buffers(monkeypatch):
    """Hand out pooled float buffers full of NaN where they would be uninitialised."""
    from rnngraph.runtime import buffer_pool
    get = buffer_pool.BufferPool.get

    def garbage_get(self, slot, shape, dtype, zero_from=None):
        arr = get(self, slot, shape, dtype, zero_from)
        if np.dtype(dtype).kind == "f":
            arr[:zero_from] = np.nan   # (zero_from None: all of it)
        return arr
    monkeypatch.setattr(buffer_pool.BufferPool, "get", garbage_get)


def _ragged_model(kind: str, square: bool):
    """dynamic_rnn over [4, 6, D] float64 with lengths 6, 2, 0, 4, and the gradients of the
    sum of its outputs (squared, or as they are): (graph, X, seq, out, grads, feed)."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, 6, D])
        seq = rg.placeholder(rg.int32, [None])
        out, _ = rg.nn.dynamic_rnn(CELLS[kind](), X, sequence_length=seq, dtype=rg.float64)
        grads = rg.gradients(rg.reduce_sum(out * out if square else out),
                             [X] + rg.global_variables())
    f = {X: np.random.default_rng(0).standard_normal((4, 6, D)),
         seq: np.array([6, 2, 0, 4], np.int32)}
    return g, X, seq, out, grads, f


@pytest.mark.parametrize("kind", ["lstm", "gru", "multi"])
def test_rows_nobody_reads_may_hold_garbage_but_check_numerics_sees_zeros(kind, monkeypatch):
    """Reused buffers handed out uninitialised are filled with NaN here (np.empty may hold any
    bits). Rows past the active ones that no reader reads may keep it: the results equal a
    full-width run's. check_numerics reads every row of every output: there the loops zero
    those rows, so it reports nothing (it reported the garbage, now and then, before)."""
    _nan_filled_buffers(monkeypatch)
    g, X, seq, out, grads, f = _ragged_model(kind, square=True)
    want = rg.Session(g, seed=1, passes={"shrink_batch": False}).run([out, grads], f)
    for options in ({}, {"check_numerics": True}):
        sess = rg.Session(g, seed=1, **options)
        for _ in range(2):   # the second run reuses the first's buffers
            got = sess.run([out, grads], f)
            for g1, g2 in zip(flatten(got), flatten(want)):
                np.testing.assert_allclose(g1, g2, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "basic"])
def test_an_output_read_for_its_shape_only_is_not_zeroed(kind, monkeypatch):
    """Gradients of sum(outputs) fetched alone: the forward output stack is read by the
    weight gradient (its active rows, one step back) and for its shape (the sum's gradient,
    through a transpose). Its finished rows are then never read: the loop leaves them as they
    are (NaN here) but keeps the stack whole, and the gradients equal the unshrunk run's."""
    _nan_filled_buffers(monkeypatch)
    g, X, seq, out, grads, f = _ragged_model(kind, square=False)
    sess = rg.Session(g, seed=1)
    forward = [n for n in sess.compile(grads, [X, seq]).graph.nodes
               if n.op.name == "loop" and not n.op.reverse][0]
    stacked = forward.op.out_ports().offset("output")
    assert stacked in forward.op.unzeroed and stacked not in forward.op.rows_only
    want = rg.Session(g, seed=1, passes={"shrink_batch": False}).run(grads, f)
    for _ in range(2):
        for g1, g2 in zip(sess.run(grads, f), want):
            np.testing.assert_allclose(g1, g2, rtol=1e-11, atol=1e-12)
    # fetched, the output is zeroed past each row's length as always
    got = sess.run(out, f)
    assert not got[1, 2:].any() and not got[2].any() and not got[3, 4:].any()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float32_loops_with_our_products_run_exactly_the_active_rows(kind, monkeypatch):
    """With our own per-step GEMM (float32 on the CPU) a step runs on its active rows, not
    rounded up to ROW_ALIGN, and the stacks only active rows are read of go packed (StepRows),
    read back as slices at the loop's step offsets; otherwise rounded and full width. Either
    way, and with the pool's buffers full of NaN, the results equal the full-width run's."""
    from rnngraph.backends.numba import panel_gemm
    _nan_filled_buffers(monkeypatch)
    lengths = [13, 7, 3, 11, 1, 9, 5, 2, 12, 10]
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 13, D])
        seq = rg.placeholder(rg.int32, [None])
        out, _ = rg.nn.dynamic_rnn(CELLS[kind](), X, sequence_length=seq, dtype=rg.float32)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
    f = {X: np.random.default_rng(0).standard_normal((10, 13, D)).astype(np.float32),
         seq: np.array(lengths, np.int32)}
    spy = RowSpy(monkeypatch)
    made, reads = [], []
    new_stack = loop_kernel.ActiveRows.new_stack
    monkeypatch.setattr(loop_kernel.ActiveRows, "new_stack",
                        lambda *a, **k: made.append(new_stack(*a, **k)) or made[-1])
    reads_packed = loop_kernel.ActiveRows.reads_packed
    monkeypatch.setattr(loop_kernel.ActiveRows, "reads_packed",
                        lambda *a: reads.append(reads_packed(*a)) or reads[-1])
    got = rg.Session(g, seed=1).run([out, grads], f)
    counts = [sum(n > t for n in lengths) for t in range(13)]
    align = 1 if panel_gemm.available() else loop_rows.ROW_ALIGN
    widths = [c if c <= 1 else min(10, -(-c // align) * align) for c in counts]
    assert spy.steps == list(zip(range(13), widths)) + list(zip(reversed(range(13)),
                                                                reversed(widths)))
    packed = [st for st in made if isinstance(st, StepRows)]
    if align == 1:
        assert widths != [min(10, -(-c // 8) * 8) if c > 1 else c for c in counts]
        assert packed and len(packed) < len(made)   # the user-read output stays full width
        # the gradient loop reads the saved tensors, the forward the projection, as slices
        assert sum(reads) >= 2
    else:
        assert not packed and not any(reads)
    want = rg.Session(g, seed=1, passes={"shrink_batch": False}).run([out, grads], f)
    for g1, g2 in zip(flatten(got), flatten(want)):
        np.testing.assert_allclose(g1, g2, rtol=2e-5, atol=2e-6)


def _step_ops(body) -> list:
    """A body's computing nodes as printed (params and constants left out; a sum of two terms
    is an add, whichever op says it)."""
    return [repr(n.op).replace("add_n", "add") for n in body.nodes
            if n.op.name not in ("param", "constant")]


@pytest.mark.parametrize("align", [1, 4], ids=["exact_rows", "rows_rounded_up"])
@pytest.mark.parametrize("kind", ["basic", "lstm", "gru", "multi"])
def test_steps_on_exactly_the_active_rows_run_the_body_without_its_mask(kind, align,
                                                                         monkeypatch):
    """A step run on exactly its active rows sees the mask true on every row, so the loop runs
    a copy of the body simplified with that (runtime/active_body.py): no where or zeros_like
    is left, in plain nodes or fused kernels, and for the BasicRNN each step computes what a
    run without sequence_length computes. Steps rounded up to more rows keep the masked body.
    Results equal the full-width masked run's (the semantics test above checks them against
    the reference)."""
    monkeypatch.setattr(loop_rows, "ROW_ALIGN", align)
    made = []
    trusting = loop_kernel.trusting_mask
    monkeypatch.setattr(loop_kernel, "trusting_mask",
                        lambda body, masks: made.append(trusting(body, masks)) or made[-1])
    lengths, max_time = LENGTHS["unsorted_with_zeros"]
    m = build(kind, max_time)
    a = arrays(m, lengths, max_time)
    got = session(m).run([m["out"], m["grads"]], feed(m, a))
    want = session(m, shrink=False).run([m["out"], m["grads"]], feed(m, a))
    for g1, g2 in zip(flatten(got), flatten(want)):
        np.testing.assert_allclose(g1, g2, rtol=1e-11, atol=1e-12)
    if align != 1:
        assert made == []
        return
    assert len(made) == 2 and all(made)   # the forward loop and the gradient loop
    for body, _ in made:
        names = " ".join(_step_ops(body))
        assert "where" not in names and "zeros_like" not in names, names
    if kind == "basic":   # the same steps as without sequence_length
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float64, [None, max_time, D])
            out, _ = rg.nn.dynamic_rnn(CELLS[kind](), X, dtype=rg.float64)
            grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
        prog = rg.Session(g).compile(grads, [X])
        full = [_step_ops(n.op.body) for n in prog.nodes if n.op.name == "loop"]
        assert [_step_ops(body) for body, _ in made] == full


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
