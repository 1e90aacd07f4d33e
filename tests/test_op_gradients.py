"""Every op with a vjp against central finite differences (see gradcheck.py).

Cases cover broadcasting, values used twice, dims unknown until run time (placeholders with
None) and second order (the gradient of a gradient). test_every_differentiable_op_is_checked
fails when an op with a vjp is added without a case here.
"""
from __future__ import annotations

import importlib
import pkgutil
import inspect
from dataclasses import dataclass, field

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.ops.host_rows import host_rows
from rnngraph.ops.transfer import to_device, to_host
from rnngraph.ops.rows import permute_rows
from rnngraph.ops.scatter import scatter_add_rows
from rnngraph.ops.shape import contiguous
from rnngraph.ops.base import Op

from gradcheck import check_gradients


@dataclass
class Case:
    id: str
    build: callable
    inputs: dict
    shapes: dict = field(default_factory=dict)
    atol: float = 1e-6
    rtol: float = 1e-5
    eps: float = 1e-6
    allow_none: bool = False


_rng = np.random.default_rng(1234)


def rand(*shape, low=None, high=None):
    if low is not None:
        return _rng.uniform(low, high, size=shape)
    return _rng.standard_normal(shape)


def away_from_zero(*shape):
    """Values with |v| in [0.3, 1.5]: kinks at 0 (relu, abs) stay farther than eps."""
    return _rng.uniform(0.3, 1.5, size=shape) * _rng.choice([-1.0, 1.0], size=shape)


def distinct(*shape):
    """A permutation of well-separated values: no ties within eps (max, maximum, minimum)."""
    n = int(np.prod(shape))
    return (_rng.permutation(n) * 0.1 + _rng.uniform(0, 0.02, size=n)).reshape(shape) - n * 0.05


def grad(f, wrt):
    """d sum(f) / d wrt, as a Value: building blocks of second-order cases."""
    return rg.gradients(rg.reduce_sum(f), [wrt])[0]


def second(f):
    """x -> gradient of sum(f(x)) w.r.t. x: a graph whose own gradient is second order."""
    return lambda x: grad(f(x), x)


CASES: list[Case] = []


def case(id, build, inputs, **kw):
    CASES.append(Case(id, build, inputs, **kw))


# --- elementwise binary, with broadcasting ------------------------------------------------------
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (3, 4)),
                    ((2, 3, 4), (3, 1))]
BINARY = {
    "add": (rg.add, rand, rand),
    "sub": (rg.subtract, rand, rand),
    "mul": (rg.multiply, rand, rand),
    "div": (rg.divide, rand, lambda *s: rand(*s, low=0.5, high=2.0)),
    "pow": (rg.pow, lambda *s: rand(*s, low=0.5, high=2.0), rand),
}
for name, (fn, ga, gb) in BINARY.items():
    for sa, sb in BROADCAST_SHAPES:
        case(f"{name}-{sa}-{sb}", lambda a, b, fn=fn: fn(a, b), {"a": ga(*sa), "b": gb(*sb)})

for name, fn in {"maximum": rg.maximum, "minimum": rg.minimum}.items():
    for sa, sb in [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4))]:
        both = distinct(int(np.prod(sa)) + int(np.prod(sb)))
        a, b = both[:int(np.prod(sa))].reshape(sa), both[int(np.prod(sa)):].reshape(sb)
        case(f"{name}-{sa}-{sb}", lambda a, b, fn=fn: fn(a, b), {"a": a, "b": b})

# floormod: x - floor(x/y)*y, sampled away from the jumps (x/y stays within (2, 3))
case("floormod-(3, 4)-(4,)", lambda a, b: rg.floormod(a, b),
     {"a": rand(3, 4, low=5.2, high=5.8), "b": rand(4, low=2.0, high=2.2)})
case("operators: % and ** with a number on the left",
     lambda a, b: a % b + 2.0 ** a - (-5.5) % b,
     {"a": rand(3, 4, low=-5.8, high=-5.2), "b": rand(3, 4, low=2.0, high=2.2)})
