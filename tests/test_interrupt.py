"""Ctrl-C and errors during a run: KeyboardInterrupt arrives as itself, and a run updates the
variables all at once or not at all.

Ctrl-C is tested for real: a child process trains an LSTM in a loop (with the numba backend's
compiled kernels, and with NumPy's), the test sends it SIGINT after a random delay, and the child reports
the type of what arrived and whether its variables equal those before the interrupted run or
those after a complete run (computed by a second session from the same values).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.ops.base import Op, apply

_CHILD = textwrap.dedent("""
    import signal, sys
    # (a shell that starts a job in the background makes it ignore SIGINT: undo that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    import rnngraph as rg

    accelerate, T = sys.argv[1] == "1", int(sys.argv[2])
    fraction = int(sys.argv[3])   # a memory budget of this fraction of the saved tensors (0: none)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, 8])
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(32), X, dtype=rg.float32)
        train = rg.train.AdamOptimizer(0.01).minimize(rg.reduce_mean(rg.square(out)))
        variables = rg.global_variables()
    x = {X: np.random.default_rng(0).standard_normal((8, T, 8)).astype(np.float32)}
    budget = None
    if fraction:
        plan = rg.Session(g, device=rg.SimulatedDevice()).memory_plan(train, x)
        budget = sum(s.total_bytes for s in plan.saved) // fraction
    sess = rg.Session(g, accelerate=accelerate, memory_budget=budget)
    ref = rg.Session(g, accelerate=accelerate, memory_budget=budget)   # "after a complete run"

    def values(s):
        return [s.read_variable(v) for v in variables]

    def same(a, b):
        return all(np.array_equal(p, q) for p, q in zip(a, b))

    def after(before):
        for v, a in zip(variables, before):
            ref.load_variable(v, a)
        ref.run(train, x)
        return values(ref)

    for _ in range(12):   # past the runs after which programs and loops compile
        for s in (sess, ref):
            s.run(train, x if budget else {X: x[X][:, :5]})   # (a plan per length)
    before = values(sess)
    sess.run(train, x)
    if not same(values(sess), after(before)):   # the reference must be exact
        print("REFERENCE DIFFERS", flush=True)
    while True:
        before = values(sess)
        print("READY", flush=True)
        try:
            while True:
                sess.run(train, x)
                before = values(sess)   # (interrupted here: the variables are "after" it)
        except BaseException as exc:
            got, via = type(exc).__name__, type(exc.__context__).__name__
        now = values(sess)
        state = "before" if same(now, before) else "after" if same(now, after(before)) else \\
            "neither"
        before = values(sess)   # and the session trains on correctly
        sess.run(train, x)
        then = "next-ok" if same(values(sess), after(before)) else "next-wrong"
        print("GOT", got, state, then, via, flush=True)   # (via: what it was wrapped in)
""")


def _interrupt_child(accelerate: bool, delays, steps: int = 1000, fraction: int = 0) -> list:
    """Start the child, SIGINT it once per delay (seconds into its training loop); the child's
    report per interrupt: [exception type name, 'before' | 'after' | 'neither', whether
    the next run gave the right variables ('next-ok' | 'next-wrong'), type of the exception's
    __context__ (what it was wrapped in on the way, 'NoneType' if nothing)]."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, "1" if accelerate else "0",
                              str(steps), str(fraction)], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(120, child.kill)   # bounded, whatever the child does
    timer.start()
    seen: list = []

    def next_line(prefix):   # (skipping warnings and the like)
        for line in child.stdout:
            seen.append(line)
            if line.startswith(prefix):
                return line
            if line.startswith(("READY", "GOT", "REFERENCE")):
                break
        raise AssertionError(f"the child did not say {prefix}: {''.join(seen)[-3000:]}")
    reports = []
    try:
        for delay in delays:
            next_line("READY")
            time.sleep(delay)
            child.send_signal(signal.SIGINT)
            reports.append(next_line("GOT").split()[1:])
    finally:
        timer.cancel()
        child.kill()
        child.communicate()
    return reports


def _assert_whole(delays, reports) -> None:
    """Every SIGINT arrived as KeyboardInterrupt, left the variables as before or after the
    step it landed in, and the next run was right."""
    assert len(reports) == len(delays)
    for delay, (got, state, then, _) in zip(delays, reports):
        assert got == "KeyboardInterrupt", f"SIGINT after {delay:.3f} s arrived as {got}"
        assert state in ("before", "after"), \
            f"SIGINT after {delay:.3f} s left the variables half updated"
        assert then == "next-ok", f"after a SIGINT at {delay:.3f} s the next run went wrong"


@pytest.mark.parametrize("accelerate", [True, False])
def test_ctrl_c_during_training_is_a_keyboard_interrupt_and_variables_are_whole(accelerate):
    rng = random.Random()
    delays = [rng.uniform(0.02, 0.6) for _ in range(3)]
    # (long sequences keep the compiled kernels busy; NumPy's are interruptible anywhere)
    reports = _interrupt_child(accelerate, delays, steps=1000 if accelerate else 300)
    _assert_whole(delays, reports)


