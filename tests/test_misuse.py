"""Bad input, tried as a new user would: a table of misuses, each with the exception type it
must raise and fragments its message must contain, naming what is wrong and where (the
placeholder, the op, the path, the user's line that built the offending node).

After every error the session that was in use stays usable: a good run afterwards gives
bit-identical results to one before, the variables are bit-identical (a failed training step
changed nothing), the default graph and name scope are as they were.

Rows marked `bug=...` document library bugs: they run as strict xfails until the lead fixes
the core code (then the mark must go).
"""
from __future__ import annotations

import inspect
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import InvalidArgumentError, OutOfMemoryError, ShapeError
from rnngraph.io import InvalidFileError
from rnngraph.ops.checks import NumericsError
from rnngraph.runtime.simulated import SimulatedDevice

B, T, D, H = 2, 4, 3, 5
FILE = "test_misuse.py"


def _next_line() -> int:
    """The line after the caller's: where the statement that builds a node starts."""
    return inspect.currentframe().f_back.f_lineno + 1


class Model:
    """The graph a new user has when things go wrong: an RNN over padded sequences with a
    training step, and the session running it. `lines` records which line built what."""

    def __init__(self):
        self.lines = {}
        self.graph = g = rg.Graph()
        with g.as_default():
            self.lines["X"] = _next_line()
            self.X = rg.placeholder(rg.float32, [None, T, D], name="X")
            self.lines["seq"] = _next_line()
            self.seq = rg.placeholder(rg.int32, [None], name="seq")
            self.lines["h0"] = _next_line()
            self.h0 = rg.placeholder(rg.float32, [None, H], name="h0")
            self.cell = rg.nn.BasicRNNCell(H)
            self.lines["rnn"] = _next_line()
            self.out, self.state = rg.nn.dynamic_rnn(self.cell, self.X, sequence_length=self.seq,
                                                     initial_state=self.h0)
            self.loss = rg.reduce_mean(rg.square(self.out)) + rg.reduce_mean(self.state)
            self.train = rg.train.GradientDescentOptimizer(0.1).minimize(self.loss)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((B, T, D)).astype(np.float32)
        self.good = {self.X: self.x, self.seq: np.array([4, 2], np.int32),
                     self.h0: np.zeros((B, H), np.float32)}
        self.sess = rg.Session(g)

    def feed(self, **changes):
        f = dict(self.good)
        for k, v in changes.items():
            f[getattr(self, k)] = v
        return f

    def snapshot(self):
        """The model's variables (only those it was built with) and a good run's results."""
        if not hasattr(self, "own_variables"):
            self.own_variables = list(rg.global_variables(self.graph))
        vals = {v.node.name: self.sess.read_variable(v).copy() for v in self.own_variables}
        return vals, self.sess.run([self.out, self.state, self.loss], self.good)


def other_graph_value(name="other_y"):
    g2 = rg.Graph()
    with g2.as_default():
        return rg.placeholder(rg.float32, [2], name=name)


def saved_file(m: Model, tmp_path):
    return rg.save(tmp_path / "model.npz", session=m.sess, fetches={"loss": m.loss})


