"""Route 1 for bidirectional_dynamic_rnn: ONE ONNX RNN/LSTM/GRU op with
direction="bidirectional" for the forward and backward loops.

What bidirectional_dynamic_rnn builds (nn/rnn.py), recognised from the graph by op types and
wiring, not names:

    fw:  X -> [transpose] -> [permute_rows(order_f)] -> loop F -> [permute_rows(unsort_f)]
            -> [transpose] -> output_fw;  F's final states -> [permute_rows(unsort_f)]
    bw:  reverse_sequence(X, L) -> [transpose] -> [permute_rows(order_b)] -> loop B
            -> [permute_rows(unsort_b)] -> [transpose] -> reverse_sequence(., L) -> output_bw

(transposes when batch-major, permutations when there is a sequence_length L). ONNX's reverse
direction reads row b's steps len_b-1 .. 0 and writes each step's output at its own time
index, which is exactly output_bw (the backward cell run over the row reversed within its
length, its outputs reversed back); its Y_h is the backward final state. Both directions take
the batch in its own (unsorted) order with `sequence_lens`, so the op reads X, L and the
initial states as the user gave them, and its outputs are output_fw, output_bw and the final
states directly: the sorting, unsorting and reversing around the two loops are not needed.

The fusion is made when the export reaches loop B: both loops have been exported on their
own by then (route 1), and the fused op rebinds only the values the user sees (the ends of
the chains above). Whatever still reads the separate ops' results keeps them; the rest is
removed from the model by the driver's dead-node pass (export.py). Fused only when both
directions are one layer of the same ONNX op and size (LSTM with LSTM, GRU with GRU with the
same reset_after, RNN with RNN); otherwise the two loops stay two ops.
"""
from __future__ import annotations

import numpy as np

from . import rnn_ops

_TM = (1, 0, 2)


def _strip_casts(v):
    while v.node.op.name == "cast":
        v = v.node.inputs[0]
    return v


def _unpermute(v, order):
    """v's source when v = permute_rows(source, order, axis=...) (else None)."""
    n = v.node
    if n.op.name == "permute_rows" and n.inputs[1] is order:
        return n.inputs[0]
    return None


def _is_transpose(v):
    n = v.node
    return n.op.name == "transpose" and tuple(n.op.perm) == _TM


def _consumers_of(v, consumers, op_name, check=lambda n: True):
    for n in consumers.get(v, ()):
        if n.op.name == op_name and n.inputs[0] is v and check(n):
            return n
    return None


class _Side:
    """One direction's loop traced through what dynamic_rnn built around it."""

    def __init__(self, node):
        self.node = node
        self.order = self.unsort = self.lengths = None
        self.source = None          # the time-major or batch-major input before sorting
        self.batch_major = False
        self.init = []              # initial states in the user's row order
        self.out_sink = None        # the Value the user sees as the outputs (fw; bw: before
        self.state_sinks = []       # the reverse), and the final states

    def trace_inputs(self, view) -> bool:
        op = self.node.op
        parts = op.in_ports().split(self.node.inputs)
        x = parts["sequence"][0]
        if len(parts["sequence"]) == 2:   # the mask: expand_dims(sequence_mask(sorted lengths))
            seq_mask = parts["sequence"][1].node.inputs[0].node
            sorted_lens = seq_mask.inputs[0]
            if sorted_lens.node.op.name != "permute_rows":
                return False
            self.order = sorted_lens.node.inputs[1]
            checked = sorted_lens.node.inputs[0]
            if checked.node.op.name != "check_sequence_length":
                return False
            self.lengths = _strip_casts(checked.node.inputs[0])
            x = _unpermute(x, self.order)
            if x is None:
                return False
            for s in parts["carried"]:
                src = _unpermute(s, self.order)
                if src is None:
                    return False
                self.init.append(src)
        else:
            self.init = list(parts["carried"])
        if _is_transpose(x):
            self.batch_major = True
            x = x.node.inputs[0]
        self.source = x
        return True

    def trace_outputs(self, consumers) -> bool:
        outs = self.node.op.out_ports().split(self.node.outputs)
        if len(outs["output"]) != 1:
            return False
        y = outs["output"][0]
        finals = list(outs["carried"])
        if self.order is not None:
            unsort = [n for n in consumers.get(self.order, ())
                      if n.op.name == "invert_permutation"]
            if len(unsort) != 1:
                return False
            self.unsort = unsort[0].outputs[0]
            found = _consumers_of(y, consumers, "permute_rows",
                                  lambda n: n.inputs[1] is self.unsort and n.op.axis == 1)
            y = None if found is None else found.outputs[0]   # (None: nothing reads it)
            sinks = []
            for f in finals:
                found = _consumers_of(f, consumers, "permute_rows",
                                      lambda n: n.inputs[1] is self.unsort and n.op.axis == 0)
                sinks.append(None if found is None else found.outputs[0])
            finals = sinks
        if self.batch_major and y is not None:
            found = _consumers_of(y, consumers, "transpose", lambda n: tuple(n.op.perm) == _TM)
            y = None if found is None else found.outputs[0]
        self.out_sink, self.state_sinks = y, finals
        return True


