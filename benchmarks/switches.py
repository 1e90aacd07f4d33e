"""Interleaved A/B of the CPU backend's internal switches, which are process-wide constants
rather than Session options:

    python benchmarks/switches.py [--switch blocks,pool] [--cells lstm,gru,basic]
                                  [--shapes S1,S2,S3,S4,S1p] [--rounds 30]

  blocks  per-step products between OpenBLAS's one-thread threshold and 2^20 in two column halves
          (backends/numpy/kernels.py SPLIT_MAX_MNK) against one product each
  pool    large outputs and loop stacks in buffers reused across runs (runtime/buffer_pool.py)
          against fresh arrays every run. In one process this flatters "off": its fresh arrays
          come from heap memory the other session's run has just touched, which a program
          running alone does not get; compare separate processes for the pool
          (docs/performance.md)

A is the switch on (the default), B off; each round times one forward+backward call of each,
A then B, one Session each (compiled the same way). Prints per case the medians, the median
of the per-round ratios B/A (> 1: the switch wins) and their spread. Run it with
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` so OpenBLAS picks its kernels for this CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rnn import GATES, SHAPES, ab_row, blas_description, build_case, table  # noqa: E402

from rnngraph.backends.numpy import kernels  # noqa: E402
from rnngraph.runtime import buffer_pool  # noqa: E402

SWITCHES = {
    # name: (module, constant, value when off)
    "blocks": (kernels, "SPLIT_MAX_MNK", 0),
    "pool": (buffer_pool, "REFCOUNTS_EXACT", False),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switch", default=",".join(SWITCHES))
    ap.add_argument("--cells", default="lstm,gru,basic")
    ap.add_argument("--shapes", default="S1,S2,S3,S4,S1p")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    bad = [s for s in args.switch.split(",") if s not in SWITCHES] + \
        [c for c in args.cells.split(",") if c not in GATES] + \
        [s for s in args.shapes.split(",") if s not in list(SHAPES) + ["S1p"]]
    if bad:
        ap.error(f"unknown switches/cells/shapes {bad}")
    print(f"BLAS (threadpoolctl): {blas_description()}; load average "
          f"{os.getloadavg()[0]:.2f}; {args.rounds} rounds\n")
    rows = []
    for name in args.switch.split(","):
        module, constant, off = SWITCHES[name]
        on = getattr(module, constant)
        for cell in args.cells.split(","):
            for shape in args.shapes.split(","):
                setattr(module, constant, on)
                a = build_case(cell, shape, {})
                setattr(module, constant, off)   # (a pool-less program is compiled so)
                b = build_case(cell, shape, {})
                ta, tb = [], []
                try:
                    for i in range(args.warmup + args.rounds):
                        for case, value, times in ((a, on, ta), (b, off, tb)):
                            setattr(module, constant, value)
                            t0 = time.perf_counter()
                            case.forward_backward()
                            if i >= args.warmup:
                                times.append(time.perf_counter() - t0)
                finally:
                    setattr(module, constant, on)
                rows.append(ab_row(f"{name} {cell} {shape}", ta, tb))
                print("  ".join(rows[-1]), flush=True)
    print()
    table(rows, ["switch case", "on ms", "off ms", "off/on", "p25-p75", "min-max", "off faster"])


if __name__ == "__main__":
    main()
