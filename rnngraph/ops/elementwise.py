"""Elementwise ops with NumPy broadcasting: arithmetic, activations, comparisons, where, cast."""
from __future__ import annotations

import functools

import numpy as np

from ..dtypes import as_dtype
from ..errors import InvalidArgumentError, ShapeError, user_location
from ..ir.types import TensorType, broadcast_shapes
from ..ir.value import Value, install_operators
from .base import Op, apply, as_value, require_float, same_dtype
from .scalar import c_expr, ufunc
from .sources import constant, python_value_array


def _binary_args(a, b, op: str = "op"):
    """A number or array beside a Value takes that Value's dtype, as TF1 converts the other
    operand of `x * 0.5` (weak typing). A Python float with an int tensor, a number with a bool
    tensor or a complex with a real one raises TypeError as in TF1 (`lens * 0.5` would
    truncate); so does a NumPy float with an int tensor (TF1 would truncate it silently)."""
    if isinstance(a, Value) and not isinstance(b, Value):
        b = _like(b, a, op)
    elif isinstance(b, Value) and not isinstance(a, Value):
        a = _like(a, b, op)
    elif not isinstance(a, Value) and not isinstance(b, Value):
        a = as_value(a)
        b = _like(b, a, op)
    return as_value(a), as_value(b)


def _like(x, like: Value, op: str) -> Value:
    dtype = like.dtype
    if isinstance(x, (np.ndarray, np.generic)):
        if x.dtype != dtype and x.dtype.kind in "biufc" and not np.can_cast(
                x.dtype, dtype, casting="same_kind"):
            raise TypeError(f"{op} at {user_location()}: a NumPy {x.dtype.name} value ({x!r:.60}) "
                            f"with a {dtype.name} tensor would lose its fraction or sign; cast "
                            f"one of them with rg.cast")
        return constant(x, dtype=dtype) if x.dtype.kind in "biufc" else as_value(x)
    if isinstance(x, (list, tuple)) and any(isinstance(v, Value) for v in _leaves(x)):
        return as_value(x)
    return constant(python_value_array(x, dtype, f"{op}: the operand beside {like.name}"),
                    graph=None)


def _leaves(x):
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def unbroadcast(g: Value, x: Value) -> Value:
    """Sum cotangent `g` down to the shape of `x` (the adjoint of broadcasting x).

    Decided at build time: a dim unknown at build time never broadcasts at run time (elementwise
    kernels check this), so only leading dims and dims statically 1 in x are summed.
    """
    lead = g.type.rank - x.type.rank
    keep = tuple(i for i, d in enumerate(x.shape) if d == 1 and g.shape[i + lead] != 1)
    if lead == 0 and not keep:
        return g
    return apply(SumTo(lead, keep), [g])


class SumTo(Op):
    """Sum over the `lead` leading axes and, keeping them, over `axes` (after the leading ones)."""
    name = "sum_to"

    def __init__(self, lead: int, axes: tuple):
        self.lead, self.axes = int(lead), tuple(int(a) for a in axes)

    def infer(self, g):
        if g.rank < self.lead or any(a + self.lead >= g.rank for a in self.axes):
            raise ShapeError(f"cannot sum {g} over {self.lead} leading axes and axes {self.axes}")
        shape = list(g.shape[self.lead:])
        for a in self.axes:
            shape[a] = 1
        return TensorType(tuple(shape), g.dtype)

    def compute(self, xp, g):
        if self.axes:
            g = g.sum(axis=tuple(a + self.lead for a in self.axes), keepdims=True)
        return g.sum(axis=tuple(range(self.lead))) if self.lead else g

    def vjp(self, node, g):
        return [broadcast_like(g, node.inputs[0])]