def trace(node, view, consumers):
    """A _Side for a loop dynamic_rnn built (its inputs before sorting, its outputs after
    unsorting), or None when the loop is not wired that way."""
    side = _Side(node)
    if not side.trace_inputs(view) or not side.trace_outputs(consumers):
        return None
    return side


def _full_lengths(lens, x, time_axis, batch_axis) -> bool:
    """lens = fill([dim(x, batch)], 0) + dim(x, time): every row its full length."""
    n = lens.node
    if n.op.name != "add":
        return False
    fill, dim = n.inputs[0].node, n.inputs[1].node
    return (fill.op.name == "fill" and fill.op.value == 0 and dim.op.name == "dim"
            and dim.inputs[0] is x and dim.op.axis == time_axis
            and len(fill.inputs) == 1 and fill.inputs[0].node.op.name == "dim"
            and fill.inputs[0].node.inputs[0] is x
            and fill.inputs[0].node.op.axis == batch_axis)


def find_pair(bw_node, needed, consumers, view, m_bw):
    """(fw side, bw side, fw match, bw sink) when loop `bw_node` (matched for route 1 as
    `m_bw`) is the backward half of a bidirectional_dynamic_rnn whose forward loop is in
    `needed` and matches too, fusable into one op; else None."""
    if len(m_bw.layers) != 1:
        return None
    bw = _Side(bw_node)
    if not bw.trace_inputs(view):
        return None
    rev = bw.source.node
    if rev.op.name != "reverse_sequence":
        return None
    x = rev.inputs[0]
    time_axis, batch_axis = (1, 0) if bw.batch_major else (0, 1)
    if rev.op.seq_axis % 3 != time_axis or rev.op.batch_axis % 3 != batch_axis:
        return None
    rev_lens = _strip_casts(rev.inputs[1])
    if bw.lengths is not None:
        if rev_lens is not bw.lengths:
            return None
    elif not _full_lengths(rev_lens, x, time_axis, batch_axis):
        return None
    if not bw.trace_outputs(consumers) or bw.out_sink is None:
        return None

    def same_lengths(n):   # the outputs reversed back within the same lengths
        if bw.lengths is not None:
            return _strip_casts(n.inputs[1]) is rev_lens
        return _full_lengths(_strip_casts(n.inputs[1]), n.inputs[0], time_axis, batch_axis)

    back = _consumers_of(bw.out_sink, consumers, "reverse_sequence",
                         lambda n: same_lengths(n)
                         and n.op.seq_axis % 3 == time_axis
                         and n.op.batch_axis % 3 == batch_axis)
    if back is None:
        return None
    for node in needed:
        if node is bw_node or node.op.name != "loop" or node.graph is not bw_node.graph:
            continue
        fw = _Side(node)
        if not fw.trace_inputs(view) or fw.source is not x \
                or fw.batch_major != bw.batch_major or fw.lengths is not bw.lengths:
            continue
        m_fw, _ = rnn_ops.match(node, view=view)
        if m_fw is None or len(m_fw.layers) != 1 or not _compatible(m_fw.layers[0],
                                                                     m_bw.layers[0]):
            continue
        if not fw.trace_outputs(consumers):
            continue
        return fw, bw, m_fw, back.outputs[0]
    return None


def _compatible(a, b) -> bool:
    return (a.kind == b.kind and a.units == b.units and a.input_size == b.input_size
            and a.reset_after == b.reset_after)


