"""Graph <-> JSON document (plain data) plus a table of NumPy arrays.

The document mirrors the IR: a graph is a list of nodes in creation (= topological) order; a
node names its op, the op's `attrs()`, its input value ids, and its outputs (id and type); a
loop node carries its body, a graph of the same shape plus the body's params, results and
captures by role. Values are referenced by their `%id`, so the printed text round-trips exactly.

Attribute values are JSON scalars and lists, with a few tagged objects for what JSON lacks:

    JSON list                         -> tuple (the attribute form ops use)
    {"list": [...]}                   -> list
    {"array": "constants/3"}          -> an array stored beside the document
    {"ndarray": "float32", "shape": [], "data": 1.0}  -> a small array written inline
    {"scalar": "float32", "value": x} -> a NumPy scalar
    {"dtype": "int32"}                -> a NumPy dtype
    {"initializer": "glorot_uniform", "params": {...}}  -> a variable initializer
    {"dict": {...}}                   -> a dict with string keys

Decoding builds nodes directly (no op is re-traced and nothing from the file is executed): each
op class comes from the registry by name; its attributes are checked against the op's declared
schema (schema.py: names, types, ranges, fixed choices) and only then passed to its constructor.
Node names, locations and body roles are checked too, so no text from a file reaches an op
other than as a value its schema declares. A fused node is saved as its program (each inner
op's name, its saved attributes and refs; Fused.saved_state) and rebuilt by make_fused: every
inner op through make_op, every type from the inner ops' own rules.
"""
from __future__ import annotations

import itertools
import json
import math
import numbers

import numpy as np

from ..errors import InvalidFileError  # noqa: F401  (raised here; also rg.io.InvalidFileError)
from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.types import Dimension, TensorShape, TensorType
from ..ir.value import Value
from ..ops import initializers as inits
from ..ops.base import Op
from ..ops.fused import Fused
from . import registry, schema

_ARRAY_KINDS = "biufc"   # bool, ints, floats, complex: no objects, strings, records or datetimes
_INLINE_MAX = 16         # arrays up to this many elements are written into the JSON itself
_SOURCES = ("param", "placeholder", "variable", "constant")


class Corrupt(Exception):
    """Internal: a structural problem found while decoding (becomes InvalidFileError)."""


class UnknownOp(Corrupt):
    """Internal: a node names an op this rnngraph does not have."""


# --- encoding -----------------------------------------------------------------------------------
class ArrayTable:
    """Arrays to be stored beside the document, under keys like 'constants/0'."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    def add(self, arr: np.ndarray, group: str) -> str:
        arr = np.asarray(arr)
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"cannot save an array of dtype {arr.dtype} (only bool, integer, "
                            "float and complex arrays are saved)")
        n = self._counts.get(group, 0)
        self._counts[group] = n + 1
        key = f"{group}/{n}"
        self.arrays[key] = arr
        return key


def encode_value(x, arrays: ArrayTable, where: str):
    """One attribute value as JSON data (see the module docstring for the tags)."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, np.ndarray):
        if x.size <= _INLINE_MAX and x.dtype.kind in "biuf":  # small: readable in the JSON
            return {"ndarray": x.dtype.name, "shape": list(x.shape), "data": x.tolist()}
        return {"array": arrays.add(x, "constants")}
    if isinstance(x, np.generic):
        if x.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"{where}: cannot save a NumPy scalar of dtype {x.dtype}")
        return {"scalar": x.dtype.name, "value": _json_number(x.item())}
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, np.dtype):
        return {"dtype": x.name}
    if isinstance(x, inits.Initializer):
        kind = x.kind
        if inits.KINDS.get(kind) is not type(x):
            raise TypeError(f"{where}: cannot save initializer {type(x).__name__} (kind {kind!r} "
                            "is not one of rnngraph's initializers)")
        return {"initializer": kind,
                "params": {k: encode_value(v, arrays, where) for k, v in x.params().items()}}
    if isinstance(x, tuple):
        return [encode_value(v, arrays, where) for v in x]
    if isinstance(x, list):
        return {"list": [encode_value(v, arrays, where) for v in x]}
    if isinstance(x, dict):
        if not all(isinstance(k, str) for k in x):
            raise TypeError(f"{where}: cannot save a dict with non-string keys")
        return {"dict": {k: encode_value(v, arrays, where) for k, v in x.items()}}
    raise TypeError(f"{where}: cannot save a value of type {type(x).__name__}: {x!r}")


