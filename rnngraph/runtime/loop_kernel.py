"""Run a loop node: its body compiled once into Programs, then a Python loop over steps (for
untracked runs: the first step here, the rest in a generated driver, see loop_driver.py; under
a memory plan or in chunks, one driver call per chunk, see LoopExecutor.drive).

Where each saved residual lives comes from the memory plan (`ctx.plan`, read once per run; see
memory/plan.py): kept in a device stack, copied row by row to a host stack (OffloadWriter), or
recomputed later from carried-state checkpoints taken every k steps (Replayer). Without a plan
every residual is kept on the device. Sequence inputs that are residual handles (a backward
loop reading offloaded or recomputed residuals) are sliced like arrays; the loop ends their
pass when it is done.

In a tracked Program (byte accounting on) the kernel owns one reference to every array a body
program returns and releases it once the value is copied into a stack or superseded.

A loop with active rows that the shrink_batch pass marked runs each step on the rows still
active (ActiveRows below); without a memory plan and byte accounting only, since offloaded and
recomputed residuals are kept per full step. Declining is always correct: the body masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.types import TensorType
from ..memory.loops import loop_layout, split_placements
from ..memory.shapes import infer_body_shapes
from ..memory.simulate import step_inputs_read
from ..ops import loop_rows
from ..ops.loop_rows import row_layout
from ..kernels import ANY, feature, register
from ..ops.loop import Loop
from ..ops.steps import StepRows
from .buffer_pool import BufferPool
from .host_outputs import OutputWriter, writes_to_host
from .loop_driver import step_driver
from .program import Program
from .residuals import (ChunkRows, ChunkSource, FedRows, OffloadedStack, OffloadWriter,
                        RecomputedStack, Replayer, SavedStack)


@dataclass(frozen=True)
class LoopRun:
    """What a LoopExecutor's last call did (LoopExecutor.last_run; for inspection and tests).

    steps: steps run. driver_from: the step the generated driver took over at (None: every
    step ran in the general loop: tracked runs, memory plans, conditions). active_rows: the
    steps ran on the active rows only (shrink_batch). shared: (j, j0) pairs of per-step values
    written once, value j into the first steps of value j0's stack. in_place: stacks the
    driver's kernels write into directly, with no copy. compiled: steps the driver ran as
    compiled code (the accelerated backend's compiled_steps feature)."""
    steps: int
    driver_from: int | None = None
    active_rows: bool = False
    shared: tuple = ()
    in_place: int = 0
    compiled: int = 0


@register(Loop, ANY)
def compile_loop(op, node, program):
    """The kernel for loop `node` inside `program`: a LoopExecutor (compiles the body now)."""
    return LoopExecutor(op, node, program)


class LoopExecutor:
    """Runs one loop node of one Program, called with the node's inputs like any kernel.

    Built once per Program: the body's step program (and, under a memory plan, the programs
    that return only some residuals or replay them), the loop's layout (which outputs and
    residuals the program reads) and the stacks' buffer pool. Each call picks the steps' path:
    without a plan, byte accounting or a condition, the first step here and the rest in a
    generated driver (_plain_steps, loop_driver.py); otherwise the general loop, which
    writes residuals where the plan puts them, and, in an untracked NumPy run with no
    condition or replay, hands the steps after the first to a driver chunk by chunk
    (planned_driver, drive).
    """

    def __init__(self, op, node, program):
        self.op, self.node = op, node
        body = op.body
        ctx = self.ctx = program.ctx
        self.xp, self.dev = ctx.xp, ctx.device
        self.tracked = program.tracked
        self.meter = self.dev.meter if self.tracked else None
        self.ins = op.in_ports()
        layout = self.layout = loop_layout(node, program.needed_outputs(node))
        results = self.results = body.results
        self.keep_out, self.keep_res = layout.keep_out, layout.keep_res
        self.programs: dict = {}
        self.all_prog = self.body_program("step", tuple(self.keep_res))
        self.cond_prog = Program(body, results["cond"], layout.body_inputs, ctx) \
            if results["cond"] else None
        # a chunked loop's prologue and epilogue (ops/loop.py), each run once per chunk
        self.chunk = op.chunk_steps
        self.n_gather = len(results.get("gather", []))
        self.pro_prog = self.epi_prog = None
        if self.chunk:
            self.pro_prog = Program(body, layout.prologue_outputs, layout.prologue_inputs, ctx)
            self.epi_prog = Program(body, layout.epilogue_outputs, layout.epilogue_inputs, ctx) \
                if layout.epilogue_outputs else None
            self.gather_what = [f"gathered rows of '{v.name}' (chunk epilogue of "
                                f"{node.describe()})" for v in results.get("gather", [])]
        # positions in keep_out of the outputs the steps compute, and of those the epilogue
        # writes (with their position among its row results)
        self.step_pos = [self.keep_out.index(i) for i in layout.step_out]
        self.epi_pos = [(j, self.keep_out.index(i)) for j, i in layout.epilogue_out]
        self.k = len(results["carried"])
        self.n_out, self.n_res = len(results["output"]), len(results["residual"])
        self.out_types = [v.type for v in results["output"]]
        self.res_types = [v.type for v in results["residual"]]
        self.out_what = [f"stacked output {i} of {node.describe()}" for i in range(self.n_out)]
        self.res_what = [f"saved tensor '{v.name}' of {node.describe()}"
                         for v in results["residual"]]
        self.pool = BufferPool(self.xp)  # stacks of earlier runs, refilled once dropped
        # positions in keep_out of the outputs written to host memory row by row (the
        # host_outputs pass's); an untracked run on a device whose memory is the host's keeps
        # its plain stacks (host memory already)
        self.host_pos = [j for j, i in enumerate(self.keep_out) if i in op.host_outputs] \
            if writes_to_host(program) else []
        fetched = set(program.schedule.outputs)   # (a fetched host output is the caller's)
        outs = op.out_ports().split(node.outputs)["output"]
        self.host_held = {j: outs[self.keep_out[j]] not in fetched for j in self.host_pos}
        self.rows_layout = row_layout(body) if op.active_rows and op.shrink else None
        self.rows_out = self.rows_res = self.unzeroed = self.packable = None
        if self.rows_layout is not None:
            self.rows_out = [self.rows_layout.output[i] for i in self.keep_out]
            self.rows_res = [self.rows_layout.residual[i] for i in self.keep_res]
            # stacks whose finished rows no reader looks at (the shrink_batch pass found them)
            rows_only = frozenset(op.rows_only)
            not_zeroed = frozenset(op.unzeroed) | rows_only   # (also read for their shape)
            out_at = op.out_ports().offset("output")
            res_at = op.out_ports().offset("residual")
            self.unzeroed = [out_at + i in not_zeroed for i in self.keep_out] + \
                [res_at + i in not_zeroed for i in self.keep_res]
            self.packable = [out_at + i in rows_only for i in self.keep_out] + \
                [res_at + i in rows_only for i in self.keep_res]
        self.sizes = (self.k, len(body.params.get("invariant", [])),
                      len(body.params.get("sequence", [])))
        self.drivers: dict = {}
        self.reads: dict = {}       # step program -> sequence rows it reads (sliced_rows)
        self.shares: dict = {}
        self.last_run: LoopRun | None = None
        # a backend may run the steps inside a scope of its own (the numba backend's opt-in
        # helper thread wakes for loops of packed products)
        wrap = feature("loop_scope")
        self.scope = wrap(body, self.xp) if wrap is not None else None

    def body_program(self, kind: str, idx: tuple) -> Program:
        """The body compiled to return the carried values, the outputs the loop keeps and
        the residuals `idx` ("step"), or the residuals `idx` alone ("replay")."""
        prog = self.programs.get((kind, idx))
        if prog is None:
            outs = self.layout.step_outputs(list(idx)) if kind == "step" else \
                self.layout.replay_outputs(list(idx))
            prog = self.programs[(kind, idx)] = Program(self.op.body, outs,
                                                        self.layout.body_inputs, self.ctx)
        return prog

    def driver_for(self, active, shared: tuple, packed: tuple, seq_packed: tuple):
        """The steps after the first, as generated Python. With active rows, `packed` flags
        the stacks that go packed this run (ActiveRows.new_stack), `seq_packed` the sequences
        read packed."""
        rows = None if active is None else (self.rows_layout.sequence,
                                             self.rows_out + self.rows_res,
                                             self.unzeroed, packed, seq_packed)
        key = (rows is not None, packed, seq_packed, shared)
        if key not in self.drivers:
            driver = step_driver(self.all_prog, *self.sizes, rows=rows, shared=shared)
            options = self.all_prog.ctx.options
            compiler = feature("compiled_steps")
            if rows is None and compiler is not None and options.get("accelerate", True) \
                    and options.get("compile_loops", True) \
                    and not options.get("check_numerics"):   # (it checks node by node)
                driver = compiler(self.all_prog, driver, *self.sizes, shared) or driver
            self.drivers[key] = driver
        return self.drivers[key]

    def shared_for(self, prog: Program, active, same_steps: bool) -> tuple:
        """For each per-step value of `prog`, the earlier value whose stack it shares, or -1
        (shared_values); `same_steps`: output stacks have as many steps as residual ones, not
        more."""
        key = (prog, active is not None, same_steps)
        if key not in self.shares:
            batched = active is not None
            self.shares[key] = shared_values(
                prog.output_slots[self.k:],
                [0 if same_steps else 1] * len(self.keep_out) + [0] * len(self.keep_res),
                self.rows_out + self.rows_res if batched else None,
                self.unzeroed if batched else None)
        return self.shares[key]

    def sliced_rows(self, prog: Program, feed_seqs) -> list:
        """(sequence input, is its row read by `prog` or the condition per step?) pairs."""
        read = self.reads.get(prog)
        if read is None:
            params = self.op.body.params
            read = self.reads[prog] = step_inputs_read(
                [prog.schedule] + ([self.cond_prog.schedule] if self.cond_prog else []),
                params.get("sequence", []) + params.get("chunk", []))
        return list(zip(feed_seqs, read))

    def new_stack(self, shape, dtype, what, zero_from=None):
        """A stack for the general loop: on the device's meter in a tracked run."""
        xp = self.xp
        if not self.tracked:
            return xp.zeros(shape, dtype) if zero_from is not None else xp.empty(shape, dtype)
        st = self.dev.empty(shape, dtype, what)
        if zero_from is not None and zero_from < shape[0]:
            st[zero_from:] = 0
        return st

    def gather(self, values, t: int, bufs, release, n: int):
        """Write step t's gathered values into row t mod C of the chunk's buffers: [min(C, n),
        ...], as the memory model counts them (a loop shorter than C needs no more rows)."""
        if bufs is None:
            bufs = [self.dev.empty((min(self.chunk, n),) + v.shape, v.dtype, what, reuse=True,
                                   count=self.tracked)
                    for v, what in zip(values, self.gather_what)]
        i = t % self.chunk
        for b, v in zip(bufs, values):
            b[i] = v
            if release is not None:
                release(v)
        return bufs

    def chunk_rows(self, seqs, invariants, n: int) -> tuple:
        """(the sequence inputs followed by the chunk prologue's results, read by step like
        them; their ChunkSource): one source each for the steps and for a replay, which each
        hold their own block."""
        source = ChunkSource(self.dev, self.pro_prog, invariants,
                             [seqs[i] for i in self.op.chunk_blocks], self.chunk, n,
                             self.tracked)
        return (list(seqs) + [source.rows(j) for j in range(len(self.layout.prologue_outputs))],
                source)

    def epilogue(self, carried, invariants, bufs, m: int, release, stacks_out, lo: int,
                 length: int, n: int):
        """Run the chunk epilogue on the chunk's m gathered rows (steps lo.. lo+m): the next
        carried values; rows lo.. lo+m of the stacked outputs it computes are written."""
        if self.epi_prog is None:
            return carried
        carried = list(carried)
        ins = [*carried, *invariants, *[b[:m] for b in bufs or ()]]
        if self.op.body.params.get("chunk_len"):
            ins.append(np.int32(m))
        new = self.epi_prog.run(ins)
        n_acc = len(self.op.epilogue_carried)
        for i, v in zip(self.op.epilogue_carried, new):
            if release is not None:
                release(carried[i])
            carried[i] = v
        rows = new[n_acc:]
        for j, pos in self.epi_pos:
            st = stacks_out[pos]
            if st is None:   # (rows past the steps run stay zero)
                y = rows[j]
                st = stacks_out[pos] = self.new_stack((length,) + y.shape[1:], y.dtype,
                                                      self.out_what[self.keep_out[pos]],
                                                      zero_from=n)
            st[lo:lo + m] = rows[j]
        if release is not None:
            for y in rows:
                release(y)
        return carried

    def __call__(self, *args):
        try:
            if self.scope is None:
                return self.run_steps(*args)
            return self.scope(self.run_steps, *args)
        except BaseException:
            # (a step failed or Ctrl-C: row copies already queued read buffers the traceback
            # still holds; they must be done before those go back to the pool)
            try:
                self.dev.synchronize()
            except Exception:   # noqa: BLE001  (a device error now: the step's says more)
                pass
            raise

    def planned_driver(self, prog: Program, sliced, writers):
        """(driver, takes t0) for the steps after the first of a loop run the general loop
        takes (a memory plan, chunks), where nothing needs Python between steps: an untracked
        NumPy run with no condition or replay, residuals kept in stacks or offloaded to host
        stacks written in place (Device.host_is_device), sequences read per step that are
        arrays, chunk rows or such host stacks (`sliced`: (sequence, read per step?) pairs).
        The driver runs a chunk's steps at a time on local rows (drive). None: the general
        loop runs every step."""
        if self.tracked or self.cond_prog is not None or self.xp is not np:
            return None
        if any(w is not None and not (w.direct and w.n is not None) for w in writers):
            return None
        for s, read in sliced:
            if read and not (type(s) is np.ndarray or isinstance(s, ChunkRows) or
                             isinstance(s, OffloadedStack) and s.direct and
                             type(s.rows) is np.ndarray or
                             isinstance(s, FedRows) and s.direct):
                return None
        key = ("planned", prog)
        if key not in self.drivers:
            k, n_inv = self.sizes[:2]
            driver = step_driver(prog, k, n_inv, len(sliced), offset=True)
            entry = None
            if driver is not None:
                entry = (driver, True)
                options = self.ctx.options
                compiler = feature("compiled_steps")
                if compiler is not None and options.get("accelerate", True) \
                        and options.get("compile_loops", True) \
                        and not options.get("check_numerics"):
                    fast = compiler(prog, driver, k, n_inv, len(sliced), ())
                    if fast is not None:   # (only for bodies that do not read the step)
                        entry = (fast, False)
            self.drivers[key] = entry
        return self.drivers[key]

    def drive(self, planned, rest: range, carried, invariants, sliced, source, stacks,
              gbufs, in_chunk: int, stacks_out, length: int, n: int, steps: int):
        """Run steps `rest` through the planned driver, one chunk at a time (the whole loop
        when it is not chunked): each chunk's sequence rows, block rows and stack rows as
        local arrays (_UNREAD for a sequence the steps do not read), its epilogue after its
        last step. Returns (carried, steps, steps run in the open chunk, steps run
        compiled)."""
        driver, takes_t0 = planned
        C, compiled, i, m = self.chunk, 0, 0, len(rest)
        while i < m:
            t = rest[i]
            lo, hi = (t - t % C, min(t - t % C + C, n)) if C else (0, n)
            j = i + (hi - t if rest.step > 0 else t - lo + 1)
            seg = rest[i:j]
            if source is not None:
                source.cut(t)
            seqs = [_UNREAD if not read else s.source.values[s.j] if isinstance(s, ChunkRows)
                    else (s.host[lo:hi] if s.perm is None else _RowsFrom(s, lo))
                    if isinstance(s, FedRows)   # (a view of the fed array, rows read strided)
                    else (s.rows if isinstance(s, OffloadedStack) else s)[lo:hi]
                    for s, read in sliced]
            args = (range(seg.start - lo, seg.stop - lo, seg.step), carried, invariants, seqs,
                    [st[lo:hi] for st in stacks] + list(gbufs or ()), steps, None)
            carried, steps = driver(*args, lo) if takes_t0 else driver(*args)
            compiled += getattr(driver, "last_compiled", 0)
            if C:
                in_chunk += len(seg)
                if in_chunk == hi - lo:   # the chunk's last step
                    carried = self.epilogue(carried, invariants, gbufs, in_chunk, None,
                                            stacks_out, lo, length, n)
                    in_chunk = 0
            i = j
        return carried, steps, in_chunk, compiled

    def trip_count(self, parts) -> int | None:
        """Steps this run takes (None: until the condition fails), checked against the
        sequence inputs' lengths."""
        op = self.op
        seqs = parts["sequence"]
        length = seqs[op.length_from].shape[0] if op.length_from is not None else None
        n = int(parts["trip"][0]) if op.has_trip else None
        if length is not None:
            n = length if n is None else min(n, length)
        if op.maximum_iterations is not None:
            n = op.maximum_iterations if n is None else min(n, op.maximum_iterations)
        if n is not None:
            n = max(n, 0)
            for s in seqs:
                if s.shape[0] < n:
                    raise ValueError(f"a sequence input has {s.shape[0]} steps, the loop "
                                     f"runs {n}")
        return n

    def run_steps(self, *args):
        op, xp, dev, ctx, node = self.op, self.xp, self.dev, self.ctx, self.node
        ins, results, layout = self.ins, self.results, self.layout
        keep_out, keep_res, k = self.keep_out, self.keep_res, self.k
        n_keep_out, tracked, meter = len(keep_out), self.tracked, self.meter
        rows_layout, rows_out, rows_res = self.rows_layout, self.rows_out, self.rows_res
        unzeroed, packable, pool = self.unzeroed, self.packable, self.pool
        cond_prog, all_prog, new_stack = self.cond_prog, self.all_prog, self.new_stack
        out_what, res_what = self.out_what, self.res_what
        out_types, res_types = self.out_types, self.res_types
        reverse, length_from = op.reverse, op.length_from
        parts = ins.split(args)
        carried = parts["carried"]
        invariants = parts["invariant"]
        seqs = _cursors(parts["sequence"])
        length = seqs[length_from].shape[0] if length_from is not None else None
        n = self.trip_count(parts)
        lp = ctx.plan.for_loop(node) if ctx.plan is not None else None
        active = None
        chunked = self.chunk is not None
        if chunked and n is None:
            raise ValueError(f"{node.describe()}: a chunked loop needs its number of steps "
                             "before it runs (a trip count or a sequence length)")
        feed_seqs, source = seqs, None
        if chunked:   # the prologue's rows, read like sequence inputs
            feed_seqs, source = self.chunk_rows(seqs, invariants, n)
        if rows_layout is not None and lp is None and not tracked and n is not None \
                and not chunked:
            active = ActiveRows(xp, rows_layout, parts["rows"][0], carried, seqs)
            # under a memory plan a reader may run full width, and check_numerics reads every
            # row of every output: then zero every stack
            active.zero_all = ctx.plan is not None or bool(ctx.options.get("check_numerics"))
        if lp is None:
            dev_js, host_js, rec_js = list(range(len(keep_res))), [], []
            stored, step_prog = dev_js, all_prog
        else:
            dev_js, host_js, rec_js = split_placements(layout, lp.placements)
            stored = sorted(dev_js + host_js)   # residuals the step program returns, in order
            step_prog = self.body_program("step", tuple(keep_res[j] for j in stored))
        writers = [None] * len(keep_res)
        for j in host_js:
            writers[j] = OffloadWriter(dev, n, lp.prefetch_depth, meter and meter.release,
                                       _saved_name(lp, keep_res[j],
                                                   results["residual"][keep_res[j]].name),
                                       ctx.plan.host_budget, node.describe(),
                                       direct=not tracked and dev.host_is_device)
        sinks = [(j, writers[j]) for j in stored]
        replayer = None
        if rec_js:
            rec_idx = tuple(keep_res[j] for j in rec_js)
            rep_seqs = seqs
            if chunked:   # (its own blocks: replays run during the backward loop)
                rep_seqs, _ = self.chunk_rows(seqs, invariants, n)
            replayer = Replayer(dev, self.body_program("replay", rec_idx), k, invariants,
                                rep_seqs, lp.checkpoint_every, n, reverse, tracked,
                                [results["residual"][i].name for i in rec_idx])
            every = replayer.k
        release = meter.release if meter is not None else None
        lists = n is None  # unbounded while-loop: collect per-step values, stack at the end
        stacks_out: list = [[] if lists else None for _ in range(n_keep_out)]
        stacks_res: list = [[] if lists else None for _ in keep_res]
        steps = 0
        owned = False      # do we hold a reference to `carried` (tracked runs)?
        t_iter = range(n - 1, -1, -1) if (reverse and n is not None) else (
            range(n) if n is not None else _count())
        n_gather, gbufs, in_chunk = self.n_gather, None, 0
        out_writers = {} if lists else {
            j: OutputWriter(dev, length if length is not None else n, out_what[keep_out[j]],
                            release, held=self.host_held[j]) for j in self.host_pos}
        if not lists and lp is None and not tracked and cond_prog is None and not chunked \
                and not out_writers and not any(isinstance(s, FedRows) for s in seqs):
            shared = self.shared_for(step_prog, active, length is None or length == n)
            carried, stacks, steps, driver_from, in_place, compiled = _plain_steps(
                step_prog.run, lambda *flags: self.driver_for(active, shared, *flags), t_iter,
                carried,
                invariants, seqs, k, active, pool,
                [length if length is not None else n] * n_keep_out + [n] * len(keep_res),
                rows_out + rows_res if active is not None else None, n,
                unzeroed if active is not None else None,
                packable if active is not None else None, shared)
            if stacks is not None:
                stacks_out, stacks_res = stacks[:n_keep_out], stacks[n_keep_out:]
            t_iter = ()    # done: the general loop below has nothing left to run
            self.last_run = LoopRun(steps, driver_from, active is not None,
                                    tuple((j, j0) for j, j0 in enumerate(shared) if j0 >= 0),
                                    in_place, compiled)
        else:
            self.last_run = None   # (set below, once the steps ran)
        # the sequence inputs the step (or the condition) reads per step; the others (rows a
        # chunk block is cut from only) are not sliced, and get None
        sliced = self.sliced_rows(step_prog, feed_seqs)
        planned = None if lists or replayer is not None or active is not None or \
            out_writers or self.last_run is not None else \
            self.planned_driver(step_prog, sliced, writers)
        for t in t_iter:
            if source is not None:   # the block first: cutting it may recycle a row handed out
                source.cut(t)
            feed = [np.int32(t), *carried, *invariants,
                    *[s[t] if r else None for s, r in sliced]]
            if cond_prog is not None:
                ok = cond_prog.run(feed)[0]
                go = bool(ok)
                if release is not None:
                    release(ok)
                if not go:
                    break
            if replayer is not None and steps % every == 0:
                replayer.add_checkpoint(carried)
            res = step_prog.run(feed)
            if release is not None and owned:
                for c in carried:
                    release(c)
            carried, owned = res[:k], True
            n_ys = len(self.step_pos)
            ys = res[k:k + n_ys]
            rs = res[k + n_ys:len(res) - n_gather]
            if lists:
                for j, y in enumerate(ys):
                    stacks_out[j].append(y)
                for (j, w), r in zip(sinks, rs):
                    if w is not None:
                        w.put(t, r)
                    else:
                        stacks_res[j].append(r)
            else:
                for j, y in zip(self.step_pos, ys):
                    if j in out_writers:   # (a host output: the writer releases y)
                        out_writers[j].put(t, y)
                        continue
                    st = stacks_out[j]
                    if st is None:
                        st = stacks_out[j] = new_stack(
                            (length if length is not None else n,) + y.shape, y.dtype,
                            out_what[keep_out[j]], zero_from=n)
                    st[t] = y
                    if release is not None:
                        release(y)
                for (j, w), r in zip(sinks, rs):
                    if w is not None:
                        w.put(t, r)
                        continue
                    st = stacks_res[j]
                    if st is None:
                        st = stacks_res[j] = new_stack((n,) + r.shape, r.dtype,
                                                       res_what[keep_res[j]])
                    st[t] = r
                    if release is not None:
                        release(r)
            if chunked:   # (after the step's values are stored: the epilogue's room)
                if n_gather:
                    gbufs = self.gather(res[len(res) - n_gather:], t, gbufs, release, n)
                in_chunk += 1
                lo = t - t % self.chunk
                if in_chunk == min(lo + self.chunk, n) - lo:   # the chunk's last step
                    carried = self.epilogue(carried, invariants, gbufs, in_chunk, release,
                                            stacks_out, lo,
                                            length if length is not None else n, n)
                    in_chunk = 0
            steps += 1
            if planned is not None:   # the stacks exist: the other steps in generated code
                stacks = [stacks_out[j] for j in self.step_pos] + \
                    [stacks_res[j] if w is None else w.rows for j, w in sinks]
                carried, steps, in_chunk, compiled = self.drive(
                    planned, t_iter[1:], carried, invariants, sliced, source, stacks, gbufs,
                    in_chunk, stacks_out, length if length is not None else n, n, steps)
                self.last_run = LoopRun(steps, 1, in_place=planned[0].in_place,
                                        compiled=compiled)
                for _, w in sinks:   # (rows the driver offloaded in place: still moved)
                    if w is not None:
                        dev.bytes_to_host += (steps - 1) * (w.rows.nbytes // len(w.rows))
                break
        if self.last_run is None:
            self.last_run = LoopRun(steps)
        if not tracked:   # (before the buffers below go back to their pools)
            carried = _own(carried, [w.rows for w in writers if w is not None] +
                           [s.rows for s in seqs if isinstance(s, OffloadedStack) and s.direct]
                           + list(gbufs or ()))
        if source is not None:
            source.drop()
            for b in gbufs or ():
                dev.free(b, reuse=True)
        if lists:
            stacks_out = [_stack(xp, s, out_types[keep_out[j]], length, release)
                          for j, s in enumerate(stacks_out)]
            for j in dev_js:
                stacks_res[j] = _stack(xp, stacks_res[j], res_types[keep_res[j]], None, release)
        elif steps == 0 and (keep_out or keep_res):
            stacks_out, stacks_res = _empty_stacks(all_prog, layout, args, ins, length, xp,
                                                   release)
        for j, w in out_writers.items():   # host outputs (ops/loop.py: steps known, no cond)
            st = stacks_out[j]   # (no step ran: the empty stack's row shape)
            stacks_out[j] = w.finish(steps, st.shape[1:] if st is not None else None,
                                     out_types[keep_out[j]].dtype)
        if steps == 0 and lists:
            for j in host_js + rec_js:
                stacks_res[j] = _stack(xp, None, res_types[keep_res[j]], None)
        elif steps > 0:
            for j in host_js:
                stacks_res[j] = writers[j].finish(steps, descending=not reverse,
                                                  depth=lp.prefetch_depth)
            if replayer is not None:
                replayer.finish(steps)
                for p, j in enumerate(rec_js):
                    v = results["residual"][keep_res[j]]
                    stacks_res[j] = RecomputedStack(replayer, p, v.shape, v.dtype)
        for s in seqs:
            if isinstance(s, SavedStack):
                s.end_pass()
        if meter is not None:
            for st in stacks_out + stacks_res:
                if st is not None and not isinstance(st, SavedStack):
                    meter.disown(st)  # ours since new_stack (stacked lists: unknown, a no-op)
            if owned:
                for c in carried:
                    meter.disown(c)  # the slot the loop's output lands in takes our reference
            if replayer is not None:
                for c in replayer.checkpoint_arrays():
                    meter.disown(c)  # each handle landing in a slot retains them
        full_out: list = [None] * self.n_out
        for j, i in enumerate(keep_out):
            full_out[i] = stacks_out[j]
        full_res: list = [None] * self.n_res
        for j, i in enumerate(keep_res):
            full_res[i] = stacks_res[j]
        return (np.int32(steps), *carried, *full_out, *full_res)


def _own(carried, pooled) -> list:
    """The final state, each value a view of a buffer in `pooled` copied: a kernel that wrote a
    carried value straight into its stack row (the driver), or a step that carried a row read
    in place, leaves a view of a host stack or chunk buffer, which goes back to a pool after
    the run and would change under the caller at the next one."""
    if not pooled:
        return carried
    bufs = [b for p in pooled for b in (p if isinstance(p, list) else [p])
            if isinstance(b, np.ndarray)]
    return [np.array(c) if isinstance(c, np.ndarray) and
            any(np.may_share_memory(c, b) for b in bufs) else c for c in carried]


_UNREAD = np.empty((0,), np.float32)   # stands for a sequence the steps do not read (only a
# chunk's block does): the generated and compiled drivers never index it


class _RowsFrom:
    """A fed sequence's rows from step lo on, indexed from 0 (a chunk's local rows; each read
    is the handle's own row read)."""
    __slots__ = ("rows", "lo")

    def __init__(self, rows, lo: int):
        self.rows, self.lo = rows, lo

    def __getitem__(self, t):
        return self.rows[t + self.lo]


def _cursors(seqs) -> list:
    """The sequence inputs, a fed sequence left on the host read through a cursor of this
    run's own (one per handle: its row buffer is this run's)."""
    if not any(isinstance(s, FedRows) for s in seqs):
        return seqs
    own: dict = {}
    for s in seqs:
        if isinstance(s, FedRows) and id(s) not in own:
            own[id(s)] = s.cursor()
    return [own.get(id(s), s) for s in seqs]


def shared_values(slots, steps, batched=None, unzeroed=None) -> tuple:
    """For each per-step value a step program returns (its `slots`), the index of an earlier
    value whose stack it can share, else -1: the same slot (the body returns one value twice,
    say BasicRNN's output y_t = h_t, which its gradient also saves), stacked to no more steps
    (`steps`: the later one takes the first steps of the earlier one's stack, an output
    stacked to the sequence's length, say) and, with active rows, as batched, where the later
    one's finished rows are not read or the earlier one's are zeroed. The loop then writes it
    once (S1 BasicRNN forward loop: a [64, 256] copy a step, ~0.25 ms a run)."""
    first: dict = {}
    out = []
    for j, slot in enumerate(slots):
        j0 = first.setdefault(slot, j)
        ok = j0 != j and steps[j] <= steps[j0] and (
            batched is None or (batched[j] == batched[j0] and
                                (unzeroed[j] or not unzeroed[j0])))
        out.append(j0 if ok else -1)
    return tuple(out)


def _saved_name(lp, index: int, compiled: str) -> str:
    """How errors name saved residual `index`: the user's op, and the compiled value where the
    passes renamed it (the printed plan's names)."""
    saved = next((s for s in lp.saved if s.index == index), None)
    user = saved.user_name if saved is not None else compiled
    return user if user == compiled else f"{user} (compiled as {compiled})"


def _plain_steps(step_run, driver_for, t_iter, carried, invariants, seqs, k, active, pool,
                 lengths, batched, n, unzeroed=None, packable=None, shared=()):
    """The loop without memory plans, byte accounting or a condition: run every step, write
    each per-step value into its stack (allocated at the first step, zero past the steps run
    and, with active rows, past each step's rows, or packed: ActiveRows.new_stack). Returns
    (carried, stacks or None, steps, the step the driver took over at or None, the stacks it
    fills in place, the steps it ran compiled). The steps after the first run in the
    generated driver (loop_driver.py) that `driver_for(packed stack flags, packed sequence
    flags)` gives. A value `shared` marks
    with an earlier one's index is that value again: it gets that value's stack, and is not
    written."""
    stacks = None
    steps = 0
    driver_from, in_place, compiled = None, 0, 0
    t_range = t_iter
    t_iter = iter(t_iter)
    for t in t_iter:
        if active is None:
            res = step_run([np.int32(t), *carried, *invariants, *[s[t] for s in seqs]])
        else:
            carried = active.at_step(t, carried)
            res = step_run([np.int32(t), *carried, *invariants, *active.slices(t, seqs)])
        carried = res[:k]
        values = res[k:]
        if stacks is None:
            stacks = []
            for j, (m, v) in enumerate(zip(lengths, values)):
                if shared and shared[j] >= 0:   # (its first steps: a view)
                    st = stacks[shared[j]]
                    stacks.append(st if m == lengths[shared[j]] else st[:m])
                elif active is None:  # rows of steps that do not run are zero
                    stacks.append(pool.get(j, (m,) + v.shape, v.dtype, n if m > n else None))
                else:
                    stacks.append(active.new_stack(pool, j, m, v, batched[j], n, packable[j]))
        if active is None:
            for j, (st, v) in enumerate(zip(stacks, values)):
                if not shared or shared[j] < 0:
                    st[t] = v
        else:
            for j, (st, v, b, lazy) in enumerate(zip(stacks, values, batched, unzeroed)):
                if shared and shared[j] >= 0:
                    continue
                if isinstance(st, StepRows):
                    start = st.starts[t]
                    st.packed[start:start + v.shape[0]] = v
                elif b:
                    rows = v.shape[0]
                    st[t, :rows] = v
                    if rows < st.shape[1] and (active.zero_all or not lazy):
                        st[t, rows:] = 0   # finished rows: zero output, gradient, residual
                else:
                    st[t] = v
        steps += 1
        packed = tuple(isinstance(st, StepRows) for st in stacks)
        seq_packed = tuple(active is not None and active.reads_packed(s) for s in seqs)
        driver = driver_for(packed, seq_packed)
        if driver is not None:  # stacks exist: the rest is generated code
            driver_from, in_place = steps, driver.in_place
            rest = t_range[steps:] if isinstance(t_range, range) else t_iter
            carried, steps = driver(rest, carried, invariants,
                                    [s.packed if p else s for s, p in zip(seqs, seq_packed)],
                                    [st.packed if p else st for st, p in zip(stacks, packed)],
                                    steps, active)
            compiled = getattr(driver, "last_compiled", 0)
            break
    if active is not None:
        carried = active.finish(carried)
    return carried, stacks, steps, driver_from, in_place, compiled


class ActiveRows:
    """Runs a loop step on the leading rows still active (`rows[t]` of them).

    Batched carried values are cut to those rows; a row that stops being active keeps its last
    value in a full-width copy until the loop ends (or until it is active again, which happens
    in a backward loop: there the rows start inactive and join as t descends). Batched stacks
    are full width, zero past the active rows: a finished row's output is zero, and so are its
    saved values and gradients, except in stacks whose every reader takes only the active rows
    (the shrink_batch pass marks them; `zero_all` overrides it under a memory plan or
    check_numerics).

    A step runs on its active rows rounded up as ops/loop_rows.row_align says: the extra
    rows are finished ones, which the body's masking leaves exactly as they were (state copied
    through, output and gradients zero). Where they are not rounded up, the stacks whose every
    reader takes only the active rows go packed (ops/steps.StepRows): step t's rows right after
    step t-1's, so readers that pack the active rows (the weight gradients' products) find them
    packed already (padded S1 LSTM: ~1.5 ms of packing the gradient loop's dz).
    """

    def __init__(self, xp, layout, rows, carried, seqs):
        self.xp = xp
        self.carried_rows = layout.carried
        self.seq_rows = layout.sequence
        batched = [c for c, b in zip(carried, layout.carried) if b] or \
            [s[0] for s, b in zip(seqs, layout.sequence) if b and s.shape[0]]
        self.batch = batched[0].shape[0] if batched else 0
        rows = rows.get() if hasattr(rows, "get") else np.asarray(rows)
        align = loop_rows.row_align(xp, batched[0].dtype) if batched else loop_rows.ROW_ALIGN
        self.rows = loop_rows.active_width(rows, self.batch, align).tolist()   # (ints, at most
        # the batch: the driver reads one per step)
        self.exact = align == 1   # (widths are the counts: the layout pack_rows reads)
        self.starts = None        # packed stacks' step offsets (_offsets)
        self.width = self.batch                 # rows the carried values hold now
        self.initial = list(carried)
        self.parked: list = [None] * len(carried)  # full-width values of the inactive rows
        self.batched = [i for i, b in enumerate(layout.carried) if b]

    def at_step(self, t: int, carried: list) -> list:
        k = self.rows[t]
        width = self.width
        if k == width:
            return carried
        for i in self.batched:
            parked = self.park(i)
            c = carried[i]
            if k < width:  # rows k..width finish: keep their values
                parked[k:width] = c[k:width]
                carried[i] = c[:k]
            else:          # rows width..k join with the values they have waited with
                parked[:width] = c   # (c itself may be a view of parked: the same rows)
                carried[i] = parked[:k]
        self.width = k
        return carried

    def park(self, i: int):
        """The full-width buffer batched carried value i's inactive rows wait in."""
        if self.parked[i] is None:
            self.parked[i] = self.xp.array(self.initial[i], copy=True)
        return self.parked[i]

    observe = None   # tests set a callable(t, rows) called at every step
    zero_all = True  # False: stacks marked rows-only keep whatever their finished rows held

    def slices(self, t: int, seqs: list) -> list:
        k = self.width
        if self.observe is not None:
            self.observe(t, k)
        return [s[t][:k] if b else s[t] for s, b in zip(seqs, self.seq_rows)]

    def reads_packed(self, seq) -> bool:
        """Is sequence `seq` a packed stack laid out as this loop's rows (its steps read as
        slices of its buffer at our step offsets)?"""
        if not isinstance(seq, StepRows) or not self.exact:
            return False
        starts = self._offsets()
        return seq.starts[:len(starts)] == starts

    def _offsets(self) -> list:
        """Where each step's rows start in a packed stack (`starts`, made once a run)."""
        if self.starts is None:
            self.starts = [0] + np.cumsum(self.rows).tolist()
        return self.starts

    def new_stack(self, pool, slot: int, steps: int, y, batched: bool, n: int,
                  rows_only: bool = False):
        """A stack for per-step value y, zero in the steps past the `n` that run (each step
        zeroes its finished rows as it writes: that is less than zeroing the whole stack).
        A matrix y that only active rows are read of (`rows_only`) gets a packed stack, a
        StepRows, when widths are exact counts, some row finishes, and zero_all is off."""
        if rows_only and batched and y.ndim == 2 and self.exact and not self.zero_all and \
                steps <= len(self.rows) and min(self.rows[:n], default=self.batch) < self.batch:
            starts = self._offsets()
            # (the whole stack's size, so the pool's key does not change with the lengths)
            buf = pool.get(slot, (steps * self.batch + self.batch, y.shape[1]), y.dtype)
            buf[starts[steps]:starts[steps] + self.batch] = 0   # what a view of the last
            # step reads past its rows
            return StepRows(buf, None, (steps, self.batch, y.shape[1]), starts)
        shape = (steps, self.batch) + y.shape[1:] if batched else (steps,) + y.shape
        return pool.get(slot, shape, y.dtype, n if steps > n else None)

    def finish(self, carried: list) -> list:
        if self.width == self.batch:
            return carried
        out = list(carried)
        for i, batched in enumerate(self.carried_rows):
            if batched:
                parked = self.parked[i]
                parked[:self.width] = carried[i]
                out[i] = parked
        return out


def _count():
    t = 0
    while True:
        yield t
        t += 1


def _stack(xp, items, vtype, length, release=None):
    if not items:
        if any(d is None for d in vtype.shape):
            raise ValueError("a while_loop that ran zero steps cannot stack per-step values of "
                             f"unknown shape {vtype}")
        return xp.zeros((length or 0,) + vtype.shape, vtype.dtype)
    stacked = xp.stack(items)
    if release is not None:
        for item in items:
            release(item)
    if length is not None and length > len(items):
        pad = xp.zeros((length - len(items),) + stacked.shape[1:], stacked.dtype)
        stacked = xp.concatenate([stacked, pad])
    return stacked


def _empty_stacks(step_prog, layout, args, ins, length, xp, release=None):
    """Zero steps ran: empty stacks of the per-step shapes, inferred from the inputs' shapes,
    or (when a shape depends on values) learnt by tracing one step, its results discarded."""
    parts = ins.split(args)
    seqs = parts["sequence"]
    info = infer_body_shapes(layout.body, {
        p: TensorType(tuple(a.shape), p.dtype)
        for p, a in zip(layout.body_inputs, [np.int32(0), *parts["carried"], *parts["invariant"],
                                             *[_Row(s) for s in seqs]])})
    results = layout.body.results
    ys = [info.type(results["output"][i]) for i in layout.keep_out]
    rs = [info.type(results["residual"][i]) for i in layout.keep_res]
    if any(d is None for t in ys + rs for d in t.shape):
        feed = [np.int32(0), *parts["carried"], *parts["invariant"],
                *[s[0] if s.shape[0] else xp.zeros(s.shape[1:], s.dtype) for s in seqs]]
        res = step_prog.run(feed)
        k = len(results["carried"])
        got = res[k:]
        ys = [TensorType(y.shape, y.dtype) for y in got[:len(ys)]]
        rs = [TensorType(r.shape, r.dtype) for r in got[len(ys):]]
        if release is not None:
            for r in res:
                release(r)
    return ([xp.zeros((length or 0,) + y.shape, y.dtype) for y in ys],
            [xp.zeros((0,) + r.shape, r.dtype) for r in rs])


class _Row:
    """The shape of one row of a stacked input (when only shapes matter)."""

    def __init__(self, stack):
        self.shape = tuple(stack.shape[1:])
