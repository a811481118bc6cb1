"""The agent's control socket: a Unix stream socket, one JSON object per line each way.

    $ echo '{"cmd":"status"}' | socat - UNIX-CONNECT:/var/run/netpath.sock
    {"ok": true, "version": "0.1.0", ...}

(busybox `nc` cannot: it has no Unix sockets; docs/ipc.md.) One request per connection: the
agent reads one line, answers with one line and closes, so a client (which waits for the other side to close) returns at once and a stuck client
can hold at most one connection slot until its deadline.

The server side (`serve`) only moves bytes: it frames, parses and bounds requests and
hands each object to a `dispatch` coroutine (the command table), turning whatever goes
wrong into an error reply. It never runs anything named in a request. The client side
(`request`) is synchronous and standard-library only, for `netpath status` and friends.

Access control is the file mode: the socket is created 0600, so only its owner (root)
can connect at all.

Standard library only: this runs on routers.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import stat

from .clients import Refusals, serve as serve_clients

DEFAULT_SOCKET = "/var/run/netpath.sock"

MAX_REQUEST_BYTES = 64 * 1024  # one request line, without its newline
MAX_REPLY_BYTES = 16 * 1024 * 1024  # what the client accepts before it gives up
LISTEN_BACKLOG = 512  # connections the kernel queues before we accept them
MAX_CLIENTS = 256  # connections served at once; more are told to come back later
ACCEPT_RATE = 2000  # connections accepted a second; more wait in the kernel's backlog
REQUEST_TIMEOUT = 5.0  # seconds from connect until the whole request line has arrived
REPLY_TIMEOUT = 10.0  # seconds a client may take to read its reply
DISPATCH_TIMEOUT = 60.0
LINGER_SECONDS = 1.0  # how long a cut-off client may go on sending before we hang up  # a command that takes longer is abandoned (reload loads nft)

log = logging.getLogger("netpath.ipc")


class IpcError(Exception):
    """The agent could not be asked, or its answer was unusable (exit status 1)."""


class AgentNotRunning(IpcError):
    """Nothing answers on the socket: no agent runs, or it runs on another --socket."""


class SocketInUse(IpcError):
    """Another agent answers on the socket path; starting a second one would steal it."""


def error_reply(message: str) -> dict:
    return {"ok": False, "error": message}


# --- server -----------------------------------------------------------------------------

class _Clients:
    """The connections of one server, so that `stop` can end them and `serve` can bound them."""

    def __init__(self, path: str, inode: tuple):
        self.path = path
        self.inode = inode  # (st_dev, st_ino) of the socket file we bound
        self.tasks: set = set()


_SERVERS: dict = {}  # asyncio server -> _Clients


def _probe_live(path: str) -> bool:
    """True when something accepts connections on `path` (a live agent)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except socket.timeout:
        # Bound and listening but its backlog is full: someone is there.
        return True
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise IpcError(f"cannot tell whether an agent answers on {path}: {exc.strerror}; "
                       "remove the file if no agent runs") from None
    finally:
        probe.close()
    return True


