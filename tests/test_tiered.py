"""Session(accelerate=...): new programs start on NumPy kernels and move to the accelerated CPU
backend once hot ("auto"), from the first run (True), or never (False)."""
import logging

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.session import HOT_AFTER


def _lstm():
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 6, 3])
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)
        grads = rg.gradients(rg.reduce_sum(out * out), [X] + rg.trainable_variables())
    feed = {X: np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)}
    return g, grads, feed


def _switches(caplog, accelerate, runs):
    g, grads, feed = _lstm()
    sess = rg.Session(g, accelerate=accelerate)
    seen, results = [], []
    with caplog.at_level(logging.INFO, logger="rnngraph"):
        for i in range(runs):
            caplog.clear()
            results.append(sess.run(grads, feed))
            if any("compiling a program" in r.getMessage() for r in caplog.records):
                seen.append(i)
    return seen, results


def test_auto_compiles_once_the_program_is_hot_with_the_same_results(caplog):
    pytest.importorskip("numba")
    seen, results = _switches(caplog, "auto", HOT_AFTER + 3)
    assert seen == [HOT_AFTER]   # one switch, announced before it compiles, never on run 0
    for r in results[1:]:        # NumPy's tanh/sigmoid against the backend's float32 ones
        for a, b in zip(results[0], r):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("accelerate", [True, False])
def test_true_and_false_never_switch(caplog, accelerate):
    seen, results = _switches(caplog, accelerate, HOT_AFTER + 2)
    assert seen == []
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(a, b)


def test_a_bad_accelerate_value_is_refused():
    with pytest.raises(ValueError, match="accelerate"):
        rg.Session(rg.Graph(), accelerate="sometimes")


def test_programs_lists_what_was_compiled_for_inspection():
    g, grads, feed = _lstm()
    sess = rg.Session(g, accelerate=False)
    assert sess.programs() == []
    sess.run(grads, feed)
    sess.run(grads, feed)   # the same fetches and feeds: the same program
    (prog,) = sess.programs()
    loops = [n for n in prog.graph.nodes if n.op.name == "loop"]
    assert len(loops) == 2   # the forward loop and the gradient loop, after the passes
    assert all(any(inner.op.name == "fused" for inner in n.op.body.nodes) for n in loops)
    sess.run(grads[0], feed)
    assert len(sess.programs()) == 2
