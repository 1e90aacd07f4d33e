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
    kind = "constant"

    def __init__(self, value=0.0):
        self.value = np.asarray(value).tolist()

    def __call__(self, shape, dtype, rng):
        return np.broadcast_to(np.asarray(self.value, dtype), shape).copy()


class GlorotUniform(Initializer):
    """Uniform in ±sqrt(6 / (fan_in + fan_out)); for a 2-D kernel [in, out] (TF's default)."""
    kind = "glorot_uniform"

    def __call__(self, shape, dtype, rng):
        fan_in = shape[-2] if len(shape) >= 2 else shape[0] if shape else 1
        fan_out = shape[-1] if shape else 1
        limit = np.sqrt(6.0 / max(1, fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype(dtype)


class RandomUniform(Initializer):
    kind = "random_uniform"

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype, rng):
        return rng.uniform(self.minval, self.maxval, size=shape).astype(dtype)


class RandomNormal(Initializer):
    kind = "random_normal"

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype, rng):
        return rng.normal(self.mean, self.stddev, size=shape).astype(dtype)


KINDS = {c.kind: c for c in (Zeros, Ones, Constant, GlorotUniform, RandomUniform, RandomNormal)}


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
glorot_uniform_initializer = GlorotUniform
random_uniform_initializer = RandomUniform
random_normal_initializer = RandomNormal
