"""Fed sequences left in host memory under a memory plan (passes/host_sequences.py, the
host_rows op, runtime FedRows): the pass's rewrite and what it leaves alone, the values
against the program without it (bit for bit) and against NumPy, the measured peak against the
budget and the prediction, the handles' row buffers, and the printed and saved IR."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.residuals import FedRows
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _numpy_lstm_grads, _program, _run_saved
from test_memory_streamed import run_planned

LEAN = {"hoist_sequence": False, "sink_accumulators": False, "sink_outputs": False}
HOST = {"host_sequences": True, **LEAN}


def _graph(T, B, H, I, time_major=False, loss=None, seed=0, lengths=False):
    g = rg.Graph()
    with g.as_default():
        shape = [None, B, I] if time_major else [B, None, I]
        X = rg.placeholder(rg.float32, shape, name="X")
        L = rg.placeholder(rg.int32, [B], name="L") if lengths else None
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32,
                                   time_major=time_major, sequence_length=L)
        value = rg.reduce_sum(out * out) if loss is None else loss(out, X)
        fetches = [value] + rg.gradients(value, rg.global_variables())
    rs = np.random.RandomState(seed)
    x = rs.randn(B, T, I).astype(np.float32)
    fd = {X: x.transpose(1, 0, 2).copy() if time_major else x}
    if lengths:
        fd[L] = rs.randint(T // 3, T + 1, size=B).astype(np.int32)
        fd[L][1] = T
    return g, fetches, fd, X


def _host_rows(graph):
    return [n for n in graph.nodes if n.op.name == "host_rows"]


def _saved_bytes(g, fetches, fd):
    return sum(s.total_bytes for s in rg.Session(g, device=SimulatedDevice())
               .memory_plan(fetches, fd).saved)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("device", ["cpu", "simulated"])
def test_the_feed_reaches_both_loops_through_host_rows_with_the_same_bits(time_major, device):
    g, fetches, fd, X = _graph(13, 4, 6, 5, time_major)
    want = rg.Session(g, device=device, passes=LEAN).run(fetches, fd)
    sess = rg.Session(g, device=device, passes=HOST)
    got = sess.run(fetches, fd)
    prog = _program(sess)
    (rows,) = _host_rows(prog.graph)
    assert rows.inputs[0].node.name == "X" and rows.op.time_axis == (0 if time_major else 1)
    # read by the forward loop and by the backward loop, as a sequence, and by nothing else
    readers = [n.op.name for n in prog.graph.nodes if rows.outputs[0] in n.inputs]
    assert readers == ["loop", "loop"]
    assert prog.host_inputs == frozenset({prog.inputs.index(
        [v for v in prog.inputs if v.node.name == "X"][0])})
    assert "host_rows" in str(prog.graph)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("device", ["cpu", "simulated"])
def test_rows_sorted_by_length_are_gathered_on_the_host_with_the_same_bits(device):
    """With sequence_length dynamic_rnn sorts the rows by length (permute_rows on the
    time-major input): host_rows takes the order as a second input and gathers each row's
    batch on the host as it copies it; the time dim the length checks read comes from the
    handle's shape."""
    g, fetches, fd, X = _graph(13, 5, 6, 4, lengths=True)
    want = rg.Session(g, device=device, passes=LEAN).run(fetches, fd)
    sess = rg.Session(g, device=device, passes=HOST)
    got = sess.run(fetches, fd)
    prog = _program(sess)
    sorted_rows = [n for n in _host_rows(prog.graph) if len(n.inputs) == 2]
    assert len(sorted_rows) == 1 and sorted_rows[0].inputs[1].node.op.name == "sort_by_length"
    assert [n.op.name for n in prog.graph.nodes
            if sorted_rows[0].outputs[0] in n.inputs] == ["loop", "loop"]
    assert not [n for n in prog.graph.nodes if n.op.name in ("permute_rows", "transpose")
                and n.inputs[0].node.name == "X"]
    assert prog.host_inputs
    for a, b in zip(got, want):
        if device == "simulated":   # (both in the general loop: the same bits)
            assert np.array_equal(a, b)
        else:   # (unplanned without host rows, the steps run on the active rows only)
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_the_values_are_the_ones_numpy_computes():
    T, B, H, I = 11, 3, 5, 4
    g, fetches, fd, X = _graph(T, B, H, I)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    loss, dW, db = sess.run(fetches, fd)
    assert _host_rows(_program(sess).graph)
    W, b = (sess.run(v) for v in g.collections["variables"])
    _close((loss, dW, db), _numpy_lstm_grads(fd[X].astype(np.float64), W, b), rtol=2e-5)