class SumToLike(Op):
    """sum_to_like(g, like): g summed over broadcast axes down to like's *runtime* shape (the
    vjp of explicit broadcasts, whose unknown dims may really be 1)."""
    name = "sum_to_like"

    def infer(self, g, like):
        return TensorType(like.shape, g.dtype)

    def compute(self, xp, g, like):
        shape = like.shape
        if g.shape == shape:
            return g
        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, d in enumerate(shape) if d == 1 and g.shape[i + lead] != 1)
        return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)

    def vjp(self, node, g):
        return [broadcast_like(g, node.inputs[0]), None]


def sum_to_like(g, like):
    if g.shape == like.shape and all(d is not None for d in g.shape):
        return g
    return apply(SumToLike(), [g, like])


class BroadcastLike(Op):
    """broadcast_like(x, like): x broadcast to like's runtime shape."""
    name, shape_inputs = "broadcast_like", (1,)

    def infer(self, x, like):
        return TensorType(broadcast_shapes(x.shape, like.shape), x.dtype)

    def compute(self, xp, x, like):
        return xp.broadcast_to(x, like.shape)

    def vjp(self, node, g):
        return [sum_to_like(g, node.inputs[0]), None]


def broadcast_like(x, like):
    return apply(BroadcastLike(), [x, like])


# --- binary arithmetic --------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _unknown_dim_checks(shapes: tuple) -> tuple:
    return tuple(unknown_dim_checks_uncached(shapes))


def unknown_dim_checks(shapes) -> tuple:
    return _unknown_dim_checks(tuple(shapes))


def unknown_dim_checks_uncached(shapes) -> list:
    """Pairs (i, axis_i, j, axis_j) of aligned dims that must be equal at run time: an unknown
    dim against an unknown or known (>1) dim, which rnngraph does not let broadcast."""
    rank = max(len(s) for s in shapes)
    checks = []
    for pos in range(rank):
        dims = [(k, len(s) - rank + pos) for k, s in enumerate(shapes) if len(s) - rank + pos >= 0]
        dims = [(k, a) for k, a in dims if shapes[k][a] != 1]
        unknown = [(k, a) for k, a in dims if shapes[k][a] is None]
        if unknown and len(dims) > 1:
            k0, a0 = unknown[0]
            checks.extend((k0, a0, k, a) for k, a in dims if (k, a) != (k0, a0))
    return checks


def fused_dim_mismatch(op, node, j: int, shapes) -> None:
    """Raise the InvalidArgumentError of instruction j of Fused `op` (graph node `node`) whose
    operands of `shapes` differ in a dim unknown at build time: the unfused op's error, naming
    it and the node it was fused into. Every backend's fused kernel raises this one message."""
    name, where = op._origins[j] if j < len(op._origins) else (node.name, node.location)
    shown = " and ".join(str(tuple(s)) for s in shapes)
    raise InvalidArgumentError(
        f"{op.instrs[j][0].name} '{name}' (built at {where}; fused into '{node.name}'): "
        f"shapes {shown} differ in a dimension "
        "unknown at build time; rnngraph broadcasts only dims known to be 1 (give the "
        "placeholder a static 1 there)")


def with_dim_checks(fn, node):
    """Wrap kernel `fn` with the run-time checks its inputs' unknown dims need (if any)."""
    checks = _unknown_dim_checks(tuple(v.shape for v in node.inputs))
    if not checks:
        return fn

    def checked(*args):
        for i, ai, j, aj in checks:
            if args[i].shape[ai] != args[j].shape[aj]:
                shapes = " and ".join(str(tuple(a.shape)) for a in args)
                raise InvalidArgumentError(
                    f"{node.describe()}: shapes {shapes} differ in a dimension unknown at build "
                    "time; rnngraph broadcasts only dims known to be 1 (give the placeholder a "
                    "static 1 there)")
        return fn(*args)
    return checked


class UfuncEmit:
    """Fusion support: the op's math is its row of ops/scalar.py's table; NumPy code calls its
    ufunc, CuPy's kernel pastes its C expression."""
    fusible = True

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        # the ufunc goes into the namespace under the generator's own key: no text of the
        # op's (an attribute could come from a file) is ever pasted into the source
        ns[key] = ufunc(self, ns["xp"])
        call = f"{key}({', '.join(args)}"
        return [f"{res} = {call}, out={out})" if out else f"{res} = {call})"]

    def cexpr(self, args):
        return c_expr(self, args)


