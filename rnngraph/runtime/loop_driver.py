"""A loop's steps as one generated Python function: the body's straight-line code inlined.

Per step the plain loop built a feed list, called the body Program, unpacked its result list
and wrote each per-step value into its stack in a zip loop. Generated once per loop, the same
work is straight-line code over locals (s<slot> as in Program.code_lines): the carried values
are rebound, sequence rows sliced and stack rows assigned by name. Used for untracked runs
once the first step has allocated the stacks, with or without active rows.

A kernel that can write into given arrays (a fused numba kernel: its `into`) computes a
stacked value straight into the stack's row, which saves the copy and an allocation per value
and step (an LSTM step stacks six of its outputs).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .program import Program


def step_driver(prog: Program, k: int, n_inv: int, n_seq: int, rows=None,
                shared=(), offset: bool = False) -> Callable | None:
    """steps(t_iter, carried, invariants, seqs, stacks, steps, active) -> (carried, steps): run
    every remaining step of `t_iter`, writing value j of each step into stacks[j][t]. None when
    the body program is interpreted (tracked, or too long to generate). Its `in_place`: how
    many stacks the body's kernels write directly (no copy).

    With `rows` = (batched sequence flags, batched value flags, unzeroed flags, packed value
    flags, packed sequence flags) the driver runs a loop with active rows: `active`
    (loop_kernel.ActiveRows) narrows the carried values when the count changes, batched
    sequences are cut to the active rows, and batched values fill the first rows of their
    stack row, the rest zeroed (finished rows) unless the value is unzeroed (no reader looks
    there) and `active.zero_all` is False. A packed value's stack, and a packed sequence, is
    the buffer of a StepRows laid out as this loop's rows: step t's rows are at
    active.starts[t] (a slice, where StepRows[t] is a Python call). Values `shared` marks
    (loop_kernel.shared_values) are in an earlier value's stack: not written.

    With `offset` the driver takes a last argument t0: `t_iter`, the sequences and the stacks
    are local to a block of steps starting at step t0 (a chunk: step t0 + t is row t of each),
    and the body reads its step index as t0 + t."""
    if prog.tracked or "run" not in vars(prog):
        return None
    code = StepCode(prog, k, n_inv, n_seq, rows, shared)
    carried_in, carried_out, values = code.carried_in, code.carried_out, code.values
    row, names = code.row, _names
    lines = ["def steps(t_iter, carried, invariants, seqs, stacks, steps, active=None" +
             (", t0=0):" if offset else "):")]
    lines += code.unpack()
    if rows is not None:
        lines.append("    counts, batch, width = active.rows, active.batch, active.width")
        lines.append("    observe, zero_all = active.observe, active.zero_all")
        if code.reads_starts:
            lines.append("    starts = active.starts")
    lines += ["    i = -1", "    try:", "        for t in t_iter:"]
    body = "            "
    if rows is not None:
        lines += [f"{body}n_rows = counts[t]",
                  f"{body}if n_rows != width:   # rows finish (or join, going backwards)"]
        if k:
            lines.append(f"{body}    {names(carried_in)}= active.at_step(t, [{names(carried_in)}])")
        else:
            lines.append(f"{body}    active.at_step(t, [])")
        lines.append(f"{body}    width = n_rows")
        lines.append(f"{body}if observe is not None:")
        lines.append(f"{body}    observe(t, width)")
    lines += code.reads(body, "int32", "t + t0" if offset else "t")
    calls, kernels, written = _direct_writes(prog, values, row, code.shared)
    lines += prog.code_lines(body, keep=set(code.inv_in), calls=calls)
    lines += code.writes(body, written)
    if k:
        lines.append(f"{body}{names(carried_in)}= {names(carried_out)}")
    lines.append(f"{body}steps += 1")
    lines += prog.error_lines("    ")
    lines.append(f"    return [{names(carried_in)}], steps")
    namespace = prog.code_namespace()
    namespace.update(kernels, int32=np.int32)
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from our own schedule
    steps = namespace["steps"]
    steps.in_place = len(written - code.shared)   # stacks its kernels fill with no copy
    return steps


class StepCode:
    """What a generated loop over steps says: the body program's slots (locals s<slot>), the driver's
    arguments unpacked (sequences q<j>, stacks st<j>), each step's sequence reads, and the
    writes of its values into their stack rows, zeroing finished rows where readers look.
    `rows` and `shared` as step_driver takes them; `shared` becomes the set of the values not
    written (their stack is an earlier value's)."""

    def __init__(self, prog: Program, k: int, n_inv: int, n_seq: int, rows=None, shared=()):
        ins, outs = prog.input_slots, prog.output_slots
        self.t_slot = ins[0]
        self.carried_in = ins[1:1 + k]
        self.inv_in = ins[1 + k:1 + k + n_inv]
        self.seq_in = ins[1 + k + n_inv:1 + k + n_inv + n_seq]
        self.carried_out, self.values = outs[:k], outs[k:]
        self.read = {a for _, args, _, _, _ in prog._plan for a in args} | set(outs)
        n = len(self.values)
        (self.seq_rows, self.value_rows, self.unzeroed, self.packed,
         self.seq_packed) = rows if rows is not None else \
            ([False] * n_seq, [False] * n, [False] * n, [False] * n, [False] * n_seq)
        self.reads_starts = any(self.packed) or any(self.seq_packed)
        self.shared = frozenset(j for j, j0 in enumerate(shared) if j0 >= 0)

    def row(self, j: int) -> str:
        """Where value j of step t goes."""
        if self.packed[j]:
            return f"st{j}[at:at + width]"
        return f"st{j}[t, :width]" if self.value_rows[j] else f"st{j}[t]"

    def unpack(self) -> list:
        lines = []
        for names, group in ((_names(self.carried_in), "carried"),
                             (_names(self.inv_in), "invariants"),
                             ("".join(f"q{j}, " for j in range(len(self.seq_in))), "seqs"),
                             ("".join(f"st{j}, " for j in range(len(self.values))), "stacks")):
            if names:
                lines.append(f"    {names}= {group}")
        return lines

    def reads(self, ind: str, int32: str, step: str = "t") -> list:
        """Step t's offset into packed stacks, its index (if read; the expression `step`), its
        sequence rows."""
        lines = [f"{ind}at = starts[t]"] if self.reads_starts else []
        if self.t_slot in self.read:
            lines.append(f"{ind}s{self.t_slot} = {int32}({step})")
        return lines + [f"{ind}s{a} = q{j}[at:at + width]" if self.seq_packed[j] else
                        f"{ind}s{a} = q{j}[t][:width]" if self.seq_rows[j] else
                        f"{ind}s{a} = q{j}[t]" for j, a in enumerate(self.seq_in)
                        if a in self.read]   # (a sequence only a chunk's block reads: none)

    def writes(self, ind: str, written: set) -> list:
        """Copies of the values not `written` in place; zeros past the active rows."""
        vr, unz, mine = self.value_rows, self.unzeroed, \
            [j for j in range(len(self.values)) if j not in self.shared]
        lines = [f"{ind}{self.row(j)} = s{self.values[j]}" for j in mine if j not in written]
        zeroed = [j for j in mine if vr[j] and not unz[j]]
        lazy = [j for j in mine if vr[j] and unz[j] and not self.packed[j]]
        if zeroed or lazy:
            lines.append(f"{ind}if width < batch:")
            lines += [f"{ind}    st{j}[t, width:] = 0" for j in zeroed]
        if lazy:   # (rows nobody reads, unless a reader under a memory plan runs full width)
            lines.append(f"{ind}    if zero_all:")
            lines += [f"{ind}        st{j}[t, width:] = 0" for j in lazy]
        return lines


def _names(slots) -> str:
    return "".join(f"s{a}, " for a in slots)


def stack_destinations(prog: Program, values: list, shared=frozenset()) -> tuple[dict, set]:
    """Which outputs of which kernels go straight into a row of their stack: ({step index:
    {output position: stack number}}, {stack numbers not copied}). Kernels that can write into
    given arrays (`into`) with several outputs qualify; a value stacked twice is written once
    (the other stack copies it); values in `shared` are neither."""
    dests, written = {}, set(shared)
    for i, (kernel, ins, outs, _, _) in enumerate(prog._plan):
        if not hasattr(kernel, "into") or type(outs) is int:
            continue
        mine = {}   # output position -> stack number
        for k, slot in enumerate(outs):
            j = next((j for j, a in enumerate(values) if a == slot and j not in written), None)
            if j is not None:
                mine[k] = j
                written.add(j)
        if mine:
            dests[i] = mine
    return dests, written


def _direct_writes(prog: Program, values: list, row, shared=frozenset()) -> tuple[dict, dict,
                                                                                   set]:
    """Calls that compute stacked values straight into their stack rows: ({step index: call
    expression}, {kernel name: kernel}, {stack numbers no longer copied}); values in `shared`
    are neither."""
    dests, written = stack_destinations(prog, values, shared)
    calls, kernels = {}, {}
    for i, mine in dests.items():
        kernel, ins = prog._plan[i][0], prog._plan[i][1]
        args = [f"s{a}" for a in ins] + [row(mine[k]) for k in sorted(mine)]
        calls[i] = f"kd{i}({', '.join(args)})"
        kernels[f"kd{i}"] = kernel.into(sorted(mine))
    return calls, kernels, written
