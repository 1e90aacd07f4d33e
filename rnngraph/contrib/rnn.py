"""tf.contrib.rnn: cells, wrappers and the static unrolling functions."""
from ..nn.cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple,
                        MultiRNNCell, RNNCell)
from ..nn.dropout import DropoutWrapper
from ..nn.rnn import static_bidirectional_rnn, static_rnn
from ..nn.wrappers import DeviceWrapper, OutputProjectionWrapper, ResidualWrapper
from .state_saving import VariableStateSaver, static_state_saving_rnn

__all__ = ["BasicLSTMCell", "BasicRNNCell", "DeviceWrapper", "DropoutWrapper", "GRUCell",
           "LSTMCell", "LSTMStateTuple", "MultiRNNCell", "OutputProjectionWrapper", "RNNCell",
           "ResidualWrapper", "VariableStateSaver", "static_bidirectional_rnn", "static_rnn",
           "static_state_saving_rnn"]
