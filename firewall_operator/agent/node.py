"""The agent's view of its node's kernel: which data plane, how to write it,
how to notice that someone else changed it, and bridge netfilter.

* ``backend_name`` / ``make_applier``: the backend the plugin uses (``auto``
  is resolved once per node and shared through ``<runDir>/backend``) and its
  writer (``NftApplier`` for nftables, ``Applier`` for the iptables ones).
* ``DriftWatch``: a thread that tells the reconciler within about a second
  when another process changed podwall's kernel state:
  - nftables: nf_tables change notifications (netlink group NFNLGRP_NFTABLES)
    for podwall's tables from any commit that is not this process's own;
    during the agent's own writes (``quiet``) the watch leaves the group,
    so that the kernel builds no notification per object, and counts the
    window's commits by the ruleset generation instead;
  - iptables-nft: notifications touching FORWARD, INPUT or podwall's chains
    of the ip/ip6 filter tables (the restores of the agent itself included:
    the resync they cause finds nothing to do);
  - iptables-legacy and iptc: the filter tables' entry count and size
    (``IPT_SO_GET_INFO``), polled every second;
  - ipsets (iptables backends): their headers, every second (``ipset list
    -t``: ~5 ms with the bench workload's 355 sets; every two seconds, a
    flushed set stayed open for up to 1.85 s, too close to the 2 s goal).
  Lost notifications (a full receive queue) count as a change.  Polls run on
  time even while notifications keep coming, and compare with what podwall's
  last write left (``written()``, called after every sync's write), never
  with the previous reading: the same rewrite made again right after a
  repair is noticed too, and podwall's own writes are not.
* ``ensure_bridge_netfilter``: ``bridge-nf-call-ip(6)tables`` are checked
  every sync and turned back on, with what happened for the report.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from firewall_operator import applier as applier_mod
from firewall_operator.agent.config import AgentConfig
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import backends, endpoints, ipsets, locking, model, sync, sysctl
from firewall_plugin import config as plugin_config_mod
from firewall_plugin.errors import PodwallError
from firewall_plugin.nft import netlink as nl
from firewall_plugin.nft import objects as obj

log = logging.getLogger(__name__)
POLL = 1.0
SETS_EVERY = 1
_FILTER_CHAINS = ("FORWARD", "INPUT")


def backend_name(backend: str, run_dir: str) -> str:
    """The concrete backend of the node (see the module docstring)."""
    return sync.resolve(backend, run_dir, remember=True)


def make_applier(
    name: str, *, run_dir: str, state_dir: str | None, log: model.LogSpec | None = None
) -> applier_mod.NodeApplier:
    """The writer of backend ``name`` (``log``: log the identity drops too)."""
    if name == backends.NFTABLES:
        return NftApplier(run_dir=run_dir, state_dir=state_dir, log=log)
    chosen = backends.get_backend(name)
    return applier_mod.Applier(chosen, run_dir=run_dir, state_dir=state_dir, log=log)


def cleanup_everywhere(run_dir: str) -> list[str]:
    """Remove podwall's kernel state from every data plane this node has
    (``agent --cleanup``, after an uninstall): nftables' two tables, then the
    chains, hook jumps and ipsets of iptables-nft and iptables-legacy.  A
    plane whose tools are missing is skipped.  The planes it found podwall
    in, in that order; BackendError when a present plane refuses."""
    from firewall_plugin.backends.restore import binary
    from firewall_plugin.nft import ops as nft_ops

    cleaned = []
    with locking.podwall_lock(run_dir, timeout=30.0):
        if not nft_ops.ready() and nft_ops.remove_all():
            cleaned.append(backends.NFTABLES)
        for name in ("iptables-nft", "iptables-legacy"):
            if shutil.which(binary(name.removeprefix("iptables-"), "ipv4", "restore")) is None:
                continue
            backend = backends.get_backend(name)
            found = False
            for family in model.FAMILIES:
                found = bool(backend.read(family).chains) or found
                backend.remove_all(family)
            if found:
                cleaned.append(name)
        if shutil.which("ipset") and (leftover := ipsets.list_names()):
            ipsets.apply(destroy=leftover)
            cleaned.append("ipset")
    return cleaned


# --- drift -------------------------------------------------------------------------


def _touched_name(reply: nl.Reply) -> tuple[str, str]:
    """(table, chain or set name) an nf_tables notification is about."""
    table = nl.text(reply.attributes.get(1, b""))
    if reply.kind in (nl.NEWTABLE, nl.DELTABLE):
        return table, ""
    if reply.kind in (nl.NEWCHAIN, nl.DELCHAIN):
        return table, nl.text(reply.attributes.get(obj.CHAIN_NAME, b""))
    if reply.kind in (nl.NEWRULE, nl.DELRULE):
        return table, nl.text(reply.attributes.get(obj.RULE_CHAIN, b""))
    return table, nl.text(reply.attributes.get(obj.SET_NAME, b""))


def _ours(pid: int, own_pid: int) -> bool:
    """Whether a commit's process id is this process: NEWGEN names the thread
    that committed (the agent applies in worker threads), so any thread of it."""
    return pid == own_pid or os.path.isdir(f"/proc/{own_pid}/task/{pid}")


def relevant(backend: str, replies: Sequence[nl.Reply], *, own_pid: int) -> bool:
    """Whether one commit's notifications (ending with its NEWGEN) show a
    change to podwall's state made by another process."""
    commit = [reply for reply in replies if reply.subsys == nl.NFNL_SUBSYS_NFTABLES]
    for reply in commit:
        if reply.kind == nl.NEWGEN and _ours(nl.number(reply.attributes.get(2, bytes(4))), own_pid):
            return False
    for reply in commit:
        if reply.kind == nl.NEWGEN:
            continue
        table, name = _touched_name(reply)
        if backend == backends.NFTABLES:
            if table == "podwall":
                return True
        elif (
            table == "filter"
            and reply.family in (nl.NFPROTO_IPV4, nl.NFPROTO_IPV6)
            and (not name or name in _FILTER_CHAINS or name.startswith("PODWALL"))
        ):
            return True
    return False


