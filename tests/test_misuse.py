"""Bad input, tried as a new user (or a hostile file) would: a table of misuses at build time,
run time, in the planner, in saved files and on the command line, each with the exception type
it must raise and fragments its message must contain, naming what is wrong and where (the
placeholder, the op, the path and member, the user's line that built the offending node).

After every error the session that was in use stays usable: a good run afterwards gives
bit-identical results to one before, the variables are bit-identical (a failed training step
changed nothing), the default graph and name scope are as they were.

Rows marked `bug=...` document library bugs: they run as strict xfails until the lead fixes
the core code (then the mark must go).
"""
from __future__ import annotations

import hashlib
import contextlib
import inspect
import io
import json
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import rnngraph as rg
from rnngraph import cli
from rnngraph.errors import InvalidArgumentError, OutOfMemoryError, ShapeError
from rnngraph.io import InvalidFileError, LoadLimits
from rnngraph.ops.checks import NumericsError
from rnngraph.runtime.simulated import SimulatedDevice

from test_io import _rehash

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
    _rehash(members)
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


# --- hostile files (issue 28): each a copy of the saved model with one thing wrong -------------
MiB = 1 << 20


def _members_of(path) -> list:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _zip(path, items, compression=zipfile.ZIP_DEFLATED) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # duplicate names, on purpose
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in items:
                zf.writestr(name, data)
    return str(path)


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def hostile(change, compression=zipfile.ZIP_DEFLATED, limits=None, load=None):
    """An action loading a copy of the saved model whose member list went through
    `change(items) -> items` (graph.sha256 rewritten to match unless `change` sets it)."""
    def action(m, tmp_path):
        items = change(dict(_members_of(saved_file(m, tmp_path))), m)
        path = _zip(tmp_path / "hostile.npz", items, compression)
        return (load or rg.load)(path, limits=limits)
    return action


def _sha(raw: bytes) -> bytes:
    return f"{hashlib.sha256(raw).hexdigest()}  graph.json\n".encode()


def _json_bomb(members, m):
    raw = members["graph.json"]
    bomb = raw[:-2] + b" " * (24 * MiB) + raw[-2:]
    return [("graph.json", bomb), ("graph.sha256", _sha(bomb))] + \
        [(k, v) for k, v in members.items() if k.endswith(".npy")]


def _npy_bomb(members, m):
    members["variables/0.npy"] = _npy(np.zeros(4 * MiB, np.float32))
    return list(members.items())


def _huge_header(members, m):
    raw = _npy(np.zeros((8, 5), np.float32)).replace(b"(8, 5)", b"(1099511627776,)")
    members["variables/0.npy"] = raw
    return list(members.items())


def _dup(name):
    return lambda members, m: list(members.items()) + [(name, members[name])]


def _edited_no_rehash(members, m):
    members["graph.json"] = members["graph.json"].replace(b'"Square"', b'"Square2"')
    return list(members.items())


def _no_hash(members, m):
    del members["graph.sha256"]
    return list(members.items())


def _extra_member(members, m):
    return list(members.items()) + [("notes.txt", b"hello")]


def _object_array(members, m):
    members["variables/0.npy"] = _npy(np.array([None, 1], dtype=object))
    return list(members.items())


def _string_array(members, m):
    members["variables/0.npy"] = _npy(np.array(["a", "b"]))
    return list(members.items())


def _wrong_variable_value(members, m):
    members["variables/0.npy"] = _npy(np.zeros((2, 2), np.float32))
    return list(members.items())


def _newer_version(doc):
    doc["version"] = 99


def _deep_attribute(doc):
    deep = 1
    for _ in range(80):
        deep = [deep]
    _first(doc, "square")["attrs"]["x"] = deep


