"""The runner's result cache, laid out like libcni's.

``<cacheDir>/results/<network>-<containerID>-<ifname>`` holds JSON of kind
``cniCacheV1`` with the attachment's identity, CNI_ARGS, capability arguments
and the final ADD result.  DEL and CHECK read it for ``prevResult``; GC lists it
to find stale attachments.  Writes are atomic (temp file + rename).

Does not run plugins and does not decide what a missing entry means.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from firewall_lab.cni_conf import Attachment
from firewall_lab.cni_errors import CacheError

RESULTS_DIR = "results"
CACHE_KIND = "cniCacheV1"


@dataclass(frozen=True, slots=True)
class CachedAttachment:
    """One cached entry: which network, which attachment, what ADD returned."""

    network: str
    attachment: Attachment
    result: dict[str, Any]


def result_path(cache_dir: str, network: str, container_id: str, ifname: str) -> str:
    return os.path.join(cache_dir, RESULTS_DIR, f"{network}-{container_id}-{ifname}")


def write(cache_dir: str, network: str, attachment: Attachment, result: Mapping[str, Any]) -> None:
    """Store ``result`` for ``attachment`` atomically."""
    directory = os.path.join(cache_dir, RESULTS_DIR)
    entry = {
        "kind": CACHE_KIND,
        "networkName": network,
        "containerId": attachment.container_id,
        "ifName": attachment.ifname,
        "netns": attachment.netns,
        "cniArgs": sorted([key, value] for key, value in attachment.args.items()),
        "capabilityArgs": dict(attachment.capability_args),
        "result": dict(result),
    }
    target = result_path(cache_dir, network, attachment.container_id, attachment.ifname)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(entry, handle)
        os.replace(temp, target)
    except OSError as exc:
        raise CacheError(f"cannot write {target}: {exc}") from exc


def _parse(path: str) -> CachedAttachment:
    with open(path) as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or data.get("kind") != CACHE_KIND:
        raise ValueError("not a cniCacheV1 entry")
    attachment = Attachment(
        container_id=str(data["containerId"]),
        ifname=str(data["ifName"]),
        netns=str(data.get("netns", "")),
        args={str(key): str(value) for key, value in data.get("cniArgs", [])},
        capability_args=dict(data.get("capabilityArgs") or {}),
    )
    return CachedAttachment(str(data["networkName"]), attachment, dict(data["result"]))


def read(cache_dir: str, network: str, attachment: Attachment) -> CachedAttachment | None:
    """The cached entry of ``attachment`` in ``network``, or None."""
    path = result_path(cache_dir, network, attachment.container_id, attachment.ifname)
    try:
        return _parse(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"unreadable cache entry {path}: {exc}") from exc


def remove(cache_dir: str, network: str, attachment: Attachment) -> None:
    path = result_path(cache_dir, network, attachment.container_id, attachment.ifname)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CacheError(f"cannot remove {path}: {exc}") from exc


def entries(cache_dir: str, network: str | None = None) -> Iterator[CachedAttachment]:
    """Every readable cached entry (of ``network`` when given), by file name."""
    directory = os.path.join(cache_dir, RESULTS_DIR)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith("."):
            continue
        try:
            entry = _parse(os.path.join(directory, name))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if network is None or entry.network == network:
            yield entry
