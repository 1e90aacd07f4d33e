"""Fuzzing with hypothesis.

1. Random small graphs of supported ops (elementwise, broadcasting, matmul, reductions, shape
   ops, softmax, where, clip) over placeholders of random shapes, some dims unknown until run
   time. Each graph is evaluated by the executor (compiler passes on and off, fetching only the
   last value and fetching everything) and by a direct NumPy evaluation written here; in
   float64 the gradient of a random weighted sum of all values is checked against central
   differences of the NumPy evaluation along random directions.
2. Random sequence_length vectors (zeros, full lengths, any order) and batch sizes: static_rnn
   and dynamic_rnn with identical weights give the same outputs, final states and gradients.

The CI profile has a fixed number of examples, no per-example deadline (the machine running CI
may be loaded; the total is bounded by the example count), is derandomised (the same examples
every run) and keeps no example database. Set RNNGRAPH_FUZZ_PROFILE=long for a longer, random
search.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

import rnngraph as rg
from rnngraph.nest import flatten, pack_as

settings.register_profile(
    "rnngraph-ci", max_examples=60, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much], print_blob=True)
settings.register_profile(
    "rnngraph-long", parent=settings.get_profile("rnngraph-ci"), max_examples=2000,
    derandomize=False, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
PROFILE = settings.get_profile("rnngraph-long" if os.environ.get("RNNGRAPH_FUZZ_PROFILE") == "long"
                               else "rnngraph-ci")


def _examples(n):
    """The profile, with `n` examples in CI (scaled up in the long profile)."""
    if PROFILE.max_examples > 1000:
        return settings(PROFILE)
    return settings(PROFILE, max_examples=n)


# =============================================================================================
# 1. random graphs
# =============================================================================================
@dataclass
class Val:
    actual: tuple          # the runtime shape
    value: rg.Value        # the rnngraph value (its .shape is the static shape)


@dataclass
class Prog:
    dtype: np.dtype
    graph: rg.Graph
    vals: list = field(default_factory=list)
    # per value: ("input", k) or (op name, arg indices, params)
    instrs: list = field(default_factory=list)
    inputs: list = field(default_factory=list)   # (index into vals, placeholder)

    def static(self, i):
        return self.vals[i].value.shape


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _gap(a, b):
    """Smallest |a - b| over elements where they differ (exact ties move together here)."""
    d = np.abs(np.asarray(a) - np.asarray(b))
    d = d[d > 0]
    return float(d.min()) if d.size else np.inf


def _max_gap(x, axes):
    """Smallest gap between a slice's maximum and its largest smaller value."""
    x = np.asarray(x)
    if x.size == 0:
        return np.inf
    axes = tuple(range(x.ndim)) if axes is None else axes
    top = x.max(axis=axes, keepdims=True)
    below = np.where(x < top, x, -np.inf).max(axis=axes, keepdims=True)
    gaps = (top - below)[np.isfinite(below)]
    return float(gaps.min()) if gaps.size else np.inf


# op name -> (rnngraph builder, NumPy function, kink margin or None); each takes (args, params)
UNARY = {
    "tanh": (lambda a, p: rg.tanh(a), lambda a, p: np.tanh(a), None),
    "sigmoid": (lambda a, p: rg.sigmoid(a), lambda a, p: _np_sigmoid(a), None),
    "negative": (lambda a, p: -a, lambda a, p: -a, None),
    "square": (lambda a, p: rg.square(a), lambda a, p: a * a, None),
    "exp": (lambda a, p: rg.exp(a), lambda a, p: np.exp(a), None),
    "log": (lambda a, p: rg.log(rg.square(a) + 1.0), lambda a, p: np.log(a * a + 1.0), None),
    "sqrt": (lambda a, p: rg.sqrt(rg.square(a) + 1.0), lambda a, p: np.sqrt(a * a + 1.0), None),
    "abs": (lambda a, p: rg.abs(a), lambda a, p: np.abs(a), lambda a, p: _gap(a, 0.0)),
    "relu": (lambda a, p: rg.relu(a), lambda a, p: np.maximum(a, 0.0), lambda a, p: _gap(a, 0.0)),
    "clip": (lambda a, p: rg.clip_by_value(a, -0.5, 0.5), lambda a, p: np.clip(a, -0.5, 0.5),
             lambda a, p: min(_gap(a, -0.5), _gap(a, 0.5))),
    "scale": (lambda a, p: a * p["c"] + p["d"], lambda a, p: a * p["c"] + p["d"], None),
}

