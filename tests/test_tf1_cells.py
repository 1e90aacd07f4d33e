"""TF1 cells, wrappers and unrolling against NumPy written here (issue 25: BasicLSTMCell,
state_is_tuple, initializer=, wrappers, static_bidirectional_rnn, custom cells; bugs 3, 5-8, 10)."""
import numpy as np
import pytest

import rnngraph as rg

RNG = np.random.default_rng(25)


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_lstm_step(x, c, h, kernel, bias, forget_bias=1.0):
    z = np.concatenate([x, h], 1) @ kernel + bias
    i, j, f, o = np.split(z, 4, axis=1)
    c2 = c * sig(f + forget_bias) + sig(i) * np.tanh(j)
    return c2, np.tanh(c2) * sig(o)


def np_rnn_step(x, h, kernel, bias):
    return np.tanh(np.concatenate([x, h], 1) @ kernel + bias)


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def run(fetches, feed=None, init=True):
    with rg.Session(accelerate=False) as sess:
        if init:
            sess.run(rg.global_variables_initializer())
        return sess.run(fetches, feed or {}), sess


def test_basic_lstm_cell_matches_numpy_tuple_and_concatenated(graph):
    x = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    X = rg.placeholder(rg.float32, [None, 5, 4])
    tup = rg.nn.rnn_cell.BasicLSTMCell(6, forget_bias=0.5)
    cat = rg.nn.rnn_cell.BasicLSTMCell(6, forget_bias=0.5, state_is_tuple=False)
    out_t, st_t = rg.nn.dynamic_rnn(tup, X, dtype=rg.float32, scope="t")
    out_c, st_c = rg.nn.dynamic_rnn(cat, X, dtype=rg.float32, scope="c")
    assert isinstance(st_t, rg.nn.LSTMStateTuple) and st_c.shape == (None, 12)
    assert cat.state_size == 12 and tup.state_size == (6, 6)
    assert [v.node.name for v in tup.variables] == ["t/basic_lstm_cell/kernel",
                                                    "t/basic_lstm_cell/bias"]
    (ot, ct, ht, oc, sc), sess = run([out_t, st_t.c, st_t.h, out_c, st_c], {X: x})
    k, b = (sess.read_variable(f"t/basic_lstm_cell/{n}") for n in ("kernel", "bias"))
    k2, b2 = (sess.read_variable(f"c/basic_lstm_cell/{n}") for n in ("kernel", "bias"))
    for kern, bias, outs, c_fin, h_fin in ((k, b, ot, ct, ht), (k2, b2, oc, sc[:, :6], sc[:, 6:])):
        c = h = np.zeros((3, 6), np.float32)
        for t in range(5):
            c, h = np_lstm_step(x[:, t], c, h, kern, bias, 0.5)
            np.testing.assert_allclose(outs[:, t], h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c_fin, c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h_fin, h, rtol=1e-5, atol=1e-6)


