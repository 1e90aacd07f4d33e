"""Speed of rnngraph's RNNs on the CPU, side by side with PyTorch in the same run.

    python benchmarks/rnn.py                 # the full table (several minutes)
    python benchmarks/rnn.py --quick         # fewer repeats, for a look

For S1-S4 and each of LSTM, GRU and BasicRNN it prints the median time of forward and of
forward+backward for rnngraph (all compiler passes), the same graph with every pass off, and
PyTorch's nn.LSTM/GRU/RNN (skipped with a note when torch is not installed), the ratio
rnngraph/PyTorch, and GFLOP/s as a fraction of a NumPy float32 matmul peak measured in this run.
Then: padded batches (lengths uniform in [1, T]) vs full length, build+compile times, and
(`--sections floor`) the matrix products alone, each through the kernel the program runs it
with (see floor_table), beside the whole forward+backward pass.
Medians over repeats, timed in alternating rounds (rnngraph, passes off, PyTorch, ...); these
machines are shared, so compare columns of one run, not runs.

A/B of two configurations, forward+backward, alternating call by call in one process:

    python benchmarks/rnn.py --ab A_SPEC B_SPEC [--cells lstm,gru,basic]
                             [--shapes S1,S2,S3,S4,S1p] [--rounds 30]

A spec is `default` or comma-separated `key=value` Session options and pass switches:
`accelerate=0`, `passes=0` (every pass off), `passes.pack_weights=0`,
`passes.share_packs=0,passes.share_copies=0`, `accelerate=auto|0|1`, `compile_loops=0`. S1p is S1 with padded
batches (lengths uniform in [1, T], fixed seed). Per row: the median time of A and of B, the
median of the per-round ratios B/A and their spread (25th-75th percentile, min-max).

    python benchmarks/rnn.py --ab-checkouts DIR_A DIR_B [--config SPEC] [...]

The same between two source checkouts of rnngraph (say, a `git worktree` of an older commit
and this tree): one worker process per checkout (PYTHONPATH set to it, this script in
`--worker` mode), which the driver asks for one timed call at a time, A, B, A, B, ...
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import queue
import select
import signal
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

if "--worker" not in sys.argv[1:]:   # (a worker imports the checkout its PYTHONPATH names)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import rnngraph as rg  # noqa: E402

SHAPES = {  # name: (batch, steps, input, hidden)
    "S1": (64, 100, 128, 256),
    "S2": (32, 50, 28, 150),
    "S3": (16, 1000, 64, 128),
    "S4": (4, 2, 3, 5),
}
GATES = {"lstm": 4, "gru": 3, "basic": 1}


def interleaved_medians(fns, repeats: int) -> list:
    """Median time of each callable, timed in alternating rounds so that a busy spell on a
    shared machine slows all of them alike (their ratios are what the table compares).

    Before each timed call: a pause, so the previous candidate's idle BLAS/OpenMP threads stop
    spinning (they busy-wait for a while after each call and would steal the next one's cores),
    then one untimed call to warm caches and thread pools. Before the first round, a few
    untimed calls each: a Session moves a program to the numba backend after its first 3 runs
    (Session(accelerate="auto"))."""
    for fn in fns:
        for _ in range(5):
            fn()
    times: list = [[] for _ in fns]
    for _ in range(repeats):
        for ts, fn in zip(times, fns):
            time.sleep(0.2)
            fn()
            ts.append(_timed(fn))
    return [statistics.median(ts) for ts in times]


def matmul_peak(repeats: int) -> float:
    """GFLOP/s of a large float32 NumPy matmul on this machine, now: the best of a few runs
    (a roofline is what the machine can do; a median taken while the host is busy is not)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(max(5, repeats)))
    return 2 * 2048 ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def flops(cell: str, B: int, T: int, I: int, H: int, backward: bool) -> float:
    """Matrix-multiply FLOPs of the cell over T steps (backward counts 2x forward)."""
    g = GATES[cell]
    fwd = 2 * T * B * (I + H) * g * H
    return fwd * (3 if backward else 1)


def make_cell(cell: str, H: int):
    return {"lstm": lambda: rg.nn.LSTMCell(H, forget_bias=0.0), "gru": lambda: rg.nn.GRUCell(H),
            "basic": lambda: rg.nn.BasicRNNCell(H)}[cell]()


