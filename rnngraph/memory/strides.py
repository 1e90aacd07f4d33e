"""Memory layouts of the arrays a schedule makes, as far as the peak model needs them: whether a
reshape is a view or a copy.

NumPy and CuPy reshape without copying only where the axes being merged or split are laid out
one after the other in memory; a reshape of a transposed view (dynamic_rnn's batch-major
outputs read by a dense head, `reshape(outputs, [-1, H])`) copies the whole array. The peak
model (memory/simulate.py) asks `layout` for each output's strides and `reshaped` whether a
reshape can keep its input's buffer.

Strides are counted in elements. A layout is a tuple of strides, or None where it is not
known here; the model then counts a reshape of it as a copy (the safe side). A kernel's new array
is C-contiguous where every input runs its axes in C order. Otherwise NumPy lays most results
out like their inputs (ufuncs, reductions, softmax, astype, concatenate, stack, one_hot...), so
the layout is unknown, except for ops known to allocate C order whatever they read (2-D
matmul, gather). reverse_sequence returns a transposed view of its time-major result.
"""
from __future__ import annotations

from itertools import accumulate

from ..ops.host_rows import time_major_perm

def c_strides(shape) -> tuple:
    """The strides of a C-contiguous array of `shape`."""
    out = list(accumulate(reversed([int(d) for d in shape[1:]]), lambda a, b: a * b,
                          initial=1))
    return tuple(reversed(out))


def is_contiguous(shape, strides) -> bool:
    """Whether an array of `shape` with `strides` is C-contiguous (size-1 axes ignored)."""
    if strides is None:
        return False
    if any(int(d) == 0 for d in shape):
        return True
    want = c_strides(shape)
    return all(int(d) == 1 or s == w for d, s, w in zip(shape, strides, want))


def reshaped(shape, strides, new_shape):
    """The strides of `new_shape` viewing an array of `shape` and `strides` without a copy,
    or None where a reshape must copy (NumPy's rule: each group of old axes merged into or
    split from new axes must be contiguous within itself)."""
    if strides is None:
        return None
    shape, new_shape = [int(d) for d in shape], [int(d) for d in new_shape]
    if any(d == 0 for d in shape) or is_contiguous(shape, strides):
        return c_strides(new_shape)
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    new = [i for i, d in enumerate(new_shape) if d != 1]
    out = [0] * len(new_shape)
    oi = ni = 0
    while oi < len(old) and ni < len(new):
        oj, nj = oi + 1, ni + 1
        op, np_ = old[oi][0], new_shape[new[ni]]
        while op != np_:
            if np_ < op:
                np_ *= new_shape[new[nj]]
                nj += 1
            else:
                op *= old[oj][0]
                oj += 1
        for k in range(oi, oj - 1):     # the merged old axes must follow one another
            if old[k][1] != old[k + 1][0] * old[k + 1][1]:
                return None
        s = old[oj - 1][1]
        for k in range(nj - 1, ni - 1, -1):
            out[new[k]] = s
            s *= new_shape[new[k]]
        oi, ni = oj, nj
    return tuple(out)


def getitem(key, shape, strides):
    """The strides of x[key] (basic indexing, ops/shape.py's encoded key) for x of `shape`
    and `strides`."""
    if strides is None:
        return None
    n_index = sum(k not in ("newaxis", "...") for k in key)
    key = list(key)
    fill = [("slice", None, None, None)] * (len(shape) - n_index)
    if "..." in key:
        i = key.index("...")
        key[i:i + 1] = fill
    else:
        key += fill
    out, axis = [], 0
    for k in key:
        if k == "newaxis":
            out.append(0)
            continue
        if isinstance(k, tuple):
            out.append(strides[axis] * (k[3] if k[3] is not None else 1))
        axis += 1
    return tuple(out)


def broadcast(shape, strides, new_shape):
    """The strides of `shape` broadcast to `new_shape` (new and stretched axes: 0)."""
    if strides is None:
        return None
    lead = len(new_shape) - len(shape)
    out = [0] * lead
    for d, s, n in zip(shape, strides, new_shape[lead:]):
        out.append(0 if int(d) == 1 and int(n) != 1 else s)
    return tuple(out)


# ops that allocate their result like an input that is not C-ordered, a broadcast (stride-0)
# axis taken as the innermost one (NumPy's 'K' order: astype, concatenate, stack, *_like)
LIKE_INPUTS = frozenset({"cast", "concat", "stack", "zeros_like", "ones_like"})
# ops whose kernels allocate a C-contiguous result whatever their inputs' layouts
ALWAYS_CONTIGUOUS = frozenset({"gather", "constant", "variable", "fill",
                               "accumulator_zeros"})
RESHAPES = frozenset({"reshape", "reshape_like"})
_SAME = frozenset({"identity", "stop_gradient", "check_numerics", "sum_to", "sum_to_like",
                   "cast", "contiguous"})


