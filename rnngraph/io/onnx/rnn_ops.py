"""Route 1: a loop node that runs a recognised cell, as ONNX's RNN, LSTM or GRU ops.

Recognising a cell: the loop's carried state and loop-invariant weights suggest the layers
(BasicRNNCell: kernel [in+H, H]; LSTMCell: [in+H, 4H], peepholes as three [H] vectors; GRUCell:
[in+H, 2H] gates and [in+H, H] candidate, `reset_after` as one more [H] bias). rnngraph's own
cells then build that guess with dynamic_rnn in a scratch graph, and the loop is taken for the
cell only if its body is the same graph node for node (same ops, attributes, constants and
wiring; the forget bias is read from the body). Anything else (a projection, clipping, another
activation, a custom cell, nested inputs) does not match and goes to route 2 (loops.py).

Weight layouts (rnngraph's in rnngraph/nn/cells.py; ONNX's W [1, G*H, in], R [1, G*H, H],
B [1, 2*G*H] = input biases then recurrent biases):
  RNN   h' = tanh(x W^T + h R^T + Wb + Rb)
  LSTM  ONNX gate order i, o, f, c; rnngraph's kernel columns i, j, f, o (j: the candidate c).
        The forget bias is added to the f block of Wb. Peepholes P [1, 3H] in order i, o, f.
  GRU   ONNX gate order z, r, h; rnngraph's gate columns r, u (u = z), then the candidate.
        reset_after=True is linear_before_reset=1 with the candidate's recurrent bias in Rb.

A MultiRNNCell becomes one ONNX op per layer, each reading the previous one's Y. With
sequence_length (dynamic_rnn's per-step mask), ONNX's sequence_lens carries each row's length;
outputs past it are zeroed with the mask and a zero-length row keeps its initial state, as
rnngraph defines them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import ExportError
from ...ir.graph import Graph
from ...nn.cells import BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell
from ...nn.rnn import dynamic_rnn
from ...ops.sources import placeholder
from .inference import EMPTY

# the forget bias the scratch LSTM is built with: its constant in the body is a wildcard, and
# the matched body's constant in that place is the user's forget bias
_FORGET_SENTINEL = 0.8125
_templates: dict = {}


@dataclass
class Layer:
    kind: str                 # "rnn", "lstm", "gru"
    units: int
    input_size: int
    peepholes: bool = False
    reset_after: bool = False
    forget_bias: float = 0.0
    weights: dict = field(default_factory=dict)   # role -> outer Value (a variable/constant)


@dataclass
class Match:
    layers: list
    masked: bool


def match(node, any_float: bool = False, view=EMPTY):
    """(Match, None) when loop `node` runs a recognised cell, else (None, why not).
    Only float32 unless `any_float`: the ONNX ops allow float16/float64 too, but onnxruntime's
    CPU kernels for them take float32 only, so other dtypes go to route 2 by default.
    `view` (inference.View) is the graph as exported: a body whose dropout masks it removed
    is the bare cell's, and the inputs only those masks read are not the cell's."""
    op, body = node.op, node.op.body
    if op.reverse or op.maximum_iterations is not None or body.results["cond"]:
        return None, "it is not a plain forward loop over a sequence"
    parts = op.in_ports().split(node.inputs)
    unread = view.unread_params(node)
    parts["invariant"] = [v for p, v in zip(body.params.get("invariant", []), parts["invariant"])
                          if p not in unread]
    seqs = parts["sequence"]
    masked = len(seqs) == 2
    if len(seqs) not in (1, 2) or op.length_from != 0 or masked != op.has_trip:
        return None, "its inputs are not one sequence (and a sequence_length mask)"
    x = seqs[0]
    if x.type.rank != 3 or x.shape[-1] is None or not np.issubdtype(x.dtype, np.floating):
        return None, f"its sequence {x.type} is not a float [time, batch, depth] tensor"
    if x.dtype != np.float32 and not any_float:
        return None, (f"it computes in {x.dtype} (onnxruntime's RNN/LSTM/GRU kernels take "
                      "float32 only)")
    if masked and (seqs[1].dtype != np.bool_ or seqs[1].type.rank != 3
                   or not _is_length_mask(seqs[1])):
        return None, "its second sequence is not dynamic_rnn's sequence_length mask"
    layers = _guess_layers([v.type for v in parts["carried"]],
                           [v.type for v in parts["invariant"]], x.shape[-1])
    if layers is None:
        return None, "its state and weights are not those of an RNN, LSTM or GRU cell"
    for layers in _variants(layers):
        tmpl_node, tmpl_cells = _template(tuple(layers), x.shape[-1], x.dtype.name, masked)
        forget = _same_body(body, tmpl_node.op.body, view)
        if forget is not None and _loop_attrs(op) == _loop_attrs(tmpl_node.op):
            break
    else:
        return None, ("its body is not the one rnngraph's cells build (a projection, clipping, "
                      "another activation or a custom cell)")
    tmpl_inv = tmpl_node.op.in_ports().split(tmpl_node.inputs)["invariant"]
    found = []
    forgets = iter(forget)
    for (kind, units, peep, ra), cell, in_size in zip(layers, tmpl_cells,
                                                      _input_sizes(layers, x.shape[-1])):
        layer = Layer("lstm" if kind == "basic_lstm" else kind, units, in_size, peep, ra)
        if layer.kind == "lstm":
            layer.forget_bias = next(forgets, None)
            if layer.forget_bias is None:
                return None, "its forget bias was not found"
        for role, tvar in _cell_weights(cell).items():
            try:
                user = parts["invariant"][tmpl_inv.index(tvar)]
            except ValueError:
                return None, "its weights do not line up with the cell's"
            if user.node.op.name not in ("variable", "constant"):
                return None, (f"its weight {user.name} is computed, not a variable (ONNX's ops "
                              "take the weights as initializers here)")
            layer.weights[role] = user
        found.append(layer)
    return Match(found, masked), None


def _variants(layers):
    """The guess, then (if it has LSTM layers without peepholes) the same with BasicLSTMCell,
    whose body differs from LSTMCell's in operand order only."""
    yield layers
    basic = [("basic_lstm",) + l[1:] if l[0] == "lstm" and not l[2] else l for l in layers]
    if basic != layers:
        yield basic