def test_lstm_cell_state_is_tuple_flag_and_multi_concatenated(graph):
    """Bug 6: LSTMCell(state_is_tuple=True) and MultiRNNCell(state_is_tuple=False) work."""
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    X = rg.placeholder(rg.float32, [2, 3, 4])
    rg.nn.rnn_cell.LSTMCell(3, state_is_tuple=True)
    cells = [rg.nn.rnn_cell.LSTMCell(3, state_is_tuple=False),
             rg.nn.rnn_cell.BasicRNNCell(2)]
    multi = rg.nn.rnn_cell.MultiRNNCell(cells, state_is_tuple=False)
    assert multi.state_size == 8
    outs, state = rg.nn.static_rnn(multi, rg.unstack(X, axis=1), dtype=rg.float32)
    assert state.shape == (2, 8)
    (o, s), sess = run([outs, state], {X: x})
    k0 = sess.read_variable("rnn/multi_rnn_cell/cell_0/lstm_cell/kernel")
    b0 = sess.read_variable("rnn/multi_rnn_cell/cell_0/lstm_cell/bias")
    k1 = sess.read_variable("rnn/multi_rnn_cell/cell_1/basic_rnn_cell/kernel")
    b1 = sess.read_variable("rnn/multi_rnn_cell/cell_1/basic_rnn_cell/bias")
    c = h = np.zeros((2, 3)); h1 = np.zeros((2, 2))
    for t in range(3):
        c, h = np_lstm_step(x[:, t], c, h, k0, b0)
        h1 = np_rnn_step(h, h1, k1, b1)
        np.testing.assert_allclose(o[t], h1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, np.concatenate([c, h, h1], 1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="every cell's state must be one tensor"):
        rg.nn.rnn_cell.MultiRNNCell([rg.nn.rnn_cell.LSTMCell(3)], state_is_tuple=False)


def test_cell_initializers(graph):
    X = rg.placeholder(rg.float32, [2, 3])
    lstm = rg.nn.rnn_cell.LSTMCell(2, initializer=rg.constant_initializer(0.25), use_peepholes=True)
    gru = rg.nn.rnn_cell.GRUCell(2, kernel_initializer=rg.constant_initializer(0.5),
                                 bias_initializer=rg.constant_initializer(-1.0))
    lstm(X, lstm.zero_state(2, rg.float32))
    gru(X, gru.zero_state(2, rg.float32))
    values, _ = run({v.node.name: v for v in lstm.variables + gru.variables})
    assert np.all(values["lstm_cell/kernel"] == 0.25) and np.all(values["lstm_cell/bias"] == 0)
    assert np.all(values["lstm_cell/w_f_diag"] == 0.25)
    assert np.all(values["gru_cell/gates/kernel"] == 0.5)
    assert np.all(values["gru_cell/gates/bias"] == -1.0)
    assert np.all(values["gru_cell/candidate/bias"] == -1.0)
    with pytest.raises(NotImplementedError, match="num_unit_shards="):
        rg.nn.rnn_cell.LSTMCell(2, num_unit_shards=2)


def test_trainable_variables_and_weights(graph):
    X = rg.placeholder(rg.float32, [2, 3, 4])
    multi = rg.nn.rnn_cell.MultiRNNCell([rg.nn.rnn_cell.GRUCell(2), rg.nn.rnn_cell.GRUCell(2)])
    rg.nn.dynamic_rnn(multi, X, dtype=rg.float32)
    assert len(multi.trainable_variables) == 8 == len(multi.weights)
    assert multi.trainable_variables == rg.trainable_variables(graph)


# ---- bug 3: custom cells written the TF1 way ----------------------------------------------------
class DeviceCellWrapper(rg.nn.rnn_cell.RNNCell):
    """The book's wrapper: no base __init__, overrides __call__."""

    def __init__(self, device, cell):
        self._cell = cell
        self._device = device

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._cell.output_size

    def __call__(self, inputs, state, scope=None):
        with rg.device(self._device):
            return self._cell(inputs, state, scope)


class MinimalCell(rg.nn.rnn_cell.RNNCell):
    """call() with get_variable and no build()."""

    def __init__(self, units):
        super().__init__()
        self.units = units

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def call(self, inputs, state):
        w = rg.get_variable("w", [inputs.shape[-1], self.units])
        u = rg.get_variable("u", [self.units, self.units])
        h = rg.tanh(rg.matmul(inputs, w) + rg.matmul(state, u))
        return h, h


class BuildCell(rg.nn.rnn_cell.RNNCell):
    """A LayerRNNCell-style cell: build(inputs_shape) with add_variable."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    state_size = property(lambda self: self.units)
    output_size = property(lambda self: self.units)

    def build(self, inputs_shape):
        self.k = self.add_variable("kernel", [inputs_shape[-1], self.units])
        self.built = True

    def call(self, inputs, state):
        h = rg.tanh(rg.matmul(inputs, self.k) + state)
        return h, h


def test_custom_cells(graph):
    x = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    X = rg.placeholder(rg.float32, [None, 4, 3])
    layers = [DeviceCellWrapper("/gpu:0", rg.nn.rnn_cell.BasicRNNCell(5)), MinimalCell(4),
              BuildCell(3)]
    multi = rg.nn.rnn_cell.MultiRNNCell(layers)
    out, state = rg.nn.dynamic_rnn(multi, X, dtype=rg.float32)
    outs_s, _ = rg.nn.static_rnn(MinimalCell(2), rg.unstack(X, axis=1), dtype=rg.float32)
    names = [v.node.name for v in rg.global_variables(graph)]
    assert names == ["rnn/multi_rnn_cell/cell_0/basic_rnn_cell/kernel",
                     "rnn/multi_rnn_cell/cell_0/basic_rnn_cell/bias",
                     "rnn/multi_rnn_cell/cell_1/minimal_cell/w",
                     "rnn/multi_rnn_cell/cell_1/minimal_cell/u",
                     "rnn/multi_rnn_cell/cell_2/build_cell/kernel",
                     "rnn/minimal_cell/w", "rnn/minimal_cell/u"]
    (o, o_s), sess = run([out, outs_s], {X: x})
    v = {n: sess.read_variable(n) for n in names}
    h0, h1, h2 = np.zeros((2, 5)), np.zeros((2, 4)), np.zeros((2, 3))
    hs = np.zeros((2, 2))
    for t in range(4):
        h0 = np_rnn_step(x[:, t], h0, v[names[0]], v[names[1]])
        h1 = np.tanh(h0 @ v[names[2]] + h1 @ v[names[3]])
        h2 = np.tanh(h1 @ v[names[4]] + h2)
        hs = np.tanh(x[:, t] @ v[names[5]] + hs @ v[names[6]])
        np.testing.assert_allclose(o[:, t], h2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(o_s[t], hs, rtol=1e-5, atol=1e-6)


# ---- bug 5: static batch kept with a [None] sequence_length -------------------------------------
def test_dynamic_rnn_keeps_static_batch_with_unknown_length_vector(graph):
    X = rg.placeholder(rg.float32, [8, 2, 5])
    seq = rg.placeholder(rg.int32, [None])
    out, state = rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(3), X, sequence_length=seq,
                                   dtype=rg.float32)
    assert out.shape == (8, 2, 3) and state.shape == (8, 3)
    (o_fw, o_bw), (s_fw, s_bw) = rg.nn.bidirectional_dynamic_rnn(
        rg.nn.rnn_cell.GRUCell(3), rg.nn.rnn_cell.GRUCell(4), X, sequence_length=seq,
        dtype=rg.float32)
    assert o_fw.shape == (8, 2, 3) and o_bw.shape == (8, 2, 4) and s_bw.shape == (8, 4)
    x = RNG.standard_normal((8, 2, 5)).astype(np.float32)
    lengths = np.array([2, 1, 0, 2, 1, 2, 2, 1], np.int32)
    (o, s), sess = run([out, state], {X: x, seq: lengths})
    k, b = (sess.read_variable(f"rnn/basic_rnn_cell/{n}") for n in ("kernel", "bias"))
    h = np.zeros((8, 3))
    for t in range(2):
        h2 = np_rnn_step(x[:, t], h, k, b)
        live = (t < lengths)[:, None]
        np.testing.assert_allclose(o[:, t], np.where(live, h2, 0), rtol=1e-5, atol=1e-6)
        h = np.where(live, h2, h)
    np.testing.assert_allclose(s, h, rtol=1e-5, atol=1e-6)


# ---- bug 7: integer inputs ----------------------------------------------------------------------
def test_int_inputs_raise_value_error_naming_cell_and_dtype(graph):
    X = rg.placeholder(rg.int32, [None, 3, 2])
    with pytest.raises(ValueError,
                       match="GRUCell 'gru_cell': inputs must be floating point.*int32"):
        rg.nn.dynamic_rnn(rg.nn.rnn_cell.GRUCell(3), X, dtype=rg.float32)
    assert rg.global_variables(graph) == []


# ---- bug 8: static_rnn with nested / rank-3 inputs and scalar states ----------------------------
class PairCell(rg.nn.rnn_cell.RNNCell):
    """Takes a pair (x [batch, 2], y [batch, 2, 3]) and carries (h [batch, 2], count scalar)."""

    state_size = property(lambda self: (2, 1))
    output_size = property(lambda self: 2)

    def call(self, inputs, state):
        x, y = inputs
        h, count = state
        h = h + x + rg.reduce_sum(y, axis=2)
        return h, (h, count + 1.0)


def test_static_rnn_nested_rank3_inputs_and_scalar_state(graph):
    xs = [RNG.standard_normal((3, 2)).astype(np.float32) for _ in range(3)]
    ys = [RNG.standard_normal((3, 2, 3)).astype(np.float32) for _ in range(3)]
    inputs = [(rg.constant(x), rg.constant(y)) for x, y in zip(xs, ys)]
    seq = rg.placeholder(rg.int32, [3])
    init = (rg.zeros([3, 2]), rg.constant(0.0))
    outs, (h, count) = rg.nn.static_rnn(PairCell(), inputs, initial_state=init,
                                        sequence_length=seq)
    lengths = np.array([3, 1, 2], np.int32)
    (o, hh, cc), _ = run([outs, h, count], {seq: lengths})
    ref = np.zeros((3, 2), np.float32)
    for t in range(3):
        new = ref + xs[t] + ys[t].sum(2)
        live = (t < lengths)[:, None]
        np.testing.assert_allclose(o[t], np.where(live, new, 0), rtol=1e-6)
        ref = np.where(live, new, ref)
    np.testing.assert_allclose(hh, ref, rtol=1e-6)
    assert cc == 3.0   # a non-batched state is not masked (TF passes it through)


# ---- wrappers and static_bidirectional_rnn ------------------------------------------------------
def test_wrappers(graph):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    X = rg.placeholder(rg.float32, [2, 3, 4])
    proj = rg.nn.rnn_cell.OutputProjectionWrapper(rg.nn.rnn_cell.BasicRNNCell(5), 4)
    res = rg.nn.rnn_cell.ResidualWrapper(proj)
    dev = rg.nn.rnn_cell.DeviceWrapper(res, "/cpu:0")
    out, state = rg.nn.dynamic_rnn(dev, X, dtype=rg.float32)
    names = [v.node.name for v in rg.global_variables(graph)]
    assert names == ["rnn/output_projection_wrapper/basic_rnn_cell/kernel",
                     "rnn/output_projection_wrapper/basic_rnn_cell/bias",
                     "rnn/output_projection_wrapper/kernel", "rnn/output_projection_wrapper/bias"]
    assert dev.output_size == 4 and dev.state_size == 5 and len(dev.variables) == 4
    (o, s), sess = run([out, state], {X: x})
    v = [sess.read_variable(n) for n in names]
    h = np.zeros((2, 5))
    for t in range(3):
        h = np_rnn_step(x[:, t], h, v[0], v[1])
        np.testing.assert_allclose(o[:, t], x[:, t] + h @ v[2] + v[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, h, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="cell must be an RNNCell"):
        rg.contrib.rnn.OutputProjectionWrapper("cell", 3)


def test_static_bidirectional_rnn(graph):
    x = RNG.standard_normal((3, 4, 2)).astype(np.float32)
    X = rg.placeholder(rg.float32, [3, 4, 2])
    seq = rg.placeholder(rg.int32, [3])
    fw, bw = rg.nn.rnn_cell.BasicRNNCell(3), rg.nn.rnn_cell.BasicRNNCell(2)
    outs, s_fw, s_bw = rg.nn.static_bidirectional_rnn(fw, bw, rg.unstack(X, axis=1),
                                                      dtype=rg.float32, sequence_length=seq)
    names = [v.node.name for v in rg.global_variables(graph)]
    assert names == ["bidirectional_rnn/fw/basic_rnn_cell/kernel",
                     "bidirectional_rnn/fw/basic_rnn_cell/bias",
                     "bidirectional_rnn/bw/basic_rnn_cell/kernel",
                     "bidirectional_rnn/bw/basic_rnn_cell/bias"]
    lengths = np.array([4, 2, 3], np.int32)
    (o, sf, sb), sess = run([outs, s_fw, s_bw], {X: x, seq: lengths})
    v = [sess.read_variable(n) for n in names]
    for b in range(3):
        L = lengths[b]
        hf, hb = np.zeros(3), np.zeros(2)
        ref_f, ref_b = np.zeros((4, 3)), np.zeros((4, 2))
        for t in range(L):
            hf = np_rnn_step(x[b:b + 1, t], hf[None], v[0], v[1])[0]
            ref_f[t] = hf
        for t in reversed(range(L)):
            hb = np_rnn_step(x[b:b + 1, t], hb[None], v[2], v[3])[0]
            ref_b[t] = hb
        for t in range(4):
            np.testing.assert_allclose(o[t][b], np.concatenate([ref_f[t], ref_b[t]]),
                                       rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sf[b], hf, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sb[b], hb, rtol=1e-5, atol=1e-6)


# ---- bug 10: bitwise agreement of static and dynamic unrolling -----------------------------------
def test_static_and_dynamic_agree_bitwise_without_passes(graph):
    x = RNG.standard_normal((16, 7, 10)).astype(np.float32)
    X = rg.placeholder(rg.float32, [16, 7, 10])
    cell = rg.nn.rnn_cell.LSTMCell(20)
    od, sd = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
    os_, ss = rg.nn.static_rnn(cell, rg.unstack(X, axis=1), dtype=rg.float32)
    os_ = rg.stack(os_, axis=1)
    gd = rg.gradients(rg.reduce_sum(od * od), cell.variables)
    gs = rg.gradients(rg.reduce_sum(os_ * os_), cell.variables)
    with rg.Session(passes=False, accelerate=False) as sess:
        sess.run(rg.global_variables_initializer())
        a, b, ga, gb, sa, sb = sess.run([od, os_, gd, gs, sd, ss], {X: x})
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa.c, sb.c)
    for p, q in zip(ga, gb):
        np.testing.assert_array_equal(p, q)
