"""The peak model's memory layouts (memory/strides.py) against NumPy itself: which reshapes
and views keep their input's buffer, and the planned peak of a dense head over dynamic_rnn's
batch-major outputs (a reshape of a transposed view: a copy) equal to the measured one."""
import itertools

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.memory import strides as S
from rnngraph.memory.simulate import view_source
from rnngraph.ops.shape import _encode_key
from rnngraph.runtime.simulated import SimulatedDevice


def _elements(a):
    return tuple(s // a.itemsize for s in a.strides)


def _numpy_view(a, shape):
    """NumPy's own answer: the reshaped array's element strides, or None where it copied."""
    r = a.reshape(shape)
    return _elements(r) if np.shares_memory(r, a) else None


def _views():
    base = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    for perm in itertools.permutations(range(4)):
        yield f"T{perm}", base.transpose(perm)
    yield "slice", base[:, 1:, :, ::2]
    yield "step", base[::2, :, 1:3]
    yield "col", base[..., 0]


@pytest.mark.parametrize("name,a", list(_views()), ids=[n for n, _ in _views()])
def test_reshaped_agrees_with_numpy_on_every_merge_and_split(name, a):
    n = a.size
    shapes = {(n,), (a.shape[0], -1), (-1, a.shape[-1]), a.shape[::-1],
              tuple(a.shape[:-2]) + (a.shape[-2] * a.shape[-1],),
              (1,) + a.shape, a.shape + (1,)}
    if a.shape[0] % 2 == 0:
        shapes.add((2, a.shape[0] // 2) + a.shape[1:])
    checked = 0
    for shape in shapes:
        target = a.reshape(shape).shape
        got = S.reshaped(a.shape, _elements(a), target)
        want = _numpy_view(a, target)
        if want is None:
            assert got is None, (name, target)
        else:
            assert got is not None, (name, target)
            # size-1 axes may take any stride: compare where it matters
            assert all(d == 1 or g == w for d, g, w in zip(target, got, want)), (name, target)
        checked += 1
    assert checked == len(shapes)


def test_contiguity_ignores_size_one_axes_and_c_strides_are_numpys():
    a = np.zeros((3, 1, 4, 5), np.float64)
    assert S.c_strides(a.shape) == _elements(a)
    assert S.is_contiguous((3, 1, 4), (4, 999, 1))
    assert not S.is_contiguous((3, 4), (1, 3))
    assert not S.is_contiguous((3, 4), None)


@pytest.mark.parametrize("key", [np.s_[1], np.s_[:, 2], np.s_[1:, ::2], np.s_[..., 1],
                                 np.s_[None, :, 1:3], np.s_[::-1, None]])
def test_getitem_strides_are_numpys(key):
    a = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5).transpose(1, 0, 2)
    want = a[key]
    got = S.getitem(_encode_key(key), a.shape, _elements(a))
    assert all(d == 1 or g == w for d, g, w in zip(want.shape, got, _elements(want)))


def test_broadcast_strides_are_numpys():
    a = np.zeros((3, 1), np.float32)
    want = np.broadcast_to(a, (2, 3, 4))
    assert S.broadcast(a.shape, _elements(a), (2, 3, 4)) == _elements(want)


@pytest.mark.parametrize("time_major", [False, True])
def test_a_dense_head_over_transposed_outputs_is_predicted_as_measured(time_major):
    """Under budgets from the floor up, the plan's peak is the measured one: the copy that
    reshaping the batch-major outputs makes is counted (it was not: plans said "fits" and ran
    out of memory)."""
    T, B, H, I = 100, 8, 32, 8
    g = rg.Graph()
    with g.as_default():
        shape = [None, B, I] if time_major else [B, None, I]
        X = rg.placeholder(rg.float32, shape, name="X")
        out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(H), X, dtype=rg.float32,
                                   time_major=time_major)
        y = rg.layers.dense(out, 5)       # batch-major: [B, T, H] -> [B*T, H], a copy
        loss = rg.reduce_sum(y * y)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    x = np.random.RandomState(0).randn(*((T, B, I) if time_major else (B, T, I)))
    fd = {X: x.astype(np.float32)}
    free = rg.Session(g, device=SimulatedDevice())
    free.run(fetches, fd, report=True)
    top = free.last_run_report.peak_bytes
    floor = rg.Session(g, device=SimulatedDevice(), memory_budget=1).memory_plan(fetches, fd)
    for budget in np.linspace(floor.min_budget, top, 5).astype(np.int64):
        sess = rg.Session(g, device=SimulatedDevice(capacity=budget), memory_budget=budget)
        plan = sess.memory_plan(fetches, fd)
        assert plan.fits
        sess.run(fetches, fd)
        measured = sess.last_run_report.peak_bytes
        assert measured <= budget
        # (streamed plans count NumPy's 0-d results as whole buffers: a few bytes above)
        assert 0 <= plan.predicted_peak - measured <= 64, (budget, plan.predicted_peak, measured)


class _Static:
    """Shape facts for graphs whose shapes are all static."""
    def type(self, v):
        return v.type


def _chain_cases():
    """name -> (the chain of ops, how many of its reshapes must copy)."""
    from rnngraph.ops.host_rows import host_rows
    return {
        "transpose-reshape": (lambda x: rg.reshape(rg.transpose(x, (1, 0, 2)), [-1, 5]), 1),
        "transpose-merge-last": (lambda x: rg.reshape(rg.transpose(x, (1, 0, 2)), [4, 15]),
                                 1),
        "host_rows-reshape": (lambda x: rg.reshape(host_rows(x, 1), [-1, 5]), 1),
        "expand-transpose-squeeze": (lambda x: rg.squeeze(
            rg.transpose(rg.expand_dims(x, 1), (2, 1, 0, 3)), [1]), 0),
        "split-reshape": (lambda x: rg.reshape(
            rg.split(rg.transpose(x, (2, 0, 1)), 5, 0)[1], [-1]), 0),
        "unstack-reshape": (lambda x: rg.reshape(
            rg.unstack(rg.transpose(x, (1, 0, 2)), axis=1)[2], [-1]), 0),
        "getitem-reshape": (lambda x: rg.reshape(x[:, 1:3][::-1], [-1, 5]), 1),
        "broadcast-reshape": (lambda x: rg.reshape(
            rg.broadcast_to(rg.expand_dims(x, 0), [2, 3, 4, 5]), [6, 20]), 1),
        "contiguous-reshape": (lambda x: rg.reshape(rg.transpose(x, (0, 1, 2)), [12, 5]), 0),
        # NumPy lays the results of concatenate and elementwise ops out like their inputs
        "concat-transposed-reshape": (lambda x: rg.reshape(rg.concat(
            [rg.transpose(x, (1, 0, 2)), rg.transpose(x, (1, 0, 2))], -1), [-1, 10]), 1),
        "tanh-transposed-reshape": (lambda x: rg.reshape(rg.tanh(rg.transpose(x, (1, 0, 2))),
                                                         [-1, 5]), 1),
        "broadcast-add-reshape": (lambda x: rg.reshape(x + rg.zeros([5]), [-1, 5]), 0),
        # reverse_sequence returns a transposed view of its new time-major array
        "reverse_sequence-reshape": (lambda x: rg.reshape(rg.reverse_sequence(
            x, rg.constant(np.array([4, 2, 1], np.int32)), seq_axis=1, batch_axis=0),
            [-1, 5]), 1),
        # softmax keeps its input's layout
        "softmax-transposed-reshape": (lambda x: rg.reshape(
            rg.nn.softmax(rg.transpose(x, (1, 0, 2))), [-1, 5]), 1),
        # inputs that disagree: C order (the contiguous one vetoes)
        "mixed-concat-reshape": (lambda x: rg.reshape(rg.concat(
            [x, rg.transpose(rg.reshape(x, [4, 3, 5]), (1, 0, 2))], -1), [-1, 10]), 0),
        # a stretched axis: concatenate takes it as the innermost one
        "broadcast-concat-reshape": (lambda x: rg.reshape(rg.concat(
            [rg.broadcast_to(rg.expand_dims(x[0], 0), [3, 4, 5])] * 2, -1), [-1, 10]), 1),
        "stack-transposed-reshape": (lambda x: rg.reshape(rg.stack(
            [rg.transpose(x, (1, 0, 2))] * 2), [-1, 5]), 1),
    }


@pytest.mark.parametrize("case", sorted(_chain_cases()))
def test_layouts_of_view_chains_agree_with_numpy_running_them(case):
    """Each op of the chain run by NumPy (its reference compute): where the model says a
    view, NumPy's result shares its input's memory with the strides the model says; where it
    says a copy, NumPy copied."""
    g = rg.Graph()
    with g.as_default():
        x = rg.placeholder(rg.float32, [3, 4, 5], name="x")
        chain, expected_copies = _chain_cases()[case]
        chain(x)
    layouts = S.Layouts(_Static())
    arrays = {x: np.arange(60, dtype=np.float32).reshape(3, 4, 5)}
    copies = 0
    for node in g.nodes:
        if node.op.name == "placeholder":
            continue
        result = node.op.compute(np, *[arrays[v] for v in node.inputs])
        results = result if node.op.multi_output else [result]
        for j, (v, r) in enumerate(zip(node.outputs, results)):
            arrays[v] = r
            src = view_source(node, v, _Static())
            viewed = layouts.output(node, j, src) and src is not None
            assert viewed == any(np.shares_memory(r, arrays[x]) for x in node.inputs), (node, j)
            copies += src is not None and not viewed
            st = layouts.of(v)
            if st is not None:
                assert all(d == 1 or a == b
                           for d, a, b in zip(r.shape, st, _elements(r))), (node, j)
    assert copies == expected_copies
