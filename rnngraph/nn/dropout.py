"""Dropout: `nn.dropout` and the TF1 cell wrapper `DropoutWrapper`.

Both draw their masks from counter-based random nodes (ops/random.py): a mask is
`uniform < keep_prob` and the kept values are scaled by 1 / keep_prob, as one `where`:

    dropout(x) = where(u < keep_prob, x / keep_prob, 0)

which the fuse pass merges with the elementwise math around it (a cell's gate arithmetic), and
whose gradient is masked and scaled identically. Inside a loop body the mask's numbers follow
the step index, so `static_rnn` and `dynamic_rnn` over the same wrapper drop the same units at
every step; `variational_recurrent=True` draws one mask per sequence (step index 0 at every
step), as TF1 does. A keep probability may be a tensor, e.g.
`keep_prob = rg.placeholder_with_default(1.0, [])`, so one graph trains (feeding 0.5) and
evaluates (the default).

Limitation: with `sequence_length`, dynamic_rnn sorts the batch rows by length inside its
loop, so its masks land on rows in that order: still independent dropout, but not the rows
static_rnn would drop (without sequence_length the two agree exactly).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import ops
from ..errors import user_location
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..nest import flatten, pack_as
from ..ops.random import get_seed, random_standard, salted
from .cells import LSTMStateTuple, RNNCell
from .wrappers import TransparentWrapper


def _keep(keep_prob, what):
    """A keep probability: a number in (0, 1], or a float scalar tensor (checked at run time
    by nobody: TF1 does not either)."""
    if isinstance(keep_prob, Value):
        if keep_prob.type.rank != 0 or np.dtype(keep_prob.dtype).kind != "f":
            raise TypeError(f"{what} must be a float scalar tensor or a number, got "
                            f"{keep_prob.type} (at {user_location()})")
        return keep_prob
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, numbers.Real):
        raise TypeError(f"{what} must be a number in (0, 1] or a float scalar tensor, got "
                        f"{type(keep_prob).__name__} {keep_prob!r} (at {user_location()})")
    if not 0.0 < float(keep_prob) <= 1.0:
        raise ValueError(f"{what} must be in (0, 1], got {keep_prob!r} (at {user_location()})")
    return float(keep_prob)


def _is_one(keep) -> bool:
    return not isinstance(keep, Value) and keep == 1.0


def _apply_mask(x, keep, u):
    k = keep if isinstance(keep, Value) else ops.as_value(np.asarray(keep, dtype=x.dtype))
    if k.dtype != x.dtype:
        k = ops.cast(k, x.dtype)
    return ops.where(ops.less(u, ops.cast(k, u.dtype) if u.dtype != k.dtype else k),
                     x / k, ops.zeros_like(x))


def _noise_plan(x, noise_shape):
    """(static mask shape or None, slice of x giving the mask's run-time shape or None) for a
    mask of `noise_shape` over x: each entry is x's size there, 1 (one mask value shared along
    that axis) or None (x's size). Checks only; builds nothing."""
    if noise_shape is None:
        if all(d is not None for d in x.shape):
            return tuple(x.shape), None
        return None, ()
    if isinstance(noise_shape, Value):
        raise TypeError(f"dropout: noise_shape must be a list of ints (or None entries), got "
                        f"the tensor {noise_shape.name} (at {user_location()})")
    noise = list(noise_shape)
    if len(noise) != x.type.rank:
        raise ValueError(f"dropout: noise_shape {noise} does not broadcast to x's shape "
                         f"{list(x.shape)} (rank {len(noise)} vs {x.type.rank}) "
                         f"(at {user_location()})")
    key, static = [], []
    for axis, (n, d) in enumerate(zip(noise, x.shape)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))):
            raise TypeError(f"dropout: noise_shape entries must be ints or None, got {n!r} "
                            f"(at {user_location()})")
        if n is None or (d is not None and n == d):
            key.append(slice(None))
            static.append(d)
        elif n == 1:
            key.append(slice(0, 1))
            static.append(1)
        else:
            raise ValueError(f"dropout: noise_shape {noise} does not broadcast to x's shape "
                             f"{list(x.shape)} (axis {axis}: {n} vs {d}) (at {user_location()})")
    if all(d is not None for d in static):
        return tuple(static), None
    return None, tuple(key)


