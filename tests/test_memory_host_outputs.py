"""host_outputs: a loop output only fetches read (through transposes, row reorderings and
reversals) is written to host memory a row at a time, so the device never holds its stack.
The pass's choices, the loop op's declared attribute, the plan that fits a budget only this
way (measured peak as predicted, values as the unconstrained run's, the fetched output bit for
bit), with sequence_length and both directions of a bidirectional RNN."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import VerificationError
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _program
from test_memory_streamed import rerun_saved, run_planned
from test_memory_streamed_fetched import B, I, _graph, _squares, bidirectional

# (forced: the pass is tested; reuse_outputs off: else the weight gradient's product reads the
# output stack as the saved h_{t-1}, a reader that keeps it on the device)
HOST = {"stream_outputs": "always", "host_outputs": True, "reuse_outputs": False}


def _marked(sess):
    """host_outputs of the forward loops of the program `sess` ran last."""
    return [n.op.host_outputs for n in _loops(_program(sess).graph) if not n.is_gradient]


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("lengths", [False, True])
def test_a_fetched_output_the_loss_streams_past_goes_to_the_host(time_major, lengths):
    """y fetched, sum(y**2) streamed: y's stack is marked (batch-major through its transpose
    and, with lengths, the unsort), and the values are the unconstrained ones, y bit for bit,
    on the CPU and on the simulated device (where the loop copies each row to the host)."""
    g, fetches, fd = _graph(9, 5, _squares, lengths=lengths, time_major=time_major)
    want = rg.Session(g).run(fetches, fd)
    for device in ("cpu", SimulatedDevice()):
        sess = rg.Session(g, device=device, passes=HOST)
        got = sess.run(fetches, fd)
        assert _marked(sess) == [(0,)]
        assert isinstance(got[-1], np.ndarray) and np.array_equal(got[-1], want[-1])
        _close(got, want, rtol=2e-5)


@pytest.mark.parametrize("passes", [{"stream_outputs": False, "host_outputs": True},
                                    {"stream_outputs": "always", "host_outputs": True}])
def test_an_output_something_else_reads_stays_on_the_device(passes):
    """Unstreamed, the loss reads y; streamed with reuse_outputs on, the weight gradient's
    product reads y's stack as the saved h_{t-1}: either way the stack stays on the device
    (and the values hold)."""
    g, fetches, fd = _graph(7, 4, _squares)
    sess = rg.Session(g, device=SimulatedDevice(), passes=passes)
    got = sess.run(fetches, fd)
    assert _marked(sess) == [()]
    _close(got, rg.Session(g).run(fetches, fd), rtol=2e-5)


def test_a_fed_output_is_not_written_to_the_host():
    """y fed by the caller (the loss then reads the fed array): nothing is marked, and the
    loss is the fed value's."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I], name="X")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(4), X, dtype=rg.float32, time_major=True)
        z = rg.transpose(y, [1, 0, 2])
        loss = rg.reduce_sum(y * y)
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(5, B, I).astype(np.float32), y: rs.randn(5, B, 4).astype(np.float32)}
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    got_loss, got_z = sess.run([loss, z], fd)
    assert all(m == () for m in _marked(sess))
    np.testing.assert_allclose(got_loss, np.sum(fd[y].astype(np.float64) ** 2), rtol=1e-5)
    assert np.array_equal(got_z, fd[y].transpose(1, 0, 2))


def test_both_directions_of_a_bidirectional_rnn_go_to_the_host():
    """fw and bw fetched, with lengths: the backward direction's output reaches the fetch
    through its reversal, which runs on the host array too; both bit for bit."""
    def head(fw, bw):
        return rg.reduce_sum(fw * fw) + rg.reduce_sum(bw * bw), [fw, bw]
    got, want, forward = bidirectional(head, passes=HOST, device=SimulatedDevice())
    assert [n.op.host_outputs for n in forward] == [(0,), (0,)]
    assert np.array_equal(got[-2], want[-2]) and np.array_equal(got[-1], want[-1])
    _close(got, want, rtol=2e-5)


