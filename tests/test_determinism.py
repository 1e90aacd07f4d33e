"""Determinism and concurrency.

Determinism: the same seed gives bit-identical initial variables, outputs, gradients and
trained variables: across runs of one session, across sessions on one graph, across rebuilds of
the graph (new objects at new addresses, so nothing may depend on id()-ordered sets), and across
Python processes with different hash seeds. Results handed to the caller are never overwritten
by later runs.

Concurrency: Session.run called from several threads at once on one compiled graph gives the
same results as serial runs (forward, gradients; dynamic and static RNNs; a loop whose saved
tensors go to the host; a byte-counting simulated device), and sessions in several threads on
one graph train independently.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice


@pytest.fixture(autouse=True)
def _one_tier(monkeypatch):
    """Runs repeat bit for bit within a tier of kernels. Session(accelerate="auto") runs a
    program's first HOT_AFTER runs on NumPy kernels and later ones on the numba backend's (whose
    tanh and sigmoid round differently in float32): here every run uses the same tier from the
    first (test_tiered.py covers the switch; across processes each run index gives the same
    bits, which the subprocess test below checks)."""
    monkeypatch.setattr("rnngraph.runtime.session.HOT_AFTER", 0)

B, T, D, H, C = 4, 5, 3, 6, 3


def build_model(seed_graph=None, swap_memory=False, static=False, optimizer="adam"):
    """An LSTM sequence classifier with sequence_length, a dense layer, a loss, gradients and a
    training step; returns a dict of the graph and the interesting values."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, T, D], name="X")
        seq = rg.placeholder(rg.int32, [None], name="seq")
        y = rg.placeholder(rg.int32, [None], name="y")
        cell = rg.nn.MultiRNNCell([rg.nn.LSTMCell(H), rg.nn.GRUCell(H)])
        if static:
            outs, state = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), sequence_length=seq,
                                           dtype=rg.float32)
            out = rg.stack(outs, axis=1)
        else:
            out, state = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, dtype=rg.float32,
                                           swap_memory=swap_memory)
        logits = rg.layers.dense(state[-1], C)
        loss = rg.losses.sparse_softmax_cross_entropy(y, logits) + 0.01 * rg.reduce_mean(
            rg.square(out))
        variables = rg.trainable_variables()
        grads = rg.gradients(loss, [X] + variables)
        opt = rg.train.AdamOptimizer(0.05) if optimizer == "adam" else \
            rg.train.GradientDescentOptimizer(0.1)
        train = opt.minimize(loss)
    return dict(graph=g, X=X, seq=seq, y=y, out=out, state=state, logits=logits, loss=loss,
                grads=grads, train=train, variables=variables)


def batch(seed, batch_size=B):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch_size, T, D)).astype(np.float32),
            rng.integers(0, T + 1, batch_size).astype(np.int32),
            rng.integers(0, C, batch_size).astype(np.int32))


def feed(m, seed, batch_size=B):
    x, s, y = batch(seed, batch_size)
    return {m["X"]: x, m["seq"]: s, m["y"]: y}


def all_variables(m, sess):
    return {v.node.name: sess.read_variable(v).copy()
            for v in rg.global_variables(m["graph"])}


def fetches(m):
    return [m["out"], m["state"], m["logits"], m["loss"], m["grads"]]


def leaves(x):
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in leaves(x[k])]
    if isinstance(x, (list, tuple)):
        return [leaf for v in x for leaf in leaves(v)]
    return [np.asarray(x)]


def assert_bitwise(a, b, what=""):
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb), what
    for k, (x, y) in enumerate(zip(la, lb)):
        assert x.dtype == y.dtype and x.shape == y.shape, (what, k)
        assert x.tobytes() == y.tobytes(), f"{what}: leaf {k} differs (max abs " \
                                           f"{np.abs(x.astype(float) - y.astype(float)).max()})"


