"""Seeded variable initializers. Plain data (a name and parameters) so graphs can be saved."""
from __future__ import annotations

import zlib

import numpy as np


class Initializer:
    kind = "initializer"

    def params(self) -> dict:
        return dict(vars(self))

    def __call__(self, shape, dtype, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def check_shape(self, shape, what: str) -> None:
        """Raise ValueError (naming `what`) if this initializer cannot fill `shape`; called when
        the variable is built, so nothing is left for the session's initializer to fail on."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{self.kind}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.params() == other.params()


class Zeros(Initializer):
    kind = "zeros"

    def __call__(self, shape, dtype, rng):
        return np.zeros(shape, dtype)


class Ones(Initializer):
    kind = "ones"

    def __call__(self, shape, dtype, rng):
        return np.ones(shape, dtype)


class Constant(Initializer):
    """TF1's constant_initializer: a scalar fills the shape; a list or array is laid out in
    row-major order over it (its shape is not used): as many values as the shape has elements
    are reshaped, fewer are padded with the last value, more are refused (ValueError).

    `layout="broadcast"` is the meaning files saved before that rule have (NumPy broadcasting
    of the value to the shape): io reads a constant initializer without a layout so."""
    kind = "constant"

    def __init__(self, value=0.0, layout: str = "tf1"):
        if layout not in ("tf1", "broadcast"):
            raise ValueError(f"constant_initializer: layout must be 'tf1' or 'broadcast', got "
                             f"{layout!r}")
        self.value = np.asarray(value).tolist()
        self.layout = layout

    def check_shape(self, shape, what: str) -> None:
        if self.layout == "broadcast":
            try:
                np.broadcast_shapes(np.shape(self.value), tuple(shape))
            except ValueError:
                raise ValueError(f"constant_initializer for {what}: a value of shape "
                                 f"{list(np.shape(self.value))} does not broadcast to "
                                 f"{list(shape)}") from None
            return
        size, n = int(np.asarray(self.value).size), int(np.prod(shape, dtype=np.int64))
        if size > n:
            raise ValueError(f"constant_initializer for {what}: too many values, {size} for shape "
                             f"{list(shape)} ({n} elements); TF1 pads a shorter list with its "
                             f"last value but refuses a longer one")
        if size == 0 and n > 0:
            raise ValueError(f"constant_initializer for {what}: no values to fill shape "
                             f"{list(shape)}")

    def __call__(self, shape, dtype, rng):
        self.check_shape(shape, "a variable")
        if self.layout == "broadcast":
            return np.broadcast_to(np.asarray(self.value, dtype), tuple(shape)).copy()
        flat = np.asarray(self.value, dtype).ravel()
        n = int(np.prod(shape, dtype=np.int64))
        if flat.size == 1 or flat.size == 0:   # a scalar fills; an empty shape stays empty
            return np.full(shape, flat[0] if flat.size else 0, dtype)
        if flat.size < n:
            flat = np.concatenate([flat, np.full(n - flat.size, flat[-1], dtype)])
        return flat.reshape(shape).copy()


def _seeded_draw(dist, shape, dtype, seed):
    """Standard numbers from the Philox stream of op seed `seed` (run 0, step 0): a seeded
    initializer gives every variable of one shape the same values, in any session (TF1)."""
    from .random import DEFAULT_GRAPH_SEED, draw, key_of   # cycle: ops/random imports this module
    calc = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    return draw(np, dist, tuple(shape), calc, key_of(DEFAULT_GRAPH_SEED, seed), 0, 0)


def _uniform01(shape, dtype, rng, seed):
    if seed is None:
        return rng.random(size=shape)
    return _seeded_draw("uniform", shape, dtype, seed).astype(np.float64)


def _normal01(shape, dtype, rng, seed, truncated=False):
    if seed is None:
        z = rng.standard_normal(size=shape)
        while truncated and (bad := np.abs(z) > 2).any():   # redraw beyond 2 stddev, like TF
            z[bad] = rng.standard_normal(size=int(bad.sum()))
        return z
    return _seeded_draw("truncated_normal" if truncated else "normal", shape, dtype,
                        seed).astype(np.float64)


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
    return None if seed is None else int(seed) & (2**64 - 1)


def _fans(shape):
    fan_in = shape[-2] if len(shape) >= 2 else shape[0] if shape else 1
    fan_out = shape[-1] if shape else 1
    return fan_in, fan_out


class GlorotUniform(Initializer):
    """Uniform in ±sqrt(6 / (fan_in + fan_out)); for a 2-D kernel [in, out] (TF's default).
    Without `seed` the values come from the session's seed and the variable's name; with one,
    from that seed alone."""
    kind = "glorot_uniform"
    seed = None

    def __init__(self, seed=None):
        self.seed = _check_seed(seed)

    def __call__(self, shape, dtype, rng):
        fan_in, fan_out = _fans(shape)
        limit = np.sqrt(6.0 / max(1, fan_in + fan_out))
        return (-limit + 2 * limit * _uniform01(shape, dtype, rng, self.seed)).astype(dtype)


class GlorotNormal(Initializer):
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out)) / 0.8796 (TF1's
    glorot_normal_initializer: the truncation's variance loss made up)."""
    kind = "glorot_normal"

    def __init__(self, seed=None):
        self.seed = _check_seed(seed)

    def __call__(self, shape, dtype, rng):
        fan_in, fan_out = _fans(shape)
        stddev = np.sqrt(2.0 / max(1, fan_in + fan_out)) / 0.87962566103423978
        return (stddev * _normal01(shape, dtype, rng, self.seed, truncated=True)).astype(dtype)


class RandomUniform(Initializer):
    kind = "random_uniform"
    seed = None

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval = float(minval), float(maxval)
        if not self.minval < self.maxval:
            raise ValueError(f"random_uniform_initializer needs minval < maxval, got "
                             f"{self.minval}, {self.maxval}")
        self.seed = _check_seed(seed)

    def __call__(self, shape, dtype, rng):
        u = _uniform01(shape, dtype, rng, self.seed)
        return (self.minval + (self.maxval - self.minval) * u).astype(dtype)


class RandomNormal(Initializer):
    kind = "random_normal"
    seed = None

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev = float(mean), float(stddev)
        if not self.stddev >= 0:
            raise ValueError(f"stddev must be >= 0, got {stddev}")
        self.seed = _check_seed(seed)

    def __call__(self, shape, dtype, rng):
        return (self.mean + self.stddev * _normal01(shape, dtype, rng, self.seed)).astype(dtype)


class TruncatedNormal(Initializer):
    """Normal values within two standard deviations of the mean (beyond: redrawn)."""
    kind = "truncated_normal"

    def __init__(self, mean=0.0, stddev=1.0, seed=None):
        self.mean, self.stddev = float(mean), float(stddev)
        if not self.stddev >= 0:
            raise ValueError(f"stddev must be >= 0, got {stddev}")
        self.seed = _check_seed(seed)

    def __call__(self, shape, dtype, rng):
        z = _normal01(shape, dtype, rng, self.seed, truncated=True)
        return (self.mean + self.stddev * z).astype(dtype)


class Orthogonal(Initializer):
    """An orthogonal matrix (rows or columns orthonormal) times `gain`, from the QR
    decomposition of a normal matrix [prod(shape[:-1]), shape[-1]] (TF1's
    orthogonal_initializer; the signs of R's diagonal folded in so the result is uniform)."""
    kind = "orthogonal"

    def __init__(self, gain=1.0, seed=None):
        self.gain = float(gain)
        self.seed = _check_seed(seed)

    def __call__(self, shape, dtype, rng):
        if len(shape) < 2:
            raise ValueError(f"orthogonal_initializer needs a shape of rank >= 2, got {list(shape)}")
        rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
        a = _normal01((max(rows, cols), min(rows, cols)), dtype, rng, self.seed)
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dtype)


class Draw(Initializer):
    """What a random op draws in the first run of a fresh session (rg.Variable(rg.random_normal(
    [3, 4], seed=1))): its distribution, seed pair, loc + scale, and step index."""
    kind = "random_draw"

    def __init__(self, dist, seed, seed2, loc=0.0, scale=1.0, step=0):
        self.dist = str(dist)
        self.seed, self.seed2 = int(seed), int(seed2)
        self.loc, self.scale, self.step = float(loc), float(scale), int(step)

    def __call__(self, shape, dtype, rng):
        from .random import draw, key_of   # cycle: ops/random imports this module
        z = draw(np, self.dist, tuple(shape), dtype, key_of(self.seed, self.seed2), self.step, 1)
        t = np.dtype(dtype).type
        return z if (self.loc, self.scale) == (0.0, 1.0) else z * t(self.scale) + t(self.loc)


KINDS = {c.kind: c for c in (Zeros, Ones, Constant, GlorotUniform, GlorotNormal, RandomUniform,
                             RandomNormal, TruncatedNormal, Orthogonal, Draw)}


def from_params(kind: str, params: dict) -> Initializer:
    if kind not in KINDS:
        raise ValueError(f"unknown initializer {kind!r}")
    init = KINDS[kind].__new__(KINDS[kind])
    init.__dict__.update(params)
    return init


def variable_rng(graph_seed: int, var_name: str) -> np.random.Generator:
    """One generator per variable: the same seed and name give the same values in any order."""
    return np.random.default_rng([graph_seed, zlib.crc32(var_name.encode())])


zeros_initializer = Zeros
ones_initializer = Ones
constant_initializer = Constant


def glorot_uniform_initializer(seed=None, dtype=None):
    """TF1's glorot_uniform_initializer (Xavier uniform)."""
    return GlorotUniform(seed)


def glorot_normal_initializer(seed=None, dtype=None):
    """TF1's glorot_normal_initializer (Xavier normal, truncated)."""
    return GlorotNormal(seed)


def random_uniform_initializer(minval=0.0, maxval=None, seed=None, dtype=None):
    """TF1's random_uniform_initializer: uniform in [minval, maxval), maxval defaulting to 1."""
    return RandomUniform(minval, 1.0 if maxval is None else maxval, seed)


def random_normal_initializer(mean=0.0, stddev=1.0, seed=None, dtype=None):
    """TF1's random_normal_initializer (stddev defaults to 1.0, as in TF1)."""
    return RandomNormal(mean, stddev, seed)


def truncated_normal_initializer(mean=0.0, stddev=1.0, seed=None, dtype=None):
    """TF1's truncated_normal_initializer: values beyond two stddev are redrawn."""
    return TruncatedNormal(mean, stddev, seed)


def orthogonal_initializer(gain=1.0, seed=None, dtype=None):
    """TF1's orthogonal_initializer."""
    return Orthogonal(gain, seed)
