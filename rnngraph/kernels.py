"""Where backends plug in: kernel factories keyed by (op class, backend), and named features.

Ops hold semantics only (shape rule, vjp, a reference `compute(xp, ...)`). How a node runs on
a device is a kernel factory `factory(op, node, program) -> callable | None` registered here
by a backend package (rnngraph/backends/...) or by the runtime for ops that touch session
state. A factory may decline (return None): the next one registered for that key is tried,
then the op's reference compute. Features are named objects a backend offers to lower layers
that must not import it (a packed GEMM, a loop scope, a device class); `feature(name)` is
None when no backend offers one. A leaf module: it imports nothing from rnngraph.
"""
from __future__ import annotations

from typing import Callable

ANY = "*"   # a factory for every backend (e.g. the runtime's variable reads)

_factories: dict[tuple[type, str], list[tuple[int, Callable]]] = {}
_features: dict[str, object] = {}


def register(op_class: type, backend: str = ANY, priority: int = 0):
    """Decorator: `factory(op, node, program)` makes kernels for `op_class` (and subclasses
    without their own) on `backend`; higher priority is tried first."""
    def add(factory: Callable) -> Callable:
        _factories.setdefault((op_class, backend), []).append((priority, factory))
        return factory
    return add


def factories(op_class: type, backend: str) -> list[Callable]:
    """The factories for the nearest class in `op_class`'s MRO that has any (this backend's
    and those for every backend), by priority; ties keep this backend's first."""
    for cls in op_class.__mro__:
        found = _factories.get((cls, backend), []) + _factories.get((cls, ANY), [])
        if found:
            return [f for _, f in sorted(found, key=lambda e: -e[0])]
    return []


def make_kernel(op, node, program, backend: str) -> Callable | None:
    """The first kernel a registered factory makes for this node, or None (then the caller
    runs the op's reference compute)."""
    for factory in factories(type(op), backend):
        kernel = factory(op, node, program)
        if kernel is not None:
            return kernel
    return None


def provide(name: str, value) -> None:
    """Offer a named feature (a backend does this when it is imported)."""
    _features[name] = value


def feature(name: str):
    """The feature offered under `name`, or None when no loaded backend offers it."""
    return _features.get(name)
