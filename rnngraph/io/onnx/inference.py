"""Export for inference: dropout masks whose keep probability is 1 leave the exported graph.

rnngraph's dropout (nn/dropout.py: nn.dropout, DropoutWrapper, the Keras cells' dropout=) is
one pattern of op types, whatever its names:

    where(less(U, keep), div(x, keep'), zeros_like(x))     U = random_standard[uniform]

with keep / keep' the keep probability (or a cast of it). When both evaluate, at export, to
exactly 1 (a constant, a placeholder_with_default's default that is not fed, or foldable math
on those such as `1 - rate`), U < 1 always holds and the `where` is x: the export binds the
where's output to x, so the random node, the comparison, the division and the zeros are no
longer needed by anything and are not written (nor the random run counter, nor a loop input
the body read only for the mask). That is how torch.onnx exports a model in eval mode.

A mask whose keep probability is fed (listed in `feeds`), is not a build-time value, or is
not 1 stays in the graph, and exporting its random node raises ExportError naming the keep
probability, the dropout's line and what to do (`reasons`).

`View` carries the substitution: `resolve(v)` is what a value stands for, `inputs(node)` the
values a node really reads (for a loop node, only the inputs whose body params something live
reads), `live_nodes(body)` the body nodes the loop's results need.
"""
from __future__ import annotations

import numpy as np

from ...ir.value import Value


class View:
    """The graph as the export sees it: dropout masks at keep probability 1 replaced by their
    input. An empty View (no substitutions) is the graph as built."""

    def __init__(self, subst=None, reasons=None):
        self.subst: dict = dict(subst or {})     # Value -> the Value it stands for
        self.reasons: dict = dict(reasons or {})  # random node -> why its mask stays
        self._live: dict = {}
        self._read: dict = {}

    def resolve(self, v):
        while v in self.subst:
            v = self.subst[v]
        return v

    def inputs(self, node) -> list:
        """The values `node` reads, resolved; a loop reads only the inputs behind the body
        params its live body nodes (or results) read."""
        if node.op.name in ("identity", "read_variable"):   # (the rest: control dependencies,
            return [self.resolve(node.inputs[0])]            # an order an export has no use for)
        if node.op.name != "loop":
            return [self.resolve(v) for v in node.inputs]
        unread = self.unread_params(node)
        op = node.op
        ports = op.in_ports()
        out = []
        for group, vals in ports.split(node.inputs).items():
            params = op.body.params.get(group, []) if group == "invariant" else []
            for i, v in enumerate(vals):
                if i < len(params) and params[i] in unread:
                    continue
                out.append(self.resolve(v))
        return out

    def unread_params(self, node) -> set:
        """The invariant params of loop `node`'s body that no live body node reads."""
        body = node.op.body
        if body not in self._read:
            read = set()
            for n in self.live_nodes(body):
                read.update(self.inputs(n))
            read.update(self.resolve(v) for role in ("cond", "carried", "output")
                        for v in body.results.get(role, []))
            self._read[body] = {p for p in body.params.get("invariant", []) if p not in read}
        return self._read[body]

    def live_nodes(self, body) -> list:
        """The body nodes the next state, the outputs and the condition need, in body order
        (not those only the residuals of a gradient loop need, nor a removed dropout mask)."""
        if body not in self._live:
            values = [self.resolve(v) for role in ("cond", "carried", "output")
                      for v in body.results.get(role, [])]
            self._live[body] = self.ancestors(body, values)
        return self._live[body]

    def ancestors(self, body, values) -> list:
        """The body nodes `values` depend on, in body order (params excluded)."""
        need, stack = set(), [v.node for v in values if v.graph is body]
        while stack:
            n = stack.pop()
            if n in need:
                continue
            need.add(n)
            stack.extend(v.node for v in self.inputs(n) if v.graph is body)
        return [n for n in body.nodes if n in need and n.op.name != "param"]


EMPTY = View()


