"""Shape ops: reshape, transpose, expand/squeeze, concat/split, stack/unstack, basic indexing,
broadcast_to, and the runtime-shape readers shape(x) and dim(x, axis).

Gradients that need a runtime size take the forward value as an extra input (reshape_like,
concat_grad, getitem_grad) instead of baking a static shape into the graph.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..errors import InvalidArgumentError, ShapeError, user_location
from ..ir.graph import get_default_graph
from ..ir.types import TensorType, fmt_shape, merge_dim
from ..ir.value import Value
from .base import Op, apply, as_value, same_dtype
from .elementwise import sum_to_like, unbroadcast, zeros_like


def _prod(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def _axis_in(axis: int, rank: int, what: str = "axis") -> int:
    """Normalise `axis` for an input of rank `rank` (valid: -rank <= axis < rank)."""
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {axis!r}")
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for rank {rank}")
    return int(axis) % rank


def _merge_shapes(types, what: str, skip: int | None = None):
    """Merge equal-rank partial shapes dim by dim (dim `skip` excepted, it is left None)."""
    shapes = ", ".join(fmt_shape(t.shape) for t in types)
    if len({t.rank for t in types}) > 1:
        raise ShapeError(f"{what} must have one rank, got {shapes}")
    out = []
    for i in range(types[0].rank):
        d = None
        if i != skip:
            for t in types:
                d = merge_dim(d, t.shape[i], f"{what} differ in dim {i} ({shapes})")
        out.append(d)
    return out


# --- reshape -------------------------------------------------------------------------------------
class Reshape(Op):
    """Reshape to a static target; one entry may be -1 (inferred from the element count)."""
    name = "reshape"

    def __init__(self, shape):
        self.shape = tuple(shape)

    def infer(self, x):
        target = self.shape
        if any(d is None or not isinstance(d, (int, np.integer)) or d < -1 for d in target):
            raise ShapeError(f"target shape {target} must hold ints >= 0 or one -1 (no None)")
        if sum(d == -1 for d in target) > 1:
            raise ShapeError(f"target shape {target} has more than one -1")
        known = _prod(d for d in target if d != -1)
        if all(d is not None for d in x.shape):
            n = _prod(x.shape)
            if -1 in target:
                if known == 0 or n % known:
                    raise ShapeError(f"cannot reshape {fmt_shape(x.shape)} ({n} elements) to "
                                     f"{list(target)}")
                return TensorType(tuple(n // known if d == -1 else d for d in target), x.dtype)
            if n != known:
                raise ShapeError(f"cannot reshape {fmt_shape(x.shape)} ({n} elements) to "
                                 f"{list(target)} ({known} elements)")
            return TensorType(target, x.dtype)
        x_known = _prod(d for d in x.shape if d is not None)
        if -1 not in target and x_known and known % x_known:
            raise ShapeError(f"cannot reshape {fmt_shape(x.shape)} (a multiple of {x_known} "
                             f"elements) to {list(target)} ({known} elements)")
        return TensorType(tuple(None if d == -1 else d for d in target), x.dtype)

    def compute(self, xp, x):
        return xp.reshape(x, self.shape)

    def vjp(self, node, g):
        return [reshape_like(g, node.inputs[0])]

    def flops(self, node):
        return 0


class ReshapeLike(Op):
    """reshape_like(x, like): x reshaped to like's runtime shape (reshape's gradient)."""
    name = "reshape_like"

    def infer(self, x, like):
        xn, ln = (_prod(t.shape) if all(d is not None for d in t.shape) else None
                  for t in (x, like))
        if xn is not None and ln is not None and xn != ln:
            raise ShapeError(f"cannot reshape {fmt_shape(x.shape)} like {fmt_shape(like.shape)}")
        return TensorType(like.shape, x.dtype)

    def compute(self, xp, x, like):
        return xp.reshape(x, like.shape)

    def vjp(self, node, g):
        return [reshape_like(g, node.inputs[0]), None]

    def flops(self, node):
        return 0


class ReshapeDynamic(Op):
    """Reshape to a target whose sizes come (partly) at run time (tf.reshape with tensors in the
    shape). Each entry of `shape` is one target size:
      an int >= 0, or -1 (inferred from the element count);
      ('dim', i, axis): the size of `axis` of input i (read for its shape only, so its size is
        known wherever that input's shape is: reshape(y, [rg.shape(x)[0], -1]));
      ('value', i): the value of input i, a scalar int;
      ('vector', i, k): entry k of input i, a 1-D int vector (an opaque shape tensor).
    Input 0 is x. The gradient reshapes back to x's run-time shape."""
    name = "reshape_dynamic"

    def __init__(self, shape):
        self.shape = tuple(tuple(e) if isinstance(e, (tuple, list)) else int(e) for e in shape)

    @property
    def shape_inputs(self):
        """Inputs read for their shape only: those only 'dim' entries name."""
        dims = {e[1] for e in self.shape if isinstance(e, tuple) and e[0] == "dim"}
        data = {e[1] for e in self.shape if isinstance(e, tuple) and e[0] != "dim"}
        return tuple(sorted(dims - data - {0}))

    def infer(self, x, *extra):
        types = (x,) + extra
        dims = []
        for e in self.shape:
            if not isinstance(e, tuple):
                if e < -1:
                    raise ShapeError(f"target sizes must be >= 0 or -1, got {e}")
                dims.append(e)
                continue
            if not 0 <= e[1] < len(types):
                raise ShapeError(f"shape entry {e} names input {e[1]} of {len(types)}")
            t = types[e[1]]
            if e[0] == "dim":
                dims.append(t.shape[_axis_in(e[2], t.rank)])
                continue
            if not np.issubdtype(t.dtype, np.integer):
                raise TypeError(f"a run-time target size must be int32 or int64, got {t}")
            if e[0] == "value" and t.rank != 0:
                raise ShapeError(f"a run-time target size must be a scalar, got {t}")
            if e[0] == "vector" and (t.rank != 1 or (t.shape[0] is not None
                                                     and not 0 <= e[2] < t.shape[0])):
                raise ShapeError(f"entry {e[2]} of a target shape vector {t} does not exist")
            dims.append(None)
        if dims.count(-1) > 1:
            raise ShapeError(f"target shape {fmt_shape(tuple(dims))} has more than one -1")
        # sizes the target takes from x's own unknown dims cancel against them, so the -1 of
        # reshape(x, [rg.shape(x)[0], -1]) is known when x's other dims are
        used, rest_t = set(), []
        for e, d in zip(self.shape, dims):
            if isinstance(e, tuple) and e[0] == "dim" and e[1] == 0 and d is None and \
                    e[2] % x.rank not in used:
                used.add(e[2] % x.rank)
                continue
            if d != -1:
                rest_t.append(d)
        rest_x = [d for a, d in enumerate(x.shape) if a not in used]
        if None not in rest_x and None not in rest_t:
            n, known = _prod(rest_x), _prod(rest_t)
            what = (f"{fmt_shape(x.shape)} ({n} elements)" if len(rest_x) == x.rank
                    else fmt_shape(x.shape))
            if -1 in dims:
                if known == 0 or n % known:
                    raise ShapeError(f"cannot reshape {what} to {fmt_shape(tuple(dims))}")
                dims[dims.index(-1)] = n // known
            elif n != known:
                raise ShapeError(f"cannot reshape {what} to {fmt_shape(tuple(dims))}")
        return TensorType(tuple(None if d == -1 else d for d in dims), x.dtype)

    def target(self, x, extra) -> list:
        """The run-time target shape (ints, one -1 at most)."""
        arrays = (x,) + tuple(extra)
        out = []
        for e in self.shape:
            if not isinstance(e, tuple):
                out.append(e)
            elif e[0] == "dim":
                out.append(int(arrays[e[1]].shape[e[2]]))
            elif e[0] == "value":
                out.append(int(arrays[e[1]]))
            else:
                out.append(int(arrays[e[1]][e[2]]))
        return out

    def compute(self, xp, x, *extra):
        target = self.target(x, extra)
        known = _prod(d for d in target if d != -1)
        bad = any(d < -1 for d in target) or target.count(-1) > 1 or (
            known != x.size if -1 not in target else (known == 0 or x.size % known))
        if bad:
            raise InvalidArgumentError(
                f"input to reshape is a tensor of shape {list(x.shape)} "
                f"({x.size} values), but the requested shape is {target}")
        return xp.reshape(x, target)

    def vjp(self, node, g):
        return [reshape_like(g, node.inputs[0])] + [None] * (len(node.inputs) - 1)

    def flops(self, node):
        return 0


# --- transpose, expand_dims, squeeze ------------------------------------------------------------
class Transpose(Op):
    name = "transpose"

    def __init__(self, perm):
        self.perm = tuple(int(p) for p in perm)

    def infer(self, x):
        if sorted(self.perm) != list(range(x.rank)):
            raise ShapeError(f"perm {list(self.perm)} is not a permutation of the "
                             f"{x.rank} axes of {fmt_shape(x.shape)}")
        return TensorType(tuple(x.shape[p] for p in self.perm), x.dtype)

    def compute(self, xp, x):
        return xp.transpose(x, self.perm)

    def vjp(self, node, g):
        return [transpose(g, tuple(int(i) for i in np.argsort(self.perm)))]

    def flops(self, node):
        return 0


class Contiguous(Op):
    """x itself, laid out C-contiguously once for readers that would each copy it or read it
    slowly as a view: the time-major view of batch-major input that the input projections and
    the weight gradient all read (passes/share_copies.py), and a transposed weight that a
    loop's products read every step (passes/contiguous_weights.py). Large copies go into a
    buffer reused across runs; under a memory plan or in a tracked run x passes through as
    is and each reader copies for itself, so no such run holds a copy the plan does not see."""
    name = "contiguous"
    foldable = False

    def infer(self, x):
        return x

    def compute(self, xp, x):
        return x

    def aliases_input(self, node):
        return 0   # (memory plans see a view: the runs they plan do not copy here)

    def vjp(self, node, g):
        return [g]

    def flops(self, node):
        return 0


class ExpandDims(Op):
    name = "expand_dims"

    def __init__(self, axis: int):
        self.axis = int(axis)

    def infer(self, x):
        axis = _axis_in(self.axis, x.rank + 1)
        return TensorType(x.shape[:axis] + (1,) + x.shape[axis:], x.dtype)

    def compute(self, xp, x):
        return xp.expand_dims(x, self.axis)

    def vjp(self, node, g):
        return [squeeze(g, _axis_in(self.axis, node.inputs[0].type.rank + 1))]

    def flops(self, node):
        return 0


class Squeeze(Op):
    """Drop the listed size-1 axes (the builder resolves axis=None from the static shape)."""
    name = "squeeze"

    def __init__(self, axis):
        self.axis = tuple(int(a) for a in axis)

    def infer(self, x):
        axes = {_axis_in(a, x.rank) for a in self.axis}
        for a in axes:
            if x.shape[a] not in (1, None):
                raise ShapeError(f"cannot squeeze axis {a} of {fmt_shape(x.shape)}: its size is "
                                 f"{x.shape[a]}, not 1")
        return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)

    def compute(self, xp, x):
        return xp.squeeze(x, axis=self.axis) if self.axis else x

    def vjp(self, node, g):
        return [reshape_like(g, node.inputs[0])]

    def flops(self, node):
        return 0


