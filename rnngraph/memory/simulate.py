"""Predict a run's peak device bytes by replaying the executor's liveness with concrete shapes.

It counts what the executor's byte meter counts (runtime/program.py, memory/accounting.py):
fed values for the whole run; every other array from the step that produces it to the step
after its last use; a view (transpose, slice, reshape...) as its base buffer, once. A loop node
adds, while it runs, its stacks, its carried state, the peak of one body step, and what its
saved-tensor placements cost: prefetch buffers for offloaded rows, checkpoints and a segment
of replayed residuals for recomputed ones. A chunked loop (ops/loop.py) adds one block of its
prologue's results, its epilogue's [C, ...] gather buffers and accumulators, and the peaks of
its prologue and epilogue runs, the blocks its prologue reads from handles included (a replay
of a chunked loop: one block of its own, cut at the positions replay_cuts finds, with the
states the replay holds there). Fed sequences left on the host take no bytes but a
row buffer in each loop reading them.

A device profile may say more about its allocator (memory/costs.py): buffers round up to its
`alloc_granularity`; with `reuse_list_resident`, the prefetch, replay and gather buffers that
loops hand back to the device's reuse list stay allocated, so from the second run on they take
their bytes for the whole run (counted so: a first run peaks lower); `workspace_bytes` are
held throughout.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .liveness import Schedule
from .checkpoints import advance_plan, simulate as simulate_binomial
from .loops import DEVICE, HOST, RECOMPUTE, loop_layout
from .shapes import ShapeInfo
from .strides import Layouts

# ops whose NumPy/CuPy kernel returns a view of (or the very same array as) its first input
VIEW_OPS = frozenset({"transpose", "reshape", "reshape_like", "expand_dims", "squeeze", "split",
                      "concat_grad", "unstack", "getitem", "broadcast_to", "broadcast_like",
                      "matrix_transpose", "check_numerics", "identity", "stop_gradient"})
# ... only when the output has the input's type (a no-op)
NOOP_WHEN_SAME = frozenset({"sum_to", "sum_to_like", "cast"})


def step_inputs_read(scheds, params) -> list:
    """For each of `params` (body params), whether one of the schedules `scheds` reads it: a
    node's input, or an output returned as it is. A loop slices per step only the sequence
    rows its step (or condition) program reads (runtime/loop_kernel.py); rows a chunk block
    is cut from only are not sliced."""
    read = set()
    for sc in scheds:
        for n in sc.nodes:
            read.update(n.inputs)
        read.update(sc.outputs)
    return [p in read for p in params]


def view_source(node, out, info: ShapeInfo):
    """The input Value that output `out` of `node` is a view of, or None (a new buffer).
    Ops may declare it themselves with `op.aliases_input(node) -> input index or None`."""
    op = node.op
    hook = getattr(op, "aliases_input", None)
    if hook is not None:
        i = hook(node)
        return None if i is None else node.inputs[i]
    if not node.inputs:
        return None
    if op.name in VIEW_OPS:
        return node.inputs[0]
    if op.name in NOOP_WHEN_SAME and info.type(out) == info.type(node.inputs[0]):
        return node.inputs[0]
    return None


@dataclass
class LoopChoice:
    """Where one loop's saved residuals go (what the planner decides per loop)."""
    placements: dict            # residual index -> DEVICE | HOST | RECOMPUTE
    checkpoint_every: int = 0
    prefetch_depth: int = 1
    slots: int = 0              # > 0: a binomial schedule with this many states (not uniform)


class _Meter:
    """The simulated counterpart of ByteMeter: buffers by key, refcounts, current and peak."""

    def __init__(self):
        self.refs: dict = {}
        self.cur = 0
        self.peak = 0

    def retain(self, key, nbytes: int) -> None:
        e = self.refs.get(key)
        if e is None:
            self.refs[key] = [1, nbytes]
            self.cur += nbytes
            self.peak = max(self.peak, self.cur)
        else:
            e[0] += 1

    def release(self, key) -> None:
        e = self.refs.get(key)
        if e is None:
            return
        e[0] -= 1
        if e[0] <= 0:
            del self.refs[key]
            self.cur -= e[1]

    def bump(self, extra: int, what=None) -> None:
        self.peak = max(self.peak, self.cur + extra)


class _WatchMeter(_Meter):
    """A _Meter that also remembers what was live when the peak was last raised: buffers by
    key and bytes, and (what, bytes) for a loop's working set while it ran."""

    def __init__(self):
        super().__init__()
        self.at_peak: list = []

    def retain(self, key, nbytes: int) -> None:
        before = self.peak
        super().retain(key, nbytes)
        if self.peak > before:
            self._snap(None, 0)

    def bump(self, extra: int, what=None) -> None:
        if self.cur + extra > self.peak:
            self.peak = self.cur + extra
            self._snap(what, extra)

    def _snap(self, what, extra: int) -> None:
        self.at_peak = [(k, e[1]) for k, e in self.refs.items() if e[1]]
        if what is not None:
            self.at_peak.append((what, extra))


