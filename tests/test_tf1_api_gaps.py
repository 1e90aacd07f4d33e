"""TF1 idioms from the common tutorials (PTB language model, GRU classifier, MNIST rows), as TF
1.15 spells and computes them: variable lists by scope, the variable initializers and assign
functions, tf.nn's activations with their deprecated dim=, TF1's keyword names on reductions and
shape ops, integer reduce_mean and random_uniform, Session(target), tf.layers.Dense, weight
regularizers and LSTMBlockCell. Values are checked against NumPy, gradients against NumPy or
finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg

from gradcheck import check_gradients


@pytest.fixture(autouse=True)
def fresh_graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def run(fetches, feed=None, seed=0):
    return rg.Session(seed=seed).run(fetches, feed or {})


def names(values):
    return [v.name for v in values]


# --- global_variables / trainable_variables with scope= ------------------------------------------
def test_variable_lists_filter_by_scope_from_the_start_of_the_name(fresh_graph):
    with rg.variable_scope("generator"):
        g_w = rg.get_variable("w", [2])
        g_c = rg.get_variable("count", [], trainable=False)
    with rg.variable_scope("discriminator"):
        d_w = rg.get_variable("w", [2])
    with rg.variable_scope("rnn"):
        with rg.variable_scope("generator"):   # "generator" inside, not at the start
            r_w = rg.get_variable("w", [2])
    assert names(rg.trainable_variables(scope="generator")) == ["generator/w:0"]
    assert names(rg.global_variables(scope="generator")) == ["generator/w:0",
                                                             "generator/count:0"]
    assert names(rg.global_variables("rnn")) == ["rnn/generator/w:0"]   # first positional
    assert names(rg.trainable_variables(scope="gen|disc")) == ["generator/w:0",
                                                               "discriminator/w:0"]
    assert rg.trainable_variables(scope="nothing") == []
    assert rg.trainable_variables() == [g_w, d_w, r_w]
    assert rg.global_variables() == [g_w, g_c, d_w, r_w]
    # rnngraph's own form, a Graph, keeps working
    assert rg.global_variables(fresh_graph) == [g_w, g_c, d_w, r_w]
    assert rg.trainable_variables(fresh_graph) == [g_w, d_w, r_w]
    with pytest.raises(TypeError, match="scope must be a str"):
        rg.global_variables(scope=3)


def test_local_variables_are_empty_and_their_initializer_runs(fresh_graph):
    v = rg.Variable(np.arange(3.0, dtype=np.float32), name="v")
    sess = rg.Session()
    assert rg.local_variables() == []
    assert sess.run([rg.global_variables_initializer(), rg.local_variables_initializer()]) == \
        [None, None]
    np.testing.assert_array_equal(sess.run(v), [0.0, 1.0, 2.0])


# --- variables_initializer, assign functions -----------------------------------------------------
def test_variables_initializer_resets_only_the_listed_variables():
    a = rg.Variable(np.zeros(2, np.float32), name="a")
    b = rg.Variable(np.ones(3, np.float32), name="b")
    sess = rg.Session()
    sess.run([rg.assign_add(a, [1.0, 2.0]), rg.assign_sub(b, 5.0)])
    np.testing.assert_array_equal(sess.run(a), [1.0, 2.0])
    np.testing.assert_array_equal(sess.run(b), [-4.0, -4.0, -4.0])
    assert sess.run(rg.variables_initializer([a])) is None   # an op, as in TF1
    np.testing.assert_array_equal(sess.run(a), [0.0, 0.0])
    np.testing.assert_array_equal(sess.run(b), [-4.0, -4.0, -4.0])   # not listed: kept
    assert sess.run(rg.variables_initializer([])) is None   # a no_op
    sess.run(rg.initialize_all_variables())   # TF1's deprecated name of the global one
    np.testing.assert_array_equal(sess.run(b), [1.0, 1.0, 1.0])


def test_variables_initializer_gives_the_seeded_initial_value_again():
    w = rg.get_variable("w", [3, 4])            # glorot-uniform, from the session's seed
    other = rg.get_variable("other", [2])
    sess = rg.Session(seed=5)
    first, first_other = sess.run([w, other])
    sess.run([rg.assign(w, np.zeros((3, 4), np.float32)),
              rg.assign(other, np.full(2, 7.0, np.float32))])
    sess.run(rg.variables_initializer([w]))
    np.testing.assert_array_equal(sess.run(w), first)
    np.testing.assert_array_equal(sess.run(other), [7.0, 7.0])
    assert not np.array_equal(first_other, [7.0, 7.0])


def test_variables_initializer_under_control_dependencies_runs_after_them():
    a = rg.Variable(np.zeros(2, np.float32), name="a")
    b = rg.Variable(np.ones(2, np.float32), name="b")
    sess = rg.Session()
    with rg.control_dependencies([rg.assign(b, [7.0, 7.0])]):
        init = rg.variables_initializer([a, b])
    sess.run(rg.assign(a, [3.0, 3.0]))
    sess.run(init)
    np.testing.assert_array_equal(sess.run(a), [0.0, 0.0])
    np.testing.assert_array_equal(sess.run(b), [1.0, 1.0])   # the assign ran first


def test_variables_initializer_and_assign_reject_non_variables():
    x = rg.constant([1.0])
    with pytest.raises(TypeError, match="var_list holds variables"):
        rg.variables_initializer([x])
    for fn in (rg.assign, rg.assign_add, rg.assign_sub):
        with pytest.raises(TypeError, match="ref must be a variable"):
            fn(x, [2.0])
    v = rg.Variable(np.zeros(1, np.float32))
    with pytest.raises(NotImplementedError, match="validate_shape=False"):
        rg.assign(v, [1.0, 2.0], validate_shape=False)


def test_assign_functions_return_the_new_value_and_accumulate():
    v = rg.Variable(np.float32(1.0), name="v")
    add, sub = rg.assign_add(v, 2.5), rg.assign_sub(v, 0.5)
    sess = rg.Session()
    assert sess.run(add) == 3.5
    assert sess.run(add) == 6.0
    assert sess.run(sub) == 5.5
    assert sess.run(rg.assign(v, 9.0, use_locking=True, name="set")) == 9.0


# --- tf.nn activations ----------------------------------------------------------------------------
X = np.array([[-50.0, -20.0, -3.0, -0.5, 0.0], [0.25, 1.0, 3.0, 20.0, 50.0]])


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
NUMPY_ACTIVATIONS = {
    "leaky_relu": (lambda f: rg.nn.leaky_relu(f), lambda x: np.where(x > 0, x, 0.2 * x)),
    "leaky_relu_alpha_2": (lambda f: rg.nn.leaky_relu(f, alpha=2.0),
                           lambda x: np.where(x > 0, x, 2.0 * x)),
    # (TF 1.15's kernel: log(exp(x) + 1) between its thresholds, so within float rounding of
    # logaddexp; test_softplus_follows_tfs_thresholds checks its exact branches)
    "softplus": (rg.nn.softplus, lambda x: np.logaddexp(0.0, x)),
    "softsign": (rg.nn.softsign, lambda x: x / (1.0 + np.abs(x))),
    "elu": (rg.nn.elu, lambda x: np.where(x < 0, np.expm1(x), x)),
    "selu": (rg.nn.selu, lambda x: SELU_SCALE * np.where(x < 0, SELU_ALPHA * np.expm1(x), x)),
}


@pytest.mark.parametrize("which", sorted(NUMPY_ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_match_numpy(which, dtype):
    build, ref = NUMPY_ACTIVATIONS[which]
    x = X.astype(dtype)
    p = rg.placeholder(dtype, [None, 5])
    y = build(p)
    assert y.dtype == dtype
    got = run(y, {p: x})
    rtol = 1e-6 if dtype == np.float32 else 1e-13 if which != "softplus" else 1e-7
    np.testing.assert_allclose(got, ref(x.astype(np.float64)), rtol=rtol, atol=0)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
def test_softplus_follows_tfs_thresholds():
    # float32: x itself above 13.94, exp(x) below -13.94 (no 0 from rounding 1 + exp(x))
    x = np.array([-100.0, -30.0, -14.0, 13.0, 14.0, 100.0, 1000.0], np.float32)
    got = run(rg.nn.softplus(rg.constant(x)))
    threshold = np.log(np.finfo(np.float32).eps) + 2.0
    want = np.where(x > -threshold, x, np.where(x < threshold, np.exp(x),
                                                np.log(np.exp(x) + 1.0)))
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert got[1] > 0.0 and np.isfinite(got).all()


def _grad_at(build, x):
    p = rg.placeholder(rg.float64, [len(x)])
    g = rg.gradients(rg.reduce_sum(build(p)), [p])[0]
    return run(g, {p: np.asarray(x, np.float64)})


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
def test_activation_gradients_take_tfs_branch_at_the_kink_and_never_nan():
    x = [0.0, -1000.0, 1000.0, -2.0, 2.0]
    np.testing.assert_allclose(_grad_at(rg.nn.elu, x), [1.0, 0.0, 1.0, np.exp(-2.0), 1.0])
    np.testing.assert_allclose(_grad_at(rg.nn.selu, x),
                               SELU_SCALE * np.array([1.0, 0.0, 1.0,
                                                      SELU_ALPHA * np.exp(-2.0), 1.0]))
    np.testing.assert_allclose(_grad_at(rg.nn.leaky_relu, x), [0.2, 0.2, 1.0, 0.2, 1.0])
    sig = 1.0 / (1.0 + np.exp(-np.array(x)))
    np.testing.assert_allclose(_grad_at(rg.nn.softplus, x), sig, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(_grad_at(rg.nn.softsign, x),
                               1.0 / (1.0 + np.abs(np.array(x))) ** 2)


@pytest.mark.parametrize("which", ["elu", "selu", "leaky_relu", "softplus", "softsign"])
def test_activation_gradients_match_finite_differences(which):
    fn = NUMPY_ACTIVATIONS[which][0]
    build = lambda x: fn(x)  # noqa: E731  (check_gradients passes x by name)
    rng = np.random.default_rng(3)
    x = rng.uniform(0.3, 3.0, size=(3, 4)) * rng.choice([-1.0, 1.0], size=(3, 4))
    x[0, 0], x[0, 1] = 40.0, -40.0   # softplus' outer branches (float64 threshold 34)
    check_gradients(build, {"x": x})


def test_softmax_and_log_softmax_take_tf1s_dim():
    x = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]], np.float32)
    p = rg.placeholder(rg.float32, [None, 3])
    e0, e1 = np.exp(x - x.max(0)), np.exp(x - x.max(1, keepdims=True))
    sm0, sm1 = e0 / e0.sum(0), e1 / e1.sum(1, keepdims=True)
    got = run([rg.nn.softmax(p, dim=0), rg.nn.softmax(p, dim=-1), rg.nn.softmax(p),
               rg.nn.softmax(p, axis=0), rg.nn.log_softmax(p, dim=0), rg.nn.log_softmax(p)],
              {p: x})
    for g, want in zip(got, [sm0, sm1, sm1, sm0, np.log(sm0), np.log(sm1)]):
        np.testing.assert_allclose(g, want, rtol=1e-6)
    for fn in (rg.nn.softmax, rg.nn.log_softmax):
        with pytest.raises(ValueError, match="both 'axis' and 'dim'"):
            fn(p, axis=0, dim=0)


def test_l2_normalize():
    x = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1e-7, 0.0, 0.0]], np.float64)
    p = rg.placeholder(rg.float64, [3, 3])
    rows = x / np.sqrt(np.maximum((x ** 2).sum(1, keepdims=True), 1e-12))
    cols = x / np.sqrt(np.maximum((x ** 2).sum(0, keepdims=True), 1e-12))
    whole = x / np.sqrt(max((x ** 2).sum(), 1e-12))
    eps = x / np.sqrt(np.maximum((x ** 2).sum(1, keepdims=True), 0.5))
    got = run([rg.nn.l2_normalize(p, 1), rg.nn.l2_normalize(p, dim=0), rg.nn.l2_normalize(p),
               rg.nn.l2_normalize(p, axis=1, epsilon=0.5)], {p: x})
    for g, want in zip(got, [rows, cols, whole, eps]):
        np.testing.assert_allclose(g, want, rtol=1e-12)
    check_gradients(lambda x: rg.nn.l2_normalize(x, axis=1),
                    {"x": np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])})
    with pytest.raises(ValueError, match="both 'axis' and 'dim'"):
        rg.nn.l2_normalize(p, axis=1, dim=1)


def test_leaky_relu_casts_integers_to_float32():
    y = rg.nn.leaky_relu(rg.constant(np.array([-5, 3], np.int32)))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(run(y), [-1.0, 3.0])


# --- TF1's keyword names -------------------------------------------------------------------------
def test_reductions_and_arg_ops_take_tf1_keyword_names():
    x = np.array([[1.0, 5.0, 2.0], [4.0, 0.0, 6.0]], np.float32)
    p = rg.placeholder(rg.float32, [2, 3])
    got = run([rg.reduce_sum(input_tensor=p, axis=1), rg.reduce_mean(input_tensor=p),
               rg.reduce_max(input_tensor=p, axis=0, keepdims=True),
               rg.reduce_min(input_tensor=p), rg.reduce_prod(input_tensor=p, axis=0),
               rg.reduce_logsumexp(input_tensor=p, axis=1),
               rg.argmax(input=p, axis=1), rg.argmin(input=p, axis=0),
               rg.reduce_sum(p, 1)], {p: x})   # positional calls keep working
    want = [x.sum(1), x.mean(), x.max(0, keepdims=True), x.min(), x.prod(0),
            np.log(np.exp(x).sum(1)), x.argmax(1), x.argmin(0), x.sum(1)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    b = rg.constant(np.array([[True, False], [True, True]]))
    assert run([rg.reduce_any(input_tensor=b), rg.reduce_all(input_tensor=b)]) == [True, False]


def test_shape_ops_take_tf1_keyword_names():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    p = rg.placeholder(rg.float32, [2, 3, 4])
    got = run([rg.reshape(tensor=p, shape=[6, 4]), rg.transpose(a=p, perm=[2, 0, 1]),
               rg.transpose(a=p), rg.expand_dims(input=p, axis=1), rg.expand_dims(p, dim=-1),
               rg.squeeze(input=rg.expand_dims(p, 0), axis=[0]),
               rg.squeeze(rg.expand_dims(p, 2), squeeze_dims=[2]),
               rg.clip_by_value(t=p, clip_value_min=3.0, clip_value_max=10.0),
               rg.clip_by_value(p, 3.0, 10.0)], {p: x})
    want = [x.reshape(6, 4), x.transpose(2, 0, 1), x.transpose(), x[:, None], x[..., None],
            x, x, np.clip(x, 3, 10), np.clip(x, 3, 10)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="both 'axis' and 'dim'"):
        rg.expand_dims(p, axis=0, dim=0)
    with pytest.raises(ValueError, match="'axis' must be given"):
        rg.expand_dims(p)


def test_split_and_unstack_take_tf1_keyword_names_and_num():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    p = rg.placeholder(rg.float32, [2, 3, 4])
    parts = rg.split(value=p, num_or_size_splits=2, axis=2, num=2)
    sized = rg.split(p, [1, -1], axis=1, num=2)
    rows = rg.unstack(value=p, num=3, axis=1)
    got = run(parts + sized + rows, {p: x})
    want = np.split(x, 2, axis=2) + [x[:, :1], x[:, 1:]] + [x[:, i] for i in range(3)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="num=3 does not match"):
        rg.split(p, 2, axis=2, num=3)
    with pytest.raises(ValueError, match="does not match"):
        rg.split(p, [1, 2], axis=1, num=3)


def test_reverse_sequence_takes_seq_dim_and_batch_dim():
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    lens = np.array([2, 3], np.int32)
    p, lp = rg.placeholder(rg.float32, [None, 3, 2]), rg.placeholder(rg.int32, [None])
    want = x.copy()
    for b, n in enumerate(lens):
        want[b, :n] = x[b, :n][::-1]
    got = run([rg.reverse_sequence(p, lp, seq_dim=1, batch_dim=0),
               rg.reverse_sequence(input=p, seq_lengths=lp, seq_axis=1, batch_axis=0),
               rg.reverse_sequence(p, lp)], {p: x, lp: lens})
    for g in got:
        np.testing.assert_array_equal(g, want)
    # time-major: [time, batch, depth]
    tm = np.transpose(x, (1, 0, 2))
    got = run(rg.reverse_sequence(rg.constant(tm), lp, seq_dim=0, batch_dim=1), {lp: lens})
    np.testing.assert_array_equal(got, np.transpose(want, (1, 0, 2)))
    with pytest.raises(ValueError, match="both 'seq_axis' and 'seq_dim'"):
        rg.reverse_sequence(p, lp, seq_axis=1, seq_dim=1)
    with pytest.raises(ValueError, match="both 'batch_axis' and 'batch_dim'"):
        rg.reverse_sequence(p, lp, batch_axis=0, batch_dim=0)


# --- integer reduce_mean, integer random_uniform -----------------------------------------------
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_reduce_mean_of_integers_truncates_as_tf(dtype):
    x = np.array([[1, 0, 1, 0], [-1, -2, 7, 9]], dtype)
    p = rg.placeholder(dtype, [None, 4])
    m = rg.reduce_mean(p)
    rows = rg.reduce_mean(p, axis=1)
    cols = rg.reduce_mean(p, axis=0, keepdims=True)
    assert m.dtype == rows.dtype == dtype
    got = run([m, rows, cols, rg.reduce_mean(rg.constant(np.array([-1, -2], dtype)))], {p: x})

    def trunc_mean(a, axis=None, keepdims=False):
        s = a.astype(np.int64).sum(axis=axis, keepdims=keepdims)
        n = a.size if axis is None else a.shape[axis]
        return (np.sign(s) * (np.abs(s) // n)).astype(dtype)
    np.testing.assert_array_equal(got[0], trunc_mean(x))            # 15 // 8 = 1
    np.testing.assert_array_equal(got[1], trunc_mean(x, 1))         # [0, 3]
    np.testing.assert_array_equal(got[2], trunc_mean(x, 0, True))   # [0, -1, 4, 4]
    assert got[3] == -1                                             # -3 / 2 toward zero
    assert run(rg.reduce_mean(rg.constant(np.array([1, 0, 1, 0], dtype)))) == 0


def test_reduce_mean_still_refuses_bool():
    with pytest.raises(TypeError, match="bool"):
        rg.reduce_mean(rg.constant(np.array([True, False])))


@pytest.mark.parametrize("dtype", [rg.int32, rg.int64])
def test_random_uniform_integers_in_range(dtype):
    r = rg.random_uniform([4000], minval=-3, maxval=4, dtype=dtype, seed=1)
    assert r.dtype == dtype and r.shape == (4000,)
    got = run(r, seed=0)
    assert got.dtype == dtype
    assert got.min() >= -3 and got.max() < 4
    counts = np.bincount(got + 3, minlength=7)
    assert len(counts) == 7 and counts.min() > 450   # each of the 7 values ~ 571 times
    again = run(rg.random_uniform([4000], minval=-3, maxval=4, dtype=dtype, seed=1))
    np.testing.assert_array_equal(got, again)        # the op seed fixes the numbers


def test_random_uniform_int64_wide_range_and_run_time_shape():
    lo, hi = -2**62, 2**62 + 12345
    r = rg.random_uniform([1000], minval=lo, maxval=hi, dtype=rg.int64, seed=2)
    got = run(r)
    assert got.min() >= lo and got.max() < hi
    assert (got < 0).sum() > 400 and (got > 0).sum() > 400   # both halves drawn
    n = rg.placeholder(rg.int32, [])
    dyn = rg.random_uniform([n, 2], maxval=10, dtype=rg.int32)
    out = rg.Session().run(dyn, {n: 5})
    assert out.shape == (5, 2) and out.min() >= 0 and out.max() < 10
    # runs differ (the run counter), as TF's stateful random ops
    sess = rg.Session()
    a, b = sess.run(r), sess.run(r)
    assert not np.array_equal(a, b)


def test_random_uniform_integer_arguments_checked():
    with pytest.raises(ValueError, match="must specify maxval"):
        rg.random_uniform([3], dtype=rg.int32)
    with pytest.raises(ValueError, match="minval < maxval"):
        rg.random_uniform([3], minval=5, maxval=5, dtype=rg.int32)
    with pytest.raises(ValueError, match="minval < maxval"):
        rg.random_uniform([3], maxval=2**31, dtype=rg.int32)
    with pytest.raises(TypeError, match="maxval must be a Python int"):
        rg.random_uniform([3], maxval=rg.constant(4), dtype=rg.int32)
    with pytest.raises(TypeError, match="int32 or int64"):
        rg.random_uniform([3], maxval=4, dtype=np.int16)
    u = rg.random_uniform([3])   # floats unchanged
    assert u.dtype == np.float32


def test_random_uniform_int_graph_saves_and_loads(tmp_path):
    r = rg.random_uniform([6], minval=2, maxval=9, dtype=rg.int64, seed=4)
    sess = rg.Session(seed=3)
    want = sess.run(r)
    path = rg.save(tmp_path / "rand.npz", session=sess, fetches={"r": r})
    saved = rg.io.read(path)
    got = saved.session().run(saved.fetches["r"])
    assert got.dtype == np.int64 and got.min() >= 2 and got.max() < 9
    # the file holds the run counter: the loaded session draws what the saved one draws next
    np.testing.assert_array_equal(got, sess.run(r))
    assert not np.array_equal(want, got)


# --- Session(target, graph, config) ------------------------------------------------------------
def test_session_takes_tf1s_target_first(fresh_graph):
    x = rg.constant(2.0) * 3.0
    assert rg.Session("").run(x) == 6.0
    assert rg.Session(target="").run(x) == 6.0
    other = rg.Graph()
    with other.as_default():
        y = rg.constant(5.0)
    s = rg.Session("", other, rg.ConfigProto(allow_soft_placement=True))
    assert s.graph is other and s.run(y) == 5.0 and s.config is not None
    assert rg.Session("", graph=other).graph is other
    assert rg.Session(other).graph is other          # rnngraph's form: the graph first
    assert rg.Session(graph=rg.Graph()).graph is not fresh_graph   # an empty graph is a graph
    with pytest.raises(NotImplementedError, match="remote TensorFlow master"):
        rg.Session("grpc://localhost:2222")
    with rg.Session("") as sess:
        assert sess.run(x) == 6.0


# --- tf.layers.Dense -----------------------------------------------------------------------------
def test_dense_layer_shares_its_weights_across_calls():
    x1 = np.array([[1.0, -2.0, 0.5]], np.float32)
    x2 = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]], np.float32)
    p1, p2 = rg.placeholder(rg.float32, [None, 3]), rg.placeholder(rg.float32, [None, 3])
    layer = rg.layers.Dense(2, activation=rg.nn.relu,
                            kernel_initializer=rg.constant_initializer(
                                np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.25]])),
                            bias_initializer=rg.constant_initializer([0.1, -0.2]))
    assert not layer.built and layer.variables == []
    y1, y2 = layer(p1), layer(p2)
    assert layer.built
    assert names(layer.trainable_variables) == ["dense/kernel:0", "dense/bias:0"]
    assert layer.kernel.shape == (3, 2) and layer.bias.shape == (2,)
    assert rg.trainable_variables() == [layer.kernel, layer.bias]   # one set of weights
    k = np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.25]], np.float32)
    b = np.array([0.1, -0.2], np.float32)
    got = run([y1, y2], {p1: x1, p2: x2})
    np.testing.assert_allclose(got[0], np.maximum(x1 @ k + b, 0), rtol=1e-6)
    np.testing.assert_allclose(got[1], np.maximum(x2 @ k + b, 0), rtol=1e-6)
    # a second layer gets its own scope, as TF1's: dense_1; a named one its name
    second = rg.layers.Dense(4, use_bias=False)
    second(p1)
    named = rg.layers.Dense(1, name="logits")
    named.apply(p1)
    assert names(second.variables) == ["dense_1/kernel:0"] and second.bias is None
    assert names(named.variables) == ["logits/kernel:0", "logits/bias:0"]
    with pytest.raises(ValueError, match=r"built for inputs \[\.\.\., 3\]"):
        layer(rg.placeholder(rg.float32, [None, 4]))


def test_dense_layer_trains_as_its_numpy_gradient_says():
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]])
    t = np.array([[1.0], [0.0], [2.0]])
    p = rg.placeholder(rg.float64, [None, 2])
    layer = rg.layers.Dense(1, kernel_initializer=rg.constant_initializer([[0.5], [-0.25]]),
                            bias_initializer=rg.constant_initializer(0.1), dtype=rg.float64)
    y = layer(p)
    loss = rg.reduce_mean(rg.square(y - t))
    step = rg.train.GradientDescentOptimizer(0.1).minimize(loss)
    sess = rg.Session()
    sess.run(step, {p: x})
    k, b = np.array([[0.5], [-0.25]]), np.array([0.1])
    err = x @ k + b - t
    k_want = k - 0.1 * (2.0 / 3.0) * x.T @ err
    b_want = b - 0.1 * (2.0 / 3.0) * err.sum(0)
    got_k, got_b = sess.run([layer.kernel, layer.bias])
    np.testing.assert_allclose(got_k, k_want, rtol=1e-12)
    np.testing.assert_allclose(got_b, b_want, rtol=1e-12)


def test_dense_layer_arguments():
    frozen = rg.layers.Dense(2, trainable=False)
    frozen(rg.placeholder(rg.float32, [None, 3]))
    assert frozen.trainable_variables == [] and len(frozen.non_trainable_variables) == 2
    assert rg.trainable_variables() == []
    with pytest.raises(ValueError, match="units must be a positive int"):
        rg.layers.Dense(0)
    with pytest.raises(NotImplementedError, match="activity_regularizer"):
        rg.layers.Dense(2, activity_regularizer=lambda y: y)


# --- regularizers ---------------------------------------------------------------------------------
def test_l2_regularizer_on_get_variable_joins_regularization_losses():
    w0 = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)
    reg = rg.contrib.layers.l2_regularizer(0.01)
    with rg.variable_scope("layer"):
        w = rg.get_variable("w", initializer=w0, regularizer=reg)
        rg.get_variable("b", [2])   # no regularizer: no loss
    with rg.variable_scope("layer", reuse=True):
        assert rg.get_variable("w", regularizer=reg) is w   # a reuse adds no second loss
    losses = rg.get_collection(rg.GraphKeys.REGULARIZATION_LOSSES)
    assert len(losses) == 1 and losses[0].name.startswith("layer/w/Regularizer/")
    want = 0.01 * (w0.astype(np.float64) ** 2).sum() / 2
    np.testing.assert_allclose(run(rg.losses.get_regularization_loss()), want, rtol=1e-6)
    np.testing.assert_allclose(run(losses[0]), want, rtol=1e-6)
    g = rg.gradients(rg.losses.get_regularization_loss(), [w])[0]
    np.testing.assert_allclose(run(g), 0.01 * w0, rtol=1e-6)


def test_regularizer_of_a_variable_made_inside_a_loop_body():
    class Cell(rg.nn.rnn_cell.RNNCell):   # makes its weight inside dynamic_rnn's body
        state_size = output_size = 2

        def call(self, inputs, state):
            w = rg.get_variable("w", initializer=np.eye(2, dtype=np.float32) * 2.0,
                                regularizer=rg.contrib.layers.l1_regularizer(0.5))
            return rg.matmul(inputs, w) + state, state

    x = rg.placeholder(rg.float32, [1, 3, 2])
    out, _ = rg.nn.dynamic_rnn(Cell(), x, dtype=rg.float32)
    reg = rg.losses.get_regularization_loss()
    got_out, got_reg = run([out, reg], {x: np.ones((1, 3, 2), np.float32)})
    assert got_reg == pytest.approx(0.5 * 4.0)
    np.testing.assert_allclose(got_out, np.full((1, 3, 2), 2.0))


def test_regularizer_arguments_and_apply_regularization():
    with pytest.raises(ValueError, match="integer"):
        rg.contrib.layers.l2_regularizer(1)
    with pytest.raises(ValueError, match="less than 0"):
        rg.contrib.layers.l1_regularizer(-0.5)
    zero = rg.contrib.layers.l2_regularizer(0.0)
    rg.get_variable("w0", [2], regularizer=zero)
    assert rg.get_collection(rg.GraphKeys.REGULARIZATION_LOSSES) == []   # scale 0: None
    a = rg.Variable(np.array([1.0, -3.0], np.float32))
    b = rg.Variable(np.array([2.0], np.float32))
    total = rg.contrib.layers.apply_regularization(rg.contrib.layers.l1_regularizer(0.1),
                                                   [a, b])
    assert rg.get_collection(rg.GraphKeys.REGULARIZATION_LOSSES) == [total]
    assert run(total) == pytest.approx(0.6)


def test_dense_kernel_regularizer():
    reg = rg.contrib.layers.l2_regularizer(0.5)
    layer = rg.layers.Dense(1, kernel_initializer=rg.constant_initializer([[2.0], [1.0]]),
                            kernel_regularizer=reg)
    layer(rg.placeholder(rg.float32, [None, 2]))
    rg.layers.dense(rg.placeholder(rg.float32, [None, 1]), 1, bias_regularizer=reg,
                    bias_initializer=rg.constant_initializer(4.0))
    assert run(rg.losses.get_regularization_loss()) == pytest.approx(0.5 * 5 / 2 + 0.5 * 16 / 2)


# --- contrib.framework, LSTMBlockCell -------------------------------------------------------------
def test_contrib_framework_global_step():
    step = rg.contrib.framework.get_or_create_global_step()
    assert step is rg.train.get_global_step() is rg.contrib.framework.get_global_step()
    assert step is rg.train.get_or_create_global_step()
    assert step.dtype == np.int64 and run(step) == 0


def _np_lstm(x, k, b, forget_bias, n):
    c = h = np.zeros((x.shape[0], n))
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    outs = []
    for t in range(x.shape[1]):
        i, j, f, o = np.split(np.concatenate([x[:, t], h], 1) @ k + b, 4, axis=1)
        c = sig(f + forget_bias) * c + sig(i) * np.tanh(j)
        h = sig(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1), c, h


def test_lstm_block_cell_is_lstmcell_with_basiclstmcells_layout():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3))
    p = rg.placeholder(rg.float64, [2, 4, 3])
    cell = rg.contrib.rnn.LSTMBlockCell(5)
    with rg.variable_scope("block"):
        out, state = rg.nn.dynamic_rnn(cell, p, dtype=rg.float64)
    basic = rg.nn.rnn_cell.BasicLSTMCell(5)
    with rg.variable_scope("basic"):
        b_out, b_state = rg.nn.dynamic_rnn(basic, p, dtype=rg.float64)
    assert names(cell.variables) == ["block/rnn/lstm_cell/kernel:0",
                                     "block/rnn/lstm_cell/bias:0"]
    assert [v.shape for v in cell.variables] == [v.shape for v in basic.variables] == \
        [(8, 20), (20,)]
    k = rng.standard_normal((8, 20)) * 0.5
    b = rng.standard_normal(20) * 0.1
    sess = rg.Session()
    sess.run([rg.assign(cell.variables[0], k), rg.assign(cell.variables[1], b),
              rg.assign(basic.variables[0], k), rg.assign(basic.variables[1], b)])
    got = sess.run([out, state.c, state.h, b_out], {p: x})
    want_out, want_c, want_h = _np_lstm(x, k, b, 1.0, 5)   # forget_bias 1.0 by default
    np.testing.assert_allclose(got[0], want_out, rtol=1e-12)
    np.testing.assert_allclose(got[1], want_c, rtol=1e-12)
    np.testing.assert_allclose(got[2], want_h, rtol=1e-12)
    np.testing.assert_allclose(got[3], want_out, rtol=1e-12)   # BasicLSTMCell: the same


def test_lstm_block_cell_options():
    x = rg.placeholder(rg.float32, [2, 3])
    peep = rg.contrib.rnn.LSTMBlockCell(4, use_peephole=True, cell_clip=-1, forget_bias=0.5)
    peep(x, peep.zero_state(2, rg.float32))
    assert sorted(v.name.split("/")[-1] for v in peep.variables) == \
        ["bias:0", "kernel:0", "w_f_diag:0", "w_i_diag:0", "w_o_diag:0"]
    assert peep.cell_clip is None and peep.forget_bias == 0.5 and peep.use_peepholes
    assert rg.contrib.rnn.LSTMBlockCell(4, cell_clip=3.0).cell_clip == 3.0
    assert rg.contrib.rnn.LSTMBlockCell(4).state_size == (4, 4)
