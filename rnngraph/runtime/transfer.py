"""The kernels of `to_host` and `to_device` (ops/transfer.py): a value a memory plan offloads
between its early and late readers (passes/spill_values.py).

`to_host` copies its input into a host buffer (Device.host_empty, copy_to_host) and returns a
HostValue handle: no device buffer, so the device's byte meter does not count it (the input's
device buffer goes as soon as its last reader ran, like any value). `to_device` copies the rows
back into a new device array (Device.empty, counted, copy_to_device). The host buffer is given
back (Device.host_free) when the handle is dropped: the executor drops it after its last
reader, the to_device node.

A fed value read by a to_host node alone (memory/liveness.py's Schedule.host_inputs) stays in
host memory: planning.execute hands the kernel the caller's array, which the handle wraps
without a copy (and never gives back); to_device nodes with an axis and index copy one slice
of it each (a static_rnn's step input).
"""
from __future__ import annotations

import numpy as np

from ..errors import OutOfMemoryError
from ..kernels import ANY, register
from ..ops.transfer import ToDevice, ToHost


class HostValue:
    """A device value copied to host memory (a to_host node's value). Holds no device buffer.
    `materialize()` is the value as a new device array (a fetch of the handle)."""
    placement = "host"

    def __init__(self, dev, host, name: str, ticket=None, owned: bool = True):
        self.dev, self.host, self.name = dev, host, name
        self.shape, self.dtype = tuple(host.shape), host.dtype
        self._ticket = ticket
        self._freed = not owned   # (a fed array left on the host is the caller's)

    def device_buffers(self):
        return ()

    def wait(self) -> None:
        """Block until the copy to the host is done (before the host rows are read)."""
        if self._ticket is not None:
            self.dev.wait_host(self._ticket)
            self._ticket = None

    def to_device(self, what=None, count: bool = True, axis=None, index=None):
        """A new device array holding the value, or its slice `index` along `axis` (counted
        by the meter when `count`)."""
        self.wait()
        dev = self.dev
        src = self.host
        if axis is not None:
            src = np.ascontiguousarray(src[(slice(None),) * (axis % src.ndim) + (index,)])
        out = dev.empty(src.shape, self.dtype, what, count=count)
        ticket = dev.copy_to_device(src, out)
        dev.wait(ticket)
        dev.wait_host(ticket)   # (the host buffer may be given back right after)
        if count:
            dev.disown(out)     # (the slot it lands in holds its one reference)
        return out

    def materialize(self):
        return self.to_device(count=False)

    def fetched(self) -> np.ndarray:
        """The value as a host array the caller may keep: the host array itself where this
        handle does not own it (a loop's host output, runtime/host_outputs.py), else a copy
        (the owned buffer goes back to the device's host pool)."""
        self.wait()
        return self.host if self._freed else np.array(self.host, copy=True)

    def __array__(self, dtype=None, copy=None):
        self.wait()
        return np.array(self.host, dtype=dtype, copy=True)

    def free(self) -> None:
        """Give the host buffer back (once)."""
        if not self._freed:
            self._freed = True
            self.wait()
            self.dev.host_free(self.host)

    def __del__(self):
        try:
            self.free()
        except Exception:   # noqa: BLE001  (interpreter shutdown: nothing left to give back)
            pass


@register(ToHost, ANY)
def to_host(op, node, program):
    dev, name = program.ctx.device, node.inputs[0].name
    if node.inputs[0] in program.host_values:   # the caller's array, left on the host
        return lambda x: HostValue(dev, np.asarray(x), name, owned=False)

    def kernel(x):
        try:
            host = dev.host_empty(x.shape, x.dtype)
        except OutOfMemoryError as e:   # (the device does not know which value it was for)
            raise OutOfMemoryError(f"offloading the output of {node.inputs[0].node.describe()}"
                                   f": {e}") from None
        # (waited for here: x's device buffer may be reused as soon as this step is over)
        dev.wait_host(dev.copy_to_host(x, host))
        return HostValue(dev, host, name)
    return kernel


@register(ToDevice, ANY)
def to_device(op, node, program):
    count = program.tracked

    def kernel(h):
        if not isinstance(h, HostValue):   # (a program run on the reference path)
            return op.compute(program.ctx.xp, h)
        return h.to_device(node, count, op.axis, op.index)
    return kernel
