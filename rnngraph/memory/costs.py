"""The planner's cost model: how fast a device computes and moves bytes.

Numbers are rough on purpose: they only have to rank keep / offload / recompute correctly.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceProfile:
    flops_per_s: float = 2e10        # sustained rate of the body's kernels
    op_overhead_s: float = 4e-6      # per kernel launch / Python dispatch
    d2h_bytes_per_s: float = 5e9     # device -> host
    h2d_bytes_per_s: float = 5e9     # host -> device
    async_copies: bool = False       # transfers overlap compute (a side stream)
    # what the device's allocator really takes (memory/simulate.py models each):
    alloc_granularity: int = 1       # every buffer rounds up to a multiple of this (CuPy: 512)
    reuse_list_resident: bool = False  # buffers on the device's reuse list (prefetch and replay
    #                                   buffers between passes) stay allocated
    workspace_bytes: int = 0         # device bytes the libraries hold outside the planner's
    #                                   tensors while a program runs (cuBLAS's workspace)

    def compute_time(self, flops: float, n_ops: int) -> float:
        return flops / self.flops_per_s + n_ops * self.op_overhead_s

    def transfer_time(self, d2h: float, h2d: float) -> float:
        return d2h / self.d2h_bytes_per_s + h2d / self.h2d_bytes_per_s


CPU_PROFILE = DeviceProfile()
# PCIe 3/4 class link, copies on a side stream; kernels launched from Python. CuPy's pool
# hands out multiples of 512 bytes, and the device's reuse list keeps its buffers allocated.
# The cuBLAS workspace depends on the card: a CupyDevice fills it in (backends/cupy/device.py).
GPU_PROFILE = DeviceProfile(flops_per_s=5e12, op_overhead_s=1e-5, d2h_bytes_per_s=1.2e10,
                            h2d_bytes_per_s=1.2e10, async_copies=True, alloc_granularity=512,
                            reuse_list_resident=True)


def offload_time(profile: DeviceProfile, bytes_per_step: int, steps: int,
                 fwd_step_s: float, bwd_step_s: float, depth: int) -> float:
    """Added time to copy a loop's offloaded residuals out after each forward step and back
    before each backward step. With asynchronous copies and a prefetch depth >= 2, transfers
    hide behind the compute of the steps they overlap."""
    d2h = profile.transfer_time(bytes_per_step, 0)
    h2d = profile.transfer_time(0, bytes_per_step)
    if profile.async_copies and depth >= 2:
        return steps * (max(0.0, d2h - fwd_step_s) + max(0.0, h2d - bwd_step_s))
    return steps * (d2h + h2d)


def recompute_time(profile: DeviceProfile, flops_per_step: float, ops_per_step: int,
                   steps: int) -> float:
    """Added time to rerun the needed part of the forward body once per step."""
    return steps * profile.compute_time(flops_per_step, ops_per_step)
