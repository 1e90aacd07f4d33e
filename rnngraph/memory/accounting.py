"""Byte accounting for a device: buffers counted once per underlying base buffer, refcounted.

A kernel's result that lands in a slot is *retained* (a view of an input, e.g. a transpose or a
slice, shares its base buffer and costs nothing new); dropping the slot *releases* it; the base's
bytes are freed when its last reference goes. Buffers a kernel allocates through the device
(`Device.empty`) start with one reference, the kernel's: it frees them (working buffers) or
*disowns* them just before returning them (they stay counted, floating, until they land).

Objects that are not arrays but hold device buffers (the planner's residual handles) expose
`device_buffers()`; retaining or releasing them retains or releases each of those buffers.
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

from ..errors import user_location


def fmt_bytes(n) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe_what(what) -> str:
    """How an allocation names its tensor: a Node's description, or the text given."""
    if what is None:
        return "an unnamed buffer"
    if hasattr(what, "describe"):
        return what.describe()
    return str(what)


class ByteMeter:
    """Refcounted bytes by base buffer, with a peak and an optional capacity check.

    `array_type` is the device's ndarray class; `on_overflow(nbytes, what, in_use)` is called
    (and must raise) when an allocation would exceed `capacity`.
    """

    def __init__(self, array_type, capacity: int | None = None,
                 on_overflow: Callable | None = None):
        self.array_type = array_type
        self.capacity = capacity
        self.on_overflow = on_overflow
        self.refs: dict[int, list] = {}   # id(base) -> [refcount, base, nbytes]
        self.current = 0
        self.peak = 0

    # --- base buffers ---------------------------------------------------------------------------
    def base_of(self, a):
        at = self.array_type
        b = a.base
        while b is not None and isinstance(b, at):
            a, b = b, b.base
        return a

    def _charge(self, nbytes: int, what) -> None:
        cur = self.current + nbytes
        if self.capacity is not None and cur > self.capacity:
            self.on_overflow(nbytes, what, self.current)
        self.current = cur
        if cur > self.peak:
            self.peak = cur

    # --- the protocol ---------------------------------------------------------------------------
    def allocate(self, a, what=None):
        """Count a fresh buffer, with one reference held by its allocator (who later `free`s it,
        or `disown`s it to hand it to the slot it is returned into); returns it."""
        self._add_ref(self.base_of(a), what)
        return a

    def _add_ref(self, b, what) -> None:
        """One more reference to base buffer b; the first one charges its bytes."""
        e = self.refs.get(id(b))
        if e is None:
            self._charge(b.nbytes, what)
            self.refs[id(b)] = [1, b, b.nbytes]
        else:
            e[0] += 1

    def retain(self, a, what=None) -> None:
        if isinstance(a, self.array_type):
            self._add_ref(self.base_of(a), what)
        elif hasattr(a, "device_buffers"):
            for x in a.device_buffers():
                self.retain(x, what)

    def release(self, a) -> None:
        if isinstance(a, self.array_type):
            key = id(self.base_of(a))
            e = self.refs.get(key)
            if e is None:
                return
            e[0] -= 1
            if e[0] <= 0:
                del self.refs[key]
                self.current -= e[2]
        elif hasattr(a, "device_buffers"):
            for x in a.device_buffers():
                self.release(x)

    def disown(self, a) -> None:
        """Drop one reference but keep the buffer counted (floating) for its next owner."""
        if isinstance(a, self.array_type):
            e = self.refs.get(id(self.base_of(a)))
            if e is not None and e[0] > 0:
                e[0] -= 1
        elif hasattr(a, "device_buffers"):
            for x in a.device_buffers():
                self.disown(x)

    def free(self, a) -> None:
        """Forget a buffer whatever its refcount (a kernel's own temporary)."""
        if isinstance(a, self.array_type):
            e = self.refs.pop(id(self.base_of(a)), None)
            if e is not None:
                self.current -= e[2]

    def reset(self) -> None:
        """Forget everything (after a failed run left references behind)."""
        self.refs.clear()
        self.current = 0

    def reset_peak(self) -> None:
        self.peak = self.current


def check_byte_count(value, what: str, allow_none: bool = True):
    """A byte count given by the user (a budget, a capacity) as an int, or None when allowed.

    Any integral number type is accepted (int, numpy integers); a float must be finite and at
    least one byte, and is rounded down to whole bytes. Zero, negative counts, NaN, inf, bools
    and non-numbers are refused, naming the argument and the user's line."""
    if value is None and allow_none:
        return None
    where = f" (at {user_location()})"
    if isinstance(value, np.ndarray) and value.ndim == 0:   # (a 0-d array: its number)
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number of bytes (an int), got "
                        f"{type(value).__name__} {value!r}{where}")
    if isinstance(value, numbers.Integral):
        n = int(value)
        if n <= 0:
            raise ValueError(f"{what} must be a positive number of bytes, got {n}{where}")
        return n
    x = float(value)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{what} must be a finite number of bytes, got {value!r}{where}")
    if x < 1:
        raise ValueError(f"{what} must be at least one byte, got {value!r}{where}")
    return int(x)
