"""rnngraph.distributed as real processes: `mpiexec -n 2` and `-n 3` in a subprocess with a
timeout (loopback only), against one process on the whole batch. Skipped without mpi4py or
mpiexec (the NumPy-only environment); test_distributed.py runs the same logic on threads."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")

from distributed_worker import build, make_batches, train, weights  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed_worker.py"


def _mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"   # the mpich wheel's, beside this python
    return str(here) if here.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")


def launch(n, out, *args, timeout=120, mpi_args=()):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    cmd = [MPIEXEC, "-n", str(n), *mpi_args, sys.executable, str(WORKER), "--out", str(out),
           *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return proc, time.perf_counter() - start


def reference(cell, mode, steps, batch):
    model = build(cell, mode, np.float64, distributed=False)
    return weights(train(model, make_batches(steps, batch), seed=100, broadcast=False), model)


@pytest.mark.parametrize("n,cell,mode,batch", [
    (2, "lstm", "steps", 7), (2, "gru", "examples", 9), (3, "gru", "steps", 8),
    (3, "lstm", "examples", 7)])
def test_mpi_ranks_match_one_process_on_the_whole_batch(tmp_path, n, cell, mode, batch):
    proc, _ = launch(n, tmp_path, "--cell", cell, "--mode", mode, "--steps", "3",
                     "--batch", str(batch))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = reference(cell, mode, 3, batch)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(n)]
    for r, got in enumerate(ranks):
        assert int(got.pop("size")) == n and str(got.pop("comm")) == f"MPI rank {r} of {n}"
        assert set(got) == set(expected)
        for name, want in expected.items():
            np.testing.assert_allclose(got[name], want, rtol=1e-12, atol=1e-13,
                                       err_msg=f"{name} on rank {r}")
            np.testing.assert_array_equal(got[name], ranks[0][name])   # ranks stay identical


def test_mpi_float32_within_1e_6(tmp_path):
    proc, _ = launch(2, tmp_path, "--cell", "lstm", "--mode", "steps", "--steps", "4",
                     "--batch", "7", "--dtype", "float32")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model = build("lstm", "steps", np.float32, distributed=False)
    expected = weights(train(model, make_batches(4, 7, dtype=np.float32), seed=100,
                             broadcast=False), model)
    got = np.load(tmp_path / "rank0.npz")
    for name, want in expected.items():
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-6, err_msg=name)


def test_mpi_ranks_that_built_different_graphs_stop_with_an_error(tmp_path):
    proc, _ = launch(2, tmp_path, "--odd-rank-differs", "--steps", "2")
    assert proc.returncode != 0
    assert proc.stderr.count("the ranks built different graphs") == 2, proc.stderr
    assert not list(tmp_path.glob("rank*.npz"))


def test_a_killed_rank_stops_the_others_within_the_timeout(tmp_path):
    """The launcher ends the job (its default); the survivors never hang."""
    proc, seconds = launch(2, tmp_path, "--kill-rank", "1", "--steps", "4", "--timeout", "5",
                           timeout=90)
    assert proc.returncode != 0
    assert not (tmp_path / "rank0.npz").exists()
    assert seconds < 60


def test_a_stuck_rank_makes_the_others_time_out_with_a_clear_error(tmp_path):
    """Rank 1 sleeps 8 s before step 1: rank 0's allreduce gives up after its 3 s timeout with
    a DistributedError naming the wait, and so does rank 1's when it comes back alone. (A rank
    killed outright is usually ended with the job by the launcher first: the test above.)"""
    proc, seconds = launch(2, tmp_path, "--stall-rank", "1", "--stall", "8", "--steps", "4",
                           "--timeout", "3", timeout=90)
    assert proc.returncode != 0
    for r in (0, 1):
        assert f"rank {r}: DistributedError: allreduce: rank {r} of 2 waited 3 s" \
            in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("rank*.npz"))
    assert seconds < 60


def test_demo_distributed_on_two_processes_trains_as_one(tmp_path):
    """`mpiexec -n 2 rnngraph demo --distributed`: the same global batches split in two give
    the test accuracy of one process, and rank 0 alone prints the table and writes the model."""
    pytest.importorskip("sklearn")
    import rnngraph.distributed as dist
    from rnngraph.demo import run_distributed_demo
    opts = ["--cell", "gru", "--units", "16", "--epochs", "2", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "rnngraph", "demo",
                           "--distributed", "--out", str(tmp_path), *opts],
                          env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("scaling efficiency") == 1 and "2 processes (MpiCommunicator)" in out
    rows = [ln.split() for ln in out.splitlines() if ln[:4].strip() in ("0", "1")]
    assert [r[0] for r in rows] == ["0", "1"]
    import rnngraph as rg
    saved = rg.io.read(tmp_path / "model.npz")   # the one-process graph, loadable
    assert "allreduce" not in str(saved.graph) and "logits" in saved.fetches
    accuracy = float(out.split("test accuracy: ")[1].split("%")[0]) / 100
    dist.init()
    one = run_distributed_demo(cell="gru", units=16, epochs=2, progress=False,
                               baseline_steps=6, log=lambda line: None)
    assert abs(one.test_accuracy - accuracy) <= 1 / 359   # one digit of 360, float32 sums