def _mask_uniform(x, plan, seed_pair, step, name):
    static, key = plan
    like = None if static is not None else (x if key == () else x[key])
    return random_standard("uniform", static, x.dtype, like=like, step=step, seed_pair=seed_pair,
                           name=name)


def dropout(x, keep_prob=None, noise_shape=None, seed=None, name=None, rate=None):
    """Zero each entry of x with probability 1 - keep_prob and scale the others by
    1 / keep_prob (tf.nn.dropout). Give `keep_prob` or `rate` (= 1 - keep_prob), a number or a
    float scalar tensor. `noise_shape` (ints, 1 to share a mask along an axis, None for x's
    size) shapes the mask; `seed` follows the graph-seed rules of rg.set_random_seed."""
    x = ops.as_value(x)
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(f"dropout: x must be floating point, got {x.dtype} (at {user_location()})")
    if (keep_prob is None) == (rate is None):
        raise ValueError(f"dropout: give exactly one of keep_prob and rate "
                         f"(at {user_location()})")
    if rate is not None:
        if isinstance(rate, Value):
            keep = _keep(1.0 - rate, "rate")
        else:
            if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or \
                    not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"dropout: rate must be in [0, 1), got {rate!r} "
                                 f"(at {user_location()})")
            keep = 1.0 - float(rate)
    else:
        keep = _keep(keep_prob, "keep_prob")
    plan = _noise_plan(x, noise_shape)   # checked even when nothing is dropped
    seed_pair = get_seed(seed)
    if _is_one(keep):
        return x
    with get_default_graph().name_scope(name or "dropout"):
        u = _mask_uniform(x, plan, seed_pair, None, "random_uniform")
        return _apply_mask(x, keep, u)


def _default_state_filter(state):
    """TF1's default: drop every part of the state except an LSTM's memory c."""
    if isinstance(state, LSTMStateTuple):
        return LSTMStateTuple(c=False, h=True)
    return True


class DropoutWrapper(TransparentWrapper):
    """Dropout on a cell's inputs, outputs and state (tf.nn.rnn_cell.DropoutWrapper).

    Args:
      cell: the RNNCell to wrap.
      input_keep_prob, output_keep_prob, state_keep_prob: numbers in (0, 1] or float scalar
        tensors (1.0: no dropout there). The state mask applies to the state the cell returns,
        except the parts `dropout_state_filter_visitor` excludes (by default an LSTM's c).
      variational_recurrent: one mask per sequence for each of the three, shared across the
        steps (Gal & Ghahramani), instead of a fresh mask per step; needs `dtype` (TF1).
      input_size: accepted for TF1 compatibility (the masks take their shapes from the tensors).
      seed: the op seed of the masks (with rg.set_random_seed's graph seed).
    """

    def __init__(self, cell, input_keep_prob=1.0, output_keep_prob=1.0, state_keep_prob=1.0,
                 variational_recurrent=False, input_size=None, dtype=None, seed=None,
                 dropout_state_filter_visitor=None):
        if not isinstance(cell, RNNCell):
            raise TypeError(f"DropoutWrapper: cell must be an RNNCell, got "
                            f"{type(cell).__name__} (at {user_location()})")
        self._cell = cell   # (no RNNCell.__init__: its name and `built` are the cell's)
        self._input_keep = _keep(input_keep_prob, "input_keep_prob")
        self._output_keep = _keep(output_keep_prob, "output_keep_prob")
        self._state_keep = _keep(state_keep_prob, "state_keep_prob")
        self._variational = bool(variational_recurrent)
        if self._variational and dtype is None:
            raise ValueError(f"DropoutWrapper: variational_recurrent=True needs dtype "
                             f"(at {user_location()})")
        if dropout_state_filter_visitor is not None and not callable(dropout_state_filter_visitor):
            raise TypeError("DropoutWrapper: dropout_state_filter_visitor must be callable")
        self._filter = dropout_state_filter_visitor or _default_state_filter
        # one seed pair for the wrapper, fixed now: every call (each static step, the loop
        # body) derives the same mask seeds from it
        self._seed_pair = get_seed(seed)
        self._rg_dtype = dtype

    @property
    def name(self):
        return self._cell.name

    @property
    def built(self):
        return self._cell.built

    @built.setter
    def built(self, value):
        pass

    def build_once(self, *args, **kwargs):   # static_rnn / dynamic_rnn build the wrapped cell
        build = getattr(self._cell, "build_once", None)
        return build(*args, **kwargs) if build is not None else None

    def _drop(self, x, keep, what: str, index: int):
        x = ops.as_value(x)
        graph_seed, op_seed = self._seed_pair
        pair = (graph_seed, salted(op_seed, f"{what}/{index}"))
        step = 0 if self._variational else None
        with get_default_graph().name_scope(f"dropout_{what}"):
            u = _mask_uniform(x, _noise_plan(x, None), pair, step, "random_uniform")
            return _apply_mask(x, keep, u)

    def __call__(self, inputs, state, scope=None, *args, **kwargs):
        if not _is_one(self._input_keep):
            flat = flatten(inputs)
            inputs = pack_as(inputs, [self._drop(x, self._input_keep, "input", i)
                                      for i, x in enumerate(flat)])
        output, new_state = self._cell(inputs, state, scope, *args, **kwargs)
        if not _is_one(self._state_keep):
            which = _expand_filter(self._filter, new_state)
            flat = flatten(new_state)
            new_state = pack_as(new_state, [self._drop(s, self._state_keep, "state", i)
                                            if keep else s
                                            for i, (s, keep) in enumerate(zip(flat, which))])
        if not _is_one(self._output_keep):
            flat = flatten(output)
            output = pack_as(output, [self._drop(o, self._output_keep, "output", i)
                                      for i, o in enumerate(flat)])
        return output, new_state


