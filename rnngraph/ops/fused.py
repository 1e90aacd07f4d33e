"""A fused elementwise kernel: a small straight-line program of elementwise ops run as one node.

The fusion pass (passes/fuse.py) builds it from chains such as an LSTM's gate math. Here is its
meaning (`compute`: the ops one after the other); how it runs is a backend's kernel
(backends/numpy/fused.py: generated NumPy code reusing dead temporaries; backends/cupy: one
CUDA kernel generated per group, cuda_codegen.py; backends/numba: one compiled loop over rows).

A fused node is saved as its program (`saved_state`: each instruction's op name, that op's own
saved attributes and its refs) and rebuilt by `from_program`, whose types come from the inner
ops' own rules for the node's inputs, never from the file.
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

    @classmethod
    def from_program(cls, instrs, n_inputs: int, exports, in_types: list, origins=()) -> "Fused":
        """The node op running `instrs` ((op, refs) pairs) on inputs of static types `in_types`:
        each instruction's type, and the outputs', by the inner ops' own rules (what loading a
        saved fused node builds). ValueError naming the instruction whose rule refuses."""
        types = list(in_types)
        for j, (inner, refs) in enumerate(instrs):
            try:
                t = inner.infer(*[types[r] for r in refs])
            except (TypeError, ValueError, IndexError, ArithmeticError) as exc:  # ShapeError too
                raise ValueError(f"instruction {j} ({type(inner).name}): {exc}") from None
            types.append(t if isinstance(t, TensorType) else t[0])
        return cls(instrs, n_inputs, exports, [types[r] for r in exports],
                   types[len(in_types):], origins)

    def attrs(self):
        return {"expr": self.expression()}

    def saved_state(self, state_of) -> dict:
        """What rg.save writes of this op: the program as plain data. Each instruction is
        (its op's registered name, `state_of(op)`: that op's own saved attributes, its refs);
        `origins` are the (node name, user line) pairs the instructions came from. The types
        are not saved: `from_program` derives them from the node's inputs."""
        return {"n_inputs": int(self.n_inputs),
                "instrs": tuple((type(op).name, state_of(op), tuple(int(r) for r in refs))
                                for op, refs in self.instrs),
                "exports": tuple(int(r) for r in self.exports),
                "origins": tuple((str(name), str(line)) for name, line in self._origins)}

    def program_lines(self) -> list[str]:
        """The program, one instruction a line (`t5 = column_block[start=0, stop=5](in0)`, with
        each inner op's attributes), then what the node returns: printed under the node, so
        the printed IR says exactly what it computes."""
        names = [f"in{i}" for i in range(self.n_inputs)]
        lines = []
        for j, (op, refs) in enumerate(self.instrs):
            names.append(f"t{self.n_inputs + j}")
            lines.append(f"{names[-1]} = {op!r}({', '.join(names[r] for r in refs)})")
        return lines + ["-> " + ", ".join(names[r] for r in self.exports)]

    def expression(self) -> str:
        """The program as one line (linear in its length, however its values are shared)."""
        return "; ".join(self.program_lines())

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
