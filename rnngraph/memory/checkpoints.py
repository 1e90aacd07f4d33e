"""Binomial checkpointing (Griewank & Walther's Revolve) for a loop's recomputed residuals.

The backward loop reads a forward loop's residuals in reverse, one step at a time. With `s`
checkpoint slots for the carried state (besides the initial state, which the loop's inputs
hold anyway), reversing L steps costs at least F(L, s) extra body steps ("advances"), plus one
step per position to regenerate its residuals (the "tape" step):

    F(1, s) = 0,   F(L, 0) = L (L - 1) / 2,
    F(L, s) = min over 1 <= y < L of  y + F(L - y, s - 1) + F(y, s)

(advance y steps and store the state there; reverse the right part with one slot fewer; free
the slot and reverse the left part). Its closed form: with r the least integer such that
C(s + 1 + r, r) >= L, F(L, s) = r L - C(s + 2 + r - 1, r - 1).

The schedule is followed online (runtime/residuals.py, Replayer): a request for step i starts
from the latest stored state at or before i and advances to i, storing states where `split`
says; states past i are dropped (the backward loop never asks for them again). The forward
pass stores the first request's states as it runs, at no extra cost. `simulate` replays the
same policy on positions only: the planner's cost (extra steps) and memory (slots in use).
"""
from __future__ import annotations

from functools import lru_cache
from math import comb


def revolve_cost(L: int, s: int) -> int:
    """F(L, s): the fewest advances that reverse L steps from a stored state with s free
    slots (tape steps not counted)."""
    if L <= 1:
        return 0
    if s <= 0:
        return L * (L - 1) // 2
    S = s + 1
    r = 0
    while comb(S + r, S) < L:
        r += 1
    return r * L - comb(S + 1 + r - 1, r - 1)


@lru_cache(maxsize=65536)
def split(L: int, s: int) -> int:
    """How many steps to advance before storing the next state, to reverse L >= 2 steps with
    s >= 1 free slots at the least cost. The cost y + F(L - y, s - 1) + F(y, s) is convex in y
    (each F is convex and piecewise linear in its length), so a ternary search finds it."""
    if L <= 1:
        return 0
    if s <= 0:
        return L - 1

    def cost(y):
        return y + revolve_cost(L - y, s - 1) + revolve_cost(y, s)

    lo, hi = 1, L - 1
    while hi - lo > 2:
        m1 = lo + (hi - lo) // 3
        m2 = hi - (hi - lo) // 3
        c1, c2 = cost(m1), cost(m2)
        if c1 < c2:
            hi = m2 - 1
        elif c1 > c2:
            lo = m1 + 1
        else:
            lo, hi = m1, m2
    return min(range(lo, hi + 1), key=lambda y: (cost(y), y))


def advance_plan(p: int, i: int, free: int):
    """The positions (after p, up to i) where a request for step i starting from a state at p
    stores states, with `free` slots: yields (position reached, store it?) per advance."""
    while p < i:
        L = i - p + 1
        y = split(L, free) if free > 0 else i - p
        p += y
        store = p < i
        if store:
            free -= 1
        yield p, store


def simulate(n: int, slots: int) -> dict:
    """Replay the online policy over positions for a loop of n steps and `slots` slots.
    Returns forward (positions the forward pass stores), advances (extra body steps in the
    backward pass, tape steps not counted), tapes (= n), peak (the most slots in use) and
    held and most (held[i], most[i]: slots in use once step i's residuals are made, and at most
    while they are made)."""
    if n <= 0:
        return {"forward": [], "advances": 0, "tapes": 0, "peak": 0, "held": [], "most": []}
    stack = [0]
    forward, advances, peak = [], 0, 0
    held, most = [0] * n, [0] * n
    first = True
    for i in range(n - 1, -1, -1):
        while stack[-1] > i:
            stack.pop()
        p = stack[-1]
        for q, store in advance_plan(p, i, slots - (len(stack) - 1)):
            if not first:
                advances += q - p
            p = q
            if store:
                stack.append(q)
                if first:
                    forward.append(q)
                peak = max(peak, len(stack) - 1)
            most[i] = max(most[i], len(stack) - 1)
        held[i] = len(stack) - 1
        most[i] = max(most[i], held[i])
        first = False
    return {"forward": forward, "advances": advances, "tapes": n, "peak": peak, "held": held,
            "most": most}


class BinomialEvery(int):
    """A LoopPlan's `checkpoint_every` under a binomial schedule: the int 1 (the forward loop
    offers its carried state at every step; the Replayer keeps the ones the schedule stores)
    carrying `slots`, the number of states the schedule may hold at once. The loop executor
    passes `checkpoint_every` to the Replayer unchanged, so the schedule travels with it."""

    def __new__(cls, slots: int):
        obj = int.__new__(cls, 1)
        obj.slots = int(slots)
        return obj

    def __repr__(self) -> str:
        return f"BinomialEvery(slots={self.slots})"
