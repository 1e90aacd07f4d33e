"""Reductions over the executed steps of a loop's stacks, [L, ...] -> per-step shape.

Compiler passes use these to move per-step accumulation (the gradient of a shared weight) out
of a loop: sum_t a_t^T b_t becomes one large matrix multiply over all steps."""
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


class StepContract(Op):
    """sum_t a_t^T @ b_t over the first n steps of stacks a [L, B, K] and b [L, B, N]:
    one [K, n*B] @ [n*B, N] product."""
    name = "step_contract"

    def infer(self, a, b, n):
        if a.rank != 3 or b.rank != 3:
            raise ShapeError(f"needs stacks [steps, batch, k] and [steps, batch, n], got {a}, {b}")
        return TensorType((a.shape[2], b.shape[2]), a.dtype)

    def compute(self, xp, a, b, n):
        n = int(n)
        a2 = a[:n].reshape(-1, a.shape[2])
        b2 = b[:n].reshape(-1, b.shape[2])
        return xp.matmul(a2.T, b2)

    def flops(self, node):
        a, b = node.inputs
        steps = a.shape[0] or 1
        return 2 * steps * (a.shape[1] or 1) * (a.shape[2] or 1) * (b.shape[2] or 1)


def step_sum(stack, n):
    return apply(StepSum(), [stack, n])


def step_contract(a, b, n):
    return apply(StepContract(), [a, b, n])
