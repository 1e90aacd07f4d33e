"""rnngraph: a dataflow-graph compiler for recurrent networks.

Build (placeholders, variables, ops, RNN cells) -> transform (autodiff, passes) ->
plan (memory) -> execute (NumPy / CuPy). TensorFlow-1 style API:

    import rnngraph as rg
    X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
    cell = rg.nn.BasicRNNCell(num_units=5)
    outputs, states = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
"""
from .dtypes import as_dtype, bool_, float16, float32, float64, int8, int16, int32, int64, uint8
bool = bool_  # noqa: A001  (tf.bool)
from .errors import (ExecutionError, InvalidArgumentError, GradientError, NumericsError, OutOfMemoryError,
                     RnnGraphError, ShapeError)
from .errors import ExportError  # rg.io.to_onnx's error (an op with no ONNX mapping, ...)
from .errors import DiagramTooLargeError, RenderError  # rg.to_dot / rg.render's errors
from .ir import Graph, TensorType, Value, format_graph, get_default_graph, reset_default_graph, verify
from .ir.types import Dimension, TensorShape, dimension_at_index, dimension_value  # (TF1 shapes)
from .ops import *  # noqa: F401,F403  (op builders: rg.matmul, rg.tanh, ...)
from .ops import initializers
from .ops.sources import global_variables_initializer
from .ops.elementwise import (div, floordiv, floormod, mod, rsqrt, squared_difference,  # (TF1)
                              truediv)
from .autodiff import gradients
from .runtime.session import Session, get_default_session
from .runtime.simulated import SimulatedDevice
from . import nn, train
from .train.clipping import clip_by_global_norm, clip_by_norm, global_norm  # (tf.clip_by_*)
from .render import render, to_dot, to_networkx
from .nn import layers, losses
from .nn.masks import sequence_mask  # (tf.sequence_mask)
# TF1 front end: variable scopes (get_variable follows them, as tf.get_variable does), device,
# session options, tf.contrib.* and tf.summary.*
from .nn.scopes import (AUTO_REUSE, VariableScope, device, get_variable, get_variable_scope,
                        variable_scope)
from .runtime.session import InteractiveSession
from .runtime.compat import ConfigProto, GPUOptions
from .ops.initializers import (constant_initializer, glorot_normal_initializer,
                               glorot_uniform_initializer, ones_initializer,
                               orthogonal_initializer, random_normal_initializer,
                               random_uniform_initializer, truncated_normal_initializer,
                               zeros_initializer)
from . import contrib, summary
from .ops.reduce import (argmin, reduce_all, reduce_any, reduce_logsumexp,  # (TF1 names)
                          reduce_min, reduce_prod)
from .ops.tf1_array import gather, pad, slice, tile  # noqa: A004  (TF1's; gather(axis=))
from .ops.contract import einsum, tensordot  # (tf.einsum, tf.tensordot)
from .ops.misc import control_dependencies  # (tf.control_dependencies)
from .ops.graph_keys import (GraphKeys, add_to_collection, add_to_collections,  # (collections)
                             get_all_collection_keys, get_collection, get_collection_ref)
from .ops.tf1_index import (boolean_mask, cumsum, gather_nd, reverse,  # (TF1 indexing ops)
                            scatter_nd, to_double, to_float, to_int32, to_int64)
from .ops.functional import foldl, foldr, map_fn  # (tf.map_fn, tf.foldl, tf.foldr)
from .nn.variables import (assign, assign_add, assign_sub, global_variables,  # (TF1's forms:
                           initialize_all_variables, local_variables,  # scope=, ...)
                           local_variables_initializer, trainable_variables,
                           variables_initializer)
from .train.clipping import clip_by_value  # (tf.clip_by_value(t, ...))


def name_scope(name):
    """Nest the names of nodes built inside under `name` (like tf.name_scope)."""
    return get_default_graph().name_scope(name)


from .version import __version__  # noqa: E402
from . import io
from .io import load, save
from . import backends  # noqa: F401,E402  (registers every present backend's kernels)
from .config import config  # noqa: E402  (process-wide opt-ins, all off by default)