class Binary(UfuncEmit, Op):

    def infer(self, a, b):
        dtype = same_dtype(self.name, a, b)
        return TensorType(broadcast_shapes(a.shape, b.shape), dtype)

    def compute(self, xp, a, b):
        return ufunc(self, xp)(a, b)


class Add(Binary):
    name = "add"

    def vjp(self, node, g):
        a, b = node.inputs
        return [unbroadcast(g, a), unbroadcast(g, b)]


class Sub(Binary):
    name = "sub"

    def vjp(self, node, g):
        a, b = node.inputs
        return [unbroadcast(g, a), unbroadcast(negative(g), b)]


class Mul(Binary):
    name = "mul"

    def vjp(self, node, g):
        a, b = node.inputs
        return [unbroadcast(multiply(g, b), a), unbroadcast(multiply(g, a), b)]


class Div(Binary):
    name = "div"

    def infer(self, a, b):
        out = super().infer(a, b)
        require_float(out, "div operands")
        return out

    def vjp(self, node, g):
        a, b = node.inputs
        y = node.outputs[0]
        return [unbroadcast(divide(g, b), a), unbroadcast(negative(multiply(g, divide(y, b))), b)]


def _route(g, pick_a, a, b):
    """The cotangent of a two-way selection: g goes to a where pick_a, else to b."""
    zero = zeros_like(g)
    return [unbroadcast(where_v2(pick_a, g, zero), a), unbroadcast(where_v2(pick_a, zero, g), b)]


class Maximum(Binary):
    name = "maximum"

    def vjp(self, node, g):
        a, b = node.inputs
        return _route(g, greater_equal(a, b), a, b)


class Minimum(Binary):
    name = "minimum"

    def vjp(self, node, g):
        a, b = node.inputs
        return _route(g, less_equal(a, b), a, b)


class Pow(Binary):
    name = "pow"

    def vjp(self, node, g):
        a, b = node.inputs
        y = node.outputs[0]
        da = multiply(g, multiply(b, pow(a, subtract(b, 1))))
        safe_a = where_v2(greater(a, 0), a, ones_like(a))  # d/db a^b = a^b log a; 0 where a<=0
        db = multiply(g, multiply(y, log(safe_a)))
        return [unbroadcast(da, a), unbroadcast(db, b)]


# --- comparisons (no gradient) ---------------------------------------------------------------
class Compare(Binary):
    differentiable = False

    def infer(self, a, b):
        same_dtype(self.name, a, b)
        return TensorType(broadcast_shapes(a.shape, b.shape), np.bool_)


class Less(Compare):
    name = "less"


class LessEqual(Compare):
    name = "less_equal"


class Greater(Compare):
    name = "greater"


class GreaterEqual(Compare):
    name = "greater_equal"


class Equal(Compare):
    name = "equal"


class NotEqual(Compare):
    name = "not_equal"


class LogicalAnd(Binary):
    name, differentiable = "logical_and", False


class LogicalOr(Binary):
    name, differentiable = "logical_or", False


# --- unary ----------------------------------------------------------------------------------
class Unary(UfuncEmit, Op):
    float_only = True

    def infer(self, x):
        if self.float_only:
            require_float(x)
        return x

    def compute(self, xp, x):
        return ufunc(self, xp)(x)


class Neg(Unary):
    name, float_only = "neg", False

    def vjp(self, node, g):
        return [negative(g)]


class Tanh(Unary):
    name = "tanh"

    def vjp(self, node, g):
        y = node.outputs[0]
        return [multiply(g, subtract(1.0, square(y)))]


