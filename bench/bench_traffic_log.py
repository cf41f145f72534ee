"""Benchmark: the denied-traffic log must not slow allowed traffic, and how much it can read.

On ``packet_path``'s node (a bridge, a client and a server pod), the client
floods UDP port 80 of the server, which the node drops in FORWARD, while
connect+echo latency to an allowed TCP port is measured.  Interleaved rounds:

* ``drop``: the flood is dropped, nothing logs (the baseline);
* ``log``: the flood passes a rate-limited NFLOG rule (10/minute, burst 5,
  podwall's default) before the drop, and the agent's ``TrafficLog`` reads the
  group.

The ratio log/drop should stay near 1.00.  Then, without a limit, ``--packets``
(default 20,000) logged packets are sent as fast as one sender can: the
lines the reader wrote, and what it lost (queue full) or the kernel dropped
(overruns), as a share of the packets sent.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from bench.packet_path import Path
from firewall_lab import netns
from firewall_operator.agent import trafficlog

GROUP = 4343
CLIENT, SERVER = "10.64.0.2", "10.64.0.3"
FLOOD = """
import socket, sys
count = int(sys.argv[2]); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
i = 0
while count == 0 or i < count:
    s.sendto(b"x", (sys.argv[1], 80)); i += 1
"""


def _in_netns(name: str, fn: Callable[[], None]) -> None:
    def body() -> None:
        netns.enter(name)
        fn()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()


def _rules(path: Path, *, log: bool, limit: bool) -> None:
    netns.run(path.node, ["iptables", "-F", "FORWARD"])
    if log:
        rate = ["-m", "limit", "--limit", "10/minute", "--limit-burst", "5"] if limit else []
        netns.run(
            path.node,
            [
                "iptables",
                "-A",
                "FORWARD",
                "-p",
                "udp",
                "--dport",
                "80",
                *rate,
                "-j",
                "NFLOG",
                "--nflog-group",
                str(GROUP),
                "--nflog-prefix",
                "pw:bench",
            ],
        )
    netns.run(path.node, ["iptables", "-A", "FORWARD", "-p", "udp", "--dport", "80", "-j", "DROP"])


def _flood(path: Path, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            path.client,
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-c",
            FLOOD,
            SERVER,
            str(count),
        ]
    )


def _reader(path: Path) -> trafficlog.TrafficLog:
    reader = trafficlog.TrafficLog(group=GROUP, node="bench", output=io.StringIO())
    _in_netns(path.node, reader.start)
    return reader


def latency_rounds(path: Path, rounds: int, connections: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"drop": [], "log": []}
    for _ in range(rounds):
        for kind in ("drop", "log"):
            _rules(path, log=kind == "log", limit=True)
            reader = _reader(path) if kind == "log" else None
            flood = _flood(path, 0)
            try:
                time.sleep(0.2)
                found[kind].append(path.measure(connections))
            finally:
                flood.kill()
                flood.wait()
                if reader is not None:
                    reader.stop()
    return found


def throughput(path: Path, packets: int) -> tuple[float, trafficlog.TrafficLog]:
    _rules(path, log=True, limit=False)
    reader = _reader(path)
    started = time.perf_counter()
    flood = _flood(path, packets)
    flood.wait()
    sent = time.perf_counter() - started
    last, deadline = -1, time.monotonic() + 30
    while reader.lines != last and time.monotonic() < deadline:  # until it settles
        last = reader.lines
        time.sleep(0.5)
    reader.stop()
    return sent, reader


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_traffic_log")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--connections", type=int, default=1000, help="per latency round")
    parser.add_argument("--packets", type=int, default=20_000, help="logged packets, no limit")
    args = parser.parse_args(argv)
    path = Path.create(CLIENT, SERVER)
    try:
        found = latency_rounds(path, args.rounds, args.connections)
        drop, log = statistics.median(found["drop"]), statistics.median(found["log"])
        print(f"connect+echo while a flood is dropped: {drop * 1e6:.0f} us (no log rule)")
        print(f"  with a rate-limited NFLOG rule and the reader: {log * 1e6:.0f} us")
        print(f"  ratio log/drop: {log / drop:.2f}")
        sent, reader = throughput(path, args.packets)
        share = reader.lines / args.packets
        print(f"{args.packets} logged packets sent in {sent:.2f}s ({args.packets / sent:.0f}/s):")
        print(
            f"  lines written {reader.lines} ({share:.2f} of the packets), lost in the queue "
            f"{reader.dropped}, kernel overruns {reader.overruns}"
        )
    finally:
        path.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
