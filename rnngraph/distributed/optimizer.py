"""DistributedOptimizer: any rnngraph optimizer, with one allreduce between computing the
gradients and applying them (as Horovod's DistributedOptimizer wraps a TF1 optimizer)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import user_location
from ..ir.value import Value
from .op import allreduce_gradients


class DistributedOptimizer:
    """Wrap `optimizer` so that every rank applies the gradient of the whole batch.

        opt = dist.DistributedOptimizer(rg.train.AdamOptimizer(1e-3))
        train_op = opt.minimize(loss)     # loss: a mean over this rank's examples

    Between `compute_gradients` and `apply_gradients` one `allreduce` node sums every gradient,
    weighted by the number of examples this rank saw, over the ranks (one message per step);
    each rank then applies the same update and the variables stay identical (start them equal
    with `broadcast_variables`). The loss must be a mean over this rank's examples, or over its
    active time steps when `sequence_length` is given; then uneven shards give exactly the
    gradient of the mean over the whole batch.

    examples: what counts this rank's examples: a Value whose first dimension is the batch
      (e.g. the input placeholder), a scalar Value, or an int. Default: the first dimension of
      the first placeholder the loss depends on whose first dimension is unknown (pass it for
      time-major inputs, whose first dimension is time).
    sequence_length: an int Value [batch]: count active time steps (its sum) instead, for a loss
      that is a mean over them.
    With one process (size 1) the node passes the gradients through unchanged.
    """

    def __init__(self, optimizer, examples=None, sequence_length=None, name: str = "allreduce"):
        if not all(hasattr(optimizer, a) for a in ("compute_gradients", "apply_gradients")):
            raise TypeError(f"optimizer must be an rnngraph optimizer (rg.train...), got "
                            f"{type(optimizer).__name__} at {user_location()}")
        if examples is not None and sequence_length is not None:
            raise ValueError(f"pass examples or sequence_length, not both ({user_location()})")
        self.optimizer = optimizer
        self.examples = examples
        self.sequence_length = sequence_length
        self.allreduce_name = name   # the node's name (`name` stays the wrapped optimizer's)
        self.total_count: Value | None = None   # the allreduce's total count, once built

    def __getattr__(self, attr):   # learning_rate, name, ... of the wrapped optimizer
        if attr in ("optimizer", "allreduce_name"):
            raise AttributeError(attr)
        return getattr(self.optimizer, attr)

    def compute_gradients(self, loss, var_list=None, **kwargs):
        """[(gradient of the whole batch, variable)], through one allreduce node; (None, var)
        for a variable the loss does not reach, as the wrapped optimizer (and TF1) gives."""
        pairs = self.optimizer.compute_gradients(loss, var_list, **kwargs)
        live = [g for g, _ in pairs if g is not None]
        if not live:   # (nothing to reduce: the wrapped optimizer's error when applied)
            return pairs
        graph = loss.graph.root
        with graph.as_default():
            count = self._count(loss)
            total, reduced = allreduce_gradients(count, live, name=self.allreduce_name)
        self.total_count = total
        summed = iter(reduced)
        return [(None if g is None else next(summed), v) for g, v in pairs]

    def apply_gradients(self, grads_and_vars, *args, **kwargs):
        """The wrapped optimizer's apply_gradients (global_step, name as it takes them)."""
        return self.optimizer.apply_gradients(grads_and_vars, *args, **kwargs)

    def minimize(self, loss, global_step=None, var_list=None, name=None):
        """Gradients, one allreduce, the wrapped optimizer's updates (TF1's signature); fetch
        the result to take a step."""
        if isinstance(global_step, (list, tuple)):   # minimize(loss, var_list)
            global_step, var_list = None, global_step
        grads_and_vars = self.compute_gradients(loss, var_list)
        if global_step is None:
            return self.apply_gradients(grads_and_vars, name=name)
        return self.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def _count(self, loss) -> Value:
        if self.sequence_length is not None:
            seq = self.sequence_length
            if not isinstance(seq, Value) or seq.type.rank != 1 or seq.dtype.kind not in "iu":
                raise TypeError(f"sequence_length must be an int Value of shape [batch], got "
                                f"{seq!r} at {user_location()}")
            return ops.reduce_sum(ops.cast(seq, np.float64), name="active_steps")
        examples = self.examples
        if examples is None:
            examples = _batch_input(loss)
        if isinstance(examples, Value):
            if examples.type.rank == 0:
                return examples
            return ops.dim(examples, 0, name="examples")
        if isinstance(examples, (int, np.integer)) and not isinstance(examples, bool) \
                and examples >= 0:
            return ops.constant(float(examples), dtype=np.float64, name="examples")
        raise TypeError(f"examples must be a Value or an int >= 0, got {examples!r} at "
                        f"{user_location()}")


def _batch_input(loss) -> Value:
    """The first placeholder (in graph order) the loss depends on whose first dimension is
    unknown: the batch fed to this rank."""
    seen, stack = set(), [loss.node]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(v.node for v in node.inputs)
    for node in loss.graph.root.nodes:
        if node in seen and node.op.name == "placeholder" and node.outputs[0].type.rank >= 1 \
                and node.outputs[0].shape[0] is None:
            return node.outputs[0]
    raise ValueError(f"DistributedOptimizer: the loss {loss.name} depends on no placeholder "
                     f"with an unknown first (batch) dimension: pass examples= (a Value or "
                     f"an int) ({user_location()})")
