"""The memory plan names what it saves, offloads or recomputes as the user's graph names it
(issue 29, a fresh-eyes review): before, the table listed compiled internals
("rnn/while/lstm_cell/Mul_2/fused:5", "rnn/carried_0:0"), and after the passes' fusion, joins
and sums the user could not tell which of their values a row was. Now each row is the user's
op (a fused kernel's output by the op it was, memory/plan.py's Origin), its kind, dtype and
shape per step and the user's line, with the compiled name kept in brackets."""
import os
import re

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.memory import make_plan
from rnngraph.memory.accounting import fmt_bytes
from rnngraph.memory.plan import SavedTensor, SpilledValue, user_op_name

HERE = os.path.basename(__file__)
B, T, I, H, C = 4, 12, 6, 8, 3
INTERNAL = re.compile(r"/(fused|joined|summed|batched|block_\d+|streamed|over_steps|after_loop)"
                      r"\b|carried_\d")


def _model(kind):
    """A typical model of `kind` with a dense head and softmax cross-entropy; the lines that
    build the cells are the user's lines the plan should name."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, T, I], name="X")
        y = rg.placeholder(rg.int32, [B], name="y")
        if kind == "lstm":
            out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32)  # LINE lstm
            last = out[:, -1]
        elif kind == "gru":
            out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(H), X, dtype=rg.float32)  # LINE gru
            last = out[:, -1]
        elif kind == "multi":
            cell = rg.nn.MultiRNNCell([rg.nn.LSTMCell(H), rg.nn.LSTMCell(H)])
            out, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)  # LINE multi
            last = out[:, -1]
        elif kind == "static":
            outs, _ = rg.nn.static_rnn(  # LINE static
                rg.nn.LSTMCell(H), rg.unstack(X, axis=1), dtype=rg.float32)
            last = outs[-1]
        else:
            (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(  # LINE bidir
                rg.nn.LSTMCell(H), rg.nn.LSTMCell(H), X, dtype=rg.float32)
            last = rg.concat([fw[:, -1], bw[:, 0]], 1)
        logits = rg.layers.dense(last, C)
        loss = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        train = rg.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = rg.global_variables_initializer()
    feed = {X: (B, T, I), y: np.zeros(B, np.int32)}
    return g, X, y, train, init, feed


def _line(kind) -> str:
    """The user's line (this file's) that built the model's recurrent part (a call's first)."""
    with open(__file__) as f:
        for k, text in enumerate(f, 1):
            if text.rstrip().endswith(f"# LINE {kind}"):
                return f"{HERE}:{k}"
    raise AssertionError(kind)


def _plan(kind, fraction):
    """The model's plan under `fraction` of its unconstrained peak."""
    g, X, y, train, init, feed = _model(kind)
    with rg.Session(g, device=rg.SimulatedDevice(10**8)) as s:
        s.run(init)
        full = s.memory_plan(train, feed).keep_all_peak
    budget = int(full * fraction)
    with rg.Session(g, memory_budget=budget, device=rg.SimulatedDevice(10**8)) as s:
        s.run(init)
        return g, s.memory_plan(train, feed)


def _user_names(graph) -> set:
    """Every node name of the user's graph, loop bodies included."""
    out = set()
    for node in graph.nodes:
        out.add(node.name)
        for body in node.op.subgraphs():
            out |= _user_names(body)
    return out


def _table_rows(text: str, lp) -> list:
    """The printed rows of loop `lp`'s saved-tensor table."""
    lines = text.splitlines()
    at = next(k for k, line in enumerate(lines) if line.startswith(f"loop {lp.name} "))
    return lines[at + 2:at + 2 + len(lp.saved)]


@pytest.mark.parametrize("kind", ["lstm", "gru", "multi", "bidir"])
def test_saved_tensors_are_named_by_the_users_ops(kind):
    g, plan = _plan(kind, 0.6)
    assert plan.saved and any(s.placement != "device" for s in plan.saved)
    names = _user_names(g)
    text = str(plan)
    for lp in plan.loops:
        assert f"loop {lp.name} (built at {_line(kind)}):" in text
        rows = _table_rows(text, lp)
        for s, row in zip(lp.saved, rows):
            o = s.origin
            # the user's op, as the user's graph names it (an output index for a split's part)
            assert not INTERNAL.search(s.user_name), s.user_name
            assert o.name.rpartition(":")[0] in names if ":" in o.name else o.name in names
            assert o.line == _line(kind)
            # the row leads with it, then its kind and type per step; the compiled name last
            assert row.split()[0] == o.name
            assert f"  {o.op}  " in row and f"  {s.step_type}  " in row
            renamed = s.name not in (o.name, f"{o.name}:0")
            assert row.endswith(f"[{s.name}]") if renamed else "[" not in row
            # the rest of the row is the plan's own figures, as before
            assert f"{fmt_bytes(s.bytes_per_step):>10}  {s.steps:>6}  " \
                f"{fmt_bytes(s.total_bytes):>10}  {s.placement}" in row
            assert s.describe().startswith(f"{o.op} '{o.name}'")
            assert (f"compiled as {s.name}" in s.describe()) == renamed
            assert _line(kind) in s.describe()
        # (the passes renamed them all here: fused kernels' outputs, the state carried in)
        assert all(INTERNAL.search(s.name) for s in lp.saved)


