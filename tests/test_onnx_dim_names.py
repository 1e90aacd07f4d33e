"""ONNX export: the names of unknown input dims. ONNX reads one dim_param as one size, so two
dims share a name only where the graph makes them equal: an encoder's and a decoder's time
axes (independent lengths) get names of their own, and their batch rows (the decoder starts
from the encoder's state) one name. onnxruntime then runs an encoder of 4 steps and a decoder
of 3 without its "Shape mismatch attempting to re-use buffer" warning, and matches rnngraph."""
import numpy as np
import pytest

import rnngraph as rg

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rnngraph.io.onnx import compare, export  # noqa: E402


def _dims(model):
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input}


def _init(g):
    sess = rg.Session(g)
    with g.as_default():
        sess.run(rg.global_variables_initializer())
    return sess


def _seq2seq(E=3, H=4, V=5):
    """p03/p31 of the review: an LSTM encoder (with lengths), an LSTM decoder started from
    its state, Luong attention over the encoder outputs, a dense softmax."""
    g = rg.Graph()
    with g.as_default():
        enc_in = rg.placeholder(rg.float32, [None, None, E], name="enc_in")
        enc_len = rg.placeholder(rg.int32, [None], name="enc_len")
        dec_in = rg.placeholder(rg.float32, [None, None, E], name="dec_in")
        with rg.variable_scope("encoder"):
            enc_out, enc_st = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), enc_in,
                                                sequence_length=enc_len, dtype=rg.float32)
        with rg.variable_scope("decoder"):
            dec_out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), dec_in, initial_state=enc_st)
        scores = rg.matmul(dec_out, enc_out, transpose_b=True)        # [B, Td, Te]
        alpha = rg.nn.softmax(scores, axis=-1)
        ctx = rg.matmul(alpha, enc_out)                                 # [B, Td, H]
        probs = rg.nn.softmax(rg.layers.dense(rg.concat([ctx, dec_out], axis=-1), V))
    return g, (enc_in, enc_len, dec_in), probs


def _feed(phs, B, Te, Td, seed=0):
    rs = np.random.RandomState(seed)
    enc_in, enc_len, dec_in = phs
    lens = rs.randint(1, Te + 1, size=B).astype(np.int32)
    lens[0] = Te
    return {enc_in: rs.randn(B, Te, 3).astype(np.float32), enc_len: lens,
            dec_in: rs.randn(B, Td, 3).astype(np.float32)}


def test_an_encoder_and_a_decoder_time_axis_are_named_apart():
    g, phs, probs = _seq2seq()
    sess = _init(g)
    ex = export({"probs": probs}, session=sess)
    dims = _dims(ex.model)
    assert dims == {"enc_in": ["batch", "enc_in_time", 3], "enc_len": ["batch"],
                    "dec_in": ["batch", "dec_in_time", 3]}
    onnx.checker.check_model(ex.model, full_check=True)
    for B, Te, Td in ((2, 4, 3), (3, 2, 5), (1, 6, 6)):
        errs = compare(ex, sess, _feed(phs, B, Te, Td))
        assert max(errs.values()) < 1e-5, errs


def test_onnxruntime_runs_different_lengths_without_the_buffer_warning(tmp_path, capfd):
    g, phs, probs = _seq2seq()
    sess = _init(g)
    path = tmp_path / "attn.onnx"
    rg.io.to_onnx({"probs": probs}, str(path), session=sess)
    feed = _feed(phs, 2, 4, 3)
    capfd.readouterr()
    so = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = so.run(None, {v.node.name: a for v, a in feed.items()})[0]
    err = capfd.readouterr().err
    assert "Shape mismatch" not in err and "dim_param" not in err, err
    np.testing.assert_allclose(got, sess.run(probs, feed), rtol=1e-5, atol=1e-6)


