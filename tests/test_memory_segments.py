"""Checkpointed segment recomputation for static (unrolled) graphs (issue 29; Chen et al.
2016): the spill_values pass copies a segment's chain of producers once, right before its
first gradient reader, from the values kept before it; the planner (memory/spill.py) picks
the checkpoints when recomputing values one at a time cannot reach the budget. Plans fit,
the measured peak is the predicted one, gradients keep their bits, random ops draw the same
numbers again and stateful ops are never rerun."""
from __future__ import annotations

import re

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.passes.spill_values import late_start, segments_of
from rnngraph.runtime.simulated import SimulatedDevice

from test_memory_chunks import _run_saved
from test_memory_spill import _prog, _same_bits, _shapes, _static, _unplanned

# the passes a budget turns off for a static_rnn (they build whole-sequence stacks)
LEAN = {"hoist_sequence": False, "sink_accumulators": False, "sink_outputs": False}


def _segment_names(graph, T: int, k: int) -> tuple:
    """The values of a static LSTM's steps 0 .. T-k-1 (the last k steps kept), in segments
    of k steps: every value of a step is named but a segment's last state (h = Mul_2, c =
    Add_3: the checkpoint) and the shared weights' slices."""
    names = []
    for n in graph.nodes:
        m = re.match(r"rnn/step_(\d+)/", n.name)
        if not m or n.is_gradient or n.op.name in ("getitem", "constant"):
            continue
        t = int(m.group(1))
        if t >= T - k or ((t + 1) % k == 0 and n.name.rsplit("/", 1)[1] in ("Mul_2", "Add_3")):
            continue
        names += [v.name for v in n.outputs]
    return tuple(names)


def _sums(graph) -> tuple:
    return tuple(n.name for n in graph.nodes if n.op.name == "add_n" and len(n.inputs) >= 3)


# --- the pass -----------------------------------------------------------------------------------
def test_a_segment_is_copied_once_before_its_first_gradient_reader():
    T, k = 12, 4
    g, fetches, fd = _static("lstm", T=T)
    plain = rg.Session(g, device=SimulatedDevice(), passes=LEAN)
    ref = plain.run(fetches, fd)
    graph = _prog(plain).graph
    names, sums = _segment_names(graph, T, k), _sums(graph)
    summed = rg.Session(g, device=SimulatedDevice(), passes=dict(LEAN, accumulate=sums))
    _same_bits(summed.run(fetches, fd, report=True), ref)
    sess = rg.Session(g, device=SimulatedDevice(),
                      passes=dict(LEAN, accumulate=sums, recompute=names))
    _same_bits(sess.run(fetches, fd, report=True), ref)
    # fewer bytes than the running sums alone: one segment's values at a time
    assert sess.last_run_report.peak_bytes < summed.last_run_report.peak_bytes
    order = _prog(sess).graph.nodes
    rg.verify(_prog(sess).graph)
    copies = [n for n in order if n.name.endswith("/recompute")]
    named_nodes = {name.rsplit(":", 1)[0] for name in names}
    # each named producer once (a split's outputs share one copy)
    assert sorted(n.name[:-len("/recompute")] for n in copies) == sorted(named_nodes)
    pos = {n: i for i, n in enumerate(order)}
    blocks = []   # runs of consecutive copies: one per segment
    for n in copies:
        if blocks and pos[n] == pos[blocks[-1][-1]] + 1:
            blocks[-1].append(n)
        else:
            blocks.append([n])
    # a checkpoint step's tanh(c) reads the kept c alone: a one-value segment of its own
    alone = [b for b in blocks if len(b) == 1]
    assert sorted(b[0].name for b in alone) == [
        f"rnn/step_{t}/lstm_cell/Tanh_1/recompute" for t in range(k - 1, T - k, k)]
    blocks = [b for b in blocks if len(b) > 1]
    assert len(blocks) == (T - k) // k
    for block in blocks:
        after = order[pos[block[-1]] + 1]
        assert after.is_gradient and not order[pos[block[0]] - 1].name.endswith("/recompute")
        steps = {int(re.match(r"rnn/step_(\d+)/", n.name).group(1)) for n in block}
        assert len(steps) == k
        # the first gradient reader of the segment's latest step comes right after its copies
        assert f"step_{max(steps)}/" in after.name
        # the copies read the state kept before the segment, not a copy of it
        first = min(steps)
        (mm,) = [n for n in block if n.name == f"rnn/step_{first}/lstm_cell/MatMul_1/recompute"]
        assert first == 0 or mm.inputs[0].name == f"rnn/step_{first - 1}/lstm_cell/Mul_2:0"
    # the originals' gradient readers read the copies: no gradient node reads a named value
    named = set(names)
    assert not [n.name for n in order if n.is_gradient and not n.name.endswith("/recompute")
                and any(x.name in named for x in n.inputs)]


