"""The TF1 programs of tests/tf1/ (TensorFlow 1 code with `tf.` renamed to `rg.`), each run as
written; what they compute is checked against NumPy written here from the weights they fetched."""
import os
import runpy

import numpy as np
import pytest

HERE = os.path.join(os.path.dirname(__file__), "tf1")


def run_program(name):
    return runpy.run_path(os.path.join(HERE, name), run_name="__main__")


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def rnn_step(x, h, k, b, act=np.tanh):
    return act(np.concatenate([x, h], 1) @ k + b)


def lstm_step(x, c, h, k, b, forget_bias=1.0, peep=None):
    z = np.concatenate([x, h], 1) @ k + b
    i, j, f, o = np.split(z, 4, axis=1)
    if peep is not None:
        wf, wi, wo = peep
        i, f = i + wi * c, f + wf * c
    c2 = sig(f + forget_bias) * c + sig(i) * np.tanh(j)
    if peep is not None:
        o = o + wo * c2
    return c2, sig(o) * np.tanh(c2)


def gru_step(x, h, gk, gb, ck, cb):
    r, u = np.split(sig(np.concatenate([x, h], 1) @ gk + gb), 2, axis=1)
    c = np.tanh(np.concatenate([x, r * h], 1) @ ck + cb)
    return u * h + (1 - u) * c


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def close(a, b, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol,
                               atol=atol)


def test_p01_manual_rnn():
    g = run_program("p01_manual_rnn.py")
    x0, x1 = g["X0_batch"].astype(np.float64), g["X1_batch"].astype(np.float64)
    wx, wy, b = g["Wx_val"], g["Wy_val"], g["b_val"]
    y0 = np.tanh(x0 @ wx + b)
    close(g["Y0_val"], y0)
    close(g["Y1_val"], np.tanh(y0 @ wy + x1 @ wx + b))
    assert wx.shape == (3, 5) and abs(wx.mean()) < 1.5 and 0.2 < wx.std() < 3   # N(0, 1) draws
    assert np.all(b == 0)


def test_p02_static_rnn():
    g = run_program("p02_static_rnn.py")
    assert g["variable_names"] == ["rnn/basic_rnn_cell/kernel:0", "rnn/basic_rnn_cell/bias:0"]
    x, k, b = g["X_batch"].astype(np.float64), g["kernel_val"], g["bias_val"]
    h = np.zeros((4, 5))
    for t in range(2):
        h = rnn_step(x[:, t], h, k, b)
        close(g["outputs_val"][:, t], h)


def test_p03_sequence_length():
    g = run_program("p03_sequence_length.py")
    k, b = g["weights"]
    x, lens = g["X_batch"].astype(np.float64), g["seq_length_batch"]
    h = np.zeros((4, 5))
    for t in range(2):
        live = (t < lens)[:, None]
        h2 = rnn_step(x[:, t], h, k, b)
        close(g["outputs_val"][:, t], np.where(live, h2, 0))
        h = np.where(live, h2, h)
    close(g["states_val"], h)
    assert np.all(g["outputs_val"][1, 1] == 0)


def test_p04_lstm_classifier():
    g = run_program("p04_lstm_classifier.py")
    k, b, wk, wb = g["first_weights"]
    x, y = g["X_train"].astype(np.float64), g["y_train"]
    c = h = np.zeros((len(x), 16))
    for t in range(6):
        c, h = lstm_step(x[:, t], c, h, k, b)
    logits = h @ wk + wb
    ref = -log_softmax(logits)[np.arange(len(y)), y].mean()
    close(g["first_loss"], ref)
    assert g["losses"][-1] < 0.85 * g["first_loss"]
    assert g["acc_train"] > 0.6


def test_p05_shared_encoder():
    g = run_program("p05_shared_encoder.py")
    v = g["values"]
    assert sorted(v) == ["encoder/proj:0", "encoder/rnn/gru_cell/candidate/bias:0",
                         "encoder/rnn/gru_cell/candidate/kernel:0",
                         "encoder/rnn/gru_cell/gates/bias:0", "encoder/rnn/gru_cell/gates/kernel:0"]
    p = "encoder/rnn/gru_cell/"

    def enc(x):
        h = np.zeros((len(x), 4))
        for t in range(3):
            h = gru_step(x[:, t], h, v[p + "gates/kernel:0"], v[p + "gates/bias:0"],
                         v[p + "candidate/kernel:0"], v[p + "candidate/bias:0"])
        return h @ v["encoder/proj:0"]

    a, b = enc(g["a"].astype(np.float64)), enc(g["b"].astype(np.float64))
    close(g["same_val"], a)
    close(g["dist_val"], ((a - b) ** 2).sum(1))
    assert np.all(g["self_dist"] == 0)