class PeakModel:
    """Predicts peaks for one shape assignment; caches body-step peaks across plans."""

    def __init__(self, info: ShapeInfo, profile=None):
        self.info = info
        self.profile = profile
        self._body_cache: dict = {}
        self._out_bytes: dict = {}
        self._nbytes: dict = {}       # Value -> its rounded bytes (where known)
        self.unknown: set = set()     # values whose size could not be determined

    def nbytes(self, v) -> int:
        b = self._nbytes.get(v)
        if b is None:
            b = self.info.nbytes(v)
            if b is None:
                self.unknown.add(v)
                return 0
            b = self._nbytes[v] = self._rounded(b)
        return b

    def _rounded(self, b: int) -> int:
        g = getattr(self.profile, "alloc_granularity", 1) if self.profile is not None else 1
        return b if g <= 1 or b <= 0 else -(-b // g) * g

    def _resident_reuse(self) -> bool:
        return bool(self.profile is not None and getattr(self.profile, "reuse_list_resident",
                                                         False))

    # --- schedules ------------------------------------------------------------------------------
    def run(self, sched: Schedule, choices: dict, counted_inputs: bool = True, trace=None,
            watch: list | None = None):
        """Simulate `sched`; returns (peak, meter at the end, buffer key of each output).
        `choices`: loop node -> LoopChoice for loops whose residuals are not all on device.
        `trace`: a list to append (node, bytes after its outputs landed, peak so far) to.
        `watch`: a list to append what is live at the peak to: (buffer key, bytes), a loop
        node's working set while it runs as (the loop node, bytes)."""
        m = _Meter() if watch is None else _WatchMeter()
        key: dict = {}       # Value -> buffer key (shared by views)
        held: dict = {}      # Value -> extra buffer keys it keeps alive (residual handles)
        host_fed = sched.host_values() if counted_inputs else frozenset()
        for v in sched.inputs:   # (fed values left on the host: no bytes)
            key[v] = v
            m.retain(v, self.nbytes(v) if counted_inputs and v not in host_fed else 0)
        residual_of = self._residual_index(sched, choices)
        if counted_inputs and self.profile is not None:
            m.retain(("workspace",), int(getattr(self.profile, "workspace_bytes", 0) or 0))
            if self._resident_reuse():
                m.retain(("reuse list",), self._reuse_list_bytes(sched, residual_of, choices))
        value_of_slot = {s: v for v, s in sched.slot.items()}
        # (a fed value a node also makes: its write lands in a scratch slot, dropped at once)
        value_of_slot.update((s, ("scratch", v)) for v, s in sched.scratch.items())
        inputs = set(sched.input_slots)
        views = self._views(sched, host_fed)
        host_stacks = sched.host_stacks()
        for node, frees in zip(sched.nodes, sched.frees):
            if node.op.subgraphs():
                self._loop(sched, node, m, key, held, choices, residual_of)
            elif node.op.name == "host_rows" and (node.inputs[0] in host_fed or
                                                  node.inputs[0] in host_stacks):
                key[node.outputs[0]] = node.outputs[0]   # a handle on host rows: no bytes
                m.retain(node.outputs[0], 0)
            elif node.op.name == "to_host" or node.outputs[0] in host_stacks:
                # a spilled value's host copy, a host stack's layout: no device bytes
                key[node.outputs[0]] = node.outputs[0]
                m.retain(node.outputs[0], 0)
            else:
                for v, src in zip(node.outputs, views[node]):
                    if v in sched.scratch:   # (its view or bytes, under a key of its own,
                        # not in `key`: the callers read its keys as the schedule's Values)
                        m.retain(("scratch", v), 0 if src is not None else self.nbytes(v))
                    elif src is not None and src in key:
                        key[v] = key[src]
                        m.retain(key[v], 0)
                    else:
                        key[v] = v
                        m.retain(v, self.nbytes(v))
            if trace is not None:
                trace.append((node, m.cur, m.peak))
            for s in frees:
                if s in inputs:
                    continue
                v = value_of_slot[s]
                if v in key:
                    m.release(key[v])
                elif isinstance(v, tuple):   # (a scratch slot's write)
                    m.release(v)
                for k in held.pop(v, ()):
                    m.release(k)
        if watch is not None:
            watch.extend(m.at_peak)
        return m.peak, m, key

    def _views(self, sched: Schedule, host_fed) -> dict:
        """Node -> for each output, the input it is a view of (None: a new buffer), for the
        nodes run() counts outputs of. The layouts depend on the shapes alone, not on the
        loops' choices, so they are worked out once per schedule (a plan simulates many)."""
        ck = (sched, "views", host_fed)
        hit = self._body_cache.get(ck)
        if hit is not None:
            return hit
        hit = self._body_cache[ck] = {}
        layouts = Layouts(self.info)
        for node in sched.nodes:
            if node.op.subgraphs() or node.op.name == "to_host" or \
                    (node.op.name == "host_rows" and (node.inputs[0] in host_fed or
                                                      node.inputs[0] in sched.host_stacks())) \
                    or node.outputs and node.outputs[0] in sched.host_stacks():
                continue
            srcs = []
            for j, v in enumerate(node.outputs):
                src = view_source(node, v, self.info)
                if src is None and node.op.name == "permute_rows" and \
                        layouts.stretched(node.inputs[0], node.op.axis):
                    src = node.inputs[0]   # (every row is one: the kernel returns it)
                # (a reshape of a non-contiguous layout copies: layouts says so)
                srcs.append(src if layouts.output(node, j, src) else None)
            hit[node] = srcs
        return hit

    def _reuse_buffers(self, sched, node, residual_of, choices) -> list:
        """Bytes of each buffer loop `node` takes from the device's reuse list while it runs,
        as asked for (the list keeps buffers by their exact size, rounded up when allocated):
        a row buffer per fed sequence left on the host it reads, `prefetch_depth` row buffers
        per offloaded residual its steps read (a chunk block is copied from the host rows past
        them), one replay buffer per recomputed residual of a forward loop it reads (k rows,
        or one row under a binomial schedule), and a chunked loop's gather buffers."""
        size = self.info.nbytes
        reading, ring = self._reads(sched, node, residual_of, choices)
        out = list(self._fed_rows(sched, node, choices, reading, size).values())
        out += self._gather_buffers(sched, node)
        for fwd, rs in reading.items():
            fl = loop_layout(fwd, sched.needed_outputs(fwd))
            fchoice = rs[0][2]
            for i in dict.fromkeys(i for _, i, _ in rs):
                if fchoice.placements.get(i, DEVICE) == HOST and (fwd, i) in ring:
                    out += [size(fl.residual_value(i)) or 0] * max(1, fchoice.prefetch_depth)
            rec = [i for i in fl.keep_res if fchoice.placements.get(i, DEVICE) == RECOMPUTE]
            if rec and any(fchoice.placements.get(i) == RECOMPUTE for _, i, _ in rs):
                rows = 1 if fchoice.slots else max(1, fchoice.checkpoint_every)
                out += [rows * (size(fl.residual_value(i)) or 0) for i in rec]
        return out

    def _gather_buffers(self, sched, node) -> list:
        """Bytes of each [min(C, n), ...] buffer chunked loop `node`'s epilogue gathers its
        steps' rows into (runtime/loop_kernel.py: taken from the reuse list, given back)."""
        layout = loop_layout(node, sched.needed_outputs(node))
        if not layout.chunked or not self.info.steps.get(node):
            return []
        return [self.info.nbytes(p) or 0 for p in layout.body.params.get("gathered", [])]

    def _reads(self, sched, node, residual_of, choices):
        """({forward loop: [(forward loop, residual index, LoopChoice)]} for the offloaded and
        recomputed residuals loop `node` reads, per step or in chunk blocks; the set of
        (forward loop, residual index) its steps read row by row, through prefetch buffers)."""
        op = node.op
        reading, ring = {}, set()
        saved = [(j, residual_of.get(v))
                 for j, v in enumerate(op.in_ports().split(node.inputs)["sequence"])]
        saved = [(j, r) for j, r in saved
                 if r is not None and r[2].placements.get(r[1], DEVICE) != DEVICE]
        if not saved:
            return reading, ring
        layout = loop_layout(node, sched.needed_outputs(node))
        choice = choices.get(node)
        place = choice.placements if choice is not None else {}
        stored = tuple(i for i in layout.keep_res if place.get(i, DEVICE) != RECOMPUTE)
        per_step = self.step_reads(node, layout, stored)
        blocks = set(getattr(op, "chunk_blocks", ())) if layout.chunked else set()
        for j, r in saved:
            if per_step[j]:
                ring.add(r[:2])
            if per_step[j] or j in blocks:
                reading.setdefault(r[0], []).append(r)
        return reading, ring

    def _fed_rows(self, sched, node, choices, reading, size=None) -> dict:
        """{fed value: bytes of one row} for the fed sequences left on the host
        (passes/host_sequences.py), and the loop outputs written there that it reads
        (passes/host_outputs.py), whose rows loop `node` holds while it runs: one row
        buffer per sequence its steps read (a cursor of its own), and one per sequence the
        replay of a forward loop it reads recomputed residuals of slices (that loop's cursor:
        a replay slices every sequence of its loop, runtime/residuals.py's Replayer).
        A chunk block is copied into a new array while the chunk prologue runs, uncounted
        like the blocks of offloaded residuals. `size`: a Value's bytes (default: rounded as
        the device allocates)."""
        size = size or self.nbytes
        host = sched.host_values() | sched.host_stacks()
        if not host:
            return {}
        out = {}
        choice = choices.get(node)
        place = choice.placements if choice is not None else {}
        layout = loop_layout(node, sched.needed_outputs(node))
        stored = tuple(i for i in layout.keep_res if place.get(i, DEVICE) != RECOMPUTE)
        runs = [(node, self.step_reads(node, layout, stored))]
        for fwd, rs in reading.items():
            fchoice = rs[0][2]
            fl = loop_layout(fwd, sched.needed_outputs(fwd))
            rec = tuple(i for i in fl.keep_res if fchoice.placements.get(i, DEVICE) == RECOMPUTE)
            if rec and any(fchoice.placements.get(i) == RECOMPUTE for _, i, _ in rs):
                runs.append((fwd, [True] * len(fwd.op.body.params.get("sequence", []))))
        for loop, reads in runs:
            params = loop.op.body.params.get("sequence", [])
            vs = loop.op.in_ports().split(loop.inputs)["sequence"]
            for v, p, r in zip(vs, params, reads):
                if r and v.node.op.name == "host_rows" and v.node.inputs[0] in host:
                    out[(loop, v)] = size(p) or 0
        return out

    def step_reads(self, node, layout, idx: tuple) -> list:
        """For each sequence param of loop `node`'s body, whether its step program returning
        residuals `idx` (or its condition) reads the row per step (step_inputs_read)."""
        ck = (node, "reads", idx)
        hit = self._body_cache.get(ck)
        if hit is None:
            body = layout.body
            scheds = [Schedule(body, layout.step_outputs(list(idx)), layout.body_inputs)]
            if body.results.get("cond"):
                scheds.append(Schedule(body, body.results["cond"], layout.body_inputs))
            hit = self._body_cache[ck] = step_inputs_read(scheds,
                                                          body.params.get("sequence", []))
        return hit

    def _reuse_list_bytes(self, sched, residual_of, choices) -> int:
        """What the reuse list holds once a run is over: per buffer size asked for, as many
        buffers as the loop needing most of them at once (a later loop takes an earlier
        one's), each as the device rounds it."""
        most: dict = {}
        for node in sched.nodes:
            if node.op.subgraphs():
                count: dict = {}
                for b in self._reuse_buffers(sched, node, residual_of, choices):
                    count[b] = count.get(b, 0) + 1
                for b, c in count.items():
                    most[b] = max(most.get(b, 0), c)
        return sum(self._rounded(b) * c for b, c in most.items())

    def _residual_index(self, sched: Schedule, choices: dict) -> dict:
        """Outer residual Value -> (forward loop node, residual index, LoopChoice)."""
        out = {}
        for node in sched.nodes:
            choice = choices.get(node)
            if choice is None:
                continue
            ports = node.op.out_ports()
            start = ports.offset("residual")
            for i in range(ports.sizes["residual"]):
                out[node.outputs[start + i]] = (node, i, choice)
        return out

    # --- loops ----------------------------------------------------------------------------------
    def _loop(self, sched, node, m: _Meter, key, held, choices, residual_of) -> None:
        op = node.op
        info = self.info
        layout = loop_layout(node, sched.needed_outputs(node))
        n = info.steps.get(node) or 0
        choice = choices.get(node)
        place = choice.placements if choice is not None else {}
        dev_res = [i for i in layout.keep_res if place.get(i, DEVICE) == DEVICE]
        host_res = [i for i in layout.keep_res if place.get(i, DEVICE) == HOST]
        rec_res = [i for i in layout.keep_res if place.get(i, DEVICE) == RECOMPUTE]
        stored = sorted(dev_res + host_res, key=layout.keep_res.index)
        step_peak, carried_bytes = self.body_step(node, layout, "step", tuple(stored))
        outs = op.out_ports().split(node.outputs)
        host_out = set(getattr(op, "host_outputs", ()))   # (written to host row by row)
        stacks = sum(self.nbytes(outs["output"][i]) for i in layout.keep_out
                     if i not in host_out)
        stacks += sum(self.nbytes(outs["residual"][i]) for i in dev_res)
        extra = 0
        if self.profile is not None and self.profile.async_copies:   # rows still being copied
            extra += sum(self.out_row_bytes(layout, i) for i in host_out if i in layout.keep_out)
        ckpt = 0
        if rec_res and choice.slots:
            ckpt = len(binomial_schedule(n, choice.slots)["forward"]) * carried_bytes
        elif rec_res:
            k = max(1, choice.checkpoint_every)
            ckpt = max(0, math.ceil(n / k) - 1) * carried_bytes  # the first is the initial state
        if rec_res and n:
            at = binomial_schedule(n, choice.slots)["forward"] if choice.slots else \
                range(max(1, choice.checkpoint_every), n, max(1, choice.checkpoint_every))
            ckpt += len(set(self._generations(node, at)) - {0}) * self._epilogue_bytes(node)
        if host_res and self.profile is not None and self.profile.async_copies:
            extra += choice.prefetch_depth * sum(self.row_bytes(layout, i) for i in host_res)
        # this loop reading other loops' offloaded / recomputed residuals (a backward loop):
        # an offloaded one its steps read takes its prefetch buffers; a chunk block is copied
        # from the host rows straight into the block (ChunkSource), past them
        reading, ring = self._reads(sched, node, residual_of, choices)
        if not self._resident_reuse():   # the rows of fed sequences left on the host it holds
            extra += sum(self._fed_rows(sched, node, choices, reading).values())
        replay_peak = 0
        cut_any: list = []   # a replay cutting a block of its prologue's rows: (loop, bytes)
        most_of: dict = {}   # forward loop -> the most states it holds beyond the forward's
        cut_at = {k_: [] for k_ in ("first", "rest")}   # ... by moment: (forward loop, bytes)
        by_loop: dict = {}   # (forward loop, moment) -> its share of `moments`
        states = 0   # binomial replays: states stored beyond the forward's (at most)
        moments = dict.fromkeys(("first", "rest", "end first", "end rest"), 0)   # (chunked)
        resident = self._resident_reuse()   # (then the reuse list's buffers count all along)
        for fwd, rs in reading.items():
            fl = loop_layout(fwd, sched.needed_outputs(fwd))
            fchoice = rs[0][2]
            for i in dict.fromkeys(i for _, i, _ in rs):   # (one handle per residual)
                if fchoice.placements.get(i, DEVICE) == HOST and not resident and \
                        (fwd, i) in ring:
                    # (rows of a stack of fewer steps than the depth: one buffer per row;
                    # an empty row's buffer still takes a byte, runtime/devices.py's empty)
                    extra += min(max(1, fchoice.prefetch_depth), info.steps.get(fwd) or
                                 fchoice.prefetch_depth) * max(1, self.row_bytes(fl, i))
            rec = [i for i in fl.keep_res if fchoice.placements.get(i, DEVICE) == RECOMPUTE]
            if rec and any(fchoice.placements.get(i) == RECOMPUTE for _, i, _ in rs):
                rp, rc = self.body_step(fwd, fl, "replay", tuple(rec))
                if fl.chunked:   # the replay's own block of the forward's prologue rows
                    fb, _, _, fpro, _ = self.chunk_costs(fwd, fl)
                    extra += fb
                    # (computing the next one: the old one dropped first, the new one from
                    # blocks of the forward's sequences, new arrays where those are handles;
                    # a block is cut while the replay holds a state: beyond the checkpoints
                    # and the stored states the moments count, by the position read)
                    pw = fpro - fb + self.handle_blocks(sched, fwd, fl, residual_of, choices)
                    cuts = self._cut_beyond(sched, fwd, fl, fchoice, rc)
                    at = [c for c in cuts if c is not None]
                    if at and not (layout.chunked and n):
                        cut_any.append((fwd, pw + max(at)))
                    elif at:   # at each moment of a chunked loop's run: the most of its cuts
                        by_step = self._binomial_reads(sched, node, layout, fwd, fl, fchoice,
                                                       rc, residual_of, choices)["cut"] \
                            if fchoice.slots else None
                        for key_ in ("first", "rest"):
                            ts = _chunk_moments(op, n)[key_]
                            got = [cuts[i] for i in (nf_pos(fwd, t, info) for t in ts)
                                   if i is not None and cuts[i] is not None] \
                                if by_step is None else \
                                [by_step[t] for t in ts if by_step.get(t) is not None]
                            if got:
                                cut_at[key_].append((fwd, pw + max(got)))
                if fchoice.slots:   # one row of residuals; the states held past the forward's
                    nf = info.steps.get(fwd) or 0
                    b = binomial_schedule(nf, fchoice.slots)
                    extra += 0 if resident else sum(self.row_bytes(fl, i) for i in rec)
                    most = self._held_beyond(sched, fwd, fl, fchoice, b, rc, "most")
                    states += max(most, default=0)
                    most_of[fwd] = max(most, default=0)
                    if layout.chunked and n:   # by moment of a chunked loop's run (by
                        # step: the rows of a block its prologue reads are read at its cut)
                        by_step = self._binomial_reads(sched, node, layout, fwd, fl, fchoice,
                                                       rc, residual_of, choices)
                        for key_, ts in _chunk_moments(op, n).items():
                            pick = by_step["held" if key_.startswith("end") else "most"]
                            got = [pick[t] for t in ts if t in pick]
                            moments[key_] += max(got) if got else 0
                            by_loop[(fwd, key_)] = max(got) if got else 0
                elif not resident:
                    k = max(1, fchoice.checkpoint_every)
                    extra += k * sum(self.row_bytes(fl, i) for i in rec)
                replay_peak = max(replay_peak, rp + rc)
        if layout.chunked and n:
            block, gathers, accs, pro_peak, epi_peak = self.chunk_costs(node, layout)
            # the first chunk's steps run before its epilogue made accumulators of the loop's
            # own; the epilogues run once a chunk's steps made their states
            pro_peak += self.handle_blocks(sched, node, layout, residual_of, choices)
            step = max(block + step_peak, pro_peak, block + replay_peak)
            ts = _chunk_moments(op, n)
            # (a replay's cut: the states its own cuts hold, the other replays' at most)
            cut = {k_: max([moments[k_] - by_loop.get((f, k_), 0) + b_ for f, b_ in v],
                           default=0) + block for k_, v in cut_at.items()}
            if resident:   # (the gather buffers are the reuse list's, counted all along)
                gathers = 0
            # the stacks of the outputs the epilogue writes are made by the first epilogue
            # once its program ran (its results still live), not while it runs
            epi_stacks = sum(self.nbytes(outs["output"][i]) for _, i in layout.epilogue_out
                             if i not in host_out)
            epi_first = max(epi_peak - epi_stacks, self._out_bytes.get((node, "epilogue"), 0))
            m.bump(what=node, extra=stacks + ckpt + carried_bytes + extra + gathers + max(
                moments["first"] + step, cut["first"],
                moments["end first"] + block + epi_first,
                accs + max(moments["rest"] + step, cut["rest"]) if ts["rest"] else 0,
                accs + moments["end rest"] + block + epi_peak if ts["end rest"] else 0))
        elif info.steps.get(node) == 0:
            # no step runs (T = 0 fed): no step's temporaries, no carried state made; its
            # outputs are empty stacks and its inputs' very states (n unknown counts one step)
            m.bump(ckpt + extra, node)
        elif n == 1 and not reading and not states:
            # one step: its stacks are allocated after it ran, while its results still live
            m.bump(ckpt + extra + max(step_peak, stacks + self.step_results(
                node, layout, tuple(stored))), node)
        else:
            # (a replay's cut: the states its own cuts hold, the other replays' at most)
            cut_peak = max([b_ - most_of.get(f, 0) for f, b_ in cut_any], default=0)
            # (one step: the state it reads is the caller's, no step made one before it)
            made = carried_bytes if n != 1 else 0
            m.bump(stacks + ckpt + made + extra + states + max(step_peak, replay_peak,
                                                               cut_peak), node)
        # outputs land: stacks, final state, handles (checkpoints + the inputs they replay from)
        for v in node.outputs:
            key[v] = v
        for v in outs["steps"]:
            m.retain(v, 0)
        ins = op.in_ports().split(node.inputs)
        params = op.body.params
        # (steps unknown: a step may have run, so the final state is what a step made, the
        # safe side; only a known 0 steps returns the initial state's arrays)
        ran = info.steps.get(node) != 0
        updated = set(getattr(op, "epilogue_carried", ())) if ran else set()
        for i, (v, r, init) in enumerate(zip(outs["carried"], op.body.results["carried"],
                                             ins["carried"])):
            src = None if i in updated else _passthrough(r, params, ins) if ran else init
            if src is not None and src in key:   # the final state is an input's very array
                key[v] = key[src]
                m.retain(key[v], 0)
            else:
                m.retain(v, self.nbytes(v))
        for i, v in enumerate(outs["output"]):
            m.retain(v, self.nbytes(v) if i in layout.keep_out and i not in host_out else 0)
        replay_inputs = [key[x] for x in ins["carried"] + ins["invariant"] + ins["sequence"]
                         if x in key]
        for i, v in enumerate(outs["residual"]):
            where = place.get(i, DEVICE)
            if i not in layout.keep_res or where == HOST:
                m.retain(v, 0)
            elif where == DEVICE:
                m.retain(v, self.nbytes(v))
            else:
                m.retain(v, 0)
                m.retain(("ckpt", node), ckpt)
                for k in replay_inputs:
                    m.retain(k, 0)
                held[v] = [("ckpt", node)] + replay_inputs

    def _generations(self, node, positions) -> list:
        """For each position of loop `node` (steps executed before it), how many chunk
        epilogues have run: the states an epilogue updates are new arrays once a chunk and
        passed on unchanged by the steps, so a checkpoint at a position holds those of its
        generation (generation 0: the loop's inputs). All 0 for a loop not in chunks."""
        op, n = node.op, self.info.steps.get(node) or 0
        c = getattr(op, "chunk_steps", None)
        if not c or not getattr(op, "epilogue_carried", ()):
            return [0] * len(positions)
        if not op.reverse:   # (chunk ends: t % c == c - 1)
            return [min(q, n) // c for q in positions]
        # (run from t = n - 1 down; chunk ends: t % c == 0, among t = n - q .. n - 1)
        return [(n - 1) // c - (n - q - 1) // c if q else 0 for q in positions]

    def _epilogue_bytes(self, node) -> int:
        """Bytes of the carried states loop `node`'s chunk epilogue updates."""
        op = node.op
        epi = getattr(op, "epilogue_carried", ())
        if not epi or not getattr(op, "chunk_steps", None):
            return 0
        carried = op.out_ports().split(node.outputs)["carried"]
        return sum(self.nbytes(carried[i]) for i in epi)

    def _held_beyond(self, sched, fwd, fl, fchoice, b, rc: int, kind: str) -> list:
        """Per position i of forward loop `fwd` (binomial recomputation), the bytes of
        stored states while the backward pass makes step i's residuals, beyond the forward
        pass's checkpoints (which the peak already counts from the forward loop on): states
        the backward pass stored, less the forward ones it dropped (those past i, with the
        chunk-epilogue states of their generations no state at or before i shares).
        `kind`: "most" (at most while the step is made) or "held" (once it is made)."""
        ck = (fwd, "beyond", fchoice.slots, rc, kind)
        hit = self._body_cache.get(ck)
        if hit is None:
            fwd_at = b["forward"]
            place = fchoice.placements
            stored = tuple(i for i in fl.keep_res if place.get(i, DEVICE) != RECOMPUTE)
            _, cb = self.body_step(fwd, fl, "step", stored)
            gens = self._generations(fwd, fwd_at)
            epi = self._epilogue_bytes(fwd)
            all_gens = set(gens) - {0}
            hit = []
            for i, count in enumerate(b[kind]):
                if count is None:   # (kind "cut": no block cut while position i is read)
                    hit.append(None)
                    continue
                kept = [g for q, g in zip(fwd_at, gens) if q <= i]
                dropped = len(fwd_at) - len(kept)
                gone = len(all_gens - set(kept))
                hit.append((count - len(kept)) * rc - dropped * cb - gone * epi)
            self._body_cache[ck] = hit
        return hit

    def _cut_beyond(self, sched, fwd, fl, fchoice, rc: int) -> list:
        """Per position i of chunked forward loop `fwd` (execution order), the bytes its
        replay holds beyond the checkpoints and the forward pass's stored states while it cuts
        a block of its prologue's rows as the backward pass reads step i (replay_cuts), or
        None where no block is cut then."""
        nf = self.info.steps.get(fwd) or 0
        counts = replay_cuts(nf, fwd.op.chunk_steps, bool(fwd.op.reverse),
                             max(1, fchoice.checkpoint_every), fchoice.slots)
        if not fchoice.slots:   # (uniform: the checkpoints are all counted already)
            return [None if c is None else c * rc for c in counts]
        b = binomial_schedule(nf, fchoice.slots)
        return self._held_beyond(sched, fwd, fl, fchoice,
                                 {"forward": b["forward"], "cut": list(counts)}, rc, "cut")

    def _binomial_reads(self, sched, node, layout, fwd, fl, fchoice, rc: int, residual_of,
                        choices) -> dict:
        """Chunked loop `node` reading recomputed residuals of forward loop `fwd` (a binomial
        schedule): {"most" | "held" | "cut": {step t: bytes}}, the bytes of stored states the
        replay holds beyond the forward pass's checkpoints (as _held_beyond counts them) at
        most while step t of `node` runs, once it ran, and at its cuts of a block of the
        forward's prologue rows (None: none cut), with the rows read in the order the run
        reads them (backward_reads): a block of a residual the chunk prologue reads is read
        first row to last when the block is cut, then the step's own row. Read first to last,
        rows past the ones read before are reached by advancing, which stores states: more
        of them are held than reverse reads one at a time (binomial_schedule) ever hold."""
        op, info = node.op, self.info
        n, nf = info.steps.get(node) or 0, info.steps.get(fwd) or 0
        choice = choices.get(node)
        place = choice.placements if choice is not None else {}
        stored = tuple(i for i in layout.keep_res if place.get(i, DEVICE) != RECOMPUTE)
        per_step = self.step_reads(node, layout, stored)
        seqs = op.in_ports().split(node.inputs)["sequence"]
        rec = [j for j, v in enumerate(seqs) if residual_of.get(v) is not None and
               residual_of[v][0] is fwd and
               residual_of[v][2].placements.get(residual_of[v][1], DEVICE) == RECOMPUTE]
        blocks = sum(1 for j in getattr(op, "chunk_blocks", ()) if j in rec)
        step = any(per_step[j] for j in rec)
        ck = (node, fwd, "reads", fchoice.slots, rc, blocks, step,
              tuple(sorted(fchoice.placements.items())))
        hit = self._body_cache.get(ck)
        if hit is not None:
            return hit
        events = chunked_replay_events(n, op.chunk_steps, bool(op.reverse), blocks, step, nf,
                                       fchoice.slots, fwd.op.chunk_steps if fl.chunked else 0,
                                       bool(fwd.op.reverse))
        fwd_at = binomial_schedule(nf, fchoice.slots)["forward"]
        f_stored = tuple(i for i in fl.keep_res
                         if fchoice.placements.get(i, DEVICE) != RECOMPUTE)
        _, cb = self.body_step(fwd, fl, "step", f_stored)
        gens = self._generations(fwd, fwd_at)
        epi = self._epilogue_bytes(fwd)
        all_gens = set(gens) - {0}

        def beyond(count: int, kept: int) -> int:   # (kept: the first forward states)
            return (count - kept) * rc - (len(fwd_at) - kept) * cb - \
                len(all_gens - set(gens[:kept])) * epi

        hit = {"most": {}, "held": {}, "cut": {}}
        for t, kind, count, kept in events.tolist():
            kind = REPLAY_EVENTS[kind]
            b_ = beyond(count, kept)
            d = hit[kind]
            d[t] = b_ if kind == "held" or d.get(t) is None else max(d[t], b_)
        # (a step reading no row: the states held since the last read)
        now = 0
        for t in (range(n - 1, -1, -1) if op.reverse else range(n)):
            hit["most"].setdefault(t, now)
            now = hit["held"].setdefault(t, now)
        self._body_cache[ck] = hit
        return hit

    def chunk_costs(self, node, layout):
        """(block, gather buffers, accumulators, prologue peak, epilogue peak) in bytes of a
        chunked loop: one block of prologue results, the [C, ...] rows its epilogue gathers,
        the accumulators the epilogue returns (held between chunks), and the peaks of one
        prologue and one epilogue run (their results included, inputs not)."""
        ck = (node, "chunk")
        hit = self._body_cache.get(ck)
        if hit is None:
            body = layout.body
            block = sum(self.nbytes(v) for v in layout.prologue_outputs)
            gathers = sum(self.nbytes(p) for p in body.params.get("gathered", []))
            accs = sum(self.nbytes(v) for v in body.results.get("epilogue", []))
            peaks = []
            for outs, ins in ((layout.prologue_outputs, layout.prologue_inputs),
                              (layout.epilogue_outputs, layout.epilogue_inputs)):
                peak, meter = self.run(Schedule(body, outs, ins), {},
                                       counted_inputs=False)[:2] if outs else (0, None)
                peaks.append(peak)
            # (what one epilogue run leaves: its results)
            self._out_bytes[(node, "epilogue")] = meter.cur if meter is not None else 0
            hit = self._body_cache[ck] = (block, gathers, accs, *peaks)
        return hit

    def handle_blocks(self, sched, node, layout, residual_of, choices) -> int:
        """Bytes of the blocks chunked loop `node`'s prologue reads from handles (offloaded or
        recomputed residuals, fed sequences left on the host): each one a new [C, ...] device
        array while the prologue runs (runtime/residuals.py's ChunkSource)."""
        op = node.op
        n = self.info.steps.get(node) or 0
        if not layout.chunked or not n:
            return 0
        host = sched.host_values() | sched.host_stacks()
        seqs = op.in_ports().split(node.inputs)["sequence"]
        params = op.body.params.get("sequence", [])
        rows = min(op.chunk_steps, n)
        total = 0
        for j in getattr(op, "chunk_blocks", ()):
            v = seqs[j]
            r = residual_of.get(v)
            if (r is not None and r[2].placements.get(r[1], DEVICE) != DEVICE) or (
                    v.node.op.name == "host_rows" and v.node.inputs[0] in host):
                total += self._rounded(rows * (self.info.nbytes(params[j]) or 0))
        return total

    def row_bytes(self, layout, i: int) -> int:
        return self.nbytes(layout.residual_value(i))

    def out_row_bytes(self, layout, i: int) -> int:
        """Bytes of one row of stacked output i (a host output's row in flight)."""
        return self.nbytes(layout.body.results["output"][i])

    def body_step(self, node, layout, kind: str, idx: tuple):
        """(peak bytes of one body step, bytes of the carried state it returns)."""
        ck = (node, kind, idx)
        hit = self._body_cache.get(ck)
        if hit is None:
            outs = layout.step_outputs(list(idx)) if kind == "step" else \
                layout.replay_outputs(list(idx))
            sched = Schedule(layout.body, outs, layout.body_inputs)
            peak, meter, key = self.run(sched, {}, counted_inputs=False)
            inputs = set(layout.body_inputs)
            carried = {key.get(v, v) for v in layout.carried_results}
            cb = 0
            for c in carried:  # (a state returned unchanged is the caller's array: 0 bytes)
                e = meter.refs.get(c)
                if e is not None and c not in inputs:
                    cb += e[1]
            hit = self._body_cache[ck] = (peak, cb)
            self._out_bytes[ck] = meter.cur   # what is left at the end: the step's results
        return hit

    def step_results(self, node, layout, idx: tuple) -> int:
        """Bytes of what one body step returns (next state, outputs, stored residuals)."""
        self.body_step(node, layout, "step", idx)
        return self._out_bytes[(node, "step", idx)]


def _passthrough(result, params, ins):
    """The outer value a body result is the very array of (a carried state the body returns
    unchanged, or an invariant), or None."""
    for role in ("carried", "invariant"):
        ps = params.get(role, [])
        if result in ps:
            return ins[role][ps.index(result)]
    hook = getattr(result.node.op, "aliases_input", None)   # updated in place each step
    if hook is not None and hook(result.node) is not None:  # (ops/scatter.py's in_place)
        return _passthrough(result.node.inputs[hook(result.node)], params, ins)
    return None


def _chunk_moments(op, n: int) -> dict:
    """The steps t of a chunked loop of n steps by moment: those of its first chunk, of the
    rest, and after which its epilogue runs: the first chunk's, the others'."""
    return _moments(op.chunk_steps, bool(op.reverse), n)


@functools.lru_cache(maxsize=64)
def _moments(c: int, reverse: bool, n: int) -> dict:
    order = range(n - 1, -1, -1) if reverse else range(n)
    ends = [t for t in order if (t % c == 0 if reverse else (t % c == c - 1 or t == n - 1))]
    first = [t for t in order if t // c == order[0] // c]
    return {"first": first, "rest": [t for t in order if t // c != order[0] // c],
            "end first": ends[:1], "end rest": ends[1:]}


def nf_pos(fwd, t: int, info) -> int | None:
    """The execution position in forward loop `fwd` of its step t (None: past its steps)."""
    nf = info.steps.get(fwd) or 0
    i = nf - 1 - t if fwd.op.reverse else t
    return i if 0 <= i < nf else None


@functools.lru_cache(maxsize=256)
def replay_cuts(n: int, c: int, reverse: bool, k: int, slots: int) -> tuple:
    """Per position i (execution order) of a chunked forward loop of n steps in chunks of c,
    while a backward pass reads its step i (positions n-1 .. 0), replayed as runtime/
    residuals.py's Replayer does (uniform segments of k steps from their checkpoint, or the
    binomial tape of `slots` states): None where no block of its prologue's rows is cut
    (ChunkSource.cut: a step of another block than the current one runs), else the most
    states held at a cut: the stored ones (binomial; not the initial one), plus one where
    the cut holds a state a replayed step made (not a checkpoint nor a stored one)."""
    out: list = [None] * max(n, 0)
    if n <= 0 or not c:
        return tuple(out)
    block = -1

    def cut(i: int, at: int, held: int) -> None:
        nonlocal block
        b = (n - 1 - i if reverse else i) // c
        if b != block:
            block = b
            out[at] = held if out[at] is None else max(out[at], held)

    if not slots:
        for seg in range((n - 1) // k, -1, -1):
            top = min(seg * k + k, n) - 1   # (the read that replays the segment)
            for i in range(seg * k, top + 1):
                cut(i, top, int(i > seg * k))
        return tuple(out)
    stack = [q for q, store in advance_plan(0, n - 1, slots) if store]
    for i in range(n - 1, -1, -1):
        while stack and stack[-1] > i:
            stack.pop()
        p = stack[-1] if stack else 0
        owned = False
        for q, store in advance_plan(p, i, slots - len(stack)):
            while p < q:
                cut(p, i, len(stack) + owned)
                owned, p = True, p + 1
            if store:
                stack.append(q)
                owned = False
        cut(i, i, len(stack) + owned)
    return tuple(out)


def backward_reads(n: int, c: int, reverse: bool, blocks: int, per_step: bool) -> tuple:
    """The rows a chunked loop of n steps in chunks of c reads from a residual handle, in the
    order it reads them: (step t that reads, row u) pairs. At the step a block of rows is cut
    (ChunkSource.cut), its prologue reads the block's rows from each of the `blocks` handles
    it reads, first to last (SavedStack.read_block); then the step reads its own row
    (`per_step`)."""
    out: list = []
    block = -1
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        if t // c != block:
            block = t // c
            lo, hi = block * c, min(block * c + c, n)
            out += [(t, u) for _ in range(blocks) for u in range(lo, hi)]
        if per_step:
            out.append((t, t))
    return tuple(out)


REPLAY_EVENTS = ("most", "held", "cut")   # binomial_replay's kinds, by chunked_replay_events' code


@functools.lru_cache(maxsize=16)
def chunked_replay_events(n: int, c: int, reverse: bool, blocks: int, per_step: bool, nf: int,
                          slots: int, fc: int, f_reverse: bool) -> np.ndarray:
    """binomial_replay's events for a chunked loop of n steps in chunks of c (`reverse`,
    `blocks`, `per_step`: backward_reads') reading a forward loop of nf steps (binomial, with
    `slots` states; its prologue in blocks of fc steps, 0: not chunked; `f_reverse`: its steps
    from nf - 1 down), a row per read position: [step t, kind (REPLAY_EVENTS' index), states,
    kept] as int32 (kept small: a plan tries many slot counts, over thousands of steps)."""
    reads = tuple((t, nf - 1 - u if f_reverse else u)
                  for t, u in backward_reads(n, c, reverse, blocks, per_step) if 0 <= u < nf)
    code = {k: i for i, k in enumerate(REPLAY_EVENTS)}
    events = binomial_replay(nf, slots, fc, f_reverse, reads)
    out = np.array([(t, code[k], s, kept) for t, k, s, kept in events], dtype=np.int32)
    out.setflags(write=False)   # (shared through the cache)
    return out.reshape(-1, 4)


def binomial_replay(n: int, slots: int, c: int, reverse: bool, reads: tuple) -> tuple:
    """runtime/residuals.py's Replayer on a binomial schedule of `slots` states over a
    forward loop of n steps (its prologue rows in blocks of c steps, 0: not chunked; steps
    from n - 1 down where `reverse`), asked for the positions `reads` ((index, position)
    pairs, in the order asked; a position asked twice in a row is read from the replay
    buffer), the forward pass having stored its states (binomial_schedule's "forward").
    Returns (index, kind, states, kept) events: kind "most" (the most states held while a
    position is made), "held" (once made) or "cut" (a block of the prologue rows cut: held
    then, one more where the cut holds a state a replayed step made); states: the stored
    ones (not the initial state); kept: how many of the forward pass's are still held (its
    first ones: states past a position asked are dropped, and stored again by a replay)."""
    stack = [(q, True) for q in binomial_schedule(n, slots)["forward"]]
    events: list = []
    seg, block = None, -1
    for idx, i in reads:
        if i == seg:
            continue
        while stack and stack[-1][0] > i:
            stack.pop()
        kept = sum(1 for _, f in stack if f)
        p = stack[-1][0] if stack else 0
        most, owned = len(stack), False

        def cut(q: int, held: int) -> None:
            nonlocal block
            b = (n - 1 - q if reverse else q) // c
            if b != block:
                block = b
                events.append((idx, "cut", held, kept))

        for q, store in advance_plan(p, i, slots - len(stack)):
            while p < q:
                if c:
                    cut(p, len(stack) + owned)
                owned, p = True, p + 1
            if store:
                stack.append((q, False))
                owned = False
                most = max(most, len(stack))
        if c:
            cut(i, len(stack) + owned)
        events += [(idx, "most", most, kept), (idx, "held", len(stack), kept)]
        seg = i
    return tuple(events)


_SCHEDULES: dict = {}


def binomial_schedule(n: int, slots: int) -> dict:
    """memory/checkpoints.simulate, remembered (plans ask for the same schedule many times)."""
    key = (n, slots)
    if key not in _SCHEDULES:
        if len(_SCHEDULES) > 256:
            _SCHEDULES.clear()
        _SCHEDULES[key] = simulate_binomial(n, slots)
    return _SCHEDULES[key]


def spill_host_peak(sched: Schedule, nbytes) -> int:
    """The most host bytes the spilled values of `sched` (to_host nodes, passes/
    spill_values.py) hold at once: each from its to_host node to its last reader;
    `nbytes(value)` sizes a value."""
    value_of_slot = {s: v for v, s in sched.slot.items()}
    live: dict = {}
    cur = peak = 0
    for node, frees in zip(sched.nodes, sched.frees):
        if node.op.name == "to_host":
            v = node.outputs[0]
            live[v] = nbytes(v)
            cur += live[v]
            peak = max(peak, cur)
        for s in frees:   # (a scratch slot, a fed value's write: no value of the schedule's)
            cur -= live.pop(value_of_slot.get(s), 0)
    return peak


def host_output_peak(sched: Schedule, nbytes) -> int:
    """The most host bytes the loop outputs `sched` writes to host memory (host_outputs,
    passes/host_outputs.py) hold at once where the caller does not receive them: an output a
    later loop reads, and the copies reorderings and reversals make of one on the way, each
    from the node making it until no value still reads it (a transpose is a view of its
    input, a host_rows node a handle on it: each keeps that array alive); `nbytes(value)`
    sizes a value. A fetched array is the
    caller's, held in any plan (a fetched view keeps its array to the end)."""
    host, fetched = sched.host_stacks(), set(sched.outputs)
    value_of_slot = {s: v for v, s in sched.slot.items()}
    key: dict = {}    # Value -> the host array holding it
    refs: dict = {}   # host array -> [values reading it, bytes]
    cur = peak = 0
    for node, frees in zip(sched.nodes, sched.frees):
        for v in node.outputs:
            if v not in host and not (node.op.name == "host_rows" and node.inputs[0] in key):
                continue   # (host_rows: a handle the loops read the array through)
            k = key.get(node.inputs[0]) if node.op.name in ("transpose", "host_rows") else None
            if k is None:
                if v in fetched:
                    continue
                k, refs[v] = v, [0, nbytes(v)]
                cur += refs[v][1]
            key[v] = k
            refs[k][0] += 1
        peak = max(peak, cur)
        for s in frees:
            k = key.pop(value_of_slot.get(s), None)
            if k is not None:
                refs[k][0] -= 1
                if not refs[k][0]:
                    cur -= refs.pop(k)[1]
    return peak
