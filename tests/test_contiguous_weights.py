"""contiguous_weights (passes/contiguous_weights.py): a transposed weight that a loop's products
read every step (the backward loop's W^T) reaches the loop through one `contiguous` node, laid
out once per run; results equal the graph without the pass, and memory plans see no copy."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(6),
    "lstm": lambda: rg.nn.LSTMCell(6),
    "lstm_proj": lambda: rg.nn.LSTMCell(6, use_peepholes=True, num_proj=3),
    "gru": lambda: rg.nn.GRUCell(5),
    "multi": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(5), rg.nn.GRUCell(4)]),
}
B, T, I = 3, 5, 4


def _build(cell_name, dtype=rg.float64, lengths=None):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [B, T, I])
        seq = None if lengths is None else rg.constant(np.array(lengths, np.int32))
        out, _ = rg.nn.dynamic_rnn(CELLS[cell_name](), X, dtype=dtype, sequence_length=seq)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
    x = np.random.default_rng(3).normal(size=(B, T, I)).astype(np.dtype(dtype))
    return g, X, out, grads, x


def _program_graph(sess):
    """The optimised graph of the session's program that runs loops."""
    (graph,) = [p.graph for p in sess.programs() if any(n.op.name == "loop"
                                                         for n in p.graph.nodes)]
    return graph


@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("lengths", [None, [5, 0, 2]], ids=["full", "lengths"])
def test_the_backward_loop_reads_its_transposed_weights_laid_out(cell_name, lengths):
    g, X, out, grads, x = _build(cell_name, lengths=lengths)
    on = rg.Session(g, seed=7)
    off = rg.Session(g, seed=7, passes={"contiguous_weights": False})
    got, ref = on.run([out, grads], {X: x}), off.run([out, grads], {X: x})
    for a, b in zip([got[0]] + got[1], [ref[0]] + ref[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    graph = _program_graph(on)
    copies = [n for n in graph.nodes if n.op.name == "contiguous"
              and n.inputs[0].node.op.name == "matrix_transpose"]
    # one recurrent weight per layer: its transpose feeds the backward loop, once laid out
    layers = 2 if cell_name == "multi" else 1
    assert on.pass_stats["contiguous_weights"] == len(copies) >= layers
    backward = [n for n in graph.nodes if n.op.name == "loop" and n.op.reverse]
    assert len(backward) == 1
    for copy in copies:
        assert backward[0] in [r for r in graph.nodes if copy.outputs[0] in r.inputs]
        assert copy.is_gradient and "contiguous" in str(graph)
    # the transposes themselves reach no loop any more
    assert not any(v.node.op.name == "matrix_transpose" for v in backward[0].inputs)
    assert off.pass_stats.get("contiguous_weights") is None


def test_a_users_transposed_weight_in_a_while_loop_is_laid_out_once():
    """h @ transpose(W) in a user's loop body: licm hoists the transpose, this pass lays it out."""
    g = rg.Graph()
    with g.as_default():
        h0 = rg.placeholder(rg.float64, [4, 8])
        W = rg.Variable(np.random.default_rng(1).normal(size=(8, 8)) / 3.0)
        _, h = rg.while_loop(lambda i, h: i < 6,
                             lambda i, h: (i + 1, rg.tanh(rg.matmul(h, rg.transpose(W)))),
                             [rg.constant(0), h0])
        (dh0,) = rg.gradients(rg.reduce_sum(h), [h0])
    h0_v = np.random.default_rng(2).normal(size=(4, 8))
    on = rg.Session(g, seed=1)
    w = on.run(W)
    got = on.run([h, dh0], {h0: h0_v})   # (pass_stats: this program's)
    expect = h0_v
    for _ in range(6):
        expect = np.tanh(expect @ w.T)
    np.testing.assert_allclose(got[0], expect, rtol=1e-12)
    off = rg.Session(g, seed=1, passes={"contiguous_weights": False})
    np.testing.assert_allclose(got[1], off.run(dh0, {h0: h0_v}), rtol=1e-12, atol=1e-14)
    graph = _program_graph(on)
    laid_out = [n for n in graph.nodes if n.op.name == "contiguous"]
    assert on.pass_stats["contiguous_weights"] == len(laid_out) >= 1
    assert {n.inputs[0].node.op.name for n in laid_out} <= {"transpose", "matrix_transpose"}


def test_a_weight_that_is_not_a_transposed_view_is_left_alone():
    """Forward loops read W itself (already contiguous): nothing to lay out."""
    g, X, out, grads, x = _build("basic")
    sess = rg.Session(g, seed=7)
    sess.run(out, {X: x})
    assert sess.pass_stats["contiguous_weights"] == 0


def test_the_copy_is_made_in_plain_runs_and_skipped_in_counted_runs():
    """The kernel copies a transposed view in a plain run, and passes it through where the
    bytes are counted (a tracked program: what memory plans run), so the model sees a view."""
    g, X, out, grads, x = _build("gru", rg.float32)
    sess = rg.Session(g, seed=7)
    view = np.random.default_rng(0).normal(size=(5, 15)).astype(np.float32).T
    for tracked in (False, True):
        prog = sess.compile(grads, [X], tracked=tracked)
        kernels = [s.kernel for s in prog.steps if s.node.op.name == "contiguous"
                   and s.node.inputs[0].node.op.name == "matrix_transpose"]
        assert kernels
        got = kernels[0](view)
        np.testing.assert_array_equal(got, view)
        if tracked:
            assert got is view
        else:
            assert got is not view and got.flags.c_contiguous


def test_a_budgeted_run_predicts_its_peak_with_the_pass():
    """Under a memory plan the laid-out weight is the view the plan counts: the measured peak
    is the predicted one, and the gradients are those of the run without a budget."""
    g, X, out, grads, x = _build("lstm", rg.float32)
    want = rg.Session(g, seed=7).run(grads, {X: x})
    free = rg.Session(g, seed=7, device=SimulatedDevice())
    full = free.memory_plan(grads, {X: x.shape}).predicted_peak
    sess = rg.Session(g, seed=7, device=SimulatedDevice(), memory_budget=int(full * 0.9))
    plan = sess.memory_plan(grads, {X: x.shape})
    got = sess.run(grads, {X: x})
    assert sess.pass_stats["contiguous_weights"] >= 1
    assert sess.last_run_report.peak_bytes == plan.predicted_peak <= int(full * 0.9)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
