"""tf.nn activations and normalisations as TF 1.15 spells them: softmax / log_softmax with the
deprecated dim=, l2_normalize, leaky_relu, softplus, softsign, elu and selu.

Each is composed of existing ops (so each has their gradients, kernels and fusion) and takes
the branch TF's kernel takes at every point, kinks included: elu's and selu's exponential side
is x < 0, leaky_relu's linear side is x > 0. The exponential branches read min(x, 0) (or the
clipped input, for softplus), so the branch `where` leaves unselected never overflows and its
gradient never turns into 0 * inf = NaN.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import user_location

# selu's constants (Klambauer et al. 2017), as TF's kernel writes them
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _axis(what, axis, dim, default):
    """axis from TF1's axis= and its deprecated alias dim= (both at once: ValueError)."""
    if dim is not None:
        if axis is not None:
            raise ValueError(f"{what} at {user_location()}: cannot specify both 'axis' and "
                             "'dim'")
        axis = dim
    return default if axis is None else axis


def _float(what, x):
    x = ops.as_value(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{what} at {user_location()}: features must be floating point, got "
                        f"{x.dtype} (cast it first)")
    return x


def softmax(logits, axis=None, name=None, dim=None):
    """exp(logits) / sum(exp(logits)) along `axis` (default -1; tf.nn.softmax, dim= is TF1's
    deprecated name for axis)."""
    return ops.softmax(logits, axis=_axis("softmax", axis, dim, -1), name=name)


def log_softmax(logits, axis=None, name=None, dim=None):
    """logits - log(sum(exp(logits))) along `axis` (default -1; tf.nn.log_softmax, dim= is
    TF1's deprecated name for axis)."""
    return ops.log_softmax(logits, axis=_axis("log_softmax", axis, dim, -1), name=name)


def l2_normalize(x, axis=None, epsilon=1e-12, name=None, dim=None):
    """x / sqrt(max(sum(x**2, axis), epsilon)) (tf.nn.l2_normalize; axis None: over all axes,
    dim= is TF1's deprecated name for axis)."""
    axis = _axis("l2_normalize", axis, dim, None)
    x = _float("l2_normalize", x)
    square_sum = ops.reduce_sum(ops.square(x), axis, keepdims=True)
    floor = ops.constant(np.asarray(epsilon, dtype=x.dtype))
    return ops.divide(x, ops.sqrt(ops.maximum(square_sum, floor)), name=name)


def leaky_relu(features, alpha=0.2, name=None):
    """features where features > 0, else alpha * features (tf.nn.leaky_relu; integer
    features are cast to float32 first, as in TF)."""
    features = ops.as_value(features)
    if features.dtype.kind in "iu":
        features = ops.cast(features, np.float32)
    features = _float("leaky_relu", features)
    if isinstance(alpha, np.ndarray):
        alpha = alpha.item()
    return ops.where(ops.greater(features, 0.0), features, ops.multiply(features, alpha),
                     name=name)


def softplus(features, name=None):
    """log(exp(features) + 1), as TF's kernel computes it: features itself above
    -log(eps) - 2 and exp(features) below log(eps) + 2 (eps: the dtype's machine epsilon), so
    it neither overflows nor rounds small values to 0 (tf.nn.softplus)."""
    x = _float("softplus", features)
    threshold = float(np.log(np.finfo(x.dtype).eps) + 2.0)   # -13.9 in float32
    clipped = ops.minimum(x, -threshold)
    e = ops.exp(clipped)
    small_or_mid = ops.where(ops.less(x, threshold), e, ops.log(ops.add(e, 1.0)))
    return ops.where(ops.greater(x, -threshold), x, small_or_mid, name=name)


def softsign(features, name=None):
    """features / (|features| + 1) (tf.nn.softsign)."""
    x = _float("softsign", features)
    return ops.divide(x, ops.add(ops.abs(x), 1.0), name=name)


def _expm1_negative(x):
    """exp(min(x, 0)) - 1: the negative side of elu and selu."""
    return ops.subtract(ops.exp(ops.minimum(x, 0.0)), 1.0)


def elu(features, name=None):
    """exp(features) - 1 where features < 0, else features (tf.nn.elu)."""
    x = _float("elu", features)
    return ops.where(ops.less(x, 0.0), _expm1_negative(x), x, name=name)


def selu(features, name=None):
    """scale * (alpha * (exp(features) - 1) where features < 0, else features), with
    alpha = 1.6733 and scale = 1.0507 (tf.nn.selu)."""
    x = _float("selu", features)
    inner = ops.where(ops.less(x, 0.0), ops.multiply(_expm1_negative(x), SELU_ALPHA), x)
    return ops.multiply(inner, SELU_SCALE, name=name)


__all__ = ["elu", "l2_normalize", "leaky_relu", "log_softmax", "selu", "softmax", "softplus",
           "softsign"]
