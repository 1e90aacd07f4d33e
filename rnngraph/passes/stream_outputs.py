"""Stream a loop's stacked output through its per-step consumers (memory planning only).

A forward loop's output stack S ([T, B, ...]) is often read only by per-step work that ends
in sums over time (a loss `reduce_mean(square(dense(y)))`, the gradients of a bias or of a
dense layer's kernel) and, on the gradient side, in the [T, B, ...] gradient that the backward
loop reads one row at a time (`2 * y * g`). Each of those [T, B, ...] tensors is as big as a
saved tensor times T, and none of them is a saved tensor, so a memory plan cannot move them.
This pass moves that work into the loops:

- a sum over the time axis of a region value becomes a carried accumulator of the forward
  loop: each step adds its partial sum (in float64 for narrower floats; cast back after the
  loop), and the final value replaces the sum. Sums are full or partial `reduce_sum`s and
  `reduce_mean`s whose axes include time (a mean divides each step's part by the whole
  count: the stacks' length, computed before the loop, times one step's count), `sum_to`s over
  leading axes (the gradient of an operand broadcast over time and batch), x^T @ g over
  the rows of two merged matrices (the gradient of a dense layer's kernel), and
  sum_to(x^T @ g) over the batch of two [B, T, X] values (that gradient where the batch is
  unknown and the layer multiplies a batch of [T, X] matrices): x_t^T @ g_t per step;
- a max (or min) over the time axis alone (max-pooling a sequence: `reduce_max(y, axis=1)`)
  becomes a carried running max, from the dtype's lowest value: exact (the same bits, but
  where the loop now runs every row: its outputs may differ in their last bits); put back in
  the caller's row order after the loop where the loop sorts its rows (dynamic_rnn with
  sequence_length). Its gradient splits among the steps equal to the max
  (`sum(cast(equal(y, max)), time)` ties): that count (and any other such count of the same
  max), which reads the final max, becomes a running count carried beside it, the whole
  count once the last step ran, and the gradient itself per-step work of the backward loop,
  reading the final max and count as invariants one per row (below). A loop that could
  leave rows or steps out runs them: their zero outputs count in the whole-tensor max. A
  fed max (or any fed sum) is refused;
- a region value the backward loop reads as a sequence is computed inside that loop, per step,
  from the forward loop's per-step output, which becomes one more residual of the forward loop
  (a saved tensor: the planner keeps, offloads or recomputes it like the others); products
  of it with an invariant matrix are lowered apart from the rest (hoist_sequence computes
  them in chunks of steps, from blocks of the same saved rows the steps read).

The region is what reads S through:
- transposes that only move the time axis (dynamic_rnn's batch-major output);
- row reorderings (dynamic_rnn's unsort, and its gradient's inverse), seen through: per-row
  work commutes with them, a sum does not see them, and the backward loop reads rows whose
  reorderings cancel;
- reversals of each row's steps (reverse_sequence along the time axis, its batch axis the
  rows: bidirectional_dynamic_rnn's backward direction, batch- or time-major), seen through
  as a reordering of the steps within each row: a sum over time does not see it, per-step
  work commutes with it where the operands that vary over time are read through the same
  reversal (a fed target, labels, a sequence mask: reversed once before the loop, then
  transposed and sorted as below), and the gradient's reverse_sequence by the same lengths
  undoes it, so the backward loop reads its rows. Only reversals known not to raise where the
  whole-tensor op would not: within the loop's own sequence_length (checked to lie in [0,
  steps] before the loop runs), or over every step (lengths fill([dim(y, rows)], 0) + dim(y,
  time) of region values, as bidirectional_dynamic_rnn builds them without sequence_length;
  those dims read the stack's shape only, and a fed operand is reversed over its own steps).
  Work that mixes rows at one time index (a product x_t^T @ w_t of two time-major values, a
  sum over the batch alone) is refused after a reversal: a row's step t there is another
  step of the loop than another row's. A head over concat([fw, bw], -1) is streamed through
  the backward direction's loops, its concat per-step work there (see below); the forward
  direction's loop runs first, and its output stack stays whole;
- elementwise ops whose other operands are the same at every step and row: scalars, or
  loop-invariant tensors that broadcast over time and the reordered rows (a bias `y + b`,
  b of shape [H]; a keepdims sum's gradient [1, 1, H]), read in the loop as invariants; or
  the same at every step, one per row (a max over time and its gradient, [B, 1, H]): where
  the loop reorders its rows, read in its row order (through the inverse reorderings, once
  before the loop), and the loops reading them run every row (a step's active rows would not
  line up with them);
- elementwise ops with an operand that varies over time as the region value does: a [B, T,
  ...] (or [T, B, ...]) value of the same rank and time axis computed before the forward loop
  and not from its outputs (a fed target, `y - Y`). The loops read it as a sequence input,
  row t per step, where their per-step work needs it: transposed to time-major once before the
  forward loop (a Transpose swapping its first two axes, as dynamic_rnn does with its input;
  a time-major value is read as it is), in the loop's row order: where the region reorders
  the loop's rows by an index computed before the loop (dynamic_rnn's unsort, with
  sequence_length), the fed rows are taken by its inverse (`permute_rows(., order, axis=1)`,
  dynamic_rnn's sort; host_sequences folds it into host_rows). More than one reordering on
  the way is refused. A target whose steps are not static, or the stack's, gets a run-time
  check_steps node (ops/sequence.py) so that other steps than the loop's raise, as the
  whole-tensor op did;
- row ops, which work along the last (class) axis of a region value and never along its time
  axis or its rows: softmax and log_softmax over the last axis, expand_dims of a new last
  axis, reduce_sum and reduce_mean over the last axis alone (the cross-entropy
  -sum(P * log_softmax(logits), -1) of softmax_cross_entropy_with_logits(_v2) and of a
  one-hot written out, and log_softmax's gradient g - exp(y) * sum(g, -1, keepdims)),
  broadcast_like of a region value of size 1 on the last axis to another of the same layout
  (those sums' gradients), and a sparse softmax cross-entropy of the region value as logits
  (a classification head, `sparse_softmax_cross_entropy_with_logits(labels=L,
  logits=dense(y, V))`, and its gradient expand_dims(g, -1) * (softmax(logits) -
  one_hot(L))). Its labels L ([B, T] int,
  fed) are read as a fed target is, row t per step; so is one_hot(L) (of a static depth),
  made per step from L's row; on merged rows (`reshape(logits, [-1, V])`), reshape(L, [-1])
  and its one_hot, whose rows at one step are L's row t (fed values are seen through
  stop_gradient and identity: the loops read the rows of what those read);
- element counts (reduce_mean's gradient), computed per step as above;
- concat along an axis that is neither time nor the rows, whose other operands are sequences
  computed before the loop (in the graph's order) and laid out as the region value, read a row
  per step as a fed target is (the other direction of bidirectional_dynamic_rnn, whose loop
  runs first: concat([fw, bw], -1) under a dense head); the backward loops read such an
  operand's rows from a residual the forward loop saves (a saved tensor a plan may offload),
  not from the whole sequence. Its gradient concat_grad(g, *xs) cuts g per step: the piece of
  a region operand is region work; the piece of such an operand (the other direction's output
  gradient, read whole by that direction's backward loop) is made whole again, stacked by the
  forward loop and taken back through the region's reorderings (stream_concat.py). The loop
  that runs first sees the other direction as a value computed after it: its output stays
  whole;
- the reshape of a [B, T, X] (or [T, B, X]) value into the rows of an [N, X] matrix and back
  (how a dense layer applies its kernel), and products of those rows with one loop-invariant
  matrix (`y_t @ W`): a step's value is the same [B, X] merged or not; the same product of a
  [B, T, X] value with the matrix broadcast over the batch (a dense layer over an unknown
  batch), and products of two time-major [T, B, X] values' steps.
Every reader of the region must be in it or be one of those two sinks, else nothing moves (the
stack is needed whole anyway: a partial reduction over the batch). A region value that is
fetched (y, the logits of a dense head, y + b) is still worked out per step: the forward loop
stacks it as it goes (the output stack itself, or a new stacked output taken back through the
region's reorderings, as a concat's exit is), so only it stays whole, not the gradients or the
loss's temporaries. Fetched merged rows ([N, X]) are refused (the loop stacks steps, not
rows), and so is a fetched value a backward loop reads the rows of (they would be kept twice:
stacked, and saved for that loop). A region value the caller feeds is refused: the fed value
replaces it (optimize's `graph.results["fed"]`). What moves into the forward loop may not
read a value computed from that loop's outputs (`y - mean(y)`).
The forward loop is a top-level loop without a condition. Where it may stop before the end of
its output stack or leave rows out (a trip count, active rows: dynamic_rnn with
sequence_length), those rows of the stack are zero and the loop never sees them. A sum whose
work is zero at zero (`y * y`, `(y * w) @ W`, `y * Y`) moves as it is, and so does one whose
work is multiplied by a sequence mask of the loop's own lengths (`xent * sequence_mask(L, T)`:
zero at every row and step the loop does not run; see _masks_padding). One whose work is not
(`(y + b) ** 2`, `(y - Y) ** 2`, a cross-entropy of a dense head: TF1 counts the padded steps
as zero outputs against the target) makes the forward loop run every row of every step: its
active-rows hint is dropped (the body masks the finished rows itself: zero outputs, the state
kept), and so is its trip count where the steps past it are idle, i.e. the loop is
dynamic_rnn's (trip min(max(max(L), c), m), active rows sum(sequence_mask(L sorted, m)): none
from max(L) on) and only its gradient loop reads its step count; else the sum is refused (a
loop whose body mixes rows has no active rows: its steps past the trip are not known to be
idle). That costs the forward loop the steps past the longest sequence and the finished rows
(shrink_batch skips them otherwise); the backward loop keeps its active rows (the gradient of
an inactive row is masked there). Likewise a count of unknown dims other than time (the batch)
taken per step makes both loops run every row.

The result is ordinary IR (carried states, a residual, invariants, body ops named
`.../streamed`), so it is printed, verified and saved like every graph. The pass is off unless
asked for (`passes={"stream_outputs": True}`); the memory planner asks for it only when a
budget cannot be met without it. The loss then sums per step: equal to the whole-tensor sum up
to rounding. An output left whole is left as it was; `stream_output_consumers(graph,
refusals=[...])` says why, a sentence per output naming the loop and what keeps it whole (for
a plan's notes).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ops.elementwise import (Add, BroadcastLike, Cast, Div, Equal, Maximum, Minimum, Mul,
                               SumTo, Where)
from ..ops.reduce import (AddN, ReduceMax, ReduceMean, ReduceMin, ReduceSum, ReducedCount,
                          reduced_axes)
from ..ops.rows import InvertPermutation, PermuteRows
from ..ops.sequence import CheckSteps, ReverseSequence
from ..ops.linalg import MatMul, MatrixTranspose
from ..ops.nn import LogSoftmax, OneHot, Softmax, SparseSoftmaxCrossEntropy
from ..ops.sources import Constant
from ..ops.fill import Fill
from ..ops.shape import (Concat, ConcatGrad, Dim, ExpandDims, Reshape, ReshapeLike, Squeeze,
                         Transpose)
from .loop_ports import add_invariant, add_sequence
from .stream_concat import before_loop, concat_layout, concat_step, materialize_exit
from .rewrite import replace_uses, result_values, toposort, uses


def stream_output_consumers(graph: Graph, refusals: list | None = None) -> int:
    """Move the per-step consumers of forward loops' output stacks into the loops; how many
    sums and backward sequences were moved. `refusals`: a list to which a sentence is
    appended for each output left whole, naming the loop and what keeps it whole (for a
    plan's notes)."""
    moved = 0
    for node in list(graph.nodes):
        if _streamable_loop(node):
            for k in range(len(node.op.body.results["output"])):
                moved += _stream_output(graph, node, k, why=refusals)
    if moved:
        toposort(graph)
    return moved


def _streamable_loop(node) -> bool:
    op = node.op
    if op.name != "loop" or node.is_gradient:
        return False
    r = op.body.results
    return (not r.get("cond") and op.length_from is not None
            and op.maximum_iterations is None and not op.shrink and not op.chunk_steps)


def _elementwise(node) -> bool:
    """Per-element work (the fusible ops, add_n, broadcast_like, cast): the same at one
    step."""
    op = node.op
    if op.multi_output or getattr(op, "stateful", False) or getattr(op, "view", False):
        return False
    return isinstance(op, (BroadcastLike, AddN, Cast)) or (
        getattr(op, "fusible", False) and op.name != "fused")


def _no(why, loop, reason) -> int:
    """Refuse (0 moved), saying why where asked."""
    if why is not None:
        why.append(f"{loop.name}: its output stays whole: {reason}")
    return 0


def _stream_output(graph, loop, k, why=None) -> int:
    """Stream output k of `loop` (see the module docstring); how many sums and sequences
    moved. `why`: a list to append the reason of a refusal to."""
    op = loop.op
    start = op.out_ports().offset("output")
    stack = loop.outputs[start + k]
    readers = uses(graph)
    kept = set(graph.results.get("keep", [])) | result_values(graph)
    fed_in = set(graph.results.get("fed", ()))   # (the caller's values replace these)
    # region value -> its layout (a, perms, merged): the time axis a, the row permutations
    # on it ((index, axis) pairs), and `merged`: 0, or (for rows of a [N, X] matrix that
    # merges a [B, T, X] or [T, B, X] value's leading axes, axis a holding them) the merged
    # value's time axis and its other leading dim: (time axis, batch dim)
    axis = {stack: (0, (), 0)}
    counts = {}                # element count of a region value -> (that value, its axes)
    order = []                 # region nodes
    work = [stack]
    pending = []               # readers that cannot move as far as the region is known yet
    exits = []                 # region values made whole again (stream_concat.py): the
    # gradient of a fed operand of a concat with the region, a stacked output of the loop
    fetched = []               # region values fetched or kept: region work made whole again too

    def join(n, a):
        order.append(n)
        for out, joins in _joined(n, axis):
            axis[out] = a
            (work if joins else exits).append(out)
    while work:
        v = work.pop()
        if v in fed_in:
            return _no(why, loop, f"{v.node.name} is fed (the fed value replaces it)")
        if v in kept and v is not stack:   # (the stack itself: the loop goes on stacking it)
            a, _, merged = axis[v]
            if merged or a > 1:
                return _no(why, loop, f"{v.node.name} is fetched or kept whole")
            fetched.append(v)
        for n in readers.get(v, []):
            if n in order or n.outputs and (n.outputs[0] in axis or n.outputs[0] in counts):
                continue
            if isinstance(n.op, ReducedCount):   # (reads the shape only: computed per step)
                counts[n.outputs[0]] = (v, tuple(a % v.type.rank for a in n.op.axis))
                continue
            a = _region_axis(n, axis)
            if a is None:
                continue       # not per-step work over the region: a sink or a blocker
            if a is False:
                if n not in pending:
                    pending.append(n)
                continue
            join(n, a)
        if not work:           # (an operand may have joined the region since)
            for n in list(pending):
                a = _region_axis(n, axis)
                if a is not False:
                    pending.remove(n)
                if a:
                    join(n, a)
    if pending or any(_region_axis(n, axis) != axis[n.outputs[0]] for n in order):
        # (the layouts of every region node's operands agree, known in full)
        split = next((r for r in map(lambda p: _split_refusal(p, axis), pending) if r), None)
        if split:   # (a reshape back from merged rows: say why in the user's terms)
            return _no(why, loop, split)
        return _no(why, loop, f"{(pending or order)[0].name} ({(pending or order)[0].op.name}) "
                   "reads it along the time axis or its rows, or its operands' layouts differ")
    # a reversal must be one whose result is known to be a per-row time reordering that
    # raises nowhere the whole-tensor op would not: over every step (its lengths read from
    # the region's own dims) or within the lengths of dynamic_rnn's loop (checked there)
    shape_reads = set()        # dims of region values read only by such lengths
    lengths = _loop_lengths(loop)
    for n in order:
        if isinstance(n.op, ReverseSequence):
            dims = _full_lengths(n.inputs[1], axis, readers, kept, order)
            if dims is None and not _loop_reversal(n.inputs[1], lengths):
                return _no(why, loop, f"{n.name} (reverse_sequence) reverses it within lengths "
                           "that are neither its number of steps nor the loop's sequence_length")
            shape_reads.update(dims or ())
    # every reader of the region must be in it or be a sink
    reductions, sequences = [], []
    products = {}              # sum_to of a batched product -> its two region operands
    if any(x in axis for e in exits for x in e.node.inputs[e.index + 1:e.index + 2]):
        return _no(why, loop, f"{exits[0].node.name} (concat_grad) cuts a gradient for an "
                   "operand that joined the per-step work after it")
    whole = set(exits)         # (read as they are, once made; an unread one is not made)
    exits = [e for e in exits if readers.get(e) or e in kept]
    for v in axis:
        if v in whole:
            continue
        for n in readers.get(v, []):
            if n in order or isinstance(n.op, ReducedCount) or n in shape_reads:
                continue
            summed = _batched_product_sum(n, axis, readers, kept)
            if _sink(n, axis, v.type.rank) or summed:
                if summed:
                    n, products[summed[0]] = summed[0], summed[1:]
                if n not in reductions:   # (a product of two region values is read twice)
                    reductions.append(n)
            elif axis[v][1:] == ((), 0) and _reads_rows(n, loop, v, axis[v][0]):
                sequences.append((n, v))
            else:
                return _no(why, loop, f"{n.name} ({n.op.name}) reads {v.node.name} whole "
                           "(not per-step work, a sum over time, or a loop reading its rows)")
    if not reductions and not sequences and not exits:
        return _no(why if readers.get(stack) else None, loop, "nothing reads it per step")
    read = next((v for _, v in sequences if v in fetched or v in kept), None)
    if read is not None:   # (its rows would be kept twice: stacked, and saved for that loop)
        return _no(why, loop, f"{read.node.name} is fetched and a loop reads its rows")
    exits += fetched
    # a count is read by region work only (the value it counts is not kept whole for it); a
    # loop with active rows may run fewer rows than the stack has (shrink_batch), so there the
    # counted dims other than time must be static
    if any(c in kept or any(n not in order for n in readers.get(c, [])) for c in counts):
        return _no(why, loop, "an element count of it is read outside the per-step work")
    counted = list(counts.values()) + [
        (r.inputs[0], reduced_axes(r.op.axis, r.inputs[0].type.rank))
        for r in reductions if isinstance(r.op, ReduceMean)]
    # (a count of an unknown dim is taken per step: every row must run, in both loops)
    unknown = any(d is None for v, axes in counted for d in _step_dims(v, axes, axis[v]))
    every_row = op.active_rows and unknown
    # region nodes must be computable per step: their other operands are scalars or
    # loop-invariant tensors that broadcast over the time axis and the reordered rows, or
    # sequences fed before the loop that are laid out as the region value (read row by row)
    fed = {}                   # such a sequence -> (its time axis, its rows' reordering)
    reader_at = {}             # such a sequence -> the first region node reading it
    made = set()               # one_hot / reshape(., [-1]) of such a sequence, made per step
    per_row = False            # does region work read a tensor the same at every step, one
    # per row, where the loop reorders the rows? (read in the loop's row order: outer() in
    # _lowering; every row run)
    kept_rows = {}             # such a sequence a concat joins (the other direction's outputs):
    # the backward loops read its rows from the forward loop's residual (a saved tensor, which
    # a plan may offload), not from the whole sequence (then read by the forward loop only)
    for n in order:
        if isinstance(n.op, (PermuteRows, Reshape, ReshapeLike, ReverseSequence)):
            continue
        a, perms, _ = axis[n.outputs[0]]
        rank = n.outputs[0].type.rank
        perms = tuple(p for p in perms if not isinstance(p[0], _Reversal))   # (rows in order)
        for i, u in enumerate(n.inputs):
            if u in axis or u in counts:
                continue
            if isinstance(n.op, MatMul):   # (x @ w, w one matrix: the same at every row)
                if i != 1 or u.type.rank != 2:
                    return _no(why, loop, f"{n.name} multiplies it by {u.node.name}, not "
                               "one matrix")
            elif _broadcasts_over(u, rank, {a} | {p for _, p in perms}) and \
                    not isinstance(n.op, (SparseSoftmaxCrossEntropy, Concat, ConcatGrad)):
                continue   # (labels are never broadcast: one per logits row, or an error;
                # nor is what a concat joins: its dims match the region value's)
            elif perms and _elementwise(n) and not axis[n.outputs[0]][2] and \
                    _broadcasts_over(u, rank, {a}) and _rows_known(u, rank, perms, loop):
                per_row = True   # (a max's gradient reads the max, [B, 1, H], so)
            else:
                src = _fed_rows(u, n, axis[n.outputs[0]], loop)
                if isinstance(n.op, (Concat, ConcatGrad)) and (
                        src is None or not before_loop(src[0], loop)):
                    return _no(why, loop, f"{n.name} ({n.op.name}) joins it with "
                               f"{u.node.name}, which is not a sequence computed before the "
                               "loop (of concat([fw, bw], -1), the direction whose loop runs "
                               "last is streamed, reading the other's outputs a row per step)")
                if src is None or fed.get(src[0], src[1:]) != src[1:]:
                    return _no(why, loop, f"{n.name} reads {u.node.name}, which is neither "
                               "the same at every step and row nor a sequence fed before "
                               "the loop in one layout and row order")
                fed[src[0]] = src[1:]
                reader_at.setdefault(src[0], n)
                if isinstance(n.op, (Concat, ConcatGrad)):
                    kept_rows[src[0]] = None
                if src[0] is not u:
                    made.add(u)
                    if u.node.inputs[0] is not src[0]:
                        made.add(u.node.inputs[0])   # (one_hot(reshape(L, [-1])))
    # what moves into a loop may not read a value computed from that loop's outputs
    every_step = None          # (the first sum not zero at zero, where the loop has a trip)
    masks = _masks_padding(loop, lengths) if lengths is not None else None
    fed_sum = next((r for r in reductions if r.outputs[0] in fed_in), None)
    if fed_sum is not None:   # (the caller's value replaces what the loop would carry)
        return _no(why, loop, f"{fed_sum.name} is fed (the fed value replaces it)")
    ties = _ties(reductions)
    for red in reductions:
        if red in ties:   # (counted with its max, from the steps' own values)
            continue
        ins = list(products.get(red, [u for u in red.inputs if u in axis]))
        if isinstance(red.op, _EXTREMES) or not any(_vanishes(u, axis, masks) for u in ins):
            # (a max sees the zeros of the padded rows and steps, as a sum of f(0) does)
            # (rows of steps or rows that did not run count f(0): the loop must run them)
            every_step = every_step or (red if op.has_trip else None)
            every_row = every_row or op.active_rows
        if any(_reads_after(u, axis, counts, loop) for u in ins):
            return _no(why, loop, f"{red.name} reads a value computed from the loop's outputs")
    for e in exits:   # (made whole from the loop's rows: zero where the loop does not run)
        if not _vanishes(e, axis, masks):
            every_step = every_step or (e.node if op.has_trip else None)
            every_row = every_row or op.active_rows
        if _reads_after(e, axis, counts, loop):
            return _no(why, loop, f"{e.node.name} reads a value computed from the loop's "
                       "outputs")
    if every_step and not _idle_past_trip(graph, loop):
        # (its body may change its state past its trip count: not dynamic_rnn's)
        return _no(why, loop, f"{every_step.name} is not zero where the outputs are, and the "
                   "steps past the loop's trip count are not known to be idle (no active rows: "
                   "its body mixes rows; or not dynamic_rnn's trip count)")
    for reader, v in sequences:
        if _reads_after(v, axis, counts, reader):
            return _no(why, loop, f"{reader.name} reads a value computed from the loop's "
                       "outputs")
    every_step = every_step is not None
    every_row = every_row or per_row and op.active_rows   # (rows a step leaves out
    # would not line up with one per row)
    if every_step or every_row:
        _run_every_row(graph, loop, every_step)
    for reader in dict.fromkeys(r for r, _ in sequences):
        if (unknown or per_row) and reader.op.active_rows:
            _run_every_row(graph, reader, False)
    body = op.body
    y = body.results["output"][k]
    steps = {}
    feeds = {u: [a, idx, rev, None] for u, (a, idx, rev) in fed.items()}   # (made time-major,
    # reversed as the region reverses its rows, in the loop's row order, when first lowered)
    inits = []                 # the streamed accumulators' initial values
    if reductions or exits:
        lowering = _lowering(loop, body, y, axis, counts, steps, feeds=feeds, made=made,
                             saved=kept_rows)
        maxes = {}
        for r, m in ties.items():
            maxes.setdefault(m, []).append(r)
        for red in reductions:
            if isinstance(red.op, _EXTREMES):
                inits += _running_max(graph, loop, red, maxes.get(red, []), lowering[0], axis)
            elif red not in ties:
                inits.append(_accumulate(graph, loop, red, lowering, axis, products.get(red)))
        moved = set(order)
        for e in exits:
            materialize_exit(graph, loop, e, lowering[0](e), axis[e], _Reversal,
                             lambda u: _after(u, loop), moved if e in fetched else ())
    readers_of_rows = list(dict.fromkeys(r for r, _ in sequences))
    if sequences:
        saved = _residual_of(loop, y)
        for reader in readers_of_rows:
            row = add_sequence(reader, saved, f"{saved.node.name}/streamed_rows")
            lower = _lowering(reader, reader.op.body, row, axis, counts, steps, loop,
                              feeds, made, kept_rows)[0]
            for r, v in sequences:
                if r is reader:
                    _compute_in(reader, v, lower)
    _check_steps(graph, loop, feeds, reader_at, inits, readers_of_rows)
    graph.version += 1
    return len(reductions) + len(sequences)


def _check_steps(graph, loop, feeds, reader_at, inits, readers) -> None:
    """Each fed sequence the loops read per step must have the loop's steps: the whole-tensor
    op it fed raised otherwise (incompatible shapes), where the loops alone would read its
    first steps. Unless both are static (and then equal: _fed_value), a check_steps node
    (ops/sequence.py) compares its time-major value's steps with the loop's length sequence at
    run time, reading their shapes only; it passes through a value the loops need anyway (a
    streamed accumulator's initial zero, or the first carried input of a backward loop reading
    the rows), so it runs before them."""
    op = loop.op
    like = op.in_ports().split(loop.inputs)["sequence"][op.length_from]
    for u, (a, _, _, seq) in feeds.items():
        if seq is None or (u.type.shape[a] is not None and like.type.shape[0] is not None):
            continue
        if inits:
            carrier, port = loop, loop.inputs.index(inits[0])
        else:
            carrier = next((r for r in readers if _has_carried(r)), None)
            if carrier is None:
                continue
            port = carrier.op.in_ports().offset("carried")
        x = carrier.inputs[port]
        at = reader_at.get(u, u.node)
        check = CheckSteps()
        node = graph.add_node(check, [x, seq, like], [check.infer(x.type, seq.type, like.type)],
                              f"{u.node.name}/streamed/check_steps", at.location)
        node.is_gradient = x.node.is_gradient
        carrier.inputs[port] = node.outputs[0]
        if inits:
            inits[0] = node.outputs[0]


def _has_carried(loop) -> bool:
    """The loop has a carried input."""
    return loop.op.in_ports().sizes["carried"] > 0


def _idle_past_trip(graph, loop) -> bool:
    """Would the loop's steps from its trip count to the end of its sequences change nothing
    (carried state kept, zero outputs), and does only its gradient loop read how many steps it
    ran? True for dynamic_rnn's loop with sequence_length (see _loop_lengths), the body
    masking the inactive rows (ops/loop_rows.py: a loop with active rows)."""
    if any(not (r.op.name == "loop" and r.is_gradient and
                r.op.in_ports().split(r.inputs)["trip"] == [loop.outputs[0]])
           for r in uses(graph).get(loop.outputs[0], [])):
        return False
    return _loop_lengths(loop) is not None


def _loop_lengths(loop):
    """dynamic_rnn's lengths of the loop's rows: (L, sorted L, order) where the loop is
    dynamic_rnn's with sequence_length: its trip count is min(max(max(L), c), m) and its active
    row counts are sum(sequence_mask(sorted L, m)) over the batch, sorted L =
    permute_rows(L, order) (or L itself); so the rows and steps the loop does not run are
    exactly those at steps t >= L[b] (t >= the trip count is past every length). Else None."""
    op = loop.op
    if not op.active_rows or not op.has_trip:
        return None
    parts = op.in_ports().split(loop.inputs)
    trip, rows = parts["trip"][0].node, parts["rows"][0].node
    if trip.op.name != "minimum" or rows.op.name != "reduce_sum" or \
            reduced_axes(rows.op.axis, 2) != (1,) or rows.inputs[0].node.op.name != "cast":
        return None
    mask = rows.inputs[0].node.inputs[0].node
    if mask.op.name != "sequence_mask" or mask.inputs[1] not in trip.inputs:
        return None
    lengths = in_loop = mask.inputs[0]
    order = None
    if lengths.node.op.name == "permute_rows":
        lengths, order = lengths.node.inputs
    top = trip.inputs[1] if trip.inputs[0] is mask.inputs[1] else trip.inputs[0]
    if top.node.op.name == "maximum":
        top = next((u for u in top.node.inputs if u.node.op.name == "reduce_max"), top)
    if top.node.op.name == "reduce_max" and top.node.inputs[0] is lengths and \
            reduced_axes(top.node.op.axis, 1) == (0,):
        return lengths, in_loop, order
    return None


def _same_lengths(u):
    """u seen through what does not change a length's value: identity, stop_gradient, the
    run-time check of sequence_length, and integer casts that cannot wrap (to a type at least
    as wide, or of a checked length, which is at most the number of steps)."""
    while True:
        n = u.node
        if n.op.name in ("identity", "stop_gradient", "check_sequence_length"):
            u = n.inputs[0]
        elif isinstance(n.op, Cast) and np.issubdtype(u.dtype, np.integer) and \
                np.issubdtype(n.inputs[0].dtype, np.integer) and (
                    np.dtype(u.dtype).itemsize >= np.dtype(n.inputs[0].dtype).itemsize or
                    n.inputs[0].node.op.name == "check_sequence_length"):
            u = n.inputs[0]
        else:
            return u


def _steps_below(u) -> bool:
    """u is 0, 1, ..., n-1: range(0, n, 1) (a constant, or the op with those constants)."""
    n = u.node
    if isinstance(n.op, Constant):
        v = np.asarray(n.op.value)
        return v.ndim == 1 and np.issubdtype(v.dtype, np.integer) and \
            bool((v == np.arange(v.shape[0])).all())
    if n.op.name != "range":
        return False
    start, delta = (w.node for w in (n.inputs[0], n.inputs[2]))
    return all(isinstance(c.op, Constant) and np.asarray(c.op.value).ndim == 0
               for c in (start, delta)) and \
        int(np.asarray(start.op.value)) == 0 and int(np.asarray(delta.op.value)) == 1


def _mask_of(u):
    """Where u is zero at each step t >= L[b] of each row b (a sequence mask of lengths L, or
    a value that is zero where one is): (L, batch axis, time axis), the axes counted from the
    end (negative), or (L, "merged", time axis of the merged [B, T] value) for its reshape to
    [-1]; else None. Recognised: range(n) < expand_dims(L, -1) (rg.sequence_mask, the TF1
    idiom) and expand_dims(L, -1) > range(n); seen through casts (0 stays 0), identity,
    stop_gradient, expand_dims of a new last axis, a 2-D transpose, and products and logical
    ands with other values (0 times a finite value is 0)."""
    n = u.node
    op = n.op
    if op.name in ("less", "greater"):
        r, e = n.inputs if op.name == "less" else n.inputs[::-1]
        if not _steps_below(r) or e.node.op.name != "expand_dims" or e.type.rank != 2 or \
                e.node.op.axis not in (-1, 1):
            return None
        return e.node.inputs[0], -2, -1
    if isinstance(op, Cast) or op.name in ("identity", "stop_gradient"):
        return _mask_of(n.inputs[0])
    if isinstance(op, ExpandDims):
        m = _mask_of(n.inputs[0])
        if m is None or m[1] == "merged" or op.axis not in (-1, n.inputs[0].type.rank):
            return None
        return m[0], m[1] - 1, m[2] - 1
    if isinstance(op, Transpose):
        m = _mask_of(n.inputs[0])
        if m is None or m[1] == "merged" or tuple(op.perm) != (1, 0):
            return None
        return m[0], m[2], m[1]
    if isinstance(op, Reshape):
        m = _mask_of(n.inputs[0])
        if m is None or m[1] == "merged" or tuple(op.shape) != (-1,) or \
                n.inputs[0].type.rank != 2:
            return None
        return m[0], "merged", 2 + m[2]
    if op.name in ("mul", "logical_and"):
        out = u.type
        for w in n.inputs:
            m = _mask_of(w)
            if m is None or m[1] == "merged" or w.type.rank != out.rank:
                continue
            # (not broadcast along its rows or steps: there it is the mask itself)
            if all(w.type.shape[x] == out.shape[x] or w.type.shape[x] not in (1, None) and
                   out.shape[x] is None for x in m[1:]):
                return m
        return None
    return None


def _masks_padding(loop, lengths):
    """A test of whether a value (not region work) that an elementwise product multiplies a
    region value by is zero at every row and step the loop does not run (a loss weighted by a
    sequence mask of dynamic_rnn's lengths): f(u, layout of the product's result). `lengths`:
    _loop_lengths(loop). The mask's rows must be the region value's: its lengths L taken in
    the caller's order where the region unsorts the loop's rows (dynamic_rnn), the loop's
    sorted lengths where it does not reorder them."""
    L, in_loop, order = lengths
    L, in_loop = _same_lengths(L), _same_lengths(in_loop)

    def test(u, v, layout):
        m = _mask_of(u)
        if m is None:
            return False
        a, perms, merged = layout
        if merged:
            if m[1] != "merged" or m[2] != merged[0] or u.type.rank != v.type.rank:
                return False
            rows = 0
        else:
            rank = v.type.rank
            rows = 1 - a
            if m[1] == "merged" or a > 1 or rank < 2 or u.type.rank < -m[1] or \
                    rank + m[2] != a or rank + m[1] != rows:
                return False
            # (not broadcast along the rows or steps: there it is the mask itself)
            if any(u.type.shape[x] != v.type.shape[x] and (u.type.shape[x] in (1, None) or
                                                           v.type.shape[x] is not None)
                   for x in m[1:]):
                return False
        want = in_loop
        rev = None
        if perms and isinstance(perms[-1][0], _Reversal):
            rev, perms = perms[-1][0], perms[:-1]
        if perms:
            idx, p = perms[0]
            if len(perms) != 1 or p != rows or order is None or isinstance(idx, _Reversal) or \
                    not isinstance(idx.node.op, InvertPermutation) or \
                    idx.node.inputs[0] is not order:
                return False
            want = L
        # (a reversal within the mask's own lengths leaves it as it is: ones below each
        # row's length, zeros from there on)
        if rev is not None and _same_lengths(rev.lengths) is not want:
            return False
        return _same_lengths(m[0]) is want
    return test


def _run_every_row(graph, loop, every_step) -> None:
    """The loop runs every row of every step it runs (`every_step`: past its trip count too,
    _idle_past_trip), so that streamed sums see the zero outputs of the rows and steps that
    did not run, and counts taken per step count every row: its active row counts (a hint:
    the body masks those rows) and, `every_step`, its trip count are dropped."""
    op = loop.op
    ports = op.in_ports()
    drop = {ports.offset("rows")} if op.active_rows else set()
    if every_step:
        drop.add(ports.offset("trip"))
    loop.inputs = [u for i, u in enumerate(loop.inputs) if i not in drop]
    op.active_rows = False
    op.has_trip = op.has_trip and not every_step
    graph.version += 1


class _Reversal:
    """A reversal of each row's steps (reverse_sequence along a region value's time axis, its
    batch axis the rows) by `lengths`, as a layout's row reordering (its axis: the rows).
    Equal to another by its lengths value: the gradient's reverse_sequence reads the same."""
    __slots__ = ("lengths",)

    def __init__(self, lengths):
        self.lengths = lengths

    def __eq__(self, other):
        return isinstance(other, _Reversal) and other.lengths is self.lengths

    def __hash__(self):
        return hash(("reversal", id(self.lengths)))


def _reversed(perms) -> bool:
    """A layout's reorderings include a reversal of steps."""
    return any(isinstance(i, _Reversal) for i, _ in perms)


def _full_lengths(u, axis, readers, kept, order):
    """u, the lengths of a reverse_sequence of the region, is fill([dim(v, rows)], 0) +
    dim(w, time) of region values v and w (bidirectional_dynamic_rnn without sequence_length):
    every row reversed over all its steps, which a region value has as many as the stack
    (no lengths out of range). Those dims, read by nothing else (then the stack is not kept
    whole for them), the lengths read only by reversals of the region and not kept; else None."""
    n = u.node
    if n.op.name != "add" or len(n.inputs) != 2 or u in kept or \
            not np.issubdtype(u.dtype, np.integer) or \
            any(not isinstance(r.op, ReverseSequence) or r not in order or r.inputs[0] is u
                for r in readers.get(u, [])):
        return None
    for fill, steps in (n.inputs, n.inputs[::-1]):
        f, d = fill.node, steps.node
        if not isinstance(f.op, Fill) or f.op.value != 0 or len(f.op.shape) != 1 or \
                not isinstance(d.op, Dim) or d.inputs[0] not in axis or \
                len(readers.get(fill, [])) != 1 or fill in kept:
            continue
        a, _, merged = axis[d.inputs[0]]
        if merged or d.op.axis % d.inputs[0].type.rank != a:
            continue
        dims = [d]
        if f.inputs:   # (the number of rows, read at run time)
            b = f.inputs[0].node
            if not isinstance(b.op, Dim) or b.inputs[0] not in axis:
                continue
            a, _, merged = axis[b.inputs[0]]
            if merged or a > 1 or b.op.axis % b.inputs[0].type.rank != 1 - a:
                continue
            dims.append(b)
        elif any(r.inputs[0].type.shape[r.op.batch_axis] != f.op.shape[0]
                 for r in readers.get(u, [])):
            continue   # (a static count of lengths: one per row, as the op requires)
        if all(len(readers.get(x.outputs[0], [])) == 1 and x.outputs[0] not in kept
               for x in dims):
            return dims
    return None


def _loop_reversal(u, lengths) -> bool:
    """u, the lengths of a reverse_sequence of the region, are those of dynamic_rnn's loop
    (`lengths`: _loop_lengths), in the caller's row order: checked at run time to lie in
    [0, steps] before the loop runs, so the reversal is a reordering of each row's steps."""
    return lengths is not None and _same_lengths(u) is _same_lengths(lengths[0])


def _broadcasts_over(u, rank, axes) -> bool:
    """u (not region work) is the same at every step and row: a scalar, a tensor of lower
    rank whose dims (aligned to the right, as broadcasting does) miss `axes`, or one of the
    same rank whose dims at `axes` are 1 (a keepdims reduction's gradient)."""
    r = u.type.rank
    return r == 0 or (r < rank and max(axes) < rank - r) or \
        (r == rank and all(u.type.shape[x] == 1 for x in axes))


def _rows_known(u, rank, perms, loop) -> bool:
    """u, read one per row by work on a region value of rank `rank` whose rows are reordered
    by `perms`, has those rows, not one broadcast to all: its row dims are static, or it is
    computed from the loop's outputs (a max over time keeps their rows)."""
    lead = rank - u.type.rank
    return _after(u, loop) or all(u.type.shape[p - lead] is not None
                                  for _, p in perms if p >= lead)


def _fed_rows(u, n, layout, loop):
    """u, an operand of region node n (elementwise, or the labels of a sparse softmax
    cross-entropy) that is not region work, varies over time as n's output does: a [B, T, ...]
    (or [T, B, ...]) value computed before the forward loop (a fed target), of n's rank and
    time axis, or the one_hot of such a value of one rank less (fed labels' one-hot rows, the
    cross-entropy's gradient); on merged rows ([N, ...] of a [B, T, X] value) the same of
    reshape(L, [-1]), L a fed [B, T] (or [T, B]) value merged alike. The loops can read the fed
    value row by row, transposed to time-major once before the forward loop, where the loop's
    rows are the fed rows or the region reorders them once, on the batch axis, by an index
    computed before the loop (dynamic_rnn's unsort): the loops then read the fed rows in the
    inverse order (see _time_major). Returns (the fed value, its time axis, that index or
    None), or None."""
    a, perms, merged = layout
    rev = None
    if perms and isinstance(perms[-1][0], _Reversal):   # (the last reordering: undone first)
        rev, perms = perms[-1][0], perms[:-1]
    if _reversed(perms):
        return None
    out = n.outputs[0].type
    labels = isinstance(n.op, SparseSoftmaxCrossEntropy) and u is n.inputs[0] and \
        n.inputs[1] is not u
    if not (labels or _elementwise(n) and not isinstance(n.op, BroadcastLike) or
            isinstance(n.op, (Concat, ConcatGrad))) or \
            len(perms) > 1 or u.type.rank != out.rank:
        return None
    if merged:
        src = _fed_merged(u, merged, loop)
    elif a > 1 or out.rank < 2:
        return None
    else:
        src = _fed_value(u, a, out.shape[a], loop)
    if src is None:
        return None
    if rev is not None:
        # (read through the same reversal, within the same lengths: the loop's lengths,
        # computed before it, or every step, read from the fed value's own dims)
        full = _after(rev.lengths, loop)
        if not full and src[0].type.shape[1 - src[1]] == 1:
            return None   # (one row broadcast to all would become one per length)
        rev = (rev.lengths, full)
    if not perms:
        return src + (None, rev)
    idx, p = perms[0]
    # (the rows reordered: on the batch axis of the fed value, by an index computed before
    # the loop; merged rows are reordered on their batch part)
    if (0 if merged else 1 - a) != p or _after(idx, loop):
        return None
    return src + (idx, rev)


def _fed_value(u, a, steps, loop):
    """u (or L, where u is one_hot(L) of a static depth) is a value computed before the loop
    whose axis a is time, of `steps` steps where both are known: (that value, a), or None."""
    node = u.node
    if isinstance(node.op, OneHot) and node.op.depth is not None and len(node.inputs) == 1:
        u = node.inputs[0]   # (one_hot's new axis is the last: time stays at a)
    while u.node.op.name in ("stop_gradient", "identity"):
        u = u.node.inputs[0]   # (the same values: the loops read the rows of what it reads)
    if u.type.rank < 2 or a > 1:
        return None
    t = u.type.shape[a]
    if t == 1 or (t is not None and steps is not None and t != steps):
        return None   # (1: the same at every step, an invariant; checked apart)
    return None if _after(u, loop) else (u, a)


def _fed_merged(u, merged, loop):
    """u is reshape(L, [-1]) (or its one_hot of a static depth), L a [B, T] (or [T, B]) value
    computed before the loop, whose rows merge as the region's [B, T, X] rows did (`merged`:
    their time axis and batch dim): one step of u is L's row t. (L, its time axis), or None."""
    node = u.node
    if isinstance(node.op, OneHot) and node.op.depth is not None and len(node.inputs) == 1:
        u, node = node.inputs[0], node.inputs[0].node
    t, batch = merged
    if not isinstance(node.op, Reshape) or tuple(node.op.shape) != (-1,) or u.type.rank != 1:
        return None
    L = node.inputs[0]
    if L.type.rank != 2 or L.type.shape[1 - t] not in (None, batch) or L.type.shape[t] == 1:
        return None
    return None if _after(L, loop) else (L, t)


def _batched_product_sum(n, axis, readers, kept):
    """n is a part of sum_to(matrix_transpose(x) @ g) over the batch, with x and g [B, T, X]
    region values of one layout (time on the rows of each batch's matrix): the gradient of a
    dense layer's kernel over an unknown batch (a batch of [T, X] matrices times the kernel).
    Returns (the sum_to, x, g), whose per-step part is x_t^T @ g_t; else None."""
    if isinstance(n.op, MatrixTranspose):
        mms = readers.get(n.outputs[0], [])
        if len(mms) != 1 or not isinstance(mms[0].op, MatMul) or \
                mms[0].inputs[0] is not n.outputs[0]:
            return None
        t, mm = n, mms[0]
    elif isinstance(n.op, MatMul):
        t, mm = n.inputs[0].node, n
        if not isinstance(t.op, MatrixTranspose) or len(readers.get(t.outputs[0], [])) != 1:
            return None
    else:
        return None
    x, g = t.inputs[0], mm.inputs[1]
    if x not in axis or g not in axis or x.type.rank != 3 or g.type.rank != 3:
        return None
    (xa, xp, xm), (ga, gp, gm) = axis[x], axis[g]
    if xm or gm or xa != 1 or ga != 1 or [i for i, _ in xp] != [i for i, _ in gp]:
        return None
    sums = readers.get(mm.outputs[0], [])
    if len(sums) != 1 or not isinstance(sums[0].op, SumTo) or sums[0].op.lead != 1 or \
            sums[0].op.axes or t.outputs[0] in kept or mm.outputs[0] in kept or \
            any(d is None for d in sums[0].outputs[0].type.shape):
        return None
    return sums[0], x, g


def _reads_after(v, axis, counts, loop) -> bool:
    """The region work computing v reads a value computed from the loop's outputs."""
    for n in _region_nodes_of(v, axis, counts):
        # (a reversal's lengths are not read per step: checked apart, _full_lengths)
        ins = n.inputs[:1] if isinstance(n.op, ReverseSequence) else n.inputs
        if any(u not in axis and u not in counts and _after(u, loop) for u in ins):
            return True
    return False


def _region_axis(n, axis):
    """The layout of n's output when n is per-step work over region values (see
    _stream_output); None: n is not region work; False: n reads the region in a way that
    cannot move."""
    ins = [u for u in n.inputs if u in axis]
    op = n.op
    if isinstance(op, Transpose):
        a, perms, merged = axis[n.inputs[0]]
        perm = op.perm
        rest = [p for p in perm if p != a]
        if merged or rest != sorted(rest):
            return False
        return (perm.index(a), tuple((i, perm.index(p)) for i, p in perms), 0)
    if isinstance(op, ReverseSequence):
        x, lengths = n.inputs
        if x not in axis or lengths in axis:
            return False
        a, perms, merged = axis[x]
        rank = x.type.rank
        if merged or a > 1 or op.seq_axis % rank != a or op.batch_axis % rank != 1 - a:
            return False   # (along the time axis, the rows its batch: else not per-row)
        rev = (_Reversal(lengths), 1 - a)   # (an involution: the same one again undoes it)
        return (a, perms[:-1] if perms and perms[-1] == rev else perms + (rev,), 0)
    if isinstance(op, PermuteRows):
        x, idx = n.inputs
        if idx in axis or x not in axis or op.axis == axis[x][0] or axis[x][2]:
            return False
        a, perms, _ = axis[x]
        inverse = perms and idx.node.op.__class__ is InvertPermutation and \
            idx.node.inputs[0] is perms[-1][0] and perms[-1][1] == op.axis
        return (a, perms[:-1] if inverse else perms + ((idx, op.axis),), 0)
    if isinstance(op, (Reshape, ReshapeLike)):
        return _reshaped(n, axis)
    if isinstance(op, MatrixTranspose):
        a, perms, merged = axis[n.inputs[0]]
        rank = n.inputs[0].type.rank
        if not merged and _reversed(perms):
            return False   # (its products sum rows of different steps: see _stepwise_product;
            # merged rows are summed whole, over every step)
        if not merged:   # (the time axis must lead: a step's value is transposed alike;
            # on the rows of batch-major [B, T, X] it is the first half of a batched product
            # summed over the batch, a sink: see _batched_product_sum)
            return (a, perms, 0) if a < rank - 2 else None if a == rank - 2 else False
        return (1 - a, tuple((i, 1 - a) for i, _ in perms), merged)
    if isinstance(op, MatMul):
        x, w = n.inputs
        if x not in axis and w in axis and isinstance(x.node.op, MatrixTranspose) and \
                x.node.inputs[0] in axis:
            return None   # (x^T @ w of two region values: see _batched_product_sum)
        if x in axis and w in axis and _stepwise_product(x, w, axis):
            return (axis[x][0], (), 0)
        if x not in axis or w in axis or w.type.rank != 2:
            # (both: a sink or nothing; w not a matrix: region work once w joins, or nothing)
            return None if x in axis and w in axis else False
        a, perms, merged = axis[x]
        return axis[x] if a != x.type.rank - 1 else False   # (rows times one matrix)
    if isinstance(op, (Softmax, LogSoftmax, SparseSoftmaxCrossEntropy, ExpandDims, ReduceSum,
                       ReduceMean)):
        return _row_op(n, axis)
    if isinstance(op, (Concat, ConcatGrad)):
        return concat_layout(n, axis)
    if not _elementwise(n):
        return None
    if isinstance(op, BroadcastLike):
        x, like = n.inputs
        if x in axis:   # (a region value broadcast along the class axis: a row op)
            return _class_broadcast(x, like, axis)
        return axis[like]   # (x: checked as any other operand that is not region work)
    layouts = {axis[u] for u in ins}
    ranks = {u.type.rank for u in ins}
    if len(layouts) != 1 or len(ranks) != 1 or n.outputs[0].type.rank not in ranks:
        return False
    return layouts.pop()


def _joined(n, axis):
    """(output, whether it joins the region's work) for the outputs of region node n: all of
    them, but those of a concat_grad whose operand is not region work (a fed value's gradient:
    made whole again, stream_concat.py)."""
    if isinstance(n.op, ConcatGrad):
        return [(out, x in axis) for out, x in zip(n.outputs, n.inputs[1:])]
    return [(n.outputs[0], True)]


def _row_op(n, axis):
    """n works row by row along the last (class) axis of a region value x, never along its
    time or reordered rows: softmax or log_softmax over the last axis, a sparse softmax
    cross-entropy of x as logits (its labels: fed per step, checked with the other operands),
    expand_dims of a new last axis. The output's layout is x's (the class axis is not one of
    its axes); None where n reads no region value as x, False where it cannot move."""
    op = n.op
    x = n.inputs[1] if isinstance(op, SparseSoftmaxCrossEntropy) else n.inputs[0]
    if x not in axis:
        return None if all(u not in axis for u in n.inputs) else False
    if any(u in axis for u in n.inputs if u is not x):
        return False   # (region labels: not rows fed before the loop)
    a, perms, merged = axis[x]
    last = x.type.rank - 1
    if isinstance(op, (ReduceSum, ReduceMean)):   # (a sum over the class axis alone)
        if reduced_axes(op.axis, x.type.rank) != (last,) or a == last or \
                any(p == last for _, p in perms):
            return None   # (over time or the rows: a sink, or nothing)
        return axis[x]
    if isinstance(op, ExpandDims):
        at = op.axis % (x.type.rank + 1)
        return axis[x] if at == x.type.rank else False
    if isinstance(op, (Softmax, LogSoftmax)) and op.axis % x.type.rank != last:
        return False
    if a == last or any(p == last for _, p in perms):
        return False   # (the class axis must be neither time nor the rows)
    return axis[x]


def _class_broadcast(x, like, axis):
    """broadcast_like(x, like) of two region values of one layout, x of size 1 on the last
    (class) axis and like's size on the others (the gradient of a sum over the class axis):
    like's layout, or False."""
    if like not in axis or axis[x] != axis[like] or x.type.rank != like.type.rank or \
            x.type.shape[-1] != 1:
        return False
    a, perms, _ = axis[x]
    if a == x.type.rank - 1 or any(p == x.type.rank - 1 for _, p in perms):
        return False
    ok = all(d is None or d == e or e is None and d != 1
             for d, e in zip(x.type.shape[:-1], like.type.shape[:-1]))
    return axis[like] if ok else False


def _stepwise_product(x, w, axis) -> bool:
    """x @ w of two region values with time on a batch axis of both (time-major [T, B, X]
    values: x_t @ w_t per step); rows reordered only where the product sums over them (w's rows
    and, under x = matrix_transpose(u), u's rows, reordered alike)."""
    (xa, xp, xm), (wa, wp, wm) = axis[x], axis[w]
    rank = x.type.rank
    if xm or wm or xa != wa or xa >= rank - 2 or w.type.rank != rank or _reversed(xp + wp):
        return False   # (reversed rows: a step's rows come from different steps of the loop)
    if not xp and not wp:
        return True
    u = x.node.inputs[0] if isinstance(x.node.op, MatrixTranspose) else None
    return u in axis and [i for i, _ in axis[u][1]] == [i for i, _ in wp] and \
        all(p == rank - 2 for _, p in axis[u][1] + wp)


def _reshaped(n, axis):
    """A reshape that merges a [B, T, X] (or [T, B, X]) region value's leading axes into the
    rows of an [N, X] matrix (how dense layers apply their kernel), or splits such rows back:
    one step's value is the same [B, X] either way."""
    x = n.inputs[0]
    out = n.outputs[0].type
    if x not in axis:
        return False
    a, perms, merged = axis[x]
    if isinstance(n.op, ReshapeLike):
        like = n.inputs[1]
        if like not in axis or x.type.shape[-1] != like.type.shape[-1]:
            return False
        la, lperms, lmerged = axis[like]
        if [i for i, _ in perms] != [i for i, _ in lperms] or bool(merged) == bool(lmerged):
            return False
        if lmerged:   # merging x [B, T, X] as `like` was merged
            ok = x.type.rank == 3 and like.type.rank == 2 and lmerged[0] == a and la == 0 \
                and x.type.shape[1 - a] == lmerged[1]
        else:         # splitting x's rows back into `like`'s [B, T, X]
            ok = like.type.rank == 3 and x.type.rank == 2 and merged[0] == la and a == 0 \
                and like.type.shape[1 - la] == merged[1]
        return axis[like] if ok else False
    target = n.op.shape
    if not merged:
        if x.type.rank != 3 or a > 1 or out.rank != 2 or target[0] != -1 or \
                out.shape[1] != x.type.shape[2] or out.shape[1] is None:
            return False
        return (0, tuple((i, 0) for i, _ in perms), (a, x.type.shape[1 - a]))
    t, batch = merged
    if a != 0 or len(target) != 3 or target[2] != x.type.shape[1] or \
            not _splits_back(target[t], target[1 - t], batch, _stack_steps(axis)):
        return False
    return (t, tuple((i, 1 - t) for i, _ in perms), 0)


def _splits_back(time, rows, batch, steps) -> bool:
    """Does a reshape's target (`time` and `rows`: its sizes at the merged value's time and
    batch axes, -1 for the one inferred) split N = batch * steps merged rows back into their
    batch and steps, whatever the run? So when the batch is static and time is -1 (or the
    batch), or the steps are static and time is that number (with the batch -1 or the batch)."""
    if time == -1:
        return batch is not None and rows == batch
    return steps is not None and time == steps and (rows == -1 or
                                                    batch is not None and rows == batch)


def _stack_steps(axis):
    """The static length of the output stack the region reads (the first region value), or
    None."""
    return next(iter(axis)).type.shape[0]


def _split_refusal(n, axis):
    """Why reshape n, splitting merged rows, is not known to undo the merge, in the user's
    words; None where n is not such a reshape."""
    x = n.inputs[0]
    if not isinstance(n.op, Reshape) or x not in axis or not axis[x][2] or \
            len(n.op.shape) != 3:
        return None
    t, batch = axis[x][2]
    target = list(n.op.shape)
    steps = _stack_steps(axis)
    shown = "[" + ", ".join(str(d) for d in target) + "]"
    if target[2] != x.type.shape[1]:
        return (f"{n.name} reshapes the merged rows [N, {x.type.shape[1]}] to {shown}, which "
                "changes the last axis")
    merged = "[batch * time" if t == 1 else "[time * batch"
    what = f"{n.name} reshapes the merged {merged}, {x.type.shape[1]}] rows to {shown}"
    if target[t] == -1:
        return (f"{what}: with the batch unknown when the graph is built, that is not known to "
                "give back the batch and time axes (give the input a static batch size)")
    known = "the number of steps is not known when the graph is built" if steps is None \
        else f"the loop runs {steps} steps"
    split = [-1, -1, target[2]]
    split[1 - t] = batch if batch is not None else "batch"
    shown = "[" + ", ".join(str(d) for d in split) + "]"
    fix = f"reshape to {shown}" if batch is not None else \
        f"a static batch size and reshape to {shown}"
    return (f"{what}: {known}, so {target[t]} is not known to be the time axis (give the "
            f"input a static time dimension, or {fix})")


_ZERO_KEEPING = ("neg", "square", "abs", "tanh", "relu", "sqrt", "sin", "sign")


def _vanishes(v, axis, masks=None) -> bool:
    """The region value is zero where the output stack is (a row of a step that did not run).
    `masks(u, product, layout)`: whether u, a value that is not region work, is zero at the rows
    and steps the loop does not run (_masks_padding); a product by such a value vanishes."""
    n = v.node
    if n.op.name == "loop":
        return True
    if isinstance(n.op, (Transpose, PermuteRows, Reshape, ReshapeLike, MatrixTranspose,
                         ExpandDims, ReverseSequence)):
        return n.inputs[0] in axis and _vanishes(n.inputs[0], axis, masks)
    if isinstance(n.op, MatMul):   # (a zero row of x gives a zero row of x @ w)
        return any(_vanishes(u, axis, masks) for u in n.inputs if u in axis)
    if isinstance(n.op, ConcatGrad):   # (pieces of the gradient it cuts)
        return n.inputs[0] in axis and _vanishes(n.inputs[0], axis, masks)
    region = [u for u in n.inputs if u in axis]
    if isinstance(n.op, Concat):
        return len(region) == len(n.inputs) and all(_vanishes(u, axis, masks) for u in region)
    if n.op.name == "mul":
        return any(_vanishes(u, axis, masks) for u in region) or masks is not None and \
            any(u not in axis and masks(u, v, axis[v]) for u in n.inputs)
    if n.op.name == "div":
        return n.inputs[0] in axis and n.inputs[1] not in axis and \
            _vanishes(n.inputs[0], axis, masks)
    if n.op.name in ("add", "sub", "add_n") or n.op.name in _ZERO_KEEPING:
        return len(region) == len(n.inputs) and all(_vanishes(u, axis, masks) for u in region)
    return False


def _sink(n, axis, rank) -> bool:
    """n sums a region value over its time axis (and its reordered rows): a full or partial
    reduce_sum or reduce_mean, a sum_to over leading axes (the gradient of an operand
    broadcast over time), or the product x^T @ g of two matrices of merged rows (the gradient
    of a dense layer's kernel), whose per-step partial result has a static shape; or n is a
    max (min) over the time axis alone, or the count of its ties (_tied_to), carried in the
    loop's row order (the rows may be unknown: read from the loop's input)."""
    op = n.op
    if isinstance(op, _EXTREMES):   # (over the time axis alone: a running max, its rows put
        x = n.inputs[0]             # back in the caller's order after the loop, unknown or not)
        return x in axis and not axis[x][2] and reduced_axes(op.axis, rank) == (axis[x][0],) \
            and np.dtype(x.type.dtype).kind in "fiu" and \
            all(d is not None for i, d in enumerate(x.type.shape) if i not in (0, 1))
    tied = _tied_to(n) if isinstance(op, ReduceSum) else None
    if tied is not None:   # (a max's ties: counted with it, rows put back alike)
        return _sink(tied, axis, rank)
    out = n.outputs[0].type
    if out.rank and any(d is None for d in out.shape):
        return False
    if isinstance(op, MatMul):
        x, g = n.inputs
        if x not in axis or g not in axis or x.type.rank != 2 or g.type.rank != 2:
            return False
        (xa, xp, xm), (ga, gp, gm) = axis[x], axis[g]
        return bool(xm) and xm == gm and xa == 1 and ga == 0 and \
            [i for i, _ in xp] == [i for i, _ in gp]
    if not isinstance(op, (ReduceSum, ReduceMean, SumTo)) or n.inputs[0] not in axis:
        return False
    a, perms, _ = axis[n.inputs[0]]
    if isinstance(op, (ReduceSum, ReduceMean)):
        summed = set(reduced_axes(op.axis, rank))
    elif isinstance(op, SumTo):
        if a >= op.lead:
            return False
        summed = set(range(op.lead))
    # (a reversal reorders steps within each row: a sum over time does not see it)
    return a in summed and all(p in summed for i, p in perms if not isinstance(i, _Reversal))


def _reads_rows(n, loop, v, a) -> bool:
    """n is a loop that runs the forward loop's steps and reads v one row per step."""
    if n.op.name != "loop" or a != 0 or not n.op.has_trip or n.op.chunk_steps \
            or n.op.shrink:
        return False
    parts = n.op.in_ports().split(n.inputs)
    return parts["trip"][0] is loop.outputs[0] and v in parts["sequence"] \
        and v not in parts["carried"] + parts["invariant"]


def _after(v, loop) -> bool:
    """v is computed from the loop's outputs."""
    seen, work = set(), [v.node]
    while work:
        n = work.pop()
        if n is loop:
            return True
        if n not in seen:
            seen.add(n)
            work += [u.node for u in n.inputs]
    return False


def _region_nodes_of(v, axis, counts) -> list:
    """The region nodes v is computed by (and those of the values its counts count)."""
    seen, work, out = set(), [v], []
    while work:
        u = work.pop()
        if u in counts:
            work.append(counts[u][0])
        if u in seen or u not in axis or u.node.op.name == "loop":
            continue
        seen.add(u)
        out.append(u.node)
        work += list(u.node.inputs)
    return out


def _per_step_axes(axes, layout) -> tuple:
    """Axes of a region value as axes of its value at one step (the time axis goes; merged
    rows stay, fewer)."""
    a, _, merged = layout
    return tuple(axes) if merged else tuple(x if x < a else x - 1 for x in axes if x != a)


def _step_dims(v, axes, layout) -> list:
    """The dims of region value v's axes `axes` at one step (None: unknown)."""
    a, _, merged = layout
    return [merged[1] if merged and x == a else v.type.shape[x] for x in axes
            if merged or x != a]


def _steps_of(source, dtype, steps):
    """The length of `source`'s output stacks as a scalar of `dtype`, computed just before the
    loop (from the sequence that gives it its length; memoised in `steps`)."""
    if dtype in steps:
        return steps[dtype]
    graph, op = source.graph, source.op
    seq = op.in_ports().split(source.inputs)["sequence"][op.length_from]
    made = [graph.add_node(ReducedCount((0,)), [seq], [TensorType((), seq.dtype)],
                           f"{source.name}/streamed/steps", source.location)]
    if np.dtype(seq.dtype) != np.dtype(dtype):
        made.append(graph.add_node(Cast(dtype), [made[0].outputs[0]], [TensorType((), dtype)],
                                   f"{source.name}/streamed/steps/cast", source.location))
    for n in made:   # (before the loop: the sequence is read while it is there anyway)
        graph.nodes.remove(n)
    at = graph.nodes.index(source)
    graph.nodes[at:at] = made
    steps[dtype] = made[-1].outputs[0]
    return steps[dtype]


def _time_major(source, u, feeds):
    """The fed sequence u as the loops read it, [T, B, ...] in the loop's row order: where the
    region reverses each row's steps (`rev`: (lengths, whether every step)), u reversed alike
    first (reverse_sequence along its time axis, within those lengths or over all its steps);
    then u itself where it is time-major, else one Transpose swapping its first two axes (as
    dynamic_rnn does with its input), then, where the region reorders the loop's rows by an
    index `idx` (dynamic_rnn's unsort), its rows taken by the inverse order (dynamic_rnn's sort,
    the index idx inverts, or its InvertPermutation), as dynamic_rnn does with its input too;
    made just before the forward loop `source` (memoised in `feeds`)."""
    a, idx, rev, seq = feeds[u]
    if seq is None:
        graph = source.graph

        def before_loop(op, ins, name):
            node = graph.add_node(op, ins, [op.infer(*[v.type for v in ins])], name,
                                  u.node.location)
            graph.nodes.remove(node)
            graph.nodes.insert(graph.nodes.index(source), node)
            return node.outputs[0]
        seq = u
        if rev is not None:   # (the region reversed each row's steps: the fed rows alike)
            lengths, full = rev
            if full:          # (every step of each row, as the region's own dims said)
                rows = before_loop(Dim(1 - a), [u], f"{u.node.name}/streamed/rows")
                zeros = before_loop(Fill((None,), 0, np.int32), [rows],
                                    f"{u.node.name}/streamed/lengths")
                lengths = before_loop(Add(), [zeros, before_loop(
                    Dim(a), [u], f"{u.node.name}/streamed/steps")],
                    f"{u.node.name}/streamed/lengths")
            seq = before_loop(ReverseSequence(a, 1 - a), [seq, lengths],
                              f"{u.node.name}/streamed/ReverseSequence")
        if a:
            seq = before_loop(Transpose((1, 0) + tuple(range(2, u.type.rank))), [seq],
                              f"{u.node.name}/streamed/Transpose")
        if idx is not None and seq.type.shape[1] != 1:   # (one row broadcast to all: in order)
            order = idx.node.inputs[0] if isinstance(idx.node.op, InvertPermutation) else \
                before_loop(InvertPermutation(), [idx], f"{u.node.name}/streamed/order")
            seq = before_loop(PermuteRows(1), [seq, order], f"{u.node.name}/streamed/PermuteRows")
        feeds[u][3] = seq
    return seq


def _lowering(loop, body, base, axis, counts, steps, source=None, feeds=None, made=(),
              saved=None):
    """(lower, count): lower maps a region value to the same value at one step inside `loop`'s
    body `body` (memoised); `source`'s output stack (default: loop's) is `base` there. What
    a product with an invariant matrix reads is lowered apart (its own nodes, memoised apart),
    so that hoist_sequence can move the product's chain out of the steps whole.
    count(v, axes) is the number of elements of region value v over its axes `axes`, at one
    step (the length of the stacks times the step's count, where the time axis is counted).
    `feeds`: the fed sequences read a row per step (see _time_major); `made`: the one_hot or
    reshape(., [-1]) values of them (_fed_rows), made per step from those rows. `saved`: fed
    sequences (keys) whose rows the forward loop saves as a residual for its backward loops to
    read (the forward loop's lowering fills in its row param; the backward loop's reads that
    param's residual stack where it is filled in). An invariant one per row (the same at every
    step, of the region value's rank) is read in the loop's row order: through the inverses
    of the reorderings that make the caller's order from the loop's."""
    source = loop if source is None else source
    feeds = {} if feeds is None else feeds
    memo = {}
    invariants = {}
    rows = {}

    def fed_row(u):
        """Row t of the fed sequence u, a sequence input of `loop`."""
        if u not in rows and saved and saved.get(u) is not None and loop is not source:
            res = _residual_of(source, saved[u])   # (the forward loop's rows, saved)
            rows[u] = add_sequence(loop, res, f"{u.node.name}/streamed_rows")
        if u not in rows:
            seq = _time_major(source, u, feeds)
            # (a loop with active rows: the step's rows open, batched as its other rows)
            step = TensorType((None,) + seq.shape[2:], seq.dtype) if loop.op.active_rows \
                and seq.shape[1] != 1 else None   # (one row broadcast to all: stays one)
            rows[u] = add_sequence(loop, seq, f"{u.node.name}/streamed_rows", step)
            if saved is not None and u in saved and loop is source:
                saved[u] = rows[u]
        return rows[u]

    def derived(u):
        """one_hot or reshape(., [-1]) of a fed value (_fed_rows) at one step: the op on its
        row (a merged row of a step is the fed row itself)."""
        if u in feeds:
            return fed_row(u)
        n = u.node
        if isinstance(n.op, Reshape):
            return derived(n.inputs[0])
        key = (u, "fed")
        if key not in memo:
            memo[key] = add(n.op, [derived(n.inputs[0])], f"{n.name}/streamed", n)
        return memo[key]

    def outer(u, at=None, perms=(), rank=0):
        """u read in the body, its time axis `at` (of size 1) dropped; one per row (read by
        work on a region value of rank `rank` whose rows the loop reorders by `perms`), in
        the loop's row order."""
        if u in counts:
            return count(*counts[u])
        if (u, at) not in invariants:
            v = u
            lead = rank - u.type.rank   # (broadcasting aligns the dims to the right)
            rows = [(idx, p - lead) for idx, p in perms if not isinstance(idx, _Reversal)
                    and p >= lead and u.type.shape[p - lead] != 1]
            for idx, p in reversed(rows):   # (into the loop's row order)
                inv = source.graph.add_node(InvertPermutation(), [idx], [idx.type],
                                            f"{u.node.name}/streamed/order",
                                            u.node.location).outputs[0]
                v = source.graph.add_node(PermuteRows(p), [v, inv], [v.type],
                                          f"{u.node.name}/streamed/PermuteRows",
                                          u.node.location).outputs[0]
            if at is not None:
                sq = Squeeze((at,))
                v = source.graph.add_node(sq, [v], [sq.infer(v.type)],
                                          f"{u.node.name}/streamed/squeeze",
                                          u.node.location).outputs[0]
            param = invariants[u, at] = add_invariant(loop, v, f"{u.node.name}/streamed")
            if rows:   # (its rows `?` in the body, as the loop's others are typed where it
                # had active rows: what reads both infers the type the body stored)
                drop = {p - (at is not None and p > at) for _, p in rows}
                param.type = TensorType(tuple(None if i in drop else d
                                              for i, d in enumerate(v.type.shape)), v.dtype)
        return invariants[u, at]

    def add(op, ins, name, like):
        t = op.infer(*[u.type for u in ins])
        t = list(t) if isinstance(t, (list, tuple)) else [t]
        new = body.add_node(op, ins, t, name, like.location)
        new.is_gradient = like.is_gradient
        return new.outputs[0]

    def count(v, axes):
        key = (v, axes)
        if key not in memo:
            a = axis[v][0]
            node = v.node
            dims = _step_dims(v, axes, axis[v])
            if all(d is not None for d in dims):
                n = add(Constant(np.asarray(np.prod(dims, dtype=np.int64), v.dtype)), [],
                        f"{node.name}/streamed/count", node)
            else:   # (a loop without active rows runs every row: the step's count is right)
                n = add(ReducedCount(_per_step_axes(axes, axis[v])), [lower(v)],
                        f"{node.name}/streamed/count", node)
            if a in axes:
                n = add(Mul(), [outer(_steps_of(source, v.dtype, steps)), n],
                        f"{node.name}/streamed/count", node)
            memo[key] = n
        return memo[key]

    def lower(v, product=False):
        key = (v, "product") if product else v
        if key in memo:
            return memo[key]
        n = v.node
        if v.node is source:
            out = base
        elif isinstance(n.op, (Transpose, PermuteRows, Reshape, ReshapeLike,
                               ReverseSequence)):
            out = lower(n.inputs[0], product)   # (elementwise work commutes with a row
            # order and with each row's order of steps, its fed operands read through the
            # same reversal; a step's rows are the same [B, X] merged or not)
        elif isinstance(n.op, MatMul) and n.inputs[1] not in axis:
            out = add(n.op, [lower(n.inputs[0], True), outer(n.inputs[1])],
                      f"{n.name}/streamed", n)
        elif isinstance(n.op, (Softmax, LogSoftmax, ExpandDims)):
            out = add(type(n.op)(-1), [lower(n.inputs[0])], f"{n.name}/streamed", n)
        elif isinstance(n.op, (ReduceSum, ReduceMean)):   # (over the class axis alone)
            out = add(type(n.op)((-1,), n.op.keepdims), [lower(n.inputs[0])],
                      f"{n.name}/streamed", n)
        elif isinstance(n.op, (Concat, ConcatGrad)):   # (both outputs of one concat_grad;
            # one node for a product's chain and the rest: the fuse pass, given two concats
            # of one fused group, left a loop result reading the group it merged away)
            if n not in memo:
                ins = [lower(u) if u in axis else fed_row(u) if u in feeds else derived(u)
                       for u in n.inputs]
                memo[n] = concat_step(body, n, ins)
            out = memo[n][v.index]
        else:
            a, rank = axis[v][0], v.type.rank
            squeeze = not isinstance(n.op, MatMul) and not axis[v][2]
            ins = [lower(u, product and _elementwise(n)) if u in axis else
                   fed_row(u) if u in feeds else
                   derived(u) if u in made else
                   outer(u, a if squeeze and u.type.rank == rank and u not in counts
                         else None, axis[v][1], rank)
                   for u in n.inputs]
            out = add(n.op, ins, f"{n.name}/streamed", n)
        memo[key] = out
        return out
    return lower, count


def _accumulate(graph, loop, red, lowering, axis, product=None):
    """red (a sum of a region value over its time axis) becomes a carried accumulator of the
    loop: each step adds its partial sum (a mean: divided by the whole count). `product`:
    red is sum_to(matrix_transpose(x) @ g) over the batch, these (x, g) (_batched_product_sum),
    whose step part is x_t^T @ g_t. Returns the accumulator's initial value (a loop input)."""
    lower, count = lowering
    body = loop.op.body
    name, loc = red.name, red.location
    if product is not None:
        mm = red.inputs[0].node
        xt = lower(product[0])
        t = mm.inputs[0].node
        xt = body.add_node(MatrixTranspose(), [xt], [MatrixTranspose().infer(xt.type)],
                           f"{t.name}/streamed", t.location).outputs[0]
        ins = [xt, lower(product[1])]
        part = body.add_node(MatMul(), ins, [MatMul().infer(*[u.type for u in ins])],
                             f"{mm.name}/streamed", mm.location).outputs[0]
        return _carry(graph, loop, red, part, False, 0)
    x = red.inputs[0]
    a, _, merged = axis[x]
    keep_time = False
    if isinstance(red.op, MatMul):
        step_op = MatMul()
    elif isinstance(red.op, SumTo):
        step_op = SumTo(red.op.lead - (0 if merged else 1), red.op.axes)
    else:
        axes = reduced_axes(red.op.axis, x.type.rank)
        inner = _per_step_axes(axes, axis[x])
        step_op = ReduceSum(inner, red.op.keepdims) if inner else None
        keep_time = red.op.keepdims and not merged
    ins = [lower(u) for u in red.inputs]
    part = ins[0]
    if step_op is not None:
        part = body.add_node(step_op, ins, [step_op.infer(*[u.type for u in ins])],
                             f"{name}/streamed", loc).outputs[0]
    if part.type.rank == 0:   # (summed as [1]: NumPy's arithmetic on 0-d arrays returns
        # scalars, which hold no device buffer; the memory model counts every value's bytes)
        part = body.add_node(ExpandDims(0), [part], [ExpandDims(0).infer(part.type)],
                             f"{name}/streamed/row", loc).outputs[0]
    if isinstance(red.op, ReduceMean):
        n = count(x, axes)
        part = body.add_node(Div(), [part, n], [Div().infer(part.type, n.type)],
                             f"{name}/streamed/mean", loc).outputs[0]
    return _carry(graph, loop, red, part, keep_time, a)


def _carry(graph, loop, red, part, keep_time, a):
    """The loop's step part `part` of red summed over the steps in a new carried accumulator
    (in float64 for narrower floats), whose final value replaces red's; returns its initial
    value (the zero the loop starts it from)."""
    body = loop.op.body
    name, loc = red.name, red.location
    wanted = part.type
    if np.dtype(wanted.dtype).kind == "f" and np.dtype(wanted.dtype).itemsize < 8:
        # (in float64: a sum over steps one after another would lose ~sqrt(T) ulps)
        part = body.add_node(Cast(np.float64), [part], [TensorType(wanted.shape, np.float64)],
                             f"{name}/streamed/wide", loc).outputs[0]
    t = part.type
    acc, finish, zero = _carried(graph, loop, np.zeros(t.shape, t.dtype), f"{name}/streamed",
                                 loc, red.is_gradient)
    nxt = body.add_node(Add(), [acc, part], [t], f"{name}/streamed/add", loc)
    nxt.is_gradient = red.is_gradient
    final = finish(nxt.outputs[0])
    if np.dtype(t.dtype) != np.dtype(wanted.dtype):
        narrow = graph.add_node(Cast(wanted.dtype), [final], [wanted], f"{name}/streamed/narrow",
                                loc)
        # (right after the loop: the float64 sum is not held while later loops run)
        graph.nodes.remove(narrow)
        graph.nodes.insert(graph.nodes.index(loop) + 1, narrow)
        final = narrow.outputs[0]
    if final.type.rank > red.outputs[0].type.rank:   # (a scalar summed as [1])
        scalar = graph.add_node(Squeeze((0,)), [final], [red.outputs[0].type],
                                f"{name}/streamed/scalar", loc)
        graph.nodes.remove(scalar)
        graph.nodes.insert(graph.nodes.index(final.node) + 1, scalar)
        final = scalar.outputs[0]
    _replace_reduced(graph, red, final, keep_time, a)
    return zero


def _carried(graph, loop, init, name, loc, grad):
    """A new carried value of the loop, started from `init`: a constant array, or (shape,
    value, dtype) whose unknown dim (the rows) is the loop's batch: (its param in the body,
    finish(next) -> its value after the loop, given its value after each step, and the
    initial value, a loop input). Finish one before adding the next."""
    op, body = loop.op, loop.op.body
    if isinstance(init, np.ndarray):
        t = TensorType(init.shape, init.dtype)
        start = graph.add_node(Constant(init), [], [t], f"{name}/init", loc)
    else:   # (the rows read from the loop's time-major input, [T, B, ...], before it runs)
        shape, value, dtype = init
        like = op.in_ports().split(loop.inputs)["sequence"][op.length_from]
        rows = graph.add_node(Dim(1), [like], [Dim(1).infer(like.type)], f"{name}/rows", loc)
        rows.is_gradient = grad
        t = TensorType(shape, dtype)
        fill = Fill(shape, value, dtype)
        start = graph.add_node(fill, [rows.outputs[0]], [fill.infer(rows.outputs[0].type)],
                               f"{name}/init", loc)
    start.is_gradient = grad
    n_carried = len(body.results["carried"])
    at_in = op.in_ports().offset("carried") + n_carried
    at_out = op.out_ports().offset("carried") + n_carried
    acc = body.add_param("carried", t, f"{name}/acc")
    loop.inputs.insert(at_in, start.outputs[0])

    def finish(nxt):
        body.results["carried"].append(nxt)
        final = loop._add_output(t)
        loop.outputs.pop()
        loop.outputs.insert(at_out, final)
        for i, out in enumerate(loop.outputs):
            out.index = i
        return final
    return acc, finish, start.outputs[0]


def _replace_reduced(graph, red, final, keep_time, a) -> None:
    """Readers of red's output read `final` (its value carried to the loop's end) instead;
    `keep_time`: red kept its summed time axis a (keepdims), of size 1 again."""
    if keep_time:
        final = graph.add_node(ExpandDims(a), [final], [red.outputs[0].type],
                               f"{red.name}/streamed/time", red.location).outputs[0]
    replace_uses(graph, red.outputs[0], final)


# a max or min over time: carried as it runs (_running_max), by this op from this start
_EXTREMES = (ReduceMax, ReduceMin)


def _ties(reductions) -> dict:
    """{sum: max}: each sum over time of cast(equal(x, max)) among the reductions, where max
    is a reduce_max (or reduce_min) of x over the time axis among them too (its gradient,
    splitting itself among the steps that tie): counted with that max as it runs
    (_running_max)."""
    extremes = {r for r in reductions if isinstance(r.op, _EXTREMES)}
    out = {}
    for r in reductions:
        mx = _tied_to(r)
        if mx in extremes:
            out[r] = mx
    return out


def _tied_to(r):
    """The reduce_max (or min) node whose ties sum r counts: r is a sum of cast(equal(x,
    max)) over the axes the max reduced x over; else None."""
    cast = r.inputs[0].node
    if not isinstance(r.op, ReduceSum) or not isinstance(cast.op, Cast):
        return None
    eq = cast.inputs[0].node
    if not isinstance(eq.op, Equal):
        return None
    x, m = eq.inputs
    while isinstance(m.node.op, ExpandDims):
        m = m.node.inputs[0]   # (the max made to broadcast against x again)
    mx = m.node
    rank = x.type.rank
    if isinstance(mx.op, _EXTREMES) and mx.inputs[0] is x and \
            reduced_axes(r.op.axis, rank) == reduced_axes(mx.op.axis, rank):
        return mx
    return None


def _running_max(graph, loop, red, ties, lower, axis) -> list:
    """red (a max over the time axis) becomes a carried running max m' = max(m, x_t) of the
    loop, from the dtype's lowest value (a min: min(m, x_t) from the highest); `ties` (sums
    over time of cast(equal(x, max)), maybe none) one carried count of the steps equal to it
    so far, c' = where(m == m', c, 0) + where(x_t == m', 1, 0) (a NaN max counts none, as
    equal does), which is those sums once the last step ran (cast to each one's dtype).
    Where, not cast: the count fuses with the cell's kernel. Returns the initial values (loop
    inputs)."""
    body = loop.op.body
    x = red.inputs[0]
    a, perms, _ = axis[x]
    xt = lower(x)
    shape = tuple(d for i, d in enumerate(x.type.shape) if i != a)
    shape = tuple(d if d is not None else xt.type.shape[i] for i, d in enumerate(shape))

    def full(value, dtype):   # (the rows known when the graph is built, or at run time)
        return np.full(shape, value, dtype) if None not in shape else (shape, value, dtype)
    dt = np.dtype(x.type.dtype)
    top = isinstance(red.op, ReduceMax)
    if dt.kind == "f":   # (as the whole-tensor op over no steps)
        first = -np.inf if top else np.inf
    else:
        first = np.iinfo(dt).min if top else np.iinfo(dt).max
    name, loc = red.name, red.location

    def add(op, ins, label, grad):
        n = body.add_node(op, ins, [op.infer(*[u.type for u in ins])], label, loc)
        n.is_gradient = grad
        return n.outputs[0]
    acc, finish, start = _carried(graph, loop, full(first, dt), f"{name}/streamed", loc,
                                  red.is_gradient)
    nxt = add(Maximum() if top else Minimum(), [acc, xt],
              f"{name}/streamed/{red.op.kernel_name}", red.is_gradient)

    def in_order(final, r):
        """final (after the loop, in its row order) in the caller's row order, as red's."""
        for idx, p in perms:
            if not isinstance(idx, _Reversal):   # (a reversal of steps: nothing to a max)
                final = graph.add_node(PermuteRows(p - (p > a)), [final, idx], [final.type],
                                       f"{r.name}/streamed/PermuteRows", loc).outputs[0]
        return final
    _replace_reduced(graph, red, in_order(finish(nxt), red), red.op.keepdims, a)
    if not ties:
        return [start]
    cd = np.dtype(ties[0].outputs[0].type.dtype)
    name = ties[0].name

    def const(value, label):
        return body.add_node(Constant(np.array(value, cd)), [], [TensorType((), cd)],
                             f"{name}/streamed/{label}", loc).outputs[0]
    count, finish, zero = _carried(graph, loop, full(0, cd), f"{name}/streamed", loc, True)
    nought, one = const(0, "zero"), const(1, "one")
    kept = add(Where(), [add(Equal(), [acc, nxt], f"{name}/streamed/same", True), count,
                         nought], f"{name}/streamed/kept", True)
    hit = add(Where(), [add(Equal(), [xt, nxt], f"{name}/streamed/equal", True), one, nought],
              f"{name}/streamed/hit", True)
    final = finish(add(Add(), [kept, hit], f"{name}/streamed/add", True))
    final = in_order(final, ties[0])
    for t in ties:
        value = final
        if np.dtype(t.outputs[0].type.dtype) != cd:
            value = graph.add_node(Cast(t.outputs[0].type.dtype), [final],
                                   [TensorType(final.type.shape, t.outputs[0].type.dtype)],
                                   f"{t.name}/streamed/cast", loc).outputs[0]
        _replace_reduced(graph, t, value, t.op.keepdims, a)
    return [start, zero]


def _residual_of(loop, y):
    """The loop's residual stack of its per-step value y (added if it is not one)."""
    op = loop.op
    res = op.body.results["residual"]
    start = op.out_ports().offset("residual")
    if y in res:
        return loop.outputs[start + res.index(y)]
    res.append(y)
    out = loop._add_output(TensorType((None,) + y.shape, y.dtype))
    return out


def _compute_in(reader, v, lower):
    """The backward loop `reader` computes region value v per step from the saved rows."""
    body = reader.op.body
    parts = reader.op.in_ports().split(reader.inputs)
    i = parts["sequence"].index(v)
    param = body.params["sequence"][i]
    value = lower(v)
    for n in body.nodes:
        if n is not value.node and any(u is param for u in n.inputs):
            n.inputs = [value if u is param else u for u in n.inputs]
    for role, vs in body.results.items():
        body.results[role] = [value if u is param else u for u in vs]
    toposort(body)
