"""Large intermediates under a memory budget (issue 29, item 1): the to_host / to_device ops, the
spill_values pass (offload, recompute, running sums) and the planner's choice of them
(memory/spill.py), on static_rnn LSTMs and GRUs and a plain MLP on the simulated device:
the plan fits, the measured peak is the predicted one, and the gradients keep their bits."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import OutOfMemoryError, VerificationError
from rnngraph.ops.transfer import to_device, to_host
from rnngraph.runtime.simulated import SimulatedDevice

from gradcheck import check_gradients
from test_memory_chunks import _run_saved

ROOT = Path(__file__).resolve().parent.parent


def _static(cell="lstm", T=12, B=8, H=16, I=4, seed=0):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        c = rg.nn.LSTMCell(H) if cell == "lstm" else rg.nn.GRUCell(H)
        outs, _ = rg.nn.static_rnn(c, rg.unstack(X, axis=1), dtype=rg.float32)
        loss = rg.reduce_sum(rg.stack(outs) ** 2)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    x = np.random.RandomState(seed).randn(B, T, I).astype(np.float32)
    return g, fetches, {X: x}


def _mlp(N=64, D=32, seed=0):
    """Three dense layers; the first layer's input is X * s (fed times a variable: its
    producer's inputs are live all along, so it may be recomputed)."""
    rs = np.random.RandomState(seed)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [N, D], name="X")
        s = rg.get_variable("s", [D], rg.float32,
                            initializer=rg.constant_initializer(rs.rand(D).astype(np.float32)))
        ws = [rg.get_variable(f"w{i}", [D, D], rg.float32,
                              initializer=rg.constant_initializer(
                                  (rs.randn(D, D) / np.sqrt(D)).astype(np.float32)))
              for i in range(3)]
        h = X * s
        for w in ws:
            h = rg.tanh(rg.matmul(h, w))
        loss = rg.reduce_sum(h * h)
        fetches = [loss] + rg.gradients(loss, [s] + ws)
    return g, fetches, {X: rs.randn(N, D).astype(np.float32)}, (s, ws)


def _prog(sess):
    """The session's training program (the largest it compiled)."""
    return max(sess.programs(), key=lambda p: len(p.nodes))


def _shapes(fd):
    return {k: v.shape for k, v in fd.items()}


def _unplanned(g, fetches, fd):
    sess = rg.Session(g, device=SimulatedDevice())
    out = sess.run(fetches, fd)
    return out, sess.memory_plan(fetches, _shapes(fd)).predicted_peak


def _planned(g, fetches, fd, budget, **options):
    dev = SimulatedDevice(capacity=budget)
    sess = rg.Session(g, device=dev, memory_budget=budget, **options)
    plan = sess.memory_plan(fetches, _shapes(fd))
    out = sess.run(fetches, fd)
    return sess, plan, out


def _same_bits(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


# --- the ops ------------------------------------------------------------------------------------
def test_to_host_and_back_is_the_identity_with_its_gradient():
    def build(x):
        return to_device(to_host(x)) * x
    check_gradients(build, {"x": np.random.RandomState(1).randn(3, 4)})


def test_the_host_copy_takes_no_device_bytes_and_gives_its_host_buffer_back():
    dev = SimulatedDevice()
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [8, 16], name="x")
        a = rg.tanh(x)
        back = to_device(to_host(a))
        y = rg.reduce_sum(back * 2.0)
    sess = rg.Session(g, device=dev, passes=False)
    xv = np.random.RandomState(0).randn(8, 16).astype(np.float32)
    got = sess.run(y, {x: xv}, report=True)
    assert np.isclose(got, 2 * np.tanh(xv).sum(), rtol=1e-5)
    r = sess.last_run_report
    assert r.bytes_to_host == r.bytes_to_device == 8 * 16 * 4
    assert dev.host_current == 0 and dev.host_peak == 8 * 16 * 4
    # the fed x, and of tanh, its host copy (0 bytes), the copy back and the product at most
    # two [8, 16] at once (tanh's goes once it is on the host), and the scalar sum
    assert r.peak_bytes == 3 * 8 * 16 * 4 + 4


