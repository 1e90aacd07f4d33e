"""What a loop node computes per step, given which of its outputs are read and where its saved
residuals go. Shared by the loop kernel (runtime/loop_kernel.py), which compiles exactly these
body programs, and by the planner's peak simulation, which replays their liveness.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.node import Node
from ..ir.value import Value

DEVICE, HOST, RECOMPUTE = "device", "host", "recompute"


@dataclass
class LoopLayout:
    node: Node
    body_inputs: list          # step, carried, invariant, sequence params, in port order
    keep_out: list             # indices of per-step outputs someone reads
    keep_res: list             # indices of residuals someone reads

    @property
    def body(self):
        return self.node.op.body

    @property
    def carried_results(self) -> list:
        return self.body.results["carried"]

    def residual_value(self, i: int) -> Value:
        return self.body.results["residual"][i]

    def step_outputs(self, stored: list) -> list:
        """What the per-step program returns: next carried state, the read outputs, the
        residuals stored per step (`stored`: residual indices kept on device or offloaded)
        and, in a chunked loop, the values its chunk epilogue gathers."""
        r = self.body.results
        return (list(r["carried"]) + [r["output"][i] for i in self.step_out]
                + [r["residual"][i] for i in stored] + list(r.get("gather", [])))

    @property
    def step_out(self) -> list:
        """The read outputs the steps compute (not those a chunked loop's epilogue writes)."""
        epi = set(getattr(self.node.op, "epilogue_outputs", ()))
        return [i for i in self.keep_out if i not in epi]

    @property
    def epilogue_out(self) -> list:
        """(position in epilogue_rows, output index) of the read outputs the epilogue writes."""
        return [(j, i) for j, i in enumerate(getattr(self.node.op, "epilogue_outputs", ()))
                if i in self.keep_out]

    @property
    def chunked(self) -> bool:
        return bool(getattr(self.node.op, "chunk_steps", None))

    @property
    def prologue_inputs(self) -> list:
        """The chunk prologue's inputs: invariants, then the sequence blocks."""
        p = self.body.params
        return p.get("invariant", []) + p.get("block", [])

    @property
    def prologue_outputs(self) -> list:
        return list(self.body.results.get("prologue", []))

    @property
    def epilogue_inputs(self) -> list:
        """The chunk epilogue's inputs: carried state, invariants, gathered rows, the length."""
        p = self.body.params
        return (p.get("carried", []) + p.get("invariant", []) + p.get("gathered", [])
                + p.get("chunk_len", []))

    @property
    def epilogue_outputs(self) -> list:
        """The epilogue's results: the next accumulators, then output rows."""
        r = self.body.results
        return list(r.get("epilogue", [])) + list(r.get("epilogue_rows", []))

    def replay_outputs(self, recomputed: list) -> list:
        """What the replay program returns: next carried state and the recomputed residuals."""
        r = self.body.results
        return list(r["carried"]) + [r["residual"][i] for i in recomputed]


def loop_layout(node: Node, needed: list) -> LoopLayout:
    """`needed[i]`: is output i of `node` read by someone (see Schedule.needed_outputs)?"""
    op = node.op
    outs = op.out_ports().split(needed)
    params = op.body.params
    body_inputs = (params["step"] + params.get("carried", []) + params.get("invariant", [])
                   + params.get("sequence", []) + params.get("chunk", []))
    return LoopLayout(node, body_inputs,
                      [i for i, used in enumerate(outs["output"]) if used],
                      [i for i, used in enumerate(outs["residual"]) if used])


def split_placements(layout: LoopLayout, placements: dict | None):
    """Kept residual positions (j, into keep_res) by placement: device, host, recompute."""
    dev, host, rec = [], [], []
    for j, i in enumerate(layout.keep_res):
        where = DEVICE if placements is None else placements.get(i, DEVICE)
        (host if where == HOST else rec if where == RECOMPUTE else dev).append(j)
    return dev, host, rec
