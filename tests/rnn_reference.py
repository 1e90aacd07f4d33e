"""An independent NumPy implementation of the RNN cell equations (no rnngraph import).

Written from the equations (TensorFlow 1.x conventions), one batch row at a time with explicit
Python loops over time, so that it shares no code path with the library:

  BasicRNN  h' = tanh([x, h] @ K + b)                                    output = state = h'
  LSTM      [i, j, f, o] = [x, h] @ K + b          (four column blocks of width num_units)
            peepholes:  i += w_i * c,  f += w_f * c
            c' = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j),  clipped to +-cell_clip
            peepholes:  o += w_o * c'
            m  = sigmoid(o) * tanh(c');  projection: m = m @ P, clipped to +-proj_clip
            state = (c', m), output = m
  GRU       [r, u] = sigmoid([x, h] @ Wg + bg);  c = tanh([x, r * h] @ Wc + bc)
            h' = u * h + (1 - u) * c                                     output = state = h'
  Multi     layer k's output is layer k+1's input; state = tuple of the layers' states.

sequence_length semantics: row b runs steps 0 .. L_b - 1; its outputs at steps >= L_b are zero
and its final state is its state after step L_b - 1 (the initial state when L_b = 0).

Weights are passed as plain dicts of arrays (read out of a session by the tests).
"""
from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class RefBasicRNN:
    def __init__(self, kernel, bias):
        self.kernel, self.bias = np.asarray(kernel), np.asarray(bias)

    def zero_state(self, batch):
        return np.zeros((batch, self.kernel.shape[1]))

    def step(self, x, h):
        h_new = np.tanh(np.concatenate([x, h], axis=-1) @ self.kernel + self.bias)
        return h_new, h_new


class RefLSTM:
    def __init__(self, kernel, bias, forget_bias=1.0, w_i=None, w_f=None, w_o=None,
                 proj=None, cell_clip=None, proj_clip=None):
        self.kernel, self.bias = np.asarray(kernel), np.asarray(bias)
        self.units = self.kernel.shape[1] // 4
        self.forget_bias = forget_bias
        self.w_i, self.w_f, self.w_o = w_i, w_f, w_o
        self.proj = proj
        self.cell_clip, self.proj_clip = cell_clip, proj_clip

    def zero_state(self, batch):
        out = self.proj.shape[1] if self.proj is not None else self.units
        return (np.zeros((batch, self.units)), np.zeros((batch, out)))

    def step(self, x, state):
        c, h = state
        n = self.units
        z = np.concatenate([x, h], axis=-1) @ self.kernel + self.bias
        i, j, f, o = z[..., :n], z[..., n:2 * n], z[..., 2 * n:3 * n], z[..., 3 * n:]
        if self.w_i is not None:
            i = i + self.w_i * c
            f = f + self.w_f * c
        c_new = sigmoid(f + self.forget_bias) * c + sigmoid(i) * np.tanh(j)
        if self.cell_clip is not None:
            c_new = np.clip(c_new, -self.cell_clip, self.cell_clip)
        if self.w_o is not None:
            o = o + self.w_o * c_new
        m = sigmoid(o) * np.tanh(c_new)
        if self.proj is not None:
            m = m @ self.proj
            if self.proj_clip is not None:
                m = np.clip(m, -self.proj_clip, self.proj_clip)
        return m, (c_new, m)


class RefGRU:
    def __init__(self, gate_kernel, gate_bias, cand_kernel, cand_bias):
        self.gk, self.gb = np.asarray(gate_kernel), np.asarray(gate_bias)
        self.ck, self.cb = np.asarray(cand_kernel), np.asarray(cand_bias)
        self.units = self.ck.shape[1]

    def zero_state(self, batch):
        return np.zeros((batch, self.units))

    def step(self, x, h):
        n = self.units
        g = sigmoid(np.concatenate([x, h], axis=-1) @ self.gk + self.gb)
        r, u = g[..., :n], g[..., n:]
        c = np.tanh(np.concatenate([x, r * h], axis=-1) @ self.ck + self.cb)
        h_new = u * h + (1.0 - u) * c
        return h_new, h_new


class RefMulti:
    def __init__(self, cells):
        self.cells = list(cells)

    def zero_state(self, batch):
        return tuple(c.zero_state(batch) for c in self.cells)

    def step(self, x, state):
        new = []
        for cell, s in zip(self.cells, state):
            x, s = cell.step(x, s)
            new.append(s)
        return x, tuple(new)


# --- nested states ---------------------------------------------------------------------------
def _map(fn, s):
    if isinstance(s, tuple):
        return tuple(_map(fn, x) for x in s)
    return fn(s)


def flat_state(s) -> list:
    if isinstance(s, tuple):
        return [leaf for x in s for leaf in flat_state(x)]
    return [s]


def _row(s, b):
    return _map(lambda a: a[b:b + 1], s)


def _concat_rows(rows):
    if isinstance(rows[0], tuple):
        return tuple(_concat_rows([r[k] for r in rows]) for k in range(len(rows[0])))
    return np.concatenate(rows, axis=0)


def run_rnn(cell, x, initial_state=None, sequence_length=None):
    """Run `cell` over batch-major x [batch, time, depth], row by row, step by step.

    Returns (outputs [batch, time, output_size], final_state) with sequence_length semantics.
    """
    x = np.asarray(x, dtype=np.float64)
    batch, time = x.shape[:2]
    if initial_state is None:
        initial_state = cell.zero_state(batch)
    lengths = [time] * batch if sequence_length is None else [int(n) for n in sequence_length]
    out_rows, state_rows = [], []
    for b in range(batch):
        state = _row(initial_state, b)
        outs = []
        for t in range(time):
            if t < lengths[b]:
                y, state = cell.step(x[b:b + 1, t], state)
                outs.append(y)
            else:
                outs.append(None)
        size = next((o.shape[-1] for o in outs if o is not None), None)
        if size is None:  # a row of length 0: learn the output size from one throwaway step
            size = cell.step(x[b:b + 1, 0], _row(initial_state, b))[0].shape[-1]
        out_rows.append(np.stack([o[0] if o is not None else np.zeros(size) for o in outs]))
        state_rows.append(state)
    return np.stack(out_rows), _concat_rows(state_rows)


def run_reversed(cell, x, sequence_length, initial_state=None):
    """The backward direction of a bidirectional RNN: each row's valid part [0, L) reversed,
    run forward, and the outputs put back in input order (zeros past L)."""
    x = np.asarray(x, dtype=np.float64)
    batch, time = x.shape[:2]
    out_rows, state_rows = [], []
    for b in range(batch):
        n = int(sequence_length[b])
        rev = x[b:b + 1].copy()
        rev[0, :n] = x[b, :n][::-1]
        init = None if initial_state is None else _row(initial_state, b)
        out, state = run_rnn(cell, rev, init, [n])
        back = np.zeros_like(out)
        back[0, :n] = out[0, :n][::-1]
        out_rows.append(back)
        state_rows.append(state)
    return np.concatenate(out_rows), _concat_rows(state_rows)
