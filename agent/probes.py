"""Probes: one round of a WAN health check (ping, httping, dns, arping).

Every probe is bound to its WAN the way mwan3's LD_PRELOAD wrapper binds its tools: the socket
gets SO_BINDTODEVICE on the WAN device, the WAN address as source when it is known, and an
optional SO_MARK. Every probe has a hard time limit (``asyncio.wait_for`` around the whole
round) and never blocks the event loop: ICMP, DNS and ARP use non-blocking sockets watched by the
loop; HTTP runs in a worker thread whose sockets are shut down when the time is up.

ICMP and ARP are written against the standard library: icmplib cannot bind a socket to a device
through its API (only a source address), so it would be used only to build an 8-byte header, and
scapy costs about a second and 60 MiB to import for what is one ``struct.pack`` here.
requests (httping) and dnspython (dns) are imported the first time a probe of that method runs,
in a worker thread, so importing this module stays cheap and the loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import os
import random
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_MARK = getattr(socket, "SO_MARK", 36)

METHODS = ("ping", "httping", "dns", "arping")

# What each method needs beyond the standard library, and the name to tell the user.
_LIBRARIES = {"httping": ("requests", "requests"), "dns": ("dns.message", "dnspython")}


@dataclass(frozen=True)
class ProbeSpec:
    method: str  # "ping" | "httping" | "dns" | "arping"
    target: str  # IP address (or host name for httping URL host)
    device: str  # WAN device, e.g. "wan1"
    family: int = 4  # 4 or 6
    source: str | None = None  # WAN address to bind, when known
    count: int = 1  # packets / requests per probe round
    timeout: float = 4.0  # seconds, hard limit for the whole probe
    size: int = 56  # ping payload
    max_ttl: int = 60  # ping ttl / hop limit
    http_url: str | None = None  # default http://<target>/ ; https supported
    http_status: int = 200  # expected status (or 0 = any 2xx/3xx)
    dns_query: str = "."  # name to resolve with target as the server
    dns_type: str = "A"  # record type; an answer section is required (NOERROR with answers)
    fwmark: int | None = None  # optional SO_MARK to set on the probe socket


@dataclass(frozen=True)
class ProbeResult:
    target: str
    sent: int
    received: int
    latencies_ms: tuple  # one per reply
    error: str | None = None  # short reason when nothing came back

    @property
    def ok(self) -> bool:
        return self.received > 0 and self.error is None

    @property
    def loss_pct(self) -> float:
        if self.sent <= 0:
            return 100.0
        return 100.0 * (self.sent - self.received) / self.sent

    @property
    def latency_ms(self) -> float | None:
        if not self.latencies_ms:
            return None
        return sum(self.latencies_ms) / len(self.latencies_ms)


@dataclass
class _Tally:
    """What a probe round has seen so far; survives the round being cut off by its timeout."""

    sent: int = 0
    latencies_ms: list = field(default_factory=list)
    error: str | None = None  # the last failure seen; reported only if no reply arrived

    def result(self, target: str) -> ProbeResult:
        latencies = tuple(round(ms, 3) for ms in self.latencies_ms)
        error = None if latencies else (self.error or "timeout")
        return ProbeResult(target, self.sent, len(latencies), latencies, error)


async def probe(spec: ProbeSpec) -> ProbeResult:
    """Run one probe round. Network problems come back as ``ProbeResult.error``, never raised."""
    runner = _RUNNERS.get(spec.method)
    if runner is None:
        return ProbeResult(spec.target, 0, 0, (), f"unknown probe method {spec.method!r}")
    if spec.family not in (4, 6):
        return ProbeResult(spec.target, 0, 0, (), f"family must be 4 or 6, not {spec.family}")
    if spec.count < 1:
        return ProbeResult(spec.target, 0, 0, (), f"count must be at least 1, not {spec.count}")
    missing = await _load_library(spec.method)
    if missing:
        return ProbeResult(spec.target, 0, 0, (), missing)
    tally = _Tally()
    try:
        await asyncio.wait_for(runner(spec, tally), timeout=spec.timeout)
    except asyncio.TimeoutError:
        pass  # the tally says what came back in time
    except OSError as exc:
        tally.error = _reason(exc)
    except ValueError as exc:  # an address or name that does not parse
        tally.error = f"bad probe setting: {exc}"
    return tally.result(spec.target)


async def preload(methods) -> list[str]:
    """Import what the given probe methods need before the first round (the agent calls this at
    start with the methods its interfaces use). Otherwise the first round does it, and an import
    of 100-300 ms in a worker thread holds the GIL long enough to inflate the latencies measured
    by the probes running beside it. Returns one message per missing library."""
    errors = await asyncio.gather(*(_load_library(method) for method in sorted(set(methods))))
    return [error for error in errors if error]


async def _load_library(method: str) -> str | None:
    """Import the method's library off the loop thread on first use; an error text if missing."""
    module, package = _LIBRARIES.get(method, (None, None))
    if module is None or module in sys.modules:
        return None
    try:
        await asyncio.to_thread(importlib.import_module, module)
    except ImportError:
        return f"{method} needs {package}, which is not installed"
    return None


