"""The saved-tensor planner: a pure function from a compiled schedule, the fed shapes and a
device-memory budget to a MemoryPlan.

For every forward loop that saves per-step residuals for a backward loop, each residual is kept
on the device, offloaded to host memory (and prefetched back), or recomputed from carried-state
checkpoints taken every k steps. Per loop, every assignment is costed (device bytes, and extra
time from the device profile: transfer bandwidth, FLOPs and kernel count of the replayed part
of the body) and only the Pareto-optimal ones are kept. Then, starting from the fastest choice,
the planner moves whichever loop to a leaner option buys the most predicted peak per second
(the peak comes from a liveness simulation of the whole run, memory/simulate.py) until the
predicted peak fits the budget. `swap_memory=True` loops are always offloaded.

Offloaded stacks take host memory: options whose stacks exceed `host_budget` are dropped and
moves that would overflow it are skipped. Where the search then stops over budget (one loop's
offloading took the room another needed), it searches again with the host room halved, down to
none, among options slower and larger than others but lighter on the host. Recomputation uses
uniform checkpoints (the interval minimising checkpoints plus one replayed segment) or, where
that is leaner, a binomial schedule (memory/checkpoints.py) with a number of stored states
chosen like any other option, by bytes against predicted time. A plan that cannot fit records
the peak it got down to (min_budget).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..ops.loop import host_chain
from .accounting import fmt_bytes
from .checkpoints import BinomialEvery
from .costs import CPU_PROFILE, DeviceProfile, offload_time, recompute_time
from .liveness import Schedule
from .loops import DEVICE, HOST, RECOMPUTE, loop_layout
from .plan import LoopPlan, MemoryPlan, SavedTensor, _differs, _origin_of
from .shapes import infer_shapes
from .simulate import LoopChoice, PeakModel, binomial_schedule, host_output_peak

HOST_RETRIES = 5         # searches again with the host room halved, then none (a dead end)
MAX_GROUPS = 8           # residuals are decided in at most this many groups (3**8 assignments)


@dataclass
class _Option:
    bytes: int
    time: float
    choice: LoopChoice
    host: int = 0                # bytes the option keeps in host memory (offloaded stacks)


class _Loop:
    """One forward loop's candidates."""

    def __init__(self, node, layout, n, movable, pinned, forced, options, backward):
        self.node, self.layout, self.n = node, layout, n
        self.movable, self.pinned, self.forced = movable, pinned, forced
        self.options, self.backward = options, backward
        self.host_overflow, self.host_dropped = False, 0   # (set by _options)
        self.costed: list = []                              # (set by _options)


STRATEGIES = {"auto": (DEVICE, HOST, RECOMPUTE), "offload": (DEVICE, HOST),
              "recompute": (DEVICE, RECOMPUTE)}


