"""The predicted peak equals the measured one in the cases the sweeps left over (issue 29, item 5):
the plan is a function of the shapes fed, so every batch of those shapes must measure it.

- an already sorted (or all equal) sequence_length: permute_rows copies whatever the order
  (it returned its input for the identity order, which the plan cannot know);
- a zero-step loop (T = 0 fed): no step runs, so no step's temporaries or new state;
- a broadcast gradient (of a sum) reordered by permute_rows stays a broadcast; a fused
  kernel's exports that are column blocks of its input (a GRU's gates) are counted written out,
  as the compiled kernels write them (NumPy's code slices them: lower by those blocks);
- pack_rows of the active rows takes a buffer of the stack's whole size (the pool's), as the
  plan counts, whatever the lengths;
- a compiled program saved, loaded and rerun in a new Session, with the run's own feed
  (variables fed too) given to the plan.

NumPy returns a 0-d result (max of the lengths, a check's scalar) as a scalar the byte meter
does not see, where the model counts its bytes: a prediction may be that much above
(`SCALARS` bytes), never below."""
import os

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.numba.fused import available as numba_available
from rnngraph.runtime.simulated import SimulatedDevice

SCALARS = 32
NUMBA = numba_available()
B, T, I, H = 4, 30, 3, 16
CELLS = {"lstm": lambda: rg.nn.LSTMCell(H), "gru": lambda: rg.nn.GRUCell(H),
         "basic_rnn": lambda: rg.nn.BasicRNNCell(H)}


def _rnn(cell, lengths, head="square", steps=T):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L") if lengths is not None else None
        out, _ = rg.nn.dynamic_rnn(CELLS[cell](), X, dtype=rg.float32, sequence_length=L)
        if head == "dense":
            loss = rg.reduce_sum(rg.layers.dense(out, 5) ** 2)
        elif head == "sum":        # its gradient is a broadcast of one value
            loss = rg.reduce_sum(out)
        else:
            loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {X: np.random.RandomState(0).randn(B, steps, I).astype(np.float32)}
    if lengths is not None:
        fd[L] = np.asarray(lengths, np.int32)
    return g, fetches, fd


def _check(g, fetches, fd, budget=None, numpy_slack=0, **kw):
    """(plan, measured peak) of a run on a simulated device whose capacity is the budget, with
    NumPy's kernels and with the compiled ones (numba's, where installed): never below, at
    most SCALARS above; NumPy's fused kernel `numpy_slack` bytes more (see the GRU test)."""
    for accelerate in (False, True):
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          accelerate=accelerate, **kw)
        plan = sess.memory_plan(fetches, fd)
        sess.run(fetches, fd)
        measured = sess.last_run_report.peak_bytes
        over = plan.predicted_peak - measured
        slack = SCALARS + (numpy_slack if not accelerate or not NUMBA else 0)
        assert 0 <= over <= slack, (accelerate, plan.predicted_peak, measured)
    return plan, measured


def _budgets(g, fetches, fd, n=4, **kw):
    """n budgets from the smallest one a plan is found for (with options `kw`) to the peak."""
    top = rg.Session(g, device=SimulatedDevice()).memory_plan(fetches, fd).predicted_peak
    floor = rg.Session(g, device=SimulatedDevice(), memory_budget=1, **kw).memory_plan(
        fetches, fd).min_budget
    return [int(b) for b in np.linspace(floor, top, n)]


# --- sorted lengths: the same peak whatever the order of the batch ----------------------------
ORDERS = {"unsorted": [T, 7, 19, 1], "descending": [T, 19, 7, 1], "all_equal": [T] * B,
          "batch_of_one_length": [T, T, T, 2]}


