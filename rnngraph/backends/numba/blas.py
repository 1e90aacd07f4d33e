"""NumPy's own single-precision GEMM, callable from compiled code: a loop step's products in a
compiled loop (loop.py) with the same library call, arguments and bits as `np.matmul`.

NumPy's wheels link OpenBLAS built with 64-bit integers under prefixed names; `sgemm_address`
looks up exactly that entry point (`scipy_cblas_sgemm64_`, whose suffix names its integer
width) through NumPy's own extension module, so it is the library NumPy itself calls. Any other
build (MKL, Accelerate, a system BLAS) has no such symbol: then there is no address and loops
keep their Python steps. The address is an argument of the compiled code, never a constant in
it, so numba's disk cache holds nothing that is only valid in one process.
"""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_SYMBOL = "scipy_cblas_sgemm64_"   # cblas_sgemm of an ILP64 OpenBLAS, as NumPy's wheels name it
_ROW_MAJOR, _NO_TRANS = 101, 111   # the CBLAS enum values
_STATE: dict = {}


def sgemm_address() -> int:
    """The address of the cblas_sgemm NumPy calls, or 0 where it is not the known ILP64 one."""
    if "address" not in _STATE:
        address = 0
        try:
            from numpy._core import _multiarray_umath as umath   # (NumPy 2: where matmul lives)
            lib = ctypes.CDLL(umath.__file__)   # (already loaded: dlsym also searches its BLAS)
            address = ctypes.cast(getattr(lib, _SYMBOL), ctypes.c_void_p).value or 0
        except (ImportError, OSError, AttributeError):
            address = 0
        _STATE["address"] = address
    return _STATE["address"]


_I32, _I64, _F32 = ir.IntType(32), ir.IntType(64), ir.FloatType()


@intrinsic
def _sgemm(typingctx, fn, m, n, k, a, lda, b, ldb, c, ldc):
    """c = a @ b through the cblas_sgemm at address `fn` (row-major, no transposes): m x k
    times k x n into m x n, addresses and leading dimensions (in elements) as integers."""
    sig = types.void(*([types.int64] * 10))

    def codegen(context, builder, signature, args):
        fn_at, m, n, k, a, lda, b, ldb, c, ldc = args
        fp = ir.PointerType(_F32)
        fnty = ir.FunctionType(ir.VoidType(), [_I32, _I32, _I32, _I64, _I64, _I64, _F32, fp,
                                               _I64, fp, _I64, _F32, fp, _I64])
        call = builder.inttoptr(fn_at, fnty.as_pointer())
        builder.call(call, [_I32(_ROW_MAJOR), _I32(_NO_TRANS), _I32(_NO_TRANS), m, n, k,
                            ir.Constant(_F32, 1.0), builder.inttoptr(a, fp), lda,
                            builder.inttoptr(b, fp), ldb, ir.Constant(_F32, 0.0),
                            builder.inttoptr(c, fp), ldc])
    return sig, codegen


@njit(cache=True, nogil=True)
def product(fn, a, b, out, serial, split_max, small, align):
    """out = a @ b for float32 matrices with unit column stride, as the NumPy backend's matmul
    kernel computes a loop step's product (backends/numpy/kernels.py): two column halves of
    `align`-column width where serial < m*k*n <= split_max and m*n < small, else the whole.
    False (nothing written) where NumPy would not call this GEMM the same way: a vector
    operand, whole or as the second half (NumPy calls gemv or dot), an empty dimension, or a
    layout it would copy."""
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape[0] != m or out.shape[1] != n or m < 2 or n < 2 or k < 1:
        return False
    if a.strides[1] != 4 or b.strides[1] != 4 or out.strides[1] != 4 or \
            a.strides[0] < 4 * k or b.strides[0] < 4 * n or out.strides[0] != 4 * n:
        return False
    lda, ldb = a.strides[0] // 4, b.strides[0] // 4
    width = n
    if m * n < small and serial < m * k * n <= split_max:
        width = -(-n // (2 * align)) * align
    if width >= n:
        _sgemm(fn, m, n, k, a.ctypes.data, lda, b.ctypes.data, ldb, out.ctypes.data, n)
        return True
    if n - width < 2:
        return False   # (a one-column half: NumPy multiplies it by gemv, which rounds otherwise)
    _sgemm(fn, m, width, k, a.ctypes.data, lda, b.ctypes.data, ldb, out.ctypes.data, n)
    _sgemm(fn, m, n - width, k, a.ctypes.data, lda, b.ctypes.data + 4 * width, ldb,
           out.ctypes.data + 4 * width, n)
    return True


def _float32_check() -> bool:
    """A one-off check that the address computes what np.matmul does, bit for bit."""
    a = np.arange(24, dtype=np.float32).reshape(4, 6) / np.float32(7)
    b = np.arange(30, dtype=np.float32).reshape(6, 5) / np.float32(3)
    out = np.empty((4, 5), np.float32)
    ok = product(sgemm_address(), a, b, out, 0, 0, 0, 16)
    return bool(ok) and np.array_equal(out, np.matmul(a, b))


def usable() -> bool:
    """NumPy's GEMM found, and it gives np.matmul's bits on a small product (checked once)."""
    if "usable" not in _STATE:
        _STATE["usable"] = bool(sgemm_address()) and _float32_check()
    return _STATE["usable"]
