"""The NumPy kernel of a Fused node: its program as generated straight-line array code.

Each intermediate is written into a buffer that is no longer needed (`out=`), so a chain of k
ops allocates far fewer than k arrays and costs one Python call. The source is built only from
identifiers made here (v<i>, k<j>) and each inner op's emit template.
"""
from __future__ import annotations

from ...ops.elementwise import fused_dim_mismatch, unknown_dim_checks
from ...ops.fused import Fused


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
        fused_dim_mismatch(op, node, j, [a.shape for a in arrays])
    namespace["_mismatch"] = mismatch
    exec("\n".join(lines), namespace)  # noqa: S102 - our own generated code, no user input
    return namespace["fused"]
