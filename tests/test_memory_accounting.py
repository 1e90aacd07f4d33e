"""Liveness and byte accounting in the executor: buffers freed after their last use (inside loop
bodies too), views not double counted, counting only when asked for."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.program import CompileContext, Program
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import feed, lstm_graph


def _scan_graph(width=1000):
    """A loop whose body makes big per-step temporaries but carries a small state."""
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [None, 64, 8], name="xs")
        w = rg.constant(np.full((8, width), 0.01, np.float32))
        v = rg.constant(np.full((width, 8), 0.01, np.float32))

        def step(carry, x):
            (h,) = carry
            (x_t,) = x
            big = rg.tanh(rg.matmul(x_t + h, w))          # [64, width] per step, dies in the step
            return [rg.tanh(rg.matmul(big, v))], []

        (h,), _ = rg.lax_scan(step, [rg.zeros([64, 8])], [xs])
        y = rg.reduce_sum(h)
    return g, xs, y


def test_loop_body_temporaries_are_freed_every_step():
    g, xs, y = _scan_graph()
    sess = rg.Session(g, device=SimulatedDevice(), passes=False)
    sess.run(y, {xs: np.ones((50, 64, 8), np.float32)})
    peak = sess.last_run_report.peak_bytes
    per_step = 64 * 1000 * 4                                # one [64, 1000] float32 temporary
    assert per_step < peak < 4 * per_step                  # not 50 steps' worth
    assert sess.device.current_bytes == 0


def test_a_capacity_below_one_steps_temporaries_fails_inside_the_body():
    g, xs, y = _scan_graph()
    sess = rg.Session(g, device=SimulatedDevice(capacity=200_000), passes=False)
    with pytest.raises(rg.OutOfMemoryError, match="tanh|matmul"):
        sess.run(y, {xs: np.ones((5, 64, 8), np.float32)})
    sess.device.capacity = 10**6                            # accounting was reset: runs now
    sess.run(y, {xs: np.ones((5, 64, 8), np.float32)})
    assert sess.device.current_bytes == 0


def test_tracked_and_untracked_programs_compute_the_same():
    """The same values; to rounding only, since a tracked run keeps a loop's transposed weight
    a view where an untracked one lays it out contiguously (contiguous_weights: ops/shape.py's
    Contiguous), and OpenBLAS's SkylakeX kernels round the two layouts' products differently
    (its Haswell kernels agree bit for bit). Without that pass the bits are equal."""
    g, X, fetches = lstm_graph(batch=4, hidden=16)
    fd = feed(X, 30)
    a = rg.Session(g).run(fetches, fd)
    b = rg.Session(g).run(fetches, fd, report=True)
    c = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    for x, y, z in zip(a, b, c):
        scale = float(np.max(np.abs(x))) or 1.0
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-6 * scale)
        np.testing.assert_allclose(z, x, rtol=0, atol=1e-6 * scale)
    plain = {"contiguous_weights": False}
    a = rg.Session(g, passes=plain).run(fetches, fd)
    b = rg.Session(g, passes=plain).run(fetches, fd, report=True)
    c = rg.Session(g, passes=plain, device=SimulatedDevice()).run(fetches, fd)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_counting_is_decided_at_compile_time():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")
        y = x * 2.0
    dev = SimulatedDevice()
    plain = Program(g, [y], [x], CompileContext(dev))
    counted = Program(g, [y], [x], CompileContext(dev, tracked=True))
    assert counted.tracked and not plain.tracked
    out = counted.run([np.ones(3, np.float32)])
    assert dev.current_bytes == 12                          # the caller owns the output now
    dev.release(out[0])
    assert dev.current_bytes == 0
    plain.run([np.ones(3, np.float32)])
    assert dev.current_bytes == 0


def test_outputs_that_are_inputs_or_repeated_carry_a_reference_each():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")
        y = rg.transpose(x, [0])
    dev = SimulatedDevice()
    prog = Program(g, [x, y, y], [x], CompileContext(dev, tracked=True))
    arr = np.ones(3, np.float32)
    dev.retain(arr)
    outs = prog.run([arr])
    for o in outs:
        dev.release(o)
    assert dev.current_bytes == 12                          # only the caller's own reference
    dev.release(arr)
    assert dev.current_bytes == 0


def test_the_run_report_names_device_peak_and_transfers():
    g, X, fetches = lstm_graph(batch=4, hidden=16, swap_memory=True)
    sess = rg.Session(g, device=SimulatedDevice())
    sess.run(fetches, feed(X, 25))
    rep = sess.last_run_report
    text = str(rep)
    assert "measured peak" in text and "to host" in text and "predicted" in text
    assert rep.bytes_to_host == rep.bytes_to_device > 0
    assert rep.predicted_peak == rep.peak_bytes
