"""The CNI plugin's node writes with the iptables backends: one restore per family.

The identity and dispatch chains (``xtables``: ``PODWALL-FORWARD``,
``PODWALL-INPUT``, ``PODWALL-TO``, each endpoint's ``PODWALL-F-/N-``) are
rebuilt from ALL endpoint records at every ADD, DEL and GC (level-triggered,
idempotent).  They exist in every family the kernel runs (IPv6 unless it is
disabled) as long as there is a record: a pod without an address of a family
gets a rule that drops what it sends in it.  The DEL of the last endpoint
removes them and the hook jumps too, so a node without pods carries no
podwall trace.

Never wedged by other endpoints' kernel state: ADD and DEL read the three
dispatch chains first (one listing), and every record whose dispatch is not
there (after a reboot that kept the state folder, after another tool flushed
the table, after a plugin died between writing its record and its rules) gets
its identity chains and the ``podDefault`` policy chains in the same
transaction: fail-closed until the agent programs it.  A record whose
dispatch is all there (the jumps to its F, N and ingress chains: ``intact``)
proves those chains exist (iptables refuses a rule that jumps to a missing
chain) and is left alone; one whose ingress chain was deleted by hand with
its jump is repaired, not left to make the rebuilt PODWALL-TO jump nowhere.

Families are written in parallel threads (each apply is one subprocess-bound
transaction of its own table); the ``iptc`` backend runs them one after the
other.  Callers hold ``locking.podwall_lock`` around ``attach``/``detach``/
``collect``.
"""

from __future__ import annotations

import _thread  # the documented low-level module: ``threading`` costs ~1 ms to import
import os

from firewall_plugin import backends, dataplane, endpoints, model, names, xtables
from firewall_plugin.errors import ConfigError, PodwallError, StateError

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import TypeVar

    from firewall_plugin.backends.base import Backend
    from firewall_plugin.backends.table import KernelTable
    from firewall_plugin.config import PluginConfig

    T = TypeVar("T")

POD_CHAIN_PREFIXES = tuple(
    f"{names.PREFIX}-{kind}-"
    for kind in (
        names.INGRESS_KIND,
        names.EGRESS_KIND,
        names.FROM_KIND,
        names.NODE_KIND,
        *(f"{d}{t}" for d in "IE" for t in "ANB"),
    )
)
DISPATCH = [names.FORWARD_CHAIN, names.INPUT_CHAIN, names.TO_CHAIN]
REMEMBERED_BACKEND = "backend"


def families_of(ips: Iterable[str]) -> list[model.Family]:
    """The families of ``ips``, in FAMILIES order."""
    present = {model.family_of(ip) for ip in ips}
    return [family for family in model.FAMILIES if family in present]


def node_families() -> list[model.Family]:
    """The families this network namespace runs: IPv6 unless it is disabled
    (then nothing can send it)."""
    return [f for f in model.FAMILIES if f == "ipv4" or os.path.exists("/proc/net/if_inet6")]


def resolve_name(config: PluginConfig, *, remember: bool) -> str:
    """The configured backend's name.  ``auto`` is detected once per node and
    kept in ``<runDir>/backend`` (plugin and agent share it; delete it to
    re-detect); ``remember`` false never writes that file."""
    return resolve(config.backend, config.run_dir, remember=remember)


def resolve(backend: str, run_dir: str, *, remember: bool) -> str:
    """``resolve_name`` for a backend setting and a run folder."""
    if backend != "auto":
        return backend
    path = os.path.join(run_dir, REMEMBERED_BACKEND)
    try:
        with open(path) as handle:
            name = handle.read().strip()
    except OSError:
        name = ""
    if name not in backends.CONCRETE_NAMES:
        name = backends.detect()
        if remember:
            _write_atomic(path, name + "\n")
    return name


def resolve_backend(config: PluginConfig, *, remember: bool) -> Backend:
    """The iptables backend the configuration names (see ``resolve_name``)."""
    return backends.get_backend(resolve_name(config, remember=remember))


def _write_atomic(path: str, text: str) -> None:
    temp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
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


def pod_chains(container_id: str, ifname: str) -> list[str]:
    """The attachment's ingress and egress policy chains."""
    return [names.ingress_chain(container_id, ifname), names.egress_chain(container_id, ifname)]


def owned_chains(container_id: str, ifname: str) -> list[str]:
    """Every chain the plugin makes for an attachment (identity first)."""
    return [*xtables.endpoint_chain_names(container_id, ifname), *pod_chains(container_id, ifname)]


