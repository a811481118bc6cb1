"""The control socket against real Unix sockets and a real asyncio server.

The dispatch function here is a small real command table (the agent's own lives in
agent/commands.py); what is under test is the transport: framing, bounds, timeouts,
socket-file handling and that nothing a client does delays the rest of the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import statistics
import sys
import tempfile
import time

import pytest

from netpath.agent import ipc

INTERFACES = {"wan": "online", "wanb": "offline"}
KNOWN = ("status", "interfaces", "enable", "echo", "boom", "big", "slow")


async def dispatch(request: dict) -> dict:
    """A small command table with the agent's validation style."""
    cmd = request["cmd"]
    if cmd == "status":
        return {"ok": True, "interfaces": sorted(INTERFACES)}
    if cmd == "echo":
        return {"ok": True, "echo": request.get("value")}
    if cmd == "enable":
        name = request.get("interface")
        if not isinstance(name, str):
            return ipc.error_reply('"enable" needs "interface": the name of an interface')
        if name not in INTERFACES:
            return ipc.error_reply(f"unknown interface {name!r}; known: {', '.join(sorted(INTERFACES))}")
        return {"ok": True, "interface": name, "admin": "enabled"}
    if cmd == "boom":
        raise RuntimeError("the command table broke")
    if cmd == "big":
        return {"ok": True, "blob": "x" * request.get("size", 4 * 1024 * 1024)}
    if cmd == "slow":
        await asyncio.sleep(request.get("seconds", 0.2))
        return {"ok": True}
    return ipc.error_reply(f"unknown command {cmd!r}; known: {', '.join(KNOWN)}")


@pytest.fixture
def sockdir():
    # Short path: sun_path holds 108 bytes, pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="ipc-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def raw(path: str, data: bytes, *, close_write: bool = True, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes; returns everything it sent."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        await writer.drain()
        if close_write:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def reply_of(data: bytes) -> dict:
    assert data.endswith(b"\n"), data[:200]
    assert data.count(b"\n") == 1, "exactly one reply line"
    return json.loads(data)


def run(coro):
    return asyncio.run(coro)


# --- happy path and the client function ---------------------------------------------------

def test_request_and_reply_with_the_sync_client(sockdir):
    path = os.path.join(sockdir, "np.sock")

    async def scenario():
        server = await ipc.serve(path, dispatch)
        try:
            reply = await asyncio.to_thread(ipc.request, path, {"cmd": "status"})
            echo = await asyncio.to_thread(ipc.request, path, {"cmd": "echo", "value": "é ☃"})
        finally:
            await ipc.stop(server)
        return reply, echo

    reply, echo = run(scenario())
    assert reply == {"ok": True, "interfaces": ["wan", "wanb"]}
    assert echo == {"ok": True, "echo": "é ☃"}
    assert not os.path.exists(path), "stop() removes its socket file"


def test_seed_form_one_line_then_close(sockdir):
    """`echo '{"cmd":"status"}' | nc -U`: the agent answers and closes on its own,
    even when the client keeps its side open (nc without -N)."""
    path = os.path.join(sockdir, "np.sock")

    async def scenario():
        server = await ipc.serve(path, dispatch)
        try:
            kept_open = await raw(path, b'{"cmd":"status"}\n', close_write=False, timeout=2.0)
            no_newline = await raw(path, b'{"cmd":"status"}')  # EOF ends the line
            nothing = await raw(path, b"")
        finally:
            await ipc.stop(server)
        return kept_open, no_newline, nothing

    kept_open, no_newline, nothing = run(scenario())
    assert reply_of(kept_open)["ok"] is True
    assert reply_of(no_newline)["ok"] is True
    assert nothing == b"", "a client that sends nothing and closes gets nothing"


# --- bad input ------------------------------------------------------------------------------

