"""rnngraph.distributed without processes: ranks as threads (ThreadCommunicator) run the same
data-parallel logic as MPI ranks in every CI run, plus shard, init and the errors.
The real multi-process runs (mpiexec) are in test_distributed_mpi.py."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import rnngraph as rg
import rnngraph.distributed as dist
from distributed_worker import build, make_batches, train, weights


@pytest.fixture(autouse=True)
def _one_process():
    """Every test starts from one process (init() in the main thread) and leaves it so."""
    dist.init()
    yield
    dist.init()


def run_threads(size, fn, timeout=60.0):
    """fn(rank, size) in `size` threads, each bound to its ThreadCommunicator; the results by
    rank, or the first exception (the others are aborted)."""
    comms = dist.ThreadCommunicator.create(size, timeout=timeout)
    results, errors = [None] * size, [None] * size

    def body(r):
        try:
            dist.init(comms[r])
            results[r] = fn(r, size)
        except BaseException as exc:   # noqa: BLE001  (reported below)
            errors[r] = exc
            comms[r].abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
        assert not t.is_alive(), "a rank thread hangs"
    return results, errors


def reference_weights(cell, mode, batches, dtype=np.float64):
    """One process, plain Adam (no DistributedOptimizer) on every global batch whole."""
    model = build(cell, mode, dtype, distributed=False)
    return weights(train(model, batches, seed=100, broadcast=False), model)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the empty shard's 0 / 0
@pytest.mark.parametrize("cell,mode,size,batch", [
    ("lstm", "steps", 2, 7), ("gru", "steps", 3, 7), ("lstm", "examples", 3, 8),
    ("gru", "examples", 2, 5), ("lstm", "steps", 3, 2)])   # the last: rank 2's shard is empty
def test_threads_match_one_process_on_the_whole_batch(cell, mode, size, batch):
    batches = make_batches(3, batch)
    expected = reference_weights(cell, mode, batches)

    def rank_fn(r, n):
        model = build(cell, mode)
        return weights(train(model, batches, seed=100 + r, rank=r, size=n), model)

    results, errors = run_threads(size, rank_fn)
    assert errors == [None] * size
    assert set(results[0]) == set(expected)
    for name, want in expected.items():
        for r in range(size):   # uneven shards and variable lengths: the full-batch update
            np.testing.assert_allclose(results[r][name], want, rtol=1e-12, atol=1e-13,
                                       err_msg=f"{name} on rank {r}")
            np.testing.assert_array_equal(results[r][name], results[0][name])  # identical


def test_the_allreduce_is_the_weighted_mean_of_the_ranks_gradients():
    """Against NumPy: sum_r n_r g_r / sum_r n_r, with made-up counts and gradients."""
    rng = np.random.default_rng(0)
    counts = [3, 1, 5, 0]
    grads = [[rng.standard_normal((2, 3)), rng.standard_normal(4)] for _ in counts]
    grads[3][0][0, 0] = np.nan   # an empty shard's 0 / 0 loss: it must add nothing

    def rank_fn(r, n):
        g = rg.Graph()
        with g.as_default():
            c = rg.placeholder(rg.int32, [], name="count")
            a = rg.placeholder(rg.float64, [2, 3], name="a")
            b = rg.placeholder(rg.float64, [4], name="b")
            total, (ra, rb) = dist.allreduce_gradients(c, [a, b])
        return rg.Session(g).run([total, ra, rb], feed_dict={
            c: np.int32(counts[r]), a: grads[r][0], b: grads[r][1]})

    results, errors = run_threads(4, rank_fn)
    assert errors == [None] * 4
    want_a = sum(n * g[0] for n, g in zip(counts[:3], grads)) / sum(counts)
    want_b = sum(n * g[1] for n, g in zip(counts[:3], grads)) / sum(counts)
    for total, ra, rb in results:
        assert float(total) == 9.0
        np.testing.assert_allclose(ra, want_a, rtol=1e-14)
        np.testing.assert_allclose(rb, want_b, rtol=1e-14)


def test_float32_gradients_keep_their_dtype():
    def rank_fn(r, n):
        g = rg.Graph()
        with g.as_default():
            a = rg.placeholder(rg.float32, [3], name="a")
            _, (ra,) = dist.allreduce_gradients(rg.constant(2.0), [a])
        return rg.Session(g).run(ra, feed_dict={a: np.full(3, r + 1, np.float32)})

    results, errors = run_threads(2, rank_fn)
    assert errors == [None, None]
    for out in results:
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [1.5, 1.5, 1.5])


def test_ranks_that_built_different_graphs_stop_with_an_error():
    batches = make_batches(2, 6)

    def rank_fn(r, n):
        model = build("lstm" if r == 0 else "gru", "steps")
        return train(model, batches, seed=1, rank=r, size=n, broadcast=False)

    results, errors = run_threads(2, rank_fn, timeout=30.0)
    for exc in errors:
        assert isinstance(exc, dist.DistributedError)
        assert "different graphs" in str(exc) and "fingerprints" in str(exc)
        assert "allreduce 'allreduce'" in str(exc)   # names the node and the user's line


def test_broadcast_refuses_ranks_with_different_variables():
    def rank_fn(r, n):
        model = build("lstm" if r == 0 else "gru", "steps")
        return dist.broadcast_variables(rg.Session(model["graph"]))

    results, errors = run_threads(2, rank_fn, timeout=30.0)
    for exc in errors:
        assert isinstance(exc, dist.DistributedError)
        assert "built different graphs: their variables" in str(exc)


def test_a_rank_that_never_comes_makes_the_others_time_out():
    def rank_fn(r, n):
        model = build("gru", "examples")
        if r == 1:
            return None   # this rank stops before training
        return train(model, make_batches(1, 4), seed=1, rank=r, size=n, broadcast=False)

    results, errors = run_threads(2, rank_fn, timeout=1.0)
    assert isinstance(errors[0], dist.DistributedError)
    assert "did not answer within 1 s" in str(errors[0])


def test_broadcast_variables_sets_every_rank_to_the_roots_values():
    def rank_fn(r, n):
        model = build("lstm", "steps")
        sess = rg.Session(model["graph"], seed=10 + r)
        before = weights(sess, model)
        assert dist.broadcast_variables(sess, root=1) == len(before)
        return before, weights(sess, model)

    results, errors = run_threads(3, rank_fn)
    assert errors == [None] * 3
    root_before = results[1][0]
    assert any(not np.array_equal(results[0][0][k], root_before[k]) for k in root_before)
    for _, after in results:
        for k, v in root_before.items():
            np.testing.assert_array_equal(after[k], v)


def test_fetching_other_values_runs_no_collective():
    """Only the training op reaches the allreduce: rank 0 may evaluate alone."""
    def rank_fn(r, n):
        model = build("gru", "examples")
        sess = rg.Session(model["graph"], seed=1)
        X, L, Y, labels = make_batches(1, 4)[0]
        feed = {model["X"]: X, model["L"]: L, model["labels"]: labels}
        if r == 0:
            for _ in range(3):
                sess.run(model["loss"], feed_dict=feed)
        sess.run(model["train_op"], feed_dict=feed)
        return True

    results, errors = run_threads(2, rank_fn, timeout=20.0)
    assert errors == [None, None] and results == [True, True]


# --- one process ---------------------------------------------------------------------------------
def test_one_process_without_mpi():
    comm = dist.init()
    assert (dist.rank(), dist.size(), dist.is_root()) == (0, 1, True)
    assert isinstance(comm, dist.LocalCommunicator)
    batches = make_batches(2, 5)
    model = build("lstm", "steps")   # DistributedOptimizer with size 1: the plain gradients
    got = weights(train(model, batches, seed=100), model)
    want = reference_weights("lstm", "steps", batches)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_the_allreduce_node_is_printed_and_rendered():
    model = build("gru", "examples")
    text = str(model["graph"])
    line = next(ln for ln in text.splitlines() if "= allreduce[" in ln)
    n_vars = len(rg.trainable_variables(model["graph"]))
    assert line.count(":f64[") == 1 + n_vars and "fingerprint=" in line
    dot = rg.to_dot(model["graph"])
    assert "allreduce" in dot


def test_fingerprint_ignores_locations_and_sees_the_graph():
    a1, a2, b = build("lstm", "steps"), build("lstm", "steps"), build("gru", "steps")

    def fp(m):
        node = next(n for n in m["graph"].nodes if n.op.name == "allreduce")
        return node.op.fingerprint

    assert fp(a1) == fp(a2) != fp(b)
    graphs = [rg.Graph() for _ in range(3)]
    with graphs[0].as_default():   # the same graph, built on other lines: the same hash
        w = rg.get_variable("w", [2, 1], rg.float64)
        x = rg.placeholder(rg.float64, [None, 2])
        loss = rg.reduce_mean(rg.matmul(x, w))
    with graphs[1].as_default():
        w2 = rg.get_variable("w", [2, 1], rg.float64)
        x2 = rg.placeholder(rg.float64, [None, 2])
        loss2 = rg.reduce_mean(rg.matmul(x2, w2))
    with graphs[2].as_default():   # one shape differs
        w3 = rg.get_variable("w", [2, 2], rg.float64)
        x3 = rg.placeholder(rg.float64, [None, 2])
        loss3 = rg.reduce_mean(rg.matmul(x3, w3))
    assert loss.node.location != loss2.node.location
    prints = [dist.fingerprint([v]) for v in (loss, loss2, loss3)]
    assert prints[0] == prints[1] != prints[2]


@pytest.mark.parametrize("n,size", [(7, 2), (7, 3), (2, 3), (9, 3), (0, 2)])
def test_shard_bounds_cover_everything_once(n, size):
    parts = [dist.shard(np.arange(n), r, size) for r in range(size)]
    assert [len(p) for p in parts] == [len(p) for p in np.array_split(np.arange(n), size)]
    np.testing.assert_array_equal(np.concatenate(parts), np.arange(n))


def test_shard_structures():
    X, y = np.arange(10).reshape(5, 2), np.arange(5)
    Xs, ys = dist.shard((X, y), 1, 2)
    np.testing.assert_array_equal(Xs, X[3:])
    np.testing.assert_array_equal(ys, y[3:])
    d = dist.shard({"X": X, "y": y}, 0, 2)
    np.testing.assert_array_equal(d["y"], y[:3])
    assert dist.shard([1, 2, 3], 0, 1) == [1, 2, 3]
    with pytest.raises(ValueError, match="different lengths"):
        dist.shard((X, y[:3]), 0, 2)
    with pytest.raises(ValueError, match="rank"):
        dist.shard(X, 2, 2)
    with pytest.raises(TypeError, match="no len"):
        dist.shard(3, 0, 1)


def test_errors_before_init_and_for_bad_arguments(monkeypatch):
    import rnngraph.distributed.world as world
    monkeypatch.setattr(world, "_process", None)
    with pytest.raises(dist.DistributedError, match=r"call init\(\) first"):
        dist.rank()
    with pytest.raises(ValueError, match="timeout"):
        dist.init(timeout=0)
    with pytest.raises(TypeError, match="comm must be"):
        dist.init(comm=object())
    with pytest.raises(TypeError, match="rnngraph optimizer"):
        dist.DistributedOptimizer(object())


def test_optimizer_needs_a_batch_dimension():
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [2], rg.float64)
        loss = rg.reduce_sum(rg.square(w))
        with pytest.raises(ValueError, match="pass examples="):
            dist.DistributedOptimizer(rg.train.GradientDescentOptimizer(0.1)).minimize(loss)
        op = dist.DistributedOptimizer(rg.train.GradientDescentOptimizer(0.1), examples=4)
        train_op = op.minimize(loss)
    sess = rg.Session(g)
    w0 = np.array(sess.variables.committed("w"))
    sess.run(train_op)
    np.testing.assert_allclose(sess.variables.committed("w"), w0 - 0.1 * 2 * w0, rtol=1e-15)


def test_missing_mpi4py_with_several_processes_is_a_clear_error(monkeypatch):
    import builtins
    monkeypatch.setenv("PMI_SIZE", "2")
    real_import = builtins.__import__

    def no_mpi4py(name, *args, **kwargs):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    monkeypatch.delitem(__import__("sys").modules, "mpi4py.MPI", raising=False)
    with pytest.raises(dist.DistributedError, match=r"2 processes.*pip install 'rnngraph\[mpi\]'"):
        dist.init()


def test_demo_distributed_refuses_options_it_does_not_support(capsys):
    from rnngraph.cli import main
    assert main(["demo", "--distributed", "--device", "gpu"]) != 0
    assert "--device not supported" in capsys.readouterr().err


def test_differentiating_through_the_allreduce_names_the_op():
    """The node sits after the gradients; it has no gradient rule of its own."""
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("w", [3], rg.float64)
        _, (r,) = dist.allreduce_gradients(rg.constant(1.0), [w * 2.0])
        with pytest.raises(rg.GradientError, match="allreduce"):
            rg.gradients(rg.reduce_sum(r), [w])


def test_saving_a_graph_with_the_allreduce_is_refused_before_writing(tmp_path):
    """io loads only ops of rnngraph.ops and rnngraph.passes, so it refuses to write a file it
    could not load (save the one-process graph instead, as the demo does)."""
    model = build("gru", "examples")
    with pytest.raises(ValueError, match="cannot save op 'allreduce'"):
        rg.save(tmp_path / "m.npz", session=rg.Session(model["graph"]))
    assert not list(tmp_path.iterdir())


def test_a_variable_the_loss_does_not_reach_keeps_its_none_pair():
    """TF1's compute_gradients gives (None, var) for a variable the loss does not reach; the
    distributed wrapper keeps it (and the order), reduces the others, and applying skips it."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 2])
        w = rg.get_variable("w", [2, 1], initializer=rg.ones_initializer())
        unused = rg.get_variable("unused", [3], initializer=rg.ones_initializer())
        loss = rg.reduce_mean(rg.matmul(x, w))
        opt = dist.DistributedOptimizer(rg.train.GradientDescentOptimizer(0.5))
        pairs = opt.compute_gradients(loss, [unused, w])
        assert [v for _, v in pairs] == [unused, w] and pairs[0][0] is None
        assert pairs[1][0] is not None
        train = opt.apply_gradients(pairs)
        with rg.Session() as sess:
            sess.run(rg.global_variables_initializer())
            sess.run(train, {x: np.ones((4, 2), np.float32)})
            np.testing.assert_array_equal(sess.run(unused), np.ones(3))
            np.testing.assert_allclose(sess.run(w), np.full((2, 1), 0.5))
        only_unused = opt.compute_gradients(loss, [unused])
        assert only_unused == [(None, unused)]
        with pytest.raises(ValueError, match="No gradients provided for any variable"):
            opt.apply_gradients(only_unused)
