"""Cross-check against PyTorch (a test-only dependency): BasicRNNCell vs nn.RNN (tanh and relu),
LSTMCell vs nn.LSTM (forget bias folded, and with a projection), GRUCell(reset_after=True) vs
nn.GRU, with weights copied across by rg.nn.load_torch_weights.

Each case compares outputs, final states and the gradients of
    loss = sum(outputs * R) + sum_k sum(final_state_k * S_k)
with respect to the inputs, the initial state and every PyTorch parameter (rnngraph's weight
gradients mapped back by rg.nn.torch_gradients), for dynamic_rnn and static_rnn, with the
compiler passes on and off, without sequence_length and with it (PyTorch side:
pack_padded_sequence / pad_packed_sequence), in float32 (1e-5) and float64 (1e-10); a
gradient larger than 1 is compared relative to the largest PyTorch gradient of the case.

`crosscheck(...)` returns the maximum absolute error per quantity; run this file as a script
to print them (`python tests/test_torch_crosscheck.py`).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rnngraph as rg  # noqa: E402
from rnngraph.nn import LSTMStateTuple  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

B, T, D, H, P = 4, 6, 3, 5, 3
TOL = {np.float32: 1e-5, np.float64: 1e-10}

# (rnngraph cell factory, torch module factory); the module is cast to the case's dtype
CELLS = {
    "rnn_tanh": (lambda: rg.nn.BasicRNNCell(H),
                 lambda: torch.nn.RNN(D, H, batch_first=True)),
    "rnn_relu": (lambda: rg.nn.BasicRNNCell(H, activation=rg.nn.relu),
                 lambda: torch.nn.RNN(D, H, nonlinearity="relu", batch_first=True)),
    "lstm": (lambda: rg.nn.LSTMCell(H, forget_bias=0.0),
             lambda: torch.nn.LSTM(D, H, batch_first=True)),
    "lstm_forget_bias_folded": (lambda: rg.nn.LSTMCell(H),  # forget_bias=1.0 folded in the bias
                                lambda: torch.nn.LSTM(D, H, batch_first=True)),
    "lstm_proj": (lambda: rg.nn.LSTMCell(H, num_proj=P, forget_bias=0.0),
                  lambda: torch.nn.LSTM(D, H, proj_size=P, batch_first=True)),
    "gru": (lambda: rg.nn.GRUCell(H, reset_after=True),
            lambda: torch.nn.GRU(D, H, batch_first=True)),
}

SEQ = {
    "full": None,
    "ragged": [4, 1, 6, 3],       # unsorted, one full-length row
    "all_short": [3, 1, 2, 2],    # max(lengths) < max_time: the dynamic loop stops early
}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """PyTorch's intra-op thread pool spinning against NumPy's BLAS makes these tiny problems
    ~50x slower on 2 cores; one thread is plenty."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _flat(s):
    if isinstance(s, dict):
        return [leaf for k in sorted(s) for leaf in _flat(s[k])]
    if isinstance(s, (tuple, list)):
        return [leaf for x in s for leaf in _flat(x)]
    return [s]


def _seeded_module(make, dtype, seed):
    torch.manual_seed(seed)
    m = make()
    m = m.double() if dtype == np.float64 else m.float()
    with torch.no_grad():  # make the two biases of each gate differ visibly
        for name, p in m.named_parameters():
            if name.startswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    return m


def _state_structure(cell):
    """[(name, width)] of the flat state, and how to pack placeholders into the cell's state."""
    if isinstance(cell, rg.nn.LSTMCell):
        return [("c", H), ("h", cell.output_size)], lambda c, h: LSTMStateTuple(c, h)
    return [("h", H)], lambda h: h


