"""check_numerics: stop a run at the first NaN/Inf, naming the user's message."""
from __future__ import annotations

from ..errors import NumericsError  # noqa: F401  (raised by check_numerics; also rg.NumericsError)
from .base import Op, apply, require_float


class CheckNumerics(Op):
    name = "check_numerics"

    def __init__(self, message: str):
        self.message = str(message)

    def infer(self, x):
        require_float(x, "check_numerics input")
        return x

    def compute(self, xp, x):
        finite = xp.isfinite(x)
        if not bool(finite.all()):
            n_nan, n_inf = int(xp.isnan(x).sum()), int(xp.isinf(x).sum())
            raise NumericsError(f"{self.message}: tensor of shape {tuple(x.shape)} has "
                                f"{n_nan} NaN and {n_inf} Inf values")
        return x

    def vjp(self, node, g):
        return [g]

    def flops(self, node):
        return 0


def check_numerics(x, message, name=None):
    """x unchanged, or a NumericsError (a FloatingPointError) naming `message` if x has NaN/Inf."""
    return apply(CheckNumerics(message), [x], name=name)