@pytest.mark.parametrize("head", ["square", "dense"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_the_order_of_the_lengths_does_not_change_the_peak(cell, head):
    measured = {}
    for name, lengths in ORDERS.items():
        plan, measured[name] = _check(*_rnn(cell, lengths, head))
    # every order of one shape measures the same peak (the plan's): the sort is always a copy
    assert len(set(measured.values())) == 1, measured


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sorted_lengths_under_budgets(cell):
    g, fetches, fd = _rnn(cell, ORDERS["descending"], "dense")
    for budget in _budgets(g, fetches, fd):
        plan, measured = _check(g, fetches, fd, budget)
        assert plan.fits and measured <= budget


# --- zero-step loops -------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [None, [0] * B], ids=["no_lengths", "lengths_0"])
@pytest.mark.parametrize("head", ["square", "dense"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_a_zero_step_loop_is_predicted_as_measured(cell, head, lengths):
    g, fetches, fd = _rnn(cell, lengths, head, steps=0)
    plan, _ = _check(g, fetches, fd)
    assert plan.loops[0].steps == 0
    # and the values are those of no step: zero gradients (NumPy: nothing to sum)
    out = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    assert out[0] == 0 and all(not np.any(x) for x in out[1:])


# --- broadcast gradients; a GRU's fused gate kernels -----------------------------------------
@pytest.mark.parametrize("lengths", [None, ORDERS["unsorted"]], ids=["full", "lengths"])
@pytest.mark.parametrize("head", ["sum", "dense"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_broadcast_gradients_and_fused_gate_kernels(cell, head, lengths):
    """The gradient of a sum is a broadcast, which permute_rows returns as it is. A GRU's
    fused gate kernels export column blocks of their [B, 2H] input: the compiled kernels write
    them out, NumPy's generated code returns them as slices; the plan counts them written
    (two [B, H] blocks of a forward step, where that step is the peak: the sum's case)."""
    g, fetches, fd = _rnn(cell, lengths, head)
    blocks = 2 * B * H * 4 if cell == "gru" else 0
    _check(g, fetches, fd, numpy_slack=blocks)
    for strategy in ("auto", "recompute"):
        for budget in _budgets(g, fetches, fd, n=3, memory_strategy=strategy):
            plan, measured = _check(g, fetches, fd, budget, numpy_slack=blocks,
                                    memory_strategy=strategy)
            assert plan.fits and measured <= budget


# --- packed rows ----------------------------------------------------------------------------
def _embedded_bidirectional():
    g = rg.Graph()
    rs = np.random.RandomState(0)
    with g.as_default():
        ids = rg.placeholder(rg.int32, [B, None], name="ids")
        L = rg.placeholder(rg.int32, [B], name="L")
        emb = rg.get_variable("emb", [50, I], rg.float32)
        x = rg.nn.embedding_lookup(emb, ids)
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(rg.nn.LSTMCell(H), rg.nn.LSTMCell(H), x,
                                                      dtype=rg.float32, sequence_length=L)
        logits = rg.layers.dense(rg.concat([fw, bw], 2), 9)
        labels = rg.placeholder(rg.int32, [B, None], name="labels")
        loss = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {ids: rs.randint(0, 50, (B, 24)).astype(np.int32), L: np.array([24, 7, 19, 1], np.int32),
          labels: rs.randint(0, 9, (B, 24)).astype(np.int32)}
    return g, fetches, fd


def test_packed_rows_take_the_stacks_whole_size_under_every_budget():
    g, fetches, fd = _embedded_bidirectional()
    packed = 0
    for budget in _budgets(g, fetches, fd, n=6):
        plan, measured = _check(g, fetches, fd, budget)
        assert plan.fits and measured <= budget
        sess = rg.Session(g, device=SimulatedDevice(), memory_budget=budget)
        sess.run(fetches, fd)
        packed += any(n.op.name == "pack_rows" for p in sess.programs() for n in _walk(p.graph))
    assert packed


def _walk(graph):
    for node in graph.nodes:
        yield node
        for body in node.op.subgraphs():
            yield from _walk(body)


@pytest.mark.parametrize("gather", [False, True])
def test_pack_rows_returns_a_prefix_of_a_whole_size_buffer(gather):
    """The packed active rows (the kernel of a tracked program, as on the simulated device)
    are a prefix of a [T * B, N] buffer, and they are the active rows step after step."""
    from types import SimpleNamespace
    from rnngraph.backends.numpy.kernels import pack_rows
    from rnngraph.ops.steps import PackRows
    steps, batch, n = 5, 4, 3
    stack = np.arange(steps * batch * n, dtype=np.float32).reshape(steps, batch, n)
    lengths = np.array([5, 3, 3, 1])                 # sorted longest first
    rows = np.array([(lengths > t).sum() for t in range(steps)], np.int32)
    perm = np.array([2, 0, 3, 1], np.int32)
    program = SimpleNamespace(tracked=True, ctx=SimpleNamespace(xp=np, plan=None))
    op = PackRows(gather=gather)
    run = pack_rows(op, None, program)
    got = run(stack, rows, perm) if gather else run(stack, rows)
    sorted_stack = stack[:, perm] if gather else stack
    want = np.concatenate([sorted_stack[t, :rows[t]] for t in range(steps)])
    np.testing.assert_array_equal(got, want)
    assert got.base is not None and got.base.shape == (steps * batch, n)


# --- a compiled program saved, loaded and rerun ---------------------------------------------
@pytest.mark.parametrize("budgeted", [False, True], ids=["unplanned", "floor"])
@pytest.mark.parametrize("passes", [False, True])
@pytest.mark.parametrize("kind", ["static_lstm", "dynamic_gru_lengths"])
def test_a_saved_compiled_program_rerun_is_never_predicted_low(kind, passes, budgeted,
                                                                tmp_path):
    """The program a session compiled (fused kernels, chunks) saved with rg.save, read back
    and run in a new Session whose feed holds the variables' values as well: the plan given
    that feed (arrays or shapes) predicts the run's peak. Given only the placeholders' shapes
    it plans another run, one that reads the variables from the session (5-7% lower here)."""
    g = rg.Graph()
    rs = np.random.RandomState(0)
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, 6 if kind == "static_lstm" else None, I], name="X")
        fd = {X: rs.randn(B, 6 if kind == "static_lstm" else 20, I).astype(np.float32)}
        if kind == "static_lstm":
            outs, _ = rg.nn.static_rnn(rg.nn.LSTMCell(8), rg.unstack(X, axis=1),
                                       dtype=rg.float32)
            y = rg.stack(outs)
        else:
            L = rg.placeholder(rg.int32, [B], name="L")
            fd[L] = np.array([20, 3, 11, 20], np.int32)
            y, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(8), X, dtype=rg.float32, sequence_length=L)
        loss = rg.reduce_sum(y ** 2)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    first = rg.Session(g, device=SimulatedDevice())
    want = first.run(fetches, fd)
    prog = max(first.programs(), key=lambda p: len(p.nodes))
    named = {**{f"fed_{i}": v for i, v in enumerate(prog.inputs)},
             **{f"out_{i}": v for i, v in enumerate(prog.outputs)}}
    saved = rg.io.read(rg.save(os.path.join(tmp_path, "prog.rg"), graph=prog.graph,
                               fetches=named))
    outs = [saved.fetches[f"out_{i}"] for i in range(len(prog.outputs))]
    feed = {saved.fetches[f"fed_{i}"]: next(a for k, a in fd.items() if k.name == v.name)
            for i, v in enumerate(prog.inputs)}
    store = {v.node.name: first.run(v) for v in g.collections["variables"]}
    feed.update({v: store[v.node.name] for v in saved.graph.collections["variables"]})
    budget = None
    if budgeted:   # the smallest budget a plan is found for
        budget = rg.Session(saved.graph, device=SimulatedDevice(), passes=passes,
                            memory_budget=1).memory_plan(outs, feed).min_budget
    for given in (feed, {k: np.shape(a) for k, a in feed.items()}):
        sess = rg.Session(saved.graph, device=SimulatedDevice(capacity=budget),
                          memory_budget=budget, passes=passes)
        plan = sess.memory_plan(outs, given)
        got = sess.run(outs, feed)
        measured = sess.last_run_report.peak_bytes
        assert 0 <= plan.predicted_peak - measured <= SCALARS, (plan.predicted_peak, measured)
        if budget is not None:
            assert plan.fits and sess.last_run_report.predicted_peak == plan.predicted_peak
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