def emit_pair(em, pair, m_bw):
    """The bidirectional op for `pair` (find_pair's answer); binds the values the user sees:
    both directions' outputs and final states."""
    fw, bw, m_fw, bw_sink = pair
    lf, lb = m_fw.layers[0], m_bw.layers[0]
    dtype = fw.source.dtype
    wf = rnn_ops._convert(lf, em.session, dtype)
    wb = rnn_ops._convert(lb, em.session, dtype)
    if "P" in wf or "P" in wb:   # peepholes on one side only: zeros on the other
        shape = (wf.get("P") if "P" in wf else wb["P"]).shape
        for w in (wf, wb):
            w.setdefault("P", np.zeros(shape, dtype))
    anchor = lf.weights[rnn_ops._anchor(lf)].node.name
    names = {r: em.initializer(np.concatenate([wf[r], wb[r]], axis=0),
                               em.fresh(f"{anchor}/onnx_bidirectional_{r}"))
             for r in wf}
    tag = fw.node.name.rsplit("/", 2)[0] if fw.node.name.count("/") >= 2 else fw.node.name
    tag = f"{tag}/bidirectional"
    x = em.lookup(fw.source)
    if fw.batch_major:
        x = em.node("Transpose", [x], perm=list(_TM))
    lens = ran = mask = None
    if fw.lengths is not None:
        t = em.cast(em.dim(x, 0), np.int32)
        lengths = em.node("Min", [em.cast(em.lookup(fw.lengths), np.int32), t],
                          hint=f"{tag}/lengths")
        # zero-length rows run one step that the mask discards; they keep their initial state
        lens = em.node("Max", [lengths, em.scalar(1, np.int32)])
        ran = em.unsqueeze(em.node("Greater", [lengths, em.scalar(0, np.int32)]), [1])
        times = em.node("Range", [em.scalar(0, np.int32), t, em.scalar(1, np.int32)])
        mask = em.unsqueeze(em.node("Less", [em.unsqueeze(times, [1]),
                                             em.unsqueeze(lengths, [0])]), [2])
    init_f = [em.lookup(v) for v in fw.init]
    init_b = [em.lookup(v) for v in bw.init]
    lstm = lf.kind == "lstm"

    def both(i):
        return em.node("Concat", [em.unsqueeze(init_f[i], [0]), em.unsqueeze(init_b[i], [0])],
                       axis=0)
    # rnngraph's LSTM state is (c, h); ONNX takes initial_h then initial_c
    h0 = both(1 if lstm else 0)
    inputs = [x, names["W"], names["R"], names["B"], lens or "", h0]
    attrs = {"hidden_size": lf.units, "direction": "bidirectional"}
    if lstm:
        inputs.append(both(0))
        if "P" in names:
            inputs.append(names["P"])
    if lf.kind == "gru" and lf.reset_after:
        attrs["linear_before_reset"] = 1
    op_type = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[lf.kind]
    res = em.node(op_type, inputs, n_out=3 if lstm else 2, hint=tag, **attrs)
    y_f, y_b = em.node("Split", [res[0], em.i64([1, 1], "split")], n_out=2, axis=1,
                       hint=f"{tag}/Y")   # Y [T, 2, B, H] -> [T, 1, B, H] each
    finals = {}
    for d, (side, y) in enumerate(((fw, y_f), (bw, y_b))):
        y = em.squeeze(y, [1])
        if mask is not None:
            y = em.node("Where", [mask, y, em.scalar(0, dtype)])
        if side.batch_major:
            y = em.node("Transpose", [y], perm=list(_TM))
        states = []
        pick = em.i64([d], "direction")
        h = em.squeeze(em.node("Gather", [res[1], pick], axis=0), [0])
        init = init_f if d == 0 else init_b
        if lstm:
            c = em.squeeze(em.node("Gather", [res[2], pick], axis=0), [0])
            if ran is not None:
                c = em.node("Where", [ran, c, init[0]])
                h = em.node("Where", [ran, h, init[1]])
            states = [c, h]
        else:
            if ran is not None:
                h = em.node("Where", [ran, h, init[0]])
            states = [h]
        finals[d] = (y, states)
    if fw.out_sink is not None:
        em.bind(fw.out_sink, finals[0][0])
    em.bind(bw_sink, finals[1][0])
    for side, (_, states) in zip((fw, bw), (finals[0], finals[1])):
        for v, s in zip(side.state_sinks, states):
            if v is not None:
                em.bind(v, s)
