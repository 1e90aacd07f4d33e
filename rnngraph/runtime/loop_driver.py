"""A loop's steps as one generated Python function: the body's straight-line code inlined.

Per step the plain loop built a feed list, called the body Program, unpacked its result list
and wrote each per-step value into its stack in a zip loop. Generated once per loop, the same
work is straight-line code over locals (s<slot> as in Program.code_lines): the carried values
are rebound, sequence rows sliced and stack rows assigned by name. Used for untracked runs
without active rows once the first step has allocated the stacks.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .program import Program


def step_driver(prog: Program, k: int, n_inv: int, n_seq: int) -> Callable | None:
    """steps(t_iter, carried, invariants, seqs, stacks, steps) -> (carried, steps): run every
    remaining step of `t_iter`, writing value j of each step into stacks[j][t]. None when the
    body program is interpreted (tracked, or too long to generate)."""
    if prog.tracked or "run" not in vars(prog):
        return None
    ins, outs = prog.input_slots, prog.output_slots
    t_slot = ins[0]
    carried_in = ins[1:1 + k]
    inv_in = ins[1 + k:1 + k + n_inv]
    seq_in = ins[1 + k + n_inv:1 + k + n_inv + n_seq]
    carried_out, values = outs[:k], outs[k:]
    read = {a for _, args, _, _, _ in prog._plan for a in args} | set(outs)

    def names(slots):
        return "".join(f"s{a}, " for a in slots)

    lines = ["def steps(t_iter, carried, invariants, seqs, stacks, steps):"]
    if k:
        lines.append(f"    {names(carried_in)}= carried")
    if n_inv:
        lines.append(f"    {names(inv_in)}= invariants")
    if n_seq:
        lines.append(f"    {''.join(f'q{j}, ' for j in range(n_seq))}= seqs")
    if values:
        lines.append(f"    {''.join(f'st{j}, ' for j in range(len(values)))}= stacks")
    lines += ["    i = -1", "    try:", "        for t in t_iter:"]
    if t_slot in read:
        lines.append(f"            s{t_slot} = int32(t)")
    lines += [f"            s{a} = q{j}[t]" for j, a in enumerate(seq_in)]
    lines += prog.code_lines("            ", keep=set(inv_in))
    lines += [f"            st{j}[t] = s{a}" for j, a in enumerate(values)]
    if k:
        lines.append(f"            {names(carried_in)}= {names(carried_out)}")
    lines.append("            steps += 1")
    lines += prog.error_lines("    ")
    lines.append(f"    return [{names(carried_in)}], steps")
    namespace = prog.code_namespace()
    namespace["int32"] = np.int32
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from our own schedule
    return namespace["steps"]
