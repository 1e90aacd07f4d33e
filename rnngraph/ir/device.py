"""Device strings as TensorFlow 1 writes them, parsed, merged and printed in one canonical form.

    parse("/gpu:0").to_string()                 -> "/device:GPU:0"
    parse("/job:ps/task:1/device:CPU:*")        -> job "ps", task 1, device type CPU, any index
    merge("/job:ps", "/gpu:1")                  -> "/job:ps/device:GPU:1"  (inner fields win)

A node's `device` attribute holds the canonical string ("" when no placement was asked for).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_JOB = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_INDEX = re.compile(r"^(0|[1-9][0-9]{0,8})$")
MAX_DEVICE = 200


@dataclass(frozen=True)
class DeviceSpec:
    job: str | None = None
    replica: int | None = None
    task: int | None = None
    device_type: str | None = None    # "CPU", "GPU", ... (upper case)
    device_index: int | None = None   # None: any device of that type ("*")

    def to_string(self) -> str:
        out = ""
        if self.job is not None:
            out += f"/job:{self.job}"
        if self.replica is not None:
            out += f"/replica:{self.replica}"
        if self.task is not None:
            out += f"/task:{self.task}"
        if self.device_type is not None:
            index = "*" if self.device_index is None else self.device_index
            out += f"/device:{self.device_type}:{index}"
        return out

    def merged_with(self, inner: "DeviceSpec") -> "DeviceSpec":
        """This spec with every field `inner` sets replaced by inner's (TF1's nesting rule)."""
        pick = (lambda a, b: a if a is not None else b)
        dtype = pick(inner.device_type, self.device_type)
        index = inner.device_index if inner.device_type is not None else self.device_index
        return DeviceSpec(pick(inner.job, self.job), pick(inner.replica, self.replica),
                          pick(inner.task, self.task), dtype, index)


def _bad(spec: str, why: str) -> ValueError:
    return ValueError(f"device: {spec!r} is not a device string ({why}); write it like "
                      "'/cpu:0', '/gpu:0', '/device:GPU:1' or '/job:worker/task:0/device:CPU:0'")


def _index(spec: str, text: str, what: str) -> int | None:
    if text == "*" and what == "device index":
        return None
    if not _INDEX.match(text):
        raise _bad(spec, f"{what} {text!r} is not a non-negative integer")
    return int(text)


def parse(spec: str) -> DeviceSpec:
    """The fields of a TF1 device string; ValueError naming the string when it is not one.
    Accepted parts, each after a '/': job:NAME, replica:N, task:N, device:TYPE:N (or :*),
    device:TYPE, and the legacy cpu:N / gpu:N (any case). '' is no placement."""
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a device string, got {type(spec).__name__} {spec!r}")
    if len(spec) > MAX_DEVICE:
        raise _bad(spec[:40] + "...", f"longer than {MAX_DEVICE} characters")
    fields: dict = {}
    for part in spec.split("/"):
        if not part:
            continue
        bits = part.split(":")
        key = bits[0]
        if key == "job" and len(bits) == 2 and _JOB.match(bits[1]):
            fields["job"] = bits[1]
        elif key in ("replica", "task") and len(bits) == 2:
            fields[key] = _index(spec, bits[1], key)
        elif key.upper() in ("CPU", "GPU") and len(bits) <= 2:
            fields["device_type"] = key.upper()
            fields["device_index"] = _index(spec, bits[1], "device index") if len(bits) == 2 \
                else None
        elif key == "device" and len(bits) in (2, 3) and _TYPE.match(bits[1]):
            fields["device_type"] = bits[1].upper()
            fields["device_index"] = _index(spec, bits[2], "device index") if len(bits) == 3 \
                else None
        else:
            raise _bad(spec, f"unknown part {part!r}")
    return DeviceSpec(**fields)


def canonical(spec: str) -> str:
    """The one way rnngraph writes `spec` ('/gpu:0' -> '/device:GPU:0')."""
    return parse(spec).to_string()


def merge(outer: str, inner: str) -> str:
    """The device of a node built under `inner` nested in `outer` (both device strings)."""
    return parse(outer).merged_with(parse(inner)).to_string()
