"""An LSTM whose saved per-step tensors need ~10x the device's capacity C: without a plan it
runs out of memory; with memory_budget=C it trains, with the unconstrained gradients, and the
measured device peak stays within C (issue 4's acceptance test)."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from memory_graphs import STACK_PASSES_OFF, feed, lstm_graph, residual_outputs

T = 1000


@pytest.fixture(scope="module")
def setup():
    g, X, fetches = lstm_graph(batch=32, hidden=128, proj=16)
    fd = feed(X, T)
    # the unconstrained runs: the default passes, and the lean passes a tight plan falls back to
    ref_sess = rg.Session(g, device=SimulatedDevice())
    ref_default = ref_sess.run(fetches, fd)
    lean_sess = rg.Session(g, device=SimulatedDevice(), passes=STACK_PASSES_OFF)
    ref_lean = lean_sess.run(fetches, fd)
    plan = lean_sess.memory_plan(fetches, {X: fd[X].shape})
    residual_bytes = sum(s.total_bytes for s in plan.saved)
    return g, X, fetches, fd, ref_default, ref_lean, residual_bytes


def test_the_saved_tensors_need_ten_times_the_capacity(setup):
    *_, residual_bytes = setup
    g = setup[0]
    assert len(residual_outputs(g)) >= 7
    assert residual_bytes > 100 * 2**20                  # > 100 MiB saved for the backward pass
    C = residual_bytes // 10
    assert 9.9 < residual_bytes / C < 10.1


def test_without_a_plan_the_run_fails_with_a_clear_out_of_memory_error(setup):
    g, X, fetches, fd, *_, residual_bytes = setup
    C = residual_bytes // 10
    for passes in (True, STACK_PASSES_OFF):
        sess = rg.Session(g, device=SimulatedDevice(capacity=C), passes=passes)
        with pytest.raises(rg.OutOfMemoryError) as e:
            sess.run(fetches, fd)
        msg = str(e.value)
        assert "cannot allocate" in msg and "bytes) for" in msg
        assert "built at" in msg                          # names the node and the user's line
        assert f"capacity of {C} bytes" in msg and "are in use" in msg
        assert sess.device.current_bytes == 0            # accounting reset after the failure


@pytest.mark.parametrize("strategy", ["offload", "recompute", "auto"])
def test_with_a_budget_it_trains_within_the_budget_with_the_same_gradients(setup, strategy):
    g, X, fetches, fd, ref_default, ref_lean, residual_bytes = setup
    C = residual_bytes // 10
    sess = rg.Session(g, device=SimulatedDevice(capacity=C), memory_budget=C,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, {X: fd[X].shape})
    assert plan.fits and plan.predicted_peak <= C
    got = sess.run(fetches, fd)
    report = sess.last_run_report
    assert report.peak_bytes <= C
    assert report.peak_bytes < plan.keep_all_peak / 5
    placements = {s.placement for s in plan.saved}
    if strategy == "offload":
        assert "recompute" not in placements and "host" in placements
        assert report.bytes_to_host > 0.9 * residual_bytes
    elif strategy == "recompute":
        assert "host" not in placements and "recompute" in placements
        assert report.bytes_to_host == 0 and report.bytes_to_device == 0
    # the plan runs the stack-building passes in chunks (or turned them off): compare with
    # the same program, unplanned
    assert plan.chunk_steps or set(plan.passes_off) == {k for k, v in STACK_PASSES_OFF.items()
                                                        if not v}
    same = rg.Session(g, device=SimulatedDevice(), passes=plan.passes).run(fetches, fd) \
        if plan.chunk_steps else ref_lean
    for a, b in zip(got, same):
        if strategy == "recompute":
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(a, b)          # offload copies bits: exact
    for a, b in zip(got, ref_default):                    # other passes, other rounding
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_the_plan_is_printed_before_running(setup):
    g, X, fetches, fd, *_, residual_bytes = setup
    C = residual_bytes // 10
    sess = rg.Session(g, device=SimulatedDevice(capacity=C), memory_budget=C)
    plan = sess.memory_plan(fetches, {X: (32, T, 16)})
    text = str(plan)
    assert "memory plan on simulated" in text and "(fits)" in text
    assert "saved tensor" in text and "bytes/step" in text and "placement" in text
    assert "predicted peak" in text and (
        f"sequence passes in chunks of {plan.chunk_steps} steps" in text if plan.chunk_steps
        else "compiler passes turned off" in text)
    for s in plan.saved:   # the user's op, and the compiled name where the passes renamed it
        assert s.user_name in text and (s.name in text or s.name == f"{s.origin.name}:0")
    # the user's own residual Values can ask the plan (the renderer colours them with it)
    for v in residual_outputs(g):
        assert plan.placement_of(v) in ("device", "host", "recompute")
        assert plan.bytes_of(v) == T * plan.aliases[v].bytes_per_step
    assert plan.placement_of(fetches[0]) is None and plan.bytes_of(fetches[0]) is None
