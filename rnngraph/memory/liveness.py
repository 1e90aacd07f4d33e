"""Liveness: which nodes a computation needs, which slot each value lives in, and after which
step each slot is last used. Pure analysis, no kernels: the executor (runtime/program.py) and
the memory planner's peak simulation (memory/simulate.py) both build on it.
"""
from __future__ import annotations

from typing import Sequence

from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.value import Value
from ..ops.base import reads_shape_only
from ..ops.loop import HOST_LAYOUT

HOST_READERS = ("host_rows", "to_host")   # ops whose fed input may stay in host memory


class Schedule:
    """The needed part of `graph` to compute `outputs` from `inputs`, in order, with frees.

    Attributes: nodes (in order), slot (Value -> int), input_slots, output_slots, and
    frees[i] = slots whose last reader is step i (or that step i produced and nobody reads).
    Output slots are never freed. Input slots are owned by the caller: they appear in frees
    (the executor drops its reference) but a memory meter must not count them as released.
    A fed value that a scheduled node also makes (a loop's output, fed while the loop runs for
    its other outputs) is read from the input's slot: the node writes it to a slot of its own
    (`scratch`: Value -> int) that nobody reads, freed at once, and its readers see the fed
    array, as TF1's feeds replace a tensor for every reader.
    """

    def __init__(self, graph: Graph, outputs: Sequence[Value], inputs: Sequence[Value]):
        self.graph = graph
        self.outputs = list(outputs)
        self.inputs = list(inputs)
        self.nodes = self._needed_nodes()
        self.peaks: dict = {}   # simulated peaks, by fed shapes and loop choices (planner.py)
        self._assign_slots()
        self._assign_frees()

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
        self.scratch: dict[Value, int] = {}
        n = len(self.slot)
        for node in self.nodes:
            for v in node.outputs:
                (self.scratch if v in self.slot else self.slot)[v] = n
                n += 1
        self.n_slots = n
        self.input_slots = [self.slot[v] for v in self.inputs]
        self.output_slots = [self.slot[v] for v in self.outputs]

    def _assign_frees(self) -> None:
        keep = set(self.output_slots)
        last_use: dict[int, int] = {}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                last_use[self.slot[v]] = i
            for v in n.outputs:   # produced and never read (or fed): drop at once
                last_use.setdefault(self.scratch.get(v, self.slot[v]), i)
        frees: list[list[int]] = [[] for _ in self.nodes]
        for slot, i in last_use.items():
            if slot not in keep:
                frees[i].append(slot)
        self.frees = [tuple(f) for f in frees]

    def used_values(self) -> set:
        """Values read by a scheduled node or returned (computed once)."""
        used = self.__dict__.get("_used")
        if used is None:
            used = set(self.outputs)
            for n in self.nodes:
                used.update(n.inputs)
            self._used = used
        return used

    def write_slot(self, v: Value) -> int:
        """The slot the node making `v` writes it to (a scratch slot where `v` is fed)."""
        return self.scratch.get(v, self.slot[v])

    def needed_outputs(self, node: Node) -> list[bool]:
        """Which outputs of `node` someone in this schedule reads (loops skip the rest; a fed
        one is read from the caller's array)."""
        used = self.used_values()
        return [v in used and v not in self.scratch for v in node.outputs]

    def host_inputs(self) -> frozenset:
        """Indices of the inputs left in host memory: fed values that `host_rows` nodes
        (passes/host_sequences.py) or `to_host` nodes (passes/spill_values.py) read, as their
        first input, and no other node but for its shape, and that are not returned as they
        are."""
        hit = self.__dict__.get("_host_inputs")
        if hit is None:
            uses: dict = {}
            for n in self.nodes:
                for i, v in enumerate(n.inputs):
                    uses.setdefault(v, []).append((n, i))
            outs = set(self.outputs)

            def host(v) -> bool:
                us = uses.get(v, [])
                return v not in outs and any(n.op.name in HOST_READERS for n, _ in us) and all(
                    (n.op.name in HOST_READERS and i == 0) or reads_shape_only(n, v)
                    for n, i in us)
            hit = self._host_inputs = frozenset(
                i for i, v in enumerate(self.inputs) if host(v))
        return hit

    def host_stacks(self) -> frozenset:
        """Values in host memory that no input is: the stacked outputs loops write to the host
        (their `host_outputs`, passes/host_outputs.py), and what layout ops (HOST_LAYOUT: the
        transposes, row reorderings and reversals on the way to a fetch or to the host_rows
        node a later loop reads them through) make of them there. A value fed in place of one
        is the caller's device array, and so is what is made of it."""
        hit = self.__dict__.get("_host_stacks")
        if hit is None:
            hit = set()
            for n in self.nodes:
                if getattr(n.op, "host_outputs", ()):
                    outs = n.op.out_ports().split(n.outputs)["output"]
                    hit.update(outs[i] for i in n.op.host_outputs
                               if outs[i] not in self.scratch)
                elif isinstance(n.op, HOST_LAYOUT) and n.inputs and n.inputs[0] in hit:
                    hit.update(v for v in n.outputs if v not in self.scratch)
            hit = self._host_stacks = frozenset(hit)
        return hit

    def host_values(self) -> frozenset:
        """The inputs `host_inputs` names, as Values."""
        hit = self.__dict__.get("_host_values")
        if hit is None:
            hit = self._host_values = frozenset(self.inputs[i] for i in self.host_inputs())
        return hit
