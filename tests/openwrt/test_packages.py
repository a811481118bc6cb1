"""scripts/build-packages.sh: the .ipk files it builds without the OpenWrt SDK hold what the
Makefiles describe (control fields, conffiles, maintainer scripts, installed files), and the
netpath package's Python tree runs as it is unpacked.

The expected values are read from the Makefiles here with Python, independently of the
script's own (awk) reading, and the expected files from the repository tree.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NETPATH_MK = REPO / "openwrt" / "netpath" / "Makefile"
LUCI_MK = REPO / "luci" / "Makefile"
FILES = NETPATH_MK.parent / "files"


def make_value(path: Path, name: str) -> str:
    """`NAME:=...` with continuation lines; '+' prefixes and extra blanks dropped."""
    text = path.read_text().replace("\\\n", " ")
    match = re.search(rf"^[ \t]*{re.escape(name)}:=(.*)$", text, re.M)
    assert match, f"{path}: no {name}"
    return " ".join(word.lstrip("+") for word in match.group(1).split())


def make_define(path: Path, name: str) -> str:
    match = re.search(rf"^define {re.escape(name)}\n(.*?)^endef$", path.read_text(), re.M | re.S)
    return match.group(1) if match else ""


def read_ipk(path: Path) -> dict:
    with tarfile.open(path, "r:gz") as outer:
        assert outer.getnames() == ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
        parts = {name[2:]: outer.extractfile(name).read() for name in outer.getnames()}
    assert parts["debian-binary"] == b"2.0\n"
    result = {}
    for part in ("control", "data"):
        with tarfile.open(fileobj=io.BytesIO(parts[f"{part}.tar.gz"]), mode="r:gz") as inner:
            members = {m.name[2:]: m for m in inner.getmembers() if m.name != "./"}
            assert all(m.uid == 0 and m.gid == 0 for m in members.values())
            result[part] = {name: (m.mode & 0o7777, inner.extractfile(m).read() if m.isfile() else None)
                            for name, m in members.items()}
    return result


def control_fields(package: dict) -> dict:
    text = package["control"]["control"][1].decode()
    return dict(line.split(": ", 1) for line in text.splitlines())


def files_of(package: dict) -> dict:
    return {name: mode for name, (mode, data) in package["data"].items() if data is not None}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("packages")
    done = subprocess.run(["sh", str(REPO / "scripts" / "build-packages.sh"), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    version = f"{make_value(NETPATH_MK, 'PKG_VERSION')}-{make_value(NETPATH_MK, 'PKG_RELEASE')}"
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"luci-app-netpath_{version}_all.ipk", f"netpath_{version}_all.ipk"]
    return {"netpath": read_ipk(out / f"netpath_{version}_all.ipk"),
            "luci-app-netpath": read_ipk(out / f"luci-app-netpath_{version}_all.ipk"), "out": out}


def test_usage_error_exits_2():
    done = subprocess.run(["sh", str(REPO / "scripts" / "build-packages.sh")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "usage: sh scripts/build-packages.sh OUTDIR" in done.stderr


@pytest.mark.parametrize("name, makefile, depends", [("netpath", NETPATH_MK, "DEPENDS"),
                                                     ("luci-app-netpath", LUCI_MK, "LUCI_DEPENDS")])
def test_control_fields_are_the_makefiles(built, name, makefile, depends):
    fields = control_fields(built[name])
    assert fields["Package"] == name
    assert fields["Version"] == f"{make_value(makefile, 'PKG_VERSION')}-{make_value(makefile, 'PKG_RELEASE')}"
    assert fields["Depends"] == ", ".join(make_value(makefile, depends).split())
    assert fields["Architecture"] == "all"
    assert fields["License"] == make_value(makefile, "PKG_LICENSE")
    sizes = sum(len(data) for _, data in built[name]["data"].values() if data is not None)
    assert sizes <= int(fields["Installed-Size"]) < sizes + 4096 * (len(built[name]["data"]) + 1)
    control = built[name]["control"]
    conffiles = make_define(makefile, f"Package/{name}/conffiles")
    assert (control["conffiles"][1].decode() if "conffiles" in control else "") == conffiles
    # OpenWrt's generated scripts: default_postinst (uci-defaults, enable, start) and
    # default_prerm (stop, disable) from /lib/functions.sh, then the package's own part.
    assert b"\ndefault_postinst $0 $@\n" in control["postinst"][1]
    assert b"\ndefault_prerm $0 $@\n" in control["prerm"][1]
    for script in ("postinst", "prerm"):
        assert control[script][0] == 0o755
        own = make_define(makefile, f"Package/{name}/{script}").replace("$$", "$")
        if own:
            assert control[f"{script}-pkg"][1].decode() == own


def test_netpath_depends_on_what_runs_and_nothing_else():
    depends = make_value(NETPATH_MK, "DEPENDS").split()
    assert "conntrack" in depends  # flush_conntrack: `conntrack -D ... --mark`
    assert "python3-ctypes" in depends  # compiler/bundle.py (renameat2)
    # Every python3-* package is imported at module level by the agent or the compiler, and
    # every module they import at module level outside the standard library has its package.
    packages = {"asyncio": "python3-asyncio", "logging": "python3-logging", "ctypes": "python3-ctypes",
                "jinja2": "python3-jinja2", "voluptuous": "python3-voluptuous"}
    imported = set()
    for path in [*(REPO / "agent").glob("*.py"), *(REPO / "compiler").glob("*.py")]:
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports are optional
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"netpath", "__future__"}
    assert third_party <= set(packages), third_party
    assert {d for d in depends if d.startswith("python3-") and d != "python3-light"} == \
        {packages[m] for m in imported if m in packages}
    for tool, package in (("\"nft\"", "nftables-json"), ("\"ip\"", "ip-full"), ("\"unshare\"", "unshare")):
        assert package in depends
        assert any(tool in p.read_text() for p in [*(REPO / "agent").glob("*.py"), *(REPO / "compiler").glob("*.py")])


def test_netpath_holds_the_files_the_makefile_installs(built):
    files = files_of(built["netpath"])
    install = make_define(NETPATH_MK, "Package/netpath/install")
    expected = {}
    for kind, source, target in re.findall(r"\$\(INSTALL_(BIN|DATA|CONF)\) \./files/(\S+) \$\(1\)/(\S+)", install):
        assert source == target, (source, target)
        expected[target] = {"BIN": 0o755, "DATA": 0o644, "CONF": 0o600}[kind]
    # Everything under files/ is installed, and at the same path.
    assert set(expected) == {str(p.relative_to(FILES)) for p in FILES.rglob("*") if p.is_file()}
    for part in ("compiler", "agent", "templates"):
        assert f"$(NETPATH_SOURCE_DIR)/{part}" in install
        for path in (REPO / part).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                # $(CP) keeps the mode (agent/rpcd.py is executable).
                expected[f"usr/lib/netpath/netpath/{path.relative_to(REPO)}"] = \
                    0o755 if path.stat().st_mode & 0o100 else 0o644
    assert files == expected
    for name in expected:
        if name.startswith("etc/") or name.startswith("lib/"):
            assert built["netpath"]["data"][name][1] == (FILES / name).read_bytes()
    assert files["lib/upgrade/keep.d/netpath"] == 0o644
    assert built["netpath"]["data"]["lib/upgrade/keep.d/netpath"][1] == b"/etc/netpath/hooks.d/\n"


def test_the_unpacked_netpath_runs_from_usr_lib_netpath(built, tmp_path):
    """The package's tree is importable as it is and checks the shipped config (enabled)."""
    root = tmp_path / "root"
    for name, (mode, data) in built["netpath"]["data"].items():
        if data is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    config = tmp_path / "netpath"
    config.write_text((root / "etc/config/netpath").read_text().replace("option enabled '0'", "option enabled '1'", 1))
    # The launcher's own code, with its /usr/lib/netpath pointed at the unpacked tree.
    launcher = (root / "usr/bin/netpath").read_text().replace('"/usr/lib/netpath"', repr(str(root / "usr/lib/netpath")))
    assert launcher != (root / "usr/bin/netpath").read_text()
    probe = launcher.replace("sys.exit(main())",
                             "import netpath.compiler\nprint(netpath.compiler.__file__)\nsys.exit(main())")
    done = subprocess.run([sys.executable, "-I", "-c", probe, "check", "--format", "uci", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(root / "usr/lib/netpath/netpath/compiler/__init__.py")
    assert "valid" in done.stdout


def test_luci_app_holds_htdocs_under_www_and_root_at_the_top(built):
    files = files_of(built["luci-app-netpath"])
    luci = REPO / "luci"
    expected = {f"www/{p.relative_to(luci / 'htdocs')}": p for p in (luci / "htdocs").rglob("*") if p.is_file()}
    expected |= {str(p.relative_to(luci / "root")): p for p in (luci / "root").rglob("*") if p.is_file()}
    assert set(files) == set(expected)
    for name, path in expected.items():
        assert built["luci-app-netpath"]["data"][name][1] == path.read_bytes()
        assert files[name] == (0o755 if path.stat().st_mode & 0o100 else 0o644)
    assert files["usr/libexec/rpcd/luci.netpath"] == 0o755  # rpcd runs only executable plugins
    assert files["etc/uci-defaults/40_luci-netpath"] == 0o755
    assert b"rm -f /tmp/luci-indexcache" in built["luci-app-netpath"]["control"]["postinst-pkg"][1]


def test_the_build_is_reproducible(built, tmp_path):
    done = subprocess.run(["sh", str(REPO / "scripts" / "build-packages.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (built["out"] / path.name).read_bytes(), path.name
