"""Compiler passes: each preserves outputs and gradients, and each does what it claims."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.passes.pipeline import PASSES
from rnngraph.passes.rewrite import uses

CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(6),
    "lstm": lambda: rg.nn.LSTMCell(6),
    "lstm_peephole_proj": lambda: rg.nn.LSTMCell(6, use_peepholes=True, num_proj=3, cell_clip=2.0),
    "gru": lambda: rg.nn.GRUCell(5),
    "multi": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(5), rg.nn.GRUCell(4)]),
}
B, T, I = 3, 5, 4


def build_and_run(cell_name, passes, seq=None, time_major=False):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [T, B, I] if time_major else [B, T, I])
        lengths = None if seq is None else rg.constant(np.array(seq, np.int32))
        out, state = rg.nn.dynamic_rnn(CELLS[cell_name](), X, dtype=rg.float64,
                                       sequence_length=lengths, time_major=time_major)
        loss = rg.reduce_sum(out * out) + sum(rg.reduce_sum(s * s) for s in rg.nest.flatten(state))
        grads = rg.gradients(loss, [X] + rg.global_variables())
        sess = rg.Session(g, seed=7, passes=passes)
        x = np.random.default_rng(3).normal(size=X.shape)
        return sess.run([out, rg.nest.flatten(state), grads], {X: x}), sess


def _flat(result):
    out, states, grads = result
    return [out] + list(states) + list(grads)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
@pytest.mark.parametrize("seq", [None, [5, 0, 2]], ids=["full", "lengths"])
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
def test_all_passes_preserve_outputs_and_gradients(cell_name, seq, time_major):
    ref, _ = build_and_run(cell_name, False, seq, time_major)
    got, sess = build_and_run(cell_name, True, seq, time_major)
    assert sess.pass_stats["licm"] > 0 and sess.pass_stats["hoist_sequence"] > 0
    for a, b in zip(_flat(got), _flat(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seq", [None, [5, 0, 3]], ids=["full", "lengths"])
@pytest.mark.parametrize("name", sorted(PASSES))
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_each_pass_alone_preserves_results(name, cell_name, seq):
    ref, _ = build_and_run(cell_name, False, seq)
    only = {n: n == name for n in PASSES}
    # the loop passes need loop-invariant code motion to have run first to find their patterns
    if name in ("hoist_sequence", "sink_accumulators", "sink_outputs"):
        only["licm"] = True
    got, sess = build_and_run(cell_name, only, seq)
    for a, b in zip(_flat(got), _flat(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _optimized_graph(sess):
    (prog,) = sess.programs()
    return prog.graph


def _loops(graph):
    return [n for n in graph.nodes if n.op.name == "loop"]


def test_structure_after_passes_lstm():
    _, sess = build_and_run("lstm", True)
    graph = _optimized_graph(sess)
    fwd, bwd = _loops(graph)
    assert bwd.op.reverse and not fwd.op.reverse
    fwd_ops = [n.op.name for n in fwd.op.body.nodes]
    # licm: the kernel slices moved out; hoist: only the recurrent h @ W_h product stays inside
    assert "getitem" not in fwd_ops
    assert fwd_ops.count("matmul") == 1
    outside = [n for n in graph.nodes if n.name.endswith("/batched")]
    assert any(n.op.name == "matmul" and n.outputs[0].type.rank == 3 for n in outside)
    assert not any(n.op.name == "add" for n in outside)  # the bias add stays in (fused there)
    # dce: the gradient loop keeps only inputs its body reads (the saved inputs of the weight
    # gradient went to the product after the loop), and the sequence giving its length
    body = bwd.op.body
    read = {v for n in body.nodes for v in n.inputs} | {v for vs in body.results.values() for v in vs}
    assert all(p in read for p in body.params.get("invariant", []))
    assert all(p in read or i == bwd.op.length_from for i, p in enumerate(body.params["sequence"]))
    # sinking: the weight gradient is one product over all steps, not accumulated per step
    bwd_ops = [n.op.name for n in bwd.op.body.nodes]
    assert "getitem_grad" not in bwd_ops and bwd_ops.count("matmul") == 1
    # the per-step input gradient became one product after the loop
    assert any(n.name.endswith("/after_loop") for n in graph.nodes)
    # join_slices: the input half and the recurrent half of the kernel's gradient are one
    # product over the input and state stacks side by side (no zero-filled halves, no concat),
    # and the bias gradient is its last row (a column of ones beside the stacks)
    assert not any(n.op.name in ("getitem_grad", "concat", "step_sum") for n in graph.nodes)
    (contraction,) = [n for n in graph.nodes if n.op.name == "step_contract"]
    assert contraction.op.parts == 2 and contraction.op.ones
    assert contraction.outputs[0].shape == (I + 6 + 1, 4 * 6)
    # reuse_outputs: h_{t-1} is read from the output stack shifted by a step; the loop saves
    # c_{t-1} (its gradient loop reads that) but no h_{t-1}
    assert contraction.op.shifted == (1,) and contraction.inputs[1].node is fwd
    c_prev, h_prev = fwd.op.body.params["carried"]
    assert c_prev in fwd.op.body.results["residual"]
    assert h_prev not in fwd.op.body.results["residual"]


def _slice_grad_graph(keys, shape=(6, 4)):
    """d/dx of sum_i (x[key_i] * c_i): a sum of getitem_grads of x, one per key."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, list(shape))
        loss = rg.add_n([rg.reduce_sum(x[k] * float(i + 2)) for i, k in enumerate(keys)])
        (grad,) = rg.gradients(loss, [x])
    return g, x, grad


