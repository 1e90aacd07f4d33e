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


# (the hint for a session without a memory_budget; runtime/planning.py's execute gives one
# with a budget the plan's smallest budget instead: budget_hint)
NO_BUDGET_HINT = ("A Session memory_budget= at most the capacity lets rnngraph offload or "
                  "recompute saved tensors to stay within it (so does swap_memory=True on the "
                  "loop).")


def budget_hint(plan) -> str:
    """What to do when a run under a plan made for a budget ran out of the capacity."""
    if plan is None or plan.budget is None:
        return NO_BUDGET_HINT
    said = f"The session's memory_budget={plan.budget} bytes ({fmt_bytes(plan.budget)}) is set"
    if plan.fits:
        return (f"{said}, and its plan predicted {plan.predicted_peak} bytes at the peak, "
                f"within it: the prediction fell short (please report this).")
    if plan.min_budget is not None:
        return (f"{said}, but no plan found fits it (the plan run needs "
                f"{fmt_bytes(plan.predicted_peak)} at its peak); the smallest budget a plan was "
                f"found to fit is {plan.min_budget} bytes ({fmt_bytes(plan.min_budget)}): give "
                f"that budget, on a device of at least that capacity.")
    return (f"{said}, but no plan found fits it, nor any other device budget (print "
            f"sess.memory_plan(fetches, feed) to see why).")


class SimulatedDevice(Device):
    name = "simulated"
    always_track = True
    judges_capacity = True   # an over-budget plan still runs; the capacity decides (and says where)

    def __init__(self, capacity: int | None = None, host_capacity: int | None = None,
                 profile: DeviceProfile = CPU_PROFILE, pool_limit: int = 1 << 30):
        self._capacity = check_byte_count(capacity, "SimulatedDevice(capacity=...)")
        self._host_capacity = check_byte_count(host_capacity,
                                               "SimulatedDevice(host_capacity=...)")
        self.profile = profile
        super().__init__(pool_limit=pool_limit)

    @property
    def capacity(self) -> int | None:
        return self._capacity

    @capacity.setter
    def capacity(self, value) -> None:
        self._capacity = check_byte_count(value, "SimulatedDevice.capacity")
        self.meter.capacity = self._capacity

    @property
    def host_capacity(self) -> int | None:
        return self._host_capacity

    @host_capacity.setter
    def host_capacity(self, value) -> None:
        self._host_capacity = check_byte_count(value, "SimulatedDevice.host_capacity")

    def _make_meter(self) -> ByteMeter:
        return ByteMeter(self.array_type, self._capacity, self._overflow)

    def _overflow(self, nbytes: int, what, in_use: int):
        raise OutOfMemoryError(
            f"simulated device out of memory: cannot allocate {fmt_bytes(nbytes)} ({nbytes} "
            f"bytes) for {describe_what(what)}; {in_use} bytes ({fmt_bytes(in_use)}) are in use "
            f"of a capacity of {self.capacity} bytes ({fmt_bytes(self.capacity)}). "
            f"{NO_BUDGET_HINT}")

    def _room_on_host(self, nbytes: int, what: str) -> None:
        if self.host_capacity is not None and self.host_current + nbytes > self.host_capacity:
            self._host_full(nbytes, what)

    def _host_full(self, nbytes: int, what: str):
        raise OutOfMemoryError(
            f"simulated host memory exhausted: cannot hold {fmt_bytes(nbytes)} ({nbytes} "
            f"bytes) more for {what}, {self.host_current} bytes "
            f"({fmt_bytes(self.host_current)}) in use of a host capacity of "
            f"{self.host_capacity} bytes ({fmt_bytes(self.host_capacity)}). A Session "
            "host_budget= at most the host capacity makes the planner recompute what does "
            "not fit there (a loop with swap_memory=True always offloads).")

    def describe(self) -> str:
        cap = "unlimited" if self.capacity is None else fmt_bytes(self.capacity)
        host = "" if self.host_capacity is None else \
            f", host capacity {fmt_bytes(self.host_capacity)}"
        return f"simulated (capacity {cap}{host})"
