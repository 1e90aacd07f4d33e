"""tf.contrib.layers: fully_connected and the xavier initializer."""
from ..nn.layers import fully_connected
from ..ops import initializers as _inits


def xavier_initializer(uniform=True, seed=None, dtype=None):
    """Glorot/Xavier uniform initialisation (tf.contrib.layers.xavier_initializer): uniform in
    ±sqrt(6 / (fan_in + fan_out)). Only uniform=True is supported."""
    if not uniform:
        raise NotImplementedError("xavier_initializer: uniform=False is not supported; use "
                                  "rg.glorot_normal_initializer()")
    return _inits.GlorotUniform(seed=seed) if seed is not None else _inits.GlorotUniform()


__all__ = ["fully_connected", "xavier_initializer"]