def edit_saved(m: Model, tmp_path, edit):
    """A copy of the saved model whose graph.json went through `edit(doc)`."""
    src = saved_file(m, tmp_path)
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    doc = json.loads(members["graph.json"])
    edit(doc)
    members["graph.json"] = json.dumps(doc).encode()
    dst = tmp_path / "edited.npz"
    with zipfile.ZipFile(dst, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return str(dst)


def _first(doc, op):
    return next(n for n in doc["graph"]["nodes"] if n["op"] == op)


def _rename_op(doc):
    _first(doc, "square")["op"] = "lstm_block_v2"


def _make_cycle(doc):
    """The square of the outputs now reads the output of the last node of the graph."""
    nodes = doc["graph"]["nodes"]
    _first(doc, "square")["inputs"][0] = nodes[-1]["outputs"][0][0]


def _change_shape(doc):
    _first(doc, "square")["outputs"][0][2] = [7, 7]


# --- actions: each performs the misuse on a fresh Model ---------------------------------------
def build(fn):
    """Run `fn(m)` with the model's graph as the default graph (build-time misuse)."""
    def action(m, tmp_path):
        m.lines["action"] = fn.__code__.co_firstlineno  # the user's line, as errors quote it
        with m.graph.as_default():
            return fn(m)
    return action


def run(fetch, **feed_changes):
    def action(m, tmp_path):
        return m.sess.run(getattr(m, fetch), m.feed(**feed_changes))
    return action


def _stash_body_value(m):
    stash = []

    def body(i, acc):
        y = acc * 2.0
        stash.append(y)
        return i + 1, y

    rg.while_loop(lambda i, acc: i < 3, body, [rg.constant(0), rg.constant(1.0)])
    return m.sess.run(stash[0])


def _check_numerics_nan_input(m, tmp_path):
    sess = rg.Session(m.graph, check_numerics=True)
    x = m.x.copy()
    x[1, 2, 0] = np.nan
    return sess.run(m.loss, m.feed(X=x))


def _check_numerics_inf_from_op(m, tmp_path):
    with m.graph.as_default():
        m.lines["log"] = _next_line()
        bad = rg.log(rg.reduce_sum(m.out, axis=2))  # log of a non-positive number: NaN / -Inf
        y = rg.reduce_sum(bad)
    return rg.Session(m.graph, check_numerics=True).run(y, m.good)


def _simulated_budget(m, tmp_path):
    dev = SimulatedDevice(capacity=300)
    m.extra_session = sess = rg.Session(m.graph, device=dev, memory_budget=300)
    try:
        return sess.run(m.train, m.good)
    finally:
        m.after = lambda: _raise_capacity(m, dev)


def _raise_capacity(m, dev):
    dev.capacity = None  # the same session works once the device has room
    m.extra_session.run(m.out, m.good)


def _cycle_in_memory(m, tmp_path):
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float32, [2], name="a")
        b = rg.tanh(a, name="b")
        c = rg.exp(b, name="c")
    b.node.inputs[0] = c  # hand-edited IR: b reads c, which reads b
    return rg.Session(g).run(c, {a: np.ones(2, np.float32)})