class RnngraphCase:
    def __init__(self, cell, B, T, I, H, passes=True, lengths=None, seed=0, **options):
        """options: more rg.Session keyword arguments (accelerate=..., ...)."""
        self.graph = rg.Graph()
        with self.graph.as_default():
            self.X = rg.placeholder(rg.float32, [None, T, I])
            self.seq = rg.placeholder(rg.int32, [None]) if lengths is not None else None
            out, _ = rg.nn.dynamic_rnn(make_cell(cell, H), self.X, dtype=rg.float32,
                                       sequence_length=self.seq)
            self.out = out
            loss = rg.reduce_sum(out)
            self.grads = rg.gradients(loss, [self.X] + rg.global_variables())
        self.sess = rg.Session(self.graph, seed=seed, passes=passes, **options)
        self.feed = {self.X: np.random.default_rng(seed).standard_normal((B, T, I), np.float32)}
        if lengths is not None:
            self.feed[self.seq] = lengths

    def forward(self):
        self.sess.run(self.out, self.feed)

    def forward_backward(self):
        self.sess.run(self.grads, self.feed)


class TorchCase:
    def __init__(self, torch, cell, B, T, I, H, lengths=None, seed=0):
        self.torch = torch
        torch.manual_seed(seed)
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "basic": torch.nn.RNN}[cell]
        self.module = cls(I, H, batch_first=True)
        x = np.random.default_rng(seed).standard_normal((B, T, I), np.float32)
        self.x = torch.from_numpy(x).requires_grad_(True)
        self.lengths = lengths

    def _run(self):
        torch = self.torch
        if self.lengths is None:
            out, _ = self.module(self.x)
            return out
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            self.x, torch.from_numpy(np.asarray(self.lengths)), batch_first=True,
            enforce_sorted=False)
        out, _ = self.module(packed)
        return torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0]

    def forward(self):
        with self.torch.no_grad():
            self._run()

    def forward_backward(self):
        self.module.zero_grad()
        self.x.grad = None
        self._run().sum().backward()


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--cells", default="lstm,gru,basic")
    ap.add_argument("--shapes", default=None,
                    help="comma-separated, of S1,S2,S3,S4 (and S1p with --ab/--ab-checkouts: "
                         "S1 with padded batches); default: all of them")
    ap.add_argument("--sections", default="speed,padded,compile,floor",
                    help="which tables to print (comma-separated): speed, padded, compile, "
                         "floor")
    ab = ap.add_argument_group("A/B (see the module docstring)")
    ab.add_argument("--ab", nargs=2, metavar=("A_SPEC", "B_SPEC"),
                    help="two Session configurations, e.g. default accelerate=0")
    ab.add_argument("--ab-checkouts", nargs=2, metavar=("DIR_A", "DIR_B"),
                    help="two source checkouts of rnngraph, run by one worker process each")
    ab.add_argument("--config", default="default",
                    help="with --ab-checkouts: the configuration both run (default: default)")
    ab.add_argument("--config-b", default=None,
                    help="with --ab-checkouts: B's configuration where it differs from A's "
                         "(e.g. config.cpu_helper_thread=1, an opt-in A's checkout lacks)")
    ab.add_argument("--rounds", type=int, default=30, help="timed calls of each (default 30)")
    ab.add_argument("--warmup", type=int, default=8,
                    help="untimed calls of each first (default 8: a program switches to "
                         "compiled kernels after a few runs)")
    ab.add_argument("--pause", type=float, default=0.2,
                    help="seconds of sleep before each timed call, so the last call's idle "
                         "BLAS threads stop spinning (default 0.2)")
    ab.add_argument("--startup-timeout", type=float, default=600,
                    help="--ab-checkouts: seconds a worker may take to build and warm up")
    ab.add_argument("--call-timeout", type=float, default=120,
                    help="--ab-checkouts: seconds a worker may take for one timed call")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--idle-timeout", type=float, default=1800, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)
    if args.ab or args.ab_checkouts:
        return ab_main(ap, args)
    args.shapes = args.shapes or ",".join(SHAPES)
    unknown = set(args.shapes.split(",")) - set(SHAPES)
    if unknown:
        ap.error(f"unknown shapes {sorted(unknown)}; known: {', '.join(SHAPES)} "
                 "(S1p only with --ab/--ab-checkouts)")
    reps = 3 if args.quick else 7
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
        print("note: torch is not installed (pip install torch==2.13.0): PyTorch column skipped\n")
    peak = matmul_peak(reps + 2)
    print(f"NumPy float32 matmul peak (2048^3) measured now: {peak:.1f} GFLOP/s; "
          f"threads: {os.cpu_count()}")
    print(f"BLAS (threadpoolctl): {blas_description()}\n")

    sections = set(args.sections.split(","))
    rows = []
    for cell in args.cells.split(",") if "speed" in sections else []:
        for name in args.shapes.split(","):
            B, T, I, H = SHAPES[name]
            r_reps = max(3, reps if T * B < 50000 else reps // 2)
            ours = RnngraphCase(cell, B, T, I, H)
            plain = RnngraphCase(cell, B, T, I, H, passes=False)
            tc = TorchCase(torch, cell, B, T, I, H) if torch else None
            for what in ("forward", "forward_backward"):
                fns = [getattr(c, what) for c in (ours, plain, tc) if c is not None]
                t_ours, t_plain, *t_torch = interleaved_medians(fns, r_reps)
                t_torch = t_torch[0] if t_torch else None
                gf = flops(cell, B, T, I, H, what == "forward_backward") / t_ours / 1e9
                rows.append([f"{cell} {name}", "fwd" if what == "forward" else "fwd+bwd",
                             f"{t_ours * 1e3:.2f}", f"{t_plain * 1e3:.2f}",
                             f"{t_torch * 1e3:.2f}" if t_torch else "n/a",
                             f"{t_ours / t_torch:.2f}" if t_torch else "n/a",
                             f"{gf:.1f}", f"{gf / peak:.0%}"])
    if rows:
        table(rows, ["case", "pass", "rnngraph ms", "passes off ms", "pytorch ms", "ratio",
                     "GFLOP/s", "of peak"])
    if "padded" in sections:
        padded_table(args, reps, torch)
    if "compile" in sections:
        compile_table()
    if "floor" in sections:
        floor_table(args, reps, torch, peak)


def padded_table(args, reps, torch):
    rows = []
    B, T, I, H = SHAPES["S1"]
    lengths = padded_lengths(B, T)
    for cell in args.cells.split(","):
        full = RnngraphCase(cell, B, T, I, H, lengths=np.full(B, T, np.int32))
        padded = RnngraphCase(cell, B, T, I, H, lengths=lengths)
        fns = [full.forward_backward, padded.forward_backward]
        if torch:
            fns += [TorchCase(torch, cell, B, T, I, H, np.full(B, T)).forward_backward,
                    TorchCase(torch, cell, B, T, I, H, lengths).forward_backward]
        t_full, t_pad, *t_torch = interleaved_medians(fns, reps)
        row = [f"{cell} S1", f"{t_full * 1e3:.1f}", f"{t_pad * 1e3:.1f}", f"{t_pad / t_full:.0%}"]
        if torch:
            tf_, tp_ = t_torch
            row += [f"{tf_ * 1e3:.1f}", f"{tp_ * 1e3:.1f}", f"{tp_ / tf_:.0%}"]
        rows.append(row)
    print(f"Padded batch: lengths uniform in [1, {T}] (mean {lengths.mean():.1f}) vs all {T}, "
          "forward+backward")
    table(rows, ["case", "full ms", "padded ms", "padded/full"]
          + (["torch full ms", "torch padded ms", "torch padded/full"] if torch else []))


def compile_table():
    """Build (graph + gradients) and compile (clone, passes, schedule) times, separately."""
    def dynamic(T):
        g = rg.Graph()
        with g.as_default():
            X = rg.placeholder(rg.float32, [None, T, 8])
            out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(16), X, dtype=rg.float32)
            grads = rg.gradients(rg.reduce_sum(out), rg.global_variables())
        return g, [out] + grads, [X]

    def static(T):
        g = rg.Graph()
        with g.as_default():
            xs = [rg.placeholder(rg.float32, [None, 8]) for _ in range(T)]
            outs, _ = rg.nn.static_rnn(rg.nn.LSTMCell(16), xs, dtype=rg.float32)
            grads = rg.gradients(rg.add_n([rg.reduce_sum(o) for o in outs]), rg.global_variables())
        return g, grads, xs

    g, fetches, fed = dynamic(3)
    rg.Session(g).compile(fetches, fed)  # once per process: imports, loads cached kernels
    rows = []
    for name, builder, T, reps in [("dynamic_rnn LSTM", dynamic, 10, 3),
                                   ("dynamic_rnn LSTM", dynamic, 10000, 3),
                                   ("static_rnn LSTM", static, 1000, 3)]:
        builds, compiles = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            g, fetches, fed = builder(T)
            t1 = time.perf_counter()
            rg.Session(g).compile(fetches, fed)
            builds.append(t1 - t0)
            compiles.append(time.perf_counter() - t1)
        rows.append([f"{name} T={T}", f"{statistics.median(builds) * 1e3:.1f}",
                     f"{statistics.median(compiles) * 1e3:.1f}"])
    print("Build (graph + gradients) and compile (clone, passes, schedule), medians")
    table(rows, ["case", "build ms", "compile ms"])