def test_a_segmented_program_saves_and_loads(tmp_path):
    T, k = 9, 3
    g, fetches, fd = _static("lstm", T=T)
    plain = rg.Session(g, passes=LEAN)
    ref = plain.run(fetches, fd)
    sess = rg.Session(g, passes=dict(LEAN, recompute=_segment_names(_prog(plain).graph, T, k)))
    got = sess.run(fetches, fd)
    _same_bits(got, ref)
    prog = _prog(sess)
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    path = rg.io.save(str(tmp_path / "segments.rg"), graph=prog.graph, fetches={**fed, **outs})
    saved = rg.io.read(path)
    rg.verify(saved.graph)
    assert sum(n.name.endswith("/recompute") for n in saved.graph.nodes) == \
        sum(n.name.endswith("/recompute") for n in prog.graph.nodes) > 0
    _same_bits(_run_saved(saved, prog, sess, g, fd), got)


def test_segments_and_where_they_go():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        a = rg.tanh(x, name="a")
        b = rg.sigmoid(a, name="b")
        c = rg.exp(b, name="c")
        d = rg.square(x, name="d")
    parts = segments_of([c, d, b])
    assert sorted(sorted(n.name for n in p) for p in parts) == [["b", "c"], ["d"]]
    assert segments_of([a, c]) == [[a.node], [c.node]]   # (b not named: two segments)
    # several producers: the first gradient reader after the last one
    assert late_start([1, 2], [3, 10, 11], [10, 11]) == 10
    # one producer, or no gradient reader: after the widest gap (the producer first)
    assert late_start([5], [6, 7, 20], [20]) == 20
    assert late_start([1, 5], [6, 7, 20]) == 20
    assert late_start([5], [3, 4]) is None


def _dropout_lstm(T=8, B=4, H=6, I=3):
    g = rg.Graph()
    with g.as_default():
        rg.set_random_seed(7)
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        cell = rg.nn.DropoutWrapper(rg.nn.LSTMCell(H), input_keep_prob=0.7,
                                    output_keep_prob=0.8)
        outs, _ = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), dtype=rg.float32)
        loss = rg.reduce_sum(rg.stack(outs) ** 2)
        fetches = [loss] + rg.gradients(loss, rg.trainable_variables())
    return g, fetches, {X: np.random.RandomState(3).randn(B, T, I).astype(np.float32)}


def test_random_ops_draw_the_same_numbers_when_recomputed():
    """A dropout mask is a pure function of its seed, the run counter's value and the step
    (inputs the copy reads as they are), so a recomputed segment draws the same mask."""
    T = 8
    g, fetches, fd = _dropout_lstm(T)
    plain = rg.Session(g, passes=LEAN)
    ref = plain.run(fetches, fd)
    graph = _prog(plain).graph
    forward = [v.name for n in graph.nodes if re.match(r"rnn/step_[0-5]/", n.name)
               and not n.is_gradient and not n.op.stateful and n.op.name != "constant"
               and not n.name.rsplit("/", 1)[1].startswith("Getitem")
               for v in n.outputs]
    assert any("random" in name for name in forward)
    sess = rg.Session(g, passes=dict(LEAN, recompute=tuple(forward)))
    got = sess.run(fetches, fd)
    _same_bits(got, ref)
    copies = [n for n in _prog(sess).graph.nodes if n.name.endswith("/recompute")]
    assert any(n.op.name == "random_standard" for n in copies)
    # a second run draws new masks, the same in both sessions
    _same_bits(sess.run(fetches, fd), plain.run(fetches, fd))


