"""ONNX export: rg.io.to_onnx(fetches, path, feeds=None, session=sess).

    model = rg.io.to_onnx({"probs": probs}, "model.onnx", session=sess)

export.py is the driver, ops.py the per-op table, rnn_ops.py route 1 (ONNX's RNN/LSTM/GRU
ops for recognised cells), loops.py route 2 (Scan/Loop with the body exported op by op),
check.py runs a model in onnxruntime beside rnngraph. The onnx and onnxruntime packages (the
`onnx` extra) are imported only when used.
"""
from .check import compare
from .export import Exported, export, to_onnx

__all__ = ["Exported", "compare", "export", "to_onnx"]