def compiled_products(case: "RnngraphCase", B: int) -> tuple[list, list]:
    """The matrix products of a case's compiled forward+backward program, as (m, k, n) of
    [m, k] @ [k, n]: (per-step ones, run by a loop body each step; batched ones, run once).
    Read off the program the session runs, so the floor follows what the passes produce (the
    GRU's two products per step, the joined weight gradient, ...); an unknown dim is the batch."""
    prog = case.sess.compile(case.grads, list(case.feed))
    per_step, batched = [], []

    def rows(shape) -> int:
        return int(np.prod([B if d is None else d for d in shape]))

    for node in prog.graph.nodes:
        name = node.op.name
        if name == "loop":   # (panel_matmul: the same product, against packed weights)
            per_step += [(rows(m.inputs[0].shape[:-1]),) + m.inputs[1].shape
                         for m in node.op.body.nodes
                         if m.op.name in ("matmul", "panel_matmul")]
        elif name in ("matmul", "rows_matmul"):
            a, w = node.inputs[0].shape, node.inputs[1].shape
            batched.append((rows(a[:-1]), a[-1], w[-1]))
        elif name == "step_contract":   # sum over steps and rows of a_t^T b_t: one product
            (k, n), b = node.outputs[0].shape, node.op.split(node.inputs)[2][0].shape
            batched.append((k, rows(b[:-1]), n))
    return per_step, batched


