"""The node-level writes of the CNI plugin: records plus one apply per family.

``PODWALL-FORWARD`` is rebuilt from ALL endpoint records each time
(level-triggered, idempotent).  It exists in a family exactly when some record
has an address of that family: the DEL (or GC) of the last endpoint of a family
removes ``PODWALL-FORWARD`` and the FORWARD jump too, so a node without pods
carries no podwall trace.  The agent follows the same rule.

Families are written in parallel threads (each apply is one subprocess-bound
transaction of its own table); the ``iptc`` backend runs them one after the
other.  DEL of a recorded pod lets the backend skip reading the table first
(``assume_jump``): one restore per family instead of a save and a restore;
among many endpoints it lists FORWARD and PODWALL-FORWARD first, so the
restore deletes the pod's two dispatch rules by spec instead of rewriting
hundreds.
ADD, and DEL without a record, read only the chains they touch
(``Backend.read_chains``: FORWARD, PODWALL-FORWARD, the pod's two chains), never
the whole table, which on a busy node holds the agent's thousands of rules; GC
reads the whole table (it looks for every per-pod chain).
Callers hold ``locking.podwall_lock`` around ``attach``/``detach``/``collect``.
"""

from __future__ import annotations

import _thread  # the documented low-level module: ``threading`` costs ~1 ms to import
import os

from firewall_plugin import backends, dataplane, endpoints, model, names
from firewall_plugin.errors import PodwallError, StateError

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import TypeVar

    from firewall_plugin.backends.base import Backend
    from firewall_plugin.backends.table import KernelTable
    from firewall_plugin.config import PluginConfig

    T = TypeVar("T")

POD_CHAIN_PREFIXES = (
    f"{names.PREFIX}-{names.INGRESS_KIND}-",
    f"{names.PREFIX}-{names.EGRESS_KIND}-",
)
REMEMBERED_BACKEND = "backend"
#: DEL lists PODWALL-FORWARD first from this many other endpoints of a family
#: on (see ``_lists_to_delete``)
LISTED_DEL_RECORDS = 16


def families_of(ips: Iterable[str]) -> list[model.Family]:
    """The families of ``ips``, in FAMILIES order."""
    present = {model.family_of(ip) for ip in ips}
    return [family for family in model.FAMILIES if family in present]


def resolve_backend(config: PluginConfig, *, remember: bool) -> Backend:
    """The configured backend.  ``auto`` is detected once per node and kept in
    ``<runDir>/backend`` (plugin and agent share it; delete it to re-detect);
    ``remember`` false never writes that file."""
    if config.backend != "auto":
        return backends.get_backend(config.backend)
    path = os.path.join(config.run_dir, REMEMBERED_BACKEND)
    try:
        with open(path) as handle:
            name = handle.read().strip()
    except OSError:
        name = ""
    if name not in ("iptables-nft", "iptables-legacy"):
        name = backends.detect()
        if remember:
            _write_atomic(path, name + "\n")
    return backends.get_backend(name)


def _write_atomic(path: str, text: str) -> None:
    temp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temp, "w") as handle:
            handle.write(text)
        os.replace(temp, path)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc}") from exc


def for_families(
    backend: Backend, families: Sequence[model.Family], work: Callable[[model.Family], T]
) -> dict[model.Family, T]:
    """``work(family)`` for each family, in parallel threads unless the backend
    is ``iptc``; re-raises the first failure (in family order) after all ended."""
    if len(families) < 2 or backend.name == "iptc":
        return {family: work(family) for family in families}
    results: dict[model.Family, T] = {}
    failures: dict[model.Family, BaseException] = {}

    def run(family: model.Family, done: _thread.LockType | None = None) -> None:
        try:
            results[family] = work(family)
        except BaseException as exc:
            failures[family] = exc
        finally:
            if done is not None:
                done.release()

    running = []
    for family in families[1:]:
        done = _thread.allocate_lock()
        done.acquire()
        _thread.start_new_thread(run, (family, done))
        running.append(done)
    run(families[0])
    for done in running:
        done.acquire()  # released when that family's work has ended
    for family in families:
        if family in failures:
            raise failures[family]
    return results


def apply_family(
    backend: Backend,
    family: model.Family,
    records: Sequence[endpoints.EndpointRecord],
    *,
    add: Sequence[model.Chain] = (),
    delete: Sequence[str] = (),
    assume_jump: bool = False,
    current: KernelTable | None = None,
) -> None:
    """One transaction: ``PODWALL-FORWARD`` from ``records`` (or its removal when
    no record has an address of ``family``), ``add`` chains, ``delete`` chains.
    ``assume_jump``, ``current``: see ``Backend.apply`` (``current`` must name
    ``delete`` and PODWALL-FORWARD when they may exist)."""
    if any(dataplane.addresses(record, family) for record in records):
        forward = dataplane.forward_chain(records, family)
        replace, gone = [forward, *add], list(delete)
    else:
        replace, gone = list(add), [*delete, names.FORWARD_CHAIN]
    backend.apply(family, replace=replace, delete=gone, assume_jump=assume_jump, current=current)


def pod_chains(container_id: str, ifname: str) -> list[str]:
    """The attachment's ingress and egress chains."""
    return [names.ingress_chain(container_id, ifname), names.egress_chain(container_id, ifname)]


