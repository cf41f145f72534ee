"""firewalld (Debian's package, nftables backend) inside one network namespace.

``Firewalld(netns, folder).start()`` runs a private D-Bus system-bus daemon
(a socket in ``folder``, never the machine's bus) and ``firewalld --nofork
--nopid`` inside ``netns`` with its own copy of ``/etc/firewalld`` and a
tmpfs over ``/run`` (its temp folder), so nothing of the machine is read
for writing or changed: its rules land in the namespace's nftables.
``cmd(...)`` runs ``firewall-cmd`` against it; ``stop()`` ends both
processes (SIGTERM: firewalld removes its tables, as on a real host).

``missing()`` says why firewalld cannot run here (not installed), or None.
Test support only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from firewall_lab import netns

FIREWALLD = "/usr/sbin/firewalld"
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


def missing() -> str | None:
    """Why firewalld cannot run in this test (None when it can)."""
    for tool in (FIREWALLD, "/usr/bin/firewall-cmd", "/usr/bin/dbus-daemon"):
        if not os.path.exists(tool):
            return (
                f"{tool} is not installed: `apt-get install firewalld` runs the firewalld "
                "coexistence test (kept out of `make deps`: on a host with systemd the "
                "package would start firewalld on the host itself)"
            )
    if not os.path.isdir("/etc/firewalld"):
        return "/etc/firewalld is missing (firewalld's package is half installed)"
    return None


class Firewalld:
    """firewalld and its private bus; see the module docstring."""

    def __init__(self, netns_name: str, folder: Path) -> None:
        self.netns = netns_name
        self.folder = folder
        self.socket = folder / "bus"
        self.bus: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self, *, timeout: float = 30) -> Firewalld:
        config = self.folder / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.socket))
        system = self.folder / "etc"
        shutil.copytree("/etc/firewalld", system)
        self.bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "dbus.log", "wb"),  # noqa: SIM115 - owned by Popen
        )
        self._wait(self.socket.exists, timeout, "the private D-Bus socket")
        script = (
            "mount -t tmpfs podwall-test /run && exec "
            f"{FIREWALLD} --nofork --nopid --system-config {system} "
            f"--log-target file --log-file {self.folder / 'firewalld.log'}"
        )
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "env", f"DBUS_SYSTEM_BUS_ADDRESS={self.address}",
             "sh", "-c", script],
            stdout=open(self.folder / "firewalld.out", "wb"),  # noqa: SIM115 - owned by Popen
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait(lambda: self.cmd("--state", check=False).strip() == "running", timeout,
                   "firewalld to run")  # fmt: skip
        return self

    def cmd(self, *args: str, check: bool = True) -> str:
        """``firewall-cmd ARGS`` in the namespace, on the private bus."""
        argv = ["env", f"DBUS_SYSTEM_BUS_ADDRESS={self.address}", "firewall-cmd", *args]
        done = netns.run(self.netns, argv, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"firewall-cmd {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        for process in (self.daemon, self.bus):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.daemon = self.bus = None

    def log(self) -> str:
        parts = [self.folder / name for name in ("firewalld.out", "firewalld.log", "dbus.log")]
        return "\n".join(path.read_text(errors="replace") for path in parts if path.exists())

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(f"firewalld exited: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.log()}")
            time.sleep(0.1)
