"""Saving a graph (and a session's variable values) to one file, and loading it back.

The file is a zip archive in NumPy's `.npz` layout, so `np.load(path, allow_pickle=False)`
opens it and `unzip -p model.npz graph.json` shows the graph:

    graph.json         the graph as JSON (see codec.py), plus named fetches and the session
    graph.sha256       the SHA-256 of graph.json, as `sha256sum` prints it (format version 2)
    constants/<k>.npy  constant values
    variables/<k>.npy  variable values (when saved with a session)

Loading never unpickles and never evaluates code from the file: the container is checked
against `LoadLimits` from its zip directory and `.npy` headers before anything is inflated
(container.py); ops are looked up by name in rnngraph's own registry and rebuilt from their
attributes once those fit the op's declared schema (schema.py), then the graph is checked
(output types against each op's rule, and `rg.verify`). Every failure is an InvalidFileError
naming the member at fault. The hash detects damage and careless edits; it is not a signature
(whoever edits graph.json can rewrite it), so a file from an untrusted source is still only
as safe as these checks make it: it can describe a huge computation, never run code.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..version import __version__

from ..ir.graph import Graph, get_default_graph
from ..ir.value import Value
from ..ir.verify import verify
from ..runtime.session import Session, gc_paused
from . import codec
from .codec import Corrupt, InvalidFileError
from .container import GRAPH_ENTRY, HASH_ENTRY, LoadLimits, MemberError, open_archive

FORMAT = "rnngraph"
FORMAT_VERSION = 2   # 2: graph.sha256, the content hash of graph.json
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip


@dataclass
class Saved:
    """What a file holds: the graph, variable values by name, named fetches, session seed."""
    graph: Graph
    values: dict = field(default_factory=dict)
    fetches: dict = field(default_factory=dict)
    seed: int | None = None
    path: str = ""

    def session(self, device="cpu", **options):
        """A Session on the loaded graph with the saved variable values loaded."""
        sess = Session(self.graph, device=device, seed=self.seed or 0, **options)
        for name, value in self.values.items():
            sess.load_variable(name, value)
        return sess


# --- saving -------------------------------------------------------------------------------------
def save(path, graph=None, session=None, fetches=None) -> str:
    """Write `graph` (default: the session's graph, else the default graph) and, when `session`
    is given, the current values of all its variables to `path` (one `.npz`-layout file).

    `fetches`: optional {name: Value} saved by value id, so a reader can find e.g. the loss or
    the train op again (`rg.io.read(path).fetches["loss"]`). Returns the path written. The
    file is written to a temporary name first and then moved into place.
    """
    graph = _root_of(graph, session)
    if session is not None and session.graph is not graph:
        raise ValueError("save: the session runs another graph than the one being saved")
    arrays = codec.ArrayTable()
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "rnngraph_version": _version(),
        "graph": codec.encode_graph(graph, arrays),
        "collections": codec.encode_collections(graph, arrays),
        "fetches": _encode_fetches(graph, fetches),
    }
    if session is not None:
        names = [n.name for n in graph.nodes if n.op.name == "variable"]
        doc["session"] = {
            "seed": int(session.variables.seed),
            "variables": {name: arrays.add(session.read_variable(name), "variables")
                          for name in names},
        }
    text = codec.dumps(doc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            raw = text.encode("utf-8")
            zf.writestr(GRAPH_ENTRY, raw, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(HASH_ENTRY, graph_hash(raw))
            for key, arr in arrays.arrays.items():
                with zf.open(key + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr,
                                              allow_pickle=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved model is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)


def _root_of(graph, session) -> Graph:
    if graph is None:
        return session.graph if session is not None else get_default_graph().root
    if isinstance(graph, Value):
        return graph.graph.root
    if not isinstance(graph, Graph):
        raise TypeError(f"save: graph must be a Graph (or a Value of one), got "
                        f"{type(graph).__name__}")
    if graph.parent is not None:
        raise ValueError(f"save: {graph!r} is a loop body; save the graph that holds the loop")
    return graph


def _encode_fetches(graph: Graph, fetches) -> dict:
    if not fetches:
        return {}
    if not isinstance(fetches, dict):
        raise TypeError("save: fetches must be a dict {name: Value}")
    out = {}
    for name, v in fetches.items():
        if not isinstance(name, str) or not isinstance(v, Value):
            raise TypeError(f"save: fetches must map names to Values, got {name!r}: {v!r}")
        if v.graph is not graph:
            raise ValueError(f"save: fetch {name!r} ({v.name}) is not a value of the saved graph")
        out[name] = v.id
    return out


def _version() -> str:
    return __version__


# --- loading ------------------------------------------------------------------------------------
def read(path, limits: LoadLimits | None = None) -> Saved:
    """Load everything a file holds (see `Saved`). Raises FileNotFoundError for a missing file,
    InvalidFileError (a ValueError) for anything that is not a valid rnngraph file, naming the
    member at fault (and an unknown op when the file uses one).

    `limits` (a `LoadLimits`) bounds what loading may cost: member sizes, the whole archive's
    decompressed size, node count and nesting, all checked from the zip directory and the
    `.npy` headers before anything is decompressed. The defaults are generous."""
    path = str(path)
    limits = LoadLimits() if limits is None else limits
    if not isinstance(limits, LoadLimits):
        raise TypeError(f"limits must be an rg.io.LoadLimits, got {type(limits).__name__}")
    if os.path.isdir(path):
        raise InvalidFileError(f"not a valid rnngraph file: {path} is a directory")
    with open(path, "rb") as fh:  # FileNotFoundError / PermissionError as they are
        head = fh.read(4)
    if head not in _ZIP_MAGIC:
        raise InvalidFileError(f"not a valid rnngraph file: {path} (not an .npz/zip archive)")
    member = GRAPH_ENTRY   # what a failure below names, unless it names a member itself
    try:
        with open_archive(path, limits) as archive, gc_paused():
            return _read_archive(archive, path, limits)
    except MemberError as exc:
        raise InvalidFileError(f"not a valid rnngraph file: {path}, {exc}") from None
    except InvalidFileError as exc:
        msg = str(exc)
        if msg.startswith("cannot load") or msg.startswith("not a valid"):
            raise
        raise InvalidFileError(f"not a valid rnngraph file: {path} ({msg})") from None
    except codec.UnknownOp as exc:
        raise InvalidFileError(f"cannot load {path}: member {member!r}: {exc}; the file was "
                               "written by another version of rnngraph, or it was edited") from None
    except Corrupt as exc:
        raise InvalidFileError(f"not a valid rnngraph file: {path}, member {member!r}: "
                               f"{exc}") from None
    except RecursionError:
        raise InvalidFileError(f"not a valid rnngraph file: {path}, member {member!r}: it nests "
                               "too deeply") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001  whatever a damaged document raises
        # (KeyError, TypeError, VerificationError...)
        raise InvalidFileError(f"not a valid rnngraph file: {path}, member {member!r} "
                               f"({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    msg = str(exc)
    if "allow_pickle" in msg or "pickled" in msg:
        return "it holds pickled data, which rnngraph never loads"
    if isinstance(exc, (zipfile.BadZipFile, EOFError, zlib.error)):
        return f"damaged or truncated archive: {msg}"
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def graph_hash(raw: bytes) -> str:
    """The content hash saved beside graph.json (`graph.sha256`, in `sha256sum`'s layout)."""
    return f"{hashlib.sha256(raw).hexdigest()}  {GRAPH_ENTRY}\n"


def _read_archive(archive, path: str, limits: LoadLimits) -> Saved:
    if not archive.has(GRAPH_ENTRY):
        raise Corrupt(f"no {GRAPH_ENTRY} entry")
    raw = archive.read_member(GRAPH_ENTRY)
    hashed = archive.has(HASH_ENTRY)   # format version 2 on (checked below)
    if hashed and archive.read_member(HASH_ENTRY) != graph_hash(raw).encode():
        raise MemberError(GRAPH_ENTRY, f"its content does not match the hash in {HASH_ENTRY}: "
                                       "the file was damaged or edited")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Corrupt(f"not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise Corrupt(f"not valid JSON: {exc}") from None
    del raw   # (tens of MB for a big graph, while its document and the graph are built)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Corrupt(f"{GRAPH_ENTRY} does not describe an rnngraph graph")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise Corrupt("no format version")
    if version > FORMAT_VERSION:
        raise InvalidFileError(f"cannot load {path}: it was written in format version {version} "
                               f"by rnngraph {str(doc.get('rnngraph_version', '?'))[:40]}; this "
                               f"rnngraph reads versions up to {FORMAT_VERSION} (upgrade "
                               "rnngraph)")
    if version < 1:
        raise Corrupt(f"bad format version {version}")
    if version >= 2 and not hashed:   # version 2 added the content hash
        raise MemberError(HASH_ENTRY, f"missing: format version {version} files hold the "
                                      f"content hash of {GRAPH_ENTRY}")

    def get_array(key: str):
        if not isinstance(key, str) or key not in archive.headers:
            raise KeyError(key)
        return archive.array(key)

    dec = codec.Decoder(doc, get_array, max_nodes=limits.max_nodes, max_depth=limits.max_depth)
    gdoc = doc.get("graph")
    graph = dec.root(gdoc)

    for name, entry in _dict(doc.get("collections", {}), "collections").items():
        if isinstance(entry, dict) and set(entry) == {"values"}:
            ids = entry["values"]
            if not isinstance(ids, list):
                raise Corrupt(f"bad collection {name!r}")
            graph.collections[name] = [dec.ref(i, graph, f"collection {name!r}") for i in ids]
        elif isinstance(entry, dict) and set(entry) == {"data"}:
            graph.collections[name] = list(dec.value(entry["data"]))
        else:
            raise Corrupt(f"bad collection {name!r}")
    variables = {n.name for n in graph.nodes if n.op.name == "variable"}
    for v in graph.collections.get("variables", []):
        if v.node.op.name != "variable":
            raise Corrupt(f"collection 'variables' lists {v.name}, which is not a variable")

    fetches = {name: dec.ref(i, graph, f"fetch {name!r}")
               for name, i in _dict(doc.get("fetches", {}), "fetches").items()}

    values, seed = {}, None
    sess = doc.get("session")
    if sess is not None:
        sess = _dict(sess, "session")
        seed = sess.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise Corrupt("bad session seed")
        for name, key in _dict(sess.get("variables", {}), "session variables").items():
            if name not in variables:
                raise Corrupt(f"a value is saved for {name!r}, which is not a variable")
            arr = dec.array(key)
            op = graph.get_node(name).op
            if arr.shape != tuple(op.shape) or arr.dtype != np.dtype(op.dtype):
                raise MemberError(f"{key}.npy", f"the saved value of variable {name!r} is {arr.dtype}{list(arr.shape)},"
                              f" the variable is {op.dtype}{list(op.shape)}")
            values[name] = np.array(arr)  # a writable copy for the caller

    codec.check_types(graph)
    verify(graph)
    return Saved(graph=graph, values=values, fetches=fetches, seed=seed, path=path)


def _dict(x, what: str) -> dict:
    if not isinstance(x, dict):
        raise Corrupt(f"bad {what} record")
    return x


def load(path, limits: LoadLimits | None = None):
    """`(graph, values)` from a file written by `save`: the Graph and a dict {variable name:
    array} (empty when it was saved without a session). See `read` for errors and `limits`."""
    saved = read(path, limits)
    return saved.graph, saved.values


def restore(path, device="cpu", limits: LoadLimits | None = None, **options):
    """A Session on the graph loaded from `path` with the saved variable values loaded (and the
    saved seed, so variables without a saved value initialise as they did)."""
    return read(path, limits).session(device=device, **options)
