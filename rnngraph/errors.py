"""Exceptions and the user-source locations that error messages quote."""
from __future__ import annotations

import functools
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


_CLI = os.path.join(_PACKAGE_DIR, "cli.py")
CLI_LOCATION = "<rnngraph command line>"   # (under the CLI no user's line called)


def user_location() -> str:
    """'file.py:LINE' of the innermost stack frame outside the rnngraph package; under the
    rnngraph command line (no user's frame inside its main()) CLI_LOCATION. Frames of the
    Python runtime (`<frozen runpy>`, `python -m`'s runpy) are no user's line either."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        full = os.path.abspath(path)
        if full == _CLI and frame.f_code.co_name == "main":
            return CLI_LOCATION
        if not full.startswith(_PACKAGE_DIR + os.sep) and not path.startswith("<frozen ") \
                and os.path.basename(path) != "runpy.py":
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def located(fn):
    """Decorator for builders users call: a plain ValueError or TypeError raised inside that
    does not yet say where gets ' (at file.py:LINE)', the user's line that called."""
    @functools.wraps(fn)
    def builder(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError) as e:
            if type(e) in (ValueError, TypeError) and len(e.args) == 1 \
                    and isinstance(e.args[0], str):
                where = user_location()
                if where not in e.args[0]:
                    e.args = (f"{e.args[0]} (at {where})",)
            raise
    return builder


class InvalidArgumentError(ExecutionError, ValueError):
    """A runtime check on fed data failed (bad sequence_length, NaN with check_numerics...)."""


class NumericsError(ExecutionError, FloatingPointError):
    """A checked tensor held NaN or Inf; catchable as ExecutionError or FloatingPointError."""


class DistributedError(ExecutionError):
    """Data-parallel training failed (rnngraph.distributed): MPI missing for more than one
    process, ranks that built different graphs, a rank that did not answer within the timeout."""


class VerificationError(AssertionError):
    """The IR broke an invariant every pass and builder must keep (ir/verify.py)."""


class InvalidFileError(ValueError):
    """A file is not a loadable rnngraph file (truncated, tampered, unknown op, bad version,
    an attribute its op's schema does not declare)."""


class ExportError(RnnGraphError, ValueError):
    """A graph cannot be exported to ONNX (rg.io.to_onnx): an op with no ONNX mapping, a
    training op among the fetches, a needed placeholder missing from the feeds. The message
    names the op, its node and the user's line that built it."""


class DiagramTooLargeError(RnnGraphError, ValueError):
    """A diagram has more nodes and edges than graphviz lays out in reasonable time
    (rg.to_dot / rg.render); the message names the options that draw less."""


class RenderError(RnnGraphError, RuntimeError):
    """graphviz's `dot` failed, is missing, or ran past its time limit (rg.render)."""


class KernelCompileError(RnnGraphError, RuntimeError):
    """NVRTC refused a CUDA source (rnngraph.backends.cupy.nvrtc); `log` is its compile log."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class CLIError(Exception):
    """A problem the `rnngraph` command reports to the user in one line (no traceback)."""


def interrupt_in(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that `exc` is, or that its chain of causes and contexts holds;
    None if there is none.

    Ctrl-C during a compiled (numba) function does not always surface as KeyboardInterrupt:
    CPython may report `SystemError: ... returned a result with an exception set`, with the
    KeyboardInterrupt as its cause, and a caller may wrap that again. The runtime re-raises the
    KeyboardInterrupt found here instead, so `except KeyboardInterrupt` sees every Ctrl-C."""
    seen: set = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        todo += [e.__context__, e.__cause__]
    return None


def take_interrupt(exc: BaseException) -> KeyboardInterrupt | None:
    """interrupt_in(exc), made ready to be raised in its place from an `except` clause that
    caught `exc`: the links of exc's chain to it are cut (else raising it there would make
    it its own context's cause, a reference cycle that keeps every frame of the run alive)
    and exc, which then becomes its context, is not printed with it. None if there is none;
    `exc` itself, unchanged, if it is the KeyboardInterrupt."""
    interrupt = interrupt_in(exc)
    if interrupt is None or interrupt is exc:
        return interrupt
    seen: set = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or e is interrupt or id(e) in seen:
            continue
        seen.add(id(e))
        if e.__cause__ is interrupt:
            e.__cause__ = None
        if e.__context__ is interrupt:
            e.__context__ = None
        todo += [e.__context__, e.__cause__]
    interrupt.__suppress_context__ = True
    return interrupt
