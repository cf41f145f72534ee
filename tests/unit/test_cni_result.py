"""prevResult reading and conversion between CNI result versions (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from firewall_plugin import errors, protocol, result

RESULT_040: dict[str, Any] = {
    "cniVersion": "0.4.0",
    "interfaces": [
        {"name": "cni0", "mac": "00:11:22:33:44:55"},
        {"name": "veth1", "mac": "55:44:33:22:11:11"},
        {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"},
    ],
    "ips": [
        {"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2},
        {"version": "6", "address": "FD00:0::5/64", "gateway": "fd00::1", "interface": 2},
    ],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {"nameservers": ["10.1.0.1"]},
}

RESULT_110: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "veth1", "mac": "55:44:33:22:11:11", "mtu": 1450},
        {"name": "eth0", "sandbox": "/var/run/netns/blue", "mtu": 1450, "pciID": "x"},
    ],
    "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}],
    "routes": [{"dst": "0.0.0.0/0", "mtu": 1400, "table": 5, "scope": 0}],
}


def test_040_to_100_drops_ip_version() -> None:
    out = result.convert(RESULT_040, "1.0.0")
    assert out["cniVersion"] == "1.0.0"
    assert all("version" not in ip for ip in out["ips"])
    assert out["ips"][0] == {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2}
    assert out["interfaces"] == RESULT_040["interfaces"]
    assert out["dns"] == RESULT_040["dns"]
    assert RESULT_040["ips"][0]["version"] == "4"  # input untouched


def test_100_to_040_adds_ip_version() -> None:
    out = result.convert(result.convert(RESULT_040, "1.0.0"), "0.4.0")
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert out["cniVersion"] == "0.4.0"


def test_110_to_100_drops_new_fields() -> None:
    out = result.convert(RESULT_110, "1.0.0")
    assert out["interfaces"][0] == {"name": "veth1", "mac": "55:44:33:22:11:11"}
    assert out["interfaces"][1] == {"name": "eth0", "sandbox": "/var/run/netns/blue"}
    assert out["routes"] == [{"dst": "0.0.0.0/0"}]


def test_110_kept_in_110() -> None:
    assert result.convert(RESULT_110, "1.1.0") == RESULT_110


def test_pod_ips_take_the_sandbox_interface_and_normalise() -> None:
    assert result.pod_ips(RESULT_040, "eth0") == ("10.1.0.5/24", "fd00::5/64")


def test_pod_ips_skip_host_side_addresses() -> None:
    prev = {
        "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/n"}],
        "ips": [
            {"address": "10.1.0.1/24", "interface": 0},
            {"address": "10.1.0.9/24", "interface": 1},
        ],
    }
    assert result.pod_ips(prev, "eth0") == ("10.1.0.9/24",)


def test_pod_ips_without_interface_index_are_kept() -> None:
    assert result.pod_ips({"ips": [{"address": "10.0.0.7/32"}]}, "eth0") == ("10.0.0.7/32",)


def test_host_side_interfaces() -> None:
    assert result.host_side_interfaces(RESULT_040) == ["cni0", "veth1"]


BAD_PREV = [
    ("ips-not-list", {"ips": {"address": "10.0.0.1/32"}}),
    ("address-garbage", {"ips": [{"address": "10.0.0.1/32 -j ACCEPT"}]}),
    ("address-not-string", {"ips": [{"address": 5}]}),
    ("index-out-of-range", {"interfaces": [], "ips": [{"address": "10.0.0.1/32", "interface": 0}]}),
    (
        "index-bool",
        {"interfaces": [{"name": "a"}], "ips": [{"address": "10.0.0.1/8", "interface": True}]},
    ),
    ("interface-without-name", {"interfaces": [{"mac": "x"}]}),
]


@pytest.mark.parametrize("prev", [p for _, p in BAD_PREV], ids=[i for i, _ in BAD_PREV])
def test_bad_prev_result(prev: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError):
        result.validate(prev, config_version="1.0.0")


def test_prev_result_version() -> None:
    assert result.validate(RESULT_040, config_version="1.0.0") == "0.4.0"
    assert result.validate({"ips": []}, config_version="1.1.0") == "1.1.0"
    with pytest.raises(protocol.VersionError):
        result.validate({"cniVersion": "0.2.0"}, config_version="1.0.0")