case("squared_difference and rsqrt", lambda a, b: rg.squared_difference(a, b) + rg.rsqrt(a),
     {"a": rand(3, 4, low=0.5, high=2.0), "b": rand(4)})
case("operators-with-python-numbers", lambda x: (2.0 - x) * 3.0 / (x + 4.0) + x ** 2.0,
     {"x": rand(3, 4, low=0.5, high=2.0)})
case("used-twice: x*x + x", lambda x: x * x + x, {"x": rand(3, 4)})
case("used-thrice-through-branches", lambda x: rg.tanh(x) * rg.exp(x) + rg.square(rg.tanh(x)),
     {"x": rand(2, 3)})
case("unknown-dims: [?,4] + [4]", lambda a, b: a + b, {"a": rand(3, 4), "b": rand(4)},
     shapes={"a": (None, 4)})
case("unknown-dims: [?,1] * [1,?]", lambda a, b: a * b, {"a": rand(3, 1), "b": rand(1, 4)},
     shapes={"a": (None, 1), "b": (1, None)})
case("unknown-dims: [?,?] / [?]", lambda a, b: a / b,
     {"a": rand(2, 3), "b": rand(3, low=0.5, high=2.0)}, shapes={"a": (None, None), "b": (None,)})
case("unknown-dims: maximum [?,3] vs []", lambda a, b: rg.maximum(a, b),
     {"a": distinct(2, 3), "b": np.array(0.03)}, shapes={"a": (None, 3)})

# --- elementwise unary ---------------------------------------------------------------------------
UNARY = {
    "neg": (rg.negative, rand), "tanh": (rg.tanh, rand), "sigmoid": (rg.sigmoid, rand),
    "relu": (rg.relu, away_from_zero), "exp": (rg.exp, rand),
    "log": (rg.log, lambda *s: rand(*s, low=0.5, high=3.0)), "square": (rg.square, rand),
    "sqrt": (rg.sqrt, lambda *s: rand(*s, low=0.5, high=3.0)), "abs": (rg.abs, away_from_zero),
}
for name, (fn, gen) in UNARY.items():
    case(name, lambda x, fn=fn: fn(x), {"x": gen(3, 4)})
    case(f"{name}-unknown-dims", lambda x, fn=fn: fn(x), {"x": gen(2, 3)}, shapes={"x": (None, 3)})
for name in ["tanh", "sigmoid", "exp", "log", "sqrt", "square"]:
    fn, gen = UNARY[name]
    case(f"{name}-second-order", second(lambda x, fn=fn: fn(x)), {"x": gen(3, 2)})

# --- where, cast, broadcast_like, sum_to, check_numerics ------------------------------------------
_cond = _rng.random((3, 4)) > 0.5
case("where-broadcast", lambda x, y: rg.where(rg.constant(_cond), x, y),
     {"x": rand(4), "y": rand()})
case("where-from-input (leaky relu)", lambda x: rg.where(x > 0.0, x, 0.1 * x),
     {"x": away_from_zero(3, 4)})
case("where-unknown-dims", lambda x, y: rg.where(x > y, x * y, y),
     {"x": distinct(3, 4), "y": rand(3, 4) * 0.01}, shapes={"x": (None, 4), "y": (None, 4)})
case("cast-f32-roundtrip", lambda x: rg.cast(rg.tanh(rg.cast(x, rg.float32)), rg.float64),
     {"x": rand(3, 4)}, eps=1e-2, atol=1e-3, rtol=1e-3)
case("broadcast_like", lambda x, y: rg.broadcast_like(x, y) * y, {"x": rand(4), "y": rand(3, 4)})
case("sum_to", lambda x, y: rg.sum_to(x * y, rg.zeros([1, 4], rg.float64)),
     {"x": rand(3, 4), "y": rand(3, 1)})
case("check_numerics", lambda x: rg.check_numerics(rg.tanh(x), "tanh blew up") * x,
     {"x": rand(3, 4)})

