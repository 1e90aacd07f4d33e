"""TF1 dtype rules: get_variable / Variable / constant / fill infer dtypes as TF1 converts values;
an int tensor with a Python float raises TypeError instead of truncating; "float" is float32;
NumPy values on the left of an operator give Values; true division, //, %, ** on either side;
constant(shape=); Variable.initializer / initialized_value() / value(); rg.as_dtype."""
import operator

import numpy as np
import pytest

import rnngraph as rg


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def run(*fetches, feed=None):
    with rg.Session() as s:
        s.run(rg.global_variables_initializer())
        out = s.run(list(fetches), feed)
    return out[0] if len(out) == 1 else out


# --- 1. get_variable takes a value initializer's dtype -----------------------------------------
@pytest.mark.parametrize("init, dtype", [
    (0, np.int32), (True, np.bool_), (0.5, np.float32), ([1, 2], np.int32),
    (np.array([1, 2], np.int32), np.int32), (np.array([1, 2], np.int64), np.int64),
    (np.array([1.5]), np.float64), (np.float64(2.0), np.float64), (np.int64(3), np.int64),
])
def test_get_variable_takes_the_dtype_of_a_value_initializer(graph, init, dtype):
    v = rg.get_variable("v", initializer=init)
    assert v.dtype == dtype
    assert run(v).dtype == dtype
    np.testing.assert_array_equal(run(v), np.asarray(init))


def test_get_variable_takes_the_dtype_of_a_tensor_initializer(graph):
    a = rg.get_variable("a", initializer=rg.constant([1, 2]))
    b = rg.get_variable("b", initializer=rg.constant(np.array([1.5])))
    assert (a.dtype, b.dtype) == (np.int32, np.float64)


def test_get_variable_int64_initializer_keeps_every_digit(graph):
    ids = np.array([16777217, 123456789], np.int64)
    big = rg.get_variable("big", initializer=ids)
    assert run(big).tolist() == ids.tolist()   # float32 would round 16777217 to 16777216


def test_get_variable_float64_initializer_keeps_its_precision(graph):
    e0 = np.arange(6, dtype=np.float64).reshape(3, 2) / 3
    emb = rg.get_variable("emb", initializer=e0)
    np.testing.assert_array_equal(run(emb), e0)


def test_a_counter_made_from_zero_counts_in_ints(graph):
    v = rg.get_variable("counter", initializer=0, trainable=False)
    inc = rg.assign(v, v + 1)
    with rg.Session() as s:
        s.run(rg.global_variables_initializer())
        for _ in range(3):
            r = s.run(inc)
    assert r.dtype == np.int32 and r == 3


def test_an_initializer_function_uses_dtype_or_the_scope_dtype(graph):
    assert rg.get_variable("z", [2], initializer=rg.zeros_initializer()).dtype == np.float32
    assert rg.get_variable("z64", [2], rg.float64, rg.zeros_initializer()).dtype == np.float64
    with rg.variable_scope("s", dtype=rg.float64):
        assert rg.get_variable("w", [2, 2]).dtype == np.float64
        # TF1: a value initializer's own dtype wins over the scope's
        assert rg.get_variable("c", initializer=0.5).dtype == np.float32


def test_get_variable_dtype_differing_from_the_value_raises_as_tf1(graph):
    with pytest.raises(ValueError, match="Initializer type 'float64' and explicit dtype "
                                         "'float32' don't match"):
        rg.get_variable("x", initializer=np.array([1.5]), dtype=rg.float32)
    with pytest.raises(ValueError, match="'int32' and explicit dtype 'float32'"):
        rg.get_variable("y", initializer=0, dtype=rg.float32)
    ok = rg.get_variable("ok", initializer=np.array([1.5], np.float32), dtype=rg.float32)
    assert ok.dtype == np.float32


# --- 2. an int tensor with a Python float raises TypeError --------------------------------------
INT_WITH_FLOAT = {
    "a * 0.5": lambda a: a * 0.5, "0.5 * a": lambda a: 0.5 * a, "a + 2.7": lambda a: a + 2.7,
    "a - 2.0": lambda a: a - 2.0, "maximum(a, 0.5)": lambda a: rg.maximum(a, 0.5),
    "minimum(0.5, a)": lambda a: rg.minimum(0.5, a), "a < 0.5": lambda a: a < 0.5,
    "a * [0.5, 1]": lambda a: a * [0.5, 1], "a ** 0.5": lambda a: a ** 0.5,
    "a // 2.0": lambda a: a // 2.0, "where": lambda a: rg.where(a > 0, a, 0.5),
}


