"""Saver (rnngraph/train/saver.py) and the training history (train/history.py): round trips,
max_to_keep, the `checkpoint` file, all-or-nothing restores, damaged and planted files."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import InvalidFileError
from rnngraph.train.history import History


def _graph():
    g = rg.Graph()
    with g.as_default():
        w = rg.get_variable("layer/w", [2, 3])
        b = rg.get_variable("layer/b", [3], initializer=rg.initializers.Zeros())
        n = rg.get_variable("count", [], rg.int64, initializer=rg.initializers.Zeros(),
                            trainable=False)
    return g, w, b, n


def test_save_and_restore_round_trip_with_global_step(tmp_path):
    g, w, b, n = _graph()
    with g.as_default():
        saver = rg.train.Saver()
    sess = rg.Session(g, seed=1)
    sess.load_variable(b, np.array([1.0, 2.0, 3.0]))
    sess.load_variable(n, np.int64(7))
    prefix = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=42)
    assert prefix == str(tmp_path / "model.ckpt-42")
    assert rg.train.latest_checkpoint(str(tmp_path)) == prefix
    assert rg.train.checkpoint_exists(prefix)
    other = rg.Session(g, seed=2)
    assert not np.array_equal(other.read_variable(w), sess.read_variable(w))
    saver.restore(other, rg.train.latest_checkpoint(str(tmp_path)))
    for v in (w, b, n):
        a, e = other.read_variable(v), sess.read_variable(v)
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)


def test_max_to_keep_and_the_checkpoint_file(tmp_path):
    g, w, *_ = _graph()
    with g.as_default():
        saver = rg.train.Saver(max_to_keep=2)
    sess = rg.Session(g)
    for step in range(5):
        sess.load_variable(w, np.full((2, 3), step, np.float32))
        saver.save(sess, str(tmp_path / "m"), global_step=step)
    files = sorted(p for p in os.listdir(tmp_path) if p.endswith(".rgckpt"))
    assert files == ["m-3.rgckpt", "m-4.rgckpt"]
    state = rg.train.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == str(tmp_path / "m-4")
    assert state.all_model_checkpoint_paths == [str(tmp_path / "m-3"), str(tmp_path / "m-4")]
    text = (tmp_path / "checkpoint").read_text()
    assert text.splitlines()[0] == f'model_checkpoint_path: "{tmp_path / "m-4"}"'
    fresh = rg.Session(g)
    saver.restore(fresh, str(tmp_path / "m-3"))
    np.testing.assert_array_equal(fresh.read_variable(w), np.full((2, 3), 3.0))
    assert rg.train.latest_checkpoint(str(tmp_path / "nowhere")) is None


def test_relative_paths_and_a_var_list_dict(tmp_path):
    g, w, b, n = _graph()
    with g.as_default():
        saver = rg.train.Saver({"weights": w}, save_relative_paths=True)
    sess = rg.Session(g)
    saver.save(sess, str(tmp_path / "m"))
    assert '"m"' in (tmp_path / "checkpoint").read_text()
    assert rg.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "m")
    from rnngraph.train.saver import read_checkpoint
    assert list(read_checkpoint(str(tmp_path / "m"))) == ["weights"]


def test_restore_is_all_or_nothing(tmp_path):
    g, w, b, n = _graph()
    with g.as_default():
        rg.train.Saver().save(rg.Session(g), str(tmp_path / "m"))
    g2 = rg.Graph()
    with g2.as_default():   # same names, one of another shape
        w2 = rg.get_variable("layer/w", [2, 3])
        b2 = rg.get_variable("layer/b", [4])
        saver2 = rg.train.Saver()
    sess2 = rg.Session(g2)
    before = sess2.read_variable(w2).copy()
    with pytest.raises(ValueError, match=r"'layer/b' has shape \[4\], the checkpoint holds \[3\]"):
        saver2.restore(sess2, str(tmp_path / "m"))
    np.testing.assert_array_equal(sess2.read_variable(w2), before)   # nothing changed
    g3 = rg.Graph()
    with g3.as_default():
        rg.get_variable("other", [1])
        saver3 = rg.train.Saver()
    with pytest.raises(KeyError, match="holds no variable 'other'"):
        saver3.restore(rg.Session(g3), str(tmp_path / "m"))


def _rewrite(path, edit):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def _object_array(members):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    members["v0.npy"] = buf.getvalue()


def _meta(change):
    def edit(members):
        meta = json.loads(members["meta.json"])
        change(meta)
        members["meta.json"] = json.dumps(meta).encode()
    return edit


@pytest.mark.parametrize("edit,match", [
    (_object_array, "damaged"),
    (_meta(lambda m: m.update(format="something")), "not an rnngraph checkpoint"),
    (_meta(lambda m: m.update(version=99)), "version 99"),
    (_meta(lambda m: m["variables"][0].update(dtype="object")), "not numeric"),
    (_meta(lambda m: m["variables"][0].update(member="../../etc/passwd")), "malformed"),
    (_meta(lambda m: m["variables"][0].update(shape=[9, 9])), "meta.json says"),
    (lambda members: members.pop("meta.json"), "no meta.json"),
])
def test_damaged_or_planted_checkpoints_are_refused(tmp_path, edit, match):
    g, w, *_ = _graph()
    with g.as_default():
        saver = rg.train.Saver()
    sess = rg.Session(g)
    prefix = saver.save(sess, str(tmp_path / "m"))
    _rewrite(prefix + ".rgckpt", edit)
    before = sess.read_variable(w).copy()
    with pytest.raises(InvalidFileError, match=match):
        saver.restore(sess, prefix)
    np.testing.assert_array_equal(sess.read_variable(w), before)


def test_bad_arguments():
    g, *_ = _graph()
    with g.as_default():
        with pytest.raises(ValueError, match=r"max_to_keep must be an int >= 0.*test_train_saver"):
            rg.train.Saver(max_to_keep=-1)
        with pytest.raises(NotImplementedError, match="sharded="):
            rg.train.Saver(sharded=True)
        with pytest.raises(TypeError, match="not a variable"):
            rg.train.Saver([rg.constant(1.0)])
        saver = rg.train.Saver()
    with pytest.raises(ValueError, match="save_path is None"):
        saver.restore(rg.Session(g), None)
    with pytest.raises(ValueError, match="does not exist"):
        saver.save(rg.Session(g), "/nonexistent-folder-xyz/m")
    with rg.Graph().as_default(), pytest.raises(ValueError, match="no variables to save"):
        rg.train.Saver()


# --- history -------------------------------------------------------------------------------------------
def test_history_csv_round_trip_and_log_line(tmp_path):
    h = History(["loss", "test_accuracy"])
    h.add(1, loss=2.5, test_accuracy=0.25)
    h.add(2, loss=1.25)
    assert h.line(0, total=10) == "epoch  1/10  loss 2.5000  test_accuracy 0.2500"
    assert h.line(1).endswith("test_accuracy -")
    path = h.write_csv(tmp_path / "history.csv")
    back = History.read_csv(path)
    assert back.metrics == ["loss", "test_accuracy"] and back.column("epoch") == [1, 2]
    assert back.column("loss") == [2.5, 1.25] and np.isnan(back.column("test_accuracy")[1])
    back.truncate(1)
    assert back.column("epoch") == [1]
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,__import__('os')\n")
    with pytest.raises(ValueError, match="not numbers"):
        History.read_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="unknown metrics"):
        h.add(3, accuracy=1.0)


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    h = History(["loss", "train_accuracy", "test_accuracy"])
    for e in range(1, 5):
        h.add(e, loss=1.0 / e, train_accuracy=1 - 0.5 / e, test_accuracy=1 - 0.6 / e)
    assert h.plot(tmp_path / "h.png", title="t")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
