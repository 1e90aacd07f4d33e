"""Memory planner benchmark: an LSTM's forward + backward pass under a device-memory budget.

For each T and each LSTM (with a projection, num_proj = H/8, and without), on the simulated
device (NumPy behind a byte counter, so peaks are measured), with budgets of 1/2, 1/10 and 1/20
of the saved tensors (the per-step tensors the unconstrained program keeps for its backward
loop), it prints what the planner chose, the predicted and the measured peak, the bytes moved
to the host and back, and the step time against the unconstrained run. Timings interleave the
unconstrained and the budgeted sessions round by round in one process; the time column is the
median over rounds of each round's ratio budgeted / unconstrained, with its p25-p75 spread,
then the ratio of the fastest rounds (best of each: what the work costs without the
interference of other processes or page faults). Those run on the simulated device, whose byte
counter costs both sides; the "CPU time" columns are the issue's measure: a Session with the
same budget on the CPU against the plain CPU step (no budget), interleaved in the same rounds.
Under a budget the sequence passes run in chunks of C steps (chosen: "chunks of C"); --lean
also times each budget with them switched off (the planner's fallback), interleaved alike.
Reference points from the literature, in the same terms (peak memory against the run that
keeps everything, extra time):
  Gruslys et al. 2016 (BPTT-MSM), T = 1000: -95% memory at +33% time
  Chen et al. 2016: O(sqrt(T)) memory for one extra forward pass (about +30% time for an RNN)

    python benchmarks/memory.py                 # T = 100, 1000
    python benchmarks/memory.py --long          # also T = 10000 (several GiB of RAM, minutes)
    python benchmarks/memory.py --steps 1000 --proj 32 --lean    # the issue's case, and lean
    python benchmarks/memory.py --steps 1000 --no-proj --budgets 10   # no projection: streamed
    python benchmarks/memory.py --steps 1000 --no-proj --budgets 10 --head dense   # a dense head
    python benchmarks/memory.py --steps 1000 --no-proj --budgets 10 --head target  # fed targets
    python benchmarks/memory.py --steps 1000 --no-proj --budgets 10 --head fetched  # y fetched
    python benchmarks/memory.py --steps 1000 --no-proj --budgets 10 --head max     # max-pooling
    python benchmarks/memory.py --steps 1000 --no-proj --budgets 10 --head concat  # a tagger
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import rnngraph as rg  # noqa: E402
from rnngraph.memory import fmt_bytes  # noqa: E402
from rnngraph.runtime.session import HOT_AFTER  # noqa: E402
from rnngraph.runtime.simulated import SimulatedDevice  # noqa: E402
from rnn import blas_description  # noqa: E402  (benchmarks/rnn.py, beside this script)

FRACTIONS = (2, 10, 20)


HEADS = {   # the loss on the outputs y [B, T, H]
    "sum": "sum(y**2)",
    "bias": "mean((y*w + b)**2), w and b of shape [H]",
    "dense": "mean(dense(y, 32)**2), a dense layer (kernel and bias) on every step",
    "dense-any-batch": "mean(dense(y, 32)**2), the batch unknown when the graph is built",
    "target": "mean((y - Y)**2), Y a fed [B, T, H] target",
    "fetched": "sum(y**2), y fetched too",
    "max": "sum(max over time of y ** 2), max-pooling",
    "concat": "a tagger over both directions of a bidirectional LSTM: cross-entropy of "
              "dense(concat([fw, bw], -1), 64) against fed labels",
}


VOCAB = 64   # the classes of --head concat


def build(B, H, P, I, head="sum"):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None if head == "dense-any-batch" else B, None, I],
                           name="X")
        cell = rg.nn.LSTMCell(H, num_proj=P or None)
        if head == "concat":
            (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(
                cell, rg.nn.LSTMCell(H, num_proj=P or None), X, dtype=rg.float32)
            outputs = rg.concat([fw, bw], 2)
        else:
            outputs, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
        if head == "concat":
            labels = rg.placeholder(rg.int32, [B, None], name="labels")
            loss = rg.losses.sparse_softmax_cross_entropy(labels,
                                                          rg.layers.dense(outputs, VOCAB))
        elif head in ("sum", "fetched"):
            loss = rg.reduce_sum(outputs * outputs)
        elif head == "bias":
            n = outputs.shape[-1]
            w = rg.get_variable("w", [n], rg.float32, initializer=rg.ones_initializer())
            b = rg.get_variable("b", [n], rg.float32, initializer=rg.constant_initializer(0.1))
            loss = rg.reduce_mean(rg.square(outputs * w + b))
        elif head == "max":
            loss = rg.reduce_sum(rg.square(rg.reduce_max(outputs, axis=1)))
        elif head == "target":
            Y = rg.placeholder(rg.float32, [B, None, outputs.shape[-1]], name="Y")
            loss = rg.reduce_mean(rg.square(outputs - Y))
        else:
            loss = rg.reduce_mean(rg.square(rg.layers.dense(outputs, 32)))
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
        if head == "fetched":
            fetches.append(outputs)
    return g, X, fetches


def chosen(plan) -> str:
    """What the planner chose, in a few words."""
    by = plan.bytes_by_placement()
    parts = []
    total = sum(by.values()) or 1
    for where in ("device", "host", "recompute"):
        if by[where]:
            parts.append(f"{where} {100 * by[where] / total:.0f}%")
    for lp in plan.loops:
        if any(s.placement == "recompute" for s in lp.saved):
            parts.append(f"binomial/{lp.checkpoint_slots}" if lp.checkpoint_slots
                         else f"every {int(lp.checkpoint_every)}")
    if plan.chunk_steps:
        parts.append(f"chunks of {plan.chunk_steps}")
    if plan.passes_off:
        parts.append("lean")
    if "stream_outputs" in getattr(plan, "passes_on", ()):
        parts.append("streamed")   # the output stack streamed through its consumers
    if getattr(plan, "host_fed", ()):
        parts.append("feed on host")   # fed sequences left in host memory, read row by row
    if getattr(plan, "host_outputs", ()):
        parts.append("outputs on host")  # loop outputs written to host row by row
    return ", ".join(parts)


LEAN = {"hoist_sequence": False, "sink_accumulators": False, "sink_outputs": False}


def bench(T, B, H, P, I, rounds, check, plans_only=False, lean=False, fractions=FRACTIONS,
          head="sum"):
    g, X, fetches = build(B, H, P, I, head)
    fd = {X: np.random.RandomState(0).randn(B, T, I).astype(np.float32)}
    for n in g.nodes:   # (the fed target of --head target, the labels of --head concat)
        if n.name == "Y":
            Y = n.outputs[0]
            fd[Y] = np.random.RandomState(1).randn(B, T, Y.shape[-1]).astype(np.float32)
        elif n.name == "labels":
            fd[n.outputs[0]] = np.random.RandomState(1).randint(0, VOCAB, (B, T)).astype(np.int32)
    free = rg.Session(g, device=SimulatedDevice())
    free_plan = free.memory_plan(fetches, fd)
    saved = sum(s.total_bytes for s in free_plan.saved)
    if plans_only:
        rows = []
        for frac in fractions:
            budget = saved // frac
            sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
            rows.append((f"1/{frac}", budget, sess.memory_plan(fetches, fd), None))
        return saved, free_plan.predicted_peak, rows, {"unconstrained": float("nan")}, {}
    ref = free.run(fetches, fd)
    free_peak = free.last_run_report.peak_bytes
    rows, sessions = [], [("unconstrained", free, free_plan)]
    for frac in fractions:
        budget = saved // frac
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
        plan = sess.memory_plan(fetches, fd)
        if not plan.fits:
            rows.append((f"1/{frac}", budget, plan, None))
            continue
        out = sess.run(fetches, fd)
        if check:
            for a, b in zip(out, ref):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())
        rows.append((f"1/{frac}", budget, plan, sess))
        sessions.append((f"1/{frac}", sess, plan))
        if lean:   # the same budget with the sequence passes off (no chunks)
            ls = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                            passes=LEAN)
            lplan = ls.memory_plan(fetches, fd)
            if lplan.fits:
                ls.run(fetches, fd)
                rows.append((f"1/{frac}L", budget, lplan, ls))
                sessions.append((f"1/{frac}L", ls, lplan))
    # the times the issue asks about: the budgeted step on the CPU (a Session with the same
    # budget, no byte counter) against the plain CPU step (no budget), interleaved; the
    # simulated sessions above measure the peaks and are timed too (against the simulated
    # unconstrained run: the counter's own cost on both sides)
    timed = [(label, sess) for label, sess, _ in sessions]
    timed.append(("cpu", rg.Session(g)))
    for label, sess, plan in sessions[1:]:
        if not label.endswith("L"):
            timed.append((label + "/cpu", rg.Session(g, memory_budget=plan.budget)))
    for _, sess in timed:   # past the first runs (accelerate="auto" compiles then)
        for _ in range(HOT_AFTER + 1):
            sess.run(fetches, fd)
    times = {label: [] for label, _ in timed}
    reports = {}
    for _ in range(rounds):   # interleaved: every session once per round
        for label, sess in timed:
            t0 = time.perf_counter()
            sess.run(fetches, fd)
            times[label].append(time.perf_counter() - t0)
            reports[label] = sess.last_run_report
    med = {label: statistics.median(ts) for label, ts in times.items()}
    for label, ts in times.items():   # per-round ratios: both sides ran moments apart
        base = times["cpu" if label.endswith("/cpu") else "unconstrained"]
        ratios = sorted(t / f for t, f in zip(ts, base))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        med[label + "/ratio"] = (statistics.median(ratios), q[0], q[2], min(ts) / min(base))
    return saved, free_peak, rows, med, reports


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="*", default=None)
    ap.add_argument("--long", action="store_true", help="also T=10000")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds (medians)")
    ap.add_argument("--budgets", type=int, nargs="*", default=list(FRACTIONS),
                    help="budgets as fractions 1/N of the saved tensors (default: 2 10 20)")
    ap.add_argument("--lean", action="store_true",
                    help="also time each budget with the sequence passes off (no chunks)")
    ap.add_argument("--proj", type=int, nargs="*", default=None,
                    help="num_proj values (default: hidden/8 and 0, no projection)")
    ap.add_argument("--no-proj", action="store_true",
                    help="only the LSTM without a projection (the same as --proj 0)")
    ap.add_argument("--head", choices=sorted(HEADS), default="sum",
                    help="the loss: " + "; ".join(f"{k}: {v}" for k, v in HEADS.items()))
    ap.add_argument("--no-check", action="store_true", help="skip comparing gradients")
    ap.add_argument("--plans-only", action="store_true",
                    help="print the plans (predicted peaks) without running anything")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS threads (default 0: the library's default)")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits   # (optional; only when asked for)
        threadpool_limits(args.threads)
    steps = args.steps or ([100, 1000, 10000] if args.long else [100, 1000])
    projs = [0] if args.no_proj else \
        args.proj if args.proj is not None else [args.hidden // 8, 0]
    print(f"LSTM B={args.batch} H={args.hidden} inputs={args.inputs}; loss = {HEADS[args.head]}; "
          "gradients of every weight; simulated device (NumPy, "
          f"BLAS threads: {args.threads or 'default'}); "
          f"medians of {args.rounds} interleaved rounds")
    print(f"BLAS (threadpoolctl): {blas_description()}")
    print("budget: a fraction of the saved tensors of the unconstrained program; memory: the "
          "measured peak against the unconstrained measured peak")
    head = (f"{'T':>6} {'proj':>5} {'budget':>6} {'bytes':>10}  {'fits':<4} {'chosen':<34}"
            f"{'predicted':>10}{'measured':>10}{'memory':>8}{'moved':>10}{'time (p25-p75)':>22}"
            f"{'best':>7}{'CPU time (p25-p75)':>23}{'best':>7}")
    print(head)
    for T in steps:
        for P in projs:
            saved, free_peak, rows, med, reports = bench(T, args.batch, args.hidden, P,
                                                         args.inputs, args.rounds,
                                                         not args.no_check, args.plans_only,
                                                         args.lean, args.budgets, args.head)
            free_cols = f"{fmt_bytes(free_peak):>10}{'':>10}" if args.plans_only else \
                f"{'':>10}{fmt_bytes(free_peak):>10}"
            print(f"{T:>6} {P or '-':>5} {'none':>6} {'':>10}  {'':<4} "
                  f"{'saved tensors ' + fmt_bytes(saved):<34}{free_cols}{'':>8}{'':>10}"
                  + ("" if args.plans_only else f"{med['unconstrained']:>7.2f}s" +
                     f"{'':>22}{med['cpu']:>9.2f}s"))
            for label, budget, plan, sess in rows:
                if sess is None and plan.fits:   # --plans-only
                    print(f"{'':>6} {'':>5} {label:>6} {fmt_bytes(budget):>10}  {'yes':<4} "
                          f"{chosen(plan):<34}{fmt_bytes(plan.predicted_peak):>10}")
                    continue
                if sess is None:
                    floor = plan.min_budget or plan.predicted_peak
                    print(f"{'':>6} {'':>5} {label:>6} {fmt_bytes(budget):>10}  {'no':<4} "
                          f"{'smallest: ' + fmt_bytes(floor) + f' ({floor / saved:.1%})':<34}"
                          f"{fmt_bytes(plan.predicted_peak):>10}")
                    continue
                rep = reports[label]
                moved = rep.bytes_to_host + rep.bytes_to_device
                mem = rep.peak_bytes / free_peak - 1
                ratio, lo, hi, best = med[label + "/ratio"]
                cpu = med.get(label + "/cpu/ratio")
                cpu_cols = "" if cpu is None else \
                    f"{cpu[0]:>8.3f}x ({cpu[1]:.3f}-{cpu[2]:.3f}){cpu[3]:>6.2f}x"
                print(f"{'':>6} {'':>5} {label:>6} {fmt_bytes(budget):>10}  {'yes':<4} "
                      f"{chosen(plan):<34}{fmt_bytes(plan.predicted_peak):>10}"
                      f"{fmt_bytes(rep.peak_bytes):>10}{mem:>+8.0%}{fmt_bytes(moved):>10}"
                      f"{ratio:>8.3f}x ({lo:.3f}-{hi:.3f}){best:>6.2f}x{cpu_cols}")
    print("references: Gruslys et al. 2016 (BPTT-MSM, T=1000): memory -95% at time 1.33x; "
          "Chen et al. 2016: O(sqrt(T)) memory at one extra forward (about 1.3x)")


if __name__ == "__main__":
    main()
