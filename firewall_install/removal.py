"""Decide, when the CNI watcher stops, whether podwall is being removed from the cluster.

``podwall cni install --watch --uninstall-on-exit=WHEN`` stops on SIGTERM both
when podwall is removed (then the node's CNI config must lose podwall, or new
pods would wait for an agent that never comes) and when its pod is replaced by
a rolling update or restarted (then podwall must stay: pods that start
meanwhile still need their chains).  ``always`` uninstalls every time;
``if-daemonset-gone`` asks the API server about the watcher's own DaemonSet:

============================================================  =========
answer                                                        verdict
============================================================  =========
200, no ``deletionTimestamp``, its namespace not terminating  keep
200 with ``deletionTimestamp``, or its namespace terminating  uninstall
404 ``NotFound`` naming this DaemonSet                        uninstall
401/403, after an authorised answer earlier in this run       uninstall
401/403 never authorised, other statuses, no connection       keep
============================================================  =========

401/403 after access worked means the ServiceAccount or its role binding was
deleted meanwhile, which ``kubectl delete -k deploy/`` does, usually before the
pods stop; a rolling update keeps both, and a terminating pod's own token stays
valid (the API server honours it until a minute past the pod's
``deletionTimestamp``, which lies at the end of the grace period).  Every
other doubt keeps podwall installed: pods stay protected, and the decision is
logged.

``classify`` and ``decide`` are pure; ``IfDaemonSetGone`` does the HTTP calls
through ``firewall_install.apiclient``.  No Kubernetes client library, no files.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from firewall_install import apiclient
from firewall_install.errors import ApiUnavailable, InstallError

ALWAYS, IF_DAEMONSET_GONE = "always", "if-daemonset-gone"
MODES = (ALWAYS, IF_DAEMONSET_GONE)
EXIT_TIMEOUT = 5.0  # seconds per request at exit (the pod's grace period is 30 s)
PROBE_TIMEOUT = 2.0  # seconds per request while watching (never stalls the repair loop long)
PROBE_BACKOFF = (1.0, 30.0)  # first and longest pause between failed access probes


class Seen(enum.Enum):
    """What the API server said about the DaemonSet."""

    PRESENT = "present"
    DELETING = "deleting"
    GONE = "gone"
    REFUSED = "refused"  # 401/403
    UNKNOWN = "unknown"  # other statuses, no answer

    @property
    def authorised(self) -> bool:
        return self in (Seen.PRESENT, Seen.DELETING, Seen.GONE)


@dataclass(frozen=True, slots=True)
class Finding:
    seen: Seen
    detail: str


def parse_daemonset(value: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """``NAMESPACE/NAME`` from ``--daemonset``, else env ``POD_NAMESPACE``/``DAEMONSET_NAME``."""
    if value is None:
        value = f"{env.get('POD_NAMESPACE', '')}/{env.get('DAEMONSET_NAME', '')}"
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise InstallError(
            f"--uninstall-on-exit={IF_DAEMONSET_GONE} needs the DaemonSet as NAMESPACE/NAME "
            f"(--daemonset, or env POD_NAMESPACE and DAEMONSET_NAME), not {value!r}"
        )
    return namespace, name


def classify(answer: apiclient.Answer, *, namespace: str, name: str) -> Finding:
    """What a GET of the DaemonSet ``namespace/name`` says about it."""
    what = f"DaemonSet {namespace}/{name}"
    body = answer.body or {}
    if answer.status == 200:
        deleting = (body.get("metadata") or {}).get("deletionTimestamp")
        if deleting:
            return Finding(Seen.DELETING, f"{what} is being deleted (since {deleting})")
        return Finding(Seen.PRESENT, f"{what} is present")
    if answer.status == 404:
        details = body.get("details") or {}
        wanted = {"kind": "daemonsets", "name": name}
        if body.get("reason") == "NotFound" and wanted.items() <= details.items():
            return Finding(Seen.GONE, f"{what} is gone")
        return Finding(Seen.UNKNOWN, f"404 without a NotFound status naming {what}")
    if answer.status in (401, 403):
        message = body.get("message") or body.get("reason") or ""
        return Finding(Seen.REFUSED, f"{answer.status} for {what}: {message}".rstrip(": "))
    return Finding(Seen.UNKNOWN, f"status {answer.status} for {what}")


def namespace_terminating(answer: apiclient.Answer) -> bool:
    """True when a GET of a Namespace shows it being deleted."""
    metadata = (answer.body or {}).get("metadata") or {}
    return answer.status == 200 and bool(metadata.get("deletionTimestamp"))


def decide(finding: Finding, *, authorised_before: bool) -> tuple[bool, str]:
    """Uninstall or not, and why, from the exit-time finding (see the module's table)."""
    if finding.seen in (Seen.DELETING, Seen.GONE):
        return True, f"{finding.detail}: uninstalling podwall"
    if finding.seen is Seen.REFUSED and authorised_before:
        return True, (
            f"{finding.detail}, after access worked: podwall's ServiceAccount or role "
            "binding was deleted, uninstalling podwall"
        )
    if finding.seen is Seen.PRESENT:
        return False, f"{finding.detail} (restart or rolling update): podwall stays installed"
    return False, f"{finding.detail}: cannot tell, podwall stays installed (fail safe)"


class ExitPolicy(Protocol):
    """What ``--watch`` asks at every round and once at exit."""

    def observe(self) -> str | None:
        """Called every watch round; a line to log, or None."""

    def decide(self) -> tuple[bool, str]:
        """At exit: uninstall or not, and why."""


class Always:
    """``--uninstall-on-exit=always``: revert at every exit."""

    def observe(self) -> str | None:
        return None

    def decide(self) -> tuple[bool, str]:
        return True, "uninstalling podwall (--uninstall-on-exit=always)"


class IfDaemonSetGone:
    """``--uninstall-on-exit=if-daemonset-gone``: ask the API server at exit."""

    def __init__(
        self,
        target: apiclient.ApiTarget,
        *,
        namespace: str,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target, self.namespace, self.name = target, namespace, name
        self.clock = clock
        self.authorised = False
        self.next_probe = 0.0
        self.pause = PROBE_BACKOFF[0]
        self.last_note = ""

    def observe(self) -> str | None:
        """Until one answer shows access works, probe (with backoff); log changes."""
        if self.authorised or self.clock() < self.next_probe:
            return None
        finding = self.find(timeout=PROBE_TIMEOUT)
        if finding.seen.authorised:
            self.authorised = True
            return f"removal check works: {finding.detail}"
        self.next_probe = self.clock() + self.pause
        self.pause = min(self.pause * 2, PROBE_BACKOFF[1])
        note = f"removal check: {finding.detail} (retrying)"
        if note == self.last_note:
            return None
        self.last_note = note
        return note

    def decide(self) -> tuple[bool, str]:
        return decide(self.find(timeout=EXIT_TIMEOUT), authorised_before=self.authorised)

    def find(self, *, timeout: float) -> Finding:
        """The DaemonSet's state; a present one in a terminating namespace is deleting."""
        base = f"/apis/apps/v1/namespaces/{self.namespace}/daemonsets/{self.name}"
        try:
            answer = apiclient.get_json(self.target, base, timeout=timeout)
            finding = classify(answer, namespace=self.namespace, name=self.name)
            if finding.seen is Seen.PRESENT:
                path = f"/api/v1/namespaces/{self.namespace}"
                if namespace_terminating(apiclient.get_json(self.target, path, timeout=timeout)):
                    detail = f"namespace {self.namespace} is terminating"
                    return Finding(Seen.DELETING, detail)
            return finding
        except ApiUnavailable as exc:
            return Finding(Seen.UNKNOWN, f"API server unreachable ({exc})")
