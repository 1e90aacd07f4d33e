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


def step_driver(prog: Program, k: int, n_inv: int, n_seq: int, rows=None) -> Callable | None:
    """steps(t_iter, carried, invariants, seqs, stacks, steps, active) -> (carried, steps): run
    every remaining step of `t_iter`, writing value j of each step into stacks[j][t]. None when
    the body program is interpreted (tracked, or too long to generate).

    With `rows` = (batched sequence flags, batched value flags, unzeroed flags, packed value
    flags, packed sequence flags) the driver runs a loop with active rows: `active`
    (loop_kernel.ActiveRows) narrows the carried values when the count changes, batched
    sequences are cut to the active rows, and batched values fill the first rows of their
    stack row, the rest zeroed (finished rows) unless the value is unzeroed (no reader looks
    there) and `active.zero_all` is False. A packed value's stack, and a packed sequence, is
    the buffer of a StepRows laid out as this loop's rows: step t's rows are at
    active.starts[t] (a slice, where StepRows[t] is a Python call)."""
    if prog.tracked or "run" not in vars(prog):
        return None
    ins, outs = prog.input_slots, prog.output_slots
    t_slot = ins[0]
    carried_in = ins[1:1 + k]
    inv_in = ins[1 + k:1 + k + n_inv]
    seq_in = ins[1 + k + n_inv:1 + k + n_inv + n_seq]
    carried_out, values = outs[:k], outs[k:]
    read = {a for _, args, _, _, _ in prog._plan for a in args} | set(outs)
    seq_rows, value_rows, unzeroed, packed, seq_packed = rows if rows is not None else \
        ([False] * n_seq, [False] * len(values), [False] * len(values), [False] * len(values),
         [False] * n_seq)

    def names(slots):
        return "".join(f"s{a}, " for a in slots)

    def row(j):   # where value j of this step goes
        if packed[j]:
            return f"st{j}[at:at + width]"
        return f"st{j}[t, :width]" if value_rows[j] else f"st{j}[t]"

    lines = ["def steps(t_iter, carried, invariants, seqs, stacks, steps, active=None):"]
    if k:
        lines.append(f"    {names(carried_in)}= carried")
    if n_inv:
        lines.append(f"    {names(inv_in)}= invariants")
    if n_seq:
        lines.append(f"    {''.join(f'q{j}, ' for j in range(n_seq))}= seqs")
    if values:
        lines.append(f"    {''.join(f'st{j}, ' for j in range(len(values)))}= stacks")
    if rows is not None:
        lines.append("    counts, batch, width = active.rows, active.batch, active.width")
        lines.append("    observe, zero_all = active.observe, active.zero_all")
        if any(packed) or any(seq_packed):
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
    if any(packed) or any(seq_packed):
        lines.append(f"{body}at = starts[t]")
    if t_slot in read:
        lines.append(f"{body}s{t_slot} = int32(t)")
    lines += [f"{body}s{a} = q{j}[at:at + width]" if seq_packed[j] else
              f"{body}s{a} = q{j}[t][:width]" if seq_rows[j] else f"{body}s{a} = q{j}[t]"
              for j, a in enumerate(seq_in)]
    calls, kernels, written = _direct_writes(prog, values, row)
    lines += prog.code_lines(body, keep=set(inv_in), calls=calls)
    lines += [f"{body}{row(j)} = s{a}" for j, a in enumerate(values) if j not in written]
    zeroed = [j for j in range(len(values)) if value_rows[j] and not unzeroed[j]]
    lazy = [j for j in range(len(values)) if value_rows[j] and unzeroed[j] and not packed[j]]
    if zeroed or lazy:
        lines.append(f"{body}if width < batch:")
        lines += [f"{body}    st{j}[t, width:] = 0" for j in zeroed]
    if lazy:   # (rows nobody reads, unless a reader under a memory plan runs full width)
        lines.append(f"{body}    if zero_all:")
        lines += [f"{body}        st{j}[t, width:] = 0" for j in lazy]
    if k:
        lines.append(f"{body}{names(carried_in)}= {names(carried_out)}")
    lines.append(f"{body}steps += 1")
    lines += prog.error_lines("    ")
    lines.append(f"    return [{names(carried_in)}], steps")
    namespace = prog.code_namespace()
    namespace.update(kernels, int32=np.int32)
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from our own schedule
    return namespace["steps"]


def _direct_writes(prog: Program, values: list, row) -> tuple[dict, dict, set]:
    """Calls that compute stacked values straight into their stack rows: ({step index: call
    expression}, {kernel name: kernel}, {stack numbers no longer copied})."""
    calls, kernels, written = {}, {}, set()
    for i, (kernel, ins, outs, _, _) in enumerate(prog._plan):
        if not hasattr(kernel, "into") or type(outs) is int:
            continue
        dests = {}   # output position -> stack number (a value stacked twice is copied once)
        for k, slot in enumerate(outs):
            j = next((j for j, a in enumerate(values) if a == slot and j not in written), None)
            if j is not None:
                dests[k] = j
                written.add(j)
        if dests:
            args = [f"s{a}" for a in ins] + [row(dests[k]) for k in sorted(dests)]
            calls[i] = f"kd{i}({', '.join(args)})"
            kernels[f"kd{i}"] = kernel.into(sorted(dests))
    return calls, kernels, written
