"""The per-op table: how one rnngraph node becomes ONNX nodes.

Each entry takes (emitter, node, input names) and returns one ONNX name per output of the node.
Sources (placeholder, variable, constant) and the loop node are handled by the driver
(export.py) and loops.py / rnn_ops.py. An op absent from this table has no ONNX mapping and
the driver raises ExportError naming it, its node and the user's line.

Semantics follow each op's reference `compute` in rnngraph/ops; where ONNX differs (OneHot's
negative indices, an unstable TopK), the mapping is written to give rnngraph's result.
"""
from __future__ import annotations

import numpy as np

from .builder import INT64_MAX, INT64_MIN, Emitter

TABLE: dict = {}


def _op(*names):
    def register(fn):
        for n in names:
            TABLE[n] = fn
        return fn
    return register


def _hint(node, i=0):
    return node.name if len(node.outputs) == 1 else f"{node.name}:{i}"


def _simple(onnx_type):
    def emit(em: Emitter, node, ins):
        return [em.node(onnx_type, ins, hint=_hint(node))]
    return emit


for _name, _type in {
        "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
        "maximum": "Max", "minimum": "Min", "less": "Less", "less_equal": "LessOrEqual",
        "greater": "Greater", "greater_equal": "GreaterOrEqual", "equal": "Equal",
        "logical_and": "And", "logical_or": "Or", "logical_not": "Not", "neg": "Neg",
        "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "exp": "Exp", "log": "Log",
        "sqrt": "Sqrt", "abs": "Abs", "sign": "Sign", "where": "Where", "matmul": "MatMul",
        "add_n": "Sum", "contiguous": "Identity", "stop_gradient": "Identity",
        # a placeholder_with_default that is not among the feeds is its default
        "placeholder_with_default": "Identity",
        # ONNX cannot raise: the exported model computes the same values without the checks
        "check_numerics": "Identity"}.items():
    TABLE[_name] = _simple(_type)


@_op("not_equal")
def _not_equal(em, node, ins):
    return [em.node("Not", [em.node("Equal", ins)], hint=_hint(node))]


@_op("square")
def _square(em, node, ins):
    return [em.node("Mul", [ins[0], ins[0]], hint=_hint(node))]


@_op("cast")
def _cast(em, node, ins):
    return [em.cast(ins[0], node.op.dtype, hint=_hint(node))]


@_op("zeros_like", "ones_like")
def _filled_like(em, node, ins):
    value = np.zeros(1, node.outputs[0].dtype) + type(node.op).fill
    shape = em.node("Shape", [ins[0]])
    return [em.node("ConstantOfShape", [shape], hint=_hint(node),
                    value=em.onnx.numpy_helper.from_array(value.astype(node.outputs[0].dtype)))]


@_op("fill")
def _fill(em, node, ins):
    op, dtype = node.op, node.outputs[0].dtype
    if all(d is not None for d in op.shape):
        return [em.const(np.full(op.shape, op.value, dtype), _hint(node))]
    runtime = iter(ins)
    parts = [em.unsqueeze(em.cast(next(runtime), np.int64), [0]) if d is None else
             em.i64([d]) for d in op.shape]
    shape = em.node("Concat", parts, axis=0)
    value = em.onnx.numpy_helper.from_array(np.full(1, op.value, dtype))
    return [em.node("ConstantOfShape", [shape], value=value, hint=_hint(node))]


@_op("gather")
def _gather(em, node, ins):
    return [em.node("Gather", ins, axis=0, hint=_hint(node))]


@_op("permute_rows")
def _permute_rows(em, node, ins):
    return [em.node("Gather", ins, axis=node.op.axis, hint=_hint(node))]


@_op("matrix_transpose")
def _matrix_transpose(em, node, ins):
    r = node.inputs[0].type.rank
    perm = list(range(r - 2)) + [r - 1, r - 2]
    return [em.node("Transpose", ins, perm=perm, hint=_hint(node))]


@_op("softmax", "log_softmax")
def _softmax(em, node, ins):
    kind = "Softmax" if node.op.name == "softmax" else "LogSoftmax"
    return [em.node(kind, ins, axis=node.op.axis, hint=_hint(node))]


@_op("sparse_softmax_cross_entropy")
def _sparse_xent(em, node, ins):
    # rnngraph: labels S, logits S + [C] (classes last); ONNX: labels [N, D1..Dk], scores
    # [N, C, D1..Dk] (classes second), so the class axis moves; a scalar label gets an N of 1
    labels, logits = ins
    r = node.inputs[0].type.rank
    if r == 0:
        loss = em.node("SoftmaxCrossEntropyLoss", [em.unsqueeze(logits, [0]),
                                                   em.unsqueeze(labels, [0])], reduction="none")
        return [em.squeeze(loss, [0], hint=_hint(node))]
    if r >= 2:
        logits = em.node("Transpose", [logits], perm=[0, r] + list(range(1, r)))
    return [em.node("SoftmaxCrossEntropyLoss", [logits, labels], reduction="none",
                    hint=_hint(node))]