@pytest.mark.parametrize("keys, joined", [
    ([np.s_[:2], np.s_[2:]], True),                    # rows, end to end
    ([np.s_[3:], np.s_[1:3], np.s_[:1]], True),        # three blocks, out of order
    ([np.s_[:, :1], np.s_[:, 1:4]], True),             # columns
    ([np.s_[:2], np.s_[3:]], False),                   # a gap: row 2 gets zeros
    ([np.s_[:3], np.s_[2:]], False),                   # overlapping: row 2 gets both
    ([np.s_[:2], np.s_[:, 2:]], False),                # two different axes
    ([np.s_[::2], np.s_[1::2]], False),                # strided slices
    ([np.s_[1], np.s_[:1], np.s_[2:]], False),         # an integer index
])
def test_join_slices_only_joins_blocks_that_tile_one_axis(keys, joined):
    g, x, grad = _slice_grad_graph(keys)
    value = np.random.default_rng(0).normal(size=(6, 4))
    want = rg.Session(g, passes=False).run(grad, {x: value})
    sess = rg.Session(g, passes={"join_slices": True, "fuse": False})
    got = sess.run(grad, {x: value})
    np.testing.assert_array_equal(got, want)
    expected = np.zeros((6, 4))
    for i, k in enumerate(keys):
        expected[k] += i + 2
    np.testing.assert_array_equal(got, expected)
    assert (sess.pass_stats["join_slices"] == 1) == joined


class _ScaledOutputCell(rg.nn.BasicRNNCell):
    """Outputs 2 h_t, state h_t: the output stack is not the states shifted."""

    def __call__(self, inputs, state, scope=None):
        out, new = super().__call__(inputs, state, scope)
        return out * 2.0, new


@pytest.mark.parametrize("seq", [None, [5, 0, 2]], ids=["full", "lengths"])
def test_reuse_outputs_only_when_the_output_is_the_state(seq):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [B, T, I])
        lengths = None if seq is None else rg.constant(np.array(seq, np.int32))
        out, _ = rg.nn.dynamic_rnn(_ScaledOutputCell(5), X, dtype=rg.float64,
                                   sequence_length=lengths)
        grads = rg.gradients(rg.reduce_sum(out * out), rg.global_variables())
    x = np.random.default_rng(6).normal(size=(B, T, I))
    sess = rg.Session(g, seed=1)
    got = sess.run(grads, {X: x})
    assert sess.pass_stats["reuse_outputs"] == 0
    for a, b in zip(got, rg.Session(g, seed=1, passes=False).run(grads, {X: x})):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_dce_drops_loop_inputs_the_body_never_reads():
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float64, [4, 3])
        unused_seq = rg.placeholder(rg.float64, [4, 2])
        unused_inv = rg.placeholder(rg.float64, [5])
        w = rg.placeholder(rg.float64, [3])

        def step(carry, seqs):
            (acc,), (x, _) = carry, seqs
            _ = unused_inv * 2.0   # captured, never used for a result
            return [acc + rg.reduce_sum(x * w)], [x * w]
        (total,), (ys,) = rg.lax_scan(step, [rg.constant(0.0, rg.float64)], [xs, unused_seq])
    rng = np.random.default_rng(5)
    feed = {xs: rng.normal(size=(4, 3)), unused_seq: rng.normal(size=(4, 2)),
            unused_inv: rng.normal(size=5), w: rng.normal(size=3)}
    sess = rg.Session(g, passes={"dce": True} | {n: False for n in PASSES if n != "dce"})
    got = sess.run([total, ys], feed)
    (loop,) = _loops(_optimized_graph(sess))
    outer = [v.node.name for v in loop.inputs]
    assert not any(name in outer for name in (unused_seq.node.name, unused_inv.node.name))
    assert xs.node.name in outer and w.node.name in outer
    ref = rg.Session(g, passes=False).run([total, ys], feed)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_passes_leave_the_users_graph_alone():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [B, T, I])
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(4), X, dtype=rg.float64)
        grads = rg.gradients(rg.reduce_sum(out), rg.global_variables())
    before = rg.format_graph(g)
    rg.Session(g).run(grads, {X: np.ones((B, T, I))})
    assert rg.format_graph(g) == before


def test_cse_merges_duplicates_but_not_placeholders():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float64, [2])
        b = rg.placeholder(rg.float64, [2])
        y = rg.tanh(a) + rg.tanh(a) + b
        sess = rg.Session(g, passes={"fuse": False})
        np.testing.assert_allclose(sess.run(y, {a: [1.0, 2.0], b: [3.0, 4.0]}),
                                   2 * np.tanh([1.0, 2.0]) + [3.0, 4.0])
    assert sess.pass_stats["cse"] == 1
    assert [n.op.name for n in _optimized_graph(sess).nodes].count("tanh") == 1


def test_cse_tells_ops_apart_by_type_and_attributes():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float64, [4])
        parts = [rg.tanh(a), rg.sigmoid(a), a[1:], a[1:], a[:3], rg.reduce_sum(a),
                 rg.reduce_sum(a, keepdims=True)]
        sess = rg.Session(g, passes={"fuse": False})
        x = np.array([0.5, -1.0, 2.0, 0.25])
        got = sess.run(parts, {a: x})
    want = [np.tanh(x), 1 / (1 + np.exp(-x)), x[1:], x[1:], x[:3], x.sum(), x.sum(keepdims=True)]
    for g_, w in zip(got, want):
        np.testing.assert_allclose(g_, w)
    assert sess.pass_stats["cse"] == 1   # only the second a[1:]
    ops_left = [n.op.name for n in _optimized_graph(sess).nodes]
    assert ops_left.count("getitem") == 2 and ops_left.count("reduce_sum") == 2


def test_compiling_a_graph_whose_nodes_are_out_of_order_names_the_culprit():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2])
        h = rg.tanh(x)
        y = h * 2.0
    g.nodes.remove(h.node)   # y's node now comes before the node it reads
    g.nodes.append(h.node)
    with pytest.raises(ValueError, match="out of order.*reads 'Tanh"):
        rg.Session(g).compile([y], [x])


def test_constant_folding():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3])
        y = x * (rg.constant(2.0) * rg.constant(3.0) + 1.0)
        sess = rg.Session(g, passes={"fuse": False})
        np.testing.assert_allclose(sess.run(y, {x: [1, 2, 3]}), [7, 14, 21])
    assert sess.pass_stats["fold_constants"] >= 2
    ops_left = [n.op.name for n in _optimized_graph(sess).nodes]
    assert ops_left.count("mul") == 1 and "add" not in ops_left