def train_and_record(m, sess, steps=3):
    record = [sess.run(fetches(m), feed(m, 100))]
    for k in range(steps):
        sess.run(m["train"], feed(m, k))
    record.append(all_variables(m, sess))
    record.append(sess.run(fetches(m), feed(m, 100)))
    return record


# --- determinism --------------------------------------------------------------------------------
def test_same_seed_same_initial_variables_across_sessions_and_rebuilds():
    a, b = build_model(), build_model()
    s1, s2, s3 = rg.Session(a["graph"], seed=7), rg.Session(a["graph"], seed=7), \
        rg.Session(b["graph"], seed=7)
    v1, v2, v3 = all_variables(a, s1), all_variables(a, s2), all_variables(b, s3)
    assert len(v1) > 10 and v1.keys() == v3.keys()
    assert_bitwise(v1, v2, "two sessions, one graph")
    assert_bitwise(v1, v3, "a rebuilt graph")
    other = all_variables(a, rg.Session(a["graph"], seed=8))
    assert not np.array_equal(other["rnn/multi_rnn_cell/cell_0/lstm_cell/kernel"],
                              v1["rnn/multi_rnn_cell/cell_0/lstm_cell/kernel"])


def test_initializer_resets_to_the_same_values():
    m = build_model()
    sess = rg.Session(m["graph"], seed=3)
    with m["graph"].as_default():
        init = rg.global_variables_initializer()
    sess.run(init)
    before = all_variables(m, sess)
    sess.run(m["train"], feed(m, 0))
    sess.run(init)
    assert_bitwise(all_variables(m, sess), before, "re-initialised")


@pytest.mark.parametrize("variant", ["dynamic", "static", "swap_memory", "passes_off"])
def test_training_is_bit_reproducible_across_sessions_and_rebuilds(variant):
    kw = dict(static=variant == "static", swap_memory=variant == "swap_memory")
    passes = variant != "passes_off"
    a, b = build_model(**kw), build_model(**kw)
    r1 = train_and_record(a, rg.Session(a["graph"], seed=1, passes=passes))
    r2 = train_and_record(a, rg.Session(a["graph"], seed=1, passes=passes))
    r3 = train_and_record(b, rg.Session(b["graph"], seed=1, passes=passes))
    assert_bitwise(r1, r2, "two sessions")
    assert_bitwise(r1, r3, "rebuilt graph")
    assert not np.array_equal(r1[0][3], r1[2][3]), "training did not change the loss"


def test_repeated_runs_are_identical_and_never_overwrite_returned_arrays():
    m = build_model()
    sess = rg.Session(m["graph"], seed=2)
    f1 = feed(m, 1)
    first = sess.run(fetches(m), f1)
    kept = [x.copy() for x in leaves(first)]
    for k in range(3):  # other shapes, other lengths: buffers get reused
        sess.run(fetches(m), feed(m, 10 + k, batch_size=B + k))
    again = sess.run(fetches(m), f1)
    assert_bitwise(first, again, "same feed, later run")
    for x, y in zip(leaves(first), kept):
        assert x.tobytes() == y.tobytes(), "a later run overwrote an array returned earlier"


_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_determinism import build_model, train_and_record, leaves
    import rnngraph as rg
    h = hashlib.sha256()
    for static in (False, True):
        m = build_model(static=static)
        sess = rg.Session(m["graph"], seed=5, accelerate={accelerate!r})
        for leaf in leaves(train_and_record(m, sess, steps=5)):
            h.update(leaf.tobytes())
    print(h.hexdigest())
