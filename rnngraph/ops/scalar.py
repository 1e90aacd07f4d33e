"""The elementwise math of each fusible op, written once: what it computes on one element.

Every code generator derives from this table: the NumPy fused code calls the op's ufunc
(`ufunc`, a NumPy/CuPy function name, None where the op has a lowering of its own), the CuPy
backend's CUDA kernel (backends/cupy/cuda_codegen.py) pastes the C expression (`c`), and the
numba backend's fused loop the Python expression (`py`); the tests compile the C forms with
NVRTC and, on the CPU, with a C++ compiler against each op's reference compute. Templates take
their operands as {0}, {1}, {2}; helper names in `py` (_tanh, _sigmoid, _ZERO, _ONE) are the
numba prelude's. Nothing here is formatted from data: the operands are identifiers the
generators make, and the table is keyed by the op classes' own names (type(op).name), never
by an instance attribute.
"""
from __future__ import annotations

from typing import NamedTuple


class Scalar(NamedTuple):
    ufunc: str | None   # the array module's function for the whole op (binary/unary ufuncs)
    c: str              # CUDA C expression
    py: str             # Python expression numba compiles (float32 operands)


SCALAR = {
    "add": Scalar("add", "{0} + {1}", "{0} + {1}"),
    "sub": Scalar("subtract", "{0} - {1}", "{0} - {1}"),
    "mul": Scalar("multiply", "{0} * {1}", "{0} * {1}"),
    "div": Scalar("divide", "{0} / {1}", "{0} / {1}"),
    # (C: a NaN operand gives NaN, as NumPy's maximum does; CUDA's max/fmaxf would drop it)
    "maximum": Scalar("maximum", "{0} > {1} || {0} != {0} ? {0} : {1}",
                      "{0} if {0} > {1} or {0} != {0} else {1}"),   # (max(a, nan) is a)
    "minimum": Scalar("minimum", "{0} < {1} || {0} != {0} ? {0} : {1}",
                      "{0} if {0} < {1} or {0} != {0} else {1}"),
    "pow": Scalar("power", "pow({0}, {1})", "{0} ** {1}"),
    "less": Scalar("less", "{0} < {1}", "{0} < {1}"),
    "less_equal": Scalar("less_equal", "{0} <= {1}", "{0} <= {1}"),
    "greater": Scalar("greater", "{0} > {1}", "{0} > {1}"),
    "greater_equal": Scalar("greater_equal", "{0} >= {1}", "{0} >= {1}"),
    "equal": Scalar("equal", "{0} == {1}", "{0} == {1}"),
    "not_equal": Scalar("not_equal", "{0} != {1}", "{0} != {1}"),
    "logical_and": Scalar("logical_and", "{0} && {1}", "{0} and {1}"),
    "logical_or": Scalar("logical_or", "{0} || {1}", "{0} or {1}"),
    "logical_not": Scalar("logical_not", "!{0}", "not {0}"),
    "neg": Scalar("negative", "-{0}", "-{0}"),
    "tanh": Scalar("tanh", "tanh({0})", "_tanh({0})"),
    "sigmoid": Scalar(None, "1 / (1 + exp(-{0}))", "_sigmoid({0})"),
    "relu": Scalar(None, "{0} > 0 || {0} != {0} ? {0} : 0", "max({0}, _ZERO)"),
    "exp": Scalar("exp", "exp({0})", "math.exp({0})"),
    "log": Scalar("log", "log({0})", "math.log({0})"),
    "square": Scalar("square", "{0} * {0}", "{0} * {0}"),
    "sqrt": Scalar("sqrt", "sqrt({0})", "math.sqrt({0})"),
    "abs": Scalar("abs", "abs({0})", "abs({0})"),
    "sign": Scalar("sign", "{0} != {0} ? {0} : ({0} > 0) - ({0} < 0)", None),
    "where": Scalar(None, "{0} ? {1} : {2}", "{1} if {0} else {2}"),
    "zeros_like": Scalar(None, "0", "_ZERO"),   # (not x * 0: that would keep a NaN)
    "ones_like": Scalar(None, "1", "_ONE"),
}


def ufunc(op, xp):
    """The array module's function that computes `op` whole (add, tanh, ...)."""
    name = SCALAR[type(op).name].ufunc
    if name is None:
        raise TypeError(f"op {type(op).name!r} has no single ufunc")
    return getattr(xp, name)


def c_expr(op, args) -> str:
    """The CUDA C expression of `op` on operand names `args`."""
    return "(" + SCALAR[type(op).name].c.format(*args) + ")"


def py_exprs() -> dict:
    """op name -> the Python expression numba compiles, for every op that has one."""
    return {name: s.py for name, s in SCALAR.items() if s.py is not None}
