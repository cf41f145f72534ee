"""Words and JSON for humans: verdicts, answers and reachability matrices.

Formats what ``evaluate`` decided; decides nothing itself.  ``sentence`` turns
one side's verdict into one sentence ("denied: api/orders is isolated for
ingress by NetworkPolicy api/default-deny, and no rule allows web/frontend").
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from firewall_operator.evaluate import SideVerdict, TierResult, Verdict
from firewall_operator.questions import Answer

OUTCOME_TEXT = {
    "allow": "allow",
    "deny": "deny",
    "pass": "pass",
    "no-match": "no rule matched",
    "not-selected": "no policy selects the pod",
    "not-reached": "not reached",
}
TIER_NAMES = {"admin": "Admin tier", "netpol": "NetworkPolicy tier", "baseline": "Baseline tier"}


def _deciding(side: SideVerdict) -> TierResult | None:
    found = [t for t in side.tiers if t.outcome in ("allow", "deny")]
    return found[-1] if found else None


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def isolators(policy: str) -> str:
    """``"NetworkPolicy a/x, NetworkPolicy a/y"`` → ``"NetworkPolicies a/x and a/y"``."""
    parts = policy.split(", ")
    kinds = {part.partition(" ")[0] for part in parts}
    if len(parts) > 1 and kinds == {"NetworkPolicy"}:
        return "NetworkPolicies " + _listed([part.partition(" ")[2] for part in parts])
    return _listed(parts)


def sentence(side: SideVerdict) -> str:
    """One sentence: the side's verdict and why."""
    word = "allowed" if side.allowed else "denied"
    if side.note:
        return f"{word}: {side.note}"
    tier = _deciding(side)
    if tier is None:
        if any(t.tier == "netpol" and t.outcome == "not-selected" for t in side.tiers):
            return f"{word}: no policy selects {side.pod} for {side.direction}"
        return f"{word}: no tier decided (allowed by default)"
    if tier.tier == "netpol" and tier.outcome == "deny":
        return (
            f"denied: {side.pod} is isolated for {side.direction} by {isolators(tier.policy)}, "
            f"and no rule allows {side.peer}"
        )
    verb = "allows" if tier.outcome == "allow" else "denies"
    policy = tier.policy or tier.origin
    where = tier.rule if tier.tier == "netpol" else f"rule {tier.rule}, {TIER_NAMES[tier.tier]}"
    return f"{word}: {policy} {verb} {side.peer}" + (f" ({where})" if tier.rule else "")


def reason(verdict: Verdict) -> str:
    """The sentence of the side that denied, else of the side that decided."""
    sides = (verdict.egress, verdict.ingress)
    denied = [side for side in sides if not side.allowed]
    if denied:
        return sentence(denied[0])
    decided = [side for side in sides if _deciding(side) is not None]
    return sentence((decided or [verdict.ingress if verdict.ingress.pod else verdict.egress])[-1])


def _tier_line(result: TierResult) -> str:
    text = OUTCOME_TEXT[result.outcome]
    return f"    {result.tier + ':':<10} {text}" + (f" ({result.origin})" if result.origin else "")


def _side_lines(side: SideVerdict, name: str) -> list[str]:
    lines = [f"  {side.direction} of {name}: {sentence(side)}"]
    return lines + [_tier_line(result) for result in side.tiers]


def verdict_text(verdict: Verdict, *, family: bool = False) -> str:
    """Several lines: the verdict and its reason, then each side with the
    outcome of each tier (``family``: name the address family in the head)."""
    word = "ALLOWED" if verdict.allowed else "DENIED"
    where = f" ({verdict.family})" if family else ""
    head = f"{verdict.source} -> {verdict.destination} {verdict.port}/{verdict.protocol}{where}"
    lines = [f"{head}: {word}", f"  {reason(verdict)}"]
    if verdict.egress is not verdict.ingress:
        lines += _side_lines(verdict.egress, verdict.source)
        lines += _side_lines(verdict.ingress, verdict.destination)
    return "\n".join(lines) + "\n"


def answer_text(answer: Answer) -> str:
    """Every verdict of an answer (the family named when there are several
    families), then the notes."""
    several = len({verdict.family for verdict in answer.verdicts}) > 1
    parts = [verdict_text(verdict, family=several) for verdict in answer.verdicts]
    notes = [f"note: {note}\n" for note in answer.notes]
    return "".join(notes + parts)


def _side_json(side: SideVerdict) -> dict[str, Any]:
    return {
        "pod": side.pod or None,
        "peer": side.peer,
        "allowed": side.allowed,
        "reason": sentence(side),
        "tiers": [
            {
                "tier": t.tier,
                "outcome": t.outcome,
                "rule": t.origin or None,
                "policy": t.policy or None,
            }
            for t in side.tiers
        ],
    }


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "family": verdict.family,
        "from": verdict.source,
        "to": verdict.destination,
        "allowed": verdict.allowed,
        "reason": reason(verdict),
        "egress": _side_json(verdict.egress),
        "ingress": _side_json(verdict.ingress),
    }


def answer_json(answer: Answer) -> dict[str, Any]:
    """``{"from", "to", "port", "protocol", "allowed", "notes", "verdicts": [...]}``
    (one verdict per family, or per CIDR piece)."""
    return {
        "from": answer.source.text,
        "to": answer.destination.text,
        "port": answer.port,
        "protocol": answer.protocol,
        "allowed": answer.allowed,
        "notes": list(answer.notes),
        "verdicts": [verdict_json(verdict) for verdict in answer.verdicts],
    }


def matrix_table(matrix: Mapping[str, Any]) -> str:
    """Rows are senders, columns receivers (numbered; the legend names them);
    ``ok`` reachable, ``--`` not."""
    pods: list[str] = list(matrix["pods"])
    reachable: Mapping[str, Mapping[str, bool]] = matrix["reachable"]
    width = max([len(p) for p in pods] + [9])
    corner = "from \\ to"
    family = f" {matrix['family']}" if matrix.get("family") else ""
    lines = [
        f"port {matrix['port']}/{matrix['protocol']}{family}: row = from, column = to (by number)"
    ]
    numbers = " ".join(f"{n:>3}" for n in range(1, len(pods) + 1))
    lines.append(f"{'':>3} {corner:<{width}} {numbers}")
    for number, src in enumerate(pods, 1):
        cells = " ".join(f"{'ok' if reachable[src][dst] else '--':>3}" for dst in pods)
        lines.append(f"{number:>3} {src:<{width}} {cells}")
    return "\n".join(lines) + "\n"


def matrices_text(matrices: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(matrix_table(matrix) for matrix in matrices)