@_op("one_hot")
def _one_hot(em, node, ins):
    # rnngraph (like TF) gives an all-zero row for any index outside [0, depth); ONNX's
    # OneHot wraps negative indices, so the mapping compares against a range instead
    idx_dtype = node.inputs[0].dtype
    if node.op.depth is not None:
        depth = em.scalar(node.op.depth, idx_dtype, "depth")
    else:
        depth = em.cast(ins[1], idx_dtype)
    classes = em.node("Range", [em.scalar(0, idx_dtype), depth, em.scalar(1, idx_dtype)])
    hit = em.node("Equal", [em.unsqueeze(ins[0], [-1]), classes])
    return [em.cast(hit, node.op.dtype, hint=_hint(node))]


def _reduce_node(em, kind, x, axes, keep, hint=None):
    """ONNX reduction `kind` of `x` over `axes` (None: all): from opset 18 the axes are an
    input (ReduceSum's since 13), before it an attribute."""
    if kind == "ReduceSum" or em.opset >= 18:
        inputs = [x] + ([em.i64(axes, "axes")] if axes is not None else [])
        return em.node(kind, inputs, keepdims=keep, hint=hint)
    return em.node(kind, [x], axes=axes, keepdims=keep, hint=hint)


def _reduced(node):
    """(axes, keepdims) of a reduction node: axes non-negative (None: all), keepdims 0/1."""
    op, x = node.op, node.inputs[0]
    axes = None if op.axis is None else sorted(a % max(x.type.rank, 1) for a in op.axis)
    return axes, int(op.keepdims)


def _reduce(kind):
    def emit(em, node, ins):
        axes, keep = _reduced(node)
        if axes is not None and not axes:
            return [em.node("Identity", ins, hint=_hint(node))]
        return [_reduce_node(em, kind, ins[0], axes, keep, hint=_hint(node))]
    return emit


TABLE["reduce_sum"] = _reduce("ReduceSum")
TABLE["reduce_mean"] = _reduce("ReduceMean")
TABLE["reduce_max"] = _reduce("ReduceMax")
# an empty reduction: the dtype's largest value / lowest value / 1, as rnngraph's
TABLE["reduce_min"] = _reduce("ReduceMin")
TABLE["reduce_prod"] = _reduce("ReduceProd")


@_op("reduce_logsumexp")
def _reduce_logsumexp(em, node, ins):
    # as rnngraph computes it: max + log(sum(exp(x - max))), the max taken as 0 where it is
    # not finite (every entry -inf gives -inf, not NaN)
    axes, keep = _reduced(node)
    if axes is not None and not axes:
        return [em.node("Identity", ins, hint=_hint(node))]
    dtype = node.inputs[0].dtype
    m = _reduce_node(em, "ReduceMax", ins[0], axes, 1)
    finite = em.node("Less", [em.node("Abs", [m]), em.scalar(np.inf, dtype, "inf")])
    m = em.node("Where", [finite, m, em.scalar(0, dtype, "zero")])
    total = _reduce_node(em, "ReduceSum", em.node("Exp", [em.node("Sub", [ins[0], m])]),
                         axes, 1)
    out = em.node("Add", [em.node("Log", [total]), m])
    if keep:
        return [em.node("Identity", [out], hint=_hint(node))]
    if axes is None:
        return [em.node("Reshape", [out, em.i64([])], hint=_hint(node))]
    return [em.squeeze(out, axes, hint=_hint(node))]


@_op("reduce_any", "reduce_all")
def _reduce_bool(em, node, ins):
    # ONNX reduces no bools: any = (count of true) > 0, all = (count of false) == 0 (so an
    # empty reduction gives False / True, as rnngraph's)
    axes, keep = _reduced(node)
    if axes is not None and not axes:
        return [em.node("Identity", ins, hint=_hint(node))]
    x = ins[0] if node.op.name == "reduce_any" else em.node("Not", ins)
    count = _reduce_node(em, "ReduceSum", em.cast(x, np.int64), axes, keep)
    kind = "Greater" if node.op.name == "reduce_any" else "Equal"
    return [em.node(kind, [count, em.scalar(0, np.int64, "zero")], hint=_hint(node))]


