"""tf.contrib.legacy_seq2seq basics: rnn_decoder, basic_rnn_seq2seq, sequence_loss_by_example
and sequence_loss, with TF1's variable scopes ("rnn_decoder", "basic_rnn_seq2seq")."""
from __future__ import annotations

import copy

import numpy as np

from ..nn import scopes
from ..nn.losses import legacy_sequence_loss as sequence_loss
from ..nn.losses import sequence_loss_by_example
from ..nn.rnn import _check_cell, static_rnn


def rnn_decoder(decoder_inputs, initial_state, cell, loop_function=None, scope=None):
    """Run `cell` over a list of decoder inputs from `initial_state`. With `loop_function`,
    step i > 0 takes loop_function(previous output, i) instead of decoder_inputs[i].
    Returns (outputs, final state)."""
    _check_cell(cell)
    if not decoder_inputs:
        raise ValueError("rnn_decoder: decoder_inputs must be a non-empty list")
    with scopes.variable_scope(scope or "rnn_decoder"):
        state, outputs, prev = initial_state, [], None
        for i, inp in enumerate(decoder_inputs):
            if loop_function is not None and prev is not None:
                with scopes.variable_scope("loop_function", reuse=True):
                    inp = loop_function(prev, i)
            if i > 0:
                scopes.get_variable_scope().reuse_variables()
            output, state = cell(inp, state)
            outputs.append(output)
            if loop_function is not None:
                prev = output
    return outputs, state


def basic_rnn_seq2seq(encoder_inputs, decoder_inputs, cell, dtype=np.float32, scope=None):
    """Encode `encoder_inputs` with a copy of `cell` (static_rnn), then decode from its final
    state with `cell` (rnn_decoder). Returns (decoder outputs, final state)."""
    _check_cell(cell)
    if cell.built:
        raise ValueError("basic_rnn_seq2seq: the cell has been called already; give a fresh "
                         "cell (it is copied for the encoder)")
    with scopes.variable_scope(scope or "basic_rnn_seq2seq"):
        enc_cell = copy.deepcopy(cell)
        _, enc_state = static_rnn(enc_cell, encoder_inputs, dtype=dtype)
        return rnn_decoder(decoder_inputs, enc_state, cell)


__all__ = ["basic_rnn_seq2seq", "rnn_decoder", "sequence_loss", "sequence_loss_by_example"]
