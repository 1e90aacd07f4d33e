"""Choosing the large intermediates to move off the device (passes/spill_values.py) when the
loops' saved tensors, streaming and chunking leave a program over its budget: the values of a
static_rnn's steps that its gradient reads, a big activation read again by the backward pass.

One liveness simulation of the program (memory/simulate.py, with the loops' placements already
chosen) gives the bytes live at each step. Then, while the highest step is over the budget:

- running sums first: an add_n of three or more operands made apart (a static_rnn's per-step
  weight gradients) is summed as they come (same bits, no copies);
- then a fed sequence that only unstack nodes read stays on the host, where that lowers the
  peak (each step's slice copied for its forward and its gradient step);
- then values one at a time. A candidate has its own device buffer (not a view; views of it
  made and read on one side of the gap only), is not fetched, fed, a variable or a loop's
  output, and its readers split at their widest gap (passes/spill_values.split_readers):
  between the last early reader e and the first late reader l it holds its bytes for nothing.
  Moving it frees them over the steps strictly between e and l, for the time of a copy out and
  back (offload) or of one more run of its producer (recompute: a single-output op that may
  run again, whose inputs are live at l anyway, so rerunning it holds nothing longer). The
  candidate spanning the highest step with the most bytes per second of added time is taken
  and the profile updated; a recomputed value's inputs then stay where they are, and a value
  offloaded is not read again by a recomputation after its early group.

The caller compiles the program with the choice and plans it again: that simulation is the
prediction. Steps inside a loop node count their loop's working set only where the
simulation's peak rose there (a lower bound elsewhere); the caller's second plan catches what
that misses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..passes.spill_values import fed_slices, spill_problem, split_readers
from .costs import CPU_PROFILE, DeviceProfile
from .loops import HOST, RECOMPUTE
from .plan import SpilledValue
from .planner import node_flops
from .simulate import PeakModel
from .shapes import infer_shapes

# producers whose values are nobody's to move (the caller's, the session's, constants)
_SOURCES = ("placeholder", "variable", "param", "constant")


@dataclass
class SpillChoice:
    host: tuple = ()              # value names to offload
    recompute: tuple = ()         # value names to recompute
    accumulate: tuple = ()        # add_n node names to turn into running sums
    values: list = field(default_factory=list)   # [SpilledValue], in the order chosen
    estimate: int = 0             # the peak the step profile says is left
    time: float = 0.0             # predicted seconds the moves add
    host_bytes: int = 0           # host bytes of the offloaded values (all at once, at most)


def choose_spills(schedule, feed_types: dict, budget: int, profile: DeviceProfile = CPU_PROFILE,
                  strategy: str = "auto", host_budget: int | None = None,
                  choices: dict | None = None, min_bytes: int = 256) -> SpillChoice:
    """The values of `schedule` to offload or recompute so that its predicted peak fits
    `budget` (or gets as low as moving values gets it: `estimate` says how low). `choices`:
    the loops' placements (loop node -> LoopChoice) the plan already made; `strategy`: "auto"
    (per value, the faster way), "offload" or "recompute"; offloaded values take at most
    `host_budget` host bytes in all (None: unlimited)."""
    info = infer_shapes(schedule.graph, schedule.nodes, feed_types)
    model = PeakModel(info, profile)
    trace: list = []
    _, _, key = model.run(schedule, choices or {}, trace=trace)
    nodes = schedule.nodes
    prof = np.array([cur for _, cur, _ in trace], dtype=np.int64)
    before = 0
    for i, (node, cur, peak) in enumerate(trace):   # (a loop's working set, where it showed)
        if node.op.subgraphs() and peak > before:
            prof[i] = max(cur, peak)
        before = peak
    if not len(prof):
        return SpillChoice()
    keep = set(schedule.outputs) | set(schedule.inputs)
    fed = set(schedule.inputs)
    readers: dict = {}
    for i, node in enumerate(nodes):
        for v in node.inputs:
            rs = readers.setdefault(v, [])
            if not rs or rs[-1] != i:
                rs.append(i)
    buffers: dict = {}
    views: dict = {}     # buffer key -> the other values viewing it
    for v, k in key.items():
        buffers[k] = buffers.get(k, 0) + 1
        if k is not v:
            views.setdefault(k, []).append(v)
    position = {n: i for i, n in enumerate(nodes)}

    def views_stay(v, e: int, late: int) -> bool:
        """Do v's views (made by its readers) and their readers all sit on one side of the
        gap (e, late)? Then the buffer goes with v's early group and comes back with v2's."""
        for w in views.get(v, ()):
            if w in keep:
                return False
            span = [position.get(w.node, -1)] + readers.get(w, [])
            if not (max(span) <= e or min(span) >= late):
                return False
        return True
    kinds = {"auto": (HOST, RECOMPUTE), "offload": (HOST,), "recompute": (RECOMPUTE,)}[strategy]

    def live_at(u, at: int) -> bool:
        """Is u's buffer there at step `at` anyway (so a recomputation may read it)?"""
        if u in fed or u.node.op.name in _SOURCES:
            return True
        rs = readers.get(u, ())
        return u in keep or (rs and rs[-1] >= at)

    cands = []    # (value, early end, late start, bytes, offload s, recompute s or None)
    for i, node in enumerate(nodes):
        if node.op.subgraphs() or node.op.name in _SOURCES:
            continue
        for v in node.outputs:
            if key.get(v) is not v:
                continue   # (a view: moving it frees nothing)
            rs = readers.get(v, [])
            b = model.nbytes(v)
            if b < min_bytes or spill_problem(v, keep, rs) is not None:
                continue
            at = split_readers(i, rs)
            e, late = (rs[at - 1] if at else i), rs[at]
            if late - e < 2 or not views_stay(v, e, late):
                continue
            t_off = profile.transfer_time(b, b) if HOST in kinds else None
            t_rec = None
            if RECOMPUTE in kinds and spill_problem(v, keep, rs, True) is None and \
                    all(live_at(u, late) for u in node.inputs):
                t_rec = profile.compute_time(node_flops(node, info), 1)
            if t_off is None and t_rec is None:
                continue
            cands.append((v, e, late, b, t_off, t_rec))
    out = SpillChoice()
    if int(prof.max()) > budget:
        out.accumulate = _running_sums(nodes, readers, key, buffers, model, prof, profile, out)
    if int(prof.max()) > budget and strategy != "recompute":
        _fed_on_host(schedule, nodes, readers, model, prof, profile, out)
    if out.accumulate:   # (their operands go at the adds now: not across the peak)
        summed = {n for n in nodes if n.name in set(out.accumulate)}
        cands = [c for c in cands if not summed & {nodes[i] for i in readers[c[0]]}]
    if not cands:
        return _done(out, prof)
    E = np.array([c[1] for c in cands])
    L = np.array([c[2] for c in cands])
    B = np.array([c[3] for c in cands], dtype=np.int64)
    off_ok = np.array([c[4] is not None for c in cands])
    rec_ok = np.array([c[5] is not None for c in cands])
    t_off = np.array([c[4] if c[4] is not None else np.inf for c in cands])
    t_rec = np.array([c[5] if c[5] is not None else np.inf for c in cands])
    avail = np.ones(len(cands), bool)
    index = {c[0]: j for j, c in enumerate(cands)}
    read_by: dict = {}     # value -> candidates whose producer reads it
    for j, c in enumerate(cands):
        for u in c[0].node.inputs:
            read_by.setdefault(u, []).append(j)
    host_left = np.inf if host_budget is None else host_budget
    while True:
        p = int(prof.argmax())
        if prof[p] <= budget:
            break
        ok = avail & (E < p) & (L > p)
        ok &= (off_ok & (B <= host_left)) | rec_ok
        if not ok.any():
            break
        t = np.where(rec_ok, t_rec, np.inf)
        t = np.minimum(t, np.where(off_ok & (B <= host_left), t_off, np.inf))
        score = np.where(ok, B / np.maximum(t, 1e-12), -1.0)
        j = int(score.argmax())
        v, e, late, b = cands[j][:4]
        recompute = rec_ok[j] and (not (off_ok[j] and b <= host_left) or t_rec[j] <= t_off[j])
        avail[j] = False
        prof[e + 1:late] -= b
        if recompute:
            out.time += float(t_rec[j])
            for u in v.node.inputs:      # (its inputs stay where they are)
                if u in index:
                    avail[index[u]] = False
        else:
            host_left -= b
            out.host_bytes += b
            out.time += float(t_off[j])
            for k in read_by.get(v, ()):   # (a copy of their producer would read v late)
                if L[k] > e:
                    rec_ok[k] = False
        out.values.append(SpilledValue(v.name, int(b), RECOMPUTE if recompute else HOST,
                                       v.node.op.name))
    return _done(out, prof)