def test_the_verifier_refuses_a_to_device_of_a_device_value():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        h = to_host(x)
        with pytest.raises(TypeError, match="to_device takes a to_host value"):
            to_device(x)
        back = to_device(h)
    rg.verify(g)
    back.node.inputs = [x]
    with pytest.raises(VerificationError, match="not by to_host"):
        rg.verify(g)


# --- the pass -----------------------------------------------------------------------------------
def test_the_pass_places_the_copies_between_the_early_and_late_readers():
    g, fetches, fd, _ = _mlp()
    ref = rg.Session(g).run(fetches, fd)
    plain = rg.Session(g)
    plain.run(fetches, fd)
    nodes = _prog(plain).graph.nodes
    (first,) = [n for n in nodes if n.op.name == "mul" and n.inputs[0].node.op.name ==
                "placeholder"]   # X * s
    name = first.outputs[0].name
    sess = rg.Session(g, passes={"spill": (name,)})
    _same_bits(sess.run(fetches, fd), ref)
    order = _prog(sess).graph.nodes
    pos = {n: i for i, n in enumerate(order)}
    (th,) = [n for n in order if n.op.name == "to_host"]
    (td,) = [n for n in order if n.op.name == "to_device"]
    v = th.inputs[0]
    assert v.name == name and td.inputs[0] is th.outputs[0]
    early = [n for n in order if v in n.inputs and n is not th]
    late = [n for n in order if td.outputs[0] in n.inputs]
    assert early and late
    assert pos[th] == max(pos[n] for n in early) + 1   # right after the last early reader
    assert pos[td] == min(pos[n] for n in late) - 1    # right before the first late reader


def test_running_sums_keep_the_bits_of_add_n():
    g, fetches, fd = _static("lstm")
    plain = rg.Session(g)
    ref = plain.run(fetches, fd)
    sums = tuple(n.name for n in _prog(plain).graph.nodes
                 if n.op.name == "add_n" and len(n.inputs) >= 3)
    assert sums
    sess = rg.Session(g, passes={"accumulate": sums})
    _same_bits(sess.run(fetches, fd), ref)
    graph = _prog(sess).graph
    assert not [n for n in graph.nodes if n.name in sums]
    rg.verify(graph)


@pytest.mark.parametrize("passes,match", [
    ({"spill": "a:0"}, r"passes\['spill'\] must be a tuple of value names"),
    ({"spill": ("a:0", "a:0")}, "names a value twice"),
    ({"recompute": (3,)}, r"passes\['recompute'\] must be a tuple"),
    ({"spill": ("a:0",), "recompute": ("a:0",)}, "offloaded or recomputed, not both"),
    ({"spill": ("X:0",)}, "fetched or fed"),
    ({"accumulate": ("X",)}, "not an add_n node"),
    ({"spill": ("no/such/value:0", "X:0")}, r"names 'no/such/value:0': no such value"),
])
def test_a_bad_spill_config_is_refused(passes, match):
    g, fetches, fd, _ = _mlp()
    with pytest.raises(ValueError, match=match):
        rg.Session(g, passes=passes).run(fetches, fd)


def _nested_sums():
    """inner = add_n of three terms; outer = add_n of four terms and inner (terms made apart,
    one per layer of a chain)."""
    rs = np.random.RandomState(0)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [32, 32], name="X")
        W = rg.get_variable("W", [32, 32], rg.float32, initializer=rg.constant_initializer(
            (rs.randn(32, 32) / 6).astype(np.float32)))
        h, terms = X, []
        for i in range(8):
            h = rg.tanh(rg.matmul(h, W))
            terms.append(rg.sigmoid(h * float(i + 1)))
        inner = rg.add_n([terms[0], terms[5], terms[6]], name="inner")
        outer = rg.add_n([terms[1], terms[2], inner, terms[3], terms[7]], name="outer")
        loss = rg.reduce_sum(outer * outer)
        fetches = [loss] + rg.gradients(loss, [W])
    return g, fetches, {X: rs.randn(32, 32).astype(np.float32)}


