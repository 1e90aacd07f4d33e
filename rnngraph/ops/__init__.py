"""Op builders. Each op is one class (shape rule, xp kernel, vjp) in the module named below."""
from .base import Op, apply, as_value
from .elementwise import (
    abs, add, broadcast_like, cast, clip_by_value, divide, equal, exp, greater, greater_equal, less, less_equal,
    log, logical_and, logical_not, logical_or, maximum, minimum, multiply, negative, not_equal,
    ones_like, pow, relu, sigmoid, sign, sqrt, square, subtract, sum_to, tanh, unbroadcast, where,
    zeros_like,
)
from .linalg import matmul, matrix_transpose
from .sources import (
    Variable_ as Variable, assign, constant, get_variable, global_variables,
    initializer_from_value, placeholder, trainable_variables,
)
from . import initializers
from .reduce import add_n, argmax, reduce_max, reduce_mean, reduce_sum
from .shape import (
    broadcast_to, concat, dim, expand_dims, getitem, reshape, reshape_like, shape, split, squeeze,
    stack, transpose, unstack,
)
from .nn import log_softmax, one_hot, softmax, sparse_softmax_cross_entropy_with_logits
from .fill import fill, gather, ones, zeros
from .checks import check_numerics
from .loop import Loop, lax_scan, scan, while_loop
from .sequence import check_sequence_length, reverse_sequence

from .group import group
from .misc import identity, no_op, range, stop_gradient  # noqa: A004 (tf.range)
from .candidates import log_uniform_candidate_sampler
from .random import (categorical, multinomial, random_normal, random_shuffle, random_uniform,
                     set_random_seed, truncated_normal)
from .feeds import placeholder_with_default
from ..ir.value import install_operators

install_operators(add=add, subtract=subtract, multiply=multiply, divide=divide, matmul=matmul,
                  pow=pow, less=less, less_equal=less_equal, greater=greater,
                  greater_equal=greater_equal, negative=negative, getitem=getitem)
del install_operators

# `from rnngraph.ops import *` exports the builders, not the modules (ops.nn is not rnngraph.nn)
__all__ = [_n for _n, _v in list(globals().items())
           if not _n.startswith("_") and not isinstance(_v, type(initializers))]
