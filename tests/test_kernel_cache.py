"""The numba backend's on-disk kernel cache: it never imports a file it did not just generate,
and it stays within its size limit, least recently used modules going first."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

_RUN = textwrap.dedent("""
    import numpy as np
    import rnngraph as rg
    X = rg.placeholder(rg.float32, [None, 4, 3])
    out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(5), X, dtype=rg.float32)   # fused gate kernels
    with rg.Session(seed=3, accelerate=True) as sess:
        got = sess.run(out, {X: np.arange(24, dtype=np.float32).reshape(2, 4, 3) / 10})
    print(repr(got.tolist()))
""")


def _run(cache: str) -> str:
    env = dict(os.environ, RNNGRAPH_CACHE_DIR=cache)
    proc = subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_a_planted_file_in_the_cache_is_never_run(tmp_path):
    cache = str(tmp_path / "cache")
    first = _run(cache)
    modules = [os.path.join(root, f) for root, _, files in os.walk(cache) for f in files
               if f.startswith("fused_") and f.endswith(".py")]
    assert modules, "the kernel was not cached as a module"
    marker = tmp_path / "planted-code-ran"
    for path in modules:   # what someone with write access to the cache might leave there
        with open(path, "w") as f:
            f.write(f"open({str(marker)!r}, 'w').write('x')\n")
    assert _run(cache) == first
    assert not marker.exists()
    for path in modules:   # rewritten with what rnngraph generated
        assert "planted" not in open(path).read()


def test_the_cache_is_trimmed_least_recently_used_first(tmp_path, monkeypatch):
    from rnngraph.backends.numba import fused
    import rnngraph as rg
    monkeypatch.setenv("RNNGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fused, "CACHE_BYTES", 1)   # room for the newest module only
    monkeypatch.setattr(fused, "_KERNELS", {})
    folder = os.path.join(str(tmp_path), "numba")
    seen = set()
    cells = [rg.nn.BasicRNNCell, rg.nn.GRUCell, rg.nn.LSTMCell]   # different gate kernels
    for make in cells:
        g = rg.Graph()
        with g.as_default():   # a loop body, where elementwise chains fuse
            X = rg.placeholder(rg.float32, [None, 3, 4])
            out, _ = rg.nn.dynamic_rnn(make(4), X, dtype=rg.float32)
        feed = {X: np.ones((2, 3, 4), np.float32)}
        # (a compiled loop would be one more module, importing the gate kernel's)
        with rg.Session(g, accelerate=True, compile_loops=False) as sess:
            got = sess.run(out, feed)
        with rg.Session(g, accelerate=False) as sess:   # NumPy kernels: the reference
            np.testing.assert_allclose(got, sess.run(out, feed), rtol=1e-5, atol=1e-6)
        stems = {f.split(".", 1)[0] for root, _, files in os.walk(folder) for f in files
                 if f.startswith("fused_")}
        assert len(stems) == 1, stems   # the older modules (and numba's files for them) went
        seen |= stems
    assert len(seen) >= len(cells)   # each cell made modules of its own, which trimmed the last
