"""The training loop a person watches (rnngraph/demo.py with train/history.py and Saver): one
line per epoch, history.csv, the PNG plot, checkpoints, --resume continuing bit for bit, and
--dropout training to the accuracy it reaches without dropout (minus at most one point)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("sklearn")   # the demo's digits

import rnngraph as rg  # noqa: E402
from rnngraph.demo import build_classifier, load_digit_sequences, run_demo, train  # noqa: E402


def test_dropout_02_trains_to_the_accuracy_without_dropout_minus_one_point():
    """The demo's model (150 units) for 8 epochs at lr 0.003: a short run, so this takes
    seconds; the same holds for the demo's default 40 epochs (97.2% with --dropout 0.2,
    96.9% without)."""
    data = load_digit_sequences(seed=0)
    acc = {}
    for rate in (0.0, 0.2):
        model = build_classifier(n_neurons=150, learning_rate=0.003, dropout=rate)
        result = train(model, data, n_epochs=8, batch_size=64, seed=0, progress=False)
        acc[rate] = result.test_accuracy
    assert acc[0.2] >= acc[0.0] - 0.01, acc
    assert acc[0.0] > 0.85   # both really trained


def test_evaluation_keeps_every_unit():
    data = load_digit_sequences(seed=0)
    model = build_classifier(n_neurons=8, learning_rate=0.01, dropout=0.5)
    sess = rg.Session(model.graph)
    feed = {model.X: data.X_test[:50], model.y: data.y_test[:50]}
    a, b = sess.run(model.logits, feed), sess.run(model.logits, feed)
    np.testing.assert_array_equal(a, b)        # keep_prob defaults to 1: no random masks
    c = sess.run(model.logits, {**feed, model.keep_prob: 0.5})
    assert not np.array_equal(a, c)


def _demo(out, epochs, **kw):
    lines = []
    result = run_demo(cell="basic", units=12, epochs=epochs, out=out, seed=0,
                      learning_rate=0.01, progress=False, log=lines.append, accelerate=False,
                      **kw)
    return result, lines


def test_the_demo_logs_each_epoch_writes_history_plot_checkpoints_and_resumes(tmp_path):
    a, lines = _demo(tmp_path / "a", 2, dropout=0.2, checkpoint_every=1)
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epoch_lines] == ["1/2", "2/2"]
    assert all("loss" in ln and "test_accuracy" in ln for ln in epoch_lines)
    with open(tmp_path / "a" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(a.result.test_accuracy)
    try:
        import matplotlib  # noqa: F401
        png = (tmp_path / "a" / "history.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert any("matplotlib is not installed" in ln for ln in lines)
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("*.rgckpt"))
    assert ckpts == ["model.ckpt-1.rgckpt", "model.ckpt-2.rgckpt"]

    # resume to 3 epochs: the same weights as 3 epochs in one go
    resumed, lines = _demo(tmp_path / "a", 3, dropout=0.2, checkpoint_every=1, resume=True)
    assert any(ln.startswith("  resume from") for ln in lines)
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == ["3/3"]
    with open(tmp_path / "a" / "history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    straight, _ = _demo(tmp_path / "b", 3, dropout=0.2, checkpoint_every=5)
    sa, sb = resumed.result.session, straight.result.session
    for v in rg.global_variables(resumed.model.graph):
        np.testing.assert_array_equal(sa.read_variable(v.node.name),
                                      sb.read_variable(v.node.name))
    assert resumed.result.test_accuracy == straight.result.test_accuracy


def test_resume_without_a_checkpoint_or_with_other_options_says_so(tmp_path):
    with pytest.raises(RuntimeError, match="no checkpoint"):
        _demo(tmp_path / "none", 2, resume=True)
    _demo(tmp_path / "c", 1)
    with pytest.raises(RuntimeError, match="ask for more than 1 --epochs"):
        _demo(tmp_path / "c", 1, resume=True)
    with pytest.raises(RuntimeError, match="options of the first run"):
        run_demo(cell="basic", units=20, epochs=2, out=tmp_path / "c", seed=0, progress=False,
                 log=lambda s: None, resume=True)


def test_logdir_writes_tensorboard_events_with_each_epochs_metrics(tmp_path):
    pytest.importorskip("tensorboardX")
    _demo(tmp_path / "d", 2, logdir=tmp_path / "logs")
    events = list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(tmp_path / "logs"))
    acc.Reload()
    with open(tmp_path / "d" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    got = [(e.step, e.value) for e in acc.Scalars("test_accuracy")]
    assert got == [(int(r["epoch"]), pytest.approx(float(r["test_accuracy"]))) for r in rows]


def test_under_a_budget_for_the_training_batch_the_accuracies_run_in_batches():
    """Before, the whole-set accuracy runs needed more than a budget the training step fits
    (rnngraph demo --budget 700KB trained, then ran out of memory on the test set)."""
    data = load_digit_sequences(seed=0)
    model = build_classifier(n_neurons=12, learning_rate=0.01)
    free = train(model, data, n_epochs=1, batch_size=64, seed=0, progress=False)
    whole = rg.Session(model.graph).memory_plan(
        model.accuracy, {model.X: data.X_test, model.y: data.y_test})
    step = rg.Session(model.graph).memory_plan(
        [model.loss, model.accuracy, model.training_op],
        {model.X: data.X_train[:64], model.y: data.y_train[:64]})
    budget = step.predicted_peak + 1024
    assert whole.predicted_peak > budget   # (the whole test set would not fit)
    tight = train(model, data, n_epochs=1, batch_size=64, seed=0, progress=False,
                  memory_budget=budget)
    # (the budget may run other passes: training rounds differently, a sample may flip)
    assert tight.test_accuracy == pytest.approx(free.test_accuracy, abs=0.02)
    assert tight.train_accuracy == pytest.approx(free.train_accuracy, abs=0.02)
