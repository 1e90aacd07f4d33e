"""Memory: liveness and byte accounting, and the saved-tensor planner (keep / offload /
recompute) that fits a backward pass into a device-memory budget.

  liveness.py    which slot each value lives in and when it is last used (the executor's view)
  accounting.py  refcounted bytes by base buffer (what devices measure)
  shapes.py      concrete shapes for given feed shapes, through loop bodies
  simulate.py    the predicted peak: the executor's liveness replayed with those shapes
  costs.py       device profiles and the time cost of offloading / recomputing
  checkpoints.py binomial (Revolve) checkpoint schedules for recomputed tensors
  planner.py     make_plan(schedule, feed_types, budget, profile) -> MemoryPlan
  plan.py        MemoryPlan / LoopPlan / SavedTensor (printable) and RunReport
"""
from .accounting import fmt_bytes
from .costs import CPU_PROFILE, GPU_PROFILE, DeviceProfile
from .loops import DEVICE, HOST, RECOMPUTE
from .plan import LoopPlan, MemoryPlan, RunReport, SavedTensor
from .planner import make_plan

__all__ = ["make_plan", "MemoryPlan", "LoopPlan", "SavedTensor", "RunReport", "DeviceProfile",
           "CPU_PROFILE", "GPU_PROFILE", "DEVICE", "HOST", "RECOMPUTE", "fmt_bytes"]
