"""The numba form of a float32 Fused node: one compiled loop over rows and columns.

NumPy runs a fused program one whole-array pass per op, and its float32 exp and tanh are slow;
a compiled loop does all ops per element in registers. LLVM vectorises the loop only if it calls
no math library, so tanh and sigmoid use a rational approximation (the one Eigen, and therefore
TensorFlow's CPU kernels, use for float32 tanh; absolute error below 4e-7), and the loop walks
one contiguous row at a time: an LSTM's gate blocks are read at offsets in the rows of [B, 4H]
(column blocks, see passes/fuse.py), other non-contiguous inputs are copied first. Measured on
the LSTM gate math at batch 64, hidden 256, one thread: forward 242 -> 60 us, backward
71 -> 28 us per call against the generated NumPy code.

Used when numba is installed (the `fast` extra), the program is float32 and its outputs are
matrices; anything else, or RNNGRAPH_NUMBA=0 in the environment, keeps the NumPy kernel.
Compiled kernels are shared by identical programs within a process.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import types
from typing import NamedTuple

import numpy as np

from ...ops.scalar import py_exprs
from . import panel_gemm

_F32 = np.dtype(np.float32)
_KERNELS: dict = {}     # generated source -> compiled module
_HALVES: dict = {}
_AVAILABLE = None

# each op's scalar math, from the one table every generator reads (ops/scalar.py)
_EXPR = {**py_exprs(), "add_n": "+"}

_PRELUDE = '''
import math
import numpy as np
from numba import njit

# fast-math without the no-NaN/no-Inf assumptions: a NaN stays a NaN for check_numerics
_FAST = {"contract", "arcp", "nsz", "afn", "reassoc"}
_ZERO, _ONE, _HALF = np.float32(0.0), np.float32(1.0), np.float32(0.5)
_CLIP = np.float32(7.90531110763549805)   # tanh is 1 - 2^-24 or more past here
_A = [np.float32(c) for c in (4.89352455891786e-03, 6.37261928875436e-04,
                               1.48572235717979e-05, 5.12229709037114e-08,
                               -8.60467152213735e-11, 2.00018790482477e-13,
                               -2.76076847742355e-16)]
_B = [np.float32(c) for c in (4.89352518554385e-03, 2.26843463243900e-03,
                               1.18534705686654e-04, 1.19825839466702e-06)]
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = _A
_B0, _B2, _B4, _B6 = _B


@njit(fastmath=_FAST, error_model="numpy", inline="always", cache=False)
def _tanh(x):
    # a [13/6] odd/even rational function on the clamped argument: pure arithmetic
    x = min(max(x, -_CLIP), _CLIP)
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p / q


@njit(fastmath=_FAST, error_model="numpy", inline="always", cache=False)
def _sigmoid(x):
    return _HALF + _HALF * _tanh(_HALF * x)
'''


def available() -> bool:
    """numba importable and not switched off with RNNGRAPH_NUMBA=0."""
    global _AVAILABLE
    if os.environ.get("RNNGRAPH_NUMBA", "1") == "0":
        return False
    if _AVAILABLE is None:
        try:
            import numba  # noqa: F401  (optional: numba may be missing)
            _AVAILABLE = True
        except ImportError:
            _AVAILABLE = False
    return _AVAILABLE


def _access(t, out_shape):
    """How the loop reads an input of static type t inside a [rows, cols] loop: 'full' (its
    own row r), 'row' ([rows, 1]: one value per row), 'col' ([cols] or [1, cols]: the same row
    every time), 'scalar'; None if it does not broadcast that way."""
    shape = t.shape
    if all(d == 1 for d in shape):
        return "scalar"
    if len(shape) == 1:
        return "col" if shape[0] == out_shape[1] or out_shape[1] is None or shape[0] is None \
            else None
    if len(shape) != 2:
        return None
    if shape[0] == 1:
        return "col"
    if shape[1] == 1 and out_shape[1] != 1:
        return "row"
    return "full"


def numba_kernel(op, node, fallback=None):
    """A callable running Fused `op` with numba, or None when it does not qualify. On arrays the
    compiled loop declines (a shape mismatch, which the NumPy kernel reports) it calls
    `fallback` with the same arguments, or returns None when there is none."""
    if not available():
        return None
    types = op._types
    temps = op._temp_types
    n_in = op.n_inputs
    if not types or any(t.rank != 2 or t.dtype != _F32 for t in types):
        return None
    if any(t.dtype not in (_F32, np.dtype(np.bool_)) for t in temps):
        return None
    # joins (a concat of outputs along columns): an output nobody inside reads, of computed parts
    joins = {n_in + j: refs for j, (inner, refs) in enumerate(op.instrs) if inner.name == "concat"}
    if any(r in joins for _, refs in op.instrs for r in refs) or \
            any(r not in op.exports or min(parts) < n_in for r, parts in joins.items()) or \
            any(op.instrs[r - n_in][0].axis % 2 != 1 for r in joins):
        return None   # the loop writes a join's parts side by side: a last-axis concat only
    widths = [len(joins[r]) if r in joins else 1 for r in op.exports]
    elem = next((t for r, t in zip(op.exports, types) if r not in joins), None) or \
        temps[next(iter(joins.values()))[0] - n_in]
    if any(str(t) != str(elem) for r, t in zip(op.exports, types) if r not in joins) or \
            any(str(temps[p - n_in]) != str(elem) for parts in joins.values() for p in parts):
        return None
    blocks = [refs[0] for inner, refs in op.instrs if inner.name == "column_block"]
    if any(r >= n_in for r in blocks):
        return None  # a block of a computed value: NumPy slices it
    # a block is read at j = 0 .. cols - 1 of the loop (the output's columns): it must be that
    # wide, or one column wide (it broadcasts: read at its start for every j); anything else
    # (a block wider or narrower than the output) keeps the NumPy kernel
    spans = {inner.stop - inner.start for inner, _ in op.instrs
             if inner.name == "column_block"} - {1}
    out_cols = elem.shape[1] if elem.shape[1] is not None else next(iter(spans), None)
    if any(w != out_cols for w in spans):
        return None   # (an unknown output width: each call checks cols == the blocks' width)
    if any((inner.name not in _EXPR and inner.name not in ("column_block", "concat"))
           for inner, _ in op.instrs):
        return None
    out_shape = elem.shape
    in_types = [v.type for v in node.inputs]
    if any(t.dtype not in (_F32, np.dtype(np.bool_)) for t in in_types):
        return None
    # an input read only through column blocks is 'wide': its row is indexed at an offset
    # ('widecol': a vector, such as a bias [4H], the same for every row)
    direct = {r for inner, refs in op.instrs if inner.name != "column_block" for r in refs}
    direct |= set(op.exports)
    access = [("widecol" if t.rank == 1 else "wide") if i in blocks and i not in direct
              else _access(t, out_shape) for i, t in enumerate(in_types)]
    if any(a is None for a in access) or \
            any(access[refs[0]] not in ("full", "wide", "widecol") for inner, refs in op.instrs
                if inner.name == "column_block"):
        return None   # (a block is read from the loop's row of its input)
    lead = next((i for i, a in enumerate(access) if a == "full"), None)
    wide = next((i for i, a in enumerate(access) if a == "wide"), None)
    if lead is None and wide is None:
        return None  # nothing says how many rows and columns
    if lead is None and out_cols is None:
        return None   # the columns come from the output's static type here
    halves = _halves_available()
    source = _PRELUDE + _source(op, access, widths)
    if halves:
        source += _halves_source(len(op.exports), [t.rank for t in in_types],
                                 [t.dtype for t in in_types])
    module = _KERNELS.get(source)
    if module is None:
        module = _KERNELS[source] = _load(source)
    if lead is not None:
        size = f"rows, cols = a{lead}.shape"
    else:
        size = f"rows, cols = a{wide}.shape[0], {int(out_cols)}"
    split = (module.fused_split, module.fused_rows.address) if halves else None
    run = kernel_caller(module.fused, fallback, n_in, widths, size, (), split)
    # a loop driver may have chosen outputs written straight into rows of its stacks
    run.into = lambda dests: kernel_caller(module.fused, fallback, n_in, widths, size,
                                      tuple(dests), split)
    # what a compiled loop (loop.py) needs to call `fused` itself: an importable module
    run.compiled = CompiledFused(module.__name__, tuple(widths), lead, wide, out_cols) \
        if sys.modules.get(module.__name__) is module else None
    return run


class CompiledFused(NamedTuple):
    """How to call a module's `fused(out, a..., 0, -1)` from compiled code: outputs are
    [rows, width * cols] float32 for each width; rows and cols are input `lead`'s shape, or
    input `wide`'s rows and `out_cols`; inputs C-contiguous, 0-d ones as 1-d."""
    module: str
    widths: tuple
    lead: int | None
    wide: int | None
    out_cols: int | None


