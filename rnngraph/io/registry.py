"""The op registry used when loading: op name -> Op subclass, built from rnngraph's own classes.

Only classes defined inside the rnngraph package are registered (a file can name an op, never a
module or a class path), so loading a file can only ever instantiate ops this rnngraph ships.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..ops.base import Op

# packages whose modules may define Op subclasses (imported once, when the registry is built)
_OP_PACKAGES = ("rnngraph.ops", "rnngraph.passes")

_registry: dict[str, type] | None = None
_conflicts: dict[str, list[type]] = {}


def _import_all(package: str) -> None:
    try:
        pkg = importlib.import_module(package)
    except ImportError:
        return
    for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        try:
            importlib.import_module(f"{package}.{mod.name}")
        except Exception:  # noqa: BLE001  an optional module (e.g. needing cupy) that does not
            pass           # import here: its ops are not registered (saving one says so)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def op_registry() -> dict[str, type]:
    """{op name: class} for every Op subclass of rnngraph that names itself (`name` in its own
    class body); abstract bases (Binary, Unary, Reduce...) inherit a name and are skipped."""
    global _registry
    if _registry is None:
        for package in _OP_PACKAGES:
            _import_all(package)
        found: dict[str, list[type]] = {}
        for cls in _subclasses(Op):
            # only the packages above: an op of a higher layer (distributed's allreduce) is
            # not loadable, whether or not its module happens to be imported already
            if "name" in vars(cls) and cls.__module__.startswith(
                    tuple(p + "." for p in _OP_PACKAGES)):
                found.setdefault(cls.name, [])
                if cls not in found[cls.name]:
                    found[cls.name].append(cls)
        _conflicts.clear()
        _conflicts.update({k: v for k, v in found.items() if len(v) > 1})
        _registry = {k: v[0] for k, v in found.items() if len(v) == 1}
    return _registry


def lookup(name: str) -> type:
    """The class registered under `name`; ValueError naming it when there is none."""
    reg = op_registry()
    if name in reg:
        return reg[name]
    if name in _conflicts:
        classes = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in _conflicts[name])
        raise ValueError(f"op name {name!r} is claimed by several classes ({classes}); "
                         "it cannot be loaded unambiguously")
    raise ValueError(f"unknown op {name!r}")


def check_registered(op: Op) -> None:
    """Saving: the op must be findable again by its name (else the file could not be loaded)."""
    cls = type(op)
    try:
        found = lookup(op.name)
    except ValueError as exc:
        if cls.__module__.split(".")[0] != "rnngraph":
            raise ValueError(f"cannot save op {op.name!r} of class {cls.__module__}."
                             f"{cls.__qualname__}: only rnngraph's own ops can be saved") from None
        raise ValueError(f"cannot save op {op.name!r}: {exc}") from None
    if found is not cls:
        raise ValueError(f"cannot save op {op.name!r} of class {cls.__module__}.{cls.__qualname__}:"
                         f" that name loads as {found.__module__}.{found.__qualname__}")


def _reset() -> None:
    """Forget the registry (tests that define new op classes)."""
    global _registry
    _registry = None
