"""A fused elementwise kernel: a small straight-line program of elementwise ops run as one node.

The fusion pass (passes/fuse.py) builds it from chains such as an LSTM's gate math. On NumPy
it runs generated code that writes each intermediate into a buffer that is no longer needed
(`out=`), so a chain of k ops allocates far fewer than k arrays and costs one Python call; on
CuPy the same program becomes one ElementwiseKernel (one pass over memory).
"""
from __future__ import annotations

from ..errors import GradientError
from .base import Op
from .elementwise import unknown_dim_checks


class Fused(Op):
    name = "fused"
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

    def make_kernel(self, node, program):
        xp = program.ctx.xp
        if xp.__name__ == "cupy":
            from .fused_cupy import cupy_kernel
            return cupy_kernel(self, node, xp)
        fallback = numpy_kernel(self, node, xp)
        from .fused_numba import numba_kernel
        return numba_kernel(self, node, fallback) or fallback


def numpy_kernel(op: Fused, node, xp):
    """Generate straight-line NumPy code; reuse a temporary's buffer once it is dead."""
    n_in = op.n_inputs
    last_use: dict[int, int] = {}
    for j, (_, refs) in enumerate(op.instrs):
        for r in refs:
            last_use[r] = j
    exported = set(op.exports)
    input_types = [v.type for v in node.inputs]
    types = input_types + op._temp_types
    namespace = {"xp": xp}
    lines = [f"def fused({', '.join(f'v{i}' for i in range(n_in))}):"]
    for j, (inner, refs) in enumerate(op.instrs):
        r = n_in + j
        args = [f"v{a}" for a in refs]
        # the run-time check the unfused op would make: unknown dims never broadcast
        for i, ai, k, ak in unknown_dim_checks([types[a].shape for a in refs]):
            lines.append(f"    if {args[i]}.shape[{ai}] != {args[k]}.shape[{ak}]: "
                         f"_mismatch({j}, {', '.join(args)})")
        # a dead temporary of the same static type can hold the result (never an input: the
        # caller still owns those buffers)
        # multi-line emitters read some args after writing `out`: only the first ones qualify
        first = getattr(inner, "reuse_args", len(refs))
        reuse = next((a for a in refs[:first] if a >= n_in and last_use.get(a) == j
                      and a not in exported and a not in refs[first:]
                      and not getattr(op.instrs[a - n_in][0], "view", False)
                      and types[a] == types[r] and types[r].rank > 0), None)
        out = f"v{reuse}" if reuse is not None else None
        lines.extend("    " + line for line in inner.emit(f"v{r}", args, out, namespace, f"k{j}",
                                                         dtype=types[r].dtype,
                                                         rank=types[r].rank))
    lines.append(f"    return ({', '.join(f'v{r}' for r in op.exports)},)")

    def mismatch(j, *arrays):
        from ..errors import InvalidArgumentError
        shapes = " and ".join(str(tuple(a.shape)) for a in arrays)
        name, where = op._origins[j] if j < len(op._origins) else (node.name, node.location)
        raise InvalidArgumentError(
            f"{op.instrs[j][0].name} '{name}' (built at {where}; fused into '{node.name}'): "
            f"shapes {shapes} differ in a dimension "
            "unknown at build time; rnngraph broadcasts only dims known to be 1 (give the "
            "placeholder a static 1 there)")
    namespace["_mismatch"] = mismatch
    exec("\n".join(lines), namespace)  # noqa: S102 - our own generated code, no user input
    return namespace["fused"]
