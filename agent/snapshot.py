"""Status snapshot files beside the control socket, for readers that must not start Python.

On a router, LuCI's overview polls `ubus call luci.netpath status` and `history` every few
seconds; rpcd starts the plugin program for every call, and a Python plugin costs one
interpreter start each time (0.1-0.3 s of CPU). So the agent keeps the answers to its read
commands in files, and the busybox-ash plugin (luci/root/usr/libexec/rpcd/luci.netpath)
serves reads from them with a `cat`. For the socket /var/run/netpath.sock:

    /var/run/netpath.pid               the agent's pid (a reader checks /proc/PID)
    /var/run/netpath.status.json       the reply to {"cmd":"status"}, one line
    /var/run/netpath.interfaces.json   the reply to {"cmd":"interfaces"}, one line
    /var/run/netpath.history.jsonl     the history, one state change per line, newest last

Each reply carries "snapshot": the time it was taken. The files are rewritten (temp file,
rename: a reader sees the old or the new file, never half of one) as soon as something
changes (a state change, an admin change, a reload) and every INTERVAL (2) seconds for the
figures (latency, traffic; the connection counts may be up to 30 s old, counting a large
conntrack table costs more than the rest), and removed when the agent stops. /var/run is a tmpfs: no fsync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

INTERVAL = 2.0  # seconds: well inside LuCI's default poll interval (5 s)
SETTLE = 0.05  # seconds: a burst of changes (one swap moves several interfaces) is one write

log = logging.getLogger("netpath.snapshot")


def paths(socket_path: str) -> dict:
    """The snapshot files of the agent on `socket_path` (its name without `.sock`, plus a suffix)."""
    base = socket_path[:-len(".sock")] if socket_path.endswith(".sock") else socket_path
    return {"pid": f"{base}.pid", "status": f"{base}.status.json",
            "interfaces": f"{base}.interfaces.json", "history": f"{base}.history.jsonl"}


def write_atomic(path: str, data: bytes) -> None:
    """0600 like the control socket: the files answer what only root may ask the agent (rpcd,
    which serves LuCI's users by their ACLs, runs as root)."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a temp file a crash left keeps its mode through O_CREAT
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def line(reply: dict) -> bytes:
    return json.dumps(reply, separators=(",", ":"), allow_nan=False).encode() + b"\n"


class SnapshotWriter:
    """Keeps the snapshot files of one agent current. `read(cmd)` answers like the socket."""

    def __init__(self, socket_path: str, read, history, interval: float = INTERVAL):
        self.files = paths(socket_path)
        self.read = read  # async (cmd) -> reply dict, from the socket's own command table
        self.history = history  # the agent's deque of state changes
        self.interval = interval
        self.wanted = asyncio.Event()
        self.task: "asyncio.Task | None" = None
        self.writes = 0
        self._history_written = None
        self._writing = asyncio.Lock()  # one write at a time: they share the files' temp names

    def start(self) -> None:
        write_atomic(self.files["pid"], f"{os.getpid()}\n".encode())
        self.task = asyncio.create_task(self._run(), name="snapshot")

    def changed(self) -> None:
        """Something a reader shows has changed: write soon, not at the next tick."""
        self.wanted.set()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        for path in self.files.values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self.write()
            except (OSError, ValueError) as exc:  # a full tmpfs; the socket still answers
                log.warning("could not write the status snapshot: %s", exc)
            except Exception as exc:
                # A bug must not end the task unheard and leave a snapshot that LuCI shows as
                # current while the pid lives: logged, the replies removed (readers then ask
                # the socket), and written again at the next change or tick.
                log.error("could not write the status snapshot: unexpected error %r", exc, exc_info=exc)
                for name in ("status", "interfaces"):
                    try:
                        os.unlink(self.files[name])
                    except FileNotFoundError:
                        pass
            try:
                await asyncio.wait_for(self.wanted.wait(), self.interval)
                await asyncio.sleep(SETTLE)
            except asyncio.TimeoutError:
                pass
            self.wanted.clear()

    async def write(self) -> None:
        async with self._writing:
            await self._write()

    async def _write(self) -> None:
        taken = round(time.time(), 3)
        for cmd in ("status", "interfaces"):
            reply = await self.read(cmd)
            reply["snapshot"] = taken
            await asyncio.to_thread(write_atomic, self.files[cmd], line(reply))
        entries = list(self.history)
        key = (len(entries), entries[-1]["time"] if entries else None)
        if key != self._history_written:
            data = b"".join(line(entry) for entry in entries)
            await asyncio.to_thread(write_atomic, self.files["history"], data)
            self._history_written = key
        self.writes += 1