# --- matmul --------------------------------------------------------------------------------------
for sa, sb in [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)),
               ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2))]:
    case(f"matmul-{sa}-{sb}", lambda a, b: rg.matmul(a, b), {"a": rand(*sa), "b": rand(*sb)})
case("matmul-unknown-batch", lambda a, b: a @ b, {"a": rand(5, 3), "b": rand(3, 2)},
     shapes={"a": (None, 3)})
case("matmul-unknown-batched", lambda a, b: a @ b, {"a": rand(2, 3, 4), "b": rand(4, 2)},
     shapes={"a": (None, None, 4)})
case("matrix_transpose", lambda a: rg.matrix_transpose(a) @ a, {"a": rand(2, 3, 4)})
case("matmul-second-order", lambda a, b: grad(rg.tanh(a @ b), a), {"a": rand(3, 4),
                                                                      "b": rand(4, 2)})

# --- reductions ----------------------------------------------------------------------------------
for fn in (rg.reduce_sum, rg.reduce_mean, rg.reduce_max):
    for axis in (None, 0, 1, -1, (0, 2), (1, 2), ()):
        for keepdims in (False, True):
            case(f"{fn.__name__}-axis={axis}-keepdims={keepdims}",
                 lambda x, fn=fn, axis=axis, keepdims=keepdims: fn(x, axis, keepdims),
                 {"x": distinct(2, 3, 4)})
    case(f"{fn.__name__}-unknown-dims-axis=0", lambda x, fn=fn: fn(x, 0), {"x": distinct(3, 4)},
         shapes={"x": (None, 4)})
    case(f"{fn.__name__}-unknown-dims-axis=None", lambda x, fn=fn: fn(x), {"x": distinct(3, 4)},
         shapes={"x": (None, None)})
    case(f"{fn.__name__}-unknown-dims-axis=1-keepdims",
         lambda x, fn=fn: fn(x, 1, keepdims=True) * x, {"x": distinct(3, 4)},
         shapes={"x": (None, None)})
    case(f"{fn.__name__}-second-order", second(lambda x, fn=fn: fn(rg.tanh(x), 1) ** 2.0),
         {"x": distinct(3, 4)})
for fn in (rg.reduce_min, rg.reduce_prod, rg.reduce_logsumexp):   # (TF1's other reductions)
    for axis in (None, 1, (0, 2), ()):
        case(f"{fn.__name__}-axis={axis}", lambda x, fn=fn, axis=axis: fn(x, axis),
             {"x": distinct(2, 3, 4) + 0.05})
    case(f"{fn.__name__}-unknown-dims-axis=1-keepdims",
         lambda x, fn=fn: fn(x, 1, keepdims=True) * x, {"x": distinct(3, 4) + 0.05},
         shapes={"x": (None, None)})
    if fn is not rg.reduce_prod:   # (reduce_prod's gradient has no gradient of its own)
        case(f"{fn.__name__}-second-order", second(lambda x, fn=fn: fn(rg.tanh(x), 1) ** 2.0),
             {"x": distinct(3, 4)})
