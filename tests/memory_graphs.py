"""Graphs the memory tests share: an LSTM trained through dynamic_rnn, and friends.

The LSTM has a projection (num_proj) so that its per-step output is small next to what the
backward pass saves per step: the loss reads every step's output, and the output stack and its
gradient are [T, ...] tensors that stay on the device whatever the plan (they are not saved
tensors). With num_proj=None they alone are ~3/7 of the residuals, so no budget of a tenth of
the residuals could be met.
"""
from __future__ import annotations

import numpy as np

import rnngraph as rg

# the compiler passes that build whole-sequence stacks; plans under a tight budget turn them off
STACK_PASSES_OFF = {"hoist_sequence": False, "sink_accumulators": False, "sink_outputs": False}


def lstm_graph(batch=32, hidden=128, inputs=16, proj=16, swap_memory=False,
               parallel_iterations=None, cell="lstm", layers=1):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [batch, None, inputs], name="X")
        if cell == "lstm":
            make = lambda: rg.nn.LSTMCell(hidden, num_proj=proj)  # noqa: E731
        elif cell == "gru":
            make = lambda: rg.nn.GRUCell(hidden)  # noqa: E731
        else:
            make = lambda: rg.nn.BasicRNNCell(hidden)  # noqa: E731
        c = make() if layers == 1 else rg.nn.MultiRNNCell([make() for _ in range(layers)])
        outputs, _ = rg.nn.dynamic_rnn(c, X, dtype=rg.float32, swap_memory=swap_memory,
                                       parallel_iterations=parallel_iterations)
        loss = rg.reduce_sum(outputs * outputs)
        grads = rg.gradients(loss, rg.global_variables())
    return g, X, [loss] + grads


def feed(X, T, seed=0):
    batch, _, inputs = X.shape
    return {X: np.random.RandomState(seed).randn(batch, T, inputs).astype(np.float32)}


def residual_outputs(g):
    """The stacked residual outputs of the user's forward loops (what plans are asked about)."""
    out = []
    for n in g.nodes:
        if n.op.name == "loop" and not n.is_gradient:
            out += n.op.out_ports().split(n.outputs)["residual"]
    return out
