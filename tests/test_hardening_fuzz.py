"""A fuzz target for the loader (issue 28): hypothesis mutates a saved model's graph.json
document and its zip layout, and `rg.load` must either load the file or raise
InvalidFileError: never another exception, never MemoryError, never a hang (over 5 s).

Document mutations replace, delete, duplicate or swap values anywhere in graph.json (with
JSON values of every kind: huge and negative ints, NaN, deep lists, tagged objects) and
usually rewrite graph.sha256 to match, so the decoder behind the hash is what gets fuzzed.
Layout mutations drop, duplicate, rename and recompress members, rewrite .npy headers (shapes,
dtypes, object arrays), cut the file short and flip bytes.

The CI profile runs 2000 examples, derandomised (the same ones every run), with no example
database; RNNGRAPH_FUZZ_PROFILE=long searches at random for longer.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import tempfile
import time
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

import rnngraph as rg
from rnngraph.io import InvalidFileError

LONG = os.environ.get("RNNGRAPH_FUZZ_PROFILE") == "long"
FUZZ = settings(max_examples=20000 if LONG else 2000, deadline=None, derandomize=not LONG,
                database=None, print_blob=True,
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HANG_S = 5.0


def _model_members() -> dict:
    """A small saved training graph: a dynamic_rnn loop over padded sequences, a stored
    constant (more than 16 elements), inline constants and the session's variable values."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 3, 2], name="X")
        seq = rg.placeholder(rg.int32, [None], name="seq")
        out, state = rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(3), X, sequence_length=seq,
                                       dtype=rg.float32)
        table = rg.constant(np.arange(24, dtype=np.float32).reshape(8, 3), name="table")
        loss = rg.reduce_mean(rg.square(out)) + rg.reduce_sum(rg.matmul(state, rg.transpose(
            table)))
        train = rg.train.GradientDescentOptimizer(0.1).minimize(loss)
    sess = rg.Session(g)
    with tempfile.TemporaryDirectory() as d:
        path = rg.save(os.path.join(d, "m.npz"), session=sess,
                       fetches={"loss": loss, "train": train})
        with zipfile.ZipFile(path) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist()}


_BASE: dict = {}


def _base() -> dict:
    if not _BASE:
        _BASE.update(_model_members())
    return _BASE


# --- strategies ---------------------------------------------------------------------------------
_ints = st.one_of(st.integers(-3, 40), st.sampled_from([-1, 2**31, 2**63, 10**30, -2**63]))
_scalars = st.one_of(st.none(), st.booleans(), _ints,
                     st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from(["", "x", "float32", "int64", "object", "loop", "tanh",
                                      "placeholder", "variables/0", "constants/0", "../x",
                                      "os.system", "__class__", "\u00e9\n", "a" * 300]))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["list", "array", "ndarray", "shape", "data", "scalar",
                                         "value", "dtype", "dict", "initializer", "params",
                                         "name", "op", "nodes", "x"]), inner, max_size=3)),
    max_leaves=12)


