"""Exceptions and the user-source locations that error messages quote."""
from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class RnnGraphError(Exception):
    """Base class for rnngraph errors that are not plain TypeError/ValueError."""


class ShapeError(ValueError):
    """Shapes or dtypes of an op's inputs do not fit together (raised at build time)."""


class GradientError(RnnGraphError, LookupError):
    """An op on the path from xs to ys has no gradient rule."""


class ExecutionError(RnnGraphError, RuntimeError):
    """A kernel failed at run time; the message names the node and the line that built it."""


class OutOfMemoryError(RnnGraphError, MemoryError):
    """A device ran out of its byte capacity."""


def user_location() -> str:
    """'file.py:LINE' of the innermost stack frame outside the rnngraph package."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not os.path.abspath(path).startswith(_PACKAGE_DIR + os.sep):
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class InvalidArgumentError(ExecutionError, ValueError):
    """A runtime check on fed data failed (bad sequence_length, NaN with check_numerics...)."""
