"""Static tensor types: a shape with None for dims known only at run time, and a dtype."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import as_dtype, short_name
from ..errors import ShapeError

Shape = tuple  # tuple[int | None, ...]


# --- TF1's TensorShape and Dimension -------------------------------------------------------------
# Every TensorType's shape is a TensorShape: a tuple (equal to and hashed as the plain tuple of its
# dims, so the compiler keeps using shapes as tuples of ints and None) whose known dims are
# Dimensions (ints that also have TF1's `.value`) and whose unknown dims are None. It adds the
# TensorShape methods TF1 code calls (as_list, ndims, is_fully_defined, ...); its slices are
# plain tuples. `Value.get_shape()` returns the TF1 view of the same dims (V1TensorShape):
# there, indexing and iteration give Dimension objects, an unknown dim Dimension(None) (whose
# .value is None), as in TF1.


class Dimension(int):
    """A known dimension: an int (arithmetic and comparisons are an int's) with TF1's `.value`.
    `Dimension(None)` is the unknown dimension (UNKNOWN_DIMENSION, whose .value is None)."""
    __slots__ = ()

    def __new__(cls, value):
        if value is None or value is UNKNOWN_DIMENSION:
            return UNKNOWN_DIMENSION
        if isinstance(value, Dimension):
            return value
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            try:
                as_int = int(value)
            except (TypeError, ValueError):
                raise TypeError(f"Dimension: {value!r} is not an int or None") from None
            if as_int != value:
                raise TypeError(f"Dimension: {value!r} is not an int or None")
            value = as_int
        if value < 0:
            raise ValueError(f"Dimension {value} must be >= 0")
        return int.__new__(cls, value)

    @property
    def value(self) -> int:
        return int(self)

    def is_compatible_with(self, other) -> bool:
        other = dimension_value(other)
        return other is None or int(self) == other

    def merge_with(self, other) -> "Dimension":
        other = dimension_value(other)
        if other is not None and other != int(self):
            raise ValueError(f"Dimensions {int(self)} and {other} are not compatible")
        return self


class _UnknownDimension:
    """TF1's Dimension(None): `.value` is None; arithmetic with it stays unknown, and so do
    comparisons (== gives None, as in TF1)."""
    __slots__ = ()
    value = None

    def __repr__(self):
        return "Dimension(None)"

    def __str__(self):
        return "?"

    def __eq__(self, other):
        return None

    def __ne__(self, other):
        return None

    def __hash__(self):
        return hash(None)

    def __int__(self):
        raise TypeError("int() of an unknown Dimension (its .value is None)")

    def __bool__(self):
        raise TypeError("the truth value of an unknown Dimension is unknown (test .value is None)")

    def _unknown(self, other):
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _unknown
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _unknown

    def is_compatible_with(self, other) -> bool:
        return True

    def merge_with(self, other):
        return Dimension(dimension_value(other))

    def __reduce__(self):
        return (Dimension, (None,))


UNKNOWN_DIMENSION = object.__new__(_UnknownDimension)
_DIMENSIONS: dict = {}   # the Dimension of each size seen so far (shapes share them)


def _dimension(d: int) -> "Dimension":
    try:
        return _DIMENSIONS[d]
    except KeyError:
        return _DIMENSIONS.setdefault(d, int.__new__(Dimension, d))


def dimension_value(dimension):
    """The int or None of a dimension (tf.compat.dimension_value): Dimension, int or None."""
    if dimension is None or dimension is UNKNOWN_DIMENSION:
        return None
    if isinstance(dimension, (int, np.integer)) and not isinstance(dimension, (bool, np.bool_)):
        return int(dimension)
    value = getattr(dimension, "value", dimension)
    return None if value is None else int(value)


def dimension_at_index(shape, index):
    """TF1's tf.compat.dimension_at_index: the Dimension at `index` of `shape`."""
    return Dimension(dimension_value(TensorShape(shape).as_list()[index]))


class TensorShape(tuple):
    """A static shape: a tuple of Dimension (an int with `.value`) and None, with TF1's
    TensorShape methods. `rg.TensorShape([None, 3])` makes one; unknown rank is not supported."""
    __slots__ = ()

    def __new__(cls, dims=()):
        shape = normalize_shape(dims)   # (ShapeError for None: rnngraph needs every rank)
        return shape if cls is TensorShape else tuple.__new__(cls, shape)

    # (no __getitem__ of its own: the compiler indexes shapes tens of thousands of times per
    # compile, at the tuple's C speed; so `x.shape[1:]` is a plain tuple, `x.get_shape()[1:]`
    # a TensorShape)

    @property
    def ndims(self) -> int:
        return len(self)

    rank = ndims

    @property
    def dims(self) -> list:
        return [Dimension(d) for d in tuple.__iter__(self)]

    def as_list(self) -> list:
        return [None if d is None else int(d) for d in tuple.__iter__(self)]

    def is_fully_defined(self) -> bool:
        return None not in tuple(tuple.__iter__(self))

    def num_elements(self):
        n = 1
        for d in tuple.__iter__(self):
            if d is None:
                return None
            n *= int(d)
        return n

    def concatenate(self, other) -> "TensorShape":
        return type(self)(tuple(tuple.__iter__(self)) + tuple(tuple.__iter__(TensorShape(other))))

    def is_compatible_with(self, other) -> bool:
        other = TensorShape(other)
        return len(self) == len(other) and all(
            a is None or b is None or a == b
            for a, b in zip(tuple.__iter__(self), tuple.__iter__(other)))

    def assert_is_compatible_with(self, other) -> None:
        if not self.is_compatible_with(other):
            raise ValueError(f"Shapes {fmt_shape(self)} and {fmt_shape(TensorShape(other))} "
                             "are incompatible")

    def merge_with(self, other) -> "TensorShape":
        other = TensorShape(other)
        if len(self) != len(other):
            raise ValueError(f"Shapes {fmt_shape(self)} and {fmt_shape(other)} are not "
                             "compatible (different ranks)")
        try:
            return type(self)([merge_dim(a, b, "dimensions differ") for a, b in
                               zip(tuple.__iter__(self), tuple.__iter__(other))])
        except ShapeError:
            raise ValueError(f"Shapes {fmt_shape(self)} and {fmt_shape(other)} are not "
                             "compatible") from None

    def assert_has_rank(self, rank: int) -> None:
        if len(self) != rank:
            raise ValueError(f"Shape {fmt_shape(self)} must have rank {rank}")

    def with_rank(self, rank: int) -> "TensorShape":
        self.assert_has_rank(rank)
        return self

    def with_rank_at_least(self, rank: int) -> "TensorShape":
        if len(self) < rank:
            raise ValueError(f"Shape {fmt_shape(self)} must have rank at least {rank}")
        return self

    def with_rank_at_most(self, rank: int) -> "TensorShape":
        if len(self) > rank:
            raise ValueError(f"Shape {fmt_shape(self)} must have rank at most {rank}")
        return self

    def assert_is_fully_defined(self) -> None:
        if not self.is_fully_defined():
            raise ValueError(f"Shape {fmt_shape(self)} is not fully defined")


class V1TensorShape(TensorShape):
    """What `Value.get_shape()` returns: the same dims, indexed and iterated as TF1's
    Dimension objects (an unknown dim is Dimension(None), whose .value is None, not None); a
    slice is a V1TensorShape too (`x.get_shape()[1:].as_list()`)."""
    __slots__ = ()

    def __getitem__(self, key):
        if key.__class__ is slice:
            return tuple.__new__(V1TensorShape, tuple.__getitem__(self, key))
        d = tuple.__getitem__(self, key)
        return UNKNOWN_DIMENSION if d is None else d

    def __iter__(self):
        return iter([UNKNOWN_DIMENSION if d is None else d for d in tuple.__iter__(self)])


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
    """`shape` as a TensorShape of ints (Dimension) and None; -1 reads as None (TF1)."""
    if type(shape) is TensorShape:   # (already normalised: every TensorType's shape is one)
        return shape
    if shape is None:
        raise ShapeError("shape must be a tuple of ints/None (unknown rank is not supported)")
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    out = []
    # (get_shape()'s view iterates as Dimension objects: read its raw dims)
    dims = tuple.__iter__(shape) if shape.__class__ is V1TensorShape else shape
    for d in dims:
        if d is None or d is UNKNOWN_DIMENSION:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and d >= 0:
            dim = _DIMENSIONS.get(d)   # (inline: shapes are normalised for every node)
            out.append(dim if dim is not None else _dimension(int(d)))
        elif isinstance(d, (int, np.integer)) and d == -1:
            out.append(None)
        else:
            raise ShapeError(f"bad dimension {d!r} in shape {tuple(shape)!r}")
    return tuple.__new__(TensorShape, out)


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
    dims = tuple.__iter__(shape) if isinstance(shape, tuple) else shape
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
