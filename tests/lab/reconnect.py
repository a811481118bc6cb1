"""A LAN client that keeps opening new connections and, like the kernel's port allocator,
gives the source port of a failed attempt to the next one.

    ip netns exec np12ab-c python tests/lab/reconnect.py --http 203.0.113.10:80 \\
        --udp 203.0.113.10:7 --source 192.168.10.2 --gap 0.05 < /dev/null-until-done

Every `--gap` seconds it starts one TCP attempt (HTTP/1.0 GET, the answer is the body: the
address the server saw) and one UDP attempt (a datagram to the peer-echo, resent every
0.25 s), each from its own socket. A port whose attempt got an answer is never used again;
a port whose attempt failed goes back to the pool and the next attempt takes it: its first
packet meets the conntrack entry that the failed attempt left behind (SYN_SENT or unreplied
UDP), which is how a new connection can inherit the mark of a dead uplink.

It stops when stdin closes, waits for the attempts in flight and prints one JSON list:
[{"proto": "tcp"|"udp", "port": n, "reused": bool, "start": t, "end": t, "answer": str|null,
  "error": str|null}]
(times from time.time()).
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import parse_endpoint  # noqa: E402

UDP_RESEND = 0.25


def tcp_attempt(source: str, port: int, endpoint: tuple, timeout: float) -> tuple:
    """(the answer or None, what went wrong or None)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((source, port))
        sock.settimeout(timeout)
        step = "connect"
        try:
            sock.connect(endpoint)
            step = "request"
            sock.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        except OSError as exc:
            return None, f"{step}: {exc.strerror or type(exc).__name__}"
    head, _, body = data.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.0 200"):
        return body.decode(errors="replace").strip(), None
    return None, f"answer: {head[:40]!r}"


def udp_attempt(source: str, port: int, endpoint: tuple, timeout: float) -> tuple:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, port))
        sock.settimeout(UDP_RESEND)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.sendto(b"who am i\n", endpoint)
            try:
                return sock.recv(4096).decode(errors="replace").strip(), None
            except OSError:
                continue
    return None, "no answer"


class Ports:
    """Fresh ports from `first` up; a failed attempt's port is handed out again first."""

    def __init__(self, first: int):
        self.next = first
        self.returned: collections.deque = collections.deque()
        self.lock = threading.Lock()

    def take(self) -> tuple:
        with self.lock:
            if self.returned:
                return self.returned.popleft(), True
            self.next += 1
            return self.next - 1, False

    def give_back(self, port: int) -> None:
        with self.lock:
            self.returned.append(port)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http", type=parse_endpoint, required=True)
    p.add_argument("--udp", type=parse_endpoint, required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--gap", type=float, default=0.05)
    p.add_argument("--timeout", type=float, default=2.5)
    args = p.parse_args(argv)

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    results, lock, threads = [], threading.Lock(), []
    kinds = (("tcp", tcp_attempt, args.http, Ports(20000)), ("udp", udp_attempt, args.udp, Ports(40000)))

    def attempt(proto, run, endpoint, ports):
        port, reused = ports.take()
        start = time.time()
        answer, error = run(args.source, port, endpoint, args.timeout)
        if answer is None:
            ports.give_back(port)
        with lock:
            results.append({"proto": proto, "port": port, "reused": reused, "start": start,
                            "end": time.time(), "answer": answer,
                            "error": error})

    while not stop.is_set():
        for kind in kinds:
            thread = threading.Thread(target=attempt, args=kind, daemon=True)
            thread.start()
            threads.append(thread)
        threads = [t for t in threads if t.is_alive()]
        stop.wait(args.gap)
    for thread in threads:
        thread.join()
    print(json.dumps(sorted(results, key=lambda r: r["start"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