BAD_REQUESTS = [
    (b"{not json\n", "malformed JSON"),
    (b"\xff\xfe\x00garbage\n", "malformed JSON"),
    (b'["status"]\n', "not a JSON list"),
    (b'"status"\n', "not a JSON str"),
    (b"42\n", "not a JSON int"),
    (b"null\n", "not a JSON NoneType"),
    (b"{}\n", 'no "cmd"'),
    (b'{"cmd": 7}\n', 'no "cmd"'),
    (b'{"cmd": ""}\n', 'no "cmd"'),
    (b'{"ok": true, "cmd": "status"}\n', "reply field"),
    (b"[" * 40000 + b"\n", "nested too deeply"),
    (b'{"cmd": "reboot"}\n', "unknown command 'reboot'; known: status"),
    (b'{"cmd": "enable"}\n', 'needs "interface"'),
    (b'{"cmd": "enable", "interface": "lan"}\n', "unknown interface 'lan'; known: wan, wanb"),
    (b'{"cmd": "boom"}\n', "internal error: RuntimeError: the command table broke"),
]


def test_bad_requests_get_a_clear_error_and_the_server_goes_on(sockdir):
    path = os.path.join(sockdir, "np.sock")

    async def scenario():
        server = await ipc.serve(path, dispatch)
        try:
            replies = [await raw(path, data) for data, _ in BAD_REQUESTS]
            after = await raw(path, b'{"cmd": "status"}\n')
        finally:
            await ipc.stop(server)
        return replies, after

    replies, after = run(scenario())
    for (data, expected), got in zip(BAD_REQUESTS, replies):
        reply = reply_of(got)
        assert reply["ok"] is False, data[:40]
        assert expected in reply["error"], (data[:40], reply["error"])
    assert reply_of(after)["ok"] is True


def test_dispatch_returning_garbage_becomes_an_internal_error(sockdir):
    path = os.path.join(sockdir, "np.sock")

    async def bad_dispatch(request):
        if request["cmd"] == "list":
            return ["not", "a", "dict"]
        return {"ok": True, "value": float("nan") if request["cmd"] == "nan" else object()}

    async def scenario():
        server = await ipc.serve(path, bad_dispatch)
        try:
            return [reply_of(await raw(path, json.dumps({"cmd": c}).encode() + b"\n"))
                    for c in ("list", "nan", "object")]
        finally:
            await ipc.stop(server)

    for reply in run(scenario()):
        assert reply["ok"] is False and reply["error"].startswith("internal error:"), reply


def test_line_limit_is_64_kib(sockdir):
    path = os.path.join(sockdir, "np.sock")
    overhead = len(b'{"cmd": "echo", "value": ""}')
    fits = b'{"cmd": "echo", "value": "' + b"a" * (ipc.MAX_REQUEST_BYTES - overhead) + b'"}\n'
    assert len(fits) == ipc.MAX_REQUEST_BYTES + 1
    too_long = fits[:-3] + b'a"}\n'

    async def scenario():
        server = await ipc.serve(path, dispatch)
        try:
            ok = reply_of(await raw(path, fits))
            refused = reply_of(await raw(path, too_long))
            # A client that streams megabytes without a newline is cut off, not buffered.
            flood = reply_of(await raw(path, b"x" * (4 * 1024 * 1024), close_write=False))
            after = reply_of(await raw(path, b'{"cmd": "status"}\n'))
        finally:
            await ipc.stop(server)
        return ok, refused, flood, after

    ok, refused, flood, after = run(scenario())
    assert ok["ok"] is True and len(ok["echo"]) == ipc.MAX_REQUEST_BYTES - overhead
    assert refused["ok"] is False and "longer than 64 KiB" in refused["error"]
    assert flood["ok"] is False and "longer than 64 KiB" in flood["error"]
    assert after["ok"] is True


def test_silent_client_times_out_with_an_error(sockdir):
    path = os.path.join(sockdir, "np.sock")

    async def scenario():
        server = await ipc.serve(path, dispatch, request_timeout=0.3)
        try:
            started = time.monotonic()
            data = await raw(path, b"", close_write=False, timeout=5.0)
            return data, time.monotonic() - started
        finally:
            await ipc.stop(server)

    data, waited = run(scenario())
    reply = reply_of(data)
    assert reply["ok"] is False and "no complete request line within 0.3 s" in reply["error"]
    print(f"silent client dropped after {waited:.2f} s")


