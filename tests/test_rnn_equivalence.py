"""static_rnn and dynamic_rnn compute the same function, and its gradients.

Each case builds the two graphs separately (same cell type, same scope, so the same variable
names), loads identical random weights into both sessions, feeds identical inputs, an explicit
initial state and random loss weights, and compares outputs, final states and the gradients of
    loss = sum(outputs * R) + sum_k sum(final_state_k * S_k)
with respect to the inputs, every initial-state tensor and every weight, in float64 at 1e-12.
Covered: every cell type, with and without sequence_length (a row of length 0, unsorted
lengths, lengths all shorter than max_time), batch- and time-major inputs.

Also here: the graph size of dynamic_rnn does not depend on max_time, static_rnn's grows
linearly with it.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.nest import flatten, pack_as

T, B, D = 5, 4, 3
TOL = dict(rtol=1e-12, atol=1e-12)

CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(4),
    "lstm": lambda: rg.nn.LSTMCell(4),
    "lstm_peep_proj_clip": lambda: rg.nn.LSTMCell(4, use_peepholes=True, num_proj=3,
                                                  cell_clip=0.6, proj_clip=0.5,
                                                  forget_bias=0.5),
    "gru": lambda: rg.nn.GRUCell(4),
    "multi_lstm": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(3),
                                              rg.nn.LSTMCell(4, use_peepholes=True, num_proj=2)]),
}

SEQ = {
    None: None,
    "zero_row_unsorted": [3, 0, 5, 1],   # one row of length 0, one of full length
    "all_short": [2, 0, 1, 2],           # max(lengths) < max_time: the loop stops early
}


# --- helpers ---------------------------------------------------------------------------------
flat, pack = flatten, pack_as  # the library's own nesting helpers


def build_rnn(kind, mode, time_major=False, with_seq=False, max_time=T):
    """One graph: placeholders X, initial state, sequence_length, loss weights; the loss and its
    gradients w.r.t. X, the initial state and every variable."""
    g = rg.Graph()
    with g.as_default():
        cell = CELLS[kind]()
        X = rg.placeholder(rg.float64, [max_time, None, D] if time_major else [None, max_time, D],
                           name="X")
        sizes = flat(cell.state_size)
        init_ph = [rg.placeholder(rg.float64, [None, n], name=f"init_{k}")
                   for k, n in enumerate(sizes)]
        init = pack(cell.state_size, init_ph)
        seq = rg.placeholder(rg.int32, [None], name="seq_len") if with_seq else None
        if mode == "static":
            xs = rg.unstack(X if time_major else rg.transpose(X, [1, 0, 2]))
            assert len(xs) == max_time
            outs, final = rg.nn.static_rnn(cell, xs, initial_state=init, sequence_length=seq)
            assert isinstance(outs, list) and len(outs) == max_time
            out_bm = rg.transpose(rg.stack(outs), [1, 0, 2])
        else:
            out, final = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, initial_state=init,
                                           time_major=time_major)
            out_bm = rg.transpose(out, [1, 0, 2]) if time_major else out
        final_flat = flat(final)
        assert type(final) is type(init) and len(final_flat) == len(init_ph)
        R = rg.placeholder(rg.float64, [None, max_time, cell.output_size], name="R")
        S = [rg.placeholder(rg.float64, [None, n], name=f"S_{k}") for k, n in enumerate(sizes)]
        loss = rg.reduce_sum(out_bm * R)
        for s, w in zip(final_flat, S):
            loss = loss + rg.reduce_sum(s * w)
        variables = rg.global_variables()
        grads = rg.gradients(loss, [X] + init_ph + variables)
    return dict(graph=g, cell=cell, X=X, init=init_ph, seq=seq, R=R, S=S, out=out_bm,
                final=final_flat, variables=variables, grads=grads, loss=loss)


def random_weights(variables, seed=1):
    """Random weights keyed by variable name (biases too, so nothing starts at zero)."""
    rng = np.random.default_rng(seed)
    return {v.node.name: 0.5 * rng.standard_normal(v.shape) for v in variables}


def make_session(m, weights):
    sess = rg.Session(m["graph"], seed=0)
    for v in m["variables"]:
        sess.load_variable(v, weights[v.node.name])
    return sess


def feed_for(m, arrays):
    feed = {m["X"]: arrays["X"], m["R"]: arrays["R"]}
    feed.update(zip(m["init"], arrays["init"]))
    feed.update(zip(m["S"], arrays["S"]))
    if m["seq"] is not None:
        feed[m["seq"]] = arrays["seq"]
    return feed


def random_arrays(m, time_major, lengths, seed=2, max_time=T):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, max_time, D))
    return dict(
        X=x.transpose(1, 0, 2).copy() if time_major else x,
        init=[rng.standard_normal((B, v.shape[1])) for v in m["init"]],
        R=rng.standard_normal((B, max_time, m["R"].shape[2])),
        S=[rng.standard_normal((B, s.shape[1])) for s in m["S"]],
        seq=None if lengths is None else np.array(lengths, np.int32),
    )


def run(m, sess, arrays):
    return sess.run([m["out"], m["final"], m["grads"]], feed_for(m, arrays))


# --- equivalence -----------------------------------------------------------------------------
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("seq_case", list(SEQ), ids=[str(k) for k in SEQ])
@pytest.mark.parametrize("kind", list(CELLS))
def test_static_equals_dynamic(kind, seq_case, time_major):
    lengths = SEQ[seq_case]
    st = build_rnn(kind, "static", time_major, lengths is not None)
    dy = build_rnn(kind, "dynamic", time_major, lengths is not None)
    names = [v.node.name for v in st["variables"]]
    assert names == [v.node.name for v in dy["variables"]]
    assert names and all(n.startswith("rnn/") for n in names), names
    weights = random_weights(st["variables"])
    arrays = random_arrays(st, time_major, lengths)
    out_s, fin_s, gr_s = run(st, make_session(st, weights), arrays)
    out_d, fin_d, gr_d = run(dy, make_session(dy, weights), arrays)

    assert out_s.shape == out_d.shape == (B, T, st["cell"].output_size)
    np.testing.assert_allclose(out_d, out_s, **TOL, err_msg="outputs")
    assert len(fin_s) == len(fin_d) == len(st["init"])
    for k, (a, b) in enumerate(zip(fin_s, fin_d)):
        np.testing.assert_allclose(b, a, **TOL, err_msg=f"final state {k}")
    wrt = ["X"] + [f"init_{k}" for k in range(len(st["init"]))] + names
    for name, a, b in zip(wrt, gr_s, gr_d):
        assert a is not None and b is not None, f"no gradient w.r.t. {name}"
        assert np.shape(a) == np.shape(b)
        assert np.any(a != 0), f"gradient w.r.t. {name} is all zero: the test would be vacuous"
        np.testing.assert_allclose(b, a, **TOL, err_msg=f"gradient w.r.t. {name}")

    if lengths is not None:  # the sequence_length semantics, on the dynamic results
        for b, n in enumerate(lengths):
            assert np.all(out_d[b, n:] == 0), f"row {b}: outputs past its length must be zero"
            assert np.all(out_d[b, :n] != 0)
            gx = gr_d[0][:, b] if time_major else gr_d[0][b]
            assert np.all(gx[n:] == 0), f"row {b}: inputs past its length get no gradient"
        zero_row = list(lengths).index(0)
        for k, (s, s0) in enumerate(zip(fin_d, arrays["init"])):
            assert np.array_equal(s[zero_row], s0[zero_row]), "a length-0 row keeps its state"
            # ... and the gradient of the final state flows to the initial state unchanged
            np.testing.assert_array_equal(gr_d[1 + k][zero_row], arrays["S"][k][zero_row])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_static_equals_dynamic_zero_state_and_constant_lengths(kind):
    """dtype= instead of initial_state (zero state), sequence_length as a Python list."""
    lengths = [1, 5, 0, 3]
    results = []
    for mode in ("static", "dynamic"):
        g = rg.Graph()
        with g.as_default():
            cell = CELLS[kind]()
            X = rg.placeholder(rg.float64, [None, T, D])
            if mode == "static":
                outs, final = rg.nn.static_rnn(cell, rg.unstack(rg.transpose(X, [1, 0, 2])),
                                               dtype=rg.float64, sequence_length=lengths)
                out = rg.transpose(rg.stack(outs), [1, 0, 2])
            else:
                out, final = rg.nn.dynamic_rnn(cell, X, sequence_length=lengths,
                                               dtype=rg.float64)
            loss = rg.reduce_sum(rg.square(out)) + sum(rg.reduce_sum(s) for s in flat(final))
            gx = rg.gradients(loss, [X] + rg.global_variables())
            variables = rg.global_variables()
        sess = rg.Session(g, seed=0)
        weights = random_weights(variables, seed=5)
        for v in variables:
            sess.load_variable(v, weights[v.node.name])
        x = np.random.default_rng(3).standard_normal((B, T, D))
        results.append(sess.run([out, flat(final), gx], {X: x}))
    (o1, f1, g1), (o2, f2, g2) = results
    np.testing.assert_allclose(o2, o1, **TOL)
    for a, b in zip(f1 + g1, f2 + g2):
        np.testing.assert_allclose(b, a, **TOL)
    assert np.all(o1[2] == 0) and all(np.all(s[2] == 0) for s in f1), "length 0: zero state"


def test_same_seed_gives_same_initial_weights():
    """The session seed and the variable name fix the initial values: the two graphs start
    from identical weights without any copying."""
    st = build_rnn("lstm", "static")
    dy = build_rnn("lstm", "dynamic")
    s1, s2 = rg.Session(st["graph"], seed=0), rg.Session(dy["graph"], seed=0)
    arrays = random_arrays(st, False, None)
    o1, f1, _ = run(st, s1, arrays)
    o2, f2, _ = run(dy, s2, arrays)
    for a, b in zip(st["variables"], dy["variables"]):
        np.testing.assert_array_equal(s1.read_variable(a), s2.read_variable(b))
    np.testing.assert_allclose(o2, o1, **TOL)


# --- graph size ------------------------------------------------------------------------------
def _node_counts(mode, max_time, kind="lstm"):
    """(forward nodes, forward + gradient nodes) of one RNN over max_time steps."""
    g = rg.Graph()
    with g.as_default():
        cell = CELLS[kind]()
        X = rg.placeholder(rg.float64, [None, max_time, D])
        seq = rg.placeholder(rg.int32, [None])
        if mode == "static":
            outs, final = rg.nn.static_rnn(cell, rg.unstack(rg.transpose(X, [1, 0, 2])),
                                           dtype=rg.float64, sequence_length=seq)
            out = rg.stack(outs)
        else:
            out, final = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64, sequence_length=seq)
        loss = rg.reduce_sum(out) + rg.reduce_sum(final.h)
        forward = g.total_nodes()
        rg.gradients(loss, [X] + rg.global_variables())
        return forward, g.total_nodes()


def test_dynamic_rnn_graph_size_does_not_grow_with_max_time():
    small, large = _node_counts("dynamic", 5), _node_counts("dynamic", 1000)
    assert small == large, (small, large)
    assert small[1] > small[0]  # the gradient added nodes (a backward loop)


def test_static_rnn_graph_size_grows_linearly():
    n5, n10, n20 = (_node_counts("static", t) for t in (5, 10, 20))
    for k in (0, 1):  # forward graph, forward + gradient graph
        per_step = (n10[k] - n5[k]) / 5
        assert per_step > 0
        assert n20[k] - n10[k] == 2 * (n10[k] - n5[k]), (n5, n10, n20)
    # the static graph is bigger than the dynamic one already at T=5
    assert n5[0] > _node_counts("dynamic", 5)[0]


def test_dynamic_rnn_runs_many_steps_with_one_loop_node():
    """T=1000 with a static time dim: the small graph runs and agrees with a tiny recurrence."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, 1000, 1])
        cell = rg.nn.BasicRNNCell(1)
        out, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float64)
    sess = rg.Session(g)
    sess.load_variable(cell.kernel, np.array([[0.5], [0.9]]))
    sess.load_variable(cell.bias, np.array([0.1]))
    x = np.random.default_rng(0).standard_normal((2, 1000, 1))
    o, s = sess.run([out, state], {X: x})
    h = np.zeros((2, 1))
    for t in range(1000):
        h = np.tanh(0.5 * x[:, t] + 0.9 * h + 0.1)
    np.testing.assert_allclose(s, h, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(o[:, -1], s)


@pytest.mark.parametrize("options", [dict(swap_memory=True), dict(parallel_iterations=1),
                                     dict(parallel_iterations=64, swap_memory=True)],
                         ids=["swap_memory", "parallel_1", "parallel_64_swap"])
def test_dynamic_rnn_options_do_not_change_results(options):
    """swap_memory / parallel_iterations trade memory for time; the numbers stay the same."""
    results = []
    for opts in ({}, options):
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float64, [None, T, D])
            seq = rg.placeholder(rg.int32, [None])
            out, final = rg.nn.dynamic_rnn(CELLS["multi_lstm"](), X, sequence_length=seq,
                                           dtype=rg.float64, **opts)
            loss = rg.reduce_sum(rg.square(out)) + rg.reduce_sum(final[1].c)
            grads = rg.gradients(loss, [X] + rg.global_variables())
        x = np.random.default_rng(0).standard_normal((B, T, D))
        results.append(rg.Session(g, seed=0).run([out, grads], {X: x, seq: [3, 0, 5, 1]}))
    (o1, g1), (o2, g2) = results
    # a swapping loop runs every step on the whole batch, the plain one on the active rows
    # only: BLAS may round the last bit of a smaller product differently
    np.testing.assert_allclose(o2, o1, rtol=1e-14, atol=1e-15)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, **TOL)


