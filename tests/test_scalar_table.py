"""ops/scalar.py is the one place an elementwise op's math is written: every fusible op has a
row, and each row's scalar Python form (what the numba backend compiles) computes what the op's
reference compute does, on values from every sign and size."""
import math

import numpy as np
import pytest

from rnngraph.io.registry import op_registry
from rnngraph.ops.scalar import SCALAR, py_exprs

# the numba prelude's helpers, in plain Python (exact functions, not its float32 approximations)
_HELPERS = {"math": math, "_tanh": math.tanh, "_sigmoid": lambda x: 1 / (1 + math.exp(-x)),
            "_ZERO": 0.0, "_ONE": 1.0}
_VALUES = [-2.5, -0.75, 0.0, 0.5, 1.25, 3.0]


# fusible, but layout rather than math: an n-ary sum and a slice of columns, which each
# generator writes as a join of its operands or an offset into a row
_STRUCTURAL = {"add_n", "column_block"}


def _fusible_ops():
    return {name: cls for name, cls in op_registry().items()
            if getattr(cls, "fusible", False) and name not in _STRUCTURAL}


def test_every_fusible_op_has_a_row_and_no_row_is_stale():
    fusible = _fusible_ops()
    assert set(fusible) <= set(SCALAR), sorted(set(fusible) - set(SCALAR))
    assert set(SCALAR) <= set(op_registry()), sorted(set(SCALAR) - set(op_registry()))


@pytest.mark.parametrize("name", sorted(py_exprs()))
def test_the_scalar_form_computes_the_reference(name):
    cls = op_registry()[name]
    op = cls()
    template = py_exprs()[name]
    arity = max(int(c) for c in "012" if "{" + c + "}" in template) + 1 \
        if "{" in template else 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        args = [float(rng.choice(_VALUES)) for _ in range(arity)]
        if name == "where":
            args[0] = bool(args[0] > 0)
        if name in ("log", "sqrt"):
            args = [abs(a) + 0.5 for a in args]
        if name in ("logical_and", "logical_or", "logical_not"):
            args = [a > 0 for a in args]
        if name == "div":
            args[1] = args[1] if args[1] != 0 else 1.5
        if name == "pow":
            args[0] = abs(args[0]) + 0.5
        arrays = [np.array([a], dtype=bool if isinstance(a, bool) else np.float64) for a in args]
        want = op.compute(np, *arrays)
        got = eval(template.format(*[f"a{i}" for i in range(arity)]),  # noqa: S307 - our table
                   dict(_HELPERS), {f"a{i}": a for i, a in enumerate(args)})
        np.testing.assert_allclose(np.float64(got), np.asarray(want, np.float64).reshape(-1)[0],
                                   rtol=1e-12, atol=1e-12, err_msg=f"{name}{tuple(args)}")


@pytest.mark.parametrize("name", ["maximum", "minimum", "relu"])
def test_a_nan_operand_gives_nan_as_numpy_does(name):
    """np.maximum / np.minimum propagate a NaN in either operand; Python's (and numba's)
    max(a, nan) returns a, so the form must not be a bare max/min."""
    op = op_registry()[name]()
    template = py_exprs()[name]
    arity = 2 if "{1}" in template else 1
    nan = float("nan")
    for args in ([nan, 1.0], [1.0, nan], [nan, nan]) if arity == 2 else ([nan],):
        want = op.compute(np, *[np.array([a]) for a in args])
        got = eval(template.format(*[f"a{i}" for i in range(arity)]),  # noqa: S307 - our table
                   dict(_HELPERS), {f"a{i}": a for i, a in enumerate(args)})
        assert np.isnan(want).all() and np.isnan(got), (name, args, got)
