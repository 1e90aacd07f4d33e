"""Run an exported model in onnxruntime beside rnngraph and compare (`rnngraph export --check`).

onnxruntime is imported only here and only when called (the optional `onnx` extra). Its
session is made with one intra-op and one inter-op thread, so checking a model starts no
thread pool sized to the machine.
"""
from __future__ import annotations

import importlib

import numpy as np

from .export import Exported


def import_onnxruntime():
    """The onnxruntime module, imported on first use: it is an optional extra."""
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise ImportError("checking an ONNX model needs onnxruntime: pip install rnngraph[onnx] "
                          "(onnx and onnxruntime)") from None


def run_onnxruntime(exported: Exported, feed: dict) -> dict:
    """{output name: array} from onnxruntime; `feed` maps the inputs' Values to arrays."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sess = ort.InferenceSession(exported.model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    inputs = {}
    for name, v in exported.inputs.items():
        if v not in feed:
            raise ValueError(f"compare: the feed has no value for input {name!r}")
        inputs[name] = np.asarray(feed[v], dtype=v.dtype)
    names = list(exported.outputs)
    return dict(zip(names, sess.run(names, inputs)))


def compare(exported: Exported, session, feed: dict) -> dict:
    """{output name: max |onnxruntime - rnngraph|} on `feed` ({input Value: array})."""
    ours = session.run(list(exported.outputs.values()), feed_dict=feed)
    theirs = run_onnxruntime(exported, feed)
    errors = {}
    for (name, _), mine in zip(exported.outputs.items(), ours):
        got = theirs[name]
        mine = np.asarray(mine)
        if got.shape != mine.shape:
            raise ValueError(f"compare: output {name!r} has shape {got.shape} in onnxruntime "
                             f"and {mine.shape} in rnngraph")
        diff = np.abs(got.astype(np.float64) - mine.astype(np.float64))
        errors[name] = float(diff.max()) if diff.size else 0.0
    return errors


def random_feed(exported: Exported, batch: int = 3, steps: int = 5, seed: int = 0) -> dict:
    """Random inputs: the first unknown dim of each is `batch`, the others `steps`; floats
    are normal(0, 1); sequence lengths (ints rnngraph checks as sequence_length) are random
    in [0, steps] with one full-length row; other ints are zeros."""
    rng = np.random.default_rng(seed)
    lengths = _length_inputs(exported)
    feed = {}
    for v in exported.inputs.values():
        shape, first = [], True
        for d in v.shape:
            if d is None:
                shape.append(batch if first else steps)
                first = False
            else:
                shape.append(d)
        if np.issubdtype(v.dtype, np.floating):
            feed[v] = rng.normal(0.0, 1.0, size=shape).astype(v.dtype)
        elif v in lengths:
            top = _time_of(exported, steps)
            vals = rng.integers(0, top + 1, size=shape)
            if vals.size:
                vals.flat[0] = top
            feed[v] = vals.astype(v.dtype)
        else:
            feed[v] = np.zeros(shape, dtype=v.dtype)
    return feed


def _time_of(exported: Exported, steps: int) -> int:
    for v in exported.inputs.values():
        if v.type.rank >= 3 and np.issubdtype(v.dtype, np.floating):
            known = [d for d in v.shape[:2] if d is not None]
            if len(known) == 1 and v.shape[0] is None:
                return known[0]
    return steps


def _length_inputs(exported: Exported) -> set:
    inputs = set(exported.inputs.values())
    if not inputs:
        return set()
    graph = next(iter(inputs)).graph.root
    found = set()
    for n in graph.nodes:
        if n.op.name == "check_sequence_length":
            v = n.inputs[0]
            while v not in inputs and v.node.op.name == "cast":
                v = v.node.inputs[0]
            if v in inputs:
                found.add(v)
    return found
