"""The save / restore recipe of the guide (docs/guide.md, "Saving and loading"), run as
written: the restored session runs the saved fetches and gives the saved model's results."""
from pathlib import Path

import numpy as np
import pytest

import rnngraph as rg

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"
RECIPE = '''\
saved = rg.io.read("model.npz")                              # graph, values, named fetches
sess = saved.session()                                       # a Session with the values loaded
loss = saved.fetches["loss"]                                 # a Value of that same graph
'''


def test_the_guide_shows_this_recipe():
    assert RECIPE in GUIDE.read_text()


def test_the_recipe_restores_a_model_whose_fetches_run(tmp_path, monkeypatch):
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [None, 3], name="x")
        W = rg.get_variable("W", [3, 2])
        loss = rg.reduce_sum(rg.tanh(rg.matmul(x, W)), name="loss")
    sess0 = rg.Session(g)
    w = sess0.run(W)
    feed = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    monkeypatch.chdir(tmp_path)
    rg.save("model.npz", session=sess0, fetches={"loss": loss, "x": x})

    # the guide's lines, as written
    saved = rg.io.read("model.npz")                              # graph, values, named fetches
    sess = saved.session()                                       # a Session with the values loaded
    loss = saved.fetches["loss"]                                 # a Value of that same graph

    got = sess.run(loss, feed_dict={saved.fetches["x"]: feed})
    np.testing.assert_allclose(got, np.tanh(feed @ w).sum(), rtol=1e-5)


def test_mixing_two_reads_is_refused_with_a_clear_error(tmp_path):
    """What the old recipe did: a restored session and a second read's fetches."""
    g = rg.Graph()
    with g.as_default():
        rg.reduce_sum(rg.get_variable("W", [2, 2]), name="loss")
    path = str(tmp_path / "m.npz")
    rg.save(path, session=rg.Session(g), fetches={"loss": g.nodes[-1].outputs[0]})
    sess = rg.io.restore(path)
    with pytest.raises(ValueError, match="another graph"):
        sess.run(rg.io.read(path).fetches["loss"])
