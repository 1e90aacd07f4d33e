"""Memory planner benchmark: an LSTM's forward + backward pass under a device-memory budget.

For each T, on the simulated device (NumPy behind a byte counter, so peaks are measured):
  unconstrained     no budget, the default compiler passes (and, for reference, without the
                    passes that build whole-sequence stacks, which tight plans turn off)
  offload-only      budget = 1/10 of the saved tensors' bytes, memory_strategy="offload"
  recompute-only    the same budget, memory_strategy="recompute"
  planner's mix     the same budget, memory_strategy="auto" (chosen by the cost model)
printing measured peak, predicted peak, time, and time relative to unconstrained.

The LSTM has a projection (num_proj, default H/8): the loss reads every step's output, and the
output stack and its gradient are [T, ...] device tensors no plan can move; without a projection
they alone exceed a tenth of the residuals (the planner reports that plan as over budget, see
--proj 0).

    python benchmarks/memory.py                 # T = 100, 1000
    python benchmarks/memory.py --long          # also T = 10000 (a few GiB of RAM, minutes)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import rnngraph as rg  # noqa: E402
from rnngraph.memory import fmt_bytes  # noqa: E402
from rnngraph.runtime.simulated import SimulatedDevice  # noqa: E402

LEAN = {"hoist_sequence": False, "sink_accumulators": False, "sink_outputs": False}


def build(B, H, P, I):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        cell = rg.nn.LSTMCell(H, num_proj=P or None)
        outputs, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
        loss = rg.reduce_sum(outputs * outputs)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    return g, X, fetches


def timed(sess, fetches, fd, repeats):
    best, out = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = sess.run(fetches, fd)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, out, sess.last_run_report


def bench(T, B, H, P, I, repeats, check):
    g, X, fetches = build(B, H, P, I)
    fd = {X: np.random.RandomState(0).randn(B, T, I).astype(np.float32)}
    rows = []
    free = rg.Session(g, device=SimulatedDevice())
    t_free, ref, rep = timed(free, fetches, fd, repeats)
    rows.append(("unconstrained", rep.peak_bytes, free.memory_plan(fetches, fd).predicted_peak,
                 t_free, 0, 0))
    lean = rg.Session(g, device=SimulatedDevice(), passes=LEAN)
    t_lean, ref_lean, rep = timed(lean, fetches, fd, repeats)
    plan = lean.memory_plan(fetches, fd)
    rows.append(("  (without stack passes)", rep.peak_bytes, plan.predicted_peak, t_lean, 0, 0))
    saved = sum(s.total_bytes for s in plan.saved)
    budget = saved // 10
    plans = {}
    for label, strategy in (("offload-only", "offload"), ("recompute-only", "recompute"),
                            ("planner's mix", "auto")):
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy=strategy)
        p = plans[label] = sess.memory_plan(fetches, fd)
        if not p.fits:  # run with the budget raised to what this plan needs, and say so
            need = int(p.predicted_peak * 1.001) + 1
            label += f" *{need / budget:.2f}"
            sess = rg.Session(g, device=SimulatedDevice(capacity=need), memory_budget=need,
                              memory_strategy=strategy)
            p = sess.memory_plan(fetches, fd)
        t, out, rep = timed(sess, fetches, fd, repeats)
        if check:
            for a, b in zip(out, ref_lean):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())
        rows.append((label, rep.peak_bytes, p.predicted_peak, t, rep.bytes_to_host,
                     rep.bytes_to_device))
    return saved, budget, rows, t_free, plans


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="*", default=None)
    ap.add_argument("--long", action="store_true", help="also T=10000")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--proj", type=int, default=None, help="num_proj (default hidden/8; 0: none)")
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (default 1: tiny per-step products gain nothing from "
                         "threads and lose a lot when the cores are shared; 0: library default)")
    ap.add_argument("--show-plan", action="store_true")
    ap.add_argument("--no-check", action="store_true", help="skip comparing gradients")
    args = ap.parse_args()
    steps = args.steps or ([100, 1000, 10000] if args.long else [100, 1000])
    P = args.hidden // 8 if args.proj is None else args.proj
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    print(f"LSTM B={args.batch} H={args.hidden} num_proj={P or None} inputs={args.inputs}; "
          "loss = sum(outputs**2); gradients of every weight; simulated device (NumPy), "
          f"best of {args.repeats}")
    for T in steps:
        saved, budget, rows, t_free, plans = bench(T, args.batch, args.hidden, P, args.inputs,
                                                   args.repeats, not args.no_check)
        print(f"\nT={T}: saved tensors {fmt_bytes(saved)}, budget {fmt_bytes(budget)} (1/10)")
        print(f"  {'run':<26}{'peak':>11}{'predicted':>11}{'time':>10}{'x unconstr.':>13}"
              f"{'to host':>11}{'to device':>11}")
        for label, peak, pred, t, h, d in rows:
            print(f"  {label:<26}{fmt_bytes(peak):>11}{fmt_bytes(pred):>11}{t:>9.2f}s"
                  f"{t / t_free:>12.2f}x{fmt_bytes(h):>11}{fmt_bytes(d):>11}")
        if any("*" in r[0] for r in rows):
            print("  * no plan fits 1/10 of the saved tensors here (weights, gradient "
                  "accumulators and per-step buffers\n    do not shrink with T): run with the "
                  "budget raised by the factor shown to what the plan needs")
        if args.show_plan:
            print(plans["planner's mix"])


if __name__ == "__main__":
    main()
