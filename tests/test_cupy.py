"""The CuPy device: the same kernels as on the CPU, transfers on a side stream, pinned host
buffers. Every test needs a CUDA device (marked `gpu`; tests/conftest.py skips them without
one, with the reason)."""
import numpy as np
import pytest

import rnngraph as rg

from memory_graphs import feed, lstm_graph
from test_cuda_sources import count_kernels  # noqa: F401  (a fixture: the kernels made)

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
    base = gpu.current_bytes                     # the cuBLAS workspace, counted from the start
    assert base == gpu.workspace_bytes
    a = cupy.zeros((100, 10), cupy.float32)
    gpu.retain(a)
    gpu.retain(a.T)
    gpu.retain(a[2:5])
    assert gpu.current_bytes == base + 4096      # 4000 bytes, as CuPy's pool takes them
    for x in (a[2:5], a.T, a):
        gpu.release(x)
    assert gpu.current_bytes == base


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


def test_the_pool_peak_is_the_predicted_peak_under_a_budget():
    """What CuPy's pool really hands out (a tracking allocator) against the planner's
    prediction for the GPU less the cuBLAS workspace, which cuBLAS keeps outside the pool
    (pool rounding and the reuse list are in both), an LSTM under a tenth of its
    keep-everything peak."""
    import cupy
    from rnngraph.backends.cupy.tracking import PoolTracker
    from rnngraph.backends.cupy.device import CupyDevice
    from memory_graphs import STACK_PASSES_OFF
    g, X, fetches = lstm_graph(batch=32, hidden=128, proj=16)
    fd = feed(X, 500)
    dev = CupyDevice()
    keep_all = rg.Session(g, device=dev).memory_plan(fetches, {X: fd[X].shape}).keep_all_peak
    sess = rg.Session(g, device=dev, memory_budget=keep_all // 10, passes=STACK_PASSES_OFF)
    plan = sess.memory_plan(fetches, {X: fd[X].shape})
    assert plan.fits and "host" in {s.placement for s in plan.saved}
    with PoolTracker() as pool:
        got = sess.run(fetches, fd)            # compiles, fills the reuse list
        cupy.cuda.Device().synchronize()
        pool.reset_peak()
        sess.run(fetches, fd, report=True)
        cupy.cuda.Device().synchronize()
    pool_part = plan.predicted_peak - dev.workspace_bytes    # the prediction's pool bytes
    assert abs(pool.peak - pool_part) <= 0.02 * pool_part
    assert sess.last_run_report.peak_bytes <= keep_all // 10
    ref = rg.Session(g).run(fetches, fd)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_offload_never_waits_on_the_host_inside_the_loops():
    """The real device under a spy: the loops ask the host to wait for no copy."""
    from rnngraph.backends.cupy.device import CupyDevice
    waits = []

    class Spy(CupyDevice):
        def wait_host(self, ticket):
            waits.append(ticket)
            super().wait_host(ticket)
    g, X, f = lstm_graph(batch=16, hidden=64, swap_memory=True)
    dev = Spy()
    rg.Session(g, device=dev).run(f, feed(X, 300))
    assert waits == []


# --- the generated CUDA kernels (backends/cupy/cuda_codegen.py) against the NumPy backend --------
GEN_CELLS = ["lstm", "lstm_peephole_proj_clip", "gru", "basic"]


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", GEN_CELLS)
def test_generated_kernels_give_the_numpy_results_on_the_gpu(kind, lengths, count_kernels):
    from rnngraph.backends.cupy import kernel_sources
    from rnngraph.backends.cupy.cuda_codegen import CudaKernel
    from test_cuda_sources import rnn_feed, rnn_graph
    g, fetches, feed = rnn_graph(kind, lengths, "float32", hidden=32)
    fd = rnn_feed(feed, "float32", batch=8, steps=20)
    if lengths:
        fd[[v for v in feed if not v.name.startswith("X")][0]] = \
            np.array([20, 0, 7, 13, 20, 1, 19, 5], np.int32)
    want = rg.Session(g).run(fetches, fd)
    got = rg.Session(g, device="gpu").run(fetches, fd)
    assert count_kernels and all(isinstance(k, CudaKernel) for k in count_kernels)
    assert {k.name for k in count_kernels} <= set(kernel_sources(fetches, feed))
    for a, b in zip(want, got):   # the target: 1e-5, relative to each tensor's scale
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(a).max()))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_c_expression_on_the_gpu(dtype):
    import cupy
    from rnngraph.backends.cupy.fused import cupy_kernel
    from rnngraph.backends.numpy.fused import numpy_kernel
    from rnngraph.ops.scalar import SCALAR
    from test_cuda_sources import _fused, _node
    from rnngraph.io.registry import op_registry
    from rnngraph.ir.types import TensorType
    from rnngraph.ops import elementwise as ew
    values = np.array([-2.5, -0.75, 0.0, 0.5, 1.25, 3.0, np.nan], dtype)
    for name in sorted(SCALAR):
        cls = op_registry()[name]
        arity = {"where": 3}.get(name, 2 if issubclass(cls, ew.Binary) else 1)
        ins = [g.reshape(-1) for g in np.meshgrid(*[values] * min(arity, 2), indexing="ij")]
        if name in ("logical_and", "logical_or", "logical_not"):
            ins = [a > 0 for a in ins]
        if name == "where":
            ins = [ins[0] > 0, ins[0], ins[1]]
        types_ = [TensorType((None,), a.dtype) for a in ins]
        op = _fused([(cls(), tuple(range(arity)))], types_, [arity])
        with np.errstate(all="ignore"):
            want = numpy_kernel(op, _node(types_), np)(*ins)[0]
        got = cupy_kernel(op, _node(types_), cupy)(*[cupy.asarray(a) for a in ins])[0]
        tol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(cupy.asnumpy(got).astype(np.float64),
                                   want.astype(np.float64), rtol=tol, atol=tol,
                                   equal_nan=True, err_msg=name)


