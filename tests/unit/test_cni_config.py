"""The plugin's configuration and environment validation (pure tables)."""

from __future__ import annotations

from typing import Any

import pytest

from firewall_plugin import config, errors, protocol

BASE: dict[str, Any] = {"cniVersion": "1.0.0", "name": "podnet", "type": "podwall"}


def test_defaults() -> None:
    cfg = config.parse(BASE)
    assert (cfg.backend, cfg.pod_default, cfg.deny_action) == ("auto", "deny", "drop")
    assert (cfg.state_dir, cfg.run_dir) == ("/var/lib/podwall", "/run/podwall")
    assert (cfg.agent_timeout_ms, cfg.ensure_bridge_netfilter, cfg.mark_bit) == (2000, True, 14)
    assert cfg.prev_result is None


GOOD = [
    ("backend", "iptables-nft", "backend", "iptables-nft"),
    ("backend", "iptables-legacy", "backend", "iptables-legacy"),
    ("backend", "iptc", "backend", "iptc"),
    ("backend", "auto", "backend", "auto"),
    ("podDefault", "allow", "pod_default", "allow"),
    ("denyAction", "reject", "deny_action", "reject"),
    ("stateDir", "/tmp/s", "state_dir", "/tmp/s"),
    ("runDir", "/tmp/r", "run_dir", "/tmp/r"),
    ("agentTimeoutMs", 0, "agent_timeout_ms", 0),
    ("agentTimeoutMs", 300000, "agent_timeout_ms", 300000),
    ("ensureBridgeNetfilter", False, "ensure_bridge_netfilter", False),
    ("markBit", 0, "mark_bit", 0),
    ("markBit", 31, "mark_bit", 31),
]


@pytest.mark.parametrize(("key", "value", "attribute", "expected"), GOOD, ids=lambda v: str(v))
def test_good_values(key: str, value: Any, attribute: str, expected: Any) -> None:
    assert getattr(config.parse({**BASE, key: value}), attribute) == expected


BAD = [
    ("backend", "nft"),
    ("backend", 1),
    ("podDefault", "Deny"),
    ("podDefault", None),
    ("denyAction", "accept"),
    ("stateDir", "relative/dir"),
    ("stateDir", 5),
    ("runDir", ""),
    ("agentTimeoutMs", -1),
    ("agentTimeoutMs", 300001),
    ("agentTimeoutMs", 2.5),
    ("agentTimeoutMs", "2000"),
    ("agentTimeoutMs", True),
    ("ensureBridgeNetfilter", "true"),
    ("ensureBridgeNetfilter", 1),
    ("markBit", 32),
    ("markBit", -1),
    ("markBit", False),
    ("unknownKey", 1),
    ("prevResult", [1]),
    ("type", "firewall"),
    ("name", ""),
    ("name", 3),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=lambda v: repr(v))
def test_bad_values_name_the_key(key: str, value: Any) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config.parse({**BASE, key: value})
    assert key in str(caught.value)
    assert protocol.code_of(caught.value) == protocol.CODE_CONFIG


@pytest.mark.parametrize(
    "key",
    ["prevResult", "runtimeConfig", "args", "capabilities", "dns", "ipam", "cni.dev/anything"],
)
def test_runtime_keys_are_accepted(key: str) -> None:
    cfg = config.parse({**BASE, key: {}})
    assert key in cfg.runtime


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("0.3.0", True),
        ("0.3.1", True),
        ("0.4.0", True),
        ("1.0.0", True),
        ("1.1.0", True),
        ("0.2.0", False),
        ("2.0.0", False),
    ],
    ids=lambda v: str(v),
)
def test_versions(version: str, ok: bool) -> None:
    if ok:
        assert config.parse({**BASE, "cniVersion": version}).cni_version == version
    else:
        with pytest.raises(protocol.VersionError) as caught:
            config.parse({**BASE, "cniVersion": version})
        assert protocol.code_of(caught.value) == protocol.CODE_VERSION


@pytest.mark.parametrize("text", ["", "{", "[]", '"x"', "null"], ids=repr)
def test_decode_errors(text: str) -> None:
    with pytest.raises(protocol.DecodeError) as caught:
        config.decode(text)
    assert protocol.code_of(caught.value) == protocol.CODE_DECODE


ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_IFNAME": "eth0",
    "CNI_NETNS": "/run/netns/x",
    "CNI_PATH": "/opt/cni/bin",
}

BAD_ENV = [
    ("no-command", {"CNI_COMMAND": ""}),
    ("unknown-command", {"CNI_COMMAND": "FROB"}),
    ("no-container", {"CNI_CONTAINERID": ""}),
    ("container-slash", {"CNI_CONTAINERID": "../etc"}),
    ("container-leading-dash", {"CNI_CONTAINERID": "-abc"}),
    ("no-ifname", {"CNI_IFNAME": ""}),
    ("ifname-too-long", {"CNI_IFNAME": "a" * 16}),
    ("ifname-slash", {"CNI_IFNAME": "a/b"}),
    ("ifname-dot", {"CNI_IFNAME": ".."}),
    ("no-netns", {"CNI_NETNS": ""}),
    ("bad-args", {"CNI_ARGS": "K8S_POD_NAME"}),
    ("bad-lock-timeout", {protocol.LOCK_TIMEOUT_VARIABLE: "soon"}),
    ("gc-without-path", {"CNI_COMMAND": "GC", "CNI_PATH": ""}),
]


@pytest.mark.parametrize(("change"), [c for _, c in BAD_ENV], ids=[i for i, _ in BAD_ENV])
def test_bad_environment(change: dict[str, str]) -> None:
    with pytest.raises(protocol.EnvError) as caught:
        protocol.read_environment({**ADD_ENV, **change})
    assert protocol.code_of(caught.value) == protocol.CODE_ENV


def test_del_needs_no_netns_and_version_needs_nothing() -> None:
    env = protocol.read_environment({**ADD_ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""})
    assert (env.container_id, env.ifname, env.netns) == ("c1", "eth0", "")
    assert protocol.read_environment({"CNI_COMMAND": "VERSION"}).command == "VERSION"


def test_pod_identity_from_cni_args() -> None:
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_UID=u-1"
    env = protocol.read_environment({**ADD_ENV, "CNI_ARGS": args})
    assert (env.pod_namespace, env.pod_name, env.pod_uid) == ("ns", "web", "u-1")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.TryAgainError("x"), 11),
        (errors.BackendError("x"), 100),
        (errors.StateError("x"), 5),
        (protocol.ContainerUnknownError("x"), 3),
        (protocol.CheckError("x"), 101),
        (protocol.NotReadyError("x"), 50),
        (protocol.BridgeNetfilterError("x"), 102),
        (RuntimeError("x"), 100),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_codes(exc: BaseException, code: int) -> None:
    assert protocol.code_of(exc) == code