def _empty_file(m, tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    return rg.load(tmp_path / "empty.npz")


class CLIExit(Exception):
    """A test-local stand-in for the exit of the `rnngraph` command: 'exit <code>: <stderr>'."""


def cli_run(*argv, prepare=None):
    """An action running `rnngraph ARGV` (a callable argument gets (m, tmp_path) and returns a
    path); a non-zero exit raises CLIExit with the code and what it printed to stderr."""
    def action(m, tmp_path):
        args = [str(a(m, tmp_path)) if callable(a) else a for a in argv]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(args)
            except SystemExit as exc:   # argparse's usage errors
                code = exc.code
        if code:
            raise CLIExit(f"exit {code}: {err.getvalue().strip()}")
        return code
    return action


def _bomb_path(m, tmp_path):
    items = _json_bomb(dict(_members_of(saved_file(m, tmp_path))), m)
    return _zip(tmp_path / "bomb.npz", items)


def _truncated_path(m, tmp_path):
    data = open(saved_file(m, tmp_path), "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 3])
    return tmp_path / "cut.npz"


def _unhashed_path(m, tmp_path):
    items = _edited_no_rehash(dict(_members_of(saved_file(m, tmp_path))), m)
    return _zip(tmp_path / "edited.npz", items)


def _closed_session_run(m, tmp_path):
    sess = rg.Session(m.graph)
    sess.run(m.out, m.good)
    sess.close()
    return sess.run(m.out, m.good)


def _closed_session_plan(m, tmp_path):
    sess = rg.Session(m.graph)
    sess.close()
    return sess.memory_plan(m.train, m.good)


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
           frags("feed_dict keys must be tensors of this graph", "got int")),
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
           TypeError, frags("dtypes differ: float64 vs float32", "c9/MatMul")),
    Misuse("integer_inputs",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="c10"),
                                             rg.placeholder(rg.int32, [None, T, D]),
                                             dtype=rg.float32)),
           ValueError, frags("BasicRNNCell 'c10': inputs must be floating point", "int32")),
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
    Misuse("fetch_a_string", lambda m, _: m.sess.run("loss", m.good), ValueError,
           frags("Fetch argument 'loss' cannot be interpreted as a Tensor",
                 "refers to an Operation not in the graph")),
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
           frags("memory_budget=10 bytes", "cannot be met on cpu", "no plan found fits it",
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
    # ---- feeds and fetches, more (issue 28) -------------------------------------------------
    Misuse("feed_dict_as_a_list_of_pairs",
           lambda m, _: m.sess.run(m.out, list(m.good.items())), TypeError,
           frags("feed_dict must be a dict {placeholder: value}, got list")),
    Misuse("feed_dict_as_a_tuple", lambda m, _: m.sess.run(m.out, tuple(m.good.items())),
           TypeError, frags("feed_dict must be a dict", "got tuple")),
    Misuse("feed_ragged_nested_lists", run("out", X=[[[0.0] * D] * T, [[0.0] * D] * (T - 1)]),
           ValueError, frags("placeholder 'X'", _at("X"), "the fed value is not an array",
                             "inhomogeneous")),
    Misuse("feed_none", run("out", X=None), TypeError,
           frags("placeholder 'X'", "has dtype float32", "dtype object", _at("X"))),
    Misuse("feed_a_python_object", run("out", h0=object()), TypeError,
           frags("placeholder 'h0'", "dtype object", _at("h0"))),
    Misuse("feed_scalar_for_rank_3", run("out", X=1.0), ValueError,
           frags("placeholder 'X'", "(rank 3)", "shape ()", _at("X"))),
    Misuse("feed_scalar_sequence_length", run("out", seq=3), ValueError,
           frags("placeholder 'seq'", "expects shape i32[?]", _at("seq"))),
    Misuse("seq_int64_past_int32_fed_to_int32", run("out", seq=np.array([2**32 + 3, 2])),
           ValueError, frags("placeholder 'seq'", "has dtype int32, cannot feed 4294967299",
                             "outside [-2147483648, 2147483647]", _at("seq"))),
    Misuse("seq_int64_below_int32", run("train", seq=np.array([-2**31 - 5, 2])), ValueError,
           frags("placeholder 'seq'", "cannot feed -2147483653")),
    Misuse("feed_key_none", lambda m, _: m.sess.run(m.out, {**m.good, None: 1}), TypeError,
           frags("feed_dict keys must be tensors of this graph", "got NoneType")),
    Misuse("fetch_an_int", lambda m, _: m.sess.run(3, m.good), TypeError,
           frags("cannot fetch int 3", "fetch Values")),
    Misuse("fetch_a_dict_holding_a_string", lambda m, _: m.sess.run({"l": "loss"}, m.good),
           ValueError, frags("Fetch argument 'loss' cannot be interpreted as a Tensor")),
    Misuse("run_after_close", _closed_session_run, RuntimeError,
           frags("Attempted to use a closed Session")),
    Misuse("memory_plan_after_close", _closed_session_plan, RuntimeError,
           frags("Attempted to use a closed Session")),
    Misuse("feed_a_variable_and_train_it",
           lambda m, _: m.sess.run(m.train, {**m.good,
                                             m.cell.kernel: np.ones((D + H, H), np.float32)}),
           ValueError, frags("cannot feed variable 'rnn/basic_rnn_cell/kernel' in a run that "
                             "also assigns it", "GradientDescent", "TF1 refuses this too")),
    Misuse("feed_a_variable_by_name_and_train_it",
           lambda m, _: m.sess.run([m.loss, m.train],
                                   {**m.good, "rnn/basic_rnn_cell/bias:0": np.ones(H, np.float32)}),
           ValueError, frags("cannot feed variable 'rnn/basic_rnn_cell/bias'")),
    # ---- building, more ---------------------------------------------------------------------------
    Misuse("constant_of_an_object", build(lambda m: rg.constant(object())), TypeError,
           frags("constant Const: a tensor holds bool, integer, float or complex numbers",
                 "got object")),
    Misuse("constant_of_a_string", build(lambda m: rg.constant("0.5", name="half")), TypeError,
           frags("constant half", "got str (NumPy dtype <U3)")),
    Misuse("constant_of_ragged_lists", build(lambda m: rg.constant([[1.0, 2.0], [3.0]])),
           ValueError, frags("constant Const: cannot make an array of [[1.0, 2.0], [3.0]]")),
    Misuse("placeholder_of_an_unknown_dtype", build(lambda m: rg.placeholder("floaty", [2])),
           TypeError, frags("not a dtype: 'floaty'")),
    Misuse("placeholder_negative_dim", build(lambda m: rg.placeholder(rg.float32, [-2])),
           ShapeError, frags("bad dimension -2")),
    Misuse("reshape_wrong_size",
           build(lambda m: rg.reshape(rg.constant(np.zeros(6, np.float32)), [4, 2])), ShapeError,
           frags("reshape 'Reshape'", "cannot reshape [6] (6 elements) to [4, 2] (8 elements)",
                 _at("action"))),
    Misuse("transpose_not_a_permutation", build(lambda m: rg.transpose(m.X, [0, 0, 1])),
           ShapeError, frags("perm [0, 0, 1] is not a permutation", _at("action"))),
    Misuse("reduce_axis_out_of_range", build(lambda m: rg.reduce_sum(m.X, axis=5)), ShapeError,
           frags("reduce_sum 'ReduceSum'", "axis 5 is out of range for rank 3", _at("action"))),
    Misuse("concat_of_different_ranks", build(lambda m: rg.concat([m.X, m.h0], 1)), ShapeError,
           frags("concat 'Concat'", "inputs must have one rank", _at("action"))),
    Misuse("gradients_wrt_a_string", build(lambda m: rg.gradients(m.loss, "X")), TypeError,
           frags("gradients() takes Values, got str: 'X'")),
    Misuse("assign_to_a_placeholder", build(lambda m: rg.assign(m.h0, m.h0)), TypeError,
           frags("assign at", "ref must be a variable, got placeholder 'h0:0'")),
    Misuse("assign_of_the_wrong_shape",
           build(lambda m: rg.assign(m.cell.kernel, np.zeros((2, 2), np.float32))), ShapeError,
           frags("cannot assign shape (2, 2) to variable of shape (8, 5)", _at("action"))),
    Misuse("minimize_a_loss_without_variables",
           build(lambda m: rg.train.GradientDescentOptimizer(0.1).minimize(rg.reduce_sum(m.X))),
           ValueError, frags("does not depend on any of the variables")),
    Misuse("learning_rate_a_string", build(lambda m: rg.train.GradientDescentOptimizer("fast")),
           ValueError, frags("learning_rate must be > 0", "'fast'")),
    Misuse("matmul_of_vectors",
           build(lambda m: rg.matmul(rg.constant([1.0, 2.0]), rg.constant([1.0, 2.0]))),
           ShapeError, frags("matmul 'MatMul'", "operands must have rank >= 2", _at("action"))),
    Misuse("cast_to_an_unknown_dtype", build(lambda m: rg.cast(m.X, "foo")), TypeError,
           frags("not a dtype: 'foo'")),
    Misuse("static_rnn_inputs_of_two_sizes",
           build(lambda m: rg.nn.static_rnn(rg.nn.BasicRNNCell(H, name="s1"),
                                            [rg.placeholder(rg.float32, [2, 3]),
                                             rg.placeholder(rg.float32, [2, 4])],
                                            dtype=rg.float32)),
           ValueError, frags("BasicRNNCell 's1' was built for inputs of size 3, got 4")),
    Misuse("seq_of_rank_2",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="s2"), m.X,
                                             sequence_length=[[1, 2]], dtype=rg.float32)),
           ValueError, frags("dynamic_rnn: sequence_length must be a vector [batch], got i32[1,2]")),
    Misuse("seq_float_placeholder",
           build(lambda m: rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(H, name="s3"), m.X,
                                             sequence_length=rg.placeholder(rg.float32, [None]),
                                             dtype=rg.float32)),
           TypeError, frags("sequence_length must be int32/int64, got float32")),
    Misuse("zero_state_negative_batch", build(lambda m: m.cell.zero_state(-1, rg.float32)),
           ShapeError, frags("sizes must be >= 0, got [-1,5]", _at("action"))),
    Misuse("cell_of_zero_units", build(lambda m: rg.nn.BasicRNNCell(0)), ValueError,
           frags("num_units must be a positive int, got 0")),
    Misuse("cell_units_as_a_string", build(lambda m: rg.nn.GRUCell("5")), ValueError,
           frags("num_units must be a positive int, got '5'")),
    Misuse("multi_rnn_cell_of_nothing", build(lambda m: rg.nn.MultiRNNCell([])), ValueError,
           frags("MultiRNNCell needs at least one cell")),
    Misuse("while_condition_not_bool",
           build(lambda m: rg.while_loop(lambda i: i, lambda i: i + 1, [rg.constant(0)])),
           TypeError, frags("the loop condition must return a bool scalar, got i32[]")),
    Misuse("unstack_of_an_unknown_axis", build(lambda m: rg.unstack(m.X, axis=0)), ValueError,
           frags("unstack: the size of axis 0", "is unknown until run time; pass num=")),
    Misuse("split_into_unequal_parts",
           build(lambda m: rg.split(rg.constant(np.zeros(5, np.float32)), 2)), ShapeError,
           frags("does not split into 2 equal parts", _at("action"))),
    Misuse("one_hot_of_floats", build(lambda m: rg.one_hot(m.X, 3)), TypeError,
           frags("one_hot 'OneHot'", "indices must be integers, got float32", _at("action"))),
    Misuse("softmax_of_ints", build(lambda m: rg.nn.softmax(m.seq)), TypeError,
           frags("logits must be floating point, got int32", _at("action"))),
    Misuse("get_variable_twice",
           build(lambda m: rg.get_variable("rnn/basic_rnn_cell/kernel", [2])), ValueError,
           frags("rnn/basic_rnn_cell/kernel already exists", _at("rnn"))),
    Misuse("get_variable_initial_value_of_another_shape",
           build(lambda m: rg.get_variable("vv", [2, 3], initializer=np.zeros((3, 2)))),
           ValueError, frags("the initial value has shape [3, 2], but shape=[2, 3] was given")),
    Misuse("get_variable_with_an_unknown_dim",
           build(lambda m: rg.get_variable("vu", [None, 3])), ValueError,
           frags("variable shapes must be fully known", "vu")),
    # ---- sessions and the planner -----------------------------------------------------------------
    Misuse("session_of_a_string", lambda m, _: rg.Session("graph"), NotImplementedError,
           frags("Session: target='graph' (a remote TensorFlow master) is not supported")),
    Misuse("session_on_an_unknown_device", lambda m, _: rg.Session(m.graph, device="tpu"),
           ValueError, frags("unknown device 'tpu'", "'cpu'")),
    Misuse("session_accelerate_yes", lambda m, _: rg.Session(m.graph, accelerate="yes"),
           ValueError, frags("accelerate must be 'auto', True or False, got 'yes'")),
    Misuse("session_compile_loops_one", lambda m, _: rg.Session(m.graph, compile_loops=1),
           TypeError, frags("compile_loops must be True or False, got 1")),
    Misuse("budget_as_a_string", lambda m, _: rg.Session(m.graph, memory_budget="10MB"),
           TypeError, frags("memory_budget must be a number of bytes (an int), got str '10MB'")),
    Misuse("budget_as_a_bool", lambda m, _: rg.Session(m.graph, memory_budget=True), TypeError,
           frags("memory_budget must be a number of bytes", "got bool True")),
    Misuse("unknown_memory_strategy", lambda m, _: rg.Session(m.graph, memory_strategy="swap"),
           ValueError, frags("memory_strategy must be one of ['auto', 'offload', 'recompute'], "
                             "got 'swap'")),
    Misuse("memory_plan_wrong_shape",
           lambda m, _: m.sess.memory_plan(m.train, {m.X: (B, T + 1, D), m.seq: (B,),
                                                     m.h0: (B, H)}),
           ValueError, frags("memory_plan: placeholder 'X'", "expects shape f32[?,4,3]",
                             "got (2, 5, 3)", _at("X"))),
    Misuse("memory_plan_missing_feed", lambda m, _: m.sess.memory_plan(m.train, {m.X: (B, T, D)}),
           ValueError, frags("placeholder 'seq'", "must be fed a value", _at("seq"))),
    Misuse("memory_plan_lengths_as_a_list_past_max_time",   # (a list is a value, as in a run)
           lambda m, _: m.sess.memory_plan(m.train, {m.X: (B, T, D), m.seq: [T + 1, 2],
                                                     m.h0: (B, H)}),
           InvalidArgumentError,
           frags(f"sequence_length[0] = {T + 1} is outside [0, max_time = {T}]", _at("rnn"))),
    Misuse("memory_plan_float_lengths_as_a_list",   # (the run's own TypeError)
           lambda m, _: m.sess.memory_plan(m.train, {m.X: (B, T, D), m.seq: [2.5, 2],
                                                     m.h0: (B, H)}),
           TypeError, frags("placeholder 'seq'", "has dtype int32", "float64")),
    Misuse("memory_plan_feed_as_a_list",
           lambda m, _: m.sess.memory_plan(m.train, [(m.X, (B, T, D))]), TypeError,
           frags("feed_dict must be a dict {placeholder: value or shape}, got list")),
    Misuse("memory_plan_of_another_graph",
           lambda m, _: m.sess.memory_plan(other_graph_value(), m.good), ValueError,
           frags("cannot fetch other_y:0", "another graph")),
    Misuse("read_a_placeholder_as_a_variable", lambda m, _: m.sess.read_variable(m.X), KeyError,
           frags("'X' is not a variable")),
    Misuse("load_an_unknown_variable",
           lambda m, _: m.sess.load_variable("nope", np.zeros(2, np.float32)), KeyError,
           frags("no node named 'nope'")),
    # ---- hostile and damaged files (issue 28) -------------------------------------------------------
    Misuse("file_graph_json_bomb", hostile(_json_bomb), InvalidFileError,
           frags("hostile.npz", "member 'graph.json'", "would decompress to 24.0 MiB",
                 "max_ratio=100", "refused before decompressing")),
    Misuse("file_npy_bomb", hostile(_npy_bomb), InvalidFileError,
           frags("member 'variables/0.npy'", "would decompress to 16.0 MiB", "max_ratio")),
    Misuse("file_npy_header_declares_4_tib", hostile(_huge_header, zipfile.ZIP_STORED),
           InvalidFileError, frags("member 'variables/0.npy'", "float32[1099511627776]",
                                   "(4.0 TiB) but the member holds")),
    Misuse("file_two_graph_json", hostile(_dup("graph.json")), InvalidFileError,
           frags("member 'graph.json': appears twice")),
    Misuse("file_two_copies_of_an_array", hostile(_dup("variables/0.npy")), InvalidFileError,
           frags("member 'variables/0.npy': appears twice")),
    Misuse("file_edited_without_its_hash", hostile(_edited_no_rehash), InvalidFileError,
           frags("member 'graph.json': its content does not match the hash in graph.sha256")),
    Misuse("file_without_its_hash", hostile(_no_hash), InvalidFileError,
           frags("member 'graph.sha256': missing")),
    Misuse("file_with_a_foreign_member", hostile(_extra_member), InvalidFileError,
           frags("member 'notes.txt': is not a member rnngraph writes")),
    Misuse("file_compressed_with_bzip2", hostile(lambda mem, m: list(mem.items()),
                                                 zipfile.ZIP_BZIP2),
           InvalidFileError, frags("uses compression method 12")),
    Misuse("file_with_an_object_array", hostile(_object_array), InvalidFileError,
           frags("member 'variables/0.npy'", "pickled data", "never loads")),
    Misuse("file_with_a_string_array", hostile(_string_array), InvalidFileError,
           frags("member 'variables/0.npy'", "unsupported array dtype <U1")),
    Misuse("file_variable_value_of_another_shape", hostile(_wrong_variable_value),
           InvalidFileError, frags("member 'variables/0.npy'", "the saved value of variable",
                                   "float32[2, 2]")),
    Misuse("file_over_the_node_limit", hostile(lambda mem, m: list(mem.items()),
                                               limits=LoadLimits(max_nodes=10)),
           InvalidFileError, frags("member 'graph.json'", "more than max_nodes=10 nodes")),
    Misuse("file_loops_over_the_nesting_limit", hostile(lambda mem, m: list(mem.items()),
                                                        limits=LoadLimits(max_depth=1)),
           InvalidFileError, frags("loops nested more than max_depth=1 deep")),
    Misuse("file_member_over_its_limit",
           hostile(lambda mem, m: list(mem.items()), limits=LoadLimits(max_graph_bytes=1000)),
           InvalidFileError, frags("member 'graph.json'", "more than the limit of 1000 bytes")),
    Misuse("file_attribute_nested_too_deeply",
           lambda m, tmp: rg.load(edit_saved(m, tmp, _deep_attribute)), InvalidFileError,
           frags("edited.npz", "nested more than max_depth=64 deep")),
    Misuse("file_of_a_newer_format", lambda m, tmp: rg.load(edit_saved(m, tmp, _newer_version)),
           InvalidFileError, frags("edited.npz", "format version 99", "upgrade rnngraph")),
    Misuse("file_empty", _empty_file, InvalidFileError,
           frags("not a valid rnngraph file", "empty.npz", "not an .npz/zip archive")),
    Misuse("file_is_a_directory", lambda m, tmp: rg.load(tmp), InvalidFileError,
           frags("is a directory")),
    Misuse("file_missing", lambda m, tmp: rg.load(tmp / "nope.npz"), FileNotFoundError,
           frags("nope.npz")),
    Misuse("restore_a_bomb", hostile(_json_bomb, load=rg.io.restore), InvalidFileError,
           frags("member 'graph.json'", "max_ratio=100")),
    Misuse("load_limits_of_the_wrong_type",
           lambda m, tmp: rg.load(saved_file(m, tmp), limits={"max_nodes": 5}), TypeError,
           frags("limits must be an rg.io.LoadLimits, got dict")),
    Misuse("load_limits_out_of_range", lambda m, tmp: LoadLimits(max_ratio=0), ValueError,
           frags("LoadLimits: max_ratio must be a number >= 1, got 0")),
    Misuse("save_fetches_as_a_list",
           lambda m, tmp: rg.save(tmp / "f.npz", session=m.sess, fetches=[m.loss]), TypeError,
           frags("save: fetches must be a dict {name: Value}")),
    Misuse("save_with_a_session_of_another_graph",
           lambda m, tmp: rg.save(tmp / "g.npz", graph=rg.Graph(), session=m.sess), ValueError,
           frags("save: the session runs another graph than the one being saved")),
    # ---- the command line --------------------------------------------------------------------------
    Misuse("cli_print_a_missing_file", cli_run("print", "nope/model.npz"), CLIExit,
           frags("exit 1: rnngraph print: error: no such file: nope/model.npz")),
    Misuse("cli_print_an_unknown_example", cli_run("print", "lstmm"), CLIExit,
           frags("exit 1", "'lstmm' is neither a file nor a built-in example")),
    Misuse("cli_print_a_bomb", cli_run("print", _bomb_path), CLIExit,
           frags("exit 1: rnngraph print: error: not a valid rnngraph file", "bomb.npz",
                 "member 'graph.json'", "max_ratio=100")),
    Misuse("cli_render_an_edited_file", cli_run("render", _unhashed_path, "-o", "x.dot"),
           CLIExit, frags("exit 1: rnngraph render: error:", "does not match the hash")),
    Misuse("cli_plan_a_truncated_file", cli_run("plan", _truncated_path), CLIExit,
           frags("exit 1: rnngraph plan: error: not a valid rnngraph file", "cut.npz")),
    Misuse("cli_plan_a_budget_in_words", cli_run("plan", "lstm", "--budget", "lots"), CLIExit,
           frags("exit 2", "argument --budget: invalid size 'lots'")),
    Misuse("cli_plan_batch_zero", cli_run("plan", "lstm", "--batch", "0"), CLIExit,
           frags("exit 2", "argument --batch: expected a positive integer, got '0'")),
    Misuse("cli_unroll_a_saved_file", cli_run("print", saved_file, "--unroll", "static"),
           CLIExit, frags("exit 1", "--unroll applies to built-in examples")),
]


def _params():
    for row in ROWS:
        marks = list(row.marks)
        if row.bug:
            marks.append(pytest.mark.xfail(strict=True, reason="BUG: " + row.bug))
        yield pytest.param(row, id=row.name, marks=marks)


def test_table_is_big_enough_and_named_uniquely():
    assert len(ROWS) >= 100
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