def test_a_sum_of_a_running_sum_is_refused_and_never_chosen():
    """Running sums rewrite one add_n at a time: a named add_n reading another named one
    would be placed before its operand. The config is refused; the planner names one of the
    pair, and its plans run within their budgets with the unplanned bits."""
    g, fetches, fd = _nested_sums()
    for names in (("inner", "outer"), ("outer", "inner")):
        with pytest.raises(ValueError, match="read another named add_n"):
            rg.Session(g, passes={"accumulate": names}).run(fetches, fd)
    ref, peak = _unplanned(g, fetches, fd)
    summed = 0
    for frac in (0.7, 0.8, 0.9):
        sess, plan, got = _planned(g, fetches, fd, int(peak * frac))
        assert not {"inner", "outer"} <= set(plan.summed)
        if plan.fits:
            assert sess.last_run_report.peak_bytes <= int(peak * frac)
            _same_bits(got, ref)
            summed += bool(plan.summed)
    assert summed


def test_names_the_compiled_graph_lacks_are_skipped():
    """A plan's passes compile the session's other programs too (other fetches, the
    variables' initializer): names those graphs lack are skipped where the user's graph
    explains them (a node of it names their node or a scope above it: a value a pass makes in
    another program), pass_stats says how many values moved; contradicting names are refused,
    and names nothing explains are typos (tests/test_planner_review_a.py)."""
    g, fetches, fd, _ = _mlp()
    ref = rg.Session(g).run(fetches, fd)
    plain = rg.Session(g)
    plain.run(fetches, fd)
    big = max((n.outputs[0] for n in _prog(plain).graph.nodes if n.op.name == "tanh"),
              key=lambda v: v.type.shape[0] or 0)
    elsewhere = f"{big.node.name}/made_elsewhere:0"
    sess = rg.Session(g, passes={"spill": (elsewhere, big.name)})
    _same_bits(sess.run(fetches, fd), ref)
    assert sess.pass_stats["spill"] == 1
    assert rg.Session(g, passes={"spill": (elsewhere,)}).run(fetches[0], fd) == ref[0]


# --- the planner --------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("strategy", ["auto", "offload", "recompute"])
def test_a_static_rnn_fits_under_its_unplanned_peak(cell, strategy):
    g, fetches, fd = _static(cell)
    ref, peak = _unplanned(g, fetches, fd)
    budget = int(peak * 0.6)
    sess, plan, got = _planned(g, fetches, fd, budget, memory_strategy=strategy)
    assert plan.fits and plan.summed, str(plan)
    assert "sums made running" in str(plan)
    measured = sess.last_run_report.peak_bytes
    assert measured <= budget
    assert plan.predicted_peak == measured
    _same_bits(got, ref)
    assert all(s.placement == "host" for s in plan.spilled) or strategy != "offload"
    assert all(s.placement == "recompute" for s in plan.spilled) or strategy != "recompute"