@_op("range")
def _range(em, node, ins):
    dtype = node.outputs[0].dtype
    return [em.node("Range", [em.cast(i, dtype) for i in ins], hint=_hint(node))]


@_op("argmax", "argmin")
def _argmax(em, node, ins):
    # ties: the first position (select_last_index=0), as NumPy's
    kind = "ArgMax" if node.op.name == "argmax" else "ArgMin"
    return [em.node(kind, ins, axis=node.op.axis, keepdims=0, hint=_hint(node))]


@_op("top_k_indices")
def _top_k_indices(em, node, ins):
    # TopK breaks ties by the lower index, as rnngraph's top_k does
    k = em.i64([node.op.k], "k")
    _, order = em.node("TopK", [ins[0], k], n_out=2, axis=-1, largest=1, sorted=1)
    return [em.cast(order, np.int32, hint=_hint(node))]


@_op("gather_last")
def _gather_last(em, node, ins):
    return [em.node("GatherElements", ins, axis=-1, hint=_hint(node))]


# --- shapes -----------------------------------------------------------------------------------
@_op("reshape")
def _reshape(em, node, ins):
    shape = list(node.op.shape)
    zero = 1 if 0 in shape else None   # ONNX reads 0 as "copy this dim" unless allowzero
    return [em.node("Reshape", [ins[0], em.i64(shape)], allowzero=zero, hint=_hint(node))]


@_op("reshape_like")
def _reshape_like(em, node, ins):
    return [em.node("Reshape", [ins[0], em.node("Shape", [ins[1]])], hint=_hint(node))]


@_op("reshape_dynamic")
def _reshape_dynamic(em, node, ins):
    # the target's entries (ReshapeDynamic): ints, ('dim', i, axis) (a size of input i),
    # ('value', i) (a scalar input) and ('vector', i, k) (an entry of a 1-D input), as one
    # int64 vector; a 0 is a size of 0 (allowzero), as rnngraph's
    parts = []
    for e in node.op.shape:
        if not isinstance(e, tuple):
            parts.append(em.i64([e]))
        elif e[0] == "dim":
            axis = e[2] % node.inputs[e[1]].type.rank
            parts.append(em.unsqueeze(em.dim(ins[e[1]], axis), [0]))
        elif e[0] == "value":
            parts.append(em.unsqueeze(em.cast(ins[e[1]], np.int64), [0]))
        else:
            parts.append(em.node("Gather", [em.cast(ins[e[1]], np.int64), em.i64([e[2]], "k")],
                                 axis=0))
    shape = em.node("Concat", parts, axis=0) if parts else em.i64([])
    return [em.node("Reshape", [ins[0], shape], allowzero=1, hint=_hint(node))]


@_op("identity")
@_op("read_variable")   # (rg.identity(v) under rg.control_dependencies: the variable's value)
def _identity(em, node, ins):
    # inputs after the first are dependencies only: they do not reach the value
    return [em.node("Identity", ins[:1], hint=_hint(node))]


@_op("tile")
def _tile(em, node, ins):
    return [em.node("Tile", [ins[0], em.i64(list(node.op.multiples), "repeats")],
                    hint=_hint(node))]


@_op("pad")
def _pad(em, node, ins):
    # ONNX cannot raise: a REFLECT/SYMMETRIC padding wider than its axis is not checked
    op, x = node.op, node.inputs[0]
    if op.mode == "SYMMETRIC":   # (no ONNX mode): the edge rows reversed, concatenated
        y = ins[0]
        for axis, (a, b) in enumerate(op.paddings):
            parts = [y]
            if a:   # x[a-1], ..., x[0]
                parts.insert(0, _slice(em, y, [a - 1], [INT64_MIN], [axis], [-1]))
            if b:   # x[-1], ..., x[-b]
                parts.append(_slice(em, y, [-1], [-b - 1], [axis], [-1]))
            if len(parts) > 1:
                y = em.node("Concat", parts, axis=axis)
        return [em.node("Identity", [y], hint=_hint(node))]
    pads = em.i64([a for a, _ in op.paddings] + [b for _, b in op.paddings], "pads")
    if op.mode == "REFLECT":
        return [em.node("Pad", [ins[0], pads], mode="reflect", hint=_hint(node))]
    value = em.scalar(np.asarray(op.constant_values).astype(x.dtype), x.dtype, "value")
    return [em.node("Pad", [ins[0], pads, value], mode="constant", hint=_hint(node))]


def _slice(em, x, starts, ends, axes, steps):
    return em.node("Slice", [x, em.i64(starts, "starts"), em.i64(ends, "ends"),
                             em.i64(axes, "axes"), em.i64(steps, "steps")])


