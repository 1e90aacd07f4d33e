"""Data-parallel throughput on MPI: one process against several, on this machine.

    python benchmarks/distributed.py                      # demo model and S1 LSTM, 1 and 2 processes
    python benchmarks/distributed.py --procs 1,2 --rounds 3 --models demo,s1

For each model, each process count and each round it launches `mpiexec -n N` on this script in
worker mode (one BLAS thread per rank) and trains with DistributedOptimizer: warm-up steps (they
compile), then timed steps. Strong scaling: the global batch (64) is split between the ranks, so
N processes do the same training as one. Weak scaling: each rank takes a whole batch of 64.
Per row, medians over the rounds (process counts alternate within a round): examples/s of all
ranks together, per rank, the scaling efficiency (N-process throughput over N x the one-process
throughput of the same round), the step time and the allreduce's share of it (the time in the
collective, waiting for the slower rank included), the message size, and the allreduce of that
message alone with the ranks in step (median of 30 after a barrier: the collective's own cost).

  demo:  the demo's classifier: BasicRNNCell(150) over 8 steps of 8 pixels -> dense(10), Adam
  s1:    an LSTM of shape S1 (batch 64, 100 steps, 128 inputs, 256 units), MSE on its outputs,
         Adam
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCH = 64
HERE = Path(__file__).resolve()


def worker(model: str, scaling: str, warmup: int, steps: int) -> None:
    import rnngraph as rg
    import rnngraph.distributed as dist
    try:
        from threadpoolctl import threadpool_limits   # optional: one BLAS thread per rank
        threadpool_limits(1, user_api="blas")
    except ImportError:
        pass
    comm = dist.init(timeout=600)
    rng = np.random.default_rng(0)
    g = rg.Graph()
    with g.as_default():
        if model == "demo":
            T, I, H, classes = 8, 8, 150, 10
            X = rg.placeholder(rg.float32, [None, T, I], name="X")
            y = rg.placeholder(rg.int32, [None], name="y")
            _, state = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H), X, dtype=rg.float32)
            logits = rg.layers.dense(state, classes)
            loss = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
            data = lambda n: {X: rng.random((n, T, I), dtype=np.float32),  # noqa: E731
                              y: rng.integers(0, classes, n).astype(np.int32)}
            lr = 1e-3
        else:
            T, I, H = 100, 128, 256
            X = rg.placeholder(rg.float32, [None, T, I], name="X")
            Y = rg.placeholder(rg.float32, [None, T, H], name="Y")
            outputs, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32)
            loss = rg.reduce_mean(rg.square(outputs - Y))
            data = lambda n: {X: rng.standard_normal((n, T, I), dtype=np.float32),  # noqa: E731
                              Y: rng.standard_normal((n, T, H), dtype=np.float32)}
            lr = 1e-4
        opt = dist.DistributedOptimizer(rg.train.AdamOptimizer(lr))
        train_op = opt.minimize(loss)
    n_params = sum(int(np.prod(v.shape)) for v in rg.trainable_variables(g))
    sess = rg.Session(g, seed=1)
    dist.broadcast_variables(sess)
    local = BATCH if scaling == "weak" else len(dist.shard(np.arange(BATCH)))
    feeds = [data(local) for _ in range(4)]
    for i in range(warmup):
        sess.run(train_op, feed_dict=feeds[i % 4])
    dist.barrier()
    ar0 = comm.stats["allreduce_seconds"]
    start = time.perf_counter()
    for i in range(steps):
        sess.run(train_op, feed_dict=feeds[i % 4])
    seconds = time.perf_counter() - start
    ar = comm.stats["allreduce_seconds"] - ar0
    bare = []   # the message alone, ranks in step: the collective's own cost
    message = np.ones(n_params + 1, np.float32)
    for _ in range(30):
        dist.barrier()
        t0 = time.perf_counter()
        comm.allreduce_sum(message)
        bare.append(time.perf_counter() - t0)
    mine = np.array([local * steps, seconds, ar, statistics.median(bare)], dtype=np.float64)
    rows = [np.frombuffer(b, np.float64) for b in comm.allgather_bytes(mine.tobytes())]
    if comm.rank == 0:
        print("RESULT " + json.dumps({
            "examples": sum(r[0] for r in rows), "seconds": max(r[1] for r in rows),
            "allreduce": statistics.mean(r[2] / r[1] for r in rows),
            "per_rank": [r[0] / r[1] for r in rows], "steps": steps,
            "message_bytes": (n_params + 1) * 4,
            "bare": max(r[3] for r in rows)}), flush=True)


def launch(n: int, model: str, scaling: str, warmup: int, steps: int) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("no mpiexec: pip install 'rnngraph[mpi]'")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent.parent),
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [mpiexec, "-n", str(n), sys.executable, str(HERE), "--worker", model, scaling,
           str(warmup), str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200,
                          stdin=subprocess.DEVNULL)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", default="1,2", help="process counts (default: 1,2)")
    p.add_argument("--models", default="demo,s1", help="demo,s1")
    p.add_argument("--scaling", default="strong,weak", help="strong,weak")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", nargs=4, metavar=("MODEL", "SCALING", "WARMUP", "STEPS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        model, scaling, warmup, steps = args.worker
        worker(model, scaling, int(warmup), int(steps))
        return
    procs = [int(x) for x in args.procs.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {os.cpu_count()} CPUs, load average {load:.1f} at the start; medians of "
          f"{args.rounds} rounds; one BLAS thread per rank")
    head = ("model", "scaling", "procs", "batch/rank", "examples/s", "per rank", "efficiency",
            "ms/step", "allreduce", "message", "bare ms")
    print("  ".join(f"{h:>10}" for h in head))
    for model in args.models.split(","):
        warmup, steps = (10, 60) if model == "demo" else (5, 8)
        for scaling in args.scaling.split(","):
            runs: dict = {n: [] for n in procs}
            for _ in range(args.rounds):
                for n in procs:
                    runs[n].append(launch(n, model, scaling, warmup, steps))
            base = [r["examples"] / r["seconds"] for r in runs[procs[0]]]
            for n in procs:
                thr = [r["examples"] / r["seconds"] for r in runs[n]]
                eff = [t / (n / procs[0] * b) for t, b in zip(thr, base)]
                med = statistics.median
                row = (model, scaling, n,
                       BATCH if scaling == "weak" else BATCH // n if BATCH % n == 0
                       else f"{BATCH // n}-{BATCH // n + 1}",
                       f"{med(thr):,.0f}", f"{med(thr) / n:,.0f}", f"{med(eff):.2f}",
                       f"{1e3 * med(r['seconds'] / r['steps'] for r in runs[n]):.2f}",
                       f"{med(r['allreduce'] for r in runs[n]):.0%}",
                       f"{runs[n][0]['message_bytes'] / 1024:.0f} KiB",
                       f"{1e3 * med(r['bare'] for r in runs[n]):.2f}")
                print("  ".join(f"{str(c):>10}" for c in row), flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# load average {load:.1f} at the end")


if __name__ == "__main__":
    main()