_ERRNO_REASONS = {
    errno.ENETUNREACH: "no route",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ENODEV: "no such device",
    errno.EADDRNOTAVAIL: "source address not available",
    errno.EPERM: "permission denied",
    errno.EACCES: "permission denied",
    errno.ENETDOWN: "device down",
    errno.ETIMEDOUT: "timeout",
}


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.timeout):
        return "timeout"
    return _ERRNO_REASONS.get(exc.errno, exc.strerror or str(exc))


def _bind_to_wan(sock: socket.socket, spec: ProbeSpec) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, spec.device.encode())
    if spec.fwmark is not None:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, spec.fwmark)
    if spec.source:
        sock.bind((spec.source, 0))


def _address_family(spec: ProbeSpec) -> int:
    return socket.AF_INET if spec.family == 4 else socket.AF_INET6


def _packed(family: int, address: str) -> bytes:
    """The address in network byte order; ignores an IPv6 zone suffix (``fe80::1%wan1``)."""
    try:
        return socket.inet_pton(family, address.split("%", 1)[0])
    except OSError:
        version = 4 if family == socket.AF_INET else 6
        raise ValueError(f"{address!r} is not an IPv{version} address") from None


async def _exchange(sock, spec: ProbeSpec, tally: _Tally, send, match) -> None:
    """Send ``spec.count`` requests and collect the replies until all are answered.

    Requests are paced like ping's one per second, squeezed so that the last one still has at
    least half of the timeout to be answered. ``send(seq)`` transmits request ``seq``;
    ``match(data, addr)`` returns ``(seq, error)`` for a reply to one of this round's requests
    (``seq`` None: the newest unanswered one, for ARP which has no sequence numbers) or None.
    The caller's ``wait_for`` ends the round when the time is up.
    """
    loop = asyncio.get_running_loop()
    sent_at: dict[int, float] = {}
    unanswered: set[int] = set()
    all_sent = False
    finished = asyncio.Event()

    def on_readable() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error queued on the socket; the next read goes on
                tally.error = _reason(exc)
                continue
            arrived = time.perf_counter()
            hit = match(data, addr)
            if hit is None:
                continue
            seq, error = hit
            if seq is None and unanswered:
                seq = max(unanswered)
            if seq not in unanswered:
                continue  # a duplicate, or a late answer already given up on
            unanswered.discard(seq)
            if error:
                tally.error = error
            else:
                tally.latencies_ms.append((arrived - sent_at[seq]) * 1000.0)
            if all_sent and not unanswered:
                finished.set()

    interval = min(1.0, spec.timeout / (2 * (spec.count - 1))) if spec.count > 1 else 0.0
    loop.add_reader(sock.fileno(), on_readable)
    try:
        for seq in range(spec.count):
            if seq:
                await asyncio.sleep(interval)
            sent_at[seq] = time.perf_counter()
            unanswered.add(seq)
            send(seq)
            tally.sent += 1
        all_sent = True
        if unanswered:
            await finished.wait()
    finally:
        loop.remove_reader(sock.fileno())


