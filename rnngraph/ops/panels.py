"""A loop's per-step product against a loop-invariant weight, with the weight packed once per
run (passes/pack_weights.py puts these in; ops/panel_gemm.py is the kernel). Both run after
differentiation (the pass does), so neither needs a gradient rule."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from . import panel_gemm
from .base import Op


class PackPanels(Op):
    """w [K, N] -> panels [ceil(N/16), K, 16]: w's columns in blocks of 16, each block's rows
    contiguous (zeros past column N): the layout the micro-kernels read."""
    name = "pack_panels"

    def infer(self, w):
        if w.rank != 2:
            raise ShapeError(f"needs a matrix [k, n], got {w}")
        k, n = w.shape
        return TensorType((None if n is None else -(-n // panel_gemm.NR), k, panel_gemm.NR),
                          w.dtype)

    def compute(self, xp, w):
        return panel_gemm.pack(xp, w)

    def flops(self, node):
        return 0


class PanelMatMul(Op):
    """a [M, K] @ w [K, N], with w also given as pack_panels(w): our GEMM (float32 on the CPU,
    numba installed: see panel_gemm.py), else the array module's matmul on w itself."""
    name = "panel_matmul"

    def infer(self, a, w, panels):
        if a.rank != 2 or w.rank != 2 or panels.rank != 3:
            raise ShapeError(f"needs matrices [m, k], [k, n] and panels [p, k, 16], got {a}, "
                             f"{w}, {panels}")
        if None not in (a.shape[1], w.shape[0]) and a.shape[1] != w.shape[0]:
            raise ShapeError(f"inner dimensions differ: {a} @ {w}")
        return TensorType((a.shape[0], w.shape[1]), a.dtype)

    def make_kernel(self, node, program):
        return _product(program.ctx.xp)

    def compute(self, xp, a, w, panels):
        return _product(xp)(a, w, panels)

    def flops(self, node):
        a, w, _ = node.inputs
        return 2 * (a.shape[0] or 1) * (a.shape[1] or 1) * (w.shape[1] or 1)


def _product(xp):
    """(a, w, panels) -> a @ w: our GEMM for float32 matrices on NumPy where it is available,
    else xp's matmul on w."""
    if xp is not np or not panel_gemm.available():
        return lambda a, w, panels: xp.matmul(a, w)
    return panel_gemm.product
