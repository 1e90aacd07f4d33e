"""Optimizers on an embedding's gradient (a gather of the variable): TF1 gets an IndexedSlices
and applies it with its sparse kernels, which update only the looked-up rows (repeated ids
summed first): sparse_apply_momentum, sparse_apply_rms_prop (and the centered one),
sparse_apply_adagrad. Adam's _apply_sparse (not lazy) decays both moments on every row and adds
at the ids. Checked against NumPy reimplementations of those kernels over several steps with
repeated ids, a row never looked up, and one looked up only in the first step; dense variables
keep the dense update; a budgeted run trains as the unconstrained one."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import InvalidArgumentError
from rnngraph.ops.sparse_rows import select_rows
from rnngraph.runtime.simulated import SimulatedDevice

V, D = 6, 3
STEPS = [np.array(i, np.int32) for i in ([0, 2, 2], [1], [2, 0, 0, 3, 2], [4, 4], [1, 3])]
# row 5 is never looked up; row 4 only in step 4


def _coefs(seed=0):
    rs = np.random.RandomState(seed)
    return [rs.randn(len(i), D).astype(np.float64) for i in STEPS]


def _dedup(ids, rows):
    """TF1's _apply_sparse_duplicate_indices: the unique ids and their rows summed."""
    uniq, pos = np.unique(ids, return_inverse=True)
    summed = np.zeros((len(uniq), rows.shape[1]))
    np.add.at(summed, pos, rows)
    return uniq, summed


# --- NumPy references of TF 1.15's sparse kernels (per unique row) -------------------------------
def momentum_ref(var, ids_rows, lr, mom, nesterov):
    acc = np.zeros_like(var)
    for ids, rows in ids_rows:
        for i, g in zip(*_dedup(ids, rows)):
            acc[i] = acc[i] * mom + g
            var[i] -= lr * g + acc[i] * mom * lr if nesterov else lr * acc[i]
    return var


def rmsprop_ref(var, ids_rows, lr, decay, mom, eps, centered):
    ms, mg, mo = np.ones_like(var), np.zeros_like(var), np.zeros_like(var)
    for ids, rows in ids_rows:
        for i, g in zip(*_dedup(ids, rows)):
            ms[i] = ms[i] * decay + g * g * (1 - decay)
            denom = ms[i]
            if centered:
                mg[i] = mg[i] * decay + g * (1 - decay)
                denom = ms[i] - mg[i] ** 2
            mo[i] = mo[i] * mom + lr * g / np.sqrt(denom + eps)
            var[i] -= mo[i]
    return var


def adagrad_ref(var, ids_rows, lr, init):
    acc = np.full_like(var, init)
    for ids, rows in ids_rows:
        for i, g in zip(*_dedup(ids, rows)):
            acc[i] += g * g
            var[i] -= lr * g / np.sqrt(acc[i])
    return var


def adam_ref(var, ids_rows, lr, b1, b2, eps):
    """TF1's AdamOptimizer._apply_sparse: m = b1 m on every row, then (1 - b1) g added at the
    (deduplicated) ids; v likewise; every row steps by lr_t m / (sqrt(v) + eps)."""
    m, v = np.zeros_like(var), np.zeros_like(var)
    for t, (ids, rows) in enumerate(ids_rows, 1):
        uniq, g = _dedup(ids, rows)
        m *= b1
        m[uniq] += (1 - b1) * g
        v *= b2
        v[uniq] += (1 - b2) * g * g
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        var -= lr_t * m / (np.sqrt(v) + eps)
    return var


# --- the rnngraph side ---------------------------------------------------------------------------
def _train(make_opt, init, two_lookups=False, clip=None):
    """loss = sum(gather(emb, ids) * C) (+ a second lookup of the same table at other ids):
    the gradient's rows at the ids are C. Returns the table after each step."""
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(init, name="emb")
        ids = rg.placeholder(rg.int32, [None], name="ids")
        c = rg.placeholder(rg.float64, [None, D], name="c")
        loss = rg.reduce_sum(rg.nn.embedding_lookup(emb, ids) * c)
        if two_lookups:
            ids2 = rg.placeholder(rg.int32, [None], name="ids2")
            c2 = rg.placeholder(rg.float64, [None, D], name="c2")
            loss = loss + rg.reduce_sum(rg.gather(emb, ids2) * c2)
        opt = make_opt()
        if clip is None:
            train = opt.minimize(loss)
        else:
            (gr,), _ = rg.clip_by_global_norm(rg.gradients(loss, [emb]), clip)
            train = opt.apply_gradients([(gr, emb)])
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
    out = []
    coefs, coefs2 = _coefs(0), _coefs(1)
    for k, (i, co) in enumerate(zip(STEPS, coefs)):
        fd = {ids: i, c: co}
        if two_lookups:
            fd.update({ids2: STEPS[(k + 2) % len(STEPS)], c2: coefs2[(k + 2) % len(STEPS)]})
        sess.run(train, fd)
        out.append(sess.run(emb))
    return out


