"""Gradients through loops nested in loop bodies (a scan in a scan's fn, a while_loop in a
while_loop's body, three deep): values and gradients against NumPy written here (central
differences of a NumPy forward pass), tests/gradcheck.py, and the same program unrolled
statically; inner loops whose step count changes from one outer step to the next; and runs
under a memory budget on the simulated device."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import ExecutionError

from gradcheck import check_gradients

T, N = 3, 4


def numeric_grad(f, args: list, k: int, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the NumPy function f(*args) with respect to args[k]."""
    args = [np.array(a, dtype=np.float64) for a in args]
    grad = np.zeros_like(args[k])
    flat = args[k].reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = f(*args)
        flat[i] = orig - eps
        minus = f(*args)
        flat[i] = orig
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


# --- a scan in a scan's fn ---------------------------------------------------------------------
def np_nested_scan(x, w, u, inner_reverse=False):
    """Outer scan over the rows of x; per row, a = tanh(c + u) (an outer-body value the inner
    fn reads) and an inner scan h <- tanh(h w + a x[t, i]) over the row's elements, started
    from the outer carry; the row's output is the sum of the inner steps' h."""
    c, ys = 0.1, []
    for t in range(x.shape[0]):
        a = np.tanh(c + u)
        h, s = c, 0.0
        order = range(x.shape[1] - 1, -1, -1) if inner_reverse else range(x.shape[1])
        for i in order:
            h = np.tanh(h * w + a * x[t, i])
            s += h
        c = h
        ys.append(s)
    return np.array(ys), c


def np_nested_scan_loss(x, w, u, inner_reverse=False):
    ys, c = np_nested_scan(x, w, u, inner_reverse)
    return float(np.sum(ys * np.arange(1, len(ys) + 1)) + 2 * c)


def nested_scan(x, w, u, inner_reverse=False):
    def outer(c, row):
        a = rg.tanh(c + u)

        def inner(h, e):
            h = rg.tanh(h * w + a * e)
            return h, h
        h_final, hs = rg.lax_scan(inner, c, row, reverse=inner_reverse)
        return h_final, rg.reduce_sum(hs)
    return rg.lax_scan(outer, rg.constant(np.array(0.1)), x)


def static_nested_scan(x, w, u, inner_reverse=False):
    """The same program unrolled with Python loops (one group of nodes per step)."""
    c, ys = rg.constant(np.array(0.1)), []
    for t in range(T):
        a = rg.tanh(c + u)
        h, hs = c, []
        order = range(N - 1, -1, -1) if inner_reverse else range(N)
        for i in order:
            h = rg.tanh(h * w + a * x[t, i])
            hs.append(h)
        c = h
        ys.append(rg.add_n(hs))
    return c, rg.stack(ys)


def scan_loss(final, ys):
    return rg.reduce_sum(ys * rg.constant(np.arange(1.0, T + 1))) + 2.0 * final


@pytest.mark.parametrize("inner_reverse", [False, True])
def test_nested_scan_values_and_gradients_match_numpy(inner_reverse):
    rng = np.random.default_rng(0)
    xv, wv, uv = rng.standard_normal((T, N)), 0.7, 0.3
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, (T, N), name="x")
        w = rg.Variable(wv, name="w", dtype=rg.float64)      # read only by the inner loop's fn
        u = rg.placeholder(rg.float64, (), name="u")
        final, ys = nested_scan(x, w, u, inner_reverse)
        loss = scan_loss(final, ys)
        grads = rg.gradients(loss, [x, w, u])
        rg.verify(g)
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
        got_ys, got_loss, *got = sess.run([ys, loss] + grads, {x: xv, u: uv})
    want_ys, _ = np_nested_scan(xv, wv, uv, inner_reverse)
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12)
    args = [xv, wv, uv]
    f = lambda *a: np_nested_scan_loss(*a, inner_reverse=inner_reverse)  # noqa: E731
    assert got_loss == pytest.approx(f(*args), rel=1e-12)
    for k, name in enumerate(["x", "w", "u"]):
        np.testing.assert_allclose(got[k], numeric_grad(f, args, k), rtol=1e-6, atol=1e-8,
                                   err_msg=f"d loss / d {name}")


