"""The runner's pure parts: config loading and injection, CNI_ARGS, errors,
the result cache layout, and the SCTP packet codec the probes use."""

from __future__ import annotations

import json
import struct
import subprocess
from typing import Any

import pytest

from firewall_lab import cni_cache, cni_conf, cni_exec, sctp
from firewall_lab.cni_conf import Attachment, ConfigLoadError
from firewall_lab.cni_errors import CniRunnerError

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "net",
    "plugins": [
        {"type": "bridge", "bridge": "cni0"},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "podwall", "podDefault": "deny"},
    ],
}


def test_load_conflist_from_dict_text_and_file(tmp_path: Any) -> None:
    path = tmp_path / "10-net.conflist"
    path.write_text(json.dumps(CONFLIST))
    loaded = [cni_conf.load(CONFLIST), cni_conf.load(json.dumps(CONFLIST)), cni_conf.load(path)]
    assert all(net == loaded[0] for net in loaded)
    assert loaded[0].types == ["bridge", "portmap", "podwall"]
    assert cni_conf.load(loaded[0].to_json()) == loaded[0]


def test_load_single_plugin_conf() -> None:
    net = cni_conf.load({"cniVersion": "0.4.0", "name": "one", "type": "ptp", "mtu": 1400})
    assert (net.name, net.cni_version, net.types) == ("one", "0.4.0", ["ptp"])
    assert net.plugins[0]["mtu"] == 1400 and "name" not in net.plugins[0]


BAD_CONFIGS = {
    "not-json": "{nope",
    "no-name": {"cniVersion": "1.0.0", "plugins": [{"type": "x"}]},
    "empty-plugins": {"name": "n", "cniVersion": "1.0.0", "plugins": []},
    "plugin-without-type": {"name": "n", "cniVersion": "1.0.0", "plugins": [{"a": 1}]},
    "neither-plugins-nor-type": {"name": "n", "cniVersion": "1.0.0"},
    "missing-file": "/nonexistent/10-net.conflist",
}