class Sigmoid(Unary):
    name = "sigmoid"

    # 1 / (1 + exp(-x)), with x clamped so exp cannot overflow (no warning, no inf): measured
    # ~2x faster than 0.5 * tanh(x / 2) + 0.5 on float32, since NumPy's exp is vectorised
    _CLAMP = {"float16": 11.0, "float32": 88.0, "float64": 709.0}

    def compute(self, xp, x):
        y = xp.maximum(x, -self._CLAMP.get(x.dtype.name, 88.0))
        if x.ndim == 0:  # NumPy scalars have no buffer to write into
            return x.dtype.type(1) / (1 + xp.exp(-y))
        xp.negative(y, out=y)
        xp.exp(y, out=y)
        y += 1
        xp.reciprocal(y, out=y)
        return y

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        clamp = self._CLAMP.get(getattr(dtype, "name", "float32"), 88.0)
        if rank == 0:
            return [f"{res} = 1 / (1 + xp.exp(-xp.maximum({args[0]}, {-float(clamp)!r})))"]
        first = f"xp.maximum({args[0]}, {-float(clamp)!r}, out={out})" if out else \
            f"xp.maximum({args[0]}, {-float(clamp)!r})"
        return [f"{res} = {first}", f"xp.negative({res}, out={res})", f"xp.exp({res}, out={res})",
                f"{res} += 1", f"xp.reciprocal({res}, out={res})"]

    def cexpr(self, args):
        return c_expr(self, args)

    def vjp(self, node, g):
        y = node.outputs[0]
        return [multiply(g, multiply(y, subtract(1.0, y)))]


class Relu(Unary):
    name = "relu"

    def compute(self, xp, x):
        return xp.maximum(x, x.dtype.type(0))

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        return [f"{res} = xp.maximum({args[0]}, 0, out={out})" if out else
                f"{res} = xp.maximum({args[0]}, 0)"]

    def cexpr(self, args):
        return c_expr(self, args)

    def vjp(self, node, g):
        x = node.inputs[0]
        return [where_v2(greater(x, 0.0), g, zeros_like(g))]


class Exp(Unary):
    name = "exp"

    def vjp(self, node, g):
        return [multiply(g, node.outputs[0])]


class Log(Unary):
    name = "log"

    def vjp(self, node, g):
        return [divide(g, node.inputs[0])]


class Square(Unary):
    name, float_only = "square", False

    def vjp(self, node, g):
        return [multiply(g, multiply(node.inputs[0], 2.0))]


class Sqrt(Unary):
    name = "sqrt"

    def vjp(self, node, g):
        return [divide(g, multiply(node.outputs[0], 2.0))]


class Abs(Unary):
    name, float_only = "abs", False

    def vjp(self, node, g):
        return [multiply(g, sign(node.inputs[0]))]


class Sign(Unary):
    name, float_only, differentiable = "sign", False, False


class LogicalNot(Unary):
    name, float_only, differentiable = "logical_not", False, False


# --- where / cast ------------------------------------------------------------------------------
class Where(Op):
    """where(cond, a, b): a where cond is true else b, broadcasting all three."""
    name = "where"
    fusible = True

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        return [f"{res} = xp.where({', '.join(args)})"]

    def cexpr(self, args):
        return c_expr(self, args)

    def infer(self, cond, a, b):
        if cond.dtype != np.bool_:
            raise TypeError(f"condition must be bool, got {cond.dtype}")
        dtype = same_dtype(self.name, a, b)
        return TensorType(broadcast_shapes(cond.shape, a.shape, b.shape), dtype)

    def compute(self, xp, cond, a, b):
        return xp.where(cond, a, b)

    def vjp(self, node, g):
        cond, a, b = node.inputs
        zero = zeros_like(g)
        return [None, unbroadcast(where_v2(cond, g, zero), a),
                unbroadcast(where_v2(cond, zero, g), b)]


class Cast(Op):
    name = "cast"

    def __init__(self, dtype):
        self.dtype = as_dtype(dtype).name

    def infer(self, x):
        return TensorType(x.shape, self.dtype)

    def compute(self, xp, x):
        return x.astype(self.dtype, copy=False)

    def vjp(self, node, g):
        x = node.inputs[0]
        if not np.issubdtype(x.dtype, np.floating) or not np.issubdtype(as_dtype(self.dtype), np.floating):
            return [None]
        return [cast(g, x.dtype)]


