"""tf.global_norm / tf.clip_by_global_norm of an embedding's gradient, as TF1 measures it.

TF1's gradient of a gather is an IndexedSlices: one row per id looked up (repeated ids not
summed), and global_norm measures those rows; several lookups of one table are aggregated by
concatenating their rows, while an IndexedSlices summed with a dense Tensor (a table also read
densely) becomes a dense Tensor. rnngraph's gather gradient is the dense sum (gather_grad); the
norm must still be TF1's, or clipping scales every gradient of a model with repeated ids
(every language model) differently from TF1. References here are NumPy sums written out."""
import numpy as np
import pytest

import rnngraph as rg

V, D = 6, 3


def _table():
    return np.random.RandomState(0).randn(V, D)


def _run(build, feed_ids, clip=None):
    """(norm, clipped gradients) of the gradients `build(emb, ids...)` makes: (loss, extra
    variables)."""
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(_table(), name="emb")
        ids = [rg.placeholder(rg.int32, [None], name=f"ids{k}") for k in range(len(feed_ids))]
        loss, others = build(emb, *ids)
        grads = rg.gradients(loss, [emb] + others)
        if clip is None:
            norm = rg.global_norm(grads)
            clipped = []
        else:
            clipped, norm = rg.clip_by_global_norm(grads, clip)
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
        fd = dict(zip(ids, [np.asarray(i, np.int32) for i in feed_ids]))
        return sess.run(norm, fd), sess.run(clipped, fd) if clipped else []


C = np.random.RandomState(1).randn(8, D)


@pytest.mark.parametrize("ids", [[0, 0], [1, 4, 1, 1], [2, 3], [5]])
def test_a_lookups_norm_is_the_norm_of_its_rows(ids):
    c = C[:len(ids)]
    norm, _ = _run(lambda emb, i: (rg.reduce_sum(rg.gather(emb, i) * c), []), [ids])
    # TF1: the IndexedSlices' values are the rows c, one per id, repeated ids kept apart
    np.testing.assert_allclose(norm, np.sqrt(np.sum(c ** 2)), rtol=1e-13)
    dense = np.zeros((V, D))
    np.add.at(dense, ids, c)
    if len(set(ids)) < len(ids):   # (the dense sum's norm, what was measured before, differs)
        assert not np.isclose(norm, np.sqrt(np.sum(dense ** 2)))


def test_two_lookups_of_one_table_concatenate_their_rows():
    c1, c2 = C[:3], C[3:5]

    def build(emb, i, j):
        return rg.reduce_sum(rg.gather(emb, i) * c1) + \
            rg.reduce_sum(rg.nn.embedding_lookup(emb, j) * c2), []
    norm, _ = _run(build, [[0, 2, 0], [2, 2]])
    np.testing.assert_allclose(norm, np.sqrt(np.sum(c1 ** 2) + np.sum(c2 ** 2)), rtol=1e-13)


def test_a_table_also_read_densely_is_measured_dense():
    """TF1 sums an IndexedSlices and a Tensor into a Tensor: the norm of the dense sum."""
    c = C[:3]

    def build(emb, i):
        return rg.reduce_sum(rg.gather(emb, i) * c) + 0.5 * rg.reduce_sum(rg.square(emb)), []
    norm, _ = _run(build, [[1, 1, 3]])
    dense = _table().copy()
    np.add.at(dense, [1, 1, 3], c)
    np.testing.assert_allclose(norm, np.sqrt(np.sum(dense ** 2)), rtol=1e-13)


def test_clipping_scales_by_tf1s_norm_with_the_other_gradients():
    """A language model's parts: an embedding looked up at repeated ids and a dense weight.
    The factor is clip / max(TF1's global norm, clip), and the clipped embedding gradient is the
    dense sum of the scaled rows (what TF1's sparse update applies)."""
    ids = [3, 3, 3, 0]
    c = C[:4]
    W0 = np.random.RandomState(2).randn(D, 2)

    def build(emb, i):
        w = rg.Variable(W0, name="w")
        h = rg.gather(emb, i) * c
        return rg.reduce_sum(rg.square(rg.matmul(h, w))), [w]
    norm, (g_emb, g_w) = _run(build, [ids], clip=0.7)
    e = _table()[ids]
    h = e * c
    y = h @ W0
    dy = 2 * y
    rows = (dy @ W0.T) * c                    # d loss / d gathered rows, one per id
    gw = h.T @ dy
    want = np.sqrt(np.sum(rows ** 2) + np.sum(gw ** 2))
    np.testing.assert_allclose(norm, want, rtol=1e-12)
    scale = 0.7 / max(want, 0.7)
    dense = np.zeros((V, D))
    np.add.at(dense, ids, rows)
    np.testing.assert_allclose(g_emb, dense * scale, rtol=1e-12)
    np.testing.assert_allclose(g_w, gw * scale, rtol=1e-12)