def test_nested_scan_gradcheck():
    rng = np.random.default_rng(1)
    check_gradients(lambda x, w, u: nested_scan(x, w, u)[1],
                    {"x": rng.standard_normal((T, N)), "w": 0.6, "u": -0.2})


@pytest.mark.parametrize("inner_reverse", [False, True])
def test_nested_scan_matches_static_unrolling(inner_reverse):
    rng = np.random.default_rng(2)
    xv, uv = rng.standard_normal((T, N)), 0.4
    results = []
    for build in (nested_scan, static_nested_scan):
        g = rg.Graph()
        with g.as_default():
            x = rg.placeholder(rg.float64, (T, N), name="x")
            w = rg.Variable(0.8, name="w", dtype=rg.float64)
            u = rg.placeholder(rg.float64, (), name="u")
            final, ys = build(x, w, u, inner_reverse)
            loss = scan_loss(final, ys)
            sess = rg.Session(g)
            sess.run(rg.global_variables_initializer())
            results.append(sess.run([final, ys] + rg.gradients(loss, [x, w, u]), {x: xv, u: uv}))
    for dynamic, static in zip(*results):
        np.testing.assert_allclose(dynamic, static, rtol=1e-12, atol=1e-14)


def test_inner_loop_variable_created_inside_the_inner_fn():
    """A variable the inner fn makes itself (get_variable, as a cell does) is shared by every
    inner and outer step; its gradient sums over all of them."""
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((T, N))
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, (T, N), name="x")

        def outer(c, row):
            def inner(h, e):
                v = rg.get_variable("v", shape=(), dtype=rg.float64,
                                    initializer=rg.constant_initializer(0.5))
                h = rg.tanh(h * v + e)
                return h, h
            return rg.lax_scan(inner, c, row)[0], c
        final, _ = rg.lax_scan(outer, rg.constant(np.array(0.1)), x)
        (v,) = rg.global_variables()
        gv, gx = rg.gradients(final, [v, x])
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
        got = sess.run([final, gv, gx], {x: xv})

    def f(x, v):
        h = 0.1
        for t in range(T):
            for i in range(N):
                h = np.tanh(h * v + x[t, i])
        return h
    assert got[0] == pytest.approx(f(xv, 0.5), rel=1e-12)
    assert got[1] == pytest.approx(numeric_grad(f, [xv, 0.5], 1), rel=1e-6)
    np.testing.assert_allclose(got[2], numeric_grad(f, [xv, 0.5], 0), rtol=1e-6, atol=1e-9)


# --- batched matrix state: the shape a user's RNN-in-a-loop has ------------------------------
B, H = 2, 3


def nested_matrix_scan(x, w):
    """x [T, N, B, H]: per row, an inner tanh RNN h <- tanh(h W + x_i) over N steps."""
    def outer(c, row):
        def inner(h, e):
            h = rg.tanh(rg.matmul(h, w) + e)
            return h, h
        h_final, hs = rg.lax_scan(inner, c, row)
        return h_final, rg.reduce_sum(hs * hs, axis=0)
    return rg.lax_scan(outer, rg.zeros((B, H), rg.float64), x)


def test_nested_matrix_scan_gradcheck_and_static_unrolling():
    rng = np.random.default_rng(4)
    xv, wv = rng.standard_normal((T, N, B, H)), rng.standard_normal((H, H)) * 0.5
    sym, _ = check_gradients(lambda x, w: list(nested_matrix_scan(x, w)), {"x": xv, "w": wv})
    # the same program unrolled in NumPy, differentiated by hand (BPTT through both levels)
    weights = np.random.default_rng(0)     # check_gradients' weights of final and ys
    R_final, R_ys = weights.standard_normal((B, H)), weights.standard_normal((T, B, H))
    hs = np.zeros((T, N + 1, B, H))
    for t in range(T):
        hs[t, 0] = hs[t - 1, N] if t else 0.0
        for i in range(N):
            hs[t, i + 1] = np.tanh(hs[t, i] @ wv + xv[t, i])
    dh, dw, dx = R_final.copy(), np.zeros_like(wv), np.zeros_like(xv)
    for t in reversed(range(T)):
        for i in reversed(range(N)):
            dh = dh + 2 * hs[t, i + 1] * R_ys[t]      # the row output: sum over i of h * h
            dz = dh * (1 - hs[t, i + 1] ** 2)
            dx[t, i] = dz
            dw += hs[t, i].T @ dz
            dh = dz @ wv.T
    np.testing.assert_allclose(sym["x"], dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sym["w"], dw, rtol=1e-10, atol=1e-12)


