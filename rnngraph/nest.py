"""Nested structures of states and inputs (tuples, namedtuples like LSTMStateTuple, lists)."""
from __future__ import annotations


def flatten(structure) -> list:
    """Leaves of a nested tuple/list/namedtuple, depth first."""
    if isinstance(structure, (tuple, list)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def pack_as(structure, flat: list):
    """Rebuild `structure`'s nesting with the leaves taken from `flat` in order."""
    flat = list(flat)
    it = iter(flat)

    def build(s):
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            return type(s)(*[build(x) for x in s])
        if isinstance(s, (tuple, list)):
            return type(s)(build(x) for x in s)
        return next(it)

    out = build(structure)
    rest = list(it)
    if rest:
        raise ValueError(f"{len(flat)} values do not fit the structure {structure!r}")
    return out
