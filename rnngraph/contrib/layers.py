"""tf.contrib.layers: fully_connected, the xavier initializer and the weight regularizers."""
from ..nn.layers import fully_connected
from ..nn.regularizers import apply_regularization, l1_regularizer, l2_regularizer
from ..ops import initializers as _inits


def xavier_initializer(uniform=True, seed=None, dtype=None):
    """Glorot/Xavier uniform initialisation (tf.contrib.layers.xavier_initializer): uniform in
    ±sqrt(6 / (fan_in + fan_out)). Only uniform=True is supported."""
    if not uniform:
        raise NotImplementedError("xavier_initializer: uniform=False is not supported; use "
                                  "rg.glorot_normal_initializer()")
    return _inits.GlorotUniform(seed=seed) if seed is not None else _inits.GlorotUniform()


__all__ = ["apply_regularization", "fully_connected", "l1_regularizer", "l2_regularizer",
           "xavier_initializer"]
