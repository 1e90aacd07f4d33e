"""TF1's session options: ConfigProto and GPUOptions are accepted (TF1 programs build them and
pass config= to the Session) and kept on the session as `sess.config`; rnngraph plans its own
threads and device memory, so they change nothing. `target` (a remote master) must be ''."""
from __future__ import annotations

_GPU_FIELDS = {"allow_growth": False, "per_process_gpu_memory_fraction": 0.0,
               "visible_device_list": "", "allocator_type": "", "force_gpu_compatible": False}
_CONFIG_FIELDS = {"allow_soft_placement": False, "log_device_placement": False,
                  "device_count": None, "intra_op_parallelism_threads": 0,
                  "inter_op_parallelism_threads": 0, "use_per_session_threads": False,
                  "gpu_options": None, "operation_timeout_in_ms": 0, "graph_options": None,
                  "isolate_session_state": False}


class _Options:
    _fields: dict = {}

    def __init__(self, **kwargs):
        for k, v in self._fields.items():
            object.__setattr__(self, k, v)
        for k, v in kwargs.items():
            setattr(self, k, v)

    def __setattr__(self, key, value):
        if key not in self._fields:
            raise AttributeError(f"{type(self).__name__} has no field {key!r} (known: "
                                 f"{', '.join(sorted(self._fields))})")
        object.__setattr__(self, key, value)

    def __repr__(self):
        set_ = {k: getattr(self, k) for k in self._fields if getattr(self, k) != self._fields[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in set_.items())})"


class GPUOptions(_Options):
    """tf.GPUOptions: accepted; rnngraph sizes device memory with Session(memory_budget=)."""
    _fields = _GPU_FIELDS


class ConfigProto(_Options):
    """tf.ConfigProto: accepted and kept as `sess.config`. Only `log_device_placement` acts:
    the session logs each node placed with rg.device (runtime/placement.py); the rest change
    nothing (rnngraph runs on the Session's `device`, placements it cannot honour are soft, and
    threads are opted into with rg.config). An unknown field raises AttributeError."""
    _fields = _CONFIG_FIELDS

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.gpu_options is None:
            object.__setattr__(self, "gpu_options", GPUOptions())
        if self.device_count is None:
            object.__setattr__(self, "device_count", {})


def check_config(config, target):
    if target not in ("", None):
        raise NotImplementedError(f"Session: target={target!r} (a remote TensorFlow master) is "
                                  "not supported; rnngraph runs in this process")
    if config is not None and not isinstance(config, ConfigProto):
        raise TypeError(f"Session: config must be an rg.ConfigProto, got "
                        f"{type(config).__name__}")
    return config
