"""Stage 5: lay the bundle down atomically.

Files are written into a fresh sibling directory and fsynced; then that directory is
swapped with the old one in one rename(2) (RENAME_EXCHANGE), so a reader sees either the
whole old bundle or the whole new one, and a crash or error leaves the old one in place.
"""

from __future__ import annotations

import ctypes
import difflib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from netpath.agent.model import FORMAT_VERSION, Model

from .render import GENERATOR

RENAME_EXCHANGE = 2
AT_FDCWD = -100


def manifest_text(model: Model, files: dict, source_name: str) -> str:
    routes = [{"file": f"routes/global-{fam}.batch", "family": fam} for fam in ("ipv4", "ipv6")]
    routes += [{"file": f"routes/{i.name}.batch", "family": i.family}
               for i in model.interfaces if i.enabled]
    manifest = {
        "format": FORMAT_VERSION,
        "generator": GENERATOR,
        "source": {"name": Path(source_name).name, "sha256": model.source_digest},
        "ruleset": "ruleset.nft",
        "routes": routes,
        "model": model.to_dict(),
        "files": {path: hashlib.sha256(text.encode()).hexdigest() for path, text in sorted(files.items())},
    }
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def read_tree(directory: Path) -> dict:
    """Relative path -> text of every file in an existing bundle (empty if none)."""
    out = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(directory))] = path.read_text(errors="replace")
    return out


def previous_ids(directory: Path) -> dict:
    """Interface name -> id in the bundle already in `directory`, to keep marks stable."""
    try:
        data = json.loads((directory / "manifest.json").read_text())
        return {i["name"]: i["id"] for i in data["model"]["interfaces"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def diff(old: dict, new: dict, old_label: str = "a", new_label: str = "b") -> str:
    chunks = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        chunks.extend(difflib.unified_diff(
            (a or "").splitlines(keepends=True), (b or "").splitlines(keepends=True),
            fromfile=f"{old_label}/{path}" if a is not None else "/dev/null",
            tofile=f"{new_label}/{path}" if b is not None else "/dev/null"))
    return "".join(chunks)


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return rc == 0


def write(directory: Path, files: dict) -> None:
    """Write `files` as the complete content of `directory`, atomically."""
    directory = directory.resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        if directory.exists():
            if not _exchange(staging, directory):
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                os.rename(directory, old)
                os.rename(staging, directory)
                staging = old
        else:
            os.rename(staging, directory)
            staging = None
        dirfd = os.open(directory.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
