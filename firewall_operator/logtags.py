"""Log and counter tags: the short names kernel rules carry, and what they stand for.

Every podwall rule that logs (NFLOG) or counts carries a tag, ``pw:`` plus
base32 characters (``tag_for``), as its NFLOG prefix or counter name: short
enough for any prefix (NFLOG: 64 bytes, iptables LOG: 29) and free of
spaces and quotes (``counter_name``: the same tag as an nftables object name,
where ``:`` is not allowed).  The compiled state maps each tag to a ``LogTag``: the
direction, the verdict, the deciding tier, the policy or FirewallRule, the
rule name and the pod whose chain holds the rule.  The agent's traffic log
and its counter exporter see only tags and ask a ``Resolver`` (the
compiler's mapping) what they mean; a tag it does not know is reported as it
is, never guessed.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from firewall_plugin import names

PREFIX = "pw:"
TAG_CHARS = 10  # base32 characters after the prefix: 50 bits
Verdict = Literal["deny", "allow"]


@dataclass(frozen=True, slots=True)
class LogTag:
    """What one tagged rule decides.  ``policy`` is "NetworkPolicy ns/name",
    "FirewallRule name" (``plan.PlanRule.policy``) or a fixed name such as
    "podDefault" or "anti-spoofing"; ``rule`` is the rule's name within it
    ("ingress[0]", "deny-web") or "" for a tier's isolation drop; ``pod`` is
    "ns/name" of the pod whose chain holds the rule ("" when not a pod's)."""

    direction: Literal["ingress", "egress"]
    verdict: Verdict
    tier: str  # admin, netpol, baseline, default, spoofing
    policy: str
    rule: str = ""
    pod: str = ""


#: what a tag means; None: not known (not podwall's, or from an older ruleset)
Resolver = Callable[[str], LogTag | None]


def tag_for(tag: LogTag) -> str:
    """A stable tag for ``tag``: the same fields give the same tag (computed
    in ``firewall_plugin.names``, which the plugin's own rules use too)."""
    return names.log_tag(tag.direction, tag.verdict, tag.tier, tag.policy, tag.rule, tag.pod)


def counter_name(tag: str) -> str:
    """The tag as an nftables object name (``pw_...``: ``:`` is not allowed there)."""
    return tag.replace(":", "_", 1)


def tag_of_counter(name: str) -> str:
    """The tag a ``counter_name`` stands for."""
    return name.replace("_", ":", 1) if name.startswith("pw_") else name


def is_podwall(prefix: str) -> bool:
    return prefix.startswith(PREFIX)


def resolver(mapping: Mapping[str, LogTag]) -> Resolver:
    """A ``Resolver`` over a mapping (the compiled state's tags)."""
    return mapping.get


def no_tags(_: str) -> LogTag | None:
    """The resolver until a ruleset provides tags: every tag is unknown."""
    return None
