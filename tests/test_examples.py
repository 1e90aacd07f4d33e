"""Every script in examples/ runs (as a subprocess, with this interpreter) and prints what the
reference documents it mirrors say it should."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NUMBER = re.compile(r"-?\d+\.\d*(?:e[-+]?\d+)?|-?\d+(?:e[-+]?\d+)?")


def run_example(name: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # one BLAS thread: beside the test process, spinning BLAS threads can slow a run tenfold
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def printed_arrays(text: str) -> dict:
    """'header:' lines followed by a printed NumPy array -> header -> flat float array."""
    blocks, current = {}, None
    for line in text.splitlines():
        if re.fullmatch(r"[A-Za-z_ 0-9]+:", line.strip()):
            current = line.strip()[:-1]
            blocks[current] = []
        elif current is not None and (line.strip().startswith("[") or not line.strip()):
            blocks[current] += [float(v) for v in NUMBER.findall(line)]
        else:
            current = None
    return {k: np.array(v) for k, v in blocks.items()}


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(["basic_rnn_static.py", "dropout_time_series.py",
                              "dynamic_rnn_variable_length.py",
                              "lstm_sequence_length.py", "multi_rnn_cell.py",
                              "train_sequence_classifier.py"])


def test_basic_rnn_static():
    out = run_example("basic_rnn_static.py")
    arrays = printed_arrays(out)
    for k in ("manual Y0_val", "manual Y1_val", "static_rnn Y0_val", "static_rnn Y1_val"):
        assert arrays[k].shape == (20,), k  # 4 instances x 5 neurons
    assert arrays["outputs_val"].shape == (40,)
    # static_rnn with the hand-made weights prints the same numbers as the manual RNN
    np.testing.assert_allclose(arrays["static_rnn Y0_val"], arrays["manual Y0_val"], atol=2e-6)
    np.testing.assert_allclose(arrays["static_rnn Y1_val"], arrays["manual Y1_val"], atol=2e-6)
    outputs = arrays["outputs_val"].reshape(4, 2, 5)
    np.testing.assert_allclose(outputs[:, 0].ravel(), arrays["manual Y0_val"], atol=2e-6)
    np.testing.assert_allclose(outputs[:, 1].ravel(), arrays["manual Y1_val"], atol=2e-6)
    assert np.all(np.abs(outputs) <= 1.0) and np.any(np.abs(outputs) > 0.5)  # tanh outputs
    assert "final state equals last output: True" in out
    assert "static_rnn matches the manual RNN: True" in out


def test_dynamic_rnn_variable_length():
    out = run_example("dynamic_rnn_variable_length.py")
    arrays = printed_arrays(out)
    outputs = arrays["outputs_val"].reshape(4, 2, 5)
    states = arrays["states_val"].reshape(4, 5)
    np.testing.assert_array_equal(outputs[1, 1], np.zeros(5))  # the zero vector
    assert np.all(outputs[[0, 2, 3]] != 0) and np.all(outputs[1, 0] != 0)
    np.testing.assert_array_equal(states[1], outputs[1, 0])    # t = 0 !!!
    for i in (0, 2, 3):
        np.testing.assert_array_equal(states[i], outputs[i, 1])
    assert "instance 1, step 1 output is a zero vector: True" in out
    assert "instance 1 final state is its t = 0 output: True" in out
    assert "other final states are their t = 1 outputs: True" in out


def test_lstm_sequence_length():
    out = run_example("lstm_sequence_length.py")
    assert "output shape: (5, 10, 7)" in out
    assert "final_state: LSTMStateTuple c (5, 7) h (5, 7)" in out
    for i, n in enumerate([4, 9, 10, 5, 10]):
        assert (f"row {i}: length {n}, non-zero output steps {n}, "
                f"final h == output at step {n - 1}: True") in out


def test_multi_rnn_cell():
    out = run_example("multi_rnn_cell.py")
    assert "static shapes: outputs (3, 6, 256) state [((3, 128), (3, 128)), ((3, 256), " \
           "(3, 256))]" in out
    assert "BasicRNNCell outputs: (3, 6, 16) state: (3, 16)" in out
    assert "MultiRNNCell outputs: (3, 6, 256)" in out
    assert "state: a 2-tuple of LSTMStateTuple, LSTMStateTuple" in out
    assert "state[0].c: (3, 128)  state[0].h: (3, 128)" in out
    assert "state[1].c: (3, 256)  state[1].h: (3, 256)" in out
    assert "outputs[:, -1] == state[1].h: True" in out


def test_examples_are_deterministic():
    """The default session seed fixes the initial weights: two runs print the same numbers."""
    assert run_example("basic_rnn_static.py") == run_example("basic_rnn_static.py")


def test_train_sequence_classifier():
    out = run_example("train_sequence_classifier.py")
    epochs = re.findall(r"^(\d+) Train accuracy: ([\d.]+) Test accuracy: ([\d.]+)$", out, re.M)
    assert len(epochs) == 40, out[-2000:]
    assert float(epochs[-1][2]) >= 0.95  # the demo's target on held-out digits
    reloaded = re.search(r"test accuracy of the reloaded model: ([\d.]+)%", out)
    assert reloaded and abs(float(reloaded.group(1)) / 100 - float(epochs[-1][2])) < 1e-4


def test_dropout_time_series():
    """The book's dropout example: DropoutWrapper over each layer, keep_prob a
    placeholder_with_default fed 0.5 while training; Saver writes and restores the model."""
    out = run_example("dropout_time_series.py")
    mses = [float(m) for m in re.findall(r"^\d+ Training MSE: ([\d.]+)$", out, re.M)]
    assert len(mses) == 4 and max(mses[1:]) < mses[0] / 2, out
    pred = float(re.search(r"prediction MSE \(no dropout at prediction time\): ([\d.]+)",
                           out).group(1))
    t = np.linspace(12.2, 12.2 + 0.1 * 21, 21)[1:]        # the predicted window
    target = t * np.sin(t) / 3 + 2 * np.sin(t * 5)
    assert pred < target.var(), out      # better than predicting the window's mean
