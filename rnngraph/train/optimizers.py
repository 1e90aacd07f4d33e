"""Optimizers that add update ops to the graph (TF1 style): `train_op = opt.minimize(loss)`.

Each optimizer turns (gradient, variable) pairs into assign ops; slot variables (momentum,
Adam's moments) are non-trainable variables named `<var>/<Optimizer>/<slot>`.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..autodiff import gradients
from ..ir.graph import get_default_graph
from ..ops import initializers as inits


class Optimizer:
    def __init__(self, learning_rate: float, name: str):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.name = name

    def compute_gradients(self, loss, var_list=None):
        """[(gradient, variable)] for the trainable variables (or var_list); None grads dropped."""
        var_list = list(var_list) if var_list is not None else ops.trainable_variables(loss.graph)
        if not var_list:
            raise ValueError("no variables to optimise")
        grads = gradients(loss, var_list)
        pairs = [(g, v) for g, v in zip(grads, var_list) if g is not None]
        if not pairs:
            raise ValueError(f"the loss {loss.name} does not depend on any of the variables")
        return pairs

    def apply_gradients(self, grads_and_vars, name=None):
        graph = get_default_graph().root
        with graph.as_default(), graph.name_scope(name or self.name):
            updates = [self._update(g, v) for g, v in grads_and_vars]
            updates += self._finish()
            return ops.group(*updates, name="train")

    def minimize(self, loss, var_list=None, name=None):
        """Add gradient and update ops; fetching the returned value takes one step."""
        return self.apply_gradients(self.compute_gradients(loss, var_list), name)

    def _slot(self, var, slot):
        """A non-trainable zeros variable named `<var>/<Optimizer>/<slot>` (as TF names them)."""
        with get_default_graph().absolute_scope(""):
            return ops.get_variable(f"{var.node.name}/{self.name}/{slot}", var.shape, var.dtype,
                                    inits.Zeros(), trainable=False)

    def _lr(self, var):
        return ops.constant(self.learning_rate, dtype=var.dtype)

    def _finish(self):
        return []


class GradientDescentOptimizer(Optimizer):
    def __init__(self, learning_rate: float, name="GradientDescent"):
        super().__init__(learning_rate, name)

    def _update(self, g, var):
        return ops.assign(var, var - self._lr(var) * g)


class MomentumOptimizer(Optimizer):
    """v = momentum * v + g;  var -= lr * v   (or the Nesterov form)."""

    def __init__(self, learning_rate: float, momentum: float = 0.9, use_nesterov=False,
                 name="Momentum"):
        super().__init__(learning_rate, name)
        self.momentum = float(momentum)
        self.use_nesterov = use_nesterov

    def _update(self, g, var):
        acc = self._slot(var, "momentum")
        new_acc = ops.assign(acc, acc * self.momentum + g)
        step = new_acc * self.momentum + g if self.use_nesterov else new_acc
        return ops.assign(var, var - self._lr(var) * step)


class AdamOptimizer(Optimizer):
    """Adam (Kingma & Ba) with bias correction folded into the step size, as TF1 does."""

    def __init__(self, learning_rate: float = 0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 name="Adam"):
        super().__init__(learning_rate, name)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self._step = None

    def _step_count(self):
        if self._step is None:
            self._step = ops.get_variable("step", [], np.float32, inits.Zeros(),
                                          trainable=False)
            self._next_step = self._step + 1.0  # every update reads the same incremented count
        return self._next_step

    def _update(self, g, var):
        t = ops.cast(self._step_count(), var.dtype)
        m, v = self._slot(var, "m"), self._slot(var, "v")
        new_m = ops.assign(m, m * self.beta1 + g * (1.0 - self.beta1))
        new_v = ops.assign(v, v * self.beta2 + ops.square(g) * (1.0 - self.beta2))
        lr_t = self._lr(var) * ops.sqrt(1.0 - ops.pow(ops.constant(self.beta2, dtype=var.dtype), t)) \
            / (1.0 - ops.pow(ops.constant(self.beta1, dtype=var.dtype), t))
        return ops.assign(var, var - lr_t * new_m / (ops.sqrt(new_v) + self.epsilon))

    def _finish(self):
        return [ops.assign(self._step, self._next_step)] if self._step is not None else []


SGD = GradientDescentOptimizer
Momentum = MomentumOptimizer
Adam = AdamOptimizer
