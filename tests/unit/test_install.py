"""``firewall_install.conf``: chaining podwall into real primary CNI configs.

Every test works on a copy of a fixture in a tmp conf dir and asserts on the
files as a container runtime would read them (first CNI file by name).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from firewall_install import conf as install
from firewall_install.errors import InstallError
from firewall_plugin import atomicfile, conflist

FIXTURES = Path(__file__).parent.parent / "fixtures" / "conflists"
#: the shapes in the wild say 0.3.1; these tests are about the file surgery
ANY_VERSION = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
ENTRY = {"type": "podwall", "podDefault": "deny", "markBit": 12}

#: fixture → the primary file's name after install
PRIMARIES = {
    "10-calico.conflist": "10-calico.conflist",
    "10-flannel.conflist": "10-flannel.conflist",
    "10-kindnet.conflist": "10-kindnet.conflist",
    "10-containerd-net.conflist": "10-containerd-net.conflist",
    "10-bridge.conf": "10-bridge.conflist",
}


def conf_dir_with(tmp_path: Path, *names: str) -> Path:
    conf = tmp_path / "net.d"
    conf.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / name, conf / name)
    return conf


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def original_conflist(name: str) -> dict[str, Any]:
    return conflist.as_conflist(load(FIXTURES / name))


def first_file(conf: Path) -> str:
    return conflist.conf_names(str(conf))[0]


def setup(conf: Path) -> install.Report:
    return install.install_conf(str(conf), ENTRY, versions=ANY_VERSION)


def leftovers(conf: Path) -> list[str]:
    return sorted(name for name in os.listdir(conf) if name.startswith("."))


@pytest.mark.parametrize("fixture", sorted(PRIMARIES), ids=sorted(PRIMARIES))
def test_install_chains_exactly_one_entry_last(tmp_path: Path, fixture: str) -> None:
    conf = conf_dir_with(tmp_path, fixture, "99-other.conflist")
    report = setup(conf)
    assert report.actions, report
    primary = PRIMARIES[fixture]
    assert first_file(conf) == primary
    written = load(conf / primary)
    before = original_conflist(fixture)
    assert written["plugins"][-1] == ENTRY
    assert conflist.podwall_entries(written) == [ENTRY]
    assert written["plugins"][:-1] == before["plugins"], "other entries untouched"
    assert written["cniVersion"] == before["cniVersion"]
    assert written["name"] == before["name"]
    assert (conf / "99-other.conflist").read_bytes() == (
        FIXTURES / "99-other.conflist"
    ).read_bytes()
    assert leftovers(conf) == []


@pytest.mark.parametrize("fixture", sorted(PRIMARIES), ids=sorted(PRIMARIES))
def test_install_twice_is_install_once(tmp_path: Path, fixture: str) -> None:
    conf = conf_dir_with(tmp_path, fixture)
    setup(conf)
    path = conf / PRIMARIES[fixture]
    text, stamp = path.read_bytes(), path.stat().st_mtime_ns
    again = setup(conf)
    assert again.actions == []
    assert path.read_bytes() == text and path.stat().st_mtime_ns == stamp, "nothing rewritten"


@pytest.mark.parametrize("fixture", sorted(PRIMARIES), ids=sorted(PRIMARIES))
def test_uninstall_gives_the_plugin_list_back(tmp_path: Path, fixture: str) -> None:
    conf = conf_dir_with(tmp_path, fixture)
    setup(conf)
    report = install.uninstall_conf(str(conf))
    assert report.actions and not report.warnings
    assert load(conf / PRIMARIES[fixture]) == original_conflist(fixture)
    assert install.uninstall_conf(str(conf)).actions == [], "second uninstall is a no-op"


def test_changed_settings_replace_the_entry_in_place(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path)
    network = original_conflist("10-calico.conflist")
    network["plugins"].insert(1, {"type": "podwall", "podDefault": "allow"})
    (conf / "10-calico.conflist").write_text(json.dumps(network))
    setup(conf)
    plugins = load(conf / "10-calico.conflist")["plugins"]
    assert [p["type"] for p in plugins] == ["calico", "podwall", "portmap", "bandwidth"]
    assert plugins[1] == ENTRY


@pytest.mark.parametrize(
    "positions",
    [[0], [1, 3], [0, 2, 4]],
    ids=["first-needs-prevResult", "stacked-twice", "stacked-three-times"],
)
def test_misplaced_or_stacked_entries_collapse_to_one_last(
    tmp_path: Path, positions: list[int]
) -> None:
    conf = conf_dir_with(tmp_path)
    network = original_conflist("10-containerd-net.conflist")
    for position in positions:
        network["plugins"].insert(position, {"type": "podwall", "backend": "iptc"})
    (conf / "10-containerd-net.conflist").write_text(json.dumps(network))
    setup(conf)
    plugins = load(conf / "10-containerd-net.conflist")["plugins"]
    assert [p["type"] for p in plugins] == ["bridge", "portmap", "podwall"]
    assert plugins[-1] == ENTRY


BROKEN = {
    "not-json": '{"cniVersion": "1.0.0", "plugins": [',
    "json-array": '[{"type": "bridge"}]',
    "empty-plugins": '{"cniVersion": "1.0.0", "name": "n", "plugins": []}',
    "plugin-without-type": '{"cniVersion": "1.0.0", "name": "n", "plugins": [{"bridge": "x"}]}',
    "no-plugins-no-type": '{"cniVersion": "1.0.0", "name": "n"}',
    "plugins-not-a-list": '{"cniVersion": "1.0.0", "name": "n", "plugins": {"type": "x"}}',
}


@pytest.mark.parametrize("text", list(BROKEN.values()), ids=list(BROKEN))
def test_unusable_primary_is_refused_and_left_as_is(tmp_path: Path, text: str) -> None:
    conf = conf_dir_with(tmp_path, "99-other.conflist")
    (conf / "10-broken.conflist").write_text(text)
    with pytest.raises(InstallError, match=r"10-broken\.conflist"):
        setup(conf)
    assert (conf / "10-broken.conflist").read_text() == text
    assert sorted(os.listdir(conf)) == ["10-broken.conflist", "99-other.conflist"]


@pytest.mark.parametrize("make", ["empty", "missing", "only-other-files"])
def test_no_config_is_an_error(tmp_path: Path, make: str) -> None:
    conf = tmp_path / "net.d"
    if make != "missing":
        conf.mkdir()
    if make == "only-other-files":
        (conf / "calico-kubeconfig").write_text("apiVersion: v1\n")
        (conf / "10-calico.conflist.bak").write_text("{}")
        (conf / "00-dir.conflist").mkdir()
    with pytest.raises(InstallError, match=r"no CNI config|does not exist"):
        setup(conf)


def test_unsupported_cni_version_is_refused(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "10-containerd-net.conflist")
    before = (conf / "10-containerd-net.conflist").read_bytes()
    with pytest.raises(InstallError, match=r"cniVersion '1\.0\.0'"):
        install.install_conf(str(conf), ENTRY, versions=("1.1.0",))
    assert (conf / "10-containerd-net.conflist").read_bytes() == before


def test_conf_conversion_removes_the_old_file_and_keeps_the_mode(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "10-bridge.conf", "99-other.conflist")
    os.chmod(conf / "10-bridge.conf", 0o600)
    setup(conf)
    assert sorted(os.listdir(conf)) == ["10-bridge.conflist", "99-other.conflist"]
    assert (conf / "10-bridge.conflist").stat().st_mode & 0o777 == 0o600
    plugins = load(conf / "10-bridge.conflist")["plugins"]
    assert "cniVersion" not in plugins[0] and "name" not in plugins[0]


def test_conf_conversion_overwrites_a_shadowed_conflist_of_the_same_stem(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "10-bridge.conf")
    (conf / "10-bridge.conflist").write_text('{"stale": true}')
    setup(conf)
    assert os.listdir(conf) == ["10-bridge.conflist"]
    assert conflist.podwall_entries(load(conf / "10-bridge.conflist")) == [ENTRY]


def test_conf_conversion_refuses_when_another_file_would_come_first(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "10-bridge.conf")
    shutil.copy(FIXTURES / "99-other.conflist", conf / "10-bridge.conf-other.json")
    with pytest.raises(InstallError, match=r"10-bridge.conf-other.json become the first"):
        setup(conf)
    assert sorted(os.listdir(conf)) == ["10-bridge.conf", "10-bridge.conf-other.json"]


def test_uninstall_cleans_every_file_and_leaves_unparsable_ones(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "10-flannel.conflist", "99-other.conflist")
    setup(conf)
    other = install.chained(load(conf / "99-other.conflist"), ENTRY)
    (conf / "99-other.conflist").write_text(json.dumps(other))
    (conf / "50-broken.conf").write_text('{"type": "podwall", ')
    report = install.uninstall_conf(str(conf))
    assert len(report.actions) == 2
    assert report.warnings and "50-broken.conf" in report.warnings[0]
    for name in ("10-flannel.conflist", "99-other.conflist"):
        assert conflist.podwall_entries(load(conf / name)) == []


def test_uninstall_without_conf_dir_succeeds_with_a_warning(tmp_path: Path) -> None:
    report = install.uninstall_conf(str(tmp_path / "absent"))
    assert report.actions == [] and report.warnings


def test_read_entry_finds_the_primary_entry(tmp_path: Path) -> None:
    conf = conf_dir_with(tmp_path, "10-kindnet.conflist")
    assert conflist.read_entry(str(conf)) is None
    setup(conf)
    assert conflist.read_entry(str(conf)) == ENTRY


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({}, None),
        ({"backend": "iptc", "denyAction": "reject", "agentTimeoutMs": 0}, None),
        ({"ensureBridgeNetfilter": False, "stateDir": "/var/lib/x"}, None),
        ({"markBit": 32}, "markBit"),
        ({"podDefault": "maybe"}, "podDefault"),
        ({"runDir": "relative/dir"}, "runDir"),
        ({"colour": "blue"}, "unknown podwall setting"),
    ],
    ids=["none", "several", "bool-and-path", "bad-mark", "bad-default", "bad-path", "unknown"],
)
def test_build_entry_validates_like_the_plugin(settings: dict[str, Any], error: str | None) -> None:
    if error is None:
        assert install.build_entry(settings) == {"type": "podwall", **settings}
    else:
        with pytest.raises(InstallError, match=error):
            install.build_entry(settings)


def test_atomic_write_refuses_when_the_file_changed_since_read(tmp_path: Path) -> None:
    path = tmp_path / "10-x.conflist"
    path.write_text("old")
    snapshot = atomicfile.read_snapshot(str(path))
    path.write_text("rewritten by the primary CNI")
    with pytest.raises(atomicfile.ConcurrentChange):
        atomicfile.atomic_write(str(path), "ours", mode=0o644, expect=snapshot)
    assert path.read_text() == "rewritten by the primary CNI"
    assert os.listdir(tmp_path) == ["10-x.conflist"], "temp file removed"