def test_the_norm_of_clipped_slices_is_clip():
    """clip_by_global_norm's result, measured again, has TF1's norm min(norm, clip): the scalar
    factor is seen through."""
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(_table(), name="emb")
        i = rg.placeholder(rg.int32, [None])
        loss = rg.reduce_sum(rg.gather(emb, i) * C[:4])
        clipped, norm = rg.clip_by_global_norm(rg.gradients(loss, [emb]), 0.5)
        again = rg.global_norm(clipped)
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
        n, a = sess.run([norm, again], {i: np.array([2, 2, 2, 1], np.int32)})
    np.testing.assert_allclose(n, np.sqrt(np.sum(C[:4] ** 2)), rtol=1e-13)
    np.testing.assert_allclose(a, min(n, 0.5), rtol=1e-12)


def test_an_embedding_lstm_clips_by_the_rows_of_its_input_gradient():
    """The PTB model's shape: embedding_lookup at repeated ids feeding dynamic_rnn; the norm's
    embedding part is the sum of squares of the loop's input gradient rows (one per id), which
    the test reads from the gradient with respect to the looked-up tensor itself."""
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(_table(), name="emb")
        ids = rg.placeholder(rg.int32, [2, 5])
        x = rg.nn.embedding_lookup(emb, ids)
        y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(4), x, dtype=rg.float64)
        loss = rg.reduce_sum(y * y)
        others = [v for v in rg.trainable_variables() if v is not emb]
        grads = rg.gradients(loss, [emb] + others)
        _, norm = rg.clip_by_global_norm(grads, 1e-3)
        dx = rg.gradients(loss, [x])[0]
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
        fd = {ids: np.array([[0, 1, 1, 1, 5], [5, 5, 0, 2, 2]], np.int32)}
        n, gx, go = sess.run([norm, dx, grads[1:]], fd)
    want = np.sqrt(np.sum(gx ** 2) + sum(np.sum(o ** 2) for o in go))
    np.testing.assert_allclose(n, want, rtol=1e-12)


def _clipped_lstm(lengths, bidirectional=False, T=7, B=3, H=4, E=3, seed=0):
    g = rg.Graph()
    with g.as_default():
        emb = rg.Variable(np.random.RandomState(seed).randn(V, E).astype(np.float32),
                          name="emb")
        ids = rg.placeholder(rg.int32, [B, None], name="ids")
        L = rg.placeholder(rg.int32, [B], name="L") if lengths else None
        x = rg.nn.embedding_lookup(emb, ids)
        if bidirectional:
            (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(
                rg.nn.LSTMCell(H), rg.nn.LSTMCell(H), x, sequence_length=L, dtype=rg.float32)
            loss = rg.reduce_sum(fw * fw) + rg.reduce_sum(bw * bw)
        else:
            y, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), x, sequence_length=L,
                                     dtype=rg.float32)
            loss = rg.reduce_sum(y * y)
        grads = rg.gradients(loss, rg.trainable_variables())
        clipped, norm = rg.clip_by_global_norm(grads, 0.1)
        dx = rg.gradients(loss, [x])[0]
    rs = np.random.RandomState(seed + 1)
    fd = {ids: rs.randint(0, V, size=(B, T)).astype(np.int32)}
    if lengths:
        fd[L] = np.array([T, 0, 3][:B], np.int32)
    return g, [norm] + clipped, dx, grads, fd