def _json_number(v):
    return v if not isinstance(v, complex) else {"complex": [v.real, v.imag]}


def op_state(op: Op) -> dict:
    """What is saved of an op: its `attrs()` plus any public attribute attrs() leaves out (an
    op may hide defaults from the printed form, e.g. a loop's has_trip=False). An op that holds
    other ops (a fused node's program) says itself what is saved: `saved_state(state_of)`,
    which gives each inner op's state by `state_of` (this function, for registered ops only)."""
    saved = getattr(op, "saved_state", None)
    if saved is not None:
        return saved(_inner_state)
    state = dict(op.attrs())
    for k, v in vars(op).items():
        if not k.startswith("_") and k not in state:
            state[k] = v
    return state


def _inner_state(op: Op) -> dict:
    """An op inside another op's state: findable again by its name, saved like a node's op."""
    registry.check_registered(op)
    return op_state(op)


def _type_doc(t: TensorType) -> list:
    return [t.dtype.name, list(t.shape)]


def encode_graph(graph: Graph, arrays: ArrayTable) -> dict:
    doc = {"name": graph.name, "nodes": [_encode_node(n, arrays) for n in graph.nodes]}
    if graph.parent is not None:
        doc["params"] = [[role, [v.id for v in vals]] for role, vals in graph.params.items()]
        results = graph.results
        doc["results"] = [[role, [v.id for v in vals]] for role, vals in results.items()]
        doc["captures"] = [[outer.id, param.id] for outer, param in graph.captures.items()]
    return doc


def _encode_node(node: Node, arrays: ArrayTable) -> dict:
    op = node.op
    registry.check_registered(op)
    where = f"node {node.name!r} ({op.name})"
    doc = {
        "name": node.name,
        "op": op.name,
        "attrs": {k: encode_value(v, arrays, f"{where}, attribute {k!r}")
                  for k, v in op_state(op).items()},
        "inputs": [v.id for v in node.inputs],
        "outputs": [[v.id] + _type_doc(v.type) for v in node.outputs],
        "location": node.location,
    }
    if node.is_gradient:
        doc["grad"] = True
    if node.device:
        doc["device"] = node.device   # rg.device's placement (canonical, checked on load)
    subs = op.subgraphs()
    if subs:
        doc["bodies"] = [encode_graph(b, arrays) for b in subs]
    return doc


def encode_collections(graph: Graph, arrays: ArrayTable) -> dict:
    """Collections of Values (e.g. 'variables') by value id, those the graph still makes; other
    collections as plain data."""
    out = {}
    made = {v for n in graph.nodes for v in n.outputs}
    for name, items in graph.collections.items():
        if all(isinstance(v, Value) for v in items):   # (a pass may have removed some)
            out[name] = {"values": [v.id for v in items if v in made]}
        else:
            out[name] = {"data": encode_value(list(items), arrays, f"collection {name!r}")}
    return out


# --- decoding -----------------------------------------------------------------------------------
def _need(cond, msg):
    if not cond:
        raise Corrupt(msg)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_DTYPES: dict = {}   # dtype names already checked (np.dtype(name).name is slow per node)


def _dtype(name) -> np.dtype:
    dt = _DTYPES.get(name) if isinstance(name, str) else None
    if dt is not None:
        return dt
    _need(isinstance(name, str), f"a dtype must be a string, got {name!r}")
    try:
        dt = np.dtype(name)
    except TypeError:
        raise Corrupt(f"unknown dtype {name!r}") from None
    _need(dt.kind in _ARRAY_KINDS and dt.name == name, f"unsupported dtype {name!r}")
    _DTYPES[name] = dt
    return dt


def _shape(shape) -> tuple:
    _need(isinstance(shape, list) and all(d is None or (_is_int(d) and d >= 0) for d in shape),
          f"bad shape {shape!r}")
    return tuple(shape)


