"""Random ops (rnngraph/ops/random.py): the Philox generator against published vectors and
NumPy's Philox bit generator, an independent scalar Philox, statistics, TF1's seed rules,
determinism across sessions and processes, loops, kernels, saving, bad input."""
from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.ops import random as R
from rnngraph.ops import initializers as inits

M32 = 0xFFFFFFFF


# --- the generator -----------------------------------------------------------------------------
# Random123's known-answer vectors for Philox4x32-10 (counter words, key words, output)
KAT_4x32 = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32,) * 4, (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,want", KAT_4x32)
def test_philox4x32_matches_the_published_known_answers(ctr, key, want):
    got = tuple(int(w) for w in R.philox(np, ctr, key, 32))
    assert got == want


@pytest.mark.parametrize("seed", range(5))
def test_philox4x64_instance_matches_numpys_philox_bit_generator(seed):
    """The same round code with the 64-bit constants is NumPy's Philox4x64-10, which
    increments its counter before each block."""
    rng = np.random.default_rng(seed)
    counter = [int(x) for x in rng.integers(0, 2**63, size=4)]
    key = [int(x) for x in rng.integers(0, 2**63, size=2)]
    raw = np.random.Philox(counter=counter, key=key).random_raw(12)
    for block in range(3):
        ctr = list(counter)
        ctr[0] += block + 1     # (no carry: counter[0] < 2**63)
        got = [int(w) for w in R.philox(np, ctr, key, 64)]
        assert got == [int(w) for w in raw[4 * block:4 * block + 4]]


def _scalar_philox4x32(ctr, key):
    """An independent scalar Philox4x32-10 on Python ints, written from the paper."""
    c = list(ctr)
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c[3] ^ k1) & M32, p0 & M32]
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c


def test_random_uniform_is_the_documented_function_of_seed_counter_step_and_index():
    """Element i of the r-th run: word i of block i // 4 with counter (i // 4, step 0, r, 0)
    under key (graph seed, op seed); float32 uniform = (word >> 8) * 2**-24."""
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(1234)
        u = rg.random_uniform([3, 5], seed=77)
    sess = rg.Session(g)
    for run in (1, 2):
        got = sess.run(u).ravel()
        for i in (0, 1, 6, 14):
            word = _scalar_philox4x32((i // 4, 0, run, 0), (1234, 77))[i % 4]
            assert got[i] == np.float32((word >> 8) * 2.0 ** -24)


def test_cuda_source_is_generated_from_the_same_table():
    src = R.philox_cuda_source()
    assert src.count("__umulhi") == 2 * R.PHILOX[32].rounds
    for const in R.PHILOX[32].mul + R.PHILOX[32].bump:
        assert f"{const:#x}u" in src


# --- statistics ---------------------------------------------------------------------------------
def _draw(builder, n=1_000_000, **kw):
    g = rg.Graph()
    with g.as_default():
        v = builder([n], seed=3, **kw)
    return rg.Session(g).run(v).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_moments_and_range(dtype):
    u = _draw(rg.random_uniform, dtype=dtype)
    assert u.min() >= 0.0 and u.max() < 1.0
    se = math.sqrt(1 / 12 / u.size)
    assert abs(u.mean() - 0.5) < 4 * se
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    p = 0.1
    assert np.all(np.abs(counts / u.size - p) < 4 * math.sqrt(p * (1 - p) / u.size))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_moments(dtype):
    z = _draw(rg.random_normal, dtype=dtype)
    n = z.size
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 4 * math.sqrt(2 / n)
    assert abs((np.abs(z) < 1).mean() - 0.682689) < 4 * math.sqrt(0.2167 / n)


def test_truncated_normal_stays_within_two_sigma_with_the_truncated_variance():
    z = _draw(rg.truncated_normal)
    assert np.abs(z).max() <= 2.0
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    var = 1 - 2 * 2 * phi2 / mass
    assert abs(z.mean()) < 4 * math.sqrt(var / z.size)
    assert abs(z.var() - var) < 0.01


def test_mean_stddev_minval_maxval_scale_the_draw():
    g = rg.Graph()
    with g.as_default():
        a = rg.random_normal([1000], mean=3.0, stddev=0.5, seed=1)
        b = rg.random_normal([1000], seed=1)
        c = rg.random_uniform([1000], minval=-2.0, maxval=6.0, seed=2)
        d = rg.random_uniform([1000], seed=2)
    va, vb, vc, vd = rg.Session(g).run([a, b, c, d])
    np.testing.assert_allclose(va, vb * np.float32(0.5) + np.float32(3.0), rtol=1e-6)
    np.testing.assert_allclose(vc, vd * np.float32(8.0) - np.float32(2.0), rtol=1e-6, atol=1e-6)
    assert vc.min() >= -2 and vc.max() < 6


def test_random_shuffle_is_a_permutation_and_multinomial_follows_the_logits():
    g = rg.Graph()
    with g.as_default():
        x = rg.constant(np.arange(20, dtype=np.int32).reshape(10, 2))
        s = rg.random_shuffle(x, seed=4)
        probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
        m = rg.multinomial(rg.constant(np.log(probs)), 100_000, seed=5)
    sess = rg.Session(g)
    shuffled, samples = sess.run([s, m])
    assert sorted(map(tuple, shuffled)) == [tuple(r) for r in np.arange(20).reshape(10, 2)]
    assert not np.array_equal(shuffled, np.arange(20).reshape(10, 2))
    assert samples.shape == (2, 100_000) and samples.dtype == np.int64
    for row, p in zip(samples, probs):
        freq = np.bincount(row, minlength=3) / row.size
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / row.size))