def packed_steps(case: "RnngraphCase") -> bool:
    """Whether the compiled program's per-step products run our packed-weight GEMM
    (passes/pack_weights.py) rather than NumPy's matmul."""
    prog = case.sess.compile(case.grads, list(case.feed))
    return any(m.op.name == "panel_matmul" for node in prog.graph.nodes
               if node.op.name == "loop" for m in node.op.body.nodes)


def product_seconds(shapes, repeats: int, packed: bool = False) -> dict:
    """Seconds of each [m, k] @ [k, n] product alone (random float32, into a reused output,
    warm caches), the best of the rounds, as matmul_peak: a floor is what the kernel can do,
    and a busy spell on the host only adds to it. Shapes are timed in turn within each round,
    so a busy spell does not cover every timing of one shape. `packed`: through our GEMM
    against a packed b (backends/numba/panel_gemm.py, as the loops run it), else NumPy's matmul."""
    from rnngraph.backends.numba import panel_gemm
    rng = np.random.default_rng(0)
    calls = {}
    for m, k, n in sorted(set(shapes)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        reps = max(1, int(3e8 // (2 * m * k * n + 1)))   # ~0.3 GFLOP per timing
        if packed:   # (as inside a loop: with the helper thread awake)
            panels = panel_gemm.pack(np, b)
            calls[(m, k, n)] = (lambda a=a, p=panels, n=n, c=c, reps=reps:
                                panel_gemm.in_loop(lambda: [panel_gemm.matmul(a, p, n, out=c)
                                                            for _ in range(reps)]), reps)
            continue
        calls[(m, k, n)] = (lambda a=a, b=b, c=c, reps=reps:
                            [np.matmul(a, b, out=c) for _ in range(reps)], reps)
    best = {s: float("inf") for s in calls}
    for _ in range(max(9, 2 * repeats)):
        for s, (fn, reps) in calls.items():
            fn()
            best[s] = min(best[s], _timed(fn) / reps)
        time.sleep(0.02)
    return best


def floor_table(args, reps, torch, peak):
    """The matrix products of the compiled graph timed alone, summed over the steps: the least
    that running each product through its kernel (per-step ones: our packed GEMM where the
    program uses it; batched ones: NumPy's BLAS) can cost, beside the whole pass. The
    rest of rnngraph's time is the fused gate kernels, copies and Python per step. The padded
    rows sum the per-step products at each step's active width (ops/loop_rows.row_align)."""
    from rnngraph.ops.loop_rows import active_width, row_align
    rows = []
    for cell in args.cells.split(","):
        for name in [s for s in args.shapes.split(",") if s != "S4"]:
            B, T, I, H = SHAPES[name]
            ours = RnngraphCase(cell, B, T, I, H)
            per_step, batched = compiled_products(ours, B)
            secs = product_seconds(batched, reps)
            secs.update(product_seconds(per_step, reps, packed_steps(ours)))
            t_steps = T * sum(secs[s] for s in per_step)
            t_once = sum(secs[s] for s in batched)
            cases = [ours] + ([TorchCase(torch, cell, B, T, I, H)] if torch else [])
            t_ours, *t_torch = interleaved_medians([c.forward_backward for c in cases],
                                                   max(3, reps // 2))
            floor = t_steps + t_once
            rows.append([f"{cell} {name}", f"{t_steps * 1e3:.2f}", f"{t_once * 1e3:.2f}",
                         f"{floor * 1e3:.2f}",
                         f"{flops(cell, B, T, I, H, True) / floor / 1e9 / peak:.0%}",
                         f"{t_ours * 1e3:.2f}", f"{floor / t_ours:.0%}"]
                        + ([f"{t_torch[0] * 1e3:.2f}", f"{floor / t_torch[0]:.0%}"]
                           if torch else []))
    print("Matrix products alone (fwd+bwd): per-step products x T, the batched ones once; "
          "'of peak' is the floor's GFLOP/s against the matmul peak")
    table(rows, ["case", "per-step ms", "batched ms", "floor ms", "of peak", "rnngraph ms",
                 "floor/ours"] + (["pytorch ms", "floor/torch"] if torch else []))

    B, T, I, H = SHAPES["S1"]
    lengths = np.random.default_rng(1).integers(1, T + 1, size=B)
    counts = np.array([(lengths > t).sum() for t in range(T)])
    align = row_align(np, np.float32)
    widths = [int(w) for w in active_width(counts, B, align) if w]
    rows = []
    for cell in args.cells.split(","):
        case = RnngraphCase(cell, B, T, I, H)
        per_step, _ = compiled_products(case, B)
        secs = product_seconds([(w, k, n) for w in set(widths) | {B} for _, k, n in per_step],
                               reps, packed_steps(case))
        full = T * sum(secs[(B, k, n)] for _, k, n in per_step)
        padded = sum(secs[(w, k, n)] for w in widths for _, k, n in per_step)
        rows.append([f"{cell} S1", f"{full * 1e3:.1f}", f"{padded * 1e3:.1f}",
                     f"{padded / full:.0%}", f"{counts.sum() / (T * B):.0%}"])
    print("Per-step products alone, padded (the lengths above, each step on its active rows"
          + (f" rounded up to {align}" if align > 1 else "") + ") vs full: a product on k rows "
          "costs a fixed part plus a part per row")
    table(rows, ["case", "full ms", "padded ms", "padded/full", "active rows"])


# --- A/B: two configurations (or two checkouts), alternating call by call -------------------

AB_SHAPES = list(SHAPES) + ["S1p"]   # S1p: S1 with padded batches
_BOOLS = {"1": True, "true": True, "on": True, "yes": True,
          "0": False, "false": False, "off": False, "no": False}


class SpecError(ValueError):
    pass


def padded_lengths(B: int, T: int) -> np.ndarray:
    """Sequence lengths uniform in [1, T], from a fixed seed (the padded-batch cases)."""
    return np.random.default_rng(1).integers(1, T + 1, size=B).astype(np.int32)


def _spec_bool(key, value):
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise SpecError(f"{key}={value}: expected 0/1, true/false, on/off or yes/no") from None


def _spec_budget(key, value):
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise SpecError(f"{key}={value}: expected a number of bytes or none") from None


def _spec_int(key, value):
    try:
        return int(value)
    except ValueError:
        raise SpecError(f"{key}={value}: expected an integer") from None


def _spec_auto_bool(key, value):
    return "auto" if value.lower() == "auto" else _spec_bool(key, value)


SPEC_OPTIONS = {   # Session keyword argument: how its value is read
    "accelerate": _spec_auto_bool, "check_numerics": _spec_bool, "compile_loops": _spec_bool,
    "memory_budget": _spec_budget, "memory_strategy": lambda key, value: value,
    "seed": _spec_int,
}


SETTINGS = "rg.config"   # the options key of `config.NAME=value` process settings


def parse_spec(spec: str, check: bool = True) -> dict:
    """A configuration spec -> rg.Session keyword arguments. `default` (or nothing): none;
    else comma-separated `key=value`: a Session option (SPEC_OPTIONS), `passes=0|1` (every pass
    off or on), `passes.NAME=0|1` (one pass) or `config.NAME=0|1` (an rg.config setting, which
    is the whole process's: options[SETTINGS], applied by build_case). Raises SpecError on anything else and, with
    `check`, on options, pass names or values this rnngraph's Session rejects."""
    options, passes, every, settings = {}, {}, None, {}
    for item in (part.strip() for part in spec.split(",")):
        if item in ("", "default"):
            continue
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not key or not value:
            raise SpecError(f"{item!r}: expected key=value or 'default'")
        if key in options or key in passes or (key == "passes" and every is not None):
            raise SpecError(f"{key} given twice")
        if key == "passes":
            every = _spec_bool(key, value)
        elif key.startswith("passes."):
            passes[key[len("passes."):]] = _spec_bool(key, value)
        elif key.startswith("config."):   # a process setting (rg.config), not a Session's
            if key in settings:
                raise SpecError(f"{key} given twice")
            settings[key] = _spec_bool(key, value)
        elif key in SPEC_OPTIONS:
            options[key] = SPEC_OPTIONS[key](key, value)
        else:
            raise SpecError(f"unknown key {key!r}; known: passes, passes.NAME, config.NAME, "
                            + ", ".join(SPEC_OPTIONS))
    if every is False and passes:
        raise SpecError("passes=0 turns every pass off; passes.NAME cannot turn one back on")
    if passes:
        options["passes"] = passes
    elif every is not None:
        options["passes"] = every
    if settings:
        options[SETTINGS] = {k[len("config."):]: v for k, v in settings.items()}
    if not check:
        return options
    for name in options.get(SETTINGS, {}):
        if name.startswith("_") or not hasattr(rg.config, name):
            raise SpecError(f"this rnngraph has no rg.config.{name}")
    accepted = inspect.signature(rg.Session).parameters
    missing = [k for k in options if k not in accepted and k != SETTINGS]
    if missing:
        raise SpecError(f"this rnngraph's Session takes no {', '.join(missing)}")
    try:   # (the Session checks the pass names and option values)
        rg.Session(rg.Graph(), **{k: v for k, v in options.items() if k != SETTINGS})
    except (ValueError, TypeError) as e:
        raise SpecError(str(e)) from None
    return options


def describe_options(options: dict) -> str:
    return "Session(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"


def blas_description() -> str:
    """The BLAS (and OpenMP) libraries loaded in this process, with the kernel each runs."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl is not installed)"
    libs = [f"{i.get('internal_api')} {i.get('version')} "
            f"({os.path.basename(os.path.dirname(i.get('filepath') or ''))}), kernel "
            f"{i.get('architecture', 'n/a')}, {i.get('num_threads')} threads"
            for i in threadpool_info()]
    return "; ".join(libs) or "none loaded"


def environment_description() -> str:
    names = sorted(k for k in os.environ if k.startswith(("RNNGRAPH_", "OPENBLAS_", "OMP_")))
    numba = "yes" if importlib.util.find_spec("numba") else "no"
    return (f"numba importable: {numba}; cpus: {os.cpu_count()}; environment: "
            + (", ".join(f"{k}={os.environ[k]}" for k in names) or "no RNNGRAPH_/OPENBLAS_/OMP_ "
               "variables"))


def build_case(cell: str, shape: str, options: dict) -> RnngraphCase:
    B, T, I, H = SHAPES["S1" if shape == "S1p" else shape]
    options = dict(options)
    for name, value in options.pop(SETTINGS, {}).items():
        setattr(rg.config, name, value)
    passes = options.pop("passes", True)
    lengths = padded_lengths(B, T) if shape == "S1p" else None
    return RnngraphCase(cell, B, T, I, H, passes=passes, lengths=lengths, **options)


def ab_row(name: str, ta: list, tb: list) -> list:
    ratios = [b / a for a, b in zip(ta, tb)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return [name, f"{statistics.median(ta) * 1e3:.2f}", f"{statistics.median(tb) * 1e3:.2f}",
            f"{statistics.median(ratios):.3f}", f"{q1:.3f}-{q3:.3f}",
            f"{min(ratios):.3f}-{max(ratios):.3f}",
            f"{sum(r < 1 for r in ratios)}/{len(ratios)}"]


AB_HEADER = ["case", "A ms", "B ms", "B/A", "B/A p25-p75", "B/A min-max", "B faster"]


def ab_rounds(call_a, call_b, rounds: int, pause: float) -> tuple[list, list]:
    """Seconds of `rounds` timed calls of each, in the order A, B, A, B, ..."""
    ta, tb = [], []
    for _ in range(rounds):
        time.sleep(pause)
        ta.append(call_a())
        time.sleep(pause)
        tb.append(call_b())
    return ta, tb


class _Terminated(Exception):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated(f"signal {signum}")


def ab_main(ap, args):
    cells = args.cells.split(",")
    shapes = (args.shapes or ",".join(AB_SHAPES)).split(",")
    bad = [c for c in cells if c not in GATES] + [s for s in shapes if s not in AB_SHAPES]
    if bad:
        ap.error(f"unknown cells/shapes {bad}; cells: {', '.join(GATES)}; "
                 f"shapes: {', '.join(AB_SHAPES)}")
    if args.ab and args.ab_checkouts:
        ap.error("--ab and --ab-checkouts: one at a time")
    if args.config_b is not None and not args.ab_checkouts:
        ap.error("--config-b goes with --ab-checkouts (--ab takes each configuration itself)")
    if args.rounds < 2 or args.warmup < 0 or args.pause < 0:
        ap.error("--rounds must be at least 2, --warmup and --pause not negative")
    np.ones((8, 8), np.float32) @ np.ones((8, 8), np.float32)   # (loads the BLAS)
    if args.ab:
        try:
            specs = [parse_spec(s) for s in args.ab]
        except SpecError as e:
            ap.error(f"--ab: {e}")
        if any(SETTINGS in spec for spec in specs):
            ap.error("--ab: config.NAME settings are the whole process's; compare them between "
                     "two workers: --ab-checkouts DIR DIR --config-b ...")
        print("A/B in one process, forward+backward (sess.run of the gradients)")
        for label, text, options in zip("AB", args.ab, specs):
            print(f"  {label}: {text} -> {describe_options(options)}")
        print(f"  rnngraph {rg.__version__}; BLAS (threadpoolctl): {blas_description()}")
    else:
        dirs = [os.path.abspath(d) for d in args.ab_checkouts]
        for d in dirs:
            if not os.path.isfile(os.path.join(d, "rnngraph", "__init__.py")):
                ap.error(f"--ab-checkouts: no rnngraph/__init__.py in {d}")
        try:
            parse_spec(args.config, check=False)   # (the syntax; each worker checks the rest)
            if args.config_b is not None:
                parse_spec(args.config_b, check=False)
        except SpecError as e:
            ap.error(f"--config/--config-b: {e}")
        print(f"A/B between two checkouts, one worker process each, forward+backward, "
              f"configuration: {args.config}"
              + (f" (B: {args.config_b})" if args.config_b is not None else ""))
        for label, d in zip("AB", dirs):
            print(f"  {label}: {d} (commit {_commit_of(d)})")
    print(f"  {environment_description()}")
    print(f"  {args.rounds} rounds, each: {args.pause} s pause, A, {args.pause} s pause, B; "
          f"after {args.warmup} untimed calls of each. B/A < 1: B is faster.")
    print()
    sys.stdout.flush()

    rows = []
    previous = signal.signal(signal.SIGTERM, _raise_terminated)   # (`timeout`: keep the rows)
    try:
        for cell in cells:
            for shape in shapes:
                if args.ab:
                    ta, tb = _ab_in_process(cell, shape, specs, args)
                else:
                    ta, tb = _ab_checkouts(cell, shape, dirs, args)
                rows.append(ab_row(f"{cell} {shape}", ta, tb))
                print("  done: " + "  ".join(rows[-1]), file=sys.stderr, flush=True)
    except (KeyboardInterrupt, _Terminated) as e:
        print(f"interrupted ({e or 'Ctrl-C'}): the rows finished so far\n")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if rows:
            table(rows, AB_HEADER)
        if args.ab:   # (numba loads another BLAS when it first compiles)
            print(f"BLAS after the runs (threadpoolctl): {blas_description()}\n")
        sys.stdout.flush()


def _ab_in_process(cell, shape, specs, args):
    a, b = (build_case(cell, shape, options) for options in specs)
    for _ in range(args.warmup):
        a.forward_backward()
        b.forward_backward()
    return ab_rounds(lambda: _timed(a.forward_backward), lambda: _timed(b.forward_backward),
                     args.rounds, args.pause)


def _commit_of(path: str) -> str:
    try:   # (rev-parse only reads)
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown: not a git checkout"


class WorkerError(RuntimeError):
    pass


class Worker:
    """A process running this script in --worker mode on one checkout: it builds the case,
    warms it up, says it is ready (a JSON line), then answers each line it reads with the
    seconds of one timed forward+backward. It exits when its stdin closes."""

    def __init__(self, label, checkout, cell, shape, args):
        self.label = label
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([checkout] + ([env["PYTHONPATH"]]
                                                          if env.get("PYTHONPATH") else []))
        idle = args.startup_timeout + 2 * args.call_timeout + 60
        config = args.config_b if label == "B" and args.config_b is not None else args.config
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--cell", cell,
               "--shape", shape, "--config", config, "--warmup", str(args.warmup),
               "--idle-timeout", str(idle)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _reply(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise WorkerError(f"worker {self.label}: no answer within {timeout:g} s") from None
        if line is None:
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = "unknown"
            raise WorkerError(f"worker {self.label} exited (status {rc}); its stderr is above")
        return line

    def ready(self, timeout: float) -> dict:
        return json.loads(self._reply(timeout))

    def call(self, timeout: float) -> float:
        try:
            self.proc.stdin.write("run\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(f"worker {self.label} is gone") from None
        return float(self._reply(timeout))

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _ab_checkouts(cell, shape, dirs, args):
    workers = []
    try:
        for label, d in zip("AB", dirs):   # (one after the other: the warm-ups do not overlap)
            w = Worker(label, d, cell, shape, args)
            workers.append(w)
            info = w.ready(args.startup_timeout)
            print(f"  {cell} {shape}, worker {label}: rnngraph {info['version']} from "
                  f"{info['rnngraph']}, ready after {info['ready_s']:.1f} s",
                  file=sys.stderr, flush=True)
            if label not in _ab_checkouts.described:
                _ab_checkouts.described.add(label)
                print(f"  {label} (its first worker, after the warm-up): rnngraph "
                      f"{info['version']}; BLAS (threadpoolctl): {info['blas']}", flush=True)
        a, b = workers
        return ab_rounds(lambda: a.call(args.call_timeout), lambda: b.call(args.call_timeout),
                         args.rounds, args.pause)
    except WorkerError as e:
        raise SystemExit(f"--ab-checkouts, {cell} {shape}: {e}")
    finally:
        for w in workers:
            w.close()


_ab_checkouts.described = set()


def worker_main(args):
    """--worker: the protocol's end in a checkout (see Worker). Answers go to the original
    stdout; anything else written to stdout (by rnngraph, numba, ...) goes to stderr."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    t0 = time.perf_counter()
    checkout = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    where = os.path.realpath(rg.__file__)
    if not checkout or not where.startswith(os.path.realpath(checkout) + os.sep):
        sys.exit(f"worker: rnngraph was imported from {where}, not from {checkout!r}")
    try:
        options = parse_spec(args.config)
    except SpecError as e:
        sys.exit(f"worker ({checkout}): --config: {e}")
    case = build_case(args.cell, args.shape, options)
    for _ in range(args.warmup):
        case.forward_backward()
    answers.write(json.dumps({"version": rg.__version__, "rnngraph": os.path.dirname(where),
                              "blas": blas_description(),
                              "ready_s": time.perf_counter() - t0}) + "\n")
    while True:   # (one request at a time: the driver waits for each answer)
        readable, _, _ = select.select([sys.stdin], [], [], args.idle_timeout)
        if not readable:
            sys.exit(f"worker: no request for {args.idle_timeout:g} s; exiting")
        if not sys.stdin.readline():
            return
        answers.write(f"{_timed(case.forward_backward)!r}\n")


if __name__ == "__main__":
    main()
