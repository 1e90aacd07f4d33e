"""sink_gather where more than one loop reads an embedding lookup (issue 29): a
bidirectional_dynamic_rnn over an embedding (the backward direction reads the lookup through
reverse_sequence), one lookup read by two loops (an encoder and a decoder), two lookups of one
embedding at different ids (seq2seq), and one loop reading a lookup twice. Each loop gathers
its step's rows in its body; the embedding's gradient, a sum over those loops, is one
[vocab, dim] buffer that each backward loop adds its rows into in place, the later loop
starting from the earlier one's sum. Gradients against NumPy, finite differences and the
unconstrained run, the IR (printed, verified, saved and run again), and plans under a budget
(measured peak within the budget, as predicted)."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _close, _loops, _run_saved
from test_memory_embedding import _numpy_grads, _sunk
from test_memory_streamed import run_planned

# the pass alone (no streaming: one compiled program, the same passes with and without it)
ONLY = {"sink_gather": True, "hoist_sequence": False, "sink_accumulators": False,
        "sink_outputs": False}
WITHOUT = dict(ONLY, sink_gather=False)


def _bidir(T, B, H, V, E, lengths=False, time_major=False, head="outputs", seed=0,
           dtype=rg.float32, fed_embedding=False):
    """A bidirectional LSTM over an embedding lookup. head "outputs": loss sum(fw**2) +
    sum(bw**2) over both output sequences; "state": a dense layer on both final h (a
    sentence classifier: no output sequence is used)."""
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [None, B] if time_major else [B, None], name="ids")
        L = rg.placeholder(rg.int32, [B], name="L") if lengths else None
        if fed_embedding:
            W = rg.placeholder(dtype, [V, E], name="emb")
        else:
            W = rg.get_variable("emb", [V, E], dtype,
                                initializer=rg.random_normal_initializer(seed=seed))
        x = rg.nn.embedding_lookup(W, ids)
        (fw, bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(H), rg.nn.LSTMCell(H), x, sequence_length=L, dtype=dtype,
            time_major=time_major)
        if head == "outputs":
            loss = rg.reduce_sum(fw * fw) + rg.reduce_sum(bw * bw)
        else:
            logits = rg.layers.dense(rg.concat([s_fw.h, s_bw.h], 1), 3)
            loss = rg.reduce_sum(logits * logits)
        wrt = [W] if fed_embedding else rg.global_variables()
        fetches = [loss] + rg.gradients(loss, wrt)
    rs = np.random.RandomState(seed)
    fd = {ids: rs.randint(0, V, size=(T, B) if time_major else (B, T)).astype(np.int32)}
    if lengths:
        fd[L] = rs.randint(T // 3, T + 1, size=B).astype(np.int32)
        fd[L][1] = T
        fd[L][2] = 1
    return g, fetches, fd


def _two_loops(kind, T, B, H, V, E, lengths=False, time_major=False, seed=0):
    """An encoder LSTM over a lookup and a decoder LSTM starting from its final state, over
    the same lookup value ("shared_value") or a lookup of the same embedding at other ids, of
    another length ("seq2seq")."""
    g = rg.Graph()
    with g.as_default():
        lead = [None, B] if time_major else [B, None]
        enc = rg.placeholder(rg.int32, lead, name="enc")
        dec = rg.placeholder(rg.int32, lead, name="dec") if kind == "seq2seq" else None
        L = rg.placeholder(rg.int32, [B], name="L") if lengths else None
        W = rg.get_variable("emb", [V, E], initializer=rg.random_normal_initializer(seed=seed))
        x = rg.nn.embedding_lookup(W, enc)
        with rg.variable_scope("encoder"):
            o1, s1 = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), x, sequence_length=L,
                                       dtype=rg.float32, time_major=time_major)
        y = x if dec is None else rg.nn.embedding_lookup(W, dec)
        with rg.variable_scope("decoder"):
            o2, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), y, initial_state=s1,
                                      time_major=time_major)
        loss = rg.reduce_sum(o1 * o1) * 0.5 + rg.reduce_sum(o2 * o2)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(seed)
    shape = (T, B) if time_major else (B, T)
    fd = {enc: rs.randint(0, V, size=shape).astype(np.int32)}
    if dec is not None:
        fd[dec] = rs.randint(0, V, size=(T + 3, B) if time_major else (B, T + 3)
                             ).astype(np.int32)
    if lengths:
        fd[L] = rs.randint(1, T + 1, size=B).astype(np.int32)
        fd[L][0] = T
    return g, fetches, fd


def numeric_grad(sess, loss, fd, key, value, eps=1e-6):
    """Central differences of the scalar `loss` by every entry of the array fed to `key`."""
    num = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        for sign in (1, -1):
            t = value.copy()
            t[i] += sign * eps
            num[i] += sign * sess.run(loss, {**fd, key: t}) / (2 * eps)
    return num


def _fed(fd, name):
    return next(a for k, a in fd.items() if k.node.name == name)


def _program(sess):
    """The session's one compiled program that runs loops."""
    (prog,) = [p for p in sess.programs() if _loops(p.graph)]
    return prog