class Decoder:
    """Rebuilds a graph from a document; `arrays(key)` returns a stored array."""

    def __init__(self, doc: dict, arrays, max_nodes: int = 2_000_000, max_depth: int = 64):
        self.doc = doc
        self.get_array = arrays
        self.values: dict[int, Value] = {}
        self.max_nodes, self.max_depth = max_nodes, max_depth
        self.n_nodes = 0

    # --- attribute values ---------------------------------------------------------------------
    def value(self, x, depth: int = 0):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, float)):
            return x
        _need(depth < self.max_depth, f"attribute values nested more than max_depth="
                                      f"{self.max_depth} deep")
        depth += 1
        if isinstance(x, list):
            return tuple(self.value(v, depth) for v in x)
        _need(isinstance(x, dict) and len(x) >= 1, f"bad attribute value {x!r}")
        keys = set(x)
        if keys == {"list"}:
            _need(isinstance(x["list"], list), "bad list attribute")
            return [self.value(v, depth) for v in x["list"]]
        if keys == {"array"}:
            _need(isinstance(x["array"], str), "bad array reference")
            return self.array(x["array"])
        if keys == {"ndarray", "shape", "data"}:
            return self.inline_array(x["ndarray"], x["shape"], x["data"])
        if keys == {"scalar", "value"}:
            dt = _dtype(x["scalar"])
            v = x["value"]
            if isinstance(v, dict):
                _need(set(v) == {"complex"} and isinstance(v["complex"], list)
                      and len(v["complex"]) == 2, "bad complex scalar")
                v = complex(*v["complex"])
            _need(isinstance(v, (bool, int, float, complex)), f"bad scalar {v!r}")
            return dt.type(v)
        if keys == {"dtype"}:
            return _dtype(x["dtype"])
        if keys == {"dict"}:
            _need(isinstance(x["dict"], dict), "bad dict attribute")
            return {k: self.value(v, depth) for k, v in x["dict"].items()}
        if keys == {"initializer", "params"}:
            return self.initializer(x["initializer"], x["params"], depth)
        raise Corrupt(f"bad attribute value {x!r}")

    def array(self, key: str) -> np.ndarray:
        try:
            arr = self.get_array(key)
        except KeyError:
            raise Corrupt(f"missing array {key!r}") from None
        _need(isinstance(arr, np.ndarray), f"entry {key!r} is not an array")
        _need(arr.dtype.kind in _ARRAY_KINDS, f"array {key!r} has unsupported dtype {arr.dtype}")
        arr = np.array(arr)  # own, contiguous copy
        arr.setflags(write=False)
        return arr

    def inline_array(self, dtype, shape, data) -> np.ndarray:
        dt, shape = _dtype(dtype), _shape(shape)
        _need(dt.kind in "biuf", f"bad inline array dtype {dtype!r}")
        _need(math.prod(shape) <= _INLINE_MAX, "inline array too large")

        def check(d, dims):
            if not dims:
                _need(isinstance(d, (bool, int, float)), f"bad inline array element {d!r}")
                return
            _need(isinstance(d, list) and len(d) == dims[0], "inline array data does not match "
                                                             "its shape")
            for e in d:
                check(e, dims[1:])

        check(data, shape)
        try:
            arr = np.array(data, dtype=dt).reshape(shape)
        except (ValueError, TypeError, OverflowError) as exc:
            raise Corrupt(f"bad inline array: {exc}") from None
        arr.setflags(write=False)
        return arr

    def initializer(self, kind, params, depth: int = 0) -> inits.Initializer:
        _need(isinstance(kind, str) and kind in inits.KINDS, f"unknown initializer {kind!r}")
        _need(isinstance(params, dict), "bad initializer parameters")
        cls = inits.KINDS[kind]
        decoded = {k: self.value(v, depth) for k, v in params.items()}
        if kind == "constant" and "layout" not in decoded:   # (saved before TF1's layout rule)
            decoded["layout"] = "broadcast"
        problem = schema.params_problem(schema.INITIALIZERS.get(kind, {}), decoded)
        _need(problem is None, f"initializer {kind!r}: {problem}")
        try:
            init = cls(**decoded)
        except (TypeError, ValueError) as exc:
            raise Corrupt(f"bad parameters for initializer {kind!r}: {exc}") from None
        _need(_same(init.params(), decoded), f"bad parameters for initializer {kind!r}")
        return init

    # --- graphs -------------------------------------------------------------------------------
    def collect_ids(self, gdoc, seen: set, depth: int = 0) -> None:
        """Check every output id is a distinct int >= 0 (recursively through bodies), and the
        node count and loop nesting against the limits."""
        _need(depth < self.max_depth, f"loops nested more than max_depth={self.max_depth} deep")
        _need(isinstance(gdoc, dict) and isinstance(gdoc.get("nodes"), list), "bad graph record")
        self.n_nodes += len(gdoc["nodes"])
        _need(self.n_nodes <= self.max_nodes, f"more than max_nodes={self.max_nodes} nodes "
                                              "(LoadLimits)")
        for nd in gdoc["nodes"]:
            _need(isinstance(nd, dict), "bad node record")
            outs = nd.get("outputs")
            if not isinstance(outs, list):
                raise Corrupt(f"node {nd.get('name')!r}: bad outputs")
            for o in outs:
                if not (isinstance(o, list) and len(o) == 3 and _is_int(o[0]) and o[0] >= 0):
                    raise Corrupt(f"node {nd.get('name')!r}: bad output record {o!r}")
                if o[0] in seen:
                    raise Corrupt(f"value id %{o[0]} is defined twice")
                seen.add(o[0])
            bodies = nd.get("bodies")
            if bodies is not None:
                _need(isinstance(bodies, list), f"node {nd.get('name')!r}: bad bodies")
                for b in bodies:
                    self.collect_ids(b, seen, depth + 1)

    def root(self, gdoc) -> Graph:
        seen: set = set()
        self.collect_ids(gdoc, seen)
        name = gdoc.get("name", "graph")
        problem = schema.line_problem(name, "graph name")
        _need(problem is None, problem)
        graph = Graph(name=name)
        graph._ids = itertools.count(max(seen, default=-1) + 1)  # new values never collide
        self.nodes(graph, gdoc)
        return graph

    def nodes(self, graph: Graph, gdoc) -> None:
        records = gdoc["nodes"]
        for i, nd in enumerate(records):
            self.node(graph, nd)
            records[i] = None   # freed as it is built: the document and graph are never both whole

    def ref(self, vid, graph: Graph, what: str) -> Value:
        v = self.values.get(vid) if _is_int(vid) else None
        if v is None or v.graph is not graph:
            _need(_is_int(vid), f"{what}: bad value reference {vid!r}")
            _need(v is not None, f"{what}: reads %{vid}, which is not defined before it")
            raise Corrupt(f"{what}: reads %{vid} from another graph")
        return v

    def node(self, graph: Graph, nd: dict) -> Node:
        # (messages are built only on failure: this runs once per node of the file)
        name = nd.get("name")
        problem = schema.name_problem(name, "node name")
        if problem is not None:
            raise Corrupt(problem)
        if name in graph._by_name:
            raise Corrupt(f"duplicate node name {name!r}")
        op_name = nd.get("op")
        if not isinstance(op_name, str):
            raise Corrupt(f"node {name!r}: bad op name {op_name!r}")
        try:
            cls = registry.lookup(op_name)
        except ValueError as exc:
            raise UnknownOp(f"{exc} (node {name!r})") from None
        where = f"node {name!r} (op {op_name})"
        problem = schema.op_problem(op_name)
        if problem is not None:
            raise Corrupt(f"{where}: {problem}")
        attrs_doc = nd.get("attrs", {})
        inputs_doc = nd.get("inputs", [])
        bodies_doc = nd.get("bodies", [])
        if not isinstance(attrs_doc, dict) or not isinstance(inputs_doc, list) \
                or not isinstance(bodies_doc, list):
            raise Corrupt(f"{where}: bad attributes, inputs or bodies")
        inputs = [self.ref(i, graph, where) for i in inputs_doc]
        location = nd.get("location", "")
        problem = schema.line_problem(location, "location")
        if problem is not None:
            raise Corrupt(f"{where}: {problem}")
        bodies = [self.body(graph, b, where) for b in bodies_doc]
        try:
            attrs = {k: self.value(v) for k, v in attrs_doc.items()}
        except Corrupt as exc:
            raise Corrupt(f"{where}: {exc}") from None
        if op_name == "fused":
            op = make_fused(attrs, bodies, [v.type for v in inputs], where)
        else:
            op = make_op(cls, attrs, bodies, where)
        node = Node(graph, op, inputs, name, location)
        for i, (vid, dtype, shape) in enumerate(nd["outputs"]):
            value = Value(node, i, TensorType(_shape(shape), _dtype(dtype)), vid)
            node.outputs.append(value)
            self.values[vid] = value
        node.is_gradient = nd.get("grad", False) is True
        device = nd.get("device", "")
        if device:
            problem = schema.device_problem(device)
            if problem is not None:
                raise Corrupt(f"{where}: {problem}")
            node.device = device
        graph.nodes.append(node)
        graph._by_name[name] = node
        graph.version += 1
        return node

    def body(self, parent: Graph, bdoc: dict, where: str) -> Graph:
        _need(isinstance(bdoc, dict), f"{where}: bad body record")
        name = bdoc.get("name")
        problem = schema.line_problem(name, "body name")
        _need(problem is None, f"{where}: {problem}")
        body = Graph(parent=parent, name=name)
        self.nodes(body, bdoc)

        def roles(key, known):
            items = bdoc.get(key, [])
            _need(isinstance(items, list) and all(
                isinstance(r, list) and len(r) == 2 and r[0] in known
                and isinstance(r[1], list) for r in items), f"{where}: bad body {key}")
            return {role: [self.ref(i, body, f"{where} body {key} {role!r}") for i in ids]
                    for role, ids in items}

        body.params = roles("params", schema.PARAM_ROLES)
        for role, vals in body.params.items():
            for v in vals:
                _need(v.node.op.name == "param" and v.node.op.role == role,
                      f"{where}: body param %{v.id} is not a {role!r} param")
        results = roles("results", schema.RESULT_ROLES)
        for role in schema.RESULT_ROLES:
            results.setdefault(role, [])
        body.results = results
        caps = bdoc.get("captures", [])
        _need(isinstance(caps, list) and all(isinstance(c, list) and len(c) == 2 for c in caps),
              f"{where}: bad body captures")
        body.captures = {self.ref(o, parent, f"{where} capture"): self.ref(p, body,
                                                                           f"{where} capture")
                         for o, p in caps}
        return body


