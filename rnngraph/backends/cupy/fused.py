"""The CuPy form of a Fused node: one generated CUDA kernel (cuda_codegen.py) per fused group.

A call checks shapes on the host (the unfused ops' checks of dims unknown at build time,
raising the same InvalidArgumentError as the NumPy kernel; nothing is read back from the GPU),
allocates the outputs and launches the kernel once on the current stream. Inputs are read
through their strides: views (a slice of a stack, a transposed matrix) are not copied.

The generated array code (backends/numpy/fused.py, run on CuPy arrays: one CuPy launch per
op) remains for what the generator declines: float16 groups (C has no float16 type without
CUDA's headers), a join read inside its own group, and outputs whose shapes cannot share one
index space; none of these occur in the LSTM, GRU and BasicRNN cells' groups. It also runs a
call whose outputs' unknown dims differ from each other (they are broadcast separately).
"""
from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
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
        name, where = op._origins[j] if j < len(op._origins) else (node.name, node.location)
        raise InvalidArgumentError(
            f"{op.instrs[j][0].name} '{name}' (built at {where}; fused into '{node.name}'): "
            f"shapes {' and '.join(str(tuple(s)) for s in shapes)} differ in a dimension "
            "unknown at build time; rnngraph broadcasts only dims known to be 1 (give the "
            "placeholder a static 1 there)")

    def run(*args):
        args = [a if type(a) is ndarray and a.dtype.name == dt else cp.asarray(a, dtype=dt)
                for a, dt in zip(args, in_dtypes)]
        strides = []
        for i, a in enumerate(args):
            item = a.itemsize
            if any(s % item for s in a.strides):
                args[i] = a = cp.ascontiguousarray(a)
            strides.append([s // item for s in a.strides])
        launch = spec.prepare([a.shape for a in args], in_dtypes, strides, mismatch, what)
        if launch is None:   # outputs' unknown dims differ: the array code broadcasts them
            if not fallback:
                fallback.append(numpy_kernel(op, node, cp))
            return fallback[0](*args)
        n, shapes, scalars = launch
        outs = [cp.empty(s, dtype=d) for s, d in zip(shapes, spec.out_dtypes)]
        if n:
            kernel((spec.grid(n),), (THREADS,), (*args, *outs, *map(np.int64, scalars)))
        return tuple(outs)
    run.cuda_kernel = spec   # (what ran: tests and kernel_sources read it)
    return run