def test_client_that_vanishes_mid_reply(sockdir):
    path = os.path.join(sockdir, "np.sock")

    async def scenario():
        server = await ipc.serve(path, dispatch, reply_timeout=0.5)
        try:
            for _ in range(5):
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(b'{"cmd": "big", "size": 8388608}\n')
                await writer.drain()
                first = await reader.read(1000)  # the reply has started...
                writer.transport.abort()  # ...and the client is gone
                assert first.startswith(b'{"ok": true')
            # A client that never reads its (large) reply is cut off after reply_timeout.
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b'{"cmd": "big", "size": 8388608}\n')
            await writer.drain()
            await asyncio.sleep(1.0)
            stalled_tasks = len(ipc._SERVERS[server].tasks)
            writer.close()
            after = await asyncio.to_thread(ipc.request, path, {"cmd": "status"})
        finally:
            await ipc.stop(server)
        return stalled_tasks, after

    stalled_tasks, after = run(scenario())
    assert stalled_tasks == 0, "the connection of a client that does not read was dropped"
    assert after["ok"] is True


# --- load -----------------------------------------------------------------------------------

async def ask(path: str, message: dict) -> dict:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        return json.loads(await asyncio.wait_for(reader.readline(), 30))
    finally:
        writer.close()


def test_300_clients_at_once_each_get_their_own_reply(sockdir):
    path = os.path.join(sockdir, "np.sock")
    clients = 300
    arrived = 0
    all_in = None

    async def gathering_dispatch(request):
        # Hold every reply until all clients are inside dispatch: they really are concurrent.
        nonlocal arrived
        arrived += 1
        if arrived == clients:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 20)
        return {"ok": True, "echo": request["value"]}

    async def scenario():
        nonlocal all_in
        all_in = asyncio.Event()
        server = await ipc.serve(path, gathering_dispatch, max_clients=clients)
        try:
            return await asyncio.gather(*(ask(path, {"cmd": "echo", "value": n}) for n in range(clients)))
        finally:
            await ipc.stop(server)

    replies = run(scenario())
    assert [r["echo"] for r in replies] == list(range(clients))


def test_clients_beyond_the_bound_are_told_to_come_back(sockdir):
    path = os.path.join(sockdir, "np.sock")
    held = ipc.MAX_CLIENTS
    release = None
    arrived = 0

    async def holding_dispatch(request):
        nonlocal arrived
        arrived += 1
        await asyncio.wait_for(release.wait(), 20)
        return {"ok": True}

    async def scenario():
        nonlocal release
        release = asyncio.Event()
        server = await ipc.serve(path, holding_dispatch)
        try:
            holders = [asyncio.create_task(ask(path, {"cmd": "hold"})) for _ in range(held)]
            while arrived < held:
                await asyncio.sleep(0.01)
            extra = await asyncio.gather(*(ask(path, {"cmd": "hold"}) for _ in range(44)))
            release.set()
            return await asyncio.gather(*holders), extra
        finally:
            await ipc.stop(server)

    held_replies, extra = run(scenario())
    assert all(r["ok"] for r in held_replies)
    assert all(not r["ok"] and "agent busy" in r["error"] for r in extra)


def test_slow_loris_does_not_delay_a_well_behaved_client(sockdir):
    path = os.path.join(sockdir, "np.sock")

    async def loris(path):
        reader, writer = await asyncio.open_unix_connection(path)
        answer = asyncio.create_task(reader.readline())
        sent = 0
        try:
            for byte in b'{"cmd": "status"' * 100:
                if answer.done():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.05)
            data = await asyncio.wait_for(answer, 5)
        finally:
            writer.close()
        return sent, data

    async def scenario():
        server = await ipc.serve(path, dispatch, request_timeout=1.5)
        try:
            lorises = [asyncio.create_task(loris(path)) for _ in range(20)]
            await asyncio.sleep(0.3)  # the slow clients are mid-request
            started = time.monotonic()
            reply = await asyncio.to_thread(ipc.request, path, {"cmd": "status"})
            took = time.monotonic() - started
            results = await asyncio.gather(*lorises)
        finally:
            await ipc.stop(server)
        return reply, took, results

    reply, took, results = run(scenario())
    assert reply["ok"] is True
    print(f"well-behaved client answered in {took * 1000:.1f} ms while 20 slow clients trickled")
    for sent, data in results:
        loris_reply = reply_of(data)
        assert loris_reply["ok"] is False and "no complete request line" in loris_reply["error"]
        assert sent < 100, "the slow client was cut off at its deadline"


