"""Fixtures for e2e tests: the Kubernetes API server double.

``apiserver`` (module scope) runs one ``ApiServer`` on a background thread and
yields ``ApiServerHandle(url, kubeconfig, server)``; it unpacks as
``(url, kubeconfig)`` too.  ``kubectl`` runs the real kubectl against it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firewall_lab.apiserver import ApiServer, write_kubeconfig
from tests.e2e.agent_env import AgentNode, Kube, record_agent_calls

FIXTURES = Path(__file__).parent / "fixtures"


@dataclasses.dataclass
class ApiServerHandle:
    url: str
    kubeconfig: str
    server: ApiServer

    def __iter__(self) -> Iterator[str]:
        return iter((self.url, self.kubeconfig))


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerHandle]:
    """One API server double per test module: (url, kubeconfig path, server)."""
    folder = tmp_path_factory.mktemp("apiserver")
    server = ApiServer(bookmark_interval=0.5)
    url = server.start()
    kubeconfig = write_kubeconfig(str(folder / "kubeconfig"), url)
    try:
        yield ApiServerHandle(url, kubeconfig, server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def kubectl(apiserver: ApiServerHandle) -> Any:
    """Run kubectl against the double; returns stdout, raises on failure."""
    env = dict(os.environ, KUBECONFIG=apiserver.kubeconfig)
    env["KUBECACHEDIR"] = os.path.join(os.path.dirname(apiserver.kubeconfig), "cache")

    def run(*args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            ["kubectl", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout if check else done.stdout + done.stderr

    run.json = lambda *args: json.loads(run(*args, "-o", "json"))  # type: ignore[attr-defined]
    return run


@pytest.fixture
def node(apiserver: ApiServerHandle, tmp_path: Path) -> Iterator[AgentNode]:
    """A node netns with CNI-wired pods and a ``podwall agent`` (started by the
    test); the agent's API calls are added to the RBAC recording afterwards."""
    made = AgentNode(Kube(apiserver.url), tmp_path).start()
    try:
        yield made
    finally:
        made.stop()
        record_agent_calls(apiserver.server.state.requests, source="tests/e2e/test_agent_*.py")