def _gru_with_lengths():
    """A float32 GRU with sequence_length whose loss sums its output and final state: (graph,
    x, lengths, loss, gradients of x and the weights)."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 5, 3])
        seq = rg.placeholder(rg.int32, [None])
        out, state = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), x, sequence_length=seq,
                                       dtype=rg.float32)
        loss = rg.reduce_sum(out) + rg.reduce_sum(state * state)
        grads = rg.gradients(loss, [x] + rg.global_variables())
    return g, x, seq, loss, grads


def test_a_loss_fetched_for_its_gradients_only_is_not_computed():
    """gradients(loss) seeds with ones_like(loss); of a scalar, that folds to a constant, and
    the loss's own sums are dead when only gradients are fetched.
    Fetched with them, it is computed and equal."""
    g, x, seq, loss, grads = _gru_with_lengths()
    f = {x: np.random.default_rng(0).standard_normal((3, 5, 3)).astype(np.float32),
         seq: np.array([2, 5, 0], np.int32)}
    sess = rg.Session(g, seed=1)
    got = sess.run(grads, f)
    nodes = _optimized_graph(sess).nodes
    assert "ones_like" not in [n.op.name for n in nodes]
    assert not [n for n in nodes if n.op.name == "reduce_sum" and n.outputs[0].dtype == np.float32]
    unfolded = rg.Session(g, seed=1, passes={"fold_constants": False})
    want = unfolded.run(grads, f)
    assert "ones_like" in [n.op.name for n in _optimized_graph(unfolded).nodes]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    loss_value, *with_loss = sess.run([loss] + grads, f)
    np.testing.assert_allclose(loss_value, unfolded.run(loss, f), rtol=1e-6)
    for a, b in zip(with_loss, want):
        np.testing.assert_array_equal(a, b)


def test_values_read_for_their_shape_only_are_not_computed_for_it():
    """The gradient of reduce_sum(out) reads out for its shape only. out is the transposed
    unsort of the RNN's sorted stack: with shape_reads, broadcast_like reads that stack
    transposed instead (a view), and the unsort is dead. dim and zeros_like see through too.
    Results are bit for bit those of the pass switched off."""
    g, x, seq, loss, grads = _gru_with_lengths()
    with g.as_default():
        perm = rg.placeholder(rg.int32, [None])
        shuffled = rg.ops.rows.permute_rows(rg.tanh(x), perm, 0)
        size = rg.dim(rg.transpose(shuffled, [1, 0, 2]), 1)
        zeros = rg.zeros_like(shuffled)
    f = {x: np.random.default_rng(0).standard_normal((3, 5, 3)).astype(np.float32),
         seq: np.array([2, 5, 0], np.int32), perm: np.array([2, 0, 1], np.int32)}
    fetches = grads + [size, zeros]
    on, off = rg.Session(g, seed=1), rg.Session(g, seed=1, passes={"shape_reads": False})
    got, want = on.run(fetches, f), off.run(fetches, f)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert got[-2] == 3 and got[-1].shape == (3, 5, 3)
    permutes = [sum(n.op.name == "permute_rows" for n in _optimized_graph(s).nodes)
                for s in (on, off)]
    assert permutes[0] == permutes[1] - 2   # the output's unsort, and `shuffled`
    assert on.pass_stats["shape_reads"] == 3


def test_unknown_pass_name_is_rejected():
    with pytest.raises(ValueError, match="unknown passes.*no_such_pass"):
        rg.Session(rg.Graph(), passes={"no_such_pass": False})


def test_static_rnn_untouched_by_loop_passes_but_equal():
    g = rg.Graph()
    with g.as_default():
        xs = [rg.placeholder(rg.float64, [B, I]) for _ in range(T)]
        outs, _ = rg.nn.static_rnn(rg.nn.GRUCell(4), xs, dtype=rg.float64)
        loss = rg.add_n([rg.reduce_sum(o * o) for o in outs])
        grads = rg.gradients(loss, rg.global_variables())
    feed = {x: np.random.default_rng(i).normal(size=(B, I)) for i, x in enumerate(xs)}
    on = rg.Session(g, seed=1).run(grads, feed)
    off = rg.Session(g, seed=1, passes=False).run(grads, feed)
    for a, b in zip(on, off):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def _fused_nodes(graph):
    found = []
    for n in graph.nodes:
        if n.op.name == "fused":
            found.append(n)
        for body in n.op.subgraphs():
            found += _fused_nodes(body)
    return found


def test_fused_kernel_equals_unfused_ops_and_keeps_inputs_intact():
    rng = np.random.default_rng(0)
    a_val, b_val = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float64, [None, 4])
        b = rg.placeholder(rg.float64, [3, None])
        t = rg.tanh(a * b)
        # t is used twice and exported; add_n reads a temporary after writing its output
        y = rg.add_n([t, rg.sigmoid(t) * 2.0, a * b]) - rg.relu(b)
        z = rg.where(a > 0.0, y, t * t)
    fetch = [y, z, t]
    fused = rg.Session(g).run(fetch, {a: a_val, b: b_val})
    plain = rg.Session(g, passes={"fuse": False}).run(fetch, {a: a_val, b: b_val})
    for got, want in zip(fused, plain):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    tn = np.tanh(a_val * b_val)
    want_y = tn + 2.0 / (1 + np.exp(-tn)) + a_val * b_val - np.maximum(b_val, 0)
    np.testing.assert_allclose(fused[0], want_y, rtol=1e-12)
    np.testing.assert_allclose(fused[1], np.where(a_val > 0, want_y, tn * tn), rtol=1e-12)


def test_lstm_step_bodies_fuse_into_few_kernels():
    _, sess = build_and_run("lstm", True)
    fwd, bwd = _loops(_optimized_graph(sess))
    for loop in (fwd, bwd):
        elementwise = [n for n in loop.op.body.nodes if getattr(n.op, "fusible", False)]
        assert len(elementwise) <= 1, f"unfused: {[n.op.name for n in elementwise]}"
        assert len(_fused_nodes(loop.op.body)) == 1
    # forward step: one product and one kernel; the gate split and the add of the hoisted
    # input projection became column blocks inside the kernel
    ops = [n.op.name for n in fwd.op.body.nodes if n.op.name not in ("param", "constant")]
    assert ops == ["matmul", "fused"], ops
    # backward step: one kernel whose gate gradients come out joined as dz [B, 4H] (the concat
    # joined the kernel), then dz @ W_h^T
    ops = [n.op.name for n in bwd.op.body.nodes if n.op.name not in ("param", "constant")]
    assert ops == ["fused", "matmul"], ops
    (kernel,) = _fused_nodes(bwd.op.body)
    assert kernel.op.instrs[-1][0].name == "concat" and kernel.outputs[-1].shape[-1] == 4 * 6


@pytest.mark.parametrize("start", ["zeros", "given"])
def test_a_sunk_accumulator_keeps_its_starting_value(start):
    """acc' = acc + x_t^T @ y_t becomes one product after the loop, added to acc's initial
    value (a gradient accumulator starts at zeros_like: then nothing is added)."""
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float64, [4, 3, 2])
        ys = rg.placeholder(rg.float64, [4, 3, 5])
        acc0 = rg.placeholder(rg.float64, [2, 5])
        init = rg.zeros_like(acc0) if start == "zeros" else acc0

        def step(carry, xy):
            (acc,), (x, y) = carry, xy
            return [acc + rg.matmul(rg.transpose(x, [1, 0]), y)], []
        (total,), _ = rg.lax_scan(step, [init], [xs, ys])
    rng = np.random.default_rng(4)
    feed = {xs: rng.normal(size=(4, 3, 2)), ys: rng.normal(size=(4, 3, 5)),
            acc0: rng.normal(size=(2, 5))}
    sess = rg.Session(g)
    got = sess.run(total, feed)
    assert sess.pass_stats["sink_accumulators"] == 1
    want = np.einsum("tbk,tbn->kn", feed[xs], feed[ys]) + (0 if start == "zeros" else feed[acc0])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_concat_of_one_kernels_outputs_joins_it_and_computes_the_same():
    rng = np.random.default_rng(2)
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float32, [None, 3])
        b = rg.placeholder(rg.float32, [None, 3])
        xs = rg.placeholder(rg.float32, [4, None, 3])
        def step(c, x):
            t = rg.tanh(c[0] * x[0])
            s = rg.sigmoid(c[0] + x[0])
            joined = rg.concat([s, t, s * t], axis=1)      # s and t also used elsewhere
            return [t + s], [joined, t * 2.0]
        final, (ys, ts) = rg.lax_scan(step, [a + b], [xs])
    feed = {a: rng.standard_normal((2, 3)).astype(np.float32),
            b: rng.standard_normal((2, 3)).astype(np.float32),
            xs: rng.standard_normal((4, 2, 3)).astype(np.float32)}
    sess = rg.Session(g)
    got = sess.run([final, ys, ts], feed)
    want = rg.Session(g, passes={"fuse": False}).run([final, ys, ts], feed)
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    (loop,) = _loops(_optimized_graph(sess))
    assert not [n for n in loop.op.body.nodes if n.op.name == "concat"]


def _count_nodes(graph):
    return sum(1 + (_count_nodes(n.op.body) if n.op.subgraphs() else 0) for n in graph.nodes)


def test_dce_sweeps_what_the_other_passes_leave_behind():
    (with_dce, s1), (without, s2) = [build_and_run("lstm", {"dce": on}) for on in (True, False)]
    for a, b in zip(_flat(with_dce), _flat(without)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    kept, swept = _optimized_graph(s2), _optimized_graph(s1)
    assert _count_nodes(swept) < _count_nodes(kept)
    # the sinking passes leave the per-step stacks they replaced: only dce drops them
    ports = [sum(len(n.outputs) for n in _loops(g)) for g in (swept, kept)]
    assert ports[0] < ports[1]


def test_shrink_batch_marks_only_loops_with_active_rows():
    _, plain = build_and_run("gru", True)
    _, ragged = build_and_run("gru", True, seq=[5, 0, 2])
    assert not any(n.op.shrink for n in _loops(_optimized_graph(plain)))
    assert all(n.op.shrink and n.op.active_rows for n in _loops(_optimized_graph(ragged)))
    _, off = build_and_run("gru", {"shrink_batch": False}, seq=[5, 0, 2])
    assert not any(n.op.shrink for n in _loops(_optimized_graph(off)))


def test_work_moved_out_of_a_loop_with_active_rows_skips_finished_rows():
    _, sess = build_and_run("lstm", True, seq=[5, 0, 2])
    graph = _optimized_graph(sess)
    names = [n.op.name for n in graph.nodes]
    # the input projection before the loop and the input gradient after it
    assert names.count("rows_matmul") == 2
    # the kernel's gradient: one product over the input and state stacks, packed by rows; the
    # states h_{t-1} are the output stack shifted (the masked output equals the state on the
    # rows still active), so the forward loop saves no stack of them
    (contraction,) = [n for n in graph.nodes if n.op.name == "step_contract"]
    assert contraction.op.parts == 2 and contraction.op.shifted == (1,)
    assert len(contraction.inputs) == 6   # x, y, h_0, dz, steps, rows
    fwd = [n for n in graph.nodes if n.op.name == "loop" and not n.op.reverse][0]
    assert not any(p in fwd.op.body.results["residual"] for p in fwd.op.body.params["carried"][1:])


def test_shrunk_loops_zero_only_the_finished_rows_someone_reads():
    """A saved tensor is read only by the (shrunk) gradient loop and the packed weight-gradient
    product, so its finished rows need no zeros; the RNN's output is the user's and keeps them;
    the gradient loop's dz feeds packed products (the bias gradient among them)."""
    _, sess = build_and_run("lstm", True, seq=[5, 0, 2])
    fwd, bwd = _loops(_optimized_graph(sess))

    def group(loop, name):
        ports = loop.op.out_ports()
        return frozenset(range(ports.offset(name), ports.offset(name) + ports.sizes[name]))
    assert set(fwd.op.rows_only) == group(fwd, "residual")
    assert set(bwd.op.rows_only) == group(bwd, "output")
    (contraction,) = [n for n in _optimized_graph(sess).nodes if n.op.name == "step_contract"]
    assert contraction.op.ones and len(contraction.inputs) == 6   # packs the active rows
    # the input projection is read by the forward loop only; the input gradient is the user's
    products = {n.name.split("/MatMul/", 1)[-1]: n.op for n in _optimized_graph(sess).nodes
                if n.op.name == "rows_matmul"}
    assert products["batched/gathered"].only_loops_read   # (packed from the unsorted x)
    unsorted = products["after_loop/shared/unsorted"]   # (reads dz's shared pack)
    assert unsorted.unsort and not unsorted.only_loops_read


