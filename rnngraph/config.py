"""Process-wide opt-ins: `rg.config.<name> = value`.

Everything here is off by default, because each item changes the host process beyond
rnngraph's own objects; a library does that only when its user asks. Setting an unknown
name, or a value of the wrong type, raises at once.
"""
from __future__ import annotations


class Config:
    """The opt-ins. Read at run time (a change applies to the next run of any Session).

    cpu_helper_thread: let compiled loops split their matrix products and fused kernels over
      the calling thread and one helper thread that rnngraph starts (optional numba backend,
      x86-64 Linux with AVX2). Doing so also shortens OpenBLAS's idle-spin time: it sets
      OPENBLAS_THREAD_TIMEOUT in this process's environment (unless already set) and restarts
      OpenBLAS's threads once, so that they stop competing with the helper. Default False:
      no thread is started and nothing global changes; every loop computes on the caller's
      thread with the same bits.
    """

    _FIELDS = {"cpu_helper_thread": bool}

    def __init__(self):
        object.__setattr__(self, "cpu_helper_thread", False)

    def __setattr__(self, name, value):
        kind = self._FIELDS.get(name)
        if kind is None:
            raise AttributeError(f"rg.config has no option {name!r}; options: "
                                 f"{', '.join(sorted(self._FIELDS))}")
        if type(value) is not kind:
            raise TypeError(f"rg.config.{name} takes a {kind.__name__}, got "
                            f"{type(value).__name__}: {value!r}")
        object.__setattr__(self, name, value)

    def __repr__(self):
        return "rg.config(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self._FIELDS) + ")"


config = Config()