def test_below_the_floor_the_plan_says_the_smallest_budget_and_that_one_runs():
    g, fetches, fd = _static("gru")
    ref, peak = _unplanned(g, fetches, fd)
    low = rg.Session(g, device=SimulatedDevice(), memory_budget=peak // 6)
    plan = low.memory_plan(fetches, _shapes(fd))
    assert not plan.fits and peak // 6 < plan.min_budget < peak
    assert plan.predicted_peak == plan.min_budget   # (the leanest program found is used)
    sess, again, got = _planned(g, fetches, fd, plan.min_budget)
    assert again.fits
    assert sess.last_run_report.peak_bytes == again.predicted_peak <= plan.min_budget
    _same_bits(got, ref)


@pytest.mark.parametrize("strategy,placement", [("offload", "host"),
                                                ("recompute", "recompute"), ("auto", None)])
def test_an_mlp_spills_its_first_activation(strategy, placement):
    g, fetches, fd, (s, ws) = _mlp()
    ref, peak = _unplanned(g, fetches, fd)
    budget = peak - 64 * 32 * 4 // 2
    sess, plan, got = _planned(g, fetches, fd, budget, memory_strategy=strategy)
    assert plan.fits and plan.spilled, str(plan)
    if placement is not None:
        assert {v.placement for v in plan.spilled} == {placement}
    r = sess.last_run_report
    assert r.peak_bytes <= budget and plan.predicted_peak == r.peak_bytes
    _same_bits(got, ref)
    # and the gradient is the one NumPy gives
    x = fd[next(iter(fd))].astype(np.float64)
    sv = sess.run(s).astype(np.float64)
    wv = [sess.run(w).astype(np.float64) for w in ws]
    hs = [x * sv]
    for w in wv:
        hs.append(np.tanh(hs[-1] @ w))
    gh = 2 * hs[-1]
    for i in (2, 1, 0):
        ga = gh * (1 - hs[i + 1] ** 2)
        gw = hs[i].T @ ga
        assert np.allclose(got[2 + i], gw, rtol=1e-4, atol=1e-4)
        gh = ga @ wv[i].T
    assert np.allclose(got[1], (gh * x).sum(0), rtol=1e-4, atol=1e-4)


def test_a_host_budget_too_small_for_the_offloads_is_refused():
    g, fetches, fd, _ = _mlp()
    _, peak = _unplanned(g, fetches, fd)
    budget = peak - 64 * 32 * 4 // 2
    sess = rg.Session(g, device="cpu", memory_budget=budget, memory_strategy="offload",
                      host_budget=16)
    plan = sess.memory_plan(fetches, _shapes(fd))
    assert not plan.fits and not plan.spilled
    with pytest.raises(OutOfMemoryError, match="cannot be met"):
        sess.run(fetches, fd)


def test_a_spilled_program_saves_and_loads(tmp_path):
    g, fetches, fd = _static("gru")
    ref, peak = _unplanned(g, fetches, fd)
    plain = rg.Session(g)
    plain.run(fetches, fd)
    names = [n.outputs[0].name for n in _prog(plain).graph.nodes
             if n.op.name == "sigmoid"][:3]
    sess = rg.Session(g, passes={"spill": tuple(names[:2]) + ("X:0",),
                                 "recompute": tuple(names[2:])})
    got = sess.run(fetches, fd)
    _same_bits(got, ref)
    prog = _prog(sess)
    assert sum(n.op.name == "to_host" for n in prog.graph.nodes) == 3
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    path = rg.io.save(str(tmp_path / "spilled.rg"), graph=prog.graph, fetches={**fed, **outs})
    saved = rg.io.read(path)
    rg.verify(saved.graph)
    copies = [n for n in saved.graph.nodes if n.op.name == "to_device"]
    assert sum(n.op.index is None for n in copies) == 2
    assert sorted({n.op.index for n in copies if n.op.index is not None}) == list(range(12))
    assert sum(n.op.name == "recompute" or n.name.endswith("/recompute")
               for n in saved.graph.nodes) == 1
    _same_bits(_run_saved(saved, prog, sess, g, fd), got)


def _cli_lstm():
    from rnngraph import cli
    src = cli.load_source("lstm", "static", grad=True)
    fetches = [src.fetches["loss"]] + cli.gradient_values(src)
    return src.graph, fetches, cli.sample_feed(src.graph, fetches, 32, None)


def test_the_cli_example_runs_in_50_kb_with_its_input_on_the_host():
    """The `rnngraph plan lstm --unroll static --budget 50KB` example: running sums, the fed
    sequence left on the host (a step's slice copied for its forward and its gradient step),
    per-step activations offloaded; 117,340 bytes unplanned."""
    g, fetches, fd = _cli_lstm()
    ref, peak = _unplanned(g, fetches, fd)
    assert peak == 117340
    sess, plan, got = _planned(g, fetches, fd, 50 * 1024)
    assert plan.fits and plan.summed, str(plan)
    (x,) = [s for s in plan.spilled if s.op == "placeholder"]
    assert x.name == "input_sequences:0" and x.bytes == 32 * 10 * 20 * 4
    r = sess.last_run_report
    assert r.peak_bytes <= 50 * 1024 and plan.predicted_peak == r.peak_bytes
    prog = [p for p in sess.programs() if p.host_inputs][0]
    assert [prog.inputs[i].name for i in prog.host_inputs] == ["input_sequences:0"]
    _same_bits(got, ref)
    # the plan's passes compile that program again, without a budget
    again = rg.Session(g, device=SimulatedDevice(), passes=plan.passes)
    assert set(plan.passes) >= {"spill", "accumulate"}
    _same_bits(again.run(fetches, fd, report=True), ref)
    assert again.last_run_report.peak_bytes == plan.predicted_peak


def test_a_fed_sequence_stays_on_the_host_and_each_slice_comes_twice():
    g, fetches, fd = _static("lstm", T=6)
    ref = rg.Session(g).run(fetches, fd)
    dev = SimulatedDevice()
    sess = rg.Session(g, device=dev, passes={"spill": ("X:0",)})
    got = sess.run(fetches, fd, report=True)
    _same_bits(got, ref)
    prog = _prog(sess)
    assert [prog.inputs[i].name for i in prog.host_inputs] == ["X:0"]
    slices = [n for n in prog.graph.nodes if n.op.name == "to_device"]
    count = [sum(n.op.index == t for n in slices) for t in range(6)]
    # each step's slice for its forward step and again for its gradient step; the last
    # step's gradient step follows its forward step at once: one copy
    assert count == [2, 2, 2, 2, 2, 1]
    assert all(n.op.axis == 1 for n in slices)   # (X is [B, T, I]: unstacked along axis 1)
    x = fd[next(iter(fd))]
    assert sess.last_run_report.bytes_to_device == sum(count) * x.nbytes // 6
    assert not [n for n in prog.graph.nodes if n.op.name == "unstack" and
                n.inputs[0].node.op.name == "placeholder"]


def test_a_sliced_copy_is_the_slice_and_refuses_a_gradient():
    from rnngraph.ops.transfer import ToDevice
    x = np.arange(24.0).reshape(2, 3, 4)
    assert np.array_equal(ToDevice(1, 2).compute(np, x), x[:, 2])
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [2, 3, 4])
        h = to_host(X)
        with pytest.raises(rg.errors.ShapeError, match="index 3 is out of range"):
            to_device(h, axis=1, index=3)
        y = to_device(h, axis=-2, index=1)
        assert tuple(y.shape) == (2, 4)
        with pytest.raises(rg.errors.GradientError, match="sliced to_device"):
            rg.gradients(rg.reduce_sum(y), [X])


