"""Checkpoints (TF1's tf.train.Saver): variable values in rnngraph's own no-pickle format.

A checkpoint is one file `<prefix>.rgckpt`: a NumPy .npz archive (a zip of .npy arrays) with
one member per saved variable (`v<k>.npy`) and a `meta.json` member naming them:

    {"format": "rnngraph-checkpoint", "version": 1,
     "variables": [{"name": "rnn/basic_rnn_cell/kernel", "member": "v0", "dtype": "float32",
                    "shape": [8, 5]}, ...], "global_step": 1000}

Loading goes through the checked zip reader of `rnngraph.safezip` (the one `rg.load` uses):
before a byte is inflated it refuses duplicate, unknown, encrypted or oversized members, zip
bombs, and `.npy` headers whose shape and dtype do not account for exactly the bytes their
member holds (`rg.io.LoadLimits` bounds it all). Nothing is unpickled. Every array's dtype and
shape is checked against meta.json and the variable it restores before any data is read, and
no variable changes unless every one of them checks out. Beside the checkpoints, the text
file `checkpoint` in the same folder lists them, newest last (TF1's file of that name, written
in the same two-key text form), so `latest_checkpoint(folder)` finds the newest.

`save(sess, prefix, global_step=1000)` writes `prefix-1000.rgckpt` and returns `prefix-1000`,
the path `restore(sess, path)` and `latest_checkpoint` use (TF1's convention).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import time
import zipfile
from typing import NamedTuple

import numpy as np

from ..errors import InvalidFileError, user_location
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..ops.random import COUNTER_KEY as RUN_COUNTER_KEY
from ..ops.sources import global_variables
from ..safezip import Layout, LoadLimits, MemberError, open_archive

SUFFIX = ".rgckpt"
FORMAT = "rnngraph-checkpoint"
VERSION = 1
STATE_FILE = "checkpoint"
META_ENTRY = "meta.json"
MAX_META_BYTES = 16 << 20         # meta.json is small: refuse a larger one unread
_NUMERIC = "biuf"
_MEMBER = r"v(0|[1-9][0-9]{0,8})"

LAYOUT = Layout(
    required=META_ENTRY,
    missing=f"no {META_ENTRY} member",
    names=re.compile(rf"meta\.json|{_MEMBER}\.npy"),
    unknown="is not a member an rnngraph checkpoint holds (meta.json, v<n>.npy)",
    caps={META_ENTRY: MAX_META_BYTES},
)


class CheckpointState(NamedTuple):
    """What `get_checkpoint_state` reads from a folder's `checkpoint` file (TF1's proto)."""
    model_checkpoint_path: str
    all_model_checkpoint_paths: list


def _var_dict(var_list):
    if var_list is None:   # (and the random ops' run counter, which global_variables omits)
        counter = _run_counter_variable(get_default_graph().root)
        extra = [] if counter is None else [counter]
        return {v.node.name: v for v in global_variables() + extra}
    if isinstance(var_list, dict):
        items = list(var_list.items())
    else:
        items = [(v.node.name if isinstance(v, Value) else None, v) for v in var_list]
    out = {}
    for key, v in items:
        if not isinstance(v, Value) or v.node.op.name != "variable":
            raise TypeError(f"Saver: var_list holds {v!r}, not a variable (at {user_location()})")
        if not isinstance(key, str) or not key:
            raise TypeError(f"Saver: var_list names must be non-empty strings, got {key!r}")
        if key in out:
            raise ValueError(f"Saver: the name {key!r} is given to two variables")
        out[key] = v
    root = next(iter(out.values())).graph.root if out else get_default_graph().root
    counter = _run_counter_variable(root)
    if counter is not None and counter.node.name not in out and \
            all(v.node.name in out for v in global_variables(root)):
        out[counter.node.name] = counter   # (every variable listed, as Saver() saves them: the
        #                                     random stream too, so a restore resumes it)
    return out


def _run_counter_variable(root):
    """The variable random ops count runs with in graph `root` (random/run_counter), or None."""
    found = root.collections.get(RUN_COUNTER_KEY)
    if not found:
        return None
    return found[0].node.inputs[0]   # (the collection holds assign(counter, counter + 1))


class Saver:
    """Saves and restores variables (tf.train.Saver).

    Args:
      var_list: the variables to save: None (all variables of the default graph when the Saver
        is made), a list of variables, or a dict {name in the file: variable}. The run counter
        of random ops (`random/run_counter`) is saved with the others, so a restored session
        draws the numbers the saved one would have drawn next; a checkpoint that lacks it (from
        a graph without random ops) restores all the same, leaving the counter as it is.
      max_to_keep: how many recent checkpoints to keep (older ones are deleted); None or 0
        keeps all.
      keep_checkpoint_every_n_hours: also keep one checkpoint per this many hours.
      save_relative_paths: write the `checkpoint` file's paths relative to its folder.
    """

    def __init__(self, var_list=None, reshape=False, sharded=False, max_to_keep=5,
                 keep_checkpoint_every_n_hours=10000.0, name=None, restore_sequentially=False,
                 saver_def=None, builder=None, defer_build=False, allow_empty=False,
                 write_version=None, pad_step_number=False, save_relative_paths=False,
                 filename=None):
        for arg, val, default in (("reshape", reshape, False), ("sharded", sharded, False),
                                  ("saver_def", saver_def, None), ("builder", builder, None),
                                  ("defer_build", defer_build, False),
                                  ("filename", filename, None)):
            if val != default:
                raise NotImplementedError(f"Saver: the argument {arg}= is not supported by "
                                          f"rnngraph (got {val!r})")
        if max_to_keep is not None and (isinstance(max_to_keep, bool) or
                                        not isinstance(max_to_keep, int) or max_to_keep < 0):
            raise ValueError(f"Saver: max_to_keep must be an int >= 0 or None, got "
                             f"{max_to_keep!r} (at {user_location()})")
        if not keep_checkpoint_every_n_hours > 0:
            raise ValueError(f"Saver: keep_checkpoint_every_n_hours must be > 0, got "
                             f"{keep_checkpoint_every_n_hours!r}")
        self._vars = _var_dict(var_list)
        # the graph's random-op run counter (random/run_counter) is saved when it exists, but a
        # checkpoint without it (saved before the graph had random ops, say a model without
        # dropout) restores all the same: it is no model variable (TF1 keeps no such state)
        self._optional = {name for name, v in self._vars.items()
                          if v is _run_counter_variable(v.graph.root)}
        if not self._vars and not allow_empty:
            raise ValueError("Saver: there are no variables to save (build the model first, or "
                             "pass allow_empty=True)")
        self.max_to_keep = max_to_keep or 0
        self.keep_every_s = float(keep_checkpoint_every_n_hours) * 3600.0
        self.pad_step_number = bool(pad_step_number)
        self.save_relative_paths = bool(save_relative_paths)
        self.name = name
        self._recent: list[tuple[str, float]] = []     # (prefix, time saved), oldest first
        self._last_kept = None

    @property
    def last_checkpoints(self) -> list:
        """The prefixes of the checkpoints this Saver still keeps, oldest first."""
        return [p for p, _ in self._recent]

    # --- save -----------------------------------------------------------------------------
    def save(self, sess, save_path, global_step=None, latest_filename=None,
             meta_graph_suffix="meta", write_meta_graph=True, write_state=True,
             strip_default_attrs=False, save_debug_info=False):
        """Write the variables' values as the session holds them; returns the checkpoint's
        prefix (`save_path`, or `save_path-<global_step>`)."""
        if not isinstance(save_path, (str, os.PathLike)) or not str(save_path):
            raise TypeError(f"Saver.save: save_path must be a path, got {save_path!r}")
        save_path = os.fspath(save_path)
        step = None
        if global_step is not None:
            if isinstance(global_step, Value):
                global_step = sess.read_variable(global_step) if \
                    global_step.node.op.name == "variable" else sess.run(global_step)
            step = int(np.asarray(global_step))
            save_path = f"{save_path}-{step:08d}" if self.pad_step_number else f"{save_path}-{step}"
        folder = os.path.dirname(os.path.abspath(save_path))
        if not os.path.isdir(folder):
            raise ValueError(f"Saver.save: the folder {folder!r} of save_path does not exist "
                             f"(at {user_location()})")
        arrays, entries = {}, []
        for k, (name, var) in enumerate(self._vars.items()):
            value = np.asarray(sess.read_variable(var), order="C")   # (0-d stays 0-d)
            member = f"v{k}"
            arrays[member] = value
            entries.append({"name": name, "member": member, "dtype": value.dtype.name,
                            "shape": list(value.shape)})
        meta = {"format": FORMAT, "version": VERSION, "variables": entries, "global_step": step}
        _write_atomic(save_path + SUFFIX, arrays, meta)
        if write_state:
            self._remember(save_path, folder, latest_filename or STATE_FILE)
        return save_path

    def _remember(self, prefix, folder, state_name):
        now = time.time()
        self._recent = [(p, t) for p, t in self._recent if p != prefix] + [(prefix, now)]
        if self._last_kept is None:
            self._last_kept = now
        if self.max_to_keep:
            while len(self._recent) > self.max_to_keep:
                old, t = self._recent.pop(0)
                if t - self._last_kept >= self.keep_every_s:
                    self._last_kept = t    # kept for good: every n hours, one survives
                    continue
                try:
                    os.remove(old + SUFFIX)
                except FileNotFoundError:
                    pass
        _write_state(folder, state_name, prefix, [p for p, _ in self._recent],
                     self.save_relative_paths)

    # --- restore --------------------------------------------------------------------------
    def restore(self, sess, save_path, limits=None):
        """Set the variables from the checkpoint `save_path` (a prefix `save` returned, as
        `latest_checkpoint` gives it). All or nothing: a missing variable (KeyError), a wrong
        shape (ValueError) or dtype (TypeError), or a damaged, planted or oversized file
        (InvalidFileError naming the checkpoint and the member) changes no variable.

        `limits`, an `rg.io.LoadLimits`, bounds what reading the file may cost (member sizes,
        compression ratios, the whole archive); all of it is checked from the zip directory
        and the `.npy` headers before anything is decompressed. The defaults are generous."""
        if save_path is None:
            raise ValueError("Saver.restore: save_path is None (no checkpoint found? "
                             "latest_checkpoint returns None for a folder without one)")
        limits = _limits(limits, "Saver.restore")
        path = _file_of(save_path)
        loads = []
        with _refusals(path), _open_checkpoint(path, limits) as (archive, entries):
            for name, var in self._vars.items():
                if name not in entries and name in self._optional:
                    continue   # (the session's run counter goes on from where it is)
                if name not in entries:
                    raise KeyError(f"Saver.restore: the checkpoint {save_path!r} holds no variable "
                                   f"{name!r} (it has {len(entries)}: "
                                   f"{', '.join(sorted(entries)[:5])}"
                                   f"{'...' if len(entries) > 5 else ''})")
                key, dtype, shape = entries[name]
                want_shape, want_dtype = tuple(var.shape), np.dtype(var.dtype)
                if shape != want_shape:
                    raise ValueError(f"Saver.restore: variable {name!r} has shape "
                                     f"{list(want_shape)}, the checkpoint holds {list(shape)} "
                                     f"({path}, member {key + '.npy'!r})")
                if dtype != want_dtype:
                    raise TypeError(f"Saver.restore: variable {name!r} is {want_dtype}, the "
                                    f"checkpoint holds {dtype} ({path}, member {key + '.npy'!r})")
                loads.append((var, key))
            # every check passed: now read the data (a damaged member still refuses it all)
            loads = [(var, archive.array(key)) for var, key in loads]
        for var, arr in loads:
            sess.load_variable(var, arr)

    def recover_last_checkpoints(self, checkpoint_paths):
        """Take over a list of existing checkpoints (oldest first) for max_to_keep."""
        self._recent = [(os.fspath(p), 0.0) for p in checkpoint_paths]


# --- files ----------------------------------------------------------------------------------
def _write_atomic(path, arrays: dict, meta: dict) -> None:
    """The archive written under a temporary name in the same folder, then renamed: a reader
    (or a crash) never sees half a checkpoint."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".rgckpt-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("meta.json", json.dumps(meta))
            for member, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                zf.writestr(member + ".npy", buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def read_checkpoint(save_path, limits=None) -> dict:
    """{variable name: array} from the checkpoint `save_path` (its prefix, or the file).
    Raises InvalidFileError, naming the checkpoint and the member, for anything but a
    checkpoint this module wrote; nothing in the file is unpickled or run, and `limits` (an
    `rg.io.LoadLimits`) is checked before anything is decompressed."""
    limits = _limits(limits, "read_checkpoint")
    path = _file_of(save_path)
    with _refusals(path), _open_checkpoint(path, limits) as (archive, entries):
        return {name: archive.array(key) for name, (key, _, _) in entries.items()}


def _limits(limits, who):
    if limits is None:
        return LoadLimits()
    if not isinstance(limits, LoadLimits):
        raise TypeError(f"{who}: limits must be an rg.io.LoadLimits, got "
                        f"{type(limits).__name__} (at {user_location()})")
    return limits


def _file_of(save_path) -> str:
    if not isinstance(save_path, (str, os.PathLike)):
        raise TypeError(f"save_path must be a path, got {save_path!r} (at {user_location()})")
    path = os.fspath(save_path)
    if not path.endswith(SUFFIX):
        path += SUFFIX
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint {path!r}")
    return path


class _MetaError(MemberError):
    """Internal: what meta.json says is wrong or does not match the archive."""


@contextlib.contextmanager
def _refusals(path):
    """Every refusal of the file becomes an InvalidFileError naming the checkpoint (and the
    member, where one is at fault)."""
    try:
        yield
    except _MetaError as exc:
        raise InvalidFileError(f"{path}: {exc}") from None
    except MemberError as exc:
        raise InvalidFileError(f"{path}: damaged or planted checkpoint, {exc}") from None
    except InvalidFileError as exc:
        raise InvalidFileError(f"{path}: not a checkpoint ({exc})") from None


@contextlib.contextmanager
def _open_checkpoint(path, limits):
    """The checked archive and {variable name: (member key, dtype, shape)}, every entry of
    meta.json checked against the `.npy` header it names; no array data read yet."""
    with open_archive(path, limits, LAYOUT) as archive:
        yield archive, _entries(archive)


def _entries(archive) -> dict:
    raw = archive.read_member(META_ENTRY)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:   # (UnicodeDecodeError is a ValueError)
        raise _MetaError(META_ENTRY, f"not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _MetaError(META_ENTRY, "not an rnngraph checkpoint")
    if meta.get("version") != VERSION:
        raise _MetaError(META_ENTRY, f"checkpoint version {meta.get('version')!r}; this "
                                     f"rnngraph reads version {VERSION}")
    entries = meta.get("variables")
    if not isinstance(entries, list):
        raise _MetaError(META_ENTRY, "meta.json has no variable list")
    out, used = {}, set()
    for e in entries:
        name, key, dtype, shape = _entry(e)
        if name in out:
            raise _MetaError(META_ENTRY, f"the variable {name!r} is listed twice")
        if key in used:
            raise _MetaError(META_ENTRY, f"two variables are stored in member {key + '.npy'!r}")
        h = archive.headers.get(key)
        if h is None:
            raise _MetaError(key + ".npy", f"missing: the array of {name!r} is not in the archive")
        if h.dtype != dtype or h.shape != shape:
            raise _MetaError(key + ".npy", f"the array of {name!r} is {h.dtype}{list(h.shape)}, "
                                           f"meta.json says {dtype}{list(shape)}")
        out[name] = (key, dtype, shape)
        used.add(key)
    for key in archive.headers:
        if key not in used:
            raise _MetaError(key + ".npy", "is not listed in meta.json (a checkpoint rnngraph "
                                           "wrote lists every array it holds)")
    return out


def _entry(e):
    ok = isinstance(e, dict) and isinstance(e.get("name"), str) and \
        isinstance(e.get("member"), str) and re.fullmatch(_MEMBER, e["member"]) and \
        isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list) and \
        all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in e["shape"])
    if not ok:
        raise _MetaError(META_ENTRY, "a malformed variable entry in meta.json")
    try:
        dtype = np.dtype(e["dtype"])
    except (TypeError, ValueError):
        raise _MetaError(META_ENTRY, f"variable {e['name']!r} has dtype {e['dtype']!r}") from None
    if dtype.kind not in _NUMERIC or dtype.fields is not None or dtype.subdtype is not None:
        raise _MetaError(META_ENTRY, f"variable {e['name']!r} has dtype {dtype}, not numeric")
    return e["name"], e["member"], dtype, tuple(e["shape"])