BINARY = {
    "add": (lambda a, b, p: a + b, lambda a, b, p: a + b, None),
    "subtract": (lambda a, b, p: a - b, lambda a, b, p: a - b, None),
    "multiply": (lambda a, b, p: a * b, lambda a, b, p: a * b, None),
    "divide": (lambda a, b, p: a / (rg.square(b) + 1.0), lambda a, b, p: a / (b * b + 1.0), None),
    "maximum": (lambda a, b, p: rg.maximum(a, b), lambda a, b, p: np.maximum(a, b),
                lambda a, b, p: _gap(a, b)),
    "minimum": (lambda a, b, p: rg.minimum(a, b), lambda a, b, p: np.minimum(a, b),
                lambda a, b, p: _gap(a, b)),
    "where": (lambda a, b, p: rg.where(rg.greater(a, b), a * b, a - b),
              lambda a, b, p: np.where(a > b, a * b, a - b), lambda a, b, p: _gap(a, b)),
}


# Bugs found by this fuzzer have their own strict-xfail tests below; until they are fixed the
# generator avoids them (set to False to let the fuzzer find them again).
KNOWN_BUGS = False


def _broadcast_ok(p: Prog, i, j) -> bool:
    """numpy-compatible runtime shapes where a broadcast size-1 dim is statically 1 (rnngraph
    never broadcasts a dim unknown at build time)."""
    a, b = p.vals[i].actual, p.vals[j].actual
    sa, sb = p.static(i), p.static(j)
    for k in range(1, min(len(a), len(b)) + 1):
        da, db = a[-k], b[-k]
        if da == db:
            continue
        if da == 1 and sa[-k] == 1:
            continue
        if db == 1 and sb[-k] == 1:
            continue
        return False
    return True


