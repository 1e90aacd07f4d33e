"""A loop's steps as one compiled function (numba): what the generated Python driver
(runtime/loop_driver.py) does per step, without a Python call per kernel and step.

Per step the Python driver calls each kernel through its wrapper: at batch 16 an LSTM step's
product and gate kernel cost ~3 us of calls on top of ~15 us of arithmetic. Here the body's
schedule becomes one numba function over the same slots, built only from the kernels whose
compiled form gives the bits the Python driver's kernels give:
- a step's matrix product: NumPy's own GEMM, called as np.matmul calls it (blas.py), split
  into the column halves the NumPy kernel uses (backends/numpy/kernels.py);
- a fused kernel already compiled by numba (fused.py): its own function, called directly;
- a constant: read once per call;
- add, sub, mul of equal-shaped float32 matrices, and a concat along the last axis.
A body with anything else (or a loop with active rows, a body that reads its step index, a
tracked run) keeps the Python driver. A step where a compiled kernel declines its arrays (a
shape it was not built for) hands the rest of the loop to the Python driver from that step,
which reports what it finds with the node that failed. A loop under a memory plan runs here
one chunk per call (runtime/loop_kernel.py, LoopExecutor.drive). Each call runs the steps that fit in about CALL_SECONDS
(timed as it goes) without holding the GIL, so Ctrl-C is seen between calls and other Python
threads run meanwhile.

The source is built from this module's templates, slot numbers and the kernels' module names
(hex digests fused.py made); it is compiled once per body and cached on disk like the fused
kernels (fused._load).
"""
from __future__ import annotations

import hashlib
import re
import time

import numpy as np

from ...ops.elementwise import Add, Mul, Sub
from ...ops.fused import Fused
from ...ops.linalg import MatMul
from ...ops.shape import Concat
from ...ops.sources import Constant
from ...runtime.loop_driver import StepCode, stack_destinations
from . import blas
from . import fused as _fused

CALL_SECONDS = 0.004   # a compiled call's length: Python sees Ctrl-C, and other threads the
# GIL, between calls (the steps per call follow the measured time of the last ones)
FIRST_STEPS = 8        # steps of a driver's first call, before any was timed
_F32 = np.dtype(np.float32)
_TYPES = (np.dtype(np.float32), np.dtype(np.bool_))
_BINARY = {Add: "+", Sub: "-", Mul: "*"}
_WHOLE = (0, 0, 0, 16)   # product thresholds that never split (a reference matmul kernel)
_FAILED: set = set()     # sources numba could not compile: Python drivers from then on
_MODULE = re.compile(r"rnngraph_fused_[0-9a-f]{20}")   # fused._load's module names
_DIGEST: dict = {}


def compiled_steps(prog, python_driver, k: int, n_inv: int, n_seq: int, shared=()):
    """A driver with python_driver's signature and results (carried, steps) that runs the
    steps of a plain loop (no active rows) in compiled code, or None where the body has a
    kernel without a compiled form, or numba / NumPy's GEMM is not there."""
    if python_driver is None or not blas.usable():   # (the package checked numba is there)
        return None
    code = StepCode(prog, k, n_inv, n_seq, None, shared)
    if code.t_slot in code.read:
        return None   # (no kernel compiled here takes the step index)
    source = _Source(prog, code).build()
    if source is None or source[0] in _FAILED:
        return None
    text, consts = source
    module = _fused._KERNELS.get(text)
    if module is None:
        module = _fused._KERNELS[text] = _fused._load(text)
    # (it writes the stacks the Python driver writes in place: stack_destinations for both)
    return CompiledSteps(module.steps_loop, python_driver, consts, text,
                         python_driver.in_place)