SPLIT_MIN = 2048   # elements (rows x cols) from which a kernel's rows are split over two threads


def _halves_available() -> bool:
    return panel_gemm.available()


def _kernels_digest() -> str:
    """A hash of ops/panel_kernels.py, written into the generated source: numba's disk cache
    of fused_split would otherwise keep calling an older post_call, with its job layout."""
    if "digest" not in _HALVES:
        from . import panel_kernels   # heavy: loads numba and compiles the kernels
        with open(panel_kernels.__file__, "rb") as f:
            _HALVES["digest"] = hashlib.sha256(f.read()).hexdigest()[:16]
    return _HALVES["digest"]


def _halves_source(n_out: int, ranks: list, dtypes: list) -> str:
    """fused_rows(block, r0, r1), a C function the helper thread calls (ops/panel_kernels.py):
    the kernel on rows r0 .. r1 of the arrays whose addresses and shapes `block` holds; and
    fused_split(out, a..., ctl, block, fn), which fills `block`, offers the second half of the
    rows to the helper, runs the first, and then the second too if the helper has not taken
    it. Every array is C-contiguous (the wrapper makes inputs so; outputs are fresh arrays or
    rows of a stack; fused_split checks), so an address and a shape rebuild it."""
    n_in = len(ranks)
    names = [f"out[{k}]" for k in range(n_out)] + [f"a{i}" for i in range(n_in)]
    shapes = [2] * n_out + [max(r, 1) for r in ranks]   # (0-d inputs arrive 1-d: see c())
    kinds = ["np.float32"] * n_out + ["np.bool_" if d == np.bool_ else "np.float32"
                                      for d in dtypes]
    slots = 3 * len(names)
    args = ", ".join(f"a{i}" for i in range(n_in))
    lines = ["", "", f"# panel_kernels {_kernels_digest()}",
             "from numba import carray, cfunc, types",
             "from rnngraph.backends.numba.panel_kernels import address_of, post_call, finish", "", "",
             "@cfunc(types.void(types.int64, types.int64, types.int64), "
             "error_model='numpy', cache=False)",
             "def fused_rows(block, r0, r1):",
             f"    b = carray(address_of(block), ({slots},), np.int64)"]
    views = []
    for j, (rank, kind) in enumerate(zip(shapes, kinds)):
        dims = ", ".join(f"b[{3 * j + 1 + d}]" for d in range(rank))
        lines.append(f"    v{j} = carray(address_of(b[{3 * j}]), ({dims},), {kind})")
        views.append(f"v{j}")
    outs = ", ".join(views[:n_out]) + ("," if n_out == 1 else "")
    call = f"fused(({outs}), {', '.join(views[n_out:])}, r0, r1)"
    lines += [f"    {call}", "", "",
              "@njit(error_model='numpy', nogil=True, cache=False)",
              f"def fused_split(out, {args}, ctl, block, fn):",
              f"    if not fused(out, {args}, 0, 0):",
              "        return False   # (a shape mismatch: the caller falls back)"]
    contiguous = " and ".join(f"{x}.flags.c_contiguous" for x in names)
    lines += [f"    if not ({contiguous}):",
              f"        return fused(out, {args}, 0, -1)"]
    for j, (name, rank) in enumerate(zip(names, shapes)):
        lines.append(f"    block[{3 * j}] = {name}.ctypes.data")
        lines += [f"    block[{3 * j + 1 + d}] = {name}.shape[{d}]" for d in range(rank)]
    lines += ["    rows = out[0].shape[0]",
              "    post_call(ctl, fn, block.ctypes.data, rows // 2, rows)",
              f"    fused(out, {args}, 0, rows // 2)",
              "    finish(ctl)",
              "    return True"]
    return "\n".join(lines) + "\n"


