"""Flatten nested fetch structures (lists, tuples, namedtuples, dicts) and rebuild them."""
from __future__ import annotations

from ..ir.value import Value


def flatten(fetches) -> tuple[list[Value], callable]:
    flat: list[Value] = []

    def walk(f):
        if isinstance(f, Value):
            flat.append(f)
            i = len(flat) - 1
            return lambda vals: vals[i]
        if isinstance(f, dict):
            parts = {k: walk(v) for k, v in f.items()}
            kind = type(f)
            return lambda vals: kind((k, p(vals)) for k, p in parts.items())
        if isinstance(f, tuple) and hasattr(f, "_fields"):
            parts = [walk(v) for v in f]
            kind = type(f)
            return lambda vals: kind(*(p(vals) for p in parts))
        if isinstance(f, (list, tuple)):
            parts = [walk(v) for v in f]
            kind = type(f)
            return lambda vals: kind(p(vals) for p in parts)
        if f is None:
            return lambda vals: None
        if hasattr(f, "outputs") and hasattr(f, "op"):  # a Node: run it, fetch its first output
            return walk(f.outputs[0]) if f.outputs else (lambda vals: None)
        raise TypeError(f"cannot fetch {type(f).__name__} {f!r}: fetch Values or nested "
                        "lists/tuples/dicts of Values")

    rebuild = walk(fetches)
    return flat, rebuild