def test_p06_stacked_concat_state():
    g = run_program("p06_stacked_concat_state.py")
    assert g["names"] == ["rnn/multi_rnn_cell/cell_0/lstm_cell/kernel:0",
                          "rnn/multi_rnn_cell/cell_0/lstm_cell/bias:0",
                          "rnn/multi_rnn_cell/cell_1/lstm_cell/kernel:0",
                          "rnn/multi_rnn_cell/cell_1/lstm_cell/bias:0"]
    k0, b0, k1, b1 = g["weights"]
    x = g["x"].astype(np.float64)
    c0 = h0 = c1 = h1 = np.zeros((2, 3))
    for t in range(4):
        c0, h0 = lstm_step(x[:, t], c0, h0, k0, b0, forget_bias=0.0)
        c1, h1 = lstm_step(h0, c1, h1, k1, b1, forget_bias=0.0)
        close(g["out_val"][:, t], h1)
    close(g["state_val"], np.concatenate([c0, h0, c1, h1], 1))


def test_p07_custom_cell_outputs_and_gradients():
    g = run_program("p07_custom_cell.py")
    assert g["names"] == ["rnn/minimal_rnn_cell/w:0", "rnn/minimal_rnn_cell/u:0",
                          "rnn/minimal_rnn_cell/b:0"]
    x = g["x"].astype(np.float64)

    def forward(w, u, b):
        h, outs = np.zeros((4, 3)), []
        for t in range(5):
            h = np.maximum(x[:, t] @ w + h @ u + b, 0)
            outs.append(h)
        return np.stack(outs, 1)

    weights = [w.astype(np.float64) for w in g["weights"]]
    close(g["out_val"], forward(*weights))
    for k, grad in enumerate(g["grad_vals"]):   # central differences of the NumPy forward
        num = np.zeros_like(weights[k])
        for idx in np.ndindex(*weights[k].shape):
            plus = [w.copy() for w in weights]
            minus = [w.copy() for w in weights]
            plus[k][idx] += 1e-6
            minus[k][idx] -= 1e-6
            num[idx] = (forward(*plus).sum() - forward(*minus).sum()) / 2e-6
        close(grad, num, rtol=1e-3, atol=1e-3)


def test_p08_device_wrapper():
    g = run_program("p08_device_wrapper.py")
    assert g["names"][0] == "rnn/multi_rnn_cell/cell_0/basic_rnn_cell/kernel:0"
    assert g["names"][4] == "rnn/multi_rnn_cell/cell_2/basic_rnn_cell/kernel:0"
    w = g["weights"]
    x = g["x"]
    hs = [np.zeros((2, 6)) for _ in range(3)]
    for t in range(4):
        inp = x[:, t]
        for layer in range(3):
            hs[layer] = rnn_step(inp, hs[layer], w[2 * layer], w[2 * layer + 1])
            inp = hs[layer]
        close(g["out_val"][:, t], inp)


def test_p09_embedding_sequence_loss():
    g = run_program("p09_embedding_seq2seq_loss.py")
    v = g["weights"]
    emb = v["embedding:0"][g["ins"]].astype(np.float64)
    k, b = v["rnn/lstm_cell/kernel:0"], v["rnn/lstm_cell/bias:0"]
    lens = g["lens"]
    c = h = np.zeros((2, 5))
    outs = []
    for t in range(3):
        live = (t < lens)[:, None]
        c2, h2 = lstm_step(emb[:, t], c, h, k, b)
        outs.append(np.where(live, h2, 0))
        c, h = np.where(live, c2, c), np.where(live, h2, h)
    logits = np.stack(outs, 1) @ v["dense/kernel:0"] + v["dense/bias:0"]
    mask = (np.arange(3)[None] < lens[:, None]).astype(np.float64)
    xent = -np.take_along_axis(log_softmax(logits), g["outs"][..., None], -1)[..., 0]
    close(g["loss0"], (xent * mask).sum() / mask.sum())
    assert g["loss20"] < g["loss0"]


def test_p10_static_bidirectional():
    g = run_program("p10_static_bidirectional.py")
    assert g["names"] == ["bidirectional_rnn/fw/basic_lstm_cell/kernel:0",
                          "bidirectional_rnn/fw/basic_lstm_cell/bias:0",
                          "bidirectional_rnn/bw/basic_lstm_cell/kernel:0",
                          "bidirectional_rnn/bw/basic_lstm_cell/bias:0"]
    kf, bf, kb, bb = g["weights"]
    x, lens = g["x"].astype(np.float64), g["lens"]
    for r in range(3):
        L = lens[r]
        c = h = np.zeros((1, 4))
        fw = np.zeros((3, 4))
        for t in range(L):
            c, h = lstm_step(x[r:r + 1, t], c, h, kf, bf)
            fw[t] = h[0]
        close(g["fw_val"].h[r], h[0])
        c = h = np.zeros((1, 4))
        bw = np.zeros((3, 4))
        for t in reversed(range(L)):
            c, h = lstm_step(x[r:r + 1, t], c, h, kb, bb)
            bw[t] = h[0]
        close(g["bw_val"].c[r], c[0])
        for t in range(3):
            close(g["outs_val"][t][r], np.concatenate([fw[t], bw[t]]))


