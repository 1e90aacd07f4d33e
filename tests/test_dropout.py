"""Dropout (rnngraph/nn/dropout.py): statistics, scaling and masked gradients against NumPy,
noise_shape, keep_prob as a tensor, DropoutWrapper's static == dynamic equivalence (all keep
probabilities, variational or not, float64), gradients under a memory budget, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice


# --- nn.dropout ----------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8])
def test_kept_fraction_scaling_and_gradient(keep):
    n = 1_000_000
    x_val = np.random.default_rng(0).uniform(0.5, 2.0, size=(1000, 1000))
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [1000, 1000])
        w = rg.placeholder(rg.float64, [1000, 1000])
        y = rg.nn.dropout(x, keep_prob=keep, seed=1)
        dx = rg.gradients(rg.reduce_sum(y * w), [x])[0]
    w_val = np.random.default_rng(1).normal(size=(1000, 1000))
    y_val, dx_val = rg.Session(g).run([y, dx], {x: x_val, w: w_val})
    kept = y_val != 0
    se = math.sqrt(keep * (1 - keep) / n)
    assert abs(kept.mean() - keep) < 4 * se
    np.testing.assert_array_equal(y_val[kept], x_val[kept] / keep)      # scaled by 1 / keep
    np.testing.assert_array_equal(dx_val, np.where(kept, w_val / keep, 0.0))   # same mask


def test_rate_is_one_minus_keep_prob_and_keep_one_is_the_identity():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [50, 40])
        a = rg.nn.dropout(x, rate=0.25, seed=3)
        b = rg.nn.dropout(x, keep_prob=0.75, seed=3)
        same = rg.nn.dropout(x, keep_prob=1.0)
    assert same is x
    xs = np.ones((50, 40), np.float32)
    va, vb = rg.Session(g).run([a, b], {x: xs})
    np.testing.assert_array_equal(va, vb)


def test_noise_shape_shares_the_mask_along_axes():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 6, 30])
        y = rg.nn.dropout(x, keep_prob=0.5, noise_shape=[None, 1, 30], seed=2)
    got = rg.Session(g).run(y, {x: np.ones((4, 6, 30), np.float32)})
    kept = got != 0
    assert (kept == kept[:, :1, :]).all()           # one mask for all 6 positions
    assert 0 < kept.mean() < 1 and not (kept[0] == kept[1]).all()   # rows differ


def test_keep_prob_as_placeholder_with_default_trains_and_evaluates_one_graph():
    g = rg.Graph()
    with g.as_default():
        keep = rg.placeholder_with_default(1.0, [])
        x = rg.placeholder(rg.float32, [100, 100])
        y = rg.nn.dropout(x, keep_prob=keep)
    sess = rg.Session(g)
    xs = np.ones((100, 100), np.float32)
    np.testing.assert_array_equal(sess.run(y, {x: xs}), xs)        # the default: evaluate
    dropped = sess.run(y, {x: xs, keep: 0.5})                       # fed: train
    assert set(np.unique(dropped)) == {0.0, 2.0}


def test_different_op_seeds_give_different_masks_and_each_run_a_new_one():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [64, 64])
        a = rg.nn.dropout(x, keep_prob=0.5, seed=1)
        b = rg.nn.dropout(x, keep_prob=0.5, seed=2)
        c = rg.nn.dropout(x, keep_prob=0.5, seed=1)
    sess = rg.Session(g)
    xs = np.ones((64, 64), np.float32)
    va, vb, vc = sess.run([a, b, c], {x: xs})
    assert not np.array_equal(va, vb)
    np.testing.assert_array_equal(va, vc)    # TF1: the same seeds draw the same numbers
    assert not np.array_equal(va, sess.run(a, {x: xs}))


def test_the_mask_multiply_is_fused_with_the_gate_math():
    """Inside a loop body, where the fuse pass works, the masks' compare-and-scale (`less`,
    `div`, `where`) joins the cell's elementwise kernel: no separate node is left for it."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [8, 5, 3])
        cell = rg.nn.rnn_cell.DropoutWrapper(rg.nn.BasicRNNCell(16), output_keep_prob=0.7,
                                             state_keep_prob=0.8, seed=1)
        out, st = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
    sess = rg.Session(g, accelerate=False)
    sess.run(out, {X: np.zeros((8, 5, 3), np.float32)})
    loop = next(n for n in sess.programs()[0].graph.nodes if n.op.name == "loop")
    body_ops = [n.op.name for n in loop.op.body.nodes]
    fused = [n for n in loop.op.body.nodes if n.op.name == "fused"]
    inner = {type(i).name for f in fused for i, _ in f.op.instrs}
    assert {"where", "less", "tanh"} <= inner, (body_ops, inner)
    assert "where" not in body_ops and "less" not in body_ops, body_ops