case("reduce_prod-zeros", lambda x: rg.reduce_prod(x, 1),
     {"x": np.array([[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [1.0, -2.0, 0.5]])})
case("reduce_max-ties-then-smooth", lambda x: rg.reduce_max(rg.square(x), 1),
     {"x": np.array([[1.0, -1.0, 0.5], [0.3, 2.0, -0.1]])})
case("add_n", lambda a, b, c: rg.add_n([a, b * a, c]),
     {"a": rand(3, 4), "b": rand(3, 4), "c": rand(3, 4)})
case("add_n-same-value-twice", lambda a: rg.add_n([a, rg.tanh(a), a]), {"a": rand(2, 3)})
case("add_n-unknown-dims", lambda a, b: rg.add_n([a, b, a * b]),
     {"a": rand(3, 4), "b": rand(3, 4)}, shapes={"a": (None, 4), "b": (3, None)})

# --- shape ops ------------------------------------------------------------------------------------
_idx_axis = np.array([[3, 0], [0, 0]], dtype=np.int32)
case("reshape", lambda x: rg.reshape(x, [6, -1]) * 2.0, {"x": rand(2, 3, 4)})
case("reshape-unknown", lambda x: rg.reshape(x, [-1, 12]), {"x": rand(2, 3, 4)},
     shapes={"x": (None, 3, 4)})
case("reshape-second-order", second(lambda x: rg.tanh(rg.reshape(x, [3, 2])) ** 3.0),
     {"x": rand(2, 3)})
case("reshape_like", lambda x, y: rg.reshape_like(x, y) * y, {"x": rand(2, 6), "y": rand(3, 4)},
     shapes={"x": (None, 6), "y": (None, 4)})
case("reshape_dynamic", lambda x: rg.reshape(x, [rg.shape(x)[0], -1]) * 2.0,
     {"x": rand(2, 3, 4)}, shapes={"x": (None, None, 4)})
case("reshape_dynamic-vector", lambda x, y: rg.reshape(x, rg.shape(y) * 1) * y,
     {"x": rand(2, 6), "y": rand(3, 4)}, shapes={"x": (None, 6), "y": (None, 4)})
case("reshape_dynamic-second-order",
     second(lambda x: rg.tanh(rg.reshape(x, [rg.dim(x, 1), -1])) ** 3.0), {"x": rand(2, 3)},
     shapes={"x": (None, None)})
case("tile", lambda x: rg.tile(x, [2, 1, 3]), {"x": rand(2, 3, 2)},
     shapes={"x": (None, 3, None)})
case("tile-second-order", second(lambda x: rg.tile(x, [3, 2]) ** 3.0), {"x": rand(2, 3)})
for _mode in ("CONSTANT", "REFLECT", "SYMMETRIC"):
    case(f"pad-{_mode}", lambda x, m=_mode: rg.pad(x, [[1, 2], [0, 1], [2, 0]], m),
         {"x": rand(3, 2, 3)}, shapes={"x": (None, 2, None)})
case("pad-second-order", second(lambda x: rg.pad(x, [[1, 0], [2, 1]], constant_values=1.0)
                                ** 3.0), {"x": rand(2, 3)})
case("slice", lambda x: rg.slice(x, [1, 0, 1], [-1, 2, 2]), {"x": rand(3, 2, 4)},
     shapes={"x": (None, 2, None)})
case("gather-axis-1", lambda p: rg.gather(p, _idx_axis, axis=1), {"p": rand(2, 4, 3)})
case("bias_add-xw_plus_b", lambda x, w, b: [
     rg.nn.xw_plus_b(x, w, b), rg.nn.bias_add(rg.reshape(x, [2, 3, 1, 2]), b[:3], "NCHW")],
     {"x": rand(2, 6), "w": rand(6, 4), "b": rand(4)})
case("top_k-values", lambda x: rg.nn.top_k(x, 2)[0] * 1.5, {"x": distinct(3, 5)},
     shapes={"x": (None, 5)})   # gather_last (distinct values: no ties at the cut)
case("top_k-second-order", second(lambda x: rg.nn.top_k(rg.tanh(x), 3)[0] ** 3.0),
     {"x": distinct(2, 4)})   # gather_last_grad
case("transpose-default", lambda x: rg.transpose(x), {"x": rand(2, 3, 4)})
case("transpose-perm", lambda x: rg.transpose(x, [1, 2, 0]), {"x": rand(2, 3, 4)})
case("transpose-unknown", lambda x: rg.transpose(x, [1, 0]) @ x, {"x": rand(3, 2)},
     shapes={"x": (None, 2)})
case("contiguous-of-a-transpose", lambda x: contiguous(rg.transpose(x, [1, 0, 2])) * 2.0,
     {"x": rand(2, 3, 4)})
case("expand_dims-0", lambda x: rg.expand_dims(x, 0), {"x": rand(3, 4)})
case("expand_dims--1-broadcast", lambda x: rg.expand_dims(x, -1) * x[:, None, :], {"x": rand(3, 4)})
case("squeeze-all", lambda x: rg.squeeze(x), {"x": rand(1, 3, 1, 4)})
case("squeeze-axis", lambda x: rg.squeeze(x, 2), {"x": rand(1, 3, 1, 4)},
     shapes={"x": (None, 3, None, 4)})
case("concat-axis0", lambda a, b: rg.concat([a, b, a], 0), {"a": rand(2, 3), "b": rand(1, 3)})
case("concat-axis-1-unknown", lambda a, b: rg.concat([a, b], -1),
     {"a": rand(2, 3), "b": rand(2, 2)}, shapes={"a": (None, None), "b": (None, 2)})
case("concat-second-order", second(lambda x: rg.concat([x, rg.square(x)], 1) ** 2.0),
     {"x": rand(2, 3)})
case("split-equal", lambda x: rg.split(x, 3, axis=1), {"x": rand(2, 6)})
case("split-sizes-unknown", lambda x: rg.split(x, [1, -1, 2], axis=1), {"x": rand(2, 6)},
     shapes={"x": (None, None)})
case("split-some-outputs-unused", lambda x: rg.split(x, 3, axis=0)[1] * 2.0, {"x": rand(6, 2)})
case("split-second-order", second(lambda x: rg.square(rg.split(x, 2, 1)[0])),
     {"x": rand(2, 4)})
case("stack", lambda a, b: rg.stack([a, b, a], axis=1), {"a": rand(2, 3), "b": rand(2, 3)})
case("stack-unknown", lambda a, b: rg.stack([a, b], axis=-1), {"a": rand(2, 3), "b": rand(2, 3)},
     shapes={"a": (None, 3), "b": (None, 3)})
case("unstack", lambda x: rg.unstack(x, axis=1), {"x": rand(2, 3, 2)})
case("unstack-some-outputs-unused", lambda x: rg.unstack(x)[2] * 3.0, {"x": rand(4, 2)})
case("unstack-unknown-num-given", lambda x: rg.unstack(x, num=3, axis=1),
     {"x": rand(2, 3)}, shapes={"x": (None, None)})
case("stack-unstack-second-order",
     second(lambda x: rg.stack(rg.unstack(rg.square(x), axis=1)[::-1], 0) ** 2.0),
     {"x": rand(2, 3)})
for key in [1, -1, slice(1, None), slice(None, None, -1), slice(0, 3, 2),
            (Ellipsis, 1), (None, slice(1, 3)), (1, None, slice(None, None, 2)),
            (slice(None), -2), (-1, 0)]:
    case(f"getitem-{key}", lambda x, key=key: x[key], {"x": rand(3, 4)})
case("getitem-3d-ellipsis", lambda x: x[0, ..., None, 1:], {"x": rand(2, 3, 4)})
case("getitem-overlapping-uses", lambda x: x[:, 1:] * x[:, :-1], {"x": rand(3, 4)})
case("getitem-unknown", lambda x: x[1:, ::2], {"x": rand(3, 5)}, shapes={"x": (None, None)})
case("getitem-second-order", second(lambda x: x[:, 1] ** 3.0), {"x": rand(3, 2)})
case("broadcast_to", lambda x: rg.broadcast_to(x, [2, 3, 4]), {"x": rand(3, 1)})
case("broadcast_to-unknown-input", lambda x: rg.broadcast_to(x, [3, 4]), {"x": rand(1, 4)},
     shapes={"x": (None, 4)})
case("sum_to_like-runtime", lambda g, like: rg.ops.elementwise.sum_to_like(g, like),
     {"g": rand(3, 4), "like": rand(1, 4)}, shapes={"g": (None, 4), "like": (None, 4)},
     allow_none=True)
case("dim-and-shape-as-data",
     lambda x: x * rg.cast(rg.dim(x, 0), rg.float64) + rg.cast(rg.reduce_sum(rg.shape(x)),
                                                                 rg.float64),
     {"x": rand(3, 4)}, shapes={"x": (None, 4)})

# --- nn ------------------------------------------------------------------------------------------
for fn in (rg.softmax, rg.log_softmax):
    case(f"{fn.__name__}", lambda x, fn=fn: fn(x), {"x": rand(3, 5)})
    case(f"{fn.__name__}-axis0", lambda x, fn=fn: fn(x, axis=0), {"x": rand(3, 5)})
    case(f"{fn.__name__}-unknown", lambda x, fn=fn: fn(x), {"x": rand(2, 4)},
         shapes={"x": (None, None)})
    case(f"{fn.__name__}-large-logits", lambda x, fn=fn: fn(x * 100.0), {"x": rand(2, 3) * 0.1})
    case(f"{fn.__name__}-second-order", second(lambda x, fn=fn: fn(x) ** 2.0), {"x": rand(2, 4)})
# tf.nn activations composed of the ops above (nn/activations.py): their branches and the
# clipped exponentials; softplus' outer branches at +-40 (float64 thresholds +-34)
_wide = np.concatenate([away_from_zero(2, 4) * 2.0, [[40.0, -40.0, 0.5, -0.5]]])
for fn in (rg.nn.elu, rg.nn.selu, rg.nn.leaky_relu, rg.nn.softplus, rg.nn.softsign):
    case(f"nn.{fn.__name__}", lambda x, fn=fn: fn(x), {"x": _wide}, shapes={"x": (None, 4)})
case("nn.l2_normalize", lambda x: rg.nn.l2_normalize(x, axis=1), {"x": rand(3, 4)})
case("nn.softmax-dim0", lambda x: rg.nn.softmax(x, dim=0), {"x": rand(3, 4)})

_labels = np.array([0, 3, 1, 3], dtype=np.int32)
xent = rg.sparse_softmax_cross_entropy_with_logits
case("sparse_xent", lambda logits: xent(labels=_labels, logits=logits), {"logits": rand(4, 5)})
case("sparse_xent-unknown", lambda logits: xent(labels=_labels, logits=logits),
     {"logits": rand(4, 5)}, shapes={"logits": (None, None)})
case("sparse_xent-mean-loss", lambda logits: rg.reduce_mean(xent(labels=_labels, logits=logits)),
     {"logits": rand(4, 5) * 3.0})
case("sparse_xent-second-order",
     lambda logits: grad(xent(labels=_labels, logits=logits) ** 2.0, logits),
     {"logits": rand(4, 5)})
case("one_hot-as-data", lambda x: x * rg.one_hot(_labels, 5, rg.float64), {"x": rand(4, 5)})

# --- fill, gather ---------------------------------------------------------------------------------
case("zeros-ones-fill-runtime-shape",
     lambda x: (x + rg.zeros([rg.dim(x, 0), 4], rg.float64))
     * rg.ones([rg.dim(x, 0), 1], rg.float64)
     + rg.fill([rg.dim(x, 0), rg.dim(x, 1)], 0.5, rg.float64) * x,
     {"x": rand(3, 4)}, shapes={"x": (None, None)})
_idx = np.array([[0, 2], [2, 4], [4, 4]], dtype=np.int32)  # repeats: the gradient adds up
case("gather", lambda p: rg.gather(p, _idx), {"p": rand(5, 3)})
case("gather-unknown-rows", lambda p: rg.gather(p, np.array([1, 1, 0])), {"p": rand(2, 3)},
     shapes={"p": (None, 3)})
case("gather-second-order", second(lambda x: rg.gather(x, _idx) ** 3.0), {"x": rand(5, 2)})
case("scatter_add_rows",   # (sink_gather's per-step embedding gradient; repeated rows)
     lambda acc, u: scatter_add_rows(acc, _idx, u) ** 2.0, {"acc": rand(5, 3),
                                                            "u": rand(3, 2, 3)})
# --- TF1 indexing ops (ops/tf1_index.py): repeated index rows add up in the gradients ------------
_nd = np.array([[0, 1], [2, 0], [0, 1]], dtype=np.int32)
case("gather_nd-partial-depth", lambda p: rg.gather_nd(p, _nd) ** 2.0, {"p": rand(3, 2, 4)})
case("gather_nd-unknown-rows", lambda p: rg.gather_nd(p, _nd[:, :1]) * np.arange(3.0),
     {"p": rand(3, 3)}, shapes={"p": (None, 3)})
case("gather_nd-second-order", second(lambda x: rg.gather_nd(x, _nd) ** 3.0), {"x": rand(3, 2)})
case("scatter_nd", lambda u: rg.scatter_nd(_nd, u, [3, 2, 4]) ** 2.0, {"u": rand(3, 4)})
_bm = np.array([True, False, True], dtype=bool)
_bm2 = np.array([[True, False, True, True], [False, False, True, False]], dtype=bool)
case("boolean_mask", lambda x: rg.boolean_mask(x, _bm) ** 2.0 * np.arange(4.0),
     {"x": rand(3, 4)})
case("boolean_mask-axis1-2d-mask", lambda x: rg.boolean_mask(x, _bm2, axis=1) ** 2.0,
     {"x": rand(3, 2, 4)})
case("boolean_mask-second-order", second(lambda x: rg.boolean_mask(x, _bm) ** 3.0),
     {"x": rand(3, 2)})
for _ex in (False, True):
    for _rev in (False, True):
        case(f"cumsum-exclusive={_ex}-reverse={_rev}",
             lambda x, e=_ex, r=_rev: rg.cumsum(x, 1, exclusive=e, reverse=r) ** 2.0,
             {"x": rand(2, 4)})
case("reverse", lambda x: rg.reverse(x, [0, -1]) * np.arange(12.0).reshape(3, 4),
     {"x": rand(3, 4)})
# --- reordering rows (dynamic_rnn's sort by length) ----------------------------------------------
_perm = np.array([2, 0, 3, 1], dtype=np.int32)
case("permute_rows", lambda x: permute_rows(x, _perm) ** 2.0 * np.arange(12.0).reshape(4, 3),
     {"x": rand(4, 3)})
case("permute_rows-axis1-unknown",
     lambda x: permute_rows(x, _perm, axis=1) * np.arange(8.0).reshape(2, 4),
     {"x": rand(2, 4)}, shapes={"x": (None, None)})
# --- a fed sequence read time-major (passes/host_sequences.py), rows reordered or not -------------
case("host_rows", lambda x: host_rows(x, 1) ** 2.0 * np.arange(24.0).reshape(3, 2, 4),
     {"x": rand(2, 3, 4)})
case("host_rows-sorted", lambda x: host_rows(x, 1, np.array([1, 0], np.int32)) ** 2.0
     * np.arange(24.0).reshape(3, 2, 4), {"x": rand(2, 3, 4)}, shapes={"x": (2, None, 4)})
# --- a value offloaded to host memory and back (passes/spill_values.py) ---------------------------
case("to_host-to_device", lambda x: to_device(to_host(x)) * x, {"x": rand(3, 4)})
case("reverse_sequence", lambda x: rg.reverse_sequence(x, np.array([3, 0, 2], np.int32), 1, 0)
     * np.arange(12.0).reshape(3, 4), {"x": rand(3, 4)})
case("placeholder_with_default", lambda x: rg.placeholder_with_default(x, [None, 3]) ** 2.0,
     {"x": rand(2, 3)})
case("identity-with-dependencies",   # static_state_saving_rnn's ordering: deps get no gradient
     lambda x, y: rg.ops.misc.with_dependencies([rg.exp(y)], rg.identity(x) ** 2.0),
     {"x": rand(2, 3), "y": rand(3)}, allow_none=True)
case("read_variable",   # rg.identity(v) under rg.control_dependencies: a read after x
     lambda x: _read_after(x), {"x": rand(2, 3)})
case("unused-input-gets-None", lambda x, y: x * 2.0, {"x": rand(2), "y": rand(2)},
     allow_none=True)


def _read_after(x):
    """x * v**2 with v read after x ran (the read's own gradient, to the variable, is checked
    in test_tf1_control.py)."""
    v = rg.Variable(np.linspace(-1.0, 1.0, 6).reshape(2, 3), name="v")
    with rg.control_dependencies([x]):
        return x * rg.identity(v) ** 2.0


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_gradient(c: Case):
    check_gradients(c.build, c.inputs, atol=c.atol, rtol=c.rtol, shapes=c.shapes, eps=c.eps,
                    allow_none=c.allow_none)


def test_unknown_dims_do_not_broadcast_at_run_time():
    # a [?,4] + [?,4] whose second operand is fed as [1,4] would need a runtime reduction in the
    # gradient; rnngraph fixes broadcasting at build time and says so instead of guessing
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float64, [None, 4], name="a")
        b = rg.placeholder(rg.float64, [None, 4], name="b")
        y = a + b
        with pytest.raises(rg.InvalidArgumentError, match=r"unknown at build time.*static 1"):
            rg.Session(g).run(y, {a: rand(3, 4), b: rand(1, 4)})