def _init():
    return np.random.RandomState(7).randn(V, D)


def _steps(two_lookups=False):
    """[(ids, gradient rows)] per step, as the reference kernels take them (a second lookup's
    ids and rows appended, as TF1 concatenates the IndexedSlices of two lookups)."""
    out = []
    coefs, coefs2 = _coefs(0), _coefs(1)
    for k, (i, co) in enumerate(zip(STEPS, coefs)):
        if two_lookups:
            j = (k + 2) % len(STEPS)
            i, co = np.concatenate([i, STEPS[j]]), np.concatenate([co, coefs2[j]])
        out.append((i, co))
    return out


def _check(got, ref_fn, two_lookups=False):
    steps = _steps(two_lookups)
    for n in range(1, len(steps) + 1):
        want = ref_fn(_init(), steps[:n])
        np.testing.assert_allclose(got[n - 1], want, rtol=1e-12, atol=1e-12,
                                   err_msg=f"after step {n}")


OPTIMIZERS = {
    "momentum": (lambda: rg.train.MomentumOptimizer(0.1, 0.9),
                 lambda v, s: momentum_ref(v, s, 0.1, 0.9, False)),
    "nesterov": (lambda: rg.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
                 lambda v, s: momentum_ref(v, s, 0.1, 0.9, True)),
    "rmsprop": (lambda: rg.train.RMSPropOptimizer(0.05),
                lambda v, s: rmsprop_ref(v, s, 0.05, 0.9, 0.0, 1e-10, False)),
    "rmsprop_momentum": (lambda: rg.train.RMSPropOptimizer(0.05, decay=0.8, momentum=0.5),
                         lambda v, s: rmsprop_ref(v, s, 0.05, 0.8, 0.5, 1e-10, False)),
    "rmsprop_centered": (lambda: rg.train.RMSPropOptimizer(0.05, momentum=0.5, epsilon=1e-3,
                                                          centered=True),
                         lambda v, s: rmsprop_ref(v, s, 0.05, 0.9, 0.5, 1e-3, True)),
    "adagrad": (lambda: rg.train.AdagradOptimizer(0.2),
                lambda v, s: adagrad_ref(v, s, 0.2, 0.1)),
    "adam": (lambda: rg.train.AdamOptimizer(0.01),
             lambda v, s: adam_ref(v, s, 0.01, 0.9, 0.999, 1e-8)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_embedding_update_follows_tf1_sparse_kernels(name):
    make, ref = OPTIMIZERS[name]
    got = _train(make, _init())
    _check(got, ref)
    if name != "adam":   # (non-lazy Adam moves every row, as in TF1)
        np.testing.assert_array_equal(got[-1][5], _init()[5])    # never looked up
        np.testing.assert_array_equal(got[-1][4], got[3][4])     # looked up in step 4 only


@pytest.mark.parametrize("name", ["momentum", "rmsprop_centered"])
def test_two_lookups_of_one_table_update_the_union_of_their_rows(name):
    make, ref = OPTIMIZERS[name]
    _check(_train(make, _init(), two_lookups=True), ref, two_lookups=True)


def test_the_p26_repro_a_row_not_looked_up_stays():
    """Step 1 looks up row 0, step 2 row 1: row 0 stays in step 2 (it moved 0.9 -> 0.81
    with the dense update)."""
    for make in (lambda: rg.train.MomentumOptimizer(0.1, 0.9),
                 lambda: rg.train.RMSPropOptimizer(0.1, momentum=0.5)):
        g = rg.Graph()
        with g.as_default():
            emb = rg.Variable(np.ones((3, 2), np.float32), name="emb")
            ids = rg.placeholder(rg.int32, [None])
            train = make().minimize(rg.reduce_sum(rg.nn.embedding_lookup(emb, ids)))
            s = rg.Session()
            s.run(rg.global_variables_initializer())
            s.run(train, {ids: [0]})
            r1 = s.run(emb)
            s.run(train, {ids: [1]})
            r2 = s.run(emb)
        np.testing.assert_allclose(r1[0], [0.9, 0.9], rtol=1e-6)
        np.testing.assert_array_equal(r2[0], r1[0])
        assert not np.allclose(r2[1], r1[1])
        np.testing.assert_array_equal(r2[2], np.ones(2))


def test_clip_by_global_norm_keeps_the_update_sparse():
    """TF1's clip_by_global_norm returns an IndexedSlices for one: still the looked-up rows
    only (no repeated id within a step here, where TF1's norm of the slices and the dense
    gradient's norm agree)."""
    steps = [np.array(i, np.int32) for i in ([0, 2], [1], [3, 0])]
    coefs = [np.random.RandomState(k).randn(len(i), D) for k, i in enumerate(steps)]
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(_init(), name="emb")
        ids = rg.placeholder(rg.int32, [None])
        c = rg.placeholder(rg.float64, [None, D])
        loss = rg.reduce_sum(rg.nn.embedding_lookup(emb, ids) * c)
        (gr,), _ = rg.clip_by_global_norm(rg.gradients(loss, [emb]), 0.5)
        train = rg.train.MomentumOptimizer(0.1, 0.9).apply_gradients([(gr, emb)])
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
    scaled = []
    for i, co in zip(steps, coefs):
        sess.run(train, {ids: i, c: co})
        scaled.append((i, co * 0.5 / max(np.sqrt(np.sum(co ** 2)), 0.5)))
    np.testing.assert_allclose(sess.run(emb), momentum_ref(_init(), scaled, 0.1, 0.9, False),
                               rtol=1e-12, atol=1e-12)


def test_a_dense_gradient_keeps_the_dense_update():
    """A table also read densely (tied input and output embeddings): TF1 sums an IndexedSlices
    and a Tensor into a Tensor and applies the dense kernel; so does rnngraph (every row of
    the momentum decays and moves)."""
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(_init(), name="emb")
        ids = rg.placeholder(rg.int32, [None])
        loss = rg.reduce_sum(rg.gather(emb, ids)) + 0.5 * rg.reduce_sum(rg.square(emb))
        train = rg.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
    var, acc = _init(), np.zeros((V, D))
    for i in STEPS[:3]:
        sess.run(train, {ids: i})
        grad = var.copy()
        np.add.at(grad, i, 1.0)
        acc = acc * 0.9 + grad
        var = var - 0.1 * acc
    np.testing.assert_allclose(sess.run(emb), var, rtol=1e-12)
    assert not any(n.op.name == "select_rows" for n in g.nodes)


def test_an_id_out_of_range_raises():
    out = select_rows(np.zeros((3, 2)), np.ones((3, 2)), np.array([0, 3], np.int32))
    with pytest.raises(InvalidArgumentError,
                       match=r"select_rows: indices\[1\] = 3 is not in \[0, 3\)"):
        rg.Session().run(out)
    ok = select_rows(np.zeros((3, 2)), np.ones((3, 2)), [np.array([2, 2]), np.array([[0]])])
    np.testing.assert_array_equal(rg.Session().run(ok), [[0, 0], [1, 1], [0, 0]])


def test_a_sparse_update_saves_and_loads(tmp_path):
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(_init(), name="emb")
        ids = rg.placeholder(rg.int32, [None], name="ids")
        train = rg.train.MomentumOptimizer(0.1, 0.9).minimize(
            rg.reduce_sum(rg.gather(emb, ids)))
    assert any(n.op.name == "select_rows" for n in g.nodes)
    path = rg.save(str(tmp_path / "m.npz"), g, fetches={"train": train})
    g2, _ = rg.load(path)
    assert any(n.op.name == "select_rows" for n in g2.nodes)


# --- under a memory budget -----------------------------------------------------------------------
def _embedding_lstm(make_opt):
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [16, None], name="ids")
        W = rg.get_variable("emb", [120, 16], initializer=rg.random_normal_initializer(seed=0))
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(24), rg.nn.embedding_lookup(W, ids),
                                   dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        train = make_opt().minimize(loss)
        init = rg.global_variables_initializer()
    return g, ids, loss, train, init, W


@pytest.mark.parametrize("name", ["momentum", "rmsprop_centered"])
def test_a_budgeted_run_trains_as_the_unconstrained_one(name):
    """The planner sinks the gather into the loops (sink_gather: the gradient becomes a
    carried accumulator); the sparse update still reads the step's ids and updates their
    rows only; the numbers equal the unconstrained run's to rounding (the accumulator sums
    in another order)."""
    make = {"momentum": lambda: rg.train.MomentumOptimizer(1e-3, 0.9),
            "rmsprop_centered": lambda: rg.train.RMSPropOptimizer(1e-3, momentum=0.5,
                                                                  centered=True)}[name]
    g, ids, loss, train, init, W = _embedding_lstm(make)
    rs = np.random.RandomState(0)
    feeds = [rs.randint(0, 60, size=(16, 80)).astype(np.int32) for _ in range(3)]
    ref = rg.Session(g, device=SimulatedDevice())
    ref.run(init)
    w0 = ref.run(W)
    saved = sum(s.total_bytes for s in ref.memory_plan([loss, train], {ids: feeds[0]}).saved)
    budget = saved // 5   # (the smallest budget a plan fits is about saved // 7 here)
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
    sess.run(init)
    plan = sess.memory_plan([loss, train], {ids: feeds[0]})
    assert plan.fits and "sink_gather" in plan.passes_on, str(plan)
    for f in feeds:
        a = ref.run([loss, train], {ids: f})[0]
        b = sess.run([loss, train], {ids: f})[0]
        np.testing.assert_allclose(b, a, rtol=1e-5)
    wa, wb = ref.run(W), sess.run(W)
    np.testing.assert_allclose(wb, wa, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(wa[60:], w0[60:])   # never looked up: never moved
    np.testing.assert_array_equal(wb[60:], w0[60:])
