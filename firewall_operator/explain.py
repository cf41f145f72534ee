"""Words and JSON for humans: verdicts and reachability matrices.

Formats what ``evaluate`` decided; decides nothing itself.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from firewall_operator.evaluate import SideVerdict, TierResult, Verdict

OUTCOME_TEXT = {
    "allow": "allow",
    "deny": "deny",
    "pass": "pass",
    "no-match": "no rule matched",
    "not-selected": "no policy selects the pod",
    "not-reached": "not reached",
}


def _tier_line(result: TierResult) -> str:
    text = OUTCOME_TEXT[result.outcome]
    return f"    {result.tier + ':':<10} {text}" + (f" ({result.origin})" if result.origin else "")


def _side_lines(side: SideVerdict) -> list[str]:
    word = "allowed" if side.allowed else "DENIED"
    lines = [f"  {side.direction} of {side.pod}: {word}: {side.reason}"]
    lines += [_tier_line(result) for result in side.tiers]
    return lines


def verdict_text(verdict: Verdict) -> str:
    """Several lines: the verdict, then each side with the outcome of each tier."""
    word = "ALLOWED" if verdict.allowed else "DENIED"
    head = f"{verdict.source} -> {verdict.destination} {verdict.port}/{verdict.protocol}: {word}"
    if verdict.egress is verdict.ingress:
        return "\n".join([head, f"  {verdict.egress.reason}"]) + "\n"
    return "\n".join([head, *_side_lines(verdict.egress), *_side_lines(verdict.ingress)]) + "\n"


def _side_json(side: SideVerdict) -> dict[str, Any]:
    return {
        "pod": side.pod,
        "allowed": side.allowed,
        "reason": side.reason,
        "tiers": [
            {"tier": t.tier, "outcome": t.outcome, "rule": t.origin or None} for t in side.tiers
        ],
    }


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "from": verdict.source,
        "to": verdict.destination,
        "port": verdict.port,
        "protocol": verdict.protocol,
        "allowed": verdict.allowed,
        "egress": _side_json(verdict.egress),
        "ingress": _side_json(verdict.ingress),
    }


def matrix_table(matrix: Mapping[str, Any]) -> str:
    """Rows are senders, columns receivers (numbered; the legend names them);
    ``ok`` reachable, ``--`` not."""
    pods: list[str] = list(matrix["pods"])
    reachable: Mapping[str, Mapping[str, bool]] = matrix["reachable"]
    width = max([len(p) for p in pods] + [9])
    corner = "from \\ to"
    lines = [f"port {matrix['port']}/{matrix['protocol']}: row = from, column = to (by number)"]
    numbers = " ".join(f"{n:>3}" for n in range(1, len(pods) + 1))
    lines.append(f"{'':>3} {corner:<{width}} {numbers}")
    for number, src in enumerate(pods, 1):
        cells = " ".join(f"{'ok' if reachable[src][dst] else '--':>3}" for dst in pods)
        lines.append(f"{number:>3} {src:<{width}} {cells}")
    return "\n".join(lines) + "\n"