class _FilledLike(Op):
    """A tensor shaped like x holding one value; fusible, so a mask's where(c, y, 0) fuses."""
    differentiable, fusible, fill, shape_inputs = False, True, 0, (0,)

    def infer(self, x):
        return x

    def compute(self, xp, x):
        return xp.full_like(x, self.fill)

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        return [f"{res} = xp.full_like({args[0]}, {int(type(self).fill)!r})"]

    def cexpr(self, args):
        return c_expr(self, args)


class ZerosLike(_FilledLike):
    name, fill = "zeros_like", 0


class OnesLike(_FilledLike):
    name, fill = "ones_like", 1


# --- builders -----------------------------------------------------------------------------
def _binary_builder(cls):
    def build(x, y, name=None):   # (TF1 names: tf.maximum(x=, y=))
        return apply(cls(), _binary_args(x, y, cls.name), name=name)
    build.__name__ = cls.name
    build.__doc__ = f"Elementwise {cls.name} with NumPy broadcasting."
    return build


add = _binary_builder(Add)
subtract = _binary_builder(Sub)
multiply = _binary_builder(Mul)
maximum = _binary_builder(Maximum)
minimum = _binary_builder(Minimum)
pow = _binary_builder(Pow)
less = _binary_builder(Less)
less_equal = _binary_builder(LessEqual)
greater = _binary_builder(Greater)
greater_equal = _binary_builder(GreaterEqual)
equal = _binary_builder(Equal)
not_equal = _binary_builder(NotEqual)
logical_and = _binary_builder(LogicalAnd)
logical_or = _binary_builder(LogicalOr)


# TF1's true division: integers become floats first (int8/16 -> float32, int32/64 -> float64)
_TRUEDIV_DTYPE = {"int8": np.float32, "uint8": np.float32, "int16": np.float32,
                  "uint16": np.float32, "int32": np.float64, "uint32": np.float64,
                  "int64": np.float64, "uint64": np.float64}


def truediv(x, y, name=None):
    """x / y as Python 3 divides (tf.truediv, tf.divide, the `/` operator): integer tensors are
    cast to float first, int32 and int64 to float64, int8 and int16 to float32 (TF1's table)."""
    x, y = _binary_args(x, y, "truediv")
    if x.dtype == y.dtype and x.dtype.kind == "b":
        raise TypeError(f"truediv at {user_location()}: cannot divide bool tensors")
    to = _TRUEDIV_DTYPE.get(x.dtype.name)
    if to is not None and x.dtype == y.dtype:
        x, y = cast(x, to), cast(y, to)
    return apply(Div(), [x, y], name=name)


divide = truediv


class _Integral(Op):
    """A binary op on numbers, integers included (no fused kernel: not in ops/scalar.py)."""

    def infer(self, a, b):
        dtype = same_dtype(self.name, a, b)
        if dtype.kind not in "iuf":
            raise TypeError(f"{self.name} needs integer or float tensors, got {dtype}")
        return TensorType(broadcast_shapes(a.shape, b.shape), dtype)


class FloorDiv(_Integral):
    """floor(x / y) (tf.floordiv, the `//` operator); no gradient, as in TF."""
    name = "floordiv"
    differentiable = False

    def compute(self, xp, a, b):
        return xp.floor_divide(a, b)


class FloorMod(_Integral):
    """x - floor(x / y) * y: the remainder takes the divisor's sign (tf.floormod, tf.mod, `%`)."""
    name = "floormod"

    def compute(self, xp, a, b):
        return xp.mod(a, b)

    def vjp(self, node, g):   # TF's FloorMod gradient: (g, -g * floor(x / y))
        a, b = node.inputs
        return [unbroadcast(g, a), unbroadcast(negative(multiply(g, floordiv(a, b))), b)]