def _input_sizes(layers, first):
    sizes = [first]
    for kind, units, _, _ in layers[:-1]:
        sizes.append(units)
    return sizes


def _is_length_mask(mask) -> bool:
    """dynamic_rnn's mask: expand_dims(sequence_mask(lengths, T)), true for a prefix of each
    row's steps, so the row's length is the count of its true entries."""
    m = mask.node
    return m.op.name == "expand_dims" and m.inputs[0].node.op.name == "sequence_mask"


def _guess_layers(carried, invariant, input_size):
    """[(kind, units, peepholes, reset_after)] from the loop's state and weight types."""
    layers, ci, ii, size = [], 0, 0, input_size

    def vec(i, n):
        return i < len(invariant) and invariant[i].shape == (n,)

    while ii < len(invariant):
        if ci >= len(carried) or carried[ci].rank != 2 or carried[ci].shape[1] is None:
            return None
        n = carried[ci].shape[1]
        k = invariant[ii].shape
        if len(k) != 2 or k[0] != size + n or k[1] % n:
            return None
        ratio = k[1] // n
        if ratio == 1 and vec(ii + 1, n):
            layers.append(("rnn", n, False, False))
            ii, ci = ii + 2, ci + 1
        elif ratio == 4 and vec(ii + 1, 4 * n):
            peep = vec(ii + 2, n) and vec(ii + 3, n) and vec(ii + 4, n)
            layers.append(("lstm", n, peep, False))
            ii, ci = ii + (5 if peep else 2), ci + 2
        elif ratio == 2 and vec(ii + 1, 2 * n):
            ra = vec(ii + 4, n)
            layers.append(("gru", n, False, ra))
            ii, ci = ii + (5 if ra else 4), ci + 1
        else:
            return None
        size = n
    if ci != len(carried) or not layers:
        return None
    return layers


