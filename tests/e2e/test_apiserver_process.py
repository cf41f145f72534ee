"""``python -m firewall_lab.apiserver`` as a process: URL, kubeconfig, state file, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from firewall_lab.apiserver import spawn


def kubectl(kubeconfig: Path, *args: str) -> str:
    env = dict(
        os.environ, KUBECONFIG=str(kubeconfig), KUBECACHEDIR=str(kubeconfig.parent / "cache")
    )
    return subprocess.run(
        ["kubectl", *args], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_state_survives_restart(tmp_path: Path) -> None:
    state, kubeconfig = tmp_path / "state.json", tmp_path / "kubeconfig"
    proc, url = spawn(state_file=str(state), kubeconfig=str(kubeconfig))
    try:
        assert url.startswith("http://127.0.0.1:")
        subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
            input="apiVersion: v1\nkind: Namespace\nmetadata: {name: kept}\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
        before = json.loads(kubectl(kubeconfig, "get", "ns", "kept", "-o", "json"))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    saved = json.loads(state.read_text())
    assert any(o["metadata"]["name"] == "kept" for o in saved["objects"]["/namespaces"])
    proc, url = spawn(state_file=str(state), kubeconfig=str(kubeconfig))
    try:
        after = json.loads(kubectl(kubeconfig, "get", "ns", "kept", "-o", "json"))
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        kubectl(kubeconfig, "label", "ns", "kept", "x=y")
        relabeled = json.loads(kubectl(kubeconfig, "get", "ns", "kept", "-o", "json"))
        assert int(relabeled["metadata"]["resourceVersion"]) > int(
            before["metadata"]["resourceVersion"]
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
