"""The kernel of `host_rows` (ops/host_rows.py): a fed sequence left in host memory, or a loop
output written to host memory (passes/host_outputs.py) that a later loop reads.

Where the Session left the fed array on the host (its only readers are host_rows nodes:
memory/liveness.py's Schedule.host_inputs, planning.execute does not move it), the node's
value is a FedRows handle (runtime/residuals.py) that loops slice row by row; otherwise it is
the op's own value (the time-major transpose, rows reordered) of the device array.
"""
from __future__ import annotations

from ..kernels import ANY, register
from ..ops.host_rows import HostRows
from .host_outputs import writes_to_host
from .residuals import FedRows
from .transfer import HostValue


@register(HostRows, ANY)
def host_rows(op, node, program):
    fed = node.inputs[0]
    if fed in program.schedule.host_stacks() and writes_to_host(program):
        return _stack_rows(program.ctx.device, fed.name, program.ctx.xp, op)
    if fed not in program.host_values:
        xp = program.ctx.xp
        return lambda *a: op.compute(xp, *a)
    dev, axis, name = program.ctx.device, op.time_axis, fed.node.name
    # (a row order computed on the device comes to the host once a run)
    direct = not program.tracked and dev.host_is_device   # (rows read in place)
    return lambda x, perm=None: FedRows(dev, x, axis, name,
                                        None if perm is None else dev.to_host(perm), direct)


def _stack_rows(dev, name: str, xp, op):
    """The rows of a loop's host output (runtime/host_outputs.py), or of a value made from it
    on the host, as FedRows: a later loop copies them to the device one at a time. A value
    fed in its place is a device array: the op's own value."""
    def kernel(x):
        if not isinstance(x, HostValue):
            return op.compute(xp, x)
        x.wait()
        return FedRows(dev, x.host, 0, name, kind="loop output")
    return kernel