def test_p11_saver_round_trip():
    g = run_program("p11_saver.py")
    for a, b in zip(g["trained"], g["restored"]):
        np.testing.assert_array_equal(a, b)
    assert g["restored_loss"] == g["trained_loss"] and g["restored_step"] == 3
    assert g["ckpt"].model_checkpoint_path.endswith("model.ckpt-3")
    assert not any("ckpt-1" in f for f in g["kept"]) and any("ckpt-2" in f for f in g["kept"])


def test_p12_summaries_read_back():
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    g = run_program("p12_summaries.py")
    acc = ea.EventAccumulator(g["logdir"], size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"loss/xent"} and acc.Tags()["histograms"] == ["state"]
    close([e.value for e in acc.Scalars("loss/xent")], g["losses"], rtol=1e-6)
    assert [e.step for e in acc.Histograms("state")] == list(range(5))


def test_p13_interactive_session():
    g = run_program("p13_interactive.py")
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    prod = a @ np.full((4, 3), 0.5).T * 2.0
    close(g["product_val"], prod)
    close(g["picked_val"], prod.T[[0, 2]])


def test_p14_time_series():
    g = run_program("p14_time_series.py")
    assert g["names"] == ["rnn/output_projection_wrapper/basic_rnn_cell/kernel:0",
                          "rnn/output_projection_wrapper/basic_rnn_cell/bias:0",
                          "rnn/output_projection_wrapper/kernel:0",
                          "rnn/output_projection_wrapper/bias:0"]
    k, b, pk, pb = g["weights"]
    x = g["X_batch"]
    h = np.zeros((len(x), 16))
    for t in range(20):
        h = rnn_step(x[:, t], h, k, b, act=lambda z: np.maximum(z, 0))
        close(g["first_out"][:, t], h @ pk + pb, rtol=1e-4, atol=1e-4)
    assert g["mses"][-1] < g["mses"][0]


def test_p15_logistic_l2():
    g = run_program("p15_logistic_l2.py")
    v = g["weights"]
    x, y = g["xs"].astype(np.float64), g["ys"]
    peep = (v["rnn/lstm_cell/w_f_diag:0"], v["rnn/lstm_cell/w_i_diag:0"],
            v["rnn/lstm_cell/w_o_diag:0"])
    assert np.all(v["rnn/lstm_cell/kernel:0"] == np.float32(0.1))
    c = h = np.zeros((6, 5))
    for t in range(4):
        c, h = lstm_step(x[:, t], c, h, v["rnn/lstm_cell/kernel:0"], v["rnn/lstm_cell/bias:0"],
                         peep=peep)
    z = h @ v["W:0"] + v["b:0"]
    xent = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean()
    l2 = 0.01 * sum((w.astype(np.float64) ** 2).sum() / 2 for n, w in v.items() if "bias" not in n)
    close(g["first"][2], h)
    close(g["first"][0], xent)
    close(g["first"][1], l2)
    assert g["last_loss"] < g["first"][0] + g["first"][1]


def test_p16_legacy_seq2seq():
    g = run_program("p16_legacy_seq2seq.py")
    names, vals = g["names"], dict(zip(g["names"], g["values"]))
    assert names[0] == "basic_rnn_seq2seq/rnn/gru_cell/gates/kernel:0"
    assert "basic_rnn_seq2seq/rnn_decoder/gru_cell/gates/kernel:0" in names
    assert names[-2:] == ["proj/out/kernel:0", "proj/out/bias:0"]
    feed = {k.node.name: v for k, v in g["feed"].items()}

    def gru(prefix, x, h):
        p = prefix + "/gru_cell/"
        return gru_step(x, h, vals[p + "gates/kernel:0"], vals[p + "gates/bias:0"],
                        vals[p + "candidate/kernel:0"], vals[p + "candidate/bias:0"])

    h = np.zeros((4, 5))
    for i in range(3):
        h = gru("basic_rnn_seq2seq/rnn", feed[f"enc{i}"].astype(np.float64), h)
    total = 0.0
    for i in range(3):
        h = gru("basic_rnn_seq2seq/rnn_decoder", feed[f"dec{i}"].astype(np.float64), h)
        logits = h @ vals["proj/out/kernel:0"] + vals["proj/out/bias:0"]
        total = total - log_softmax(logits)[np.arange(4), feed[f"tgt{i}"]]
    close(g["loss0"], (total / 3.0).sum() / 4)
    assert g["loss40"] < g["loss0"]