class Builder:
    """Draws a random program, building the rnngraph graph as it goes (static shapes come from
    rnngraph's own shape rules)."""

    def __init__(self, data, dtype):
        self.data = data
        self.p = Prog(np.dtype(dtype), rg.Graph())

    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def add(self, actual, value, instr):
        assert value.type.accepts(actual), (value.type, actual, instr)
        self.p.vals.append(Val(tuple(actual), value))
        self.p.instrs.append(instr)
        return len(self.p.vals) - 1

    def new_input(self, actual=None):
        if actual is None:
            rank = self.draw(st.integers(0, 3), "rank")
            actual = tuple(self.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank),
                                     "dims"))
        static = [None if d >= 2 and self.draw(st.booleans(), "unknown dim") else d
                  for d in actual]
        k = len(self.p.inputs)
        with self.p.graph.as_default():
            ph = rg.placeholder(self.p.dtype, static, name=f"in{k}")
        i = self.add(actual, ph, ("input", k))
        self.p.inputs.append((i, ph))
        return i

    def pick(self, where=lambda i: True):
        cands = [i for i in range(len(self.p.vals)) if where(i)]
        if not cands:
            return None
        return self.draw(st.sampled_from(cands), "operand")

    def op(self):
        p, draw = self.p, self.draw
        kind = draw(st.sampled_from(["unary", "binary", "matmul", "reduce", "transpose",
                                     "reshape", "expand_dims", "squeeze", "getitem", "concat",
                                     "stack", "split", "unstack", "softmax", "broadcast_to"]),
                    "op kind")
        a = self.pick()
        A = p.vals[a].actual
        if kind == "unary":
            name = draw(st.sampled_from(sorted(UNARY)), "unary op")
            if name == "sigmoid" and not A and KNOWN_BUGS:
                return None  # test_sigmoid_of_a_scalar (xfail)
            params = {"c": draw(st.sampled_from([-1.5, 0.5, 2.0])),
                      "d": draw(st.sampled_from([0.0, 0.25]))} if name == "scale" else {}
            return (name, (a,), params), A
        if kind == "binary":
            name = draw(st.sampled_from(sorted(BINARY)), "binary op")
            b = self.pick(lambda j: _broadcast_ok(p, a, j))
            if b is None or draw(st.booleans(), "fresh partner"):
                # a partner of a's shape with some dims statically 1 or leading dims dropped
                drop = draw(st.integers(0, len(A)))
                shape = tuple(1 if draw(st.booleans()) else d for d in A[drop:])
                b = self.new_input(shape)
                if not _broadcast_ok(p, a, b):  # an unknown dim drawn where size 1 is needed
                    b = a
            if draw(st.booleans(), "swap"):
                a, b = b, a
            out = np.broadcast_shapes(p.vals[a].actual, p.vals[b].actual)
            return (name, (a, b), {}), out
        if kind == "matmul":
            if len(A) != 2:
                return None
            b = self.pick(lambda j: len(p.vals[j].actual) == 2 and p.vals[j].actual[0] == A[1])
            if b is None or draw(st.booleans()):
                b = self.new_input((A[1], draw(st.integers(1, 4))))
            return ("matmul", (a, b), {}), (A[0], p.vals[b].actual[1])
        if kind == "reduce":
            name = draw(st.sampled_from(["reduce_sum", "reduce_mean", "reduce_max"]))
            if name == "reduce_mean" and 0 in A:
                return None
            axes = None
            if A and draw(st.booleans()):
                axes = tuple(sorted(draw(st.sets(st.integers(0, len(A) - 1), min_size=1))))
            keep = draw(st.booleans(), "keepdims")
            red = range(len(A)) if axes is None else axes
            out = tuple(1 if k in red else d for k, d in enumerate(A)) if keep else \
                tuple(d for k, d in enumerate(A) if k not in red)
            return (name, (a,), {"axis": axes, "keepdims": keep}), out
        if kind == "transpose":
            perm = tuple(draw(st.permutations(range(len(A)))))
            return ("transpose", (a,), {"perm": perm}), tuple(A[k] for k in perm)
        if kind == "reshape":
            n = int(np.prod(A))
            divisors = [d for d in range(1, n + 1) if n % d == 0]
            first = draw(st.sampled_from(divisors))
            shape = draw(st.sampled_from([(n,), (first, n // first), (first, -1),
                                          (1, first, n // first)]))
            out = tuple(n // first if d == -1 else d for d in shape)
            return ("reshape", (a,), {"shape": shape}), out
        if kind == "expand_dims":
            ax = draw(st.integers(-len(A) - 1, len(A)))
            out = list(A)
            out.insert(ax if ax >= 0 else len(A) + 1 + ax, 1)
            return ("expand_dims", (a,), {"axis": ax}), tuple(out)
        if kind == "squeeze":
            ones = [k for k, d in enumerate(A) if d == 1]
            if not ones:
                return None
            ax = draw(st.sampled_from(ones))
            return ("squeeze", (a,), {"axis": ax}), tuple(d for k, d in enumerate(A) if k != ax)
        if kind == "getitem":
            if not A:
                return None
            ax = draw(st.integers(0, len(A) - 1))
            if draw(st.booleans(), "int index"):
                idx = draw(st.integers(-A[ax], A[ax] - 1))
            else:
                start = draw(st.integers(0, A[ax] - 1))
                stop = draw(st.integers(start + 1, A[ax]))
                idx = slice(start, stop, draw(st.sampled_from([1, 2])))
            key = (slice(None),) * ax + (idx,)
            out = np.empty(A)[key].shape
            return ("getitem", (a,), {"key": key}), out
        if kind == "concat":
            if not A:
                return None
            ax = draw(st.integers(0, len(A) - 1))
            b = self.pick(lambda j: len(p.vals[j].actual) == len(A) and all(
                d == e for k, (d, e) in enumerate(zip(A, p.vals[j].actual)) if k != ax))
            if b is None or draw(st.booleans()):
                b = self.new_input(A[:ax] + (draw(st.integers(1, 3)),) + A[ax + 1:])
            out = list(A)
            out[ax] += p.vals[b].actual[ax]
            return ("concat", (a, b), {"axis": ax}), tuple(out)
        if kind == "stack":
            b = self.pick(lambda j: p.vals[j].actual == A)
            ax = draw(st.integers(0, len(A)))
            out = list(A)
            out.insert(ax, 2)
            return ("stack", (a, b), {"axis": ax}), tuple(out)
        if kind == "split":
            even = [k for k, d in enumerate(A) if d % 2 == 0]
            if not even:
                return None
            ax = draw(st.sampled_from(even))
            part = draw(st.integers(0, 1))
            out = list(A)
            out[ax] //= 2
            return ("split", (a,), {"axis": ax, "part": part}), tuple(out)
        if kind == "unstack":
            if not A:
                return None
            ax = draw(st.integers(0, len(A) - 1))
            part = draw(st.integers(0, A[ax] - 1))
            return ("unstack", (a,), {"axis": ax, "num": A[ax], "part": part}), \
                tuple(d for k, d in enumerate(A) if k != ax)
        if kind == "softmax":
            if not A:
                return None
            name = draw(st.sampled_from(["softmax", "log_softmax"]))
            ax = draw(st.integers(-len(A), len(A) - 1))
            return (name, (a,), {"axis": ax}), A
        if kind == "broadcast_to":
            static = p.static(a)
            target = tuple(draw(st.integers(1, 3)) if s == 1 else d
                           for d, s in zip(A, static))
            lead = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
            return ("broadcast_to", (a,), {"shape": lead + target}), lead + target
        raise AssertionError(kind)

    def build(self, max_ops):
        for _ in range(self.draw(st.integers(1, 2), "inputs")):
            self.new_input()
        n_ops = self.draw(st.integers(2, max_ops), "ops")
        done = 0
        for _ in range(3 * n_ops):  # an op kind that does not fit the operand is drawn again
            if done == n_ops:
                break
            made = self.op()
            if made is None:
                continue
            done += 1
            instr, out = made
            with self.p.graph.as_default():
                v = rg_apply(instr, [self.p.vals[i].value for i in instr[1]])
            self.add(tuple(out), v, instr)
        return self.p


def rg_apply(instr, args):
    name, _, p = instr
    if name in UNARY:
        return UNARY[name][0](args[0], p)
    if name in BINARY:
        return BINARY[name][0](args[0], args[1], p)
    a = args[0]
    if name == "matmul":
        return rg.matmul(a, args[1])
    if name in ("reduce_sum", "reduce_mean", "reduce_max"):
        return getattr(rg, name)(a, p["axis"], p["keepdims"])
    if name == "transpose":
        return rg.transpose(a, p["perm"])
    if name == "reshape":
        return rg.reshape(a, p["shape"])
    if name == "expand_dims":
        return rg.expand_dims(a, p["axis"])
    if name == "squeeze":
        return rg.squeeze(a, p["axis"])
    if name == "getitem":
        return a[p["key"]]
    if name == "concat":
        return rg.concat([a, args[1]], p["axis"])
    if name == "stack":
        return rg.stack([a, args[1]], p["axis"])
    if name == "split":
        return rg.split(a, 2, p["axis"])[p["part"]]
    if name == "unstack":
        return rg.unstack(a, num=p["num"], axis=p["axis"])[p["part"]]
    if name == "softmax":
        return rg.nn.softmax(a, p["axis"])
    if name == "log_softmax":
        return rg.nn.log_softmax(a, p["axis"])
    if name == "broadcast_to":
        return rg.broadcast_to(a, p["shape"])
    raise AssertionError(name)


def np_apply(instr, args):
    """(value, kink margin) of one instruction, in NumPy."""
    name, _, p = instr
    if name in UNARY:
        _, fn, kink = UNARY[name]
        return fn(args[0], p), (kink(args[0], p) if kink else np.inf)
    if name in BINARY:
        _, fn, kink = BINARY[name]
        return fn(args[0], args[1], p), (kink(args[0], args[1], p) if kink else np.inf)
    a = args[0]
    if name == "matmul":
        return a @ args[1], np.inf
    if name == "reduce_sum":
        return np.sum(a, axis=p["axis"], keepdims=p["keepdims"]), np.inf
    if name == "reduce_mean":
        return np.mean(a, axis=p["axis"], keepdims=p["keepdims"]), np.inf
    if name == "reduce_max":
        return np.max(a, axis=p["axis"], keepdims=p["keepdims"]), _max_gap(a, p["axis"])
    if name == "transpose":
        return np.transpose(a, p["perm"]), np.inf
    if name == "reshape":
        return np.reshape(a, p["shape"]), np.inf
    if name == "expand_dims":
        return np.expand_dims(a, p["axis"]), np.inf
    if name == "squeeze":
        return np.squeeze(a, p["axis"]), np.inf
    if name == "getitem":
        return a[p["key"]], np.inf
    if name == "concat":
        return np.concatenate([a, args[1]], p["axis"]), np.inf
    if name == "stack":
        return np.stack([a, args[1]], p["axis"]), np.inf
    if name == "split":
        return np.split(a, 2, p["axis"])[p["part"]], np.inf
    if name == "unstack":
        return np.moveaxis(a, p["axis"], 0)[p["part"]], np.inf
    if name == "softmax":
        return _np_softmax(a, p["axis"]), np.inf
    if name == "log_softmax":
        return _np_log_softmax(a, p["axis"]), np.inf
    if name == "broadcast_to":
        return np.broadcast_to(a, p["shape"]), np.inf
    raise AssertionError(name)


def np_eval(prog: Prog, feeds: list):
    """Every value of the program in float64 NumPy, and the smallest kink margin met."""
    vals, margin = [], np.inf
    for instr in prog.instrs:
        if instr[0] == "input":
            vals.append(np.asarray(feeds[instr[1]], np.float64))
        else:
            v, m = np_apply(instr, [vals[i] for i in instr[1]])
            vals.append(np.asarray(v, np.float64))
            margin = min(margin, m)
    return vals, margin


def _feeds(prog: Prog, seed: int):
    rng = np.random.default_rng(seed)
    return [(0.8 * rng.standard_normal(prog.vals[i].actual)).astype(prog.dtype)
            for i, _ in prog.inputs]


@_examples(120)
@given(data=st.data(), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**16))
def test_random_graphs_match_numpy(data, dtype, seed):
    prog = Builder(data, dtype).build(max_ops=8)
    ops = [i for i, ins in enumerate(prog.instrs) if ins[0] != "input"]
    if not ops:
        return
    note("program: " + "; ".join(f"%{i} = {ins[0]}{ins[1:]}" for i, ins in enumerate(prog.instrs)))
    event(f"{len(ops)} ops")
    feeds = _feeds(prog, seed)
    want, _ = np_eval(prog, feeds)
    if not all(np.all(np.isfinite(w)) and np.abs(w).max(initial=0) < 1e6 for w in want):
        event("skipped: values overflow")
        return
    fd = {ph: f for (_, ph), f in zip(prog.inputs, feeds)}
    last = prog.vals[ops[-1]].value
    every = [prog.vals[i].value for i in ops]
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 1e-5)
    for passes in (True, False):
        sess = rg.Session(prog.graph, passes=passes)
        got_last = sess.run(last, fd)
        got_all = sess.run(every, fd)
        for v, g, i in [(last, got_last, ops[-1])] + list(zip(every, got_all, ops)):
            assert g.dtype == dtype, (prog.instrs[i], g.dtype)
            assert g.shape == prog.vals[i].actual, (prog.instrs[i], g.shape)
            assert v.type.accepts(g.shape)
            scale = 1.0 + np.abs(want[i]).max(initial=0)
            np.testing.assert_allclose(g, want[i], rtol=rtol, atol=atol * scale,
                                       err_msg=f"passes={passes}: %{i} = {prog.instrs[i]}")


@_examples(100)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_random_graph_gradients_match_finite_differences(data, seed):
    prog = Builder(data, np.float64).build(max_ops=7)
    ops = [i for i, ins in enumerate(prog.instrs) if ins[0] != "input"]
    if not ops:
        return
    note("program: " + "; ".join(f"%{i} = {ins[0]}{ins[1:]}" for i, ins in enumerate(prog.instrs)))
    rng = np.random.default_rng(seed)
    feeds = _feeds(prog, seed)
    weights = {i: rng.standard_normal(prog.vals[i].actual) for i in ops}
    want, margin = np_eval(prog, feeds)
    if margin < 1e-4:
        event("skipped: an input within 1e-4 of a kink (relu/abs/max/where/clip)")
        return
    if not all(np.all(np.isfinite(w)) and np.abs(w).max(initial=0) < 1e4 for w in want):
        event("skipped: values overflow")
        return

    def loss_np(xs):
        vals, _ = np_eval(prog, xs)
        return sum(float(np.sum(vals[i] * w)) for i, w in weights.items())

    with prog.graph.as_default():
        loss = rg.add_n([rg.reduce_sum(prog.vals[i].value * rg.constant(w))
                         for i, w in weights.items()])
        grads = rg.gradients(loss, [ph for _, ph in prog.inputs])
    fd = {ph: f for (_, ph), f in zip(prog.inputs, feeds)}
    fetch = [g for g in grads if g is not None]
    results = []
    for passes in (False, True):
        try:
            got = iter(rg.Session(prog.graph, passes=passes).run(fetch, fd))
        except AssertionError as exc:  # test_fusion_never_creates_a_cycle (xfail)
            if passes and KNOWN_BUGS and "cycle through" in str(exc):
                event("known bug: the fusion pass made a cycle")
                continue
            raise
        results.append([next(got) if g is not None else np.zeros(f.shape)
                        for g, f in zip(grads, feeds)])
    for a in results[1:]:  # passes on and off agree
        for x, y in zip(a, results[0]):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)
    sym = results[0]
    for g, f in zip(sym, feeds):
        assert g.shape == f.shape
    eps = 1e-6
    for _ in range(2):  # central differences along random directions
        us = [rng.standard_normal(f.shape) for f in feeds]
        plus = loss_np([f + eps * u for f, u in zip(feeds, us)])
        minus = loss_np([f - eps * u for f, u in zip(feeds, us)])
        numeric = (plus - minus) / (2 * eps)
        symbolic = sum(float(np.sum(g * u)) for g, u in zip(sym, us))
        size = 1.0 + sum(float(np.abs(g * u).sum()) for g, u in zip(sym, us))
        assert abs(numeric - symbolic) <= 1e-5 * size, (numeric, symbolic)


# --- random loop bodies ------------------------------------------------------------------------
def _loop_program(draw, B, H):
    """Instructions over the pool [h (carry) [B,H], x (step slice) [B,H], w [H], W [H,H]]:
    elementwise ops with broadcasting and products with W; all shapes static."""
    shapes = [(B, H), (B, H), (H,), (H, H)]
    instrs = []
    for _ in range(draw(st.integers(1, 6), "body ops")):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "matmul"]), "body op kind")
        cands = [i for i in range(len(shapes)) if i != 3]  # W only as a matmul operand
        a = draw(st.sampled_from(cands), "operand")
        if kind == "unary":
            name = draw(st.sampled_from(sorted(UNARY)), "unary op")
            params = {"c": 0.5, "d": 0.25} if name == "scale" else {}
            instrs.append((name, (a,), params))
            shapes.append(shapes[a])
        elif kind == "binary":
            b = draw(st.sampled_from([j for j in cands if _np_broadcastable(shapes[a],
                                                                            shapes[j])]),
                     "partner")
            instrs.append((draw(st.sampled_from(sorted(BINARY)), "binary op"), (a, b), {}))
            shapes.append(np.broadcast_shapes(shapes[a], shapes[b]))
        else:
            rows = [j for j, s in enumerate(shapes) if len(s) == 2 and s[1] == H and j != 3]
            a = draw(st.sampled_from(rows), "matmul operand")
            instrs.append(("matmul", (a, 3), {}))
            shapes.append((shapes[a][0], H))
    return instrs, shapes