def _done(out: SpillChoice, prof) -> SpillChoice:
    out.host = tuple(v.name for v in out.values if v.placement == HOST)
    out.recompute = tuple(v.name for v in out.values if v.placement == RECOMPUTE)
    out.estimate = int(prof.max())
    return out


def _running_sums(nodes, readers, key, buffers, model, prof, profile, out) -> tuple:
    """The add_n nodes worth turning into running sums (passes/spill_values.py: each operand
    added, in order, right after it is made): three or more operands made apart, the sum
    kept instead of them from the first add on. Updates the step profile `prof`."""
    position = {n: i for i, n in enumerate(nodes)}
    names = []
    for i, node in enumerate(nodes):
        if node.op.name != "add_n" or len(node.inputs) < 3 or \
                any(x.node.name in names for x in node.inputs):
            continue   # (a sum of a running sum: the pass takes one of each such pair)
        made = [position.get(x.node, -1) for x in node.inputs]
        anchors, a = [], max(made[0], made[1])
        for j in range(1, len(made)):
            a = max(a, made[j])
            anchors.append(a)
        if anchors[0] >= i - 1 or anchors[0] < 0:
            continue   # (made together, or read before any is: nothing to gain)
        b_out = model.nbytes(node.outputs[0])
        freed = np.zeros(len(prof), dtype=np.int64)
        for j, x in enumerate(node.inputs):
            own = key.get(x) is x and buffers.get(x, 0) == 1 and readers.get(x) == [i]
            if own:   # (it goes at the add that reads it, not at the add_n)
                freed[max(anchors[max(0, j - 1)], made[j]) + 1:i] += model.nbytes(x)
        delta = -freed
        delta[anchors[0]:i] += b_out
        delta[anchors] += b_out   # (an add's new sum while the old one is read)
        delta[i] = prof[i - 1] + delta[i - 1] - prof[i]   # (the add_n step is gone)
        if delta.sum() >= 0:
            continue
        prof += delta
        names.append(node.name)
        out.time += (len(node.inputs) - 2) * profile.op_overhead_s
    return tuple(names)


