"""rg.device (issue 25): the placement is a declared node attribute (printed, verified, saved);
the Session reports once the placements it cannot honour; bad device strings are refused."""
import logging

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.io import schema
from rnngraph.ir import device as device_spec
from rnngraph.runtime import placement


@pytest.fixture
def graph():
    g = rg.Graph()
    with g.as_default():
        yield g


def _records(caplog, word="cannot be honoured"):
    return [r for r in caplog.records if r.name == "rnngraph" and word in r.getMessage()]


@pytest.mark.parametrize("spec, canonical", [
    ("/cpu:0", "/device:CPU:0"), ("/gpu:1", "/device:GPU:1"), ("/GPU:0", "/device:GPU:0"),
    ("/device:GPU:0", "/device:GPU:0"), ("/device:CPU:*", "/device:CPU:*"),
    ("/gpu", "/device:GPU:*"), ("/device:gpu:2", "/device:GPU:2"),
    ("/job:worker/task:3", "/job:worker/task:3"),
    ("/job:localhost/replica:0/task:0/device:CPU:0",
     "/job:localhost/replica:0/task:0/device:CPU:0"),
    ("", ""),
])
def test_device_strings_take_one_canonical_form(spec, canonical):
    assert device_spec.canonical(spec) == canonical


@pytest.mark.parametrize("spec", ["gpu please", "/gpu:x", "/job:", "/foo:1", "/device:GPU:-1",
                                  "/task:a", "/device:GPU:0:1"])
def test_an_invalid_device_string_is_a_value_error_naming_it(graph, spec):
    with pytest.raises(ValueError, match="not a device string") as info:
        rg.device(spec)
    assert repr(spec) in str(info.value)
    assert len(graph.nodes) == 0 and "devices" not in graph.collections


def test_device_functions_and_non_strings_are_refused(graph):
    with pytest.raises(NotImplementedError, match="device functions"):
        rg.device(lambda op: "/cpu:0")
    with pytest.raises(TypeError, match="device string"):
        rg.device(0)


def test_nodes_take_the_device_of_their_scope_merged_like_tf1(graph):
    x = rg.placeholder(rg.float32, [2], name="x")
    with rg.device("/job:ps"):
        a = rg.tanh(x, name="a")
        with rg.device("/gpu:1"):
            b = rg.exp(a, name="b")
            with rg.device("/cpu:0"):
                c = b * 2.0
            with rg.device(""):        # "" changes nothing
                d = b + 1.0
            with rg.device(None):      # None clears the placement
                e = b - 1.0
    f = e * 3.0
    assert x.node.device == "" and f.node.device == ""
    assert a.node.device == "/job:ps"
    assert b.node.device == "/job:ps/device:GPU:1"
    assert c.node.device == "/job:ps/device:CPU:0"
    assert d.node.device == "/job:ps/device:GPU:1"
    assert e.node.device == ""
    rg.verify(graph)


def test_the_device_is_printed_with_the_node(graph):
    x = rg.placeholder(rg.float32, [2], name="x")
    with rg.device("/gpu:0"):
        y = rg.tanh(x, name="y")
    lines = str(graph).splitlines()
    line = next(ln for ln in lines if "# y " in ln or ln.rstrip().endswith("# y"))
    assert "device=/device:GPU:0" in line
    assert all("device=" not in ln for ln in lines if "# x" in ln)
    assert y.node.device == "/device:GPU:0"


def test_loop_bodies_and_cells_under_a_device_scope_are_placed(graph):
    x = rg.placeholder(rg.float32, [2, 3, 4], name="x")
    with rg.device("/device:GPU:0"):
        out, state = rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(5), x, dtype=rg.float32)
    loop = next(n for n in graph.nodes if n.op.name == "loop")
    body = loop.op.subgraphs()[0]
    assert loop.device == "/device:GPU:0"
    assert all(n.device == "/device:GPU:0" for n in body.nodes)
    assert "    " in next(ln for ln in str(graph).splitlines()
                          if "basic_rnn_cell/Tanh" in ln and "device=/device:GPU:0" in ln)
    # gradients built outside the scope are not placed (TF1 places them where gradients() runs)
    grads = rg.gradients(rg.reduce_sum(out), [x])
    assert grads[0].node.device == ""


def test_device_wrapper_places_the_cell(graph):
    x = rg.placeholder(rg.float32, [2, 4])
    cell = rg.nn.rnn_cell.DeviceWrapper(rg.nn.rnn_cell.BasicRNNCell(3), "/gpu:0")
    out, _ = cell(x, cell.zero_state(2, rg.float32))
    assert out.node.device == "/device:GPU:0"
    kernel = next(v for v in rg.global_variables(graph) if v.node.name.endswith("kernel"))
    assert kernel.node.device == "/device:GPU:0"


def test_the_verifier_checks_the_device_attribute(graph):
    x = rg.placeholder(rg.float32, [2])
    y = rg.tanh(x)
    y.node.device = "/gpu:0"   # not canonical
    with pytest.raises(rg.ir.VerificationError, match="device"):
        rg.verify(graph)
    y.node.device = "/device:GPU:0"
    rg.verify(graph)


def test_save_and_load_keep_the_device(graph, tmp_path):
    x = rg.placeholder(rg.float32, [2, 3], name="x")
    with rg.device("/job:worker/task:1/gpu:0"):
        y = rg.tanh(x, name="y")
    path = rg.save(str(tmp_path / "placed.rg"), graph)
    loaded, _ = rg.load(path)
    assert loaded.get_node("y").device == "/job:worker/task:1/device:GPU:0"
    assert loaded.get_node("x").device == ""
    rg.verify(loaded)
    assert "device=/job:worker/task:1/device:GPU:0" in str(loaded)
    assert y.node.device == loaded.get_node("y").device


