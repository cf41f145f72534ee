"""The CNI plugin's node writes with the iptables backends: one restore per family.

The identity and dispatch chains (``xtables``: ``PODWALL-FORWARD``,
``PODWALL-INPUT``, ``PODWALL-TO``, each endpoint's ``PODWALL-F-/N-``) are
rebuilt from ALL endpoint records at every ADD, DEL and GC (level-triggered,
idempotent).  They exist in a family exactly when some record has an address
of that family: the DEL of the last endpoint of a family removes them and the
hook jumps too, so a node without pods carries no podwall trace.

Never wedged by other endpoints' kernel state: ADD and DEL read the three
dispatch chains first (one listing), and every record whose dispatch is not
there (after a reboot that kept the state folder, after another tool flushed
the table, after a plugin died between writing its record and its rules) gets
its identity chains and the ``podDefault`` policy chains in the same
transaction: fail-closed until the agent programs it.  A record whose
dispatch is there proves its chains exist (iptables refuses a rule that
jumps to a missing chain) and is left alone.

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
    records and for every record the kernel's dispatch lacks, ``delete``."""
    current = backend.read_chains(family, DISPATCH)
    owner = xtables.owner(current.chains.get(names.FORWARD_CHAIN, ()))
    if owner and owner != config.state_dir:
        raise ConfigError(
            f"this node's podwall state lives in {owner}; a podwall entry with stateDir "
            f"{config.state_dir} would drop the pods of the other: use one stateDir per node"
        )
    present = [record.endpoint() for record in records if dataplane.addresses(record, family)]
    replace = xtables.shared_chains(present, family, state_dir=config.state_dir)
    if replace:
        renewed = {record.key for record in fresh}
        for record in records:
            endpoint = record.endpoint()
            if not endpoint.sources(family):
                continue
            if record.key in renewed or not anchored(current, endpoint):
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
    gone = list(delete) + [name for name in DISPATCH if not replace]
    for name in delete:  # the record's own chains: declare them, absent or not
        current.chains.setdefault(name, [])
    backend.apply(family, replace=replace, delete=gone, current=current)


def attach(backend: Backend, config: PluginConfig, record: endpoints.EndpointRecord) -> None:
    """ADD: write ``record``, rebuild dispatch, give the pod its default
    chains (and repair any record the kernel lacks).  On any failure, undo
    (record, dispatch, chains) and re-raise."""
    families = families_of(record.ips)
    endpoints.write(config.state_dir, record)
    try:
        records = list(endpoints.read_all(config.state_dir))

        def write(family: model.Family) -> None:
            write_family(backend, config, family, records, fresh=[record])

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


def detach(
    backend: Backend,
    config: PluginConfig,
    container_id: str,
    ifname: str,
    *,
    families: Sequence[model.Family] | None = None,
) -> None:
    """DEL: remove the record, its dispatch and its chains.  Without
    ``families``: those of the record, or both when there is no record.
    Succeeds whatever is left of the pod's own state."""
    try:
        record = endpoints.read(config.state_dir, container_id, ifname)
    except StateError:
        record = None
    endpoints.remove(config.state_dir, container_id, ifname)
    if families is None:
        families = families_of(record.ips) if record and record.ips else list(model.FAMILIES)
    records = list(endpoints.read_all(config.state_dir))
    chains = owned_chains(container_id, ifname)

    def write(family: model.Family) -> None:
        write_family(backend, config, family, records, delete=chains)

    for_families(backend, families, write)


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
