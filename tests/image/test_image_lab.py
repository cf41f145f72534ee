"""The image on lab nodes: the DaemonSet's three containers, then pods and policies.

One 2-node lab for the module (``lab_setup.ImageLab``): on each node the init
container installs the bundle from the image, the agent container programs
the node from the lab's API double, cni-watch keeps the conflist.  Then the
lab starts its pods through the installed conflist and the quick conformance
set runs against them.  Last, node-1 is upgraded to the next image build
(other code, so another bundle id) while pods are being added to it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firewall_lab import netns
from firewall_lab.lab import ops
from tests.e2e.conformance import harness
from tests.image import daemonset
from tests.image.conftest import figure
from tests.image.lab_setup import ImageLab

QUICK = harness.QUICK_FEATURES
QUICK_CASES = [c for c in harness.all_cases() if c["id"] in QUICK]
assert len(QUICK_CASES) == len(QUICK), "every quick case id names a case"
NEXT_TAG = "test-next"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageLab]:
    started = ImageLab.start(str(tmp_path_factory.mktemp("imagelab") / "lab"))
    try:
        for node in started.hosts:
            started.install(node, daemonset.IMAGE)
            started.run_containers(node, daemonset.IMAGE)
        ops.apply_docs(started.directory, harness.baseline_docs(), timeout=240)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def conformance(lab: ImageLab) -> harness.ConformanceLab:
    wrapped = harness.ConformanceLab(lab.directory, cni="bridge", ipv6=False)
    wrapped.layout, wrapped.client = lab.layout, lab.client
    return wrapped


def bundle_id(bin_dir: str) -> str:
    found = re.search(r"podwall\.d/(b-[0-9a-f]+)/", (Path(bin_dir) / "podwall").read_text())
    assert found, "the launcher runs a bundle"
    return found.group(1)


def test_the_init_container_installs_the_bundle(lab: ImageLab) -> None:
    for node, host in lab.hosts.items():
        home = Path(host.volumes["cni-bin"]) / "podwall.d" / bundle_id(host.volumes["cni-bin"])
        files = [p for p in home.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        assert len(files) <= 300 and size <= 20 * 1024 * 1024, (len(files), size)
        manifest = json.loads((home / "manifest.json").read_text())
        started = time.monotonic()
        version = run_plugin(host, "VERSION", {"cniVersion": "1.0.0"})
        first_run = time.monotonic() - started
        assert "1.0.0" in version["supportedVersions"]
        total = lab.install_seconds[node] + first_run
        figure(
            f"install-cni start to a working plugin ({node})",
            f"{total:.2f} s (first VERSION {first_run * 1000:.0f} ms)",
        )
        figure("bundle", f"{size / 1e6:.1f} MB in {len(files)} files, glibc >= {manifest['glibc']}")
    done = daemonset.podman("image", "inspect", "--format", "{{.Size}}", daemonset.IMAGE)
    figure("image size", f"{int(done.stdout.strip()) / 1e6:.0f} MB")


def run_plugin(host: daemonset.Host, command: str, config: dict[str, Any]) -> Any:
    """The installed launcher, run in the node's namespace as the runtime would."""
    env = {"CNI_COMMAND": command, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    launcher = str(Path(host.volumes["cni-bin"]) / "podwall")
    done = netns.run(host.netns, [launcher], input=json.dumps(config), env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_agents_program_their_nodes(lab: ImageLab) -> None:
    items = {i["metadata"]["name"]: i for i in lab.client.list("NodeFirewall")["items"]}
    for node, host in lab.hosts.items():
        status = items[node].get("status") or {}
        assert status.get("lastSync") and not status.get("lastError"), status
        probe = (
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9102/healthz').status)"
        )
        done = netns.run(host.netns, [sys.executable, "-c", probe], check=False)
        assert done.stdout.strip() == "200", (done.stdout, done.stderr, lab.logs(node, "agent"))


def test_cni_watch_puts_podwall_back(lab: ImageLab) -> None:
    host = lab.hosts["node-2"]
    conf = Path(host.volumes["cni-conf"])
    (primary,) = sorted(conf.glob("*.conflist"))
    network = json.loads(primary.read_text())
    network["plugins"] = [p for p in network["plugins"] if p["type"] != "podwall"]
    temp = conf / ".rewrite"
    temp.write_text(json.dumps(network))
    temp.rename(primary)  # the primary CNI rewrites its file, as Calico does
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if any(p["type"] == "podwall" for p in json.loads(primary.read_text())["plugins"]):
            return
        time.sleep(0.2)
    pytest.fail("cni-watch did not put podwall back:\n" + lab.logs("node-2", "cni-watch"))


@pytest.mark.parametrize("case", QUICK_CASES, ids=[c["id"] for c in QUICK_CASES])
def test_conformance(conformance: harness.ConformanceLab, case: dict[str, Any]) -> None:
    conformance.reset()
    failures = conformance.run_case(case)
    assert not failures, f"{case['it']}\n" + "\n".join(failures)


def build_next_image(tmp_path: Path) -> str:
    """The next build: this checkout with one change in the plugin (another bundle id)."""
    context = tmp_path / "context"
    for name in ("pyproject.toml", "README.md", "Dockerfile", ".dockerignore"):
        context.mkdir(exist_ok=True)
        shutil.copy(daemonset.ROOT / name, context / name)
    for name in ("podwall", "firewall_plugin", "firewall_install", "firewall_operator",
                 "firewall_lab", "deploy/image/wheels"):  # fmt: skip
        shutil.copytree(daemonset.ROOT / name, context / name,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    result = context / "firewall_plugin" / "result.py"
    result.write_text(result.read_text() + "\n# the next build\n")
    image = f"{daemonset.IMAGE.rsplit(':', 1)[0]}:{NEXT_TAG}"
    args = ["build", "--network", "host", "-t", image]
    if daemonset.BASE_IMAGE:
        args += ["--build-arg", f"PYTHON_IMAGE={daemonset.BASE_IMAGE}"]
    if any(context.glob("deploy/image/wheels/*.whl")):
        args += ["--build-arg", "PIP_NO_INDEX=1"]
    started = time.monotonic()
    daemonset.podman(*args, str(context), timeout=900)
    figure("next image build (cached base and dependencies)", f"{time.monotonic() - started:.0f} s")
    return image


def add_pods(lab: ImageLab, node: str, count: int, errors: list[str], created: list[float]) -> None:
    """Create ``count`` pods on ``node``, one every 0.3 s, then wait for all to run."""
    pods = []
    try:
        for index in range(count):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"upgrade-{index}", "namespace": "x", "labels": {"up": "1"}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "none"}]},
            }
            pods.append(ops.put(lab.client, pod))
            created.append(time.monotonic())
            time.sleep(0.3)
        ops.wait_pods_running(lab.client, pods, 180)
    except Exception as exc:  # reported by the test
        errors.append(f"{type(exc).__name__}: {exc}")