def _np_broadcastable(a, b):
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False



def _step(apply, instrs, h, x, w, W, fit):
    """One loop step of the program: (new carry, per-step output)."""
    vals, margin = [h, x, w, W], np.inf
    for ins in instrs:
        r = apply(ins, [vals[i] for i in ins[1]])
        if isinstance(r, tuple):
            r, m = r
            margin = min(margin, m)
        vals.append(r)
    v = fit(vals[-1])
    return v, v, margin


@_examples(80)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_random_loop_bodies_match_numpy_and_finite_differences(data, seed):
    """rg.lax_scan over a random body: outputs, final carry and gradients w.r.t. the initial carry,
    the sequence and the loop-invariant weights; passes on and off; NumPy reference loop."""
    draw = data.draw
    B, H, T = draw(st.integers(1, 3), "B"), draw(st.integers(1, 3), "H"), draw(st.integers(1, 3))
    instrs, shapes = _loop_program(draw, B, H)
    note(f"B={B} H={H} T={T} body: {instrs}")
    rng = np.random.default_rng(seed)
    h0, xs = 0.7 * rng.standard_normal((B, H)), 0.7 * rng.standard_normal((T, B, H))
    w, W = 0.7 * rng.standard_normal(H), 0.5 * rng.standard_normal((H, H))
    R, S = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    def np_run(h0, xs, w, W):
        h, ys, margin = h0, [], np.inf
        for t in range(T):
            h, y, m = _step(np_apply, instrs, h, xs[t], w, W,
                            lambda v: np.tanh(np.broadcast_to(v, (B, H))) * 0.5 + h * 0.5)
            ys.append(y)
            margin = min(margin, m)
        return h, np.stack(ys), margin

    want_h, want_ys, margin = np_run(h0, xs, w, W)
    g = rg.Graph()
    with g.as_default():
        ph = {k: rg.placeholder(rg.float64, v.shape, name=k)
              for k, v in dict(h0=h0, xs=xs, w=w, W=W).items()}

        def body(carry, x_t):
            h = carry[0]
            new, y, _ = _step(rg_apply, instrs, h, x_t[0], ph["w"], ph["W"],
                              lambda v: rg.tanh(v + rg.zeros_like(h)) * 0.5 + h * 0.5)
            return [new], [y]

        (final,), (ys,) = rg.lax_scan(body, [ph["h0"]], [ph["xs"]])
        loss = rg.reduce_sum(final * S) + rg.reduce_sum(ys * R)
        grads = rg.gradients(loss, list(ph.values()))
    fd = {ph["h0"]: h0, ph["xs"]: xs, ph["w"]: w, ph["W"]: W}
    runs = []
    for passes in (False, True):
        try:
            runs.append(rg.Session(g, passes=passes).run(
                [final, ys, [x for x in grads if x is not None]], fd))
        except AssertionError as exc:  # test_fusion_never_creates_a_cycle (xfail)
            if passes and KNOWN_BUGS and "cycle through" in str(exc):
                event("known bug: the fusion pass made a cycle")
                continue
            raise
    for got_h, got_ys, got_g in runs:
        np.testing.assert_allclose(got_h, want_h, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got_ys, want_ys, rtol=1e-10, atol=1e-12)
        for x, y in zip(got_g, runs[0][2]):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-10)
    if margin < 1e-4:
        event("gradient check skipped: near a kink")
        return
    it = iter(runs[0][2])
    sym = [next(it) if gr is not None else np.zeros(v.shape)
           for gr, v in zip(grads, (h0, xs, w, W))]

    def loss_np(args):
        h, ys_, _ = np_run(*args)
        return float(np.sum(h * S) + np.sum(ys_ * R))

    eps = 1e-6
    for _ in range(2):
        us = [rng.standard_normal(v.shape) for v in (h0, xs, w, W)]
        plus = loss_np([v + eps * u for v, u in zip((h0, xs, w, W), us)])
        minus = loss_np([v - eps * u for v, u in zip((h0, xs, w, W), us)])
        numeric = (plus - minus) / (2 * eps)
        symbolic = sum(float(np.sum(gr * u)) for gr, u in zip(sym, us))
        size = 1.0 + sum(float(np.abs(gr * u).sum()) for gr, u in zip(sym, us))
        assert abs(numeric - symbolic) <= 1e-5 * size, (numeric, symbolic)