def _template(layers, input_size, dtype, masked):
    """The loop node dynamic_rnn builds for these layers in a scratch graph (cached)."""
    key = (layers, input_size, dtype, masked)
    if key not in _templates:
        graph = Graph(name="onnx_template")
        with graph.as_default():
            cells = []
            for kind, units, peep, ra in layers:
                if kind == "rnn":
                    cells.append(BasicRNNCell(units))
                elif kind == "lstm":
                    cells.append(LSTMCell(units, use_peepholes=peep,
                                          forget_bias=_FORGET_SENTINEL))
                elif kind == "basic_lstm":
                    cells.append(BasicLSTMCell(units, forget_bias=_FORGET_SENTINEL))
                else:
                    cells.append(GRUCell(units, reset_after=ra))
            cell = cells[0] if len(cells) == 1 else MultiRNNCell(cells)
            x = placeholder(dtype, [None, None, input_size])
            lengths = placeholder(np.int32, [None]) if masked else None
            dynamic_rnn(cell, x, sequence_length=lengths, dtype=dtype, time_major=True)
        loop = next(n for n in graph.nodes if n.op.name == "loop")
        _templates[key] = (loop, cells)
    return _templates[key]


def _cell_weights(cell) -> dict:
    if isinstance(cell, BasicRNNCell):
        return {"kernel": cell.kernel, "bias": cell.bias}
    if isinstance(cell, (LSTMCell, BasicLSTMCell)):
        w = {"kernel": cell.kernel, "bias": cell.bias}
        if getattr(cell, "use_peepholes", False):
            w.update(w_i=cell.w_i_diag, w_f=cell.w_f_diag, w_o=cell.w_o_diag)
        return w
    w = {"gate_kernel": cell.gate_kernel, "gate_bias": cell.gate_bias,
         "cand_kernel": cell.candidate_kernel, "cand_bias": cell.candidate_bias}
    if cell.reset_after:
        w["cand_rbias"] = cell.candidate_recurrent_bias
    return w


def _loop_attrs(op):
    return (op.has_trip, op.reverse, op.length_from, op.maximum_iterations, op.active_rows)


def _same_body(body, tmpl, view=EMPTY):
    """The forget biases found where the template has its sentinel (a list, possibly empty)
    when `body` (as `view` sees it) is the template node for node; None when it is not."""
    if _param_counts(body, view) != _param_counts(tmpl, EMPTY):
        return None
    a, ra = _canon(body, view)
    b, rb = _canon(tmpl, EMPTY)
    if len(a) != len(b) or ra != rb:
        return None
    forget = []
    for (name, attrs, ins), (tname, tattrs, tins) in zip(a, b):
        if name != tname or ins != tins:
            return None
        if name == "constant":
            v, tv = attrs["value"], tattrs["value"]
            if tv.shape == () and float(tv) == _FORGET_SENTINEL:
                if v.shape != () or v.dtype != tv.dtype:
                    return None
                forget.append(float(v))
                continue
        if not _same_attrs(attrs, tattrs):
            return None
    return forget


def _params(body, view):
    """The body's params by role, without the invariant ones nothing live reads (a removed
    dropout's keep probability and random counter)."""
    unread = {p for p in body.params.get("invariant", [])
              if not any(p in view.inputs(n) for n in view.live_nodes(body))}
    return {r: [p for p in vals if p not in unread] for r, vals in body.params.items()}


def _param_counts(body, view):
    return {r: len(v) for r, v in _params(body, view).items()}


def _canon(body, view=EMPTY):
    """Body nodes as (op name, attributes, input references), params and nodes by position."""
    refs = {}
    for role, vals in _params(body, view).items():
        for i, v in enumerate(vals):
            refs[v] = ("param", role, i)
    rows, k = [], 0
    for n in view.live_nodes(body):   # (what the residuals alone need is not the cell's)
        rows.append((n.op.name, n.op.attrs(), tuple(refs.get(v, ("outer", v.id))
                                                    for v in view.inputs(n))))
        for j, o in enumerate(n.outputs):
            refs[o] = ("node", k, j)
        k += 1
    results = tuple((r, tuple(refs.get(view.resolve(v), ("outer", view.resolve(v).id))
                              for v in body.results.get(r, [])))
                    for r in ("cond", "carried", "output"))
    return rows, results


