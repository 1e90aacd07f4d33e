"""Dense layer (tf.layers.dense): y = activation(x @ kernel + bias)."""
from __future__ import annotations

from .. import ops
from ..ir.graph import get_default_graph
from ..ops import initializers as inits


def dense(inputs, units: int, activation=None, use_bias: bool = True, name: str = "dense",
          kernel_initializer=None):
    """A fully connected layer over the last axis; creates `<name>/kernel` and `<name>/bias`."""
    inputs = ops.as_value(inputs)
    if inputs.shape[-1] is None:
        raise ValueError(f"dense: the last dimension of the inputs must be known, got {inputs.type}")
    if not isinstance(units, int) or units <= 0:
        raise ValueError(f"dense: units must be a positive int, got {units!r}")
    graph = get_default_graph()
    with graph.name_scope(name):
        kernel = ops.get_variable("kernel", [inputs.shape[-1], units], inputs.dtype,
                                  kernel_initializer)
        y = ops.matmul(inputs, kernel) if inputs.type.rank == 2 else \
            ops.reshape(ops.matmul(ops.reshape(inputs, [-1, inputs.shape[-1]]), kernel),
                        [d if d is not None else -1 for d in inputs.shape[:-1]] + [units]) \
            if sum(d is None for d in inputs.shape[:-1]) <= 1 else ops.matmul(inputs, kernel)
        if use_bias:
            y = y + ops.get_variable("bias", [units], inputs.dtype, inits.Zeros())
        return activation(y) if activation is not None else y