def _add_reads(
    records: Sequence[endpoints.EndpointRecord],
    record: endpoints.EndpointRecord,
    family: model.Family,
    *,
    again: bool,
) -> list[str]:
    """The chains ADD lists besides FORWARD: PODWALL-FORWARD when another
    record has an address of ``family`` (else it is most likely absent:
    declared afresh), the pod's own chains when its record was already there
    (ADD again; else they are most likely absent).  A chain not listed is
    declared afresh, which ends the same; listing an absent one costs a run."""
    others = (r for r in records if r.attachment != record.attachment)
    wanted = [names.FORWARD_CHAIN] if any(dataplane.addresses(r, family) for r in others) else []
    return [*wanted, *pod_chains(record.containerID, record.ifName)] if again else wanted


def attach(backend: Backend, config: PluginConfig, record: endpoints.EndpointRecord) -> None:
    """ADD: write ``record``, rebuild dispatch and the pod's default chains.
    On any failure, undo (record, dispatch, chains) and re-raise."""
    families = families_of(record.ips)
    path = endpoints.record_path(config.state_dir, record.containerID, record.ifName)
    again = os.path.exists(path)
    endpoints.write(config.state_dir, record)
    try:
        records = list(endpoints.read_all(config.state_dir))

        def write(family: model.Family) -> None:
            chains = dataplane.default_chains(
                record,
                family,
                pod_default=config.pod_default,  # type: ignore[arg-type]
                deny_action=config.deny_action,  # type: ignore[arg-type]
            )
            reads = _add_reads(records, record, family, again=again)
            current = backend.read_chains(family, reads)
            apply_family(backend, family, records, add=chains, current=current)

        for_families(backend, families, write)
    except BaseException as exc:
        undo = _rollback(backend, config, record, families)
        if undo and isinstance(exc, PodwallError):
            exc.args = (f"{exc}; rollback also failed: {undo}",)
        raise


def _rollback(
    backend: Backend,
    config: PluginConfig,
    record: endpoints.EndpointRecord,
    families: Sequence[model.Family],
) -> str:
    """Best effort undo of a failed ``attach``; returns what could not be undone."""
    try:
        detach(backend, config, record.containerID, record.ifName, families=families)
    except PodwallError as exc:
        return str(exc)
    return ""


def _lists_to_delete(
    backend: Backend, records: Sequence[endpoints.EndpointRecord], family: model.Family
) -> bool:
    """Whether DEL of a recorded pod should list FORWARD and PODWALL-FORWARD
    first, so that the restore deletes the pod's dispatch rules by spec
    instead of rewriting the chain (``render.delete_lines``): worth its ~4 ms
    from ``LISTED_DEL_RECORDS`` other endpoints of ``family`` on.  Never for
    ``iptc`` (it reads the table anyway) nor when the pod was the family's
    last (PODWALL-FORWARD goes)."""
    if backend.name == "iptc":
        return False
    others = sum(1 for record in records if dataplane.addresses(record, family))
    return others >= LISTED_DEL_RECORDS


def detach(
    backend: Backend,
    config: PluginConfig,
    container_id: str,
    ifname: str,
    *,
    families: Sequence[model.Family] | None = None,
) -> None:
    """DEL: remove the record, its dispatch rules and its two chains.  Without
    ``families``: those of the record, or both when there is no record.  With
    a record, its families hold PODWALL-FORWARD and the FORWARD jump, so the
    backend may skip reading them first (``assume_jump``), or, with many other
    endpoints, list only FORWARD and PODWALL-FORWARD and delete the pod's
    dispatch rules by spec; other families read only FORWARD,
    PODWALL-FORWARD and the two chains (``read_chains``)."""
    try:
        record = endpoints.read(config.state_dir, container_id, ifname)
    except StateError:
        record = None
    endpoints.remove(config.state_dir, container_id, ifname)
    if families is None:
        families = families_of(record.ips) if record and record.ips else list(model.FAMILIES)
    records = list(endpoints.read_all(config.state_dir))
    chains = pod_chains(container_id, ifname)
    known = families_of(record.ips) if record else []

    def write(family: model.Family) -> None:
        if family in known and _lists_to_delete(backend, records, family):
            current = backend.read_chains(family, [names.FORWARD_CHAIN])
            for chain in chains:  # the record says they exist; an absent one is no error
                current.chains.setdefault(chain, [])
            apply_family(backend, family, records, delete=chains, current=current)
        elif family in known:
            apply_family(backend, family, records, delete=chains, assume_jump=True)
        else:
            current = backend.read_chains(family, [names.FORWARD_CHAIN, *chains])
            apply_family(backend, family, records, delete=chains, current=current)

    for_families(backend, families, write)


def collect(backend: Backend, config: PluginConfig, valid: set[tuple[str, str]]) -> list[str]:
    """GC: drop every record not in ``valid`` with its dispatch and chains, and
    every per-pod chain without a record.  Returns the chains removed."""
    kept: list[endpoints.EndpointRecord] = []
    for record in endpoints.read_all(config.state_dir):
        if record.attachment in valid:
            kept.append(record)
        else:
            endpoints.remove(config.state_dir, record.containerID, record.ifName)
    wanted = {chain for record in kept for chain in (record.ingressChain, record.egressChain)}

    def sweep(family: model.Family) -> list[str]:
        table = backend.read(family)
        owned = (name for name in table.chains if name.startswith(POD_CHAIN_PREFIXES))
        stale = sorted(name for name in owned if name not in wanted)
        apply_family(backend, family, kept, delete=stale)
        return stale

    removed = for_families(backend, list(model.FAMILIES), sweep)
    return sorted({name for names_ in removed.values() for name in names_})
