"""``conntrack.forget``: every entry that names a pod's address goes, others stay.

Entries are made with the ``conntrack`` tool in a throwaway namespace: the pod
as the original source, as the original destination, as the reply source
(DNAT to the pod: a Service) and as the reply destination (SNAT to it), each
in IPv4 and IPv6, plus entries of other addresses that must survive.  Run
with the namespace nearly empty and with many unrelated entries (the two
ways ``forget`` reads the table).
"""

from __future__ import annotations

import pytest

from firewall_lab import netns
from firewall_plugin import conntrack

POD = {"ipv4": "10.99.0.5", "ipv6": "fd00:99::5"}
OTHER = {"ipv4": "10.99.9.", "ipv6": "fd00:99:9::"}


def entries(family: str) -> list[list[str]]:
    """``conntrack -I`` arguments: four naming the pod, one not."""
    pod, other = POD[family], OTHER[family]
    a, b, c, d = (f"{other}{n}" for n in (1, 2, 3, 4))
    return [
        ["-s", pod, "-d", a],  # the pod connects out
        ["-s", b, "-d", pod],  # someone connects to the pod
        ["-s", c, "-d", f"{other}10", "-r", pod, "-q", c],  # DNAT to the pod (a Service)
        ["-s", d, "-d", a, "-r", a, "-q", pod],  # SNAT to the pod's address
        ["-s", a, "-d", b],  # not the pod's
    ]


def insert(node: str, args: list[str], port: int) -> None:
    ports = ["--sport", str(port), "--dport", "80"]
    if "-r" in args:
        ports += ["--reply-port-src", "80", "--reply-port-dst", str(port)]
    netns.run(node, ["conntrack", "-I", "-p", "tcp", *args, *ports, "--state", "ESTABLISHED",
                     "-t", "600", "-u", "SEEN_REPLY"])  # fmt: skip


def listing(node: str) -> str:
    return netns.run(node, ["conntrack", "-L"]).stdout


@pytest.mark.parametrize("crowd", [0, 1500], ids=["few-entries", "many-entries"])
def test_forget_removes_every_entry_naming_the_pod_and_nothing_else(
    node_ns: str, crowd: int
) -> None:
    for family in POD:
        for index, args in enumerate(entries(family)):
            insert(node_ns, args, 1000 + index)
    if crowd:  # unrelated flows: a busy node (``conntrack -R``: one command per line)
        lines = [
            f"-I -p udp -s 10.98.{n // 250}.{n % 250 + 1} -d 10.97.0.1 --sport 2000 --dport 53 "
            "-t 600\n"
            for n in range(crowd)
        ]
        netns.run(node_ns, ["conntrack", "-R", "/dev/stdin"], input="".join(lines))
    before = listing(node_ns)
    removed = netns.call(node_ns, conntrack.forget, [f"{POD['ipv4']}/24", f"{POD['ipv6']}/64"])
    after = listing(node_ns)
    assert removed == 8, f"{removed} removed of\n{before}"
    for family, pod in POD.items():
        assert f"={pod} " not in after, after
        assert f"src={OTHER[family]}1 dst={OTHER[family]}2 " in after, after
    assert after.count("dport=53") == crowd