# --- bugs the fuzzer found (minimised) -------------------------------------------------------
def test_sigmoid_of_a_scalar():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float64, [], name="a")
        y = rg.sigmoid(a)
        (ga,) = rg.gradients(y, [a])
    for passes in (True, False):
        got, grad = rg.Session(g, passes=passes).run([y, ga], {a: 0.3})
        s = 1 / (1 + np.exp(-0.3))
        np.testing.assert_allclose(got, s, rtol=1e-12)
        np.testing.assert_allclose(grad, s * (1 - s), rtol=1e-12)


def test_fusion_never_creates_a_cycle():
    g = rg.Graph()
    with g.as_default():
        a = rg.placeholder(rg.float64, [2], name="a")
        b = rg.placeholder(rg.float64, [2], name="b")
        w = rg.constant(np.array([0.5, -1.0]))
        loss = rg.reduce_sum((rg.reduce_sum(a) + b) * w) + rg.reduce_sum((a + b) * 2.0)
        grads = rg.gradients(loss, [a, b])
    fd = {a: np.array([1.0, 2.0]), b: np.array([3.0, 4.0])}
    want = [np.full(2, w_sum + 2.0) for w_sum in [-0.5]] + [np.array([2.5, 1.0])]
    for passes in (False, {"fuse": True, **{k: False for k in ("fold_constants", "cse", "licm",
                                                                 "hoist_sequence",
                                                                 "sink_accumulators",
                                                                 "sink_outputs")}}, True):
        got = rg.Session(g, passes=passes).run(grads, fd)
        for x, y in zip(got, want):
            np.testing.assert_allclose(x, y, rtol=1e-12)