def test_one_graph_many_runs_and_gradient_calls():
    """Compile once, run many: different batch sizes and lengths through one session give the
    same numbers as fresh graphs; earlier results are not overwritten by later runs; two
    gradients() calls on one forward loop add up to the gradient of the sum."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, T, D])
        seq = rg.placeholder(rg.int32, [None])
        out, final = rg.nn.dynamic_rnn(CELLS["gru"](), X, sequence_length=seq, dtype=rg.float64)
        l1, l2 = rg.reduce_sum(out * out), rg.reduce_sum(final)
        wrt = [X] + rg.global_variables()
        g1, g2, g12 = rg.gradients(l1, wrt), rg.gradients(l2, wrt), rg.gradients(l1 + l2, wrt)
    sess = rg.Session(g, seed=0)
    rng = np.random.default_rng(1)
    runs = [(rng.standard_normal((b, T, D)), rng.integers(0, T + 1, b).astype(np.int32))
            for b in (4, 1, 7, 4)]
    kept = []
    for x, lengths in runs:
        o, a, b, ab = sess.run([out, g1, g2, g12], {X: x, seq: lengths})
        kept.append((o, o.copy()))
        for p, q, r in zip(a, b, ab):
            np.testing.assert_allclose(p + q, r, rtol=1e-12, atol=1e-12)
        fresh = build_rnn("gru", "dynamic", with_seq=True)
        s2 = rg.Session(fresh["graph"], seed=0)
        o_fresh = s2.run(fresh["out"], {fresh["X"]: x, fresh["seq"]: lengths,
                                        fresh["init"][0]: np.zeros((len(x), 4))})
        np.testing.assert_allclose(o, o_fresh, **TOL)
    for o, copy in kept:
        np.testing.assert_array_equal(o, copy)
