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
        """What the per-step program returns: next carried state, the read outputs, and the
        residuals stored per step (`stored`: residual indices kept on device or offloaded)."""
        r = self.body.results
        return (list(r["carried"]) + [r["output"][i] for i in self.keep_out]
                + [r["residual"][i] for i in stored])

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
                   + params.get("sequence", []))
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