def test_ctrl_c_during_budgeted_training_is_a_keyboard_interrupt_and_variables_are_whole():
    """A memory budget of a tenth: the loops run in chunks through the planned driver
    (compiled where numba is there), their saved tensors offloaded."""
    rng = random.Random()
    delays = [rng.uniform(0.02, 0.4) for _ in range(3)]
    reports = _interrupt_child(True, delays, steps=400, fraction=10)
    _assert_whole(delays, reports)


# --- in process -----------------------------------------------------------------------------------
def _two_assigns():
    """v1 += x, then v2 = check_numerics((v1 + x) * y): a NaN in y fails the run after v1's
    assign has run (the second value is computed from the first assign's output)."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")
        y = rg.placeholder(rg.float32, [3], name="y")
        v1 = rg.Variable(np.arange(3, dtype=np.float32), name="v1")
        v2 = rg.Variable(np.full(3, 7, np.float32), name="v2")
        a1 = rg.assign(v1, v1 + x)
        a2 = rg.assign(v2, rg.check_numerics(a1 * y, "second value"))
    return g, x, y, (v1, v2), [a1, a2]


def test_a_run_that_fails_midway_leaves_every_variable_untouched():
    g, x, y, variables, fetches = _two_assigns()
    sess = rg.Session(g)
    ok = {x: np.ones(3, np.float32), y: np.full(3, 2, np.float32)}
    sess.run(fetches, ok)
    before = [sess.read_variable(v).copy() for v in variables]
    with pytest.raises(rg.ExecutionError, match="second value"):
        sess.run(fetches, {x: np.ones(3, np.float32), y: np.array([1, np.nan, 1], np.float32)})
    for v, b in zip(variables, before):
        np.testing.assert_array_equal(sess.read_variable(v), b)
    # and the next successful run starts from those values
    sess.run(fetches, ok)
    np.testing.assert_array_equal(sess.read_variable(variables[0]), before[0] + 1)
    np.testing.assert_array_equal(sess.read_variable(variables[1]), (before[0] + 1) * 2)


def test_a_successful_run_updates_every_variable():
    g, x, y, variables, fetches = _two_assigns()
    sess = rg.Session(g)
    out = sess.run(fetches, {x: np.ones(3, np.float32), y: np.full(3, 3, np.float32)})
    np.testing.assert_array_equal(sess.read_variable(variables[0]), [1, 2, 3])
    np.testing.assert_array_equal(sess.read_variable(variables[1]), [3, 6, 9])
    np.testing.assert_array_equal(out[1], [3, 6, 9])


def test_init_variables_in_a_failing_run_changes_nothing():
    g, x, y, variables, fetches = _two_assigns()
    with g.as_default():
        init = rg.global_variables_initializer()
    sess = rg.Session(g)
    sess.run(fetches, {x: np.ones(3, np.float32), y: np.ones(3, np.float32)})
    before = [sess.read_variable(v).copy() for v in variables]
    with pytest.raises(rg.ExecutionError):
        sess.run([init] + fetches, {x: np.ones(3, np.float32), y: np.full(3, np.inf, np.float32)})
    for v, b in zip(variables, before):
        np.testing.assert_array_equal(sess.read_variable(v), b)
    sess.run(init)
    np.testing.assert_array_equal(sess.read_variable(variables[0]), [0, 1, 2])
    np.testing.assert_array_equal(sess.read_variable(variables[1]), [7, 7, 7])


def test_a_transaction_is_seen_by_its_own_thread_only_until_it_commits():
    g, x, y, (v1, v2), fetches = _two_assigns()
    sess = rg.Session(g)
    store = sess.variables
    seen = {}

    def other_thread():
        seen["v1"] = sess.read_variable(v1)
    with store.transaction():
        store.write("v1", np.full(3, 5, np.float32))
        np.testing.assert_array_equal(store.read("v1"), [5, 5, 5])   # the run's own write
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        np.testing.assert_array_equal(seen["v1"], [0, 1, 2])   # not yet committed
    np.testing.assert_array_equal(sess.read_variable(v1), [5, 5, 5])
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.write("v1", np.full(3, 9, np.float32))
            store.initialize_all()
            raise KeyboardInterrupt
    np.testing.assert_array_equal(sess.read_variable(v1), [5, 5, 5])   # dropped


# --- an interrupt raised inside a kernel (a user-defined op) ----------------------------------
class _Raising(Op):
    """A user op: x unchanged, or, where x[0] < 0, whatever `fail()` raises."""
    name = "raising"

    def __init__(self, fail):
        self.fail = fail

    def infer(self, x):
        return x

    def compute(self, xp, x):
        if x[0] < 0:
            self.fail()
        return x


def _interrupt():
    raise KeyboardInterrupt


def _interrupt_seen_by_compiled_code():
    """What CPython raises when Ctrl-C lands while a compiled (numba) function runs."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        raise SystemError("CPUDispatcher(<function loop>) returned a result with an exception "
                          "set") from exc


def _bad_value():
    raise ValueError("negative input")