def _same_attrs(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


# --- emitting ---------------------------------------------------------------------------------
def emit(em, node, name_of, m: Match, unsorted=None):
    """ONNX RNN/LSTM/GRU ops standing for loop `node`; `name_of(value)` gives the ONNX name of
    an input (asked only for those read: the weights go in converted). Returns the names of
    the loop's outputs.

    unsorted: (x, initial states, lengths) names in the user's row order, which dynamic_rnn
    sorted by length for its loop: the ops take them as they are (ONNX's ops need no sorted
    batch), and the outputs come out in that order too."""
    op = node.op
    vparts = op.in_ports().split(node.inputs)
    groups = ("trip", "carried", "sequence") if unsorted is None else ("trip",)
    parts = {g: [name_of(v) for v in vparts[g]] for g in groups}
    if unsorted is not None:
        parts["sequence"] = [unsorted[0]]
        parts["carried"] = list(unsorted[1])
    outs = op.out_ports().split(node.outputs)
    x = x0 = parts["sequence"][0]
    dtype = node.inputs[op.in_ports().offset("sequence")].dtype
    lens = ran = mask = None
    if unsorted is not None and m.masked:
        # the user's lengths (rnngraph checks them against max_time; ONNX cannot)
        t = em.cast(em.dim(x0, 0), np.int32)
        lengths = em.node("Min", [em.cast(unsorted[2], np.int32), t],
                          hint=f"{node.name}/lengths")
        lens = em.node("Max", [lengths, em.scalar(1, np.int32)])
        ran = em.unsqueeze(em.node("Greater", [lengths, em.scalar(0, np.int32)]), [1])
        times = em.node("Range", [em.scalar(0, np.int32), t, em.scalar(1, np.int32)])
        mask = em.unsqueeze(em.node("Less", [em.unsqueeze(times, [1]),
                                             em.unsqueeze(lengths, [0])]), [2],
                            hint=f"{node.name}/mask")
    elif m.masked:
        # each row's length: its mask's true steps, bounded by the loop's trip count (rnngraph
        # runs min(trip, T) steps: a row longer than that stops there)
        counted = em.node("ReduceSum", [em.cast(parts["sequence"][1], np.int32),
                                        em.i64([0], "axes")], keepdims=0)
        trip = em.node("Max", [em.cast(parts["trip"][0], np.int32), em.scalar(0, np.int32)])
        lengths = em.node("Min", [em.squeeze(counted, [1]), trip],
                          hint=f"{node.name}/lengths")
        # rows of length 0 run one step that the mask then discards (not every runtime
        # accepts a zero in sequence_lens); their final state is the initial one
        lens = em.node("Max", [lengths, em.scalar(1, np.int32)])
        ran = em.unsqueeze(em.node("Greater", [lengths, em.scalar(0, np.int32)]), [1])
        times = em.node("Range", [em.scalar(0, np.int32), em.cast(em.dim(x0, 0), np.int32),
                                  em.scalar(1, np.int32)])
        mask = em.unsqueeze(em.node("Less", [em.unsqueeze(times, [1]),
                                             em.unsqueeze(lengths, [0])]), [2],
                            hint=f"{node.name}/mask")
    carried = parts["carried"]
    ci, finals = 0, []
    for k, layer in enumerate(m.layers):
        tag = f"{node.name}/layer_{k}" if len(m.layers) > 1 else node.name
        w = _convert(layer, em.session, dtype)
        names = {r: em.initializer(a, em.fresh(f"{layer.weights[_anchor(layer)].node.name}/"
                                                f"onnx_{r}"))
                 for r, a in w.items()}
        if layer.kind == "lstm":
            c0, h0 = carried[ci], carried[ci + 1]
            ci += 2
        else:
            h0 = carried[ci]
            ci += 1
        inputs = [x, names["W"], names["R"], names["B"], lens or "", em.unsqueeze(h0, [0])]
        n_out = 2
        attrs = {"hidden_size": layer.units}
        if layer.kind == "lstm":
            inputs.append(em.unsqueeze(c0, [0]))
            if "P" in names:
                inputs.append(names["P"])
            n_out = 3
        if layer.kind == "gru" and layer.reset_after:
            attrs["linear_before_reset"] = 1
        op_type = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[layer.kind]
        res = em.node(op_type, inputs, n_out=n_out, hint=tag, **attrs)
        x = em.squeeze(res[0], [1], hint=f"{tag}/Y")
        h = em.squeeze(res[1], [0], hint=f"{tag}/Y_h")
        if ran is not None:
            h = em.node("Where", [ran, h, h0], hint=f"{tag}/h")
        if layer.kind == "lstm":
            c = em.squeeze(res[2], [0], hint=f"{tag}/Y_c")
            if ran is not None:
                c = em.node("Where", [ran, c, c0], hint=f"{tag}/c")
            finals += [c, h]
        else:
            finals.append(h)
    if mask is not None:
        x = em.node("Where", [mask, x, em.scalar(0, dtype)], hint=f"{node.name}/outputs")
    steps = None
    if outs["steps"][0] in em.used:
        n = em.dim(x0, 0)
        if m.masked:
            n = em.node("Min", [em.cast(parts["trip"][0], np.int64), n])
        steps = em.cast(n, np.int32, hint=f"{node.name}/steps")
    return [steps] + finals + [x] + [None] * len(outs["residual"])


def _anchor(layer):
    return "kernel" if layer.kind != "gru" else "gate_kernel"


def _value(v, session):
    if v.node.op.name == "constant":
        return np.asarray(v.node.op.value)
    if session is None:
        raise ExportError(
            f"to_onnx: {v.node.describe()} is a variable; pass session= (the Session holding "
            "its value)")
    return np.asarray(session.read_variable(v.node.name))


def _convert(layer: Layer, session, dtype) -> dict:
    """W, R, B (and P) in ONNX's layout from the cell's variables."""
    get = {r: _value(v, session).astype(dtype) for r, v in layer.weights.items()}
    I, H = layer.input_size, layer.units
    if layer.kind == "rnn":
        k, b = get["kernel"], get["bias"]
        return {"W": k[:I].T[None], "R": k[I:].T[None],
                "B": np.concatenate([b, np.zeros_like(b)])[None]}
    if layer.kind == "lstm":
        def iofc(m):  # rnngraph's i, j, f, o blocks -> ONNX's i, o, f, c
            return np.concatenate([m[..., g * H:(g + 1) * H] for g in (0, 3, 2, 1)], axis=-1)
        k, b = get["kernel"], get["bias"].copy()
        b[2 * H:3 * H] += np.asarray(layer.forget_bias, dtype)
        out = {"W": iofc(k[:I]).T[None], "R": iofc(k[I:]).T[None],
               "B": np.concatenate([iofc(b), np.zeros_like(b)])[None]}
        if layer.peepholes:
            out["P"] = np.concatenate([get["w_i"], get["w_o"], get["w_f"]])[None]
        return out
    g, c = get["gate_kernel"], get["cand_kernel"]
    gb, cb = get["gate_bias"], get["cand_bias"]

    def zrh(gm, cm):  # rnngraph's r, u gate blocks and candidate -> ONNX's z, r, h
        return np.concatenate([gm[..., H:], gm[..., :H], cm], axis=-1)
    rb = get.get("cand_rbias", np.zeros_like(cb))
    return {"W": zrh(g[:I], c[:I]).T[None], "R": zrh(g[I:], c[I:]).T[None],
            "B": np.concatenate([zrh(gb, cb), np.zeros(2 * H, dtype), rb])[None]}
