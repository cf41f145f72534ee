"""In-memory object storage: one global resourceVersion, a bounded event history.

Objects live per storage key (``group/plural``) by ``(namespace, name)``.
Every change takes the next resourceVersion (one counter for everything, as
etcd's revision) and is appended to a bounded history that watches replay
from; a watch from a version older than the history window gets 410 Expired.
Listeners (open watches) hear every event synchronously; ``membership`` counts,
per key, the changes that add or remove objects (list order caches check it).  Runs on one event
loop thread and takes no locks; knows nothing about HTTP or resource rules.
Persistence: ``snapshot``/``restore`` to and from plain JSON, ``save_file``
writes it atomically.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from firewall_lab.apiserver import errors

Json = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" when cluster-scoped


@dataclasses.dataclass(frozen=True)
class Event:
    """One change: ``obj`` as stored after it (``old`` before it, if any)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    obj: Json
    old: Json | None


Listener = Callable[[Event], None]


def key_of(obj: Json) -> Key:
    meta = obj.get("metadata", {})
    return meta.get("namespace", "") or "", meta.get("name", "")


class Store:
    """Objects, the resourceVersion counter, the event history and listeners."""

    def __init__(self, *, history_size: int = 10_000) -> None:
        self.objects: dict[str, dict[Key, Json]] = {}
        self.rv = 0
        self.history: collections.deque[Event] = collections.deque(maxlen=history_size)
        self.compacted_rv = 0  # watches from an older version are Expired
        self.listeners: set[Listener] = set()
        self.on_change: Callable[[], None] | None = None
        self.membership: dict[str, int] = {}  # per key: bumped when objects come or go

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def get(self, key: str, namespace: str, name: str) -> Json | None:
        return self.objects.get(key, {}).get((namespace, name))

    def items(self, key: str) -> list[Json]:
        return list(self.objects.get(key, {}).values())

    def put(self, key: str, obj: Json) -> Json:
        """Store ``obj`` (created or replaced) under a new resourceVersion."""
        rv = self.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        bucket = self.objects.setdefault(key, {})
        old = bucket.get(key_of(obj))
        bucket[key_of(obj)] = obj
        if old is None:
            self.membership[key] = self.membership.get(key, 0) + 1
        self._record(Event(rv, "MODIFIED" if old else "ADDED", key, obj, old))
        return obj

    def remove(self, key: str, obj: Json) -> Json:
        """Drop ``obj``; the DELETED event carries a new resourceVersion."""
        old = self.objects.get(key, {}).pop(key_of(obj), None)
        if old is None:
            return obj
        self.membership[key] = self.membership.get(key, 0) + 1
        rv = self.next_rv()
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._record(Event(rv, "DELETED", key, gone, old))
        return gone

    def _record(self, event: Event) -> None:
        if len(self.history) == self.history.maxlen and self.history:
            self.compacted_rv = self.history[0].rv
        self.history.append(event)
        for listener in list(self.listeners):
            listener(event)
        if self.on_change is not None:
            self.on_change()

    def events_since(self, key: str, rv: int) -> list[Event]:
        """Events of ``key`` after ``rv``; 410 Expired when ``rv`` left the window."""
        if rv < self.compacted_rv:
            raise errors.Expired(f"too old resource version: {rv} ({self.compacted_rv})")
        return [e for e in self.history if e.rv > rv and e.key == key]

    def compact(self) -> None:
        """Forget the history: every older version now answers 410 Expired."""
        self.history.clear()
        self.compacted_rv = self.rv

    def snapshot(self) -> Json:
        return {
            "resourceVersion": self.rv,
            "objects": {k: list(bucket.values()) for k, bucket in self.objects.items()},
        }

    def restore(self, data: Json) -> None:
        self.rv = int(data.get("resourceVersion", 0))
        self.compacted_rv = self.rv
        old = set(self.objects)
        self.objects = {
            key: {key_of(obj): obj for obj in objs}
            for key, objs in (data.get("objects") or {}).items()
        }
        for key in old | set(self.objects):
            self.membership[key] = self.membership.get(key, 0) + 1


def save_file(path: str, data: Json) -> None:
    """Write ``data`` as JSON atomically (temp file in the same folder + rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_file(path: str) -> Json | None:
    """The saved state, or None when the file does not exist."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