def test_an_lstms_saved_tensors_are_its_gates_and_the_state_it_reads():
    """One LSTM step saves its four gates, tanh(c) and the state (c, h) it started from."""
    _, plan = _plan("lstm", 0.6)
    (lp,) = plan.loops
    got = {s.user_name: (s.origin.op, s.step_type) for s in lp.saved}
    cell = "rnn/while/lstm_cell/"
    want_ops = {"Sigmoid": "sigmoid", "Sigmoid_1": "sigmoid", "Sigmoid_2": "sigmoid",
                "Tanh": "tanh", "Tanh_1": "tanh"}
    for name, op in want_ops.items():
        assert got[cell + name] == (op, f"float32 [{B}, {H}]")
    state = {n: v for n, v in got.items() if n.endswith(" (t-1)")}
    assert len(state) == 2 and all(t == f"float32 [{B}, {H}]" for _, t in state.values())
    assert "(t-1): the loop's state as each step reads it" in str(plan)


def test_a_grus_split_gates_are_named_by_the_split_output():
    _, plan = _plan("gru", 0.6)
    got = {s.user_name: s for s in plan.saved}
    assert {"rnn/while/gru_cell/Split:0", "rnn/while/gru_cell/Split:1"} <= set(got)
    assert got["rnn/while/gru_cell/Split:1"].origin.op == "split"
    assert got["rnn/while/gru_cell/Sigmoid"].step_type == f"float32 [{B}, {2 * H}]"


def test_spilled_values_of_a_static_rnn_are_named_by_the_users_ops():
    g, plan = _plan("static", 0.3)
    assert plan.spilled
    names = _user_names(g)
    for s in plan.spilled:
        assert not INTERNAL.search(s.user_name)
        assert s.user_name.rpartition(":")[0] in names if ":" in s.user_name \
            else s.user_name in names
    text = str(plan)
    for s in sorted(plan.spilled, key=lambda s: -s.bytes)[:5]:
        assert f"  {s.user_name} " in text


@pytest.mark.parametrize("compiled, user", [
    ("rnn/while/lstm_cell/Mul_2/fused:5", "rnn/while/lstm_cell/Mul_2"),
    ("gradients/rnn/lstm_cell/kernel_grad/AddN/summed/joined:0",
     "gradients/rnn/lstm_cell/kernel_grad/AddN"),
    ("rnn/while/lstm_cell/Split/block_0_1", "rnn/while/lstm_cell/Split"),
    ("Mul/streamed/fused:1", "Mul"),
    ("rnn/Transpose_1/to_host:0", "rnn/Transpose_1"),
    ("rnn/while/lstm_cell/MatMul/batched/chunk", "rnn/while/lstm_cell/MatMul"),
    ("rnn/step_3/lstm_cell/Sigmoid:0", "rnn/step_3/lstm_cell/Sigmoid"),
    ("rnn/while/lstm_cell/split:1", "rnn/while/lstm_cell/split:1"),
    ("shape/chunk", "shape"),          # (a user's own lower-case name is never cut to nothing)
    ("X:0", "X")])
def test_the_users_op_of_a_compiled_name(compiled, user):
    assert user_op_name(compiled) == user
    assert SpilledValue(compiled, 4, "host").user_name == user


def test_a_saved_tensor_without_its_loop_keeps_its_name():
    s = SavedTensor("rnn/while/Tanh_1/fused:0", 0, None, 128, 12, "host")
    assert s.user_name == "rnn/while/Tanh_1" and s.step_type == "?"