@pytest.mark.parametrize("case", sorted(INT_WITH_FLOAT))
def test_int_tensor_with_a_python_float_raises_type_error(graph, case):
    a = rg.constant(np.array([7, -7], np.int32))
    with pytest.raises(TypeError, match=r"at .*test_tf1_dtypes\.py:\d+: expected int32, "
                                        r"got .* of type 'float'"):
        INT_WITH_FLOAT[case](a)


def test_int_placeholder_with_a_python_float_raises(graph):
    lens = rg.placeholder(rg.int32, [None])
    with pytest.raises(TypeError, match="mul.*expected int32, got 0.5"):
        lens * 0.5


def test_numbers_that_fit_are_converted_to_the_tensor_dtype(graph):
    a = rg.constant(np.array([7, -7], np.int32))
    x = rg.constant([1.5, 2.5])
    h = rg.constant(np.array([1.0], np.float16))
    outs = [a * 2, 2 + a, a * True, x * 2, 3 - x, x * np.float64(2.0), h * 0.5,
            rg.maximum(0, x), a + np.int64(1), x * np.array([2, 3])]
    assert [o.dtype for o in outs] == [np.int32] * 3 + [np.float32] * 3 + [np.float16] + \
        [np.float32, np.int32, np.float32]
    r = run(*outs)
    np.testing.assert_array_equal(r[0], [14, -14])
    np.testing.assert_array_equal(r[4], [1.5, 0.5])
    np.testing.assert_array_equal(r[9], [3.0, 7.5])


def test_number_with_a_bool_tensor_and_complex_with_a_float_tensor_raise(graph):
    b = rg.constant([True, False])
    with pytest.raises(TypeError, match="expected bool, got 1 of type 'int'"):
        rg.logical_and(b, 1)
    with pytest.raises(TypeError, match="expected float32, got 1j"):
        rg.constant([1.0]) + 1j


def test_a_numpy_float_with_an_int_tensor_raises_instead_of_truncating(graph):
    a = rg.constant(np.array([7, -7], np.int32))
    with pytest.raises(TypeError, match="NumPy float64 value.*int32 tensor"):
        a * np.float64(0.5)
    with pytest.raises(TypeError, match="NumPy float32"):
        np.array([0.5, 0.5], np.float32) * a


def test_constant_with_an_int_dtype_refuses_python_floats_as_tf1(graph):
    with pytest.raises(TypeError, match=r"constant Const at .*test_tf1_dtypes\.py:\d+: "
                                        r"expected int32, got 0.5 of type 'float'"):
        rg.constant(0.5, dtype=rg.int32)
    with pytest.raises(TypeError, match="got 2.0 of type 'float'"):   # TF1: integral or not
        rg.constant([1, 2.0], dtype=rg.int32)
    with pytest.raises(TypeError, match="expected bool"):
        rg.constant([1, 0], dtype=rg.bool)
    with pytest.raises(TypeError, match="expected int32, got 0.5"):
        rg.Variable(0.5, dtype=rg.int32)
    assert run(rg.constant([1, True], dtype=rg.int64)).dtype == np.int64
    assert run(rg.constant([1, 2], dtype=rg.float32)).dtype == np.float32
    # a NumPy value with dtype= is cast (TF1: astype)
    np.testing.assert_array_equal(run(rg.constant(np.array([1.0, 2.0]), dtype=rg.int32)), [1, 2])


# --- 3. dtype strings as TF1 names them --------------------------------------------------------
@pytest.mark.parametrize("name, dtype", [
    ("float", np.float32), ("float32", np.float32), ("double", np.float64),
    ("float64", np.float64), ("half", np.float16), ("int32", np.int32), ("int64", np.int64),
    ("bool", np.bool_), (float, np.float32), (int, np.int32), (bool, np.bool_),
    (np.float64, np.float64), (rg.int16, np.int16),
])
def test_dtype_names_mean_what_tf1_means(graph, name, dtype):
    assert rg.as_dtype(name) == dtype
    assert rg.placeholder(name, [None, 3]).dtype == dtype
    assert rg.cast(rg.constant([1]), name).dtype == dtype