def test_feeds_read_otherwise_or_not_per_step_stay_on_the_device():
    # the loss reads X itself: the whole array is needed on the device
    g, fetches, fd, _ = _graph(9, 3, 4, 2, loss=lambda y, x: rg.reduce_sum(y * y) +
                               rg.reduce_sum(x * x))
    sess = rg.Session(g, passes=HOST)
    sess.run(fetches, fd)
    assert not _host_rows(_program(sess).graph) and not _program(sess).host_inputs
    # the whole-sequence input projection (hoist_sequence, not in chunks) reads all of X^T
    g, fetches, fd, _ = _graph(9, 3, 4, 2)
    sess = rg.Session(g, passes={"host_sequences": True})
    sess.run(fetches, fd)
    assert not _host_rows(_program(sess).graph)
    # the pass is opt-in
    sess = rg.Session(g, passes=LEAN)
    sess.run(fetches, fd)
    assert not _host_rows(_program(sess).graph)


def test_a_fetched_feed_is_returned_from_the_host():
    g, fetches, fd, X = _graph(7, 2, 3, 2)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    got = sess.run(fetches + [X], fd)
    assert np.array_equal(got[-1], fd[X])
    want = rg.Session(g, device=SimulatedDevice(), passes=LEAN).run(fetches, fd)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


def test_chunk_blocks_and_replays_read_the_host_rows():
    """In chunks the input projection's blocks are cut from the host rows; a recompute plan's
    replays read them again during the backward loop, through a row buffer of their own."""
    g, fetches, fd, _ = _graph(23, 4, 6, 5)
    passes = {"host_sequences": True, "chunk_steps": 4}
    want = rg.Session(g, device=SimulatedDevice(), passes={"chunk_steps": 4}).run(fetches, fd)
    whole = rg.Session(g, device=SimulatedDevice(), passes=passes).memory_plan(fetches, fd)
    budget = int(whole.predicted_peak * 0.8)
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), passes=passes,
                      memory_budget=budget, memory_strategy="recompute")
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and plan.host_fed and plan.chunk_steps == 4, str(plan)
    assert any(s.placement == "recompute" for s in plan.saved), str(plan)
    got = sess.run(fetches, fd)
    prog = _program(sess)
    assert _host_rows(prog.graph)
    assert all(n.op.chunk_steps == 4 for n in prog.graph.nodes if n.op.name == "loop")
    peak = sess.last_run_report.peak_bytes
    assert peak <= budget and 0 <= plan.predicted_peak - peak <= 256, (plan.predicted_peak, peak)
    for a, b in zip(got, want):   # (a replay reruns the forward steps on the same rows)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("strategy", ["offload", "recompute", "auto"])
def test_a_budget_the_feed_alone_would_break_is_met_with_it_on_the_host(strategy, lengths):
    """A wide input (I = 64 against H = 8): the fed array is most of what the device holds. The
    planner turns host_sequences on; the plan fits, predicts the measured peak, and gives the
    values of the same program run unplanned."""
    T, B, H, I = 40, 4, 8, 64
    g, fetches, fd, X = _graph(T, B, H, I, lengths=lengths)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    kept = rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                      memory_strategy=strategy, passes={"host_sequences": False})
    floor = kept.memory_plan(fetches, fd).min_budget
    budget = floor - 1   # what the planner found with the feed on the device, less a byte
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits, str(plan)
    assert plan.host_fed == (("X", fd[X].nbytes),)
    assert "host_sequences" in plan.passes_on and plan.passes["host_sequences"] is True
    assert "fed sequences left in host memory (host_sequences)" in str(plan)
    got = run_planned(sess, plan, budget, strategy, g, fetches, fd)
    _close(got, ref, rtol=1e-5)
    # the rows went to the device once per loop reading them
    assert sess.last_run_report.bytes_to_device >= 2 * fd[X].nbytes


