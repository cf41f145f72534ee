"""A seeded fuzzer of the CNI plugin: mutated stdin and environment, real processes.

``Fuzzer(seed, node, tmp)`` makes ``Case``s from valid invocations of every
verb (ADD with a prevResult naming a real veth of the node, DEL, CHECK, GC,
STATUS, VERSION) with one to three mutations each: of the JSON (a value
replaced by random JSON, a key dropped or added, a subtree nested), of the
bytes (truncated, flipped, spliced, padded, nested 50,000 deep, not UTF-8),
of the ``CNI_*`` variables and ``PODWALL_LOCK_TIMEOUT_MS``.  A mutation that
would send the plugin's files anywhere but the test's folders (a ``stateDir``
or ``runDir`` dropped, so the default, or another absolute path) is drawn
again; ``CNI_NETNS`` only ever names harmless paths.

``Harness(node, tmp)`` runs one process inside the node namespace (``ip
netns exec``, so its sysfs is the node's) that starts the real plugin
(``python -m firewall_plugin``) once per case and reports its exit status,
output, and whether the kernel (nf_tables generation, then ``nft list
ruleset``; the legacy filter tables' size, then ``iptables-legacy-save``)
or the state folder changed.  ``problems(case, report)`` is the oracle: no
traceback, exit 0 or 1, one JSON object (or nothing) on stdout, only the
codes podwall documents, no foreign exception in ``details``, one line on
stderr, and on failure nothing changed.  Test support only.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firewall_lab import netns
from tests.kernel import plugin_cli as cli

CODES = {1, 3, 4, 5, 6, 7, 11, 50, 100, 101, 102}
POOL = (("10.31.0.5/24", "fd00:31::5/64"), ("10.31.0.6/24",), ("fd00:31::7/64",))
CONTAINERS = ("c1", "c2", "c3")
VERBS = ("ADD", "ADD", "ADD", "DEL", "DEL", "CHECK", "GC", "STATUS", "VERSION")
VARIABLES = (
    "CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_ARGS", "CNI_PATH",
    "PODWALL_LOCK_TIMEOUT_MS",
)  # fmt: skip
SERVER = r"""
import base64, hashlib, json, os, subprocess, sys
from firewall_operator.agent.node import legacy_info
from firewall_plugin.nft import netlink as nl
state, run = sys.argv[1], sys.argv[2]
CACHES = ("podwall.lock", "backend")  # node-wide caches any call may create
def files():
    found = {}
    for top in (state, run):
        for folder, _, names in os.walk(top):
            for name in names:
                if folder == run and name in CACHES:
                    continue
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    found[path] = hashlib.sha256(handle.read()).hexdigest()
    return found
def generation():
    with nl.Netlink() as sock:
        return sock.generation()
def text(argv):
    return subprocess.run(argv, capture_output=True, text=True).stdout
def nf_tables():
    return text(["nft", "list", "ruleset"])
def legacy():
    return "".join(text([tool, "-t", "filter"])
                   for tool in ("iptables-legacy-save", "ip6tables-legacy-save"))
kernel = {"gen": generation(), "nft": nf_tables(), "info": legacy_info(), "legacy": legacy()}
print("ready", flush=True)
for line in sys.stdin:
    case = json.loads(line)
    before = files()
    env = {key: value for key, value in case["env"].items()}
    done = subprocess.run([sys.executable, "-m", "firewall_plugin"], env=env,
                          input=base64.b64decode(case["stdin"]), capture_output=True, timeout=120)
    changed = []
    gen = generation()
    if gen != kernel["gen"]:
        kernel["gen"] = gen
        now = nf_tables()
        if now != kernel["nft"]:
            changed.append("nf_tables")
            kernel["nft"] = now
    info = legacy_info()
    if info != kernel["info"]:
        kernel["info"] = info
        now = legacy()
        if now != kernel["legacy"]:
            changed.append("legacy iptables")
            kernel["legacy"] = now
    if files() != before:
        changed.append("state or run folder")
    print(json.dumps({"status": done.returncode, "stdout": done.stdout.decode(errors="replace"),
                      "stderr": done.stderr.decode(errors="replace"), "changed": changed}),
          flush=True)