def _raising_model(fail, in_loop: bool):
    """v1 = x; v2 = raising(v1 + 1) (inside a while_loop's body when `in_loop`)."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3], name="x")
        v1 = rg.Variable(np.zeros(3, np.float32), name="v1")
        v2 = rg.Variable(np.zeros(3, np.float32), name="v2")
        a1 = rg.assign(v1, x)
        if in_loop:
            _, y = rg.while_loop(lambda i, y: i < 2,
                                 lambda i, y: (i + 1, apply(_Raising(fail), [y]) + 1.0),
                                 [rg.constant(0), a1])
        else:
            y = apply(_Raising(fail), [a1 + 1.0])
        a2 = rg.assign(v2, y)
    return g, x, (v1, v2), [a1, a2]


@pytest.mark.parametrize("in_loop", [False, True], ids=["top", "in_loop"])
@pytest.mark.parametrize("fail,expected", [
    (_interrupt, KeyboardInterrupt), (_interrupt_seen_by_compiled_code, KeyboardInterrupt),
    (_bad_value, rg.ExecutionError)], ids=["interrupt", "as_system_error", "error"])
def test_an_error_inside_a_kernel_leaves_the_variables_and_an_interrupt_is_not_wrapped(
        fail, expected, in_loop):
    g, x, (v1, v2), fetches = _raising_model(fail, in_loop)
    sess = rg.Session(g)
    sess.run(fetches, {x: np.ones(3, np.float32)})
    v1_before, v2_before = sess.read_variable(v1).copy(), sess.read_variable(v2).copy()
    assert v2_before[0] > 0
    with pytest.raises(BaseException) as info:
        sess.run(fetches, {x: np.full(3, -5, np.float32)})
    assert info.type is expected   # exactly: a KeyboardInterrupt, never a wrapped one
    if expected is rg.ExecutionError:
        assert "raising" in str(info.value) and "negative input" in str(info.value)
    else:
        assert not isinstance(info.value, Exception)
    np.testing.assert_array_equal(sess.read_variable(v1), v1_before)
    np.testing.assert_array_equal(sess.read_variable(v2), v2_before)


# --- an interrupted offloaded run gives its host buffers back at once ---------------------------
@pytest.mark.parametrize("fail", [_interrupt, _interrupt_seen_by_compiled_code, _bad_value],
                         ids=["interrupt", "as_system_error", "error"])
def test_an_interrupted_offloaded_run_leaves_no_host_buffers_behind(fail, monkeypatch):
    """A run that offloads values (spill_values) and stops half-way: every host buffer is given
    back when the exception is dropped, without the garbage collector (a reference cycle
    through the run's frames used to keep them until it ran)."""
    import gc

    from rnngraph.runtime import transfer
    from rnngraph.runtime.simulated import SimulatedDevice
    T, B, H, I = 12, 8, 16, 4
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        outs, _ = rg.nn.static_rnn(rg.nn.LSTMCell(H), rg.unstack(X, axis=1), dtype=rg.float32)
        loss = rg.reduce_sum(rg.stack(outs) ** 2)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(0).randn(B, T, I).astype(np.float32)}
    full = rg.Session(g, device=SimulatedDevice()).memory_plan(fetches, {X: (B, T, I)})
    budget = int(full.predicted_peak * 0.45)
    dev = SimulatedDevice(capacity=budget)
    sess = rg.Session(g, device=dev, memory_budget=budget, memory_strategy="offload")
    assert sess.memory_plan(fetches, {X: (B, T, I)}).spilled, "the plan offloads nothing"
    expected = sess.run(fetches, fd)
    copied = []
    to_device = transfer.HostValue.to_device

    def failing(self, *args, **kwargs):
        copied.append(self.name)
        if len(copied) == 5:   # half-way through the backward pass
            fail()
        return to_device(self, *args, **kwargs)

    monkeypatch.setattr(transfer.HostValue, "to_device", failing)
    made, back = [], []   # (the host buffers handed out and given back during the run)
    host_empty, host_free = dev.host_empty, dev.host_free
    monkeypatch.setattr(dev, "host_empty", lambda *a: made.append(1) or host_empty(*a))
    monkeypatch.setattr(dev, "host_free", lambda a: back.append(1) or host_free(a))
    gc.disable()
    try:
        raised = None
        try:
            sess.run(fetches, fd)
        except BaseException as exc:   # noqa: BLE001  (the three kinds; checked below)
            raised = type(exc)
            assert len(back) < len(made)   # the run's host buffers, held by the traceback
        assert raised is (rg.ExecutionError if fail is _bad_value else KeyboardInterrupt)
        assert made and len(back) == len(made)
        assert dev.host_current == 0 and dev.current_bytes == 0
    finally:
        gc.enable()
    monkeypatch.setattr(dev, "host_empty", host_empty)
    monkeypatch.setattr(dev, "host_free", host_free)
    monkeypatch.setattr(transfer.HostValue, "to_device", to_device)
    for got, want in zip(sess.run(fetches, fd), expected):
        np.testing.assert_array_equal(got, want)