def test_the_issues_lstm_fits_a_twentieth_of_its_saved_tensors():
    """Issue 29's LSTM without a projection (B=32, H=256, inputs 32, T=1000): with the output
    stack streamed, a twentieth did not fit (smallest plan 10.0 MiB against 9.4 MiB) until the
    fed input (3.9 MiB) left the device."""
    T, B, H, I = 1000, 32, 256, 32
    g, fetches, fd, X = _graph(T, B, H, I)
    free = rg.Session(g, device=SimulatedDevice())
    ref = free.run(fetches, fd)
    budget = _saved_bytes(g, fetches, fd) // 20
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and plan.host_fed == (("X", fd[X].nbytes),), str(plan)
    got = sess.run(fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= budget
    assert abs(plan.predicted_peak - peak) <= 0.02 * peak
    _close(got, ref, rtol=1e-5)


def test_a_saved_and_reloaded_program_with_host_rows_runs(tmp_path):
    g, fetches, fd, _ = _graph(9, 3, 4, 2)
    sess = rg.Session(g, passes=HOST)
    got = sess.run(fetches, fd)
    prog = _program(sess)
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    path = rg.io.save(str(tmp_path / "host.rg"), graph=prog.graph, fetches={**fed, **outs})
    saved = rg.io.read(path)
    rg.verify(saved.graph)
    (rows,) = _host_rows(saved.graph)
    assert rows.op.time_axis == 1
    out = _run_saved(saved, prog, sess, g, fd)
    for a, b in zip(out, got):
        assert np.array_equal(a, b)


def test_each_cursor_holds_its_own_row_and_gives_it_back():
    dev = SimulatedDevice()
    host = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)   # [B, T, I]
    rows = FedRows(dev, host, 1, "X")
    assert rows.shape == (5, 2, 3) and len(rows) == 5
    a, b = rows.cursor(), rows.cursor()
    ra = a[1]
    rb = b[3]
    assert np.array_equal(ra, host[:, 1]) and np.array_equal(rb, host[:, 3])
    assert np.array_equal(a[-1], host[:, 4])
    assert np.array_equal(rb, host[:, 3])   # another cursor's read leaves it alone
    assert dev.current_bytes == 2 * 2 * 3 * 4   # one row buffer each
    assert np.array_equal(a.read_block(1, 4), host[:, 1:4].transpose(1, 0, 2))
    a.end_pass()
    b.end_pass()
    assert dev.current_bytes == 0
    with pytest.raises(IndexError, match="step 5 of fed value 'X' with 5 steps"):
        a[5]
    assert np.array_equal(np.asarray(rows), host.transpose(1, 0, 2))


def test_host_rows_is_the_time_major_transpose():
    x = np.random.RandomState(0).randn(2, 3, 4).astype(np.float32)
    with rg.Graph().as_default():
        from rnngraph.ops.base import apply
        from rnngraph.ops.host_rows import HostRows
        X = rg.placeholder(rg.float32, [2, None, 4])
        y = apply(HostRows(1), [X])
        assert tuple(y.shape) == (None, 2, 4)
        (dx,) = rg.gradients(rg.reduce_sum(y * rg.constant(np.arange(24.0, dtype=np.float32)
                                                            .reshape(3, 2, 4))), [X])
        with pytest.raises(rg.errors.ShapeError, match="time_axis 3 is out of range"):
            apply(HostRows(3), [X])
        with rg.Session() as sess:
            got, g = sess.run([y, dx], {X: x})
    assert np.array_equal(got, x.transpose(1, 0, 2))
    assert np.array_equal(g, np.arange(24.0).reshape(3, 2, 4).transpose(1, 0, 2))


