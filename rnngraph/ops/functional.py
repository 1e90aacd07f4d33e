"""TF1's functional ops: map_fn, foldl and foldr, each one loop node (ops/loop.py's build_loop).

  map_fn(fn, elems, dtype=None)         fn applied to each slice of `elems` along axis 0, the
                                        results stacked: a loop with no carried state whose
                                        body's outputs are the stacks (tf.map_fn)
  foldl(fn, elems, initializer=None)    a = fn(a, x) over the slices, first to last; the final a
  foldr(fn, elems, initializer=None)    the same, last to first (a loop with reverse=True)

`elems` is a Value or a nested list/tuple/namedtuple of Values, all with one first dimension;
fn receives each slice in that structure. No Python unrolling: the loop runs as many steps as
the first dimension has at run time, and its gradient is the loop's reverse loop
(autodiff/loop.py). A wrong structure or dtype from fn is a ValueError or TypeError naming the
user's line that called the builder.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import as_dtype
from ..errors import located
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..nest import flatten, pack_as
from .base import as_value
from .loop import build_loop, check_loop_args
from .misc import stop_gradient
from .shape import getitem


def _is_seq(s) -> bool:
    return isinstance(s, (tuple, list))


def _same_structure(a, b) -> bool:
    """Same nesting of lists/tuples/namedtuples and the same number of leaves in each (a list
    and a tuple of one length count as the same)."""
    if _is_seq(a) != _is_seq(b):
        return False
    if not _is_seq(a):
        return True
    return len(a) == len(b) and all(_same_structure(x, y) for x, y in zip(a, b))


def _describe(s) -> str:
    """A structure, leaves shown as their dtype ('(f32, (i32, f32))')."""
    if _is_seq(s):
        inner = ", ".join(_describe(x) for x in s)
        return f"[{inner}]" if isinstance(s, list) else f"({inner}{',' if len(s) == 1 else ''})"
    if isinstance(s, Value):
        return str(s.dtype)
    try:
        return str(as_dtype(s))
    except TypeError:
        return type(s).__name__


def _check_fn(fn, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what}(fn, elems, ...): fn must be a callable, got "
                        f"{type(fn).__name__} {fn!r}")


def _elem_leaves(elems, what: str) -> list:
    """elems' leaves as Values, each at least a vector, their known first dims all equal."""
    leaves = [as_value(e) for e in flatten(elems)]
    if not leaves:
        raise ValueError(f"{what} needs at least one tensor in elems, got {elems!r}")
    for e in leaves:
        if e.type.rank == 0:
            raise ValueError(f"{what}: elements in elems must be 1+ dimensional tensors, not "
                             f"scalars: {e.node.name} is a scalar")
    known = {e.shape[0] for e in leaves if e.shape[0] is not None}
    if len(known) > 1:
        raise ValueError(f"{what}: the tensors in elems must have one first dimension, got "
                         f"{', '.join(f'{e.node.name} {e.type}' for e in leaves)}")
    return leaves


def _fn_values(out, structure, dtypes: list, what: str, against: str) -> list:
    """fn's result as a flat list of Values: `structure`'s nesting, leaf i of dtype dtypes[i]
    (a number or array fn returns becomes a constant of that dtype)."""
    if not _same_structure(structure, out):
        raise ValueError(f"{what}: fn returned {_describe(out)}, which is not the structure of "
                         f"{against} {_describe(structure)}" +
                         (" (pass dtype= the structure and dtypes of fn's output where it "
                          "differs from elems')" if what == "map_fn" and against == "elems"
                          else ""))
    values = []
    for i, (v, want) in enumerate(zip(flatten(out), dtypes)):
        if v is None:
            raise TypeError(f"{what}: fn returned None for output {i} (of {_describe(structure)})")
        # (an outer tensor fn returns as it is becomes the body's read of it, an invariant)
        v = get_default_graph().capture(v) if isinstance(v, Value) else as_value(v, want)
        if v.dtype != want:
            raise TypeError(f"{what}: fn returned {v.dtype} for output {i} ({v.node.name}) where "
                            f"{against} gives {want}" +
                            (" (pass dtype= fn's output dtypes where they differ from elems')"
                             if what == "map_fn" and against == "elems" else ""))
        values.append(v)
    return values


