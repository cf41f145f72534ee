"""Runs the data-driven conformance cases (``netpol.yaml``, ``fwrule.yaml``) in a lab.

``ConformanceLab`` brings one 2-node lab up with the upstream topology
(``cluster.yaml``: x, y, z times a, b, c, spread over both nodes by the lab
scheduler), and between cases deletes every NetworkPolicy and FirewallRule
and restores the labels a case changed.  ``run_case`` plays a case's steps
(apply, delete, label changes), probes each listed PORT/PROTOCOL over every
pod pair and compares the kernel with the case's expected matrix, and also
``podwall explain``'s matrix with it.  Failures carry all three tables.
Each lab runs the data plane its module asks for (``PODWALL_LAB_BACKEND``
overrides it, ``PODWALL_LAB_AGENT`` the agent).

Test support only.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import yaml

from firewall_lab.lab import ops, probing, render, teardown
from firewall_lab.lab.client import Client
from firewall_lab.lab.layout import Layout

HERE = Path(__file__).parent
CLUSTER = HERE / "cluster.yaml"
API_VERSIONS = {"NetworkPolicy": "networking.k8s.io/v1", "FirewallRule": "podwall.io/v1alpha1"}
PLACEHOLDER = re.compile(r"\$\{(ip|large|hostmask)(?::([a-z0-9-]+/[a-z0-9-]+))?\}")
Json = dict[str, Any]
FAILED_LABS: dict[str, str] = {}


def load_cases(name: str) -> list[Json]:
    with (HERE / name).open() as handle:
        cases: list[Json] = yaml.safe_load(handle)["cases"]
    return cases


def baseline_docs() -> list[Json]:
    with CLUSTER.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _matches(selector: str | None, pod: str) -> bool:
    if not selector:
        return True
    return pod == selector if "/" in selector else pod.partition("/")[0] == selector


def expected_matrix(
    pods: list[str], edits: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, bool]]:
    """An all-allowed matrix edited in order by ``{from, to, allowed}``."""
    table = {src: dict.fromkeys(pods, True) for src in pods}
    for edit in edits:
        for src in pods:
            for dst in pods:
                if _matches(edit.get("from"), src) and _matches(edit.get("to"), dst):
                    table[src][dst] = bool(edit["allowed"])
    return table


def resolve(value: Any, ips: Mapping[str, str], family: str) -> Any:
    """``value`` with ``${ip:NS/POD}``, ``${large:NS/POD}`` and ``${hostmask}`` filled in."""
    if isinstance(value, dict):
        return {key: resolve(item, ips, family) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, ips, family) for item in value]
    if not isinstance(value, str):
        return value

    def fill(match: re.Match[str]) -> str:
        what, pod = match.group(1), match.group(2)
        if what == "hostmask":
            return "128" if family == "ipv6" else "32"
        if what == "ip":
            return ips[pod]
        return str(ipaddress.ip_network(f"{ips[pod]}/4", strict=False))

    return PLACEHOLDER.sub(fill, value)


def uses_addresses(case: Mapping[str, Any]) -> bool:
    return "${" in json.dumps(case)


def with_api_version(doc: Json) -> Json:
    doc = copy.deepcopy(doc)
    if "apiVersion" not in doc and doc.get("kind") in API_VERSIONS:
        doc["apiVersion"] = API_VERSIONS[doc["kind"]]
    return doc


def differing(
    found: Mapping[str, Mapping[str, bool]], wanted: Mapping[str, Mapping[str, bool]]
) -> list[str]:
    return [
        f"{src} -> {dst}: {'open' if found[src][dst] else 'blocked'}, "
        f"expected {'open' if wanted[src][dst] else 'blocked'}"
        for src in sorted(wanted)
        for dst in sorted(wanted)
        if src != dst and found[src][dst] != wanted[src][dst]
    ]


def running_lab(
    factory: Any, name: str, *, cni: str, ipv6: bool, backend: str = "auto"
) -> Iterator[ConformanceLab]:
    """A module fixture's body: one lab up for the module, always torn down."""
    yield from module_lab(
        name,
        lambda: ConformanceLab(lab_directory(factory, name), cni=cni, ipv6=ipv6, backend=backend),
    )


class Lab(Protocol):
    directory: str

    def up(self) -> object: ...


#: a quick set across the features (NetworkPolicy, FirewallRule tiers, UDP,
#: SCTP, CIDRs): the ptp tier's default and the image tier's lab cases
QUICK_FEATURES = frozenset({
    "default-deny-all",
    "podselector-and-namespaceselector",
    "named-port-egress",
    "updated-namespace",
    "updated-pod",
    "egress-cidr-except",
    "udp-ports",
    "sctp-pod-in-other-namespace",
    "admin-deny-overrides-netpol-allow",
    "baseline-deny-under-netpol",
})  # fmt: skip


def all_cases() -> list[Json]:
    """Every NetworkPolicy and FirewallRule case."""
    return load_cases("netpol.yaml") + load_cases("fwrule.yaml")


L = TypeVar("L", bound=Lab)


def lab_directory(factory: Any, name: str) -> str:
    return str(factory.mktemp("lab") / name)


