"""Fused programs whose column blocks, joins or lengths are not the shapes the fusion pass makes.

A program can come from a file (rg.io.read checks it, then builds its types from the inner ops'
rules) or from a user's split inside a loop body. Whatever its block widths, the accelerated
kernel (numba) computes what the program's ops compute, or declines and leaves it to the NumPy
kernel; it never reads past the end of an input. A join is only the pass's last-axis concat,
and the CUDA generator handles the longest program a file may hold.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.cupy.cuda_codegen import CudaKernel, cuda_kernel
from rnngraph.io import InvalidFileError, schema
from rnngraph.ops import elementwise as ew
from rnngraph.ops.fused import Fused
from rnngraph.ops.shape import ColumnBlock, Concat

TANH_TOL = 2e-6   # numba's float32 tanh is a rational approximation (error below 4e-7)


def _graph(x_shape, program, n_exports=1, bias_shape=None):
    """A graph with placeholder x (and b when bias_shape is given) feeding one Fused node of
    `program` ((op, refs) pairs; refs 0 is x, 1 is b), exporting its last n_exports values."""
    g = rg.Graph()
    with g.as_default():
        ins = [rg.placeholder(rg.float32, x_shape, name="x")]
        if bias_shape is not None:
            ins.append(rg.placeholder(rg.float32, bias_shape, name="b"))
    n = len(ins) + len(program)
    exports = tuple(range(n - n_exports, n))
    op = Fused.from_program(program, len(ins), exports, [v.type for v in ins],
                            [("f", "test_fused_bounds.py:1")] * len(program))
    node = g.add_node(op, ins, op._types, "f", "test_fused_bounds.py:1")
    return g, ins, node


def _run(g, fetch, feed, accelerate):
    return rg.Session(g, passes=False, accelerate=accelerate).run(fetch, feed)


def _x(rows, cols):
    return (np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) - 7) / 10


# (program on x [R, 10], the same in NumPy): blocks one column wide, narrower and wider than
# the output, at the end of the row, in either order
CASES = {
    "width_1_broadcasts": (
        [(ColumnBlock(0, 5), (0,)), (ColumnBlock(9, 10), (0,)), (ew.Add(), (1, 2))],
        lambda x: x[:, 0:5] + x[:, 9:10]),
    "width_1_first": (
        [(ColumnBlock(3, 4), (0,)), (ColumnBlock(4, 10), (0,)), (ew.Mul(), (1, 2))],
        lambda x: x[:, 3:4] * x[:, 4:10]),
    "output_narrower_than_a_block": (
        [(ColumnBlock(0, 5), (0,)), (ColumnBlock(9, 10), (0,)), (ew.Tanh(), (2,))],
        lambda x: np.tanh(x[:, 9:10])),
    "blocks_at_the_end": (
        [(ColumnBlock(5, 10), (0,)), (ColumnBlock(9, 10), (0,)), (ColumnBlock(0, 5), (0,)),
         (ew.Mul(), (1, 2)), (ew.Sub(), (4, 3))],
        lambda x: x[:, 5:10] * x[:, 9:10] - x[:, 0:5]),
    "three_widths": (
        [(ColumnBlock(0, 2), (0,)), (ColumnBlock(2, 8), (0,)), (ColumnBlock(8, 9), (0,)),
         (ew.Add(), (2, 3)), (ew.Tanh(), (4,))],
        lambda x: np.tanh(x[:, 2:8] + x[:, 8:9])),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("rows", [1, 4])
def test_odd_block_widths_compute_what_the_ops_compute(case, rows):
    pytest.importorskip("numba")
    program, reference = CASES[case]
    g, (x,), node = _graph([rows, 10], program)
    xv = _x(rows, 10)
    want = reference(xv)
    y = node.outputs[0]
    assert y.shape == want.shape
    plain = _run(g, y, {x: xv}, False)
    fast = _run(g, y, {x: xv}, True)
    np.testing.assert_array_equal(plain, want.astype(np.float32))
    assert fast.shape == want.shape
    np.testing.assert_allclose(fast, want, rtol=0, atol=TANH_TOL)
    # the numba kernel alone (no NumPy fallback): the same values, or declined
    from rnngraph.backends.numba import fused as fused_numba
    kernel = fused_numba.numba_kernel(node.op, node, None)
    if kernel is not None and fused_numba.available():
        got = kernel(xv)
        assert got is not None and got[0].shape == want.shape
        np.testing.assert_allclose(got[0], want, rtol=0, atol=TANH_TOL)


def test_a_width_1_vector_block_broadcasts():
    """A rank-1 input (a bias) read in blocks, one of them one column wide."""
    pytest.importorskip("numba")
    program = [(ColumnBlock(0, 5), (1,)), (ColumnBlock(9, 10), (1,)),
               (ew.Add(), (0, 2)), (ew.Mul(), (4, 3))]
    g, (x, b), node = _graph([3, 5], program, bias_shape=[10])
    xv = _x(3, 5)
    bv = np.linspace(-1, 2, 10).astype(np.float32)
    want = (xv + bv[0:5]) * bv[9]
    for accelerate in (False, True):
        got = _run(g, node.outputs[0], {x: xv, b: bv}, accelerate)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_inputs_narrower_than_the_blocks_at_run_time_never_read_past_their_end():
    """Unknown static widths: the blocks' reach is checked on every call; an input too narrow
    gets the NumPy kernel's behaviour (here its broadcast error), never values from past it."""
    pytest.importorskip("numba")
    program = [(ColumnBlock(0, 5), (0,)), (ColumnBlock(9, 10), (0,)), (ew.Add(), (1, 2))]
    g, (x,), node = _graph([None, None], program)
    for cols in (7, 9, 10, 12):
        _check_narrow(g, x, node, cols)