def test_the_file_schema_accepts_canonical_devices_only():
    assert schema.device_problem("/device:GPU:0") is None
    assert schema.device_problem("/job:ps/replica:0/task:1/device:CPU:*") is None
    for bad in ("/gpu:0", "gpu please", "/device:GPU:0\n", 7, "/job:" + "a" * 300):
        assert "bad device" in schema.device_problem(bad)


def test_a_placement_the_session_cannot_honour_is_reported_once(graph, caplog):
    x = rg.placeholder(rg.float32, [None, 3], name="x")
    with rg.device("/gpu:0"):
        y = rg.tanh(x) * 2.0
    with rg.device("/job:ps/task:1"):
        z = rg.reduce_sum(y)
    feed = {x: np.arange(6, dtype=np.float32).reshape(2, 3) / 6}
    want = np.tanh(feed[x]) * 2.0
    caplog.set_level(logging.INFO, logger="rnngraph")
    with rg.Session(accelerate=False) as sess:
        np.testing.assert_allclose(sess.run(y, feed), want, rtol=1e-6)
        np.testing.assert_allclose(sess.run(y, feed), want, rtol=1e-6)
        np.testing.assert_allclose(sess.run(z, feed), want.sum(), rtol=1e-6)
        np.testing.assert_allclose(sess.run([y, z], feed)[1], want.sum(), rtol=1e-6)
    msgs = [r.getMessage() for r in _records(caplog)]
    assert len(msgs) == 2, msgs
    assert "/device:GPU:0" in msgs[0] and "/device:CPU:0" in msgs[0]
    assert "3 node(s)" in msgs[0] and "test_tf1_device.py" in msgs[0]
    assert "/job:ps/task:1" in msgs[1]
    assert all(r.levelno == logging.INFO for r in _records(caplog))


def test_honoured_placements_are_not_reported(graph, caplog):
    x = rg.placeholder(rg.float32, [2], name="x")
    with rg.device("/cpu:0"):
        a = rg.exp(x)
    with rg.device("/job:localhost/replica:0/task:0/device:CPU:0"):
        b = a + 1.0
    with rg.device("/device:CPU:*"):
        c = b * 3.0
    caplog.set_level(logging.INFO, logger="rnngraph")
    with rg.Session(accelerate=False) as sess:
        out = sess.run(c, {x: [0.0, 1.0]})
    np.testing.assert_allclose(out, (np.exp([0.0, 1.0]) + 1.0) * 3.0, rtol=1e-6)
    assert _records(caplog) == []


def test_log_device_placement_logs_each_placed_node_once(graph, caplog):
    x = rg.placeholder(rg.float32, [2], name="x")
    with rg.device("/cpu:0"):
        y = rg.exp(x, name="e")
    caplog.set_level(logging.INFO, logger="rnngraph")
    with rg.Session(config=rg.ConfigProto(log_device_placement=True),
                    accelerate=False) as sess:
        sess.run(y, {x: [0.0, 1.0]})
        sess.run(y, {x: [0.0, 1.0]})
    msgs = [r.getMessage() for r in _records(caplog, "runs on")]
    assert msgs == ["rnngraph: exp e runs on /device:CPU:0"]


def test_which_placements_each_session_device_honours():
    cpu = device_spec.DeviceSpec(device_type="CPU", device_index=0)
    gpu1 = device_spec.DeviceSpec(device_type="GPU", device_index=1)
    assert placement.honoured("/device:CPU:0", cpu)
    assert placement.honoured("/job:localhost", cpu)
    assert not placement.honoured("/device:GPU:0", cpu)
    assert not placement.honoured("/job:worker", cpu)
    assert not placement.honoured("/job:localhost/task:1", cpu)
    assert placement.honoured("/device:GPU:1", gpu1)
    assert placement.honoured("/device:GPU:*", gpu1)
    assert not placement.honoured("/device:GPU:0", gpu1)
    assert not placement.honoured("/device:CPU:0", gpu1)


def test_placing_works_in_a_tf1_program_with_training(graph, caplog):
    """The textbook's pattern: the cell under a GPU device, the loss on the CPU."""
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((4, 3, 2)).astype(np.float32)
    x = rg.placeholder(rg.float32, [None, 3, 2])
    with rg.device("/gpu:0"):
        out, _ = rg.nn.dynamic_rnn(rg.nn.rnn_cell.BasicRNNCell(3), x, dtype=rg.float32)
    with rg.device("/cpu:0"):
        loss = rg.reduce_mean(rg.square(out))
        train = rg.train.GradientDescentOptimizer(0.1).minimize(loss)
    init = rg.global_variables_initializer()
    caplog.set_level(logging.INFO, logger="rnngraph")
    with rg.Session(accelerate=False) as sess:
        sess.run(init)
        w, b = sess.run(rg.global_variables(graph))
        got = sess.run(loss, {x: xv})
        sess.run(train, {x: xv})
    h = np.zeros((4, 3), np.float32)
    outs = []
    for t in range(3):
        h = np.tanh(np.concatenate([xv[:, t], h], 1) @ w + b)
        outs.append(h)
    np.testing.assert_allclose(got, np.mean(np.square(outs)), rtol=1e-5)
    assert len(_records(caplog)) == 1


def test_a_cuda_session_is_named_by_its_current_gpu():
    from types import SimpleNamespace
    fake_cupy = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDevice=lambda: 1)))
    spec = placement.session_device_spec(SimpleNamespace(xp=fake_cupy))
    assert spec.to_string() == "/device:GPU:1"
    assert placement.session_device_spec(rg.runtime.devices.get_device("cpu")).to_string() == \
        "/device:CPU:0"
    assert placement.session_device_spec(
        rg.runtime.devices.get_device("simulated")).to_string() == "/device:CPU:0"