def test_a_stack_of_scalars_offloads_and_comes_back():
    """A per-step residual of rank 0 (a scan over a [T] vector): its host rows are 0-d views,
    not NumPy scalars."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None], name="x")
        w = rg.get_variable("w", [], rg.float32, initializer=rg.constant_initializer(0.9))
        def step(a, xt):
            a = rg.tanh(a * w + xt)
            return a, a
        _, ys = rg.lax_scan(step, rg.constant(0.1), x)
        loss = rg.reduce_sum(ys * ys)
        (dw,) = rg.gradients(loss, [w])
    xs = np.linspace(-1, 1, 50).astype(np.float32)
    sess = rg.Session(g, device=SimulatedDevice(), memory_budget=400,
                      memory_strategy="offload")
    plan = sess.memory_plan([loss, dw], {x: xs})
    assert plan.bytes_by_placement()["host"] > 0, str(plan)
    got = sess.run([loss, dw], {x: xs})
    want = rg.Session(g, device=SimulatedDevice(), passes=plan.passes).run([loss, dw], {x: xs})
    for a, b in zip(got, want):   # (the same program unplanned)
        assert np.array_equal(a, b)
    a, grad = 0.1, 0.0   # and NumPy's forward and backward
    hs = []
    for v in xs.astype(np.float64):
        a = np.tanh(a * 0.9 + v)
        hs.append(a)
    da = 0.0
    for t in range(len(xs) - 1, -1, -1):
        da = da + 2 * hs[t]
        dz = da * (1 - hs[t] ** 2)
        grad += dz * (hs[t - 1] if t else 0.1)
        da = dz * 0.9
    np.testing.assert_allclose(got, [np.sum(np.square(hs)), grad], rtol=1e-5)


def test_a_mean_loss_reads_only_the_shape_of_the_fed_input():
    """reduce_mean's element count (ReducedCount, which stream_outputs reads off the
    time-major input) reads a shape: the feed still stays on the host."""
    g, fetches, fd, X = _graph(11, 3, 5, 4, loss=lambda y, x: rg.reduce_mean(y * y))
    want = rg.Session(g, device=SimulatedDevice(),
                      passes={"stream_outputs": "always", **LEAN}).run(fetches, fd)
    sess = rg.Session(g, device=SimulatedDevice(), passes={"stream_outputs": "always", **HOST})
    got = sess.run(fetches, fd)
    prog = _program(sess)
    assert prog.host_inputs and any(n.op.name == "reduced_count" and n.inputs[0].node.op.name
                                    == "host_rows" for n in prog.graph.nodes)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


def test_a_time_major_feed_sorted_by_length_stays_on_the_host():
    """Time-major input with sequence_length: dynamic_rnn reorders the placeholder's rows
    itself (no transpose); host_rows takes that order, time axis 0."""
    g, fetches, fd, X = _graph(13, 5, 6, 4, time_major=True, lengths=True)
    want = rg.Session(g, device=SimulatedDevice(), passes=LEAN).run(fetches, fd)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    got = sess.run(fetches, fd)
    prog = _program(sess)
    (rows,) = [n for n in _host_rows(prog.graph) if len(n.inputs) == 2]
    assert rows.op.time_axis == 0 and rows.inputs[1].node.op.name == "sort_by_length"
    assert prog.host_inputs
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


def test_a_reordering_along_time_keeps_the_feed_on_the_device():
    """Only a reordering of the rows (axis 1 of the time-major value) read by loops becomes
    host_rows' order; one along time, read by the loss, keeps the feed whole on the device."""
    from rnngraph.ops.rows import permute_rows
    B, T, I = 5, 5, 2
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        Xt = rg.transpose(X, [1, 0, 2])
        w = rg.get_variable("w", [I], rg.float32, initializer=rg.constant_initializer(0.5))

        def step(h, x):
            h = rg.tanh(h + x * w)
            return h, h
        _, ys = rg.lax_scan(step, rg.zeros([B, I]), Xt)
        back = permute_rows(Xt, rg.constant(np.arange(T)[::-1].astype(np.int32)), axis=0)
        weights = np.arange(T * B * I, dtype=np.float32).reshape(T, B, I)
        loss = rg.reduce_sum(ys) + rg.reduce_sum(back * rg.constant(weights))
    x = np.random.RandomState(0).randn(B, T, I).astype(np.float32)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    got = sess.run(loss, {X: x})
    assert not _host_rows(_program(sess).graph)
    h, total = np.zeros((B, I)), 0.0
    for t in range(T):
        h = np.tanh(h + x[:, t] * 0.5)
        total += h.sum()
    total += (x.transpose(1, 0, 2)[::-1] * weights).sum()
    np.testing.assert_allclose(got, total, rtol=1e-5)