def test_the_cli_plans_a_static_lstm_and_says_the_smallest_budget():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def plan(budget):
        return subprocess.run([sys.executable, "-m", "rnngraph", "plan", "lstm", "--unroll",
                               "static", "--budget", budget], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
    ok = plan("50KB")
    assert ok.returncode == 0, ok.stderr
    assert "(fits)" in ok.stdout and "sums made running" in ok.stdout
    assert "intermediates moved off the device" in ok.stdout
    low = plan("20KB")
    assert low.returncode == 1
    assert "smallest budget a plan was found to fit" in low.stderr


def test_names_that_contradict_one_another_are_refused():
    """A fed sequence left on the host loses its unstack node: a slice of it cannot be moved
    too; a summed add_n's result is no longer made: it cannot be offloaded too."""
    g, fetches, fd = _static()
    plain = rg.Session(g)
    plain.run(fetches, fd)
    graph = _prog(plain).graph
    piece = next(n for n in graph.nodes if n.op.name == "unstack").outputs[1].name
    with pytest.raises(ValueError, match="removes"):
        rg.Session(g, passes={"spill": ("X:0", piece)}).run(fetches, fd)
    g, fetches, fd = _nested_sums()
    with pytest.raises(ValueError, match="removes"):
        rg.Session(g, passes={"spill": ("inner:0",), "accumulate": ("inner",)}).run(fetches, fd)