def _backward_loops(graph):
    return [n for n in _loops(graph) if n.op.reverse]


def _accumulators(graph) -> list:
    """(backward loop, the outer value its embedding accumulator starts from), graph order."""
    out = []
    for loop in _backward_loops(graph):
        body = loop.op.body
        carried = loop.op.in_ports().split(loop.inputs)["carried"]
        for p, init in zip(body.params["carried"], carried):
            if any(n.op.name == "scatter_add_rows" and n.inputs[0] is p for n in body.nodes):
                out.append((loop, init))
    return out


def _check_joined(graph, loops: int) -> None:
    """`loops` backward loops add into one embedding accumulator: the first starts from
    accumulator_zeros, each next one from the one before's result; the scatters are in place,
    and nothing outside the loops gathers, scatters or adds [V, E] gradients."""
    accs = _accumulators(graph)
    assert len(accs) == loops, accs
    assert accs[0][1].node.op.name == "accumulator_zeros"
    for (before, _), (loop, init) in zip(accs, accs[1:]):
        assert init.node is before, (init.node.name, before.name)
    assert [n.op.name for n in graph.nodes].count("accumulator_zeros") == 1
    assert all(n.op.in_place for n in _sunk(graph)[1])
    assert not _sunk(graph)[2]
    V, E = accs[0][1].type.shape
    assert not [n for n in graph.nodes if n.op.name in ("add", "add_n")
                and n.outputs[0].type.shape == (V, E)]
    rg.verify(graph)


def _reversed_within(ids, lengths):
    """Each row of [B, T] ids reversed within its length (tf.reverse_sequence), in NumPy."""
    out = ids.copy()
    for r, n in enumerate(lengths):
        out[r, :n] = ids[r, :n][::-1]
    return out


# --- a bidirectional RNN over an embedding ----------------------------------------------------
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_bidirectional_gradients_are_the_ones_numpy_computes(lengths, time_major):
    """Both directions gather per step (the backward one at the ids reversed within their
    lengths) and add their rows into one embedding accumulator; against NumPy: an LSTM over
    the ids plus one over the reversed ids (the reversed outputs have the same squares)."""
    T, B, H, V, E = 11, 4, 5, 7, 3
    g, fetches, fd = _bidir(T, B, H, V, E, lengths, time_major)
    sess = rg.Session(g, passes=ONLY)
    loss, demb, dWf, dbf, dWb, dbb = sess.run(fetches, fd)
    graph = _program(sess).graph
    gathers, sums, _ = _sunk(graph)
    assert len(gathers) == 4 and len(sums) == 2
    _check_joined(graph, 2)
    _check_numpy(sess, g, fd, [loss, demb, dWf, dbf, dWb, dbb], lengths, time_major)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_bidirectional_changes_only_the_embeddings_gradient_sum_order(lengths, time_major):
    """Against the same passes without sink_gather: the other gradients bit for bit, the
    embedding's to rounding; against the unconstrained run to 1e-6 relative."""
    g, fetches, fd = _bidir(23, 5, 6, 9, 4, lengths, time_major)
    sunk = rg.Session(g, passes=ONLY).run(fetches, fd)
    lean = rg.Session(g, passes=WITHOUT).run(fetches, fd)
    free = rg.Session(g).run(fetches, fd)
    for i, (a, b) in enumerate(zip(sunk, lean)):
        if i == 1:
            _close([a], [b])
        else:
            assert np.array_equal(a, b), i
    _close(sunk, free)