"""


@dataclass
class Case:
    """One plugin run: its environment, its stdin, and what was mutated."""

    env: dict[str, str]
    stdin: bytes
    label: str

    def __str__(self) -> str:
        """Enough to run it again by hand."""
        env = {key: value[:200] for key, value in self.env.items() if key != "PATH"}
        return f"{self.label}\n  env {env!r}\n  stdin {self.stdin[:600]!r}"


@dataclass
class Report:
    status: int
    stdout: str
    stderr: str
    changed: list[str]


def weird_text(rng: random.Random) -> str:
    """A string a careless or hostile caller might send (no NUL: env values cannot hold it)."""
    choices = [
        "",
        " ",
        "x" * rng.choice((1, 15, 16, 255, 4096, 70_000)),
        "".join(rng.choice("abcXYZ019_.-/:;=\\\"' \t\n") for _ in range(rng.randint(1, 40))),
        "".join(chr(rng.randint(0x80, 0xD7FF)) for _ in range(rng.randint(1, 20))),
        "pöd-名前-😀\u202e\u0301",
        "\x1b[31m\r\n-A FORWARD -j ACCEPT\nCOMMIT",
        "10.0.0.1/32 -j ACCEPT",
        "../../../../etc/passwd",
        "$(touch /tmp/pwned)`id`",
        "%s%n%x" * 10,
        "9" * rng.choice((1, 20, 5000)),
        "²³",
        "-1",
        "NaN",
    ]
    return str(rng.choice(choices))


def weird_value(rng: random.Random, depth: int = 0) -> Any:
    """Random JSON."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 1, 2**31, 2**63, -(2**64), 10**30))
    if kind == 3:
        return rng.choice((0.5, -0.0, 1e308, float("inf"), float("nan")))
    if kind in (4, 5):
        return weird_text(rng)
    if kind in (6, 7):
        return [weird_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {weird_text(rng)[:20]: weird_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (dict keys and list indices)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


def mutate_json(rng: random.Random, config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    data = json.loads(json.dumps(config))
    path = rng.choice(_paths(data)[1:])
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    op = rng.randrange(5)
    if op == 0 and isinstance(parent, dict):
        del parent[last]
        return data, f"json: drop {path}"
    if op == 1 and isinstance(parent, dict):
        parent[weird_text(rng)[:30]] = weird_value(rng)
        return data, f"json: add a key beside {path}"
    if op == 2:
        parent[last] = [parent[last]] if rng.random() < 0.5 else {"x": parent[last]}
        return data, f"json: wrap {path}"
    parent[last] = weird_value(rng)
    return data, f"json: replace {path}"


def mutate_bytes(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    op = rng.randrange(9)
    at = rng.randrange(len(raw) + 1)
    if op == 0:
        return raw[:at], f"bytes: truncated at {at}"
    if op == 1 and raw:
        spot = rng.randrange(len(raw))
        flipped = bytes([raw[spot] ^ (1 << rng.randrange(8))])
        return raw[:spot] + flipped + raw[spot + 1 :], f"bytes: bit flip at {spot}"
    if op == 2:
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return raw[:at] + junk + raw[at:], f"bytes: {len(junk)} inserted at {at}"
    if op == 3:
        end = min(len(raw), at + rng.randint(1, 64))
        return raw[:at] + raw[end:], f"bytes: {at}..{end} cut"
    if op == 4:
        return raw[:at] + raw[at : at + 200] * rng.randint(2, 50) + raw[at:], "bytes: repeated"
    if op == 5:
        depth = rng.choice((1000, 50_000, 200_000))
        return b"[" * depth + raw + b"]" * rng.choice((0, depth)), f"bytes: nested {depth}"
    if op == 6:
        return b"\xef\xbb\xbf" + raw, "bytes: BOM"
    if op == 7:
        return raw.replace(b'"', b'"\xff', 1), "bytes: not UTF-8"
    return b" " * rng.choice((10, 1 << 20)) + raw, "bytes: padded"


class Fuzzer:
    """Seeded cases for one node (see the module docstring)."""

    def __init__(self, seed: int | str, node: str, tmp: Path, *, backend: str) -> None:
        self.rng = random.Random(seed)
        self.node = node
        self.tmp = tmp
        self.backend = backend
        self.state, self.run = str(tmp / "state"), str(tmp / "run")
        self.prevs = [cli.prev_result(node, *ips) for ips in POOL]
        self.plain_file = tmp / "not-a-netns"
        self.plain_file.write_text("")
        self.netns_paths = [
            netns.path(node), "/run/netns/pw-no-such-netns", str(self.plain_file), str(tmp),
            "/proc/self/ns/net", "relative/netns", "/" + "a" * 5000, "",
        ]  # fmt: skip

    def base(self) -> tuple[dict[str, str], dict[str, Any], str]:
        rng = self.rng
        verb = rng.choice(VERBS)
        version = "1.1.0" if verb in ("GC", "STATUS") else rng.choice(("0.4.0", "1.0.0", "1.1.0"))
        config = cli.conf(self.tmp, backend=self.backend, cniVersion=version, agentTimeoutMs=0)
        if verb in ("ADD", "CHECK") or (verb == "DEL" and rng.random() < 0.5):
            config["prevResult"] = rng.choice(self.prevs)
        if verb == "GC":
            valid = rng.sample(CONTAINERS, rng.randint(0, len(CONTAINERS)))
            config["cni.dev/valid-attachments"] = [
                {"containerID": c, "ifname": "eth0"} for c in valid
            ]
        container = rng.choice(CONTAINERS)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": verb,
            "CNI_CONTAINERID": container,
            "CNI_IFNAME": "eth0",
            "CNI_NETNS": netns.path(self.node),
            "CNI_PATH": "/usr/lib/cni",
            "CNI_ARGS": f"K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p{container};K8S_POD_UID=u{container}",
        }
        return env, config, verb

    def mutate_env(self, env: dict[str, str]) -> str:
        rng = self.rng
        name = rng.choice(VARIABLES)
        if rng.random() < 0.2:
            env.pop(name, None)
            return f"env: drop {name}"
        if name == "CNI_NETNS":
            env[name] = rng.choice(self.netns_paths)
        elif name == "CNI_COMMAND" and rng.random() < 0.5:
            env[name] = rng.choice(("add", "ADD ", "VERSION", "GC", "DEL", "STATUS", "CHECK"))
        elif name == "CNI_ARGS" and rng.random() < 0.6:
            env[name] = f"K8S_POD_NAMESPACE={weird_text(rng)};K8S_POD_NAME={weird_text(rng)}"
        else:
            env[name] = weird_text(rng)
        return f"env: {name}={env[name][:40]!r}"

    def safe(self, stdin: bytes) -> bool:
        """False when the plugin would write outside the test's folders."""
        try:
            data = json.loads(stdin.decode("utf-8"))
        except (ValueError, RecursionError):
            return True
        if not isinstance(data, dict):
            return True
        for key, ours in (("stateDir", self.state), ("runDir", self.run)):
            value = data.get(key)
            elsewhere = isinstance(value, str) and value.startswith("/") and value != ours
            if key not in data or elsewhere:
                return False
        return True

    def case(self) -> Case:
        while True:
            env, config, verb = self.base()
            labels = [verb]
            stdin = json.dumps(config).encode()
            for _ in range(self.rng.choice((0, 1, 1, 1, 2, 3))):
                kind = self.rng.randrange(3)
                if kind == 0:
                    labels.append(self.mutate_env(env))
                elif kind == 1:
                    config, label = mutate_json(self.rng, config)
                    stdin = json.dumps(config).encode()
                    labels.append(label)
                else:
                    stdin, label = mutate_bytes(self.rng, stdin)
                    labels.append(label)
            if self.safe(stdin):
                return Case(env, stdin, "; ".join(labels))


class Harness:
    """The in-node runner of plugin processes (see the module docstring)."""

    def __init__(self, node: str, tmp: Path) -> None:
        argv = ["ip", "netns", "exec", node, sys.executable, "-c", SERVER,
                str(tmp / "state"), str(tmp / "run")]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, case: Case) -> Report:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        line = {"env": case.env, "stdin": base64.b64encode(case.stdin).decode()}
        self.proc.stdin.write(json.dumps(line) + "\n")
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("the fuzz harness died")
        return Report(**json.loads(answer))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def problems(report: Report) -> list[str]:
    """What is wrong with one run (see the module docstring)."""
    found = []
    if "Traceback" in report.stderr:
        found.append(f"traceback: {report.stderr[-800:]}")
    if report.status not in (0, 1):
        found.append(f"exit status {report.status}")
    lines = report.stdout.splitlines()
    body: Any = None
    if len(lines) > 1:
        found.append(f"{len(lines)} lines on stdout")
    elif lines:
        try:
            body = json.loads(lines[0])
        except ValueError:
            found.append(f"stdout is not JSON: {lines[0][:200]!r}")
    if report.status == 1:
        if not isinstance(body, dict) or set(body) != {"cniVersion", "code", "msg", "details"}:
            found.append(f"error output {report.stdout[:300]!r}")
        else:
            if body["code"] not in CODES:
                found.append(f"code {body['code']}")
            if body["details"]:
                found.append(f"foreign exception: {body['details'][:300]}")
            if not body["msg"]:
                found.append("empty msg")
        if len(report.stderr.strip().splitlines()) != 1:
            found.append(f"stderr: {report.stderr[-500:]!r}")
        if report.changed:
            found.append(f"failed but changed {report.changed}: {report.stdout[:600]}")
    return found