def _fed_on_host(schedule, nodes, readers, model, prof, profile, out) -> None:
    """Fed values only unstack nodes read (a static_rnn's input) that are worth leaving on the
    host (passes/spill_values.py: each slice copied before its forward and its gradient step):
    added to `out` as offloaded values. Updates the step profile `prof`."""
    keep = set(schedule.outputs)
    host = schedule.host_values()
    position = {n: i for i, n in enumerate(nodes)}

    def readers_of(x):
        return [nodes[i] for i in readers.get(x, ())]
    for v in schedule.inputs:
        slicers = None if v in keep or v in host else fed_slices(v, readers_of, keep)
        if not slicers:
            continue
        b = model.nbytes(v)
        delta = np.full(len(prof), -b, dtype=np.int64)
        for u, _ in slicers:
            i = position[u]
            for part in u.outputs:
                rs = readers.get(part, [])
                if not rs:
                    continue
                at = split_readers(i, rs)
                for group in (rs[:at], rs[at:]):
                    if group:
                        delta[group[0] - 1:group[-1] + 1] += model.nbytes(part)
        if (prof + delta).max() >= prof.max():
            continue
        prof += delta
        out.values.append(SpilledValue(v.name, int(b), HOST, v.node.op.name))
        out.time += profile.transfer_time(0, b)
