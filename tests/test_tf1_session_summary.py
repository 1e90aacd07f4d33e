"""TF1 session options (ConfigProto, GPUOptions, InteractiveSession) and tf.summary event files,
read back with the tensorboard package (skipped where tensorboardX / tensorboard are absent)."""
import numpy as np
import pytest

import rnngraph as rg


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def test_config_proto_is_accepted_and_kept(graph):
    cfg = rg.ConfigProto(allow_soft_placement=True, log_device_placement=False,
                         gpu_options=rg.GPUOptions(allow_growth=True))
    cfg.gpu_options.per_process_gpu_memory_fraction = 0.5
    x = rg.placeholder(rg.float32, [2])
    with rg.Session(config=cfg) as sess:
        assert sess.config is cfg
        np.testing.assert_array_equal(sess.run(x + 1.0, {x: [1.0, 2.0]}), [2.0, 3.0])
    with pytest.raises(AttributeError, match="no field 'allow_everything'"):
        rg.ConfigProto(allow_everything=True)
    with pytest.raises(TypeError, match="config must be an rg.ConfigProto"):
        rg.Session(config={"allow_soft_placement": True})
    with pytest.raises(NotImplementedError, match="target="):
        rg.Session(target="grpc://localhost:2222")


def test_interactive_session_is_the_default_until_closed(graph):
    v = rg.Variable(np.arange(3, dtype=np.float32))
    sess = rg.InteractiveSession()
    try:
        rg.global_variables_initializer().run()
        np.testing.assert_array_equal((v * 2.0).eval(), [0.0, 2.0, 4.0])
        assert rg.get_default_session() is sess
    finally:
        sess.close()
    with pytest.raises(RuntimeError, match="no default session"):
        rg.get_default_session()


def test_summaries_merge(graph):
    x = rg.placeholder(rg.float32, [])
    with rg.name_scope("train"):
        s1 = rg.summary.scalar("loss", x * 2.0)
    s2 = rg.summary.histogram("values", rg.stack([x, x + 1.0]))
    assert list(s1) == ["train/loss"] and list(s2) == ["values"]
    merged = rg.summary.merge_all()
    assert set(merged) == {"train/loss", "values"}
    assert rg.summary.merge([s1, s2]).keys() == merged.keys()
    with rg.Session() as sess:
        got = sess.run(merged, {x: 1.5})
    assert got["train/loss"] == 3.0 and np.array_equal(got["values"], [1.5, 2.5])
    with pytest.raises(ValueError, match="needs a scalar"):
        rg.summary.scalar("bad", rg.stack([x, x]))


def test_file_writer_events_read_back_by_tensorboard(graph, tmp_path):
    pytest.importorskip("tensorboardX")
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    X = rg.placeholder(rg.float32, [None, 3, 2])
    out, state = rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(4), X, dtype=rg.float32)
    loss = rg.reduce_mean(state * state)
    rg.summary.scalar("loss", loss)
    rg.summary.histogram("state", state)
    merged = rg.summary.merge_all()
    x = np.random.default_rng(0).standard_normal((5, 3, 2)).astype(np.float32)
    losses = []
    with rg.Session() as sess, rg.summary.FileWriter(str(tmp_path), sess.graph) as writer:
        sess.run(rg.global_variables_initializer())
        for step in range(3):
            result, lv = sess.run([merged, loss], {X: x * (step + 1)})
            writer.add_summary(result, global_step=step)
            losses.append(float(lv))
    acc = ea_mod.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = acc.Scalars("loss")
    assert [e.step for e in scalars] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in scalars], losses, rtol=1e-6)
    hist = acc.Histograms("state")
    assert [h.step for h in hist] == [0, 1, 2] and hist[0].histogram_value.num == 20
    graph_def = acc.Graph()
    node_names = {n.name for n in graph_def.node}
    assert "rnn/basic_rnn_cell/kernel" in node_names
    assert any(n.op == "loop" for n in graph_def.node)
    matmuls = [n for n in graph_def.node if n.op == "matmul"]
    assert matmuls and all(i.split(":")[0] in node_names for n in matmuls for i in n.input)