def legacy_info() -> tuple[int, ...]:
    """(entries, size) of the legacy filter table of each family (0s when absent)."""
    import ctypes
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    found: list[int] = []
    for family, level in (
        (socket.AF_INET, socket.IPPROTO_IP),
        (socket.AF_INET6, socket.IPPROTO_IPV6),
    ):
        buf = ctypes.create_string_buffer(b"filter", 84)
        size = ctypes.c_uint32(84)
        with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            if libc.getsockopt(sock.fileno(), level, 64, buf, ctypes.byref(size)) != 0:
                found += [0, 0]
                continue
        raw = buf.raw
        found += [int.from_bytes(raw[76:80], "little"), int.from_bytes(raw[80:84], "little")]
    return tuple(found)


def ipset_headers() -> str:
    """podwall's ipset headers (names, sizes, entry counts) as one text."""
    try:
        done = subprocess.run(["ipset", "list", "-t"], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    lines, keep = [], False
    for line in done.stdout.splitlines():
        if line.startswith("Name: "):
            keep = line[6:].startswith("PODWALL") and not line.endswith("-T")
        if keep and (line.startswith("Name: ") or line.startswith("Number of entries")):
            lines.append(line)
    return "\n".join(lines)


class Poll:
    """One polled reading (``read()``), due every ``every`` seconds, compared
    with what podwall's last write left (``rebase()``, called right after
    each write).  A drifted reading stays a change until the repair's write
    rebases it, so the same rewrite made again right after a repair is a
    change too (comparing with the previous reading would miss it)."""

    def __init__(self, what: str, read: Callable[[], object], every: float) -> None:
        self.what, self.read, self.every = what, read, every
        self._lock = threading.Lock()
        self._expected = read()
        self.due = time.monotonic() + every

    def rebase(self) -> None:
        value = self.read()
        with self._lock:
            self._expected = value

    def changed(self, now: float) -> bool:
        self.due = now + self.every
        value = self.read()
        with self._lock:
            return value != self._expected


class DriftWatch:
    """Calls ``on_drift()`` (from its own thread) when the kernel state of
    podwall changed under another hand; see the module docstring."""

    def __init__(self, backend: str, on_drift: Callable[[], None]) -> None:
        self.backend = backend
        self.on_drift = on_drift
        self.own_pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._polls: list[Poll] = []
        self._events: nl.Netlink | None = None  # subscribed to nf_tables notifications
        self._probe: nl.Netlink | None = None  # quiet()'s generation reads
        self._quiet = threading.Lock()
        self.noticed = 0

    def start(self) -> None:
        if self.backend in ("iptables-legacy", "iptc"):
            self._polls.append(Poll("the legacy filter table", legacy_info, POLL))
        if self.backend != backends.NFTABLES:
            self._polls.append(Poll("podwall's ipsets", ipset_headers, POLL * SETS_EVERY))
        if self.backend in (backends.NFTABLES, "iptables-nft"):
            try:
                self._events = nl.Netlink(buffer=4 << 20)
                self._events.subscribe()
                if self.backend == backends.NFTABLES:
                    self._probe = nl.Netlink()
            except PodwallError as exc:
                log.warning("cannot watch nf_tables notifications: %s", exc)
                self._close()
        self._thread = threading.Thread(target=self._run, name="podwall-drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()

    def _close(self) -> None:
        with self._quiet:
            for sock in (self._events, self._probe):
                if sock is not None:
                    sock.close()
            self._events = self._probe = None

    @contextmanager
    def quiet(self, commits: Callable[[], int]) -> Iterator[None]:
        """Around podwall's own nftables write (in the sync's thread): no
        notifications meanwhile, and every commit of another process in
        that time counted all the same.

        The kernel builds a notification per rule and element of a commit
        only while some socket listens (a full write of the bench workload:
        180-220 ms in the kernel without a listener, 370-850 ms with one),
        so the watch leaves the group for the write.  What it cannot hear
        then, it counts: the ruleset generation goes up by one per commit;
        it is read, then a barrier lets any commit under way end (the one
        counted in that reading has notified before the watch leaves), and
        read again after rejoining; when it went up by more than
        ``commits()`` did, another process committed in between, which is
        noticed as drift.  Without a probe socket, as before."""
        with self._quiet:
            events, probe = self._events, self._probe
            if events is None or probe is None:
                yield
                return
            try:
                before, ours = probe.generation(), commits()
                probe.barrier()
                events.unsubscribe()
            except PodwallError as exc:
                log.warning("cannot pause the nf_tables watch: %s", exc)
                yield
                return
            try:
                yield
            finally:
                self._rejoin(events, probe, before, commits() - ours)

    def _rejoin(self, events: nl.Netlink, probe: nl.Netlink, before: int, ours: int) -> None:
        try:
            events.subscribe()
            after = probe.generation()
        except PodwallError as exc:
            self._notice(f"the nf_tables watch could not rejoin ({exc})")
            return
        if (after - before) % (1 << 32) != ours:
            self._notice("an nf_tables commit of another process during podwall's write")

    def written(self) -> None:
        """podwall just wrote the kernel (from the sync's thread): what the
        polls read now is podwall's own state."""
        for poll in self._polls:
            poll.rebase()

    def _notice(self, why: str) -> None:
        self.noticed += 1
        log.info("kernel state changed by another process (%s): repairing", why)
        self.on_drift()

    def _run(self) -> None:
        events = self._events
        polls = self._polls
        pending: list[nl.Reply] = []
        while not self._stop.is_set():
            now = time.monotonic()
            wait = min([POLL, *(poll.due - now for poll in polls)])
            if events is not None:
                ready, _, _ = select.select([events.fileno()], [], [], max(wait, 0.0))
                if ready:  # read, then still poll what is due (events never starve polls)
                    pending = self._read(events, pending)
            elif wait > 0:
                self._stop.wait(wait)
            now = time.monotonic()
            for poll in polls:
                if now >= poll.due and poll.changed(now):
                    self._notice(poll.what)

    def _read(self, events: nl.Netlink, pending: list[nl.Reply]) -> list[nl.Reply]:
        try:
            replies = events.events(block=False)
        except PodwallError as exc:
            log.warning("reading nf_tables notifications failed: %s", exc)
            return []
        for reply in replies:
            if reply.kind == -1:
                self._notice("notifications were lost")
                pending = []
                continue
            pending.append(reply)
            if reply.subsys == nl.NFNL_SUBSYS_NFTABLES and reply.kind == nl.NEWGEN:
                if relevant(self.backend, pending, own_pid=self.own_pid):
                    self._notice(f"an nf_tables commit of another process ({self.backend})")
                pending = []
        return pending


def bridged_families(records: Sequence[endpoints.EndpointRecord]) -> list[model.Family]:
    """Every family of the node when a pod is bridged (an IPv4-only pod's
    link-local IPv6 must reach the rules that drop it), else none."""
    return sync.node_families() if any(record.bridge for record in records) else []


def ensure_bridge_netfilter(records: Sequence[endpoints.EndpointRecord]) -> list[str]:
    """Turn ``bridge-nf-call-ip(6)tables`` back on when a bridged pod needs
    them; returns what it had to fix.  Raises PodwallError when it cannot."""
    families = bridged_families(records)
    if not families:
        return []
    return sysctl.ensure_bridge_netfilter(families, fix=True)


def plugin_config(cfg: AgentConfig, backend: str) -> plugin_config_mod.PluginConfig:
    """The plugin's settings of this node, as the agent knows them."""
    return plugin_config_mod.PluginConfig(
        name="podwall",
        cni_version="1.0.0",
        backend=backend,
        pod_default=cfg.pod_default,
        deny_action=cfg.deny_action,
        state_dir=cfg.state_dir,
        run_dir=cfg.run_dir,
    )


def repair_records(backend: str, cfg: AgentConfig) -> None:
    """Give every endpoint record whose kernel state is gone (after a reboot
    that kept the state folder) its fail-closed state, as ADD would."""
    settings = plugin_config(cfg, backend)
    records = list(endpoints.read_all(cfg.state_dir))
    try:
        with locking.podwall_lock(cfg.run_dir, timeout=30.0):
            if backend == backends.NFTABLES:
                from firewall_plugin.nft import ops

                ops.repair(settings, records)
            else:
                chosen = backends.get_backend(backend)
                families = sync.node_families() if records else []
                for family in families:
                    sync.write_family(chosen, settings, family, records)
    except PodwallError as exc:
        log.warning("repairing the records' kernel state at start-up failed: %s", exc)
