"""Watch streams: initial events, history replay, selector transitions, expiry.

A ``WatchStream`` registers on the ``Store`` and turns its events into the
events one watcher sees: an object that starts matching the watch's selectors
arrives as ADDED, one that stops matching as DELETED (as kube-apiserver's
cacher does).  ``start`` returns what to send first: the current objects as
ADDED (no resourceVersion, or "0"), or the history after the given version;
a version older than the history window raises ``errors.Expired``.  The HTTP
side reads ``next_event``; ``expire`` ends a stream with a 410 (the test hook
that forces clients to re-list); ``freeze`` makes it a half-open watch that
sends nothing more and never ends (the test hook for stall detection).  No I/O
here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from firewall_lab.apiserver import errors, selectors
from firewall_lab.apiserver.storage import Event, Store

Json = dict[str, Any]
WatchEvent = tuple[str, Json]  # (type, stored object)
_EXPIRED: WatchEvent = ("ERROR", {})
_STOPPED: WatchEvent = ("STOP", {})


def translate(event: Event, flt: selectors.Filter) -> WatchEvent | None:
    """What a watcher with filter ``flt`` sees of ``event`` (None: nothing)."""
    now_in = event.type != "DELETED" and flt.matches(event.obj)
    was_in = event.old is not None and flt.matches(event.old)
    if event.type == "DELETED":
        return ("DELETED", event.obj) if was_in else None
    if now_in and was_in:
        return "MODIFIED", event.obj
    if now_in:
        return "ADDED", event.obj
    if was_in:
        return "DELETED", event.obj
    return None


class WatchStream:
    """The events of one watch request, in order."""

    def __init__(self, store: Store, *, key: str, flt: selectors.Filter) -> None:
        self.store = store
        self.key = key
        self.flt = flt
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.frozen = False

    def start(self, resource_version: str | None) -> list[WatchEvent]:
        """Register and return the initial events (raises ``Expired`` when too old)."""
        if resource_version in (None, "", "0"):
            initial = [
                ("ADDED", obj) for obj in self.store.items(self.key) if self.flt.matches(obj)
            ]
        else:
            try:
                since = int(resource_version)
            except ValueError as exc:
                shown = errors.shown(resource_version)
                raise errors.BadRequest(f"invalid resourceVersion {shown}") from exc
            initial = []
            for event in self.store.events_since(self.key, since):
                seen = translate(event, self.flt)
                if seen is not None:
                    initial.append(seen)
        self.store.listeners.add(self._on_event)
        return initial

    def _on_event(self, event: Event) -> None:
        if event.key != self.key:
            return
        seen = translate(event, self.flt)
        if seen is not None:
            self.queue.put_nowait(seen)

    async def next_event(self, timeout: float | None) -> WatchEvent | None:
        """The next event, or None after ``timeout`` seconds without one.

        Raises ``errors.Expired`` after ``expire``.
        """
        try:
            event = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if event is _STOPPED:
            return None
        if event is _EXPIRED:
            raise errors.Expired("The resourceVersion for the provided watch is too old.")
        return event

    def expire(self) -> None:
        """End this stream with a 410 Expired ERROR event."""
        self.queue.put_nowait(_EXPIRED)

    def freeze(self) -> None:
        """From now on send nothing and never end (a half-open connection)."""
        self.frozen = True
        self.queue.put_nowait(_STOPPED)

    def stop(self) -> None:
        """Wake the stream up so that it notices the server is stopping."""
        self.queue.put_nowait(_STOPPED)

    def close(self) -> None:
        self.store.listeners.discard(self._on_event)
