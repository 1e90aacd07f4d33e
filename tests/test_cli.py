"""The `rnngraph` command, end to end in subprocesses: the demo, print, render, plan, and clean
one-line failures (non-zero exit, no traceback) on bad arguments and files."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, timeout=120):
    env = dict(os.environ)
    env.pop("RNNGRAPH_DEBUG", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "rnngraph", *map(str, args)], cwd=cwd or ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def assert_clean_failure(proc, code=None, match=None):
    assert proc.returncode != 0, proc.stdout
    if code is not None:
        assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(err.splitlines()) == 1, proc.stderr
    assert err.startswith("rnngraph"), err
    if match:
        assert re.search(match, err), err


def _render_available() -> bool:
    try:
        import rnngraph.render  # noqa: F401
    except ImportError:
        return False
    return True


def _planner_available() -> bool:
    from rnngraph.runtime.session import Session
    return hasattr(Session, "memory_plan")


def _dot_available() -> bool:
    import shutil
    return shutil.which("dot") is not None


# --- the demo --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run("demo", "--epochs", 2, "--units", 16, "--out", out, "--seed", 0, "--lr", 0.01)
    return proc, out


def test_demo_trains_and_writes_its_files(demo_run):
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"test accuracy: ([0-9.]+)%", proc.stdout)
    assert m, proc.stdout
    assert 40.0 < float(m.group(1)) <= 100.0  # 2 short epochs: far above chance (10%)
    assert "epoch 2/2" in proc.stderr  # the progress bar
    assert "loss=" in proc.stderr and "acc=" in proc.stderr
    assert (out / "model.npz").is_file()
    assert str(out / "model.npz") in proc.stdout  # says where
    if _render_available():
        for name in ("graph", "gradients"):
            files = list(out.glob(f"{name}.*"))
            assert files and files[0].stat().st_size > 1000, name
            assert str(files[0]) in proc.stdout
    else:
        assert "not available yet" in proc.stdout
    if _planner_available():
        assert (out / "memory_plan.txt").is_file()
        assert str(out / "memory_plan.txt") in proc.stdout
    else:
        assert "memory plan: not available yet" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_demo_model_prints_and_renders(demo_run, tmp_path):
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr
    p = run("print", out / "model.npz")
    assert p.returncode == 0, p.stderr
    assert "= loop[" in p.stdout and "basic_rnn_cell" in p.stdout and "[grad]" in p.stdout
    assert "# X  (" in p.stdout  # locations shown by default
    if _render_available():
        r = run("render", out / "model.npz", "--grad", "-o", tmp_path / "g.dot")
        assert r.returncode == 0, r.stderr
        text = (tmp_path / "g.dot").read_text()
        assert text.lstrip().startswith(("digraph", "strict digraph")) and "basic_rnn_cell" in text


# --- print / render / plan / examples ----------------------------------------------------------------
def test_help_everywhere():
    for args in ([], ["demo"], ["render"], ["print"], ["plan"], ["examples"]):
        p = run(*args, "--help")
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("usage: rnngraph"), p.stdout
    assert "--cell" in run("demo", "--help").stdout
    assert run("--version").stdout.startswith("rnngraph ")


def test_examples_and_print():
    p = run("examples")
    assert p.returncode == 0
    for name in ("basic_rnn_dynamic", "basic_rnn_static", "lstm", "multi_lstm", "classifier"):
        assert name in p.stdout
    p = run("print", "lstm", "--grad", "--no-locations")
    assert p.returncode == 0, p.stderr
    assert "= loop[" in p.stdout and "lstm_cell" in p.stdout and "[grad]" in p.stdout
    assert "(example" not in p.stdout
    s = run("print", "basic_rnn", "--unroll", "static")
    assert s.returncode == 0 and "= loop[" not in s.stdout and "unstack" in s.stdout


@pytest.mark.skipif(not _render_available(), reason="rnngraph.render not available")
def test_render_examples(tmp_path):
    p = run("render", "basic_rnn_static", "--grad", "-o", tmp_path / "static_grad.dot")
    assert p.returncode == 0, p.stderr
    assert "static_grad.dot" in p.stdout
    assert "digraph" in (tmp_path / "static_grad.dot").read_text()
    if _dot_available():
        p = run("render", "basic_rnn_dynamic", cwd=tmp_path)  # default name in the cwd
        assert p.returncode == 0, p.stderr
        svg = tmp_path / "basic_rnn_dynamic.svg"
        assert svg.is_file() and "<svg" in svg.read_text()


def test_plan(tmp_path):
    p = run("plan", "basic_rnn_dynamic", "--budget", "64MB", "--batch", "4")
    if _planner_available():
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip()
    else:
        assert_clean_failure(p, code=1, match="not available yet")


# --- failures ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,code,match", [
    (["print", "no_such_example"], 1, "neither a file nor a built-in example"),
    (["print", "missing/model.npz"], 1, "no such file"),
    (["print", "basic_rnn_dynamic", "--unroll", "static"], 1, "always dynamic"),
    (["render", "lstm", "--format", "gif"], 2, "invalid choice"),
    (["demo", "--cell", "transformer"], 2, "invalid choice"),
    (["demo", "--units", "-3"], 2, "positive integer"),
    (["demo", "--lr", "0"], 2, "learning rate"),
    (["plan", "lstm", "--budget", "lots"], 2, "invalid size"),
    (["frobnicate"], 2, "invalid choice"),
    (["print"], 2, "required"),
])
def test_bad_arguments_fail_in_one_line(args, code, match):
    assert_clean_failure(run(*args), code=code, match=match)


def test_bad_files_fail_in_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip file")
    assert_clean_failure(run("print", bad), code=1, match="not a valid rnngraph file")
    (tmp_path / "notes.txt").write_text("hello\n")
    assert_clean_failure(run("render", tmp_path / "notes.txt", "-o", tmp_path / "x.svg"), code=1,
                         match="not a valid rnngraph file")
    assert_clean_failure(run("demo", "--epochs", 1, "--out", bad, "--units", 4), code=1)


def test_gpu_request_without_a_gpu_fails_cleanly(tmp_path):
    from rnngraph.runtime.devices import get_device
    try:
        get_device("gpu")
    except RuntimeError:
        pass
    else:
        pytest.skip("a GPU is available here")
    assert_clean_failure(run("demo", "--device", "gpu", "--out", tmp_path), code=1,
                         match="gpu|GPU|CUDA")