def _torch_run(module, x, init, lengths, R, S):
    """Forward + backward in PyTorch; returns (outputs, [final states], grads dict)."""
    xt = torch.tensor(x, requires_grad=True)
    init_t = {k: torch.tensor(v[None], requires_grad=True) for k, v in init.items()}
    module.zero_grad()
    if isinstance(module, torch.nn.LSTM):
        hx = (init_t["h"], init_t["c"])
    else:
        hx = init_t["h"]
    if lengths is None:
        out, hn = module(xt, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths, dtype=torch.int64), batch_first=True, enforce_sorted=False)
        out_p, hn = module(packed, hx)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=T)
    finals = {"h": hn[0][0], "c": hn[1][0]} if isinstance(module, torch.nn.LSTM) else \
        {"h": hn[0]}
    loss = (out * torch.tensor(R)).sum()
    for k, s in S.items():
        loss = loss + (finals[k] * torch.tensor(s)).sum()
    loss.backward()
    grads = {"x": xt.grad.numpy()}
    grads.update({f"init_{k}": v.grad[0].numpy() for k, v in init_t.items()})
    grads.update({name: p.grad.numpy() for name, p in module.named_parameters()})
    return (out.detach().numpy(), {k: v.detach().numpy() for k, v in finals.items()}, grads)


def _rg_build(cell, dtype, mode, use_seq):
    """The rnngraph graph: placeholders, RNN, loss and gradients."""
    structure, pack = _state_structure(cell)
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [None, T, D], name="X")
        init = {k: rg.placeholder(dtype, [None, w], name=f"init_{k}") for k, w in structure}
        state0 = pack(*[init[k] for k, _ in structure])
        seq = rg.placeholder(rg.int32, [None], name="seq") if use_seq else None
        if mode == "dynamic":
            out, state = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, initial_state=state0)
        else:
            outs, state = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), sequence_length=seq,
                                           initial_state=state0)
            out = rg.stack(outs, axis=1)
        finals = dict(zip([k for k, _ in structure], _flat(state)))
        R = rg.placeholder(dtype, [None, T, cell.output_size], name="R")
        S = {k: rg.placeholder(dtype, [None, w], name=f"S_{k}") for k, w in structure}
        loss = rg.reduce_sum(out * R) + rg.add_n([rg.reduce_sum(finals[k] * S[k]) for k in S])
        wrt = [X] + [init[k] for k, _ in structure] + list(cell.variables)
        grads = rg.gradients(loss, wrt)
    return dict(graph=g, X=X, init=init, seq=seq, out=out, finals=finals, R=R, S=S, grads=grads,
                wrt=wrt, structure=structure)


def crosscheck(kind, dtype, mode, seq_name, passes=True, seed=0):
    """Max abs error per quantity between rnngraph and PyTorch for one configuration."""
    make_cell, make_module = CELLS[kind]
    lengths = SEQ[seq_name]
    module = _seeded_module(make_module, dtype, seed)
    cell = make_cell()
    m = _rg_build(cell, dtype, mode, lengths is not None)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    init = {k: (0.5 * rng.standard_normal((B, w))).astype(dtype) for k, w in m["structure"]}
    R = rng.standard_normal((B, T, cell.output_size)).astype(dtype)
    S = {k: rng.standard_normal((B, w)).astype(dtype) for k, w in m["structure"]}

    t_out, t_final, t_grads = _torch_run(module, x, init, lengths, R, S)

    sess = rg.Session(m["graph"], passes=passes)
    loaded = rg.nn.load_torch_weights(cell, module, sess)
    assert set(loaded) == {v.node.name for v in cell.variables}
    feed = {m["X"]: x, m["R"]: R}
    feed.update({m["init"][k]: v for k, v in init.items()})
    feed.update({m["S"][k]: v for k, v in S.items()})
    if lengths is not None:
        feed[m["seq"]] = np.array(lengths, np.int32)
    out, finals, grads = sess.run([m["out"], m["finals"], m["grads"]], feed)
    assert out.dtype == dtype

    n_in = 1 + len(m["structure"])
    g_var = dict(zip([v.node.name for v in cell.variables], grads[n_in:]))
    mapped = rg.nn.torch_gradients(cell, module, g_var)
    assert set(mapped) == set(dict(module.named_parameters()))

    errors = {"outputs": np.abs(out - t_out).max()}
    for k in finals:
        errors[f"final_{k}"] = np.abs(finals[k] - t_final[k]).max()
    errors["grad_x"] = np.abs(grads[0] - t_grads["x"]).max()
    for i, (k, _) in enumerate(m["structure"]):
        errors[f"grad_init_{k}"] = np.abs(grads[1 + i] - t_grads[f"init_{k}"]).max()
    for name, g in mapped.items():
        assert g.shape == t_grads[name].shape, name
        errors[f"grad_{name}"] = np.abs(g - t_grads[name]).max()
    scale = max(1.0, max(np.abs(v).max() for v in t_grads.values()))
    return errors, scale


