"""The conflist runner: what libcni does for a container runtime, for the lab.

``Runner`` runs ADD through a network's plugins in order (each gets the
previous result as ``prevResult``), caches the final result, runs DEL in
reverse order and CHECK in order with the cached result, and GC/STATUS for
``cniVersion`` 1.1.0 networks.  Plugins run as subprocesses with a timeout,
inside ``exec_netns`` (the lab's node namespace) when given.

Where the lab differs from libcni, on purpose:

* A failed ADD is rolled back: DEL runs (reverse order) for the plugins
  already added *and* the one that failed, as a runtime's teardown would, so a
  failure leaves the node clean.  The ADD error is raised; DEL failures of the
  rollback are in its ``cleanup_errors``.
* DEL runs every plugin even when one fails, then raises the first error
  (the cache entry stays, so DEL can be retried).
* GC and STATUS skip plugins whose VERSION does not list the network's
  ``cniVersion`` (the reference plugins stop at 1.0.0) and report them,
  instead of failing on them.

Does not create namespaces or interfaces itself; everything else is done by
the plugins.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firewall_lab import cni_cache, cni_conf, cni_exec
from firewall_lab.cni_conf import JSON, Attachment, NetworkConfig
from firewall_lab.cni_errors import CacheError, CniRunnerError, PluginError, PluginNotFoundError

__all__ = ["Attachment", "GcReport", "NetworkConfig", "Runner", "as_network"]

DEFAULT_CACHE_DIR = "/var/lib/cni"
GC_VERSION = "1.1.0"
INCOMPATIBLE_VERSION = 1  # the CNI error code of "incompatible CNI versions"

NetworkSource = NetworkConfig | Mapping[str, Any] | str | os.PathLike[str]


def as_network(source: NetworkSource) -> NetworkConfig:
    """``source`` itself when already loaded, else ``cni_conf.load(source)``."""
    return source if isinstance(source, NetworkConfig) else cni_conf.load(source)


@dataclass(slots=True)
class GcReport:
    """What a GC did: stale cached attachments deleted, plugins asked to GC,
    plugins skipped because they do not speak the network's version."""

    deleted: list[Attachment] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Runner:
    """Runs CNI verbs over networks; safe to share between threads."""

    def __init__(
        self,
        *,
        cni_path: Sequence[str],
        cache_dir: str = DEFAULT_CACHE_DIR,
        exec_netns: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.cni_path = list(cni_path)
        self.cache_dir = cache_dir
        self.exec_netns = exec_netns
        self.timeout = timeout
        self._versions: dict[str, JSON] = {}
        self._lock = threading.Lock()

    def _run(
        self, plugin: str, invocation: cni_exec.Invocation, config: JSON | None
    ) -> JSON | None:
        return cni_exec.execute(
            plugin=plugin,
            invocation=invocation,
            config=config,
            cni_path=self.cni_path,
            exec_netns=self.exec_netns,
            timeout=self.timeout,
        )

    @staticmethod
    def _invocation(command: str, attachment: Attachment) -> cni_exec.Invocation:
        return cni_exec.Invocation(
            command=command,
            container_id=attachment.container_id,
            netns=attachment.netns,
            ifname=attachment.ifname,
            args=attachment.cni_args(),
        )

    def add(
        self,
        network: NetworkSource,
        attachment: Attachment,
        *,
        prev_result: Mapping[str, Any] | None = None,
    ) -> JSON:
        """ADD through every plugin in order; cache and return the final result.

        ``prev_result`` seeds the first plugin's ``prevResult`` (to run a
        chained plugin alone with a hand-made result).  On failure the
        plugins reached are rolled back (see the module docstring).
        """
        net = as_network(network)
        result: JSON | None = dict(prev_result) if prev_result is not None else None
        invocation = self._invocation("ADD", attachment)
        for index, plugin in enumerate(net.plugins):
            config = cni_conf.plugin_config(
                net, plugin, prev_result=result, capability_args=attachment.capability_args
            )
            try:
                result = self._run(str(plugin["type"]), invocation, config) or result
            except CniRunnerError as exc:
                reached = index + 1 if _may_hold_state(exc) else index
                exc.cleanup_errors += self._rollback(net, attachment, reached, result)
                raise
        final = result or {"cniVersion": net.cni_version}
        cni_cache.write(self.cache_dir, net.name, attachment, final)
        return final

    def _rollback(
        self, net: NetworkConfig, attachment: Attachment, reached: int, result: JSON | None
    ) -> list[CniRunnerError]:
        """DEL (reverse order) the first ``reached`` plugins of an ADD."""
        errors: list[CniRunnerError] = []
        invocation = self._invocation("DEL", attachment)
        for plugin in reversed(net.plugins[:reached]):
            config = cni_conf.plugin_config(
                net, plugin, prev_result=result, capability_args=attachment.capability_args
            )
            try:
                self._run(str(plugin["type"]), invocation, config)
            except CniRunnerError as exc:
                errors.append(exc)
        return errors

    def delete(
        self,
        network: NetworkSource,
        attachment: Attachment,
        *,
        prev_result: Mapping[str, Any] | None = None,
    ) -> None:
        """DEL in reverse order with the cached result as ``prevResult`` (none
        when nothing is cached, or ``prev_result`` when given); drop the cache
        entry when every plugin succeeded."""
        net = as_network(network)
        cached = cni_cache.read(self.cache_dir, net.name, attachment)
        if cached is not None:
            attachment = _fill_from_cache(attachment, cached.attachment)
        previous = dict(prev_result) if prev_result is not None else None
        if previous is None and cached is not None:
            previous = cached.result
        errors: list[CniRunnerError] = []
        invocation = self._invocation("DEL", attachment)
        for plugin in reversed(net.plugins):
            config = cni_conf.plugin_config(
                net, plugin, prev_result=previous, capability_args=attachment.capability_args
            )
            try:
                self._run(str(plugin["type"]), invocation, config)
            except CniRunnerError as exc:
                errors.append(exc)
        if errors:
            errors[0].cleanup_errors += errors[1:]
            raise errors[0]
        cni_cache.remove(self.cache_dir, net.name, attachment)

    def check(self, network: NetworkSource, attachment: Attachment) -> None:
        """CHECK every plugin in order with the cached result; raises
        CacheError when nothing is cached, PluginError on the first failure."""
        net = as_network(network)
        if net.disable_check:
            return
        if not cni_conf.at_least(net.cni_version, "0.4.0"):
            raise CniRunnerError(f"CHECK needs cniVersion 0.4.0 or later, not {net.cni_version}")
        cached = cni_cache.read(self.cache_dir, net.name, attachment)
        if cached is None:
            raise CacheError(
                f"no cached result for {attachment.container_id}/{attachment.ifname} in {net.name}"
            )
        attachment = _fill_from_cache(attachment, cached.attachment)
        invocation = self._invocation("CHECK", attachment)
        for plugin in net.plugins:
            config = cni_conf.plugin_config(
                net, plugin, prev_result=cached.result, capability_args=attachment.capability_args
            )
            self._run(str(plugin["type"]), invocation, config)

    def cached_result(self, network: NetworkSource, attachment: Attachment) -> JSON | None:
        """The final ADD result cached for ``attachment``, or None."""
        cached = cni_cache.read(self.cache_dir, as_network(network).name, attachment)
        return cached.result if cached is not None else None

    def cached_attachments(self, network: NetworkSource) -> list[Attachment]:
        """Every attachment with a cached result in ``network``."""
        name = as_network(network).name
        return [entry.attachment for entry in cni_cache.entries(self.cache_dir, name)]

    def version(self, plugin_type: str) -> JSON:
        """The plugin's VERSION answer (asked once per runner)."""
        with self._lock:
            known = self._versions.get(plugin_type)
        if known is not None:
            return known
        answer = self._run(plugin_type, cni_exec.Invocation(command="VERSION"), {}) or {}
        with self._lock:
            self._versions[plugin_type] = answer
        return answer

    def supports(self, plugin_type: str, cni_version: str) -> bool:
        """True when the plugin's VERSION lists ``cni_version``."""
        return cni_version in self.version(plugin_type).get("supportedVersions", [])

    def gc(
        self,
        network: NetworkSource,
        *,
        valid: Iterable[Attachment],
        delete_stale: bool = True,
    ) -> GcReport:
        """libcni's GC: DEL every cached attachment of the network that
        ``valid`` does not name (unless ``delete_stale`` is False), then, for
        cniVersion 1.1.0+, send GC with ``cni.dev/valid-attachments`` to every
        plugin that speaks that version.  Errors are raised after all ran."""
        net = as_network(network)
        report = GcReport()
        if net.disable_gc:
            return report
        keep = [attachment.gc_entry() for attachment in valid]
        wanted = {(entry["containerID"], entry["ifname"]) for entry in keep}
        errors: list[CniRunnerError] = []
        for stale in self.cached_attachments(net) if delete_stale else []:
            if (stale.container_id, stale.ifname) in wanted:
                continue
            try:
                self.delete(net, stale)
                report.deleted.append(stale)
            except CniRunnerError as exc:
                errors.append(exc)
        if cni_conf.at_least(net.cni_version, GC_VERSION):
            extra = {cni_conf.VALID_ATTACHMENTS_KEY: keep}
            errors += self._each_plugin(net, "GC", extra, report)
        if errors:
            errors[0].cleanup_errors += errors[1:]
            raise errors[0]
        return report

    def status(self, network: NetworkSource) -> list[str]:
        """STATUS of every plugin (cniVersion 1.1.0+); raises the first
        failure (code 50/51 mean "cannot serve ADD").  Returns the plugin
        types skipped for not speaking the network's version."""
        net = as_network(network)
        report = GcReport()
        if cni_conf.at_least(net.cni_version, GC_VERSION):
            errors = self._each_plugin(net, "STATUS", {}, report, stop_on_error=True)
            if errors:
                raise errors[0]
        return report.skipped

    def _each_plugin(
        self,
        net: NetworkConfig,
        command: str,
        extra: Mapping[str, Any],
        report: GcReport,
        *,
        stop_on_error: bool = False,
    ) -> list[CniRunnerError]:
        errors: list[CniRunnerError] = []
        for plugin in net.plugins:
            plugin_type = str(plugin["type"])
            try:
                if not self.supports(plugin_type, net.cni_version):
                    report.skipped.append(plugin_type)
                    continue
                config = cni_conf.plugin_config(net, plugin, extra=extra)
                self._run(plugin_type, cni_exec.Invocation(command=command), config)
                report.collected.append(plugin_type)
            except CniRunnerError as exc:
                errors.append(exc)
                if stop_on_error:
                    break
        return errors


def _may_hold_state(error: CniRunnerError) -> bool:
    """Whether a plugin whose ADD failed with ``error`` may have left state
    (not when it was missing or refused the version: it did nothing)."""
    if isinstance(error, PluginNotFoundError):
        return False
    return not (isinstance(error, PluginError) and error.code == INCOMPATIBLE_VERSION)


def _fill_from_cache(given: Attachment, cached: Attachment) -> Attachment:
    """``given`` with its empty netns, args and capability args taken from
    the cache (so DEL/CHECK need only the container ID and ifname)."""
    return Attachment(
        container_id=given.container_id,
        ifname=given.ifname,
        netns=given.netns or cached.netns,
        args=given.args or cached.args,
        capability_args=given.capability_args or cached.capability_args,
    )