def test_a_packed_stack_reads_as_the_stack_it_stands_for():
    """A loop's packed stack (StepRows with the loop's step offsets): every reader that packs
    active rows takes its block as it is when the counts match its layout, steps otherwise, and
    sums, contractions and conversion equal those of the zero-padded stack."""
    from rnngraph.ops.steps import StepContract, StepRows, StepSum, _pack
    rng = np.random.default_rng(2)
    counts = np.array([5, 3, 3, 1, 0])
    full = rng.normal(size=(5, 5, 2)) * (np.arange(5)[None, :, None] < counts[:, None, None])
    starts = [0] + np.cumsum(counts).tolist()
    packed = np.concatenate([full[t, :c] for t, c in enumerate(counts)] + [np.zeros((5, 2))])
    st = StepRows(packed, None, full.shape, starts)
    np.testing.assert_array_equal(np.asarray(st), full)
    block = _pack(np, st, counts, 5)
    assert np.shares_memory(block, packed) and block.shape == (12, 2)
    other = np.array([5, 3, 2, 1, 0])   # not its layout: gathered step by step
    np.testing.assert_array_equal(_pack(np, st, other, 5), _pack(np, full, other, 5))
    assert st[:3].shape == (3, 5, 2) and st[:3].starts is starts
    rows = np.asarray(counts, np.int32)
    np.testing.assert_allclose(StepSum().compute(np, st, 5, rows),
                               StepSum().compute(np, full, 5, rows))
    b = rng.normal(size=(5, 5, 3)) * (np.arange(5)[None, :, None] < counts[:, None, None])
    for op in (StepContract(), StepContract(parts=2, ones=True)):
        a_s = [st] * op.parts
        want = op.compute(np, *([full] * op.parts), b, 4, rows)
        np.testing.assert_allclose(op.compute(np, *a_s, b, 4, rows), want)
    with pytest.raises(IndexError):
        st[1:]


