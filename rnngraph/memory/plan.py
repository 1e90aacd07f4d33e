"""The memory plan: where each saved per-step tensor lives, and the predicted peak. Printable.

A plan is data (made by memory/planner.py, followed by runtime/loop_kernel.py):
  SavedTensor  one residual stack of a forward loop: bytes per step, steps, placement
               ("device": kept; "host": offloaded after each forward step and prefetched back
               ahead of the backward loop; "recompute": rerun from carried-state checkpoints)
  LoopPlan     one forward loop: its saved tensors, checkpoint interval, prefetch depth
  MemoryPlan   all loops, the budget, the predicted peak and extra time; `str()` is a table

Values are named as the user's graph names them (`Origin`): the user's op a saved tensor is the
output of, seen through the passes that renamed it (a fused kernel's outputs by the ops they
were, `Fused._origins`; nodes a pass made by the name of the node they stand for, before the
pass's own part: ".../Mul_2/fused", ".../AddN/summed"), its type per step and the user's line.
The compiled name stays on the object (`name`) and in brackets in the printed table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .accounting import fmt_bytes
from .loops import DEVICE, HOST, RECOMPUTE


# The parts passes add to the name of a node they make in place of another (passes/*.py:
# f"{node.name}/fused", n.name + "/summed", f"{name}/streamed/narrow", ...; a graph adds "_1"
# to a name taken twice): the user's op is the name before the first of them.
_PASS_PART = re.compile(
    r"(fused|joined|summed|batched|with_bias|folded|over_steps|after_loop|to_host|to_device|"
    r"contiguous|packed|packed_weight|packed_rows|host_rows|unsorted|shared|gathered|"
    r"streamed|streamed_rows|sink_gather|sink_gather_chunk|recompute|block_\d+|acc_\d+)"
    r"(_\d+)?")
# ... and parts a user's own name could end with too, taken off only at the end of a name
_PASS_TAIL = re.compile(r"(chunk|shape|acc)(_\d+)?")


def user_op_name(name: str) -> str:
    """The user's op a compiled node or value name stands for: "rnn/while/lstm_cell/Mul_2" for
    "rnn/while/lstm_cell/Mul_2/fused:5", "gradients/.../kernel_grad/AddN" for
    ".../kernel_grad/AddN/summed/joined". A value name the passes did not rename keeps its
    output index where it is not 0 ("rnn/while/lstm_cell/split:1")."""
    base, colon, port = name.rpartition(":")
    if not colon or not port.isdigit():
        base, port = name, "0"
    parts = base.split("/")
    cut = next((i for i in range(1, len(parts)) if _PASS_PART.fullmatch(parts[i])), len(parts))
    while cut > 1 and _PASS_TAIL.fullmatch(parts[cut - 1]):
        cut -= 1
    if cut < len(parts):
        return "/".join(parts[:cut])
    return base if port == "0" else f"{base}:{port}"


@dataclass(frozen=True)
class Origin:
    """A value of the plan in the user's terms."""
    name: str          # the user's op, as their graph names it: "rnn/while/lstm_cell/Sigmoid_1"
    op: str            # its kind: "sigmoid"
    line: str = ""     # the user's line that built it ("model.py:12"); "" where none is recorded
    step: str = ""     # "t-1": a loop's state, saved as it enters each step (made by `name` at
    #                    the step before, or the initial state at step 0); "t": row t of a
    #                    sequence `name` the loop reads a row of per step

    @property
    def label(self) -> str:
        """The name as the plan prints it: "rnn/while/lstm_cell/Add_1 (t-1)"."""
        return f"{self.name} ({self.step})" if self.step else self.name


