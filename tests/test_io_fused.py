"""Saving and loading compiled programs' fused nodes (ops/fused.py, made by passes/fuse.py).

A fused node is saved as its program (each inner op's name, attributes and refs) and rebuilt
only from fusible ops of the registry, each inner op's attributes checked by its own schema and
every type derived by the inner ops' own rules; anything else is refused, naming the node and
what is wrong, before any code is generated, compiled or run."""
from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

import rnngraph as rg
from rnngraph import cli
from rnngraph.io import InvalidFileError, schema
from rnngraph.io.codec import op_state
from rnngraph.io.registry import op_registry
from rnngraph.ops.fused import Fused

from test_io import _members
from test_io_schema import _code_payload, _edited, _kernel_payload, _nodes, _plan_refuses, _refusal
from test_memory_chunks import _run_saved

B, T, I, H = 4, 5, 3, 6
LENGTHS = np.array([5, 2, 0, 3], np.int32)

CELLS = {
    "lstm": lambda: rg.nn.LSTMCell(H),
    "lstm_peephole_proj_clip": lambda: rg.nn.LSTMCell(H, use_peepholes=True, num_proj=4,
                                                       cell_clip=0.5),
    "gru": lambda: rg.nn.GRUCell(H),
    "basic_rnn": lambda: rg.nn.BasicRNNCell(H),
}


def _walk(graph):
    for node in graph.nodes:
        yield node
        for body in node.op.subgraphs():
            yield from _walk(body)


def _fused_nodes(graph) -> list:
    return [n for n in _walk(graph) if isinstance(n.op, Fused)]


def _compiled(cell: str, lengths: bool):
    """A dynamic_rnn with its loss and gradients, run once: (graph, session, compiled program
    with fused nodes, feed, fetched values)."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [B, T, I], name="x")
        seq = rg.placeholder(rg.int32, [B], name="lengths") if lengths else None
        out, _ = rg.nn.dynamic_rnn(CELLS[cell](), x, sequence_length=seq, dtype=rg.float32)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, [x] + rg.global_variables())
    rng = np.random.default_rng(3)
    fd = {x: rng.normal(size=(B, T, I)).astype(np.float32)}
    if lengths:
        fd[seq] = LENGTHS
    sess = rg.Session(g, seed=0)
    got = sess.run(fetches, fd)
    prog = sess.programs()[-1]
    assert _fused_nodes(prog.graph), "the fuse pass made no fused node"
    return g, sess, prog, fd, got


def _save(prog, path) -> str:
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    return rg.io.save(str(path), graph=prog.graph, fetches={**fed, **outs})


# --- round trips ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell, lengths", [("lstm", False), ("lstm", True),
                                           ("lstm_peephole_proj_clip", True),
                                           ("gru", False), ("gru", True), ("basic_rnn", False)])
def test_compiled_program_round_trips_and_runs(cell, lengths, tmp_path):
    g, sess, prog, fd, got = _compiled(cell, lengths)
    path = _save(prog, tmp_path / "prog.rg")
    saved = rg.io.read(path)
    assert str(saved.graph) == str(prog.graph)
    assert rg.format_graph(saved.graph, locations=True) == \
        rg.format_graph(prog.graph, locations=True)
    rg.verify(saved.graph)
    before, after = _fused_nodes(prog.graph), _fused_nodes(saved.graph)
    assert [n.name for n in after] == [n.name for n in before]
    for a, b in zip(after, before):
        assert op_state(a.op) == op_state(b.op)   # the program, origins included
        assert [v.type for v in a.outputs] == [v.type for v in b.outputs] == \
            a.op.retype([v.type for v in a.inputs])
    again = _run_saved(saved, prog, sess, g, fd)   # the loaded program as it is
    # and on the accelerated kernels (numba where installed), which its fused nodes compile to
    fast = _run_saved(saved, prog, sess, g, fd, accelerate=True)
    for a, c in zip(fast, got):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
    # the file's own session (Saved.session), whose passes run again on the compiled graph
    public = saved.session().run([saved.fetches[f"out_{i}"] for i in range(len(prog.outputs))],
                                 _feed(saved, prog, sess, g, fd))
    # the program's outputs are the fetches in order (loss, then the gradients)
    assert len(again) == len(public) == len(got)
    for a, b, c in zip(again, public, got):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)
        assert np.array_equal(a, c) and np.array_equal(b, c)   # the same kernels: bit for bit


def _feed(saved, prog, sess, g, fd) -> dict:
    """The loaded program's inputs as `prog` was fed by `fd`, and the variables' values."""
    values = {saved.fetches[f"fed_{i}"]: fd[next(k for k in fd if k.node.name == v.node.name)]
              for i, v in enumerate(prog.inputs)}
    store = {v.node.name: sess.run(v) for v in g.collections["variables"]}
    values.update({v: store[v.node.name] for v in saved.graph.collections["variables"]})
    return values


def _reference_lstm_loss(weights, bias, x):
    """sum(h**2) of a plain LSTM (gates i, j, f, o; forget bias 1) in NumPy."""
    h = np.zeros((B, H), np.float64)
    c = np.zeros((B, H), np.float64)
    total = 0.0
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(T):
        z = np.concatenate([x[:, t], h], axis=1) @ weights + bias
        i, j, f, o = np.split(z, 4, axis=1)
        c = c * sig(f + 1.0) + sig(i) * np.tanh(j)
        h = np.tanh(c) * sig(o)
        total += (h * h).sum()
    return total


def test_loaded_lstm_program_matches_numpy(tmp_path):
    """An independent check of the loaded program's forward value."""
    g, sess, prog, fd, got = _compiled("lstm", False)
    saved = rg.io.read(_save(prog, tmp_path / "prog.rg"))
    loss = _run_saved(saved, prog, sess, g, fd)[0]
    w, b = (sess.run(v) for v in g.collections["variables"])
    x = next(iter(fd.values()))
    np.testing.assert_allclose(loss, _reference_lstm_loss(w.astype(np.float64), b, x),
                               rtol=1e-5)