FUZZER = r"""
import json, os, random, socket, sys, threading
path, total, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1234)
cases = [
    (b'{"cmd": "status"}\n', True),
    (b'{"cmd": "echo", "value": [1, 2, 3]}\n', True),
    (b'{"cmd": "nope"}\n', False),
    (b'{"cmd": "enable", "interface": "eth9"}\n', False),
    (b"{\n", False),
    (b"[1, 2]\n", False),
    (b"\x00\x01\x02\n", False),
    (b"[" * 5000 + b"\n", False),
    (b'{"cmd": "echo", "value": "' + b"z" * 70000 + b'"}\n', False),
]
plan = [rng.randrange(len(cases)) for _ in range(total)]
counts = {"ok_as_expected": 0, "error_as_expected": 0, "wrong": 0, "no_reply": 0}
lock = threading.Lock()
def work(indexes):
    for i in indexes:
        data, valid = cases[plan[i]]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(path)
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused mid-send (over-long line); the reply is still readable
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            reply = json.loads(buf) if buf else None
        except (OSError, ValueError):
            reply = None
        finally:
            s.close()
        with lock:
            if reply is None:
                counts["no_reply"] += 1
            elif reply.get("ok") is valid:
                counts["ok_as_expected" if valid else "error_as_expected"] += 1
            else:
                counts["wrong"] += 1
threads = [threading.Thread(target=work, args=(range(w, total, workers),)) for w in range(workers)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts))
"""


def test_timer_keeps_ticking_while_a_fuzzer_hammers_the_socket(sockdir):
    path = os.path.join(sockdir, "np.sock")
    interval = 0.05
    total = 10_000

    async def ticker(gaps, stop):
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(interval)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def scenario():
        server = await ipc.serve(path, dispatch)
        gaps: list = []
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(gaps, stop))
        try:
            fuzzer = await asyncio.create_subprocess_exec(
                sys.executable, "-c", FUZZER, path, str(total), "8",
                stdout=asyncio.subprocess.PIPE)
            try:
                out, _ = await asyncio.wait_for(fuzzer.communicate(), 300)
            except asyncio.TimeoutError:
                fuzzer.kill()
                raise
            stop.set()
            await tick
            after = await asyncio.to_thread(ipc.request, path, {"cmd": "status"})
        finally:
            stop.set()
            await ipc.stop(server)
        return json.loads(out), gaps, after

    counts, gaps, after = run(scenario())
    jitter = [g - interval for g in gaps]
    print(f"\nfuzz: {counts}; ticker at {interval * 1000:.0f} ms over {len(gaps)} ticks: "
          f"lateness median {statistics.median(jitter) * 1000:.2f} ms, "
          f"p99 {sorted(jitter)[int(len(jitter) * 0.99)] * 1000:.2f} ms, max {max(jitter) * 1000:.2f} ms")
    assert counts["wrong"] == 0 and counts["no_reply"] == 0
    assert counts["ok_as_expected"] + counts["error_as_expected"] == total
    assert max(gaps) < 1.0, "the event loop stalled"
    assert after["ok"] is True


# --- the socket file --------------------------------------------------------------------------

def test_socket_is_created_0600_and_owned_by_us(sockdir):
    path = os.path.join(sockdir, "np.sock")
    old_umask = os.umask(0)  # a permissive umask must not leak into the socket's mode
    try:
        async def scenario():
            server = await ipc.serve(path, dispatch)
            st = os.stat(path)
            await ipc.stop(server)
            return st
        st = run(scenario())
    finally:
        os.umask(old_umask)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try the socket as another user")