def make_op(cls: type, attrs: dict, bodies: list, where: str) -> Op:
    """An instance of `cls` whose saved state equals `attrs`, built by its constructor after
    every attribute passed the op's declared schema (schema.py); Corrupt naming the node, the
    op and the attribute otherwise. Nothing from the file is set on an op any other way."""
    problem = schema.attrs_problem(cls.name, attrs)
    _need(problem is None, f"{where}: {problem}")
    takes_body = schema.SCHEMAS[cls.name].body
    _need(len(bodies) == (1 if takes_body else 0),
          f"{where}: op {cls.name!r} takes {'one body' if takes_body else 'no body'}, the file "
          f"gives {len(bodies)}")
    kwargs = schema.constructor_args(cls.name, attrs)
    if takes_body:
        kwargs["body"] = bodies[0]
    try:
        op = cls(**kwargs)
    except (TypeError, ValueError, IndexError, ArithmeticError) as exc:  # ShapeError too
        raise Corrupt(f"{where}: bad attributes for op {cls.name!r}: {exc}") from None
    _need(_same(op_state(op), attrs) and op.subgraphs() == bodies,
          f"{where}: bad attributes for op {cls.name!r}: {sorted(attrs)} do not rebuild it")
    return op


def make_fused(attrs: dict, bodies: list, in_types: list, where: str) -> Fused:
    """A fused node's op from its saved program, for inputs of `in_types`: the program's form
    checked by the schema's fused entry (which checks each inner op's attributes by that op's
    own entry), each inner op built by make_op as a node's op is, from a class the registry
    lists as fusible, and every type derived by the inner ops' own rules (Fused.from_program).
    Corrupt naming the node, the instruction and what is wrong otherwise."""
    problem = schema.attrs_problem("fused", attrs)
    _need(problem is None, f"{where}: {problem}")
    _need(not bodies, f"{where}: op 'fused' takes no body, the file gives {len(bodies)}")
    n = attrs["n_inputs"]
    _need(n == len(in_types), f"{where}: n_inputs is {n} but the node has {len(in_types)} "
                              "inputs")
    instrs = []
    for j, (name, inner_attrs, refs) in enumerate(attrs["instrs"]):
        at = f"{where}, instruction {j} ({name})"
        try:
            cls = registry.lookup(name)
        except ValueError as exc:
            raise Corrupt(f"{at}: {exc}") from None
        # (the schema's FUSED_OPS already names these; the class must agree)
        _need(name == schema.FUSED_JOIN or (
              getattr(cls, "fusible", False) and not cls.multi_output and not cls.stateful),
              f"{at}: op {name!r} cannot run inside a fused node")
        instrs.append((make_op(cls, inner_attrs, [], at), refs))
    try:
        op = Fused.from_program(instrs, n, attrs["exports"], in_types, attrs["origins"])
    except ValueError as exc:
        raise Corrupt(f"{where}: {exc}") from None
    _need(_same(op_state(op), attrs),
          f"{where}: bad attributes for op 'fused': {sorted(attrs)} do not rebuild it")
    return op


