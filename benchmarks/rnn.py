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
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

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
    untimed calls each: rnngraph compiles a loop whole once it has run twice (loop_jit.py)."""
    for fn in fns:
        for _ in range(3):
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
    def __init__(self, cell, B, T, I, H, passes=True, lengths=None, seed=0):
        self.graph = rg.Graph()
        with self.graph.as_default():
            self.X = rg.placeholder(rg.float32, [None, T, I])
            self.seq = rg.placeholder(rg.int32, [None]) if lengths is not None else None
            out, _ = rg.nn.dynamic_rnn(make_cell(cell, H), self.X, dtype=rg.float32,
                                       sequence_length=self.seq)
            self.out = out
            loss = rg.reduce_sum(out)
            self.grads = rg.gradients(loss, [self.X] + rg.global_variables())
        self.sess = rg.Session(self.graph, seed=seed, passes=passes)
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
    ap.add_argument("--shapes", default="S1,S2,S3,S4")
    ap.add_argument("--sections", default="speed,padded,compile,floor",
                    help="which tables to print (comma-separated): speed, padded, compile, "
                         "floor")
    args = ap.parse_args()
    reps = 3 if args.quick else 7
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
        print("note: torch is not installed (pip install torch==2.13.0): PyTorch column skipped\n")
    peak = matmul_peak(reps + 2)
    print(f"NumPy float32 matmul peak (2048^3) measured now: {peak:.1f} GFLOP/s; "
          f"threads: {os.cpu_count()}\n")

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
    lengths = np.random.default_rng(1).integers(1, T + 1, size=B).astype(np.int32)
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
    against a packed b (ops/panel_gemm.py, as the loops run it), else NumPy's matmul."""
    from rnngraph.ops import panel_gemm
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


if __name__ == "__main__":
    main()