def _paths(x, prefix=()):
    """Every (path) into a JSON document, in a fixed order."""
    out = [prefix]
    if isinstance(x, dict):
        for k in sorted(x):
            out += _paths(x[k], prefix + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def _mutate_doc(doc, op, i, j, value):
    paths = _paths(doc)
    path = paths[i % len(paths)]
    if not path:
        return value if op == "replace" else doc
    parent, key = _get(doc, path[:-1]), path[-1]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif op == "swap":
        other = paths[j % len(paths)]
        if other and other[:len(path)] != path and path[:len(other)] != other:
            oparent, okey = _get(doc, other[:-1]), other[-1]
            parent[key], oparent[okey] = oparent[okey], parent[key]
    elif op == "bump" and isinstance(parent[key], int) and not isinstance(parent[key], bool):
        parent[key] += value if isinstance(value, int) and not isinstance(value, bool) else 1
    return doc


_doc_edits = st.lists(st.tuples(st.sampled_from(["replace", "delete", "duplicate", "swap",
                                                 "bump"]),
                                st.integers(0, 10**6), st.integers(0, 10**6), _json),
                      min_size=1, max_size=4)

_dtypes = st.sampled_from(["<f4", ">f8", "|b1", "<i8", "|O", "<U3", "|V8", "<c8", "<M8[s]",
                           "[('a', '<f4')]"])
_header = st.fixed_dictionaries({
    "descr": _dtypes,
    "fortran_order": st.booleans(),
    "shape": st.lists(st.one_of(st.integers(0, 5), st.sampled_from([2**40, 2**62, -1])),
                      max_size=3)})


def _npy_with_header(h: dict, data: bytes) -> bytes:
    text = "{'descr': %s, 'fortran_order': %r, 'shape': %s, }" % (
        h["descr"] if h["descr"].startswith("[") else repr(h["descr"]), h["fortran_order"],
        repr(tuple(h["shape"])))
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1") + data


_layout = st.lists(st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 99)),
    st.tuples(st.just("duplicate"), st.integers(0, 99)),
    st.tuples(st.just("rename"), st.integers(0, 99),
              st.sampled_from(["graph.json", "graph.sha256", "constants/0.npy", "variables/9.npy",
                               "x.npy", "variables/0.npy"])),
    st.tuples(st.just("stored"), st.booleans()),
    st.tuples(st.just("header"), st.integers(0, 99), _header, st.integers(0, 64)),
    st.tuples(st.just("cut"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.floats(0.0, 1.0), st.integers(1, 255)),
), max_size=3)


def _build(doc_edits, rehash, layout) -> bytes:
    members = dict(_base())
    doc = json.loads(members["graph.json"])
    for op, i, j, value in doc_edits:
        doc = _mutate_doc(doc, op, i, j, value)
    raw = json.dumps(doc).encode()
    members["graph.json"] = raw
    if rehash:
        members["graph.sha256"] = f"{hashlib.sha256(raw).hexdigest()}  graph.json\n".encode()
    items = list(members.items())
    compression, cut, flips = zipfile.ZIP_DEFLATED, None, []
    for edit in layout:
        kind = edit[0]
        if kind == "drop" and items:
            items.pop(edit[1] % len(items))
        elif kind == "duplicate" and items:
            items.append(items[edit[1] % len(items)])
        elif kind == "rename" and items:
            k = edit[1] % len(items)
            items[k] = (edit[2], items[k][1])
        elif kind == "stored":
            compression = zipfile.ZIP_STORED if edit[1] else zipfile.ZIP_DEFLATED
        elif kind == "header":
            npys = [k for k, (n, _) in enumerate(items) if n.endswith(".npy")]
            if npys:
                k = npys[edit[1] % len(npys)]
                items[k] = (items[k][0], _npy_with_header(edit[2], b"\x00" * edit[3]))
        elif kind == "cut":
            cut = edit[1]
        elif kind == "flip":
            flips.append((edit[1], edit[2]))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # duplicate names, on purpose
        with zipfile.ZipFile(buf, "w", compression) as zf:
            for name, data in items:
                zf.writestr(name, data)
    data = bytearray(buf.getvalue())
    for where, mask in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= mask
    if cut is not None:
        data = data[:int(cut * len(data))]
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def test_base_file_loads():
    members = _base()
    assert {"graph.json", "graph.sha256", "constants/0.npy"} <= set(members)
    assert any(n.startswith("variables/") for n in members)


@FUZZ
@given(doc_edits=st.one_of(st.just([]), _doc_edits),
       rehash=st.sampled_from([True, True, True, False]), layout=_layout)
def test_loader_never_crashes_or_hangs(fuzz_dir, doc_edits, rehash, layout):
    data = _build(doc_edits, rehash, layout)
    path = fuzz_dir / "fuzzed.npz"
    path.write_bytes(data)
    note(f"{len(data)} bytes")
    start = time.monotonic()
    try:
        rg.load(path)
        event("loaded")
    except InvalidFileError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        event("refused: " + (msg.split("member ")[1].split(":")[0] if "member " in msg
                             else msg.split(": ")[-1][:30]))
    # anything else (MemoryError, KeyError, RecursionError, ...) fails the test as it is
    elapsed = time.monotonic() - start
    assert elapsed < HANG_S, f"loading took {elapsed:.1f} s"
    assert math.isfinite(elapsed)
