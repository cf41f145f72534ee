"""``podwall demo`` runs end to end in under a minute and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from firewall_lab.lab import teardown
from tests.conftest import kernel_ready

pytestmark = pytest.mark.skipif(kernel_ready() is not None, reason=kernel_ready() or "")


def test_demo_shows_before_after_explains_and_cleans_up() -> None:
    before = set(teardown.lab_namespaces("pwl"))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "podwall", "demo", "--no-colour"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for text in ("BEFORE", "AFTER", "pairs changed (marked *), because:", "DENIED"):
        assert text in out, out
    assert "FirewallRule no-web-to-payments" in out
    assert (
        "denied: api/orders is isolated for ingress by NetworkPolicies api/allow-from-web and "
        "api/default-deny, and no rule allows api/payments"
    ) in out  # reasons read as sentences
    assert "agrees with `podwall explain --matrix` on all 36 pairs" in out
    assert "podwall lab demo --dir DIR" in out
    assert "building 2 nodes" in done.stderr  # progress while it builds
    assert elapsed < 60, f"the demo took {elapsed:.0f}s"
    assert set(teardown.lab_namespaces("pwl")) <= before
