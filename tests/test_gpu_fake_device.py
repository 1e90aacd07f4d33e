"""The CuPy device's stream, event and memory logic, on the CPU: the real CupyDevice class
driven by a fake `cupy` module (tests/fake_cupy.py) that records every stream and event
operation, queues copies until something orders them, and counts device and pinned bytes as
CuPy's pools would. No GPU needed."""
import os
import subprocess
import sys

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.cupy.device import CupyDevice
from rnngraph.runtime.residuals import OffloadWriter

from fake_cupy import FakeCupy
from memory_graphs import STACK_PASSES_OFF, feed, lstm_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_gpu(**kw):
    fake = FakeCupy()
    kw.setdefault("workspace_bytes", 0)
    return fake, CupyDevice(xp=fake, **kw)


def seq_graph(T, batch=8, hidden=16, inputs=4):
    """dynamic_rnn with sequence_length and swap_memory: the loop's trip count is a device
    value (the longest length), every saved tensor goes to the host."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [batch, T, inputs], name="X")
        L = rg.placeholder(rg.int32, [batch], name="L")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(hidden), X, sequence_length=L,
                                   dtype=rg.float32, swap_memory=True)
        loss = rg.reduce_sum(out * out)
        grads = rg.gradients(loss, rg.trainable_variables())
    rs = np.random.RandomState(T)
    fd = {X: rs.randn(batch, T, inputs).astype(np.float32),
          L: rs.randint(1, T + 1, size=batch).astype(np.int32)}
    return g, [loss] + grads, fd


def close(got, ref):
    for a, b in zip(got, ref):
        assert isinstance(a, np.ndarray) and type(a) is np.ndarray   # back on the host
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def loop_region(log, kind):
    """The log entries between the first and the last copy of one direction: the forward
    loop's steps ("D2H") or the backward loop's ("H2D")."""
    at = [i for i, e in enumerate(log) if e[0] == "memcpy" and e[2] == kind]
    return log[at[0]:at[-1] + 1]


def test_offloaded_lstm_gives_the_cpu_results():
    g, X, f = lstm_graph(batch=8, hidden=32, swap_memory=True)
    fd = feed(X, 120)
    fake, dev = fake_gpu()
    sess = rg.Session(g, device=dev)
    plan = sess.memory_plan(f, {X: fd[X].shape})
    assert {s.placement for s in plan.saved} == {"host"} and plan.loops[0].prefetch_depth >= 2
    got = sess.run(f, fd, report=True)
    close(got, rg.Session(g).run(f, fd))
    kinds = [e[2] for e in fake.log if e[0] == "memcpy"]
    assert kinds.count("D2H") == kinds.count("H2D") == 120 * len(plan.saved)
    streams = {e[1] for e in fake.log if e[0] == "memcpy"}
    assert streams == {"stream1"}                  # the side stream, never the compute stream
    saved = sum(s.total_bytes for s in plan.saved)
    assert sess.last_run_report.bytes_to_host == saved == sess.last_run_report.bytes_to_device


def test_no_host_synchronisation_inside_a_dynamic_rnn_loop():
    reads_per_run = []
    for T in (50, 1000):
        g, f, fd = seq_graph(T)
        fake, dev = fake_gpu()
        sess = rg.Session(g, device=dev)
        sess.run(f, fd)                                   # (compiles)
        start = fake.mark()
        got = sess.run(f, fd)
        log = fake.since(start)
        for kind in ("D2H", "H2D"):   # the forward loop's steps, the backward loop's
            inside = loop_region(log, kind)
            assert sum(1 for e in inside if e[0] == "memcpy" and e[2] == kind) >= T
            assert [e for e in inside if e[0] in ("host_sync", "host_read", "query")] == []
        # outside the loops the run reads device values a fixed number of times (the trip
        # count, the active rows, the sequence_length checks: as many at T = 1000 as at 50),
        # never synchronises a stream or an event, and fetches each result once
        assert [e for e in log if e[0] == "host_sync"] == []
        reads = [e[1] for e in log if e[0] == "host_read"]
        assert reads.count("asnumpy") == len(f)
        reads_per_run.append(len(reads))
        close(got, rg.Session(g).run(f, fd))
    assert reads_per_run[0] == reads_per_run[1]


def test_events_stay_within_the_rings_at_T_1000():
    g, X, f = lstm_graph(batch=4, hidden=16, swap_memory=True)
    fd = feed(X, 1000)
    fake, dev = fake_gpu(ring_size=8)
    assert fake.events_made == 16                     # two rings, made with the device
    sess = rg.Session(g, device=dev)
    for _ in range(2):
        sess.run(f, fd)
    copies = fake.count("memcpy")
    assert copies >= 2 * 2 * 1000 * 7                 # 2 runs, both ways, 1000 steps, 7+ stacks
    assert fake.events_made == 16 and fake.count("event_new") == 16
    assert fake.count("record") >= copies             # events are recorded again and again


def test_a_prefetch_waits_for_its_buffers_last_reader_not_for_all_compute():
    fake, dev = fake_gpu()
    host = dev.host_empty((4, 8), np.float32)
    host[...] = np.arange(32, dtype=np.float32).reshape(4, 8)
    buf = dev.empty((8,), np.float32)
    buf[...] = 5.0
    read = buf * 2                                    # buf's last reader
    after_reader = dev.mark()
    later = [fake.ones((100,)) * k for k in range(3)]  # more kernels queued after it
    start = fake.mark()
    ticket = dev.copy_to_device(host[2], buf, after=after_reader)
    log = fake.since(start)
    # the transfer stream waits on the reader's event; nothing new is recorded on the compute
    # stream for this copy (a full-stream event would be a fresh record here)
    assert log[0] == ("wait_event", "stream1", after_reader.id)
    assert not any(e[0] == "record" and e[2] == "compute" for e in log)
    dev.wait(ticket)
    np.testing.assert_array_equal(fake.asnumpy(buf), host[2])
    np.testing.assert_array_equal(fake.asnumpy(read), 10.0)
    assert len(later) == 3
    # without a marker, the copy waits for everything queued so far: a fresh compute record
    start = fake.mark()
    dev.wait(dev.copy_to_device(host[1], buf))
    log = fake.since(start)
    assert log[0][0] == "record" and log[0][2] == "compute"
    assert log[1] == ("wait_event", "stream1", log[0][1])


def test_the_backward_loop_recycles_prefetch_buffers_after_their_reader():
    """Every prefetch into a recycled buffer waits on the event recorded when the step that
    read it was queued; copies into fresh buffers wait on a record made for them."""
    fake, dev = fake_gpu()
    w = OffloadWriter(dev, 12, 3, None, "r", host_budget=1 << 20)
    rows = [fake.full((4, 4), float(t), np.float32) for t in range(12)]
    for t, r in enumerate(rows):
        w.put(t, r)
    stack = w.finish(12, descending=True, depth=3)
    marks = []
    real_mark = dev.mark

    def mark():
        ev = real_mark()
        marks.append(ev.id)
        return ev
    dev.mark = mark
    start = fake.mark()
    for t in range(11, -1, -1):
        got = stack[t] + 0.0                          # the step's reader
        np.testing.assert_array_equal(fake.asnumpy(got), float(t))
    log = fake.since(start)
    h2d = [i for i, e in enumerate(log) if e[0] == "memcpy" and e[2] == "H2D"]
    waited = [log[i - 1][2] for i in h2d]             # the event each prefetch waited on
    # 3 fresh buffers (depth 3) wait on a record made for their copy; the other 9 prefetches
    # reuse a buffer a step has read, and wait on the mark taken when that step was queued
    assert len(h2d) == 12 and len(marks) == 11 + 3
    assert set(waited) <= set(marks) and len(set(waited)) == 12
    stack.end_pass()


def test_pinned_chunks_stay_within_the_host_budget():
    g, X, f = lstm_graph(batch=8, hidden=32, swap_memory=True)
    fd = feed(X, 1000)
    fake, dev = fake_gpu(chunk_bytes=64 << 10)
    plan = rg.Session(g, device=dev).memory_plan(f, {X: fd[X].shape})
    budget = plan.host_bytes + (64 << 10)
    sess = rg.Session(g, device=dev, host_budget=budget)
    got = sess.run(f, fd)
    n_allocs = len(fake.pinned_allocs)
    assert max(fake.pinned_allocs) <= 64 << 10        # chunks, never a whole stack at once
    assert n_allocs >= plan.host_bytes // (64 << 10)
    assert fake.pinned_peak <= budget and dev.pinned_peak <= budget
    sess.run(f, fd)
    assert len(fake.pinned_allocs) == n_allocs        # the next run reuses the chunks
    close(got, rg.Session(g).run(f, fd))


def test_pinned_memory_beyond_host_budget_is_refused_naming_it():
    fake, dev = fake_gpu(chunk_bytes=4096)
    stack = dev.host_stack((100, 256), np.float32, host_budget=10_000)   # 1 KiB rows
    for t in range(8):
        stack[t][...] = t                             # two 4 KiB chunks: 8 KiB pinned
    with pytest.raises(rg.OutOfMemoryError, match="host_budget=10000"):
        stack[8]
    assert fake.pinned_peak <= 10_000
    dev.host_free(stack)
    assert dev.host_current == 0


def test_a_while_loop_of_unknown_length_offloads_within_the_host_budget():
    """swap_memory with a condition: rows pinned one at a time, still within host_budget;
    the condition is the one value the loop reads on the host each step."""
    g = rg.Graph()
    with g.as_default():
        x0 = rg.placeholder(rg.float32, [4, 8])
        W = rg.Variable(np.random.RandomState(0).randn(8, 8).astype(np.float32) * 0.3)
        _, x = rg.while_loop(lambda i, x: i < 30,
                             lambda i, x: (i + 1, rg.tanh(rg.matmul(x, W))),
                             [rg.constant(0), x0], swap_memory=True)
        grads = rg.gradients(rg.reduce_sum(x * x), [W, x0])
    fd = {x0: np.random.RandomState(1).randn(4, 8).astype(np.float32)}
    fake, dev = fake_gpu()
    start = fake.mark()
    got = rg.Session(g, device=dev, host_budget=60 * 128).run(grads, fd)
    close(got, rg.Session(g).run(grads, fd))
    assert fake.pinned_peak <= 60 * 128 and fake.count("memcpy") == 2 * 60
    assert sum(1 for e in fake.since(start) if e[:2] == ("host_read", "bool")) == 31
    with pytest.raises(rg.OutOfMemoryError, match="host_budget=2000"):
        rg.Session(g, device=fake_gpu()[1], host_budget=2000).run(grads, fd)


def test_the_byte_model_counts_what_the_fake_gpu_allocates():
    """The planner's prediction on the GPU profile (pool rounding, the reuse list) against
    the fake device's record of every buffer alive, under a tenth of the keep-all peak."""
    g, X, f = lstm_graph(batch=16, hidden=64)
    fd = feed(X, 1000)
    fake, dev = fake_gpu(chunk_bytes=1 << 16)
    keep_all = rg.Session(g, device=dev).memory_plan(f, {X: fd[X].shape}).keep_all_peak
    sess = rg.Session(g, device=dev, memory_budget=keep_all // 10, passes=STACK_PASSES_OFF)
    plan = sess.memory_plan(f, {X: fd[X].shape})
    assert plan.fits and "host" in {s.placement for s in plan.saved}
    got = sess.run(f, fd)            # the first run fills the device's reuse list
    fake.reset_peaks()
    sess.run(f, fd, report=True)
    assert abs(fake.device_peak - plan.predicted_peak) <= 0.02 * plan.predicted_peak
    assert abs(sess.last_run_report.peak_bytes - plan.predicted_peak) <= \
        0.02 * plan.predicted_peak
    assert sess.last_run_report.peak_bytes <= keep_all // 10
    close(got, rg.Session(g).run(f, fd))


@pytest.mark.parametrize("strategy, layers", [("recompute", 1), ("recompute", 2),
                                              ("offload", 2)])
def test_the_byte_model_with_replay_buffers_and_two_layers(strategy, layers):
    """Replay buffers (recompute) and two loops sharing the reuse list (two layers)."""
    g, X, f = lstm_graph(batch=16, hidden=64, layers=layers)
    fd = feed(X, 400)
    fake, dev = fake_gpu(chunk_bytes=1 << 16)
    keep_all = rg.Session(g, device=dev).memory_plan(f, {X: fd[X].shape}).keep_all_peak
    sess = rg.Session(g, device=dev, memory_budget=keep_all // 8, passes=STACK_PASSES_OFF,
                      memory_strategy=strategy)
    plan = sess.memory_plan(f, {X: fd[X].shape})
    want = "recompute" if strategy == "recompute" else "host"
    assert plan.fits and {s.placement for s in plan.saved} == {want}
    sess.run(f, fd)
    fake.reset_peaks()
    sess.run(f, fd, report=True)
    assert abs(fake.device_peak - plan.predicted_peak) <= 0.02 * plan.predicted_peak
    assert abs(sess.last_run_report.peak_bytes - plan.predicted_peak) <= \
        0.02 * plan.predicted_peak


def test_the_cublas_workspace_counts_towards_the_budget():
    g, X, f = lstm_graph(batch=4, hidden=16)
    shapes = {X: (4, 50, 16)}
    _, bare = fake_gpu()
    fake, dev = fake_gpu(workspace_bytes=None)        # cuBLAS's default for a 9.0 card
    assert dev.workspace_bytes == 32 << 20 and dev.current_bytes == 32 << 20
    a = rg.Session(g, device=bare).memory_plan(f, shapes).predicted_peak
    b = rg.Session(g, device=dev).memory_plan(f, shapes).predicted_peak
    assert b - a == 32 << 20
    assert CupyDevice(xp=FakeCupy("80")).workspace_bytes == 4 << 20


@pytest.mark.parametrize("kw", [{"ring_size": 0}, {"chunk_bytes": -1}, {"chunk_bytes": 1.5},
                                {"workspace_bytes": -5}, {"ring_size": True}])
def test_bad_device_arguments_are_refused_before_anything_is_made(kw):
    fake = FakeCupy()
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        CupyDevice(xp=fake, **kw)
    assert fake.events_made == 0 and fake.streams_made == 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # (rows never copied: any numbers)
def test_the_fake_catches_a_device_that_forgets_to_wait_for_its_copies():
    class Careless(CupyDevice):
        def wait(self, ticket):   # drops the ticket without ordering the compute stream
            if ticket is not None:
                ticket.keep = None
    g, X, f = lstm_graph(batch=4, hidden=16, swap_memory=True)
    fd = feed(X, 30)
    sess = rg.Session(g, device=Careless(xp=FakeCupy(), workspace_bytes=0))
    ref = rg.Session(g).run(f, fd)
    try:
        got = sess.run(f, fd)
    except AssertionError as exc:     # a queued copy found its buffer freed
        assert "freed" in str(exc)
    else:                             # or the backward loop read rows not copied yet
        assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(got, ref))


def test_gpu_check_without_a_gpu_says_so_and_exits_0():
    """scripts/gpu_check.sh in its no-GPU mode (forced, in case this machine has one)."""
    env = dict(os.environ, RNNGRAPH_GPU_CHECK_NO_GPU="1", PYTHON=sys.executable,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh")],
                         capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "no GPU" in text
    for row in ("LSTM", "GRU", "BasicRNN", "planner", "S1"):
        assert row in text
    assert text.count("skipped") >= 7
