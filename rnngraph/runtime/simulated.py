"""A simulated accelerator: NumPy arrays behind a capacity limit in bytes.

Every array that lands in an executor slot is counted (views by their base buffer), and going
over the capacity raises `OutOfMemoryError` naming the tensor, its size and the bytes in use,
like a GPU would. Host memory is a separate, counted pool; bytes moved either way are counted.
This is what lets the memory planner be tested honestly on a machine without a GPU.
"""
from __future__ import annotations

from ..errors import OutOfMemoryError
from ..memory.accounting import ByteMeter, check_byte_count, describe_what, fmt_bytes
from ..memory.costs import CPU_PROFILE, DeviceProfile
from .devices import Device


class SimulatedDevice(Device):
    name = "simulated"
    always_track = True
    judges_capacity = True   # an over-budget plan still runs; the capacity decides (and says where)

    def __init__(self, capacity: int | None = None, host_capacity: int | None = None,
                 profile: DeviceProfile = CPU_PROFILE, pool_limit: int = 1 << 30):
        self._capacity = check_byte_count(capacity, "SimulatedDevice(capacity=...)")
        self.host_capacity = check_byte_count(host_capacity, "SimulatedDevice(host_capacity=...)")
        self.profile = profile
        super().__init__(pool_limit=pool_limit)

    @property
    def capacity(self) -> int | None:
        return self._capacity

    @capacity.setter
    def capacity(self, value) -> None:
        self._capacity = check_byte_count(value, "SimulatedDevice.capacity")
        self.meter.capacity = self._capacity

    def _make_meter(self) -> ByteMeter:
        return ByteMeter(self.array_type, self._capacity, self._overflow)

    def _overflow(self, nbytes: int, what, in_use: int):
        raise OutOfMemoryError(
            f"simulated device out of memory: cannot allocate {fmt_bytes(nbytes)} ({nbytes} "
            f"bytes) for {describe_what(what)}; {in_use} bytes ({fmt_bytes(in_use)}) are in use "
            f"of a capacity of {self.capacity} bytes ({fmt_bytes(self.capacity)}). A Session "
            "memory_budget= at most the capacity lets rnngraph offload or recompute saved "
            "tensors to stay within it (so does swap_memory=True on the loop).")

    def host_empty(self, shape, dtype):
        arr = super().host_empty(shape, dtype)
        if self.host_capacity is not None and self.host_current > self.host_capacity:
            self.host_current -= arr.nbytes
            raise OutOfMemoryError(
                f"simulated host memory exhausted: cannot hold {fmt_bytes(arr.nbytes)} "
                f"({arr.nbytes} bytes) more, {self.host_current} bytes "
                f"({fmt_bytes(self.host_current)}) in use of a host capacity of "
                f"{self.host_capacity} bytes ({fmt_bytes(self.host_capacity)}). A Session "
                "host_budget= at most the host capacity makes the planner recompute what does "
                "not fit there (a loop with swap_memory=True always offloads).")
        return arr

    def describe(self) -> str:
        cap = "unlimited" if self.capacity is None else fmt_bytes(self.capacity)
        return f"simulated (capacity {cap})"