def test_reduce_max_splits_gradient_evenly_among_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    g = rg.Graph()
    with g.as_default():
        p = rg.placeholder(rg.float64, [None, 3])
        dx = rg.gradients(rg.reduce_sum(rg.reduce_max(p, 1) * np.array([1.0, 6.0])), [p])[0]
        got = rg.Session(g).run(dx, {p: x})
    np.testing.assert_allclose(got, [[0, 0.5, 0.5], [2, 2, 2]])


def test_sparse_xent_gradient_is_softmax_minus_onehot():
    logits = rand(4, 5)
    g = rg.Graph()
    with g.as_default():
        p = rg.placeholder(rg.float64, [4, 5])
        loss = rg.reduce_sum(xent(labels=_labels, logits=p))
        got = rg.Session(g).run(rg.gradients(loss, [p])[0], {p: logits})
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True) - np.eye(5)[_labels], atol=1e-12)


# --- coverage: every op with a vjp has a case above --------------------------------------------
# by import path: rnngraph.ops.shape / .fill as attributes are the builder functions
# every module of rnngraph.ops; loops are checked through whole RNNs (test_rnn_gradcheck.py)
# and fused kernels exist only after differentiation
OP_MODULES = [importlib.import_module(f"rnngraph.ops.{m.name}")
              for m in pkgutil.iter_modules(rg.ops.__path__)
              if m.name not in ("loop", "loop_grad", "fused", "fused_cupy",
                                "sources")]  # placeholders, variables: leaves, no inputs


