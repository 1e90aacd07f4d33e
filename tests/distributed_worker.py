"""The training run the distributed tests repeat: as MPI ranks (`mpiexec -n N python
tests/distributed_worker.py ...`), as threads (ThreadCommunicator) and as one process on the
whole batch (the reference). Not a test module: test_distributed*.py import and launch it.

Two models over variable-length sequences (uneven shards of each global batch):
  steps:    an LSTM or GRU whose per-step outputs regress a target, the loss a mean over the
            active time steps (count: sum(sequence_length));
  examples: the final state classified by a dense layer, the loss a mean over the examples.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import rnngraph as rg
import rnngraph.distributed as dist

T, N_IN, UNITS, N_CLASSES = 5, 3, 4, 3


def make_batches(n_steps: int, batch: int, seed: int = 7, dtype=np.float64):
    """n_steps global batches (X, lengths, Y, labels), the same on every rank."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_steps):
        X = rng.standard_normal((batch, T, N_IN)).astype(dtype)
        L = rng.integers(1, T + 1, size=batch).astype(np.int32)
        Y = rng.standard_normal((batch, T, UNITS)).astype(dtype)
        labels = rng.integers(0, N_CLASSES, size=batch).astype(np.int32)
        out.append((X, L, Y, labels))
    return out


def build(cell: str = "lstm", mode: str = "steps", dtype=np.float64, distributed: bool = True,
          lr: float = 0.05):
    """The graph and its handles; `distributed`: wrap Adam in DistributedOptimizer."""
    graph = rg.Graph()
    with graph.as_default():
        X = rg.placeholder(dtype, [None, T, N_IN], name="X")
        L = rg.placeholder(rg.int32, [None], name="L")
        Y = rg.placeholder(dtype, [None, T, UNITS], name="Y")
        labels = rg.placeholder(rg.int32, [None], name="labels")
        cells = {"lstm": rg.nn.LSTMCell, "gru": rg.nn.GRUCell, "basic": rg.nn.BasicRNNCell}
        outputs, state = rg.nn.dynamic_rnn(cells[cell](UNITS), X, sequence_length=L,
                                           dtype=dtype)
        opt = rg.train.AdamOptimizer(lr)
        if mode == "steps":   # outputs are zero past each length, so Y is masked the same way
            mask = rg.cast(rg.less(rg.expand_dims(rg.constant(np.arange(T, dtype=np.int32)), 0),
                                   rg.expand_dims(L, 1)), dtype)
            err = rg.reduce_sum(rg.square(outputs - Y), axis=2) * mask
            loss = rg.reduce_sum(err) / rg.reduce_sum(rg.cast(L, dtype))
            if distributed:
                opt = dist.DistributedOptimizer(opt, sequence_length=L)
        else:
            final = state.h if cell == "lstm" else state
            logits = rg.layers.dense(final, N_CLASSES, name="dense")
            loss = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits))
            if distributed:
                opt = dist.DistributedOptimizer(opt)   # examples: the first dim of X
        train_op = opt.minimize(loss)
    return dict(graph=graph, X=X, L=L, Y=Y, labels=labels, loss=loss, train_op=train_op,
                opt=opt)


def weights(sess, model) -> dict:
    """Every variable's value (weights and Adam's slots) by name."""
    return {v.node.name: np.array(sess.variables.committed(v.node.name))
            for v in model["graph"].collections["variables"]}


def train(model, batches, seed: int, rank: int = 0, size: int = 1, broadcast: bool = True,
          on_step=None):
    """Adam steps over `batches`, each rank on its shard; returns the session."""
    sess = rg.Session(model["graph"], seed=seed)
    if broadcast:
        dist.broadcast_variables(sess, root=0)
    for step, (X, L, Y, labels) in enumerate(batches):
        if on_step is not None:
            on_step(step)
        Xs, Ls, Ys, ls = dist.shard((X, L, Y, labels), rank, size)
        sess.run(model["train_op"], feed_dict={model["X"]: Xs, model["L"]: Ls,
                                               model["Y"]: Ys, model["labels"]: ls})
    return sess


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cell", default="lstm")
    p.add_argument("--mode", default="steps")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=7)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--odd-rank-differs", action="store_true",
                   help="rank 1 builds a GRU where the others build the given cell")
    p.add_argument("--kill-rank", type=int, default=-1,
                   help="this rank kills itself (SIGKILL) before step 1")
    p.add_argument("--stall-rank", type=int, default=-1,
                   help="this rank sleeps --stall seconds before step 1 (a stuck rank)")
    p.add_argument("--stall", type=float, default=0.0)
    args = p.parse_args(argv)
    comm = dist.init(timeout=args.timeout)
    r, n = dist.rank(), dist.size()
    cell = "gru" if args.odd_rank_differs and r == 1 else args.cell
    model = build(cell, args.mode, np.dtype(args.dtype))
    batches = make_batches(args.steps, args.batch, dtype=np.dtype(args.dtype))

    def on_step(step):
        if step == 1 and r == args.kill_rank:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == 1 and r == args.stall_rank:
            time.sleep(args.stall)

    try:
        sess = train(model, batches, seed=100 + r, rank=r, size=n, on_step=on_step)
    except dist.DistributedError as exc:
        print(f"rank {r}: DistributedError: {exc}", file=sys.stderr, flush=True)
        return 3
    np.savez(Path(args.out) / f"rank{r}.npz", size=n, comm=str(comm), **weights(sess, model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