def _loops(graph):
    return [n for n in graph.nodes if n.op.name == "loop"]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_names_survive_saving_the_compiled_program(kind, tmp_path):
    """A compiled program saved and loaded (rg.io: fused nodes keep the ops they fuse) plans to
    the same rows, named the same: the user's ops, lines, kinds and types per step."""
    g, X, y, train, init, feed = _model(kind)
    with rg.Session(g, device=rg.SimulatedDevice(10**8)) as s:
        s.run(init)
        plan = s.memory_plan(train, feed)
        budget = int(plan.keep_all_peak * 0.6)
    sess = rg.Session(g, passes=plan.passes)
    fed = [X, y]
    prog = sess.compile([train], fed)
    assert _loops(prog.graph)
    shapes = {prog.inputs[0]: (B, T, I), prog.inputs[1]: (B,)}
    before = make_plan(prog.schedule, shapes, budget=budget)
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    ins = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    saved = rg.io.read(rg.io.save(str(tmp_path / "prog.rg"), graph=prog.graph,
                                  fetches={**ins, **outs}))
    again = rg.Session(saved.graph, passes=False).compile(
        [saved.fetches[f"out_{i}"] for i in range(len(outs))],
        [saved.fetches[f"fed_{i}"] for i in range(len(ins))])
    after = make_plan(again.schedule, {again.inputs[0]: (B, T, I), again.inputs[1]: (B,)},
                      budget=budget)

    def rows(p):
        return [(s.user_name, s.origin.op, s.origin.line, s.step_type, s.name,
                 s.bytes_per_step, s.placement) for s in p.saved]
    assert rows(before) and rows(after) == rows(before)
    assert all(not INTERNAL.search(r[0]) and r[2] == _line(kind) for r in rows(after))
    assert str(after) == str(before)


def test_a_while_loops_ops_built_on_other_lines_get_their_own_column():
    """A user's while_loop body: its ops' lines (not the loop's) are printed per row, and the
    counter and state carried in are the ops that make them, at the step before."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [T, B, I], name="X")

        def body(i, h):
            return i + 1, rg.tanh(h * rg.gather(X, i))   # LINE body
        _, hN = rg.while_loop(lambda i, h: i < T, body,  # LINE loop
                              [rg.constant(0), rg.zeros([B, I])], maximum_iterations=T)
        grads = rg.gradients(rg.reduce_sum(hN), [X])
    plan = rg.Session(g, memory_budget=10**6).memory_plan(grads, {X: (T, B, I)})
    (lp,) = plan.loops
    text = str(plan)
    assert f"loop while (built at {_line('loop')}):" in text
    got = {s.user_name: s for s in lp.saved}
    assert {"while/Tanh", "while/Gather", "while/Tanh (t-1)", "while/Add (t-1)"} <= set(got)
    assert got["while/Add (t-1)"].step_type == "int32 []"
    header = next(line for line in text.splitlines() if line.startswith("  saved tensor"))
    assert "built at" in header
    for s in lp.saved:
        assert s.origin.line == _line("body")
        row = next(line for line in text.splitlines() if line.startswith(f"  {s.user_name}  "))
        assert f"  {_line('body')}" in row


def test_the_note_on_what_the_device_holds_names_the_users_ops():
    """A budget no plan meets: the note listing the largest values at the predicted peak names
    each by the user's op, the compiled name in brackets where a pass renamed it, as the tables
    do; before, it printed compiled names alone ("Concat/recompute:0")."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, 20, I], name="X")
        y = rg.placeholder(rg.int32, [B, 20], name="y")
        (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(rg.nn.LSTMCell(H), rg.nn.LSTMCell(H), X,
                                                      dtype=rg.float32)
        logits = rg.layers.dense(rg.concat([fw, bw], -1), C)
        loss = rg.losses.sparse_softmax_cross_entropy(y, logits)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    feed = {X: np.zeros((B, 20, I), np.float32), y: np.zeros((B, 20), np.int32)}
    plan = rg.Session(g, device=rg.SimulatedDevice(10**8), memory_budget=1).memory_plan(
        fetches, feed)
    note = next(n for n in plan.notes if n.startswith("at the predicted peak the device holds"))
    quoted = re.findall(r"'([^']+)' \(([^)]+)\)(?: \[([^\]]+)\])?", note)
    assert quoted, note
    names = _user_names(g) | {n.name for n in g.nodes}
    for user, _, compiled in quoted:
        assert not INTERNAL.search(user) and "/recompute" not in user, note
        assert user.partition(" (")[0].rpartition(":")[0] in names or user in names, note
        if compiled:
            assert user_op_name(compiled) == user and compiled != user, note
    assert any(compiled for _, _, compiled in quoted), note   # (a pass renamed some here)