@pytest.mark.parametrize("strategy", ["offload", "recompute"])
@pytest.mark.parametrize("lengths", [False, True])
def test_a_budget_only_host_outputs_meet(strategy, lengths):
    """T = 120, H = 32, y fetched: with host outputs the smallest budget a plan fits is below
    the streamed program's that keeps y's stack (by most of y); at that budget the plan writes
    y to the host, runs within it as predicted, and gives the unconstrained values (y bit for
    bit). The plan names the output it writes to the host."""
    T, H = 120, 32
    g, fetches, fd = _graph(T, H, _squares, lengths=lengths)

    def floor(**passes):   # (an empty dict would be no passes at all: True is the default)
        return rg.Session(g, device=SimulatedDevice(), memory_budget=1, passes=passes or True,
                          memory_strategy=strategy).memory_plan(fetches, fd).min_budget
    kept, budget = floor(host_outputs=False), floor()
    y_bytes = B * T * H * 4
    assert budget <= kept - 0.75 * y_bytes, (budget, kept, y_bytes)
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "host_outputs" in plan.passes_on, str(plan)
    assert plan.host_outputs == (("rnn/Transpose_1", y_bytes),), plan.host_outputs
    assert "written to host memory a row at a time" in str(plan) and "rnn/Transpose_1" in str(plan)
    got = run_planned(sess, plan, budget, strategy, g, fetches, fd)
    want = rg.Session(g).run(fetches, fd)
    _close(got, want, rtol=2e-5)
    # (bit for bit against the same executor: the CPU's fast path multiplies the active rows
    # alone, and a BLAS may round a product of one row otherwise than one of the batch)
    assert np.array_equal(got[-1], rg.Session(g, device=SimulatedDevice()).run(fetches, fd)[-1])


def test_a_host_output_program_saves_and_reruns(tmp_path):
    """The loop's host_outputs is declared: saved, read back, checked and run, bit for bit."""
    g, fetches, fd = _graph(6, 4, _squares, lengths=True)
    sess = rg.Session(g, passes=HOST)
    sess.run(fetches, fd)
    assert _marked(sess) == [(0,)]
    rerun_saved(sess, g, fetches, fd, tmp_path)
    assert "host_outputs=(0,)" in str(_program(sess).graph)


@pytest.mark.parametrize("bad, said", [
    ((3,), "does not name distinct stacked outputs"),
    ((0, 0), "does not name distinct stacked outputs"),
])
def test_a_loop_naming_outputs_it_lacks_fails_verification(bad, said):
    g, fetches, fd = _graph(5, 4, _squares)
    sess = rg.Session(g, passes=HOST)
    sess.run(fetches, fd)
    loop = next(n for n in _loops(_program(sess).graph) if n.op.host_outputs)
    loop.op.host_outputs = bad
    with pytest.raises(VerificationError, match=said):
        loop.op.verify(loop)


def test_a_loop_with_a_condition_cannot_write_outputs_to_the_host():
    """A while_loop's steps are unknown until its condition fails: verification says so, and
    the pass leaves such a loop alone."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")
        _, acc = rg.while_loop(lambda i, a: i < 4, lambda i, a: (i + 1, a + x), [0, x])
    sess = rg.Session(g, passes={"host_outputs": True})
    np.testing.assert_allclose(sess.run(acc, {x: np.ones(3, np.float32)}), 5.0)
    loops = _loops(_program(sess).graph)
    assert loops and all(n.op.host_outputs == () for n in loops)
    loops[0].op.host_outputs = (0,)
    with pytest.raises(VerificationError):
        loops[0].op.verify(loops[0])


# --- review cases ----------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "simulated"])
def test_a_bad_reversal_on_the_host_array_is_refused_as_on_the_device(device):
    """reverse_sequence(y, R) fetched with a length outside [0, T]: the host array's kernel
    makes the op's own checks (it ran the bare op, and gave back an unreversed row)."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        R = rg.placeholder(rg.int32, [B], name="R")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(4), X, dtype=rg.float32, time_major=False)
        back = rg.reverse_sequence(y, R, seq_axis=1, batch_axis=0)
    fd = {X: np.random.RandomState(0).randn(B, 6, I).astype(np.float32)}
    sess = rg.Session(g, device=SimulatedDevice() if device == "simulated" else device,
                      passes={"host_outputs": True, "reuse_outputs": False})
    ok = sess.run(back, {**fd, R: np.array([6, 2, 0, 3], np.int32)})
    assert _marked(sess) == [(0,)]
    want = rg.Session(g).run(back, {**fd, R: np.array([6, 2, 0, 3], np.int32)})
    assert np.array_equal(ok, want)
    for bad in ([-1, 2, 2, 2], [7, 2, 2, 2]):
        with pytest.raises(rg.errors.InvalidArgumentError, match=r"seq_lengths\[0\]"):
            sess.run(back, {**fd, R: np.array(bad, np.int32)})