# --- DropoutWrapper: static == dynamic -------------------------------------------------------------
KEEPS = [dict(input_keep_prob=0.7), dict(output_keep_prob=0.6), dict(state_keep_prob=0.8),
         dict(input_keep_prob=0.7, output_keep_prob=0.6, state_keep_prob=0.8)]


def _rnn(unroll, cell_kind, keeps, variational, seed=3):
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(5)
        X = rg.placeholder(rg.float64, [4, 5, 3])
        if cell_kind == "lstm":
            base = rg.nn.LSTMCell(6, dtype=rg.float64)
        elif cell_kind == "gru":
            base = rg.nn.GRUCell(6, dtype=rg.float64)
        else:
            base = rg.nn.BasicRNNCell(6, dtype=rg.float64)
        cell = rg.nn.rnn_cell.DropoutWrapper(base, variational_recurrent=variational,
                                             dtype=rg.float64, seed=seed, **keeps)
        if unroll == "static":
            outs, state = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), dtype=rg.float64)
            out = rg.stack(outs, axis=1)
        else:
            out, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
        flat_state = list(state) if isinstance(state, tuple) else [state]
        loss = rg.reduce_sum(out * out) + rg.add_n([rg.reduce_sum(s) for s in flat_state])
        grads = rg.gradients(loss, [X] + rg.trainable_variables())
    return g, X, [out] + flat_state + grads


X_VAL = np.random.default_rng(7).normal(size=(4, 5, 3))


@pytest.mark.parametrize("variational", [False, True])
@pytest.mark.parametrize("keeps", KEEPS, ids=["input", "output", "state", "all"])
@pytest.mark.parametrize("cell_kind", ["basic", "lstm", "gru"])
def test_static_and_dynamic_drop_the_same_units_outputs_and_gradients(cell_kind, keeps,
                                                                        variational):
    results = {}
    for unroll in ("static", "dynamic"):
        g, X, fetches = _rnn(unroll, cell_kind, keeps, variational)
        sess = rg.Session(g)
        results[unroll] = [sess.run(fetches, {X: X_VAL}) for _ in range(2)]   # two runs
    for run in range(2):
        for a, b in zip(results["static"][run], results["dynamic"][run]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the masks are really there: a second run draws new ones
    assert not np.allclose(results["dynamic"][0][0], results["dynamic"][1][0])


def test_variational_masks_are_shared_across_steps_and_per_step_masks_are_not():
    for variational in (True, False):
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float64, [3, 6, 40])
            cell = rg.nn.rnn_cell.DropoutWrapper(rg.nn.BasicRNNCell(4, dtype=rg.float64),
                                                 input_keep_prob=0.5, dtype=rg.float64,
                                                 variational_recurrent=variational)
            seen = []

            class Spy(rg.nn.BasicRNNCell):
                def call(self, inputs, state):
                    seen.append(inputs)
                    return super().call(inputs, state)
            cell._cell = Spy(4, dtype=rg.float64)
            outs, _ = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), dtype=rg.float64)
        dropped = rg.Session(g).run(seen, {X: np.ones((3, 6, 40))})
        masks = [d != 0 for d in dropped]
        same = all((m == masks[0]).all() for m in masks)
        assert same == variational


