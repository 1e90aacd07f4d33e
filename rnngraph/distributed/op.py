"""The allreduce node: every gradient of a step, weighted by the examples each rank saw,
summed over the ranks in one message.

    %40:f64[], %41:f32[8,150], ... = allreduce[fingerprint='9c0e...'] %count %g1 %g2 ...

Inputs: this rank's count (its examples, or its active time steps with sequence_length) and the
gradients of a loss that is a mean over those; outputs: the total count over all ranks and the
gradients of the mean loss over every rank's examples together. With counts n_r and local
gradients g_r every rank gets (sum_r n_r g_r) / (sum_r n_r): for a loss that averages over
examples (or time steps) this is exactly the gradient of the whole batch, however unevenly it
was split. The op holds semantics only; its kernel (kernel.py) runs the collective.

`fingerprint` is a hash of the printed graph that computes the inputs (without source
locations), taken when the node is built; the kernel compares it across ranks before the first
step, so ranks that built different graphs stop with an error instead of summing unrelated
buffers.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..errors import ShapeError
from ..ir.printer import format_node
from ..ir.types import TensorType, fmt_shape
from ..ops.base import Op, apply


class AllReduceGradients(Op):
    name = "allreduce"
    multi_output = True
    stateful = True     # it communicates: never folded, merged with another, hoisted or removed
    foldable = False

    def __init__(self, fingerprint: str = ""):
        self.fingerprint = str(fingerprint)

    def infer(self, count, *grads):
        if count.rank != 0 or count.dtype.kind not in "iuf":
            raise TypeError(f"the count must be a numeric scalar, got {count}")
        if not grads:
            raise ValueError("no gradients to reduce")
        for i, g in enumerate(grads):
            if g.dtype.kind != "f":
                raise TypeError(f"gradient {i} must be floating point, got {g.dtype}")
            if any(d is None for d in g.shape):
                raise ShapeError(f"gradient {i} has shape {fmt_shape(g.shape)}: every "
                                 "dimension must be known to pack it into the message")
        return [TensorType((), np.float64)] + list(grads)

    def compute(self, xp, count, *grads):
        """One process: the count and the gradients as they are."""
        return (xp.asarray(count, dtype=np.float64), *grads)

    def flops(self, node) -> int:
        return sum(int(np.prod(v.shape)) for v in node.inputs[1:])


def buffer_dtype(grad_types) -> np.dtype:
    """The message's dtype: the widest gradient dtype (float32 unless one is float64)."""
    return np.result_type(*[t.dtype for t in grad_types])


def fingerprint(values) -> str:
    """A hash of the printed graph computing `values` (nodes in graph order, loop bodies
    included, source locations left out): equal on ranks that built the same graph."""
    seen, stack = set(), [v.node for v in values]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(v.node for v in node.inputs)
    graph = values[0].graph
    digest = hashlib.sha256()
    for node in graph.nodes:
        if node in seen:
            for line in format_node(node, locations=False):
                digest.update(line.encode())
                digest.update(b"\n")
    return digest.hexdigest()[:32]


def allreduce_gradients(count, grads, name: str = "allreduce"):
    """(total count, [reduced gradients]): one allreduce node over `grads` weighted by `count`
    (see the module docstring)."""
    grads = list(grads)
    if not grads:
        raise ValueError("allreduce_gradients: no gradients given")
    op = AllReduceGradients(fingerprint([count] + grads))
    outs = apply(op, [count] + grads, name=name)
    outs[0].node.is_gradient = True   # drawn with the gradient nodes
    return outs[0], list(outs[1:])
