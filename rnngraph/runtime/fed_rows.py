"""The kernel of `host_rows` (ops/host_rows.py): a fed sequence left in host memory.

Where the Session left the fed array on the host (its only readers are host_rows nodes:
memory/liveness.py's Schedule.host_inputs, planning.execute does not move it), the node's
value is a FedRows handle (runtime/residuals.py) that loops slice row by row; otherwise it is
the op's own value (the time-major transpose, rows reordered) of the device array.
"""
from __future__ import annotations

from ..kernels import ANY, register
from ..ops.host_rows import HostRows
from .residuals import FedRows


@register(HostRows, ANY)
def host_rows(op, node, program):
    fed = node.inputs[0]
    if fed not in program.host_values:
        xp = program.ctx.xp
        return lambda *a: op.compute(xp, *a)
    dev, axis, name = program.ctx.device, op.time_axis, fed.node.name
    # (a row order computed on the device comes to the host once a run)
    direct = not program.tracked and dev.host_is_device   # (rows read in place)
    return lambda x, perm=None: FedRows(dev, x, axis, name,
                                        None if perm is None else dev.to_host(perm), direct)