def _check_numpy(sess, g, fd, got, lengths, time_major=False):
    """The bidirectional model's loss and gradients (embedding, fw kernel and bias, bw kernel
    and bias) against two NumPy LSTMs, the second over the ids reversed within their lengths."""
    emb, Wf, bf, Wb, bb = (sess.run(v).astype(np.float64) for v in g.collections["variables"])
    ids = _fed(fd, "ids")
    ids = ids.T if time_major else ids
    B, T = ids.shape
    lens = _fed(fd, "L") if lengths else np.full(B, T)
    f = _numpy_grads(ids, emb, Wf, bf, lens if lengths else None)
    b = _numpy_grads(_reversed_within(ids, lens), emb, Wb, bb, lens if lengths else None)
    _close(got, [f[0] + b[0], f[1] + b[1], f[2], f[3], b[2], b[3]], rtol=2e-5)



def test_bidirectional_embedding_gradient_matches_finite_differences():
    """float64, the embedding fed: d loss / d emb of the program the pass made against
    central differences of its loss, every entry."""
    T, B, H, V, E = 6, 3, 3, 5, 2
    g, fetches, fd = _bidir(T, B, H, V, E, lengths=True, dtype=rg.float64,
                            fed_embedding=True)
    emb = next(k for k in g.nodes if k.name == "emb").outputs[0]
    table = np.random.RandomState(4).randn(V, E)
    sess = rg.Session(g, passes=ONLY)
    loss, demb = sess.run(fetches, {**fd, emb: table})
    _check_joined(_program(sess).graph, 2)
    np.testing.assert_allclose(demb, numeric_grad(sess, fetches[0], fd, emb, table),
                               rtol=1e-6, atol=1e-8)


def test_the_printed_ir_reverses_the_ids_and_chains_the_accumulators():
    g, fetches, fd = _bidir(9, 3, 4, 11, 5, lengths=True)
    sess = rg.Session(g, passes={**ONLY, "fuse": False})
    sess.run(fetches, fd)
    graph = _program(sess).graph
    text = str(graph)
    # the backward direction's ids: reversed within the lengths, on the int ids
    (rev,) = [n for n in graph.nodes if n.op.name == "reverse_sequence"
              and n.outputs[0].dtype == np.int32]
    assert rev.name.endswith("/sink_gather") and rev.inputs[0].node.name == "ids"
    # every loop gathers its step's rows of the embedding (an invariant) at int ids
    for loop in _loops(graph):
        body = loop.op.body
        (ga,) = [n for n in body.nodes if n.op.name == "gather"]
        assert ga.inputs[0] in body.params["invariant"] and ga.inputs[1].dtype == np.int32
    # the second backward loop starts its accumulator from the first one's result
    (_, first), (second, start) = _accumulators(graph)
    assert start.node.op.name == "loop" and start.node is not second
    assert "scatter_add_rows[in_place=True]" in text
    assert not any(b.op.body.results["output"] for b in _backward_loops(graph))
    _check_joined(graph, 2)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_a_saved_bidirectional_program_runs_again(tmp_path, lengths):
    """Saved and read back (io), verified, and run: with no passes, the same values bit for
    bit; with every default pass (cse, fold_constants), the same values to rounding."""
    g, fetches, fd = _bidir(8, 3, 4, 6, 3, lengths)
    sess = rg.Session(g, passes=ONLY)
    got = sess.run(fetches, fd)
    prog = _program(sess)
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    saved = rg.io.read(rg.io.save(str(tmp_path / "bidir.rg"), graph=prog.graph,
                                  fetches={**fed, **outs}))
    rg.verify(saved.graph)
    _check_joined(saved.graph, 2)
    again = _run_saved(saved, prog, sess, g, fd)
    for a, b in zip(again, got):
        assert np.array_equal(a, b)
    optimized = rg.Session(saved.graph)
    values = {saved.fetches[f"fed_{i}"]: _fed(fd, v.node.name) for i, v in enumerate(prog.inputs)}
    store = {v.node.name: sess.run(v) for v in g.collections["variables"]}
    values.update({v: store[v.node.name] for v in saved.graph.collections["variables"]})
    for _ in range(2):   # (twice: the in-place buffer is made anew per run)
        _close(optimized.run([saved.fetches[f"out_{i}"] for i in range(len(outs))], values),
               got)


