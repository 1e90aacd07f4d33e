"""The CuPy form of a Fused node: one generated CUDA kernel (cuda_codegen.py) per fused group.

A call checks shapes on the host (the unfused ops' checks of dims unknown at build time,
raising the same InvalidArgumentError as the NumPy kernel; nothing is read back from the GPU),
allocates the outputs and launches the kernel once on the current stream. Inputs are read
through their strides: views (a slice of a stack, a transposed matrix) are not copied.

The generated array code (backends/numpy/fused.py, run on CuPy arrays: one CuPy launch per
op) remains for what the generator declines: float16 groups (C has no float16 type without
CUDA's headers), a join read inside its own group, and outputs whose shapes cannot share one
index space; none of these occur in the LSTM, GRU and BasicRNN cells' groups. It also runs a
call whose outputs' unknown dims differ from each other (they are broadcast separately), and
a call whose inputs are not of the dtypes the kernel was made for (it then computes what the
NumPy backend computes: NumPy's promotion, no cast). Host inputs (NumPy arrays) are copied to
the device as they are.
"""
from __future__ import annotations

import numpy as np

from ...ops.elementwise import fused_dim_mismatch
from ..numpy.fused import numpy_kernel  # the array code, for the groups the generator declines
from .cuda_codegen import THREADS, CudaKernel, cuda_kernel


def cupy_kernel(op, node, cp):
    spec = cuda_kernel(op, [v.type for v in node.inputs])
    if not isinstance(spec, CudaKernel):
        return numpy_kernel(op, node, cp)
    kernel = cp.RawKernel(spec.source, spec.name)
    ndarray = cp.ndarray
    in_dtypes = [t for _, t in spec.in_types]
    fallback = []
    what = f"fused node '{node.name}' (built at {node.location})"

    def mismatch(j, shapes):
        fused_dim_mismatch(op, node, j, shapes)

    def array_code(args):
        if not fallback:
            fallback.append(numpy_kernel(op, node, cp))
        return fallback[0](*args)

    def run(*args):
        # host values go to the device as they are (never cast: a cast would change the math)
        args = [a if type(a) is ndarray else cp.asarray(a) for a in args]
        dtypes = [a.dtype.name for a in args]
        if dtypes != in_dtypes:
            # not the dtypes the kernel was made for: the array code computes what the NumPy
            # backend computes for them (NumPy's promotion), as it does on the CPU
            return array_code(args)
        strides = []
        for i, a in enumerate(args):
            item = a.itemsize
            if any(s % item for s in a.strides):
                args[i] = a = cp.ascontiguousarray(a)
            strides.append([s // item for s in a.strides])
        launch = spec.prepare([a.shape for a in args], dtypes, strides, mismatch, what)
        if launch is None:   # outputs' unknown dims differ: the array code broadcasts them
            return array_code(args)
        n, shapes, scalars = launch
        outs = [cp.empty(s, dtype=d) for s, d in zip(shapes, spec.out_dtypes)]
        if n:
            kernel((spec.grid(n),), (THREADS,), (*args, *outs, *map(np.int64, scalars)))
        return tuple(outs)
    run.cuda_kernel = spec   # (what ran: tests and kernel_sources read it)
    return run
