"""The relay's pods: slim copies, each serialized once, and a history to resume from.

``slim_pod`` keeps of a Pod only what policy reads (``cluster.pod_from_dict``):
name, namespace, UID, resourceVersion, labels, node, hostNetwork, named
container ports, phase and IPs; a pod is ~200 bytes instead of kilobytes.
``RelayStore`` is fed like the agent's cache (``observe``, ``relist_item``,
``relist_finish``: the ``watching.Sink`` protocol), so the relay's own
list+watch of the API server is the agent's code.  A change that leaves the
slim copy as it was (a status condition, a container restart) is dropped
here: agents never hear of it.  Every change is encoded once as a watch event
line and kept in a bounded history of ``history`` events; ``since(version)``
replays it to a resuming agent, or says the version is too old (410, as the
API server does).  ``listing()`` is one LIST body of every slim pod.

Pure: no I/O; one event loop calls it.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Mapping
from typing import Any

Key = tuple[str, str]
GONE_PHASES = ("Succeeded", "Failed")
MAX_TOMBSTONES = 50_000


def slim_pod(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Pod that policy reads (see module doc)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    containers = []
    for container in spec.get("containers") or []:
        named = [p for p in (container or {}).get("ports") or [] if p.get("name")]
        if named:
            keep = ("name", "containerPort", "protocol")
            containers.append({"ports": [{k: p[k] for k in keep if k in p} for p in named]})
    ips = [e for e in status.get("podIPs") or [] if isinstance(e, Mapping) and e.get("ip")]
    if not ips and status.get("podIP"):
        ips = [{"ip": status["podIP"]}]
    found: dict[str, Any] = {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "labels": meta.get("labels") or {},
        },
        "spec": {"nodeName": spec.get("nodeName") or "", "containers": containers},
        "status": {"phase": status.get("phase") or "", "podIPs": [{"ip": e["ip"]} for e in ips]},
    }
    if spec.get("hostNetwork"):
        found["spec"]["hostNetwork"] = True
    return found


def _version(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal but for the resourceVersion."""

    def strip(pod: Mapping[str, Any]) -> dict[str, Any]:
        return {**pod, "metadata": {**pod["metadata"], "resourceVersion": None}}

    return strip(a) == strip(b)


class RelayStore:
    """Slim pods and their change history (see module doc)."""

    def __init__(self, *, history: int = 200_000) -> None:
        self.pods: dict[Key, tuple[dict[str, Any], bytes]] = {}  # key → (slim, its JSON)
        self.events: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=history)
        self.oldest = 0  # resuming from before this version needs a LIST (410)
        self.version = 0  # the highest resourceVersion heard (events, lists)
        self.listed = False
        self.dropped = 0  # changes that did not touch the slim copy
        self.tombstones: dict[Key, int] = {}  # deleted → at which version (lists are older)
        self.listeners: set[Callable[[bytes], None]] = set()

    # --- fed like the agent's cache (watching.Sink) ----------------------------

    def observe(self, kind: str, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        version = _version(meta.get("resourceVersion"))
        self.version = max(self.version, version)
        gone = (obj.get("status") or {}).get("phase") in GONE_PHASES
        if event_type == "DELETED" or gone:
            self.tombstones[key] = max(version, self.tombstones.get(key, 0))
            if len(self.tombstones) > MAX_TOMBSTONES:
                for old in list(self.tombstones)[: MAX_TOMBSTONES // 2]:
                    del self.tombstones[old]
            return self._delete(key, obj)
        if self.tombstones.get(key, -1) >= version:
            return False  # deleted after this copy was taken
        slim = slim_pod(obj)
        current = self.pods.get(key)
        if current is not None and _version(current[0]["metadata"]["resourceVersion"]) >= version:
            return False  # the same or an older copy
        if current is not None and _same(current[0], slim):
            self.pods[key] = (slim, current[1])  # newer version, nothing to tell
            self.dropped += 1
            return False
        encoded = json.dumps(slim, separators=(",", ":")).encode()
        self.pods[key] = (slim, encoded)
        self._emit("MODIFIED" if current is not None else "ADDED", version, encoded)
        return True

    def _delete(self, key: Key, obj: Mapping[str, Any]) -> bool:
        current = self.pods.pop(key, None)
        if current is None:
            return False
        slim = slim_pod(obj)
        version = _version(slim["metadata"]["resourceVersion"]) or self.version
        slim["metadata"]["resourceVersion"] = str(version)
        self._emit("DELETED", version, json.dumps(slim, separators=(",", ":")).encode())
        return True

    def relist_item(self, kind: str, obj: Mapping[str, Any], present: set[Key]) -> bool:
        meta = obj.get("metadata") or {}
        present.add((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
        return self.observe(kind, None, obj)

    def relist_finish(self, kind: str, present: set[Key], list_version: str) -> list[Key]:
        limit = _version(list_version) or self.version
        self.version = max(self.version, limit)
        swept = [
            key
            for key, (slim, _) in self.pods.items()
            if key not in present and _version(slim["metadata"]["resourceVersion"]) <= limit
        ]
        for key in swept:
            slim = self.pods[key][0]
            self._delete(key, {**slim, "metadata": {**slim["metadata"], "resourceVersion": limit}})
        self.tombstones = {k: v for k, v in self.tombstones.items() if v > limit}
        self.listed = True
        return swept

    # --- served to agents ---------------------------------------------------------

    def _emit(self, event_type: str, version: int, encoded: bytes) -> None:
        if len(self.events) == self.events.maxlen:
            self.oldest = self.events[0][0]
        line = b'{"type":"%s","object":%s}\n' % (event_type.encode(), encoded)
        self.events.append((version, line))
        for listener in list(self.listeners):
            listener(line)

    def bookmark(self) -> bytes:
        meta = {"resourceVersion": str(self.version)}
        return json.dumps({"type": "BOOKMARK", "object": {"metadata": meta}}).encode() + b"\n"

    def since(self, version: int) -> list[bytes] | None:
        """Event lines after ``version``; None when it left the history (410)."""
        if version < self.oldest:
            return None
        return [line for at, line in self.events if at > version]

    def listing(self) -> bytes:
        """A PodList body of every slim pod at the current version."""
        head = b'{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"%d"},"items":['
        return head % self.version + b",".join(e for _, e in self.pods.values()) + b"]}"