# --- while_loop in a while_loop's body ---------------------------------------------------------
def nested_while(w, x0, inner_count):
    """while i < 3: (while j < inner_count(i): a <- tanh(a w + 0.1 j + 0.5 i)); i += 1."""
    def outer_body(i, a):
        fi = rg.cast(i, rg.float64)     # an outer-loop value the inner body reads

        def inner_body(j, a):
            return j + 1, rg.tanh(a * w + rg.cast(j, rg.float64) * 0.1 + fi * 0.5)
        _, a = rg.while_loop(lambda j, a: j < inner_count(i), inner_body,
                             [rg.constant(0), a])
        return i + 1, a
    return rg.while_loop(lambda i, a: i < 3, outer_body, [rg.constant(0), x0])[1]


def np_nested_while(w, x0, inner_count):
    a = x0
    for i in range(3):
        for j in range(inner_count(i)):
            a = np.tanh(a * w + 0.1 * j + 0.5 * i)
    return a


@pytest.mark.parametrize("counts", ["fixed", "per_outer_step"])
def test_nested_while_loop_values_and_gradients(counts):
    # per_outer_step: the inner loop runs i + 1 steps, a different number in each outer step
    rg_count = (lambda i: 2) if counts == "fixed" else (lambda i: i + 1)
    np_count = (lambda i: 2) if counts == "fixed" else (lambda i: i + 1)
    g = rg.Graph()
    with g.as_default():
        w = rg.placeholder(rg.float64, (), name="w")
        x0 = rg.placeholder(rg.float64, (), name="x0")
        a = nested_while(w, x0, rg_count)
        gw, gx0 = rg.gradients(a, [w, x0])
        rg.verify(g)
        got = rg.Session(g).run([a, gw, gx0], {w: 0.9, x0: 0.4})
    f = lambda w, x0: np_nested_while(w, x0, np_count)  # noqa: E731
    assert got[0] == pytest.approx(f(0.9, 0.4), rel=1e-12)
    assert got[1] == pytest.approx(numeric_grad(f, [0.9, 0.4], 0), rel=1e-6)
    assert got[2] == pytest.approx(numeric_grad(f, [0.9, 0.4], 1), rel=1e-6)


def test_inner_loop_with_varying_step_count_is_run_again_in_the_backward_body():
    """Its per-step residual stacks cannot be stacked by the outer loop (their lengths differ),
    so the outer backward body runs a copy of it forward and reads the copy's stacks; an inner
    loop with the same step count in every outer step has its stacks saved instead."""
    for count, again in [(lambda i: i + 1, True), (lambda i: 4, False)]:
        g = rg.Graph()
        with g.as_default():
            w = rg.placeholder(rg.float64, (), name="w")
            a = nested_while(w, rg.constant(np.array(0.4)), count)
            rg.gradients(a, [w])
        (bwd,) = [n for n in g.nodes if n.op.name == "loop" and n.is_gradient]
        inner = [n.name for n in bwd.op.body.nodes if n.op.name == "loop"]
        assert any(name.endswith("/forward") for name in inner) == again, inner
        assert len(inner) == 1 + again


def test_gradcheck_of_a_nested_while_loop_with_varying_inner_counts():
    def build(w, x0):
        return nested_while(w, x0, lambda i: i + 1)
    check_gradients(build, {"w": 0.7, "x0": -0.3})