# --- concat / split ------------------------------------------------------------------------------
class Concat(Op):
    name = "concat"

    def __init__(self, axis: int):
        self.axis = int(axis)

    def infer(self, *xs):
        dtype = same_dtype(self.name, *xs)
        if xs[0].rank == 0:
            raise ShapeError("cannot concatenate scalars (use stack)")
        axis = _axis_in(self.axis, xs[0].rank)
        shape = _merge_shapes(xs, "inputs", skip=axis)
        sizes = [t.shape[axis] for t in xs]
        shape[axis] = None if None in sizes else sum(sizes)
        return TensorType(tuple(shape), dtype)

    def compute(self, xp, *xs):
        return xp.concatenate(xs, axis=self.axis)

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        # inside a fused kernel (see passes/fuse.py: a join of its outputs)
        return [f"{res} = xp.concatenate(({', '.join(args)},), axis={int(self.axis)})"]

    def vjp(self, node, g):
        return apply(ConcatGrad(self.axis), [g, *node.inputs])

    def flops(self, node):
        return 0


class ConcatGrad(Op):
    """concat_grad(g, *xs): g cut along `axis` into pieces shaped like each x at run time."""
    name, multi_output = "concat_grad", True

    def __init__(self, axis: int):
        self.axis = int(axis)

    def infer(self, g, *xs):
        return [TensorType(x.shape, g.dtype) for x in xs]

    def compute(self, xp, g, *xs):
        axis = self.axis % g.ndim
        cuts = list(itertools.accumulate(x.shape[axis] for x in xs[:-1]))
        return tuple(xp.split(g, cuts, axis=axis))

    def vjp(self, node, *gs):
        pieces = [gi if gi is not None else zeros_like(out) for gi, out in zip(gs, node.outputs)]
        return [concat(pieces, self.axis)] + [None] * (len(node.inputs) - 1)

    def flops(self, node):
        return 0


