"""Compile a graph once into a Program: a flat schedule of kernels over numbered slots.

All analysis happens here, before the first run: which nodes are needed, which slot each value
lives in, and after which step each slot is last used (its buffer is dropped right there); see
memory/liveness.py. Running is then straight-line Python generated from the schedule (like
torch.fx's generated forward), or, when observed, a plain loop over it.

A Program compiled with `tracked=True` runs a second loop that also counts device bytes: every
array a kernel returns is retained by the device's meter when it lands in a slot and released
when the slot is dropped (views count against their base buffer once). Inputs belong to the
caller and are not counted here; each returned output carries one reference for the caller.
Untracked Programs (the default) pay nothing for this: the choice is made at compile time.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ..errors import ExecutionError, NumericsError, take_interrupt
from ..kernels import make_kernel
from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.value import Value
from ..memory.liveness import Schedule


@dataclass
class CompileContext:
    """What kernels may need at compile time: the device and the session's variable store.

    `tracked`: count device bytes (see module docstring). `plan`: the memory plan of the run in
    progress in this thread (set by the Session around each run; loop kernels read where their
    saved tensors go from it, once per loop run).
    """
    device: Any
    state: Any = None            # VariableStore (None inside pure subprograms is fine)
    options: dict = field(default_factory=dict)
    tracked: bool = False
    _run: Any = field(default_factory=threading.local, repr=False)

    @property
    def xp(self):
        return self.device.xp

    @property
    def plan(self):
        return getattr(self._run, "plan", None)

    @plan.setter
    def plan(self, value):
        self._run.plan = value


class Step(NamedTuple):
    """One scheduled node; a plain tuple so the drivers unpack it without attribute lookups."""
    kernel: Callable
    ins: tuple
    outs: Any            # int slot for single-output ops, tuple of slots otherwise
    frees: tuple         # slots whose last use is this step
    node: Node


_RERAISE = (ExecutionError, FloatingPointError, MemoryError, KeyboardInterrupt)
# generated code pays off for programs run many times (loop bodies); a huge one-shot schedule
# (a 1000-step static_rnn: 60,000 nodes) would spend seconds in Python's compiler instead
_GENERATE_UP_TO = 2000


class Program:
    """The needed part of `graph` to compute `outputs` from `inputs`, scheduled once."""

    def __init__(self, graph: Graph, outputs: Sequence[Value], inputs: Sequence[Value],
                 ctx: CompileContext):
        self.graph = graph
        self.ctx = ctx
        self.tracked = bool(ctx.tracked)
        self.backend = "numpy" if ctx.xp is np else ctx.xp.__name__   # the kernel registry's key
        self.source_map: dict = {}     # user Value -> compiled Value (set by Session.compile)
        self.memory_plans: dict = {}   # (fed shapes, budget, strategy) -> (program, plan)
        self.version = graph.version
        self.schedule = sched = Schedule(graph, outputs, inputs)
        self.outputs, self.inputs, self.nodes = sched.outputs, sched.inputs, sched.nodes
        # does some loop offload its saved tensors (swap_memory)? then every run is planned
        self.has_swap = any(getattr(n.op, "swap_memory", False) and
                            n.op.out_ports().sizes["residual"] for n in self.nodes)
        self.slot, self.n_slots = sched.slot, sched.n_slots
        self.input_slots, self.output_slots = sched.input_slots, sched.output_slots
        # fed values left in host memory (read by host_rows nodes only): the caller passes
        # them as host arrays (planning.execute)
        self.host_inputs = sched.host_inputs()
        self.host_values = sched.host_values()
        self.steps = self._plan = [self._compile_step(n, f)
                                   for n, f in zip(sched.nodes, sched.frees)]
        self._prepare_tracked()  # (cheap; the interpreter walks the same plan)
        if self.tracked:
            self.run = self._run_tracked
        elif len(self._plan) <= _GENERATE_UP_TO:
            self.run = self._generate()

    def _compile_step(self, node: Node, frees: tuple) -> Step:
        kernel = make_kernel(node.op, node, self, self.backend) or _plain_kernel(node, self.ctx.xp)
        if self.ctx.options.get("check_numerics"):
            kernel = _numerics_checked(kernel, node, self.ctx.xp)
        ins = tuple(self.slot[v] for v in node.inputs)
        write = self.schedule.write_slot   # (a fed output: a scratch slot nobody reads)
        outs = write(node.outputs[0]) if not node.op.multi_output else \
            tuple(write(v) for v in node.outputs)
        return Step(kernel, ins, outs, frees, node)

    def loop_executors(self) -> list:
        """The kernels of this program's loop nodes, in schedule order (LoopExecutor: its
        `last_run` says what its last call did)."""
        return [s.kernel for s in self.steps if getattr(s.node.op, "body", None) is not None
                and hasattr(s.kernel, "last_run")]

    def needed_outputs(self, node: Node) -> list[bool]:
        """Which outputs of `node` someone in this program reads (loops skip the rest)."""
        return self.schedule.needed_outputs(node)

    # --- running ------------------------------------------------------------------------------
    def _generate(self) -> Callable:
        """The schedule as straight-line Python (as torch.fx generates code from a graph): one
        local variable per slot, `del` after a slot's last use, no per-step lookups. Loop
        bodies run it once per step, so this is where interpretation overhead mattered."""
        lines = ["def run(input_arrays, observer=None):",
                 "    if observer is not None:",
                 "        return interpret(input_arrays, observer)",
                 "    i = -1",
                 "    try:"]
        lines += [f"        s{slot} = input_arrays[{j}]" for j, slot in enumerate(self.input_slots)]
        lines += self.code_lines("        ")
        lines.append(f"        return [{', '.join(f's{a}' for a in self.output_slots)}]")
        lines += self.error_lines("    ")
        namespace = self.code_namespace()
        namespace["interpret"] = self._interpret
        exec("\n".join(lines), namespace)  # noqa: S102 - generated from our own schedule
        return namespace["run"]

    def code_lines(self, indent: str, keep=(), calls=None) -> list:
        """The schedule as statements over locals s<slot> (inputs assigned by the caller, kernels
        named k<i>, `i` set to the running step for error_lines); slots in `keep` are never
        deleted (a loop driver reuses invariant inputs in the next step); `calls` replaces the
        call expression of some steps (by index)."""
        lines = []
        for i, (kernel, ins, outs, frees, node) in enumerate(self._plan):
            call = (calls or {}).get(i) or f"k{i}({', '.join(f's{a}' for a in ins)})"
            lines.append(f"{indent}i = {i}")
            if type(outs) is int:
                lines.append(f"{indent}s{outs} = {call}")
            else:
                lines.append(f"{indent}r = {call}")
                lines += [f"{indent}s{slot} = r[{j}]" for j, slot in enumerate(outs)]
                lines.append(f"{indent}del r")   # (it would keep freed outputs alive)
            frees = [a for a in frees if a not in keep]
            if frees:
                lines.append(f"{indent}del {', '.join(f's{a}' for a in frees)}")
        return lines

    @staticmethod
    def error_lines(indent: str) -> list:
        """The `except` clause of a `try:` around code_lines: raise what `failed` makes of the
        error (an ExecutionError naming the node, or an unwrapped KeyboardInterrupt)."""
        return [f"{indent}except BaseException as exc:",
                f"{indent}    raise failed(exc, nodes[i] if i >= 0 else None)"]

    def code_namespace(self) -> dict:
        """Globals for code_lines and error_lines."""
        namespace = {f"k{i}": step[0] for i, step in enumerate(self._plan)}
        namespace.update(nodes=[step[4] for step in self._plan], failed=failed)
        return namespace

    def run(self, input_arrays: Sequence, observer=None) -> list:
        return self._interpret(input_arrays, observer)

    def _interpret(self, input_arrays: Sequence, observer=None) -> list:
        return self._execute(input_arrays, observer, None)

    def _run_tracked(self, input_arrays: Sequence, observer=None) -> list:
        return self._execute(input_arrays, observer, self.ctx.device.meter)

    def _prepare_tracked(self) -> None:
        self._caller_slots = inputs = frozenset(self.input_slots)  # never released: the caller's
        # outputs the run did not produce a reference for: inputs passed through, duplicates
        seen, extra = set(), []
        for i, s in enumerate(self.output_slots):
            if s in inputs or s in seen:
                extra.append(i)
            seen.add(s)
        self._extra_refs = tuple(extra)

    def _execute(self, input_arrays: Sequence, observer, meter) -> list:
        """The schedule as a loop over slots; with a meter, every array landing in a slot is
        retained and released when the slot is dropped (inputs belong to the caller)."""
        retain = meter.retain if meter is not None else None
        release = meter.release if meter is not None else None
        env: list = [None] * self.n_slots
        for slot, arr in zip(self.input_slots, input_arrays):
            env[slot] = arr
        inputs = self._caller_slots
        for kernel, ins, outs, frees, node in self._plan:
            try:
                result = kernel(*[env[i] for i in ins])
            except BaseException as exc:
                raise failed(exc, node)
            if type(outs) is int:
                env[outs] = result
                if retain is not None:
                    retain(result, node)
            else:
                for slot, r in zip(outs, result):
                    env[slot] = r
                    if retain is not None:
                        retain(r, node)
            result = r = None   # (kept, they would hold an output past its slot's free)
            if observer is not None:
                observer(node, env)
            for slot in frees:
                if release is not None and slot not in inputs:
                    release(env[slot])
                env[slot] = None
        out = [env[s] for s in self.output_slots]
        if retain is not None:
            for i in self._extra_refs:
                retain(out[i])
        return out

    def __str__(self) -> str:
        lines = [f"program: {len(self.steps)} steps, {self.n_slots} slots"]
        for i, s in enumerate(self.steps):
            free = f"  free {list(s.frees)}" if s.frees else ""
            lines.append(f"  {i:4d} {s.node.op.name:<16} {s.node.name}{free}")
        return "\n".join(lines)


def failed(exc: BaseException, node: Node | None) -> BaseException:
    """What a run raises when running `node` raised `exc` (`raise failed(exc, node)` in an
    `except BaseException` clause): a KeyboardInterrupt that `exc` is or carries in its chain
    (a compiled function reports Ctrl-C as SystemError), never wrapped; `exc` itself when it
    already names its node or is an error of its own kind (_RERAISE), is no Exception
    (SystemExit...), or no node ran; else an ExecutionError naming the node, caused by `exc`."""
    interrupt = take_interrupt(exc)
    if interrupt is not None:
        return interrupt
    if node is None or isinstance(exc, _RERAISE) or not isinstance(exc, Exception):
        return exc
    error = ExecutionError(f"{node.describe()} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc   # (`raise error from exc`)
    return error


def _plain_kernel(node: Node, xp) -> Callable:
    compute = node.op.compute
    return lambda *args: compute(xp, *args)


def _numerics_checked(kernel: Callable, node: Node, xp) -> Callable:
    """Session(check_numerics=True): raise at the first node whose float output has NaN/Inf."""
    floats = [i for i, v in enumerate(node.outputs) if v.dtype.kind == "f"]
    if not floats:
        return kernel
    multi = node.op.multi_output

    def checked(*args):
        result = kernel(*args)
        for i in floats:
            out = result[i] if multi else result
            if out is not None and hasattr(out, "dtype") and not bool(xp.isfinite(out).all()):
                n_nan = int(xp.isnan(out).sum())
                raise NumericsError(f"check_numerics: {node.describe()} produced "
                                    f"{n_nan} NaN and {int(out.size) - n_nan - int(xp.isfinite(out).sum())} "
                                    f"Inf values in its output {node.outputs[i].name} "
                                    f"({node.outputs[i].type})")
        return result
    return checked


def unfed_placeholder(outputs: Sequence[Value], inputs: Sequence[Value]):
    """(placeholder node, indices of the `outputs` that need it) for the first placeholder, in
    graph order, that computing `outputs` needs and `inputs` do not feed; None if there is none.
    Walked only to word the error of a Program that could not be scheduled, so the Session can
    name the user's fetches rather than the compiled graph's values."""
    if not outputs:
        return None
    fed = set(inputs)
    reach: list[set] = []   # per output: the nodes it needs
    for v in outputs:
        seen: set = set()
        stack = [v] if v not in fed else []
        while stack:
            n = stack.pop().node
            if n not in seen:
                seen.add(n)
                stack.extend(i for i in n.inputs if i not in fed)
        reach.append(seen)
    needed = set().union(*reach)
    for n in outputs[0].graph.nodes:
        if n in needed and n.op.name == "placeholder":
            return n, [i for i, r in enumerate(reach) if n in r]
    return None