def test_dropping_an_unused_output_renumbers_the_host_marks():
    """z = y + b and y both fetched: both stacks marked; with the first dropped (dce), the
    second's mark follows it to its new index."""
    from rnngraph.passes.loop_ports import drop_unused_outputs
    from test_memory_streamed_fetched import _bias
    g, fetches, fd = _graph(6, 4, _bias)
    sess = rg.Session(g, passes=HOST)
    sess.run(fetches, fd)
    loop = next(n for n in _loops(_program(sess).graph) if not n.is_gradient)
    assert loop.op.host_outputs == (0, 1)
    first = loop.op.out_ports().split(loop.outputs)["output"][0]
    drop_unused_outputs(loop, set(loop.outputs) - {first})
    assert loop.op.host_outputs == (0,) and len(loop.op.body.results["output"]) == 1


def _saved(sess, g, fetches, fd, tmp_path):
    """(the saved compiled program read back, its fed values and variables: a run's feed)."""
    prog = _program(sess)
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    saved = rg.io.read(rg.io.save(str(tmp_path / "host.rg"), graph=prog.graph,
                                  fetches={**fed, **outs}))
    values = {saved.fetches[f"fed_{i}"]: fd[next(k for k in fd if k.node.name == v.node.name)]
              for i, v in enumerate(prog.inputs)}
    store = {v.node.name: sess.run(v) for v in g.collections["variables"]}
    values.update((v, store[v.node.name]) for v in saved.graph.collections["variables"])
    return saved, [saved.fetches[f"out_{i}"] for i in range(len(prog.outputs))], values


@pytest.mark.parametrize("device", ["cpu", "simulated"])
def test_a_loaded_programs_marks_go_when_the_passes_run_without_the_pass(device, tmp_path):
    """A saved program with a host output, run again with the default passes: reuse_outputs
    then reads the output stack as the saved h[t-1], so the marks made at compile time no
    longer hold and go (the step_contract was handed a host handle)."""
    g, fetches, fd = _graph(6, 4, _squares, lengths=True)
    sess = rg.Session(g, passes=HOST)
    want = sess.run(fetches, fd)
    saved, outs, values = _saved(sess, g, fetches, fd, tmp_path)
    again = rg.Session(saved.graph, device=SimulatedDevice() if device == "simulated" else device)
    got = again.run(outs, values)
    assert all(m == () for m in _marked(again))
    _close(got, want, rtol=2e-5)


def test_a_file_marking_an_output_other_ops_read_is_refused(tmp_path):
    """The gradient loop's output marked by hand in a saved program (a step_contract reads
    it): reading the file fails verification, naming the reader."""
    g, fetches, fd = _graph(6, 4, _squares)
    sess = rg.Session(g, passes=HOST)
    sess.run(fetches, fd)
    prog = _program(sess)
    grad = next(n for n in _loops(prog.graph) if n.is_gradient)
    grad.op.host_outputs = (0,)
    with pytest.raises(VerificationError, match="cannot read host memory"):
        rg.verify(prog.graph)
    path = rg.io.save(str(tmp_path / "bad.rg"), graph=prog.graph,
                      fetches={f"out_{i}": v for i, v in enumerate(prog.outputs)})
    with pytest.raises(rg.errors.InvalidFileError, match="cannot read host memory"):
        rg.io.read(path)


