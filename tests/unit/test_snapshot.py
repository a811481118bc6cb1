"""The status snapshot files are as private as the control socket they stand in for."""

from __future__ import annotations

import asyncio
import os
import stat

from netpath.agent import snapshot


def test_snapshot_files_are_readable_by_root_only(tmp_path):
    """The socket is 0600: only root asks the agent. The snapshot files answer the same
    questions for rpcd (root), so they are 0600 too, even over a stale temp file a crash left."""
    sock = str(tmp_path / "netpath.sock")
    files = snapshot.paths(sock)
    leftover = f"{files['status']}.tmp"
    with open(leftover, "w") as f:
        f.write("half")
    os.chmod(leftover, 0o644)

    async def read(cmd):
        return {"ok": True, "cmd": cmd}

    async def main():
        writer = snapshot.SnapshotWriter(sock, read, [{"time": 1.0, "interface": "wan", "to": "online"}])
        writer.start()
        await writer.write()
        modes = {name: stat.S_IMODE(os.stat(path).st_mode) for name, path in files.items()}
        await writer.stop()
        return modes

    modes = asyncio.run(main())
    assert modes == dict.fromkeys(files, 0o600), modes
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


def test_a_failing_read_is_logged_and_the_snapshot_keeps_being_written(tmp_path, caplog):
    """The files are what LuCI shows while the agent's pid lives. A read that raised anything
    but OSError/ValueError ended the writer's task without a word, and LuCI showed the last
    snapshot as current for as long as the agent ran."""
    import logging

    sock = str(tmp_path / "netpath.sock")
    calls = []

    async def read(cmd):
        calls.append(cmd)
        if len(calls) == 1:
            raise KeyError("an interface that went away")
        return {"ok": True, "cmd": cmd, "call": len(calls)}

    async def main():
        writer = snapshot.SnapshotWriter(sock, read, [], interval=0.05)
        writer.start()
        for _ in range(100):
            if writer.writes >= 2:
                break
            await asyncio.sleep(0.02)
        alive = not writer.task.done()
        await writer.stop()
        return alive, writer.writes

    with caplog.at_level(logging.ERROR, logger="netpath.snapshot"):
        alive, writes = asyncio.run(main())
    assert alive and writes >= 2, (alive, writes)
    assert any("an interface that went away" in r.getMessage() and r.exc_info for r in caplog.records), caplog.text