def _truncated(m, tmp_path):
    src = saved_file(m, tmp_path)
    data = open(src, "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    return rg.load(tmp_path / "cut.npz")


def _flipped(m, tmp_path):
    src = saved_file(m, tmp_path)
    data = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo("graph.json")
    data[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # inside the deflated JSON
    (tmp_path / "flip.npz").write_bytes(bytes(data))
    return rg.load(tmp_path / "flip.npz")


# --- the table --------------------------------------------------------------------------------
@dataclass
class Misuse:
    name: str
    action: Callable
    exc: type
    fragments: Callable  # Model -> list of str fragments (or compiled regexes) of the message
    bug: str | None = None
    marks: list = field(default_factory=list)


def _at(key):
    return lambda m: f"{FILE}:{m.lines[key]}"


def frags(*parts):
    """Fragments; a callable part is resolved against the Model (e.g. a recorded line)."""
    return lambda m: [p(m) if callable(p) else p for p in parts]


ROWS = [
    # ---- feeds --------------------------------------------------------------------------------
    Misuse("feed_wrong_shape", run("out", X=np.zeros((B, T + 1, D), np.float32)), ValueError,
           frags("placeholder 'X'", "expects shape f32[?,4,3]", "(2, 5, 3)", _at("X"))),
    Misuse("feed_wrong_rank", run("out", X=np.zeros((T, D), np.float32)), ValueError,
           frags("placeholder 'X'", "(rank 3)", "shape (4, 3)", _at("X"))),
    Misuse("feed_wrong_dtype_complex", run("out", X=np.zeros((B, T, D), np.complex64)), TypeError,
           frags("placeholder 'X'", "has dtype float32", "complex64", _at("X"))),
    Misuse("feed_strings", run("out", X=np.full((B, T, D), "0.5")), TypeError,
           frags("placeholder 'X'", "has dtype float32", "<U3", _at("X"))),
    Misuse("missing_feed", lambda m, _: m.sess.run(m.out, {m.X: m.x, m.seq: [4, 2]}), ValueError,
           frags("placeholder 'h0'", "must be fed", _at("h0"))),
    Misuse("unknown_feed_name", lambda m, _: m.sess.run(m.out, {**m.good, "h_0": 0}), ValueError,
           frags("feed_dict key 'h_0' names no value in this graph")),
    Misuse("feed_key_not_a_value", lambda m, _: m.sess.run(m.out, {**m.good, 0: m.x}), TypeError,
           frags("feed_dict keys must be placeholders", "got int")),
    Misuse("feed_value_of_another_graph",
           lambda m, _: m.sess.run(m.out, {**m.good, other_graph_value(): np.zeros(2)}),
           ValueError, frags("cannot feed other_y:0", "another graph")),
    # ---- sequence_length ----------------------------------------------------------------------
    Misuse("seq_negative_in_training_step", run("train", seq=np.array([4, -1], np.int32)),
           InvalidArgumentError,
           frags("sequence_length[1] = -1 is outside [0, max_time = 4]", "check_sequence_length",
                 _at("rnn"))),
    Misuse("seq_longer_than_max_time", run("train", seq=np.array([5, 2], np.int32)),
           InvalidArgumentError,
           frags("sequence_length[0] = 5 is outside [0, max_time = 4]", _at("rnn"))),
    Misuse("seq_wrong_length_at_run_time", run("out", seq=np.array([4, 2, 1], np.int32)),
           InvalidArgumentError,
           frags("sequence_length has 3 entries but the inputs have batch size 2", _at("rnn"))),
    Misuse("seq_float_fed", run("out", seq=np.array([4.0, 1.5])), TypeError,
           frags("placeholder 'seq'", "has dtype int32", "float64", _at("seq"))),
    Misuse("seq_float_at_build_time",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c1"), m.X,
                                             sequence_length=[4.0, 2.0], dtype=rg.float32)),
           TypeError, frags("dynamic_rnn: sequence_length must be int32/int64, got float32")),
    Misuse("seq_wrong_length_at_build_time",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c2"),
                                             rg.placeholder(rg.float32, [B, T, D]),
                                             sequence_length=[4, 2, 1], dtype=rg.float32)),
           ValueError, frags("dynamic_rnn: sequence_length has 3 entries but the batch size is 2")),
    # ---- batch of the initial state -------------------------------------------------------------
    Misuse("init_state_batch_at_build_time",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c3"),
                                             rg.placeholder(rg.float32, [B, T, D]),
                                             initial_state=rg.placeholder(rg.float32, [3, H]))),
           ValueError, frags("dynamic_rnn: initial_state has batch 3 but the inputs have batch 2")),
    # dynamic_rnn sorts the batch by sequence length first: that is where the batch sizes meet
    Misuse("init_state_batch_at_run_time_passes_off",
           lambda m, _: rg.Session(m.graph, passes=False).run(
               m.out, m.feed(h0=np.zeros((3, H), np.float32))),
           InvalidArgumentError,
           frags("shape (3, 5) has 3 rows along axis 0 but the batch has 2",
                 "rnn/sort_by_length", "sequence_length must agree on the batch size",
                 _at("rnn"))),
    Misuse("init_state_batch_at_run_time", run("out", h0=np.zeros((3, H), np.float32)),
           InvalidArgumentError,
           frags("shape (3, 5) has 3 rows along axis 0 but the batch has 2", _at("rnn"))),
    Misuse("init_state_batch_1_at_run_time", run("state", h0=np.zeros((1, H), np.float32)),
           InvalidArgumentError,
           frags("shape (1, 5) has 1 rows along axis 0 but the batch has 2", _at("rnn"))),
    # ---- cells and inputs -----------------------------------------------------------------------
    Misuse("cell_of_the_wrong_type",
           build(lambda m: rg.nn.dynamic_rnn("lstm", m.X, dtype=rg.float32)), TypeError,
           frags("cell must be an instance of RNNCell, got str")),
    Misuse("cell_class_not_instance",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.LSTMCell, m.X, dtype=rg.float32)), TypeError,
           frags("cell must be an instance of RNNCell, got type")),
    Misuse("inputs_none",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c4"), None,
                                             dtype=rg.float32)),
           ValueError, frags("dynamic_rnn: inputs must not be None or empty")),
    Misuse("inputs_empty_list_static",
           build(lambda m: rg.nn.static_rnn(rg.nn.BasicRNNCell(H, name="c5"), [],
                                            dtype=rg.float32)),
           ValueError, frags("static_rnn: inputs must be a non-empty list of tensors")),
    Misuse("inputs_tensor_to_static_rnn",
           build(lambda m: rg.nn.static_rnn(rg.nn.BasicRNNCell(H, name="c6"), m.X,
                                            dtype=rg.float32)),
           TypeError, frags("static_rnn: inputs must be a list", "rg.unstack")),
    Misuse("neither_initial_state_nor_dtype",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c7"), m.X)),
           ValueError, frags("dynamic_rnn: give either initial_state or dtype")),
    Misuse("cell_dtype_conflicts_with_inputs",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, dtype=rg.float64, name="c8"),
                                             m.X, dtype=rg.float32)),
           TypeError, frags("matmul 'rnn/while/c8/MatMul'", "dtypes differ: float32 vs float64",
                            _at("action"))),
    Misuse("initial_state_dtype_conflicts_with_inputs",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c9"), m.X,
                                             initial_state=rg.placeholder(rg.float64, [None, H]))),
           TypeError, frags("dtypes differ: float32 vs float64", "c9/MatMul")),
    Misuse("integer_inputs",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c10"),
                                             rg.placeholder(rg.int32, [None, T, D]),
                                             dtype=rg.float32)),
           TypeError, frags("dtypes differ: int32 vs float32", "c10/MatMul")),
    Misuse("cell_reused_for_another_input_size",
           build(lambda m: rg.nn.dynamic_rnn(m.cell, rg.placeholder(rg.float32, [None, T, 7]),
                                             dtype=rg.float32)),
           ValueError, frags("BasicRNNCell 'basic_rnn_cell' was built for inputs of size 3, got 7")),
    Misuse("inputs_of_rank_2",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c11"),
                                             rg.placeholder(rg.float32, [None, D]),
                                             dtype=rg.float32)),
           ValueError, frags("dynamic_rnn: inputs must have rank >= 3", "f32[?,3]")),
    # ---- graphs, fetches, gradients -----------------------------------------------------------
    Misuse("fetch_from_another_graph",
           lambda m, _: m.sess.run(other_graph_value(), m.good), ValueError,
           frags("cannot fetch other_y:0", "built at test_misuse.py:", "another graph")),
    Misuse("fetch_a_string", lambda m, _: m.sess.run("loss", m.good), TypeError,
           frags("cannot fetch str 'loss'", "fetch Values")),
    Misuse("fetch_inside_a_loop_body", build(_stash_body_value), ValueError,
           frags("it lives inside a loop body", "fetch the loop's outputs")),
    Misuse("combine_values_of_two_graphs",
           build(lambda m: m.h0 + other_graph_value("other_h")), ValueError,
           frags("cannot combine values of different graphs", "h0:0", "other_h:0")),
    Misuse("matmul_shapes", build(lambda m: rg.matmul(m.h0, rg.placeholder(rg.float32, [4, 2]))),
           ShapeError, frags("matmul 'MatMul'", "inner dimensions differ", "5 != 4",
                             _at("action"))),
    Misuse("gradient_of_an_integer_value",
           build(lambda m: rg.gradients(rg.argmax(m.out, axis=2), [m.X])), TypeError,
           frags("cannot differentiate integer/bool value", "ArgMax",
                 lambda m: f"built at {FILE}:{m.lines['action']}")),
    Misuse("graph_with_a_cycle", _cycle_in_memory, ValueError, frags("cycle", "'b'", "'c'")),
    # ---- numerics -----------------------------------------------------------------------------
    Misuse("nan_caught_by_check_numerics_op",
           build(lambda m: m.sess.run(rg.check_numerics(m.out, "rnn outputs"),
                                      m.feed(X=np.full((B, T, D), np.nan, np.float32)))),
           NumericsError, frags("rnn outputs:", "has 30 NaN")),
    Misuse("nan_in_inputs_session_check_numerics", _check_numerics_nan_input, FloatingPointError,
           frags("placeholder 'X'", "NaN", _at("X"))),
    Misuse("inf_from_an_op_session_check_numerics", _check_numerics_inf_from_op,
           FloatingPointError, frags("log", _at("log")),
           marks=[pytest.mark.filterwarnings("ignore::RuntimeWarning")]),
    Misuse("unknown_session_option", lambda m, _: rg.Session(m.graph, chek_numerics=True),
           TypeError, frags("chek_numerics")),
    # ---- memory budget ------------------------------------------------------------------------
    Misuse("budget_below_one_step_on_a_capacity_limited_device", _simulated_budget,
           OutOfMemoryError, frags("simulated device out of memory", "capacity of 300 bytes",
                                   "memory_budget")),
    Misuse("budget_below_one_step", lambda m, _: rg.Session(m.graph, memory_budget=10).run(
        m.train, m.good), OutOfMemoryError,
           frags("memory_budget=10 bytes", "cannot be met on cpu", "the smallest plan found needs",
                 "sess.memory_plan")),
    Misuse("negative_budget", lambda m, _: rg.Session(m.graph, memory_budget=-1), ValueError,
           frags("memory_budget must be a positive number of bytes, got -1")),
    # ---- files --------------------------------------------------------------------------------
    Misuse("truncated_file", _truncated, InvalidFileError,
           frags("not a valid rnngraph file", "cut.npz")),
    Misuse("flipped_byte_in_file", _flipped, InvalidFileError,
           frags("not a valid rnngraph file", "flip.npz", "damaged or truncated archive")),
    Misuse("unknown_op_in_file",
           lambda m, tmp: rg.load(edit_saved(m, tmp, _rename_op)), InvalidFileError,
           frags("unknown op 'lstm_block_v2'", "(node 'Square')", "edited.npz")),
    Misuse("cycle_in_file",
           lambda m, tmp: rg.load(edit_saved(m, tmp, _make_cycle)), InvalidFileError,
           frags("edited.npz", "which is not defined before it")),
    Misuse("tampered_shape_in_file",
           lambda m, tmp: rg.load(edit_saved(m, tmp, _change_shape)), InvalidFileError,
           frags("edited.npz", "stored output types", "differ from its op's rule")),
    # ---- session configuration and variables ---------------------------------------------------
    Misuse("unknown_pass_name", lambda m, _: rg.Session(m.graph, passes={"fusion": False}),
           ValueError, frags("unknown passes ['fusion']", "known:", "fuse")),
    Misuse("load_variable_of_wrong_shape",
           lambda m, _: m.sess.load_variable(m.cell.kernel, np.zeros((5, 8), np.float32)),
           ValueError, frags("variable 'rnn/basic_rnn_cell/kernel' has shape (8, 5), got (5, 8)")),
    Misuse("load_variable_of_wrong_dtype",
           lambda m, _: m.sess.load_variable(m.cell.bias, np.array(["a"] * H)),
           TypeError, frags("variable 'rnn/basic_rnn_cell/bias' is float32")),
]