def test_lstm_memory_is_not_dropped_by_default():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [200, 1, 2])
        cell = rg.nn.rnn_cell.DropoutWrapper(rg.nn.LSTMCell(50, dtype=rg.float64),
                                             state_keep_prob=0.5)
        _, st = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
    sess = rg.Session(g)
    c, h = sess.run([st.c, st.h], {X: np.ones((200, 1, 2))})
    assert (c != 0).all()                    # c untouched
    assert abs((h == 0).mean() - 0.5) < 4 * math.sqrt(0.25 / h.size)


# --- gradients under a memory budget ----------------------------------------------------------------
@pytest.fixture(scope="module")
def budget_setup():
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(1)
        X = rg.placeholder(rg.float64, [8, None, 4], name="X")
        cell = rg.nn.rnn_cell.DropoutWrapper(rg.nn.LSTMCell(32, dtype=rg.float64), 0.8, 0.7,
                                             0.9, seed=4)
        out, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.trainable_variables())
    fd = {X: np.random.default_rng(0).normal(size=(8, 60, 4))}
    return g, X, fetches, fd


@pytest.mark.parametrize("strategy", ["offload", "recompute"])
def test_gradients_under_a_memory_budget_equal_the_unplanned_ones_with_dropout(budget_setup,
                                                                             strategy):
    g, X, fetches, fd = budget_setup
    free = rg.Session(g, device=SimulatedDevice())
    plan0 = free.memory_plan(fetches, {X: fd[X].shape})
    budget = plan0.keep_all_peak // 2
    sess = rg.Session(g, device=SimulatedDevice(), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, {X: fd[X].shape})
    placements = {s.placement for s in plan.saved}
    assert plan.fits and ("host" if strategy == "offload" else "recompute") in placements
    lean = rg.Session(g, device=SimulatedDevice(), passes=plan.passes)   # (the same program)
    for _ in range(2):   # two runs: the run counter moves on identically in all sessions
        want = lean.run(fetches, fd)
        got = sess.run(fetches, fd)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    assert sess.last_run_report.peak_bytes <= budget


# --- bad input ----------------------------------------------------------------------------------------
def test_bad_input_names_the_argument_and_the_line():
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [4, 3])
        for bad in (0.0, 1.5, -0.1):
            with pytest.raises(ValueError, match=r"keep_prob must be in \(0, 1\].*test_dropout"):
                rg.nn.dropout(x, keep_prob=bad)
        with pytest.raises(ValueError, match=r"rate must be in \[0, 1\).*test_dropout"):
            rg.nn.dropout(x, rate=1.0)
        with pytest.raises(ValueError, match="exactly one of keep_prob and rate"):
            rg.nn.dropout(x, keep_prob=0.5, rate=0.5)
        with pytest.raises(ValueError, match=r"noise_shape \[4, 2\] does not broadcast.*test_drop"):
            rg.nn.dropout(x, keep_prob=0.5, noise_shape=[4, 2])
        with pytest.raises(ValueError, match=r"noise_shape .* does not broadcast"):
            rg.nn.dropout(x, keep_prob=0.5, noise_shape=[4])
        with pytest.raises(TypeError, match=r"seed must be an int.*test_dropout"):
            rg.nn.dropout(x, keep_prob=0.5, seed=0.5)
        with pytest.raises(TypeError, match="x must be floating point"):
            rg.nn.dropout(rg.placeholder(rg.int32, [3]), keep_prob=0.5)
        cell = rg.nn.BasicRNNCell(3)
        for arg in ("input_keep_prob", "output_keep_prob", "state_keep_prob"):
            with pytest.raises(ValueError, match=rf"{arg} must be in \(0, 1\].*test_dropout"):
                rg.nn.rnn_cell.DropoutWrapper(cell, **{arg: 0.0})
        with pytest.raises(ValueError, match="variational_recurrent=True needs dtype"):
            rg.nn.rnn_cell.DropoutWrapper(cell, 0.5, variational_recurrent=True)
        with pytest.raises(TypeError, match="cell must be an RNNCell"):
            rg.nn.rnn_cell.DropoutWrapper("lstm", 0.5)