def _check_narrow(g, x, node, cols):
    xv = _x(4, cols)
    results = []
    for accelerate in (False, True):
        try:
            results.append(_run(g, node.outputs[0], {x: xv}, accelerate))
        except Exception as exc:   # noqa: BLE001 - compared between the two kernels below
            results.append(type(exc))
    if cols >= 10:
        np.testing.assert_array_equal(results[0], xv[:, 0:5] + xv[:, 9:10])
        np.testing.assert_array_equal(results[1], results[0])
    else:
        assert isinstance(results[0], type) and results[1] is results[0]
    from rnngraph.backends.numba import fused as fused_numba
    kernel = fused_numba.numba_kernel(node.op, node, None)
    if kernel is not None and fused_numba.available():
        got = kernel(xv)
        if cols >= 10:
            np.testing.assert_array_equal(got[0], xv[:, 0:5] + xv[:, 9:10])
        else:
            assert got is None   # declined at run time: nothing read


def test_a_split_with_a_width_1_part_in_a_loop_gives_the_same_result_on_every_run():
    """A user's while_loop body adds the parts of split(x, [5, 1]): the 4th run moves to the
    compiled kernels (accelerate="auto") and must still compute the same thing."""
    B = 4
    g = rg.Graph()
    with g.as_default():
        x0 = rg.placeholder(rg.float32, [B, 6], name="x")
        y0 = rg.zeros([B, 5], rg.float32)

        def body(i, x, y):
            a, b = rg.split(x, [5, 1], axis=1)
            return i + 1, x, rg.tanh(a + b) + y
        _, _, out = rg.while_loop(lambda i, x, y: i < 3, body, [rg.constant(0), x0, y0])
    xv = np.arange(B * 6, dtype=np.float32).reshape(B, 6) / 10
    want = 3 * np.tanh(xv[:, :5].astype(np.float64) + xv[:, 5:6])
    sess = rg.Session(g, accelerate="auto")
    runs = [sess.run(out, {x0: xv}) for _ in range(6)]
    for k, got in enumerate(runs, 1):
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * TANH_TOL, err_msg=f"run {k}")


# --- programs from a file ------------------------------------------------------------------------
def test_a_loaded_program_with_a_width_1_block_computes_what_its_ops_say(tmp_path):
    program = [(ColumnBlock(0, 5), (0,)), (ColumnBlock(9, 10), (0,)), (ew.Add(), (1, 2))]
    g, (x,), node = _graph([4, 10], program)
    path = rg.io.save(str(tmp_path / "oob.rg"), graph=g, fetches={"x": x, "y": node.outputs[0]})
    saved = rg.io.read(path)
    xv = _x(4, 10)
    for accelerate in (False, True):
        got = _run(saved.graph, saved.fetches["y"], {saved.fetches["x"]: xv}, accelerate)
        np.testing.assert_array_equal(got, xv[:, 0:5] + xv[:, 9:10])


