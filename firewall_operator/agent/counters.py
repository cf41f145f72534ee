"""Drop counters per policy and rule, from the kernel's per-tag counters.

Backends implement ``CounterSource.read_counters()``: packets and bytes per
counter tag (the same tags as the log, ``logtags``), as the kernel holds
them now.  ``DropCounters.update`` turns successive readings into monotonic
totals per (tier, policy, rule, direction), the labels of the exported
families: a reading lower than the last one means the rule was rebuilt (its
counter restarted), so the new value counts whole.  Totals are summed over
pods, so the label count grows with policies and rules, never with pods.
Tags whose verdict is not ``deny``, and tags the resolver does not know,
are not counted (nothing says what they would be).  Packets a rule counted
between the last reading and its removal are lost.

``DropCounters`` is a prometheus_client collector: every scrape reads the
source once.  It does not touch the kernel itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from firewall_operator import logtags

log = logging.getLogger(__name__)
Labels = tuple[str, str, str, str]  # tier, policy, rule, direction
LABELS = ("tier", "policy", "rule", "direction")


@runtime_checkable
class CounterSource(Protocol):
    """What a backend provides: ``{tag: (packets, bytes)}`` of its counters.
    The agent exports the drop counters of a backend that has this method."""

    def read_counters(self) -> Mapping[str, tuple[int, int]]: ...


class DropCounters(Collector):
    """Monotonic drop totals per policy and rule (see module doc)."""

    def __init__(
        self,
        source: CounterSource,
        resolve: Callable[[], logtags.Resolver],
    ) -> None:
        self.source, self.resolve = source, resolve
        self.last: dict[str, tuple[int, int]] = {}
        self.totals: dict[Labels, list[int]] = {}
        self.errors = 0
        self._lock = threading.Lock()

    def update(self, readings: Mapping[str, tuple[int, int]], resolve: logtags.Resolver) -> None:
        """Add what the counters gained since the last reading."""
        with self._lock:
            for tag, (packets, size) in readings.items():
                old_packets, old_size = self.last.get(tag, (0, 0))
                if packets < old_packets or size < old_size:
                    old_packets, old_size = 0, 0  # the rule was rebuilt
                meaning = resolve(tag)
                if meaning is not None and meaning.verdict == "deny":
                    labels = (meaning.tier, meaning.policy, meaning.rule, meaning.direction)
                    total = self.totals.setdefault(labels, [0, 0])
                    total[0] += packets - old_packets
                    total[1] += size - old_size
            self.last = dict(readings)

    def read(self) -> None:
        try:
            readings = self.source.read_counters()
        except Exception as exc:  # a backend failure must not break the scrape
            self.errors += 1
            log.warning("cannot read the drop counters: %s", exc)
            return
        self.update(readings, self.resolve())

    def collect(self) -> Iterator[CounterMetricFamily]:
        self.read()
        packets = CounterMetricFamily(
            "podwall_dropped_packets",
            "Packets podwall dropped, per policy and rule",
            labels=LABELS,
        )
        size = CounterMetricFamily(
            "podwall_dropped_bytes", "Bytes podwall dropped, per policy and rule", labels=LABELS
        )
        with self._lock:
            for labels, (count, octets) in sorted(self.totals.items()):
                packets.add_metric(list(labels), count)
                size.add_metric(list(labels), octets)
        yield packets
        yield size