# --- two loops reading lookups of one embedding ----------------------------------------------
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
@pytest.mark.parametrize("kind", ["shared_value", "seq2seq"])
def test_two_loops_over_one_embedding_share_one_accumulator(kind, lengths, time_major):
    """An encoder and a decoder over one lookup value, or over two lookups of one embedding at
    other ids: every loop gathers per step, and the decoder's backward loop (which runs
    first) starts the accumulator the encoder's adds to. The other gradients bit for bit
    against the same passes without sink_gather, the embedding's to rounding."""
    g, fetches, fd = _two_loops(kind, 10, 3, 4, 8, 3, lengths, time_major)
    sess = rg.Session(g, passes=ONLY)
    sunk = sess.run(fetches, fd)
    graph = _program(sess).graph
    gathers, sums, _ = _sunk(graph)
    assert len(gathers) == 4 and len(sums) == 2
    _check_joined(graph, 2)
    (first, _), (second, _) = _accumulators(graph)
    assert "decoder" in first.name and "encoder" in second.name
    lean = rg.Session(g, passes=WITHOUT).run(fetches, fd)
    for i, (a, b) in enumerate(zip(sunk, lean)):
        if i == 1:
            _close([a], [b])
        else:
            assert np.array_equal(a, b), i
    _close(sunk, rg.Session(g).run(fetches, fd))


class _PairCell(rg.nn.GRUCell):
    """A GRU reading a pair of inputs (a + 2 b)."""

    def call(self, inputs, state):
        a, b = inputs
        return super().call(a + b * 2.0, state)


def test_a_loop_reading_one_lookup_twice_adds_both_gradients_into_one_accumulator():
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [3, None], name="ids")
        W = rg.get_variable("emb", [7, 2], initializer=rg.random_normal_initializer(seed=0))
        x = rg.nn.embedding_lookup(W, ids)
        out, _ = rg.nn.dynamic_rnn(_PairCell(4), (x, x), dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {ids: np.random.RandomState(0).randint(0, 7, (3, 6)).astype(np.int32)}
    sess = rg.Session(g, passes=ONLY)
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    (bwd,) = _backward_loops(graph)
    s = [n for n in bwd.op.body.nodes if n.op.name == "scatter_add_rows"]
    assert len(s) == 2 and s[1].inputs[0] is s[0].outputs[0]   # one accumulator, in turn
    assert s[0].inputs[0] in bwd.op.body.params["carried"] and not _sunk(graph)[2]
    _close(got, rg.Session(g).run(fetches, fd))


def test_accumulators_not_summed_together_stay_apart_after_a_save_and_every_pass(tmp_path):
    """Two losses over two loops reading one lookup, each loss's embedding gradient fetched:
    two accumulators that no sum joins, each from its own accumulator_zeros of the same
    embedding; saved and rerun with the default passes (cse), they stay two buffers."""
    T, B, H, V, E = 6, 3, 4, 5, 3
    rs = np.random.RandomState(0)
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [B, None], name="ids")
        W = rg.get_variable("W", [V, E], initializer=rg.random_normal_initializer(seed=1))
        x = rg.nn.embedding_lookup(W, ids)
        losses = []
        for i in range(2):
            with rg.variable_scope(f"rnn{i}"):
                out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), x, dtype=rg.float32)
            losses.append(rg.reduce_sum(out * out) * (i + 1.0))
        fetches = [rg.gradients(loss, [W])[0] for loss in losses]
    fd = {ids: rs.randint(0, V, size=(B, T)).astype(np.int32)}
    want = rg.Session(g).run(fetches, fd)
    sess = rg.Session(g, passes=ONLY)
    _close(sess.run(fetches, fd), want)
    prog = _program(sess)
    starts = [init for _, init in _accumulators(prog.graph)]
    assert len(starts) == 2 and all(v.node.op.name == "accumulator_zeros" for v in starts)
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    saved = rg.io.read(rg.io.save(str(tmp_path / "apart.rg"), graph=prog.graph,
                                  fetches={**fed, **outs}))
    values = {saved.fetches[f"fed_{i}"]: fd[ids] for i in range(len(prog.inputs))}
    store = {v.node.name: sess.run(v) for v in g.collections["variables"]}
    values.update({v: store[v.node.name] for v in saved.graph.collections["variables"]})
    again = rg.Session(saved.graph)
    for _ in range(2):
        _close(again.run([saved.fetches[f"out_{i}"] for i in range(len(outs))], values), want,
               rtol=1e-5)


