"""Dtype names as users write them (rg.float32, 'float32', np.float32) and their short forms."""
from __future__ import annotations

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

_SHORT = {"float16": "f16", "float32": "f32", "float64": "f64", "int8": "i8", "int16": "i16",
          "int32": "i32", "int64": "i64", "uint8": "u8", "bool": "bool"}


def as_dtype(dtype) -> np.dtype:
    """Normalise anything numpy accepts as a dtype; raise TypeError naming the bad value."""
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