@located
def map_fn(fn, elems, dtype=None, parallel_iterations=10, back_prop=True, swap_memory=False,
           infer_shape=True, name=None):
    """tf.map_fn: fn applied to each slice of `elems` along axis 0, the results stacked.

    `elems` is a Value or a nested list/tuple/namedtuple of Values with one first dimension n;
    fn receives a slice in that structure. fn returns elems' structure and dtypes, or, where
    they differ, the structure and dtypes `dtype` gives (rg.int32, or (rg.float32, rg.int32)
    for a pair). Returns that structure of Values [n] + each output's shape. One loop node of n
    steps with no carried state; gradients flow through it unless `back_prop=False`.
    `parallel_iterations` and `swap_memory` are checked as in while_loop; `infer_shape` is
    accepted for TF1 compatibility (shapes are always inferred).
    """
    _check_fn(fn, "map_fn")
    check_loop_args(parallel_iterations, swap_memory, "map_fn")
    leaves = _elem_leaves(elems, "map_fn")
    if dtype is None:
        structure, against, dtypes = elems, "elems", [e.dtype for e in leaves]
    else:
        structure, against = dtype, "dtype"
        dtypes = [as_dtype(d) for d in flatten(dtype)]

    def step(t, carried, xs):
        return [], _fn_values(fn(pack_as(elems, xs)), structure, dtypes, "map_fn", against)

    _, _, ys = build_loop(step, [], leaves, None, parallel_iterations=parallel_iterations,
                          swap_memory=swap_memory, name=name or "map")
    if not back_prop:
        ys = [stop_gradient(y) for y in ys]
    return pack_as(structure, ys)


def _fold(fn, elems, initializer, parallel_iterations, back_prop, swap_memory, name, reverse):
    what = "foldr" if reverse else "foldl"
    _check_fn(fn, what)
    check_loop_args(parallel_iterations, swap_memory, what)
    leaves = _elem_leaves(elems, what)
    if initializer is None:   # the first (foldr: last) element starts, fn runs over the rest
        structure, against = elems, "elems"
        init = [getitem(e, -1 if reverse else 0) for e in leaves]
        xs = [getitem(e, slice(None, -1) if reverse else slice(1, None)) for e in leaves]
    else:
        structure, against = initializer, "initializer"
        # a NumPy scalar or array keeps its dtype (np.int64(0) an int64 accumulator, as in TF1)
        init = [as_value(v, v.dtype if isinstance(v, (np.ndarray, np.generic)) else None)
                for v in flatten(initializer)]
        xs = leaves
    dtypes = [a.dtype for a in init]

    def step(t, carried, x_slices):
        out = fn(pack_as(structure, carried), pack_as(elems, x_slices))
        return _fn_values(out, structure, dtypes, what, against), []

    _, final, _ = build_loop(step, init, xs, None, reverse=reverse,
                             parallel_iterations=parallel_iterations, swap_memory=swap_memory,
                             name=name or what)
    if not back_prop:
        final = [stop_gradient(a) for a in final]
    return pack_as(structure, final)


@located
def foldl(fn, elems, initializer=None, parallel_iterations=10, back_prop=True, swap_memory=False,
          name=None):
    """tf.foldl: `a = fn(a, x)` for each slice x of `elems` along axis 0, first to last; the
    final a. `initializer` (a Value or nested structure) is the first a; without one the first
    slice is (in elems' structure) and fn runs over the rest. fn returns a's structure and
    dtypes. One loop node; differentiable unless `back_prop=False`."""
    return _fold(fn, elems, initializer, parallel_iterations, back_prop, swap_memory, name,
                 reverse=False)


@located
def foldr(fn, elems, initializer=None, parallel_iterations=10, back_prop=True, swap_memory=False,
          name=None):
    """tf.foldr: foldl from the last slice to the first (without an initializer the last slice
    is the first a)."""
    return _fold(fn, elems, initializer, parallel_iterations, back_prop, swap_memory, name,
                 reverse=True)