# =============================================================================================
# 2. static vs dynamic unrolling under random sequence lengths
# =============================================================================================
D = 3
CELLS = {
    "basic": lambda: rg.nn.BasicRNNCell(4),
    "lstm_peep_proj": lambda: rg.nn.LSTMCell(4, use_peepholes=True, num_proj=3, cell_clip=0.8,
                                             forget_bias=0.5),
    "gru": lambda: rg.nn.GRUCell(4),
    "gru_reset_after": lambda: rg.nn.GRUCell(4, reset_after=True),
    "multi": lambda: rg.nn.MultiRNNCell([rg.nn.LSTMCell(3), rg.nn.GRUCell(2)]),
}
_CACHE: dict = {}


_flat, _pack = flatten, pack_as  # the library's own nesting helpers


def _rnn_graph(kind, mode, T, time_major):
    """(session, placeholders, fetches) for one configuration, built once and cached."""
    key = (kind, mode, T, time_major)
    if key in _CACHE:
        return _CACHE[key]
    g = rg.Graph()
    with g.as_default():
        cell = CELLS[kind]()
        shape = [T, None, D] if time_major else [None, T, D]
        X = rg.placeholder(rg.float64, shape, name="X")
        seq = rg.placeholder(rg.int32, [None], name="seq")
        sizes = _flat(cell.state_size)
        init = [rg.placeholder(rg.float64, [None, n], name=f"s{k}") for k, n in enumerate(sizes)]
        state0 = _pack(cell.state_size, init)
        if mode == "dynamic":
            out, state = rg.nn.dynamic_rnn(cell, X, sequence_length=seq, initial_state=state0,
                                           time_major=time_major)
            out_tm = out if time_major else rg.transpose(out, [1, 0, 2])
        else:
            xs = rg.unstack(X, axis=0 if time_major else 1)
            outs, state = rg.nn.static_rnn(cell, xs, sequence_length=seq, initial_state=state0)
            out_tm = rg.stack(outs, axis=0)
        R = rg.placeholder(rg.float64, [T, None, cell.output_size], name="R")
        S = [rg.placeholder(rg.float64, [None, n], name=f"S{k}") for k, n in enumerate(sizes)]
        loss = rg.reduce_sum(out_tm * R) + rg.add_n(
            [rg.reduce_sum(s * w) for s, w in zip(_flat(state), S)])
        wrt = [X] + init + list(cell.variables)
        grads = rg.gradients(loss, wrt)
    entry = dict(sess=rg.Session(g), X=X, seq=seq, init=init, R=R, S=S, cell=cell,
                 fetch=[out_tm, _flat(state), grads], sizes=sizes)
    _CACHE[key] = entry
    return entry