def test_scan_inside_a_while_loop():
    """The outer while_loop's body scans over an array of the enclosing graph (captured)."""
    rng = np.random.default_rng(5)
    xv = rng.standard_normal(N)
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, (N,), name="x")
        w = rg.placeholder(rg.float64, (), name="w")

        def body(i, a):
            def step(h, e):
                h = rg.tanh(h * w + e)
                return h, h
            a, _ = rg.lax_scan(step, a, x)
            return i + 1, a
        a = rg.while_loop(lambda i, a: i < 3, body, [rg.constant(0), rg.constant(np.array(0.2))])[1]
        gx, gw = rg.gradients(a, [x, w])
        got = rg.Session(g).run([a, gx, gw], {x: xv, w: 0.6})

    def f(x, w):
        a = 0.2
        for _ in range(3):
            for e in x:
                a = np.tanh(a * w + e)
        return a
    assert got[0] == pytest.approx(f(xv, 0.6), rel=1e-12)
    np.testing.assert_allclose(got[1], numeric_grad(f, [xv, 0.6], 0), rtol=1e-6, atol=1e-9)
    assert got[2] == pytest.approx(numeric_grad(f, [xv, 0.6], 1), rel=1e-6)


def test_dynamic_rnn_inside_a_scan_matches_static_rnn():
    """An LSTM run by dynamic_rnn (with sequence_length: inactive rows) per row of an outer
    scan, against static_rnn in the same place; same weights, same values and gradients."""
    steps, batch, n, d, h = 3, 2, 4, 3, 5
    rng = np.random.default_rng(9)
    xv, lengths = rng.standard_normal((steps, batch, n, d)), np.array([4, 2])
    results = []
    for unroll in ("dynamic", "static"):
        g = rg.Graph()
        with g.as_default():
            x = rg.placeholder(rg.float64, xv.shape, name="x")
            seq_len = rg.placeholder(rg.int32, (batch,), name="seq_len")
            cell = rg.nn.rnn_cell.LSTMCell(h, dtype=rg.float64)

            def outer(c, row):
                state = rg.nn.rnn_cell.LSTMStateTuple(c, c)
                with rg.variable_scope("rnn", reuse=rg.AUTO_REUSE):
                    if unroll == "dynamic":
                        out, state = rg.nn.dynamic_rnn(cell, row, sequence_length=seq_len,
                                                       initial_state=state)
                    else:
                        out, state = rg.nn.static_rnn(cell, rg.unstack(row, axis=1),
                                                      sequence_length=seq_len,
                                                      initial_state=state)
                        out = rg.stack(out, axis=1)
                return state.h, rg.reduce_sum(out * out)
            final, ys = rg.lax_scan(outer, rg.zeros((batch, h), rg.float64), x)
            loss = rg.reduce_sum(ys) + rg.reduce_sum(final)
            variables = rg.trainable_variables()
            grads = rg.gradients(loss, [x] + variables)
            sess = rg.Session(g)
            for i, v in enumerate(variables):
                sess.run(rg.assign(v, np.random.default_rng(i).standard_normal(v.shape) * 0.3))
            results.append(sess.run([loss] + grads, {x: xv, seq_len: lengths}))
    assert len(results[0]) == 4   # loss, x, kernel, bias
    for dynamic, static in zip(*results):
        np.testing.assert_allclose(dynamic, static, rtol=1e-10, atol=1e-12)


# --- three deep --------------------------------------------------------------------------------
def three_deep_scan(x, w):
    def l1(h, xa):
        def l2(h, xb):
            def l3(h, xc):
                h = rg.tanh(h * w + xc)
                return h, h
            h, hs = rg.lax_scan(l3, h, xb)
            return h, rg.reduce_sum(hs)
        h, ys = rg.lax_scan(l2, h, xa)
        return h, ys
    return rg.lax_scan(l1, rg.constant(np.array(0.2)), x)