class CompiledSteps:
    """Runs a loop's remaining steps through the compiled function, ~CALL_SECONDS a call; hands
    the rest to the Python driver where the arrays are not the plain C-contiguous float32 (or
    bool) arrays it was built for, or a compiled kernel declines at a step."""

    def __init__(self, loop, python_driver, consts, source: str, in_place: int):
        self.loop, self.python = loop, python_driver
        self.consts, self.source, self.in_place = tuple(consts), source, in_place
        self.last_compiled = 0   # steps its last call ran compiled (LoopRun.compiled)
        self.step_seconds = 0.0  # the latest measured time of a compiled step
        self.address = blas.sgemm_address()

    def __call__(self, t_iter, carried, invariants, seqs, stacks, steps, active=None):
        self.last_compiled = 0
        if active is not None or type(t_iter) is not range or self.source in _FAILED or \
                not _plain(carried, invariants, stacks) or not _arrays(seqs):
            return self.python(t_iter, carried, invariants, seqs, stacks, steps, active)
        rest = (*invariants, *self.consts, *seqs, *stacks)
        carried = list(carried)
        n, step, done = len(t_iter), t_iter.step, 0
        while done < n:
            each = self.step_seconds
            count = min(n - done, max(1, int(CALL_SECONDS / each)) if each else FIRST_STEPS)
            lo = t_iter[done]
            start = time.perf_counter()
            try:
                out = self.loop(self.address, lo, lo + count * step, step, *carried, *rest)
            except Exception as exc:   # noqa: BLE001 - only numba's own compile errors
                if not _is_numba_error(exc):
                    raise
                _FAILED.add(self.source)
                return self.python(t_iter[done:], carried, invariants, seqs, stacks, steps)
            ran = (out[0] - lo) // step
            if ran:
                self.step_seconds = (time.perf_counter() - start) / ran
            carried = list(out[1:])
            steps += ran
            done += ran
            self.last_compiled += ran
            if ran < count:   # a kernel declined at this step: Python runs the rest
                return self.python(t_iter[done:], carried, invariants, seqs, stacks, steps)
        return carried, steps


def _plain(*groups) -> bool:
    return all(type(x) is np.ndarray and x.flags.c_contiguous and x.dtype in _TYPES
               for group in groups for x in group)


def _arrays(group) -> bool:
    """(sequences may be strided: each step's row is made contiguous, as the kernels' Python
    wrappers do)"""
    return all(type(x) is np.ndarray and x.dtype in _TYPES for x in group)


def _is_numba_error(exc) -> bool:
    from numba.core.errors import NumbaError   # (numba is there: this module compiled with it)
    return isinstance(exc, NumbaError)


