"""Neural-network building blocks: cells, static/dynamic unrolling, layers, losses, optimizers."""
from .cells import BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple, MultiRNNCell, RNNCell
from .rnn import bidirectional_dynamic_rnn, dynamic_rnn, static_rnn

rnn_cell = __import__("types").SimpleNamespace(
    BasicRNNCell=BasicRNNCell, LSTMCell=LSTMCell, GRUCell=GRUCell, MultiRNNCell=MultiRNNCell,
    LSTMStateTuple=LSTMStateTuple, RNNCell=RNNCell)