def test_another_user_cannot_connect(sockdir):
    path = os.path.join(sockdir, "np.sock")
    os.chmod(sockdir, 0o755)  # the directory lets anyone in: only the socket's mode stops them
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('denied')\n"
             "else:\n    s.sendall(b'{\"cmd\": \"status\"}\\n'); print('connected', s.recv(100))\n")

    async def scenario():
        server = await ipc.serve(path, dispatch)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", probe, path, stdout=asyncio.subprocess.PIPE,
                user=65534, group=65534, extra_groups=[])
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            return out.decode().strip()
        finally:
            await ipc.stop(server)

    assert run(scenario()) == "denied"


def _leave_stale_socket(path: str) -> None:
    """What a crashed agent leaves behind: a bound socket file nobody listens on."""
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()


def test_stale_socket_is_replaced(sockdir):
    path = os.path.join(sockdir, "np.sock")
    _leave_stale_socket(path)
    with pytest.raises(ipc.AgentNotRunning):
        ipc.request(path, {"cmd": "status"})

    async def scenario():
        server = await ipc.serve(path, dispatch)
        try:
            return await asyncio.to_thread(ipc.request, path, {"cmd": "status"})
        finally:
            await ipc.stop(server)

    assert run(scenario())["ok"] is True


def test_live_socket_is_not_stolen(sockdir):
    path = os.path.join(sockdir, "np.sock")

    async def scenario():
        first = await ipc.serve(path, dispatch)
        try:
            with pytest.raises(ipc.SocketInUse, match="another NetPath agent answers on"):
                await ipc.serve(path, dispatch)
            return await asyncio.to_thread(ipc.request, path, {"cmd": "status"})
        finally:
            await ipc.stop(first)

    assert run(scenario())["ok"] is True, "the first agent still answers"


def test_something_else_at_the_path_is_left_alone(sockdir):
    path = os.path.join(sockdir, "np.sock")
    with open(path, "w") as f:
        f.write("precious\n")

    async def scenario():
        with pytest.raises(ipc.IpcError, match="exists and is not a socket"):
            await ipc.serve(path, dispatch)

    run(scenario())
    with open(path) as f:
        assert f.read() == "precious\n"


def test_client_errors_name_the_problem(sockdir):
    path = os.path.join(sockdir, "np.sock")
    with pytest.raises(ipc.AgentNotRunning, match="no NetPath agent is running"):
        ipc.request(path, {"cmd": "status"})

    # A listener that accepts but never answers: the client gives up at its timeout.
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    mute.listen(1)
    try:
        with pytest.raises(ipc.IpcError, match="did not answer within 0.3 s"):
            ipc.request(path, {"cmd": "status"}, timeout=0.3)
    finally:
        mute.close()
        os.unlink(path)


HOLD_CONNECTIONS = """
import socket, sys, time
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex(sys.argv[1])
    held.append(s)
print("READY", flush=True)
time.sleep(30)
"""


def test_clients_are_never_accepted_into_the_descriptor_reserve(sockdir):
    """With few descriptors left, the server accepts until FD_RESERVE remain and no further:
    the other clients wait in the kernel's backlog, and the agent can still open sockets
    (for its probes). The clients are another process, as they would be."""
    import resource
    import subprocess

    from netpath.agent import clients

    path = os.path.join(sockdir, "np.sock")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    holder = None

    async def hold(request):
        await asyncio.sleep(30)
        return {"ok": True}

    async def scenario():
        nonlocal holder
        server = await ipc.serve(path, hold)
        try:
            spare = 10
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft - clients.fds_left() + clients.FD_RESERVE + spare, hard))
            holder = subprocess.Popen([sys.executable, "-c", HOLD_CONNECTIONS, path, "40"], stdout=subprocess.PIPE)
            await asyncio.to_thread(holder.stdout.readline)
            await asyncio.sleep(1.0)  # time to accept all 40, if it would
            accepted = len(server.tasks)
            left = clients.fds_left()
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # what a probe round opens
            probe.close()
            return accepted, left
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            if holder is not None:
                holder.kill()
                holder.wait(5)
            await ipc.stop(server)

    accepted, left = run(scenario())
    assert 5 <= accepted <= 10, accepted  # the spare ones (less the holder's pipe), not 40
    assert left == clients.FD_RESERVE
