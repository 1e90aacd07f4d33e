"""Import PyTorch RNN weights into rnngraph cells, and map rnngraph gradients back to them.

    lstm = torch.nn.LSTM(3, 5, batch_first=True)
    cell = rg.nn.LSTMCell(5)                     # any forget_bias: it is folded into the bias
    outputs, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)   # builds the cell's weights
    sess = rg.Session()
    rg.nn.load_torch_weights(cell, lstm, sess)   # now cell == lstm, step for step

PyTorch is not needed to import rnngraph; these functions only read the module's parameters
(`weight_ih_l0`, ...) as NumPy arrays. PyTorch stores a weight as W [gates * H, input] and
computes x @ W.T; rnngraph stores a kernel [input + H, gates * H] whose first `input` rows act
on x and the rest on h (see cells.py). The mapping, per layer (and direction):

  nn.RNN(nonlinearity=tanh|relu) -> BasicRNNCell(H, activation=rg.tanh|rg.relu)
      kernel = [W_ih.T ; W_hh.T]           bias = b_ih + b_hh
  nn.LSTM(proj_size=P) -> LSTMCell(H, num_proj=P or None), no peepholes, no clipping.
      PyTorch's row blocks are i, f, g, o; rnngraph's column blocks are i, j, f, o (j = g):
      kernel = [W_ih[i,g,f,o].T ; W_hh[i,g,f,o].T]
      bias   = (b_ih + b_hh)[i,g,f,o] - forget_bias on the f block  (PyTorch has no forget
               bias; rnngraph computes sigmoid(f + forget_bias), so any forget_bias is exact;
               LSTMCell(forget_bias=0.0) avoids the subtraction altogether)
      projection/kernel = W_hr.T              (when proj_size > 0)
  nn.GRU -> GRUCell(H, reset_after=True)
      PyTorch: r, z = sigmoid(...); n = tanh(W_in x + b_in + r * (W_hn h + b_hn));
      h' = (1 - z) * n + z * h. Its row blocks are r, z, n; rnngraph's gates are r, u (u = z):
      gates/kernel = [W_ih[r,z].T ; W_hh[r,z].T]      gates/bias = b_ih[r,z] + b_hh[r,z]
      candidate/kernel = [W_ih[n].T ; W_hh[n].T]      candidate/bias = b_in
      candidate/recurrent_bias = b_hn
      The default GRUCell (TensorFlow's: the reset gate multiplies h *before* the product)
      computes a different function and is refused.
  num_layers = L > 1 -> a MultiRNNCell of L cells (or a list of L cells); layer k reads the
      parameters suffixed _l{k}.
  bidirectional=True -> a pair (cell_fw, cell_bw) (for bidirectional_dynamic_rnn), or, with
      L > 1 layers, a list of L pairs; the backward direction reads ..._l{k}_reverse.
      (PyTorch's layer k > 0 reads both directions' outputs concatenated, so the pairs must be
      stacked by the caller the same way.)
  nn.RNNCell / nn.LSTMCell / nn.GRUCell: one cell; parameters weight_ih, weight_hh, bias_ih,
      bias_hh.
  bias=False: the rnngraph biases are set to zero (LSTM: minus the forget bias).

Because b_ih and b_hh enter as a sum, the gradient of the rnngraph bias is the gradient of each
of them; `torch_gradients` applies that transposed mapping to gradients computed by rnngraph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ops
from .cells import BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell, RNNCell

__all__ = ["load_torch_weights", "torch_gradients", "torch_weight_arrays"]


@dataclass
class _Spec:
    kind: str             # "rnn", "lstm", "gru"
    nonlinearity: str     # "tanh" / "relu" (rnn only)
    num_layers: int
    bidirectional: bool
    input_size: int
    hidden_size: int
    proj_size: int
    bias: bool
    is_cell: bool         # nn.RNNCell/LSTMCell/GRUCell: parameters have no _l{k} suffix
    what: str


def _spec(module) -> _Spec:
    try:
        import torch.nn as tnn   # optional: PyTorch only for loading its weights
    except ImportError:  # pragma: no cover - only reachable without torch installed
        raise ImportError("load_torch_weights needs PyTorch (pip install torch)") from None
    name = type(module).__name__
    if isinstance(module, tnn.RNNBase):
        mode = module.mode
        kind = {"RNN_TANH": "rnn", "RNN_RELU": "rnn", "LSTM": "lstm", "GRU": "gru"}.get(mode)
        if kind is None:
            raise ValueError(f"unsupported PyTorch RNN mode {mode!r} ({name})")
        return _Spec(kind, "relu" if mode == "RNN_RELU" else "tanh", int(module.num_layers),
                     bool(module.bidirectional), int(module.input_size), int(module.hidden_size),
                     int(getattr(module, "proj_size", 0) or 0), bool(module.bias), False,
                     f"torch.nn.{name}")
    for cls, kind in ((tnn.LSTMCell, "lstm"), (tnn.GRUCell, "gru"), (tnn.RNNCell, "rnn")):
        if isinstance(module, cls):
            return _Spec(kind, getattr(module, "nonlinearity", "tanh"), 1, False,
                         int(module.input_size), int(module.hidden_size), 0, bool(module.bias),
                         True, f"torch.nn.{name}")
    raise TypeError(f"expected a torch.nn.RNN/LSTM/GRU (or RNNCell/LSTMCell/GRUCell) module, got "
                    f"{type(module).__module__}.{name}")


def _layout(cell, spec: _Spec) -> list[tuple[RNNCell, str]]:
    """[(rnngraph cell, PyTorch parameter suffix)] for every layer and direction."""
    dirs = 2 if spec.bidirectional else 1
    if isinstance(cell, MultiRNNCell):
        layers = list(cell.cells)
    elif isinstance(cell, RNNCell):
        layers = [cell]
    elif isinstance(cell, (list, tuple)):
        layers = list(cell)
        if dirs == 2 and spec.num_layers == 1 and len(layers) == 2 and \
                all(isinstance(c, RNNCell) for c in layers):
            layers = [tuple(layers)]  # (cell_fw, cell_bw)
    else:
        raise TypeError(f"cell must be an RNNCell, a MultiRNNCell or a list of cells, got "
                        f"{type(cell).__name__}")
    if len(layers) != spec.num_layers:
        raise ValueError(f"{spec.what} has num_layers={spec.num_layers} but {len(layers)} "
                         f"rnngraph layer(s) were given (use a MultiRNNCell or a list with one "
                         f"entry per layer)")
    out = []
    for k, layer in enumerate(layers):
        parts = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        if len(parts) != dirs:
            raise ValueError(f"{spec.what} is {'bi' if dirs == 2 else 'uni'}directional: layer "
                             f"{k} needs {'a pair (cell_fw, cell_bw)' if dirs == 2 else 'one cell'}"
                             f", got {len(parts)}")
        for d, c in enumerate(parts):
            if not isinstance(c, RNNCell) or isinstance(c, MultiRNNCell):
                raise TypeError(f"layer {k}: expected a single RNN cell, got {type(c).__name__}")
            suffix = "" if spec.is_cell else f"_l{k}" + ("_reverse" if d == 1 else "")
            out.append((c, suffix))
    return out


def _check_cell(cell: RNNCell, spec: _Spec, k: int, input_size: int) -> None:
    where = f"{type(cell).__name__} '{cell.name}'"
    want = {"rnn": BasicRNNCell, "lstm": LSTMCell, "gru": GRUCell}[spec.kind]
    if type(cell) is not want:
        raise TypeError(f"{spec.what} maps onto {want.__name__}, got {where}")
    if not cell.built:
        raise ValueError(f"{where} has no weights yet: build it first (call dynamic_rnn / "
                         "static_rnn / the cell on an input), then load the PyTorch weights")
    if cell.input_size != input_size:
        raise ValueError(f"{where} was built for inputs of size {cell.input_size}; {spec.what} "
                         f"layer {k} takes {input_size}")
    if cell.num_units != spec.hidden_size:
        raise ValueError(f"{where} has num_units={cell.num_units}; {spec.what} has "
                         f"hidden_size={spec.hidden_size}")
    act = {"tanh": ops.tanh, "relu": ops.relu}[spec.nonlinearity]
    if cell.activation is not act:
        raise ValueError(f"{where} uses activation {getattr(cell.activation, '__name__', '?')}; "
                         f"{spec.what} uses {spec.nonlinearity}")
    if spec.kind == "lstm":
        if cell.use_peepholes or cell.cell_clip is not None or cell.proj_clip is not None:
            raise ValueError(f"{where} uses peepholes or clipping, which {spec.what} does not have")
        if (cell.num_proj or 0) != spec.proj_size:
            raise ValueError(f"{where} has num_proj={cell.num_proj}; {spec.what} has "
                             f"proj_size={spec.proj_size}")
    if spec.kind == "gru" and not cell.reset_after:
        raise ValueError(f"{where} is TensorFlow's GRU (reset gate before the recurrent product); "
                         f"{spec.what} applies it after: use GRUCell(..., reset_after=True)")


def _blocks(order, n):
    """Row indices picking blocks `order` (each n rows) of a PyTorch gate-stacked weight."""
    return np.concatenate([np.arange(b * n, (b + 1) * n) for b in order])


_LSTM_ORDER = (0, 2, 1, 3)  # rnngraph block b (i, j, f, o) <- PyTorch block (i, g, f, o)


def _cells(cell, module):
    spec = _spec(module)
    layout = _layout(cell, spec)
    dirs = 2 if spec.bidirectional else 1
    out_size = spec.proj_size or spec.hidden_size
    for idx, (c, suffix) in enumerate(layout):
        k = idx // dirs
        _check_cell(c, spec, k, spec.input_size if k == 0 else out_size * dirs)
    return spec, layout


def _names(spec: _Spec, suffix: str) -> dict:
    return {p: f"{p}{suffix}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                        "weight_hr")}


def torch_weight_arrays(cell, module) -> dict:
    """{rnngraph variable name: array (in the variable's dtype)} holding `module`'s weights."""
    spec, layout = _cells(cell, module)
    params = dict(module.named_parameters())

    def get(name):
        p = params.get(name)
        return None if p is None else np.asarray(p.detach().cpu().numpy(), dtype=np.float64)

    out = {}
    for c, suffix in layout:
        n = _names(spec, suffix)
        w_ih, w_hh = get(n["weight_ih"]), get(n["weight_hh"])
        rows = w_ih.shape[0]
        b_ih = get(n["bias_ih"]) if spec.bias else np.zeros(rows)
        b_hh = get(n["bias_hh"]) if spec.bias else np.zeros(rows)
        H = spec.hidden_size
        if spec.kind == "rnn":
            vals = {c.kernel: np.vstack([w_ih.T, w_hh.T]), c.bias: b_ih + b_hh}
        elif spec.kind == "lstm":
            ix = _blocks(_LSTM_ORDER, H)
            bias = (b_ih + b_hh)[ix]
            bias[2 * H:3 * H] -= c.forget_bias
            vals = {c.kernel: np.vstack([w_ih[ix].T, w_hh[ix].T]), c.bias: bias}
            if spec.proj_size:
                vals[c.proj_kernel] = get(n["weight_hr"]).T
        else:
            rz, cand = slice(0, 2 * H), slice(2 * H, 3 * H)
            vals = {c.gate_kernel: np.vstack([w_ih[rz].T, w_hh[rz].T]),
                    c.gate_bias: b_ih[rz] + b_hh[rz],
                    c.candidate_kernel: np.vstack([w_ih[cand].T, w_hh[cand].T]),
                    c.candidate_bias: b_ih[cand],
                    c.candidate_recurrent_bias: b_hh[cand]}
        for var, arr in vals.items():
            out[var.node.name] = np.ascontiguousarray(arr, dtype=var.dtype)
    return out


def load_torch_weights(cell, module, session) -> dict:
    """Copy `module`'s parameters (a torch.nn.RNN/LSTM/GRU or RNNCell/LSTMCell/GRUCell) into
    the variables of `cell` (built already) in `session`; see the module docstring for the
    mapping. Returns {variable name: loaded array}."""
    arrays = torch_weight_arrays(cell, module)
    for name, arr in arrays.items():
        session.load_variable(name, arr)
    return arrays


def torch_gradients(cell, module, grads) -> dict:
    """Gradients with respect to `module`'s parameters ({PyTorch parameter name: array}) from
    gradients with respect to `cell`'s variables (`grads`: {variable or its name: array}), by
    the transpose of the weight mapping (a summed bias passes its gradient to both parts)."""
    spec, layout = _cells(cell, module)
    g = {(k if isinstance(k, str) else k.node.name): np.asarray(v) for k, v in grads.items()}

    def get(var):
        try:
            return g[var.node.name]
        except KeyError:
            raise KeyError(f"no gradient given for variable {var.node.name!r}") from None

    out = {}
    H = spec.hidden_size
    for c, suffix in layout:
        n = _names(spec, suffix)
        k_in = c.input_size
        if spec.kind == "rnn":
            K, b = get(c.kernel), get(c.bias)
            w_ih, w_hh, b_ih = K[:k_in].T, K[k_in:].T, b
            b_hh = b
        elif spec.kind == "lstm":
            ix = _blocks(_LSTM_ORDER, H)
            K, b = get(c.kernel), get(c.bias)
            w_ih = np.empty((4 * H, k_in), K.dtype)
            w_hh = np.empty((4 * H, K.shape[0] - k_in), K.dtype)
            b_ih = np.empty(4 * H, b.dtype)
            w_ih[ix], w_hh[ix], b_ih[ix] = K[:k_in].T, K[k_in:].T, b
            b_hh = b_ih
            if spec.proj_size:
                out[n["weight_hr"]] = np.ascontiguousarray(get(c.proj_kernel).T)
        else:
            Kg, bg = get(c.gate_kernel), get(c.gate_bias)
            Kc, bc, bhc = get(c.candidate_kernel), get(c.candidate_bias), \
                get(c.candidate_recurrent_bias)
            w_ih = np.vstack([Kg[:k_in].T, Kc[:k_in].T])
            w_hh = np.vstack([Kg[k_in:].T, Kc[k_in:].T])
            b_ih, b_hh = np.concatenate([bg, bc]), np.concatenate([bg, bhc])
        out[n["weight_ih"]] = np.ascontiguousarray(w_ih)
        out[n["weight_hh"]] = np.ascontiguousarray(w_hh)
        if spec.bias:
            out[n["bias_ih"]] = np.array(b_ih)
            out[n["bias_hh"]] = np.array(b_hh)
    return out
