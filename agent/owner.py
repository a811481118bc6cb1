"""One owner for NetPath's kernel state in a network namespace.

What an agent owns is the kernel state of the network namespace it runs in: its nft table,
its ip rules and routes. So the claim is a lock file named after that namespace,

    /var/run/netpath-agent.net<inode>.lock

where <inode> is the inode number of /proc/self/ns/net (`stat -L -c %i /proc/self/ns/net`,
the number `ip netns identify` and `lsns -t net` go by). Agents in different namespaces (a
test lab runs many at once) hold different files and never block each other. The lock is an
flock(2): the kernel drops it when its holder exits, however it exits, so a file left by a
crashed agent (or a stale control socket) never blocks a legitimate start. The file holds
the holder's pid, role and socket, for the message that names it.

`netpath-agent` holds the claim for its whole run and takes it before it reads the kernel;
`netpath apply` takes it for the time it changes the kernel and refuses (exit 2) while an
agent holds it, unless --force.

Standard library only: this runs on routers.
"""

from __future__ import annotations

import errno
import fcntl
import os

RUN_DIR = "/var/run"
NETNS = "/proc/self/ns/net"


class Owned(Exception):
    """Another process owns NetPath's kernel state in this network namespace (exit status 2)."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


def netns_id() -> str:
    """The identity of this process's network namespace ("" when the kernel has none)."""
    try:
        return str(os.stat(NETNS).st_ino)
    except OSError:
        return ""


def lock_path(run_dir: str = RUN_DIR) -> str:
    ident = netns_id()
    return os.path.join(run_dir, f"netpath-agent.net{ident}.lock" if ident else "netpath-agent.lock")


def _holder(fd: int) -> dict:
    """What the holder wrote: {"pid": ..., "role": ..., "socket": ...} (values are text)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return {}
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    return {k: fields[k] for k in ("pid", "role", "socket") if k in fields}


def describe(holder: dict) -> str:
    """"an agent (pid 123, socket /var/run/netpath.sock)" for the messages."""
    what = "`netpath apply`" if holder.get("role") == "apply" else "NetPath agent"
    details = [f"pid {holder['pid']}"] if holder.get("pid") else []
    if holder.get("socket") and holder["socket"] != "none":
        details.append(f"socket {holder['socket']}")
    return f"{what} ({', '.join(details)})" if details else what


class Claim:
    """The lock, held until release() or until the process ends."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            # Unlinked while still locked: a process that opened the old file and locks it
            # after us sees it is no longer the file at `path` and opens again (claim()).
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def claim(role: str, socket_path: "str | None" = None, run_dir: str = RUN_DIR) -> Claim:
    """Take the namespace's lock without waiting. Raises Owned naming the holder when another
    process has it, OSError when the lock file cannot be made."""
    path = lock_path(run_dir)
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise Owned(f"another {describe(holder)} owns NetPath's kernel state in this network "
                        f"namespace (lock {path})", holder) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its previous holder removed it between our open and our lock
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} role={role} socket={socket_path or 'none'}\n".encode(), 0)
        return Claim(path, fd)
    raise OSError(errno.EAGAIN, f"{path} keeps being replaced; is something removing it?")
