"""Accepting clients without letting them starve the agent.

The control socket (agent/ipc.py) and the metrics endpoint (agent/metrics.py) accept their
connections here, one at a time, and only while more than FD_RESERVE file descriptors remain
under the process's RLIMIT_NOFILE: the reserve is for probes, netlink, nft and hooks. Below
it the agent stops accepting for a moment; the connections wait in the kernel's backlog and
cost the agent nothing. Each server then bounds what an accepted client may hold (its own
connection limit with a busy answer, time and size limits).

Refusals are logged rate-limited (`Refusals`): a LAN host that opens a thousand connections
gets one line and then one summary every 10 s, not a thousand lines.

Standard library only: this runs on routers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import sys
import time

FD_RESERVE = 64  # descriptors never given to clients
PAUSE = 0.25  # seconds between accept attempts while the reserve is reached
LOG_EVERY = 10.0  # seconds between two log lines about refused clients
RATE_WINDOW = 0.1  # seconds: accepts are counted per window against a server's rate
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def fds_left() -> int:
    """File descriptors this process may still open (sys.maxsize when unbounded or unknown)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    try:
        used = len(os.listdir("/proc/self/fd")) - 1  # without listdir's own descriptor
    except OSError:
        return sys.maxsize
    return soft - used


class Refusals:
    """Counts refused clients; logs the first at once, then at most one line per LOG_EVERY s
    with the number refused meanwhile."""

    def __init__(self, what: str, log: logging.Logger):
        self.what = what
        self.log = log
        self.total = 0
        self._unlogged = 0
        self._logged_at: "float | None" = None

    def note(self, reason: str) -> None:
        self.total += 1
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < LOG_EVERY:
            self._unlogged += 1
            return
        meanwhile = f" ({self._unlogged} more refused since the last line)" if self._unlogged else ""
        self.log.warning("%s: refused a client: %s%s; the next refusals are counted and logged at most "
                         "every %g s", self.what, reason, meanwhile, LOG_EVERY)
        self._logged_at, self._unlogged = now, 0


class Server:
    """Accepts on a listening socket and runs `on_connect(reader, writer)` per client, like
    asyncio's start_server, but never into the descriptor reserve."""

    def __init__(self, sock: socket.socket, on_connect, limit: int, refusals: Refusals,
                 max_clients: "int | None" = None, busy: bytes = b"", rate: float = 1000.0):
        self.sock = sock
        self.on_connect = on_connect
        self.limit = limit
        self.refusals = refusals
        self.max_clients = max_clients
        self.busy = busy
        self.per_window = max(1, round(rate * RATE_WINDOW))
        self.tasks: set = set()
        self._accepting = asyncio.ensure_future(self._accept())
        self._accepting.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.refusals.log.error("%s: stopped accepting clients: %r", self.refusals.what, task.exception())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        window, accepted = loop.time(), 0
        while True:
            now = loop.time()
            if now - window >= RATE_WINDOW:
                window, accepted = now, 0
            elif accepted >= self.per_window:  # the rest wait in the kernel's backlog
                await asyncio.sleep(window + RATE_WINDOW - now)
                continue
            # Checked before each accept, and each accept takes one descriptor: clients never
            # get below the reserve.
            if fds_left() <= FD_RESERVE:
                self.refusals.note(f"fewer than {FD_RESERVE} file descriptors left (kept for probes, "
                                   "netlink and the kernel)")
                await asyncio.sleep(PAUSE)
                continue
            try:
                conn, _peer = await loop.sock_accept(self.sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                self.refusals.note(f"cannot accept: {exc.strerror}")
                await asyncio.sleep(PAUSE)
                continue
            accepted += 1
            if self.max_clients is not None and len(self.tasks) >= self.max_clients:
                self._refuse(conn)
                continue
            task = asyncio.ensure_future(self._serve(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _refuse(self, conn: socket.socket) -> None:
        """The busy answer, at once and without a stream: its descriptor is free again before
        the next accept, however fast clients come."""
        self.refusals.note(f"{self.max_clients} clients are connected (the limit)")
        conn.setblocking(False)
        try:
            conn.recv(65536)  # what already came: closing on unread input would reset the
        except OSError:       # connection, and the client would lose the busy answer
            pass
        try:
            conn.send(self.busy)
        except OSError:
            pass
        conn.close()

    async def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            if conn.family == socket.AF_UNIX:
                reader, writer = await asyncio.open_unix_connection(sock=conn, limit=self.limit)
            else:
                reader, writer = await asyncio.open_connection(sock=conn, limit=self.limit)
        except OSError:
            conn.close()
            return
        await self.on_connect(reader, writer)

    @property
    def sockets(self) -> tuple:
        return (self.sock,)

    def close(self) -> None:
        """Stop accepting (the connections being served go on until they end)."""
        self._accepting.cancel()
        self.sock.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._accepting, return_exceptions=True)


def serve(sock: socket.socket, on_connect, limit: int, refusals: Refusals, max_clients: "int | None" = None,
          busy: bytes = b"", rate: float = 1000.0) -> Server:
    """Accept on `sock` for `on_connect(reader, writer)` (a stream `limit` bytes deep), at most
    `rate` a second. With `max_clients`, a client past that many is sent `busy` and closed at
    once."""
    sock.setblocking(False)
    return Server(sock, on_connect, limit, refusals, max_clients, busy, rate)