# --- seeds and determinism ---------------------------------------------------------------------
def _numbers(graph_seed=None, op_seed=None, runs=2, extra_first=False):
    g = rg.Graph()
    with g.as_default():
        if graph_seed is not None:
            rg.set_random_seed(graph_seed)
        if extra_first:
            rg.random_uniform([1])
        v = rg.random_normal([6], seed=op_seed)
    sess = rg.Session(g)
    return [sess.run(v) for _ in range(runs)]


def test_same_seeds_give_the_same_numbers_in_every_session_and_fresh_ones_each_run():
    a, b = _numbers(1, 2), _numbers(1, 2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])   # the second run draws new numbers


def test_tf1_seed_rules():
    base = _numbers(1, 2)[0]
    assert not np.array_equal(base, _numbers(1, 3)[0])     # another op seed
    assert not np.array_equal(base, _numbers(5, 2)[0])     # another graph seed
    # an op seed alone: the default graph seed
    np.testing.assert_array_equal(_numbers(None, 2)[0], _numbers(R.DEFAULT_GRAPH_SEED, 2)[0])
    # a graph seed alone: op seeds counted per graph, so an extra random op before shifts it
    np.testing.assert_array_equal(_numbers(7)[0], _numbers(7)[0])
    assert not np.array_equal(_numbers(7)[0], _numbers(7, extra_first=True)[0])


def test_a_counted_op_seed_never_equals_a_small_explicit_one():
    g = rg.Graph()
    with g.as_default():
        a = rg.random_uniform([8], seed=0)
        b = rg.random_uniform([8])
    va, vb = rg.Session(g).run([a, b])
    assert not np.array_equal(va, vb)


_PROCESS = textwrap.dedent("""
    import hashlib, numpy as np, rnngraph as rg
    rg.set_random_seed(11)
    x = rg.placeholder(rg.float32, [None, 4, 3])
    cell = rg.nn.rnn_cell.DropoutWrapper(rg.nn.BasicRNNCell(5), 0.8, 0.7, 0.9, seed=2)
    out, st = rg.nn.dynamic_rnn(cell, x, dtype=rg.float32)
    loss = rg.reduce_mean(rg.square(out)) + rg.reduce_mean(rg.truncated_normal([3]))
    train = rg.train.AdamOptimizer(0.05).minimize(loss)
    sess = rg.Session(seed=4)
    xs = np.linspace(-1, 1, 2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    losses = [sess.run([loss, train], {x: xs})[0] for _ in range(5)]
    h = hashlib.sha256(np.asarray(losses).tobytes())
    for v in rg.global_variables():
        h.update(np.ascontiguousarray(sess.read_variable(v)).tobytes())
    print(h.hexdigest())
""")