def anchored(table: KernelTable, endpoint: model.Endpoint) -> bool:
    """Whether the kernel's dispatch already leads to ``endpoint``'s chains
    (then they exist: iptables refuses a jump to a missing chain)."""
    target = names.from_chain(endpoint.container_id, endpoint.ifname)
    forward = table.chains.get(names.FORWARD_CHAIN, ())
    return any(spec.endswith(f"-g {target}") for spec in forward)


def intact(table: KernelTable, endpoint: model.Endpoint) -> bool:
    """Whether every chain of ``endpoint`` that the rebuilt dispatch jumps
    to exists: PODWALL-FORWARD leads to its F chain, PODWALL-INPUT to its N
    chain and PODWALL-TO to its ingress chain (each proves its target)."""
    container_id, ifname = endpoint.container_id, endpoint.ifname
    wanted = (
        (names.FORWARD_CHAIN, f"-g {names.from_chain(container_id, ifname)}"),
        (names.INPUT_CHAIN, f"-g {names.node_chain(container_id, ifname)}"),
        (names.TO_CHAIN, f"-j {names.ingress_chain(container_id, ifname)}"),
    )
    return all(
        any(spec.endswith(jump) for spec in table.chains.get(chain, ())) for chain, jump in wanted
    )


def strays(table: KernelTable, records: Sequence[endpoints.EndpointRecord]) -> list[str]:
    """The F, N, ingress and egress chains of the pods the kernel's dispatch
    leads to but no record names (a record deleted by hand, or by a DEL
    through another backend).  The rebuilt dispatch no longer leads to them;
    left behind, their F chain's jump to PODWALL-TO would make deleting that
    chain fail when the family's last pod goes."""
    known = {names.endpoint_hash(record.containerID, record.ifName) for record in records}
    kinds = (names.FROM_KIND, names.NODE_KIND, names.INGRESS_KIND)
    found: set[str] = set()
    for chain in DISPATCH:
        for spec in table.chains.get(chain, ()):
            target = spec.rsplit(" ", 1)[-1]
            kind, _, digest = target.removeprefix(f"{names.PREFIX}-").partition("-")
            if target.startswith(names.PREFIX) and kind in kinds and digest not in known:
                found.add(digest)
    every = (*kinds, names.EGRESS_KIND)
    return [f"{names.PREFIX}-{kind}-{digest}" for digest in sorted(found) for kind in every]


def write_family(
    backend: Backend,
    config: PluginConfig,
    family: model.Family,
    records: Sequence[endpoints.EndpointRecord],
    *,
    fresh: Sequence[endpoints.EndpointRecord] = (),
    delete: Sequence[str] = (),
) -> None:
    """One transaction: the dispatch of ``records`` (or its removal when none
    has an address of ``family``), identity and default chains for ``fresh``
    records and for every record the kernel's dispatch lacks, ``delete``,
    and the ``strays`` of the dispatch it replaces."""
    current = backend.read_chains(family, DISPATCH)
    owner = xtables.owner(current.chains.get(names.FORWARD_CHAIN, ()))
    if owner and owner != config.state_dir:
        raise ConfigError(
            f"this node's podwall state lives in {owner}; a podwall entry with stateDir "
            f"{config.state_dir} would drop the pods of the other: use one stateDir per node"
        )
    present = [record.endpoint() for record in records]
    replace = xtables.shared_chains(present, family, state_dir=config.state_dir)
    if replace:
        renewed = {record.key for record in fresh}
        for record in records:
            endpoint = record.endpoint()
            if not endpoint.sources(family):
                continue
            if record.key in renewed or not intact(current, endpoint):
                replace += [
                    xtables.from_chain(endpoint, family),
                    xtables.node_chain(endpoint, family),
                    *dataplane.default_chains(
                        record,
                        family,
                        pod_default=config.pod_default,  # type: ignore[arg-type]
                        deny_action=config.deny_action,  # type: ignore[arg-type]
                    ),
                ]
    stray = [name for name in strays(current, records) if name not in delete]
    gone = [*delete, *stray, *(name for name in DISPATCH if not replace)]
    for name in [*delete, *stray]:  # declare them (strays exist: a jump leads there)
        current.chains.setdefault(name, [])
    backend.apply(family, replace=replace, delete=gone, current=current)


def all_chains(container_id: str, ifname: str) -> list[str]:
    """Every chain of an attachment: the plugin's and the agent's tier chains."""
    tiers = names.tier_chains(endpoints.record_stem(container_id, ifname))
    return [*owned_chains(container_id, ifname), *tiers]


def _read(config: PluginConfig, container_id: str, ifname: str) -> endpoints.EndpointRecord | None:
    try:
        return endpoints.read(config.state_dir, container_id, ifname)
    except StateError:
        return None


