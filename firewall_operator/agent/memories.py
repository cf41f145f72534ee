"""kopf per-object memories that are never kept (the agent's RSS at 100k pods).

kopf remembers a ``ResourceMemory`` (memo, error throttler, indexing and
daemon memories) for every object it has seen, until the object is deleted:
~1-2 KB per pod, the largest part of the agent's memory in big clusters.
Those memories serve change-detecting handlers, daemons, timers and indexes;
the agent has none of them (only ``on.event``, which returns None), so
``UnkeptMemories.recall`` hands out a fresh memory each time and stores
nothing.  This subclasses a kopf internal (``kopf._core.reactor.inventory``,
kopf 1.45), passed through ``kopf.run(memories=...)``; ``tests/unit`` pins it.
"""

from __future__ import annotations

from typing import Any

from kopf._core.reactor import inventory


class UnkeptMemories(inventory.ResourceMemories):
    async def recall(self, raw_body: Any, **kwargs: Any) -> inventory.ResourceMemory:
        kwargs["ephemeral"] = True
        return await super().recall(raw_body, **kwargs)