def test_a_loaded_mark_something_new_reads_goes_even_with_the_passes_off(tmp_path):
    """A node added to a loaded program reads its marked output: with passes=False too, the
    mark goes (the reader was handed a host handle), and the values hold."""
    g, fetches, fd = _graph(6, 4, _squares, time_major=True)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    want = sess.run(fetches, fd)
    saved, outs, values = _saved(sess, g, fetches, fd, tmp_path)
    loop = next(n for n in _loops(saved.graph) if n.op.host_outputs)
    y = loop.op.out_ports().split(loop.outputs)["output"][loop.op.host_outputs[0]]
    with saved.graph.as_default():
        z = y * 2.0
    again = rg.Session(saved.graph, device=SimulatedDevice(), passes=False)
    got = again.run(outs + [z], values)
    assert all(n.op.host_outputs == () for n in _loops(_program(again).graph))
    _close(got[:-1], want, rtol=2e-5)
    np.testing.assert_allclose(got[-1], 2 * want[-1], rtol=1e-6)
    kept = rg.Session(saved.graph, device=SimulatedDevice(), passes=False)
    kept.run(outs, values)   # (nothing new reads it: the mark stays)
    assert any(n.op.host_outputs for n in _loops(_program(kept).graph))


# --- read back a row per step by a later loop -----------------------------------------------------
def _concat(T=12, lengths=True, time_major=False, B=4, H=5, I=3, V=7, dtype=rg.float32):
    from test_memory_stream_bidir import _model
    return _model(T, B, H, I, lengths, time_major, head="concat", V=V, dtype=dtype)[:3]


def _host_rows_read_by_loops(graph):
    """{host_rows node name: the names of the loops reading it} of the nodes that read a
    loop's host output (not a fed value)."""
    out = {}
    for n in graph.nodes:
        if n.op.name == "host_rows" and n.inputs[0].node.op.name != "placeholder":
            out[n.name] = sorted(r.name for r in graph.nodes if r.op.name == "loop" and
                                 any(x is n.outputs[0] for x in r.inputs))
    return out


@pytest.mark.parametrize("lengths,time_major", [(False, False), (True, False), (False, True),
                                                (True, True)])
def test_a_head_over_both_directions_reads_the_forward_rows_from_the_host(lengths, time_major):
    """concat([fw, bw], -1) under a dense head and a cross-entropy: the backward direction's
    loop reads the forward direction's outputs a row per step, and stacks the forward
    direction's gradient rows for that direction's gradient loop. Both stacks are written to
    host memory and read back through host_rows nodes (the reversals, transposes and row
    orders on the way run on the host), against NumPy and the run keeping them whole."""
    from test_memory_stream_concat import _numpy_concat_head
    g, fetches, fd = _concat(lengths=lengths, time_major=time_major)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    assert _marked(sess) == [(0,), (0,)]
    routed = _host_rows_read_by_loops(graph)
    assert sorted(routed.values()) == [["bidirectional_rnn/bw/while"],
                                       ["gradients/bidirectional_rnn/fw/while_grad"]], routed
    want = _numpy_concat_head(fd, [sess.run(v) for v in g.collections["variables"]],
                              time_major)
    _close(got, want, rtol=2e-5)
    kept = rg.Session(g, device=SimulatedDevice(), passes={**HOST, "host_outputs": False})
    _close(got, kept.run(fetches, fd), rtol=1e-6)


def test_host_rows_gradients_match_finite_differences():
    """float64, with lengths: d loss / d X through both host stacks against central
    differences of the loss, every entry."""
    from test_memory_embedding_bidir import numeric_grad
    g, fetches, fd = _concat(T=5, B=3, H=3, I=2, V=4, dtype=rg.float64)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    out = sess.run(fetches, fd)
    assert _marked(sess) == [(0,), (0,)]
    X = next(k for k in fd if k.node.name == "X")
    np.testing.assert_allclose(out[-1], numeric_grad(sess, fetches[0], fd, X, fd[X]),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("lengths", [False, True])
def test_the_concat_head_fits_below_its_stacks(lengths):
    """T=60: the smallest budget a plan fits falls by most of the two [T, B, H] stacks the
    device held (the forward outputs and their gradient rows); at that budget the plan writes
    both to the host, runs within it as predicted, with the unconstrained values."""
    T, B, H = 60, 8, 16
    g, fetches, fd = _concat(T=T, B=B, H=H, I=4, V=24, lengths=lengths)

    def floor(**passes):
        return rg.Session(g, device=SimulatedDevice(), memory_budget=1, passes=passes or True,
                          memory_strategy="offload").memory_plan(fetches, fd).min_budget
    kept, budget = floor(host_outputs=False), floor()
    stack = T * B * H * 4
    assert budget <= kept - 1.5 * stack, (budget, kept, stack)
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy="offload")
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "host_outputs" in plan.passes_on, str(plan)
    assert sorted(b for _, b in plan.host_outputs) == [stack, stack], plan.host_outputs
    # (the host arrays the run holds count against host_budget: the offloaded saved tensors
    # and the outputs the backward loops read, with their reordered copies at times)
    offloaded = sum(s.total_bytes for s in plan.saved if s.placement == "host")
    assert plan.host_bytes >= offloaded + 2 * stack, (plan.host_bytes, offloaded, stack)
    got = run_planned(sess, plan, budget, "offload", g, fetches, fd)
    _close(got, rg.Session(g).run(fetches, fd), rtol=1e-5)
    short = rg.Session(g, device=SimulatedDevice(), memory_budget=budget,
                       host_budget=plan.host_bytes - 1, memory_strategy="offload")
    assert not short.memory_plan(fetches, fd).fits