def test_a_projection_only_loops_read_stays_packed(monkeypatch):
    """Step t's view starts with its active rows; the rows a loop reads past them (its width is
    rounded up, here to 2) are the next steps' rows, or zeros past the last: finite values of
    rows the body masks. Nothing is scattered into a [steps, batch, n] array."""
    from rnngraph.ops import loop_rows
    from rnngraph.ops.steps import RowsMatMul, StepRows
    monkeypatch.setattr(loop_rows, "ROW_ALIGN", 2)
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(4, 5, 3)), rng.normal(size=(3, 2))
    rows = np.array([5, 3, 1, 0], np.int32)
    out = RowsMatMul().compute(np, x, w, rows, loops_only=True,
                               alloc=lambda shape, dtype, slot=0: np.full(shape, np.nan, dtype))
    assert isinstance(out, StepRows) and out.shape == (4, 5, 2) and len(out) == 4
    packed = np.concatenate([x[t, :n] @ w for t, n in enumerate(rows)] + [np.zeros((5, 2))])
    start = 0
    for t, n in enumerate(rows):
        read = 1 if n == 1 else min(5, -(-n // 2) * 2)   # what a loop reads (align 2)
        view = out[t]
        assert view.shape == (5, 2)
        np.testing.assert_allclose(view[:n], x[t, :n] @ w)
        np.testing.assert_allclose(view[:read], packed[start:start + read])
        start += n
    # read as an array (a numerics check, say): the stack it stands for, zeros past the rows
    active = (np.arange(5)[None, :] < rows[:, None])[..., None]
    np.testing.assert_allclose(np.asarray(out), (x @ w) * active)


def test_rows_matmul_and_packed_contraction_equal_masked_products():
    from rnngraph.ops.steps import RowsMatMul, StepContract, StepSum
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(4, 3, 5)), rng.normal(size=(5, 2))
    b = rng.normal(size=(4, 3, 2))
    rows = np.array([3, 2, 2, 0], np.int32)
    active = (np.arange(3)[None, :] < rows[:, None])[..., None]
    np.testing.assert_allclose(RowsMatMul().compute(np, x, w, rows), (x @ w) * active)
    got = StepContract().compute(np, x, b, np.int32(3), rows)
    want = np.einsum("tbk,tbn->kn", (x * active)[:3], b[:3])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(StepContract().compute(np, x, b, np.int32(4)),
                               np.einsum("tbk,tbn->kn", x, b), rtol=1e-12)
    for n in (3, 4):   # sums over each step's active rows (runs of equal counts, a zero count)
        np.testing.assert_allclose(StepSum().compute(np, b, np.int32(n), rows),
                                   (b * active)[:n].sum(axis=0), rtol=1e-12)
    # parts side by side: a strided stack (a transposed view) and a contiguous one, with and
    # without active rows, against the parts' products stacked
    x2 = rng.normal(size=(3, 4, 6)).transpose(1, 0, 2)   # [4, 3, 6], not contiguous
    two = StepContract(parts=2)
    for n, r in ((3, (rows,)), (4, ()), (3, (np.zeros(4, np.int32),))):
        got = two.compute(np, x, x2, b, np.int32(n), *r)
        want = np.concatenate([StepContract().compute(np, x, b, np.int32(n), *r),
                               StepContract().compute(np, x2, b, np.int32(n), *r)])
        assert got.shape == (11, 2)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        # and with a column of ones: the last row sums b over each step's active rows
        got = StepContract(parts=2, ones=True).compute(np, x, x2, b, np.int32(n), *r)
        sums = StepSum().compute(np, b, np.int32(n), *r).sum(axis=0)
        np.testing.assert_allclose(got, np.vstack([want, sums]), rtol=1e-12, atol=1e-15)
    # a shifted part: the output stack y and h0 stand for [h0, y_0, y_1, ...]
    y, h0 = rng.normal(size=(4, 3, 6)), rng.normal(size=(3, 6))
    prev = np.concatenate([h0[None], y[:-1]])
    for n, r in ((3, (rows,)), (4, ()), (1, ()), (3, (np.zeros(4, np.int32),))):
        got = StepContract(parts=2, ones=True, shifted=(1,)).compute(
            np, x, y, h0, b, np.int32(n), *r)
        want = StepContract(parts=2, ones=True).compute(np, x, prev, b, np.int32(n), *r)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    got = StepContract(ones=True).compute(np, x, b, np.int32(3), rows)     # one part, too
    np.testing.assert_allclose(got[-1], (b * active)[:3].sum(axis=(0, 1)), rtol=1e-12)


@pytest.mark.parametrize("split", [True, False], ids=["part_by_part", "side_by_side"])
def test_step_contract_parts_equal_the_masked_einsum(monkeypatch, split):
    """A multi-part contraction computed part by part (few columns of b) or over the parts
    side by side (many) equals sum_t [a_1 | h_{t-1} | 1]_t^T b_t over each step's active rows:
    contiguous, strided (a transposed view), shifted and packed parts, no steps to all."""
    from rnngraph.ops import steps
    from rnngraph.ops.steps import PackRows, StepContract
    monkeypatch.setattr(steps, "SPLIT_MAX_N", 1 << 30 if split else 0)
    monkeypatch.setattr(steps, "SPLIT_MIN_BYTES", 0)
    rng = np.random.default_rng(4)
    T, B = 4, 3
    x = rng.normal(size=(B, T, 5)).astype(np.float32).transpose(1, 0, 2)   # strided
    c = rng.normal(size=(T, B, 2)).astype(np.float32)                       # contiguous
    y, h0 = rng.normal(size=(T, B, 6)).astype(np.float32), \
        rng.normal(size=(B, 6)).astype(np.float32)
    b = rng.normal(size=(T, B, 7)).astype(np.float32)
    prev = np.concatenate([h0[None], y[:-1]])
    for rows in (None, np.array([3, 2, 2, 0], np.int32), np.zeros(T, np.int32)):
        active = np.ones((T, B, 1), np.float32) if rows is None else \
            (np.arange(B)[None, :] < rows[:, None])[..., None].astype(np.float32)
        r = () if rows is None else (rows,)
        for n in (0, 1, 3, 4):
            def want(*parts):
                side = np.concatenate(list(parts) + [np.ones((T, B, 1), np.float32)], axis=2)
                return np.einsum("tbk,tbn->kn", (side * active)[:n], b[:n])
            got = StepContract(parts=3, ones=True, shifted=(2,)).compute(
                np, x, c, y, h0, b, np.int32(n), *r)
            assert got.dtype == np.float32 and got.shape == (14, 7)
            np.testing.assert_allclose(got, want(x, c, prev), rtol=1e-5, atol=1e-5)
            if rows is None:
                continue
            packed_x = PackRows().compute(np, x, rows)   # x's active rows, packed (sort_rows)
            got = StepContract(parts=2, ones=True, shifted=(1,), packed_parts=(0,)).compute(
                np, packed_x, y, h0, b, np.int32(n), rows)
            np.testing.assert_allclose(got, want(x, prev), rtol=1e-5, atol=1e-5)


class _TakeWithoutMode:
    """NumPy as an array module whose take, like CuPy's, has no `mode`."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def take(a, indices, axis=None, out=None):
        return np.take(a, indices, axis=axis, out=out)


def test_packed_forms_equal_the_products_that_pack_themselves():
    """pack_rows packs every step; step_contract with packed_b reads its first n steps' rows
    (here also with active rows past step n) and rows_matmul with packed scatters them back:
    each equals the op that packs the stack itself."""
    from rnngraph.ops.steps import PackRows, RowsMatMul, StepContract
    rng = np.random.default_rng(2)
    x, y, h0 = rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 4, 2)), rng.normal(size=(4, 2))
    dz, w = rng.normal(size=(5, 4, 6)), rng.normal(size=(6, 3))
    for rows in (np.array([4, 3, 3, 1, 0], np.int32), np.array([4, 4, 2, 2, 1], np.int32),
                 np.full(5, 4, np.int32), np.zeros(5, np.int32)):
        packed = PackRows().compute(np, dz, rows)
        assert packed.shape == (int(np.minimum(rows, 4).sum()), 6)
        for n in (5, 3, 1):
            for op in (StepContract(), StepContract(parts=2, ones=True, shifted=(1,))):
                shared = StepContract(op.parts, op.ones, op.shifted, packed_b=True)
                a = [x] if op.parts == 1 else [x, y, h0]
                np.testing.assert_allclose(shared.compute(np, *a, packed, np.int32(n), rows),
                                           op.compute(np, *a, dz, np.int32(n), rows),
                                           rtol=1e-12, atol=1e-14)
        want = RowsMatMul().compute(np, dz, w, rows)
        np.testing.assert_allclose(RowsMatMul(packed=True).compute(np, packed, w, rows, dz),
                                   want, rtol=1e-12, atol=1e-14)
        # gathered from the unsorted batch: the pack of the sorted stack, in any memory layout
        nan = lambda shape, dtype, slot=0: np.full(shape, np.nan, dtype)   # noqa: E731
        perms = (np.array([2, 0, 3, 1], np.int32), np.arange(4, dtype=np.int32))
        batch_major = np.ascontiguousarray(x.transpose(1, 0, 2))
        strided = np.zeros((5, 4, 6))[:, :, ::2]   # (neither layout: indexed directly)
        strided[...] = x
        for perm in perms:
            sorted_pack = PackRows().compute(np, np.take(x, perm, axis=1), rows)
            for stack in (x, batch_major.transpose(1, 0, 2), strided):
                for alloc in (None, nan):
                    np.testing.assert_array_equal(
                        PackRows(gather=True).compute(np, stack, rows, perm, alloc=alloc),
                        sorted_pack)
            # an array module whose take has no `mode` (CuPy's): the same results
            no_mode = _TakeWithoutMode()
            np.testing.assert_array_equal(
                PackRows(gather=True).compute(no_mode, batch_major.transpose(1, 0, 2), rows,
                                              perm), sorted_pack)
            np.testing.assert_allclose(
                RowsMatMul(packed=True, unsort=True).compute(no_mode, packed, w, rows, dz, perm),
                np.take(want, perm, axis=1), rtol=1e-12, atol=1e-14)
            # a weight gradient reading x as that pack (part 0) equals it reading the stack
            for op in (StepContract(parts=2, ones=True, shifted=(1,), packed_b=True),
                       StepContract(parts=2, packed_b=True)):
                a = [x, y, h0] if op.shifted else [x, y]
                sorted_a = [np.take(x, perm, axis=1)] + a[1:]
                gathered = StepContract(op.parts, op.ones, op.shifted, True, packed_parts=(0,))
                for n in (5, 2):
                    np.testing.assert_allclose(
                        gathered.compute(np, sorted_pack, *a[1:], packed, np.int32(n), rows,
                                         alloc=nan),
                        op.compute(np, *sorted_a, packed, np.int32(n), rows),
                        rtol=1e-12, atol=1e-14)
        # unsorted: each row gathered into the place permute_rows(product, perm, 1) puts it
        for perm in (np.array([2, 0, 3, 1], np.int32), np.arange(4, dtype=np.int32)):
            for alloc in (None, lambda shape, dtype, slot=0: np.full(shape, np.nan, dtype)):
                for op, args in ((RowsMatMul(packed=True, unsort=True), (packed, w, rows, dz)),
                                 (RowsMatMul(unsort=True), (dz, w, rows))):
                    np.testing.assert_allclose(op.compute(np, *args, perm, alloc=alloc),
                                               np.take(want, perm, axis=1),
                                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_sort_rows_folds_the_batch_sort_into_the_packing_products(cell_name, time_major):
    """With lengths, the input x is not sorted as a whole: one pack gathers its active rows
    from the unsorted batch for the projection and the weight gradient; and the input
    gradient's product gathers its rows straight into the caller's order. Two permute_rows
    fewer, the same bits as sorting and unsorting around the products."""
    on, sess = build_and_run(cell_name, True, [5, 0, 2], time_major)
    off, sess_off = build_and_run(cell_name, {"sort_rows": False}, [5, 0, 2], time_major)
    for a, b in zip(_flat(on), _flat(off)):
        np.testing.assert_array_equal(a, b)
    # (a GRU's input gradient sums two products, one per kernel: each gathers into place)
    unsorted = 2 if cell_name == "gru" else 1
    assert sess.pass_stats["sort_rows"] == 1 + unsorted
    graph = _optimized_graph(sess)
    nodes, nodes_off = graph.nodes, _optimized_graph(sess_off).nodes
    assert [n.op.attrs().get("unsort") for n in nodes
            if n.op.name == "rows_matmul"].count(True) == unsorted
    (gathered,) = [n for n in nodes if n.op.name == "pack_rows" and n.op.attrs().get("gather")]
    readers = uses(graph)[gathered.outputs[0]]
    assert {r.op.name for r in readers} == {"rows_matmul", "step_contract"}
    assert sum(n.op.name == "permute_rows" for n in nodes) == \
        sum(n.op.name == "permute_rows" for n in nodes_off) - 2
    if cell_name == "gru":   # the sum reads the products in the caller's order
        (total,) = [n for n in nodes if n.op.name == "add_n" and
                    {v.node.op.attrs().get("unsort") for v in n.inputs} == {True}]
        assert len(total.inputs) == 2


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_share_packs_packs_each_gradient_stack_once(cell_name):
    """With lengths, the stacks that the weight and the input gradient both pack are packed
    once; results equal the same passes without sharing. Without lengths nothing is packed.
    (sort_rows off: it would gather the input's pack from the unsorted batch instead.)"""
    on, sess = build_and_run(cell_name, {"sort_rows": False}, [5, 0, 2])
    off, _ = build_and_run(cell_name, {"share_packs": False, "sort_rows": False}, [5, 0, 2])
    for a, b in zip(_flat(on), _flat(off)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    graph = _optimized_graph(sess)
    readers = uses(graph)
    packs = [n for n in graph.nodes if n.op.name == "pack_rows"]
    assert packs and sess.pass_stats["share_packs"] == len(packs)
    kinds = set()
    for p in packs:   # each read by two or more products, all in their packed forms
        rs = readers[p.outputs[0]]
        assert len(rs) >= 2 and all(r.op.attrs().get("packed") or r.op.attrs().get("packed_b")
                                    for r in rs)
        kinds.add(tuple(sorted(r.op.name for r in rs)))
    # a gradient stack read by a weight gradient and an input gradient is among them (the
    # GRU's x, read by its two input projections, is another)
    assert ("rows_matmul", "step_contract") in kinds
    _, sess = build_and_run(cell_name, True)
    assert sess.pass_stats["share_packs"] == 0


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_share_copies_copies_the_time_major_input_once(cell_name):
    """Batch-major input reaches the products before and after the loops through one
    transpose; they read one `contiguous` node of it, with results equal to each copying for
    itself. Time-major input (no transpose) and lengths (a sorted pack instead) share none."""
    on, sess = build_and_run(cell_name, True)
    off, _ = build_and_run(cell_name, {"share_copies": False})
    for a, b in zip(_flat(on), _flat(off)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    graph = _optimized_graph(sess)
    copies = [n for n in graph.nodes if n.op.name == "contiguous"
              and n.inputs[0].node.op.name != "matrix_transpose"]   # (contiguous_weights')
    assert sess.pass_stats["share_copies"] == len(copies) == 1
    (copy,) = copies
    assert copy.inputs[0].node.op.name == "transpose"
    readers = uses(graph)[copy.outputs[0]]
    assert len(readers) >= 2 and {r.op.name for r in readers} <= {"matmul", "step_contract"}
    assert not any(r.op.name in ("matmul", "step_contract") for r in uses(graph)[copy.inputs[0]])
    for seq, time_major in ((None, True), ([5, 0, 2], False)):
        _, sess = build_and_run(cell_name, True, seq, time_major)
        assert sess.pass_stats["share_copies"] == 0


def test_a_contiguous_copy_is_refilled_each_run_and_skipped_where_runs_are_counted():
    """Large float32 input (the copy lands in a reused buffer): two runs with new inputs each
    give the results of the graph without the pass; the kernel copies into one buffer while the
    previous copy is dropped, and a tracked program (counting bytes) passes x through."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [64, 40, 128])   # 1.3 MB
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(32), X, dtype=rg.float32)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
    rng = np.random.default_rng(0)
    on, off = rg.Session(g, seed=1), rg.Session(g, seed=1, passes={"share_copies": False})
    for _ in range(2):
        x = rng.normal(size=X.shape).astype(np.float32)
        for a, b in zip(on.run(grads, {X: x}), off.run(grads, {X: x})):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert on.pass_stats["share_copies"] == 1
    for tracked in (False, True):
        prog = on.compile(grads, [X], tracked=tracked)
        (kernel,) = [s.kernel for s in prog.steps if s.node.op.name == "contiguous"
                     and s.node.inputs[0].node.op.name == "transpose"]
        view = rng.normal(size=(40, 64, 128)).astype(np.float32).transpose(1, 0, 2)
        first = kernel(view)
        if tracked:
            assert first is view
            continue
        assert first is not view and first.flags.c_contiguous
        np.testing.assert_array_equal(first, view)
        address = first.ctypes.data
        del first
        again = kernel(view[::-1])
        np.testing.assert_array_equal(again, view[::-1])
        assert again.ctypes.data == address   # the same buffer, refilled


@pytest.mark.parametrize("cell_name", ["lstm_peephole_proj", "gru"])
@pytest.mark.parametrize("seq", [None, [5, 0, 2]], ids=["full", "lengths"])
def test_every_pass_left_out_in_turn_leaves_a_graph_the_verifier_accepts(cell_name, seq):
    """Passes that add loop params (licm, hoist_sequence) restore the body's order themselves
    rather than relying on a later pass (fuse) to: with any one pass off, the compiled program
    is still valid IR."""
    ref = None
    for name in ["none"] + [p for p in PASSES if p != "stream_outputs"]:
        passes = True if name == "none" else {name: False}
        got, sess = build_and_run(cell_name, passes, seq)
        rg.verify(_optimized_graph(sess))
        if ref is None:
            ref = got
        for a, b in zip(_flat(got), _flat(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


class _ScaledInputCell(rg.nn.BasicRNNCell):
    """Elementwise work on x_t before the product: hoist_sequence batches it too."""

    def call(self, inputs, state):
        return super().call(inputs * 2.0, state)


CELLS_TYPED = dict(CELLS, scaled_input=lambda: _ScaledInputCell(6))


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "basic", "scaled_input"])
@pytest.mark.parametrize("batch,lengths", [(B, "fed"), (B, "constant"), (None, "constant"),
                                           (None, "fed")])
def test_compiled_programs_with_lengths_state_the_types_their_rules_give(cell_name, batch,
                                                                          lengths, tmp_path):
    """Products the passes move out of loops with active rows (hoist_sequence, sort_rows,
    share_packs) state the types their own rules give, so the compiled program saves and
    loads (the loader checks every stated type against its rule) and prints the same."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [batch, T, I])
        L = rg.placeholder(rg.int32, [batch]) if lengths == "fed" else \
            rg.constant(np.array([5, 0, 2], np.int32))
        out, _ = rg.nn.dynamic_rnn(CELLS_TYPED[cell_name](), X, dtype=rg.float64,
                                   sequence_length=L)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.global_variables())
    feed = {X: np.random.default_rng(3).normal(size=(B, T, I))}
    if lengths == "fed":
        feed[L] = np.array([5, 0, 2], np.int32)
    sess = rg.Session(g, seed=7)
    sess.run(grads, feed)
    graph = _optimized_graph(sess)
    loaded = rg.io.read(rg.save(str(tmp_path / "program.rg"), graph)).graph
    assert str(loaded) == str(graph)


def test_a_rows_product_refuses_a_permutation_of_another_batch_and_missing_inputs():
    """RowsMatMul's rule (sort_rows' unsorting product): the result has one row per entry of
    the permutation, which must agree with the stack's batch; its inputs are counted."""
    from rnngraph.errors import ShapeError
    from rnngraph.ops.steps import RowsMatMul
    f32, i32 = np.dtype(np.float32), np.dtype(np.int32)
    x, w = rg.TensorType((5, None, 3), f32), rg.TensorType((3, 2), f32)
    rows = rg.TensorType((5,), i32)
    assert RowsMatMul(unsort=True).infer(x, w, rows, rg.TensorType((4,), i32)).shape == (5, 4, 2)
    with pytest.raises(ShapeError, match="perm has 3 entries for a batch of 4"):
        RowsMatMul(unsort=True).infer(rg.TensorType((5, 4, 3), f32), w, rows,
                                      rg.TensorType((3,), i32))
    with pytest.raises(ShapeError, match="takes 5 inputs"):
        RowsMatMul(packed=True, unsort=True).infer(rg.TensorType((7, 3), f32), w, rows, x)
