"""`--steps` on the command line: an example is built over that many time steps (`rnngraph plan
lstm --steps 1000`), and a saved graph whose time steps are fixed otherwise is a clear error, not a
plan of a different model."""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph as rg
from rnngraph import cli, examples_registry
from rnngraph.errors import CLIError


def _time_dims(graph):
    return [n.outputs[0].shape[1] for n in graph.nodes
            if n.op.name == "placeholder" and len(n.outputs[0].shape) == 3]


@pytest.mark.parametrize("name", examples_registry.names())
def test_every_example_is_built_over_the_steps_asked_for(name):
    unrolls = ("dynamic",) if name in ("bidirectional", "basic_rnn_dynamic") else \
        ("static",) if name == "basic_rnn_static" else ("dynamic", "static")
    for unroll in unrolls:
        ex = examples_registry.build(name, unroll=unroll, steps=7)
        assert _time_dims(ex.graph) == [7]
        if unroll == "static":   # one cell copy per step
            unstack = [n for n in ex.graph.nodes if n.op.name == "unstack"]
            assert [len(n.outputs) for n in unstack] == [7]


def test_an_example_keeps_its_own_steps_by_default():
    assert _time_dims(examples_registry.build("lstm").graph) == [10]
    assert _time_dims(examples_registry.build("basic_rnn").graph) == [2]
    assert _time_dims(examples_registry.build("bidirectional").graph) == [None]


@pytest.mark.parametrize("steps", [0, -3, True, 2.0, "5"])
def test_bad_steps_are_a_value_error(steps):
    with pytest.raises(ValueError, match="steps must be a positive int"):
        examples_registry.build("lstm", steps=steps)


def _peak(source, steps, unroll=None):
    src = cli.load_source(source, unroll, grad=True, steps=steps)
    return cli._plan_for(src, None, 4, steps, "cpu").predicted_peak


def test_the_plan_of_an_example_follows_steps():
    """The saved activations grow with the steps: 30 steps need more than the default 10, for
    both unrollings (before, --steps was ignored for examples and both plans were equal)."""
    for unroll in ("dynamic", "static"):
        assert _peak("lstm", 30, unroll) > _peak("lstm", None, unroll) == _peak("lstm", 10, unroll)


def test_a_saved_graph_with_fixed_steps_refuses_other_steps(tmp_path, capsys):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, 6, 3], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), X, dtype=rg.float32)
        loss = rg.reduce_mean(rg.square(out), name="loss")
    path = str(tmp_path / "fixed.npz")
    rg.save(path, g, fetches={"loss": loss})
    with pytest.raises(CLIError, match=r"--steps 9: the graph fixes its time steps at 6 "
                                        r"\(placeholder 'X'"):
        _peak(path, 9)
    assert _peak(path, 6) == _peak(path, None) > 0
    assert cli.main(["plan", path, "--steps", "9"]) == 1
    assert "fixes its time steps at 6" in capsys.readouterr().err


def test_a_saved_graph_with_open_steps_takes_them(tmp_path):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, 3], name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.GRUCell(4), X, dtype=rg.float32)
        loss = rg.reduce_mean(rg.square(out), name="loss")
    path = str(tmp_path / "open.npz")
    rg.save(path, g, fetches={"loss": loss})
    src = cli.load_source(path, None, grad=True, steps=12)
    feed = cli.sample_feed(src.graph, [src.fetches["loss"]], 4, 12)
    assert [a.shape for a in feed.values()] == [(4, 12, 3)]
    assert np.isfinite(list(feed.values())[0]).all()
    assert _peak(path, 12) > _peak(path, None)   # None: 10 steps
