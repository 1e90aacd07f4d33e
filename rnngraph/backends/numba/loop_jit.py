"""A loop compiled whole: its steps, and the body's kernels in each, as one numba function.

The generated Python driver (loop_driver.py) still pays Python for every kernel call of every
step: a wrapper, argument checks and numba's dispatch, ~2-5 us a call, the same on one active
row as on 64. Padded batches have many such short steps. Here the same steps run inside one
compiled function: the loop over t, the active rows' bookkeeping (ActiveRows.at_step), the
body's products and fused kernels, plain elementwise sums and products, concats, and the
writes into the stacks. Products and fused kernels are called by address (panel_kernels.
product_c, a fused module's fused_block), the same machine code the wrappers run, so every
bit is the Python driver's, and the loop compiles in ~2-3 s instead of the ~10 s it took to
compile those kernels into it again.

Compiling takes a second or more, so a loop kernel compiles once it has run JIT_AFTER times
(hot loops: training, serving, a benchmark); numba keeps the machine code on disk. A body
with any other kind of node, or a value that is not a float32 or bool array, keeps the Python
driver. A fused kernel that declines its arrays (a shape mismatch) hands the loop back to the
Python driver at the start of that step, which reports the error as usual.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ...ops.elementwise import Add, Mul, Sub
from ...ops.panels import PanelMatMul
from ...ops.reduce import AddN
from ...ops.shape import Concat
from ...ops.sources import Constant
from ...runtime.loop_driver import StepCode, _names
from ...runtime.program import Program
from . import fused as fused_numba, panel_gemm
from .fused import _load
from .panel_gemm import spinning

JIT_AFTER = 2   # runs of a loop kernel in the Python driver before its loop is compiled
_SYMBOL = {Add: "+", Sub: "-", Mul: "*"}
_F32, _BOOL = np.dtype(np.float32), np.dtype(np.bool_)


def wanted(options: dict) -> bool:
    """Session(compile_loops=...), else the environment: RNNGRAPH_COMPILE_LOOPS=0 says no."""
    if "compile_loops" in options:
        return bool(options["compile_loops"])
    return os.environ.get("RNNGRAPH_COMPILE_LOOPS", "1") != "0"


def available(xp) -> bool:
    """NumPy arrays, and our compiled products (numba, AVX2): what every compiled loop calls."""
    return xp is np and panel_gemm.available()


def jit_driver(prog: Program, k: int, n_inv: int, n_seq: int, rows, carried_rows, fallback,
               node=None, shared=()):
    """steps(t_iter, carried, invariants, seqs, stacks, steps, active) as loop_driver's
    step_driver makes them, compiled; None when the body has a node compiled code cannot run.
    `rows` and `shared` as step_driver takes them, `carried_rows` flags the batched carried
    values, and `fallback` (the Python driver of the same loop `node`) takes over where
    compiled code declines."""
    if prog.tracked or fallback is None or k == 0:
        return None
    try:
        source, extras = _source(prog, k, n_inv, n_seq, rows, carried_rows, shared)
    except Exception as exc:   # noqa: BLE001 - a body we did not foresee: Python runs it
        _warn(node, exc)
        return None
    if source is None:
        return None
    from numba.core.errors import NumbaError   # optional: numba may be missing
    loop = _load(source).loop
    consts, block_sizes, fns = extras["consts"], extras["blocks"], extras["fns"]
    batched = [i for i, b in enumerate(carried_rows or ()) if b]
    broken: list = []   # numba could not compile this loop: the Python driver runs it

    def steps(t_iter, carried, invariants, seqs, stacks, steps, active=None):
        if broken or not isinstance(t_iter, range) or \
                (active is not None and active.observe is not None):
            return fallback(t_iter, carried, invariants, seqs, stacks, steps, active)
        # (each run its own: another thread may run this loop at the same time)
        blocks = tuple(np.zeros(size, np.int64) for size in block_sizes)
        ctl = spinning()
        if active is None:
            counts = starts = parked = ()
            width = batch = 0
            zero_all = True
        else:
            counts, starts = active.arrays()
            width, batch, zero_all = active.width, active.batch, bool(active.zero_all)
            parked = tuple(active.park(i) for i in batched)
        try:
            status, t, steps_now, width, carried_now = loop(
                t_iter.start, t_iter.stop, t_iter.step, steps, width, batch, zero_all, counts,
                starts, 0 if ctl is None else ctl.ctypes.data, tuple(carried),
                tuple(invariants), tuple(seqs), tuple(stacks), parked, consts, blocks, fns)
        except NumbaError as exc:   # (raised compiling, before any step ran)
            broken.append(exc)
            _warn(node, exc)
            return fallback(t_iter, carried, invariants, seqs, stacks, steps, active)
        steps, carried = steps_now, carried_now
        if active is not None:
            active.width = width
        if status:   # a kernel declined at step t: the Python driver runs it, and the rest
            return fallback(range(t, t_iter.stop, t_iter.step), list(carried), invariants,
                            seqs, stacks, steps, active)
        return list(carried), steps
    return steps


def _source(prog: Program, k: int, n_inv: int, n_seq: int, rows, carried_rows, shared=()):
    """The loop function's source and what it needs beside it, or (None, None)."""
    code = StepCode(prog, k, n_inv, n_seq, rows, shared)
    carried_in, carried_out, values = code.carried_in, code.carried_out, code.values
    typed = {}
    for node in prog.nodes:
        for v in list(node.inputs) + list(node.outputs):
            typed[prog.slot.get(v)] = v
    if any(v.dtype not in (_F32, _BOOL) for s, v in typed.items()
           if s is not None and s != code.t_slot):
        return None, None
    active = rows is not None
    row = code.row

    from . import panel_kernels   # heavy: loads numba and compiles the kernels
    body, header, consts, block_sizes = [], [], [], []
    fns = [panel_kernels.product_c.address, panel_kernels.halves_c.address]
    written = set(code.shared)   # (values in an earlier value's stack: never written)
    ind = "        "
    fail = f"return 1, t, steps, width, ({_names(carried_in)})"
    flags = [i for i, b in enumerate(carried_rows or ()) if b] if active else []
    parked = _products_into_parked(prog, carried_in, carried_out, values, flags)
    for i, (kernel, args, out, _, node) in enumerate(prog._plan):
        op = node.op
        a = [f"s{x}" for x in args]
        if isinstance(op, PanelMatMul):
            n = node.inputs[1].shape[1]
            if n is None or node.inputs[0].type.rank != 2:
                return None, None
            call = f"product({a[0]}, {a[2]}, {int(n)}, ctl_at, fns[0])" if i not in parked else \
                f"product_into({a[0]}, {a[2]}, {int(n)}, ctl_at, fns[0], p{parked[i]})"
            body += [f"{ind}ok, s{out} = {call}", f"{ind}if not ok:", f"{ind}    {fail}"]
        elif type(op) in _SYMBOL or isinstance(op, AddN):
            types = {str(v.type) for v in node.inputs}
            if len(types) != 1 or any(v.node.op.name == "constant" for v in node.inputs):
                return None, None   # (broadcasts: NumPy checks what may broadcast)
            body += [f"{ind}if {' or '.join(f'{x}.shape != {a[0]}.shape' for x in a[1:])}:",
                     f"{ind}    {fail}"]
            sym = "+" if isinstance(op, AddN) else _SYMBOL[type(op)]
            body.append(f"{ind}s{out} = {f' {sym} '.join(a)}")
        elif isinstance(op, Concat):
            if any(v.type.rank != 2 for v in node.inputs) or op.axis % 2 != 1:
                return None, None
            body += [f"{ind}if {' or '.join(f'{x}.shape[0] != {a[0]}.shape[0]' for x in a[1:])}:",
                     f"{ind}    {fail}",
                     f"{ind}s{out} = np.concatenate(({', '.join(a)},), axis=1)"]
        elif isinstance(op, Constant):
            value = np.asarray(op.value)
            if value.size != 1 or value.dtype != _F32:
                return None, None
            header.append(f"    s{out} = consts[{len(consts)}]")
            consts.append(value.reshape(1).copy())   # (as the wrapper passes it: 1-d)
        elif getattr(kernel, "compiled", None) is not None:
            form = kernel.compiled
            if any(v.type.rank == 0 and v.node.op.name != "constant" for v in node.inputs):
                return None, None
            b = len(block_sizes)
            block_sizes.append(form.block_size)
            fns += list(form.addresses)
            check, rows_fn = len(fns) - 2, len(fns) - 1
            body.append(f"{ind}rows, cols = {form.size.format(a[form.shape_from])}")
            for p, (slot, w) in enumerate(zip(out, form.widths)):
                j = next((j for j, x in enumerate(values) if x == slot and j not in written),
                         None)
                if j is not None:
                    written.add(j)   # computed straight into its stack row
                body.append(f"{ind}o{p} = " + (row(j) if j is not None else
                                                f"np.empty((rows, {w} * cols), f32)"))
            body += [f"{ind}i{q} = np.ascontiguousarray({x})" for q, x in enumerate(a)]
            body.append(f"{ind}blk = blocks[{b}]")
            body += form.fill_block("blk", [f"o{p}" for p in range(len(out))],
                                    [f"i{q}" for q in range(len(a))], ind)
            body += [f"{ind}if call_i64_3(fns[{check}], blk.ctypes.data, 0, 0) == 0:",
                     f"{ind}    {fail}",
                     f"{ind}if ctl_at != 0 and rows * cols >= SPLIT_MIN:",
                     f"{ind}    call_void4(fns[1], ctl_at, fns[{rows_fn}], blk.ctypes.data, rows)",
                     f"{ind}else:",
                     f"{ind}    call_i64_3(fns[{check}], blk.ctypes.data, 0, rows)"]
            body += [f"{ind}s{slot} = o{p}" for p, slot in enumerate(out)]
        else:
            return None, None
    # constants as literals: numba freezes globals into its cached code, so a new value must
    # make a new source (and the entry points' code is named by its file's digest)
    lines = ["import numpy as np",
             "from numba import njit",
             "from rnngraph.backends.numba.panel_kernels import call_i64_3, call_void4, call_void9",
             f"# panel_kernels {fused_numba._kernels_digest()}",
             f"NR, PARALLEL_FLOPS = {panel_gemm.NR}, {float(panel_gemm.PARALLEL_FLOPS)!r}",
             f"SPLIT_MIN = {fused_numba.SPLIT_MIN}",
             "f32 = np.float32",
             "",
             "",
             "@njit(nogil=True, cache=False)",
             "def product_into(x, bp, n, ctl_at, fn, park):",
             "    # into the leading rows of `park` (a carried value's parked buffer) where they",
             "    # fit, else into a new array",
             "    a = np.ascontiguousarray(x)",
             "    m, k = a.shape",
             "    if bp.shape[1] != k or bp.shape[0] * NR < n:",
             "        return False, np.empty((0, n), f32)",
             "    out = park[:m] if park.shape[0] >= m and park.shape[1] == n else \\",
             "        np.empty((m, n), f32)",
             "    if m and k:",
             "        call_void9(fn, a.ctypes.data, k, m, k, bp.ctypes.data, out.ctypes.data, n, n,",
             "                   ctl_at if 2.0 * m * k * n >= PARALLEL_FLOPS else 0)",
             "    elif m:",
             "        out[:] = 0",
             "    return True, out",
             "",
             "",
             "@njit(nogil=True, cache=False)",
             "def product(x, bp, n, ctl_at, fn):",
             "    return product_into(x, bp, n, ctl_at, fn, np.empty((0, 0), f32))",
             "",
             "",
             "@njit(nogil=True, cache=False)",
             "def loop(start, stop, step, steps, width, batch, zero_all, counts, starts, ctl_at, "
             "carried, invariants, seqs, stacks, parked, consts, blocks, fns):"]
    lines += code.unpack()
    if flags:
        lines.append(f"    {''.join(f'p{i}, ' for i in flags)}= parked")
    lines += header
    lines.append("    for t in range(start, stop, step):")
    if active:
        lines += [f"{ind}n_rows = counts[t]",
                  f"{ind}if n_rows != width:   # rows finish (or join, going backwards)",
                  f"{ind}    if n_rows < width:"]
        # (a carried value computed into its parked buffer is there already: no copy)
        lines += [f"{ind}        if s{carried_in[i]}.ctypes.data != p{i}.ctypes.data:\n"
                  f"{ind}            p{i}[n_rows:width] = s{carried_in[i]}[n_rows:width]\n"
                  f"{ind}        s{carried_in[i]} = s{carried_in[i]}[:n_rows]" for i in flags]
        lines.append(f"{ind}    else:")
        lines += [f"{ind}        if s{carried_in[i]}.ctypes.data != p{i}.ctypes.data:\n"
                  f"{ind}            p{i}[:width] = s{carried_in[i]}\n"
                  f"{ind}        s{carried_in[i]} = p{i}[:n_rows]" for i in flags]
        lines.append(f"{ind}    width = n_rows")
    lines += code.reads(ind, "np.int32")
    lines += body
    lines += code.writes(ind, written)
    lines.append(f"{ind}{_names(carried_in)}= {_names(carried_out)}")
    lines.append(f"{ind}steps += 1")
    lines.append(f"    return 0, stop, steps, width, ({_names(carried_in)})")
    extras = {"consts": tuple(consts) or (np.zeros(1, _F32),),
              "blocks": block_sizes or [1], "fns": tuple(fns)}
    return "\n".join(lines) + "\n", extras