""")


def _digest_in_subprocess(hash_seed: str, accelerate="auto") -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    script = _SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)), accelerate=accelerate)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_bit_identical_across_processes_with_different_hash_seeds():
    """Each run of a fresh process gives the same bits, with the default tiering (the first
    runs on NumPy kernels, the later ones compiled: 5 steps cross the switch) and with one tier
    from the first run (compared with this process too)."""
    here = hashlib.sha256()
    for static in (False, True):
        m = build_model(static=static)
        sess = rg.Session(m["graph"], seed=5, accelerate=True)
        for leaf in leaves(train_and_record(m, sess, steps=5)):
            here.update(leaf.tobytes())
    assert _digest_in_subprocess("1") == _digest_in_subprocess("12345")
    assert _digest_in_subprocess("7", accelerate=True) == here.hexdigest()


# --- concurrency --------------------------------------------------------------------------------
def _hammer(sess, jobs, threads=4, rounds=3):
    """Run every (fetches, feed) job from `threads` threads at once, `rounds` times each;
    returns {(thread, round, job index): result} and the exceptions raised."""
    results, errors = {}, []
    start = threading.Barrier(threads)

    def worker(t):
        try:
            start.wait()
            for r in range(rounds):
                for j in range(len(jobs)):
                    k = (j + t) % len(jobs)  # threads run different jobs at the same moment
                    f, fd = jobs[k]
                    results[(t, r, k)] = sess.run(f, fd)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts), "a thread hung"
    return results, errors


@pytest.mark.parametrize("variant", ["dynamic", "static", "passes_off", "simulated_device"])
def test_concurrent_runs_on_one_session_match_serial_runs(variant):
    m = build_model(static=variant == "static")

    def session():
        return rg.Session(m["graph"], seed=4, passes=variant != "passes_off",
                          device=SimulatedDevice() if variant == "simulated_device" else "cpu")

    sess = session()
    # different batch sizes and lengths per job; the first runs compile concurrently too
    jobs = [(fetches(m), feed(m, k, batch_size=2 + k)) for k in range(4)]
    results, errors = _hammer(sess, jobs)
    assert not errors, errors[0]
    serial = [session().run(f, fd) for f, fd in jobs]
    for (t, r, k), got in results.items():
        assert_bitwise(got, serial[k], f"thread {t}, round {r}, job {k}")


@pytest.mark.parametrize("how", ["swap_memory", "memory_budget"])
def test_concurrent_runs_with_a_memory_plan_match_serial_runs(how):
    """Loops whose saved tensors go to the host follow a plan held by the compiled program
    during a run; concurrent runs with different shapes must not see each other's plan."""
    m = build_model(swap_memory=how == "swap_memory")
    opts = dict(seed=4)
    if how == "memory_budget":  # a budget that fits the largest batch only by offloading
        big = feed(m, 0, batch_size=5)
        full = rg.Session(m["graph"], **opts).memory_plan([m["loss"], m["grads"]], big)
        for frac in (0.95, 0.9, 0.85, 0.8, 0.75, 0.7):
            budget = int(full.keep_all_peak * frac)
            plan = rg.Session(m["graph"], memory_budget=budget, **opts).memory_plan(
                [m["loss"], m["grads"]], big)
            if plan.fits and plan.bytes_by_placement()["host"] > 0:
                break
        else:
            pytest.fail(f"no budget below {full.keep_all_peak} B makes the planner offload")
        opts["memory_budget"] = budget
    sess = rg.Session(m["graph"], **opts)
    jobs = [([m["loss"], m["grads"]], feed(m, k, batch_size=2 + k)) for k in range(4)]
    results, errors = _hammer(sess, jobs)
    assert not errors, repr(errors[0])
    serial = [rg.Session(m["graph"], **opts).run(f, fd) for f, fd in jobs]
    for (t, r, k), got in results.items():
        assert_bitwise(got, serial[k], f"thread {t}, round {r}, job {k}")


def test_concurrent_sessions_on_one_graph():
    """Several sessions (one per thread) on one graph: each trains on its own variables."""
    m = build_model(optimizer="sgd")
    serial = train_and_record(m, rg.Session(m["graph"], seed=6), steps=2)
    out, errors = {}, []

    def worker(t):
        try:
            out[t] = train_and_record(m, rg.Session(m["graph"], seed=6), steps=2)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not errors, errors[0]
    for t in range(3):
        assert_bitwise(out[t], serial, f"session in thread {t}")