class Split(Op):
    """Split along `axis` into `num_or_size_splits` equal parts or parts of the given sizes."""
    name, multi_output = "split", True

    def __init__(self, num_or_size_splits, axis: int):
        if isinstance(num_or_size_splits, (int, np.integer)):
            self.num_or_size_splits = int(num_or_size_splits)
        else:
            self.num_or_size_splits = tuple(int(s) for s in num_or_size_splits)
        self.axis = int(axis)

    def infer(self, x):
        if x.rank == 0:
            raise ShapeError("cannot split a scalar")
        axis = _axis_in(self.axis, x.rank)
        d = x.shape[axis]
        spec = self.num_or_size_splits
        if isinstance(spec, int):
            if spec < 1:
                raise ShapeError(f"number of splits must be >= 1, got {spec}")
            if d is not None and d % spec:
                raise ShapeError(f"axis {axis} of {fmt_shape(x.shape)} (size {d}) does not split "
                                 f"into {spec} equal parts")
            sizes = [None if d is None else d // spec] * spec
        else:
            if not spec or any(s < -1 for s in spec) or spec.count(-1) > 1:
                raise ShapeError(f"size_splits {list(spec)} must be sizes >= 0 with at most one -1")
            rest = sum(s for s in spec if s != -1)
            if d is not None and (rest > d or (-1 not in spec and rest != d)):
                raise ShapeError(f"size_splits {list(spec)} do not add up to size {d} of axis "
                                 f"{axis} of {fmt_shape(x.shape)}")
            sizes = [(None if d is None else d - rest) if s == -1 else s for s in spec]
        return [TensorType(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in sizes]

    def compute(self, xp, x):
        axis = self.axis % x.ndim
        spec = self.num_or_size_splits
        d = x.shape[axis]
        if isinstance(spec, int):
            if d % spec:
                raise ValueError(f"size {d} does not split into {spec} equal parts")
            sizes = [d // spec] * spec
        else:
            rest = sum(s for s in spec if s != -1)
            sizes = [d - rest if s == -1 else s for s in spec]
            if sum(sizes) != d or min(sizes) < 0:
                raise ValueError(f"size_splits {list(spec)} do not add up to {d}")
        # plain slices: xp.split's generic path costs tens of microseconds per call
        lead = (slice(None),) * axis
        ends = list(itertools.accumulate(sizes))
        return tuple(x[lead + (slice(e - n, e),)] for n, e in zip(sizes, ends))

    def vjp(self, node, *gs):
        pieces = [gi if gi is not None else zeros_like(out) for gi, out in zip(gs, node.outputs)]
        return [concat(pieces, self.axis)]

    def flops(self, node):
        return 0


class ColumnBlock(Op):
    """x[..., start:stop]: one part of a split along the last axis. The fusion pass makes these
    from splits inside loop bodies so a fused kernel can read an LSTM's gate blocks straight out
    of [B, 4H]. A view of its input, so a fused kernel never writes into it (`view`)."""
    name, fusible, view = "column_block", True, True

    def __init__(self, start: int, stop: int):
        self.start, self.stop = int(start), int(stop)

    def infer(self, x):
        if x.rank < 1 or (x.shape[-1] is not None and x.shape[-1] < self.stop):
            raise ShapeError(f"columns {self.start}:{self.stop} are not all inside {x}")
        return TensorType(x.shape[:-1] + (self.stop - self.start,), x.dtype)

    def compute(self, xp, x):
        return x[..., self.start:self.stop]

    def emit(self, res, args, out, ns, key, dtype=None, rank=None):
        return [f"{res} = {args[0]}[..., {int(self.start)}:{int(self.stop)}]"]

    def c_index(self, index: tuple, shift) -> tuple:
        """Where element `index` of the block lies in its input (the CUDA generator's index
        math, backends/cupy/cuda_codegen.py): the last axis moved by `start`; `shift(i, k)` is
        index i plus k in the generator's own terms."""
        return tuple(index[:-1]) + (shift(index[-1], int(self.start)),)

    def flops(self, node):
        return 0


# --- stack / unstack -----------------------------------------------------------------------------
class Stack(Op):
    name = "stack"

    def __init__(self, axis: int):
        self.axis = int(axis)

    def infer(self, *xs):
        dtype = same_dtype(self.name, *xs)
        shape = _merge_shapes(xs, "inputs")
        axis = _axis_in(self.axis, len(shape) + 1)
        return TensorType(tuple(shape[:axis]) + (len(xs),) + tuple(shape[axis:]), dtype)

    def compute(self, xp, *xs):
        return xp.stack(xs, axis=self.axis)

    def vjp(self, node, g):
        return unstack(g, num=len(node.inputs), axis=self.axis)

    def flops(self, node):
        return 0


class Unstack(Op):
    name, multi_output = "unstack", True

    def __init__(self, num: int, axis: int):
        self.num = int(num)
        self.axis = int(axis)

    def infer(self, x):
        if x.rank == 0:
            raise ShapeError("cannot unstack a scalar")
        axis = _axis_in(self.axis, x.rank)
        merge_dim(x.shape[axis], self.num, f"num={self.num} does not match size of axis {axis} "
                                           f"of {fmt_shape(x.shape)}")
        return [TensorType(x.shape[:axis] + x.shape[axis + 1:], x.dtype)] * self.num

    def compute(self, xp, x):
        axis = self.axis % x.ndim
        if x.shape[axis] != self.num:
            raise ValueError(f"unstack expected {self.num} entries along axis {axis}, got "
                             f"shape {x.shape}")
        lead = (slice(None),) * axis
        return tuple(x[lead + (i,)] for i in range(self.num))

    def vjp(self, node, *gs):
        pieces = [gi if gi is not None else zeros_like(out) for gi, out in zip(gs, node.outputs)]
        return [stack(pieces, self.axis)]

    def flops(self, node):
        return 0


# --- basic indexing ------------------------------------------------------------------------------
def _encode_key(key) -> tuple:
    """x[key] as plain data: ints, ('slice', start, stop, step), 'newaxis' and '...'."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, Value):
            raise TypeError("indexing with a tensor is not basic indexing; use rg.gather")
        if isinstance(k, (bool, np.bool_)):
            raise TypeError("boolean indices are not supported; use rg.where")
        if isinstance(k, (int, np.integer)):
            out.append(int(k))
        elif isinstance(k, slice):
            parts = [k.start, k.stop, k.step]
            if not all(p is None or isinstance(p, (int, np.integer)) for p in parts):
                raise TypeError(f"slice bounds must be ints or None, got {k}")
            if k.step == 0:
                raise ValueError("slice step cannot be zero")
            out.append(("slice",) + tuple(None if p is None else int(p) for p in parts))
        elif k is None:
            out.append("newaxis")
        elif k is Ellipsis:
            out.append("...")
        else:
            raise TypeError(f"unsupported index {k!r}: use ints, slices, None or ...")
    if out.count("...") > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    return tuple(out)


def _decode_key(key) -> tuple:
    return tuple(slice(*k[1:]) if isinstance(k, tuple) else None if k == "newaxis"
                 else Ellipsis if k == "..." else k for k in key)


def _fmt_key(key) -> str:
    def one(k):
        if isinstance(k, tuple):
            a, b, c = ("" if p is None else str(p) for p in k[1:])
            return f"{a}:{b}" + (f":{c}" if c else "")
        return {"newaxis": "None"}.get(k, str(k))
    return ", ".join(one(k) for k in key)


class Getitem(Op):
    """x[key] with basic indexing: ints, slices (any step), None/newaxis and Ellipsis."""
    name = "getitem"

    def __init__(self, key):
        self.key = _encode_key(key)

    def infer(self, x):
        n_index = sum(k not in ("newaxis", "...") for k in self.key)
        if n_index > x.rank:
            raise ShapeError(f"too many indices ({n_index}) for {fmt_shape(x.shape)}")
        key = list(self.key)
        if "..." in key:
            i = key.index("...")
            key[i:i + 1] = [("slice", None, None, None)] * (x.rank - n_index)
        else:
            key += [("slice", None, None, None)] * (x.rank - n_index)
        out, axis = [], 0
        for k in key:
            if k == "newaxis":
                out.append(1)
                continue
            d = x.shape[axis]
            if isinstance(k, tuple):
                out.append(None if d is None else len(range(*slice(*k[1:]).indices(d))))
            elif d is not None and not -d <= k < d:
                raise ShapeError(f"index {k} is out of range for axis {axis} with size {d}")
            axis += 1
        return TensorType(tuple(out), x.dtype)

    def compute(self, xp, x):
        return xp.asarray(x[_decode_key(self.key)])  # full integer indexing yields a scalar

    def vjp(self, node, g):
        return [apply(GetitemGrad(_decode_key(self.key)), [g, node.inputs[0]])]

    def flops(self, node):
        return 0

    def __repr__(self):
        return f"getitem[{_fmt_key(self.key)}]"


class GetitemGrad(Op):
    """getitem_grad(g, x): zeros of x's runtime shape with g written at x[key]."""
    name = "getitem_grad"

    def __init__(self, key):
        self.key = _encode_key(key)

    def infer(self, g, x):
        return TensorType(x.shape, g.dtype)

    def compute(self, xp, g, x):
        out = xp.zeros(x.shape, dtype=g.dtype)
        out[_decode_key(self.key)] = g  # basic indexing never repeats a position: no add needed
        return out

    def vjp(self, node, g):
        return [getitem(g, _decode_key(self.key)), None]

    def __repr__(self):
        return f"getitem_grad[{_fmt_key(self.key)}]"


# --- broadcast_to, shape, dim --------------------------------------------------------------------
class BroadcastTo(Op):
    name = "broadcast_to"

    def __init__(self, shape):
        self.shape = tuple(int(d) for d in shape)

    def infer(self, x):
        target = self.shape
        if any(d < 0 for d in target):
            raise ShapeError(f"target shape {list(target)} must hold sizes >= 0")
        ok = x.rank <= len(target) and all(
            d is None or d == 1 or d == t for d, t in zip(reversed(x.shape), reversed(target)))
        if not ok:
            raise ShapeError(f"cannot broadcast {fmt_shape(x.shape)} to {list(target)}")
        return TensorType(target, x.dtype)

    def compute(self, xp, x):
        return xp.broadcast_to(x, self.shape)

    def vjp(self, node, g):
        return [sum_to_like(g, node.inputs[0])]


class Shape(Op):
    """The runtime shape of x as an int32 vector."""
    name, differentiable = "shape", False

    def infer(self, x):
        return TensorType((x.rank,), np.int32)

    def compute(self, xp, x):
        return xp.asarray(x.shape, dtype=xp.int32)

    def flops(self, node):
        return 0


class Dim(Op):
    """The runtime size of x along `axis` as an int32 scalar."""
    name, differentiable, shape_inputs = "dim", False, (0,)

    def __init__(self, axis: int):
        self.axis = int(axis)

    def infer(self, x):
        _axis_in(self.axis, x.rank)
        return TensorType((), np.int32)

    def compute(self, xp, x):
        return xp.asarray(x.shape[self.axis], dtype=xp.int32)

    def flops(self, node):
        return 0


# --- builders ------------------------------------------------------------------------------------
def _int_dtype(v: Value) -> bool:
    return np.issubdtype(v.dtype, np.integer)


def _scalar_entry(v: Value):
    """A target size given as a scalar int Value: an int where it is a constant, ('dim', src,
    axis, ('value', v)) where it reads a size of src (rg.dim(src, a), rg.shape(src)[a]), else
    ('value', v)."""
    if v.type.rank != 0 or not _int_dtype(v):
        raise TypeError(f"a size in a target shape must be an int or a scalar int32/int64 "
                        f"tensor, got {v!r}")
    op = v.node.op
    if op.name == "constant":
        return int(np.asarray(op.value))
    if isinstance(op, Dim):
        src = v.node.inputs[0]
        return ("dim", src, _axis_in(op.axis, src.type.rank), ("value", v))
    if isinstance(op, Getitem) and len(op.key) == 1 and isinstance(op.key[0], int) and \
            isinstance(v.node.inputs[0].op, Shape):
        src = v.node.inputs[0].node.inputs[0]
        return ("dim", src, _axis_in(op.key[0], src.type.rank, "index"), ("value", v))
    return ("value", v)


def _vector_entries(v: Value) -> list:
    """The target sizes of a 1-D int shape Value: rg.shape(y), rg.stack([...]) and constants
    are taken apart; any other vector is read entry by entry at run time."""
    if v.type.rank != 1 or not _int_dtype(v):
        raise TypeError(f"a target shape tensor must be a 1-D int32/int64 vector, got {v!r}")
    n = v.shape[0]
    if n is None:
        raise ShapeError(f"the length of the target shape {v!r} must be known when the graph is "
                         "built (the rank of the result)")
    op = v.node.op
    if op.name == "constant":
        return [int(d) for d in np.asarray(op.value).reshape(-1)]
    if isinstance(op, Shape):
        src = v.node.inputs[0]
        return [("dim", src, a, ("vector", v, a)) for a in range(src.type.rank)]
    if isinstance(op, Stack) and all(i.type.rank == 0 for i in v.node.inputs):
        return [_scalar_entry(i) for i in v.node.inputs]
    return [("vector", v, k) for k in range(n)]


def reshape(tensor, shape, name=None):
    """`tensor` with a new shape (tf.reshape). `shape` is a list of ints (one may be -1), a
    list mixing ints and scalar int Values (rg.shape(x)[0], rg.dim(x, 0)), or a 1-D int Value
    (rg.shape(y), rg.stack([...])). Sizes known at build time stay known in the result's static
    shape."""
    try:
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        elif isinstance(shape, np.ndarray):
            shape = shape.reshape(-1).tolist() if shape.ndim == 1 else shape
        if isinstance(shape, Value):
            entries = _vector_entries(shape)
        elif isinstance(shape, (list, tuple)):
            entries = []
            for d in shape:
                if isinstance(d, Value):
                    entries.append(_scalar_entry(d))
                elif isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)):
                    entries.append(int(d))
                else:
                    raise TypeError(f"target shape entries must be ints or scalar int tensors, "
                                    f"got {d!r}")
        else:
            raise TypeError(f"the target shape must be a list of sizes or a 1-D int tensor, "
                            f"got {shape!r}")
    except (TypeError, ShapeError) as exc:   # a bad target: name the user's line
        raise type(exc)(f"reshape at {user_location()}: {exc}") from None
    x = as_value(tensor)
    # a size whose source has a static size is that int; sources of another graph (a loop
    # body's outer values) are read as values, not captured into it
    here = get_default_graph()
    static, inputs, slots = [], [x], {}
    for e in entries:
        if isinstance(e, tuple) and e[0] == "dim":
            src, axis = e[1], e[2]
            if src.shape[axis] is not None:
                static.append(int(src.shape[axis]))
                continue
            if src is not x and src.graph is not here:
                e = e[3]   # (the scalar or vector itself, not its source)
            else:
                e = e[:3]
        if not isinstance(e, tuple):
            static.append(e)
            continue
        role, src = e[0], e[1]
        if src is x and role == "dim":
            i = 0
        else:
            i = slots.setdefault((id(src), role == "dim"), len(inputs))
            if i == len(inputs):
                inputs.append(src)
        static.append((role, i) + tuple(e[2:]))
    if all(not isinstance(e, tuple) for e in static):
        return apply(Reshape(static), [x], name=name)
    return apply(ReshapeDynamic(static), inputs, name=name)


def reshape_like(x, like, name=None):
    """x reshaped to the runtime shape of `like` (same element count)."""
    return apply(ReshapeLike(), [x, like], name=name)


def contiguous(x, name=None):
    """x itself, read from one C-contiguous copy by its readers where buffers are pooled (the
    compiler inserts it: passes/share_copies.py)."""
    return apply(Contiguous(), [as_value(x)], name=name)


def transpose(a, perm=None, name=None):
    """Permute the axes of `a`; perm=None reverses them (tf.transpose)."""
    x = as_value(a)
    if perm is None:
        perm = tuple(reversed(range(x.type.rank)))
    return apply(Transpose(perm), [x], name=name)


def expand_dims(input, axis=None, name=None, dim=None):  # noqa: A002 (TF's argument name)
    """Insert a size-1 axis at `axis` (-rank-1 <= axis <= rank); dim= is TF1's deprecated
    name for axis (tf.expand_dims)."""
    if dim is not None:
        if axis is not None:
            raise ValueError(f"expand_dims at {user_location()}: cannot specify both 'axis' "
                             "and 'dim'")
        axis = dim
    if axis is None:
        raise ValueError(f"expand_dims at {user_location()}: 'axis' must be given")
    return apply(ExpandDims(axis), [input], name=name)


def squeeze(input, axis=None, name=None, squeeze_dims=None):  # noqa: A002 (TF's name)
    """Drop size-1 axes: the listed ones, or with axis=None every axis statically of size 1
    (squeeze_dims=: TF1's deprecated name for axis)."""
    if squeeze_dims is not None:
        if axis is not None:
            raise ValueError(f"squeeze at {user_location()}: cannot specify both 'axis' and "
                             "'squeeze_dims'")
        axis = squeeze_dims
    x = as_value(input)
    if axis is None:
        axis = tuple(i for i, d in enumerate(x.shape) if d == 1)
    elif isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return apply(Squeeze(axis), [x], name=name)


def concat(values, axis, name=None):
    """Join a list of tensors along an existing axis (tf.concat(values, axis))."""
    values = list(values)
    if not values:
        raise ValueError("concat needs at least one value")
    if len(values) == 1:
        return as_value(values[0])
    return apply(Concat(axis), values, name=name)


def split(value, num_or_size_splits, axis=0, num=None, name=None):
    """Split `value` along `axis` into n equal parts (int) or parts of the given sizes (one may
    be -1); returns a list of Values (tf.split). `num`, TF1's count of outputs for sizes whose
    length is not known statically, must agree with the parts when given."""
    if num is not None:
        parts = num_or_size_splits if isinstance(num_or_size_splits, (int, np.integer)) \
            else len(list(num_or_size_splits))
        if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num != parts:
            raise ValueError(f"split at {user_location()}: num={num!r} does not match "
                             f"num_or_size_splits={num_or_size_splits!r} ({parts} parts)")
    return apply(Split(num_or_size_splits, axis), [value], name=name)


def stack(values, axis=0, name=None):
    """Stack a list of same-shaped tensors along a new axis (tf.stack)."""
    values = list(values)
    if not values:
        raise ValueError("stack needs at least one value")
    like = next((v for v in values if isinstance(v, Value)), None)
    if like is not None:   # numbers beside a tensor take its dtype, as TF1's stack converts them
        values = [v if isinstance(v, Value) else as_value(v, dtype=like.dtype) for v in values]
    return apply(Stack(axis), values, name=name)


def unstack(value, num=None, axis=0, name=None):
    """Split `value` along `axis` into a list of `num` tensors with that axis removed; num
    defaults to the axis' static size (tf.unstack)."""
    x = as_value(value)
    if num is None:
        rank = x.type.rank
        d = x.shape[axis] if -rank <= axis < rank else 0  # Unstack.infer reports a bad axis
        if d is None:
            raise ValueError(f"unstack: the size of axis {axis} of {x!r} is unknown until run "
                             "time; pass num=")
        num = d
    return apply(Unstack(num, axis), [x], name=name)


def getitem(x, key, name=None):
    """x[key] with NumPy basic indexing (ints, slices with steps, None, ...)."""
    try:
        op = Getitem(key)
    except (TypeError, ValueError, IndexError) as exc:  # a bad key: name the user's line
        raise type(exc)(f"getitem at {user_location()}: {exc}") from None
    return apply(op, [x], name=name)


def broadcast_to(x, shape, name=None):
    """x broadcast to a static shape (tf.broadcast_to)."""
    return apply(BroadcastTo(shape), [x], name=name)


def shape(x, name=None):
    """The runtime shape of x as an int32 vector (tf.shape)."""
    return apply(Shape(), [x], name=name)


def dim(x, axis, name=None):
    """The runtime size of x along `axis` as an int32 scalar (for rg.zeros([rg.dim(x, 0), n]))."""
    return apply(Dim(axis), [x], name=name)