def test_three_deep_scan_matches_numpy_and_gradcheck():
    rng = np.random.default_rng(6)
    xv = rng.standard_normal((2, 3, 2))

    def f(x, w):
        h, total = 0.2, 0.0
        for a in range(2):
            for b in range(3):
                for c in range(2):
                    h = np.tanh(h * w + x[a, b, c])
                    total += (a + 1) * (b + 2) * h
        return total
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, xv.shape, name="x")
        w = rg.placeholder(rg.float64, (), name="w")
        _, ys = three_deep_scan(x, w)        # ys [2, 3]: per (a, b), the sum over c of h
        weights = rg.constant(np.outer([1.0, 2.0], [2.0, 3.0, 4.0]))
        loss = rg.reduce_sum(ys * weights)
        gx, gw = rg.gradients(loss, [x, w])
        rg.verify(g)
        got = rg.Session(g).run([loss, gx, gw], {x: xv, w: 0.8})
    assert got[0] == pytest.approx(f(xv, 0.8), rel=1e-12)
    np.testing.assert_allclose(got[1], numeric_grad(f, [xv, 0.8], 0), rtol=1e-6, atol=1e-9)
    assert got[2] == pytest.approx(numeric_grad(f, [xv, 0.8], 1), rel=1e-6)
    check_gradients(lambda x, w: three_deep_scan(x, w)[1], {"x": xv, "w": 0.8})


def test_three_deep_while_loops_with_varying_counts():
    """Counts that change with the enclosing loops' counters at both inner levels."""
    def build(w, x0):
        def l1(i, a):
            def l2(j, a):
                def l3(k, a):
                    return k + 1, rg.tanh(a * w + rg.cast(k + j, rg.float64) * 0.1)
                a = rg.while_loop(lambda k, a: k < j + 1, l3, [rg.constant(0), a])[1]
                return j + 1, a
            a = rg.while_loop(lambda j, a: j < i + 1, l2, [rg.constant(0), a])[1]
            return i + 1, a
        return rg.while_loop(lambda i, a: i < 3, l1, [rg.constant(0), x0])[1]

    def f(w, x0):
        a = x0
        for i in range(3):
            for j in range(i + 1):
                for k in range(j + 1):
                    a = np.tanh(a * w + 0.1 * (k + j))
        return a
    g = rg.Graph()
    with g.as_default():
        w = rg.placeholder(rg.float64, (), name="w")
        x0 = rg.placeholder(rg.float64, (), name="x0")
        a = build(w, x0)
        gw, gx0 = rg.gradients(a, [w, x0])
        rg.verify(g)
        got = rg.Session(g).run([a, gw, gx0], {w: 0.9, x0: 0.4})
    assert got[0] == pytest.approx(f(0.9, 0.4), rel=1e-12)
    assert got[1] == pytest.approx(numeric_grad(f, [0.9, 0.4], 0), rel=1e-6)
    assert got[2] == pytest.approx(numeric_grad(f, [0.9, 0.4], 1), rel=1e-6)
    check_gradients(build, {"w": 0.6, "x0": 0.1})


# --- the graph after gradients ----------------------------------------------------------------
def test_gradients_twice_over_one_nested_graph():
    """A second rg.gradients call (another loss) reuses and extends the saved stacks; the
    first call's gradient nodes stay valid."""
    rng = np.random.default_rng(7)
    xv, wv, uv = rng.standard_normal((T, N)), 0.7, 0.3
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, (T, N), name="x")
        w = rg.placeholder(rg.float64, (), name="w")
        u = rg.placeholder(rg.float64, (), name="u")
        final, ys = nested_scan(x, w, u)
        first = rg.gradients(scan_loss(final, ys), [x, w, u])
        second = rg.gradients(rg.reduce_sum(ys * ys), [w])
        rg.verify(g)
        got = rg.Session(g).run(first + second, {x: xv, w: wv, u: uv})
    args = [xv, wv, uv]
    for k in range(3):
        np.testing.assert_allclose(got[k], numeric_grad(np_nested_scan_loss, args, k),
                                   rtol=1e-6, atol=1e-8)
    squares = lambda *a: float(np.sum(np_nested_scan(*a)[0] ** 2))  # noqa: E731
    assert got[3] == pytest.approx(numeric_grad(squares, args, 1), rel=1e-6)


