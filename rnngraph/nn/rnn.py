"""static_rnn, dynamic_rnn and bidirectional_dynamic_rnn with TensorFlow 1.x semantics.

sequence_length: past a row's length its outputs are zero and its state is copied through, so
the final state of a row of length L is its state after step L-1. dynamic_rnn stops after
max(sequence_length) steps; its graph does not grow with the number of steps. With
sequence_length it also sorts the batch by length (longest first) and tells its loop how many
rows are still active at each step, so finished rows stop costing compute (the shrink_batch
pass); outputs and final states come back in the caller's row order.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import ops
from ..errors import located
from ..dtypes import as_dtype
from ..ir.graph import get_default_graph
from ..ir.value import Value
from ..ops.loop import build_loop, check_loop_args
from ..ops.random import step_scope as random_step_scope
from ..ops.rows import invert_permutation, permute_rows, sequence_mask, sort_by_length
from . import scopes
from .cells import RNNCell
from ..nest import flatten, pack_as


def _check_cell(cell):
    if not isinstance(cell, RNNCell):
        raise TypeError(f"cell must be an instance of RNNCell, got {type(cell).__name__}: {cell!r}")


def _initial_state(cell, initial_state, dtype, batch_size, what):
    if initial_state is not None:
        flat = [ops.as_value(s) for s in flatten(initial_state)]
        want = flatten(cell.state_size)
        if len(flat) != len(want):
            raise ValueError(f"{what}: initial_state has {len(flat)} tensors, the cell's state "
                             f"has {len(want)} ({cell.state_size})")
        for s, size in zip(flat, want):
            if s.type.rank == 0:   # a non-batched state (a custom cell's counter, ...)
                continue
            if not isinstance(size, (int, np.integer)):
                continue           # a custom cell's multi-dimensional state: its own business
            if s.type.rank != 2 or s.shape[1] not in (None, size):
                raise ValueError(f"{what}: initial_state tensor {s.type} does not fit state size "
                                 f"{size} (expected [batch, {size}])")
            if isinstance(batch_size, int) and s.shape[0] not in (None, batch_size):
                raise ValueError(f"{what}: initial_state has batch {s.shape[0]} but the inputs "
                                 f"have batch {batch_size}")
        return pack_as(cell.state_size, flat)
    if dtype is None:
        raise ValueError(f"{what}: give either initial_state or dtype (the dtype of the zero "
                         "initial state)")
    return cell.zero_state(batch_size, as_dtype(dtype))


def _check_sequence_length(sequence_length, batch_size, max_time, batch, what):
    seq = ops.as_value(sequence_length)
    if seq.type.rank != 1:
        raise ValueError(f"{what}: sequence_length must be a vector [batch], got {seq.type}")
    if not np.issubdtype(seq.dtype, np.integer):
        raise TypeError(f"{what}: sequence_length must be int32/int64, got {seq.dtype}")
    if isinstance(batch_size, int) and seq.shape[0] not in (None, batch_size):
        raise ValueError(f"{what}: sequence_length has {seq.shape[0]} entries but the batch size "
                         f"is {batch_size}")
    # checked in its own dtype, then cast: an int64 length past int32 is an error, not wrapped
    checked = ops.check_sequence_length(seq, max_time, batch)
    return checked if seq.dtype == np.int32 else ops.cast(checked, np.int32)


def _mask_step(t, seq_len, output, new_state, old_state):
    """Zero outputs and copy state through for rows whose sequence has ended (t >= length)."""
    return _mask_rows(ops.expand_dims(ops.less(t, seq_len), 1), output, new_state, old_state)


def _mask_rows(active, output, new_state, old_state):
    """`active` [batch, 1] bool: rows past their length get zero outputs and keep their state.
    A non-batched (scalar) state is not masked: it takes its new value, as in TF."""
    def fit(mask, x):   # [batch, 1] -> broadcastable against x [batch, ...]
        extra = x.type.rank - 2
        for _ in range(max(extra, 0)):
            mask = ops.expand_dims(mask, -1)
        return mask

    flat_out = [ops.where(fit(active, o), o, ops.zeros_like(o)) if o.type.rank >= 1 else o
                for o in map(ops.as_value, flatten(output))]
    flat_new = [ops.where(fit(active, n), n, o) if n.type.rank >= 1 else n
                for n, o in zip(map(ops.as_value, flatten(new_state)),
                                map(ops.as_value, flatten(old_state)))]
    return pack_as(output, flat_out), pack_as(new_state, flat_new)


@located
def static_rnn(cell, inputs, initial_state=None, dtype=None, sequence_length=None, scope=None):
    """Unroll `cell` over a Python list of T inputs: one copy per step, shared weights.

    Each input is a tensor [batch, ...] (or a nested tuple of such tensors, for cells that
    take several inputs). Returns (outputs: list of T outputs, final_state). Variables are made
    under the variable scope `scope` (default "rnn"), e.g. "rnn/basic_lstm_cell/kernel"."""
    _check_cell(cell)
    if inputs is None or (isinstance(inputs, (list, tuple)) and len(inputs) == 0):
        raise ValueError("static_rnn: inputs must be a non-empty list of tensors")
    if isinstance(inputs, Value):
        raise TypeError("static_rnn: inputs must be a list of [batch, input] tensors (use "
                        "rg.unstack on a [time, batch, input] tensor, or dynamic_rnn)")
    inputs = [pack_as(x, [ops.as_value(v) for v in flatten(x)]) for x in inputs]
    first_flat = flatten(inputs[0])
    for x in first_flat:
        if x.type.rank < 2 or x.shape[-1] is None:
            raise ValueError(f"static_rnn: each input must be [batch, ...] with a known input "
                             f"size (its last dimension), got {x.type}")
    first = first_flat[0]
    graph = get_default_graph()
    with _rnn_scope(scope, "rnn"):
        batch = first.shape[0] if first.shape[0] is not None else ops.dim(first, 0)
        state = _initial_state(cell, initial_state, dtype, batch, "static_rnn")
        seq_len = None
        if sequence_length is not None:
            seq_len = _check_sequence_length(sequence_length, first.shape[0], len(inputs), batch,
                                             "static_rnn")
        outputs = []
        for t, x in enumerate(inputs):
            with graph.name_scope(f"step_{t}"), random_step_scope(t):  # the loop's step t
                out, new_state = cell(x, state)
                if seq_len is not None:
                    out, new_state = _mask_step(t, seq_len, out, new_state, state)
            outputs.append(out)
            state = new_state
    return outputs, state


@contextlib.contextmanager
def _rnn_scope(scope, default):
    """The variable scope an rnn function builds in (`scope`, a string or VariableScope, or
    `default`), with the name scope of its nodes; if building raises, every node it added is
    removed again."""
    graph = get_default_graph()
    if isinstance(scope, scopes.VariableScope):
        with scopes.build_transaction(), \
                scopes.variable_scope(scope, auxiliary_name_scope=False), \
                graph.name_scope(scope.name.rsplit("/", 1)[-1]):
            yield
        return
    with scopes.build_transaction(), \
            scopes.variable_scope(scope or default, auxiliary_name_scope=False), \
            graph.name_scope(scope or default):
        yield


def _static_shape(x, *dims):
    """x with the static dims given (None: keep x's), where the loop left them open."""
    want = [d if d is not None else x.shape[i] for i, d in enumerate(dims)] + \
        list(x.shape[len(dims):])
    if tuple(want) == tuple(x.shape) or sum(d is None for d in want) > 1:
        return x
    return ops.reshape(x, [d if d is not None else -1 for d in want])


@located
def dynamic_rnn(cell, inputs, sequence_length=None, initial_state=None, dtype=None,
                parallel_iterations=None, swap_memory=False, time_major=False, scope=None):
    """Run `cell` over `inputs` [batch, max_time, ...] (or [max_time, batch, ...] when
    time_major) with one loop node; the number of steps is known only at run time.

    Returns (outputs [batch, max_time, cell.output_size], final_state). `inputs` may be a
    nested tuple of such tensors. With `swap_memory=True` the tensors the backward pass needs
    are kept in host memory between the passes. `parallel_iterations` (default 32) bounds how
    many steps' transfers may be in flight.
    """
    _check_cell(cell)
    parallel_iterations, swap_memory = check_loop_args(
        32 if parallel_iterations is None else parallel_iterations, swap_memory, "dynamic_rnn")
    if inputs is None or (isinstance(inputs, (list, tuple)) and len(flatten(inputs)) == 0):
        raise ValueError("dynamic_rnn: inputs must not be None or empty")
    flat_in = [ops.as_value(x) for x in flatten(inputs)]
    for x in flat_in:
        if x.type.rank < 3:
            raise ValueError(f"dynamic_rnn: inputs must have rank >= 3 "
                             f"([{'time, batch' if time_major else 'batch, time'}, depth]), got "
                             f"{x.type}")
        if x.shape[-1] is None:
            raise ValueError(f"dynamic_rnn: the last dimension (depth) of the inputs must be known "
                             f"at build time, got {x.type}")
    graph = get_default_graph()
    with _rnn_scope(scope, "rnn"):
        if not time_major:  # the loop slices the leading axis: make it time
            flat_in = [ops.transpose(x, [1, 0] + list(range(2, x.type.rank))) for x in flat_in]
        batches = {x.shape[1] for x in flat_in if x.shape[1] is not None}
        times = {x.shape[0] for x in flat_in if x.shape[0] is not None}
        if len(batches) > 1 or len(times) > 1:
            raise ValueError("dynamic_rnn: all inputs must agree on batch and time dimensions, "
                             f"got {[x.type for x in flat_in]}")
        static_batch = next(iter(batches)) if batches else None
        batch = static_batch if static_batch is not None else ops.dim(flat_in[0], 1)
        state = _initial_state(cell, initial_state, dtype, batch, "dynamic_rnn")
        flat_state = [ops.as_value(s) for s in flatten(state)]
        trip = rows = unsort = None
        sequences = list(flat_in)
        if sequence_length is not None:  # validated before any weight is created
            max_time = ops.dim(flat_in[0], 0)
            seq_len = _check_sequence_length(sequence_length, static_batch, max_time, batch,
                                             "dynamic_rnn")
            # stop after the longest sequence (later rows of the outputs stay zero); run at least
            # one (fully masked) step, as TF does, so the stacks have their shapes
            trip = ops.minimum(ops.maximum(ops.reduce_max(seq_len), 1), max_time)
            # longest rows first: the rows still running at step t are a prefix, rows[t] long
            with graph.name_scope("sort_by_length"):
                order = sort_by_length(seq_len)
                unsort = invert_permutation(order)
                sequences = [permute_rows(x, order, axis=1) for x in flat_in]
                flat_state = [permute_rows(s, order) for s in flat_state]
                mask = sequence_mask(permute_rows(seq_len, order), max_time)  # [time, batch]
                rows = ops.reduce_sum(ops.cast(mask, np.int32), axis=1)
                sequences.append(ops.expand_dims(mask, 2))
        def step(t, carried, xs):
            old = pack_as(cell.state_size, carried)
            if rows is not None:
                xs, active = xs[:-1], xs[-1]  # the mask rides along as the last sequence
            x = pack_as(inputs, xs) if len(xs) > 1 else xs[0]
            out, new = cell(x, old)
            if rows is not None:
                out, new = _mask_rows(active, out, new, old)
            return flatten(new), flatten(out)

        _, final, outs = build_loop(
            step, flat_state, sequences, trip,
            parallel_iterations=parallel_iterations, swap_memory=swap_memory, rows=rows,
            name="while")
        if unsort is not None:
            with graph.name_scope("unsort"):
                outs = [permute_rows(o, unsort, axis=1) for o in outs]
                final = [permute_rows(s, unsort) for s in final]
        if unsort is not None and static_batch is not None:   # the loop left the batch open
            outs = [_static_shape(o, None, static_batch) for o in outs]
            final = [_static_shape(f, static_batch) if f.type.rank else f for f in final]
        if not time_major:
            outs = [ops.transpose(o, [1, 0] + list(range(2, o.type.rank))) for o in outs]
        return pack_as(cell.output_size, outs), pack_as(cell.state_size, final)


@located
def bidirectional_dynamic_rnn(cell_fw, cell_bw, inputs, sequence_length=None,
                              initial_state_fw=None, initial_state_bw=None, dtype=None,
                              parallel_iterations=None, swap_memory=False, time_major=False,
                              scope=None):
    """Forward and backward dynamic RNNs; the backward one sees each row reversed within its
    length. Returns ((output_fw, output_bw), (state_fw, state_bw)), outputs in input order."""
    _check_cell(cell_fw)
    _check_cell(cell_bw)
    parallel_iterations, swap_memory = check_loop_args(   # (before the forward rnn is built)
        32 if parallel_iterations is None else parallel_iterations, swap_memory,
        "bidirectional_dynamic_rnn")
    graph = get_default_graph()
    with _rnn_scope(scope, "bidirectional_rnn"):
        out_fw, st_fw = dynamic_rnn(cell_fw, inputs, sequence_length, initial_state_fw, dtype,
                                    parallel_iterations, swap_memory, time_major, scope="fw")
        time_axis, batch_axis = (0, 1) if time_major else (1, 0)

        def reverse(x):
            x = ops.as_value(x)
            lengths = sequence_length
            if lengths is None:
                lengths = ops.fill([ops.dim(x, batch_axis)], 0, np.int32) + ops.dim(x, time_axis)
            return ops.reverse_sequence(x, lengths, seq_axis=time_axis, batch_axis=batch_axis)

        with graph.name_scope("bw_reverse"):
            rev_in = pack_as(inputs, [reverse(x) for x in flatten(inputs)])
        out_bw, st_bw = dynamic_rnn(cell_bw, rev_in, sequence_length, initial_state_bw, dtype,
                                    parallel_iterations, swap_memory, time_major, scope="bw")
        with graph.name_scope("bw_reverse"):
            out_bw = pack_as(out_bw, [reverse(o) for o in flatten(out_bw)])
    return (out_fw, out_bw), (st_fw, st_bw)


def _reverse_seq(seq, lengths):
    """A list of T tensors [batch, ...] reversed in time, within each row's length if given."""
    if lengths is None:
        return list(reversed(seq))
    flat = [flatten(x) for x in seq]
    out_parts = []
    for k in range(len(flat[0])):
        stacked = ops.stack([ops.as_value(f[k]) for f in flat], axis=0)   # [T, batch, ...]
        rev = ops.reverse_sequence(stacked, ops.cast(ops.as_value(lengths), np.int32),
                                   seq_axis=0, batch_axis=1)
        out_parts.append(ops.unstack(rev, num=len(seq), axis=0))
    return [pack_as(seq[t], [parts[t] for parts in out_parts]) for t in range(len(seq))]


@located
def static_bidirectional_rnn(cell_fw, cell_bw, inputs, initial_state_fw=None,
                             initial_state_bw=None, dtype=None, sequence_length=None, scope=None):
    """Forward and backward static RNNs over a list of T inputs (tf.nn.static_bidirectional_rnn);
    the backward one sees each row reversed within its length. Returns (outputs, state_fw,
    state_bw), outputs a list of T tensors concat([output_fw, output_bw], 1). Variables are made
    under `scope` (default "bidirectional_rnn") /fw and /bw."""
    _check_cell(cell_fw)
    _check_cell(cell_bw)
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError("static_bidirectional_rnn: inputs must be a non-empty list of tensors")
    with _rnn_scope(scope, "bidirectional_rnn"):
        with scopes.variable_scope("fw", auxiliary_name_scope=False) as fw_scope:
            out_fw, st_fw = static_rnn(cell_fw, inputs, initial_state_fw, dtype, sequence_length,
                                       scope=fw_scope)
        with scopes.variable_scope("bw", auxiliary_name_scope=False) as bw_scope:
            rev = _reverse_seq(inputs, sequence_length)
            tmp, st_bw = static_rnn(cell_bw, rev, initial_state_bw, dtype, sequence_length,
                                    scope=bw_scope)
    out_bw = _reverse_seq(tmp, sequence_length)
    outputs = [pack_as(fw, [ops.concat([ops.as_value(a), ops.as_value(b)], 1)
                            for a, b in zip(flatten(fw), flatten(bw))])
               for fw, bw in zip(out_fw, out_bw)]
    return outputs, st_fw, st_bw
