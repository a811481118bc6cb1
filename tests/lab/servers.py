"""Servers of the lab's "internet": each answer names the client address the server sees.

Run inside a namespace, for example:

    ip netns exec np12ab-net python tests/lab/servers.py \\
        --http 203.0.113.10:80 --http [2001:db8:ffff::10]:80 \\
        --dns 203.0.113.53:53 --dns [2001:db8:ffff::53]:53 --udp 203.0.113.10:7

Every option may repeat. Behind the ISPs' masquerade the seen address tells which uplink carried
a request (172.16.<k>.1 or 2001:db8:200:<k>::1).

- HTTP/1.0, one request per connection: `GET /` answers the seen address; `GET /status/<code>`
  answers with that status; `GET /delay/<ms>` answers after that delay.
- DNS over UDP: A/AAAA for any name under lab.test. (192.0.2.1 / 2001:db8::1); whoami.lab.test.
  answers the seen address as TXT, and as A or AAAA when the family matches; NXDOMAIN elsewhere.
- UDP (`--udp`): every datagram is answered with the seen address.

All sockets are bound, then each server is asked once, then "READY" goes to stdout, so a caller
can wait for that line. SIGTERM stops everything and exits 0.
"""

import argparse
import http.server
import ipaddress
import signal
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dnswire  # noqa: E402

LAB_ZONE = "lab.test."
WHOAMI = "whoami." + LAB_ZONE
ZONE_A = "192.0.2.1"
ZONE_AAAA = "2001:db8::1"
MAX_DELAY_MS = 60_000
SELF_CHECK_TIMEOUT_S = 2.0


def parse_endpoint(text: str) -> tuple[str, int]:
    """'203.0.113.10:80' or '[2001:db8::1]:80' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDRESS:PORT or [ADDRESS]:PORT, got {text!r}")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{host!r} is not an IP address") from None
    return host, int(port)


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def seen_address(peer_host: str) -> str:
    """Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; answer the plain IPv4 form."""
    address = ipaddress.ip_address(peer_host.split("%")[0])
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


class PeerAddressHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "netpath-lab"

    def do_GET(self):
        parts = [part for part in self.path.split("?")[0].split("/") if part]
        status = 200
        if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            status = int(parts[1])
        elif len(parts) == 2 and parts[0] == "delay" and parts[1].isdigit():
            time.sleep(min(int(parts[1]), MAX_DELAY_MS) / 1000)
        elif parts:
            status = 404
        body = (seen_address(self.client_address[0]) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # hundreds of requests per test; stderr stays for real errors


class PeerAddressHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, endpoint, dual_stack=False):
        self.address_family = family_of(endpoint[0])
        self.dual_stack = dual_stack
        super().__init__(endpoint, PeerAddressHandler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if self.dual_stack else 1)
        super().server_bind()


def dns_answer(qname: str, qtype: int, peer: str) -> tuple[int, list[tuple[int, str]]]:
    if qname != LAB_ZONE and not qname.endswith("." + LAB_ZONE):
        return dnswire.RCODE_NXDOMAIN, []
    peer_type = dnswire.TYPE_AAAA if ":" in peer else dnswire.TYPE_A
    if qname == WHOAMI:
        if qtype == dnswire.TYPE_TXT or qtype == peer_type:
            return dnswire.RCODE_NOERROR, [(qtype, peer)]
        return dnswire.RCODE_NOERROR, []
    if qtype == dnswire.TYPE_A:
        return dnswire.RCODE_NOERROR, [(qtype, ZONE_A)]
    if qtype == dnswire.TYPE_AAAA:
        return dnswire.RCODE_NOERROR, [(qtype, ZONE_AAAA)]
    return dnswire.RCODE_NOERROR, []


class DnsHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        peer = seen_address(self.client_address[0])
        try:
            query_id, flags, qname, qtype, question = dnswire.parse_query(data)
        except (ValueError, IndexError, UnicodeDecodeError):
            return  # not a query we understand; a real server would answer FORMERR, silence is enough here
        rcode, answers = dns_answer(qname, qtype, peer)
        sock.sendto(dnswire.build_response(query_id, flags, question, rcode, answers), self.client_address)


class UdpPeerHandler(socketserver.BaseRequestHandler):
    def handle(self):
        _data, sock = self.request
        sock.sendto((seen_address(self.client_address[0]) + "\n").encode(), self.client_address)


class LabUDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, endpoint, handler):
        self.address_family = family_of(endpoint[0])
        super().__init__(endpoint, handler)


def ask_http(endpoint) -> None:
    host, port = endpoint
    if host in ("::", "0.0.0.0"):
        host = "::1" if host == "::" else "127.0.0.1"
    with socket.create_connection((host, port), timeout=SELF_CHECK_TIMEOUT_S) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = sock.recv(4096)
    if not reply.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"HTTP server on {endpoint} answered {reply[:40]!r}")


def ask_dns(endpoint) -> None:
    with socket.socket(family_of(endpoint[0]), socket.SOCK_DGRAM) as sock:
        sock.settimeout(SELF_CHECK_TIMEOUT_S)
        sock.sendto(dnswire.build_query(4242, "ready." + LAB_ZONE, dnswire.TYPE_A), endpoint)
        rcode, values = dnswire.parse_response(sock.recv(4096), 4242)
    if rcode != dnswire.RCODE_NOERROR or values != [ZONE_A]:
        raise RuntimeError(f"DNS server on {endpoint} answered rcode {rcode} {values}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--http", type=parse_endpoint, action="append", default=[], metavar="ADDR:PORT")
    parser.add_argument("--dns", type=parse_endpoint, action="append", default=[], metavar="ADDR:PORT")
    parser.add_argument("--udp", type=parse_endpoint, action="append", default=[], metavar="ADDR:PORT")
    parser.add_argument("--dual-stack", action="store_true",
                        help="let an HTTP server bound to [::] also accept IPv4")
    args = parser.parse_args(argv)
    if not (args.http or args.dns or args.udp):
        parser.error("nothing to serve: give --http, --dns or --udp")

    try:
        servers = [PeerAddressHTTPServer(endpoint, args.dual_stack) for endpoint in args.http]
        servers += [LabUDPServer(endpoint, DnsHandler) for endpoint in args.dns]
        servers += [LabUDPServer(endpoint, UdpPeerHandler) for endpoint in args.udp]
    except OSError as error:
        print(f"servers: cannot bind: {error}", file=sys.stderr)
        return 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for server in servers]
    for thread in threads:
        thread.start()

    try:
        for endpoint in args.http:
            ask_http(endpoint)
        for endpoint in args.dns:
            ask_dns(endpoint)
    except (OSError, RuntimeError, ValueError) as error:
        print(f"servers: self-check failed: {error}", file=sys.stderr)
        return 1
    print("READY", flush=True)

    stop.wait()
    stoppers = [threading.Thread(target=server.shutdown) for server in servers]  # in parallel: each waits a poll
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()
    for server in servers:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
