"""The host bundle: exactly the CNI path, self-contained, small, and its glibc floor.

A bundle is written once per module into a tmp bin folder (``launcher``
``bundled=True``).  Its interpreter runs with ``-I -S``: its ``sys.path`` is
the bundle's own ``lib/python3.X`` and ``site``, nothing of this machine's
Python, so a module the bundle lacks fails the import here as it would on a
node.  The chroot test (tests/kernel/test_bundle_chroot.py) adds the other
half: nothing of the machine's libraries either.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from firewall_install import bundle, elf, launcher, modules

FIXTURES = Path(__file__).parent.parent / "fixtures" / "conflists"
PRIMARY = "10-containerd-net.conflist"
MAX_FILES, MAX_BYTES = 300, 20 * 1024 * 1024


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bin")
    launcher.install_executable(str(folder), bundled=True)
    return folder


def home_of(bin_dir: Path) -> Path:
    (home,) = (bin_dir / "podwall.d").iterdir()
    return home


def in_bundle(home: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in the bundle's interpreter, its ``site`` first, nothing else."""
    python = next((home / "python" / "bin").iterdir())
    program = f"import sys; sys.path[:0] = [{str(home / 'site')!r}]\n{code}"
    return subprocess.run(
        [str(python), "-I", "-S", "-c", program],
        env={"LD_LIBRARY_PATH": str(home / "python" / "lib"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_plugin(executable: Path, command: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(executable)],
        input=stdin,
        env={"CNI_COMMAND": command, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_small_no_duplicates(bin_dir: Path) -> None:
    """At most 300 files, 20 MB (checked when the interpreter is stripped: this
    machine's may carry debug info; ``make test-image`` checks the image's)."""
    files = [p for p in (bin_dir / "podwall.d").rglob("*") if p.is_file()]
    assert len(files) <= MAX_FILES, len(files)
    unstripped = [p for p in files if (info := elf.read(str(p))) is not None and info.debug_info]
    if not unstripped:  # the image's interpreter is stripped, like the official one
        assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    digests: dict[str, list[Path]] = {}
    for path in files:
        if path.stat().st_size:
            digests.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path)
    assert [paths for paths in digests.values() if len(paths) > 1] == []
    assert not [p for p in files if p.suffix == ".py" and p.name != "launch.py"], "sourceless"


def test_every_module_the_cni_path_loads_comes_from_the_bundle(bin_dir: Path) -> None:
    home = home_of(bin_dir)
    inside, _ = modules.package_modules(bundle.package_root())
    entry = {"firewall_plugin.cni", "firewall_plugin.commands", "firewall_plugin.config"}
    assert entry | {"firewall_plugin.backends.restore"} <= inside, "the verbs and a backend"
    names = sorted(inside)
    code = (
        f"for name in {names!r}: __import__(name)\n"
        "import json; print(json.dumps({n: getattr(m, '__file__', None) "
        "for n, m in sys.modules.items()}))"
    )
    done = in_bundle(home, code)
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout)
    outside = {n: f for n, f in loaded.items() if f and not f.startswith(str(home))}
    assert outside == {}


def test_a_module_missing_from_the_bundle_fails_the_plugin(bin_dir: Path, tmp_path: Path) -> None:
    """The isolation is real: nothing falls back to this machine's Python."""
    copy = tmp_path / "bin"
    shutil.copytree(bin_dir, copy, symlinks=True)
    assert run_plugin(copy / "podwall", "VERSION", "{}").returncode == 0
    (home_of(copy) / "site" / "firewall_plugin" / "commands.pyc").unlink()
    done = run_plugin(copy / "podwall", "VERSION", "{}")
    assert done.returncode != 0 and "commands" in done.stderr


def test_a_foreign_import_on_the_cni_path_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "src"
    shutil.copytree(Path(bundle.package_root()) / "firewall_plugin", root / "firewall_plugin")
    result = root / "firewall_plugin" / "result.py"
    result.write_text(result.read_text() + "\n\ndef _late() -> None:\n    import yaml  # noqa\n")
    with pytest.raises(modules.ModulesError, match="yaml"):
        modules.closure(sys.executable, str(root))


def test_left_out_modules_are_listed(bin_dir: Path) -> None:
    manifest = json.loads((home_of(bin_dir) / "manifest.json").read_text())
    assert manifest["id"] == home_of(bin_dir).name
    left_out = manifest["leftOut"]
    assert any(line.startswith("firewall_plugin.backends.iptc_backend") for line in left_out)
    for dest, source in bundle.plan().files:
        if source.endswith(".so"):
            info = elf.read(source)
            assert info is not None, dest
            assert all(bundle.is_glibc_or_python(n) for n in info.needed), dest


# ---------------------------------------------------------------- glibc floor


def readelf_needs(path: Path) -> dict[str, tuple[str, ...]]:
    """``readelf -V``'s version needs of ``path``: library → version names."""
    text = subprocess.run(
        ["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    needs: dict[str, list[str]] = {}
    current = ""
    section = text.split("Version needs section", 1)[-1] if "Version needs" in text else ""
    for line in section.splitlines():
        file_match = re.search(r"File: (\S+)", line)
        if file_match:
            current = file_match.group(1)
            needs[current] = []
        name_match = re.search(r"Name: (\S+)", line)
        if name_match and current:
            needs[current].append(name_match.group(1))
    return {lib: tuple(names) for lib, names in needs.items()}


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
def test_elf_reader_agrees_with_readelf(bin_dir: Path) -> None:
    checked = 0
    for path in sorted(home_of(bin_dir).rglob("*")):
        info = elf.read(str(path)) if path.is_file() else None
        if info is None:
            continue
        mine = {lib: tuple(sorted(v)) for lib, v in info.versions_needed.items()}
        theirs = {lib: tuple(sorted(v)) for lib, v in readelf_needs(path).items()}
        assert mine == theirs, path
        checked += 1
    assert checked >= 3, "the interpreter, libpython and extension modules"


def test_glibc_command_prints_the_floor(bin_dir: Path) -> None:
    home = home_of(bin_dir)
    done = subprocess.run(
        [sys.executable, "-m", "podwall", "cni", "glibc", "-v", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    *lines, last = done.stdout.splitlines()
    floor = json.loads((home / "manifest.json").read_text())["glibc"]
    assert last == f"glibc >= {floor}"
    assert f"GLIBC_{floor}" in {line.split("\t")[0] for line in lines}
    assert all(line.split("\t")[1].startswith(str(home)) for line in lines)


def fake_libc(path: Path, versions: list[str]) -> None:
    """A minimal ELF64 file whose ``.gnu.version_d`` defines ``versions`` (a host's libc)."""
    strtab = b"\0" + b"".join(v.encode() + b"\0" for v in ["libc.so.6", *versions])
    offsets = {v: strtab.index(v.encode() + b"\0") for v in ["libc.so.6", *versions]}
    names = ["libc.so.6", *versions]
    verdef = b"".join(
        struct.pack("<HHHHIII", 1, 0, i + 1, 1, 0, 20, 0 if i == len(names) - 1 else 28)
        + struct.pack("<II", offsets[name], 0)
        for i, name in enumerate(names)
    )
    strtab_at, verdef_at = 64, 64 + len(strtab)
    shoff = verdef_at + len(verdef)
    header = b"\x7fELF\x02\x01\x01" + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 1)
    sections = bytes(64)
    sections += struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, strtab_at, len(strtab), 0, 0, 1, 0)
    verdef_section = (0, 0x6FFFFFFD, 0, 0, verdef_at, len(verdef), 1, len(names), 8, 0)
    sections += struct.pack("<IIQQQQIIQQ", *verdef_section)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + strtab + verdef + sections)


def host_install(tmp_path: Path, host: Path) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    return host_install_with(tmp_path, host)


def host_install_with(
    tmp_path: Path, host: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """``cni install --bundle --host-root host`` into fresh folders under ``tmp_path``."""
    bin_dir, conf = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir(parents=True)
    conf.mkdir()
    shutil.copy(FIXTURES / PRIMARY, conf / PRIMARY)
    command = [sys.executable, "-m", "podwall", "cni", "install", "--bundle", "--host-root"]
    done = subprocess.run(
        [*command, str(host), "--bin-dir", str(bin_dir), "--conf-dir", str(conf), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, bin_dir, conf


def test_install_refuses_a_host_with_an_older_glibc(tmp_path: Path) -> None:
    host = tmp_path / "host"
    versions = [f"GLIBC_2.{n}" for n in range(2, 29)]
    fake_libc(host / "usr" / "lib64" / "libc-2.28.so", versions)
    (host / "lib64").symlink_to("usr/lib64")
    (host / "usr" / "lib64" / "libc.so.6").symlink_to("libc-2.28.so")
    assert elf.read(str(host / "usr" / "lib64" / "libc-2.28.so")) is not None
    done, bin_dir, conf = host_install(tmp_path, host)
    assert done.returncode == 1, done
    floor = json.loads(bundle.manifest(bundle.plan()))["glibc"]
    assert f"the host's glibc is 2.28 ({host}/usr/lib64/libc-2.28.so)" in done.stderr
    errors = [line for line in done.stderr.splitlines() if ": warning: " not in line]
    assert f"needs >= {floor}" in done.stderr and len(errors) == 1
    assert os.listdir(bin_dir) == []
    assert (conf / PRIMARY).read_bytes() == (FIXTURES / PRIMARY).read_bytes()


def test_install_refuses_a_host_without_glibc(tmp_path: Path) -> None:
    (tmp_path / "host" / "lib").mkdir(parents=True)
    done, bin_dir, _ = host_install(tmp_path, tmp_path / "host")
    assert done.returncode == 1 and "no glibc found on the host" in done.stderr
    assert os.listdir(bin_dir) == []


def test_install_accepts_this_machine(tmp_path: Path) -> None:
    done, bin_dir, _ = host_install(tmp_path, Path("/"))
    assert done.returncode == 0, done.stderr
    assert (bin_dir / "podwall").exists()


def test_host_tools_missing_for_the_chosen_backend_are_named(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "usr" / "sbin").mkdir(parents=True)
    done, _, _ = host_install_with(tmp_path, host, "--backend", "iptables-legacy")
    # the host has no glibc either: refused for that, but the tools warning comes first
    assert "backend iptables-legacy runs the host's iptables-legacy-restore" in done.stderr
    assert "apt-get install iptables ipset" in done.stderr
    for tool in ("iptables-legacy-restore", "ip6tables-legacy-restore", "ipset"):
        (host / "usr" / "sbin" / tool).touch()
    done, _, _ = host_install_with(tmp_path / "again", host, "--backend", "iptables-legacy")
    assert "runs the host's" not in done.stderr


def test_the_bundle_refuses_the_iptc_backend(tmp_path: Path) -> None:
    done, bin_dir, _ = host_install_with(tmp_path, Path("/"), "--backend", "iptc")
    assert done.returncode == 1 and "does not carry the iptc backend" in done.stderr
    assert os.listdir(bin_dir) == []


def test_a_missing_tool_says_what_to_do(tmp_path: Path) -> None:
    config = {
        "cniVersion": "1.1.0",
        "name": "n",
        "type": "podwall",
        "backend": "iptables-nft",
        "stateDir": str(tmp_path / "state"),
        "runDir": str(tmp_path / "run"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "firewall_plugin"],
        input=json.dumps(config),
        env={"CNI_COMMAND": "STATUS", "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    answer = json.loads(done.stdout)
    assert done.returncode == 1 and answer["code"] == 50
    assert "iptables-nft-restore: not found on PATH" in answer["msg"]
    assert "install them on the node" in answer["msg"] and "nftables" in answer["msg"]
