"""Matrix multiply (2-D, or batched over leading dims with broadcasting)."""
from __future__ import annotations

from ..errors import ShapeError
from ..ir.types import TensorType, broadcast_shapes, fmt_shape, merge_dim
from .base import Op, apply, as_value, same_dtype
from .elementwise import unbroadcast


class MatMul(Op):
    name = "matmul"
    foldable = False

    def infer(self, a, b):
        dtype = same_dtype(self.name, a, b)
        if a.rank < 2 or b.rank < 2:
            raise ShapeError(f"operands must have rank >= 2, got {fmt_shape(a.shape)} and "
                             f"{fmt_shape(b.shape)}")
        merge_dim(a.shape[-1], b.shape[-2],
                  f"inner dimensions differ ({fmt_shape(a.shape)} @ {fmt_shape(b.shape)})")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return TensorType(batch + (a.shape[-2], b.shape[-1]), dtype)

    def compute(self, xp, a, b):
        if a.ndim > 2 and b.ndim == 2:
            # one large GEMM instead of a loop of small ones (numpy loops over stacked matmuls);
            # a strided stack (a time-major view of batch-major input) is copied first: the copy
            # costs far less than T small products
            return xp.matmul(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[1],))
        return xp.matmul(a, b)

    def vjp(self, node, g):
        a, b = node.inputs
        return [unbroadcast(matmul(g, matrix_transpose(b)), a),
                unbroadcast(matmul(matrix_transpose(a), g), b)]

    def flops(self, node):
        a, b = node.inputs
        m, k, n = (a.shape[-2] or 1), (a.shape[-1] or 1), (b.shape[-1] or 1)
        batch = 1
        for d in node.outputs[0].shape[:-2]:
            batch *= d or 1
        return 2 * batch * m * k * n


class MatrixTranspose(Op):
    """Swap the last two axes (a view on NumPy/CuPy: BLAS reads it without a copy)."""
    name = "matrix_transpose"

    def infer(self, x):
        if x.rank < 2:
            raise ShapeError(f"needs rank >= 2, got {fmt_shape(x.shape)}")
        return TensorType(x.shape[:-2] + (x.shape[-1], x.shape[-2]), x.dtype)

    def compute(self, xp, x):
        return xp.swapaxes(x, -1, -2)

    def vjp(self, node, g):
        return [matrix_transpose(g)]

    def flops(self, node):
        return 0


def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
           a_is_sparse=False, b_is_sparse=False, name=None):
    """Matrix product a @ b (tf.matmul); leading (batch) dims broadcast. transpose_a /
    transpose_b (and adjoint_a / adjoint_b, the same for real tensors) swap the last two axes
    of that operand first. The *_is_sparse hints are not supported."""
    if isinstance(transpose_a, str) and name is None:   # matmul(a, b, "name"), the old form
        transpose_a, name = False, transpose_a
    for arg, val in (("a_is_sparse", a_is_sparse), ("b_is_sparse", b_is_sparse)):
        if val:
            raise NotImplementedError(f"matmul: the argument {arg}=True is not supported")
    a, b = as_value(a), as_value(b)
    if transpose_a or adjoint_a:
        a = matrix_transpose(a)
    if transpose_b or adjoint_b:
        b = matrix_transpose(b)
    return apply(MatMul(), [a, b], name=name)


def matrix_transpose(x, name=None):
    return apply(MatrixTranspose(), [x], name=name)
