"""Dtype names as users write them (rg.float32, 'float32', np.float32) and their short forms."""
from __future__ import annotations

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

_SHORT = {"float16": "f16", "float32": "f32", "float64": "f64", "int8": "i8", "int16": "i16",
          "int32": "i32", "int64": "i64", "uint8": "u8", "bool": "bool"}


# names whose TF1 meaning differs from NumPy's (tf.as_dtype): "float" is float32 in TF, float64
# in NumPy; Python's float and int types likewise (a Python float converts to float32, an int
# to int32, as in TF1's constants)
_TF_NAMES = {"float": float32, "half": float16, "double": float64, float: float32, int: int32,
             bool: bool_}


def as_dtype(dtype) -> np.dtype:
    """Normalise a dtype as TF1 names it (tf.as_dtype): rg.float32, np.float32, a TF1 name
    ("float32", "float" = float32, "double", "half"), a Python type (float = float32,
    int = int32) or anything NumPy accepts; raise TypeError naming the bad value."""
    if isinstance(dtype, np.dtype):
        return dtype
    try:
        known = _TF_NAMES.get(dtype)
    except TypeError:   # unhashable
        known = None
    if known is not None:
        return known
    if dtype == "int":   # NumPy: int64, TF1: not a dtype name
        raise TypeError("not a dtype: 'int' (TF1 has no dtype of that name: write 'int32' or "
                        "'int64')")
    if hasattr(dtype, "as_numpy_dtype"):   # a TF DType
        dtype = dtype.as_numpy_dtype
    try:
        return np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"not a dtype: {dtype!r}") from exc


def short_name(dtype: np.dtype) -> str:
    return _SHORT.get(dtype.name, dtype.name)


def is_floating(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def is_integer(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer)
