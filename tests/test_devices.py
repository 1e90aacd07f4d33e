"""Devices: the interface the executor uses, byte accounting by base buffer, capacity errors."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.devices import CPUDevice, Device, get_device
from rnngraph.runtime.simulated import SimulatedDevice


def test_get_device_names_and_instances():
    assert isinstance(get_device("cpu"), CPUDevice)
    assert isinstance(get_device(None), CPUDevice)
    sim = SimulatedDevice(capacity=100)
    assert get_device(sim) is sim
    assert isinstance(get_device("simulated"), SimulatedDevice)
    with pytest.raises(ValueError, match="unknown device"):
        get_device("tpu")


def test_gpu_without_cuda_is_a_clear_error_and_auto_falls_back_to_cpu():
    from rnngraph.backends.cupy.device import gpu_available
    if gpu_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="device='gpu' needs CuPy and a CUDA device") as e:
        rg.Session(rg.Graph(), device="gpu")
    assert "device='cpu'" in str(e.value) and "auto" in str(e.value)
    assert isinstance(rg.Session(rg.Graph(), device="auto").device, CPUDevice)


def test_views_are_counted_once_by_base_buffer():
    dev = SimulatedDevice()
    a = np.zeros((100, 10), np.float32)            # 4000 bytes
    dev.retain(a)
    for view in (a.T, a[3:7], a.reshape(1000), np.split(a, 2)[1]):
        dev.retain(view)
    assert dev.current_bytes == 4000
    for view in (a.T, a[3:7], a.reshape(1000), np.split(a, 2)[1]):
        dev.release(view)
    assert dev.current_bytes == 4000                # the array itself is still referenced
    dev.release(a)
    assert dev.current_bytes == 0 and dev.peak_bytes == 4000


def test_non_arrays_cost_nothing():
    dev = SimulatedDevice()
    dev.retain(np.float32(1.0))
    dev.retain(None)
    assert dev.current_bytes == 0


def test_capacity_error_names_the_tensor_its_size_and_the_bytes_in_use():
    dev = SimulatedDevice(capacity=1000)
    dev.retain(np.zeros(200, np.float32), "first")          # 800 bytes
    with pytest.raises(rg.OutOfMemoryError) as e:
        dev.retain(np.zeros(100, np.float32), "the tensor 'x/y'")
    msg = str(e.value)
    assert "the tensor 'x/y'" in msg and "400 bytes" in msg and "800 bytes" in msg
    assert "1000 bytes" in msg and "memory_budget" in msg
    assert isinstance(e.value, MemoryError)


def test_empty_buffers_are_counted_reused_by_size_and_freed():
    dev = SimulatedDevice()
    a = dev.empty((4, 8), np.float32, "scratch", reuse=True)
    assert a.shape == (4, 8) and a.dtype == np.float32 and dev.current_bytes == 128
    dev.free(a, reuse=True)
    assert dev.current_bytes == 0
    b = dev.empty((32,), np.float32, "again", reuse=True)   # same byte size: the same memory
    assert np.shares_memory(np.asarray(b).view(np.uint8), np.asarray(a).view(np.uint8))
    assert dev.current_bytes == 128
    dev.free(b, reuse=True)


def test_host_pool_and_transfer_counters():
    dev = SimulatedDevice()
    h = dev.host_empty((3, 5), np.float32)
    assert dev.host_current == 60
    src = np.arange(15, dtype=np.float32).reshape(3, 5)
    assert dev.copy_to_host(src, h) is None          # synchronous: nothing to wait for
    d = dev.empty((3, 5), np.float32)
    dev.copy_to_device(h, d)
    dev.wait(None)
    dev.synchronize()
    np.testing.assert_array_equal(d, src)
    assert dev.bytes_to_host == 60 and dev.bytes_to_device == 60
    dev.host_free(h)
    assert dev.host_current == 0 and dev.host_peak == 60


def test_host_capacity_is_enforced():
    dev = SimulatedDevice(host_capacity=100)
    with pytest.raises(rg.OutOfMemoryError, match="host"):
        dev.host_empty((200,), np.float32)


def test_every_device_offers_the_interface():
    for dev in (CPUDevice(), SimulatedDevice(capacity=10)):
        assert isinstance(dev, Device)
        for name in ("xp", "asarray", "to_host", "empty", "free", "retain", "release",
                     "host_empty", "host_free", "copy_to_host", "copy_to_device", "wait",
                     "synchronize", "current_bytes", "peak_bytes", "profile"):
            assert hasattr(dev, name), name


def test_session_on_the_simulated_device_reports_its_peak():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 256], name="x")
        y = rg.reduce_sum(rg.tanh(x) * 2.0)
    sess = rg.Session(g, device=SimulatedDevice(capacity=10_000_000), passes=False)
    out = sess.run(y, {x: np.ones((100, 256), np.float32)})
    assert out == pytest.approx(100 * 256 * 2 * np.tanh(1.0), rel=1e-5)
    rep = sess.last_run_report
    # the fed x, tanh(x) and 2*tanh(x) (100 KiB each) are alive together at most
    assert 3 * 102400 <= rep.peak_bytes <= 3 * 102400 + 64
    assert sess.device.current_bytes == 0          # everything released after the run
    assert "measured peak" in str(rep)


def test_report_on_the_cpu_device_only_when_asked():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 4], name="x")
        y = rg.reduce_sum(x * x)
    sess = rg.Session(g)
    sess.run(y, {x: np.ones((2, 4), np.float32)})
    assert sess.last_run_report is None
    sess.run(y, {x: np.ones((2, 4), np.float32)}, report=True)
    assert sess.last_run_report.peak_bytes >= 32
