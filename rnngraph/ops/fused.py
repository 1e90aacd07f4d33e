"""A fused elementwise kernel: a small straight-line program of elementwise ops run as one node.

The fusion pass (passes/fuse.py) builds it from chains such as an LSTM's gate math. Here is its
meaning (`compute`: the ops one after the other); how it runs is a backend's kernel
(backends/numpy/fused.py: generated NumPy code reusing dead temporaries; backends/cupy: one
CUDA kernel generated per group, cuda_codegen.py; backends/numba: one compiled loop over rows).
"""
from __future__ import annotations

from ..errors import GradientError
from ..ir.types import TensorType
from .base import Op


class Fused(Op):
    name = "fused"
    foldable = False
    multi_output = True

    def __init__(self, instrs, n_inputs: int, exports, types, temp_types, origins=()):
        self.instrs = tuple(instrs)      # ((op, (ref, ...)), ...); ref < n_inputs is an input
        self.n_inputs = n_inputs
        self.exports = tuple(exports)   # refs of the values this node outputs
        self._types = list(types)
        self._temp_types = list(temp_types)  # static type of each instruction's result
        self._origins = list(origins)  # (name, user line) of the node each instruction was

    def attrs(self):
        return {"expr": self.expression()}

    def expression(self) -> str:
        names = [f"in{i}" for i in range(self.n_inputs)]
        for op, refs in self.instrs:
            names.append(f"{op.name}({', '.join(names[r] for r in refs)})")
        return "; ".join(names[r] for r in self.exports)

    def __repr__(self):
        return f"fused[{len(self.instrs)} ops: {' '.join(op.name for op, _ in self.instrs)}]"

    def infer(self, *types):
        return list(self._types)

    def retype(self, types: list) -> list:
        """Output types for inputs of `types` by the inner ops' own rules (the node states its
        static types; analyses that know more about the inputs run the rules again)."""
        types = list(types)
        for inner, refs in self.instrs:
            t = inner.infer(*[types[r] for r in refs])
            types.append(t if isinstance(t, TensorType) else t[0])
        return [types[r] for r in self.exports]

    def compute(self, xp, *args):
        vals = list(args)
        for op, refs in self.instrs:
            vals.append(op.compute(xp, *[vals[r] for r in refs]))
        return tuple(vals[r] for r in self.exports)

    def vjp(self, node, *gs):
        raise GradientError("fused nodes are made by the compiler after differentiation; "
                            "differentiate the unfused graph")

    def flops(self, node):
        size = 1
        for d in self._types[0].shape:
            size *= d or 1
        return size * len(self.instrs)
