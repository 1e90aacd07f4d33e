"""Concrete shapes for a run, before it happens: the graph's static types refined by the shapes
of the fed values, through every node and loop body.

Small integer values (dims, shapes, sizes, constants) are evaluated along the way, so a zero
state built with `fill([rg.dim(x, 1), n])` gets its batch size. A loop's step count is known
when its trip count or the length of its `length_from` sequence is; a data-dependent trip (e.g.
from fed sequence lengths) is bounded by the sequence length. Dims that stay unknown are None.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.types import TensorType
from ..ir.value import Value
from ..ops.fused import Fused

_SMALL = 64          # evaluate and remember values with at most this many elements


class ShapeInfo:
    def __init__(self):
        self.types: dict[Value, TensorType] = {}
        self.values: dict[Value, np.ndarray] = {}
        self.steps: dict = {}    # loop node -> number of steps (an upper bound) or None
        self.bounds: dict = {}   # int scalar Value -> an upper bound of its (fed-data) value
        self.row_bounds: dict = {}   # int stack (a loop's, or a body's slice of one) -> an
        #                              upper bound of each of its elements
        self.checked: dict = {}  # lengths Value -> the max_time a check_sequence_length holds
        #                          them to (a run with longer ones fails there)

    def bound(self, v: Value):
        """An upper bound of int scalar `v`: its value when known, else a bound, else None."""
        if v in self.values and np.ndim(self.values[v]) == 0:
            return int(self.values[v])
        return self.bounds.get(v)

    def type(self, v: Value) -> TensorType:
        return self.types.get(v, v.type)

    def nbytes(self, v: Value) -> int | None:
        t = self.type(v)
        if any(d is None for d in t.shape):
            return None
        return t.nbytes()

    def known(self, v: Value) -> bool:
        return all(d is not None for d in self.type(v).shape)


def infer_shapes(graph: Graph, nodes, feed_types: dict) -> ShapeInfo:
    """`nodes`: the scheduled nodes of `graph` (in order); `feed_types`: Value -> TensorType
    (or a shape tuple) for the fed values, or an array: a value known before the run (its
    shape and its data), such as the sequence lengths fed, or a loop's trip worked out from
    them (a loop's steps are then min(max(lengths), T), not the bound T)."""
    info = ShapeInfo()
    for v, t in feed_types.items():
        if isinstance(t, np.ndarray):   # a fed value the plan is made for: its shape and data
            info.types[v] = TensorType(t.shape, v.dtype)
            info.values[v] = t
            continue
        info.types[v] = t if isinstance(t, TensorType) else TensorType(tuple(t), v.dtype)
    nodes = list(nodes)
    for n in nodes:
        if n.op.name == "check_sequence_length":
            info.checked[n.inputs[0]] = n.inputs[1]
    _walk(info, nodes)
    return info


def infer_body_shapes(body: Graph, param_types: dict) -> ShapeInfo:
    """Shapes inside a loop body given concrete types for its params (Value -> TensorType)."""
    info = ShapeInfo()
    for p, t in param_types.items():
        _set(info, p, t)
    _walk(info, body.nodes)
    return info


def _merge(static: TensorType, got: TensorType) -> TensorType:
    if got.rank != static.rank:
        return static
    return TensorType(tuple(s if s is not None else g for s, g in zip(static.shape, got.shape)),
                      static.dtype)


def _set(info: ShapeInfo, v: Value, t: TensorType) -> None:
    info.types[v] = _merge(v.type, t)


def _walk(info: ShapeInfo, nodes) -> None:
    for n in nodes:
        op = n.op
        if op.name in ("placeholder", "param"):
            continue  # fed / bound by the caller (else the static type stands)
        if op.subgraphs():
            _loop(info, n)
            continue
        ins = [info.type(v) for v in n.inputs]
        if op.name == "constant":
            val = np.asarray(op.value)
            if val.size <= _SMALL:
                info.values[n.outputs[0]] = val
            continue
        if op.name == "check_sequence_length" and n.inputs[0] in info.values:
            info.values[n.outputs[0]] = info.values[n.inputs[0]]   # (passed through, checked
            _set(info, n.outputs[0], ins[0])                        # when the run reads it)
            continue
        if op.name == "placeholder_with_default":   # not fed: the default's shape
            _set(info, n.outputs[0], ins[0])
            continue
        if op.name == "dim" and ins[0].shape[op.axis] is not None:
            info.values[n.outputs[0]] = np.asarray(ins[0].shape[op.axis], np.int32)
            continue
        if op.name == "shape" and all(d is not None for d in ins[0].shape):
            info.values[n.outputs[0]] = np.asarray(ins[0].shape, np.int32)
            continue
        if op.name in ("fill", "scatter_nd"):   # runtime sizes: fill's inputs, scatter_nd's 3rd on
            dims = iter(info.values.get(v) for v in n.inputs[2 if op.name == "scatter_nd" else 0:])
            shape = []
            for d in op.shape:
                if d is None:
                    x = next(dims, None)
                    d = None if x is None else int(x)
                shape.append(d)
            _set(info, n.outputs[0], TensorType(tuple(shape), n.outputs[0].dtype))
            continue
        if not op.stateful and n.inputs and all(v in info.values for v in n.inputs):
            if _evaluate(info, n):
                continue
            if op.name == "range" and _range_length(info, n, exact=True):
                continue   # (too long to evaluate: its length, from its arguments)
        try:
            types = _fused_types(op, ins) if _is_fused(op) else op.infer(*ins)
        except Exception:  # an op whose rule needs what we do not know: keep the static types
            types = []
        types = [types] if isinstance(types, TensorType) else list(types)
        for v, t in zip(n.outputs, types):
            _set(info, v, t)
        _bound(info, n, ins)


def _range_length(info: ShapeInfo, n, exact: bool) -> bool:
    """A range node's type from its arguments' values (`exact`), or from an upper bound of its
    limit (a mask's range(max(lengths)) is at most T long); False where they are not known."""
    start, limit, delta = (info.values.get(v) for v in n.inputs)
    if not exact:
        limit = info.bound(n.inputs[1])
    if start is None or limit is None or delta is None or \
            not np.ndim(start) == np.ndim(limit) == np.ndim(delta) == 0 or delta <= 0:
        return False
    size = max(0, int(np.ceil((limit - start) / delta)))
    _set(info, n.outputs[0], TensorType((size,), n.outputs[0].dtype))
    return True


def _bound(info: ShapeInfo, n, ins) -> None:
    """Upper bounds through data-dependent int scalars (a loop's trip min(max(lengths), T)),
    and the shapes they bound: a sequence mask [max_time, batch] is at most [T, batch]."""
    op = n.op
    if op.name == "range" and not info.known(n.outputs[0]):
        _range_length(info, n, exact=False)
        return
    if op.name == "reduce_max" and n.inputs[0] in info.checked:   # max(lengths) <= T
        b = info.bound(info.checked[n.inputs[0]])
        if b is not None and n.outputs[0].type.rank == 0:
            info.bounds[n.outputs[0]] = b
        return
    if op.name == "sequence_mask":
        b = info.bound(n.inputs[1])
        if b is not None:
            _set(info, n.outputs[0], TensorType((max(b, 0),) + ins[0].shape, np.bool_))
        return
    if op.name == "boolean_mask":   # as many rows as the mask has True entries: counted when
        mask = info.values.get(n.inputs[1])   # the mask is known, else at most all of them
        count = int(np.count_nonzero(mask)) if mask is not None else \
            None if any(d is None for d in ins[1].shape) else int(np.prod(ins[1].shape))
        if count is not None:
            a = op.axis
            _set(info, n.outputs[0], TensorType(ins[0].shape[:a] + (count,)
                                                + ins[0].shape[a + ins[1].rank:], ins[0].dtype))
        return
    if op.name == "pack_rows":   # the active rows of a [T, B, N] stack: at most T * B of them
        steps, batch, width = ins[0].shape
        if steps is not None and batch is not None:
            _set(info, n.outputs[0], TensorType((steps * batch, width), ins[0].dtype))
        return
    if len(n.outputs) != 1 or n.outputs[0].type.rank != 0 or \
            n.outputs[0].dtype.kind not in "iu":
        return
    bs = [info.bound(v) for v in n.inputs]
    if op.name == "minimum" and any(b is not None for b in bs):
        info.bounds[n.outputs[0]] = min(b for b in bs if b is not None)
    elif op.name in ("maximum", "add") and bs and all(b is not None for b in bs):
        info.bounds[n.outputs[0]] = max(bs) if op.name == "maximum" else sum(bs)
    elif op.name in ("identity", "cast") and bs and bs[0] is not None:
        info.bounds[n.outputs[0]] = bs[0]


def _is_fused(op) -> bool:
    return isinstance(op, Fused)


def _fused_types(op, ins) -> list:
    """A fused elementwise node states its static types; run its ops' rules on ours instead."""
    return op.retype(ins)


def _evaluate(info: ShapeInfo, n) -> bool:
    """Run a node on known small inputs (shape arithmetic); False if that is not possible."""
    try:
        types = n.op.infer(*[info.type(v) for v in n.inputs])
        types = [types] if isinstance(types, TensorType) else list(types)
        if any(d is None for t in types for d in t.shape) or \
                sum(int(np.prod(t.shape)) for t in types) > _SMALL:
            return False
        out = n.op.compute(np, *[info.values[v] for v in n.inputs])
    except Exception:
        return False
    outs = list(out) if n.op.multi_output else [out]
    for v, o in zip(n.outputs, outs):
        o = np.asarray(o)
        info.values[v] = o
        _set(info, v, TensorType(o.shape, v.dtype))
    return True


def _loop(info: ShapeInfo, node) -> None:
    op = node.op
    body = op.body
    parts = op.in_ports().split(node.inputs)
    params = body.params
    for p, v in zip(params.get("carried", []), parts["carried"]):
        _set(info, p, info.type(v))
    for p, v in zip(params.get("invariant", []), parts["invariant"]):
        _set(info, p, info.type(v))
        if v in info.values:
            info.values[p] = info.values[v]
        elif v in info.bounds:   # (a bounded trip made outside, an inner loop's)
            info.bounds[p] = info.bounds[v]
    for p, v in zip(params.get("sequence", []), parts["sequence"]):
        t = info.type(v)
        _set(info, p, TensorType(t.shape[1:], t.dtype))
        b = _row_bound(info, v)   # (a nested loop's steps, stacked by the outer forward loop:
        if b is not None:         # its backward loop's trip; stacked twice at three levels)
            if p.type.rank == 0:
                info.bounds[p] = b
            else:
                info.row_bounds[p] = b

    n = None
    if op.has_trip and info.bound(parts["trip"][0]) is not None:
        n = info.bound(parts["trip"][0])
    if op.length_from is not None:
        length = info.type(parts["sequence"][op.length_from]).shape[0]
        if length is not None:
            n = length if n is None else min(n, length)
    else:
        length = None
    if op.maximum_iterations is not None:
        n = op.maximum_iterations if n is None else min(n, op.maximum_iterations)
    _walk(info, body.nodes)
    if getattr(op, "chunk_steps", None):
        _chunks(info, op, parts, n)
    info.steps[node] = n
    outs = op.out_ports().split(node.outputs)
    if n is not None:
        info.values[outs["steps"][0]] = np.asarray(n, np.int32)
    for v, r in zip(outs["output"] + outs["residual"],
                    body.results["output"] + body.results["residual"]):
        b = (info.bound(r) if r.type.rank == 0 else _row_bound(info, r)) \
            if r.dtype.kind in "iu" else None
        if b is not None:
            info.row_bounds[v] = b
    for v, init in zip(outs["carried"], parts["carried"]):
        _set(info, v, info.type(init))
    for v, r in zip(outs["output"], body.results["output"]):
        t = info.type(r)
        _set(info, v, TensorType((length if length is not None else n,) + t.shape, t.dtype))
    for v, r in zip(outs["residual"], body.results["residual"]):
        t = info.type(r)
        _set(info, v, TensorType((n,) + t.shape, t.dtype))


def _row_bound(info: ShapeInfo, v: Value):
    """An upper bound of every element of int stack `v` (a loop's stacked scalars, read where
    they lie: on the device or through host_rows), or None."""
    while v not in info.row_bounds and v.node.op.name in ("host_rows", "identity"):
        v = v.node.inputs[0]
    return info.row_bounds.get(v)


def _chunks(info: ShapeInfo, op, parts, n) -> None:
    """A chunked loop's prologue and epilogue (ops/loop.py), for chunks of its full length
    (min(chunk_steps, n) steps): blocks, the rows the steps read, the gathered rows."""
    body, params, results = op.body, op.body.params, op.body.results
    m = op.chunk_steps if n is None else max(min(op.chunk_steps, n), 0)
    for p, i in zip(params.get("block", []), op.chunk_blocks):
        t = info.type(parts["sequence"][i])
        _set(info, p, TensorType((m,) + t.shape[1:], t.dtype))
    for p in params.get("chunk_len", []):
        info.values[p] = np.asarray(m, np.int32)
    _walk(info, body.nodes)   # the prologue's results: the rows the steps read
    for p, r in zip(params.get("chunk", []), results.get("prologue", [])):
        t = info.type(r)
        _set(info, p, TensorType(t.shape[1:], t.dtype))
    _walk(info, body.nodes)   # the steps: the values the epilogue gathers
    for p, r in zip(params.get("gathered", []), results.get("gather", [])):
        t = info.type(r)
        _set(info, p, TensorType((m,) + t.shape, t.dtype))
    _walk(info, body.nodes)
