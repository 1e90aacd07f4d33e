"""The optional accelerated CPU backend (numba): fused elementwise groups compiled to one loop
over rows, a loop's steps compiled whole (the loop executor's `compiled_steps` feature), and a
GEMM against weights packed once per loop run (with the opt-in helper thread).

Everything here is an alternative kernel for ops whose meaning and reference kernel live in
rnngraph/ops; results are the NumPy backend's to the bit, except the fused kernels' tanh and
sigmoid (a rational approximation, float32 rounding). Importing this package does not import
numba: each kernel factory checks for it and declines where it is missing, switched off
(RNNGRAPH_NUMBA=0) or the CPU lacks AVX2/FMA. Deleting this folder leaves a working product.
"""
from __future__ import annotations

import numpy as np

from ... import kernels
from ...ops.fused import Fused
from ...ops.panels import PanelMatMul
from ..numpy.fused import numpy_kernel
from . import fused as _fused
from . import panel_gemm as _gemm

CPU = "numpy"


@kernels.register(Fused, CPU, priority=10)
def fused_kernel(op, node, program):
    """One compiled loop over rows; arrays it declines go to the generated NumPy code."""
    if not program.ctx.options.get("accelerate", True):
        return None
    fallback = numpy_kernel(op, node, program.ctx.xp)
    return _fused.numba_kernel(op, node, fallback) or fallback


@kernels.register(PanelMatMul, CPU, priority=10)
def panel_matmul_kernel(op, node, program):
    if not program.ctx.options.get("accelerate", True):
        return None
    return _gemm.product if _gemm.available() else None


def loop_scope(body, xp):
    """A wrapper run(fn, *args) for a loop whose steps run packed products (the opt-in helper
    thread wakes for it: rg.config.cpu_helper_thread), or None."""
    if xp is np and any(isinstance(n.op, PanelMatMul) for n in body.nodes):
        return _gemm.in_loop
    return None


kernels.provide("packed_gemm", _gemm)
kernels.provide("accelerator", _fused)   # its available(): numba importable and not switched off
kernels.provide("loop_scope", loop_scope)


def compiled_steps(prog, python_driver, k, n_inv, n_seq, shared=()):
    """A plain loop's steps as one compiled function where its body allows (loop.py), or None;
    imported on first use: numba loads only when a loop runs with accelerated kernels."""
    if python_driver is None or not _fused.available():
        return None
    from . import loop   # heavy: imports numba and llvmlite
    return loop.compiled_steps(prog, python_driver, k, n_inv, n_seq, shared)


kernels.provide("compiled_steps", compiled_steps)