def test_saved_form_is_readable_json(tmp_path):
    _, _, prog, _, _ = _compiled("lstm", True)
    doc = json.loads(_members(_save(prog, tmp_path / "prog.rg"))["graph.json"])
    records = [nd for nd in _nodes(doc["graph"]) if nd["op"] == "fused"]
    by_name = {n.name: n for n in _fused_nodes(prog.graph)}
    assert len(records) == len(by_name)
    for nd in records:
        op = by_name[nd["name"]].op
        assert sorted(nd["attrs"]) == ["exports", "instrs", "n_inputs", "origins"]
        assert nd["attrs"]["n_inputs"] == op.n_inputs == len(nd["inputs"])
        for (name, attrs, refs), (inner, inner_refs) in zip(nd["attrs"]["instrs"], op.instrs):
            assert name == type(inner).name and refs == list(inner_refs)
            assert set(attrs) == {"dict"}   # the inner op's own attributes
            if name == "column_block":
                assert attrs["dict"] == {"start": inner.start, "stop": inner.stop}
        assert nd["attrs"]["exports"] == list(op.exports)
        assert [tuple(o) for o in nd["attrs"]["origins"]] == list(op._origins)


def test_rnngraph_print_and_plan_read_a_compiled_program(base, capsys):
    assert cli.main(["print", base]) == 0
    printed = capsys.readouterr().out
    assert "= fused[" in printed and "column_block" in printed
    assert cli.main(["plan", base]) == 0
    assert "/fused:" in capsys.readouterr().out   # the fused nodes' outputs, kept by the plan


def test_fused_ops_are_the_registrys_fusible_ops():
    fusible = {name for name, cls in op_registry().items()
               if getattr(cls, "fusible", False) and not cls.multi_output}
    assert set(schema.FUSED_OPS) == fusible | {schema.FUSED_JOIN}
    assert "fused" not in schema.FUSED_OPS and "loop" not in schema.FUSED_OPS
    for name in schema.FUSED_OPS:
        cls = op_registry()[name]
        assert name in schema.SCHEMAS and not cls.stateful and not schema.SCHEMAS[name].body


# --- refusals -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A saved compiled LSTM program (with sequence lengths: where, zeros_like, concat joins)."""
    _, _, prog, _, _ = _compiled("lstm", True)
    return _save(prog, tmp_path_factory.mktemp("fused") / "prog.rg")


