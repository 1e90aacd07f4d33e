"""The CuPy device: the same kernels as on the CPU, transfers on a side stream, pinned host
buffers. Every test needs a CUDA device (marked `gpu`; tests/conftest.py skips them without
one, with the reason)."""
import numpy as np
import pytest

import rnngraph as rg

from memory_graphs import feed, lstm_graph

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu():
    from rnngraph.backends.cupy.device import CupyDevice
    return CupyDevice()


def test_auto_picks_the_gpu():
    from rnngraph.backends.cupy.device import CupyDevice
    assert isinstance(rg.Session(rg.Graph(), device="auto").device, CupyDevice)


def test_executor_gives_the_cpu_results(gpu):
    g, X, fetches = lstm_graph(batch=8, hidden=32)
    fd = feed(X, 40)
    cpu = rg.Session(g).run(fetches, fd)
    dev = rg.Session(g, device=gpu).run(fetches, fd, report=True)
    for a, b in zip(cpu, dev):
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_byte_accounting_counts_cupy_views_once(gpu):
    import cupy
    a = cupy.zeros((100, 10), cupy.float32)
    gpu.retain(a)
    gpu.retain(a.T)
    gpu.retain(a[2:5])
    assert gpu.current_bytes == 4000
    for x in (a[2:5], a.T, a):
        gpu.release(x)
    assert gpu.current_bytes == 0


def test_copies_run_on_a_side_stream_into_pinned_memory(gpu):
    import cupy
    src = cupy.arange(1000, dtype=cupy.float32)
    host = gpu.host_empty((1000,), np.float32)
    ticket = gpu.copy_to_host(src, host)
    assert ticket is not None                    # asynchronous: a ticket to wait on
    gpu.wait_host(ticket)
    np.testing.assert_array_equal(host, np.arange(1000, dtype=np.float32))
    back = gpu.empty((1000,), np.float32)
    gpu.wait(gpu.copy_to_device(host, back))
    gpu.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(back), host)
    assert gpu.bytes_to_host == gpu.bytes_to_device == 4000
    gpu.host_free(host)


def test_offload_and_prefetch_give_the_same_gradients(gpu):
    g0, X0, f0 = lstm_graph(batch=16, hidden=64)
    g1, X1, f1 = lstm_graph(batch=16, hidden=64, swap_memory=True)
    sess = rg.Session(g1, device=gpu)
    plan = sess.memory_plan(f1, {X1: (16, 100, 16)})
    assert {s.placement for s in plan.saved} == {"host"}
    assert plan.loops[0].prefetch_depth >= 2     # copies overlap compute: prefetch ahead
    got = sess.run(f1, feed(X1, 100), report=True)
    passes = {k: False for k in plan.passes_off} or True
    ref = rg.Session(g0, device=gpu, passes=passes).run(f0, feed(X0, 100))
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    saved = sum(s.total_bytes for s in plan.saved)
    assert sess.last_run_report.bytes_to_host == saved == sess.last_run_report.bytes_to_device


def test_budget_planning_on_the_gpu(gpu):
    g, X, fetches = lstm_graph(batch=16, hidden=64, proj=16)
    fd = feed(X, 200)
    free = rg.Session(g, device=gpu)
    plan = free.memory_plan(fetches, {X: fd[X].shape})
    budget = plan.keep_all_peak // 4
    sess = rg.Session(g, device=gpu, memory_budget=budget)
    plan = sess.memory_plan(fetches, {X: fd[X].shape})
    got = sess.run(fetches, fd)
    assert plan.fits and sess.last_run_report.peak_bytes <= budget
    ref = free.run(fetches, fd)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