def test_one_rnn_keeps_batch_and_time():
    """One loop: its input's axes are 'batch' and 'time', and the lengths it reads 'batch'."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, None, 3], name="x")
        L = rg.placeholder(rg.int32, [None], name="L")
        out, _ = rg.nn.bidirectional_dynamic_rnn(rg.nn.GRUCell(4), rg.nn.GRUCell(4), x,
                                                 sequence_length=L, dtype=rg.float32)
        y = rg.concat(out, axis=-1)
    sess = _init(g)
    ex = export({"y": y}, session=sess)
    assert _dims(ex.model) == {"x": ["batch", "time", 3], "L": ["batch"]}


def test_two_independent_encoders_get_their_own_batch_and_time():
    """Two loops that share nothing (two inputs summarised apart, their states concatenated
    along the features only after a reduction): nothing makes their sizes equal."""
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float32, [None, None, 3], name="a")
        b = rg.placeholder(rg.float32, [None, None, 2], name="b")
        with rg.variable_scope("ea"):
            oa, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), a, dtype=rg.float32)
        with rg.variable_scope("eb"):
            ob, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), b, dtype=rg.float32)
        y = rg.reduce_sum(oa) + rg.reduce_sum(ob)
    sess = _init(g)
    ex = export({"y": y}, session=sess)
    assert _dims(ex.model) == {"a": ["a_batch", "a_time", 3], "b": ["b_batch", "b_time", 2]}
    rs = np.random.RandomState(0)
    feed = {a: rs.randn(2, 5, 3).astype(np.float32), b: rs.randn(4, 3, 2).astype(np.float32)}
    assert max(compare(ex, sess, feed).values()) < 1e-4


def test_inputs_no_loop_reads_are_named_apart():
    """Two feed-forward inputs with unknown leading dims: distinct names; one alone: 'batch'."""
    g = rg.Graph()
    with g.as_default():
        p = rg.placeholder(rg.float32, [None, 3], name="p")
        q = rg.placeholder(rg.float32, [None, 3], name="q")
        y = rg.reduce_sum(p) * rg.reduce_sum(q)
        z = rg.tanh(p)
    sess = _init(g)
    assert _dims(export({"y": y}, session=sess).model) == {"p": ["p_batch", 3],
                                                           "q": ["q_batch", 3]}
    assert _dims(export({"z": z}, session=sess).model) == {"p": ["batch", 3]}


def test_user_dynamic_axes_still_win():
    g, phs, probs = _seq2seq()
    sess = _init(g)
    model = rg.io.to_onnx({"probs": probs}, None, session=sess,
                          dynamic_axes={"dec_in": {1: "Td"}})
    assert _dims(model)["dec_in"] == ["batch", "Td", 3]
    assert _dims(model)["enc_in"] == ["batch", "enc_in_time", 3]


def _two_inputs(build, pshape, qshape):
    g = rg.Graph()
    with g.as_default():
        p = rg.placeholder(rg.float32, pshape, name="p")
        q = rg.placeholder(rg.float32, qshape, name="q")
        y = build(p, q)
    return g, p, q, y


def test_dims_an_elementwise_op_lines_up_share_a_name():
    """p + q makes the two batches one size: one name (was p_batch and q_batch); through a
    unary op and a transpose too."""
    g, p, q, y = _two_inputs(lambda p, q: rg.tanh(p) + q, [None, 3], [None, 3])
    ex = export({"y": y}, session=_init(g))
    assert _dims(ex.model) == {"p": ["batch", 3], "q": ["batch", 3]}
    rs = np.random.RandomState(0)
    for b in (1, 4):
        feed = {p: rs.randn(b, 3).astype(np.float32), q: rs.randn(b, 3).astype(np.float32)}
        assert max(compare(ex, _init(g), feed).values()) < 1e-6
    g, p, q, y = _two_inputs(lambda p, q: p * rg.transpose(q, [1, 0]), [None, 4], [4, None])
    assert _dims(export({"y": y}, session=_init(g)).model) == {"p": ["batch", 4],
                                                               "q": [4, "batch"]}


def test_dims_a_concat_lines_up_share_a_name():
    """concat along the features: the batch and time axes of both inputs are one size each;
    a tied dim that is neither batch nor loop time keeps its first input's name."""
    g, p, q, y = _two_inputs(lambda p, q: rg.concat([p, q], axis=-1), [None, None, 2],
                             [None, None, 3])
    ex = export({"y": y}, session=_init(g))
    assert _dims(ex.model) == {"p": ["batch", "p_dim1", 2], "q": ["batch", "p_dim1", 3]}
    rs = np.random.RandomState(1)
    feed = {p: rs.randn(2, 5, 2).astype(np.float32), q: rs.randn(2, 5, 3).astype(np.float32)}
    assert max(compare(ex, _init(g), feed).values()) == 0.0


def test_a_mask_multiplied_with_a_loops_input_takes_its_batch_and_time():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, None, 3], name="x")
        w = rg.placeholder(rg.float32, [None, None], name="w")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), x * rg.expand_dims(w, -1),
                                   dtype=rg.float32)
    sess = _init(g)
    ex = export({"out": out}, session=sess)
    assert _dims(ex.model) == {"x": ["batch", "time", 3], "w": ["batch", "time"]}
    rs = np.random.RandomState(2)
    feed = {x: rs.randn(3, 4, 3).astype(np.float32), w: rs.rand(3, 4).astype(np.float32)}
    assert max(compare(ex, sess, feed).values()) < 1e-5


def test_a_mask_applied_to_a_loops_outputs_takes_its_time():
    """A loss mask multiplied with dynamic_rnn's outputs: the outputs have as many steps as
    the loop's input sequence, so the mask's axes are 'batch' and 'time' too."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, None, 3], name="x")
        mask = rg.placeholder(rg.float32, [None, None], name="mask")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), x, dtype=rg.float32)
        y = out * rg.expand_dims(mask, -1)
    sess = _init(g)
    ex = export({"y": y}, session=sess)
    assert _dims(ex.model) == {"x": ["batch", "time", 3], "mask": ["batch", "time"]}
    rs = np.random.RandomState(3)
    feed = {x: rs.randn(2, 5, 3).astype(np.float32), mask: rs.rand(2, 5).astype(np.float32)}
    assert max(compare(ex, sess, feed).values()) < 1e-5