def bind(path: str) -> socket.socket:
    """Bind a listening socket at `path`, mode 0600 from the first instant.

    A socket file left by a crashed agent is replaced; one that another agent still
    answers on is not (SocketInUse). Anything else at that path is left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise IpcError(f"{path} exists and is not a socket; remove it or choose another --socket")
        if _probe_live(path):
            raise SocketInUse(f"another NetPath agent answers on {path}; stop it first "
                              "or give this one another --socket")
        os.unlink(path)  # stale: its agent died without cleaning up
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind() creates the file with the process umask; tighten it for the call so the
    # socket is never reachable by other users, not even for an instant.
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SocketInUse(f"{path} was taken by another process while starting; "
                              "is a second agent starting?") from None
        raise IpcError(f"cannot create the control socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def unbind(sock: socket.socket, path: str) -> None:
    """Close a socket from bind() that never served; remove its file unless someone else
    answers on it now."""
    sock.close()
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode) and not _probe_live(path):
            os.unlink(path)
    except (OSError, IpcError):
        pass


async def serve(path: str, dispatch, *, sock: "socket.socket | None" = None, max_clients: int = MAX_CLIENTS,
                request_timeout: float = REQUEST_TIMEOUT, reply_timeout: float = REPLY_TIMEOUT,
                dispatch_timeout: float = DISPATCH_TIMEOUT):
    """Listen on `path` and answer each request line with `await dispatch(request)`.

    `dispatch` gets a dict with a string "cmd" and returns the reply dict; an exception
    becomes {"ok": false, "error": "internal error: ..."}. Raises SocketInUse when another
    agent answers on `path`, IpcError when the socket cannot be created. `sock`: a socket
    bind() made earlier for `path`."""
    sock = sock if sock is not None else bind(path)
    st = os.stat(path)
    clients = _Clients(path, (st.st_dev, st.st_ino))
    refusals = Refusals("control socket", log)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        clients.tasks.add(task)
        try:
            if len(clients.tasks) > max_clients:
                reply = error_reply(f"agent busy: {max_clients} clients are connected; try again")
                refusals.note(f"{max_clients} clients are connected (the limit)")
                unread = True
            else:
                reply, unread = await _answer(reader, dispatch, request_timeout, dispatch_timeout)
            if reply is not None:
                sent = await _send(writer, reply, reply_timeout)
                if sent and unread:
                    writer.write_eof()
                    await _discard_input(reader, LINGER_SECONDS)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:  # a bug here must not end the server
            log.exception("control socket: unexpected error while serving a client")
        finally:
            clients.tasks.discard(task)
            writer.close()

    # `limit` bounds what a client can make us buffer: a line longer than this fails fast.
    server = serve_clients(sock, on_connect, MAX_REQUEST_BYTES, refusals, rate=ACCEPT_RATE)
    _SERVERS[server] = clients
    return server


async def stop(server) -> None:
    """Stop listening, end the connections still open, remove the socket file if it is ours."""
    clients = _SERVERS.pop(server, None)
    server.close()
    if clients is None:
        return
    for task in list(clients.tasks):
        task.cancel()
    if clients.tasks:
        await asyncio.wait(list(clients.tasks), timeout=1.0)
    try:
        await asyncio.wait_for(server.wait_closed(), 1.0)
    except asyncio.TimeoutError:
        pass
    try:
        st = os.lstat(clients.path)
        if (st.st_dev, st.st_ino) == clients.inode:
            os.unlink(clients.path)
    except FileNotFoundError:
        pass


async def _read_request(reader: asyncio.StreamReader):
    """The raw request line, or None when the client closed without sending anything."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        # EOF before a newline: `printf '{"cmd":"status"}' | nc -N -U ...` is fine too.
        return exc.partial if exc.partial.strip() else None


async def _answer(reader, dispatch, request_timeout: float, dispatch_timeout: float):
    """(reply, unread) for one client: reply None when there is nobody left to answer;
    unread True when the client may still be sending (its request was cut off)."""
    try:
        line = await asyncio.wait_for(_read_request(reader), request_timeout)
    except asyncio.TimeoutError:
        return error_reply(f"no complete request line within {request_timeout:g} s; "
                           'send one JSON object and a newline, e.g. {"cmd": "status"}'), True
    except asyncio.LimitOverrunError:
        return error_reply(f"request longer than {MAX_REQUEST_BYTES // 1024} KiB; "
                           "one request is one JSON object on one line"), True
    except (ConnectionError, OSError):
        return None, False
    if line is None:
        return None, False
    request = parse_request(line)
    if "ok" in request:  # parse_request's own error reply
        return request, False
    try:
        reply = await asyncio.wait_for(dispatch(request), dispatch_timeout)
    except asyncio.TimeoutError:
        return error_reply(f"internal error: command {request['cmd']!r} did not finish "
                           f"within {dispatch_timeout:g} s"), False
    except Exception as exc:
        log.exception("control socket: command %r failed", request["cmd"])
        return error_reply(f"internal error: {type(exc).__name__}: {exc}"), False
    if not isinstance(reply, dict):
        return error_reply(f"internal error: command {request['cmd']!r} returned "
                           f"{type(reply).__name__}, not an object"), False
    return reply, False