# --- under a budget -------------------------------------------------------------------------------
def _saved_bytes(g, fetches, fd):
    return sum(s.total_bytes for s in rg.Session(g, device=SimulatedDevice())
               .memory_plan(fetches, fd).saved)


def _fits_only_with_the_pass(g, fetches, fd, budget, strategy="auto"):
    """The plan at `budget` without sink_gather does not fit; the planner's own does, names
    the pass, and runs within the budget as predicted (tests/test_memory_streamed.py's
    run_planned); returns its values and plan."""
    off = rg.Session(g, device=SimulatedDevice(), memory_budget=budget,
                     passes={"sink_gather": False}, memory_strategy=strategy)
    assert not off.memory_plan(fetches, fd).fits
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, fd)
    assert plan.fits and "sink_gather" in plan.passes_on, str(plan)
    got = run_planned(sess, plan, budget, "offload" if strategy == "auto" else strategy, g,
                      fetches, fd)
    peak = sess.last_run_report.peak_bytes
    assert peak <= budget and plan.predicted_peak - peak <= 256
    return got, plan


@pytest.mark.parametrize("time_major,lengths", [(False, False), (False, True), (True, True)],
                         ids=["batch_major", "batch_major-sequence_length",
                              "time_major-sequence_length"])
def test_a_bidirectional_classifier_fits_a_tenth_only_with_the_pass(lengths, time_major):
    """T=200, B=32, H=64, V=500, E=32, a dense layer on both final states: the [B, T, E]
    lookup, its reversal and their [T, B, E] gradient stacks are what the plan without the
    pass cannot move."""
    g, fetches, fd = _bidir(200, 32, 64, 500, 32, lengths, time_major, head="state")
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    got, _ = _fits_only_with_the_pass(g, fetches, fd, _saved_bytes(g, fetches, fd) // 10)
    _close(got, ref)


def test_bidirectional_outputs_lower_the_floor():
    """Both output sequences in the loss (stream_outputs streams both directions, the backward
    one through its reverse_sequences: tests/test_memory_stream_bidir.py): the smallest budget
    found is lower with the pass, and a budget between the two fits only with it."""
    g, fetches, fd = _bidir(100, 16, 32, 300, 32, lengths=True)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    floors = []
    for passes in ({"sink_gather": False}, True):
        plan = rg.Session(g, device=SimulatedDevice(), memory_budget=1,
                          passes=passes).memory_plan(fetches, fd)
        floors.append(plan.min_budget)
    assert floors[1] < floors[0], floors
    got, _ = _fits_only_with_the_pass(g, fetches, fd, (floors[0] + floors[1]) // 2)
    _close(got, ref)


def test_a_seq2seq_pair_fits_only_with_the_pass():
    g, fetches, fd = _two_loops("seq2seq", 150, 32, 48, 400, 32, lengths=True)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    budget = _saved_bytes(g, fetches, fd) // 10
    got, _ = _fits_only_with_the_pass(g, fetches, fd, budget)
    _close(got, ref)


def test_recomputing_a_bidirectional_classifier_gathers_again():
    g, fetches, fd = _bidir(200, 32, 64, 500, 32, lengths=True, head="state")
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    budget = _saved_bytes(g, fetches, fd) // 10
    got, plan = _fits_only_with_the_pass(g, fetches, fd, budget, "recompute")
    assert plan.bytes_by_placement()["recompute"] > 0
    _close(got, ref)


# --- with the sequence passes in chunks ----------------------------------------------------------
CHUNKED = {"sink_gather": True, "hoist_sequence": True, "sink_accumulators": True,
           "sink_outputs": True}


def _block_gathers(loop) -> list:
    """Gathers of loop's chunk prologue: those reading a "block" param (a block of ids)."""
    blocks = loop.op.body.params.get("block", [])
    return [n for n in loop.op.body.nodes if n.op.name == "gather" and n.inputs[1] in blocks]


@pytest.mark.parametrize("C", [1, 5, 64])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_chunked_bidirectional_gradients_are_the_ones_numpy_computes(lengths, C):
    """hoist_sequence, sink_accumulators and sink_outputs in chunks of C steps: each forward
    loop's chunk prologue gathers a block of rows at a block of ids (for the hoisted input
    projection), each backward loop's steps add their rows into the accumulator (its epilogue
    no longer writes an input-gradient stack), and the weight-gradient epilogue reads the
    rows the steps gathered."""
    T, B, H, V, E = 13, 4, 5, 7, 3
    g, fetches, fd = _bidir(T, B, H, V, E, lengths)
    sess = rg.Session(g, passes={**CHUNKED, "chunk_steps": C})
    loss, demb, dWf, dbf, dWb, dbb = sess.run(fetches, fd)
    graph = _program(sess).graph
    _check_joined(graph, 2)
    fwd = [n for n in _loops(graph) if not n.op.reverse]
    assert len(fwd) == 2 and all(n.op.chunk_steps == C and len(_block_gathers(n)) == 1
                                 for n in fwd)
    for loop in fwd:   # (the block read is the ids', an int block)
        assert loop.op.body.params["block"][0].dtype == np.int32
    for loop in _backward_loops(graph):
        assert loop.op.chunk_steps == C and not loop.op.epilogue_outputs
        assert loop.op.epilogue_carried   # (the weight gradients: still summed per chunk)
    _check_numpy(sess, g, fd, [loss, demb, dWf, dbf, dWb, dbb], lengths)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_chunked_the_pass_changes_only_the_embeddings_gradient(lengths):
    """In chunks, against the same chunked passes without sink_gather: the other gradients to
    rounding only (the hoisted projection reads a gathered block either way; the input
    gradient's rows, per step here, were one block product per chunk there, and the weight
    gradients' blocks hold the same rows), the embedding's to 1e-6."""
    g, fetches, fd = _bidir(21, 5, 6, 9, 4, lengths)
    sunk = rg.Session(g, passes={**CHUNKED, "chunk_steps": 4}).run(fetches, fd)
    lean = rg.Session(g, passes={**CHUNKED, "chunk_steps": 4, "sink_gather": False}
                      ).run(fetches, fd)
    _close(sunk, lean)
    _close(sunk, rg.Session(g).run(fetches, fd))


def test_a_saved_chunked_program_runs_again(tmp_path):
    g, fetches, fd = _two_loops("seq2seq", 9, 3, 4, 6, 3, lengths=True)
    sess = rg.Session(g, passes={**CHUNKED, "chunk_steps": 4})
    got = sess.run(fetches, fd)
    prog = _program(sess)
    _check_joined(prog.graph, 2)
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    saved = rg.io.read(rg.io.save(str(tmp_path / "chunked.rg"), graph=prog.graph,
                                  fetches={**fed, **outs}))
    rg.verify(saved.graph)
    assert [n.op.chunk_steps for n in _loops(saved.graph)] == [4] * 4
    for a, b in zip(_run_saved(saved, prog, sess, g, fd), got):
        assert np.array_equal(a, b)
    _close(got, rg.Session(g).run(fetches, fd))


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "sequence_length"])
def test_the_planner_chunks_the_sequence_passes_with_the_pass(lengths):
    """T=200, B=32, H=64, V=500, E=32, one LSTM (tests/test_memory_embedding.py's case) at a
    tenth of the saved tensors: the plan runs the sequence passes in chunks with the lookups
    gathered per step and per block (before, a chunked loop was left alone and the plan ran
    without the sequence passes), within the budget as predicted."""
    from test_memory_embedding import _graph
    g, fetches, fd = _graph(200, 32, 64, 500, 32, lengths)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    budget = _saved_bytes(g, fetches, fd) // 10
    got, plan = _fits_only_with_the_pass(g, fetches, fd, budget)
    assert plan.chunk_steps, str(plan)
    _close(got, ref)