def test_training_with_dropout_is_bit_identical_in_two_processes():
    outs = [subprocess.run([sys.executable, "-c", _PROCESS], capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    for p in outs:
        assert p.returncode == 0, p.stderr
    assert outs[0].stdout == outs[1].stdout and len(outs[0].stdout.strip()) == 64


# --- loops and steps -----------------------------------------------------------------------------
def test_a_loop_body_draws_fresh_numbers_at_every_step_as_a_function_of_the_step():
    g = rg.Graph()
    with g.as_default():
        xs = rg.placeholder(rg.float32, [4, 3])

        def body(c, x):
            return c, x + rg.random_uniform([3], seed=9)
        _, ys = rg.lax_scan(body, rg.zeros([1]), xs)
        flat = rg.random_uniform([3], seed=9)     # the same op seed outside a loop: step 0
    sess = rg.Session(g)
    got, first = sess.run([ys, flat], {xs: np.zeros((4, 3), np.float32)})
    assert len({tuple(r) for r in got}) == 4    # a new draw per step
    np.testing.assert_array_equal(got[0], first)   # step 0 equals the top-level draw of run 1
    key = R.key_of(R.DEFAULT_GRAPH_SEED, 9)
    for t in range(4):   # step t: the reference stream with step index t, run counter 1
        np.testing.assert_array_equal(got[t], R.draw(np, "uniform", (3,), np.float32, key, t, 1))


def test_static_step_scope_draws_the_numbers_of_the_loop_step():
    g = rg.Graph()
    with g.as_default():
        seed = R.get_seed(5)
        with R.step_scope(3):
            a = R.random_standard("normal", (2, 2), np.float64, seed_pair=seed)
        b = R.random_standard("normal", (2, 2), np.float64, seed_pair=seed, step=3)
        c = R.random_standard("normal", (2, 2), np.float64, seed_pair=seed, step=2)
    va, vb, vc = rg.Session(g).run([a, b, c])
    np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(va, vc)


def test_a_prefix_of_the_rows_keeps_its_numbers():
    """Shrinking a loop's batch to its active rows draws the same numbers for those rows."""
    key = R.key_of(1, 2)
    for dist in ("uniform", "normal", "truncated_normal"):
        full = R.draw(np, dist, (8, 5), np.float32, key, 3, 4)
        part = R.draw(np, dist, (3, 5), np.float32, key, 3, 4)
        np.testing.assert_array_equal(full[:3], part)


# --- kernels -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dist", ["uniform", "normal", "bits"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (1, 1, 9), ()])
def test_the_numpy_kernel_draws_what_the_reference_draws(dist, dtype, shape):
    from rnngraph.backends.numpy.random import random_standard as factory
    if dist == "normal" and dtype == "float16":
        dtype = "float32"
    op = R.RandomStandard(dist, shape, dtype, 3, 4, loc=0.5 if dist != "bits" else 0.0,
                          scale=2.0 if dist != "bits" else 1.0)
    kernel = factory(op, type("N", (), {"name": "n"})(), None)
    for counter, step in ((1, 0), (9, 17)):
        want = op.compute(np, np.int64(counter), np.int32(step))
        got = kernel(np.int64(counter), np.int32(step))
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_float16_uniforms_stay_below_one():
    u = R.draw(np, "uniform", (100_000,), np.float16, (1, 2), 0, 1)
    assert u.dtype == np.float16 and u.max() < 1.0 and u.min() >= 0.0


# --- initializers ---------------------------------------------------------------------------------
def test_seeded_initializers_are_the_same_in_any_session_and_have_their_properties():
    g = rg.Graph()
    with g.as_default():
        t = rg.get_variable("t", [200, 50],
                            initializer=inits.truncated_normal_initializer(0.0, 0.5, seed=1))
        o = rg.get_variable("o", [6, 4], initializer=inits.orthogonal_initializer(2.0, seed=2))
        o2 = rg.get_variable("o2", [3, 7], initializer=inits.orthogonal_initializer(seed=2))
        u = rg.get_variable("u", [1000], initializer=inits.random_uniform_initializer(seed=3))
        gl = rg.get_variable("gl", [30, 20], initializer=inits.glorot_uniform_initializer(seed=4))
        n = rg.get_variable("n", [5], initializer=inits.random_normal_initializer(seed=5))
    s1, s2 = rg.Session(g, seed=0), rg.Session(g, seed=99)
    for v in (t, o, u, gl, n):
        np.testing.assert_array_equal(s1.read_variable(v), s2.read_variable(v))
    tv = s1.read_variable(t)
    assert np.abs(tv).max() <= 1.0 and abs(tv.std() - 0.5 * math.sqrt(0.7737)) < 0.02
    ov = s1.read_variable(o).astype(np.float64)
    np.testing.assert_allclose(ov.T @ ov, 4.0 * np.eye(4), atol=1e-5)
    ov2 = s1.read_variable(o2).astype(np.float64)
    np.testing.assert_allclose(ov2 @ ov2.T, np.eye(3), atol=1e-5)
    uv = s1.read_variable(u)
    assert uv.min() >= 0 and uv.max() < 1      # TF1's default range [0, 1)
    limit = math.sqrt(6 / 50)
    assert np.abs(s1.read_variable(gl)).max() <= limit


def test_unseeded_initializers_follow_the_session_seed():
    g = rg.Graph()
    with g.as_default():
        v = rg.get_variable("v", [10], initializer=inits.truncated_normal_initializer())
    a, b = rg.Session(g, seed=1).read_variable(v), rg.Session(g, seed=2).read_variable(v)
    assert not np.array_equal(a, b) and np.abs(a).max() <= 2


def test_a_variable_from_a_random_op_holds_what_the_op_draws_in_its_first_run():
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(8)
        w = rg.Variable(rg.random_normal([3, 4], mean=1.0, stddev=0.1, seed=6))
        fresh = rg.random_normal([3, 4], mean=1.0, stddev=0.1, seed=6)
    sess = rg.Session(g)
    np.testing.assert_array_equal(sess.read_variable(w), rg.Session(g).run(fresh))


# --- saving -------------------------------------------------------------------------------------------
def test_a_saved_graph_with_random_ops_loads_and_draws_the_same_numbers(tmp_path):
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(3)
        x = rg.placeholder(rg.float32, [None, 4])
        y = rg.nn.dropout(x, keep_prob=0.5) + rg.random_normal([4], seed=1) + \
            rg.truncated_normal([4]) + rg.random_uniform([4], -1.0, 1.0)
    path = rg.save(tmp_path / "r.npz", session=rg.Session(g), fetches={"x": x, "y": y})
    saved = rg.io.read(path)
    xs = np.ones((2, 4), np.float32)
    want = rg.Session(g).run(y, {x: xs})
    got = saved.session().run(saved.fetches["y"], {saved.fetches["x"]: xs})
    np.testing.assert_array_equal(got, want)


# --- placeholder_with_default --------------------------------------------------------------------------
def test_placeholder_with_default_is_the_default_unless_fed():
    g = rg.Graph()
    with g.as_default():
        d = rg.placeholder_with_default(np.ones((2, 3), np.float32), [None, 3])
        y = d * 2.0
    sess = rg.Session(g)
    np.testing.assert_array_equal(sess.run(y), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(sess.run(y, {d: np.zeros((5, 3))}), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="expects shape"):
        sess.run(y, {d: np.zeros((5, 4))})
    with g.as_default(), pytest.raises(ValueError, match="does not fit"):
        rg.placeholder_with_default(np.ones((2, 3), np.float32), [None, 4])


# --- bad input ----------------------------------------------------------------------------------------
def test_bad_input_names_the_argument_and_the_line():
    with rg.Graph().as_default():
        with pytest.raises(TypeError, match=r"seed must be an int.*test_random.py:\d+"):
            rg.random_normal([2], seed=1.5)
        with pytest.raises(TypeError, match=r"seed must be an int.*test_random.py:\d+"):
            rg.set_random_seed(0.5)
        with pytest.raises(ValueError, match=r"minval < maxval.*test_random.py"):
            rg.random_uniform([2], minval=1.0, maxval=1.0)
        with pytest.raises(ValueError, match=r"stddev must be >= 0.*test_random.py"):
            rg.truncated_normal([2], stddev=-1.0)
        with pytest.raises(TypeError, match=r"dtype must be a float dtype.*test_random.py"):
            rg.random_normal([2], dtype=rg.int32)
        with pytest.raises(ValueError, match=r"must specify maxval for integer dtype int32 "
                                             r"\(at test_random.py"):
            rg.random_uniform([2], dtype=rg.int32)
        with pytest.raises(ValueError, match=r"shape entries must be >= 0.*test_random.py"):
            rg.random_normal([-1])
        with pytest.raises(ValueError, match=r"num_samples"):
            rg.multinomial(rg.constant(np.zeros((1, 2), np.float32)), -1)
        g = rg.get_default_graph()
        before = len(g.nodes)
        with pytest.raises(TypeError):
            rg.random_normal([2], seed="x")
        assert len(g.nodes) == before    # nothing half-built
    with pytest.raises(TypeError, match="seed must be an int"):
        inits.truncated_normal_initializer(seed=0.5)


def test_run_counter_is_saved_so_a_restored_session_continues_the_stream(tmp_path):
    g = rg.Graph()
    with g.as_default():
        v = rg.get_variable("w", [2])
        u = rg.random_uniform([4], seed=1)
        saver = rg.train.Saver()
    s1 = rg.Session(g)
    s1.run(u)
    saver.save(s1, str(tmp_path / "m"))
    want = s1.run(u)
    s2 = rg.Session(g)
    saver.restore(s2, str(tmp_path / "m"))
    np.testing.assert_array_equal(s2.run(u), want)
    assert hashlib.sha256(want.tobytes()).hexdigest()   # (a real array came back)