def test_unknown_dims_that_differ_raise_on_the_gpu():
    import cupy
    from rnngraph.backends.cupy.fused import cupy_kernel
    from rnngraph.errors import InvalidArgumentError
    from rnngraph.ir.types import TensorType
    from rnngraph.ops import elementwise as ew
    from test_cuda_sources import _fused, _node
    t = TensorType((None, 4), "float32")
    op = _fused([(ew.Add(), (0, 1))], [t, t], [2])
    run = cupy_kernel(op, _node([t, t]), cupy)
    with pytest.raises(InvalidArgumentError, match="unknown at build time"):
        run(cupy.ones((3, 4), cupy.float32), cupy.ones((1, 4), cupy.float32))
    x = cupy.arange(24, dtype=cupy.float32).reshape(6, 4)[::2]   # a strided view
    np.testing.assert_array_equal(cupy.asnumpy(run(x, x)[0]), 2 * cupy.asnumpy(x))


def test_step_rows_on_the_gpu():
    import cupy
    from rnngraph.ops.steps import StepRows
    packed = cupy.arange(15, dtype=cupy.float32).reshape(5, 3)
    rows = StepRows(packed, [3, 2], (2, 3, 3))
    full = rows.materialize()
    assert isinstance(full, cupy.ndarray)
    want = np.zeros((2, 3, 3), np.float32)
    want[0], want[1, :2] = np.arange(9).reshape(3, 3), np.arange(9, 15).reshape(2, 3)
    np.testing.assert_array_equal(cupy.asnumpy(full), want)
    np.testing.assert_array_equal(rows.get(), want)
    assert bool(cupy.isfinite(rows).all())          # check_numerics' call on a packed stack
    with pytest.raises(TypeError, match=r"\.get\(\)"):
        np.asarray(rows)
    from rnngraph.backends.cupy.device import CupyDevice
    np.testing.assert_array_equal(CupyDevice().to_host(rows), want)   # a fetch