def _kind(x) -> type:
    """A static shape (TensorShape, a tuple of Dimension ints) is saved as a tuple of ints."""
    return tuple if isinstance(x, TensorShape) else int if isinstance(x, Dimension) else type(x)


def _same(a, b) -> bool:
    """Equality of attribute values, arrays by dtype, shape and content (NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if _kind(a) is not _kind(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, np.generic) and a.dtype.kind in "fc" and np.isnan(a):
        return bool(np.isnan(b))
    return a == b


def check_types(graph: Graph) -> None:
    """Each node's stored output types must be what its op's rule gives for its inputs (so a
    tampered shape cannot make the printed IR lie); loop nodes are checked by the verifier,
    after their bodies (so a body's node at fault is the one named)."""
    for node in graph.nodes:
        for sub in node.op.subgraphs():
            check_types(sub)
        if hasattr(node.op, "verify"):
            try:
                node.op.verify(node)
            except Exception as exc:  # noqa: BLE001  VerificationError, IndexError, ...
                raise Corrupt(f"node {node.name!r} ({node.op.name}): {type(exc).__name__}: "
                              f"{exc}") from None
        elif node.op.name != "param":
            try:
                if isinstance(node.op, Fused):   # the inner ops' rules, not its stated types
                    types = node.op.retype([v.type for v in node.inputs])
                else:
                    types = node.op.infer(*[v.type for v in node.inputs])
            except Exception as exc:  # noqa: BLE001  ShapeError, TypeError, ...
                raise Corrupt(f"node {node.name!r} ({node.op.name}): {exc}") from None
            types = list(types) if isinstance(types, (list, tuple)) else [types]
            got = [v.type for v in node.outputs]
            if types != got:   # (the message only when needed: 300k nodes load in seconds)
                raise Corrupt(f"node {node.name!r} ({node.op.name}): stored output types "
                              f"{', '.join(map(str, got)) or 'none'} differ from its op's rule "
                              f"({', '.join(map(str, types)) or 'none'})")


def dumps(doc: dict) -> str:
    """The document as JSON text a person can read: one line per node (a loop node's body is
    laid out the same way, indented), everything else compact."""
    lines: list[str] = []
    _dump(doc, "", lines, "")
    return "\n".join(lines) + "\n"


def _inline(x) -> str:
    return json.dumps(x, separators=(", ", ": "), allow_nan=True)


def _opens(x) -> bool:
    """Laid out over several lines: graphs, node lists, nodes with bodies, and what holds them."""
    if isinstance(x, dict):
        return "nodes" in x or "bodies" in x or "graph" in x
    if isinstance(x, list):
        return any(isinstance(n, dict) and ("op" in n or _opens(n)) for n in x)
    return False


def _dump(x, indent: str, lines: list, prefix: str, comma: str = "") -> None:
    opens = _opens(x)
    if isinstance(x, list) and opens:
        lines.append(f"{indent}{prefix}[")
        for i, n in enumerate(x):
            _dump(n, indent + "  ", lines, "", "," if i < len(x) - 1 else "")
        lines.append(f"{indent}]{comma}")
    elif opens:
        lines.append(f"{indent}{prefix}{{")
        items = list(x.items())
        for i, (k, v) in enumerate(items):
            _dump(v, indent + "  ", lines, json.dumps(k) + ": ", "," if i < len(items) - 1 else "")
        lines.append(f"{indent}}}{comma}")
    else:
        lines.append(f"{indent}{prefix}{_inline(x)}{comma}")