@_op("slice")
def _tf_slice(em, node, ins):
    # ONNX cannot raise: a block outside the input is clipped, not an error
    axes = [a for a, (b, s) in enumerate(zip(node.op.begin, node.op.size))
            if not (b == 0 and s == -1)]
    if not axes:
        return [em.node("Identity", ins, hint=_hint(node))]
    starts = [node.op.begin[a] for a in axes]
    ends = [INT64_MAX if node.op.size[a] == -1 else node.op.begin[a] + node.op.size[a]
            for a in axes]
    y = _slice(em, ins[0], starts, ends, axes, [1] * len(axes))
    return [em.node("Identity", [y], hint=_hint(node))]


@_op("transpose")
def _transpose(em, node, ins):
    return [em.node("Transpose", ins, perm=list(node.op.perm), hint=_hint(node))]


@_op("expand_dims")
def _expand_dims(em, node, ins):
    axis = node.op.axis % (node.inputs[0].type.rank + 1)
    return [em.unsqueeze(ins[0], [axis], hint=_hint(node))]


@_op("squeeze")
def _squeeze(em, node, ins):
    rank = node.inputs[0].type.rank
    axes = sorted({a % rank for a in node.op.axis})
    if not axes:
        return [em.node("Identity", ins, hint=_hint(node))]
    return [em.squeeze(ins[0], axes, hint=_hint(node))]


@_op("concat")
def _concat(em, node, ins):
    return [em.node("Concat", ins, axis=node.op.axis, hint=_hint(node))]


@_op("split")
def _split(em, node, ins):
    x, n = node.inputs[0], len(node.outputs)
    axis = node.op.axis % x.type.rank
    sizes = [o.shape[axis] for o in node.outputs]
    outs = [em.fresh(_hint(node, i)) for i in range(n)]
    if all(s is not None for s in sizes):
        em.node("Split", [ins[0], em.i64(sizes, "split")], outputs=outs, axis=axis)
        return outs
    spec = node.op.num_or_size_splits
    if isinstance(spec, int):   # equal parts of a size known only at run time
        em.node("Split", ins, outputs=outs, axis=axis,
                num_outputs=n if em.opset >= 18 else None)
        return outs
    # sizes with one -1 against a dim known only at run time: the rest is computed
    known = sum(s for s in spec if s != -1)
    rest = em.node("Sub", [em.dim(ins[0], axis), em.scalar(known, np.int64)])
    parts = [em.unsqueeze(rest, [0]) if s == -1 else em.i64([s]) for s in spec]
    em.node("Split", [ins[0], em.node("Concat", parts, axis=0)], outputs=outs, axis=axis)
    return outs


@_op("column_block")
def _column_block(em, node, ins):
    op = node.op
    return [em.node("Slice", [ins[0], em.i64([op.start]), em.i64([op.stop]), em.i64([-1])],
                    hint=_hint(node))]


@_op("stack")
def _stack(em, node, ins):
    axis = node.op.axis % (node.inputs[0].type.rank + 1)
    parts = [em.unsqueeze(i, [axis]) for i in ins]
    return [em.node("Concat", parts, axis=axis, hint=_hint(node))]


@_op("unstack")
def _unstack(em, node, ins):
    x, n = node.inputs[0], node.op.num
    axis = node.op.axis % x.type.rank
    parts = [em.fresh(f"{node.name}/part") for _ in range(n)]
    em.node("Split", [ins[0], em.i64([1] * n, "split")], outputs=parts, axis=axis)
    return [em.squeeze(p, [axis], hint=_hint(node, i)) for i, p in enumerate(parts)]


@_op("getitem")
def _getitem(em, node, ins):
    key, rank = list(node.op.key), node.inputs[0].type.rank
    n_index = sum(k not in ("newaxis", "...") for k in key)
    full = ("slice", None, None, None)
    if "..." in key:
        i = key.index("...")
        key[i:i + 1] = [full] * (rank - n_index)
    else:
        key += [full] * (rank - n_index)
    starts, ends, axes, steps, drop, new = [], [], [], [], [], []
    axis = out = 0
    for k in key:
        if k == "newaxis":
            new.append(out)
            out += 1
            continue
        if isinstance(k, tuple):
            _, a, b, c = k
            step = 1 if c is None else c
            if not (a in (None, 0) and b is None and step == 1):
                starts.append(a if a is not None else (0 if step > 0 else INT64_MAX))
                ends.append(b if b is not None else (INT64_MAX if step > 0 else INT64_MIN))
                axes.append(axis)
                steps.append(step)
            out += 1
        else:
            starts.append(k)
            ends.append(k + 1 if k != -1 else INT64_MAX)
            axes.append(axis)
            steps.append(1)
            drop.append(axis)
        axis += 1
    y = ins[0]
    if axes:
        y = em.node("Slice", [y, em.i64(starts, "starts"), em.i64(ends, "ends"),
                              em.i64(axes, "axes"), em.i64(steps, "steps")])
    if drop:
        y = em.squeeze(y, drop)
    if new:
        y = em.unsqueeze(y, new)
    return [em.node("Identity", [y], hint=_hint(node))]


