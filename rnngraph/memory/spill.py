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
- where that leaves the peak over the budget and recomputation is allowed, the same is done
  again after checkpointed segments (Chen et al. 2016; _segment_plan): the forward values
  held across the peak for the gradient are recomputed a segment at a time, from checkpoints
  kept where the forward chain is narrow (a static_rnn's state between steps). Where the
  checkpoints go is a dynamic programme over the cut positions (Gruslys et al. 2016's
  BPTT-MSM, with Chen's one level of segments): the plan of the least added time whose
  peak fits, else the lowest peak; equal stretches where they do as well. One more run of
  the forward producers at most. The one-value choices then leave the segments' values and
  the values they read alone; the lower of the two profiles is taken.

The caller compiles the program with the choice and plans it again: that simulation is the
prediction. Steps inside a loop node count their loop's working set only where the
simulation's peak rose there (a lower bound elsewhere); the caller's second plan catches what
that misses.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ..passes.spill_values import (fed_slices, late_start, segments_of, spill_problem,
                                   split_readers)
from .costs import CPU_PROFILE, DeviceProfile
from .loops import HOST, RECOMPUTE
from .plan import SpilledValue
from .planner import node_flops
from .simulate import PeakModel
from .shapes import infer_shapes

# a forward producer reading more values than this (a stack or sum of every step's output)
# is never part of a recomputed segment: recomputing it would need every segment at once
GATHER = 4

# the most units (stretches between candidate cuts) the segment schedules are chosen over:
# the dynamic programme takes about UNITS**2 steps
UNITS = 128
# schedules of each kind tried on the step profile, the chain's model corrected by the gap
TRIES = 4
# targets swept between the chain model's lowest peak and its peak unsegmented, and stretch
# sizes by bytes: more plans scored on the step profile (the model is off either way)
SWEEP = 8
BYTE_SIZES = 16

# producers whose values are nobody's to move (the caller's, the session's, constants)
_SOURCES = ("placeholder", "variable", "param", "constant")
# ... of those, the ones whose buffers are there all along (a constant's goes after its last
# reader, like any value: a recomputation reading it late holds it longer)
_RESIDENT = ("placeholder", "variable", "param")


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
        if u in fed or u.node.op.name in _RESIDENT:
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
    if not cands and RECOMPUTE not in kinds:
        return _done(out, prof)
    seg_prof, seg = prof.copy(), copy.deepcopy(out)
    _greedy(cands, prof, out, budget, host_budget)
    if int(prof.max()) <= budget or RECOMPUTE not in kinds:
        return _done(out, prof)
    # (still over: checkpointed segments of the forward chain first, then values one at a time)
    touched = _segment_plan(nodes, readers, key, model, seg_prof, seg, keep, info, profile,
                            budget, min_bytes)
    if touched is None:
        return _done(out, prof)
    rest = [c for c in cands if c[0] not in touched and touched.isdisjoint(c[0].node.inputs)]
    _greedy(rest, seg_prof, seg, budget, host_budget)
    if int(seg_prof.max()) < int(prof.max()):
        return _done(seg, seg_prof)
    return _done(out, prof)


def _greedy(cands, prof, out, budget, host_budget):
    """Values one at a time (the module's docstring), added to `out`; updates `prof`."""
    if not cands:
        return
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


def _segment_plan(nodes, readers, key, model, prof, out, keep, info, profile, budget,
                  min_bytes):
    """Checkpointed segments (Chen et al. 2016) of the forward values the gradient reads:
    added to `out` as recomputed values (SpilledValue.segment: 1, 2, ...); updates `prof`.
    Returns the values the segments read or name (what the one-value choices must leave
    alone), or None where no segmentation lowers the peak.

    The forward values the gradient reads that are held across the peak (their readers' widest
    gap spans it), and the forward producers they need, in schedule order; a cut after one of
    them keeps the values crossing it (the checkpoint: a static_rnn's state). Cuts may go
    where few bytes cross (at most 1.5 times the fewest in the steady middle half: between
    steps, not inside a cell; the narrowest of each run of a few where there are more than
    UNITS), which cut the chain into units (Chain). A plan recomputes stretches of units, each
    as one segment right before its first late reader (passes/spill_values.py), the last one
    (its gradient runs first) or not. Two plans are scored on the step profile, by the delta
    rules the pass follows (_segments_for): the best stretches of equal length ("uniform")
    and the dynamic programme's cuts anywhere ("dp"; _dp), each chosen on the chain's model
    for the budget, and again for a budget lowered by what the model missed where the step
    profile says it does not fit (TRIES in all); the model errs either way, so both are also
    chosen for targets swept from its lowest peak to its peak with nothing recomputed (SWEEP),
    and stretches of about equal late-read bytes (BYTE_SIZES sizes, the last stretch
    recomputed or not: "uniform") are scored too. The one that fits with the least added time
    is taken, else the lowest; the one scored first where they tie. SpilledValue.schedule
    says which."""
    position = {n: i for i, n in enumerate(nodes)}
    last_use: dict = {}   # buffer key -> the last step reading it (or making it)
    for v, k in key.items():
        at = max(readers.get(v, ()) or [position.get(v.node, -1)])
        last_use[k] = max(last_use.get(k, -1), at)

    def free(k) -> bool:   # (a buffer there all along: a source's, a fed or fetched value's)
        return k in keep or k.node.op.name in _RESIDENT or k.node not in position

    def eligible(n) -> bool:
        if n.is_gradient or n.op.subgraphs() or n.op.name in _SOURCES or n.op.stateful or \
                n.op.name in ("to_host", "to_device", "host_rows"):
            return False
        outs = [v for v in n.outputs if v in key]
        if not outs or any(v in keep for v in n.outputs) or all(free(key[v]) for v in outs):
            return False
        # (a gather of many steps, a stack of the outputs: it reads every segment)
        return len({x.node for x in n.inputs if not free(key.get(x, x))}) <= GATHER

    # forward values held across the peak for the gradient, and the producers they need
    peak = int(prof.argmax())

    def across(i, v) -> bool:
        rs = readers.get(v, ())
        if not rs or not any(nodes[r].is_gradient for r in rs):
            return False
        at = split_readers(i, rs)
        return (rs[at - 1] if at else i) < peak < rs[at]
    late_read = [v for i, n in enumerate(nodes) if eligible(n) for v in n.outputs
                 if across(i, v)]
    if not late_read:
        return None
    need, stack = set(), [v.node for v in late_read]
    while stack:
        n = stack.pop()
        if n in need:
            continue
        need.add(n)
        stack.extend(x.node for x in n.inputs if x.node in position and eligible(x.node))
    order = sorted(need, key=position.__getitem__)
    idx = {n: j for j, n in enumerate(order)}
    m = len(order)
    # bytes crossing each cut (after order[j]), by buffer
    span: dict = {}
    for n in order:
        for v in n.outputs:
            k = key.get(v)
            if k is None or free(k):
                continue
            far = max([idx[nodes[i]] for i in readers.get(v, ()) if nodes[i] in idx] or [-1])
            lo, hi = span.get(k, (idx[n], idx[n]))
            span[k] = (min(lo, idx[n]), max(hi, far))
    cross = np.zeros(m + 1, dtype=np.int64)
    for k, (lo, hi) in span.items():
        if hi > lo:
            cross[lo] += model.nbytes(k)
            cross[hi] -= model.nbytes(k)
    cross = np.cumsum(cross)[:m]
    made = np.zeros(m, dtype=np.int64)   # bytes of late-read buffers made at each producer
    for v in late_read:
        k = key[v]
        if k is v and not free(k) and v.node in idx:
            made[idx[v.node]] += model.nbytes(v)
    first = int(np.argmax(made > 0))
    if m - first < 3:
        return None
    floor = int(cross[max(first, m // 4):max(first + 1, 3 * m // 4)].min())   # (steady state)
    cuttable = cross <= max(floor * 3 // 2, floor + min_bytes)
    cuttable[:first] = False
    cuttable[m - 1] = False
    total = int(made.sum())
    n_cuts = int(cuttable.sum())
    if not n_cuts or not total:
        return None
    late_set = set(late_read)
    sizes: dict = {}
    costs: dict = {}

    def nbytes(v) -> int:   # (memoised: each option scores the same values again)
        if v not in sizes:
            sizes[v] = model.nbytes(v)
        return sizes[v]

    def seconds(n) -> float:
        if n not in costs:
            costs[n] = profile.compute_time(node_flops(n, info), 1)
        return costs[n]
    cuts = [j for j in range(m) if cuttable[j]]
    if len(cuts) >= UNITS:   # (the narrowest cut of each run of a few: UNITS units at most)
        g = -(-len(cuts) // (UNITS - 1))
        cuts = [min(cuts[i:i + g], key=lambda j: (int(cross[j]), -j))
                for i in range(0, len(cuts), g)]
    ends = cuts + [m - 1]
    chain = _chain(order, idx, ends, late_read, readers, nodes, key, position, free, nbytes,
                   seconds, prof)
    best, tables = None, _chain_tables(chain)
    scored: set = set()

    def score(spans, schedule) -> int | None:   # the step profile's peak of a plan, or None
        nonlocal best
        spans = tuple(spans)
        if not spans or spans in scored:
            return None
        scored.add(spans)
        got = _segments_for(order, idx, spans, late_set, readers, nodes, key, position,
                            last_use, free, nbytes, seconds, prof)
        if got is None:
            return None
        peak, t = int(got[0].max()), got[1]
        rank = (peak > budget, t if peak <= budget else peak)
        if best is None or rank < best[0]:   # (a tie keeps the one scored first)
            best = (rank, got, schedule)
        return peak

    def spans_of(stretches) -> list:
        return [(ends[u - 1] + 1 if u else 0, ends[v]) for u, v, again in stretches if again]
    chosen: dict = {}

    def plan_for(choose, target: int):   # (memoised: the sweep may ask for one again)
        if (choose, target) not in chosen:
            chosen[choose, target] = choose(chain, target, tables)
        return chosen[choose, target]
    for schedule, choose in (("uniform", _best_uniform), ("dp", _dp)):
        target, tried = budget, set()
        for _ in range(TRIES):   # (the chain's model against the step profile's: corrected)
            stretches = plan_for(choose, target)
            if stretches is None or stretches in tried:
                break
            tried.add(stretches)
            peak = score(spans_of(stretches), schedule)
            if peak is None or peak <= budget:
                break
            target -= peak - max(budget, int(_chain_cost(chain, stretches, tables)[0]))
    # the model's errors either way: plans chosen for targets from its lowest peak up to its
    # peak with nothing recomputed, each scored on the step profile too
    lowest = plan_for(_dp, budget)   # (where nothing fits the budget: the lowest peak)
    if lowest is not None and _chain_cost(chain, lowest, tables)[0] <= budget:
        lowest = plan_for(_dp, 0)
    lo = int(_chain_cost(chain, lowest, tables)[0]) if lowest else budget
    hi = int(_chain_cost(chain, [(0, chain.units - 1, False)], tables)[0])
    for target in np.linspace(min(lo, budget), max(hi, budget), SWEEP)[:-1]:
        for schedule, choose in (("uniform", _best_uniform), ("dp", _dp)):
            stretches = plan_for(choose, int(target))
            if stretches is not None:
                score(spans_of(stretches), schedule)
    # stretches of about equal bytes of the values read late (uniform too), cut at the first
    # cuttable point after each share: from two stretches to one per possible cut
    for count in sorted({int(round(x)) for x in np.geomspace(2, n_cuts + 1, BYTE_SIZES)}):
        for last in (False, True):
            score(_equal_bytes(made, cuttable, total / count, last), "uniform")
    if best is None or int(best[1][0].max()) >= int(prof.max()):
        return None
    est, t, names, touched = best[1]
    prof[:] = est
    out.time += t
    count = max(seg for _, seg in names)
    for v, seg in names:   # (bytes: those the segment frees, of the values read late)
        own = key.get(v) is v and v in late_set
        out.values.append(SpilledValue(v.name, int(model.nbytes(v)) if own else 0, RECOMPUTE,
                                       v.node.op.name, seg, count, best[2]))
    return touched


def _equal_bytes(made, cuttable, size: float, last: bool) -> list:
    """Stretches ((first, last) indices into the forward producers) ending at the first
    cuttable point after about `size` bytes of late-read values were made since the last
    end; `last`: the stretch after the last end is recomputed too."""
    m = len(made)
    spans, lo, acc = [], 0, 0
    for j in range(m):
        acc += int(made[j])
        if acc >= size and cuttable[j]:
            spans.append((lo, j))
            lo, acc = j + 1, 0
    if last and lo < m:
        spans.append((lo, m - 1))
    return spans


@dataclass
class Chain:
    """A forward chain cut into K units (the producers between two candidate cuts), as the
    segment schedules are chosen on it. A plan is a list of stretches (u, v, again): units u
    to v, consecutive and covering 0 .. K-1, recomputed (again) or kept. On the step profile
    before any segment:

    - `fwd[w]`, `bwd[w]`: the highest bytes over unit w's forward steps and over its gradient
      steps (from its segment's copies on, where they would go, to the next earlier unit's);
      `reading`, `middle`: over the steps between the last forward unit and the last unit's
      gradient, up to the last early reader there of a value in `values` and after it;
    - `at[w]`: the bytes where the copies of a segment ending at unit w go; `interior[w]`:
      the most bytes the copies of unit w's producers hold at once that are made and read
      among them (pre-activations); `seconds[w]`: the time of rerunning its producers;
    - `values`: (bytes, made, chain, early) per value the gradient reads late: the unit of its
      producer, the last unit of the chain reading it (a value read past the end of its
      stretch is that stretch's checkpoint, kept), the unit of its last reader before the
      gradient (K: one after the forward units, such as a stack of every step's output).

    The model (what _chain_cost computes and _dp minimises): a recomputed stretch's values
    (made in it, not read past its end) are off the device from after their last early
    reader to its copies. In the forward, unit w then holds fwd[w] less the values of its
    own stretch whose last early reader is an earlier unit, and the values of earlier
    recomputed stretches whose last early reader is in their stretch (the others counted
    as there until the middle: an upper bound); the steps after the forward units hold
    `reading` less the values of the recomputed stretches whose last early reader is in their
    stretch, then `middle` less all values of the recomputed stretches; unit w's gradient
    steps hold bwd[w] less the values of the recomputed stretches before; a recomputed
    stretch's copies hold at[v] + its units' largest interior less the values of the
    recomputed stretches before it. The peak is the most of these; the added time the
    recomputed units' seconds. (A kept stretch is the last one: one kept between recomputed
    ones would hold their checkpoints' neighbours, which the model does not follow.)"""
    fwd: np.ndarray
    bwd: np.ndarray
    at: np.ndarray
    interior: np.ndarray
    seconds: np.ndarray
    values: list
    reading: int
    middle: int

    @property
    def units(self) -> int:
        return len(self.fwd)


def _chain(order, idx, ends, late_read, readers, nodes, key, position, free, nbytes, seconds,
           prof) -> Chain:
    """The Chain of the forward producers `order` cut after each index in `ends`."""
    K = len(ends)
    unit = np.searchsorted(np.array(ends), np.arange(len(order)))   # order index -> unit
    start = [position[order[ends[w - 1] + 1]] if w else 0 for w in range(K)]
    stop = start[1:] + [position[order[-1]] + 1]   # (forward steps of each unit: [start, stop))

    def unit_at(p: int) -> int:   # (the unit whose forward steps hold schedule step p; K after)
        return K if p >= stop[-1] else int(np.searchsorted(stop, p, side="right"))
    values, reads, first_late = [], [], np.full(K, len(prof), dtype=np.int64)
    for v in late_read:
        k = key[v]
        if k is not v or free(k) or v.node not in idx:
            continue
        made = int(unit[idx[v.node]])
        chain = max([int(unit[idx[nodes[i]]]) for i in readers.get(v, ())
                     if nodes[i] in idx] + [made])
        rs = readers[v]
        at = split_readers(position[v.node], rs)
        early = max(rs[at - 1] if at else position[v.node], position[v.node])
        values.append((nbytes(v), made, chain, max(unit_at(early), chain)))
        reads.append(early)
    for j, n in enumerate(order):   # (where the copies of a stretch ending at unit w go)
        for v in n.outputs:
            grads = [i for i in readers.get(v, ()) if nodes[i].is_gradient]
            if grads:   # (a stretch copies v where it ends at its last chain reader's unit)
                w = max([int(unit[idx[nodes[i]]]) for i in readers[v] if nodes[i] in idx] +
                        [int(unit[j])])
                first_late[w] = min(first_late[w], grads[0])
    # (gradient steps of unit w: [back[w], back[w - 1]); none for a unit copying nothing)
    back = np.minimum.accumulate(first_late)
    back = np.minimum(np.maximum(back, stop[-1]), len(prof) - 1)
    upper = np.concatenate([[len(prof)], back[:-1]])

    def most(lo, hi) -> int:
        return int(prof[lo:hi].max()) if hi > lo else 0
    fwd = np.array([most(start[w], stop[w]) for w in range(K)], dtype=np.int64)
    bwd = np.array([most(back[w], upper[w]) for w in range(K)], dtype=np.int64)
    late = set(late_read)
    interior = np.zeros(K, dtype=np.int64)
    t = np.zeros(K)
    for w in range(K):
        lo = ends[w - 1] + 1 if w else 0
        part = order[lo:ends[w] + 1]
        inside = set(part)
        last: dict = {}
        for j, n in enumerate(part):
            for x in n.inputs:
                if x.node in inside:
                    last[x] = j
        live = top = 0
        for j, n in enumerate(part):
            t[w] += seconds(n)
            for v in n.outputs:
                if key.get(v) is v and v not in late and v in last:
                    live += nbytes(v)
            top = max(top, live)
            for x in set(n.inputs):
                if last.get(x) == j and key.get(x) is x and x not in late:
                    live -= nbytes(x)
        interior[w] = top
    split = min(max([e + 1 for e in reads if e >= stop[-1]] + [stop[-1]]), int(back[-1]))
    return Chain(fwd, bwd, prof[back].astype(np.int64), interior, t, values,
                 most(stop[-1], split), most(split, int(back[-1])))


def _chain_tables(chain: Chain):
    """Per stretch (u, v): the bytes its values free in the forward after it (Ff) and in the
    middle and the gradient steps after it (Fb); its most forward bytes recomputed
    (less its own values as they go) and kept; its most gradient-step bytes recomputed (the
    copies too) and kept; its seconds."""
    K = chain.units
    by_early = np.zeros((K + 2, K + 2))
    by_chain = np.zeros((K + 2, K + 2))
    for b, made, chain_u, early in chain.values:
        by_early[made, early] += b
        by_chain[made, chain_u] += b
    # F[u][v]: values made at u or later and last read at v or earlier
    Ff = np.cumsum(np.cumsum(by_early[::-1], axis=0)[::-1], axis=1)
    Fb = np.cumsum(np.cumsum(by_chain[::-1], axis=0)[::-1], axis=1)
    fwd_again = np.full((K, K), -np.inf)
    fwd_kept = np.full((K, K), -np.inf)
    bwd_again = np.full((K, K), -np.inf)
    bwd_kept = np.full((K, K), -np.inf)
    for u in range(K):
        a = k = g = -np.inf
        inner = 0
        for v in range(u, K):
            a = max(a, chain.fwd[v] - (Ff[u, v - 1] if v > u else 0.0))
            k = max(k, chain.fwd[v])
            g = max(g, chain.bwd[v])
            inner = max(inner, chain.interior[v])
            fwd_again[u, v], fwd_kept[u, v] = a, k
            bwd_kept[u, v] = g
            bwd_again[u, v] = max(g, chain.at[v] + inner)
    t = np.concatenate([[0.0], np.cumsum(chain.seconds)])
    return Ff, Fb, fwd_again, fwd_kept, bwd_again, bwd_kept, t


def _chain_cost(chain: Chain, stretches, tables=None) -> tuple:
    """(peak, added seconds) of a plan on the chain (Chain's model)."""
    Ff, Fb, fwd_again, fwd_kept, bwd_again, bwd_kept, t = tables or _chain_tables(chain)
    lf = lb = 0.0
    peak, secs = -np.inf, 0.0
    for u, v, again in stretches:
        f, g = (fwd_again, bwd_again) if again else (fwd_kept, bwd_kept)
        peak = max(peak, f[u, v] - lf, g[u, v] - lb)
        if again:
            lf += Ff[u, v]
            lb += Fb[u, v]
            secs += t[v + 1] - t[u]
    return max(peak, chain.reading - lf, chain.middle - lb), secs


def _dp(chain: Chain, budget: int, tables=None):
    """The stretches of the least added time whose peak (Chain's model) fits `budget`, or,
    where none fits, those of the lowest peak (the least time among them); None where no
    stretch is recomputed then. A dynamic programme over the cut positions (Gruslys et al.
    2016; Chen et al. 2016 with cuts anywhere): for each unit v, the plans of units 0 .. v
    that fit so far, kept as a Pareto front of (time, bytes freed for the forward after,
    bytes freed for the gradient steps after)."""
    tables = tables or _chain_tables(chain)
    found = _dp_fit(chain, tables, budget)
    if found is None:   # (the lowest peak: the smallest budget that fits, to a byte)
        lo, hi = 0, int(max(chain.fwd.max(), chain.bwd.max(), chain.reading, chain.middle,
                            (chain.at + chain.interior).max()))
        found = _dp_fit(chain, tables, hi)
        lo = max(lo, int(_chain_cost(chain, [(0, chain.units - 1, True)], tables)[0]) // 4)
        while hi - lo > max(1, hi // 10000):
            mid = (lo + hi) // 2
            got = _dp_fit(chain, tables, mid)
            if got is None:
                lo = mid
            else:
                hi, found = mid, got
    if found is None or not any(again for _, _, again in found):
        return None
    return found


FRONT = 256   # plans a unit keeps on its Pareto front at most (spread over their times)


def _dp_fit(chain: Chain, tables, budget: int):
    """_dp for a budget that must fit: the stretches, or None where nothing fits."""
    Ff, Fb, fwd_again, fwd_kept, bwd_again, bwd_kept, t = tables
    K = chain.units
    # the plans of units 0 .. u-1 (row u): seconds, forward and gradient bytes freed; where
    # each came from (the row and entry before, its last stretch recomputed or kept)
    S = np.full((K + 1, FRONT), np.inf)
    LF = np.zeros((K + 1, FRONT))
    LB = np.zeros((K + 1, FRONT))
    S[0, 0] = 0.0
    came = np.zeros((K + 1, FRONT, 3), dtype=np.int64)
    for v in range(K):
        u = np.arange(v + 1)[:, None]
        s, lf, lb = S[:v + 1], LF[:v + 1], LB[:v + 1]
        live = np.isfinite(s)
        kept = live & (fwd_kept[:v + 1, v][:, None] - lf <= budget) & \
            (bwd_kept[:v + 1, v][:, None] - lb <= budget) & (v == K - 1)   # (the last only)
        again = live & (fwd_again[:v + 1, v][:, None] - lf <= budget) & \
            (bwd_again[:v + 1, v][:, None] - lb <= budget)
        ku, kj = np.nonzero(kept)
        au, aj = np.nonzero(again)
        cs = np.concatenate([s[ku, kj], s[au, aj] + (t[v + 1] - t[au])])
        if not len(cs):
            continue
        cf = np.concatenate([lf[ku, kj], lf[au, aj] + Ff[au, v]])
        cb = np.concatenate([lb[ku, kj], lb[au, aj] + Fb[au, v]])
        keep = _pareto(cs, cf, cb)
        n = len(keep)
        S[v + 1, :n], LF[v + 1, :n], LB[v + 1, :n] = cs[keep], cf[keep], cb[keep]
        cu = np.concatenate([ku, au])[keep]
        cj = np.concatenate([kj, aj])[keep]
        came[v + 1, :n] = np.stack([cu, cj, keep >= len(ku)], axis=1)
    done = np.isfinite(S[K]) & (chain.middle - LB[K] <= budget) & \
        (chain.reading - LF[K] <= budget)
    if not done.any():
        return None
    j = int(np.argmin(np.where(done, S[K], np.inf)))
    out, at = [], K
    while at:
        u, i, again = (int(x) for x in came[at, j])
        out.append((u, at - 1, bool(again)))
        at, j = u, i
    return tuple(reversed(out))


def _pareto(S, LF, LB) -> np.ndarray:
    """Indices of the plans no other beats in time, forward bytes freed and gradient bytes
    freed; FRONT of them at most (the fastest, the slowest and others evenly between)."""
    order = np.lexsort((-LB, -LF, S))
    S, LF, LB = S[order], LF[order], LB[order]
    left = np.ones(len(S), bool)
    out = []
    while left.any():
        i = int(np.argmax(left))
        out.append(i)
        left &= ~((LF <= LF[i]) & (LB <= LB[i]))
    if len(out) > FRONT:
        out = [out[int(round(x))] for x in np.linspace(0, len(out) - 1, FRONT)]
    return order[np.array(out)]


def _best_uniform(chain: Chain, budget: int, tables=None):
    """Stretches of n units each (n from 1 to K), the last few kept or none: the one of the
    least added time that fits `budget` (Chain's model), else the lowest peak; None where
    none recomputes anything."""
    tables = tables or _chain_tables(chain)
    K = chain.units
    best = None
    for n in range(1, K + 1):
        parts = [(u, min(u + n, K) - 1) for u in range(0, K, n)]
        for kept in range(len(parts)):   # (the last `kept` stretches are kept, as one)
            rec = parts[:len(parts) - kept]
            plan = [(u, v, True) for u, v in rec]
            if kept:
                plan.append((parts[len(rec)][0], K - 1, False))
            peak, secs = _chain_cost(chain, plan, tables)
            rank = (peak > budget, secs if peak <= budget else peak)
            if best is None or rank < best[0]:
                best = (rank, tuple(plan))
    return None if best is None else best[1]


def _segments_for(order, idx, spans, late_set, readers, nodes, key, position, last_use, free,
                  nbytes, seconds, prof):
    """(step profile, added seconds, [(value, segment number)], values touched) with the
    stretches `spans` ((first, last) indices into `order`) recomputed as segments; None where
    that names nothing."""
    delta = np.zeros(len(prof) + 1, dtype=np.int64)
    names, touched, t = [], set(), 0.0
    number = 0
    held: dict = {}   # constant -> the latest copies reading it past its last reader
    for lo, hi in spans:
        inside = set(order[lo:hi + 1])
        # the checkpoint: values made here and read past the cut (kept)
        kept = {v for n in inside for v in n.outputs
                if any(nodes[i] in idx and idx[nodes[i]] > hi for i in readers.get(v, ()))}
        seg, stack = set(), [n for n in order[lo:hi + 1]
                             if any(v in late_set and v not in kept for v in n.outputs)]
        while stack:
            n = stack.pop()
            if n in seg or n not in inside or any(v in kept for v in n.outputs):
                continue
            seg.add(n)
            stack.extend(x.node for x in n.inputs if x not in kept)
        if not seg:
            continue
        values = [v for n in seg for v in n.outputs if readers.get(v)]
        for part in segments_of(values):
            number += 1
            t += _one_segment(part, readers, nodes, key, position, last_use, free, nbytes,
                              seconds, delta, names, touched, number, held)
    if not names:
        return None
    for k, at in held.items():   # (a constant every segment reads, such as a weight: held
        delta[last_use[k] + 1] += nbytes(k)   # once, not once per segment)
        delta[at + 1] -= nbytes(k)
    return prof + np.cumsum(delta)[:len(prof)], t, names, touched


def _one_segment(part, readers, nodes, key, position, last_use, free, nbytes, seconds,
                 delta, names, touched, number, held) -> float:
    """Profile change (into `delta`) and added seconds of recomputing the nodes `part` (one
    segment, as passes/spill_values.py places it); the constants it reads after their last
    reader go into `held` (constant -> the latest step reading it again), for the caller to
    count once."""
    part.sort(key=position.__getitem__)
    inside = set(part)
    reads = [i for n in part for v in n.outputs for i in readers.get(v, ())]
    at = late_start([position[n] for n in part], reads,
                    [i for i in reads if nodes[i].is_gradient])
    if at is None:
        return 0.0
    seen, interior_live, interior_peak = set(), 0, 0
    last_inside: dict = {}
    for n in part:
        for x in n.inputs:
            last_inside[x] = position[n]
    for n in part:
        for v in n.outputs:
            touched.add(v)
            if readers.get(v):
                names.append((v, number))
            k = key.get(v)
            if k is not v:
                continue
            b = nbytes(v)
            early = [i for i in readers.get(v, ()) if i < at]
            if last_use.get(k, -1) >= at:   # (read late: gone between its early readers and at)
                stop = max(early + [position[n]])
                delta[stop + 1] -= b
                delta[at] += b
            else:                           # (interior: made and read within the copies)
                interior_live += b
                interior_peak = max(interior_peak, interior_live)
        for x in n.inputs:
            touched.add(x)
            if x.node in inside:
                if last_inside.get(x) == position[n] and key.get(x) is x and \
                        last_use.get(x, -1) < at:
                    interior_live -= nbytes(x)
                continue
            k = key.get(x)
            if k is None or free(k) or k in seen:
                continue
            seen.add(k)
            if last_use.get(k, -1) >= at:
                continue
            if k.node.op.name == "constant":   # (read again at `at`: held longer, a constant
                held[k] = max(held.get(k, at), at)   # once, to the last copies reading it)
            else:
                delta[last_use[k] + 1] += nbytes(k)
                delta[at + 1] -= nbytes(k)
    delta[at] += interior_peak
    delta[at + 1] -= interior_peak
    return sum(seconds(n) for n in part)