floordiv = _binary_builder(FloorDiv)
floormod = _binary_builder(FloorMod)
mod = floormod


def div(x, y, name=None):
    """tf.div (TF1): Python 2 division, floor division for integers, true division otherwise."""
    x, y = _binary_args(x, y, "div")
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        return floordiv(x, y, name=name)
    return apply(Div(), [x, y], name=name)


def squared_difference(x, y, name=None):
    """(x - y)**2 elementwise (tf.squared_difference)."""
    x, y = _binary_args(x, y, "squared_difference")
    return square(subtract(x, y), name=name)


def _unary_builder(cls):
    def build(x, name=None):
        return apply(cls(), [x], name=name)
    build.__name__ = cls.name
    build.__doc__ = f"Elementwise {cls.name}."
    return build


negative = _unary_builder(Neg)
tanh = _unary_builder(Tanh)
sigmoid = _unary_builder(Sigmoid)
relu = _unary_builder(Relu)
exp = _unary_builder(Exp)
log = _unary_builder(Log)
square = _unary_builder(Square)
sqrt = _unary_builder(Sqrt)
abs = _unary_builder(Abs)
sign = _unary_builder(Sign)
logical_not = _unary_builder(LogicalNot)
zeros_like = _unary_builder(ZerosLike)
ones_like = _unary_builder(OnesLike)


def rsqrt(x, name=None):
    """1 / sqrt(x) elementwise (tf.rsqrt)."""
    x = as_value(x)
    return divide(ones_like(x), sqrt(x), name=name)


def where_v2(condition, x, y, name=None):
    """Elementwise select: x where condition else y, broadcasting all three (tf.where_v2,
    NumPy's where): a rank-1 condition lines up with the last axis."""
    x, y = _binary_args(x, y, "where")
    return apply(Where(), [condition, x, y], name=name)


def where(condition, x, y, name=None):
    """tf.where(condition, x, y) as in TF1 (v1): x where condition else y.

    A rank-1 condition with x and y of higher rank selects rows: condition[i] picks row x[i] or
    y[i] (its size must be their first dimension; a ShapeError naming your line otherwise), as
    in `tf.where(finished, zeros, output)`. Otherwise condition, x and y broadcast as in
    where_v2 (TF1 requires equal shapes there; broadcasting accepts more)."""
    x, y = _binary_args(x, y, "where")
    condition = as_value(condition)
    try:
        shape = broadcast_shapes(x.shape, y.shape)
    except ShapeError:
        shape = None  # Where reports the mismatch, naming the user's line
    if shape is not None and condition.type.rank == 1 and len(shape) > 1:
        n, rows = condition.shape[0], shape[0]
        if n is not None and rows is not None and n != rows:
            raise ShapeError(
                f"where at {user_location()}: a rank-1 condition selects rows (TF1 tf.where), "
                f"so its size {n} must be the first dimension of x and y, got {rows} "
                f"(condition {condition.type}, x {x.type}, y {y.type})")
        from .shape import expand_dims  # shape.py imports this module
        for _ in range(len(shape) - 1):  # [n] -> [n, 1, ..., 1]: one flag per row
            condition = expand_dims(condition, -1)
    return apply(Where(), [condition, x, y], name=name)


def cast(x, dtype, name=None):
    x = as_value(x)
    if x.dtype == as_dtype(dtype):
        return x
    return apply(Cast(dtype), [x], name=name)


def sum_to(g, like, name=None):
    """g summed down to like's static shape (see unbroadcast)."""
    return unbroadcast(g, like)


def clip_by_value(x, clip_value_min, clip_value_max, name=None):
    """Clamp x into [min, max] elementwise (gradient passes where x is inside)."""
    return minimum(maximum(x, clip_value_min), clip_value_max, name=name)


# the `//`, `%`, `&`, `|`, `~` and abs() operators of Value (ir/value.py)
install_operators(floordiv=floordiv, floormod=floormod, logical_and=logical_and,
                  logical_or=logical_or, logical_not=logical_not, abs=abs)
