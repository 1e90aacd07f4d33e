"""Reductions and products over the executed steps of a loop's stacks [L, batch, ...].

Compiler passes use these to move per-step work out of a loop: the gradient of a shared weight,
accumulated per step as a_t^T b_t, becomes one large matrix multiply over all steps; an input
projection x_t @ W of every step becomes one before the loop.

With `rows` (a loop's active row counts, rows sorted longest first) only the rows b < rows[t]
of step t take part: the rows of finished sequences are packed out of the product, which is
then exactly as large as the work the loop really does.
"""
from __future__ import annotations

from ..errors import ShapeError
from ..ir.types import TensorType
from .base import Op, apply


class StepSum(Op):
    """sum over the first n rows: stack[:n].sum(axis=0)."""
    name = "step_sum"

    def infer(self, stack, n):
        if stack.rank < 1:
            raise ShapeError(f"needs a stack [steps, ...], got {stack}")
        return TensorType(stack.shape[1:], stack.dtype)

    def compute(self, xp, stack, n):
        return stack[:int(n)].sum(axis=0)


def _active(xp, rows, steps: int, batch: int):
    """Flat indices into [steps * batch] of the active (step, row) pairs; None if all are."""
    counts = xp.asarray(rows[:steps]).reshape(-1, 1)
    mask = xp.arange(batch).reshape(1, -1) < counts
    idx = xp.flatnonzero(mask)
    return None if idx.size == steps * batch else idx


class StepContract(Op):
    """sum_t a_t^T @ b_t over the first n steps of stacks a [L, B, K] and b [L, B, N]:
    one [K, n*B] @ [n*B, N] product (with `rows`: over the active rows only)."""
    name = "step_contract"

    def infer(self, a, b, n, *rows):
        if a.rank != 3 or b.rank != 3:
            raise ShapeError(f"needs stacks [steps, batch, k] and [steps, batch, n], got {a}, {b}")
        return TensorType((a.shape[2], b.shape[2]), a.dtype)

    def compute(self, xp, a, b, n, *rows):
        n = int(n)
        a2 = a[:n].reshape(-1, a.shape[2])
        b2 = b[:n].reshape(-1, b.shape[2])
        if rows:
            idx = _active(xp, rows[0], n, a.shape[1])
            if idx is not None:
                a2, b2 = xp.take(a2, idx, axis=0), xp.take(b2, idx, axis=0)
        return xp.matmul(a2.T, b2)

    def flops(self, node):
        a, b = node.inputs[:2]
        steps = a.shape[0] or 1
        return 2 * steps * (a.shape[1] or 1) * (a.shape[2] or 1) * (b.shape[2] or 1)


class RowsMatMul(Op):
    """x [L, B, K] @ w [K, N] for the active rows b < rows[t] of each step t; zero elsewhere
    (the product a loop with active rows would have computed step by step)."""
    name = "rows_matmul"

    def infer(self, x, w, rows):
        if x.rank != 3 or w.rank != 2:
            raise ShapeError(f"needs a stack [steps, batch, k] and a matrix [k, n], got {x}, {w}")
        if x.shape[2] is not None and w.shape[0] is not None and x.shape[2] != w.shape[0]:
            raise ShapeError(f"inner dimensions differ: {x} @ {w}")
        return TensorType(x.shape[:2] + (w.shape[1],), x.dtype)

    def make_kernel(self, node, program):
        """The result lands in a buffer reused across runs (runtime/buffer_pool.py)."""
        from ..runtime.buffer_pool import output_pool, pooled_empty
        pool = output_pool(program)
        xp = program.ctx.xp
        if pool is None:
            return lambda x, w, rows: self.compute(xp, x, w, rows)
        return lambda x, w, rows: self.compute(
            xp, x, w, rows,
            lambda shape, zero: pooled_empty(pool, program, shape, x.dtype, zero))

    def compute(self, xp, x, w, rows, alloc=None):
        steps, batch, k = x.shape
        x2 = x.reshape(-1, k)
        idx = _active(xp, rows, steps, batch)
        shape = (steps * batch, w.shape[1])
        if idx is None:
            out = alloc(shape, False) if alloc is not None and x.dtype == w.dtype else None
            return xp.matmul(x2, w, out=out).reshape(steps, batch, w.shape[1])
        out = alloc(shape, True) if alloc is not None else xp.zeros(shape, dtype=x.dtype)
        out[idx] = xp.matmul(xp.take(x2, idx, axis=0), w)
        return out.reshape(steps, batch, w.shape[1])

    def flops(self, node):
        x, w = node.inputs[:2]
        return 2 * (x.shape[0] or 1) * (x.shape[1] or 1) * (x.shape[2] or 1) * (w.shape[1] or 1)


def step_sum(stack, n):
    return apply(StepSum(), [stack, n])


def step_contract(a, b, n, rows=None):
    return apply(StepContract(), [a, b, n] + ([rows] if rows is not None else []))


def rows_matmul(x, w, rows):
    return apply(RowsMatMul(), [x, w, rows])
