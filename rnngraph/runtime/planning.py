"""The Session's side of memory planning: when to plan, which compiled program to plan for,
and how a run is measured. The plan itself is made by memory/planner.py (a pure function).

Planning is on when the Session has a `memory_budget` or a loop asks for `swap_memory=True`.
`Session(..., memory_strategy="offload" | "recompute")` restricts the planner to one way of
leaving the device (default "auto": chosen per tensor by the cost model). Offloaded stacks
must fit the host budget (`Session(host_budget=...)`, else the device's host capacity, else
the RAM available when the run is planned).
Plans depend on the fed shapes (the number of steps, the batch) and are cached per program and
shape signature; where fed sequence lengths make the loops' trips shorter than the shapes bound
them (every length below T), the chosen plan's peak is predicted again for those numbers of
steps (FedShapes, _trips, _predicted_for): the search stays per shape.
If the budget cannot be met with the compiler passes that materialise whole-sequence stacks
([T, ...] projections and gradient stacks, which are not saved tensors and cannot be
offloaded), or those passes make an op outside the backward loop read a swap_memory loop's
residuals (so they could not go to the host), the program is compiled again
without them and planned again; the plan says which passes it turned off. Where that lean plan
fits a budget, the program is compiled once more with hoist_sequence, sink_accumulators and
sink_outputs working in chunks of C steps inside the loops (passes/pipeline.py's chunk_steps),
C sized to the budget's room: a first C of CHUNK_PROBE steps, then as many more as the room
its plan leaves holds (at most CHUNK_MAX), or fewer where the first does not fit (a
`chunk_steps` in the Session's passes: that C only); the chunked plan is used where it fits
(its `chunk_steps` says so), else the lean one. Where none of those fits, the program is
compiled again with the opt-in `stream_outputs` pass (passes/stream_outputs.py: a loop's
output stack streamed through its per-step consumers, so no [T, ...] output or output gradient
is made; with it `sink_gather`, passes/sink_gather.py: an embedding lookup the loops read is
gathered per step inside them) and planned the same way (whole-sequence passes, then lean
and chunked); its plan is
used where it fits (`plan.passes_on` says so). Where still none fits, the large intermediates
live across the peak (a static_rnn's per-step activations its gradient reads) are offloaded or
recomputed between their early and late readers (memory/spill.py chooses them on the best
program so far; it is compiled again with passes/spill_values.py, `plan.spilled` says which).
A program a plan picks other than the
session's own is compiled through the Session like any other, so it moves to the accelerated
backend once hot; the plan is then made again for the new program.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from ..errors import OutOfMemoryError, user_location
from ..memory.accounting import check_byte_count, fmt_bytes
from ..memory.plan import RunReport
from ..memory.planner import STRATEGIES, loop_choices, make_plan, ops_unknown
from ..memory.shapes import infer_shapes
from ..memory.simulate import PeakModel, spill_host_peak
from ..memory.spill import choose_spills
from ..passes.pipeline import CHUNK_KEY, PASSES, chunk_steps_of, enabled_passes
from .simulated import NO_BUDGET_HINT, budget_hint

STREAM = "stream_outputs"   # an opt-in pass (passes/stream_outputs.py): asked for only to fit
HOST = "host_sequences"     # an opt-in pass (passes/host_sequences.py): asked for with it
SINK = "sink_gather"        # an opt-in pass (passes/sink_gather.py): asked for with them
HOST_OUT = "host_outputs"   # an opt-in pass (passes/host_outputs.py): asked for with them

# passes that trade T-proportional device memory for speed
STACK_PASSES = ("hoist_sequence", "sink_accumulators", "sink_outputs")
CHUNK_PROBE, CHUNK_MIN, CHUNK_MAX = 16, 4, 64   # steps per chunk: first try, fewest, most


def _passes_without(passes, names):
    on = enabled_passes(passes)
    dropped = tuple(n for n in names if n in on)
    if not dropped:
        return None, ()
    return {n: n in on and n not in dropped for n in _all_passes()}, dropped


def _all_passes():
    return list(PASSES)


def check_budget(budget, what: str = "memory_budget"):
    """A budget in bytes (any integral number type, or a float of at least one byte), or None."""
    return check_byte_count(budget, what)


def check_budgets_fit(device, memory_budget, host_budget) -> None:
    """ValueError where a budget is larger than the device's capacity: no plan made for it
    could be trusted to fit."""
    for what, budget, cap, cap_name in (
            ("memory_budget", memory_budget, getattr(device, "capacity", None), "capacity"),
            ("host_budget", host_budget, getattr(device, "host_capacity", None),
             "host_capacity")):
        if budget is not None and cap is not None and budget > cap:
            raise ValueError(f"{what}={budget} bytes ({fmt_bytes(budget)}) is more than the "
                             f"device's {cap_name} of {cap} bytes ({fmt_bytes(cap)}), at "
                             f"{user_location()}: give a budget at most the {cap_name}")


def host_budget_of(sess):
    """Host bytes offloaded tensors may take: the Session's host_budget, else the device's host
    capacity, else the RAM available now (None where the system does not say)."""
    if getattr(sess, "host_budget", None) is not None:
        return sess.host_budget
    cap = getattr(sess.device, "host_capacity", None)
    if cap is not None:
        return cap
    return available_ram()


def available_ram(meminfo: str = "/proc/meminfo"):
    """Bytes of RAM a program may take now without swapping, by the operating system: Linux's
    MemAvailable (free pages and the page cache it can reclaim), else the free pages (None
    where the system says neither)."""
    try:
        with open(meminfo, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "MemAvailable":
                    number, _, unit = rest.strip().partition(" ")
                    if unit == "kB" and number.isdigit():
                        return int(number) * 1024
                    break
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_strategy(strategy):
    if not isinstance(strategy, str):
        raise TypeError(f"memory_strategy must be a string, one of {sorted(STRATEGIES)}, got "
                        f"{type(strategy).__name__} {strategy!r} (at {user_location()})")
    if strategy not in STRATEGIES:
        raise ValueError(f"memory_strategy must be one of {sorted(STRATEGIES)}, got "
                         f"{strategy!r} (at {user_location()})")
    return strategy


def wants_tracking(sess, report: bool) -> bool:
    if not isinstance(report, (bool, np.bool_)):   # (report="yes": a TypeError, not True)
        raise TypeError(f"report must be True or False, got {type(report).__name__} "
                        f"{report!r} (at {user_location()})")
    dev = sess.device
    return bool(report or dev.always_track or
                (sess.memory_budget is not None and dev.budget_tracks))


def prepare(sess, flat, fed, shapes, report: bool = False, always_plan: bool = False,
            enforce: bool = False):
    """(program, plan or None) for a run with fed values of these shapes. `enforce`: raise
    OutOfMemoryError if no plan meets the budget (except on a simulated device: there the
    device's capacity is the judge, and it reports exactly where a run runs out)."""
    prog, plan = _prepare(sess, flat, fed, shapes, report, always_plan)
    if enforce and plan is not None and not plan.fits:
        if not getattr(sess.device, "judges_capacity", False):
            if plan.unknown:
                raise OutOfMemoryError(
                    f"memory_budget={plan.budget} bytes cannot be checked for "
                    f"{_fetch_names(flat)}: {ops_unknown(plan.unknown)}, "
                    f"{plan.unknown[0]} among them. Give a while_loop "
                    "maximum_iterations= (its number of steps is then known), or run "
                    "without a memory_budget.")
            if not plan.host_fits:
                raise OutOfMemoryError(
                    f"host_budget={plan.host_budget} bytes ({fmt_bytes(plan.host_budget)}) "
                    f"cannot hold the {fmt_bytes(plan.host_bytes)} of saved tensors that "
                    f"swap_memory=True loops offload. Raise the host budget, or drop "
                    "swap_memory=True and give the Session a memory_budget= instead.")
            longest = " (for the longest run these shapes allow: a plan serves every batch " \
                "of them)" if FEWER_STEPS in plan.notes else ""
            floor = "" if plan.min_budget is None else \
                f"; the smallest budget a plan was found to fit is {plan.min_budget} bytes " \
                f"({fmt_bytes(plan.min_budget)}){longest}"
            if plan.min_budget is None and no_floor_reason(plan):
                floor = f"; {no_floor_reason(plan)}"
            held = getattr(sess, "host_budget", None) is not None and any(
                n.startswith("no placement fits the budget within host_budget")
                for n in plan.notes)   # (the floor is at this host budget; a larger may lower
            # it, but alone it need not make this device budget fit)
            host = "" if not held else \
                f" (at host_budget={plan.host_budget} bytes, {fmt_bytes(plan.host_budget)}: " \
                "a larger host budget may lower that)"
            by = plan.bytes_by_placement()
            head = f"memory_budget={plan.budget} bytes ({fmt_bytes(plan.budget)}) cannot be " \
                f"met on {plan.device} for {_fetch_names(flat)}: no plan found fits it{floor}"
            if plan.min_budget is not None:   # (what to do first; the plan for this budget
                # is not the floor's, and its larger peak read as a contradiction)
                raise OutOfMemoryError(
                    f"{head}. Raise memory_budget to at least {plan.min_budget}{host} "
                    f"(print sess.memory_plan(fetches, feed) to see what takes the room).")
            raise OutOfMemoryError(
                f"{head}. The plan made for it (print sess.memory_plan(fetches, feed) to see "
                f"what takes the room) still needs {plan.predicted_peak} bytes "
                f"({fmt_bytes(plan.predicted_peak)}) at its peak, with "
                f"{fmt_bytes(by['host'])} of saved tensors on the host and "
                f"{fmt_bytes(by['recompute'])} recomputed. Raise the budget"
                + (", or the host_budget." if held else "."))
    return prog, plan


def _fetch_names(flat) -> str:
    """How a planner error names the run: its first fetches and the user's line."""
    names = [getattr(f, "name", str(f)) for f in flat]
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"the run of {', '.join(repr(n) for n in names[:3])}{more} at {user_location()}"


def _prepare(sess, flat, fed, shapes, report, always_plan):
    """The plan is searched for the fed shapes alone (every batch of those shapes runs it:
    no search per batch), and its peak predicted for the numbers of steps the fed lengths
    give the loops, where they are fewer (_predicted_for)."""
    prog, plan = _prepare_shapes(sess, flat, fed, FedShapes(shapes), report, always_plan)
    if plan is None:
        return prog, plan
    steps = _steps_key(prog, shapes)
    return prog, (_predicted_for(sess, prog, plan, shapes, steps) if steps else plan)


FEWER_STEPS = ("the placements are chosen for the longest run these shapes allow (every batch "
               "of them runs this plan), and the peak is predicted for this batch's sequence "
               "lengths, which run fewer steps")


def _predicted_for(sess, prog, plan, shapes, steps):
    """`plan` with its peak predicted for the loops' numbers of steps `steps` (fewer than the
    shapes bound them by): the same placements, simulated once per plan and steps (a peak of
    the run it makes; the placements were chosen for the longest the shapes allow, so they
    fit what fits that)."""
    memo = prog.__dict__.setdefault("_predicted_for", {})
    got = memo.get((id(plan), steps))
    if got is None or got[0] is not plan:
        info = infer_shapes(prog.schedule.graph, prog.schedule.nodes, _feed_types(prog, shapes))
        peak = PeakModel(info, sess.device.profile).run(prog.schedule, loop_choices(plan))[0]
        notes = list(plan.notes) + ([FEWER_STEPS] if plan.budget is not None else [])
        fits = plan.budget is None or peak <= plan.budget
        got = memo[(id(plan), steps)] = (plan, dataclasses.replace(
            plan, predicted_peak=peak, notes=notes, aliases=dict(plan.aliases),
            min_budget=None if fits else plan.min_budget))   # (the floor: for the shapes)
        for k in list(memo)[:max(0, len(memo) - MAX_STEPS)]:
            del memo[k]
    return got[1]


def _prepare_shapes(sess, flat, fed, shapes, report, always_plan):
    tracked = wants_tracking(sess, report)
    prog = sess.compile(flat, fed, tracked=tracked)
    budget = sess.memory_budget
    if not (always_plan or budget is not None or prog.has_swap):
        return prog, None
    cache = _plans_of(sess, flat, fed, tracked, prog)
    # (the host budget as given, else the device's host capacity: a capacity set since plans
    # anew; never the RAM available, which moves between reads)
    host = sess.host_budget if sess.host_budget is not None else \
        getattr(sess.device, "host_capacity", None)
    key = (tuple(tuple(s) for s in shapes), budget, sess.memory_strategy, host)
    if key in cache:
        best = cache[key]
        # (another program: its runs count too, tiered compiles)
        again = prog if best[2] is None else sess.compile(flat, fed, tracked=tracked,
                                                          passes=best[2])
        if again is not best[0]:   # it moved to the accelerated backend: plan it anew
            plan = _plan(sess, again, fed, shapes, best[1].passes_off, best[1].passes_on,
                         best[1].spilled, best[1].summed)
            plan.min_budget = best[1].min_budget
            # (why stream_outputs did not help, why no budget helps: still so)
            plan.notes.extend(n for n in best[1].notes if n.startswith("stream_outputs: ")
                              and n not in plan.notes)
            if no_floor_reason(best[1]):
                plan.notes.append(no_floor_reason(best[1]))
            best = cache[key] = (again, plan, best[2])
        return best[:2]
    plan = _plan(sess, prog, fed, shapes, ())
    best = (prog, plan, None)
    if not plan.fits or _swap_misses(plan):
        passes, dropped = _passes_without(sess.passes, STACK_PASSES)
        if passes is not None:
            lean = sess.compile(flat, fed, tracked=tracked, passes=passes)
            lean_plan = _plan(sess, lean, fed, shapes, dropped)
            if _rank(lean_plan) < _rank(plan):
                best = (lean, lean_plan, passes)
            if budget is not None and lean_plan.fits and not _swap_misses(lean_plan):
                best = _chunked(sess, flat, fed, shapes, tracked, lean_plan) or best
            floors = [p.min_budget for p in (plan, lean_plan) if p.min_budget is not None]
            if not best[1].fits and floors:
                best[1].min_budget = min(floors)
    refused = []
    if budget is not None and not best[1].fits and _may_stream(sess.passes):
        streamed, floor, refused = _streamed(sess, flat, fed, shapes, tracked)
        if streamed is not None:
            best = streamed
        elif floor is not None and (best[1].min_budget is None or floor < best[1].min_budget):
            best[1].min_budget = floor
    if budget is not None and not best[1].fits:
        spilled, floor, lean = _spilled(sess, flat, fed, shapes, tracked, best)
        if spilled is not None:
            best = spilled
        elif lean is not None and lean[1].predicted_peak < best[1].predicted_peak:
            lean[1].min_budget = min(floor, best[1].min_budget or floor)
            best = lean   # (over budget still, but the leanest program found)
        elif floor is not None and (best[1].min_budget is None or floor < best[1].min_budget):
            best[1].min_budget = floor
    if refused and not best[1].fits:   # (what kept the stream_outputs pass from helping)
        best[1].notes.extend(f"stream_outputs: {why}" for why in refused)
    cache[key] = best
    if budget is not None and not best[1].fits and best[1].min_budget is not None and \
            not isinstance(sess, _AtBudget):
        if best[1].unknown:   # (no budget can be checked: no plan fits any)
            best[1].min_budget = None
        else:
            best[1].min_budget, why = _confirmed_floor(sess, flat, fed, shapes, report,
                                                       best[1].min_budget)
            if why:
                best[1].notes.append(why)
    return best[:2]


def _plans_of(sess, flat, fed, tracked, prog) -> dict:
    """The plans cached for the run of `flat` from `fed`: the dict of the program first
    compiled for it, so a program that moves to the accelerated backend once hot (a new
    Program) finds them, and only the plan for its own schedule is made again."""
    owner = getattr(sess, "_sess", sess)   # (an _AtBudget: the session it stands for)
    runs = owner.__dict__.setdefault("_memory_plans_by_run", {})
    run = (tuple(id(v) for v in flat), tuple(id(v) for v in fed), bool(tracked))
    known = runs.get(run)
    if known is not None and known[0] == prog.version and known[1] is not prog.memory_plans:
        if not prog.memory_plans:
            prog.memory_plans = known[1]
    if known is None or known[0] != prog.version:
        runs[run] = (prog.version, prog.memory_plans)
    return prog.memory_plans


class FedShapes(list):
    """The fed values' shapes (tuples, in `fed` order) with `values`: per fed value, the array
    where the plan may read its values (small integer arrays: sequence lengths), else None.
    A loop's trip min(max(lengths), T) is then its number of steps, where shapes alone bound
    it by T: the plan's peak is predicted for it (_predicted_for); the search itself sees the
    shapes alone."""

    def __init__(self, shapes, values=()):
        super().__init__(tuple(int(d) for d in s) for s in shapes)
        values = tuple(values)
        self.values = tuple(_readable(a) for a in values) if values else (None,) * len(self)


MAX_READ = 1 << 16    # elements of a fed integer array the plan reads the values of, at most
MAX_STEPS = 64        # peaks kept per program for other numbers of steps fed values give


def _readable(a):
    """`a` where the plan may read its values: an integer array of rank 0 or 1, not too big."""
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu" and a.ndim <= 1 and a.size <= MAX_READ:
        return a
    return None


def fed_shapes(shapes, values=()) -> FedShapes:
    """The shapes of a run's fed values, with the values the plan may read (see FedShapes)."""
    return FedShapes(shapes, values)


def _trips(prog, shapes) -> dict:
    """{the trip input of each top-level loop: its number of steps (a 0-d array)} where the fed
    values the plan may read (FedShapes.values) give it and it is less than what the shapes
    alone bound it by (min(max(lengths), T) with every length below T). Worked out on the
    trips' own inputs, a few nodes; {} where there is nothing to read."""
    values = getattr(shapes, "values", None)
    if not values or all(a is None for a in values):
        return {}
    sched = prog.schedule
    trips = [n.op.in_ports().split(n.inputs)["trip"][0] for n in sched.nodes
             if n.op.name == "loop" and n.op.has_trip]
    if not trips:
        return {}
    fed = set(prog.inputs)
    seen, stack = set(), [v for v in trips if v not in fed]
    while stack:
        n = stack.pop().node
        if n not in seen:
            seen.add(n)
            stack.extend(v for v in n.inputs if v not in fed)
    nodes = [n for n in sched.nodes if n in seen]
    plain = {prog.inputs[i]: tuple(s) for i, s in enumerate(shapes)}
    given = infer_shapes(sched.graph, nodes, {**plain, **{
        prog.inputs[i]: a for i, a in enumerate(values) if a is not None}})
    bound = infer_shapes(sched.graph, nodes, plain)
    out = {}
    for v in trips:
        n, most = given.bound(v), bound.bound(v)
        if n is not None and (most is None or n < most) and v in given.values:
            out[v] = np.asarray(n, v.dtype)
    return out


def _steps_key(prog, shapes) -> tuple:
    """What the fed values change of the plan for the shapes alone: the numbers of steps of the
    loops whose trips they make shorter (in schedule order), () where none. Runs whose lengths
    have the same longest row share a prediction; other lengths that change it get their own
    (_predicted_for)."""
    trips = _trips(prog, shapes)
    if not trips:
        return ()
    order = [n.op.in_ports().split(n.inputs)["trip"][0] for n in prog.schedule.nodes
             if n.op.name == "loop" and n.op.has_trip]
    return tuple((i, int(trips[v])) for i, v in enumerate(order) if v in trips)


def _feed_types(prog, shapes) -> dict:
    """The planner's feed: each fed value's shape, and the number of steps the fed values give
    the loops' trips (see _trips): the plan reads nothing else of them."""
    feed = {prog.inputs[i]: tuple(s) for i, s in enumerate(shapes)}
    feed.update(_trips(prog, shapes))
    return feed


class _AtBudget:
    """A session seen by the planner at another budget (to confirm a floor); the session
    itself is not changed, so a run in another thread keeps its own budget."""

    def __init__(self, sess, budget: int):
        self._sess, self.memory_budget = sess, budget

    def __getattr__(self, name):
        return getattr(self._sess, name)


NO_FLOOR = "no device budget was found at which a plan fits"   # (starts the plan's note)


def _confirmed_floor(sess, flat, fed, shapes, report, floor: int):
    """(the smallest budget found, raised until the plan made at it fits, or None where no plan
    made at the budgets tried fits; None or a note saying why no device budget helps): each
    program variant reports its own floor, and at that budget the planner may pick another (a
    few tries). A budget is `min_budget` only where a plan made at it was found to fit."""
    for _ in range(3):
        plan = _prepare(_AtBudget(sess, floor), flat, fed, shapes, report, True)[1]
        if plan.fits:
            return floor, None
        if not plan.host_fits:
            return None, (
                f"{NO_FLOOR}: the host budget is too small (the plan made at {floor} bytes "
                f"offloads {fmt_bytes(plan.host_bytes)} of saved tensors to the host, more "
                f"than host_budget={plan.host_budget} bytes, {fmt_bytes(plan.host_budget)}). "
                "Raise host_budget, or drop swap_memory=True (its loops always offload)")
        if plan.unknown:
            return None, f"{NO_FLOOR}: sizes unknown before running cannot be checked"
        floor = max(floor + 1, plan.predicted_peak)
    return None, (f"{NO_FLOOR} (tried up to {floor} bytes, {fmt_bytes(floor)}; each plan "
                  "made at a budget needed more)")


def no_floor_reason(plan) -> str | None:
    """The plan's note saying why no device budget helps (None where it has none)."""
    return next((n for n in plan.notes if n.startswith(NO_FLOOR)), None)


def _streaming(passes) -> tuple:
    """The opt-in streaming passes the session's passes allow the planner to turn on."""
    if passes is True:
        return (STREAM, HOST, SINK, HOST_OUT)
    if not isinstance(passes, dict):
        return ()
    return tuple(p for p in (STREAM, HOST, SINK, HOST_OUT) if passes.get(p, True) is not False)


def _may_stream(passes) -> bool:
    """The session's passes allow the planner to turn stream_outputs or host_sequences on."""
    return bool(_streaming(passes))


def _streamed(sess, flat, fed, shapes, tracked):
    """((program, plan, passes) or None, smallest budget found, why stream_outputs left
    output stacks whole) with the loops' output stacks
    streamed through their consumers (passes/stream_outputs.py) and the fed sequences only
    loops read left on the host (passes/host_sequences.py), where that plan fits: the
    whole-sequence passes first, else in chunks, else switched off."""
    on = set(enabled_passes(sess.passes))
    streaming = _streaming(sess.passes)
    passes = {name: name in on for name in _all_passes()}
    passes.update(dict.fromkeys(streaming, True))
    asked = chunk_steps_of(sess.passes)
    if asked:
        passes[CHUNK_KEY] = asked
    prog = sess.compile(flat, fed, tracked=tracked, passes=passes)
    refused = list(getattr(prog, "pass_notes", ()))   # (why outputs stayed whole)
    plan = _plan(sess, prog, fed, shapes, (), streaming)
    if plan.fits and not _swap_misses(plan):
        return (prog, plan, passes), None, refused
    floors = [plan.min_budget]
    lean = dict(passes, **{name: False for name in STACK_PASSES})
    lean.pop(CHUNK_KEY, None)
    dropped = tuple(n for n in STACK_PASSES if n in on)
    if dropped:
        lean_prog = sess.compile(flat, fed, tracked=tracked, passes=lean)
        lean_plan = _plan(sess, lean_prog, fed, shapes, dropped, streaming)
        floors.append(lean_plan.min_budget)
        if lean_plan.fits and not _swap_misses(lean_plan):
            chunked = _chunked(sess, flat, fed, shapes, tracked, lean_plan,
                               dict.fromkeys(streaming, True))
            return chunked or (lean_prog, lean_plan, lean), None, refused
    floors = [f for f in floors if f is not None]
    return None, (min(floors) if floors else None), refused


def _chunked(sess, flat, fed, shapes, tracked, lean_plan, extra=None):
    """(program, plan, passes) with the sequence passes in chunks sized to the budget, or None
    where no chunked plan fits (or there is nothing to chunk). `extra`: passes turned on too."""
    on = enabled_passes(sess.passes)
    if not any(name in on for name in STACK_PASSES):
        return None
    steps = max((lp.steps or 0 for lp in lean_plan.loops), default=0)
    budget = sess.memory_budget

    def attempt(c):
        passes = {name: name in on for name in _all_passes()}
        passes.update(extra or {})
        passes[CHUNK_KEY] = c
        prog = sess.compile(flat, fed, tracked=tracked, passes=passes)
        plan = _plan(sess, prog, fed, shapes, (), tuple(extra or ()))
        ok = plan.fits and plan.chunk_steps and not _swap_misses(plan)
        return (prog, plan, passes) if ok else None

    asked = chunk_steps_of(sess.passes)
    if asked:   # the session's own chunk size: that or nothing
        return attempt(asked)
    first = min(CHUNK_PROBE, steps) if steps else CHUNK_PROBE
    best = attempt(first)
    smaller = max(CHUNK_MIN, first // 4)
    if best is None:
        return attempt(smaller) if smaller < first else None
    if best[1].extra_time > lean_plan.extra_time * 1.05 + 1e-4 and smaller < first:
        # (a fit bought with recomputation or a shrunk host room: smaller chunks may be faster)
        alt = attempt(smaller)
        if alt is not None and alt[1].extra_time < best[1].extra_time:
            return alt
    plan = best[1]
    per_step = plan.chunk_bytes_per_step
    if per_step and plan.chunk_steps < (steps or CHUNK_MAX):
        room = (budget - plan.predicted_peak) // per_step
        c = plan.chunk_steps + room // 2      # (half the room: leave the residuals theirs)
        c = min(CHUNK_MAX, steps or CHUNK_MAX, 1 << max(0, c.bit_length() - 1))
        if c > plan.chunk_steps:
            more = attempt(c)
            if more is not None and more[1].extra_time <= plan.extra_time * 1.05 + 1e-4:
                best = more
    return best


def _spilled(sess, flat, fed, shapes, tracked, best, tries: int = 3):
    """((program, plan, passes) or None, smallest budget found, the leanest (program, plan,
    passes) tried or None) with the large intermediates of the best program so far moved off
    the device (memory/spill.py chooses them, the spill_values pass moves them), where that
    plan fits. Running sums alone are tried first. A choice whose plan still peaks over the
    budget (the step profile the choice is made on misses a loop's working set) is made again
    aiming that much lower, at most `tries` times."""
    prog, plan, passes = best
    config = sess.passes if passes is None else passes
    base = {name: name in enabled_passes(config) for name in _all_passes()}
    chunk = chunk_steps_of(config)
    if chunk:
        base[CHUNK_KEY] = chunk
    feed_types = _feed_types(prog, shapes)
    host = host_budget_of(sess)
    host_left = None if host is None else max(0, host - plan.host_bytes)
    budget = target = sess.memory_budget
    floor = lean = None
    for _ in range(tries):
        choice = choose_spills(prog.schedule, feed_types, target, sess.device.profile,
                               sess.memory_strategy, host_left, loop_choices(plan))
        if not choice.values and not choice.accumulate:
            break
        tried = [dict(base, accumulate=choice.accumulate)] if choice.accumulate and \
            choice.values else []   # (running sums alone may do: no copies then)
        tried.append(dict(base, spill=choice.host, recompute=choice.recompute,
                          accumulate=choice.accumulate))
        for cfg in tried:
            cfg = {k: v for k, v in cfg.items() if v != ()}
            new = sess.compile(flat, fed, tracked=tracked, passes=cfg)
            new_plan = _plan(sess, new, fed, shapes, plan.passes_off, plan.passes_on,
                             tuple(choice.values) if "spill" in cfg or "recompute" in cfg
                             else (), choice.accumulate)
            new_plan.extra_time += choice.time if new_plan.spilled else 0.0
            # (keeping everything on the device: no spill at all, the program it started from)
            new_plan.keep_all_peak = max(new_plan.keep_all_peak, plan.keep_all_peak)
            if new_plan.fits and not _swap_misses(new_plan):
                return (new, new_plan, cfg), None, None
            if new_plan.host_fits and (floor is None or new_plan.predicted_peak < floor):
                floor = new_plan.predicted_peak
                lean = (new, new_plan, cfg)
        if choice.estimate > target or new_plan.predicted_peak <= budget:
            break   # (nothing more to move, or what failed was not the device budget)
        # (lower it below what the chooser expected too: its step profile may have missed)
        target = min(target, choice.estimate) - (new_plan.predicted_peak - budget)
    return None, floor, lean


def _swap_misses(plan) -> int:
    """Saved tensors of swap_memory loops the plan could not put on the host."""
    return sum(1 for lp in plan.loops if lp.forced for s in lp.saved
               if s.placement != "host" and s.why != "fetched")


def _rank(plan):
    return (_swap_misses(plan), not plan.fits, plan.predicted_peak)


def _plan(sess, prog, fed, shapes, passes_off, passes_on=(), spilled=(), summed=()):
    feed_types = _feed_types(prog, shapes)
    dev = sess.device
    plan = make_plan(prog.schedule, feed_types, sess.memory_budget, dev.profile,
                     dev.describe(), passes_off, sess.memory_strategy, host_budget_of(sess))
    # (host_sequences is named where it left a fed value on the host: else it changed nothing)
    plan.passes_on = tuple(p for p in passes_on if (p != HOST or plan.host_fed)
                           and (p != SINK or _gathers_per_step(prog.schedule))
                           and (p != HOST_OUT or plan.host_outputs))
    plan.summed = tuple(summed)   # (add_n nodes the spill_values pass made running sums)
    if spilled:   # (values the spill_values pass moved: memory/spill.py's choice)
        plan.spilled = tuple(spilled)
        # (a to_host value: its input's bytes; a fed array left on the host is the caller's)
        sizes = {s.name: s.bytes for s in spilled if s.op != "placeholder"}
        plan.host_bytes += spill_host_peak(prog.schedule,
                                           lambda v: sizes.get(v.node.inputs[0].name, 0))
    vmap = prog.source_map
    for user_v, v in vmap.items():  # let the user's own Values ask the plan
        if v in plan.aliases:
            plan.aliases[user_v] = plan.aliases[v]
    return plan


def _gathers_per_step(schedule) -> bool:
    """Did sink_gather move a gather into a loop of this program (else it changed nothing)?"""
    return any(n.name.rsplit("/", 1)[-1].startswith(SINK) for node in schedule.nodes
               for b in node.op.subgraphs() for n in b.nodes)


def execute(sess, prog, plan, arrays) -> list:
    """Run `prog` on fed host `arrays`, following `plan`; returns host arrays. Measures when
    the program is tracked. Fed values the program leaves on the host stay there."""
    dev = sess.device
    host = prog.host_inputs
    arrays = [a if i in host else dev.asarray(a) for i, a in enumerate(arrays)]
    prog.ctx.plan = plan
    try:
        if not prog.tracked:
            outs = prog.run(arrays)
            return [dev.to_host(o) if o is not None else None for o in outs]
        moved = (dev.bytes_to_host, dev.bytes_to_device)
        device_fed = [a for i, a in enumerate(arrays) if i not in host]
        for a in device_fed:
            dev.retain(a, "a fed value")
        dev.reset_peak()
        t0 = time.perf_counter()
        try:
            outs = prog.run(arrays)
            dev.synchronize()
        except BaseException as exc:
            dev.reset_accounting()
            if isinstance(exc, OutOfMemoryError) and plan is not None and \
                    plan.budget is not None and str(exc).endswith(NO_BUDGET_HINT):
                # (the device does not know the session already has a budget)
                raise OutOfMemoryError(str(exc)[:-len(NO_BUDGET_HINT)] + budget_hint(plan)) \
                    from None
            raise
        seconds = time.perf_counter() - t0
        peak = dev.peak_bytes
        host = [dev.to_host(o) if o is not None else None for o in outs]
        for o in outs:
            dev.release(o)
        for a in device_fed:
            dev.release(a)
        sess.last_run_report = RunReport(
            dev.describe(), peak, dev.bytes_to_host - moved[0], dev.bytes_to_device - moved[1],
            seconds, plan.predicted_peak if plan is not None else None, sess.memory_budget)
        return host
    finally:
        prog.ctx.plan = None
        dev.drop_held()   # (host arrays the run wrote that are still alive are the caller's)
