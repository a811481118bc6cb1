"""Stage 5: lay the bundle down atomically, and only where a bundle belongs.

Files are written into a fresh sibling directory and synced (one syncfs for all the
bundles of a fleet compile); then that directory is
swapped with the old one in one rename(2) (RENAME_EXCHANGE), so a reader sees either the
whole old bundle or the whole new one, and a crash or error leaves the old one in place.

The swap replaces the whole directory, so `write` first makes sure the directory is one it
may replace: absent, empty, or holding a NetPath bundle (a manifest.json that NetPath
wrote). `-o /etc/config` or `-o .` must never wipe a user's files.
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
SHOWN_ENTRIES = 3  # entries of a foreign directory named in the refusal


class OutputError(Exception):
    """The bundle cannot go to the directory asked for; `line` is ready to print, `status`
    is the exit status: 2 when the directory is not one to replace (bad input), 1 when
    writing failed (the system)."""

    status = 1

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


class NotABundle(OutputError):
    status = 2


class WriteFailed(OutputError):
    status = 1


def _is_bundle(directory: Path) -> bool:
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("generator", "")).startswith("NetPath")


def check_target(directory: Path) -> None:
    """Raise NotABundle unless `directory` does not exist, is empty, or holds a NetPath
    bundle; WriteFailed if it cannot even be looked at (a symlink loop, no permission)."""
    try:
        os.stat(directory)
    except FileNotFoundError:
        if os.path.islink(directory):  # a dangling symlink: writing would follow it
            raise NotABundle(f"{directory} is a symbolic link to nothing; choose another "
                             "directory") from None
        return
    except OSError as exc:
        raise WriteFailed(f"{directory}: cannot write the bundle: {exc.strerror}") from None
    if not directory.is_dir():
        raise NotABundle(f"{directory} is not a NetPath bundle (it is a file, which is never "
                         "replaced); choose another directory")
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise WriteFailed(f"{directory}: cannot write the bundle: {exc.strerror}") from None
    if not entries or _is_bundle(directory):
        return
    shown = [e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries[:SHOWN_ENTRIES]]
    more = " ..." if len(entries) > SHOWN_ENTRIES else ""
    raise NotABundle(f"{directory} is not a NetPath bundle (it holds {', '.join(shown)}{more}); "
                     "choose another directory")


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
    return json_text(manifest) + "\n"


PRETTY_DEPTH = 3  # manifest -> model -> rules -> one rule per line


def json_text(value, depth: int = 0) -> str:
    """Sorted JSON, indented one space per level down to PRETTY_DEPTH and compact below it:
    one interface, policy or rule per line reads and diffs well, and json's C encoder
    writes the lines (json.dumps with indent= runs in pure Python: most of a 1,000-rule
    compile)."""
    if depth >= PRETTY_DEPTH or not isinstance(value, (dict, list, tuple)) or not value:
        return json.dumps(value, sort_keys=True)
    pad = "\n" + " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{json.dumps(str(k))}: {json_text(v, depth + 1)}" for k, v in sorted(value.items())]
        return "{" + pad + ("," + pad).join(items) + "\n" + " " * depth + "}"
    items = [json_text(v, depth + 1) for v in value]
    return "[" + pad + ("," + pad).join(items) + "\n" + " " * depth + "]"


def read_tree(directory: Path) -> dict:
    """Relative path -> text of every file in an existing bundle (empty if none, or if
    `directory` holds something else)."""
    out = {}
    if not directory.is_dir() or not _is_bundle(directory):
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
    """Write `files` as the complete content of `directory`, atomically. Raises NotABundle
    (nothing touched) or WriteFailed (the previous bundle intact, no staging left)."""
    failure = write_many([(directory, files)])[0]
    if failure is not None:
        raise failure


def write_many(bundles: list) -> list:
    """`write` for several `(directory, files)` at once (a fleet compile): every bundle is
    staged first, the file system is synced once (syncfs: one flush instead of an fsync
    per file), then each staged directory is swapped in. Returns one OutputError or None
    per bundle; a failing bundle leaves its directory as it was and does not stop the rest."""
    results: list = [None] * len(bundles)
    staged = []
    for index, (directory, files) in enumerate(bundles):
        directory = Path(directory)
        try:
            check_target(directory)
            staged.append((index, directory, _stage(directory.resolve(), files)))
        except OutputError as exc:
            results[index] = exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: resolve() met a symlink loop
            results[index] = _failed(directory, exc)
    try:
        _sync([staging for _, _, staging in staged])
    except OSError as exc:
        for index, directory, staging in staged:
            shutil.rmtree(staging, ignore_errors=True)
            results[index] = _failed(directory, exc)
        return results
    for index, directory, staging in staged:
        try:
            _swap(staging, directory.resolve())
        except (OSError, RuntimeError) as exc:
            results[index] = _failed(directory, exc)
    return results


def _failed(directory: Path, exc: Exception) -> WriteFailed:
    cause = getattr(exc, "strerror", None) or str(exc)
    return WriteFailed(f"{directory}: cannot write the bundle: {cause}")


def _stage(directory: Path, files: dict) -> Path:
    """A fresh sibling of `directory` holding `files` (not yet synced); removed on error."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
    try:
        made = {staging}
        for rel, text in files.items():
            path = staging / rel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        os.chmod(staging, 0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _syncfs():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


def _sync(stagings: list) -> None:
    """Make the staged files durable before any rename: one syncfs(2) per file system, or
    an fsync of every staged file and directory where syncfs is missing."""
    syncfs = _syncfs()
    if syncfs is None:
        for staging in stagings:
            for path in sorted(staging.rglob("*")) + [staging]:
                _fsync(path)
        return
    done = set()
    for staging in stagings:
        device = os.stat(staging).st_dev
        if device not in done:
            done.add(device)
            fd = os.open(staging, os.O_RDONLY)
            try:
                if syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap(staging: Path, directory: Path) -> None:
    """Put the synced `staging` in place of `directory` in one rename; the old one goes."""
    try:
        if directory.exists():
            if not _exchange(staging, directory):
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                os.rename(directory, old)
                try:
                    os.rename(staging, directory)
                except OSError:
                    os.rename(old, directory)
                    raise
                staging = old
        else:
            os.rename(staging, directory)
            staging = None
        _fsync(directory.parent)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
