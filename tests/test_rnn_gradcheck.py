"""Backpropagation through time in the dynamic loop against central finite differences.

The loss uses a subset of the outputs (like the book's Figure 14-5: only the last three
outputs), rows have a sequence_length (one of length 0), and the finite differences perturb
the inputs, the initial state and every weight (through Session.load_variable). Besides the
numbers, the structure of BPTT is asserted exactly:
  - inputs at steps whose outputs the loss does not use still get gradient through the state;
  - inputs after the last step the loss uses, and inputs past a row's length, get exactly 0;
  - a row none of whose used outputs lies within its length gets exactly 0 everywhere.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.nest import flatten, pack_as

EPS = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-8)
B, T, D = 4, 6, 2

CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(3),
    "lstm_peep_proj_clip": lambda: rg.nn.LSTMCell(3, use_peepholes=True, num_proj=2,
                                                  cell_clip=0.7),
    "gru": lambda: rg.nn.GRUCell(3),
    "multi_lstm": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(2), rg.nn.LSTMCell(3)]),
}


flat, pack = flatten, pack_as  # the library's own nesting helpers


def central_difference(f, arr, after=None):
    """d f() / d arr by central differences; f reads `arr` (perturbed in place)."""
    grad = np.zeros_like(arr)
    view = arr.reshape(-1)
    for i in range(view.size):
        orig = view[i]
        view[i] = orig + EPS
        plus = f()
        view[i] = orig - EPS
        minus = f()
        view[i] = orig
        grad.reshape(-1)[i] = (plus - minus) / (2 * EPS)
    if after is not None:
        after()
    return grad


class Model:
    """dynamic_rnn with an explicit initial state; loss = sum(outputs[:, steps] * R)
    (+ sum(final_state_k * S_k) when use_state)."""

    def __init__(self, kind, steps=slice(-3, None), with_seq=True, use_state=False,
                 time_major=False):
        self.graph = g = rg.Graph()
        self.time_major = time_major
        with g.as_default():
            self.cell = cell = CELLS[kind]()
            self.X = rg.placeholder(rg.float64, [T, None, D] if time_major else [None, T, D])
            self.init = [rg.placeholder(rg.float64, [None, n]) for n in flat(cell.state_size)]
            self.seq = rg.placeholder(rg.int32, [None]) if with_seq else None
            out, final = rg.nn.dynamic_rnn(cell, self.X, sequence_length=self.seq,
                                           initial_state=pack(cell.state_size, self.init),
                                           time_major=time_major)
            if time_major:
                out = rg.transpose(out, [1, 0, 2])
            used = out[:, steps]  # the loss sees only these outputs
            self.R = rg.placeholder(rg.float64, used.shape)
            self.loss = rg.reduce_sum(used * self.R)
            self.S = []
            if use_state:
                for s in flat(final):
                    w = rg.placeholder(rg.float64, [None, s.shape[1]])
                    self.S.append(w)
                    self.loss = self.loss + rg.reduce_sum(s * w)
            self.variables = rg.global_variables()
            self.grads = rg.gradients(self.loss, [self.X] + self.init + self.variables)
        self.sess = rg.Session(g, seed=4)
        rng = np.random.default_rng(8)
        for v in self.variables:  # random biases and peepholes too
            self.sess.load_variable(v, 0.6 * rng.standard_normal(v.shape))
        self.weights = [self.sess.read_variable(v).copy() for v in self.variables]
        n_used = len(range(T)[steps])
        x = rng.standard_normal((B, T, D))
        self.arrays = dict(
            x=x.transpose(1, 0, 2).copy() if time_major else x,
            init=[rng.standard_normal((B, p.shape[1])) for p in self.init],
            R=rng.standard_normal((B, n_used, cell.output_size)),
            S=[rng.standard_normal((B, s.shape[1])) for s in self.S])

    def feed(self, lengths=None):
        a = self.arrays
        f = {self.X: a["x"], self.R: a["R"], **dict(zip(self.init, a["init"])),
             **dict(zip(self.S, a["S"]))}
        if self.seq is not None:
            f[self.seq] = np.asarray(lengths, np.int32)
        return f

    def symbolic(self, lengths=None):
        grads = self.sess.run(self.grads, self.feed(lengths))
        assert all(g is not None for g in grads)
        gx = grads[0].transpose(1, 0, 2) if self.time_major else grads[0]
        return gx, grads[1:1 + len(self.init)], grads[1 + len(self.init):]

    def numeric(self, lengths=None):
        loss = lambda: float(self.sess.run(self.loss, self.feed(lengths)))  # noqa: E731
        gx = central_difference(loss, self.arrays["x"])
        if self.time_major:
            gx = gx.transpose(1, 0, 2)
        g_init = [central_difference(loss, s) for s in self.arrays["init"]]
        g_w = []
        for v, w in zip(self.variables, self.weights):
            def loss_w(v=v, w=w):
                self.sess.load_variable(v, w)
                return loss()
            g_w.append(central_difference(loss_w, w,
                                          after=lambda v=v, w=w: self.sess.load_variable(v, w)))
        return gx, g_init, g_w


def assert_matches(model, sym, num):
    names = ["inputs"] + [f"initial state {k}" for k in range(len(sym[1]))] + \
            [v.node.name for v in model.variables]
    for name, a, b in zip(names, [sym[0]] + sym[1] + sym[2], [num[0]] + num[1] + num[2]):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, **FD_TOL, err_msg=f"gradient w.r.t. {name}")


@pytest.mark.parametrize("kind", list(CELLS))
def test_bptt_last_three_outputs_with_sequence_length(kind):
    lengths = [6, 0, 4, 2]  # unsorted; row 3 ends before the last three steps
    m = Model(kind)
    sym = m.symbolic(lengths)
    assert_matches(m, sym, m.numeric(lengths))
    gx, g_init, g_w = sym
    # gradient reaches the inputs of steps 0..2, whose outputs the loss never reads
    assert np.all(np.abs(gx[0, :3]).sum(-1) > 0)
    assert np.all(np.abs(gx[2, :3]).sum(-1) > 0)
    assert all(np.abs(g[0]).sum() > 0 for g in g_init)  # and the initial state
    # inputs past a row's length: exactly zero
    for b, n in enumerate(lengths):
        assert np.all(gx[b, n:] == 0)
    # rows 1 (length 0) and 3 (length 2) have no used output within their length: all zero
    for b in (1, 3):
        assert np.all(gx[b] == 0)
        assert all(np.all(g[b] == 0) for g in g_init)
    assert all(np.any(g != 0) for g in g_w)


def test_bptt_with_final_state_time_major_no_sequence_length():
    m = Model("lstm_peep_proj_clip", steps=slice(1, 4), with_seq=False, use_state=True,
              time_major=True)
    sym = m.symbolic()
    assert_matches(m, sym, m.numeric())
    assert np.all(np.abs(sym[0]).sum(-1) > 0)  # the final state reads every input


@pytest.mark.parametrize("kind", ["basic", "multi_lstm"])
def test_inputs_after_the_last_used_output_get_exactly_zero_gradient(kind):
    """The loss reads outputs at steps k..m only (k=2, m=3, T=6): inputs at steps > m get an
    exact 0; inputs at steps < k still get gradient through the state."""
    k, last = 2, 3
    m = Model(kind, steps=slice(k, last + 1))
    lengths = [6, 5, 3, 1]
    sym = m.symbolic(lengths)
    assert_matches(m, sym, m.numeric(lengths))
    gx = sym[0]
    assert np.all(gx[:, last + 1:] == 0)
    for b, n in enumerate(lengths):
        assert np.all(gx[b, n:] == 0)
        if n > k:  # this row has a used output: every earlier input contributes
            assert np.all(np.abs(gx[b, :min(n, last + 1)]).sum(-1) > 0)
    assert np.all(gx[3] == 0)  # row 3 (length 1) ends before step k


def test_weight_gradient_is_the_sum_over_time_steps():
    """BasicRNN, kernel gradient = sum over steps of [x_t, h_{t-1}]^T delta_t; checked against
    a hand-written NumPy backward pass (not only finite differences)."""
    m = Model("basic", steps=slice(None), with_seq=False)
    gx, g_init, (g_kernel, g_bias) = m.symbolic()
    K, b = m.weights
    x, h0, R = m.arrays["x"], m.arrays["init"][0], m.arrays["R"]
    hs, h = [h0], h0
    for t in range(T):
        h = np.tanh(np.concatenate([x[:, t], h], 1) @ K + b)
        hs.append(h)
    dK, db, dh = np.zeros_like(K), np.zeros_like(b), np.zeros_like(h0)
    dxs = np.zeros_like(x)
    for t in reversed(range(T)):
        delta = (dh + R[:, t]) * (1 - hs[t + 1] ** 2)
        dK += np.concatenate([x[:, t], hs[t]], 1).T @ delta
        db += delta.sum(0)
        dz = delta @ K.T
        dxs[:, t], dh = dz[:, :D], dz[:, D:]
    np.testing.assert_allclose(g_kernel, dK, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_bias, db, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, dxs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_init[0], dh, rtol=1e-12, atol=1e-12)


def test_bidirectional_gradients_match_finite_differences():
    lengths = np.array([3, 0, 4], np.int32)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, 4, 2])
        seq = rg.placeholder(rg.int32, [None])
        (o_fw, o_bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.GRUCell(2), rg.nn.BasicRNNCell(3), X, sequence_length=seq, dtype=rg.float64)
        R1 = rg.placeholder(rg.float64, [None, 4, 2])
        R2 = rg.placeholder(rg.float64, [None, 4, 3])
        loss = rg.reduce_sum(o_fw * R1) + rg.reduce_sum(o_bw * R2) + rg.reduce_sum(s_bw)
        gx, = rg.gradients(loss, X)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 2))
    feed = {X: x, seq: lengths, R1: rng.standard_normal((3, 4, 2)),
            R2: rng.standard_normal((3, 4, 3))}
    sess = rg.Session(g, seed=2)
    sym = sess.run(gx, feed)
    num = central_difference(lambda: float(sess.run(loss, feed)), x)
    np.testing.assert_allclose(sym, num, **FD_TOL)
    for b, n in enumerate(lengths):
        assert np.all(sym[b, n:] == 0) and np.all(np.abs(sym[b, :n]).sum(-1) > 0)


def _all_empty_graph():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, 3, 2])
        h0 = rg.placeholder(rg.float64, [None, 3])
        seq = rg.placeholder(rg.int32, [None])
        out, state = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(3), X, sequence_length=seq,
                                       initial_state=h0)
        loss = rg.reduce_sum(out) + rg.reduce_sum(state * state)
    return g, X, h0, seq, out, state, loss


def test_all_rows_of_length_zero_forward_and_state_gradient():
    """Every length 0: the loop runs no step; outputs are zero, the state passes through and
    d loss / d h0 = 2 h0."""
    g, X, h0, seq, out, state, loss = _all_empty_graph()
    with g.as_default():
        g_h0, = rg.gradients(loss, h0)
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3))
    o, s, gh = rg.Session(g).run([out, state, g_h0], {X: x, h0: h, seq: [0, 0]})
    assert o.shape == (2, 3, 3) and np.all(o == 0)
    np.testing.assert_array_equal(s, h)
    np.testing.assert_array_equal(gh, 2 * h)


def test_all_rows_of_length_zero_input_and_weight_gradients_are_zero():
    """The backward loop runs zero steps: the input and weight gradients are exact zeros (it
    used to fail with 'cannot run a loop over a sequence of length 0')."""
    g, X, h0, seq, out, state, loss = _all_empty_graph()
    with g.as_default():
        grads = rg.gradients(loss, [X] + rg.global_variables())
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3))
    g_x, g_k, g_b = rg.Session(g).run(grads, {X: x, h0: h, seq: [0, 0]})
    assert g_x.shape == x.shape and np.all(g_x == 0)
    assert np.all(g_k == 0) and np.all(g_b == 0)


def test_zero_time_steps():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float64, [None, None, 2])
        h0 = rg.placeholder(rg.float64, [None, 3])
        out, state = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(3), X, initial_state=h0)
        gx, gh = rg.gradients(rg.reduce_sum(state * state), [X, h0])
    h = np.random.default_rng(0).standard_normal((2, 3))
    o, s, g_x, g_h = rg.Session(g).run([out, state, gx, gh], {X: np.zeros((2, 0, 2)), h0: h})
    assert o.shape == (2, 0, 3) and g_x.shape == (2, 0, 2)
    np.testing.assert_array_equal(s, h)
    np.testing.assert_array_equal(g_h, 2 * h)
