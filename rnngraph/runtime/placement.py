"""Which rg.device placements a Session honours, and the one report of those it does not.

A Session runs every node on its own device (Session(device=...)): a node asking for that
device, for no device type, or for the local job (/job:localhost/replica:0/task:0) is honoured;
any other placement ('/gpu:0' in a CPU session, '/cpu:0' in a GPU session, another GPU, a remote
job) is not. As TF1 does with allow_soft_placement=True, such a node runs on the session's device,
and the session says so once per placement on the "rnngraph" logger (INFO). With
ConfigProto(log_device_placement=True) every placed node is logged once at INFO.
"""
from __future__ import annotations

import logging

import numpy as np

from ..ir import device as device_spec

_log = logging.getLogger("rnngraph")


def session_device_spec(device) -> device_spec.DeviceSpec:
    """The TF1 name of a Session's device: CPU:0 for host devices, GPU:<id> for a CUDA one."""
    if device.xp is np:
        return device_spec.DeviceSpec(device_type="CPU", device_index=0)
    try:
        index = int(device.xp.cuda.runtime.getDevice())
    except Exception:  # noqa: BLE001  a device module without CUDA's runtime API: GPU 0
        index = 0
    return device_spec.DeviceSpec(device_type="GPU", device_index=index)


def honoured(requested: str, have: device_spec.DeviceSpec) -> bool:
    """Can a session on device `have` run a node placed on `requested` where it asked?"""
    spec = device_spec.parse(requested)
    if spec.job not in (None, "localhost") or spec.replica not in (None, 0) or \
            spec.task not in (None, 0):
        return False
    if spec.device_type is None:
        return True
    return spec.device_type == have.device_type and \
        spec.device_index in (None, have.device_index)


def _placed_nodes(values):
    seen = set()
    for v in values:
        node = v.node
        if node.device and node not in seen:
            seen.add(node)
            yield node


def report(session, values) -> None:
    """Log, once per session, each placement among the nodes of `values` (the user-graph
    values a program computes) that the session cannot honour; with log_device_placement,
    log every placed node once."""
    reported = session.__dict__.setdefault("_placements_reported", set())
    have = session_device_spec(session.device)
    log_all = bool(getattr(session.config, "log_device_placement", False))
    unhonoured: dict = {}
    for node in _placed_nodes(values):
        ok = honoured(node.device, have)
        if not ok:
            unhonoured.setdefault(node.device, []).append(node)
        if log_all and ("node", node.name) not in reported:
            reported.add(("node", node.name))
            _log.info("rnngraph: %s %s runs on %s%s", node.op.name, node.name,
                      have.to_string(), "" if ok else f" (placed on {node.device})")
    for requested, nodes in unhonoured.items():
        if requested in reported:
            continue
        reported.add(requested)
        first = nodes[0]
        _log.info("rnngraph: device placement %s cannot be honoured by this session (it runs "
                  "on %s, device=%r); %d node(s) placed there run on %s instead, the first "
                  "%s", requested, have.to_string(), session.device.name, len(nodes),
                  have.to_string(), first.describe())