def test_a_host_rows_program_saves_and_reruns(tmp_path):
    """The routed program (marks and host_rows nodes) saved, read back, checked and run: the
    same values bit for bit."""
    g, fetches, fd = _concat(T=8)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    sess.run(fetches, fd)
    assert len(_host_rows_read_by_loops(_program(sess).graph)) == 2
    rerun_saved(sess, g, fetches, fd, tmp_path)


def test_a_loop_reading_a_host_output_without_host_rows_is_refused():
    """A marked output a loop reads directly (its host_rows node bypassed by hand): the loop
    cannot read a host array; verification says so, naming the loop."""
    g, fetches, fd = _concat(T=6)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    sess.run(fetches, fd)
    graph = _program(sess).graph
    rows = next(n for n in graph.nodes if n.op.name == "host_rows"
                and n.inputs[0].node.op.name != "placeholder")
    rg.verify(graph)
    for r in graph.nodes:
        r.inputs = [rows.inputs[0] if x is rows.outputs[0] else x for x in r.inputs]
    with pytest.raises(VerificationError, match="reaches loop node .*cannot read host memory"):
        rg.verify(graph)


def test_a_host_output_on_the_fake_gpu_goes_to_the_host_and_comes_back():
    """On the CuPy device (the fake CuPy of tests/fake_cupy.py): the forward outputs and
    their gradient rows go to pinned host memory row by row, and come back a row per step
    (through pinned staging rows: no copy from pageable memory, which would make the host
    wait for the device); the values are the CPU's, and the device makes fewer [T, B, H]
    buffers than with the
    stacks kept: not the two stacks, nor the copies their reversals, transposes and row
    orders make (the saved tensors, not planned here, are such stacks too)."""
    from test_gpu_fake_device import fake_gpu
    T, B, H = 10, 4, 5
    g, fetches, fd = _concat(T=T, B=B, H=H)
    want = rg.Session(g).run(fetches, fd)
    stacks = {}
    for on in (True, False):
        fake, dev = fake_gpu()
        sizes, pinned = [], []
        track = fake._track

        def spy(buf, registry, kind, sizes=sizes, pinned=pinned, track=track):
            (sizes if kind == "device" else pinned).append(buf.nbytes)
            track(buf, registry, kind)
        fake._track = spy
        got = rg.Session(g, device=dev, passes={**HOST, "host_outputs": on}).run(fetches, fd)
        _close(got, want, rtol=2e-5)
        stacks[on] = sizes.count(T * B * H * 4)
        if on:   # (the two stacks in pinned memory, each dropped once its readers are done)
            assert pinned.count(T * B * H * 4) >= 2, pinned
            assert fake.pinned_peak >= T * B * H * 4
            assert ("host_sync", "pageable memcpy") not in fake.events
    assert stacks[True] <= stacks[False] - 2, stacks