def test_upgrade_while_pods_are_added(lab: ImageLab, tmp_path: Path) -> None:
    node = "node-1"
    host = lab.hosts[node]
    before = bundle_id(host.volumes["cni-bin"])
    image = build_next_image(tmp_path)
    errors: list[str] = []
    created: list[float] = []
    adder = threading.Thread(target=add_pods, args=(lab, node, 20, errors, created))
    adder.start()
    time.sleep(1.0)
    # the DaemonSet's rolling update: the old pod stops, the new one starts
    window = time.monotonic()
    logs = lab.stop_containers(node)
    assert "podwall stays installed" in logs, logs
    lab.install(node, image)
    lab.run_containers(node, image)
    window_end = time.monotonic()
    adder.join(240)
    during = sum(1 for t in created if window <= t <= window_end)
    figure(
        "rolling update of node-1",
        f"{window_end - window:.1f} s, {during} of 20 pods added meanwhile",
    )
    assert during >= 3, "pods were added while the node was being upgraded"
    assert not adder.is_alive() and errors == [], errors
    after = bundle_id(host.volumes["cni-bin"])
    assert after != before, "the next build brings another bundle"
    old = Path(host.volumes["cni-bin"]) / "podwall.d" / before
    assert not old.exists() or (old / "retired").exists(), "the old bundle is retired"
    failed = [p for p in lab.client.list("Pod", "x")["items"]
              if (p.get("status") or {}).get("phase") == "Failed"]  # fmt: skip
    assert failed == []