async def _discard_input(reader: asyncio.StreamReader, seconds: float) -> None:
    """Swallow what a cut-off client is still sending, for a moment. Closing a Unix socket
    with unread input resets the connection, and the client would lose the error reply."""
    async def drain():
        while await reader.read(65536):
            pass

    try:
        await asyncio.wait_for(drain(), seconds)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass


def parse_request(line: bytes) -> dict:
    """The request object of one line, or an error reply (a dict with "ok": false)."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return error_reply(f"malformed JSON ({exc}); send one object per line, "
                           'e.g. {"cmd": "status"}')
    except RecursionError:  # "[[[[..." fits in 64 KiB and is deeper than the parser goes
        return error_reply("malformed request: nested too deeply; "
                           'send one flat object per line, e.g. {"cmd": "status"}')
    if not isinstance(request, dict):
        return error_reply(f"a request is a JSON object such as {{\"cmd\": \"status\"}}, "
                           f"not a JSON {type(request).__name__}")
    if "ok" in request:
        return error_reply('"ok" is a reply field, not a request field')
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        return error_reply('the request has no "cmd"; e.g. {"cmd": "status"}')
    return request


def encode_reply(reply: dict) -> bytes:
    try:
        text = json.dumps(reply, allow_nan=False)
    except (TypeError, ValueError) as exc:
        log.error("control socket: reply cannot be encoded: %s", exc)
        text = json.dumps(error_reply(f"internal error: reply cannot be encoded as JSON ({exc})"))
    return text.encode() + b"\n"


async def _send(writer: asyncio.StreamWriter, reply: dict, reply_timeout: float) -> bool:
    try:
        writer.write(encode_reply(reply))
        await asyncio.wait_for(writer.drain(), reply_timeout)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        # The client stopped reading or went away mid-reply: nothing to tell it.
        writer.transport.abort()
        return False
    return True


# --- client -----------------------------------------------------------------------------

def request(path: str, message: dict, timeout: float = 5.0) -> dict:
    """Send one request to the agent on `path` and return its reply (blocking).

    Raises AgentNotRunning when nothing answers on `path`, IpcError for anything else
    that keeps the request from being answered (permissions, timeout, garbled reply)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise AgentNotRunning(f"no NetPath agent is running (nothing answers on {path}); "
                                  "start it with `/etc/init.d/netpath start` or `netpath-agent`") from None
        except PermissionError:
            raise IpcError(f"permission denied on {path}: the agent's socket is for root only") from None
        except socket.timeout:
            raise IpcError(f"the agent on {path} did not accept the connection within {timeout:g} s") from None
        except OSError as exc:
            raise IpcError(f"cannot connect to {path}: {exc.strerror}") from None
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = _read_line(sock)
        except socket.timeout:
            raise IpcError(f"the agent on {path} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise IpcError(f"the connection to the agent on {path} failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not data.strip():
        raise IpcError(f"the agent on {path} closed the connection without an answer")
    try:
        reply = json.loads(data)
    except ValueError:
        raise IpcError(f"the agent on {path} sent something that is not JSON: {data[:80]!r}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise IpcError(f"the agent on {path} sent a reply without \"ok\": {data[:80]!r}")
    return reply


def _read_line(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            break
        if size > MAX_REPLY_BYTES:
            raise IpcError(f"the agent's reply is longer than {MAX_REPLY_BYTES // (1024 * 1024)} MiB")
    return b"".join(chunks).split(b"\n", 1)[0]
