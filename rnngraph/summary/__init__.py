"""tf.summary for TF1 programs: scalar / histogram summaries, merge / merge_all and FileWriter,
writing TensorBoard event files through the tensorboardX package (`pip install
rnngraph[tensorboard]`).

A summary here is a dict {tag: tensor}: `sess.run(merged)` returns {tag: array}, which
`FileWriter.add_summary(result, global_step)` writes. So the TF1 lines

    tf.summary.scalar("loss", loss); merged = tf.summary.merge_all()
    writer = tf.summary.FileWriter(logdir, sess.graph)
    writer.add_summary(sess.run(merged, feed), step)

run unchanged after the rename. FileWriter also writes the graph (its nodes, ops and inputs,
loop bodies nested under their loop's name) for TensorBoard's graph view. Its writer flushes
from a background thread, as TensorFlow's does: creating a FileWriter starts it, close() ends it.
"""
from __future__ import annotations

import weakref

import numpy as np

from ..ir.graph import Graph, get_default_graph
from ..ir.value import Value
from ..ops.base import as_value
from ..ops.graph_keys import register_collection

_registries: "weakref.WeakKeyDictionary[Graph, dict]" = weakref.WeakKeyDictionary()


def _registry(graph: Graph | None = None) -> dict:
    root = (graph or get_default_graph()).root
    return _registries.setdefault(root, {})


# rg.get_collection(rg.GraphKeys.SUMMARIES): the summaries made, as scalar() returned them
register_collection("summaries", lambda root: [{tag: v} for tag, (_, v) in _registry(root).items()])


def _unsupported(fn, **given):
    for arg, val in given.items():
        if val is not None:
            raise NotImplementedError(f"summary.{fn}: the argument {arg}= is not supported")


def _add(kind, name, tensor, family):
    if not isinstance(name, str) or not name:
        raise ValueError(f"summary: name must be a non-empty string, got {name!r}")
    value = as_value(tensor)
    graph = get_default_graph()
    scope = graph.current_scope()
    tag = "/".join(p for p in (scope, family, name) if p)
    reg = _registry(graph)
    base, k = tag, 1
    while tag in reg:   # TF makes summary names unique like op names
        tag = f"{base}_{k}"
        k += 1
    reg[tag] = (kind, value)
    return {tag: value}


def scalar(name, tensor, collections=None, family=None):
    """A scalar summary {tag: tensor}; the tag is `name` under the current name scope."""
    _unsupported("scalar", collections=collections)
    value = as_value(tensor)
    if value.type.rank != 0:
        raise ValueError(f"summary.scalar: '{name}' needs a scalar tensor, got {value.type}")
    return _add("scalar", name, value, family)


def histogram(name, values, collections=None, family=None):
    """A histogram summary {tag: tensor} of all the tensor's values."""
    _unsupported("histogram", collections=collections)
    return _add("histogram", name, values, family)


def merge(inputs, collections=None, name=None):
    """One summary holding all of `inputs` (summaries as scalar() returns them)."""
    _unsupported("merge", collections=collections)
    out = {}
    for s in inputs:
        if not isinstance(s, dict) or not all(isinstance(v, Value) for v in s.values()):
            raise TypeError(f"summary.merge: expected summaries (from summary.scalar / "
                            f"histogram), got {type(s).__name__}")
        out.update(s)
    return out


def merge_all(key="summaries", scope=None, name=None):
    """All summaries of the default graph (whose tag starts with `scope`), or None if none."""
    if key != "summaries":
        raise NotImplementedError(f"summary.merge_all: only key='summaries' exists, got {key!r}")
    reg = _registry()
    out = {tag: v for tag, (_, v) in reg.items() if scope is None or tag.startswith(scope)}
    return out or None


def _graph_def(graph: Graph):
    """TensorBoard's GraphDef of `graph`: one node per node (loop bodies under their loop)."""
    from tensorboardX.proto import graph_pb2, node_def_pb2   # optional: only when writing

    gd = graph_pb2.GraphDef()

    def add(g, prefix):
        for node in g.nodes:
            name = f"{prefix}{node.name}"
            nd = node_def_pb2.NodeDef(name=name, op=node.op.name)
            for v in node.inputs:
                src = f"{prefix if v.graph is g else ''}{v.node.name}"
                nd.input.append(src if v.index == 0 else f"{src}:{v.index}")
            gd.node.append(nd)
            for k, body in enumerate(node.op.subgraphs()):
                add(body, f"{name}/body{'' if k == 0 else k}/")
    add(graph.root, "")
    return gd


class FileWriter:
    """Writes event files into `logdir` for TensorBoard (tf.summary.FileWriter).

    graph: a Graph to show in TensorBoard's graph view (TF1 code passes `sess.graph`)."""

    def __init__(self, logdir, graph=None, max_queue=10, flush_secs=120, filename_suffix=None,
                 session=None, graph_def=None):
        _unsupported("FileWriter", session=session, graph_def=graph_def)
        try:
            from tensorboardX.writer import FileWriter as _TBWriter   # optional dependency
        except ImportError:
            raise ImportError("summary.FileWriter needs the tensorboardX package: pip install "
                              "'rnngraph[tensorboard]'") from None
        self._logdir = str(logdir)
        self._writer = _TBWriter(self._logdir, max_queue=max_queue, flush_secs=flush_secs,
                                 filename_suffix=filename_suffix or "")
        self._graph = None
        if graph is not None:
            self.add_graph(graph)

    def get_logdir(self) -> str:
        return self._logdir

    def add_graph(self, graph, global_step=None):
        if not isinstance(graph, Graph):
            raise TypeError(f"FileWriter.add_graph: expected an rnngraph Graph, got "
                            f"{type(graph).__name__}")
        from tensorboardX.proto import event_pb2   # optional dependency, present by now
        self._graph = graph.root
        event = event_pb2.Event(graph_def=_graph_def(graph).SerializeToString())
        self._writer.add_event(event, global_step)

    def add_summary(self, summary, global_step=None):
        """Write a summary result: the {tag: array} dict `sess.run(summary)` returned."""
        from tensorboardX import summary as tbs   # optional dependency, present by now
        if summary is None:
            return
        if not isinstance(summary, dict):
            raise TypeError(f"FileWriter.add_summary: expected the dict sess.run(summary) "
                            f"returns, got {type(summary).__name__}")
        step = None if global_step is None else int(np.asarray(global_step))
        kinds = {}
        for g in ([self._graph] if self._graph is not None else []) + [get_default_graph().root]:
            for tag, (kind, _) in _registry(g).items():
                kinds.setdefault(tag, kind)
        for tag, value in summary.items():
            arr = np.asarray(value)
            kind = kinds.get(tag, "scalar" if arr.ndim == 0 else "histogram")
            if kind == "scalar":
                proto = tbs.scalar(tag, float(arr))
            else:
                proto = tbs.histogram(tag, arr.astype(np.float64).ravel(), bins="auto")
            self._writer.add_summary(proto, step)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()

    def reopen(self):
        self._writer.reopen()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


__all__ = ["FileWriter", "histogram", "merge", "merge_all", "scalar"]
