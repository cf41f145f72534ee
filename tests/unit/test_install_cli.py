"""``podwall cni install|uninstall`` as a user runs it, the launcher it writes, ``--watch``.

Everything runs in tmp dirs; the CLI runs as a real subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import firewall_plugin
from firewall_install import bundle, launcher

FIXTURES = Path(__file__).parent.parent / "fixtures" / "conflists"
PRIMARY = "10-containerd-net.conflist"  # cniVersion 1.0.0: the plugin speaks it


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, conf = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    conf.mkdir()
    shutil.copy(FIXTURES / PRIMARY, conf / PRIMARY)
    return bin_dir, conf


#: the CLI runs as outside a pod (the removal check reads these)
OUTSIDE = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE", "DAEMONSET_NAME")


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "podwall", "cni", *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)


def where(bin_dir: Path, conf: Path) -> list[str | Path]:
    return ["--bin-dir", bin_dir, "--conf-dir", conf]


def plugins(conf: Path, name: str = PRIMARY) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads((conf / name).read_text())["plugins"]
    return result


def podwall_count(conf: Path, name: str = PRIMARY) -> int:
    return sum(1 for p in plugins(conf, name) if p["type"] == "podwall")


def run_version(executable: Path, **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(executable)],
        input='{"cniVersion": "1.0.0"}',
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def plugin_exists() -> bool:
    return (Path(firewall_plugin.__file__).parent / "cni.py").exists()


needs_plugin = pytest.mark.skipif(not plugin_exists(), reason="firewall_plugin.cni not there yet")


def test_install_then_uninstall_round_trip(dirs: tuple[Path, Path]) -> None:
    bin_dir, conf = dirs
    done = cli("install", *where(bin_dir, conf), "--pod-default", "allow", "--mark-bit", "9")
    assert done.returncode == 0, done.stderr
    assert plugins(conf)[-1] == {"type": "podwall", "podDefault": "allow", "markBit": 9}
    executable = bin_dir / "podwall"
    assert executable.stat().st_mode & 0o777 == 0o755
    again = cli("install", *where(bin_dir, conf), "--pod-default", "allow", "--mark-bit", "9")
    assert again.returncode == 0 and again.stdout == "", "second install changes nothing"
    assert podwall_count(conf) == 1
    done = cli("uninstall", *where(bin_dir, conf))
    assert done.returncode == 0, done.stderr
    assert plugins(conf) == json.loads((FIXTURES / PRIMARY).read_text())["plugins"]
    assert os.listdir(bin_dir) == []
    again = cli("uninstall", *where(bin_dir, conf))
    assert again.returncode == 0 and again.stdout == ""


ERRORS: dict[str, tuple[list[str], str]] = {
    "no-primary": (["--conf-dir", "{empty}"], "no CNI config"),
    "bad-mark-bit": (["--mark-bit", "40"], "markBit"),
    "relative-state-dir": (["--state-dir", "var/lib"], "stateDir"),
    "missing-bin-dir": (["--bin-dir", "{tmp}/nope"], "does not exist"),
    "bad-python": (["--python", "{tmp}/no-python"], "not an executable interpreter"),
    "python-and-bundle": (["--python", sys.executable, "--bundle"], "exclude each other"),
    "exit-needs-watch": (["--uninstall-on-exit"], "needs --watch"),
    "unparsable": (["--conf-dir", "{broken}"], "not valid JSON"),
    "daemonset-needs-if-gone": (
        ["--watch", "--uninstall-on-exit", "--daemonset", "a/b"],
        "need --uninstall-on-exit=if-daemonset-gone",
    ),
    "if-gone-needs-daemonset": (
        ["--watch", "--uninstall-on-exit=if-daemonset-gone"],
        "needs the DaemonSet as NAMESPACE/NAME",
    ),
    "if-gone-needs-a-cluster": (
        ["--watch", "--uninstall-on-exit=if-daemonset-gone", "--daemonset", "a/b"],
        "KUBERNETES_SERVICE_HOST/PORT are not set",
    ),
    "if-gone-bad-kubeconfig": (
        [
            "--watch",
            "--uninstall-on-exit=if-daemonset-gone",
            "--daemonset=a/b",
            "--kubeconfig={tmp}/nope",
        ],
        "cannot read kubeconfig",
    ),
}


@pytest.mark.parametrize(("extra", "message"), list(ERRORS.values()), ids=list(ERRORS))
def test_install_errors_are_one_line_exit_1(
    dirs: tuple[Path, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    bin_dir, conf = dirs
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "10-x.conflist").write_text("{not json")
    names = {"empty": tmp_path / "empty", "broken": tmp_path / "broken", "tmp": tmp_path}
    args = [arg.format(**names) for arg in extra]
    before = (conf / PRIMARY).read_bytes()
    done = cli("install", *where(bin_dir, conf), *args)
    assert done.returncode == 1
    assert done.stderr.startswith("podwall cni install: ") and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert (conf / PRIMARY).read_bytes() == before


def test_python_option_names_the_interpreter(dirs: tuple[Path, Path]) -> None:
    bin_dir, conf = dirs
    assert cli("install", *where(bin_dir, conf), "--python", "/usr/bin/python3").returncode == 0
    first = (bin_dir / "podwall").read_text().splitlines()[0]
    assert first == "#!/usr/bin/python3 -I"


@needs_plugin
def test_launcher_runs_the_plugin(dirs: tuple[Path, Path]) -> None:
    bin_dir, conf = dirs
    assert cli("install", *where(bin_dir, conf)).returncode == 0
    assert (bin_dir / "podwall").read_text().startswith(f"#!{sys.executable} -IS\n")
    result = run_version(bin_dir / "podwall")
    assert "1.0.0" in result["supportedVersions"]


@needs_plugin
def test_bundle_runs_without_the_virtualenv(dirs: tuple[Path, Path]) -> None:
    bin_dir, _conf = dirs
    ident = bundle.plan().ident
    assert launcher.install_executable(str(bin_dir), bundled=True).actions
    bundles = os.listdir(bin_dir / "podwall.d")
    assert len(bundles) == 1
    home = bin_dir / "podwall.d" / bundles[0]
    assert run_version(bin_dir / "podwall")["supportedVersions"]
    probe = "import sys, firewall_plugin; print(sys.prefix); print(firewall_plugin.__file__)"
    python = home / "python" / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    env = {"LD_LIBRARY_PATH": str(home / "python" / "lib")}
    done = subprocess.run(
        [str(python), "-IS", "-c", f"import sys; sys.path[:0] = [{str(home / 'site')!r}]; {probe}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(line.startswith(str(home)) for line in done.stdout.splitlines()), done.stdout
    again = launcher.install_executable(str(bin_dir), bundled=True).actions
    assert again == [], "a second install changes nothing"
    launcher.install_executable(str(bin_dir))
    assert (bin_dir / "podwall.d" / ident / "retired").exists(), "retired, kept for a while"
    launcher.install_executable(str(bin_dir), grace=0.0)
    assert not (bin_dir / "podwall.d").exists(), "leaving bundle mode removes the bundle"


@needs_plugin
def test_bundle_runs_wherever_the_bin_folder_is_mounted(tmp_path: Path) -> None:
    """Installed through one path, run through another, directly or through a symlink."""
    installed, mounted, elsewhere = tmp_path / "via", tmp_path / "host-bin", tmp_path / "elsewhere"
    installed.mkdir()
    elsewhere.mkdir()
    launcher.install_executable(str(installed), bundled=True)
    installed.rename(mounted)
    (elsewhere / "podwall").symlink_to("../host-bin/podwall")
    written = [mounted / "podwall", *mounted.glob("podwall.d/*/launch.py")]
    assert len(written) == 2
    for path in written:
        assert str(tmp_path) not in path.read_text(), path
    for executable in (mounted / "podwall", elsewhere / "podwall"):
        assert "1.0.0" in run_version(executable)["supportedVersions"], executable
    again = launcher.install_executable(str(mounted), bundled=True).actions
    assert again == [], "the launcher is the same text through any mount"


# ---------------------------------------------------------------- --watch


def wait_for(check: Callable[[], bool], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return False


@pytest.fixture
def watcher(dirs: tuple[Path, Path]) -> Iterator[subprocess.Popen[str]]:
    bin_dir, conf = dirs
    command = [sys.executable, "-m", "podwall", "cni", "install", *map(str, where(bin_dir, conf))]
    command += ["--watch", "--watch-interval", "0.2", "--uninstall-on-exit", "--backend", "iptc"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def rewrite_like_calico(path: Path) -> None:
    """The primary CNI writes its own config again, dropping chained entries."""
    temp = path.with_name(".calico-tmp")
    shutil.copy(FIXTURES / PRIMARY, temp)
    os.replace(temp, path)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_watch_repairs_drift_and_reverts_on_sigterm(
    dirs: tuple[Path, Path], watcher: subprocess.Popen[str]
) -> None:
    bin_dir, conf = dirs
    assert wait_for(lambda: podwall_count(conf) == 1), "initial install"
    for _ in range(2):
        rewrite_like_calico(conf / PRIMARY)
        assert podwall_count(conf) == 0
        assert wait_for(lambda: podwall_count(conf) == 1), "podwall re-chained"
    (bin_dir / "podwall").unlink()
    assert wait_for(lambda: (bin_dir / "podwall").exists()), "executable restored"
    shutil.copy(FIXTURES / "10-flannel.conflist", conf / ".new")
    network = json.loads((conf / ".new").read_text())
    network["cniVersion"] = "1.0.0"
    (conf / ".new").write_text(json.dumps(network))
    os.replace(conf / ".new", conf / "05-flannel.conflist")
    assert wait_for(lambda: podwall_count(conf, "05-flannel.conflist") == 1), "new primary"
    before = cpu_seconds(watcher.pid)
    time.sleep(2.0)
    assert cpu_seconds(watcher.pid) - before < 0.3, "the watch loop must not spin"
    assert podwall_count(conf) == 1 and podwall_count(conf, "05-flannel.conflist") == 1
    watcher.send_signal(signal.SIGTERM)
    _out, err = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, err
    assert "Traceback" not in err
    assert podwall_count(conf) == 0 and podwall_count(conf, "05-flannel.conflist") == 0
    assert not (bin_dir / "podwall").exists()
    assert sorted(os.listdir(conf)) == ["05-flannel.conflist", PRIMARY]


def test_watch_waits_for_the_primary_cni(tmp_path: Path) -> None:
    bin_dir, conf = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    conf.mkdir()
    command = [sys.executable, "-m", "podwall", "cni", "install", *map(str, where(bin_dir, conf))]
    process = subprocess.Popen(
        [*command, "--watch", "--watch-interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.8)
        assert process.poll() is None, "keeps running while there is no config"
        shutil.copy(FIXTURES / PRIMARY, conf / PRIMARY)
        assert wait_for(lambda: podwall_count(conf) == 1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert err.count("no CNI config") == 1, "the same failure is reported once"
    assert podwall_count(conf) == 1, "without --uninstall-on-exit the chain stays"
