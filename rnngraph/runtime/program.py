"""Compile a graph once into a Program: a flat schedule of kernels over numbered slots.

All analysis happens here, before the first run: which nodes are needed, which slot each value
lives in, and after which step each slot is last used (its buffer is dropped right there).
Running is then a plain loop over the schedule (like torch.fx's Interpreter, minus the lookups).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import ExecutionError
from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.value import Value


@dataclass
class CompileContext:
    """What kernels may need at compile time: the device and the session's variable store."""
    device: Any
    state: Any = None            # VariableStore (None inside pure subprograms is fine)
    options: dict = field(default_factory=dict)

    @property
    def xp(self):
        return self.device.xp


@dataclass
class Step:
    node: Node
    kernel: Callable
    ins: tuple
    outs: Any            # int slot for single-output ops, tuple of slots otherwise
    frees: tuple         # slots whose last use is this step


class Program:
    """The needed part of `graph` to compute `outputs` from `inputs`, scheduled once."""

    def __init__(self, graph: Graph, outputs: Sequence[Value], inputs: Sequence[Value],
                 ctx: CompileContext):
        self.graph = graph
        self.outputs = list(outputs)
        self.inputs = list(inputs)
        self.ctx = ctx
        self.version = graph.version
        self.nodes = self._needed_nodes()
        self._assign_slots()
        self.steps = [self._compile_step(n) for n in self.nodes]
        self._assign_frees()

    # --- analysis -----------------------------------------------------------------------------
    def _needed_nodes(self) -> list[Node]:
        fed = set(self.inputs)
        needed: set[Node] = set()
        stack = [v for v in self.outputs if v not in fed]
        while stack:
            v = stack.pop()
            n = v.node
            if n in needed:
                continue
            if n.graph is not self.graph:
                raise ValueError(f"{v!r} is not in the graph being compiled")
            needed.add(n)
            stack.extend(i for i in n.inputs if i not in fed)
        order = [n for n in self.graph.nodes if n in needed]
        for n in order:
            if n.op.name in ("placeholder", "param"):
                raise ValueError(self._missing_feed_message(n))
        return order

    def _missing_feed_message(self, node: Node) -> str:
        v = node.outputs[0]
        if node.op.name == "param":
            return f"loop-body parameter {node.name} is not bound (internal error)"
        users = [o.name for o in self.outputs]
        return (f"placeholder '{node.name}' ({v.type}, built at {node.location}) must be fed "
                f"a value to compute {', '.join(users)}")

    def _assign_slots(self) -> None:
        self.slot: dict[Value, int] = {}
        for v in self.inputs:
            self.slot.setdefault(v, len(self.slot))
        for n in self.nodes:
            for v in n.outputs:
                self.slot[v] = len(self.slot)
        self.n_slots = len(self.slot)
        self.input_slots = [self.slot[v] for v in self.inputs]
        self.output_slots = [self.slot[v] for v in self.outputs]

    def _compile_step(self, node: Node) -> Step:
        kernel = node.op.make_kernel(node, self) if hasattr(node.op, "make_kernel") else \
            _plain_kernel(node, self.ctx.xp)
        ins = tuple(self.slot[v] for v in node.inputs)
        outs = self.slot[node.outputs[0]] if not node.op.multi_output else \
            tuple(self.slot[v] for v in node.outputs)
        return Step(node, kernel, ins, outs, ())

    def _assign_frees(self) -> None:
        keep = set(self.output_slots)
        last_use: dict[int, int] = {}
        for i, s in enumerate(self.steps):
            for slot in s.ins:
                last_use[slot] = i
            for slot in (s.outs if isinstance(s.outs, tuple) else (s.outs,)):
                last_use.setdefault(slot, i)  # produced and never read: drop at once
        frees: dict[int, list[int]] = {}
        for slot, i in last_use.items():
            if slot not in keep:
                frees.setdefault(i, []).append(slot)
        for i, s in enumerate(self.steps):
            s.frees = tuple(frees.get(i, ()))
        self._plan = [(s.kernel, s.ins, s.outs, s.frees, s.node) for s in self.steps]

    def needed_outputs(self, node: Node) -> list[bool]:
        """Which outputs of `node` someone in this program reads (loops skip the rest)."""
        used = set(self.outputs)
        for n in self.nodes:
            used.update(n.inputs)
        return [v in used for v in node.outputs]

    # --- running ------------------------------------------------------------------------------
    def run(self, input_arrays: Sequence, observer=None) -> list:
        env: list = [None] * self.n_slots
        for slot, arr in zip(self.input_slots, input_arrays):
            env[slot] = arr
        for kernel, ins, outs, frees, node in self._plan:
            try:
                result = kernel(*[env[i] for i in ins])
            except (ExecutionError, FloatingPointError, MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise ExecutionError(f"{node.describe()} failed: {type(exc).__name__}: {exc}"
                                     ) from exc
            if type(outs) is int:
                env[outs] = result
            else:
                for slot, r in zip(outs, result):
                    env[slot] = r
            if observer is not None:
                observer(node, env)
            for slot in frees:
                env[slot] = None
        return [env[s] for s in self.output_slots]

    def __str__(self) -> str:
        lines = [f"program: {len(self.steps)} steps, {self.n_slots} slots"]
        for i, s in enumerate(self.steps):
            free = f"  free {list(s.frees)}" if s.frees else ""
            lines.append(f"  {i:4d} {s.node.op.name:<16} {s.node.name}{free}")
        return "\n".join(lines)


def _plain_kernel(node: Node, xp) -> Callable:
    compute = node.op.compute
    return lambda *args: compute(xp, *args)