def _origin_of(v, depth: int = 0) -> Origin:
    """Where compiled Value `v` comes from in the user's graph: through a fused kernel's
    record of the ops it fuses, a loop body's parameters (state, sequence rows, invariants:
    the value they stand for) and the names of the nodes passes make."""
    node = v.node
    op = node.op
    if depth < 8 and getattr(op, "name", "") == "fused" and hasattr(op, "exports"):
        ref = op.exports[v.index]
        if ref < op.n_inputs:                        # (an input passed through)
            return _origin_of(node.inputs[ref], depth + 1)
        j = ref - op.n_inputs
        name, line = op._origins[j] if j < len(op._origins) else (node.name, node.location)
        return Origin(*_user_op(name, op.instrs[j][0].name), line or node.location)
    params = getattr(node.graph, "params", None) or {}
    for role, vs in params.items():
        if v not in vs or depth >= 8:
            continue
        i = vs.index(v)
        body = node.graph
        results = body.results or {}
        if role == "carried" and i < len(results.get("carried", ())) and \
                results["carried"][i] is not v:
            o = _origin_of(results["carried"][i], depth + 1)
            return Origin(o.name, o.op, o.line, "t-1")
        outer = _outer_input(body, role, i)
        if outer is not None:
            o = _origin_of(outer, depth + 1)
            return Origin(o.name, o.op, o.line, "t" if role == "sequence" else o.step)
    if len(node.outputs) > 1:   # (output i of the user's op, ":0" too)
        name = user_op_name(v.name)
        return Origin(v.name if name == node.name else name, getattr(op, "name", "?"),
                      node.location)
    return Origin(*_user_op(node.name, getattr(op, "name", "?")), node.location)


_BLOCK = re.compile(r"(.+)/block_(\d+)(_\d+)?")


def _user_op(name: str, kind: str) -> tuple:
    """(the user's op, its kind) for a node of compiled name `name` running op `kind`: a column
    block is output i of the user's split ("rnn/while/gru_cell/Split/block_1" -> "Split:1",
    passes/fuse.py's _split_into_blocks)."""
    m = _BLOCK.fullmatch(name)
    if kind == "column_block" and m:
        return f"{user_op_name(m.group(1))}:{m.group(2)}", "split"
    return user_op_name(name), kind


def _outer_input(body, role: str, i: int):
    """The loop input that body parameter `role` i stands for (None where not found)."""
    parent = getattr(body, "parent", None)
    for n in getattr(parent, "nodes", ()):
        if getattr(n.op, "body", None) is body and hasattr(n.op, "in_ports"):
            vs = n.op.in_ports().split(n.inputs).get(role, [])
            return vs[i] if i < len(vs) else None
    return None


def _step_type(vtype, nbytes) -> str:
    """"float32 [4, 8]": a per-step type, an open dimension (rows left open) filled in from
    the planned bytes where it is the only one."""
    if vtype is None or not hasattr(vtype, "shape"):
        return "?"
    dims = [None if d is None or getattr(d, "value", 0) is None else int(d) for d in vtype.shape]
    unknown = [k for k, d in enumerate(dims) if d is None]
    known = 1
    for d in dims:
        known *= d or 1
    size = vtype.dtype.itemsize * known
    if len(unknown) == 1 and nbytes and size and nbytes % size == 0:
        dims[unknown[0]] = nbytes // size
    return f"{vtype.dtype.name} [{', '.join('?' if d is None else str(d) for d in dims)}]"


@dataclass
class SavedTensor:
    name: str                     # the body value saved per step as compiled (the passes' name),
    #                               e.g. "rnn/while/lstm_cell/Mul_2/fused:5"; `origin` is the user's
    index: int                    # its position among the loop's residuals
    value: object                 # the loop's stacked residual output (compiled graph)
    bytes_per_step: int | None
    steps: int | None
    placement: str                # DEVICE | HOST | RECOMPUTE
    why: str = ""                 # e.g. "swap_memory=True", "read outside a loop"

    _origin: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def total_bytes(self) -> int | None:
        if self.bytes_per_step is None or self.steps is None:
            return None
        return self.bytes_per_step * self.steps

    def _body_value(self):
        """The value the loop body saves per step (None where `value` is not a loop's)."""
        node = getattr(self.value, "node", None)
        op = getattr(node, "op", None)
        body = getattr(op, "body", None)
        if body is None or not hasattr(op, "out_ports"):
            return None
        res = (body.results or {}).get("residual", [])
        return res[self.index] if 0 <= self.index < len(res) else None

    @property
    def origin(self) -> Origin:
        """The user's op this tensor is the output of (a loop's state: at the step before)."""
        if self._origin is None:
            v = self._body_value()
            self._origin = _origin_of(v) if v is not None else \
                Origin(user_op_name(self.name), "?")
        return self._origin

    @property
    def user_name(self) -> str:
        """The name the printed plan gives it: "rnn/while/lstm_cell/Sigmoid_1"."""
        return self.origin.label

    @property
    def step_type(self) -> str:
        """Its dtype and shape per step: "float32 [32, 256]"."""
        v = self._body_value()
        return _step_type(getattr(v, "type", None), self.bytes_per_step)

    def describe(self) -> str:
        """One line: "sigmoid 'rnn/while/lstm_cell/Sigmoid_1', float32 [4, 8] per step (built at
        model.py:12; compiled as rnn/while/lstm_cell/Mul_2/fused:1): 12 steps, on the host"."""
        o = self.origin
        at = [f"built at {o.line}"] if o.line else []
        at += [f"compiled as {self.name}"] if _differs(self.name, o.name) else []
        state = {"t-1": ", as it enters each step (the step before's)",
                 "t": ", a row per step"}.get(o.step, "")
        return (f"{o.op} '{o.name}'{state}, {self.step_type} per step"
                f"{' (' + '; '.join(at) + ')' if at else ''}: "
                f"{self.steps if self.steps is not None else '?'} steps, {self.placement}")


