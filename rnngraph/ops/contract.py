"""tf.tensordot and tf.einsum, built from transpose, reshape, reduce_sum and matmul (so their
gradients, kernels for NumPy and CuPy, and save/load come from those ops).

    tensordot(a, b, 1)                  # contract a's last axis with b's first
    tensordot(a, b, [[2], [0]])         # explicit axis lists
    einsum("bth,hu->btu", x, w)         # contraction
    einsum("bqd,bkd->bqk", q, k)        # batch ('b') + contraction ('d')
    einsum("i,j->ij", u, v)             # outer product
    einsum("btd->bd", x)                # one operand: sums and transposes

Two operands: each label is a batch label (in both operands and the output), a contracted label
(in both, not the output), a free label (in one operand and the output) or summed away (in one
operand only). The operands are transposed to [batch, free, contracted] and [batch, contracted,
free], merged to 3 axes, multiplied, and split back. Sizes unknown at build time (None) are read
at run time. Not supported: '...' (ellipsis), a label repeated within one operand (traces,
diagonals), more than two operands; they raise NotImplementedError naming the equation.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError, located, user_location
from ..ir.value import Value
from .base import as_value
from .linalg import matmul
from .misc import identity
from .reduce import reduce_sum
from .shape import dim, reshape, transpose


# --- helpers -------------------------------------------------------------------------------------
def _size(x: Value, axis: int):
    """The size of x along `axis`: an int where it is known at build time, else a scalar tensor."""
    d = x.shape[axis]
    return int(d) if d is not None else dim(x, axis)


def _group_size(x: Value, axes: list, allow_minus_one: bool):
    """One reshape entry for the product of x's `axes`: an int, a single size tensor, -1 (when
    allowed) or the product of the size tensors."""
    static, dynamic = 1, []
    for a in axes:
        d = x.shape[a]
        if d is None:
            dynamic.append(a)
        else:
            static *= int(d)
    if not dynamic:
        return static
    if len(dynamic) == 1 and static == 1:
        return dim(x, dynamic[0])
    if allow_minus_one:
        return -1
    total = dim(x, dynamic[0])
    for a in dynamic[1:]:
        total = total * dim(x, a)
    return total * np.int32(static) if static != 1 else total


def _merged(x: Value, groups: list):
    """x (its axes already in group order) reshaped to one axis per group of axes."""
    if [len(g) for g in groups] == [1] * len(groups):
        return x
    entries, minus_used = [], False
    for g in groups:
        e = _group_size(x, g, allow_minus_one=not minus_used)
        minus_used = minus_used or (isinstance(e, int) and e == -1)
        entries.append(e)
    return reshape(x, entries)


def _permuted(x: Value, perm: list):
    return x if perm == list(range(len(perm))) else transpose(x, perm)


# --- tensordot -----------------------------------------------------------------------------------
def _axis(a, rank: int, what: str) -> int:
    if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
        raise TypeError(f"tensordot: {what} axes must be ints, got {a!r}")
    if not -rank <= a < rank:
        raise ValueError(f"tensordot: axis {a} is out of range for {what} of rank {rank}")
    return int(a) % rank


def _tensordot_axes(axes, ra: int, rb: int):
    if isinstance(axes, Value):
        raise TypeError("tensordot: axes must be an int or a pair of lists of ints known when "
                        "the graph is built, got a tensor")
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, (bool, np.bool_)):
        n = int(axes)
        if n < 0 or n > ra or n > rb:
            raise ValueError(f"tensordot: axes={n} must be in [0, min(rank(a), rank(b))] = "
                             f"[0, {min(ra, rb)}]")
        return list(range(ra - n, ra)), list(range(n))
    if isinstance(axes, np.ndarray):
        axes = axes.tolist()
    if not isinstance(axes, (list, tuple)) or len(axes) != 2:
        raise TypeError(f"tensordot: axes must be an int or a pair [a_axes, b_axes], got "
                        f"{axes!r}")
    a_axes, b_axes = axes
    a_axes = [a_axes] if isinstance(a_axes, (int, np.integer)) else list(a_axes)
    b_axes = [b_axes] if isinstance(b_axes, (int, np.integer)) else list(b_axes)
    if len(a_axes) != len(b_axes):
        raise ValueError(f"tensordot: the axis lists {a_axes} and {b_axes} differ in length")
    a_axes = [_axis(x, ra, "a") for x in a_axes]
    b_axes = [_axis(x, rb, "b") for x in b_axes]
    if len(set(a_axes)) != len(a_axes) or len(set(b_axes)) != len(b_axes):
        raise ValueError(f"tensordot: an axis is repeated in {a_axes} or {b_axes}")
    return a_axes, b_axes


@located
def tensordot(a, b, axes, name=None):
    """tf.tensordot: sum of products of a's `axes[0]` with b's `axes[1]` (an int N: a's last N
    axes with b's first N). The result's axes: a's free axes, then b's, in order."""
    a, b = as_value(a), as_value(b)
    ra, rb = a.type.rank, b.type.rank
    a_axes, b_axes = _tensordot_axes(axes, ra, rb)
    for i, j in zip(a_axes, b_axes):
        da, db = a.shape[i], b.shape[j]
        if da is not None and db is not None and da != db:
            raise ShapeError(f"tensordot: axis {i} of a (size {da}) and axis {j} of b (size {db}) "
                             f"are contracted but differ in size (at {user_location()})")
    free_a = [i for i in range(ra) if i not in a_axes]
    free_b = [j for j in range(rb) if j not in b_axes]
    return _contract(a, b, [], [], free_a, free_b, a_axes, b_axes, name=name)


def _contract(a, b, batch_a, batch_b, free_a, free_b, con_a, con_b, name=None):
    """matmul of a as [batch, free_a, con_a] by b as [batch, con_b, free_b]; the result's axes
    are batch, free_a, free_b (one each)."""
    at = _permuted(a, batch_a + free_a + con_a)
    bt = _permuted(b, batch_b + con_b + free_b)
    nb, nfa, nc, nfb = len(batch_a), len(free_a), len(con_a), len(free_b)
    if nb == 0 and nfa > 0 and nfb == 1 and b.type.rank == nc + 1:
        # the dense-layer case: [free..., K] @ [K, N] with one GEMM and no output reshape
        a3 = _merged(at, [[i] for i in range(nfa)] + [list(range(nfa, nfa + nc))])
        b2 = _merged(bt, [list(range(nc)), [nc]])
        out = matmul(a3, b2)
        return out if name is None else identity(out, name=name)
    a3 = _merged(at, [[i] for i in range(nb)] + [list(range(nb, nb + nfa)),
                                                 list(range(nb + nfa, nb + nfa + nc))])
    b3 = _merged(bt, [[i] for i in range(nb)] + [list(range(nb, nb + nc)),
                                                 list(range(nb + nc, nb + nc + nfb))])
    out = matmul(a3, b3)   # [batch..., M, N]
    sizes = [_size(at, i) for i in range(nb)] + [_size(at, nb + i) for i in range(nfa)] + \
        [_size(bt, nb + nc + i) for i in range(nfb)]
    if nfa == 1 and nfb == 1:   # already [batch..., M, N]
        return out if name is None else identity(out, name=name)
    return reshape(out, sizes, name=name)


# --- einsum --------------------------------------------------------------------------------------
def _parse(equation: str, n: int):
    if not isinstance(equation, str):
        raise TypeError(f"einsum: the equation must be a string, got {equation!r}")
    eq = equation.replace(" ", "")
    if "." in eq:
        raise NotImplementedError(f"einsum: ellipsis ('...') is not supported, in equation "
                                  f"{equation!r} (at {user_location()})")
    lhs, arrow, out = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != n:
        raise ValueError(f"einsum: equation {equation!r} names {len(ins)} operand(s), got {n}")
    if n not in (1, 2):
        raise NotImplementedError(f"einsum: {n} operands are not supported (one or two), in "
                                  f"equation {equation!r} (at {user_location()})")
    for s in ins + [out]:
        bad = [c for c in s if not c.isalpha()]
        if bad:
            raise ValueError(f"einsum: {bad[0]!r} is not an index label in equation "
                             f"{equation!r} (labels are letters)")
    for s in ins:
        if len(set(s)) != len(s):
            raise NotImplementedError(f"einsum: a label repeated within one operand ({s!r}: "
                                      f"traces and diagonals) is not supported, in equation "
                                      f"{equation!r} (at {user_location()})")
    if not arrow:   # implicit output: the labels that occur once, in alphabetical order
        joined = "".join(ins)
        out = "".join(sorted(c for c in set(joined) if joined.count(c) == 1))
    if len(set(out)) != len(out):
        raise ValueError(f"einsum: a label is repeated in the output of equation {equation!r}")
    missing = [c for c in out if not any(c in s for s in ins)]
    if missing:
        raise ValueError(f"einsum: output label {missing[0]!r} of equation {equation!r} is in no "
                         "operand")
    return ins, out


def _sum_away(x: Value, labels: str, keep: str):
    """x with the axes whose labels are not in `keep` summed away; (value, remaining labels)."""
    axes = [i for i, c in enumerate(labels) if c not in keep]
    if not axes:
        return x, labels
    return reduce_sum(x, axis=axes), "".join(c for c in labels if c in keep)


@located
def einsum(equation, *inputs, **kwargs):
    """tf.einsum for one or two operands: e.g. 'ij,jk->ik', 'bqd,bkd->bqk', 'btd,d->bt',
    'i,j->ij', 'ij->ji', 'btd->bd'. See the module docstring for what is not supported."""
    name = kwargs.pop("name", None)
    if kwargs:
        raise TypeError(f"einsum() got an unexpected keyword argument {next(iter(kwargs))!r}")
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        inputs = tuple(inputs[0])
    ins, out = _parse(equation, len(inputs))
    values = [as_value(x) for x in inputs]
    for s, v in zip(ins, values):
        if len(s) != v.type.rank:
            raise ShapeError(f"einsum: operand {s!r} of equation {equation!r} has {len(s)} "
                             f"labels but the tensor has rank {v.type.rank} ({v!r}) "
                             f"(at {user_location()})")
    sizes: dict = {}
    for s, v in zip(ins, values):
        for c, d in zip(s, v.shape):
            if d is not None:
                if sizes.setdefault(c, d) != d:
                    raise ShapeError(f"einsum: label {c!r} of equation {equation!r} has sizes "
                                     f"{sizes[c]} and {d} (at {user_location()})")
    if len(values) == 1:
        x, labels = _sum_away(values[0], ins[0], out)
        perm = [labels.index(c) for c in out]
        if perm == list(range(len(perm))):
            return x if name is None else identity(x, name=name)
        return transpose(x, perm, name=name)
    (sa, sb), (a, b) = ins, values
    a, sa = _sum_away(a, sa, out + sb)
    b, sb = _sum_away(b, sb, out + sa)
    batch = [c for c in sa if c in sb and c in out]
    con = [c for c in sa if c in sb and c not in out]
    free_a = [c for c in sa if c not in sb]
    free_b = [c for c in sb if c not in sa]
    res = _contract(a, b, [sa.index(c) for c in batch], [sb.index(c) for c in batch],
                    [sa.index(c) for c in free_a], [sb.index(c) for c in free_b],
                    [sa.index(c) for c in con], [sb.index(c) for c in con])
    have = batch + free_a + free_b
    perm = [have.index(c) for c in out]
    if perm == list(range(len(perm))):
        return res if name is None else identity(res, name=name)
    return transpose(res, perm, name=name)