def _check(got, want, k):
    """The planned run's `got` (norm, clipped gradients) against the unplanned `want` (the
    same, then the input gradient and the unclipped gradients): the norm TF1's, from the input
    gradient's rows and the other gradients; every value the unplanned one to rounding."""
    n, gx, gs = want[0], want[k], want[k + 1:]
    np.testing.assert_allclose(n, np.sqrt(np.sum(gx.astype(np.float64) ** 2) +
                                          sum(np.sum(o.astype(np.float64) ** 2)
                                              for o in gs[1:])), rtol=1e-5)
    for a, b in zip(got, want[:k]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6 * np.abs(b).max())


def _planned(g, fetches, fd):
    """A session under the smallest budget the planner finds (its floor), and the plan."""
    free = rg.Session(g, device=rg.SimulatedDevice(), memory_budget=1)
    floor = free.memory_plan(fetches, fd).min_budget
    sess = rg.Session(g, device=rg.SimulatedDevice(), memory_budget=floor)
    return sess, sess.memory_plan(fetches, fd), floor


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_sink_gather_sums_the_norms_rows_in_the_backward_loop(lengths):
    """At the floor of a memory plan, sink_gather adds the embedding's gradient rows into the
    table's gradient per step (the [T, batch, dim] input-gradient stack goes); the norm that
    reads those rows is summed per step in the same loop, so clipping does not keep the stack
    (before, the floor rose by it: 695,812 B unclipped against 1,158,656 B clipped for T=200,
    B=16, H=64, E=32). Values: those of the unplanned run, to float32 rounding (sums in another
    order), and TF1's norm from the input gradient's rows."""
    g, fetches, dx, grads, fd = _clipped_lstm(lengths, T=40)
    want = rg.Session(g).run(fetches + [dx] + grads, fd)
    sess, plan, floor = _planned(g, fetches, fd)
    assert plan.passes.get("sink_gather") is True
    got = sess.run(fetches, fd)
    assert sess.last_run_report.peak_bytes <= floor
    _check(got, want, len(fetches))
    # the floor is the unclipped model's, but for the norm's scalar and its few bytes
    g0 = rg.Graph()
    with g0.as_default():
        e0 = rg.Variable(np.zeros((V, 3), np.float32), name="emb")
        i0 = rg.placeholder(rg.int32, [3, None], name="ids")
        L0 = rg.placeholder(rg.int32, [3], name="L") if lengths else None
        y0, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(4), rg.nn.embedding_lookup(e0, i0),
                                  sequence_length=L0, dtype=rg.float32)
        l0 = rg.reduce_sum(y0 * y0)
        f0 = [l0] + rg.gradients(l0, rg.trainable_variables())
    fd0 = {i0: fd[next(k for k in fd if k.node.name == "ids")]}
    if lengths:
        fd0[L0] = fd[next(k for k in fd if k.node.name == "L")]
    unclipped = rg.Session(g0, device=rg.SimulatedDevice(), memory_budget=1).memory_plan(
        f0, fd0).min_budget
    stack = 40 * 3 * 3 * 4   # ([T, batch, dim] float32)
    assert floor < unclipped + stack // 2, (floor, unclipped)


def test_the_norm_is_a_carried_sum_of_the_backward_loop():
    """The planned program: no gather_grad, no square of the whole stack; the backward loop
    carries the table's gradient and the norm's part."""
    g, fetches, dx, grads, fd = _clipped_lstm(False, T=40)
    sess, plan, _ = _planned(g, fetches, fd)
    sess.run(fetches, fd)
    graph = sess.programs()[-1].graph   # (the program of the last run: the planned step)
    assert any(n.op.name == "loop" for n in graph.nodes)
    assert not any(n.op.name == "gather_grad" for n in graph.nodes)
    back = [n for n in graph.nodes if n.op.name == "loop" and n.op.reverse]
    assert len(back) == 1
    carried = [p.name for p in back[0].op.body.params["carried"]]
    assert any("grad_norm_acc" in c for c in carried) and \
        any("grad_acc_embedding" in c for c in carried), carried


def test_a_bidirectional_norm_stays_whole_and_right():
    """Two directions add into one input gradient before TF1 measures its rows: no loop sees
    the sum per step, so the pass leaves the gradient whole (the values are still right)."""
    g, fetches, dx, grads, fd = _clipped_lstm(True, bidirectional=True, T=20)
    want = rg.Session(g).run(fetches + [dx] + grads, fd)
    sess, plan, floor = _planned(g, fetches, fd)
    got = sess.run(fetches, fd)
    _check(got, want, len(fetches))
