"""rg.save / rg.load: exact round trips, and clear rejection of files that are not ours."""
from __future__ import annotations

import hashlib
import json
import pickle
import zipfile

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.io import InvalidFileError


# --- helpers -------------------------------------------------------------------------------------
def _text(graph) -> str:
    return rg.format_graph(graph, locations=True)


def _members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rehash(members: dict) -> dict:
    """graph.sha256 matching graph.json again, as after a deliberate edit (the hash is
    sha256sum's line for graph.json)."""
    if "graph.sha256" in members:
        digest = hashlib.sha256(members["graph.json"]).hexdigest()
        members["graph.sha256"] = f"{digest}  graph.json\n".encode()
    return members


def _write_members(path, members: dict, rehash: bool = True) -> None:
    if rehash:
        _rehash(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _edit_json(src, dst, edit) -> None:
    members = _members(src)
    doc = json.loads(members["graph.json"])
    edit(doc)
    members["graph.json"] = json.dumps(doc).encode()
    _write_members(dst, members)


def _nodes(doc, op=None):
    """All node records (bodies included), optionally only those of one op."""
    out = []

    def walk(g):
        for n in g["nodes"]:
            out.append(n)
            for b in n.get("bodies", []):
                walk(b)
    walk(doc["graph"])
    return [n for n in out if op is None or n["op"] == op]


def _lstm_training_graph():
    """The issue's round-trip case: dynamic_rnn LSTM, gradients and an Adam train op."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 6, 5], name="X")
        y = rg.placeholder(rg.int32, [None], name="y")
        seq = rg.placeholder(rg.int32, [None], name="seq_len")
        cell = rg.nn.LSTMCell(7, use_peepholes=True)
        outputs, state = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, dtype=rg.float32)
        logits = rg.layers.dense(state.h, 3)
        loss = rg.losses.sparse_softmax_cross_entropy(y, logits) + \
            0.1 * rg.reduce_mean(rg.square(outputs[:, -1, ::2]))
        train = rg.train.AdamOptimizer(0.01).minimize(loss)
        grads = rg.gradients(loss, [X])
    rng = np.random.default_rng(0)
    feed = {X: rng.normal(size=(4, 6, 5)).astype(np.float32), y: np.array([0, 1, 2, 1]),
            seq: np.array([6, 3, 1, 5])}
    return g, feed, {"loss": loss, "train": train, "dX": grads[0], "logits": logits}


def _rebind(feed, graph):
    return {graph.get_value(k.name): v for k, v in feed.items()}


# --- round trips ---------------------------------------------------------------------------------
def test_lstm_training_graph_round_trips_exactly(tmp_path):
    g, feed, f = _lstm_training_graph()
    sess = rg.Session(g, seed=7)
    sess.run(f["train"], feed)  # values differ from their initializers now
    path = rg.save(tmp_path / "model.npz", session=sess, fetches=f)

    saved = rg.io.read(path)
    g2 = saved.graph
    assert _text(g2) == _text(g)
    rg.verify(g2)
    assert set(saved.fetches) == set(f)
    for name, v in f.items():
        assert saved.fetches[name].name == v.name and saved.fetches[name].id == v.id

    sess2 = saved.session()
    feed2 = _rebind(feed, g2)
    for name in ("loss", "dX", "logits"):
        np.testing.assert_array_equal(sess.run(f[name], feed), sess2.run(saved.fetches[name], feed2))
    # one more training step in both: identical updates, identical variables
    sess.run(f["train"], feed)
    sess2.run(saved.fetches["train"], feed2)
    for v in rg.global_variables(g):
        np.testing.assert_array_equal(sess.read_variable(v), sess2.read_variable(v.node.name))


def test_load_returns_graph_and_values(tmp_path):
    g, feed, f = _lstm_training_graph()
    sess = rg.Session(g, seed=1)
    sess.run(f["train"], feed)
    rg.save(tmp_path / "m.npz", session=sess)
    g2, values = rg.load(tmp_path / "m.npz")
    assert isinstance(g2, rg.Graph)
    names = {v.node.name for v in rg.global_variables(g)}
    assert set(values) == names
    for name, arr in values.items():
        np.testing.assert_array_equal(arr, sess.read_variable(name))
        assert arr.dtype == sess.read_variable(name).dtype
    assert [v.node.name for v in rg.global_variables(g2)] == \
        [v.node.name for v in rg.global_variables(g)]


def test_graph_without_session_restores_seeded_initial_values(tmp_path):
    g, feed, f = _lstm_training_graph()
    rg.save(tmp_path / "g.npz", graph=g)
    g2, values = rg.load(tmp_path / "g.npz")
    assert values == {}
    a = rg.Session(g, seed=0).run(f["loss"], feed)
    sess2 = rg.io.restore(tmp_path / "g.npz")  # a Session on a freshly loaded graph
    g3 = sess2.graph
    assert g3 is not g2 and _text(g3) == _text(g2) == _text(g)
    b = sess2.run(g3.get_value(f["loss"].name), _rebind(feed, g3))
    np.testing.assert_array_equal(a, b)


def _build_static_gru():
    X = rg.placeholder(rg.float32, [None, 3, 4], name="X")
    seq = rg.placeholder(rg.int64, [None], name="seq")
    xs = rg.unstack(rg.transpose(X, [1, 0, 2]))
    outs, state = rg.nn.static_rnn(rg.nn.GRUCell(5), xs, dtype=rg.float32, sequence_length=seq)
    y = rg.reduce_sum(rg.stack(outs, axis=1) * 2.0) + rg.reduce_sum(state)
    return {"X": (X, (2, 3, 4)), "seq": (seq, np.array([3, 1]))}, [y] + rg.gradients(y, [X])


def _build_multi_bidirectional():
    X = rg.placeholder(rg.float32, [None, None, 3], name="X")
    cells = [rg.nn.MultiRNNCell([rg.nn.BasicRNNCell(4), rg.nn.LSTMCell(3)]),
             rg.nn.GRUCell(2)]
    (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(cells[0], cells[1], X, dtype=rg.float32)
    y = rg.reduce_mean(rg.concat([fw, bw], axis=2))
    return {"X": (X, (2, 5, 3))}, [y, fw] + rg.gradients(y, [X])


def _build_misc_ops():
    x = rg.placeholder(rg.float32, [None, 4], name="x")
    k = rg.placeholder(rg.int32, [], name="k")
    w = rg.Variable(np.arange(8, dtype=np.float32).reshape(4, 2) / 10, name="w")
    c64 = rg.constant(np.array([1.5, np.inf, -np.inf]), name="c64")         # float64, inf
    nan = rg.constant(np.array([np.nan, 1.0], np.float32), name="nan")
    big = rg.constant(np.linspace(0, 1, 40, dtype=np.float32).reshape(2, 20))  # stored as .npy
    flags = rg.constant(np.array([True, False]), name="flags")
    h = rg.matmul(x, w)[..., None, ::-1]                                   # getitem: ..., newaxis
    z = rg.fill([rg.dim(x, 0), 3], 0.25) + rg.reduce_max(big)
    oh = rg.one_hot(rg.argmax(x, axis=1), k)                                # runtime depth
    ok = rg.reduce_sum(rg.cast(flags, rg.float32)) + rg.reduce_sum(rg.where(
        rg.greater(nan, 0.0), nan, rg.zeros_like(nan)))
    y = rg.check_numerics(rg.reduce_sum(h) + rg.reduce_sum(z) + ok, "y went bad") + \
        rg.cast(rg.reduce_sum(c64[:1]), rg.float32)
    cnt = rg.while_loop(lambda i, s: i < k, lambda i, s: (i + 1, s * 1.5), [0, y])
    return {"x": (x, (3, 4)), "k": (k, np.int32(4))}, [y, oh, cnt[1]] + rg.gradients(cnt[1], [x, w])


@pytest.mark.parametrize("build", [_build_static_gru, _build_multi_bidirectional, _build_misc_ops])
def test_round_trip_keeps_text_and_outputs(tmp_path, build):
    g = rg.Graph()
    with g.as_default():
        feeds, fetches = build()
    rng = np.random.default_rng(3)
    feed = {v: (rng.normal(size=spec).astype(np.float32) if isinstance(spec, tuple) else spec)
            for v, spec in feeds.values()}
    sess = rg.Session(g, seed=5)
    want = sess.run(fetches, feed)
    path = rg.save(tmp_path / "m.npz", session=sess)
    saved = rg.io.read(path)
    g2 = saved.graph
    assert _text(g2) == _text(g)
    sess2 = saved.session()
    got = sess2.run([g2.get_value(v.name) for v in fetches], _rebind(feed, g2))
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_loaded_graph_can_be_extended_and_differentiated(tmp_path):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 4, 3], name="X")
        out, state = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        loss = rg.reduce_mean(rg.square(out))
    rg.save(tmp_path / "fwd.npz", graph=g)
    g2, _ = rg.load(tmp_path / "fwd.npz")
    old_ids = {v.id for n in g2.nodes for v in n.outputs}
    loss2 = g2.get_value(loss.name)
    with g2.as_default():
        grads2 = rg.gradients(loss2, rg.trainable_variables(g2))
        extra = rg.reduce_sum(grads2[0]) * 2.0
    new_ids = [v.id for n in g2.nodes for v in n.outputs if v.id not in old_ids]
    assert new_ids and min(new_ids) > max(old_ids)  # fresh ids never collide with loaded ones
    rg.verify(g2)
    with g.as_default():
        grads = rg.gradients(loss, rg.trainable_variables(g))
    feed = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    a = rg.Session(g).run(grads, {X: feed})
    b = rg.Session(g2).run(grads2, {g2.get_value("X:0"): feed})
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert np.isfinite(rg.Session(g2).run(extra, {g2.get_value("X:0"): feed}))


def test_file_is_a_plain_npz_with_readable_json(tmp_path):
    g, feed, f = _lstm_training_graph()
    sess = rg.Session(g)
    path = rg.save(tmp_path / "m.npz", session=sess)
    with np.load(path, allow_pickle=False) as npz:
        doc = json.loads(npz["graph.json"])
        assert doc["format"] == "rnngraph" and doc["version"] == rg.io.FORMAT_VERSION
        kernel_key = doc["session"]["variables"]["rnn/lstm_cell/kernel"]
        np.testing.assert_array_equal(npz[kernel_key], sess.read_variable("rnn/lstm_cell/kernel"))
    assert {n["op"] for n in _nodes(doc)} >= {"loop", "placeholder", "variable", "assign"}
    raw = _members(path)["graph.json"].decode()
    assert raw.count("\n") > 100  # one node per line, not one long line


def test_loading_never_unpickles(tmp_path, monkeypatch):
    g, feed, f = _lstm_training_graph()
    path = rg.save(tmp_path / "m.npz", session=rg.Session(g))

    def refuse(*a, **k):
        raise AssertionError("pickle used while loading")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    g2, values = rg.load(path)
    assert _text(g2) == _text(g) and values


# --- rejection -----------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    g, feed, f = _lstm_training_graph()
    return rg.save(tmp_path / "good.npz", session=rg.Session(g), fetches={"loss": f["loss"]})


def _invalid(path, match="not a valid rnngraph file"):
    with pytest.raises(ValueError, match=match) as info:
        rg.load(path)
    assert isinstance(info.value, InvalidFileError)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        rg.load(tmp_path / "nope.npz")


def test_rejects_files_that_are_not_archives(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("print('hello')\n")
    _invalid(p)
    np.save(tmp_path / "arr.npy", np.arange(3))  # an .npy, not an archive
    _invalid(tmp_path / "arr.npy")
    _invalid(tmp_path)  # a directory


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_rejects_truncated_files(tmp_path, saved, keep):
    data = open(saved, "rb").read()
    p = tmp_path / "cut.npz"
    p.write_bytes(data[:int(len(data) * keep)])
    _invalid(p)


def test_rejects_corrupted_bytes(tmp_path, saved):
    data = bytearray(open(saved, "rb").read())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("variables/0.npy")
    at = info.header_offset + 30 + len(info.filename) + 200  # inside the stored array's data
    data[at] ^= 0xFF
    p = tmp_path / "flip.npz"
    p.write_bytes(bytes(data))
    _invalid(p)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_rejects_a_flipped_byte_in_the_compressed_graph(tmp_path, saved, where):
    data = bytearray(open(saved, "rb").read())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("graph.json")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + int(info.compress_size * where)] ^= 0x5A
    p = tmp_path / "flip.npz"
    p.write_bytes(bytes(data))
    _invalid(p)


def test_rejects_npz_without_graph(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    assert "no graph.json" in _invalid(tmp_path / "plain.npz")


@pytest.mark.parametrize("text", [b"{not json", b"[1, 2, 3]", b'{"format": "other"}',
                                  b"\xff\xfe\x00garbage"])
def test_rejects_tampered_json_text(tmp_path, saved, text):
    members = _members(saved)
    members["graph.json"] = text
    _write_members(tmp_path / "t.npz", members)
    _invalid(tmp_path / "t.npz")


def _set_first(op, key, value):
    def edit(doc):
        _nodes(doc, op)[0][key] = value
    return edit


def _drop_graph(doc):
    del doc["graph"]


def _dup_id(doc):
    ns = _nodes(doc)
    ns[5]["outputs"][0][0] = ns[4]["outputs"][0][0]


def _forward_ref(doc):
    ns = doc["graph"]["nodes"]
    ns[2]["inputs"] = [ns[-1]["outputs"][0][0]]  # reads a value defined later


def _wrong_shape(doc):
    n = _nodes(doc, "matmul")[0]
    n["outputs"][0][2] = [None, 999]


def _wrong_dtype(doc):
    n = _nodes(doc, "tanh")[0]
    n["outputs"][0][1] = "float64"


def _bad_attr(doc):
    _nodes(doc, "transpose")[0]["attrs"]["perm"] = [0, 0, 7]


def _unknown_attr(doc):
    _nodes(doc, "softmax")[0]["attrs"]["evil"] = {"dict": {"__class__": "os.system"}} \
        if _nodes(doc, "softmax") else None
    _nodes(doc, "add")[0]["attrs"]["__class__"] = "os.system"


def _bad_initializer(doc):
    _nodes(doc, "variable")[0]["attrs"]["initializer"] = {"initializer": "os.system",
                                                          "params": {}}


def _bad_capture(doc):
    loop = _nodes(doc, "loop")[0]
    loop["bodies"][0]["captures"][0][0] = 10**9


def _missing_array(doc):
    key = next(iter(doc["session"]["variables"]))
    doc["session"]["variables"][key] = "variables/999"


def _variable_shape(doc):
    sess = doc["session"]["variables"]
    names = list(sess)
    sess[names[0]], sess[names[1]] = sess[names[1]], sess[names[0]]


def _not_a_variable(doc):
    doc["session"]["variables"]["X"] = next(iter(doc["session"]["variables"].values()))


def _bad_fetch(doc):
    doc["fetches"]["loss"] = 10**9


def _deep(doc):
    doc["graph"] = {"name": "g", "nodes": [{"name": "l", "op": "loop", "outputs": [], "bodies": []}]}
    inner = doc["graph"]["nodes"][0]
    for _ in range(200):
        nxt = {"name": "l", "op": "loop", "outputs": [], "bodies": []}
        inner["bodies"] = [{"name": "b", "nodes": [nxt]}]
        inner = nxt


@pytest.mark.parametrize("edit", [
    _drop_graph, _dup_id, _forward_ref, _wrong_shape, _wrong_dtype, _bad_attr, _unknown_attr,
    _bad_initializer, _bad_capture, _missing_array, _variable_shape, _not_a_variable, _bad_fetch,
    _deep, _set_first("loop", "inputs", [0]), _set_first("add", "outputs", "x"),
    _set_first("matmul", "name", 3), _set_first("placeholder", "attrs", [1]),
])
def test_rejects_tampered_documents(tmp_path, saved, edit):
    _edit_json(saved, tmp_path / "t.npz", edit)
    _invalid(tmp_path / "t.npz")


def test_unknown_op_is_named(tmp_path, saved):
    _edit_json(saved, tmp_path / "t.npz", _set_first("matmul", "op", "frobnicate"))
    msg = _invalid(tmp_path / "t.npz", match="frobnicate")
    assert "unknown op" in msg


def test_newer_format_version_is_explained(tmp_path, saved):
    def edit(doc):
        doc["version"] = 99
    _edit_json(saved, tmp_path / "t.npz", edit)
    _invalid(tmp_path / "t.npz", match="version 99")


class _Evil:
    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


def test_rejects_pickle_bearing_arrays_without_running_them(tmp_path, saved):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    obj = np.array([evil, 1], dtype=object)
    members = _members(saved)
    for key in ("variables/0.npy", "constants/0.npy"):
        if key not in members:
            continue
        with zipfile.ZipFile(tmp_path / "evil.npz", "w") as zf:
            for name, data in members.items():
                if name == key:
                    with zf.open(name, "w") as fh:
                        np.lib.format.write_array(fh, obj, allow_pickle=True)
                else:
                    zf.writestr(name, data)
        msg = _invalid(tmp_path / "evil.npz")
        assert "pickle" in msg
        assert not marker.exists()
    # a plain pickle file named like a model
    (tmp_path / "model.npz").write_bytes(pickle.dumps(evil))
    _invalid(tmp_path / "model.npz")
    assert not marker.exists()


def test_rejects_non_numeric_arrays(tmp_path, saved):
    members = _members(saved)
    with zipfile.ZipFile(tmp_path / "s.npz", "w") as zf:
        for name, data in members.items():
            if name == "variables/0.npy":
                with zf.open(name, "w") as fh:
                    np.lib.format.write_array(fh, np.array(["a", "b"]), allow_pickle=False)
            else:
                zf.writestr(name, data)
    _invalid(tmp_path / "s.npz")


# --- saving errors -------------------------------------------------------------------------------
def test_save_refuses_foreign_ops_and_bodies(tmp_path):
    from rnngraph.ops.base import Op, apply

    class Mystery(Op):
        name = "mystery"

        def infer(self, x):
            return x

        def compute(self, xp, x):
            return x

    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        apply(Mystery(), [x])
    with pytest.raises(ValueError, match="mystery"):
        rg.save(tmp_path / "m.npz", graph=g)
    assert not (tmp_path / "m.npz").exists()
    assert not list(tmp_path.iterdir())  # no temporary file left behind

    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 2, 3])
        rg.nn.dynamic_rnn(rg.nn.BasicRNNCell(2), X, dtype=rg.float32)
    body = next(n for n in g.nodes if n.op.name == "loop").op.body
    with pytest.raises(ValueError, match="loop body"):
        rg.save(tmp_path / "b.npz", graph=body)
    with pytest.raises(ValueError, match="another graph"):
        rg.save(tmp_path / "c.npz", graph=g, session=rg.Session(rg.Graph()))
    with pytest.raises(TypeError):
        rg.save(tmp_path / "d.npz", graph=g, fetches=["not", "a", "dict"])


def test_save_overwrites_atomically(tmp_path):
    g, feed, f = _lstm_training_graph()
    p = tmp_path / "m.npz"
    rg.save(p, graph=g)
    first = p.read_bytes()
    rg.save(p, session=rg.Session(g))
    assert p.read_bytes() != first
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.npz"]
    rg.load(p)