# --- Keras's dropout= / recurrent_dropout= on the cells -------------------------------------------
def test_keras_dropout_keywords_against_numpy():
    """BasicRNNCell(dropout=0.3, recurrent_dropout=0.4): one input mask and one recurrent mask
    per sequence (the same at every step), the recurrent one on h where the recurrent product
    reads it; the uniforms those masks come from are the documented stream of the cell's seed
    pair (salted 'input' / 'recurrent', step 0, run 1)."""
    from rnngraph.ops import random as R
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [4, 5, 3])
        cell = rg.nn.BasicRNNCell(6, dtype=rg.float64, dropout=0.3, recurrent_dropout=0.4)
        out, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
    sess = rg.Session(g)
    x = np.random.default_rng(3).normal(size=(4, 5, 3))
    got = sess.run(out, {X: x})
    kernel, bias = (sess.read_variable(v) for v in cell.variables)
    gs, os_ = cell._rg_keras[2]
    u_in = R.draw(np, "uniform", (4, 3), np.float64, R.key_of(gs, R.salted(os_, "input")), 0, 1)
    u_rec = R.draw(np, "uniform", (4, 6), np.float64,
                   R.key_of(gs, R.salted(os_, "recurrent")), 0, 1)
    h = np.zeros((4, 6))
    for t in range(5):
        xi = np.where(u_in < 0.7, x[:, t] / 0.7, 0.0)
        hr = np.where(u_rec < 0.6, h / 0.6, 0.0)
        h = np.tanh(xi @ kernel[:3] + bias + hr @ kernel[3:])
        np.testing.assert_allclose(got[:, t], h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [rg.nn.BasicRNNCell, rg.nn.LSTMCell, rg.nn.GRUCell])
def test_keras_keywords_static_equals_dynamic(make):
    res = []
    for unroll in ("static", "dynamic"):
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float64, [4, 5, 3])
            cell = make(6, dtype=rg.float64, dropout=0.3, recurrent_dropout=0.4)
            if unroll == "static":
                outs, _ = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), dtype=rg.float64)
                out = rg.stack(outs, axis=1)
            else:
                out, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
            grads = rg.gradients(rg.reduce_sum(out * out), rg.trainable_variables())
        res.append(rg.Session(g).run([out] + grads, {X: X_VAL[:, :, :3][:, :5]}))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_keras_rates_may_be_tensors_and_bad_rates_are_named():
    g = rg.Graph()
    with g.as_default():
        rate = rg.placeholder_with_default(0.0, [])
        X = rg.placeholder(rg.float32, [2, 3, 4])
        out = rg.nn.dynamic_rnn(rg.nn.GRUCell(5, dropout=rate, recurrent_dropout=rate), X,
                                dtype=rg.float32)[0]
        with pytest.raises(ValueError, match=r"GRUCell: recurrent_dropout must be a rate in "
                                             r"\[0, 1\).*test_dropout"):
            rg.nn.GRUCell(5, recurrent_dropout=1.0)
        with pytest.raises(ValueError, match=r"dropout must be a rate"):
            rg.nn.LSTMCell(5, dropout=-0.1)
    sess = rg.Session(g)
    xs = np.ones((2, 3, 4), np.float32)
    a, b = sess.run(out, {X: xs}), sess.run(out, {X: xs})
    np.testing.assert_array_equal(a, b)          # rate 0 by default: nothing dropped
    assert not np.array_equal(a, sess.run(out, {X: xs, rate: 0.5}))
