"""Loading checks every attribute of every node against its op's declared schema: a file cannot
hand an op text (or anything else) that the op was not built to take, so code planted in a
file never reaches a code generator and never runs."""
from __future__ import annotations

import inspect
import json
import zipfile

import numpy as np
import pytest

import rnngraph as rg
from rnngraph import cli
from rnngraph.examples_registry import _EXAMPLES, build, names
from rnngraph.io import InvalidFileError, codec, schema
from rnngraph.io.registry import op_registry
from rnngraph.ops import initializers as inits

from test_io import _members, _rehash


# --- files and payloads ---------------------------------------------------------------------------
def _edited(src, dst, edit) -> str:
    """A copy of saved file `src` at `dst` whose graph.json went through `edit(doc)`."""
    members = _members(src)
    doc = json.loads(members["graph.json"])
    edit(doc)
    members["graph.json"] = json.dumps(doc).encode()
    _rehash(members)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(dst)


def _nodes(graph_doc):
    """Every node record of a graph document, loop bodies included."""
    for nd in graph_doc["nodes"]:
        yield nd
        for body in nd.get("bodies", []):
            yield from _nodes(body)


def _kernel_payload(marker) -> str:
    """Python that writes `marker` if pasted into generated source as a ufunc name: the line
    breaks close the generated statement and open a function the rest of the code fits in."""
    return f"add(v0, v1)\nopen({str(marker)!r}, 'w').write('planted')\ndef _g():\n    print"


def _code_payload(marker) -> str:
    """Python that writes `marker` if it is ever evaluated."""
    return f"__import__('pathlib').Path({str(marker)!r}).write_text('planted')"


def _feeds(graph, batch=3, steps=4) -> dict:
    """Values for every placeholder: unknown dims get `batch` first, then `steps`; ints are 0
    or 1 (valid labels and sequence lengths in every example)."""
    rng = np.random.default_rng(0)
    feed = {}
    for node in graph.nodes:
        if node.op.name != "placeholder":
            continue
        v = node.outputs[0]
        shape = tuple((batch if i == 0 else steps) if d is None else d
                      for i, d in enumerate(v.shape))
        feed[v] = rng.integers(0, 2, shape).astype(v.dtype) if v.dtype.kind in "iu" else \
            rng.normal(size=shape).astype(v.dtype)
    return feed


def _refusal(path, marker) -> str:
    """The InvalidFileError message loading `path` gives. Should the loader let the file
    through, the graph is run as a user would (so planted code would get its chance) before the
    test fails."""
    try:
        saved = rg.io.read(path)
    except InvalidFileError as exc:
        return str(exc)
    try:
        fetches = [v for v in saved.fetches.values() if v.node.op.name != "placeholder"]
        saved.session().run(fetches, _feeds(saved.graph))
    except Exception:  # noqa: BLE001 - whatever the run does, the test fails below
        pass
    assert not marker.exists(), "code planted in the file ran"
    pytest.fail(f"{path} loaded although it holds a planted attribute")