def _two_layers(T=40, B=4, H=8, I=3):
    """Two dynamic_rnn layers, time-major: the second reads the first's outputs a row per step
    (and its gradient loop does again), the loss streams past the second's."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I], name="X")
        with rg.variable_scope("l1"):
            y1, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32, time_major=True)
        with rg.variable_scope("l2"):
            y2, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), y1, dtype=rg.float32, time_major=True)
        loss = rg.reduce_sum(y2 * y2)
        fetches = [loss] + rg.gradients(loss, rg.global_variables() + [X])
    return g, fetches, {X: np.random.RandomState(0).randn(T, B, I).astype(np.float32)}


def test_the_plans_host_bytes_count_the_host_arrays_loops_read(monkeypatch):
    """A second layer reading the first's outputs from the host, its gradient loop writing the
    first's output gradient there while still reading them: both host arrays are alive at
    once, and the plan's host bytes hold exactly that beyond the offloaded saved tensors
    (the host arrays counted as the run makes and drops them)."""
    import weakref
    from rnngraph.runtime import transfer
    live, seen = {}, {"cur": 0, "peak": 0}
    made = transfer.HostValue.__init__

    def counted(self, dev, host, name, ticket=None, owned=True):
        made(self, dev, host, name, ticket, owned)
        base = host
        while isinstance(base.base, np.ndarray):
            base = base.base
        if owned or id(base) in live:   # (an offloaded value's buffer: the host pool's)
            return
        live[id(base)] = base.nbytes
        seen["cur"] += base.nbytes
        seen["peak"] = max(seen["peak"], seen["cur"])

        def gone(k=id(base)):
            seen["cur"] -= live.pop(k)
        weakref.finalize(base, gone)
    monkeypatch.setattr(transfer.HostValue, "__init__", counted)
    g, fetches, fd = _two_layers()
    budget = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(
        fetches, fd).min_budget
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and len(plan.host_outputs) == 3, plan.host_outputs
    got = sess.run(fetches, fd)
    offloaded = sum(s.total_bytes for s in plan.saved if s.placement == "host")
    stack = 40 * 4 * 8 * 4
    assert seen["peak"] == 2 * stack
    assert plan.host_bytes - offloaded == seen["peak"], (plan.host_bytes, offloaded, seen)
    _close(got, rg.Session(g).run(fetches, fd), rtol=2e-5)


def test_a_loaded_mark_on_an_output_the_caller_feeds_is_a_device_value(tmp_path):
    """A saved routed program run with passes=False (the marks kept: nothing new reads the
    outputs), the forward direction's output fed: the reversal and row orders then work on
    the fed device array, and the peak model counts them so (predicted = measured)."""
    T = 40
    g, fetches, fd = _concat(T=T, B=4, H=16, lengths=False)
    sess = rg.Session(g, device=SimulatedDevice(), passes=HOST)
    sess.run(fetches, fd)
    saved, outs, values = _saved(sess, g, fetches, fd, tmp_path)
    loop = next(n for n in saved.graph.nodes if n.name == "bidirectional_rnn/fw/while")
    y = loop.op.out_ports().split(loop.outputs)["output"][loop.op.host_outputs[0]]
    values[y] = np.random.RandomState(3).randn(T, 4, 16).astype(np.float32)
    again = rg.Session(saved.graph, device=SimulatedDevice(capacity=10**8),
                       memory_budget=10**8, passes=False)
    plan = again.memory_plan(outs, values)
    got = again.run(outs, values)
    assert loop.op.host_outputs and any(n.op.host_outputs for n in _loops(_program(again).graph))
    assert again.last_run_report.peak_bytes == plan.predicted_peak
    _close(got, rg.Session(saved.graph, passes=False).run(outs, values), rtol=1e-6)


def test_the_simulated_host_holds_the_outputs_loops_read_to_its_capacity():
    """The host arrays a plan counts in its host bytes beyond the offloaded stacks (outputs a
    later loop reads) count against the simulated device's host capacity as the run makes and
    drops them: with room for the plan's host bytes the run fits, and the device's host peak is
    the plan's; with a byte less than the outputs need beside the offloaded stacks it runs out
    of host memory, naming the output (the stacks alone fit)."""
    g, fetches, fd = _two_layers()
    budget = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(
        fetches, fd).min_budget
    plan = rg.Session(g, device=SimulatedDevice(capacity=budget),
                      memory_budget=budget).memory_plan(fetches, fd)
    offloaded = sum(s.total_bytes for s in plan.saved if s.placement == "host")
    outputs = plan.host_bytes - offloaded
    assert plan.fits and outputs == 2 * 40 * 4 * 8 * 4, (plan.host_bytes, offloaded)
    # (the Session is told it has that much host memory: its plan stays when the capacity
    # changes below; without a host_budget it would plan for the new capacity)
    dev = SimulatedDevice(capacity=budget, host_capacity=plan.host_bytes)
    sess = rg.Session(g, device=dev, memory_budget=budget, host_budget=plan.host_bytes)
    assert sess.memory_plan(fetches, fd).host_bytes == plan.host_bytes
    want = rg.Session(g).run(fetches, fd)
    _close(sess.run(fetches, fd), want, rtol=2e-5)
    assert dev.host_peak == plan.host_bytes, (dev.host_peak, plan.host_bytes)
    assert dev.host_current == 0   # (nothing the run wrote to the host is held after it)
    dev.host_capacity = plan.host_bytes - 1   # (told there was room: something took a byte)
    with pytest.raises(rg.errors.OutOfMemoryError,
                       match="simulated host memory exhausted.*stacked output 0 of"):
        sess.run(fetches, fd)
    assert dev.host_current == 0
    dev.host_capacity = plan.host_bytes
    _close(sess.run(fetches, fd), want, rtol=2e-5)   # (the failed run left nothing behind)


def _two_layers_with_lengths(T=40, B=4, H=8, I=3):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, B, I], name="X")
        S = rg.placeholder(rg.int32, [B], name="S")
        y = X
        for k in range(2):
            with rg.variable_scope(f"l{k}"):
                y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), y, dtype=rg.float32,
                                         time_major=True, sequence_length=S)
        loss = rg.reduce_sum(y * y)
        fetches = [loss] + rg.gradients(loss, rg.global_variables() + [X])
    fd = {X: np.random.RandomState(0).randn(T, B, I).astype(np.float32),
          S: np.array([T, 2, 1, T - 1], np.int32)}
    return g, fetches, fd


def test_a_run_drops_a_host_output_when_its_slot_is_freed():
    """The executor held the last output of a node with several outputs in a local until the
    next such node ran (a review): here a gradient loop's host output lived on through the
    next loop, above the plan's host bytes, and a run at a host capacity of the plan's host
    bytes ran out. Now the device's host peak is within the plan's, and that run fits."""
    g, fetches, fd = _two_layers_with_lengths()
    budget = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(
        fetches, fd).min_budget + 2000
    dev = SimulatedDevice(capacity=budget)
    sess = rg.Session(g, device=dev, memory_budget=budget, host_budget=15360)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and plan.host_outputs, str(plan)
    want = rg.Session(g).run(fetches, fd)
    _close(sess.run(fetches, fd), want, rtol=2e-5)
    assert dev.host_peak <= plan.host_bytes, (dev.host_peak, plan.host_bytes)
    dev.host_capacity = plan.host_bytes
    _close(sess.run(fetches, fd), want, rtol=2e-5)


def test_a_failed_run_leaves_no_host_bytes_counted(monkeypatch):
    """Ctrl-C in the middle of a run whose offloaded stacks and host outputs exist: the run's
    host bytes are forgotten with it (its offloaded stacks were still counted, so the next
    run of a plan that fits the host capacity ran out; a review), and the next run fits."""
    import rnngraph.runtime.host_outputs as host_outputs
    g, fetches, fd = _two_layers()
    floor = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(
        fetches, fd).min_budget
    dev = SimulatedDevice(capacity=floor)
    sess = rg.Session(g, device=dev, memory_budget=floor)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and any(s.placement == "host" for s in plan.saved), str(plan)
    dev.host_capacity = plan.host_bytes
    want = sess.run(fetches, fd)
    put = host_outputs.OutputWriter.put

    def interrupted(self, t, y):   # (Ctrl-C at step 5 of the first loop: its stacks exist)
        if t == 5:
            raise KeyboardInterrupt
        return put(self, t, y)
    monkeypatch.setattr(host_outputs.OutputWriter, "put", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sess.run(fetches, fd)
    assert dev.host_current == 0
    monkeypatch.setattr(host_outputs.OutputWriter, "put", put)
    _close(sess.run(fetches, fd), want, rtol=2e-5)
    assert dev.host_current == 0
