"""The CuPy kernel of the random ops: one ElementwiseKernel per (distribution, dtype), its
Philox function generated from the same table as the reference (ops/random.py's PHILOX), so
the GPU draws the same 32-bit words as NumPy: bits and uniforms are identical; normals go
through the device's logf/cosf/sinf and agree to a few ulps. Truncated normals and the other
random ops run the reference code on CuPy arrays. The key, the step and the run counter are
kernel arguments: nothing from a graph is pasted into the source."""
from __future__ import annotations

import hashlib

import numpy as np

from ...kernels import register
from ...ops import random as rnd

# per (dist, dtype): the body computing y for element i from the block words w[4]
_BODIES = {
    ("bits", "uint32"): ("unsigned int b = i >> 2;", "y = w[i & 3];"),
    ("uniform", "float32"): ("unsigned int b = i >> 2;",
                             "y = (float)(w[i & 3] >> 8) * (1.0f / 16777216.0f);"),
    ("uniform", "float64"): ("unsigned int b = i >> 1;",
                             "int l = (int)(i & 1) * 2; "
                             "y = ((double)(w[l] >> 5) * 67108864.0 + (double)(w[l + 1] >> 6))"
                             " * (1.0 / 9007199254740992.0);"),
    ("normal", "float32"): ("unsigned int b = i >> 2;",
                            "int l = (int)((i >> 1) & 1) * 2; "
                            "float u1 = (float)(w[l] >> 8) * (1.0f / 16777216.0f); "
                            "float u2 = (float)(w[l + 1] >> 8) * (1.0f / 16777216.0f); "
                            "float r = sqrtf(-2.0f * logf(1.0f - u1)); "
                            "float th = 6.2831855f * u2; "
                            "y = (i & 1) ? r * sinf(th) : r * cosf(th);"),
    ("normal", "float64"): ("unsigned int b = i >> 1;",
                            "double u1 = ((double)(w[0] >> 5) * 67108864.0 + (double)(w[1] >> 6))"
                            " * (1.0 / 9007199254740992.0); "
                            "double u2 = ((double)(w[2] >> 5) * 67108864.0 + (double)(w[3] >> 6))"
                            " * (1.0 / 9007199254740992.0); "
                            "double r = sqrt(-2.0 * log(1.0 - u1)); "
                            "double th = 6.283185307179586 * u2; "
                            "y = (i & 1) ? r * sin(th) : r * cos(th);"),
}


def _kernel(cp, dist: str, dtype: str):
    block, body = _BODIES[(dist, dtype)]
    source = "\n".join([block, "unsigned int w[4];",
                        "rg_philox4x32(b, step, run, 0u, k0, k1, w);", body])
    preamble = rnd.philox_cuda_source("rg_philox4x32")
    digest = hashlib.sha256(f"{source}|{preamble}".encode()).hexdigest()[:16]
    return cp.ElementwiseKernel("uint32 step, uint32 run, uint32 k0, uint32 k1", "T y", source,
                                f"rnngraph_random_{digest}", preamble=preamble)


@register(rnd.RandomStandard, "cupy")
def random_standard(op, node, program):
    if (op.dist, op.dtype) not in _BODIES:
        return None   # truncated normal, float16: the reference code on CuPy arrays
    cp = program.ctx.xp
    kernel = _kernel(cp, op.dist, op.dtype)
    k0, k1 = (np.uint32(k) for k in op.key())

    def run(counter, step, *like):
        shape = like[0].shape if op.shape is None else op.shape
        n = int(np.prod(shape, dtype=np.int64))
        if n > 2**32:
            raise ValueError(f"node {node.name}: cannot draw {n} random numbers in one run on "
                             "the GPU (at most 2**32)")
        y = cp.empty(shape, dtype=op.dtype)
        kernel(np.uint32(int(step) & rnd.M32), np.uint32(int(counter) & rnd.M32), k0, k1, y)
        return op.affine(y)
    return run
