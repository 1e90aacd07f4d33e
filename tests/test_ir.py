"""The IR itself: the printer's text form (golden), the verifier, and last-use freeing."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.ir import VerificationError


def _small_graph():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        w = rg.get_variable("W", [3, 5], initializer=rg.initializers.Zeros())
        with rg.name_scope("layer"):
            y = rg.tanh(x @ w)
        loss = rg.reduce_sum(y * y)
        rg.gradients(loss, [w])
    return g


GOLDEN = """\
%0:f32[?,3] = placeholder    # x
%1:f32[3,5] = variable[zeros()]    # W
%2:f32[?,5] = matmul %0 %1    # layer/MatMul
%3:f32[?,5] = tanh %2    # layer/Tanh
%4:f32[?,5] = mul %3 %3    # Mul
%5:f32[] = reduce_sum[axis=None, keepdims=False] %4    # ReduceSum
%6:f32[] = ones_like %5    # gradients/OnesLike  [grad]
%7:f32[?,5] = broadcast_like %6 %4    # gradients/ReduceSum_grad/BroadcastLike  [grad]
%8:f32[?,5] = mul %7 %3    # gradients/Mul_grad/Mul  [grad]
%9:f32[?,5] = mul %7 %3    # gradients/Mul_grad/Mul_1  [grad]
%10:f32[?,5] = add_n %8 %9    # gradients/layer/Tanh_grad/AddN  [grad]
%11:f32[?,5] = square %3    # gradients/layer/Tanh_grad/Square  [grad]
%12:f32[] = constant[1.]    # gradients/layer/Tanh_grad/Const  [grad]
%13:f32[?,5] = sub %12 %11    # gradients/layer/Tanh_grad/Sub  [grad]
%14:f32[?,5] = mul %10 %13    # gradients/layer/Tanh_grad/Mul  [grad]
%17:f32[3,?] = matrix_transpose %0    # gradients/layer/MatMul_grad/MatrixTranspose_1  [grad]
%18:f32[3,5] = matmul %17 %14    # gradients/layer/MatMul_grad/MatMul_1  [grad]"""


def test_printer_golden():
    # (%15, %16: the cotangent of x, built by the vjp of matmul and pruned, since only W's
    # gradient was asked for)
    assert rg.format_graph(_small_graph(), locations=False) == GOLDEN


def test_printer_names_the_users_line():
    text = rg.format_graph(_small_graph())
    assert "# layer/Tanh  (test_ir.py:" in text


def test_loop_body_prints_indented_under_its_node():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [], name="x")
        rg.while_loop(lambda v: v < 10.0, lambda v: v * 2.0, [x])
    lines = rg.format_graph(g, locations=False).splitlines()
    loop = next(i for i, line in enumerate(lines) if " = loop[" in line)
    assert "carried=(%0)" in lines[loop]
    assert lines[loop + 1].startswith("    { while(")
    assert any(line.startswith("        ") and "= mul " in line for line in lines[loop + 2:])
    assert lines[-1] == "    }" and "return cond:" in lines[-2]


def test_verifier_accepts_what_builders_make():
    rg.verify(_small_graph())


def _ab():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float32, [2], name="a")
        b = rg.tanh(a, name="b")
        c = rg.exp(b, name="c")
    return g, a, b, c


def test_verifier_rejects_a_cycle():
    g, a, b, c = _ab()
    b.node.inputs = [c]  # b now reads c, which reads b
    with pytest.raises(VerificationError, match="b reads c:0 before it is defined"):
        rg.verify(g)


def test_verifier_rejects_a_value_of_another_graph():
    g, a, b, c = _ab()
    other = rg.Graph()
    with other.as_default():
        stranger = rg.placeholder(rg.float32, [2], name="stranger")
    c.node.inputs = [stranger]
    with pytest.raises(VerificationError, match="c reads stranger:0 from another graph"):
        rg.verify(g)


def test_verifier_rejects_outputs_that_break_the_ops_rule():
    g, a, b, c = _ab()
    c.type = rg.TensorType((2,), "int32")
    with pytest.raises(VerificationError, match="do not match its op's rule"):
        rg.verify(g)


def test_verifier_rejects_a_duplicate_name():
    g, a, b, c = _ab()
    c.node.name = "b"
    with pytest.raises(VerificationError, match="duplicate node name b"):
        rg.verify(g)


def test_executor_frees_intermediates_after_their_last_use():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [1000], name="x")
        v = x
        for _ in range(200):  # a long chain: each value is read once, by the next node
            v = rg.tanh(v) * 0.5
    sess = rg.Session(g, passes=False)
    prog = sess.compile([v], [x])
    peak = []

    def observe(node, env):
        peak.append(sum(a is not None for a in env))

    (out,) = prog.run([np.ones(1000)], observer=observe)
    assert len(peak) == 2 * 200 + 200  # tanh, constant and mul per link
    # at most the input, a constant, the value being consumed and the one just made are alive
    assert max(peak) <= 4, max(peak)
    want = np.ones(1000)
    for _ in range(200):
        want = np.tanh(want) * 0.5
    np.testing.assert_allclose(out, want)


class _Spy(np.ndarray):
    """An array that counts how many of its kind are alive (ndarray takes no weak references)."""
    alive = 0
    most = 0

    def __array_finalize__(self, obj):
        _Spy.alive += 1
        _Spy.most = max(_Spy.most, _Spy.alive)

    def __del__(self):
        _Spy.alive -= 1


def test_generated_program_frees_after_last_use_and_names_a_failing_node():
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, [None], name="x")
        v = x
        for _ in range(50):
            v = rg.tanh(v) * 0.5
        bad = rg.reshape(v, [7], name="bad_reshape")  # 10 elements at run time
    sess = rg.Session(g, passes=False)
    prog = sess.compile([v], [x])
    _Spy.alive = _Spy.most = 0
    (out,) = prog.run([np.ones(10).view(_Spy)])  # the generated straight-line code
    observed = prog.run([np.ones(10)], observer=lambda node, env: None)[0]
    np.testing.assert_array_equal(np.asarray(out), observed)
    assert _Spy.most <= 5, _Spy.most  # not 100 values alive at once
    del out
    with pytest.raises(rg.errors.ExecutionError, match="reshape 'bad_reshape'.*failed"):
        sess.compile([bad], [x]).run([np.ones(10)])