def _install(
    backend: Backend,
    config: PluginConfig,
    record: endpoints.EndpointRecord,
    families: Sequence[model.Family],
) -> None:
    """Write ``record`` and give it its chains in its families; delete the
    attachment's chains in the other ``families`` (a family it no longer has)."""
    endpoints.write(config.state_dir, record)
    records = list(endpoints.read_all(config.state_dir))
    present = families_of(record.ips)
    chains = all_chains(record.containerID, record.ifName)

    def write(family: model.Family) -> None:
        if family in present:
            write_family(backend, config, family, records, fresh=[record])
        else:
            write_family(backend, config, family, records, delete=chains)

    for_families(backend, families, write)


def attach(backend: Backend, config: PluginConfig, record: endpoints.EndpointRecord) -> None:
    """ADD: write ``record``, rebuild dispatch, give the pod its default
    chains (and repair any record the kernel lacks) in every family of the
    node; a second ADD of the attachment also deletes its chains of a family
    it no longer has an address of.  On any failure, undo (the previous
    record and its state back, or record, dispatch and chains gone) and
    re-raise."""
    previous = _read(config, record.containerID, record.ifName)
    families = node_families()
    try:
        _install(backend, config, record, families)
    except BaseException as exc:
        undo = _rollback(backend, config, record, previous, families)
        if undo and isinstance(exc, PodwallError):
            exc.args = (f"{exc}; rollback also failed: {undo}",)
        raise


def _rollback(
    backend: Backend,
    config: PluginConfig,
    record: endpoints.EndpointRecord,
    previous: endpoints.EndpointRecord | None,
    families: Sequence[model.Family],
) -> str:
    """Best effort undo of a failed ``attach``; returns what could not be undone."""
    try:
        if previous is None:  # the record first: it must go even if the kernel refuses
            endpoints.remove(config.state_dir, record.containerID, record.ifName)
            detach(backend, config, record.containerID, record.ifName, families=families)
        else:
            _install(backend, config, previous, families)
    except PodwallError as exc:
        return str(exc)
    return ""


def detach(
    backend: Backend,
    config: PluginConfig,
    container_id: str,
    ifname: str,
    *,
    families: Sequence[model.Family] | None = None,
) -> None:
    """DEL: remove the attachment's dispatch and chains (tier chains
    included; in ``families``, by default every family of the node), then
    its record (a DEL whose kernel write fails keeps it, for the retry).
    Succeeds whatever is left of the pod's own state."""
    if families is None:
        families = node_families()
    key = endpoints.record_stem(container_id, ifname)
    records = [other for other in endpoints.read_all(config.state_dir) if other.key != key]
    chains = all_chains(container_id, ifname)

    def write(family: model.Family) -> None:
        write_family(backend, config, family, records, delete=chains)

    for_families(backend, families, write)
    endpoints.remove(config.state_dir, container_id, ifname)


def prune_records(
    config: PluginConfig, valid: set[tuple[str, str]]
) -> list[endpoints.EndpointRecord]:
    """GC's file part: remove every record not in ``valid`` and the temp
    files of plugins that died mid-write; returns the records kept."""
    for path in endpoints.stale_temp_files(config.state_dir):
        try:  # noqa: SIM105 - contextlib costs the CNI start-up ~1 ms
            os.unlink(path)
        except FileNotFoundError:
            pass
    kept: list[endpoints.EndpointRecord] = []
    for record in endpoints.read_all(config.state_dir):
        if record.attachment in valid:
            kept.append(record)
        else:
            endpoints.remove(config.state_dir, record.containerID, record.ifName)
    return kept


def collect(backend: Backend, config: PluginConfig, valid: set[tuple[str, str]]) -> list[str]:
    """GC: drop every record not in ``valid`` with its dispatch and chains,
    every per-pod chain without a record (tier chains included), and the
    temp files of plugins that died mid-write.  Returns the chains removed."""
    kept = prune_records(config, valid)
    wanted = {chain for record in kept for chain in owned_chains(*record.attachment)}
    wanted |= {name for record in kept for name in names.tier_chains(record.key)}

    def sweep(family: model.Family) -> list[str]:
        table = backend.read(family)
        owned = (name for name in table.chains if name.startswith(POD_CHAIN_PREFIXES))
        stale = sorted(name for name in owned if name not in wanted)
        write_family(backend, config, family, kept, delete=stale)
        return stale

    removed = for_families(backend, list(model.FAMILIES), sweep)
    return sorted({name for names_ in removed.values() for name in names_})