class Layouts:
    """The strides of the values of one simulated schedule: contiguous unless recorded.
    `output(node, j, view)` records the strides of output j of `node` (a view of input
    `view`, or a new buffer where `view` is None) and returns whether the view holds: False
    where the kernel must copy (a reshape of a non-contiguous layout)."""

    def __init__(self, info):
        self.info = info
        self.strides: dict = {}     # Value -> strides, or None (unknown); absent: contiguous

    def _shape(self, v):
        s = self.info.type(v).shape
        return None if any(d is None for d in s) else tuple(int(d) for d in s)

    def of(self, v):
        """The strides of `v` (None: unknown)."""
        if v in self.strides:
            return self.strides[v]
        s = self._shape(v)
        return None if s is None else c_strides(s)

    def stretched(self, v, axis: int) -> bool:
        """Whether `v` is known to be a broadcast along `axis` (stride 0 over more than one
        row), as a gradient of a sum is."""
        s, st = self._shape(v), self.of(v)
        return s is not None and st is not None and s[axis] > 1 and st[axis] == 0

    def _set(self, v, strides) -> None:
        s = self._shape(v)
        if s is not None and strides is not None and is_contiguous(s, strides):
            self.strides.pop(v, None)
        else:
            self.strides[v] = strides

    def output(self, node, j: int, view) -> bool:
        op, out = node.op, node.outputs[j]
        shape = self._shape(out)
        if view is None:   # a new buffer
            if shape is None:
                self._set(out, None)
            elif op.name == "reverse_sequence":   # (time-major, moved back: a transpose)
                self._set(out, _reversed_layout(op, shape))
            elif op.name in ALWAYS_CONTIGUOUS or (op.name == "matmul" and len(shape) == 2):
                self.strides.pop(out, None)
            else:   # NumPy's 'K' order: C order unless the inputs agree on another
                at = op.axis % len(shape) if op.name == "stack" else None
                ok = self._c_order_kept(node.inputs, shape, op.name in LIKE_INPUTS, at)
                self._set(out, c_strides(shape) if ok else None)
            return True
        src, st = self._shape(view), self.of(view)
        if shape is None or src is None or st is None:
            if op.name in RESHAPES:   # (not known to be a view: counted as a copy)
                self.strides.pop(out, None)
                return False
            self._set(out, None)
            return True
        name = op.name
        if name in RESHAPES:
            new = reshaped(src, st, shape)
            if new is None:
                self.strides.pop(out, None)   # a copy: contiguous
                return False
            self._set(out, new)
        elif name == "transpose":
            self._set(out, tuple(st[p] for p in op.perm))
        elif name == "matrix_transpose":
            self._set(out, st[:-2] + (st[-1], st[-2]))
        elif name == "getitem":
            self._set(out, getitem(op.key, src, st))
        elif name in ("broadcast_to", "broadcast_like"):
            self._set(out, broadcast(src, st, shape))
        elif name == "host_rows":   # (on the device: the time-major transpose)
            perm = time_major_perm(len(src), op.time_axis)
            self._set(out, tuple(st[p] for p in perm))
        elif name in _SAME:
            self._set(out, st)
        elif name in ("expand_dims", "squeeze"):   # size-1 axes in or out
            self._set(out, reshaped(src, st, shape))
        elif name in ("split", "concat_grad", "unstack"):
            self._set(out, _cut(op, src, st))
        else:   # a view op of its own kind: not known here
            self._set(out, st if src == shape else None)
        return True

    def _c_order_kept(self, inputs, shape, strict: bool, new_axis=None) -> bool:
        """Whether NumPy lays out a new `shape` array made from `inputs` in C order: it moves
        axis j before an earlier axis i only where no input says otherwise, an input having
        its say on the pair where it steps along both (a stretched, stride-0 axis: none for
        ufuncs; the innermost one for `strict` ops, LIKE_INPUTS). An input whose layout is
        not known here answers "not C order"; one of a higher rank (a reduction's) answers
        whether it runs in C order itself. `new_axis`: stack's axis, which its inputs lack."""
        rank = len(shape)
        layouts = []
        for v in inputs:
            s = self._shape(v)
            if s is None:
                return False
            if _prod(s) <= 1:
                continue
            st = self.of(v)
            if st is None:
                return False
            st = [0 if d == 1 else x for x, d in zip(st, s)]   # (size 1: no say)
            if len(s) > rank:
                moving = [abs(x) for x in st if x]
                if any(a < b for a, b in zip(moving, moving[1:])):
                    return False
                continue
            if new_axis is not None and len(s) == rank - 1:
                st.insert(new_axis, 0)
            layouts.append([0] * (rank - len(st)) + st)   # (new leading axes: stretched)
        for j in range(1, rank):
            for i in range(j):
                if int(shape[i]) == 1 or int(shape[j]) == 1:
                    continue
                keep = swap = False
                for st in layouts:
                    a, b = abs(st[i]), abs(st[j])
                    if (not strict or i == new_axis or j == new_axis) and (a == 0 or b == 0):
                        continue   # (a ufunc: a stretched axis has no say)
                    if a >= b and (a or b):
                        keep = True
                    elif a < b:
                        swap = True
                if swap and not keep:
                    return False
        return True


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _reversed_layout(op, shape) -> tuple:
    """The strides of reverse_sequence's result: a new time-major [T, B, ...] array (its
    seq_axis and batch_axis first), moved back to the input's axis order."""
    rank = len(shape)
    s, b = op.seq_axis % rank, op.batch_axis % rank
    order = [s, b] + [i for i in range(rank) if i not in (s, b)]
    c = c_strides([shape[i] for i in order])
    out = [0] * rank
    for j, axis in enumerate(order):
        out[axis] = c[j]
    return tuple(out)


def _cut(op, shape, strides):
    """The strides of one piece of a split or unstack of an array of `shape` and `strides`."""
    axis = getattr(op, "axis", None)
    if axis is None:
        return None
    axis %= len(shape)
    if op.name == "unstack":
        return strides[:axis] + strides[axis + 1:]
    return strides
