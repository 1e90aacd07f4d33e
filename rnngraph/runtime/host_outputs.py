"""Loop outputs written to host memory row by row (passes/host_outputs.py marks them).

A loop node's `host_outputs` are stacked outputs that only fetches and later loops read, through
transposes, row reorderings and reversals. The loop kernel (loop_kernel.py) hands each row an
OutputWriter, which copies it into one host array (Device.host_output) as the step makes it
and lets the device row go once copied; the loop's output is then a HostValue (transfer.py)
that holds no device buffer. The layout ops on the way (HOST_LAYOUT) run on that host array
with NumPy (host_layout below); a fetch hands the caller the host array as it is, and a loop
reads its rows through a host_rows node (fed_rows.py: a FedRows handle on the array).

Where host memory is the device's and no bytes are counted (an untracked CPU run), the loop
keeps its plain stack: it is host memory already, and the layout kernels run on it as usual.
"""
from __future__ import annotations

import numpy as np

from ..kernels import ANY, register
from ..ops.loop import HOST_LAYOUT
from .residuals import RowCopies
from .transfer import HostValue


class OutputWriter(RowCopies):
    """Copies the rows of one stacked output ([rows, ...]) into a host array as a loop's steps
    make them (RowCopies: at most `depth` copies in flight, each device row released once its
    copy is done)."""

    def __init__(self, dev, rows: int, name: str, release=None, depth: int = 1,
                 held: bool = True):
        super().__init__(dev, depth, release)
        self.rows, self.name = rows, name
        self.held = held   # counted in the run's host bytes (Device.hold_host): not fetched
        self.host = None

    def _new_host(self, row_shape, dtype) -> None:
        self.host = self.dev.host_output((self.rows,) + tuple(row_shape), dtype)
        if self.held:
            self.dev.hold_host(self.host, self.name)

    def put(self, t: int, y) -> None:
        if self.host is None:
            self._new_host(y.shape, y.dtype)
        self.send(y, self.host[t, ...])

    def finish(self, steps: int, row_shape, dtype) -> HostValue:
        """The host array as a HostValue once every copy is done; rows past `steps` (a loop
        that ran fewer steps than its stack has rows) are zero, as a device stack's are."""
        while self.inflight:
            self._retire(wait_host=True)
        if self.host is None:   # (no step ran)
            self._new_host(row_shape, dtype)
            steps = 0
        self.host[steps:] = 0
        return HostValue(self.dev, self.host, self.name, owned=False)


def writes_to_host(program) -> bool:
    """Do the loops of `program` write their host outputs to host arrays? Not in an untracked
    run on a device whose memory is the host's: a plain stack is host memory already."""
    return bool(program.tracked) or not program.ctx.device.host_is_device


def host_layout(op, node, program):
    """A HOST_LAYOUT node reading a host stack: the op on the host array (NumPy; its other
    inputs, small device values, copied over) after the op's argument checks (check(): the
    ones its own kernel makes), the result a HostValue too; on a fed array in the stack's
    place, the op on the device. Other nodes of these ops, and all of them where loops keep
    plain stacks (writes_to_host), decline (None): their usual kernels."""
    if node.inputs[0] not in program.schedule.host_stacks() or not writes_to_host(program):
        return None
    dev, compute, name = program.ctx.device, op.compute, node.outputs[0].name
    where = node.describe()
    held = node.outputs[0] not in set(program.schedule.outputs)   # (a fetched one: the
    # caller's; Device.hold_host counts a new array, not a view of one held)
    check = getattr(op, "check", None)   # (permute_rows', reverse_sequence's)

    def kernel(x, *rest):
        on_host = isinstance(x, HostValue)
        if on_host:
            x.wait()
            x, rest = x.host, [dev.to_host(r) for r in rest]
        if check is not None:
            check(where, x, *rest)
        if not on_host:   # (the caller fed a value on the way: a device array)
            return compute(program.ctx.xp, x, *rest)
        out = np.asarray(compute(np, x, *rest))
        if held:
            dev.hold_host(out, f"{name}, made on the host by {where}")
        return HostValue(dev, out, name, owned=False)
    return kernel


for _op in HOST_LAYOUT:   # (tried before the ops' own kernels, which then do the rest)
    register(_op, ANY, priority=10)(host_layout)
