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
    assert np.array_equal(got[-1], want[-1])


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
