"""The GPU check: one table of what only a CUDA device can tell (run by scripts/gpu_check.sh).

Rows:
  cell rows     CuPy vs NumPy, max abs difference of the outputs and of the gradients, for
                LSTM, GRU and BasicRNN through dynamic_rnn, without and with sequence_length
                (float32; target: 1e-5 relative to the largest value compared)
  planner       an LSTM under a tenth of its keep-everything peak: CuPy's pool peak, measured
                (a tracking allocator), against the plan's prediction less the modelled cuBLAS
                workspace, which cuBLAS keeps outside the pool and the tracker cannot see
                (target within 2%); and its time against the unconstrained run (<= 1.2x)
  S1            LSTM forward+backward at benchmarks/rnn.py's S1 shape, against PyTorch's
                cuDNN LSTM when torch sees a GPU (target: within 1.5x)

Without a GPU (or with RNNGRAPH_GPU_CHECK_NO_GPU=1) it prints the same table with every row
skipped, says why, and exits 0. Otherwise it exits 1 when a row misses its target.
Usage: python benchmarks/gpu_check.py [--quick]
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
from rnngraph.backends.cupy.device import gpu_unavailable_reason  # noqa: E402
from rnngraph.backends.cupy.tracking import PoolTracker  # noqa: E402

CELLS = {"LSTM": lambda h: rg.nn.LSTMCell(h), "GRU": lambda h: rg.nn.GRUCell(h),
         "BasicRNN": lambda h: rg.nn.BasicRNNCell(h)}
S1 = (64, 100, 128, 256)   # benchmarks/rnn.py's S1: batch, steps, input, hidden


def cell_graph(name, B, T, I, H, with_lengths):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L") if with_lengths else None
        out, _ = rg.nn.dynamic_rnn(CELLS[name](H), X, sequence_length=L, dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        grads = rg.gradients(loss, [X] + rg.trainable_variables())
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(B, T, I).astype(np.float32)}
    if with_lengths:
        fd[L] = rs.randint(1, T + 1, size=B).astype(np.int32)
    return g, out, grads, fd


def rel_diff(a_list, b_list) -> float:
    scale = max(max(float(np.abs(b).max()) for b in b_list), 1.0)
    return max(float(np.abs(a - b).max()) for a, b in zip(a_list, b_list)) / scale


def cell_row(name, with_lengths, quick):
    B, T, I, H = (8, 20, 8, 32) if quick else (32, 50, 16, 64)
    g, out, grads, fd = cell_graph(name, B, T, I, H, with_lengths)
    cpu = rg.Session(g).run([out] + grads, fd)
    gpu = rg.Session(g, device="gpu").run([out] + grads, fd)
    d_out, d_grad = rel_diff(gpu[:1], cpu[:1]), rel_diff(gpu[1:], cpu[1:])
    worst = max(d_out, d_grad)
    return (f"outputs {d_out:.1e}, gradients {d_grad:.1e}", "<= 1e-5 (relative)",
            "ok" if worst <= 1e-5 else "MISSED")


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def planner_row(quick):
    import cupy
    from memory_graphs import STACK_PASSES_OFF, feed, lstm_graph   # (tests/ helpers)
    T = 200 if quick else 1000
    g, X, f = lstm_graph(batch=32, hidden=256, inputs=64, proj=32)
    fd = feed(X, T)
    free = rg.Session(g, device="gpu")
    keep_all = free.memory_plan(f, {X: fd[X].shape}).keep_all_peak
    sess = rg.Session(g, device="gpu", memory_budget=keep_all // 10, passes=STACK_PASSES_OFF)
    plan = sess.memory_plan(f, {X: fd[X].shape})
    with PoolTracker(cupy) as tracker:
        sess.run(f, fd)                  # fills the reuse list, compiles
        cupy.cuda.Device().synchronize()
        tracker.reset_peak()
        sess.run(f, fd)
        cupy.cuda.Device().synchronize()
    measured = tracker.peak              # the pool only: measured, nothing modelled added
    workspace = sess.device.workspace_bytes
    predicted = plan.predicted_peak - workspace   # the prediction's pool bytes
    t_free = timed(lambda: free.run(f, fd), 3)
    t_plan = timed(lambda: sess.run(f, fd), 3)
    err = abs(measured - predicted) / predicted
    ok = plan.fits and err <= 0.02 and t_plan <= 1.2 * t_free
    return (f"pool peak measured {measured / 2**20:.1f} MiB vs predicted "
            f"{predicted / 2**20:.1f} MiB (the plan's {plan.predicted_peak / 2**20:.1f} MiB "
            f"less the modelled cuBLAS workspace {workspace / 2**20:.0f} MiB) ({err:.1%}); "
            f"{t_plan * 1e3:.0f} ms vs {t_free * 1e3:.0f} ms unconstrained "
            f"({t_plan / t_free:.2f}x)", "<= 2%, <= 1.2x", "ok" if ok else "MISSED")


def s1_row(quick):
    B, T, I, H = S1
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I])
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H, forget_bias=0.0), X, dtype=rg.float32)
        grads = rg.gradients(rg.reduce_sum(out), [X] + rg.global_variables())
    sess = rg.Session(g, device="gpu")
    fd = {X: np.random.default_rng(0).standard_normal((B, T, I), np.float32)}
    reps = 3 if quick else 10
    ours = timed(lambda: sess.run(grads, fd), reps)
    try:
        import torch
    except Exception:
        torch = None
    if torch is None or not torch.cuda.is_available():
        return (f"{ours * 1e3:.1f} ms (PyTorch with a GPU not found: no comparison)",
                "<= 1.5x cuDNN", "not compared")
    lstm = torch.nn.LSTM(I, H, batch_first=True).cuda()
    x = torch.from_numpy(fd[X]).cuda().requires_grad_(True)

    def step():
        lstm.zero_grad()
        x.grad = None
        out, _ = lstm(x)
        out.sum().backward()
        [p.grad.cpu() for p in lstm.parameters()]   # (ours fetches its gradients too)
        torch.cuda.synchronize()
    theirs = timed(step, reps)
    return (f"{ours * 1e3:.1f} ms vs cuDNN {theirs * 1e3:.1f} ms ({ours / theirs:.2f}x)",
            "<= 1.5x cuDNN", "ok" if ours <= 1.5 * theirs else "MISSED")


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    checks = [(f"{c} {'with' if L else 'without'} sequence_length",
               lambda c=c, L=L: cell_row(c, L, args.quick)) for c in CELLS for L in (False, True)]
    checks += [("planner, a tenth of the budget (LSTM)", lambda: planner_row(args.quick)),
               ("S1 LSTM forward+backward", lambda: s1_row(args.quick))]
    reason = "RNNGRAPH_GPU_CHECK_NO_GPU is set" if os.environ.get("RNNGRAPH_GPU_CHECK_NO_GPU") \
        else gpu_unavailable_reason()
    rows = []
    if reason:
        print(f"no GPU: {reason}. Every row is skipped.\n")
        rows = [(name, "skipped (no GPU)", "", "skipped") for name, _ in checks]
    else:
        for name, fn in checks:
            try:
                rows.append((name,) + tuple(fn()))
            except Exception as exc:   # one failing row must not hide the others
                rows.append((name, f"{type(exc).__name__}: {exc}"[:160], "", "FAILED"))
    table(rows, ("check", "result", "target", "status"))
    if reason:
        print(f"\n{len(rows)} rows skipped: no GPU.")
        return 0
    bad = [r for r in rows if r[3] in ("MISSED", "FAILED")]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} rows met their target.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