def kernel_caller(kernel, fallback, n_in: int, widths: list, size: str, dests: tuple,
             split=None):
    """The Python side of a compiled kernel, generated with fixed arity: it runs once per step
    and per fused node, so list building and star-args showed up in profiles (~4 us a call).

    Outputs are separate arrays (not one block): each dies at its own last use; a join of n
    parts is [rows, n * cols]; output k in
    `dests` is the caller's array d<k> instead (a row of a loop's stack, written in place).
    Blocks of [B, 4H] and broadcast gradients are copied to contiguous rows first: numba
    vectorises only rows it knows are contiguous. Arrays the kernel declines (a shape
    mismatch) go to `fallback`, whose results are copied into the destinations."""
    args = ", ".join(f"a{i}" for i in range(n_in))
    params = args + "".join(f", d{k}" for k in dests)
    outs = ", ".join(f"d{k}" if k in dests else f"empty((rows, {w} * cols), f32)"
                     for k, w in enumerate(widths))
    ins = ", ".join(f"c(a{i})" for i in range(n_in))
    lines = [f"def run({params}):", f"    {size}", f"    out = ({outs},)"]
    if split is not None:   # a loop's helper thread is spinning: it takes half the rows
        lines += ["    ctl = spinning() if rows * cols >= SPLIT_MIN else None",
                  "    if ctl is not None:",
                  f"        if split(out, {ins}, ctl, block, fn):",
                  "            return out",
                  f"    elif kernel(out, {ins}, 0, -1):",
                  "        return out"]
    else:
        lines += [f"    if kernel(out, {ins}, 0, -1):", "        return out"]
    if fallback is None:
        lines.append("    return None")
    else:
        lines.append(f"    result = fallback({args})")
        lines += [f"    d{k}[...] = result[{k}]" for k in dests]
        lines.append("    return result")
    namespace = {"kernel": kernel, "fallback": fallback, "empty": np.empty, "f32": np.float32,
                 "c": np.ascontiguousarray, "SPLIT_MIN": SPLIT_MIN}
    if split is not None:
        namespace.update(split=split[0], fn=split[1], spinning=panel_gemm.spinning,
                         block=np.zeros(3 * (len(widths) + n_in), np.int64))
    exec("\n".join(lines), namespace)  # noqa: S102 - our own generated code
    return namespace["run"]