def _plan_refuses(path, marker, capsys, word: str) -> None:
    """`rnngraph plan FILE` fails in one line naming `word`, and the planted code did not run."""
    capsys.readouterr()
    assert cli.main(["plan", str(path)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert word in err, err
    assert not marker.exists()


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    """A saved dynamic_rnn graph with gradients and variable values: loop, body params,
    placeholders, variables and the usual elementwise and shape ops."""
    ex = build("basic_rnn", unroll="dynamic", grad=True)
    sess = rg.Session(ex.graph, seed=1)
    sess.run(ex.fetches["loss"], _feeds(ex.graph))
    path = tmp_path_factory.mktemp("schema") / "base.npz"
    return rg.save(path, session=sess, fetches=ex.fetches)


# --- (a) planted attributes are refused, for every op ---------------------------------------------
# a valid constructor call for every op whose constructor takes attributes (loop: the saved
# file's own loop node); a new op with attributes needs an entry here
_ARRAY = np.arange(3, dtype=np.float32)
SAMPLES = {
    "argmax": dict(axis=1), "broadcast_to": dict(shape=(2, 3)), "cast": dict(dtype="float32"),
    "check_numerics": dict(message="loss went bad"), "column_block": dict(start=0, stop=2),
    "concat": dict(axis=1), "concat_grad": dict(axis=-1), "constant": dict(value=_ARRAY),
    "dim": dict(axis=0), "expand_dims": dict(axis=0),
    "fill": dict(shape=(None, 3), value=0.5, dtype="float32"),
    "getitem": dict(key=(slice(None, 2), None, Ellipsis, 0)),
    "getitem_grad": dict(key=(slice(1, None, -1), 2)),
    "log_softmax": dict(axis=-1), "softmax": dict(axis=1),
    "one_hot": dict(depth=4, dtype="float32"), "pack_rows": dict(gather=True),
    "param": dict(role="carried"), "permute_rows": dict(axis=1), "host_rows": dict(time_axis=1),
    "to_device": dict(axis=1, index=0), "scatter_add_rows": dict(in_place=True),
    "placeholder": dict(dtype="int32", shape=(None, 3)),
    "reduce_max": dict(axis=(0,), keepdims=True), "reduce_mean": dict(axis=None),
    "reduce_sum": dict(axis=(-1, 0)), "reduced_count": dict(axis=(0, 1)),
    "reshape": dict(shape=(-1, 3)),
    "reshape_dynamic": dict(shape=(("dim", 1, 0), -1, ("value", 2), ("vector", 3, 1), 4)),
    "argmin": dict(axis=0), "reduce_min": dict(axis=(1,), keepdims=True),
    "reduce_prod": dict(axis=None), "reduce_logsumexp": dict(axis=(-1,)),
    "reduce_any": dict(axis=(0,)), "reduce_all": dict(axis=None, keepdims=True),
    "reduce_prod_others": dict(axis=(0, -1)), "tile": dict(multiples=(2, 1)),
    "tile_grad": dict(multiples=(1, 3)), "slice": dict(begin=(0, 2), size=(-1, 1)),
    "pad_grad": dict(paddings=((1, 2), (0, 1)), mode="REFLECT"),
    "pad": dict(paddings=((1, 0),), mode="CONSTANT", constant_values=0.5),
    "reverse_sequence": dict(seq_axis=1, batch_axis=0),
    "rows_matmul": dict(packed=True, unsort=True),
    "split": dict(num_or_size_splits=(1, -1), axis=1), "squeeze": dict(axis=(1,)),
    "stack": dict(axis=0),
    "step_contract": dict(parts=2, ones=True, shifted=(1,), packed_b=True, packed_parts=(0,)),
    "sum_to": dict(lead=1, axes=(0,)), "transpose": dict(perm=(1, 0)),
    "unstack": dict(num=2, axis=0),
    "range": dict(dtype="int32"),
    "top_k_indices": dict(k=2),   # (tf.nn.top_k)
    # TF1 indexing ops (ops/tf1_index.py)
    "boolean_mask": dict(axis=1), "boolean_mask_grad": dict(axis=0),
    "scatter_nd": dict(shape=(None, 3)), "reverse": dict(axis=(0, -1)),
    "cumsum": dict(axis=-1, exclusive=True, reverse=False),
    "log_uniform_candidate_sampler": dict(num_true=1, num_sampled=5, unique=True, range_max=50,
                                          seed=1, seed2=2),
    "variable": dict(dtype="float32", shape=(2, 3), initializer=inits.RandomNormal(0.0, 0.1),
                     trainable=False),
    # the randomness issue's ops
    "random_standard": dict(dist="normal", shape=(2, 3), dtype="float32", seed=1, seed2=2,
                            loc=0.5, scale=2.0),
    "random_shuffle": dict(seed=1, seed2=2),
    "random_uniform_int": dict(shape=(2, 3), dtype="int32", minval=-4, maxval=9, seed=1, seed2=2),
    "multinomial": dict(num_samples=3, output_dtype="int64", seed=1, seed2=2),
    "placeholder_with_default": dict(shape=(None, 3)),
    "lr_schedule": dict(kind="piecewise", boundaries=(5.0, 10.0), values=(1.0, 0.5, 0.1)),
    # a compiled program's fused node (test_io_fused.py plants into its inner ops)
    "fused": dict(instrs=[(op_registry()["sigmoid"](), (0,))], n_inputs=1, exports=(1,),
                  types=[rg.TensorType((2,), np.float32)],
                  temp_types=[rg.TensorType((2,), np.float32)],
                  origins=[("rnn/while/Sigmoid", "model.py:3")]),
}
FREE_TEXT = {("check_numerics", "message")}  # text by nature: shown, never code (see below)


def _takes_attributes(cls) -> bool:
    params = inspect.signature(cls.__init__).parameters.values()
    return any(p.name not in ("self", "body") and
               p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _saved_attrs(op_name: str, base_doc: dict) -> dict:
    """The attribute record a real save writes for the sample of `op_name`."""
    if op_name == "loop":
        return next(nd for nd in _nodes(base_doc["graph"]) if nd["op"] == "loop")["attrs"]
    op = op_registry()[op_name](**SAMPLES.get(op_name, {}))
    arrays = codec.ArrayTable()
    return {k: codec.encode_value(v, arrays, op_name) for k, v in codec.op_state(op).items()}


def _decoded(attrs_doc: dict) -> dict:
    dec = codec.Decoder({}, lambda key: (_ for _ in ()).throw(KeyError(key)))
    return {k: dec.value(v) for k, v in attrs_doc.items()}


def _plant(op_name: str, attrs_doc: dict):
    """An edit giving a node of `op_name` these attributes: the file's loop node, else a new
    node at the end of the graph."""
    def edit(doc):
        if op_name == "loop":
            next(nd for nd in _nodes(doc["graph"]) if nd["op"] == "loop")["attrs"] = attrs_doc
            return
        doc["graph"]["nodes"].append({"name": "victim", "op": op_name, "attrs": attrs_doc,
                                      "inputs": [], "outputs": [[10**6, "float32", [2]]],
                                      "location": "test"})
    return edit


def _plants(op_name: str, good: dict, marker):
    """(attribute named in the refusal, attribute record): `kernel` added, then a payload in
    place of each attribute that is not free text, bare and inside a list."""
    yield "kernel", {**good, "kernel": _kernel_payload(marker)}
    for attr in good:
        if (op_name, attr) in FREE_TEXT:
            continue
        for payload in (_code_payload(marker), [_code_payload(marker)]):
            yield attr, {**good, attr: payload}


@pytest.mark.parametrize("op_name", sorted(op_registry()))
def test_planted_attributes_are_refused_and_never_run(op_name, base_file, tmp_path, capsys):
    marker = tmp_path / "planted"
    if op_name in schema.REFUSED:  # never loaded, whatever it holds (none at present)
        path = _edited(base_file, tmp_path / "refused.npz",
                       _plant(op_name, {"kernel": _kernel_payload(marker)}))
        assert f"'{op_name}' cannot be loaded" in _refusal(path, marker)
        _plan_refuses(path, marker, capsys, f"'{op_name}' cannot be loaded")
        return
    cls = op_registry()[op_name]
    assert op_name in SAMPLES or op_name == "loop" or not _takes_attributes(cls), \
        f"op {op_name!r} takes attributes: give it a sample in SAMPLES"
    base_doc = json.loads(_members(base_file)["graph.json"])
    good = _saved_attrs(op_name, base_doc)
    assert schema.attrs_problem(op_name, _decoded(good)) is None  # the sample itself is fine
    for i, (attr, attrs_doc) in enumerate(_plants(op_name, good, marker)):
        path = _edited(base_file, tmp_path / f"planted_{i}.npz", _plant(op_name, attrs_doc))
        message = _refusal(path, marker)
        assert f"'{attr}'" in message and op_name in message, message
        assert not marker.exists()
        _plan_refuses(path, marker, capsys, f"'{attr}'")


def test_the_issues_file_is_refused(base_file, tmp_path, capsys):
    """The reported case: `kernel` on the add nodes of a dynamic_rnn body, which the fusion
    pass turned into generated NumPy code: it used to run at Session.run and in `plan`."""
    marker = tmp_path / "planted"
    planted = []

    def edit(doc):
        for nd in _nodes(doc["graph"]):
            if nd["op"] == "add" and "/while/" in nd["name"]:
                nd["attrs"]["kernel"] = _kernel_payload(marker)
                planted.append(nd["name"])

    path = _edited(base_file, tmp_path / "kernel.npz", edit)
    assert planted
    message = _refusal(path, marker)
    assert "unknown attribute 'kernel'" in message and planted[0] in message, message
    with pytest.raises(InvalidFileError, match="kernel"):
        rg.load(path)
    with pytest.raises(InvalidFileError, match="kernel"):
        rg.io.restore(path)
    _plan_refuses(path, marker, capsys, "unknown attribute 'kernel'")
    assert not marker.exists()


def test_a_fused_node_with_an_expression_is_refused(base_file, tmp_path):
    """A fused node is loaded from its program only (test_io_fused.py); the printed expression
    is never read back."""
    marker = tmp_path / "planted"
    edit = _plant("fused", {"expr": _code_payload(marker), "n_inputs": 1, "instrs": [],
                            "exports": []})
    message = _refusal(_edited(base_file, tmp_path / "f.npz", edit), marker)
    assert "unknown attribute 'expr'" in message and "fused" in message
    assert not marker.exists()


@pytest.mark.parametrize("where, value", [
    ("name", "x\nimport os"), ("name", "a'b"), ("name", ""), ("name", 7),
    ("location", "file.py:1\nimport os"), ("location", ["file.py"]),
])
def test_node_names_and_locations_are_checked(base_file, tmp_path, where, value):
    def edit(doc):
        doc["graph"]["nodes"][0][where] = value
    path = _edited(base_file, tmp_path / "n.npz", edit)
    with pytest.raises(InvalidFileError, match=f"bad {where if where != 'name' else 'node name'}"):
        rg.load(path)


@pytest.mark.parametrize("key", ["params", "results"])
def test_body_roles_come_from_a_fixed_set(base_file, tmp_path, key):
    def edit(doc):
        loop = next(nd for nd in _nodes(doc["graph"]) if nd["op"] == "loop")
        loop["bodies"][0][key][0][0] = "__import__('os')"
    with pytest.raises(InvalidFileError, match=f"bad body {key}"):
        rg.load(_edited(base_file, tmp_path / "r.npz", edit))


@pytest.mark.parametrize("params, word", [
    ({"value": "__import__('os')"}, "value"), ({"value": {"list": ["x"]}}, "value"),
    ({"value": 1.0, "kernel": "x"}, "kernel"), ({}, "value"),
])
def test_initializer_parameters_are_checked(base_file, tmp_path, params, word):
    def edit(doc):
        var = next(nd for nd in _nodes(doc["graph"]) if nd["op"] == "variable")
        var["attrs"]["initializer"] = {"initializer": "constant", "params": params}
    with pytest.raises(InvalidFileError, match=f"initializer 'constant'.*'{word}'"):
        rg.load(_edited(base_file, tmp_path / "i.npz", edit))


@pytest.mark.parametrize("op_name, attrs, word", [
    ("transpose", {"perm": [0, 99]}, "perm"),
    ("argmax", {"axis": 1.0}, "axis"),
    ("argmax", {"axis": True}, "axis"),
    ("cast", {"dtype": "object"}, "dtype"),
    ("cast", {"dtype": {"dtype": "float32"}}, "dtype"),
    ("reshape", {"shape": [-2, 3]}, "shape"),
    ("split", {"num_or_size_splits": 0, "axis": 0}, "num_or_size_splits"),
    ("column_block", {"start": 3, "stop": 1}, "start must not exceed stop"),
    ("getitem", {"key": ["...", "..."]}, "at most one"),
    ("getitem", {"key": [["slice", 0, 2, 0]]}, "key"),
    ("param", {"role": "loop"}, "role"),
    ("fill", {"shape": [2], "value": "0", "dtype": "float32"}, "value"),
    ("variable", {"dtype": "float32", "shape": [None, 2], "trainable": True,
                  "initializer": {"initializer": "zeros", "params": {}}}, "shape"),
    ("reduce_sum", {"axis": None}, "missing attribute 'keepdims'"),
])
def test_wrong_types_and_ranges_name_the_attribute(base_file, tmp_path, op_name, attrs, word):
    path = _edited(base_file, tmp_path / "w.npz", _plant(op_name, attrs))
    with pytest.raises(InvalidFileError, match=word) as info:
        rg.load(path)
    assert "victim" in str(info.value) and op_name in str(info.value)


def test_free_text_is_only_ever_shown(tmp_path):
    """check_numerics' message is the one free-text attribute: it loads as it was saved and
    appears in the error, and code in it does not run."""
    marker = tmp_path / "planted"
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 2], name="x")
        y = rg.check_numerics(rg.tanh(x) * 2.0, _code_payload(marker))
    path = rg.save(tmp_path / "m.npz", graph=g, fetches={"y": y})
    saved = rg.io.read(path)
    sess = saved.session()
    bad = np.array([[np.nan, 1.0]], np.float32)
    with pytest.raises(FloatingPointError) as info:
        sess.run(saved.fetches["y"], {saved.graph.get_value("x"): bad})
    assert _code_payload(marker) in str(info.value)
    assert not marker.exists()


# --- (b) every shipped example still round-trips --------------------------------------------------
def _example_cases():
    for name in names():
        entry = _EXAMPLES[name]
        for unroll in (entry.unrolls if entry.fixed_unroll is None else (None,)):
            yield pytest.param(name, unroll, id=f"{name}-{unroll or 'fixed'}")


@pytest.mark.parametrize("name, unroll", list(_example_cases()))
def test_every_example_round_trips(name, unroll, tmp_path):
    ex = build(name, unroll=unroll, grad=True)
    feed = _feeds(ex.graph)
    fetches = {k: v for k, v in ex.fetches.items()
               if v.node.op.name not in ("placeholder", "group")}
    sess = rg.Session(ex.graph, seed=5)
    want = sess.run(list(fetches.values()), feed)
    path = rg.save(tmp_path / "ex.npz", session=sess, fetches=ex.fetches)
    saved = rg.io.read(path)
    assert rg.format_graph(saved.graph, locations=True) == \
        rg.format_graph(ex.graph, locations=True)
    assert set(saved.fetches) == set(ex.fetches)
    got = saved.session().run([saved.fetches[k] for k in fetches],
                              {saved.graph.get_value(v.name): a for v, a in feed.items()})
    for key, a, b in zip(fetches, want, got):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: {key}")


# --- (c) the schema covers every op ---------------------------------------------------------------
def test_schema_covers_every_registered_op():
    registered = op_registry()
    assert schema.uncovered(registered) == []
    stale = sorted((set(schema.SCHEMAS) | set(schema.REFUSED)) - set(registered))
    assert stale == [], "schema entries for ops that do not exist"


def test_a_new_op_without_schema_is_caught_and_refused(base_file, tmp_path, monkeypatch):
    from rnngraph.ops.base import Op

    class Frobnicate(Op):
        name = "frobnicate"

        def infer(self, x):
            return x

    assert schema.uncovered({**op_registry(), "frobnicate": Frobnicate}) == ["frobnicate"]
    monkeypatch.setitem(op_registry(), "frobnicate", Frobnicate)
    path = _edited(base_file, tmp_path / "n.npz", _plant("frobnicate", {}))
    with pytest.raises(InvalidFileError, match="'frobnicate' has no declared attribute schema"):
        rg.load(path)


@pytest.mark.parametrize("op_name", sorted(schema.SCHEMAS))
def test_schema_declares_the_constructors_arguments(op_name):
    cls = op_registry()[op_name]
    # (a fused node is loaded through Fused.from_program, its types derived from its inputs')
    build = cls.from_program if op_name == "fused" else cls.__init__
    params = [p for p in inspect.signature(build).parameters.values()
              if p.name not in ("self", "in_types")
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    entry = schema.SCHEMAS[op_name]
    assert entry.body == any(p.name == "body" for p in params)
    assert set(entry.attrs) == {p.name for p in params if p.name != "body"}


def test_initializer_parameters_are_declared_for_every_kind():
    assert set(schema.INITIALIZERS) == set(inits.KINDS)
    for kind, cls in inits.KINDS.items():
        params = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
        assert set(schema.INITIALIZERS[kind]) == params, kind
