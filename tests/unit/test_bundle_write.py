"""compiler/bundle.py: `-o` writes only where a bundle belongs, and a failed write leaves
the previous bundle as it was with nothing half-written beside it.

Real file systems: disk full and read-only are a small tmpfs of the test's own, mounted
inside its temporary directory; permission denied is the compiler run as `nobody`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
NETPATH = [sys.executable, "-m", "netpath.compiler.cli"]
TIMEOUT = 120


def compile_(config, out, *extra, user=None) -> subprocess.CompletedProcess:
    argv = NETPATH + ["compile", str(config), "-o", str(out), "--no-check", *extra]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)


def everything(root: Path) -> dict:
    """Every path under `root` (symlinks as their target) -> its bytes, None for a directory."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = ("link", os.readlink(path))
        elif path.is_dir():
            out[str(path)] = None
        else:
            out[str(path)] = path.read_bytes()
    return out


def refused(proc, status: int, *words) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def test_a_regular_file_is_never_replaced(tmp_path):
    config = tmp_path / "router.uci"
    shutil.copy(EXAMPLES / "seed.uci", config)
    before = everything(tmp_path)
    line = refused(compile_(config, config), 2, str(config), "not a NetPath bundle", "choose another")
    assert "file" in line
    assert everything(tmp_path) == before


def test_a_directory_of_other_files_is_refused_and_named_by_what_it_holds(tmp_path):
    etc = tmp_path / "etc"
    (etc / "hooks.d").mkdir(parents=True)
    (etc / "network").write_text("config interface 'lan'\n")
    (etc / "hooks.d" / "up.sh").write_text("#!/bin/sh\n")
    before = everything(tmp_path)
    line = refused(compile_(EXAMPLES / "seed.uci", etc), 2)
    assert line == f"{etc} is not a NetPath bundle (it holds hooks.d/, network); choose another directory"
    assert everything(tmp_path) == before


def test_dot_in_a_config_directory_is_refused(tmp_path):
    (tmp_path / "netpath.toml").write_text((EXAMPLES / "seed.toml").read_text())
    for name in ("a", "b", "c", "d"):
        (tmp_path / name).write_text(name)
    before = everything(tmp_path)
    proc = subprocess.run(NETPATH + ["compile", "netpath.toml", "-o", ".", "--no-check"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert refused(proc, 2) == ". is not a NetPath bundle (it holds a, b, c ...); choose another directory"
    assert everything(tmp_path) == before


def test_a_foreign_manifest_json_does_not_make_a_bundle(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my app", "start_url": "/"}')
    before = everything(tmp_path)
    refused(compile_(EXAMPLES / "seed.uci", web), 2, "holds manifest.json")
    assert everything(tmp_path) == before


@pytest.mark.parametrize("extra", [("--dry-run",), ("--diff", "--dry-run")])
def test_dry_run_and_diff_refuse_the_same_places(tmp_path, extra):
    (tmp_path / "keep").write_text("mine")
    before = everything(tmp_path)
    refused(compile_(EXAMPLES / "seed.uci", tmp_path, *extra), 2, "not a NetPath bundle")
    assert everything(tmp_path) == before


def test_a_missing_or_empty_directory_or_a_bundle_is_written(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new" / "bundle", empty):
        proc = compile_(EXAMPLES / "seed.uci", out)
        assert proc.returncode == 0, proc.stderr
        assert (out / "manifest.json").is_file()
    proc = compile_(EXAMPLES / "three_wan_balanced.uci", empty)  # a bundle now: replaced
    assert proc.returncode == 0, proc.stderr
    assert (empty / "states" / "balanced").is_dir()


def test_a_symlink_loop_is_one_line_exit_1(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    before = everything(tmp_path)
    for out in (tmp_path / "loop", tmp_path / "loop" / "bundle"):
        refused(compile_(EXAMPLES / "seed.uci", out), 1, str(out), "cannot write the bundle",
                "Too many levels of symbolic links")
    assert everything(tmp_path) == before


@pytest.fixture
def small_fs(tmp_path):
    """A 128 KiB tmpfs: room for the seed bundle, not for all_modes' 55 files beside it."""
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=755", "netpath-test", str(mount)],
                   check=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


def _previous_bundle(mount: Path) -> tuple:
    out = mount / "bundle"
    proc = compile_(EXAMPLES / "seed.uci", out)
    assert proc.returncode == 0, proc.stderr
    return out, everything(mount)


def test_disk_full_keeps_the_previous_bundle_and_leaves_no_staging(small_fs):
    out, before = _previous_bundle(small_fs)
    line = refused(compile_(EXAMPLES / "all_modes.uci", out), 1, "cannot write the bundle",
                   "No space left on device")
    assert line.startswith(str(small_fs))
    assert everything(small_fs) == before


def test_a_read_only_file_system_keeps_the_previous_bundle(small_fs):
    out, before = _previous_bundle(small_fs)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True, timeout=30)
    line = refused(compile_(EXAMPLES / "three_wan_balanced.uci", out), 1, "cannot write the bundle",
                   "Read-only file system")
    assert line.startswith(str(small_fs))
    assert everything(small_fs) == before


def test_permission_denied_is_one_line_exit_1(tmp_path):
    tmp_path.chmod(0o755)
    out, before = tmp_path / "bundle", None
    assert compile_(EXAMPLES / "seed.uci", out).returncode == 0
    before = everything(tmp_path)
    line = refused(compile_(EXAMPLES / "three_wan_balanced.uci", out, user=65534), 1,
                   "cannot write the bundle", "Permission denied")
    assert line.startswith(str(tmp_path))
    assert everything(tmp_path) == before
