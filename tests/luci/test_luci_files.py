"""luci-app-netpath's files: JSON that loads and agrees with itself, JavaScript that parses
and lints, a menu whose views exist, ACLs that name the plugin's real methods, and a
package Makefile in luci.mk form.

The lint uses ESLint, installed on demand with npm into tests/luci/node_modules (git-ignored;
the version is pinned in tests/luci/package.json). Without npm the lint is skipped with the
reason; `node --check` still runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
APP = REPO / "luci"
RESOURCES = APP / "htdocs" / "luci-static" / "resources"
PLUGIN = APP / "root" / "usr" / "libexec" / "rpcd" / "luci.netpath"
MENU = APP / "root" / "usr" / "share" / "luci" / "menu.d" / "luci-app-netpath.json"
ACL = APP / "root" / "usr" / "share" / "rpcd" / "acl.d" / "luci-app-netpath.json"
RUNTIME = HERE / "harness" / "runtime"
ESLINT = HERE / "node_modules" / ".bin" / "eslint"

APP_JS = sorted(RESOURCES.rglob("*.js"))
ALL_JS = APP_JS + sorted(RUNTIME.glob("*.js"))
JSON_FILES = sorted(APP.rglob("*.json")) + [HERE / "package.json"]


def plugin_list() -> dict:
    proc = subprocess.run(["busybox", "sh", str(PLUGIN), "list"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_app_has_files_to_check():
    names = {p.relative_to(RESOURCES).as_posix() for p in APP_JS}
    for view in ("overview", "interfaces", "members", "policies", "rules", "diagnostics"):
        assert f"view/netpath/{view}.js" in names
    assert MENU.is_file() and ACL.is_file()


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_json_loads_without_duplicate_keys(path):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"{path}: duplicate keys {keys}"
        return dict(pairs)

    with open(path) as handle:
        assert isinstance(json.load(handle, object_pairs_hook=no_duplicates), dict)


@pytest.mark.parametrize("path", ALL_JS, ids=lambda p: str(p.relative_to(REPO)))
def test_javascript_parses(path, tmp_path):
    """`node --check`; views end in a top-level `return`, which LuCI's loader wraps in a
    function, so the check wraps them the same way."""
    wrapped = tmp_path / path.name
    wrapped.write_text("(function() {\n" + path.read_text() + "\n});\n")
    proc = subprocess.run(["node", "--check", str(wrapped)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_views_start_like_luci_views():
    for path in APP_JS:
        text = path.read_text()
        assert text.startswith("'use strict';\n"), path
        pragmas = re.findall(r"^'require ([a-z.]+)(?: as ([a-z]+))?';$", text, re.M)
        if "/view/" in path.as_posix():
            assert ("view", "") in pragmas, f"{path.name} does not require view"
            assert re.search(r"^return view\.extend\(\{$", text, re.M), path.name
        # every module a file uses must be required by it (the lint only knows the names)
        for module in ("form", "rpc", "uci", "ui", "poll", "dom", "schema"):
            used = re.search(rf"\b{module}\.[A-Za-z]", text)
            required = any(module in (name.split(".")[-1], alias) for name, alias in pragmas)
            assert not used or required, f"{path.name} uses {module} without 'require'"


def _eslint_ready() -> "str | None":
    """Install ESLint into tests/luci/node_modules when missing; None, or why not."""
    if ESLINT.exists():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed (Debian: apt-get install npm); cannot install ESLint"
    proc = subprocess.run([npm, "install", "--prefix", str(HERE), "--no-package-lock", "--no-audit", "--no-fund",
                           "--loglevel=error"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not ESLINT.exists():
        return f"npm could not install ESLint: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def eslint():
    reason = _eslint_ready()
    if reason:
        pytest.skip(reason)

    def run(args, stdin=None):
        return subprocess.run([str(ESLINT), "--config", str(HERE / "eslint.config.mjs"), *args], cwd=REPO,
                              input=stdin, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "NO_COLOR": "1"})
    return run


def test_eslint_passes(eslint):
    proc = eslint([str(p.relative_to(REPO)) for p in ALL_JS])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_eslint_catches_what_it_should(eslint):
    """The lint can fail: an undeclared name and a jsmin-unsafe regex after return."""
    bad = "'use strict';\n'require view';\nfunction f(x) {\n\treturn /a+/.test(x);\n}\nreturn view.extend({ x: f(undeclared) });\n"
    proc = eslint(["--stdin", "--stdin-filename", "luci/htdocs/luci-static/resources/view/netpath/bad.js"], stdin=bad)
    assert proc.returncode == 1
    assert "'undeclared' is not defined" in proc.stdout
    assert "jsmin" in proc.stdout


def test_menu_points_at_views_that_exist():
    menu = json.loads(MENU.read_text())
    acl_groups = set(json.loads(ACL.read_text()))
    for node, entry in menu.items():
        assert node.startswith("admin/"), node
        action = entry["action"]
        if action["type"] == "view":
            assert (RESOURCES / "view" / f"{action['path']}.js").is_file(), f"{node}: no view {action['path']}"
        for group in entry.get("depends", {}).get("acl", []):
            assert group in acl_groups, f"{node} depends on unknown ACL group {group}"
    parents = {node for node, entry in menu.items() if entry["action"]["type"] == "firstchild"}
    for parent in parents:
        assert any(n.startswith(parent + "/") for n in menu), f"{parent} has no children"


def test_acl_names_only_the_plugins_methods_and_keeps_config_out_of_the_status_group():
    acl = json.loads(ACL.read_text())
    methods = set(plugin_list())
    granted = set()
    for group, spec in acl.items():
        assert set(spec) <= {"description", "read", "write"}, group
        for level in ("read", "write"):
            for obj, names in spec.get(level, {}).get("ubus", {}).items():
                assert obj == "luci.netpath"
                assert set(names) <= methods, f"{group}.{level}: unknown methods {set(names) - methods}"
                granted.update(names)
    assert granted == methods, f"methods no group grants: {methods - granted}"
    status = acl["luci-app-netpath-status"]
    # read-only users of the status page see status, not config
    assert "uci" not in status["read"] and "uci" not in status.get("write", {})
    assert set(status["read"]["ubus"]["luci.netpath"]) <= {"status", "interfaces", "metrics", "history"}
    config = acl["luci-app-netpath"]
    assert config["read"]["uci"] == ["netpath"] and config["write"]["uci"] == ["netpath"]
    # acting on the router (ping, enable/disable) needs write access
    for action in ("ping", "enable", "disable"):
        assert all(action not in spec["read"]["ubus"]["luci.netpath"] for spec in acl.values())


def test_rpcd_plugin_is_an_executable_shell_script():
    # busybox ash, not Python: rpcd starts the program for every call, and LuCI polls
    # (the reads are served from the agent's snapshot files; bench/bench_luci_poll.py).
    assert os.access(PLUGIN, os.X_OK), "rpcd only runs plugins with the owner-execute bit"
    assert PLUGIN.read_text().startswith("#!/bin/sh\n")
    syntax = subprocess.run(["busybox", "sh", "-n", str(PLUGIN)], capture_output=True, text=True, timeout=30)
    assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run(["shellcheck", str(PLUGIN)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
    mode = subprocess.run(["git", "ls-files", "-s", str(PLUGIN.relative_to(REPO))], cwd=REPO, capture_output=True,
                          text=True, timeout=30).stdout.split()
    if mode:  # committed: git must carry the bit, luci.mk copies modes as they are
        assert mode[0] == "100755"


def test_makefile_is_a_luci_mk_package_depending_on_netpath():
    text = (APP / "Makefile").read_text()
    assert re.search(r"^include \$\(TOPDIR\)/feeds/luci/luci\.mk$", text, re.M)
    assert re.search(r"^LUCI_NAME:=luci-app-netpath$", text, re.M)
    depends = re.search(r"^LUCI_DEPENDS:=(.*)$", text, re.M).group(1).split()
    assert "+netpath" in depends and "+luci-base" in depends
    assert re.search(r"^PKG_VERSION:=\d+\.\d+\.\d+$", text, re.M), "apk needs X.Y.Z"
    assert re.search(r"^PKG_RELEASE:=\d+$", text, re.M)
    assert re.search(r"^LUCI_PKGARCH:=all$", text, re.M)