@_op("broadcast_to")
def _broadcast_to(em, node, ins):
    return [em.node("Expand", [ins[0], em.i64(list(node.op.shape))], hint=_hint(node))]


@_op("broadcast_like")
def _broadcast_like(em, node, ins):
    return [em.node("Expand", [ins[0], em.node("Shape", [ins[1]])], hint=_hint(node))]


@_op("shape")
def _shape(em, node, ins):
    return [em.cast(em.node("Shape", ins), np.int32, hint=_hint(node))]


@_op("dim")
def _dim(em, node, ins):
    # a size read through ops that keep it (a transpose moves it): read it where it was
    # first known, so a zero state does not keep a sorted or reversed copy of the inputs alive
    v, axis = node.inputs[0], node.op.axis % node.inputs[0].type.rank
    while v not in em.fed:   # (a fed value's size is its own)
        op = v.node.op
        if op.name == "transpose":
            before = op.perm[axis]
        elif op.name in ("reverse_sequence", "permute_rows", "check_sequence_length",
                         "contiguous"):
            before = axis
        else:
            break
        prev = v.node.inputs[0]
        if em.lookup(prev) is None:
            break
        v, axis = prev, before
    return [em.cast(em.dim(em.lookup(v), axis), np.int32, hint=_hint(node))]


# --- variable-length batches ------------------------------------------------------------------
@_op("check_sequence_length")
def _check_sequence_length(em, node, ins):
    # ONNX cannot raise at run time: lengths outside [0, max_time] are not checked
    return [em.node("Identity", [ins[0]], hint=_hint(node))]


@_op("sequence_mask")
def _sequence_mask(em, node, ins):
    lengths, max_time = ins
    dtype = node.inputs[0].dtype
    steps = em.node("Range", [em.scalar(0, dtype), em.cast(max_time, dtype),
                              em.scalar(1, dtype)])
    return [em.node("Less", [em.unsqueeze(steps, [1]), em.unsqueeze(lengths, [0])],
                    hint=_hint(node))]


@_op("sort_by_length")
def _sort_by_length(em, node, ins):
    # longest first, ties in input order (a stable sort): TopK over the distinct keys
    # length * batch - row, so the order never depends on how TopK breaks ties
    lengths = em.cast(ins[0], np.int64)
    batch = em.dim(ins[0], 0)
    rows = em.node("Range", [em.scalar(0, np.int64), batch, em.scalar(1, np.int64)])
    keys = em.node("Sub", [em.node("Mul", [lengths, batch]), rows])
    _, order = em.node("TopK", [keys, em.unsqueeze(batch, [0])], n_out=2, axis=0, largest=1,
                       sorted=1)
    return [em.cast(order, np.int32, hint=_hint(node))]


@_op("invert_permutation")
def _invert_permutation(em, node, ins):
    perm = ins[0]
    batch = em.cast(em.dim(perm, 0), np.int32)
    rows = em.node("Range", [em.scalar(0, np.int32), batch, em.scalar(1, np.int32)])
    zeros = em.node("ConstantOfShape", [em.node("Shape", [perm])],
                    value=em.onnx.numpy_helper.from_array(np.zeros(1, np.int32)))
    return [em.node("ScatterElements", [zeros, perm, rows], axis=0, hint=_hint(node))]


@_op("reverse_sequence")
def _reverse_sequence(em, node, ins):
    x, lengths = ins
    rank = node.inputs[0].type.rank
    seq, batch = node.op.seq_axis % rank, node.op.batch_axis % rank
    lens = em.cast(lengths, np.int64)
    if {seq, batch} == {0, 1}:
        return [em.node("ReverseSequence", [x, lens], time_axis=seq, batch_axis=batch,
                        hint=_hint(node))]
    perm = [seq, batch] + [a for a in range(rank) if a not in (seq, batch)]
    moved = em.node("Transpose", [x], perm=perm)
    rev = em.node("ReverseSequence", [moved, lens], time_axis=0, batch_axis=1)
    return [em.node("Transpose", [rev], perm=[int(i) for i in np.argsort(perm)],
                    hint=_hint(node))]