def test_a_stateful_producer_is_never_recomputed():
    g, fetches, fd = _dropout_lstm()
    plain = rg.Session(g, passes=LEAN)
    plain.run(fetches, fd)
    (counter,) = [n for n in _prog(plain).graph.nodes if n.name == "random/next_run"]
    assert counter.op.stateful
    with pytest.raises(ValueError, match="must not run twice"):
        rg.Session(g, passes=dict(LEAN, recompute=(counter.outputs[0].name,))).run(fetches, fd)


# --- the planner --------------------------------------------------------------------------------
def _planned(g, fetches, fd, budget, strategy):
    sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget,
                      memory_strategy=strategy)
    plan = sess.memory_plan(fetches, _shapes(fd))
    got = sess.run(fetches, fd, report=True) if plan.fits else None
    return sess, plan, got


def test_the_cli_lstm_recomputes_segments_below_the_one_value_floor():
    """`rnngraph plan lstm --unroll static` (B32, T10, I20, H7), recomputation only: values
    recomputed one at a time from live inputs reach 109,276 bytes at best; with
    checkpointed segments a 70,000-byte budget fits and runs as predicted."""
    g, fetches, fd = _cli_lstm_steps(10)
    ref, peak = _unplanned(g, fetches, fd)
    sess, plan, got = _planned(g, fetches, fd, 70000, "recompute")
    assert plan.fits, str(plan)
    assert {s.placement for s in plan.spilled} == {"recompute"}
    segments = {s.segment for s in plan.spilled if s.segment}
    assert len(segments) >= 2
    assert "checkpointed segments" in str(plan)
    assert re.search(rf"\(segment 1 of {max(segments)}, (uniform|dp)\)", str(plan))
    assert sess.last_run_report.peak_bytes == plan.predicted_peak <= 70000
    _same_bits(got, ref)
    # the plan's passes compile the same program without a budget
    again = rg.Session(g, device=SimulatedDevice(), passes=plan.passes)
    _same_bits(again.run(fetches, fd, report=True), ref)
    assert again.last_run_report.peak_bytes == plan.predicted_peak


def _cli_lstm_steps(T):
    from rnngraph import cli
    src = cli.load_source("lstm", "static", grad=True)
    fetches = [src.fetches["loss"]] + cli.gradient_values(src)
    return src.graph, fetches, cli.sample_feed(src.graph, fetches, 32, T)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_budget_sweep_fits_as_predicted(cell):
    """Budgets from the recompute-only floor to the unplanned peak: every plan that fits runs
    within its budget, predicted to 2% and never below the measured peak, with the unplanned
    run's bits; the floor's own budget fits."""
    g, fetches, fd = _static(cell, T=16, B=8, H=16)
    ref, peak = _unplanned(g, fetches, fd)
    low = rg.Session(g, device=SimulatedDevice(), memory_budget=peak // 20,
                     memory_strategy="recompute")
    floor = low.memory_plan(fetches, _shapes(fd)).min_budget
    assert floor is not None and floor < peak // 3
    fitted = 0
    for budget in np.linspace(floor, peak, 5).astype(int):
        sess, plan, got = _planned(g, fetches, fd, int(budget), "recompute")
        if budget == floor:
            assert plan.fits
        if not plan.fits:
            continue
        fitted += 1
        measured = sess.last_run_report.peak_bytes
        assert measured <= budget
        assert measured <= plan.predicted_peak <= measured * 1.02
        _same_bits(got, ref)
    assert fitted == 5


def test_a_long_static_lstm_fits_a_tenth_of_its_peak_by_recomputation_alone():
    """(Its per-step weight gradients made running sums, the rest is the activations; the
    stack of outputs, which the loss reads, stays whole.)"""
    g, fetches, fd = _static("lstm", T=30, B=8, H=64, I=8)
    ref, peak = _unplanned(g, fetches, fd)
    budget = peak // 10
    sess, plan, got = _planned(g, fetches, fd, budget, "recompute")
    assert plan.fits, str(plan)
    assert len({s.segment for s in plan.spilled if s.segment}) >= 2
    assert sess.last_run_report.peak_bytes == plan.predicted_peak <= budget
    _same_bits(got, ref)
    # each forward producer is rerun at most once (a second copy would be ".../recompute_1")
    names = [n.name for n in _prog(sess).graph.nodes if "/recompute" in n.name]
    assert names and all(name.endswith("/recompute") for name in names)