@pytest.mark.parametrize("source", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_configs_raise_config_load_error(source: Any) -> None:
    with pytest.raises(ConfigLoadError) as failure:
        cni_conf.load(source)
    assert isinstance(failure.value, CniRunnerError)


def test_plugin_config_injects_like_libcni() -> None:
    net = cni_conf.load(CONFLIST)
    caps = {"portMappings": [{"hostPort": 1}], "bandwidth": {"ingressRate": 1}}
    prev = {"cniVersion": "1.0.0", "ips": []}
    first = cni_conf.plugin_config(net, net.plugins[0], capability_args=caps)
    assert first == {"type": "bridge", "bridge": "cni0", "name": "net", "cniVersion": "1.0.0"}
    second = cni_conf.plugin_config(net, net.plugins[1], prev_result=prev, capability_args=caps)
    assert second["runtimeConfig"] == {"portMappings": [{"hostPort": 1}]}
    assert second["prevResult"] == prev
    gc = cni_conf.plugin_config(net, net.plugins[2], extra={cni_conf.VALID_ATTACHMENTS_KEY: []})
    assert gc[cni_conf.VALID_ATTACHMENTS_KEY] == [] and "prevResult" not in gc


def test_select_keeps_order_and_can_change_version() -> None:
    net = cni_conf.load(CONFLIST).select(["podwall", "bridge"], cni_version="1.1.0")
    assert (net.types, net.cni_version, net.name) == (["bridge", "podwall"], "1.1.0", "net")


CNI_ARGS = {
    "none": ({}, ""),
    "kubelet-like": (
        {"K8S_POD_NAME": "a", "K8S_POD_NAMESPACE": "ns"},
        "IgnoreUnknown=1;K8S_POD_NAME=a;K8S_POD_NAMESPACE=ns",
    ),
    "explicit-ignore-unknown": ({"IgnoreUnknown": "0", "B": "2"}, "IgnoreUnknown=0;B=2"),
}


@pytest.mark.parametrize(("args", "text"), CNI_ARGS.values(), ids=CNI_ARGS.keys())
def test_cni_args(args: dict[str, str], text: str) -> None:
    assert Attachment("c", args=args).cni_args() == text


def test_result_ips_and_versions() -> None:
    result = {"ips": [{"address": "10.0.0.2/24"}, {"version": "6", "address": "fd00::2/64"}]}
    assert cni_conf.result_ips(result) == ["10.0.0.2", "fd00::2"]
    assert cni_conf.result_ips(None) == []
    assert cni_conf.at_least("1.1.0", "1.1.0") and not cni_conf.at_least("1.0.0", "1.1.0")
    assert cni_conf.at_least("0.10.0", "0.4.0") and not cni_conf.at_least("junk", "0.1.0")


def test_cache_round_trip(tmp_path: Any) -> None:
    cache = str(tmp_path)
    att = Attachment("cid", "eth1", "/run/netns/x", {"K": "v"}, {"portMappings": []})
    cni_cache.write(cache, "net", att, {"cniVersion": "1.0.0"})
    path = cni_cache.result_path(cache, "net", "cid", "eth1")
    assert path == f"{cache}/results/net-cid-eth1"
    entry = cni_cache.read(cache, "net", att)
    assert entry is not None and (entry.attachment, entry.result) == (att, {"cniVersion": "1.0.0"})
    assert [e.attachment for e in cni_cache.entries(cache, "net")] == [att]
    assert list(cni_cache.entries(cache, "other")) == []
    cni_cache.remove(cache, "net", att)
    cni_cache.remove(cache, "net", att)
    assert cni_cache.read(cache, "net", att) is None


def _failed(stdout: str, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["p"], 1, stdout, stderr)


ERRORS = {
    "json-on-stdout": (
        _failed('{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"key x"}'),
        (7, "bad", "key x"),
    ),
    "json-on-stderr": (_failed("", '{"code": 11, "msg": "again"}'), (11, "again", "")),
    "no-json": (_failed("", "panic: boom"), (None, "exit 1: panic: boom", "")),
}


@pytest.mark.parametrize(("done", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_parse_error(done: subprocess.CompletedProcess[str], expected: tuple[Any, ...]) -> None:
    error = cni_exec.parse_error(plugin="p", command="ADD", done=done)
    assert (error.code, error.msg, error.details) == expected
    assert (error.plugin, error.command) == ("p", "ADD")


CRC_VECTORS = {  # RFC 3720 B.4
    "zeros": (bytes(32), 0x8A9136AA),
    "ones": (b"\xff" * 32, 0x62A8AB43),
    "incrementing": (bytes(range(32)), 0x46DD794E),
    "decrementing": (bytes(range(31, -1, -1)), 0x113FDB5C),
}


@pytest.mark.parametrize(("data", "crc"), CRC_VECTORS.values(), ids=CRC_VECTORS.keys())
def test_crc32c_vectors(data: bytes, crc: int) -> None:
    assert sctp.crc32c(data) == crc


def test_init_and_init_ack_round_trip() -> None:
    init = sctp.packet(src_port=4000, dst_port=9999, vtag=0, chunk=sctp.init_chunk(77, 5))
    parsed = sctp.parse(init)
    assert parsed == sctp.Parsed(4000, 9999, 0, sctp.INIT, 77, True)
    assert len(init) == 12 + 20
    ack = sctp.packet(
        src_port=9999, dst_port=4000, vtag=77, chunk=sctp.init_ack_chunk(88, 1, b"abcde")
    )
    assert sctp.parse(ack) == sctp.Parsed(9999, 4000, 77, sctp.INIT_ACK, 88, True)
    assert len(ack) % 4 == 0
    corrupt = ack[:-1] + bytes([ack[-1] ^ 1])
    assert sctp.parse(corrupt) is not None and not sctp.parse(corrupt).checksum_ok  # type: ignore[union-attr]
    ipv4_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(ack), 0, 0, 64, 132, 0, b"", b"")
    assert sctp.strip_ipv4_header(ipv4_header + ack) == ack
    assert sctp.parse(b"short") is None