@_examples(40)
@given(kind=st.sampled_from(sorted(CELLS)), T=st.sampled_from([1, 3]),
       time_major=st.booleans(), data=st.data(), seed=st.integers(0, 2**16))
def test_static_and_dynamic_agree_for_random_lengths(kind, T, time_major, data, seed):
    B = data.draw(st.integers(1, 4), "batch")
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B), "lengths")
    rng = np.random.default_rng(seed)
    dyn, sta = _rnn_graph(kind, "dynamic", T, time_major), _rnn_graph(kind, "static", T,
                                                                        time_major)
    weights = {v.node.name: 0.6 * rng.standard_normal(v.shape) for v in dyn["cell"].variables}
    assert set(weights) == {v.node.name for v in sta["cell"].variables}
    x = rng.standard_normal((T, B, D) if time_major else (B, T, D))
    inits = [rng.standard_normal((B, n)) for n in dyn["sizes"]]
    R = rng.standard_normal((T, B, dyn["cell"].output_size))
    S = [rng.standard_normal((B, n)) for n in dyn["sizes"]]
    results = []
    for m in (dyn, sta):
        for name, w in weights.items():
            m["sess"].load_variable(name, w)
        feed = {m["X"]: x, m["seq"]: np.array(lengths, np.int32), m["R"]: R}
        feed.update(zip(m["init"], inits))
        feed.update(zip(m["S"], S))
        results.append(_flat(m["sess"].run(m["fetch"], feed)))
    out = results[0][0]
    for t in range(T):  # outputs past each row's length are zero
        for b in range(B):
            if t >= lengths[b]:
                assert not out[t, b].any()
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
