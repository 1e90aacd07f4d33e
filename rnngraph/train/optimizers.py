"""Optimizers that add update ops to the graph (TF1 style): `train_op = opt.minimize(loss)`.

Each optimizer turns (gradient, variable) pairs into assign ops; slot variables (momentum,
Adam's moments) are non-trainable variables named `<var>/<Optimizer>/<slot>`.

Sparse gradients: where a variable's gradient comes from gathers of it (embedding_lookup; the
sum of several lookups; scaled by a clipping factor), TF1 gets an IndexedSlices and applies it
with its sparse kernels, which update the looked-up rows only (repeated ids summed first).
Momentum and RMSProp do the same here: the dense update is kept on the rows whose ids occur in
the step's lookups (ops/sparse_rows.py), the slots and the variable elsewhere stay as they
were. Gradient descent and Adagrad give the same numbers either way (a row with no gradient
does not move); Adam, as TF1's (not lazy) Adam, decays its moments on every row.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..autodiff import gradients
from ..errors import user_location
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..ops import initializers as inits
from ..ops.fill import GatherGrad
from ..ops.sparse_rows import select_rows


def _check_learning_rate(learning_rate, what="learning_rate"):
    """A positive number, or a float scalar tensor (a placeholder, a schedule, a variable)."""
    if isinstance(learning_rate, Value):
        if learning_rate.type.rank != 0 or np.dtype(learning_rate.dtype).kind != "f":
            raise TypeError(f"{what} must be a float scalar tensor, got {learning_rate.type} "
                            f"(at {user_location()})")
        return learning_rate
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.number)) \
            or not learning_rate > 0:
        raise ValueError(f"{what} must be > 0 (a number) or a float scalar tensor, got "
                         f"{learning_rate!r} (at {user_location()})")
    return float(learning_rate)


def sparse_ids(g, var):
    """The ids whose rows of `var` gradient `g` covers where it comes from gathers of `var`
    alone (TF1's IndexedSlices): a gather_grad of var, a sum (add / add_n) of such, or one
    times a scalar (clip_by_global_norm's factor); [ids, ...], else None (a dense gradient:
    also after a distributed allreduce, which sums other ranks' rows at other ids)."""
    n = g.node
    if isinstance(n.op, GatherGrad):
        return [n.inputs[1]] if n.inputs[2] is var else None
    if n.op.name in ("add", "add_n") and all(x.type.shape == g.type.shape for x in n.inputs):
        found = [sparse_ids(x, var) for x in n.inputs]
        return None if any(f is None for f in found) else [i for f in found for i in f]
    if n.op.name == "mul" and len(n.inputs) == 2:
        a, b = n.inputs
        if b.type.rank == 0 and a.type.shape == g.type.shape:
            return sparse_ids(a, var)
        if a.type.rank == 0 and b.type.shape == g.type.shape:
            return sparse_ids(b, var)
    return None


def _var_name(v) -> str:
    return v.node.name if isinstance(v, Value) else repr(v)


class Optimizer:
    """Base of the TF1 optimizers. `learning_rate` is a positive number or a float scalar
    tensor (a placeholder fed each run, a schedule of the global step, a variable): a number is
    built into the graph when `minimize` runs and can no longer change; assigning
    `opt.learning_rate` afterwards raises instead of being silently ignored."""

    def __init__(self, learning_rate, name: str):
        self._learning_rate = _check_learning_rate(learning_rate)
        self._built = False
        self._lr_cache: dict = {}
        self.name = name

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if self._built:
            raise AttributeError(
                f"{type(self).__name__}.learning_rate was built into the graph by minimize()/"
                "apply_gradients(); to change it during training pass a tensor as the learning "
                "rate (rg.placeholder(rg.float32, []) fed each run, or a schedule such as "
                "rg.train.exponential_decay)")
        self._learning_rate = _check_learning_rate(value)

    def compute_gradients(self, loss, var_list=None):
        """[(gradient, variable)] for the trainable variables (or var_list), in their order; as
        in TF1, a variable the loss does not depend on is paired with None (apply_gradients
        skips it, minimize refuses a loss that reaches none of them)."""
        var_list = list(var_list) if var_list is not None else ops.trainable_variables(loss.graph)
        if not var_list:
            raise ValueError(f"No variables to optimize (at {user_location()})")
        grads = gradients(loss, var_list)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """Update ops for (gradient, variable) pairs; with `global_step` (an int variable, see
        get_or_create_global_step) also increment it. Fetching the result takes one step."""
        if isinstance(global_step, str) and name is None:   # the old (grads_and_vars, name)
            global_step, name = None, global_step
        if global_step is not None and (not isinstance(global_step, Value) or
                                        global_step.node.op.name != "variable"):
            raise TypeError(f"global_step must be a variable (rg.train.get_or_create_global_step"
                            f"()), got {global_step!r} (at {user_location()})")
        grads_and_vars = list(grads_and_vars)
        if not grads_and_vars:
            raise ValueError(f"apply_gradients: no (gradient, variable) pairs given "
                             f"(at {user_location()})")
        given = [(g, v) for g, v in grads_and_vars if g is not None]
        if not given:   # (TF1's message)
            raise ValueError(f"No gradients provided for any variable: "
                             f"{[_var_name(v) for _, v in grads_and_vars]} "
                             f"(at {user_location()})")
        grads_and_vars = given
        graph = get_default_graph().root
        self._built = True
        with graph.as_default(), graph.name_scope(name or self.name):
            updates = [self._update(g, v) for g, v in grads_and_vars]
            updates += self._finish()
            if global_step is not None:
                updates.append(ops.assign(global_step, global_step + np.ones((), global_step.dtype)))
            return ops.group(*updates, name="train")

    def minimize(self, loss, global_step=None, var_list=None, name=None, **unsupported):
        """Add gradient and update ops; fetching the returned value takes one step (and
        increments `global_step` when given)."""
        for arg, val in unsupported.items():
            if arg not in ("gate_gradients", "aggregation_method",
                           "colocate_gradients_with_ops", "grad_loss"):
                raise TypeError(f"minimize() got an unexpected keyword argument {arg!r}")
            if val not in (None, False, 1):
                raise NotImplementedError(f"minimize: {arg}= is not supported by rnngraph "
                                          f"(got {val!r})")
        if isinstance(global_step, (list, tuple)):   # the old minimize(loss, var_list)
            global_step, var_list = None, global_step
        grads_and_vars = self.compute_gradients(loss, var_list)
        if all(g is None for g, _ in grads_and_vars):   # (TF1's message)
            raise ValueError(f"No gradients provided for any variable, check your graph for ops "
                             f"that do not support gradients, between variables "
                             f"{[_var_name(v) for _, v in grads_and_vars]} and loss "
                             f"{loss.name} (the loss does not depend on any of the variables) "
                             f"(at {user_location()})")
        return self.apply_gradients(grads_and_vars, global_step, name)

    def _slot(self, var, slot, initializer=None):
        """A non-trainable variable named `<var>/<Optimizer>/<slot>` (as TF names them),
        zeros unless `initializer` says otherwise."""
        with get_default_graph().absolute_scope(""):
            return ops.get_variable(f"{var.node.name}/{self.name}/{slot}", var.shape, var.dtype,
                                    initializer or inits.Zeros(), trainable=False)

    def _lr(self, var):
        key = np.dtype(var.dtype).name
        if key not in self._lr_cache:
            lr = self._learning_rate
            self._lr_cache[key] = ops.cast(lr, var.dtype) if isinstance(lr, Value) else \
                ops.constant(lr, dtype=var.dtype)
        return self._lr_cache[key]

    def _finish(self):
        return []


class GradientDescentOptimizer(Optimizer):
    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(learning_rate, name)

    def _update(self, g, var):
        return ops.assign(var, var - self._lr(var) * g)


class MomentumOptimizer(Optimizer):
    """v = momentum * v + g;  var -= lr * v   (or the Nesterov form)."""

    def __init__(self, learning_rate, momentum: float = 0.9, use_locking=False, name="Momentum",
                 use_nesterov=False):
        super().__init__(learning_rate, name)
        self.momentum = float(momentum)
        self.use_nesterov = use_nesterov

    def _update(self, g, var):
        acc = self._slot(var, "momentum")
        rows = _rows(g, var)
        new_acc = ops.assign(acc, rows(acc * self.momentum + g, acc))
        step = new_acc * self.momentum + g if self.use_nesterov else new_acc
        return ops.assign(var, rows(var - self._lr(var) * step, var))


class AdamOptimizer(Optimizer):
    """Adam (Kingma & Ba) with bias correction folded into the step size, as TF1 does."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 use_locking=False, name="Adam"):
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


class RMSPropOptimizer(Optimizer):
    """TF1's RMSProp: ms = decay * ms + (1 - decay) * g^2 (ms starts at ones, as in TF1);
    mom = momentum * mom + lr * g / sqrt(ms + epsilon); var -= mom. `centered` also keeps
    mg = decay * mg + (1 - decay) * g and divides by sqrt(ms - mg^2 + epsilon)."""

    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False,
                 centered=False, name="RMSProp"):
        super().__init__(learning_rate, name)
        for arg, val, lo, hi in (("decay", decay, 0.0, 1.0), ("momentum", momentum, 0.0, 1.0)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not lo <= val <= hi:
                raise ValueError(f"RMSPropOptimizer: {arg} must be in [{lo}, {hi}], got {val!r} "
                                 f"(at {user_location()})")
        if not epsilon >= 0:
            raise ValueError(f"RMSPropOptimizer: epsilon must be >= 0, got {epsilon!r}")
        self.decay, self.momentum, self.epsilon = float(decay), float(momentum), float(epsilon)
        self.centered = bool(centered)

    def _update(self, g, var):
        rows = _rows(g, var)   # (an embedding's: its looked-up rows, sparse_apply_rms_prop)
        ms = self._slot(var, "rms", inits.Ones())
        new_ms = ops.assign(ms, rows(ms * self.decay + ops.square(g) * (1.0 - self.decay), ms))
        denom = new_ms
        if self.centered:
            mg = self._slot(var, "mg")
            new_mg = ops.assign(mg, rows(mg * self.decay + g * (1.0 - self.decay), mg))
            denom = new_ms - ops.square(new_mg)
        step = self._lr(var) * g / ops.sqrt(denom + self.epsilon)
        if self.momentum > 0:
            mom = self._slot(var, "momentum")
            step = ops.assign(mom, rows(mom * self.momentum + step, mom))
        return ops.assign(var, rows(var - step, var))


class AdagradOptimizer(Optimizer):
    """acc += g^2 (acc starts at initial_accumulator_value); var -= lr * g / sqrt(acc)."""

    def __init__(self, learning_rate, initial_accumulator_value=0.1, use_locking=False,
                 name="Adagrad"):
        super().__init__(learning_rate, name)
        if isinstance(initial_accumulator_value, bool) or \
                not isinstance(initial_accumulator_value, (int, float)) or \
                not initial_accumulator_value > 0:
            raise ValueError(f"AdagradOptimizer: initial_accumulator_value must be > 0, got "
                             f"{initial_accumulator_value!r} (at {user_location()})")
        self.initial_accumulator_value = float(initial_accumulator_value)

    def _update(self, g, var):
        acc = self._slot(var, "accumulator", inits.Constant(self.initial_accumulator_value))
        new_acc = ops.assign(acc, acc + ops.square(g))
        return ops.assign(var, var - self._lr(var) * g / ops.sqrt(new_acc))


def _rows(g, var):
    """new, old -> new where `g` is dense; where it is an embedding's gradient (sparse_ids),
    new on the looked-up rows and old elsewhere, as TF1's sparse kernels update."""
    ids = sparse_ids(g, var)
    if ids is None:
        return lambda new, old: new
    return lambda new, old: select_rows(new, old, ids)


SGD = GradientDescentOptimizer
Momentum = MomentumOptimizer
Adam = AdamOptimizer