def make_plan(schedule: Schedule, feed_types: dict, budget: int | None = None,
              profile: DeviceProfile = CPU_PROFILE, device: str = "cpu",
              passes_off: tuple = (), strategy: str = "auto",
              host_budget: int | None = None, checkpoints: str = "auto") -> MemoryPlan:
    """Plan where the saved tensors of `schedule` live for fed values of `feed_types`
    (Value -> shape or TensorType, or the array where its values may count: sequence lengths,
    whose maximum is the loops' number of steps) so that the predicted peak fits `budget`
    bytes and the offloaded stacks fit `host_budget` bytes of host memory (None: unlimited).
    `strategy`: "auto" (keep / offload / recompute by cost), or only "offload" or "recompute"
    (besides keeping). `checkpoints`: the schedules recomputation may use: "auto" (uniform
    intervals, or a binomial schedule where that is leaner), "uniform" or "binomial"."""
    if checkpoints not in ("auto", "uniform", "binomial"):
        raise ValueError(f"checkpoints must be 'auto', 'uniform' or 'binomial', got "
                         f"{checkpoints!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"memory strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}")
    info = infer_shapes(schedule.graph, schedule.nodes, feed_types)
    model = PeakModel(info, profile)
    # (host arrays of loop outputs the run holds and the caller does not keep: any choice's)
    outputs_host = host_output_peak(schedule, lambda v: info.nbytes(v) or 0)
    loops, notes = _candidates(schedule, info, model, profile, STRATEGIES[strategy],
                               host_budget, checkpoints, outputs_host)
    sel = {lp.node: 0 for lp in loops}

    def choices(s):
        return {lp.node: lp.options[s[lp.node]].choice for lp in loops}

    def total_time(s):
        return sum(lp.options[s[lp.node]].time for lp in loops)

    def host_of(s):
        return outputs_host + sum(lp.options[s[lp.node]].host for lp in loops)

    peaks: dict = {}   # the options chosen, per loop -> predicted peak (a move tried again)
    shared = _shared_peaks(schedule, feed_types, profile)

    def peak_of(s):
        k = tuple(id(lp.options[s[lp.node]]) for lp in loops)   # (options outlive the lists)
        if k not in peaks:
            peaks[k] = _peak(model, schedule, choices(s), shared)
        return peaks[k]

    peak = peak_of(sel)
    dropped = sum(lp.host_dropped for lp in loops)   # options the host budget ruled out
    if budget is not None:
        sel, peak, held = _search(loops, sel, budget, host_budget, peak_of, total_time, host_of)
        leanest = {lp.node: len(lp.options) - 1 for lp in loops}   # (fewest bytes, any host)
        if peak > budget and held and host_budget is not None and peak_of(leanest) <= budget:
            # A step offloading one loop can take the host room a later loop needed, where
            # recomputing the first would have fitted: search again, the host room shrunk.
            # Options slower and larger than another but lighter on the host join the search.
            # (Not where even each loop's leanest option, whatever its host bytes, is over.)
            chosen = {lp.node: lp.options[sel[lp.node]] for lp in loops}
            for lp in loops:
                lp.options = _pareto(lp.costed, by_host=True)
            sel = {lp.node: next(i for i, o in enumerate(lp.options) if o is chosen[lp.node])
                   for lp in loops}
            room = host_budget - outputs_host
            for cap in [outputs_host + room // 2 ** k for k in range(1, HOST_RETRIES)] + \
                    [outputs_host]:
                s2, p2, _ = _search(loops, {lp.node: 0 for lp in loops}, budget, cap,
                                    peak_of, total_time, host_of)
                if p2 < peak:
                    sel, peak = s2, p2
                if peak <= budget:
                    break
        if peak > budget and (held or dropped):
            notes.append(f"no placement fits the budget within host_budget="
                         f"{fmt_bytes(host_budget)}: offloading more saved tensors would "
                         "pass it; raise host_budget=, or let the plan recompute "
                         "(memory_strategy='auto' or 'recompute')")
        elif peak > budget:
            notes.append("no placement fits the budget: the rest of the peak is not saved "
                         "tensors (stacked outputs, their gradients, inputs, weights)")
    floor = peak if budget is not None and peak > budget else None
    # prefetch further ahead wherever the budget allows it
    for lp in loops:
        opt = lp.options[sel[lp.node]]
        if HOST in opt.choice.placements.values():
            deep = _deepest(lp, opt, model, schedule, choices(sel), budget)
            if deep is not None:
                lp.options.append(deep)
                sel[lp.node] = len(lp.options) - 1
    final = choices(sel)
    watch: list = [] if floor is not None else None
    peak = model.run(schedule, final, watch=watch)[0] if watch is not None else peak_of(sel)
    if watch:
        notes.append("at the predicted peak the device holds: " + _largest(watch, peak))
    keep_all = _peak(model, schedule, {}, shared)
    if model.unknown:
        unknown = _unknown(model)
        notes.append(f"{ops_unknown(unknown)} (counted as 0 bytes, so no budget can be "
                     f"checked), {unknown[0]} among them: a "
                     "while_loop bounded by maximum_iterations= has a known number of steps")
    plans = [_loop_plan(lp, lp.options[sel[lp.node]], info) for lp in loops]
    chunk, per_step = _chunks(schedule, model)
    host_fed, fed_time = _host_fed(schedule, model, profile)
    fed_time += _host_output_time(schedule, model, profile)
    return MemoryPlan(device=device, budget=budget, loops=plans, predicted_peak=peak,
                      keep_all_peak=keep_all, extra_time=total_time(sel) + fed_time,
                      host_fed=host_fed, host_outputs=_host_outputs(schedule, model),
                      passes_off=tuple(passes_off), notes=notes, host_budget=host_budget,
                      host_bytes=host_of(sel), min_budget=floor, chunk_steps=chunk,
                      chunk_bytes_per_step=per_step,
                      unknown=_unknown(model))


def _search(loops, sel, budget, host_cap, peak_of, total_time, host_of):
    """Greedy descent from `sel`: move whichever loop to a later (slower) option buys the most
    predicted peak per second, a move that fits the budget at once by the least time, until
    the peak fits `budget` or no move lowers it. Moves that would take the host bytes past
    `host_cap` (None: unlimited) are skipped. Returns (selection, peak, moves skipped for
    the host cap at the end)."""
    peak, held = peak_of(sel), 0
    while peak > budget:
        best = None
        held = 0     # moves the host cap rules out
        moves = []   # (extra time, position, selection): the cheapest first
        for lp in loops:
            for idx in range(sel[lp.node] + 1, len(lp.options)):
                trial = dict(sel)
                trial[lp.node] = idx
                if host_cap is not None and host_of(trial) > max(host_cap, host_of(sel)):
                    held += 1
                    continue
                moves.append((total_time(trial) - total_time(sel), len(moves), trial))
        moves.sort(key=lambda m: m[:2])
        for dt, pos, trial in moves:
            if best is not None and best[0][0] == 0:
                break   # (a move that fits was found: every later one costs as much or more)
            p = peak_of(trial)
            if p >= peak:
                continue
            key = (0, dt, pos) if p <= budget else (1, -(peak - p) / max(dt, 1e-9), pos)
            if best is None or key < best[0]:
                best = (key, trial, p)
        if best is None:
            break
        sel, peak = best[1], best[2]
    return sel, peak, held


def _shared_peaks(schedule: Schedule, feed_types: dict, profile) -> dict | None:
    """The peaks simulated for `schedule` at these fed shapes on this device profile, by the
    loops' choices, kept with the schedule: the plans made for one program at other budgets
    (the floor confirmed, the streamed and chunked variants) try many of the same choices.
    None where the shapes or the profile cannot be a key."""
    try:
        key = (schedule.graph.version, profile,
               tuple((v, ("value", t.shape, t.dtype.str, t.tobytes())
                      if isinstance(t, np.ndarray) else
                      tuple(t) if isinstance(t, (tuple, list)) else t)
                     for v, t in feed_types.items()))
        hash(key)
    except TypeError:
        return None
    return schedule.peaks.setdefault(key, {})


def _peak(model: PeakModel, schedule: Schedule, choices: dict, shared: dict | None) -> int:
    """The predicted peak of `schedule` with these loop choices, from `shared` where it was
    simulated before. A run that met a value of unknown size is not shared (the model must
    see it to say so)."""
    if shared is None:
        return model.run(schedule, choices)[0]
    key = tuple((node, tuple(sorted(c.placements.items())), c.checkpoint_every,
                 c.prefetch_depth, c.slots) for node, c in choices.items())
    peak = shared.get(key)
    if peak is None:
        peak = model.run(schedule, choices)[0]
        if not model.unknown:
            shared[key] = peak
    return peak


def ops_unknown(unknown) -> str:
    """'N ops make values whose sizes are unknown before running': the count the plan's note,
    the run's error and the CLI all give (one per op, as plan.unknown lists them)."""
    n = len(unknown)
    return f"{n} op{'s' if n != 1 else ''} make{'' if n != 1 else 's'} values whose sizes " \
           f"are unknown before running"


def _unknown(model: PeakModel) -> tuple:
    """describe() of the nodes making values of unknown size, the user's own (forward) first."""
    nodes = {v.node for v in model.unknown}
    return tuple(n.describe() for n in sorted(nodes, key=lambda n: (bool(n.is_gradient),
                                                                    n.describe())))


def _host_fed(schedule: Schedule, model: PeakModel, profile: DeviceProfile) -> tuple:
    """((name, bytes) of each fed sequence left on the host, the time its rows take to reach
    the device beyond the one copy a fed value costs anyway: once more per loop reading it)."""
    fed, seconds = [], 0.0
    for i in sorted(schedule.host_inputs()):
        v = schedule.inputs[i]
        b = model.nbytes(v)
        fed.append((v.node.name, b))
        rows = [n.outputs[0] for n in schedule.nodes if n.op.name == "host_rows"
                and n.inputs[0] is v]
        readers = sum(1 for n in schedule.nodes if n.op.subgraphs()
                      for x in rows if x in n.inputs)
        seconds += max(0, readers - 1) * profile.transfer_time(0, b)
    return tuple(fed), seconds


def _host_output_time(schedule: Schedule, model: PeakModel, profile: DeviceProfile) -> float:
    """The copies loop outputs written to host memory cost beyond a fetch's: an output no
    fetch receives goes to the host, and each loop reading one (host_rows) brings it back."""
    host, fetched = schedule.host_stacks(), set(schedule.outputs)
    readers: dict = {}
    for n in schedule.nodes:
        for x in n.inputs:
            readers.setdefault(x, []).append(n)
    seconds = 0.0
    for node in schedule.nodes:
        for i in getattr(node.op, "host_outputs", ()):
            v = node.op.out_ports().split(node.outputs)["output"][i]
            if v in host and not any(u in fetched for u in host_chain(v, readers)[0]):
                seconds += profile.transfer_time(model.info.nbytes(v) or 0, 0)
        if node.op.name == "host_rows" and node.inputs[0] in host:
            loops = sum(1 for n in readers.get(node.outputs[0], []) if n.op.subgraphs())
            seconds += loops * profile.transfer_time(0, model.info.nbytes(node.outputs[0]) or 0)
    return seconds


def _host_outputs(schedule: Schedule, model: PeakModel) -> tuple:
    """(name, bytes) of each loop output written to host memory (passes/host_outputs.py),
    named by the user's op of the value fetched from it (the plan's tables' names), or of the
    last value made from it on the way to the loop reading it."""
    host, fetched = schedule.host_stacks(), set(schedule.outputs)
    after = {n.inputs[0]: n.outputs[0] for n in schedule.nodes
             if n.outputs and n.outputs[0] in host and n.inputs and n.inputs[0] in host}
    out = []
    for node in schedule.nodes:
        marked = getattr(node.op, "host_outputs", ())
        outs = node.op.out_ports().split(node.outputs)["output"] if marked else []
        for i in marked:
            v = shown = outs[i]
            if v not in schedule.used_values():
                continue
            while shown not in fetched and shown in after:   # (to the value fetched)
                shown = after[shown]
            out.append((_origin_of(shown).label, model.nbytes(v)))
    return tuple(out)


def _chunks(schedule: Schedule, model: PeakModel) -> tuple:
    """(chunk steps, the most bytes of chunk buffers per step any chunked loop takes)."""
    chunk, per_step = None, 0
    for node in schedule.nodes:
        c = getattr(node.op, "chunk_steps", None)
        n = model.info.steps.get(node)
        if not c or not n:
            continue
        layout = loop_layout(node, schedule.needed_outputs(node))
        block, gathers = model.chunk_costs(node, layout)[:2]
        chunk = c if chunk is None else max(chunk, c)
        per_step = max(per_step, (block + gathers) // max(1, min(c, n)))
    return chunk, per_step


def _largest(watch: list, peak: int, count: int = 5) -> str:
    """The largest things live at the peak, in words (what a smaller plan would have to
    move: tensors other than saved ones are not moved by any plan)."""
    def what(k) -> str:
        if hasattr(k, "node") and hasattr(k, "type"):    # a Value
            kind = "fed" if k.node.op.name == "placeholder" else \
                "variable" if k.node.op.name == "variable" else \
                "stacked by loop" if k.node.op.subgraphs() else k.node.op.name
            user = _origin_of(k).label   # (the user's op, as the plan's tables name it)
            compiled = f" [{k.name}]" if _differs(k.name, user) else ""
            return f"'{user}' ({kind}){compiled}"
        if hasattr(k, "op"):                             # a loop node, while it runs
            return f"loop '{k.name}' while it runs (its stacks, state and one step)"
        if isinstance(k, tuple) and k and k[0] == "ckpt":
            return f"the checkpoints of loop '{k[1].name}'"
        return str(k[0] if isinstance(k, tuple) and k else k)
    items = sorted(watch, key=lambda kb: -kb[1])
    shown = [f"{what(k)} {fmt_bytes(b)}" for k, b in items[:count]]
    rest = sum(b for _, b in items[count:])
    if rest:
        shown.append(f"{len(items) - count} more {fmt_bytes(rest)}")
    return ", ".join(shown) + f" (of {fmt_bytes(peak)})"


def _deepest(lp, opt, model, schedule, choices, budget):
    want = lp.preferred_depth
    if opt.choice.prefetch_depth >= want:
        return None
    for depth in range(want, opt.choice.prefetch_depth, -1):
        c = LoopChoice(dict(opt.choice.placements), opt.choice.checkpoint_every, depth)
        trial = dict(choices)
        trial[lp.node] = c
        if budget is None or model.run(schedule, trial)[0] <= budget:
            return _Option(opt.bytes, lp.time_of(c), c, opt.host)
    return None


# --- candidates ---------------------------------------------------------------------------------
def _candidates(schedule: Schedule, info, model: PeakModel, profile: DeviceProfile, kinds,
                host_budget=None, checkpoints="auto", outputs_host: int = 0):
    """The loops whose saved tensors the plan places, each with its options; an option
    offloading more than the host budget less `outputs_host` (the loop outputs any plan holds
    on the host) is dropped, as it could never be chosen (a greedy step to it would end in a
    dead end where a leaner option fits)."""
    room = None if host_budget is None else max(0, host_budget - outputs_host)
    readers: dict = {}
    for node in schedule.nodes:
        for v in node.inputs:
            readers.setdefault(v, []).append(node)
    fetched = set(schedule.outputs)
    loops, notes = [], []
    for node in schedule.nodes:
        if not node.op.subgraphs():
            continue
        layout = loop_layout(node, schedule.needed_outputs(node))
        if not layout.keep_res:
            continue
        n = info.steps.get(node)
        outs = node.op.out_ports().split(node.outputs)
        forced = "swap_memory=True" if getattr(node.op, "swap_memory", False) else ""
        movable, pinned, backward = [], {}, []
        for i in layout.keep_res:
            v = outs["residual"][i]
            rs = readers.get(v, [])
            for r in rs:
                if r.op.subgraphs() and r.name not in backward:
                    backward.append(r.name)
            outside = [r for r in rs if not (r.op.subgraphs() and _reads_as_sequence(r, v))]
            if v in fetched:
                pinned[i] = "fetched"
            elif outside:
                pinned[i] = f"read by {outside[0].op.name} '{outside[0].name}'"
            elif model.info.nbytes(layout.residual_value(i)) is None:
                pinned[i] = "size unknown before running"
            elif n is None and not forced:   # (swap_memory offloads row by row regardless)
                pinned[i] = "number of steps unknown before running"
            else:
                movable.append(i)
        lp = _Loop(node, layout, n, movable, pinned, forced, [], backward)
        _options(lp, schedule, model, profile, kinds, room, checkpoints)
        loops.append(lp)
        if lp.host_overflow:
            held = f", less {fmt_bytes(outputs_host)} of loop outputs held there" \
                if outputs_host else ""
            notes.append(f"{node.name}: its saved tensors do not fit the host budget of "
                         f"{fmt_bytes(host_budget)}{held} (swap_memory=True keeps them there "
                         "anyway)")
        if forced and pinned:
            notes.append(f"{node.name} has swap_memory=True but keeps "
                         f"{len(pinned)} saved tensors on the device: "
                         + "; ".join(f"{layout.residual_value(i).name}: {why}"
                                     for i, why in pinned.items()))
    return loops, notes


def _reads_as_sequence(loop_node, v) -> bool:
    return v in loop_node.op.in_ports().split(loop_node.inputs)["sequence"]


def _body_time(profile, body_nodes, info) -> float:
    flops = sum(node_flops(n, info) for n in body_nodes)
    return profile.compute_time(flops, len(body_nodes))


def node_flops(node, info) -> int:
    """`node.op.flops(node)` with the shapes of the fed values the plan is made for: a dim
    unknown before running (an unknown batch) counts its size, not 1."""
    return node.op.flops(_Shaped(node, info))


class _Shaped:
    """A node or a value seen through ShapeInfo: what op.flops reads (the inputs' and
    outputs' shapes) is concrete where the plan's shapes say; everything else is the node's."""

    def __init__(self, x, info, value: bool = False):
        self._x = x
        if value:
            self.type = info.type(x)
            self.shape = self.type.shape
        else:
            self.inputs = [_Shaped(v, info, True) for v in x.inputs]
            self.outputs = [_Shaped(v, info, True) for v in x.outputs]

    def __getattr__(self, name):
        return getattr(self._x, name)


def _options(lp: _Loop, schedule, model: PeakModel, profile: DeviceProfile, kinds,
             host_budget=None, recompute_schedules="auto") -> None:
    layout, n = lp.layout, lp.n or 0
    bps = {i: model.nbytes(layout.residual_value(i)) for i in layout.keep_res}
    _, carried = model.body_step(lp.node, layout, "step", tuple(layout.keep_res))
    t_fwd = _body_time(profile, layout.body.nodes, model.info)
    bwd_nodes = [r for name in lp.backward for r in schedule.nodes if r.name == name]
    t_bwd = sum(_body_time(profile, b.op.body.nodes, model.info) for b in bwd_nodes) \
        or 2 * t_fwd
    pi = int(getattr(lp.node.op, "parallel_iterations", 1) or 1)
    lp.preferred_depth = max(1, min(pi, 4 if profile.async_copies else 2))
    replay_cost: dict = {}

    def rec_time(rec: tuple, slots: int = 0) -> float:
        if rec not in replay_cost:
            sched = Schedule(layout.body, layout.replay_outputs(list(rec)), layout.body_inputs)
            flops = sum(node_flops(x, model.info) for x in sched.nodes)
            replay_cost[rec] = recompute_time(profile, flops, len(sched.nodes), n)
        if slots:   # the tape steps (one per step) and the advances between stored states
            return replay_cost[rec] * (1 + binomial_steps(n, slots) / max(n, 1))
        return replay_cost[rec]

    def time_of(c: LoopChoice) -> float:
        host = sum(bps[i] for i, p in c.placements.items() if p == HOST)
        rec = tuple(i for i in layout.keep_res if c.placements.get(i) == RECOMPUTE)
        t = offload_time(profile, host, n, t_fwd, t_bwd, c.prefetch_depth) if host else 0.0
        return t + (rec_time(rec, c.slots) if rec else 0.0)

    lp.time_of = time_of
    groups = _groups(lp.movable)
    kinds = (HOST,) if lp.forced else kinds
    raw = []
    for assign in itertools.product(kinds, repeat=len(groups)):
        placements = {i: DEVICE for i in lp.pinned}
        for g, kind in zip(groups, assign):
            for i in g:
                placements[i] = kind
        rec_b = sum(bps[i] for i, p in placements.items() if p == RECOMPUTE)
        host_b = sum(bps[i] for i, p in placements.items() if p == HOST)
        dev_b = sum(bps[i] for i, p in placements.items() if p == DEVICE) * n
        k, rec_mem = _best_interval(n, carried, rec_b) if rec_b else (0, 0)
        schedules = [(k, 0, rec_mem)]
        lean = all(placements[i] != DEVICE for i in lp.movable)   # (where Revolve pays)
        if rec_b and recompute_schedules in ("auto", "binomial") and \
                (lean or recompute_schedules == "binomial"):
            schedules += [(1, s, mem) for s, mem in _binomial_options(n, carried, rec_b, rec_mem)]
            if recompute_schedules == "binomial" and len(schedules) > 1:
                schedules = schedules[1:]
        for k, slots, rec_mem in schedules:
            for depth in sorted({lp.preferred_depth, 1}) if host_b else (1,):
                c = LoopChoice(placements, k, depth, slots)
                raw.append(_Option(dev_b + depth * host_b + rec_mem, time_of(c), c, host_b * n))
    fit = [o for o in raw if host_budget is None or o.host <= host_budget]
    lp.host_overflow = not fit
    lp.host_dropped = len(raw) - len(fit) if fit else 0   # (options the host budget rules out)
    lp.options = _pareto(fit or raw)
    lp.costed = fit or raw   # (a search the host budget held back looks at them again)


def _groups(movable: list) -> list:
    if len(movable) <= MAX_GROUPS:
        return [[i] for i in movable]
    size = math.ceil(len(movable) / MAX_GROUPS)
    return [movable[j:j + size] for j in range(0, len(movable), size)]


def binomial_steps(n: int, slots: int) -> int:
    """Extra body steps of a binomial schedule over n steps with `slots` states (advances;
    the n tape steps that regenerate the residuals are counted with the replay)."""
    return binomial_schedule(n, slots)["advances"]


def _binomial_options(n: int, carried: int, rec_bytes: int, uniform_mem: int) -> list:
    """(slots, bytes) of the binomial schedules worth trying: leaner than the best uniform
    interval (else uniform, which replays each step once, is as lean and faster)."""
    out, s = [], 1
    while s < n:
        b = binomial_schedule(n, s)
        mem = b["peak"] * carried + rec_bytes
        if mem < uniform_mem:
            out.append((s, mem))
        s *= 2
    return out


def _best_interval(n: int, carried: int, rec_bytes: int) -> tuple:
    """Checkpoint interval k minimising ceil(n/k) * carried + k * rec_bytes (checkpoints plus
    one replayed segment): about sqrt(n * carried / rec_bytes)."""
    if n <= 0:
        return 1, 0
    k0 = max(1, int(math.sqrt(n * max(carried, 1) / max(rec_bytes, 1))))
    best = None
    for k in {max(1, k0 - 1), k0, k0 + 1, min(n, k0 + 2)}:
        k = min(k, n)
        mem = (math.ceil(n / k) - 1) * carried + k * rec_bytes
        if best is None or mem < best[1]:
            best = (k, mem)
    return best


def _pareto(options: list, by_host: bool = False) -> list:
    """Options no other beats on both bytes and time (`by_host`: on bytes, time and host
    bytes), fastest first."""
    options = sorted(options, key=lambda o: (o.time, o.bytes, o.host))
    out: list = []
    for o in options:
        if by_host:
            if not any(k.bytes <= o.bytes and k.host <= o.host for k in out):
                out.append(o)
        elif not out or o.bytes < out[-1].bytes:
            out.append(o)
    return out


def _loop_plan(lp: _Loop, opt: _Option, info) -> LoopPlan:
    outs = lp.node.op.out_ports().split(lp.node.outputs)
    saved = []
    for i in lp.layout.keep_res:
        place = opt.choice.placements.get(i, DEVICE)
        why = lp.pinned.get(i, "")
        if not why and lp.forced:
            why = lp.forced
        body_v = lp.layout.residual_value(i)
        saved.append(SavedTensor(body_v.name, i, outs["residual"][i], info.nbytes(body_v), lp.n,
                                 place, why))
    every = BinomialEvery(opt.choice.slots) if opt.choice.slots else opt.choice.checkpoint_every
    extra = binomial_steps(lp.n or 0, opt.choice.slots) if opt.choice.slots else 0
    return LoopPlan(lp.node, lp.n, saved, every, opt.choice.prefetch_depth, lp.backward,
                    opt.time, lp.forced, checkpoint_slots=opt.choice.slots,
                    replayed_steps=(lp.n or 0) + extra if any(
                        s.placement == RECOMPUTE for s in saved) else 0)


def loop_choices(plan: MemoryPlan) -> dict:
    """The loops' placements of `plan` as the peak model takes them (loop node ->
    LoopChoice): the inverse of what make_plan records in its LoopPlans."""
    out = {}
    for lp in plan.loops:
        if any(s.placement != DEVICE for s in lp.saved):
            slots = lp.checkpoint_slots
            every = BinomialEvery(slots) if slots else lp.checkpoint_every
            out[lp.node] = LoopChoice(lp.placements, int(every), lp.prefetch_depth, slots)
    return out
