"""syrupy extensions that store each rendered artifact as a plain file.

`tests/snapshots/<test file>/<test>[<artifact>].nft` (or .batch, .json): one file per
artifact, readable and diffable as the text the kernel will load. Test modules ask for
`artifact_snapshot` through a module-local fixture (see test_compile.py).
"""

from __future__ import annotations

from pathlib import Path

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"


class _TextArtifact(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(SNAPSHOT_DIR / test_location.basename)


class NftSnapshot(_TextArtifact):
    file_extension = "nft"


class BatchSnapshot(_TextArtifact):
    file_extension = "batch"


class JsonSnapshot(_TextArtifact):
    file_extension = "json"


class UciSnapshot(_TextArtifact):
    file_extension = "uci"


class TextSnapshot(_TextArtifact):
    file_extension = "txt"


EXTENSION_BY_SUFFIX = {".nft": NftSnapshot, ".batch": BatchSnapshot, ".json": JsonSnapshot}


def snapshot_name(relpath: str) -> str:
    """`states/wan_wanb/01.nft` -> `states--wan_wanb--01` (no '/' in a file name)."""
    stem = relpath.rsplit(".", 1)[0]
    return stem.replace("/", "--")


def extension_for(relpath: str):
    suffix = "." + relpath.rsplit(".", 1)[-1]
    try:
        return EXTENSION_BY_SUFFIX[suffix]
    except KeyError:
        raise ValueError(f"no snapshot extension for {relpath!r}") from None
