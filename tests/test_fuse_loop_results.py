"""The fuse pass keeps a loop body's results pointing at live values.

Two last-axis concats of one fused kernel's outputs each join the kernel in turn (_absorb_joins);
a part the second concat reads that the body also returns (carried, output, residual) must stay
an output of the kernel, and the body's results must name the new kernel's output, not the
merged-away node's (that was a KeyError in the memory planner, or a wrong value).
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg

from gradcheck import check_gradients

B, H, T = 2, 3, 4


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gates(a, b, tanh, sigmoid):
    """u, v and two values computed from both (one fused group)."""
    u = tanh(a * 1.5)
    v = sigmoid(b)
    return u, v, u * v, u - v


def _np_gates(a, b):
    return _gates(a, b, np.tanh, _sigmoid)


def _rg_gates(a, b):
    return _gates(a, b, rg.tanh, rg.sigmoid)


def _check_programs(sess):
    """Every compiled loop body returns values computed in it, and the concats joined a kernel
    (so the test exercises the joins); returns how many kernels hold a joined concat."""
    joined = 0

    def walk(graph):
        nonlocal joined
        produced = {v for n in graph.nodes for v in n.outputs}
        if graph.parent is not None:
            for role, vs in graph.results.items():
                for v in vs:
                    assert v in produced, f"{graph.name} returns {v} ({role}), not computed there"
        for n in graph.nodes:
            for v in n.inputs:
                assert v in produced, f"{n.name} reads {v}, not computed in {graph.name}"
            if n.op.name == "fused":
                joined += sum(op.name == "concat" for op, _ in n.op.instrs)
            for body in n.op.subgraphs():
                walk(body)

    for prog in sess.programs():
        walk(prog.graph)
    return joined


def _while_graph(order):
    """A while_loop whose body concatenates one fused group's values two ways and carries two
    of them on (`order`: which concat comes first in the body)."""
    g = rg.Graph()
    with g.as_default():
        a0 = rg.placeholder(rg.float64, [B, H])
        b0 = rg.placeholder(rg.float64, [B, H])

        def body(i, a, b, c1, c2):
            u, v, w, z = _rg_gates(a, b)
            if order == "uv_first":
                j1 = rg.concat([u, v], 1)
                j2 = rg.concat([w, z], 1)
            else:
                j2 = rg.concat([w, z], 1)
                j1 = rg.concat([u, v], 1)
            return [i + 1, w, z, j1, j2]

        zeros = rg.zeros([B, 2 * H], rg.float64)
        out = rg.while_loop(lambda i, a, b, c1, c2: i < T, body,
                            [rg.constant(0), a0, b0, zeros, zeros])
    return g, (a0, b0), list(out[1:])


def _np_while(a, b):
    c1 = c2 = np.zeros((B, 2 * H))
    for _ in range(T):
        u, v, w, z = _np_gates(a, b)
        a, b, c1, c2 = w, z, np.concatenate([u, v], 1), np.concatenate([w, z], 1)
    return [a, b, c1, c2]


def _check_two_joins(g, fetch, feed, want) -> None:
    """Fused (two concats joined a kernel) equals fuse off and the NumPy reference `want`."""
    sess = rg.Session(g)
    got = sess.run(fetch, feed)
    assert _check_programs(sess) == 2
    plain = rg.Session(g, passes={"fuse": False}).run(fetch, feed)
    for x, p, w in zip(got, plain, want):
        np.testing.assert_allclose(x, p, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(x, w, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("order", ["uv_first", "wz_first"])
def test_two_joined_concats_in_a_while_body_keep_its_carried_results(order):
    g, (a0, b0), fetch = _while_graph(order)
    rng = np.random.default_rng(0)
    feed = {a0: rng.normal(size=(B, H)), b0: rng.normal(size=(B, H))}
    _check_two_joins(g, fetch, feed, _np_while(feed[a0], feed[b0]))


def _scan_graph():
    """lax_scan: the body carries z and outputs w, each also read by the second concat only."""
    g = rg.Graph()
    with g.as_default():
        c0 = rg.placeholder(rg.float64, [B, H])
        xs = rg.placeholder(rg.float64, [T, B, H])

        def step(c, x):
            u, v, w, z = _rg_gates(c + x, c * x)
            return z, [rg.concat([u, v], 1), rg.concat([w, z], 1), w]
        final, ys = rg.lax_scan(step, c0, xs)
    return g, (c0, xs), [final] + list(ys)


def _np_scan(c, xs):
    j1s, j2s, ws = [], [], []
    for x in xs:
        u, v, w, z = _np_gates(c + x, c * x)
        j1s.append(np.concatenate([u, v], 1))
        j2s.append(np.concatenate([w, z], 1))
        ws.append(w)
        c = z
    return [c, np.stack(j1s), np.stack(j2s), np.stack(ws)]


def test_two_joined_concats_in_a_scan_body_keep_its_carried_and_output_results():
    g, (c0, xs), fetch = _scan_graph()
    rng = np.random.default_rng(1)
    feed = {c0: rng.normal(size=(B, H)), xs: rng.normal(size=(T, B, H))}
    _check_two_joins(g, fetch, feed, _np_scan(feed[c0], feed[xs]))


def test_three_joined_concats_keep_every_returned_part():
    """Each join makes a new kernel; the third concat reads the second's kernel, and every part
    the body returns stays an output of the last one."""
    g = rg.Graph()
    with g.as_default():
        c0 = rg.placeholder(rg.float64, [B, H])
        xs = rg.placeholder(rg.float64, [T, B, H])

        def step(c, x):
            u, v, w, z = _rg_gates(c + x, c * x)
            s = w * z
            return s, [rg.concat([u, v], 1), rg.concat([w, z], 1), rg.concat([s, u * 2.0], 1),
                       z]
        final, ys = rg.lax_scan(step, c0, xs)
        fetch = [final] + list(ys)
    rng = np.random.default_rng(2)
    feed = {c0: rng.normal(size=(B, H)), xs: rng.normal(size=(T, B, H))}
    sess = rg.Session(g)
    got = sess.run(fetch, feed)
    assert _check_programs(sess) == 3
    c, want = feed[c0], [[], [], [], []]
    for x in feed[xs]:
        u, v, w, z = _np_gates(c + x, c * x)
        c = w * z
        for out, val in zip(want, [np.concatenate([u, v], 1), np.concatenate([w, z], 1),
                                   np.concatenate([c, u * 2.0], 1), z]):
            out.append(val)
    for x, w in zip(got, [c] + [np.stack(o) for o in want]):
        np.testing.assert_allclose(x, w, rtol=1e-12, atol=1e-13)


def test_while_body_gradients_match_finite_differences():
    def build(a, b):
        def body(i, a, b, c1, c2):
            u, v, w, z = _rg_gates(a, b)
            return [i + 1, w, z, rg.concat([u, v], 1), rg.concat([w, z], 1)]
        zeros = rg.zeros([B, 2 * H], rg.float64)
        out = rg.while_loop(lambda i, a, b, c1, c2: i < T, body,
                            [rg.constant(0), a, b, zeros, zeros])
        return list(out[1:])
    rng = np.random.default_rng(3)
    check_gradients(build, {"a": rng.normal(size=(B, H)), "b": rng.normal(size=(B, H))})


def test_scan_body_gradients_match_finite_differences():
    def build(c, xs):
        def step(c, x):
            u, v, w, z = _rg_gates(c + x, c * x)
            return z, [rg.concat([u, v], 1), rg.concat([w, z], 1), w]
        final, ys = rg.lax_scan(step, c, xs)
        return [final] + list(ys)
    rng = np.random.default_rng(4)
    check_gradients(build, {"c": rng.normal(size=(B, H)), "xs": rng.normal(size=(T, B, H))})


def test_lstm_head_over_two_concats_streamed_and_fused_equals_unfused():
    """The pattern first seen: an LSTM whose head reads concat([y, y * 2]), its outputs streamed
    into the loops (the per-step concats then read one kernel), gradients included."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [4, None, 3], name="X")
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float64)
        logits = rg.layers.dense(rg.concat([y, y * 2.0], -1), 6)
        loss = rg.reduce_sum(logits * logits)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    feed = {X: np.random.default_rng(5).normal(size=(4, 7, 3))}
    runs = []
    for fuse in (True, False):
        sess = rg.Session(g, seed=1, passes={"stream_outputs": "always", "fuse": fuse})
        runs.append(sess.run(fetches, feed))
        _check_programs(sess)
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
