"""A float32 matrix product a @ w against a weight packed once: our own GEMM for a loop's
per-step products.

OpenBLAS re-packs w on every call and wakes its threads for each one: a recurrent step's
[64, 256] @ [256, 1024] ran at ~150 GFLOP/s on two cores while a 2048^3 product reaches ~190.
Here w is packed once per run into panels of 16 columns ([ceil(N/16), K, 16], zero-padded), and
each product is a loop of register-blocked micro-kernels: 6 rows x 16 columns of the result
held in twelve AVX registers while k runs, one broadcast of a[r, k] and two loads of the panel
per step, all FMAs. Each thread takes a contiguous run of panels, so its share of w stays in
its core's cache from step to step. Measured on the S1 step (one process, 2 cores): 180 us
against OpenBLAS's 219; [32, 150] @ [150, 600] (S2): 34 against 46; 8 active rows of S1's
step: 30 against 62 (no packing cost left that does not shrink with the rows).

The micro-kernels are LLVM IR built with llvmlite inside numba intrinsics (numba compiles them
for the host CPU, and caches them on disk like any numba function); they need Linux on an
x86-64 CPU with AVX2 and FMA, which `available()` checks. Elsewhere the pass that uses them
does not run, and the op falls back to the array module's matmul (ops/panels.py).

Two threads: the caller and one helper thread (panel_kernels.split/serve), each with half of
the panels. The helper spins only while a loop of these products runs (`loop_begin` /
`loop_end`, around each such loop) and sleeps otherwise; a half it has not taken in time is
computed by the caller, so a helper that is asleep or descheduled costs no waiting. (numba's
OpenMP pool was the first try: its workers, woken after a pause, landed on the caller's core
now and then, and a product took 700 us instead of 36; kept spinning, they slowed the large
OpenBLAS products after the loop.) OpenBLAS's own idle threads spin ~0.1 s after each call,
beside the loop: `quiet_blas` has them sleep sooner, and the helper is used only once it has.
The helper serves one Python thread's loops at a time; a loop running on another thread
meanwhile computes alone, with the same bits (each element is one micro-kernel's k loop
either way).
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading

import numpy as np

from ...config import config
from ...ops.panels import NR, pack  # noqa: F401  (the layout is the op's)

MR = 6         # rows of the largest micro-kernel: 12 accumulators, 2 panel and 1 broadcast reg
PARALLEL_FLOPS = 5e5   # below this (~5 us on one core) the caller does it all

_F32 = np.dtype(np.float32)
_STATE: dict = {}
_LOCK = threading.Lock()
_SPINNING: dict = {}   # thread ident -> the helper's ctl while the helper spins for its loop


def available() -> bool:
    """numba (with llvmlite) importable, not switched off with RNNGRAPH_NUMBA=0, Linux on
    x86-64, and a host CPU with AVX2 and FMA (the micro-kernels' instructions)."""
    from .fused import available as numba_available   # cycle: fused.py imports this module
    if not numba_available() or sys.platform != "linux" or \
            platform.machine().lower() not in ("x86_64", "amd64"):
        return False   # (the helper thread sleeps on a Linux futex; the kernels are x86)
    if "ok" not in _STATE:
        try:
            import llvmlite.binding as llvm   # optional: comes with numba
            features = llvm.get_host_cpu_features()
            _STATE["ok"] = bool(features.get("avx2") and features.get("fma"))
        except Exception:   # noqa: BLE001 - any failure here means: use NumPy
            _STATE["ok"] = False
    return _STATE["ok"]


def wanted() -> bool:
    """Should loops run their per-step products here? Only with the helper thread opted in
    (rg.config.cpu_helper_thread) where the kernels can run: on one thread, NumPy's OpenBLAS
    (two threads) was as fast or faster on every benchmark shape (docs/performance.md)."""
    return config.cpu_helper_thread and available()


def matmul(a, panels, n: int, out=None):
    """a [M, K] @ w [K, n] (float32, NumPy), w given as pack(w): into `out` [M, n] if given.
    a may have any row stride; other layouts are copied first."""
    if a.dtype != _F32 or panels.dtype != _F32 or a.ndim != 2:
        raise TypeError(f"panel matmul needs float32 matrices, got {a.dtype} {a.shape}")
    m, k = a.shape
    if panels.shape[1] != k or panels.shape[2] != NR or panels.shape[0] * NR < n:
        raise ValueError(f"a {a.shape} does not match panels {panels.shape} for {n} columns")
    if a.strides[1] != 4 or a.strides[0] < 0 or a.strides[0] % 4:
        a = np.ascontiguousarray(a)
    if out is None:
        out = np.empty((m, n), _F32)
    if m == 0 or n == 0:
        return out
    if k == 0:
        out[...] = 0
        return out
    kernels = _drivers()
    ctl = spinning() if 2.0 * m * k * n >= PARALLEL_FLOPS else None
    # (both give the same bits: each element is one micro-kernel's k loop either way)
    if ctl is not None:
        kernels.split(a, panels, out, n, ctl)
    else:
        kernels.serial(a, panels, out, n)
    return out


def product(a, w, panels):
    """a @ w for a loop step's PanelMatMul (w packed as `panels`): one call per product and
    step, so only what picks the path is checked here (matmul checks the rest of an odd
    layout); NumPy's matmul on w where our GEMM does not apply."""
    if a.dtype != _F32 or panels.dtype != _F32 or a.ndim != 2:
        return np.matmul(a, w)
    m, k = a.shape
    n = w.shape[1]
    stride, unit = a.strides
    if unit != 4 or stride < 0 or stride % 4 or not m or panels.shape[1] != k or \
            panels.shape[0] * NR < n or not k or not n:
        return matmul(a, panels, n)
    out = np.empty((m, n), _F32)
    ctl = spinning() if 2 * m * k * n >= PARALLEL_FLOPS else None
    if ctl is None:
        _drivers().serial(a, panels, out, n)
    else:
        _drivers().split(a, panels, out, n, ctl)
    return out


def loop_begin() -> bool:
    """A loop of panel products starts on this thread: wake the helper (nested loops count).
    False when the helper is another thread's now (two loops at once: this one computes
    alone) or there is none; then do not call loop_end."""
    helper = _STATE.get("helper")
    if helper is None:
        if not available():
            return False
        if "cpus" not in _STATE:   # (~60 us: asked once)
            _STATE["cpus"] = os.cpu_count() or 1
        if _STATE["cpus"] < 2:
            return False
        with _LOCK:
            helper = _STATE.get("helper") or _Helper()
            _STATE["helper"] = helper
    return helper.begin()


def in_loop(fn, *args):
    """fn(*args) as a loop of panel products runs: where the user opted in
    (rg.config.cpu_helper_thread), with OpenBLAS quieted and the helper awake where that can
    be; otherwise, and by default, on the caller alone (the same bits)."""
    if not (config.cpu_helper_thread and quiet_blas() and loop_begin()):
        return fn(*args)   # (the default: no thread, nothing global changed; same bits)
    try:
        return fn(*args)
    finally:
        loop_end()


def loop_end() -> None:
    """The loop that loop_begin returned True for is done: the helper stops spinning once no
    loop needs it."""
    _STATE["helper"].end()


def spinning():
    """The helper's ctl array if it spins for a loop this thread runs (so this thread may post
    it jobs), else None."""
    return _SPINNING.get(threading.get_ident())


def split_counts() -> dict:
    """How many products and fused-kernel calls this process has split over the two threads
    (each offered half is counted whichever thread ran it)."""
    helper = _STATE.get("helper")
    if helper is None:
        return {"products": 0, "kernels": 0}
    at = helper.kernels.COUNTS
    return {"products": int(helper.ctl[at]), "kernels": int(helper.ctl[at + 1])}


class _Helper:
    """The second thread: its whole life is panel_kernels.serve, outside the GIL (a thread that
    returned to Python between loops waited up to 5 ms for the GIL when woken, longer than a
    whole S2 loop). Sleeps on a futex while no loop runs; serves one Python thread's loops at a
    time (`owner`), since its job slot takes one poster."""

    def __init__(self):
        from . import panel_kernels   # heavy: loads numba; cycle: it imports this module
        self.kernels = panel_kernels
        self.ctl = np.zeros(panel_kernels.COUNTS + 8, np.int64)
        self.depth, self.owner = 0, None
        probe = np.zeros_like(self.ctl)
        probe[panel_kernels.EXIT] = 1
        panel_kernels.serve(probe)   # compile (or load) here, not in the new thread
        self.thread = threading.Thread(target=panel_kernels.serve, args=(self.ctl,),
                                       name="rnngraph-gemm", daemon=True)
        self.thread.start()

    def begin(self) -> bool:
        me = threading.get_ident()
        with _LOCK:
            if self.depth and self.owner != me:
                return False
            self.depth += 1
            self.owner = me
            if self.depth == 1:
                self.kernels.wake(self.ctl)
                _SPINNING[me] = self.ctl
        return True

    def end(self):
        with _LOCK:
            self.depth = max(self.depth - 1, 0)
            if self.depth == 0:
                self.ctl[self.kernels.RUN] = 0
                _SPINNING.pop(self.owner, None)
                self.owner = None


def quiet_blas(force: bool = False) -> bool:
    """Have OpenBLAS's worker threads sleep soon after each call instead of spinning ~0.1 s
    beside our helper (S1: 146 ms a run instead of 101): once per process, set its idle
    timeout (OPENBLAS_THREAD_TIMEOUT, 2^20 cycles, unless the environment sets one), have it
    re-read its environment, and stop its threads, which it starts again with the new
    timeout at its next threaded call. (Stopping them per loop instead left new threads on
    the caller's core for a while: S2 runs took 12-28 ms at random.)

    Stopping them while another thread is inside a threaded OpenBLAS call can hang that call
    (its worker overwrites the stop mark), so this waits for a moment with no other Python
    thread alive, unless `force` (or RNNGRAPH_QUIET_BLAS=1 in the environment) says no other
    thread of this process uses NumPy's BLAS now (say, in Jupyter, whose own threads do not).
    True once done: loops use the helper thread only then (runtime/loop_kernel.py); before
    that they compute on the caller's thread alone, with the same bits."""
    if _STATE.get("quiet"):
        return True
    force = force or os.environ.get("RNNGRAPH_QUIET_BLAS") == "1"
    helpers = 1 if _STATE.get("helper") is not None else 0   # (ours does not count)
    if not force and threading.active_count() - helpers != 1:
        return False
    _STATE["quiet"] = True
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")
    for read_env, stop in _blas_controls():
        read_env()
        stop()
    return True


def _blas_controls() -> list:
    """(openblas_read_env, blas_thread_shutdown_) of each OpenBLAS this process has loaded."""
    found, seen = [], set()
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "openblas" in line.lower()]
    except OSError:
        return []
    for path in paths:
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        try:
            lib = ctypes.CDLL(path)
            found.append((lib.openblas_read_env, lib.blas_thread_shutdown_))
        except (OSError, AttributeError):
            continue
    return found


def _drivers():
    """The compiled drivers, imported on first use: numba loads (and compiles, or reads from
    its cache) only when a product runs."""
    if "kernels" not in _STATE:
        from . import panel_kernels   # heavy: loads numba; cycle: it imports this module
        _STATE["kernels"] = panel_kernels
    return _STATE["kernels"]