class _Source:
    """The compiled loop's source for one body Program, or None (build) where a kernel has no
    compiled form here."""

    def __init__(self, prog, code: StepCode):
        self.prog, self.code = prog, code
        self.imports: dict = {}   # fused module name -> local name
        self.consts: list = []    # (argument name, value)
        self.lines: list = []
        dests, self.written = stack_destinations(prog, code.values, code.shared)
        self.dests = dests        # step index -> {output position: stack number}
        self.const_slots: set = set()
        self.fail = f"return (t, {_names(code.carried_in)})"   # a kernel declined at step t

    def build(self):
        ind = "        "
        code = self.code
        first = 1 + len(code.carried_in) + len(code.inv_in)
        if any(not self.prog.inputs[first + j].type.rank for j, a in enumerate(code.seq_in)
               if a in code.read):
            return None   # (a scalar row, or one of unknown rank: the Python driver reads it)
        self.lines += [f"{ind}s{a} = np.ascontiguousarray(q{j}[t])"
                       for j, a in enumerate(code.seq_in) if a in code.read]   # (a sequence
        # only a chunk's block reads is passed but never indexed)
        for i, step in enumerate(self.prog._plan):
            lines = self._step(i, *step, ind)
            if lines is None:
                return None
            self.lines += lines
        for j, a in enumerate(code.values):
            if j in self.written or j in code.shared:
                continue
            rank = self.prog.outputs[len(code.carried_out) + j].type.rank
            if not rank:
                return None   # (a scalar a step, or an unknown rank: kept in Python)
            # (a row of another shape: the Python driver reports it, naming the node)
            self.lines += [f"{ind}if " + " or ".join(
                f"s{a}.shape[{d}] != st{j}.shape[{d + 1}]" for d in range(rank)) + ":",
                f"{ind}    {self.fail}", f"{ind}st{j}[t] = s{a}"]
        if code.carried_in:
            self.lines.append(f"{ind}{_names(code.carried_in)}= {_names(code.carried_out)}")
        carried = _names(code.carried_in)
        params = ["fn", "t0", "t1", "dt"] + [f"s{a}" for a in code.carried_in] + \
            [f"s{a}" for a in code.inv_in] + [name for name, _ in self.consts] + \
            [f"q{j}" for j in range(len(code.seq_in))] + \
            [f"st{j}" for j in range(len(code.values))]
        head = [f"# blas {_blas_digest()}",   # (numba's cache does not see callees change)
                "import numpy as np", "from numba import njit",
                "from rnngraph.backends.numba.blas import product"]
        head += [f"from {module} import fused as {local}"
                 for module, local in self.imports.items()]
        text = "\n".join(head + [
            "", "",
            "@njit(error_model='numpy', nogil=True, cache=False)",
            f"def steps_loop({', '.join(params)}):",
            "    for t in range(t0, t1, dt):"] + self.lines + [
            f"    return (t1, {carried})", ""])
        return text, [value for _, value in self.consts]

    def _step(self, i, kernel, ins, outs, frees, node, ind):
        op = node.op
        types = [v.type for v in node.inputs]
        if type(op) is Constant:
            value = np.ascontiguousarray(kernel())
            if value.dtype not in _TYPES or not self._only_fused_read(outs):
                return None
            self.consts.append((f"c{i}", value))
            self.const_slots.add(outs)
            return [f"{ind}s{outs} = c{i}"]
        if any(t.dtype != _F32 for t in types) and type(op) is not Fused:
            return None   # (a fused kernel may read bool masks)
        if type(op) is MatMul:
            if any(t.rank != 2 for t in types):
                return None
            split = getattr(kernel, "column_split", _WHOLE)
            a, b = ins
            return [f"{ind}s{outs} = np.empty((s{a}.shape[0], s{b}.shape[1]), np.float32)",
                    f"{ind}if not product(fn, s{a}, s{b}, s{outs}, "
                    + ", ".join(str(int(x)) for x in split) + "):",
                    f"{ind}    {self.fail}"]
        if type(op) in _BINARY:
            if any(t.rank != 2 for t in types) or type(outs) is not int:
                return None
            a, b = ins
            return [f"{ind}if s{a}.shape[0] != s{b}.shape[0] or s{a}.shape[1] != s{b}.shape[1]:",
                    f"{ind}    {self.fail}",
                    f"{ind}s{outs} = s{a} {_BINARY[type(op)]} s{b}"]
        if type(op) is Concat:
            if any(t.rank != 2 for t in types) or op.axis not in (1, -1):
                return None
            widths = " + ".join(f"s{a}.shape[1]" for a in ins)
            lines = [f"{ind}if " + " or ".join(f"s{a}.shape[0] != s{ins[0]}.shape[0]"
                                               for a in ins[1:]) + ":",
                     f"{ind}    {self.fail}"] if len(ins) > 1 else []
            lines.append(f"{ind}s{outs} = np.empty((s{ins[0]}.shape[0], {widths}), np.float32)")
            lines.append(f"{ind}at = 0")
            for a in ins:
                lines += [f"{ind}s{outs}[:, at:at + s{a}.shape[1]] = s{a}",
                          f"{ind}at += s{a}.shape[1]"]
            return lines
        spec = getattr(kernel, "compiled", None)
        if spec is None or type(outs) is int or not _MODULE.fullmatch(spec.module):
            return None   # (the name goes into the source: only fused.py's own digest names)
        if any(t.rank == 0 and a not in self.const_slots for t, a in zip(types, ins)):
            return None   # (a computed 0-d input: the Python side passes it 1-d)
        local = self.imports.setdefault(spec.module, f"f{len(self.imports)}")
        first = ins[spec.lead if spec.lead is not None else spec.wide]
        cols = f"s{first}.shape[1]" if spec.lead is not None else str(int(spec.out_cols))
        lines = [f"{ind}n_rows, n_cols = s{first}.shape[0], {cols}"]
        dests = self.dests.get(i, {})
        names = []
        for pos, width in enumerate(spec.widths):
            if pos in dests:
                names.append(f"st{dests[pos]}[t]")
            else:
                names.append(f"o{i}_{pos}")
                lines.append(f"{ind}o{i}_{pos} = np.empty((n_rows, {int(width)} * n_cols), "
                             "np.float32)")
        lines += [f"{ind}if not {local}(({', '.join(names)},), "
                  f"{', '.join(f's{a}' for a in ins)}, 0, -1):",
                  f"{ind}    {self.fail}"]
        lines += [f"{ind}s{slot} = {name}" for slot, name in zip(outs, names)]
        return lines

    def _only_fused_read(self, slot) -> bool:
        readers = [step for step in self.prog._plan if slot in step.ins]
        return slot not in self.code.values and slot not in self.code.carried_out and \
            all(getattr(step.kernel, "compiled", None) is not None for step in readers)


def _blas_digest() -> str:
    """A hash of blas.py, written into each loop's source: a changed `product` then makes a
    new source, which numba compiles anew instead of loading the old machine code."""
    if "digest" not in _DIGEST:
        with open(blas.__file__, "rb") as f:
            _DIGEST["digest"] = hashlib.sha256(f.read()).hexdigest()[:16]
    return _DIGEST["digest"]


def _names(slots) -> str:
    return "".join(f"s{a}, " for a in slots)