def _fused(doc, join=False) -> dict:
    """The first fused node record (with a concat join, if `join`)."""
    return next(nd for nd in _nodes(doc["graph"]) if nd["op"] == "fused" and (
        not join or any(i[0] == "concat" for i in nd["attrs"]["instrs"])))


def _first(doc, op_name):
    """(record, index of its first instruction of op `op_name`)."""
    for nd in _nodes(doc["graph"]):
        if nd["op"] == "fused":
            for j, ins in enumerate(nd["attrs"]["instrs"]):
                if ins[0] == op_name:
                    return nd, j
    raise AssertionError(op_name)


def _set_instr(op_name, position, value):
    def edit(doc):
        nd, j = _first(doc, op_name)
        nd["attrs"]["instrs"][j][position] = value
        return nd["name"]
    return edit


def _set_ref(value, k=0):
    def edit(doc):
        nd = _fused(doc)
        nd["attrs"]["instrs"][-1][2][k] = value(nd) if callable(value) else value
        return nd["name"]
    return edit


def _set_attr(key, value):
    def edit(doc):
        nd = _fused(doc)
        nd["attrs"][key] = value(nd) if callable(value) else value
        return nd["name"]
    return edit


def _inner_attr(op_name, key, value):
    def edit(doc):
        nd, j = _first(doc, op_name)
        nd["attrs"]["instrs"][j][1]["dict"][key] = value
        return nd["name"]
    return edit


def _concat_reads_input(doc):
    nd = _fused(doc, join=True)
    ins = next(i for i in nd["attrs"]["instrs"] if i[0] == "concat")
    ins[2][0] = 0
    return nd["name"]


def _join_read(doc):
    nd = _fused(doc, join=True)
    instrs = nd["attrs"]["instrs"]
    j = next(j for j, i in enumerate(instrs) if i[0] == "concat")
    instrs.append(["neg", {"dict": {}}, [nd["attrs"]["n_inputs"] + j]])
    nd["attrs"]["origins"].append(["x", ""])
    return nd["name"]


def _output_shape(doc):
    nd = _fused(doc)
    nd["outputs"][0][2] = [7 if d is None else d + 1 for d in nd["outputs"][0][2]]
    return nd["name"]


def _output_dtype(doc):
    nd = _fused(doc)
    nd["outputs"][0][1] = "float64"
    return nd["name"]


def _extra_output(doc):
    nd = _fused(doc)
    nd["outputs"].append([10**7, "float32", [4, 6]])
    return nd["name"]


def _arity(doc):
    nd, j = _first(doc, "sigmoid")
    nd["attrs"]["instrs"][j][2].append(0)
    return nd["name"]


def _reordered(doc):
    nd = _fused(doc)
    nd["attrs"]["instrs"].insert(0, nd["attrs"]["instrs"].pop())
    return nd["name"]


def _no_dict_tag(doc):
    nd, j = _first(doc, "column_block")
    nd["attrs"]["instrs"][j][1] = nd["attrs"]["instrs"][j][1]["dict"]
    return nd["name"]