def _cache_dir():
    base = os.environ.get("RNNGRAPH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "rnngraph")
    return os.path.join(base, "numba")


CACHE_BYTES = 30 << 20   # the kernel cache's size past which the least recently used go


def _load(source: str):
    """Compile generated source into a module (its `fused`, and `fused_rows`/`fused_split`
    where the helper thread exists). Written to a module in the cache directory, numba caches
    the machine code on disk (cache=True) and later processes skip the ~1 s compile; where that
    directory is not writable, the source is compiled in memory each process. A file already
    there is used only if it holds exactly this source (else it is rewritten: we never import a
    file we did not generate now), and the cache is trimmed to CACHE_BYTES, least recently
    used first, whenever a new module is written."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    text = source.replace("cache=False", "cache=True")
    try:
        folder = _cache_dir()
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"fused_{digest}.py")
        if _holds(path, text):
            os.utime(path)   # recently used: the trimming keeps it
        else:
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)  # atomic: concurrent processes see a whole file
            _trim(folder, keep=path)
        name = f"rnngraph_fused_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # numba's cache finds the module by name when it loads
        spec.loader.exec_module(module)
        return module
    except OSError:
        module = types.ModuleType("rnngraph_fused")
        exec(source, module.__dict__)  # noqa: S102 - our own generated code
        return module


def _holds(path: str, text: str) -> bool:
    try:
        with open(path) as f:
            return f.read() == text
    except (OSError, UnicodeDecodeError):
        return False


def _trim(folder: str, keep: str) -> None:
    """Delete the least recently used generated modules, with numba's files for them, until
    the folder holds at most CACHE_BYTES (never `keep`). Another process loading a deleted
    module recompiles it; nothing else is touched."""
    cached = os.path.join(folder, "__pycache__")
    groups: dict = {}
    for where in (folder, cached):
        try:
            names = os.listdir(where)
        except OSError:
            continue
        for name in names:
            if not name.startswith("fused_"):
                continue
            stem = name.split(".", 1)[0]
            try:
                st = os.stat(os.path.join(where, name))
            except OSError:
                continue
            size, used, files = groups.get(stem, (0, 0.0, []))
            groups[stem] = (size + st.st_size, max(used, st.st_mtime),
                            files + [os.path.join(where, name)])
    total = sum(g[0] for g in groups.values())
    keep_stem = os.path.basename(keep).split(".", 1)[0]
    for stem, (size, _, files) in sorted(groups.items(), key=lambda kv: kv[1][1]):
        if total <= CACHE_BYTES:
            break
        if stem == keep_stem:
            continue
        for f in files:
            try:
                os.remove(f)
            except OSError:
                pass
        total -= size


def _source(op, access, widths) -> str:
    n_in = op.n_inputs
    params = ["out"] + [f"a{i}" for i in range(n_in)] + ["r0", "r1"]
    lines = ["@njit(fastmath=_FAST, error_model='numpy', nogil=True, cache=False)",
             f"def fused({', '.join(params)}):",
             "    # rows r0 .. r1 (r1 < 0: to the last); shapes checked whatever the range",
             f"    rows, cols = out[0].shape[0], out[0].shape[1] // {widths[0]}"]
    for k, w in enumerate(widths):  # outputs may be the caller's arrays: check them too
        lines += [f"    if out[{k}].shape[0] != rows or out[{k}].shape[1] != {w} * cols:",
                  "        return False"]
    # each block's columns: start .. start + cols of its input's row (or its start alone, a
    # block one column wide, which broadcasts); checked against the arrays of every call, so
    # no read leaves its row whatever the arrays (False: the NumPy kernel runs, and says what
    # is wrong as it does without numba)
    spans = {int(inner.stop) - int(inner.start) for inner, _ in op.instrs
             if inner.name == "column_block"} - {1}
    lines += [f"    if cols != {w}:\n        return False" for w in sorted(spans)]
    reach: dict = {}   # input -> (furthest start of a full-width block, of a width-1 block)
    for inner, refs in op.instrs:
        if inner.name == "column_block":
            one = int(inner.stop) - int(inner.start) == 1
            wide_start, one_start = reach.get(refs[0], (None, None))
            if one:
                one_start = max(int(inner.start), -1 if one_start is None else one_start)
            else:
                wide_start = max(int(inner.start), -1 if wide_start is None else wide_start)
            reach[refs[0]] = (wide_start, one_start)
    names = []
    for i, a in enumerate(access):  # shape checks first: False sends the call to NumPy
        axis = 0 if a == "widecol" else 1
        wide_start, one_start = reach.get(i, (None, None))
        if wide_start is not None:
            lines += [f"    if a{i}.shape[{axis}] < {wide_start} + cols:", "        return False"]
        if one_start is not None:
            lines += [f"    if a{i}.shape[{axis}] < {one_start + 1}:", "        return False"]
        if a == "full":
            lines.append(f"    if a{i}.shape[0] != rows or a{i}.shape[1] != cols:")
        elif a == "wide":
            lines.append(f"    if a{i}.shape[0] != rows:")
        elif a == "widecol":
            lines.append(f"    if a{i}.ndim != 1:")
        elif a == "row":
            lines.append(f"    if a{i}.shape[0] != rows:")
        elif a == "col":
            lines.append(f"    c{i} = a{i}.reshape(a{i}.size)")
            lines.append(f"    if c{i}.shape[0] != cols:")
        if a != "scalar":
            lines.append("        return False")
        else:
            lines.append(f"    s{i} = a{i}.reshape(1)[0]")
        names.append({"scalar": f"s{i}", "col": f"c{i}[j]", "full": f"r{i}[j]",
                      "row": f"v{i}", "wide": None, "widecol": None}[a])
    lines.append("    for i in range(r0, rows if r1 < 0 else r1):")
    lines += [f"        o{k} = out[{k}][i]" for k in range(len(op.exports))]
    for i, a in enumerate(access):
        if a in ("full", "wide"):
            lines.append(f"        r{i} = a{i}[i]")
        elif a == "row":
            lines.append(f"        v{i} = a{i}[i, 0]")
    lines.append("        for j in range(cols):")
    for j, (inner, refs) in enumerate(op.instrs):
        args = [names[r] for r in refs]
        if inner.name == "concat":        # a join: written part by part below
            names.append(None)
            continue
        if inner.name == "column_block":  # an element of the input's row, at an offset
            src = f"a{refs[0]}" if access[refs[0]] == "widecol" else f"r{refs[0]}"
            one = int(inner.stop) - int(inner.start) == 1
            expr = f"{src}[{int(inner.start)}]" if one else f"{src}[{int(inner.start)} + j]"
        elif inner.name == "add_n":
            expr = " + ".join(args)
        else:
            expr = _EXPR[type(inner).name].format(*args)
        lines.append(f"            t{j} = {expr}")
        names.append(f"t{j}")
    for k, r in enumerate(op.exports):
        if names[r] is not None:
            lines.append(f"            o{k}[j] = {names[r]}")
        else:                              # part p of a join: columns p*cols ... (p+1)*cols
            parts = op.instrs[r - n_in][1]
            lines += [f"            o{k}[{p} * cols + j] = {names[q]}" for p, q in enumerate(parts)]
    lines.append("    return True")
    return "\n".join(lines) + "\n"