def _grid():
    """Every cell x dtype x {dynamic, static} x {no lengths, ragged lengths}; lengths all shorter
    than max_time for dynamic_rnn only (static_rnn has no early stop to test)."""
    for kind in CELLS:
        for dt, dt_id in ((np.float32, "f32"), (np.float64, "f64")):
            for mode in ("dynamic", "static"):
                for seq_name in SEQ:
                    if mode == "static" and seq_name == "all_short":
                        continue
                    yield pytest.param(kind, dt, mode, seq_name,
                                       id=f"{kind}-{dt_id}-{mode}-{seq_name}")


@pytest.mark.parametrize("kind, dtype, mode, seq_name", list(_grid()))
def test_matches_pytorch(kind, dtype, mode, seq_name):
    tol = TOL[dtype]
    for passes in (True, False):
        errors, scale = crosscheck(kind, dtype, mode, seq_name, passes)
        bad = {k: float(e) for k, e in errors.items() if not e <= tol * scale}
        assert not bad, f"passes={passes}: errors above {tol} (x{scale:.1f}): {bad}"


@pytest.mark.parametrize("mode", ["dynamic", "static"])
@pytest.mark.parametrize("kind", ["lstm_proj", "gru"])
def test_passes_on_and_off_agree(kind, mode):
    """One graph, PyTorch's weights loaded into a session with all compiler passes and one
    with none: outputs, states and every gradient agree to float64 rounding (the passes
    reorder sums: hoisted input projections, weight gradients as one product after the loop)."""
    make_cell, make_module = CELLS[kind]
    module = _seeded_module(make_module, np.float64, 7)
    cell = make_cell()
    m = _rg_build(cell, np.float64, mode, True)
    rng = np.random.default_rng(7)
    feed = {m["X"]: rng.standard_normal((B, T, D)), m["seq"]: np.array(SEQ["ragged"], np.int32),
            m["R"]: rng.standard_normal((B, T, cell.output_size))}
    feed.update({m["init"][k]: rng.standard_normal((B, w)) for k, w in m["structure"]})
    feed.update({m["S"][k]: rng.standard_normal((B, w)) for k, w in m["structure"]})
    results = []
    for passes in (True, False):
        sess = rg.Session(m["graph"], passes=passes)
        rg.nn.load_torch_weights(cell, module, sess)
        results.append(_flat(sess.run([m["out"], m["finals"], m["grads"]], feed)))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# --- more structures ------------------------------------------------------------------------