def dropout_view(graph, fed) -> View:
    """A View of `graph` (root) with every dropout mask whose keep probability is 1 at export
    removed; `fed` are the Values the model takes as inputs (a fed keep probability is not
    known at export)."""
    outer = {}   # body param -> the outer value it stands for (invariant inputs of loops)
    masks = []

    def scan(nodes):
        for n in nodes:
            if n.op.name == "loop":
                vals = n.op.in_ports().split(n.inputs).get("invariant", [])
                for p, v in zip(n.op.body.params.get("invariant", []), vals):
                    outer[p] = v
                scan(n.op.body.nodes)
            elif n.op.name == "where":
                found = _mask(n)
                if found is not None:
                    masks.append((n, *found))

    scan(graph.nodes)
    subst, reasons = {}, {}
    for where, x, keeps, rand in masks:
        why = None
        for k in keeps:
            value, why = _evaluate(k, fed, outer)
            if why is None and not np.all(np.asarray(value) == 1):
                why = (f"its keep probability {_origin(k, outer).name} is "
                       f"{_fmt(value)} at export, not 1")
            if why is not None:
                break
        if why is None:
            subst[where.outputs[0]] = x
        else:
            reasons[rand] = (
                f"to_onnx(inference=True): the dropout mask {where.describe()} stays: {why}. "
                "An inference export removes dropout only where its keep probability is 1 "
                "(rate 0) at export: leave a placeholder_with_default keep probability out of "
                "feeds so its default (1.0) is used, or build the graph without dropout")
    return View(subst, reasons)


def _mask(where):
    """(x, [keep values], random node) when `where` is rnngraph's dropout mask, else None."""
    cond, kept, dropped = where.inputs
    less, div, zeros = cond.node, kept.node, dropped.node
    if less.op.name != "less" or div.op.name != "div" or zeros.op.name != "zeros_like":
        return None
    rand = less.inputs[0].node
    if rand.op.name != "random_standard" or rand.op.attrs().get("dist") != "uniform":
        return None
    x = div.inputs[0]
    if zeros.inputs[0] is not x:
        return None
    return x, [less.inputs[1], div.inputs[1]], rand


def _origin(v, outer):
    """The value a keep probability comes from: through body params, casts and identities."""
    while True:
        if v in outer:
            v = outer[v]
        elif v.node.op.name in ("cast", "identity") and v.node.inputs:
            v = v.node.inputs[0]
        else:
            return v.node


def _evaluate(v: Value, fed, outer, depth: int = 0):
    """(value, None) when `v` is known at export, else (None, why not)."""
    if depth > 64:
        return None, f"{v.name} is too deep a computation to evaluate at export"
    if v in fed:
        return None, f"its keep probability {v.node.describe()} is fed (an input of the model)"
    if v in outer:
        return _evaluate(outer[v], fed, outer, depth + 1)
    node = v.node
    op = node.op
    if op.name == "constant":
        return np.asarray(op.value), None
    if op.name == "placeholder_with_default":
        return _evaluate(node.inputs[0], fed, outer, depth + 1)
    if op.name == "placeholder":
        return None, f"its keep probability comes from {node.describe()}, a placeholder"
    if not op.foldable or op.stateful or op.name in ("variable", "param", "loop"):
        return None, (f"its keep probability comes from {node.describe()}, which is not "
                      "known at export")
    vals = []
    for u in node.inputs:
        val, why = _evaluate(u, fed, outer, depth + 1)
        if why is not None:
            return None, why
        vals.append(val)
    try:
        out = op.compute(np, *vals)
    except Exception as exc:  # noqa: BLE001  say why it could not be evaluated
        return None, f"evaluating {node.describe()} at export failed ({exc})"
    if isinstance(out, (list, tuple)):
        out = out[v.index]
    return np.asarray(out), None


def _fmt(value) -> str:
    a = np.asarray(value)
    return f"{float(a):g}" if a.size == 1 else f"{a!r}"