def test_a_dense_term_of_the_embeddings_gradient_is_added_to_the_joined_sum():
    """W's gradient also has a dense term (an L2 penalty on W): the two directions still share
    one accumulator, and one add puts the dense term to it."""
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [3, None], name="ids")
        W = rg.get_variable("emb", [6, 3], initializer=rg.random_normal_initializer(seed=2))
        x = rg.nn.embedding_lookup(W, ids)
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(rg.nn.GRUCell(4), rg.nn.GRUCell(4), x,
                                                      dtype=rg.float32)
        loss = rg.reduce_sum(fw * bw) + 0.1 * rg.nn.l2_loss(W)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    fd = {ids: np.random.RandomState(1).randint(0, 6, (3, 7)).astype(np.int32)}
    sess = rg.Session(g, passes=ONLY)
    got = sess.run(fetches, fd)
    graph = _program(sess).graph
    (first, start), (second, after) = _accumulators(graph)
    assert start.node.op.name == "accumulator_zeros" and after.node is first
    total = [n for n in graph.nodes if n.op.name in ("add", "add_n")
             and n.outputs[0].type.shape == (6, 3)]
    assert len(total) == 1 and any(v.node is second for v in total[0].inputs)
    assert not any(v.node is first for v in total[0].inputs)
    _close(got, rg.Session(g).run(fetches, fd))


