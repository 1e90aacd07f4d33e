"""tf.nn.rnn_cell: the cells and wrappers under the names TF1 code uses
(`rg.nn.rnn_cell.BasicLSTMCell`, ...)."""
from .cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple, MultiRNNCell,
                    RNNCell)
from .dropout import DropoutWrapper
from .wrappers import DeviceWrapper, OutputProjectionWrapper, ResidualWrapper

__all__ = ["BasicLSTMCell", "BasicRNNCell", "DeviceWrapper", "DropoutWrapper", "GRUCell",
           "LSTMCell", "LSTMStateTuple", "MultiRNNCell", "OutputProjectionWrapper", "RNNCell",
           "ResidualWrapper"]