def test_int_as_a_dtype_string_is_refused(graph):
    with pytest.raises(TypeError, match="'int'.*int32"):
        rg.placeholder("int", [2])
    with pytest.raises(TypeError, match="not a dtype"):
        rg.as_dtype("floaty")


# --- 4. NumPy scalars keep their dtype -----------------------------------------------------------
def test_numpy_scalars_keep_their_dtype(graph):
    assert rg.Variable(np.float64(0.1)).dtype == np.float64
    assert rg.Variable(np.int64(3)).dtype == np.int64
    assert rg.Variable(np.float32(3)).dtype == np.float32
    assert rg.constant(np.float64(1.5)).dtype == np.float64
    assert rg.fill([2], np.float64(0.1)).dtype == np.float64
    assert rg.fill([2], np.int64(1)).dtype == np.int64
    assert rg.get_variable("g", initializer=np.float64(2.0)).dtype == np.float64
    assert rg.identity(np.float64(2.0)).dtype == np.float64
    v = rg.Variable(np.float64(0.1))
    assert run(v) == np.float64(0.1)   # every digit: not float32's 0.10000000149


def test_python_scalars_default_to_float32_and_int32(graph):
    assert (rg.Variable(0.1).dtype, rg.Variable(3).dtype) == (np.float32, np.int32)
    assert (rg.constant(1.5).dtype, rg.constant(3).dtype) == (np.float32, np.int32)
    assert rg.Variable(2 ** 40).dtype == np.int64   # an int that needs 64 bits keeps them
    assert run(rg.Variable([2 ** 40])).tolist() == [2 ** 40]
    assert (rg.fill([2], 0.5).dtype, rg.fill([2], 1).dtype) == (np.float32, np.int32)
    assert (rg.identity(2 ** 40).dtype, rg.identity(3).dtype) == (np.int64, np.int32)


# --- 5. NumPy values on the left of an operator ------------------------------------------------
OPERATORS = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
             operator.floordiv, operator.mod, operator.lt, operator.le, operator.gt,
             operator.ge]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("lhs", ["ndarray", "np.float64", "np.float32", "python"])
def test_numpy_value_on_either_side_gives_a_value(graph, op, lhs):
    vals = np.array([1.25, 2.5, 0.75])
    other = {"ndarray": np.array([0.5, 1.5, 2.0]), "np.float64": np.float64(2.0),
             "np.float32": np.float32(2.0), "python": 2.0}[lhs]
    v = rg.Variable(vals)
    left, right = op(other, v), op(v, other)
    assert isinstance(left, rg.Value) and isinstance(right, rg.Value)
    got_left, got_right = run(left, right)
    np.testing.assert_allclose(got_left, op(np.asarray(other, np.float64), vals))
    np.testing.assert_allclose(got_right, op(vals, np.asarray(other, np.float64)))


def test_numpy_left_operand_takes_the_tensor_dtype(graph):
    x = rg.placeholder(rg.float32, [None, 4])
    loss = rg.reduce_mean(rg.square(x))
    scaled = np.float32(0.5) * loss
    y = (1.0 / np.sqrt(4.0)) * x
    assert isinstance(scaled, rg.Value) and (scaled.dtype, y.dtype) == (np.float32, np.float32)
    assert run(scaled, feed={x: np.ones((2, 4))}) == 0.5
    assert run(rg.reduce_sum(np.array([0.5, 1.5, 2.0, 1.0]) * x),
               feed={x: np.ones((1, 4))}) == 5.0


def test_numpy_ufuncs_refuse_values_instead_of_making_object_arrays(graph):
    with pytest.raises(TypeError):
        np.exp(rg.constant([1.0]))


# --- 6. division, //, %, ** -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype, out", [(np.int32, np.float64), (np.int64, np.float64),
                                        (np.int16, np.float32), (np.int8, np.float32),
                                        (np.float32, np.float32), (np.float64, np.float64)])
def test_true_division_of_ints_gives_floats_as_tf1(graph, dtype, out):
    lens = rg.constant(np.array([7, -3, 4], dtype))
    for half in (lens / 2, rg.truediv(lens, 2), rg.divide(lens, 2)):
        assert half.dtype == out
        np.testing.assert_allclose(run(half), [3.5, -1.5, 2.0])
    assert (3 / lens).dtype == out