def test_without_gradients_chunked_prologues_gather_blocks():
    """Inference in chunks: each direction's prologue gathers its blocks; the outputs equal
    the unconstrained run's."""
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [3, None], name="ids")
        L = rg.placeholder(rg.int32, [3], name="L")
        W = rg.get_variable("emb", [6, 3], initializer=rg.random_normal_initializer(seed=3))
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.LSTMCell(4), rg.nn.LSTMCell(4), rg.nn.embedding_lookup(W, ids),
            sequence_length=L, dtype=rg.float32)
        fetches = [fw, bw]
    fd = {ids: np.random.RandomState(2).randint(0, 6, (3, 10)).astype(np.int32),
          L: np.array([10, 4, 7], np.int32)}
    sess = rg.Session(g, passes={**CHUNKED, "chunk_steps": 3})
    got = sess.run(fetches, fd)
    loops = _loops(_program(sess).graph)
    assert len(loops) == 2 and all(len(_block_gathers(n)) == 1 for n in loops)
    assert not _sunk(_program(sess).graph)[2]
    _close(got, rg.Session(g).run(fetches, fd))


def _gru_seq2seq(T, B, H, V, E):
    """A bidirectional GRU encoder over a lookup of W (with lengths) and a GRU decoder from
    its forward final state over a lookup of W at other ids, 5 steps longer."""
    g = rg.Graph()
    with g.as_default():
        ids = rg.placeholder(rg.int32, [B, None], name="ids")
        dec = rg.placeholder(rg.int32, [B, None], name="dec")
        L = rg.placeholder(rg.int32, [B], name="L")
        W = rg.get_variable("emb", [V, E], initializer=rg.random_normal_initializer(seed=0))
        (_, _), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.GRUCell(H), rg.nn.GRUCell(H), rg.nn.embedding_lookup(W, ids),
            sequence_length=L, dtype=rg.float32)
        with rg.variable_scope("dec"):
            o, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(H), rg.nn.embedding_lookup(W, dec),
                                     initial_state=s_fw)
        loss = rg.reduce_sum(o * o) + rg.reduce_sum(s_bw * s_bw)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(0)
    fd = {ids: rs.randint(0, V, (B, T)).astype(np.int32),
          dec: rs.randint(0, V, (B, T + 5)).astype(np.int32),
          L: np.r_[T, 0, rs.randint(0, T + 1, B - 2)].astype(np.int32)}
    return g, fetches, fd


def test_recomputed_chunked_loops_gathering_rows_run_as_predicted():
    """memory_strategy="recompute" over a budget sweep: the plans recompute the loops in
    chunks whose prologues gather blocks of rows, and the backward pass's replays cut those
    blocks while they hold a state one of their steps made (the model missed it: plans said
    fits and ran out of memory by one [B, H] row) and the states they stored (the model
    counted the most of them at every cut: 1 KiB too high). Every plan that fits runs on a
    device of the budget's capacity, at its prediction (less the 0-d loss NumPy returns as a
    scalar the meter does not see, tests/test_memory_exact.py's SCALARS)."""
    g, fetches, fd = _gru_seq2seq(40, 8, 16, 60, 16)
    ref = rg.Session(g, device=SimulatedDevice()).run(fetches, fd)
    chunked = 0
    for budget in (137500, 140000, 145000, 155000):
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                          memory_strategy="recompute")
        plan = sess.memory_plan(fetches, fd)
        if not plan.fits:
            continue
        chunked += bool(plan.chunk_steps and "sink_gather" in plan.passes_on)
        got = sess.run(fetches, fd)
        peak = sess.last_run_report.peak_bytes
        assert 0 <= plan.predicted_peak - peak <= 4, (budget, plan.predicted_peak, peak)
        _close(got, ref)
    assert chunked == 4