# --- ping -----------------------------------------------------------------------------------

_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}
_ICMP_ERRORS = {  # (family, type) -> {code: reason}, default reason under None
    (4, 3): {0: "network unreachable", 1: "host unreachable", 13: "prohibited", None: "unreachable"},
    (4, 11): {None: "ttl exceeded"},
    (6, 1): {0: "no route", 1: "prohibited", 3: "host unreachable", None: "unreachable"},
    (6, 3): {None: "hop limit exceeded"},
}
SOL_RAW, ICMP_FILTER = 255, 1
SOL_ICMPV6, ICMP6_FILTER = 58, 1

# Echo identifiers of the rounds in flight: raw sockets see every ICMP packet of the host, so the
# identifier (plus sequence, payload and peer) is what tells two concurrent rounds apart.
_icmp_ids_in_use: set[int] = set()
_next_icmp_id = random.randrange(0x10000)


def _claim_icmp_id() -> int:
    global _next_icmp_id
    for _ in range(0x10000):
        ident, _next_icmp_id = _next_icmp_id, (_next_icmp_id + 1) & 0xFFFF
        if ident not in _icmp_ids_in_use:
            _icmp_ids_in_use.add(ident)
            return ident
    raise OSError(errno.EAGAIN, "all 65536 ICMP identifiers are in use")


