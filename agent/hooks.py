"""Hook scripts: what /etc/mwan3.user is to mwan3.

Every executable file in the hooks directory (default /etc/netpath/hooks.d) is called, in
name order, for each event of an interface with the environment ACTION (connected,
disconnected, connecting, disconnecting, ifup, ifdown), INTERFACE and DEVICE. Events run one
after another in the order they happened, in a worker task: a slow script delays later
hooks, never the tracking. Each script has a time limit; one that outlives it is killed
with its process group. A hook's output (stdout and stderr) is read as it arrives and only
its last few KiB are kept, for the log line of a hook that fails.

Like mwan3's tracker, the four tracking events (connected, disconnected, connecting,
disconnecting) also go to OpenWrt's hotplug system when `hotplug-call` is on PATH:
`hotplug-call netpath` runs every script in /etc/hotplug.d/netpath/ with the same
ACTION, INTERFACE and DEVICE, where LED and notification packages put theirs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from pathlib import Path

DEFAULT_DIRECTORY = "/etc/netpath/hooks.d"
HOOK_TIMEOUT = 30.0
HOTPLUG_ACTIONS = ("connected", "disconnected", "connecting", "disconnecting")
HOTPLUG_SUBSYSTEM = "netpath"
MAX_PENDING = 256  # events queued behind slow hooks before new ones are dropped (and logged)
OUTPUT_KEPT = 4096  # bytes of a hook's output kept while it runs (the last ones); the rest is discarded
OUTPUT_LOGGED = 500  # characters of it in the log line of a failed hook
READ_CHUNK = 65536
KILL_GRACE = 5.0  # seconds for a killed hook's output pipe to close
DISCARD_PAUSE = 0.01  # seconds after each discarded chunk: at most 6.4 MB/s of output is read

log = logging.getLogger("netpath.hooks")


def scripts(directory) -> list:
    """The executable regular files of `directory`, by name; [] when it does not exist."""
    try:
        entries = sorted(Path(directory).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        log.warning("hooks: cannot read %s: %s", directory, exc.strerror)
        return []
    return [p for p in entries if p.is_file() and os.access(p, os.X_OK) and not p.name.startswith(".")]


async def _tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Read `stream` to its end, keeping only its last `keep` bytes: a hook that prints
    forever (`yes`) costs one chunk of memory, not what it printed."""
    tail = bytearray()
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            return bytes(tail)
        tail += chunk
        if len(tail) > keep:
            del tail[:-keep]
            # Past what we keep, reading slower costs the loop less; the hook just waits on
            # its pipe (and its time limit still runs).
            await asyncio.sleep(DISCARD_PAUSE)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(READ_CHUNK):
        pass


async def run_script(path, env: dict, timeout: float, args=()) -> "int | None":
    """Run one hook; its exit status, or None when it was killed for running too long."""
    proc = await asyncio.create_subprocess_exec(
        str(path), *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(asyncio.gather(_tail(proc.stdout, OUTPUT_KEPT), proc.wait()), timeout)
    except asyncio.TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the script and whatever it started
        except ProcessLookupError:
            pass
        # The pipe must reach its end before wait() returns; nobody reads it since the time
        # limit, and a stream that was paused (full) would never see it.
        try:
            await asyncio.wait_for(asyncio.gather(_drain(proc.stdout), proc.wait()), KILL_GRACE)
        except asyncio.TimeoutError:
            log.warning("hook %s: something it started outside its process group still holds its output",
                        path)
        log.warning("hook %s (%s %s) killed after %g s", path, env["ACTION"], env["INTERFACE"], timeout)
        return None
    if proc.returncode != 0:
        text = out.decode(errors="replace").strip()[-OUTPUT_LOGGED:]
        log.warning("hook %s (%s %s) exited %d%s", path, env["ACTION"], env["INTERFACE"],
                    proc.returncode, f": {text}" if text else "")
    return proc.returncode


class Hooks:
    def __init__(self, directory=DEFAULT_DIRECTORY, timeout: float = HOOK_TIMEOUT):
        self.directory = directory
        self.timeout = timeout
        self.queue: asyncio.Queue = asyncio.Queue(MAX_PENDING)
        self.task: "asyncio.Task | None" = None
        self.runs = 0

    def start(self) -> None:
        self.task = asyncio.create_task(self._worker(), name="hooks")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def submit(self, action: str, interface: str, device: str) -> None:
        try:
            self.queue.put_nowait((action, interface, device))
        except asyncio.QueueFull:
            log.warning("hooks: %d events waiting behind slow hooks; dropped %s %s",
                        MAX_PENDING, action, interface)

    async def _worker(self) -> None:
        while True:
            action, interface, device = await self.queue.get()
            found = await asyncio.to_thread(scripts, self.directory)
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                   "ACTION": action, "INTERFACE": interface, "DEVICE": device}
            calls = [(path, ()) for path in found]
            hotplug = shutil.which("hotplug-call", path=env["PATH"]) if action in HOTPLUG_ACTIONS else None
            if hotplug:
                calls.append((hotplug, (HOTPLUG_SUBSYSTEM,)))
            for path, args in calls:
                try:
                    await run_script(path, env, self.timeout, args)
                    self.runs += 1
                except OSError as exc:
                    log.warning("hook %s cannot run: %s", path, exc.strerror or exc)