@dataclass
class SpilledValue:
    """A large intermediate (not a loop's residual) the plan moves off the device between its
    early and late readers (passes/spill_values.py): "host" (to_host, then to_device before
    its first late reader) or "recompute" (its producer run again there)."""
    name: str                     # the value in the compiled graph, e.g. "rnn/Tanh_3:0"
    bytes: int
    placement: str                # HOST | RECOMPUTE
    op: str = ""                  # its producer's op (what a recomputation reruns)
    segment: int = 0              # recompute: > 0 for a value of a checkpointed segment (its
    #                               chain rerun from the kept values before it), 0 alone
    segments: int = 0             # ... of so many segments in all
    schedule: str = ""            # ... "uniform" (equal stretches of the chain's units) or
    #                               "dp" (cuts chosen by dynamic programming; memory/spill.py)

    @property
    def user_name(self) -> str:
        """The user's op it is the output of ("rnn/step_3/lstm_cell/Sigmoid")."""
        return user_op_name(self.name)


def _named(compiled: str) -> str:
    """A compiled name as the plan prints it: the user's op, then the compiled name in brackets
    where the passes renamed it."""
    user = user_op_name(compiled)
    return f"{user} [{compiled}]" if _differs(compiled, user) else user


def _differs(compiled: str, user: str) -> bool:
    """Does the compiled name say more than the user's (so the table shows it in brackets)?"""
    return compiled not in (user, f"{user}:0")


@dataclass
class LoopPlan:
    node: object                  # the forward loop node (compiled graph)
    steps: int | None
    saved: list                   # [SavedTensor]
    checkpoint_every: int = 0     # recompute: carried state kept every k steps
    prefetch_depth: int = 1       # offload: rows on the device at once in the backward loop
    backward: list = field(default_factory=list)   # names of the loops reading the residuals
    extra_time: float = 0.0       # predicted seconds over keeping everything on the device
    forced: str = ""
    checkpoint_slots: int = 0     # recompute: > 0 for a binomial (Revolve) schedule of so many
    replayed_steps: int = 0       # recompute: body steps rerun in the backward pass

    @property
    def checkpoint_schedule(self) -> str:
        """"uniform" (the state every k steps, each segment replayed once), "binomial"
        (Revolve: at most checkpoint_slots states, some steps replayed more than once), or
        "none" where the loop recomputes nothing."""
        if not any(s.placement == RECOMPUTE for s in self.saved):
            return "none"
        return "binomial" if self.checkpoint_slots else "uniform"

    @property
    def placements(self) -> dict:
        return {s.index: s.placement for s in self.saved}

    @property
    def name(self) -> str:
        return self.node.name


SPILLED_SHOWN = 20   # spilled values a printed plan lists one by one