def differentiable_ops() -> set[str]:
    names = set()
    for mod in OP_MODULES:
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Op) and cls.__module__ == mod.__name__ and cls.differentiable \
                    and cls.vjp is not Op.vjp:
                names.add(cls.name)
    return names


def ops_exercised() -> set[str]:
    """Op names in the graphs of all cases, including gradient nodes the second-order cases
    differentiate through."""
    names = set()
    for c in CASES:
        g = rg.Graph()
        with g.as_default():
            phs = {k: rg.placeholder(rg.float64, c.shapes.get(k, np.shape(v)), name=k)
                   for k, v in c.inputs.items()}
            c.build(**phs)
        names.update(n.op.name for n in g.nodes)
    return names


def test_every_differentiable_op_is_checked():
    missing = differentiable_ops() - ops_exercised()
    assert not missing, f"ops with a vjp but no gradient check: {sorted(missing)}"


def test_gradcheck_catches_a_wrong_vjp(monkeypatch):
    from rnngraph.ops.elementwise import Tanh
    monkeypatch.setattr(Tanh, "vjp", lambda self, node, g: [g])  # d tanh = 1: wrong
    with pytest.raises(AssertionError, match="gradient w.r.t. 'x'"):
        check_gradients(lambda x: rg.tanh(x), {"x": rand(2, 3)})
