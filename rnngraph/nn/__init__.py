"""Neural-network building blocks: cells, static/dynamic unrolling, layers, losses, optimizers."""
from .cells import BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple, MultiRNNCell, RNNCell
from .rnn import bidirectional_dynamic_rnn, dynamic_rnn, static_rnn
from .layers import dense
from .losses import accuracy, in_top_k, mean_squared_error, sparse_softmax_cross_entropy
from ..ops import (log_softmax, relu, sigmoid, softmax, sparse_softmax_cross_entropy_with_logits,
                   tanh)

rnn_cell = __import__("types").SimpleNamespace(
    BasicRNNCell=BasicRNNCell, LSTMCell=LSTMCell, GRUCell=GRUCell, MultiRNNCell=MultiRNNCell,
    LSTMStateTuple=LSTMStateTuple, RNNCell=RNNCell)
from .torch_weights import load_torch_weights, torch_gradients, torch_weight_arrays