def _open_icmp_socket(family: int) -> tuple[socket.socket, bool]:
    """A kernel ping socket when ping_group_range allows it (the kernel then routes each reply to
    its own socket), else a raw socket (needs CAP_NET_RAW). Returns (socket, is_raw)."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    proto = socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6
    try:
        return socket.socket(af, socket.SOCK_DGRAM, proto), False
    except PermissionError:
        pass
    try:
        sock = socket.socket(af, socket.SOCK_RAW, proto)
    except PermissionError:
        raise PermissionError(
            errno.EPERM, "ping needs CAP_NET_RAW or a group in net.ipv4.ping_group_range"
        ) from None
    # Let only echo replies and the errors we understand wake the loop.
    wanted = {t for (fam, t) in _ICMP_ERRORS if fam == family} | {_ECHO_REPLY[family]}
    if family == 4:
        blocked = ~sum(1 << t for t in wanted) & 0xFFFFFFFF
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", blocked))
    else:
        words = [0xFFFFFFFF] * 8
        for t in wanted:
            words[t >> 5] &= ~(1 << (t & 31))
        sock.setsockopt(SOL_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
    return sock, True


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, 0, ident, seq)
    # The ICMPv6 checksum covers a pseudo header; the kernel fills it in for IPv6 sockets.
    checksum = _checksum(header + payload) if family == 4 else 0
    return struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, checksum, ident, seq) + payload


async def _ping(spec: ProbeSpec, tally: _Tally) -> None:
    af = _address_family(spec)
    target = _packed(af, spec.target)
    token = os.urandom(8)
    payload = (token * (spec.size // 8 + 1))[: spec.size]
    ident = _claim_icmp_id()
    sock, is_raw = _open_icmp_socket(spec.family)
    try:
        _bind_to_wan(sock, spec)
        if spec.family == 4:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, spec.max_ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, spec.max_ttl)

        def send(seq: int) -> None:
            sock.sendto(_echo_request(spec.family, ident, seq, payload), (spec.target, 0))

        def match(data: bytes, addr) -> tuple | None:
            if is_raw and spec.family == 4:
                data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets deliver the IP header too
            if len(data) < 8:
                return None
            kind, code, _, reply_id, seq = struct.unpack_from("!BBHHH", data)
            if kind == _ECHO_REPLY[spec.family]:
                # A ping socket's identifier is rewritten by the kernel, which demultiplexes by it.
                if (is_raw and reply_id != ident) or data[8:] != payload:
                    return None
                if _packed(af, addr[0]) != target:
                    return None
                return seq, None
            reasons = _ICMP_ERRORS.get((spec.family, kind))
            if reasons is None or not is_raw:
                return None
            # The error quotes our request: its IP header, then the first 8 bytes of the echo.
            quoted = data[8:]
            if spec.family == 4:
                if len(quoted) < 20:
                    return None
                quoted_dst, echo = quoted[16:20], quoted[(quoted[0] & 0x0F) * 4 :]
            else:
                quoted_dst, echo = quoted[24:40], quoted[40:]
            if len(echo) < 8 or quoted_dst != target:
                return None
            q_kind, _, _, q_id, q_seq = struct.unpack_from("!BBHHH", echo)
            if q_kind != _ECHO_REQUEST[spec.family] or q_id != ident:
                return None
            return q_seq, reasons.get(code, reasons[None])

        await _exchange(sock, spec, tally, send, match)
    finally:
        sock.close()
        _icmp_ids_in_use.discard(ident)


# --- dns ------------------------------------------------------------------------------------

DNS_PORT = 53


async def _dns(spec: ProbeSpec, tally: _Tally) -> None:
    import dns.exception
    import dns.message
    import dns.rcode
    import dns.rdatatype

    af = _address_family(spec)
    server = _packed(af, spec.target)
    try:
        rdtype = dns.rdatatype.from_text(spec.dns_type)
        dns.message.make_query(spec.dns_query, rdtype)
    except dns.exception.DNSException as exc:
        raise ValueError(f"DNS query {spec.dns_query!r} {spec.dns_type!r}: {exc}") from None
    queries: dict[int, tuple[int, object]] = {}  # DNS message id -> (seq, query)
    # dnspython's own socket handling has no hook for SO_BINDTODEVICE, so it only builds and
    # parses the messages; the socket is ours.
    with socket.socket(af, socket.SOCK_DGRAM) as sock:
        _bind_to_wan(sock, spec)

        def send(seq: int) -> None:
            query = dns.message.make_query(spec.dns_query, rdtype)
            while query.id in queries:
                query.id = random.randrange(0x10000)
            queries[query.id] = (seq, query)
            sock.sendto(query.to_wire(), (spec.target, DNS_PORT))

        def match(data: bytes, addr) -> tuple | None:
            if addr[1] != DNS_PORT or _packed(af, addr[0]) != server or len(data) < 12:
                return None
            seq, query = queries.get(struct.unpack_from("!H", data)[0], (None, None))
            if query is None:
                return None
            try:
                reply = dns.message.from_wire(data)
            except dns.exception.DNSException:
                return seq, "malformed DNS reply"
            if not query.is_response(reply):
                return None
            if reply.rcode() != dns.rcode.NOERROR:
                return seq, dns.rcode.to_text(reply.rcode())
            if not reply.answer:
                return seq, "no answer"
            return seq, None

        await _exchange(sock, spec, tally, send, match)


# --- arping ---------------------------------------------------------------------------------

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
SIOCGIFADDR = 0x8915
PACKET_OUTGOING = 4


def _device_ipv4(device: str) -> bytes:
    """The device's primary IPv4 address, or 0.0.0.0 (an RFC 5227 probe, still answered)."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            ifreq = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("16s24x", device.encode()))
        except OSError:
            return bytes(4)
    return ifreq[20:24]  # ifr_name[16], then sockaddr_in: family, port, address