_STATE_LINE = re.compile(r'^(model_checkpoint_path|all_model_checkpoint_paths): "(.*)"$')


def _quote(p: str) -> str:
    return p.replace("\\", "\\\\").replace('"', '\\"')


def _unquote(p: str) -> str:
    return re.sub(r"\\(.)", r"\1", p)


def _write_state(folder, state_name, latest, all_paths, relative):
    def shown(p):
        return os.path.relpath(p, folder) if relative else p
    lines = [f'model_checkpoint_path: "{_quote(shown(latest))}"']
    lines += [f'all_model_checkpoint_paths: "{_quote(shown(p))}"' for p in all_paths]
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(folder, state_name))


def get_checkpoint_state(checkpoint_dir, latest_filename=None):
    """The folder's `checkpoint` file as a CheckpointState, or None when there is none.
    Relative paths in it are taken relative to the folder."""
    path = os.path.join(os.fspath(checkpoint_dir), latest_filename or STATE_FILE)
    if not os.path.isfile(path):
        return None
    if os.path.getsize(path) > MAX_META_BYTES:
        raise InvalidFileError(f"{path}: too large for a checkpoint list")
    latest, every = None, []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as exc:
        raise InvalidFileError(f"{path}: not a checkpoint list (not UTF-8 text: {exc})") from None
    for line in lines:
        line = line.strip()
        if not line:
            continue
        m = _STATE_LINE.match(line)
        if m is None:
            raise InvalidFileError(f"{path}: unexpected line {line[:80]!r}")
        p = _unquote(m.group(2))
        if not os.path.isabs(p):
            p = os.path.join(os.fspath(checkpoint_dir), p)
        if m.group(1) == "model_checkpoint_path":
            latest = p
        else:
            every.append(p)
    if latest is None:
        return None
    return CheckpointState(latest, every)


def latest_checkpoint(checkpoint_dir, latest_filename=None):
    """The prefix of the newest checkpoint listed in `checkpoint_dir`, or None."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is None or not os.path.isfile(state.model_checkpoint_path + SUFFIX):
        return None
    return state.model_checkpoint_path


def checkpoint_exists(checkpoint_prefix) -> bool:
    """Whether a checkpoint with this prefix exists (tf.train.checkpoint_exists)."""
    return os.path.isfile(os.fspath(checkpoint_prefix) + SUFFIX)