def _run_pair(module, build, x, lengths, dtype):
    """rnngraph outputs/final state from `build(X, seq)` with module's weights loaded."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [None, T, x.shape[-1]])
        seq = rg.placeholder(rg.int32, [None])
        cells, out, state = build(X, seq)
    sess = rg.Session(g)
    rg.nn.load_torch_weights(cells, module, sess)
    return sess.run([out, state], {X: x, seq: np.array(lengths, np.int32)})


def test_two_layer_lstm_is_a_multi_rnn_cell():
    dtype = np.float64
    module = _seeded_module(lambda: torch.nn.LSTM(D, H, num_layers=2, batch_first=True),
                            dtype, 3)
    x = np.random.default_rng(3).standard_normal((B, T, D))
    lengths = SEQ["ragged"]

    def build(X, seq):
        cell = rg.nn.MultiRNNCell([rg.nn.LSTMCell(H), rg.nn.LSTMCell(H)])
        out, state = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, dtype=dtype)
        return cell, out, state

    out, state = _run_pair(module, build, x, lengths, dtype)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths),
                                                     batch_first=True, enforce_sorted=False)
    t_out, (h_n, c_n) = module(packed)
    t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True, total_length=T)
    np.testing.assert_allclose(out, t_out.detach().numpy(), atol=1e-10, rtol=0)
    for k in range(2):
        np.testing.assert_allclose(state[k].c, c_n[k].detach().numpy(), atol=1e-10, rtol=0)
        np.testing.assert_allclose(state[k].h, h_n[k].detach().numpy(), atol=1e-10, rtol=0)


def test_bidirectional_gru_with_lengths():
    dtype = np.float64
    module = _seeded_module(lambda: torch.nn.GRU(D, H, bidirectional=True, batch_first=True),
                            dtype, 4)
    x = np.random.default_rng(4).standard_normal((B, T, D))
    lengths = SEQ["ragged"]

    def build(X, seq):
        fw, bw = rg.nn.GRUCell(H, reset_after=True), rg.nn.GRUCell(H, reset_after=True)
        (o_fw, o_bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
            fw, bw, X, sequence_length=seq, dtype=dtype)
        return (fw, bw), rg.concat([o_fw, o_bw], axis=2), (s_fw, s_bw)

    out, (s_fw, s_bw) = _run_pair(module, build, x, lengths, dtype)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths),
                                                     batch_first=True, enforce_sorted=False)
    t_out, h_n = module(packed)
    t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True, total_length=T)
    np.testing.assert_allclose(out, t_out.detach().numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(s_fw, h_n[0].detach().numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(s_bw, h_n[1].detach().numpy(), atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_torch_cell_modules_one_step(kind):
    """nn.RNNCell / nn.LSTMCell / nn.GRUCell (parameters without the _l0 suffix), bias=False."""
    dtype = np.float64
    make = {"rnn": lambda: torch.nn.RNNCell(D, H, bias=False),
            "lstm": lambda: torch.nn.LSTMCell(D, H, bias=False),
            "gru": lambda: torch.nn.GRUCell(D, H, bias=False)}[kind]
    module = _seeded_module(make, dtype, 5)
    rng = np.random.default_rng(5)
    x, h0, c0 = rng.standard_normal((B, D)), rng.standard_normal((B, H)), \
        rng.standard_normal((B, H))
    g = rg.Graph()
    with g.as_default():
        cell = {"rnn": lambda: rg.nn.BasicRNNCell(H), "lstm": lambda: rg.nn.LSTMCell(H),
                "gru": lambda: rg.nn.GRUCell(H, reset_after=True)}[kind]()
        state = LSTMStateTuple(rg.constant(c0), rg.constant(h0)) if kind == "lstm" else \
            rg.constant(h0)
        out, new = cell(rg.constant(x), state)
    sess = rg.Session(g)
    rg.nn.load_torch_weights(cell, module, sess)
    got = sess.run(new)
    want = module(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)) if kind == "lstm"
                  else torch.tensor(h0))
    if kind == "lstm":
        np.testing.assert_allclose(got.h, want[0].detach().numpy(), atol=1e-12, rtol=0)
        np.testing.assert_allclose(got.c, want[1].detach().numpy(), atol=1e-12, rtol=0)
    else:
        np.testing.assert_allclose(got, want.detach().numpy(), atol=1e-12, rtol=0)


# --- the helper's own errors ------------------------------------------------------------------
def _built(cell, depth=D, dtype=np.float32):
    g = rg.Graph()
    with g.as_default():
        rg.nn.dynamic_rnn(cell, rg.placeholder(dtype, [None, T, depth]), dtype=dtype)
    return rg.Session(g)


@pytest.mark.parametrize("cell, module, exc, match", [
    (lambda: rg.nn.GRUCell(H), lambda: torch.nn.GRU(D, H), ValueError,
     r"GRUCell 'gru_cell' is TensorFlow's GRU .*use GRUCell\(\.\.\., reset_after=True\)"),
    (lambda: rg.nn.LSTMCell(H), lambda: torch.nn.GRU(D, H), TypeError,
     r"torch.nn.GRU maps onto GRUCell, got LSTMCell 'lstm_cell'"),
    (lambda: rg.nn.LSTMCell(H + 1), lambda: torch.nn.LSTM(D, H), ValueError,
     r"num_units=6; torch.nn.LSTM has hidden_size=5"),
    (lambda: rg.nn.LSTMCell(H, use_peepholes=True), lambda: torch.nn.LSTM(D, H), ValueError,
     r"peepholes"),
    (lambda: rg.nn.LSTMCell(H), lambda: torch.nn.LSTM(D, H, proj_size=2), ValueError,
     r"num_proj=None; torch.nn.LSTM has proj_size=2"),
    (lambda: rg.nn.BasicRNNCell(H), lambda: torch.nn.RNN(D, H, nonlinearity="relu"), ValueError,
     r"uses activation tanh; torch.nn.RNN uses relu"),
    (lambda: rg.nn.LSTMCell(H), lambda: torch.nn.LSTM(D + 1, H), ValueError,
     r"built for inputs of size 3; torch.nn.LSTM layer 0 takes 4"),
    (lambda: rg.nn.LSTMCell(H), lambda: torch.nn.LSTM(D, H, num_layers=2), ValueError,
     r"num_layers=2 but 1 rnngraph layer"),
    (lambda: rg.nn.LSTMCell(H), lambda: torch.nn.Linear(D, H), TypeError,
     r"expected a torch.nn.RNN/LSTM/GRU"),
], ids=["tf_gru", "wrong_cell_type", "hidden_size", "peepholes", "proj_size", "activation",
        "input_size", "num_layers", "not_an_rnn"])
def test_load_torch_weights_errors(cell, module, exc, match):
    cell = cell()
    sess = _built(cell)
    before = {v.node.name: sess.read_variable(v) for v in cell.variables}
    with pytest.raises(exc, match=match):
        rg.nn.load_torch_weights(cell, module(), sess)
    for v in cell.variables:  # nothing was loaded
        np.testing.assert_array_equal(sess.read_variable(v), before[v.node.name])


def test_load_into_an_unbuilt_cell_is_a_clear_error():
    with pytest.raises(ValueError, match="has no weights yet: build it first"):
        rg.nn.load_torch_weights(rg.nn.LSTMCell(H), torch.nn.LSTM(D, H), None)


def test_gru_reset_after_default_is_the_tensorflow_gru():
    """reset_after=False (the default) keeps TensorFlow's GRU: no recurrent bias variable."""
    cell = rg.nn.GRUCell(H)
    _built(cell)
    assert not cell.reset_after
    assert [v.node.name.split("gru_cell/")[1] for v in cell.variables] == \
        ["gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"]
    with pytest.raises(TypeError, match="reset_after must be a bool"):
        rg.nn.GRUCell(H, reset_after="yes")


if __name__ == "__main__":  # the largest errors per quantity, for the report
    torch.set_num_threads(1)
    for dt in (np.float32, np.float64):
        worst: dict = {}
        for p in _grid():
            kind, p_dtype, mode, seq_name = p.values
            if p_dtype is not dt:
                continue
            for passes in (True, False):
                errs, _ = crosscheck(kind, dt, mode, seq_name, passes)
                for k, e in errs.items():
                    if k.startswith(("grad_weight", "grad_bias")):
                        k = "grad_weights_and_biases"
                    worst[k] = max(worst.get(k, 0.0), float(e))
        print(np.dtype(dt).name, {k: f"{v:.2e}" for k, v in sorted(worst.items())})