def _params():
    for row in ROWS:
        marks = list(row.marks)
        if row.bug:
            marks.append(pytest.mark.xfail(strict=True, reason="BUG: " + row.bug))
        yield pytest.param(row, id=row.name, marks=marks)


def test_table_is_big_enough_and_named_uniquely():
    assert len(ROWS) >= 25
    assert len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", list(_params()))
def test_misuse(row: Misuse, tmp_path):
    m = Model()
    m.after = None
    vars_before, results_before = m.snapshot()
    default_before = rg.get_default_graph()

    with pytest.raises(row.exc) as info:
        row.action(m, tmp_path)
    msg = str(info.value)
    for frag in row.fragments(m):
        if isinstance(frag, re.Pattern):
            assert frag.search(msg), f"{frag.pattern!r} not in: {msg}"
        else:
            assert frag in msg, f"{frag!r} not in: {msg}"

    # the session stays usable, nothing changed
    assert rg.get_default_graph() is default_before
    assert m.graph.current_scope() == ""
    if m.after is not None:
        m.after()
    vars_after, results_after = m.snapshot()
    assert vars_after.keys() == vars_before.keys()
    for k in vars_before:
        np.testing.assert_array_equal(vars_after[k], vars_before[k], err_msg=k)
    for a, b in zip(_leaves(results_after), _leaves(results_before)):
        np.testing.assert_array_equal(a, b)
    # and it still trains
    m.sess.run(m.train, m.good)
    assert not np.array_equal(m.sess.read_variable(m.cell.kernel),
                              vars_before[m.cell.kernel.node.name])


def _leaves(x):
    if isinstance(x, (list, tuple)):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_messages_have_no_internal_reprs(tmp_path):
    """Messages of the passing rows name things the user wrote, not Python object reprs."""
    for k, row in enumerate(ROWS):
        if row.bug:
            continue
        m = Model()
        m.after = None
        (tmp_path / str(k)).mkdir()
        with pytest.raises(row.exc) as info:
            row.action(m, tmp_path / str(k))
        msg = str(info.value)
        assert " object at 0x" not in msg, (row.name, msg)
        assert "\n" not in msg.strip(), (row.name, msg)