def _expand_filter(visitor, state):
    """A bool per leaf of `state`, from the visitor's answers as TF1 reads them: on a leaf, keep
    it or not; on a structure, True visits each part, False drops none of it, and a matching
    structure of bools decides part by part (True parts are visited in turn)."""
    answer = visitor(state)
    if not isinstance(state, tuple):
        if not isinstance(answer, bool):
            raise TypeError(f"DropoutWrapper: dropout_state_filter_visitor returned {answer!r} "
                            "for a tensor; it must return a bool")
        return [answer]
    if answer is False:
        return [False] * len(flatten(state))
    if answer is True:
        answer = (True,) * len(state)
    if not isinstance(answer, tuple) or len(answer) != len(state):
        raise TypeError(f"DropoutWrapper: dropout_state_filter_visitor returned {answer!r}; it "
                        "must return a bool or a structure of bools matching the state")
    out = []
    for a, part in zip(answer, state):
        if a is True:
            out += _expand_filter(visitor, part)
        elif a is False:
            out += [False] * len(flatten(part))
        else:
            raise TypeError(f"DropoutWrapper: dropout_state_filter_visitor returned {answer!r};"
                            " its entries must be bools")
    return out


# --- Keras's dropout= / recurrent_dropout= on the cells ---------------------------------------------
def keras_rates(dropout, recurrent_dropout, what: str):
    """What a cell built with Keras's `dropout=` / `recurrent_dropout=` keeps: None when both
    are 0, else (input keep, recurrent keep, seed pair). A rate is a number in [0, 1) or a
    float scalar tensor (e.g. placeholder_with_default(0.0, []) fed while training, so the
    same graph evaluates without dropout)."""
    keeps = []
    for arg, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
        if isinstance(rate, Value):
            keeps.append(_keep(1.0 - rate, f"{what}: {arg}"))
            continue
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or \
                not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"{what}: {arg} must be a rate in [0, 1), got {rate!r} "
                             f"(at {user_location()})")
        keeps.append(1.0 - float(rate))
    if all(_is_one(k) for k in keeps):
        return None
    return keeps[0], keeps[1], get_seed(None)


def keras_drop(x, keep, seed_pair, what: str):
    """x with Keras's per-sequence mask (the same at every step: step index 0)."""
    if _is_one(keep):
        return x
    x = ops.as_value(x)
    graph_seed, op_seed = seed_pair
    with get_default_graph().name_scope(f"{what}_dropout"):
        u = _mask_uniform(x, _noise_plan(x, None), (graph_seed, salted(op_seed, what)), 0,
                          "random_uniform")
        return _apply_mask(x, keep, u)
