"""rnngraph imports and runs without the onnx extra; exporting then names the extra to install.
(Runs with or without onnx installed: the import is made to fail here.)"""
import importlib
import sys

import pytest

import rnngraph as rg


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` now raises ImportError
    with rg.Graph().as_default():
        x = rg.placeholder(rg.float32, [2], name="x")
        with pytest.raises(ImportError, match=r"pip install rnngraph\[onnx\]"):
            rg.io.to_onnx(rg.tanh(x), None)


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    from rnngraph.io.onnx.check import import_onnxruntime
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install rnngraph\[onnx\]"):
        import_onnxruntime()


def test_the_exporter_modules_do_not_import_onnx_at_load():
    for name in ("bidirectional", "builder", "check", "export", "inference", "loops", "ops",
                 "rnn_ops"):
        mod = importlib.import_module(f"rnngraph.io.onnx.{name}")
        assert "onnx" not in vars(mod) and "onnxruntime" not in vars(mod), name