def test_dividing_bools_is_refused(graph):
    with pytest.raises(TypeError, match="bool"):
        rg.constant([True]) / rg.constant([True])


def test_floordiv_and_floormod_follow_the_divisor_sign(graph):
    x = np.array([7, -7, 7, -7, 0], np.int32)
    y = np.array([3, 3, -3, -3, 2], np.int32)
    a, b = rg.constant(x), rg.constant(y)
    fd, fm = run(a // b, a % b)
    np.testing.assert_array_equal(fd, np.floor_divide(x, y))   # [2, -3, -3, 2, 0]
    np.testing.assert_array_equal(fm, [1, 2, -2, -1, 0])      # sign of the divisor, as TF
    assert fd.dtype == np.int32 and fm.dtype == np.int32
    np.testing.assert_array_equal(run(rg.floordiv(a, b), rg.floormod(a, b), rg.mod(a, b))[1:],
                                  [fm, fm])
    xf = rg.constant([7.5, -7.5])
    np.testing.assert_allclose(run(xf // 2.0, xf % 2.0, 20.0 % xf, 20 // rg.constant([3, -3])),
                               [[3.0, -4.0], [1.5, 0.5], [5.0, -2.5], [6, -7]])
    np.testing.assert_array_equal(run(rg.div(a, b)), np.floor_divide(x, y))   # TF1's tf.div
    np.testing.assert_allclose(run(rg.div(xf, 2.0)), [3.75, -3.75])


def test_pow_with_a_python_number_on_either_side(graph):
    x = rg.constant([1.0, 2.0, 3.0])
    n = rg.constant([1, 2, 3])
    r = run(2 ** x, x ** 2, 2.0 ** x, 2 ** n, n ** 2)
    np.testing.assert_allclose(r[0], [2, 4, 8])
    np.testing.assert_allclose(r[1], [1, 4, 9])
    np.testing.assert_allclose(r[2], [2, 4, 8])
    np.testing.assert_array_equal(r[3], [2, 4, 8])
    assert r[3].dtype == np.int32 and r[4].dtype == np.int32


def test_squared_difference_and_rsqrt(graph):
    x, y = rg.constant([1.0, 4.0]), rg.constant([3.0, 1.0])
    np.testing.assert_allclose(run(rg.squared_difference(x, y), rg.rsqrt(x)),
                               [[4.0, 9.0], [1.0, 0.5]])


def test_bool_operators_and_abs(graph):
    b = rg.constant([True, False, True])
    c = rg.constant([True, True, False])
    r = run(b & c, b | c, ~b, abs(rg.constant([-2, 3])), True & b)
    np.testing.assert_array_equal(r[0], [True, False, False])
    np.testing.assert_array_equal(r[1], [True, True, True])
    np.testing.assert_array_equal(r[2], [False, True, False])
    np.testing.assert_array_equal(r[3], [2, 3])
    np.testing.assert_array_equal(r[4], [True, False, True])


def test_floormod_gradient_against_numpy(graph):
    xv, yv = np.array([5.5, -5.5, 7.25]), np.array([2.0, 2.0, -3.0])
    x, y = rg.Variable(xv), rg.Variable(yv)
    gx, gy = rg.gradients(rg.reduce_sum(x % y), [x, y])
    got = run(gx, gy)
    np.testing.assert_allclose(got[0], np.ones(3))
    np.testing.assert_allclose(got[1], -np.floor(xv / yv))


# --- 6. constant(shape=) --------------------------------------------------------------------------
def test_constant_shape_fills_reshapes_or_pads_as_tf1(graph):
    r = run(rg.constant(1.5, shape=[2, 2]), rg.constant([1, 2, 3, 4, 5, 6], shape=[2, 3]),
            rg.constant([1, 2], shape=[4]), rg.constant(0, rg.float64, [3]),
            rg.constant(np.arange(4.0), shape=(2, 2)))
    np.testing.assert_array_equal(r[0], np.full((2, 2), 1.5, np.float32))
    np.testing.assert_array_equal(r[1], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(r[2], [1, 2, 2, 2])   # TF1: the last element fills the rest
    assert r[3].dtype == np.float64 and r[3].tolist() == [0, 0, 0]
    assert r[4].dtype == np.float64 and r[4].shape == (2, 2)
    assert rg.constant(7, shape=[]).shape == ()


def test_constant_shape_refuses_too_many_elements(graph):
    with pytest.raises(ValueError, match="too many elements.*needed at most 4, got 6"):
        rg.constant([1, 2, 3, 4, 5, 6], shape=[2, 2])
    with pytest.raises(TypeError, match="verify_shape"):
        rg.constant([1, 2], shape=[4], verify_shape=True)
    with pytest.raises(ValueError, match="empty"):
        rg.constant([], shape=[2])


def test_constant_takes_tf1_positional_order(graph):
    c = rg.constant([1, 2], rg.float32, [2, 1], "c")
    assert (c.dtype, c.shape, c.node.name) == (np.float32, (2, 1), "c")


# --- 6. Variable.initializer / initialized_value() / value() --------------------------------------
def test_variable_initializer_resets_only_that_variable(graph):
    v = rg.Variable(np.array([1.0, 2.0]))
    w = rg.Variable(np.array([5.0]))
    step = rg.group(v.assign_add([1.0, 1.0]), w.assign_add([1.0]))
    with rg.Session() as s:
        s.run(rg.global_variables_initializer())
        s.run(step)
        s.run(v.initializer)
        got_v, got_w = s.run([v, w])
    np.testing.assert_array_equal(got_v, [1.0, 2.0])
    np.testing.assert_array_equal(got_w, [6.0])


def test_initialized_value_starts_another_variable(graph):
    v = rg.Variable(np.array([1.0, 2.0]))
    z = rg.get_variable("z", [2], rg.float64, rg.ones_initializer())
    w = rg.Variable(v.initialized_value() * 2)
    u = rg.Variable(z.initialized_value() + 1)
    r = run(w, u, v.value(), v.read_value())
    np.testing.assert_array_equal(r[0], [2.0, 4.0])
    np.testing.assert_array_equal(r[1], [2.0, 2.0])
    np.testing.assert_array_equal(r[2], [1.0, 2.0])
    with pytest.raises(AttributeError, match="variables"):
        rg.constant(1.0).initializer


def test_assign_converts_a_number_to_the_variables_dtype():
    """tf.assign(global_step, 5), tf.assign(float_var, [1, 1, 1]), v.assign(np.zeros(3)): the value
    takes the variable's dtype, as TF1 converts it (before: a TypeError, dtypes differ); a
    float into an int variable still raises, naming the line."""
    g = rg.Graph()
    with g.as_default():
        step = rg.Variable(np.int64(0), name="step")
        w = rg.Variable(np.ones(3, np.float32), name="w")
        ops = [rg.assign(step, 5), rg.assign(w, [1, 1, 1]), w.assign(np.zeros(3))]
        with pytest.raises(TypeError, match="test_tf1_dtypes.py"):
            rg.assign(step, 0.5)
        init = rg.global_variables_initializer()
    s = rg.Session(g)
    s.run(init)
    got = [s.run(o) for o in ops]
    assert got[0] == 5 and got[0].dtype == np.int64
    np.testing.assert_array_equal(got[1], np.ones(3, np.float32))
    np.testing.assert_array_equal(got[2], np.zeros(3, np.float32))
    assert got[2].dtype == np.float32


def test_stack_converts_numbers_beside_a_tensor_to_its_dtype():
    """rg.stack([t, np.float64(1.0)]) and rg.reshape(x, rg.stack([rg.shape(x)[0], np.int64(12)]))
    worked before NumPy scalars kept their dtype; TF1's stack converts them to the tensor's."""
    g = rg.Graph()
    with g.as_default():
        t = rg.constant(3.0)
        s = rg.stack([t, np.float64(1.0), np.sqrt(2.0), 2])
        x = rg.placeholder(rg.float32, [None, 4, 3], name="x")
        r = rg.reshape(x, rg.stack([rg.shape(x)[0], np.int64(12)]))
    assert s.dtype == np.float32 and r.dtype == np.float32
    got, shaped = rg.Session(g).run([s, r], {x: np.zeros((2, 4, 3), np.float32)})
    np.testing.assert_allclose(got, [3.0, 1.0, np.sqrt(2.0), 2.0], rtol=1e-7)
    assert shaped.shape == (2, 12)