def test_a_join_along_another_axis_than_1_is_refused_at_load(tmp_path):
    """The pass's join is Concat(1) of [B, H] parts; a file may hold nothing else there (an
    axis-0 concat would be written side by side by the compiled kernels). Axis 1 loads and
    computes the concat."""
    for axis in (0, -1, 2):
        program = [(ew.Tanh(), (0,)), (ew.Neg(), (0,)), (Concat(axis), (1, 2))]
        g, (x,), node = _graph([4, 5, 2] if axis == 2 else [4, 5], program)
        path = rg.io.save(str(tmp_path / f"join{axis}.rg"), graph=g,
                          fetches={"x": x, "y": node.outputs[0]})
        with pytest.raises(InvalidFileError, match="axis 1"):
            rg.io.read(path)
    program = [(ew.Tanh(), (0,)), (ew.Neg(), (0,)), (Concat(1), (1, 2))]
    g, (x,), node = _graph([4, 5], program)
    path = rg.io.save(str(tmp_path / "join.rg"), graph=g, fetches={"x": x, "y": node.outputs[0]})
    saved = rg.io.read(path)
    xv = _x(4, 5)
    want = np.concatenate([np.tanh(xv), -xv], axis=1)
    for accelerate in (False, True):
        got = _run(saved.graph, saved.fetches["y"], {saved.fetches["x"]: xv}, accelerate)
        np.testing.assert_allclose(got, want, rtol=0, atol=TANH_TOL)


def test_the_numba_kernel_declines_a_join_that_is_not_along_the_columns():
    pytest.importorskip("numba")
    from rnngraph.backends.numba import fused as fused_numba
    program = [(ew.Tanh(), (0,)), (ew.Neg(), (0,)), (Concat(0), (1, 2))]
    g, (x,), node = _graph([4, 5], program)
    assert fused_numba.numba_kernel(node.op, node, None) is None
    xv = _x(4, 5)
    got = _run(g, node.outputs[0], {x: xv}, True)
    np.testing.assert_allclose(got, np.concatenate([np.tanh(xv), -xv], axis=0),
                               rtol=1e-6, atol=1e-7)


def _chain(n):
    return _graph([2, 3], [(ew.Tanh(), (k,)) for k in range(n)])


def test_programs_far_longer_than_the_pass_makes_are_refused_at_load(tmp_path):
    """passes/fuse.py groups at most 64 ops (MAX_GROUP) and adds their joins."""
    assert schema.MAX_FUSED < 1000
    g, (x,), node = _chain(1000)
    path = rg.io.save(str(tmp_path / "long.rg"), graph=g, fetches={"x": x, "y": node.outputs[0]})
    with pytest.raises(InvalidFileError):
        rg.io.read(path)


def test_the_longest_loadable_chain_gets_a_cuda_source_and_runs(tmp_path):
    n = schema.MAX_FUSED
    assert n >= 2 * 64   # passes/fuse.MAX_GROUP ops and their joins fit
    g, (x,), node = _chain(n)
    path = rg.io.save(str(tmp_path / "chain.rg"), graph=g, fetches={"x": x, "y": node.outputs[0]})
    saved = rg.io.read(path)
    f = next(m for m in saved.graph.nodes if isinstance(m.op, Fused))
    spec = cuda_kernel(f.op, [v.type for v in f.inputs])
    assert isinstance(spec, CudaKernel)
    assert spec.source.count("(tanh(") == n
    assert f"out0[c0 * 3 + c1] = t{n - 1};" in spec.source
    xv = _x(2, 3)
    want = xv.astype(np.float64)
    for _ in range(n):
        want = np.tanh(want)
    got = _run(saved.graph, saved.fetches["y"], {saved.fetches["x"]: xv}, False)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_cuda_generator_does_not_recurse_per_instruction():
    """A chain deeper than Python's recursion limit allows for one frame per instruction."""
    n = sys.getrecursionlimit() + 500
    g, (x,), node = _chain(n)
    spec = cuda_kernel(node.op, [v.type for v in node.inputs])
    assert isinstance(spec, CudaKernel)
    assert spec.source.count("(tanh(") == n
