"""Neural-network building blocks: cells, static/dynamic unrolling, layers, losses, optimizers."""
from .cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple, MultiRNNCell,
                    RNNCell)
from .scopes import (AUTO_REUSE, VariableScope, device, get_variable, get_variable_scope,
                     variable_scope)
from .rnn import (bidirectional_dynamic_rnn, dynamic_rnn, static_bidirectional_rnn, static_rnn)
from .layers import dense
from .losses import (accuracy, embedding_lookup, in_top_k, l2_loss, mean_squared_error,
                     sigmoid_cross_entropy_with_logits, softmax_cross_entropy_with_logits,
                     softmax_cross_entropy_with_logits_v2, sparse_softmax_cross_entropy,
                     nce_loss, sampled_softmax_loss)
from ..ops import log_uniform_candidate_sampler
from ..ops import relu, sigmoid, sparse_softmax_cross_entropy_with_logits, tanh
from .activations import (elu, l2_normalize, leaky_relu, log_softmax, selu, softmax, softplus,
                          softsign)   # (tf.nn's, with TF1's dim=)

from . import rnn_cell  # tf.nn.rnn_cell.*: cells and wrappers
from .wrappers import DeviceWrapper, OutputProjectionWrapper, ResidualWrapper
from .torch_weights import load_torch_weights, torch_gradients, torch_weight_arrays
from .dropout import DropoutWrapper, dropout  # noqa: E402  (the randomness issue's)
rnn_cell.DropoutWrapper = DropoutWrapper
from ..ops.tf1_array import bias_add, xw_plus_b  # noqa: E402  (tf.nn's)
from ..ops.topk import moments, top_k  # noqa: E402  (tf.nn's)
from . import regularizers  # noqa: E402  (tf.contrib.layers' l1/l2 regularizers)
