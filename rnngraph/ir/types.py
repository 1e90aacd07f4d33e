"""Static tensor types: a shape with None for dims known only at run time, and a dtype."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import as_dtype, short_name
from ..errors import ShapeError

Shape = tuple  # tuple[int | None, ...]


@dataclass(frozen=True)
class TensorType:
    shape: Shape
    dtype: np.dtype

    def __post_init__(self):
        object.__setattr__(self, "shape", normalize_shape(self.shape))
        object.__setattr__(self, "dtype", as_dtype(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{short_name(self.dtype)}[{dims}]"

    def accepts(self, shape: tuple) -> bool:
        """True when a concrete runtime shape fits this (possibly partial) static shape."""
        return len(shape) == len(self.shape) and all(
            s is None or s == d for s, d in zip(self.shape, shape))

    def nbytes(self, unknown: int = 1) -> int:
        """Bytes of one tensor of this type, counting an unknown dim as `unknown`."""
        n = 1
        for d in self.shape:
            n *= unknown if d is None else d
        return n * self.dtype.itemsize


def normalize_shape(shape) -> Shape:
    if shape is None:
        raise ShapeError("shape must be a tuple of ints/None (unknown rank is not supported)")
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    out = []
    for d in shape:
        if d is None or (isinstance(d, (int, np.integer)) and d >= 0):
            out.append(None if d is None else int(d))
        elif isinstance(d, (int, np.integer)) and d == -1:
            out.append(None)
        else:
            raise ShapeError(f"bad dimension {d!r} in shape {tuple(shape)!r}")
    return tuple(out)


def merge_dim(a, b, what: str):
    """The more specific of two dims that must agree; ShapeError when both known and different."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise ShapeError(f"{what}: {a} != {b}")


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting over partial shapes (a None dim broadcasts like an unknown size)."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError(f"shapes {' and '.join(fmt_shape(s) for s in shapes)} do not broadcast")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def fmt_shape(shape: Shape) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
