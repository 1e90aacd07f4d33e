"""Budget-aware sequence passes: under a memory budget, hoist_sequence and sink_accumulators run
in chunks of C steps inside the loop (ops/loop.py's chunk prologue and epilogue) instead of
being switched off. Gradients equal the unplanned, unchunked run's (to 1e-6 relative; bit for
bit against the same chunked program), the measured peak stays within the budget and equals
the prediction, the printed IR declares the chunks, and a saved graph with them runs."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import InvalidFileError, VerificationError
from rnngraph.runtime.devices import CPUDevice
from rnngraph.runtime.residuals import ChunkSource, SavedStack
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import feed, lstm_graph
from test_io import _edit_json, _nodes


def _close(got, want, rtol=1e-6):
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.abs(b).max(), 1e-30))


def _loops(graph):
    return [n for n in graph.nodes if n.op.name == "loop"]


def _program(sess):
    """The session's compiled program that runs the loops."""
    (prog,) = [p for p in sess.programs() if _loops(p.graph)]
    return prog


def _graph(cell="lstm", proj=4, lengths=False, T=23, B=4, H=8, I=3, seed=0):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L") if lengths else None
        c = {"lstm": lambda: rg.nn.LSTMCell(H, num_proj=proj),
             "gru": lambda: rg.nn.GRUCell(H)}[cell]()
        out, _ = rg.nn.dynamic_rnn(c, X, dtype=rg.float32, sequence_length=L)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables() + [X])
    rs = np.random.RandomState(seed)
    fd = {X: rs.randn(B, T, I).astype(np.float32)}
    if lengths:
        fd[L] = np.array([T, T // 3, T - 2, 1] * (B // 4) + [T][:B % 4], np.int32)
    return g, fetches, fd


def _numpy_lstm_grads(x, W, b, lengths=None):
    """Loss sum(h**2) of a TF1 LSTMCell (no projection, forget bias 1) over x [B, T, I], and its
    gradients by W [I+H, 4H] and b [4H], written out in NumPy (rows past a length: h held at
    its last value, output zero, as dynamic_rnn does)."""
    ys, tape = numpy_lstm_forward(x, W, b, lengths)
    dW, db = numpy_lstm_backward(tape, 2 * ys, W, x.shape[2])
    return np.sum(ys * ys), dW, db


def numpy_lstm_forward(x, W, b, lengths=None):
    """The outputs ys [B, T, H] of a TF1 LSTMCell (no projection, forget bias 1) over x
    [B, T, I] (zero past a row's length, the state held), and the tape numpy_lstm_backward
    reads, in NumPy."""
    B, T, _ = x.shape
    H = W.shape[1] // 4
    h, c = np.zeros((B, H)), np.zeros((B, H))
    tape, ys = [], np.zeros((B, T, H))
    for t in range(T):
        live = np.ones((B, 1)) if lengths is None else (t < lengths)[:, None].astype(float)
        xh = np.concatenate([x[:, t], h], 1)
        i, j, f, o = np.split(xh @ W + b, 4, 1)
        c_new = _sig(f + 1.0) * c + _sig(i) * np.tanh(j)
        h_new = _sig(o) * np.tanh(c_new)
        tape.append((xh, i, j, f, o, c, c_new, live))
        c = live * c_new + (1 - live) * c
        h = live * h_new + (1 - live) * h
        ys[:, t] = live * h_new
    return ys, tape


def numpy_lstm_backward(tape, dys, W, n_in: int, inputs: bool = False):
    """The gradients by W and b of a loss whose gradient by the outputs is dys [B, T, H], from
    numpy_lstm_forward's tape; with `inputs`, also the gradient by the inputs x [B, T, I]."""
    B, H = tape[0][5].shape
    dW, db = np.zeros_like(W), np.zeros(W.shape[1])
    dx = np.zeros((B, len(tape), n_in))
    dh, dc = np.zeros((B, H)), np.zeros((B, H))
    for t in reversed(range(len(tape))):
        xh, i, j, f, o, c_prev, c_new, live = tape[t]
        dh_new = live * (dh + dys[:, t])
        dc_new = live * dc + dh_new * _sig(o) * (1 - np.tanh(c_new) ** 2)
        do = dh_new * np.tanh(c_new) * _sig(o) * (1 - _sig(o))
        di = dc_new * np.tanh(j) * _sig(i) * (1 - _sig(i))
        dj = dc_new * _sig(i) * (1 - np.tanh(j) ** 2)
        df = dc_new * c_prev * _sig(f + 1.0) * (1 - _sig(f + 1.0))
        dz = np.concatenate([di, dj, df, do], 1)
        dW += xh.T @ dz
        db += dz.sum(0)
        dxh = dz @ W.T
        dx[:, t] = dxh[:, :n_in]
        dh = (1 - live) * dh + dxh[:, n_in:]
        dc = (1 - live) * dc + dc_new * _sig(f + 1.0)
    return (dW, db, dx) if inputs else (dW, db)


def _sig(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("C", [1, 5, 23, 64])
def test_chunked_passes_give_the_gradients_numpy_computes(C, lengths):
    """An LSTM without projection, its forward loop's input projection in the chunk prologue
    and its backward loop's weight gradients in the chunk epilogue, against NumPy."""
    g, fetches, fd = _graph(proj=None, lengths=lengths)
    sess = rg.Session(g, passes={"chunk_steps": C})
    got = sess.run(fetches, fd)
    W, b = sess.run(g.collections["variables"])
    x = fd[[k for k in fd if k.name.startswith("X")][0]].astype(np.float64)
    lens = fd[[k for k in fd if k.name.startswith("L")][0]] if lengths else None
    loss, dW, db = _numpy_lstm_grads(x, W.astype(np.float64), b.astype(np.float64), lens)
    np.testing.assert_allclose(got[0], loss, rtol=1e-5)
    np.testing.assert_allclose(got[1], dW, rtol=1e-4, atol=1e-5 * np.abs(dW).max())
    np.testing.assert_allclose(got[2], db, rtol=1e-4, atol=1e-5 * np.abs(db).max())
    loops = _loops(_program(sess).graph)
    assert loops and all(n.op.chunk_steps == C for n in loops)


@pytest.mark.parametrize("cell,proj", [("lstm", 4), ("lstm", None), ("gru", None)])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("C", [1, 4, 7, 23, 100])
def test_chunked_gradients_equal_the_unchunked_ones(cell, proj, lengths, C):
    g, fetches, fd = _graph(cell, proj, lengths)
    want = rg.Session(g).run(fetches, fd)                       # whole-sequence passes
    plain = rg.Session(g, passes=False).run(fetches, fd)        # no passes at all
    sess = rg.Session(g, passes={"chunk_steps": C})
    got = sess.run(fetches, fd)
    _close(got, want)
    _close(got, plain)
    # the loops really are chunked: the forward loop's prologue, the backward's epilogue
    fwd, bwd = _loops(_program(sess).graph)
    assert fwd.op.chunk_steps == C and fwd.op.body.results["prologue"]
    assert bwd.op.chunk_steps == C and bwd.op.body.results["epilogue"]
    assert len(bwd.op.epilogue_carried) == len(bwd.op.body.results["epilogue"]) >= 2
    # and the same program on the simulated device (tracked runs) gives the same bits
    sim = rg.Session(g, device=SimulatedDevice(), passes={"chunk_steps": C}).run(fetches, fd)
    for a, b in zip(sim, got):
        assert np.array_equal(a, b)


def test_chunked_dynamic_rnn_agrees_with_static_rnn():
    T, B, I, H = 9, 3, 2, 5
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        cell = rg.nn.LSTMCell(H, num_proj=3)
        with rg.variable_scope("rnn"):
            dyn, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
        with rg.variable_scope("rnn", reuse=True):
            outs, _ = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), dtype=rg.float32)
        w = rg.global_variables()
        gd = rg.gradients(rg.reduce_sum(dyn * dyn), w)
        gs = rg.gradients(rg.reduce_sum(rg.stack(outs, axis=1) ** 2), w)
    fd = {X: np.random.RandomState(1).randn(B, T, I).astype(np.float32)}
    sess = rg.Session(g, passes={"chunk_steps": 4})
    a, b = sess.run([gd, gs], fd)
    assert len(a) == len(w) == 3
    _close(a, b, 1e-5)


def test_printed_ir_declares_the_chunks():
    g, fetches, fd = _graph()
    sess = rg.Session(g, passes={"chunk_steps": 5})
    sess.run(fetches, fd)
    text = str(_program(sess).graph)
    assert text.count("chunk_steps=5") == 2
    assert "chunk_blocks=(0,)" in text and "epilogue_carried=(" in text
    for role in ("block:", "chunk:", "gathered:", "chunk_len:", "prologue:", "gather:",
                 "epilogue:"):
        assert role in text, role
    # the user's own graph is untouched
    assert "chunk_steps" not in str(g)


def test_a_saved_and_reloaded_chunked_graph_runs(tmp_path):
    g, fetches, fd = _graph(lengths=True)
    sess = rg.Session(g, passes={"chunk_steps": 6})   # (its fused kernels saved too)
    got = sess.run(fetches, fd)
    prog = _program(sess)
    assert all(n.op.chunk_steps == 6 for n in _loops(prog.graph))
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    path = rg.io.save(str(tmp_path / "chunked.rg"), graph=prog.graph, fetches={**fed, **outs})
    saved = rg.io.read(path)
    loops = _loops(saved.graph)
    assert [n.op.chunk_steps for n in loops] == [6, 6]
    assert loops[1].op.epilogue_carried == _loops(prog.graph)[1].op.epilogue_carried
    rg.verify(saved.graph)
    out = _run_saved(saved, prog, sess, g, fd)
    for a, b in zip(out, got):
        assert np.array_equal(a, b)


def _run_saved(saved, prog, sess, g, fd, **options):
    """The outputs of a saved compiled program (fetches fed_i / out_i), fed as `prog` was fed
    by `fd`, with the variables' values the first session `sess` of graph `g` used; `options`
    for the Session that runs it."""
    values = {saved.fetches[f"fed_{i}"]: fd[[k for k in fd if k.node.name == v.node.name][0]]
              for i, v in enumerate(prog.inputs)}
    store = {v.node.name: sess.run(v) for v in g.collections["variables"]}
    # (bit for bit needs the same executor: the CPU's multiplies the active rows alone, and a
    # BLAS may round a product of fewer rows otherwise)
    if isinstance(sess.device, SimulatedDevice):
        options.setdefault("device", SimulatedDevice())
    again = rg.Session(saved.graph, passes=False, **options)
    for v in saved.graph.collections["variables"]:
        values[v] = store[v.node.name]
    return again.run([saved.fetches[f"out_{i}"] for i in range(len(prog.outputs))], values)


def test_inconsistent_chunks_are_refused_by_the_verifier():
    g, fetches, fd = _graph()
    sess = rg.Session(g, passes={"chunk_steps": 5})
    sess.run(fetches, fd)
    fwd, bwd = _loops(_program(sess).graph)
    rg.verify(_program(sess).graph)
    bwd.op.epilogue_carried = bwd.op.epilogue_carried[:-1]
    with pytest.raises(VerificationError, match="epilogue_carried"):
        rg.verify(_program(sess).graph)
    fwd.op.chunk_blocks = ()
    with pytest.raises(VerificationError, match="chunk_blocks"):
        fwd.op.verify(fwd)
    fwd.op.chunk_steps = None
    with pytest.raises(VerificationError, match="without chunk_steps"):
        fwd.op.verify(fwd)


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                     (True, TypeError), ("8", TypeError)])
def test_a_bad_chunk_size_is_refused(bad, exc):
    g, fetches, fd = _graph()
    with pytest.raises(exc, match="chunk_steps"):
        rg.Session(g, passes={"chunk_steps": bad})


