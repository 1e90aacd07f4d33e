"""A loop's per-step product against a loop-invariant weight, with the weight packed once per
run (passes/pack_weights.py puts these in; backends/numba/panel_gemm.py is the fast kernel).
Both run after differentiation (the pass does), so neither needs a gradient rule."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from .base import Op

NR = 16        # columns of a panel: two 8-float vectors


def pack(xp, w):
    """w [K, N] as panels [ceil(N/16), K, 16]: panel p holds columns 16p .. 16p+15, row after
    row (zero past column N)."""
    k, n = w.shape
    count, full = -(-n // NR), n // NR
    out = xp.empty((count, k, NR), w.dtype)
    if full:
        out[:full] = w[:, :full * NR].reshape(k, full, NR).transpose(1, 0, 2)
    if full < count:
        out[full] = 0
        out[full, :, :n - full * NR] = w[:, full * NR:]
    return out


class PackPanels(Op):
    """w [K, N] -> panels [ceil(N/16), K, 16]: w's columns in blocks of 16, each block's rows
    contiguous (zeros past column N): the layout the micro-kernels read."""
    name = "pack_panels"

    def infer(self, w):
        if w.rank != 2:
            raise ShapeError(f"needs a matrix [k, n], got {w}")
        k, n = w.shape
        return TensorType((None if n is None else -(-n // NR), k, NR),
                          w.dtype)

    def compute(self, xp, w):
        return pack(xp, w)

    def flops(self, node):
        return 0


class PanelMatMul(Op):
    """a [M, K] @ w [K, N], with w also given as pack_panels(w): the numba backend's GEMM reads
    the panels (float32 on the CPU); the reference is the array module's matmul on w."""
    name = "panel_matmul"
    foldable = False

    def infer(self, a, w, panels):
        if a.rank != 2 or w.rank != 2 or panels.rank != 3:
            raise ShapeError(f"needs matrices [m, k], [k, n] and panels [p, k, 16], got {a}, "
                             f"{w}, {panels}")
        if None not in (a.shape[1], w.shape[0]) and a.shape[1] != w.shape[0]:
            raise ShapeError(f"inner dimensions differ: {a} @ {w}")
        return TensorType((a.shape[0], w.shape[1]), a.dtype)

    def compute(self, xp, a, w, panels):
        return xp.matmul(a, w)

    def flops(self, node):
        a, w, _ = node.inputs
        return 2 * (a.shape[0] or 1) * (a.shape[1] or 1) * (w.shape[1] or 1)