async def _arping(spec: ProbeSpec, tally: _Tally) -> None:
    if spec.family != 4:
        tally.error = "arping is IPv4 only"
        return
    target = _packed(socket.AF_INET, spec.target)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.setblocking(False)
        sock.bind((spec.device, ETH_P_ARP))
        mac = sock.getsockname()[4]
        sender = _packed(socket.AF_INET, spec.source) if spec.source else _device_ipv4(spec.device)
        who_has = (
            b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, mac, sender, bytes(6), target)
        )

        def send(seq: int) -> None:
            sock.send(who_has)

        def match(data: bytes, addr) -> tuple | None:
            if addr[2] == PACKET_OUTGOING or len(data) < 42:
                return None
            opcode, sender_ip = struct.unpack_from("!6xH6x4s", data, 14)  # after the Ethernet header
            if opcode != 2 or sender_ip != target:
                return None
            return None, None  # ARP has no sequence numbers: it answers the newest request

        await _exchange(sock, spec, tally, send, match)


# --- httping --------------------------------------------------------------------------------


def _http_url(spec: ProbeSpec) -> str:
    if spec.http_url:
        return spec.http_url
    host = f"[{spec.target}]" if ":" in spec.target else spec.target
    return f"http://{host}/"


def _status_ok(status: int, expected: int) -> bool:
    return 200 <= status < 400 if expected == 0 else status == expected


def _bound_session(spec: ProbeSpec, opened: list):
    """A requests session whose every connection is bound to the WAN and recorded in ``opened``."""
    import requests
    import urllib3
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    options = list(HTTPConnection.default_socket_options)
    options.append((socket.SOL_SOCKET, SO_BINDTODEVICE, spec.device.encode()))
    if spec.fwmark is not None:
        options.append((socket.SOL_SOCKET, SO_MARK, spec.fwmark))

    def recording(connection_class):
        class Recording(connection_class):
            def _new_conn(self):
                sock = super()._new_conn()
                opened.append(sock)
                return sock

        return Recording

    class BoundAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["socket_options"] = options
            if spec.source:
                kwargs["source_address"] = (spec.source, 0)
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": recording(HTTPConnection)}),
                "https": type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": recording(HTTPSConnection)}),
            }

    # The probe asks "does this uplink reach a web server", not "is this the right server":
    # a bare-IP target has no certificate to match, as with httping.
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would carry the probe elsewhere
    session.verify = False
    session.mount("http://", BoundAdapter())
    session.mount("https://", BoundAdapter())
    return session


def _http_reason(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    seen = set()
    while exc is not None and id(exc) not in seen:  # find the socket error inside the wrappers
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return _reason(exc)
        exc = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
    return "connection failed"


def _http_rounds(spec: ProbeSpec, tally: _Tally, session, deadline: float) -> None:
    """Blocking GETs, each with its share of the time left; runs in a worker thread."""
    import requests

    url = _http_url(spec)
    try:
        for attempt in range(spec.count):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            tally.sent += 1
            started = time.perf_counter()
            try:
                with session.get(
                    url, timeout=left / (spec.count - attempt), stream=True,
                    allow_redirects=False, headers={"Connection": "close"},
                ) as response:
                    elapsed_ms = (time.perf_counter() - started) * 1000.0
                    if _status_ok(response.status_code, spec.http_status):
                        tally.latencies_ms.append(elapsed_ms)
                    else:
                        tally.error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                tally.error = _http_reason(exc)
    finally:
        session.close()


async def _httping(spec: ProbeSpec, tally: _Tally) -> None:
    opened: list = []
    session = _bound_session(spec, opened)
    try:
        await asyncio.to_thread(_http_rounds, spec, tally, session, time.monotonic() + spec.timeout)
    finally:
        # When the time is up the thread may still sit in connect or recv: shutting its sockets
        # down makes those calls return at once, so no thread outlives its probe by much.
        for sock in list(opened):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


_RUNNERS = {"ping": _ping, "httping": _httping, "dns": _dns, "arping": _arping}
