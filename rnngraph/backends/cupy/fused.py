"""The CuPy form of a Fused node: one ElementwiseKernel generated from the same program."""
from __future__ import annotations

import hashlib

from ..numpy.fused import numpy_kernel  # column blocks: the generated array code, on cupy


def cupy_kernel(op, node, cp):
    if any(not hasattr(inner, "cexpr") for inner, _ in op.instrs):
        return numpy_kernel(op, node, cp)
    n_in = op.n_inputs
    names = [f"in{i}" for i in range(n_in)]
    body = []
    for j, (inner, refs) in enumerate(op.instrs):
        t = f"t{j}"
        body.append(f"{_ctype(op._temp_types[j].dtype)} {t} = "
                    f"{inner.cexpr([names[r] for r in refs])};")
        names.append(t)
    outs = [f"out{k}" for k in range(len(op.exports))]
    body += [f"{o} = {names[r]};" for o, r in zip(outs, op.exports)]
    in_params = ", ".join(f"{_ctype(v.dtype)} in{i}" for i, v in enumerate(node.inputs))
    out_params = ", ".join(f"{_ctype(t.dtype)} {o}" for t, o in zip(op._types, outs))
    source = "\n".join(body)
    # a name stable across processes (Python's hash() is salted per process): CuPy's kernel
    # cache on disk then serves every later process
    digest = hashlib.sha256(f"{in_params}|{out_params}|{source}".encode()).hexdigest()[:16]
    kernel = cp.ElementwiseKernel(in_params, out_params, source, f"rnngraph_fused_{digest}")

    def run(*args):
        result = kernel(*args)
        return result if isinstance(result, tuple) else (result,)
    return run


def _ctype(dtype) -> str:
    return {"float32": "float32", "float64": "float64", "float16": "float16", "bool": "bool",
            "int32": "int32", "int64": "int64"}[str(dtype)]