# --- under a memory budget -------------------------------------------------------------------
def matrix_program():
    rng = np.random.default_rng(8)
    xv, wv = rng.standard_normal((6, 5, B, 8)), rng.standard_normal((8, 8)) * 0.3
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float64, xv.shape, name="x")
        w = rg.Variable(wv, name="w")

        def outer(c, row):
            def inner(h, e):
                h = rg.tanh(rg.matmul(h, w) + e)
                return h, h
            h_final, hs = rg.lax_scan(inner, c, row)
            return h_final, rg.reduce_sum(hs, axis=0)
        final, ys = rg.lax_scan(outer, rg.zeros((B, 8), rg.float64), x)
        loss = rg.reduce_sum(ys * ys) + rg.reduce_sum(final)
        fetches = [loss] + rg.gradients(loss, [x, w])
    return g, fetches, {x: xv}


def ragged_while_program():
    g = rg.Graph()
    with g.as_default():
        w = rg.placeholder(rg.float64, (), name="w")
        x0 = rg.placeholder(rg.float64, (), name="x0")
        a = nested_while(w, x0, lambda i: i + 1)
        fetches = [a] + rg.gradients(a, [w, x0])
    return g, fetches, {w: 0.9, x0: 0.4}


def run_under_budget(budget, strategy="auto", program=matrix_program):
    g, fetches, feed = program()
    with g.as_default():
        free = rg.Session(g)
        free.run(rg.global_variables_initializer())
        want = free.run(fetches, feed)
        sess = rg.Session(g, device=rg.SimulatedDevice(), memory_budget=budget,
                          memory_strategy=strategy)
        sess.run(rg.global_variables_initializer())
        plan = sess.memory_plan(fetches, feed)
        got = sess.run(fetches, feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    return plan


def test_memory_budget_that_fits_gives_the_same_gradients():
    """The planner plans the outermost loop: the inner loop's residual stacks are saved
    tensors of the outer loop (one row per outer step) and listed in its plan."""
    plan = str(run_under_budget(10 * 2**20))
    assert "loop scan (built at" in plan and "scan/scan:" in plan and "(fits)" in plan


def test_memory_budget_met_by_recomputing_gives_the_same_gradients():
    """Recomputing the outer loop's saved stacks runs the inner loops again: same values."""
    plan = run_under_budget(200, strategy="recompute")
    saved = [line for line in str(plan).splitlines() if line.strip().startswith("scan/scan:")]
    assert saved and all("recompute" in line.split() for line in saved), plan   # (placement)
    assert plan.saved and all(s.placement == "recompute" for s in plan.saved)


def test_memory_budget_with_inner_counts_varying_keeps_the_outer_stacks_on_the_device():
    """The outer while_loop's step count is unknown before it runs: its saved tensors stay on
    the device (as for any while_loop); the inner loop is run again by the backward body."""
    plan = str(run_under_budget(50, program=ragged_while_program))
    assert "number of steps unknown before running" in plan


def test_memory_budget_that_offloads_gives_the_same_gradients():
    plan = str(run_under_budget(4000))
    assert "host" in plan


# --- saved and loaded ---------------------------------------------------------------------------
@pytest.mark.parametrize("program", [ragged_while_program, matrix_program],
                         ids=["ragged_while", "matrix_scan"])
def test_saved_and_loaded_nested_gradients_run_the_same(program, tmp_path):
    """The file keeps the backward bodies (the copy of an inner loop run again included)."""
    g, fetches, feed = program()
    with g.as_default():
        sess = rg.Session(g)
        sess.run(rg.global_variables_initializer())
        want = sess.run(fetches, feed)
        path = rg.io.save(str(tmp_path / "nested.rg"), g, session=sess,
                          fetches={f"f{i}": f for i, f in enumerate(fetches)})
    saved = rg.io.read(path)
    rg.verify(saved.graph)
    feed = {saved.graph.get_value(k.name): v for k, v in feed.items()}
    got = saved.session().run([saved.fetches[f"f{i}"] for i in range(len(fetches))], feed)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
