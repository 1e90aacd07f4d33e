"""rnngraph changes nothing global in its host process unless the user opts in (rg.config):
no thread started, no environment variable set, other libraries' thread pools left alone."""
import subprocess
import sys
import textwrap

import pytest

import rnngraph as rg

_TRAIN = textwrap.dedent("""
    import os, threading
    import numpy as np
    env_before = dict(os.environ)
    threads_before = threading.active_count()
    import rnngraph as rg
    {opt_in}
    X = rg.placeholder(rg.float32, [None, 40, 16])
    lengths = rg.placeholder(rg.int32, [None])
    out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(96), X, dtype=rg.float32, sequence_length=lengths)
    loss = rg.reduce_mean(out * out)
    train = rg.train.GradientDescentOptimizer(0.1).minimize(loss)
    feed = {{X: np.random.default_rng(0).standard_normal((32, 40, 16), np.float32),
             lengths: np.random.default_rng(1).integers(1, 41, 32).astype(np.int32)}}
    with rg.Session() as sess:
        for _ in range(6):   # past the switch to the accelerated backend (after 3 runs)
            sess.run(train, feed)
    changed = sorted(k for k in set(os.environ) | set(env_before)
                     if os.environ.get(k) != env_before.get(k))
    print("THREADS", threading.active_count() - threads_before)
    print("ENV", ",".join(changed) or "-")
""")


def _run(opt_in: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _TRAIN.format(opt_in=opt_in)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    return {"threads": int(lines["THREADS"]), "env": lines["ENV"]}


def test_training_starts_no_thread_and_sets_no_environment_variable():
    seen = _run("")
    assert seen == {"threads": 0, "env": "-"}


def test_the_helper_thread_is_an_explicit_opt_in():
    pytest.importorskip("numba")
    from rnngraph.backends.numba import panel_gemm
    if not panel_gemm.available():
        pytest.skip("the numba GEMM needs x86-64 Linux with AVX2 and FMA")
    seen = _run("rg.config.cpu_helper_thread = True")
    assert seen["threads"] == 1   # the helper, which the user asked for


def test_config_rejects_unknown_options_and_wrong_types():
    with pytest.raises(AttributeError, match="cpu_helper_threads"):
        rg.config.cpu_helper_threads = True
    with pytest.raises(TypeError, match="bool"):
        rg.config.cpu_helper_thread = 1
    assert rg.config.cpu_helper_thread is False