def _products_into_parked(prog: Program, carried_in, carried_out, values, flags) -> dict:
    """{plan index: carried number} of the products that compute a batched carried value
    (numbers in `flags`) which may go straight into that value's parked full-width buffer:
    the step's incoming value, which is in those rows, is read by nothing from the product
    on (no later node, no stack write at the step's end, no other carried value). The rows
    then never need copying there when rows join (a gradient loop over a padded batch: its
    dh, ~1.4 us a step in the padded S1 BasicRNN) or finish. (No node a compiled loop runs
    makes a view of its input, so only the incoming value itself is in those rows.)"""
    into = {}
    plan = prog._plan
    for i in flags:
        new, old = carried_out[i], carried_in[i]
        if new == old or list(carried_out).count(new) != 1:
            continue
        at = next((j for j, step in enumerate(plan) if step.outs == new), None)
        if at is None or not isinstance(plan[at].node.op, PanelMatMul):
            continue
        later = {a for step in plan[at:] for a in step.ins} | set(values) | \
            {c for j, c in enumerate(carried_out) if j != i}
        if old not in later:
            into[at] = i
    return into


def _warn(node, exc) -> None:
    what = node.describe() if node is not None else "a loop"
    first = (str(exc).splitlines() or [""])[0]
    warnings.warn(f"rnngraph: {what} could not be compiled whole and runs in Python "
                  f"({type(exc).__name__}: {first})", RuntimeWarning, stacklevel=3)