def module_lab(name: str, make: Callable[[], L]) -> Iterator[L]:
    """Bring the lab ``make`` returns up for a module and always tear it down;
    skip when the kernel cannot run labs, fail at once after a failed start."""
    from tests.conftest import kernel_ready

    if kernel_ready() is not None:
        pytest.skip(kernel_ready() or "")
    if name in FAILED_LABS:  # pytest retries a failed module fixture per test
        pytest.fail(f"the {name} lab did not come up: {FAILED_LABS[name]}")
    lab = make()
    try:
        try:
            lab.up()
        except Exception as exc:
            FAILED_LABS[name] = str(exc)
            raise
        yield lab
    finally:
        if os.path.exists(lab.directory):
            teardown.down(lab.directory)


def marked(cases: list[Json], quick: Set[str]) -> list[Any]:
    """``cases`` as parameters with ids; those not in ``quick`` need -m conformance_full."""
    unknown = quick - {case["id"] for case in cases}
    assert not unknown, f"unknown case ids: {unknown}"
    return [
        pytest.param(
            case, id=case["id"], marks=() if case["id"] in quick else pytest.mark.conformance_full
        )
        for case in cases
    ]


class ConformanceLab:
    """One lab for a whole test module (see the module docstring)."""

    def __init__(self, directory: str, *, cni: str, ipv6: bool, backend: str = "auto") -> None:
        self.directory = directory
        self.cni, self.ipv6 = cni, ipv6
        self.backend = os.environ.get("PODWALL_LAB_BACKEND", backend)
        self.layout: Layout | None = None
        self.client: Client | None = None
        self.changed_labels = False

    def up(self) -> ConformanceLab:
        agent = os.environ.get("PODWALL_LAB_AGENT", "auto")
        recorded = ops.up(
            self.directory,
            cni=self.cni,
            ipv6=self.ipv6,
            backend=self.backend,
            files=[str(CLUSTER)],
            agent=agent,
        )
        self.layout = recorded.layout(os.path.abspath(self.directory))
        self.client = ops.client_for(self.directory)[1]
        return self

    def pods(self) -> dict[str, Json]:
        assert self.layout is not None
        return ops.running_pods(self.layout)

    def ips(self, family: str) -> dict[str, str]:
        return {
            key: next(ip for ip in pod["ips"] if (":" in ip) == (family == "ipv6"))
            for key, pod in self.pods().items()
        }

    def reset(self) -> None:
        """No policies, no rules, the baseline labels.  Does not wait: every
        case starts with a step that waits for the nodes (which covers this)."""
        assert self.client is not None
        stale = [
            item
            for kind in ("NetworkPolicy", "FirewallRule")
            for item in self.client.list(kind).get("items") or []
        ]
        if stale:
            ops.delete_docs(self.directory, stale, wait=False)
        if self.changed_labels:
            ops.apply_docs(self.directory, baseline_docs(), wait=False)
            self.changed_labels = False

    def _label(self, changes: Mapping[str, Mapping[str, str]]) -> None:
        docs = []
        for key, labels in changes.items():
            if "/" in key:
                namespace, name = key.split("/")
                meta = {"namespace": namespace, "name": name, "labels": dict(labels)}
                docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta})
            else:
                meta = {"name": key, "labels": dict(labels)}
                docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        self.changed_labels = True
        ops.apply_docs(self.directory, docs)

    def run_case(self, case: Mapping[str, Any], families: tuple[str, ...] = ("ipv4",)) -> list[str]:
        """Play ``case``, checking every probe in each of ``families``; the
        failures (empty when the kernel and explain agree with the expected
        matrix at every check).  Addresses in the case resolve in the first
        family."""
        assert self.layout is not None and self.client is not None
        ips = self.ips(families[0])
        failures: list[str] = []
        for number, step in enumerate(case["steps"], 1):
            step = resolve(step, ips, families[0])
            if step.get("delete"):
                ops.delete_docs(self.directory, [with_api_version(d) for d in step["delete"]])
            if step.get("apply"):
                ops.apply_docs(self.directory, [with_api_version(d) for d in step["apply"]])
            if step.get("labels"):
                self._label(step["labels"])
            for spec in step.get("probe") or []:
                for family in families:
                    failures += self._check(number, spec, step.get("expect") or [], family)
        return failures

    def run_dual_stack(self, case: Mapping[str, Any]) -> list[str]:
        """Both families: at once, or one after the other (reset between)
        when the case names addresses (an ipBlock holds one family)."""
        if not uses_addresses(case):
            return self.run_case(case, ("ipv4", "ipv6"))
        failures = self.run_case(case, ("ipv4",))
        self.reset()
        return failures + self.run_case(case, ("ipv6",))

    def _check(self, step: int, spec: str, edits: list[Json], family: str) -> list[str]:
        assert self.layout is not None and self.client is not None
        port_text, protocol = spec.split("/")
        port = int(port_text)
        kernel = probing.kernel_matrix(
            self.layout,
            port=port,
            protocol=protocol,
            family=family,  # type: ignore[arg-type]
        )
        model = probing.model_matrix(self.client, port=port, protocol=protocol, family=family)
        wanted = expected_matrix(kernel["pods"], edits)
        problems = []
        for name, found in (("kernel", kernel), ("explain", model)):
            wrong = differing(found["reachable"], wanted)
            if wrong:
                problems.append(
                    f"step {step} {spec} {family}: {name} differs:\n" + "\n".join(wrong)
                )
        if problems:
            expected = {**kernel, "reachable": wanted}
            problems.append(
                "kernel:\n"
                + render.matrix_table(kernel)
                + "explain:\n"
                + render.matrix_table(model)
                + "expected:\n"
                + render.matrix_table(expected)
            )
        return problems