@dataclass
class MemoryPlan:
    device: str
    budget: int | None
    loops: list                    # [LoopPlan]
    predicted_peak: int
    keep_all_peak: int             # the predicted peak with every saved tensor on the device
    extra_time: float = 0.0
    passes_off: tuple = ()
    notes: list = field(default_factory=list)
    host_budget: int | None = None  # host bytes offloaded stacks may take (None: unlimited)
    host_bytes: int = 0             # host bytes the plan's offloaded stacks take
    min_budget: int | None = None   # the smallest device budget a plan was found for
    aliases: dict = field(default_factory=dict)   # Value (user graph or compiled) -> SavedTensor
    chunk_steps: int | None = None  # the program's loops run their sequence passes in chunks
    chunk_bytes_per_step: int = 0   # ... whose buffers take this many bytes per step of a chunk
    passes_on: tuple = ()           # opt-in passes the program was compiled with (stream_outputs)
    host_fed: tuple = ()            # (name, bytes) of fed sequences left in host memory
    host_outputs: tuple = ()        # (name, bytes) of loop outputs written to host memory
    spilled: tuple = ()             # [SpilledValue]: intermediates offloaded or recomputed
    summed: tuple = ()              # add_n nodes made running sums (their operands go early)
    unknown: tuple = ()             # describe() of values whose sizes are unknown before
    #                                 running (counted as 0 bytes): no budget can be checked
    _by_node: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for lp in self.loops:
            for s in lp.saved:
                self.aliases.setdefault(s.value, s)
        self._by_node = {lp.node: lp for lp in self.loops
                         if any(s.placement != DEVICE for s in lp.saved)}

    # --- used by the executor -------------------------------------------------------------------
    @property
    def passes(self):
        """The `passes=` that compiles the program this plan is for, from the default passes
        (Session(passes=plan.passes) runs it unplanned): those turned off, the chunk size;
        stream_outputs as "always" (the same program: without a budget, True lets the Session
        stand it down where it would raise the peak, runtime/stream_guard.py)."""
        out = dict.fromkeys(self.passes_off, False)
        out.update({p: "always" if p == "stream_outputs" else True for p in self.passes_on})
        if self.chunk_steps:
            out["chunk_steps"] = self.chunk_steps
        host = tuple(s.name for s in self.spilled if s.placement == HOST)
        again = tuple(s.name for s in self.spilled if s.placement == RECOMPUTE)
        if host:
            out["spill"] = host
        if again:
            out["recompute"] = again
        if self.summed:
            out["accumulate"] = tuple(self.summed)
        return out or True

    def for_loop(self, node) -> LoopPlan | None:
        """The plan of a loop that keeps something off the device (None: keep everything)."""
        return self._by_node.get(node)

    # --- queries --------------------------------------------------------------------------------
    @property
    def fits(self) -> bool:
        """Does the predicted peak fit the device budget, and the offloaded stacks the host's?
        Never where a value's size is unknown before running: then no budget can be checked."""
        if self.budget is not None and self.unknown:
            return False
        return (self.budget is None or self.predicted_peak <= self.budget) and self.host_fits

    @property
    def host_fits(self) -> bool:
        return self.host_budget is None or self.host_bytes <= self.host_budget

    @property
    def saved(self) -> list:
        return [s for lp in self.loops for s in lp.saved]

    def placement_of(self, value) -> str | None:
        """"device", "host" or "recompute" for a loop's residual output Value; None otherwise."""
        s = self.aliases.get(value)
        return None if s is None else s.placement

    def bytes_of(self, value) -> int | None:
        """Total bytes (per step x steps) of a loop's residual output Value; None otherwise."""
        s = self.aliases.get(value)
        return None if s is None else s.total_bytes

    def bytes_by_placement(self) -> dict:
        out = {DEVICE: 0, HOST: 0, RECOMPUTE: 0}
        for s in self.saved:
            out[s.placement] += s.total_bytes or 0
        for s in self.spilled:
            if s.op != "placeholder":   # (a fed sequence left on the host: the caller's array)
                out[s.placement] += s.bytes
        return out

    # --- printing -------------------------------------------------------------------------------
    def __str__(self) -> str:
        budget = "none" if self.budget is None else fmt_bytes(self.budget)
        if not self.host_fits:
            over = self.budget is not None and self.predicted_peak > self.budget
            verdict = "  (OVER BUDGET AND OVER THE HOST BUDGET)" if over else \
                "  (OVER THE HOST BUDGET)"
        elif self.budget is None:
            verdict = ""
        elif self.unknown:
            verdict = "  (CANNOT BE CHECKED: sizes unknown before running)"
        else:
            verdict = "  (fits)" if self.fits else "  (OVER BUDGET)"
        lines = [f"memory plan on {self.device}: budget {budget}, predicted peak "
                 f"{fmt_bytes(self.predicted_peak)}{verdict}"]
        if not self.loops and not self.spilled and not self.summed:
            lines.append("  no loop saves per-step tensors for a backward pass")
        for lp in self.loops:
            lines.append("")
            at = getattr(lp.node, "location", "")
            head = f"loop {lp.name}{f' (built at {at})' if at else ''}: " \
                f"{lp.steps if lp.steps is not None else '?'} steps"
            if lp.backward:
                head += f", read back by {', '.join(lp.backward)}"
            if any(s.placement == RECOMPUTE for s in lp.saved) and lp.checkpoint_slots:
                head += (f"; binomial checkpoints (Revolve), {lp.checkpoint_slots} state{'s' if lp.checkpoint_slots != 1 else ''}, "
                         f"{lp.replayed_steps} steps replayed")
            elif any(s.placement == RECOMPUTE for s in lp.saved):
                head += f"; checkpoint every {lp.checkpoint_every} steps"
            if any(s.placement == HOST for s in lp.saved):
                head += f"; prefetch depth {lp.prefetch_depth}"
            if lp.forced:
                head += f" [{lp.forced}]"
            lines.append(head)
            lines.extend(_saved_table(lp))
        if self.spilled:
            lines.append("")
            lines.append(f"intermediates moved off the device between their early and late "
                         f"readers (spill_values): {len(self.spilled)}")
            # (the largest first; a long static_rnn's hundreds of values summed in one line)
            ordered = sorted(self.spilled, key=lambda s: -s.bytes)
            shown, more = ordered[:SPILLED_SHOWN], ordered[SPILLED_SHOWN:]
            width = max(len("value"), *(len(s.user_name) for s in shown))
            lines.append(f"  {'value':<{width}}  {'op':<12}  {'bytes':>10}  placement")
            for s in shown:
                seg = f" (segment {s.segment} of {s.segments}, {s.schedule})" \
                    if s.segment else ""
                compiled = f"  [{s.name}]" if _differs(s.name, s.user_name) else ""
                lines.append(f"  {s.user_name:<{width}}  {s.op:<12}  {fmt_bytes(s.bytes):>10}  "
                             f"{s.placement}{seg}{compiled}")
            if more:
                counts = {p: sum(1 for s in more if s.placement == p) for p in (HOST, RECOMPUTE)}
                lines.append(f"  ... {len(more)} more, {fmt_bytes(sum(s.bytes for s in more))} "
                             f"({counts[HOST]} offloaded, {counts[RECOMPUTE]} recomputed)")
            segs = {s.segment for s in self.spilled if s.segment}
            if segs:
                n = sum(1 for s in self.spilled if s.segment)
                how = {s.schedule for s in self.spilled if s.segment}
                lines.append(f"  recomputed as {len(segs)} checkpointed segment"
                             f"{'s' if len(segs) != 1 else ''}, {'/'.join(sorted(how))} "
                             f"schedule ({n} values: each segment's "
                             f"producers rerun once, from the values kept before it, right "
                             f"before its first gradient reader)")
        if self.summed:
            lines.append(f"sums made running (each operand added as it is made, in add_n's "
                         f"order, so the bits do not change): {len(self.summed)} add_n "
                         f"node{'s' if len(self.summed) != 1 else ''} "
                         f"({', '.join(_named(n) for n in self.summed[:3])}"
                         f"{', ...' if len(self.summed) > 3 else ''})")
        by = self.bytes_by_placement()
        lines.append("")
        lines.append(f"saved tensors{' and spilled values' if self.spilled else ''}: "
                     f"{fmt_bytes(by[DEVICE])} on device, {fmt_bytes(by[HOST])} "
                     f"on host, {fmt_bytes(by[RECOMPUTE])} recomputed")
        if by[HOST] or not self.host_fits:
            host = "unlimited" if self.host_budget is None else fmt_bytes(self.host_budget)
            lines.append(f"host memory: {fmt_bytes(self.host_bytes)} of offloaded stacks "
                         f"and values at most (host budget {host})")
        if self.min_budget is not None and not self.fits and not self.unknown:
            other = " (a plan other than this one: print the plan made at that budget to " \
                "see it)" if self.min_budget < self.predicted_peak else ""
            lines.append(f"smallest device budget a plan was found to fit: {self.min_budget} "
                         f"bytes ({fmt_bytes(self.min_budget)}){other}")
        lines.append(f"predicted peak {fmt_bytes(self.predicted_peak)} (keeping everything on "
                     f"the device: {fmt_bytes(self.keep_all_peak)}); predicted extra time "
                     f"{self.extra_time * 1e3:.1f} ms")
        if self.chunk_steps:
            chunk_bytes = self.chunk_steps * self.chunk_bytes_per_step
            lines.append(f"sequence passes in chunks of {self.chunk_steps} steps (hoist_sequence, "
                         f"sink_accumulators: {fmt_bytes(chunk_bytes)} of chunk buffers)")
        if "stream_outputs" in self.passes_on:
            lines.append("loop outputs streamed (stream_outputs): their per-step consumers run "
                         "inside the loops, so no [T, ...] output stack or gradient is made")
        if "sink_gather" in self.passes_on:
            lines.append("embedding lookups gathered per step inside the loops (sink_gather): "
                         "the loops read the int ids, and the embedding's gradient is summed "
                         "in the backward loop, so no [T, ...] input or input gradient is made")
        if self.host_outputs:
            outs = ", ".join(f"{name} ({fmt_bytes(b)})" for name, b in self.host_outputs)
            lines.append(f"loop outputs written to host memory a row at a time as the "
                         f"steps make them (host_outputs), not stacked on the device: {outs}")
        sliced = {s.name.rpartition(":")[0] for s in self.spilled if s.op == "placeholder"}
        rows = [(name, b) for name, b in self.host_fed if name not in sliced]
        steps = [(name, b) for name, b in self.host_fed if name in sliced]
        if rows:
            fed = ", ".join(f"{name} ({fmt_bytes(b)})" for name, b in rows)
            lines.append(f"fed sequences left in host memory (host_sequences), copied a row at "
                         f"a time into the loops reading them: {fed}")
        if steps:
            fed = ", ".join(f"{name} ({fmt_bytes(b)})" for name, b in steps)
            lines.append(f"fed sequences left in host memory (spill_values), each step's slice "
                         f"copied for its forward and its gradient step: {fed}")
        if self.passes_off:
            lines.append("compiler passes turned off (they build whole-sequence stacks on the "
                         f"device): {', '.join(self.passes_off)}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _saved_table(lp: LoopPlan) -> list:
    """A loop's saved tensors, one a line: the user's op (a loop's state "(t-1)": as it enters
    each step), its kind, type per step, bytes, placement, the user's line where it is not the
    loop's, and the compiled name in brackets where the passes renamed it."""
    at = getattr(lp.node, "location", "")
    rows = [(s.user_name, s.origin.op, s.step_type, s) for s in lp.saved]
    lines_differ = any(s.origin.line and s.origin.line != at for s in lp.saved)
    w_name = max([len("saved tensor")] + [len(r[0]) for r in rows])
    w_op = max([len("op")] + [len(r[1]) for r in rows])
    w_type = max([len("per step")] + [len(r[2]) for r in rows])
    places = [s.placement + (f" ({s.why})" if s.why else "") for s in lp.saved]
    w_place = max([len("placement")] + [len(p) for p in places])
    w_line = max([len("built at")] + [len(s.origin.line) for s in lp.saved])

    def row(name, op, typ, per, steps, total, place, line, compiled):
        out = (f"  {name:<{w_name}}  {op:<{w_op}}  {typ:<{w_type}}  {per:>10}  {steps:>6}  "
               f"{total:>10}  {place:<{w_place}}")
        if lines_differ:
            out += f"  {line:<{w_line}}"
        return (out + (f"  {compiled}" if compiled else "")).rstrip()

    out = [row("saved tensor", "op", "per step", "bytes/step", "steps", "total", "placement",
               "built at", "[compiled as]" if any(_differs(s.name, s.origin.name)
                                                  for s in lp.saved) else "")]
    for (name, op, typ, s), place in zip(rows, places):
        out.append(row(name, op, typ, fmt_bytes(s.bytes_per_step),
                       s.steps if s.steps is not None else "?", fmt_bytes(s.total_bytes),
                       place, s.origin.line or "?",
                       f"[{s.name}]" if _differs(s.name, s.origin.name) else ""))
    steps = {s.origin.step for s in lp.saved}
    if "t-1" in steps:
        out.append("  (t-1): the loop's state as each step reads it, made by that op at the step "
                   "before (at step 0: the initial state)")
    if "t" in steps:
        out.append("  (t): the row of that sequence each step reads")
    return out


@dataclass
class RunReport:
    """What a run measured (Session.last_run_report)."""
    device: str
    peak_bytes: int | None
    bytes_to_host: int
    bytes_to_device: int
    seconds: float
    predicted_peak: int | None = None
    budget: int | None = None

    def __str__(self) -> str:
        pred = "" if self.predicted_peak is None else \
            f" (predicted {fmt_bytes(self.predicted_peak)})"
        budget = "" if self.budget is None else f", budget {fmt_bytes(self.budget)}"
        return (f"run on {self.device}: measured peak {fmt_bytes(self.peak_bytes)}{pred}"
                f"{budget}; moved {fmt_bytes(self.bytes_to_host)} to host, "
                f"{fmt_bytes(self.bytes_to_device)} to device; {self.seconds:.3f} s")