@pytest.mark.parametrize("strategy", ["offload", "recompute", "auto"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_under_a_tenth_budget_the_plan_runs_chunks_within_the_budget(strategy, lengths):
    """T = 400 LSTM with a projection, budget a tenth of its saved tensors: the plan chunks,
    fits, is measured at its prediction, and gives the unconstrained gradients."""
    T = 400
    g, X, fetches = lstm_graph(batch=8, hidden=64, inputs=8, proj=8)
    fd = feed(X, T)
    if lengths:   # dynamic_rnn with sequence_length: a second graph with a lengths input
        g, fetches, fd = _graph(proj=8, lengths=True, T=T, B=8, H=64, I=8)
    free = rg.Session(g, device=SimulatedDevice())
    ref = free.run(fetches, fd)
    saved = sum(s.total_bytes for s in free.memory_plan(fetches, fd).saved)
    budget = saved // 10
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits, str(plan)
    if strategy == "recompute" and lengths:
        # recomputing alone, the lean plan leaves 4 KiB of room: no chunk of 4 steps fits
        assert not plan.chunk_steps and plan.passes_off
        assert budget - plan.predicted_peak < 4 * plan.loops[0].saved[0].bytes_per_step * 4
    else:
        assert plan.chunk_steps and not plan.passes_off, str(plan)
        assert f"sequence passes in chunks of {plan.chunk_steps} steps" in str(plan)
    got = sess.run(fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= budget
    assert abs(plan.predicted_peak - peak) <= 0.02 * peak
    _close(got, ref)
    same = rg.Session(g, device=SimulatedDevice(), passes=plan.passes).run(fetches, fd)
    for a, b in zip(got, same):
        if strategy == "offload":
            assert np.array_equal(a, b)      # the same program, rows copied: bit for bit
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_a_loop_with_a_condition_is_not_chunked():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3, 4], name="x")
        w = rg.Variable(np.ones((4, 4), np.float32) * 0.1)

        def body(i, h):
            return i + 1, rg.tanh(h @ w + x)
        _, h = rg.while_loop(lambda i, h: i < 5, body, [rg.constant(0), x])
        loss = rg.reduce_sum(h * h)
        grads = rg.gradients(loss, [w])
    fd = {x: np.random.RandomState(0).randn(3, 4).astype(np.float32)}
    want = rg.Session(g).run(grads, fd)
    sess = rg.Session(g, passes={"chunk_steps": 2})
    got = sess.run(grads, fd)
    _close(got, want)
    loops = _loops(_program(sess).graph)
    assert any(n.op.has_cond() for n in loops)
    assert all(not n.op.chunk_steps for n in loops if n.op.has_cond())
    # (its steps are unknown until the condition fails: the verifier refuses chunks there)
    cond_loop = next(n for n in loops if n.op.has_cond())
    cond_loop.op.chunk_steps = 2
    with pytest.raises(VerificationError, match="condition"):
        cond_loop.op.verify(cond_loop)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("C", [1, 6, 100])
def test_sunk_outputs_are_written_by_the_epilogue(C, lengths):
    """The gradient by the input (dx_t = dz_t @ W_x^T, a stacked output of the backward loop)
    is computed per chunk after the chunk's steps, into the chunk's rows of its stack."""
    g, fetches, fd = _graph(proj=None, lengths=lengths)
    want = rg.Session(g, passes=False).run(fetches, fd)
    sess = rg.Session(g, device=SimulatedDevice(), passes={"chunk_steps": C})
    got = sess.run(fetches, fd)
    _close(got, want)
    assert got[-1].shape == fd[[k for k in fd if k.node.name == "X"][0]].shape
    _, bwd = _loops(_program(sess).graph)
    (j,) = bwd.op.epilogue_outputs
    rows = bwd.op.body.results["epilogue_rows"]
    assert len(rows) == 1 and rows[0].type.rank == bwd.op.body.results["output"][j].type.rank + 1
    text = str(_program(sess).graph)
    assert f"epilogue_outputs=({j},)" in text and "epilogue_rows:" in text
    if lengths:   # rows of finished sequences: zero, as without chunks
        L = fd[[k for k in fd if k.node.name == "L"][0]]
        for b, n in enumerate(L):
            assert not got[-1][b, n:].any()
    bwd.op.epilogue_outputs = ()
    with pytest.raises(VerificationError, match="epilogue_outputs"):
        bwd.op.verify(bwd)


def test_the_planned_program_moves_to_the_accelerated_backend_once_hot():
    """The chunked (or lean) program a plan picks is counted like the session's own: after
    HOT_AFTER runs it runs on the accelerated backend, planned anew for it."""
    pytest.importorskip("numba")
    from rnngraph.runtime.session import HOT_AFTER
    T = 400
    g, X, fetches = lstm_graph(batch=8, hidden=64, inputs=8, proj=8)
    fd = feed(X, T)
    saved = sum(s.total_bytes for s in rg.Session(g, device=SimulatedDevice())
                .memory_plan(fetches, fd).saved)
    budget = saved // 10
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    first = sess.run(fetches, fd)
    plan = sess.memory_plan(fetches, fd)
    assert plan.chunk_steps and plan.fits
    cold = [p for p in sess.programs() if any(n.op.chunk_steps for n in _loops(p.graph))]
    assert cold and not any(p.ctx.options["accelerate"] for p in cold)
    for _ in range(HOT_AFTER + 1):
        got = sess.run(fetches, fd)
        assert sess.last_run_report.peak_bytes <= budget
    hot = [p for p in sess.programs() if any(n.op.chunk_steps for n in _loops(p.graph))
           and p.ctx.options["accelerate"]]
    assert hot
    plan = sess.memory_plan(fetches, fd)
    assert plan.loops[0].node.graph is hot[0].graph     # the plan is the hot program's
    assert sess.last_run_report.peak_bytes == plan.predicted_peak
    _close(got, first)


def test_a_bidirectional_rnn_with_lengths_runs_in_chunks_both_ways():
    """Four loops chunked, the gradient loops running t = T-1..0 (their chunks: the same
    aligned blocks, read from the top); under a budget, replays get blocks of their own."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [4, None, 3], name="X")
        L = rg.placeholder(rg.int32, [4], name="L")
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(8), rg.nn.GRUCell(6), X, sequence_length=L, dtype=rg.float32)
        loss = rg.reduce_sum(fw * fw) + rg.reduce_sum(bw * bw)
        fetches = [loss] + rg.gradients(loss, rg.global_variables() + [X])
    fd = {X: np.random.RandomState(0).randn(4, 37, 3).astype(np.float32),
          L: np.array([37, 5, 20, 1], np.int32)}
    want = rg.Session(g, passes=False).run(fetches, fd)
    for C in (6, 50):
        sess = rg.Session(g, passes={"chunk_steps": C})
        _close(sess.run(fetches, fd), want)
        loops = _loops(_program(sess).graph)
        assert len(loops) == 4 and all(n.op.chunk_steps == C for n in loops)
        assert sum(n.op.reverse for n in loops) == 2
    free = rg.Session(g, device=SimulatedDevice())
    budget = sum(s.total_bytes for s in free.memory_plan(fetches, fd).saved) // 2
    for strategy in ("offload", "recompute"):
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy=strategy)
        plan = sess.memory_plan(fetches, fd)
        assert plan.fits and plan.chunk_steps
        _close(sess.run(fetches, fd), want)
        peak = sess.last_run_report.peak_bytes
        assert peak <= budget and abs(plan.predicted_peak - peak) <= 0.02 * peak


class _ReusedRowStack(SavedStack):
    """A residual handle as offloaded and replayed stacks are: each row read lands in the same
    device buffer, so a row is valid only until the next read."""

    def __init__(self, data):
        self.data, self.n, self.row_shape = data, data.shape[0], data.shape[1:]
        self.dev, self.dtype = CPUDevice(), data.dtype
        self.buffer = np.empty(data.shape[1:], data.dtype)

    def __getitem__(self, t):
        self.buffer[...] = self.data[t]
        return self.buffer


class _Identity:
    def run(self, inputs):
        return list(inputs)


def test_a_chunk_block_of_a_residual_handle_keeps_every_row():
    data = np.arange(7 * 2 * 3, dtype=np.float32).reshape(7, 2, 3)
    stack = _ReusedRowStack(data)
    source = ChunkSource(stack.dev, _Identity(), [], [stack], steps=3, n=7, tracked=False)
    rows = source.rows(0)
    got = np.stack([np.array(rows[t]) for t in range(7)])
    np.testing.assert_array_equal(got, data)
    assert source.blocks_run == 3


@pytest.mark.parametrize("T,C", [(5, 64), (5, 1000), (23, 4)])
def test_a_loop_shorter_than_its_chunk_is_measured_at_most_at_the_prediction(T, C):
    # the gathered rows of a chunk are min(C, T) long, as the model counts them
    g, fetches, fd = _graph(T=T, B=32, H=64, I=32, proj=None)
    sess = rg.Session(g, device=SimulatedDevice(), passes={"chunk_steps": C})
    plan = sess.memory_plan(fetches, fd)
    sess.run(fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= plan.predicted_peak
    assert plan.predicted_peak - peak <= 0.03 * peak


def _chunked_file(tmp_path):
    g, fetches, fd = _graph(lengths=True)
    sess = rg.Session(g, passes={"chunk_steps": 6, "fuse": False})
    sess.run(fetches, fd)
    prog = _program(sess)
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    return rg.io.save(str(tmp_path / "chunked.rg"), graph=prog.graph, fetches=outs)


def _set_loop_attr(which: int, key: str, value):
    def edit(doc):
        loops = [n for n in _nodes(doc, "loop") if n["attrs"].get("chunk_steps")]
        loops[which]["attrs"][key] = value
    return edit


@pytest.mark.parametrize("which,key,value", [
    (1, "epilogue_carried", [0, 3, 4]),   # an accumulator's result into a carried value
    (1, "epilogue_carried", [4, 3, 2]),   # of the same rank but another shape
    (0, "chunk_blocks", [7]),          # a block of a sequence input that is not there
])
def test_a_file_with_inconsistent_chunks_is_refused_on_loading(tmp_path, which, key, value):
    path = _chunked_file(tmp_path)
    _edit_json(path, tmp_path / "t.rg", _set_loop_attr(which, key, value))
    with pytest.raises(InvalidFileError):
        rg.io.read(str(tmp_path / "t.rg"))
