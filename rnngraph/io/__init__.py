"""Save and load graphs with their variable values (rg.save / rg.load / rg.io.restore).

    rg.save("model.npz", session=sess, fetches={"loss": loss})   # graph + variable values
    graph, values = rg.load("model.npz")                         # {variable name: array}
    sess = rg.io.restore("model.npz")                            # a Session, values loaded
    saved = rg.io.read("model.npz"); saved.fetches["loss"]       # everything, by name

One file in NumPy's .npz layout: a `graph.json` entry (the IR as JSON, values referenced by
their %id) plus `.npy` entries for constants and variable values. Loading never unpickles or
evaluates anything from the file, and checks every attribute of every node against its op's
declared schema (schema.py); a bad file raises `InvalidFileError` (a ValueError) naming the
member at fault. Sizes are bounded before anything is decompressed (`LoadLimits`).
"""
from .archive import FORMAT_VERSION, Saved, load, read, restore, save
from .codec import InvalidFileError
from .container import LoadLimits
from .registry import op_registry
from .onnx import to_onnx   # ONNX export; imports onnx only when called

__all__ = ["FORMAT_VERSION", "InvalidFileError", "LoadLimits", "Saved", "load", "op_registry",
           "read", "restore", "save", "to_onnx"]
