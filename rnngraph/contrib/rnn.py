"""tf.contrib.rnn: cells, wrappers and the static unrolling functions."""
from ..nn.cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple,
                        MultiRNNCell, RNNCell)
from ..nn.dropout import DropoutWrapper
from ..nn.rnn import static_bidirectional_rnn, static_rnn
from ..nn.wrappers import DeviceWrapper, OutputProjectionWrapper, ResidualWrapper
from .state_saving import VariableStateSaver, static_state_saving_rnn


class LSTMBlockCell(LSTMCell):
    """tf.contrib.rnn.LSTMBlockCell: TF1's fused-kernel LSTM, computed here as LSTMCell (the
    same math). Its weights are LSTMCell's and BasicLSTMCell's: `kernel` [input + units,
    4 * units] with gate columns i, j, f, o, `bias` [4 * units] (zeros), and with
    use_peephole=True `w_i_diag`, `w_f_diag`, `w_o_diag` [units]; the default name is
    "lstm_cell" (LSTMCell's, as in TF1), so its checkpoints map onto LSTMCell's by name and onto
    BasicLSTMCell's under a "basic_lstm_cell" scope. forget_bias 1.0 is added to the forget
    gate; cell_clip None or <= 0 means no clipping (TF1's -1); the activation is tanh."""

    def __init__(self, num_units, forget_bias=1.0, cell_clip=None, use_peephole=False,
                 dtype=None, reuse=None, name="lstm_cell"):
        clip = cell_clip if cell_clip is not None and cell_clip > 0 else None
        super().__init__(num_units, use_peepholes=use_peephole, cell_clip=clip,
                         forget_bias=forget_bias, state_is_tuple=True, reuse=reuse, name=name,
                         dtype=dtype)


__all__ = ["BasicLSTMCell", "BasicRNNCell", "DeviceWrapper", "DropoutWrapper", "GRUCell",
           "LSTMBlockCell", "LSTMCell", "LSTMStateTuple", "MultiRNNCell",
           "OutputProjectionWrapper", "RNNCell", "ResidualWrapper", "VariableStateSaver",
           "static_bidirectional_rnn", "static_rnn", "static_state_saving_rnn"]