REFUSALS = {
    # inner ops that do not run inside a fused node
    "loop": (_set_instr("sigmoid", 0, "loop"), "op 'loop' cannot run inside a fused node"),
    "fused_in_fused": (_set_instr("sigmoid", 0, "fused"), "'fused' cannot run inside"),
    "variable": (_set_instr("sigmoid", 0, "variable"), "'variable' cannot run inside"),
    "assign": (_set_instr("mul", 0, "assign"), "'assign' cannot run inside"),
    "matmul": (_set_instr("mul", 0, "matmul"), "'matmul' cannot run inside"),
    "unknown": (_set_instr("sigmoid", 0, "no_such_op"), "'no_such_op' cannot run inside"),
    "code_as_name": (lambda d: _set_instr("sigmoid", 0, _kernel_payload("m"))(d),
                     "cannot run inside a fused node"),
    # payloads in an inner op's attributes (issue 24 item 2's `kernel`)
    "kernel_on_inner": (lambda d: _inner_attr("sigmoid", "kernel", _kernel_payload("m"))(d),
                        "(sigmoid): unknown attribute 'kernel'"),
    "string_start": (lambda d: _inner_attr("column_block", "start", _code_payload("m"))(d),
                     "attribute 'start' must be"),
    "list_stop": (lambda d: _inner_attr("column_block", "stop", [_code_payload("m")])(d),
                  "attribute 'stop' must be"),
    "missing_inner_attr": (lambda d: _set_instr("column_block", 1, {"dict": {"start": 0}})(d),
                           "missing attribute 'stop'"),
    "bad_block": (lambda d: _inner_attr("column_block", "stop", 10**6)(d), "not all inside"),
    "untagged_inner_attrs": (_no_dict_tag, "bad attribute value"),
    "inner_attrs_text": (_set_instr("sigmoid", 1, "import os"), "attribute 'instrs' must be"),
    "kernel_on_node": (_set_attr("kernel", _kernel_payload("m")), "unknown attribute 'kernel'"),
    "expr_on_node": (_set_attr("expr", _code_payload("m")), "unknown attribute 'expr'"),
    "missing_origins": (lambda d: _fused(d)["attrs"].pop("origins") and _fused(d)["name"],
                        "missing attribute 'origins'"),
    # refs
    "negative_ref": (_set_ref(-1), "ref 0 (-1) is out of range"),
    "bool_ref": (_set_ref(True), "ref 0 must be an int, got bool"),
    "float_ref": (_set_ref(0.0), "ref 0 must be an int, got float"),
    "string_ref": (_set_ref(_code_payload("m")), "ref 0 must be an int, got str"),
    "forward_ref": (_set_ref(lambda nd: nd["attrs"]["n_inputs"] + len(nd["attrs"]["instrs"]) - 1),
                    "is out of range"),
    "huge_ref": (_set_ref(10**12), "is out of range"),
    "reordered": (_reordered, "is out of range"),
    "arity": (_arity, "instruction"),
    "join_reads_input": (_concat_reads_input, "a join's parts are instructions' results"),
    "join_read_inside": (_join_read, "a join is only an output"),
    # exports, n_inputs, origins
    "export_out_of_range": (_set_attr("exports", lambda nd: [
        nd["attrs"]["n_inputs"] + len(nd["attrs"]["instrs"])]), "export 0"),
    "negative_export": (_set_attr("exports", [-1]), "export 0 (-1) is out of range"),
    "export_an_input": (_set_attr("exports", [0]), "names an input"),
    "export_twice": (_set_attr("exports", lambda nd: nd["attrs"]["exports"][:1] * 2),
                     "exports name one value twice"),
    "bool_export": (_set_attr("exports", [True]), "attribute 'exports' must be"),
    "no_export": (_set_attr("exports", []), "attribute 'exports' must be"),
    "n_inputs_more": (_set_attr("n_inputs", lambda nd: nd["attrs"]["n_inputs"] + 1),
                      "n_inputs is"),
    "n_inputs_zero": (_set_attr("n_inputs", 0), "ref 0 (0) is out of range"),
    "n_inputs_text": (_set_attr("n_inputs", "3"), "attribute 'n_inputs' must be"),
    "origin_newline": (_set_attr("origins", lambda nd: [[o[0], o[1] + "\nimport os"]
                                                         for o in nd["attrs"]["origins"]]),
                       "attribute 'origins' must be"),
    "origin_long": (_set_attr("origins", lambda nd: [["a" * 1001, o[1]]
                                                      for o in nd["attrs"]["origins"]]),
                    "attribute 'origins' must be"),
    "origin_bad_name": (_set_attr("origins", lambda nd: [["x'); import os", o[1]]
                                                          for o in nd["attrs"]["origins"]]),
                        "attribute 'origins' must be"),
    "origins_short": (_set_attr("origins", lambda nd: nd["attrs"]["origins"][1:]),
                      "origins has"),
    # the node's stored types must be what the inner ops' rules give
    "output_shape": (_output_shape, "differ from its op's rule"),
    "output_dtype": (_output_dtype, "differ from its op's rule"),
    "extra_output": (_extra_output, "differ from its op's rule"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_fused_nodes_are_refused_before_anything_runs(case, base, tmp_path, monkeypatch):
    edit, expected = REFUSALS[case]
    names = []
    path = _edited(base, tmp_path / "bad.rg", lambda doc: names.append(edit(doc)))
    ran = []
    real_exec, real_compile = builtins.exec, builtins.compile

    def watch(real):
        def call(*args, **kwargs):
            ran.append(args[0])
            return real(*args, **kwargs)
        return call
    monkeypatch.setattr(builtins, "exec", watch(real_exec))
    monkeypatch.setattr(builtins, "compile", watch(real_compile))
    try:
        with pytest.raises(InvalidFileError) as info:
            rg.io.read(path)
    finally:
        monkeypatch.undo()
    message = str(info.value)
    assert f"node {names[0]!r}" in message and expected in message, message
    assert not ran, "code was compiled or run while loading"
    assert not (tmp_path / "m").exists()


def test_planted_inner_code_never_runs(base, tmp_path, capsys):
    """The `kernel` planting of issue 24 on every inner op of a fused node, and a payload in
    place of a column block's bound: refused by `rg.io.read`, `rg.load` and `rnngraph plan`."""
    marker = tmp_path / "planted"

    def plant_kernel(doc):
        for nd in _nodes(doc["graph"]):
            if nd["op"] == "fused":
                for ins in nd["attrs"]["instrs"]:
                    ins[1]["dict"]["kernel"] = _kernel_payload(marker)

    def plant_bound(doc):
        _, j = _first(doc, "column_block")
        _first(doc, "column_block")[0]["attrs"]["instrs"][j][1]["dict"]["stop"] = \
            _code_payload(marker)

    for i, (edit, word) in enumerate([(plant_kernel, "unknown attribute 'kernel'"),
                                      (plant_bound, "attribute 'stop' must be")]):
        path = _edited(base, tmp_path / f"planted_{i}.rg", edit)
        message = _refusal(path, marker)
        assert word in message and "instruction" in message, message
        with pytest.raises(InvalidFileError, match=word):
            rg.load(path)
        _plan_refuses(path, marker, capsys, word)
        assert not marker.exists()


def test_a_well_formed_program_from_a_file_is_accepted(base, tmp_path):
    """The checks refuse what is wrong, not what is merely unusual: a fused node whose program
    is edited to other fusible ops (sigmoid -> tanh) loads, prints the new op and runs it."""
    def edit(doc):
        nd, j = _first(doc, "sigmoid")
        nd["attrs"]["instrs"][j][0] = "tanh"
    saved = rg.io.read(_edited(base, tmp_path / "tanh.rg", edit))
    node = next(n for n in _fused_nodes(saved.graph) if "tanh(" in n.op.expression())
    assert any(type(op).name == "tanh" for op, _ in node.op.instrs)
    x = [np.full([B if d is None else d for d in v.shape], 0.5, v.dtype.type)
         for v in node.inputs]
    outs = node.op.compute(np, *x)
    assert all(np.isfinite(o).all() for o in outs)


def test_the_printed_ir_says_what_a_fused_node_computes(tmp_path):
    """Each instruction prints under its node, with its op's attributes and refs: two files whose
    programs differ only in a column block's bounds print differently."""
    g, sess, prog, fd, got = _compiled("gru", False)
    printed = str(prog.graph)
    assert "= column_block[start=0, stop=" in printed and "\n" in printed
    first = _fused_nodes(prog.graph)[0]
    program = first.op.program_lines()
    assert program[-1].startswith("-> ") and all(line in printed for line in program)
    path = _save(prog, tmp_path / "prog.rg")

    def move_a_block(doc):
        for nd in _nodes(doc["graph"]):
            if nd["op"] == "fused":
                for name, attrs, _ in nd["attrs"]["instrs"]:
                    if name == "column_block" and attrs["dict"]["start"] == 0:
                        attrs["dict"]["start"], attrs["dict"]["stop"] = 1, \
                            attrs["dict"]["stop"] + 1
                        return

    edited = _edited(path, tmp_path / "edited.rg", move_a_block)
    other = rg.io.read(edited)
    assert str(other.graph) != str(rg.io.read(path).graph)
    assert "column_block[start=1, stop=" in str(other.graph)
