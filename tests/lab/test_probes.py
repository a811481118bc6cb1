"""Probe methods against real targets in throw-away network namespaces.

Topology (all names start with "pb"):

    pb-a (router, runs the probes)          pb-b (target)
      pb0  192.168.77.1/24  ----------------  pb0p 192.168.77.2/24
           2001:db8:77::1/64                       2001:db8:77::2/64, HTTP :80, DNS :53
      pb1  192.168.78.1/24  ----------------  pb1p 192.168.78.2/24   pb-c (other uplink)

The test process lives in the root namespace and sends nothing itself: every probe runs in a
Python child started with ``ip netns exec pb-a``.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from contextlib import contextmanager

import pytest

PYTHON = sys.executable
NS_ROUTER, NS_TARGET, NS_OTHER = "pb-a", "pb-b", "pb-c"
TARGET4, TARGET6 = "192.168.77.2", "2001:db8:77::2"
ROUTER4, ROUTER6, OTHER_WAN4 = "192.168.77.1", "2001:db8:77::1", "192.168.78.1"
DEAD4 = "192.168.77.99"  # on pb0's link, nobody owns it

# Runs in pb-b: a tiny HTTP server (GET /status/<n> answers n), on port 8081 a server whose
# response headers never end, and a tiny DNS responder:
# ok.test. has an A record, nx.test. is NXDOMAIN, anything else is NOERROR without answers.
TARGET_SERVERS = r'''
import http.server, socket, struct, sys, threading, time

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

class DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

def dns_name(packet, offset):
    labels = []
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels).lower() + ".", offset + 1

def serve_dns(sock):
    while True:
        query, peer = sock.recvfrom(512)
        ident, = struct.unpack_from("!H", query)
        name, end = dns_name(query, 12)
        qtype, = struct.unpack_from("!H", query, end)
        question = query[12:end + 4]
        rcode, answers = 0, b""
        if name == "nx.test.":
            rcode = 3
        elif name == "ok.test." and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH4s", 1, 1, 60, 4, socket.inet_aton("192.0.2.53"))
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
        sock.sendto(header + question + answers, peer)

def trickle(listener):
    # Accepts, then sends one more header line every 0.2 s for ever: no read ever times out.
    def drip(conn):
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while True:
                conn.sendall(b"X-Wait: 1\r\n")
                time.sleep(0.2)
        except OSError:
            conn.close()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=drip, args=(conn,), daemon=True).start()

trickle_sock = socket.create_server(("::", 8081), family=socket.AF_INET6, dualstack_ipv6=True)
threading.Thread(target=trickle, args=(trickle_sock,), daemon=True).start()
dns_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
dns_sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
dns_sock.bind(("::", 53))
threading.Thread(target=serve_dns, args=(dns_sock,), daemon=True).start()
server = DualStackServer(("::", 80), Handler)
print("ready", flush=True)
server.serve_forever()
'''

# Runs in pb-a: probes every spec given as JSON, all at once on one loop, and reports each
# result with its elapsed time, the wall time of the batch, the time until every worker thread
# had finished (``drained``) and which heavy libraries got loaded.
PROBE_RUNNER = r'''
import asyncio, json, sys, time
from netpath.agent.probes import ProbeSpec, preload, probe

async def timed(spec):
    started = time.perf_counter()
    result = await probe(ProbeSpec(**spec))
    return dict(target=result.target, sent=result.sent, received=result.received,
                latencies_ms=list(result.latencies_ms), error=result.error, ok=result.ok,
                loss_pct=result.loss_pct, latency_ms=result.latency_ms,
                elapsed=time.perf_counter() - started)

async def main(specs, lazy):
    if not lazy:
        assert not await preload(spec["method"] for spec in specs)
    started = time.perf_counter()
    results = await asyncio.gather(*(timed(spec) for spec in specs))
    wall = time.perf_counter() - started
    await asyncio.get_running_loop().shutdown_default_executor()
    return dict(results=results, wall=wall, drained=time.perf_counter() - started,
                loaded=sorted(m for m in ("requests", "dns", "scapy", "icmplib") if m in sys.modules))

print(json.dumps(asyncio.run(main(json.loads(sys.argv[1]), lazy=sys.argv[2] == "lazy"))))
'''


def run(*argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise AssertionError(f"{argv} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def in_ns(ns: str, *argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run("ip", "netns", "exec", ns, *argv, check=check, stdin=stdin)


def delete_namespaces() -> None:
    for ns in (NS_ROUTER, NS_TARGET, NS_OTHER):
        run("ip", "netns", "del", ns, check=False)  # its veth ends go with it


def build_namespaces() -> None:
    for ns in (NS_ROUTER, NS_TARGET, NS_OTHER):
        run("ip", "netns", "add", ns)
        in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        in_ns(ns, "ip", "link", "set", "lo", "up")
    run("ip", "link", "add", "pb0", "netns", NS_ROUTER, "type", "veth", "peer", "name", "pb0p", "netns", NS_TARGET)
    run("ip", "link", "add", "pb1", "netns", NS_ROUTER, "type", "veth", "peer", "name", "pb1p", "netns", NS_OTHER)
    for ns, dev, addresses in (
        (NS_ROUTER, "pb0", (f"{ROUTER4}/24", f"{ROUTER6}/64")),
        (NS_ROUTER, "pb1", (f"{OTHER_WAN4}/24",)),
        (NS_TARGET, "pb0p", (f"{TARGET4}/24", f"{TARGET6}/64")),
        (NS_OTHER, "pb1p", ("192.168.78.2/24",)),
    ):
        for address in addresses:
            extra = ("nodad",) if ":" in address else ()
            in_ns(ns, "ip", "addr", "add", address, "dev", dev, *extra)
        in_ns(ns, "ip", "link", "set", dev, "up")
    # Hosts behind the uplinks answer ARP only for addresses on the asking interface, or a
    # mis-routed probe could look successful.
    for ns in (NS_TARGET, NS_OTHER):
        in_ns(ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")


def start_target_servers() -> subprocess.Popen:
    server = subprocess.Popen(
        ["ip", "netns", "exec", NS_TARGET, PYTHON, "-c", TARGET_SERVERS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ready, _, _ = select.select([server.stdout], [], [], 10)
    if not ready or server.stdout.readline().strip() != "ready":
        server.kill()
        detail = server.stderr.read() if server.poll() is not None else "no 'ready' within 10 s"
        raise RuntimeError(f"target servers in {NS_TARGET} did not start: {detail}")
    return server


@pytest.fixture(scope="module")
def lab():
    delete_namespaces()  # leftovers of an interrupted run
    server = None
    try:
        build_namespaces()
        server = start_target_servers()
        # The first IPv6 neighbour discovery on a fresh veth pair takes a second here; settle the
        # neighbour caches so that measured latencies are the probes' own.
        for target in (TARGET4, TARGET6):
            in_ns(NS_ROUTER, "ping", "-c1", "-W3", target, check=False)
        yield
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        delete_namespaces()


def probe_in_router(*specs: dict, prefix: tuple = (), lazy: bool = False) -> dict:
    """Run the probes concurrently inside the router namespace; ``prefix`` wraps the python.
    Libraries are preloaded unless ``lazy``, when the first probe of each method loads them."""
    mode = "lazy" if lazy else "preload"
    done = in_ns(NS_ROUTER, *prefix, PYTHON, "-c", PROBE_RUNNER, json.dumps(list(specs)), mode)
    return json.loads(done.stdout)


@contextmanager
def target_drops_everything():
    """nft in pb-b drops all IPv4/IPv6 input from the router and every ARP packet."""
    ruleset = f"""
table inet pb_drop {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {ROUTER4} drop
        ip6 saddr {ROUTER6} drop
    }}
}}
table arp pb_drop {{
    chain input {{
        type filter hook input priority 0; policy drop;
    }}
}}
"""
    in_ns(NS_TARGET, "nft", "-f", "-", stdin=ruleset)
    try:
        yield
    finally:
        in_ns(NS_TARGET, "nft", "delete table inet pb_drop; delete table arp pb_drop", check=False)


def spec(method: str, target: str = TARGET4, device: str = "pb0", **options) -> dict:
    family = 6 if ":" in target else 4
    source = options.pop("source", (ROUTER6 if family == 6 else ROUTER4) if device == "pb0" else None)
    return dict(method=method, target=target, device=device, family=family, source=source, **options)


def every_method(device: str = "pb0", **options) -> list[dict]:
    return [
        spec("ping", device=device, **options),
        spec("ping", TARGET6, device=device, **options),
        spec("httping", device=device, **options),
        spec("httping", TARGET6, device=device, **options),
        spec("dns", device=device, dns_query="ok.test.", **options),
        spec("dns", TARGET6, device=device, dns_query="ok.test.", **options),
        spec("arping", device=device, **options),
    ]


def describe(specs: list[dict], report: dict) -> str:
    return "\n".join(
        f"  {s['method']:8} {s['target']:16} via {s['device']}: sent={r['sent']} received={r['received']} "
        f"error={r['error']} latencies_ms={r['latencies_ms']} elapsed={r['elapsed']:.3f}s"
        for s, r in zip(specs, report["results"])
    )


pytestmark = pytest.mark.lab


def test_each_method_reaches_a_live_target(lab):
    specs = every_method(count=3, timeout=3.0)
    report = probe_in_router(*specs)
    print("\nlive target:\n" + describe(specs, report))
    for s, r in zip(specs, report["results"]):
        assert r["ok"], (s, r)
        assert r["sent"] == r["received"] == 3, (s, r)
        assert len(r["latencies_ms"]) == 3 and r["loss_pct"] == 0.0, (s, r)


def test_each_method_fails_when_the_target_drops_everything(lab):
    specs = every_method(timeout=1.5)
    with target_drops_everything():
        report = probe_in_router(*specs)
    print("\ntarget drops everything (timeout 1.5 s):\n" + describe(specs, report))
    for s, r in zip(specs, report["results"]):
        assert not r["ok"] and r["received"] == 0 and r["error"], (s, r)
        assert r["loss_pct"] == 100.0, (s, r)


def test_probe_bound_to_the_other_wan_never_reaches_the_target(lab):
    # The main table reaches the target through pb0, so only the device binding can stop it.
    assert "dev pb0" in in_ns(NS_ROUTER, "ip", "route", "get", TARGET4).stdout
    assert "dev pb0" in in_ns(NS_ROUTER, "ip", "-6", "route", "get", TARGET6).stdout
    bound_elsewhere = every_method(device="pb1", timeout=1.5)
    control = every_method(device="pb0", timeout=1.5)
    report = probe_in_router(*bound_elsewhere, *control)
    print("\nbound to pb1, then to pb0:\n" + describe(bound_elsewhere + control, report))
    for s, r in zip(bound_elsewhere, report["results"]):
        assert not r["ok"] and r["received"] == 0, (s, r)
    for s, r in zip(control, report["results"][len(bound_elsewhere):]):
        assert r["ok"], (s, r)


def test_ipv6_ping_honours_device_and_source(lab):
    specs = [
        spec("ping", TARGET6, device="pb0", source=ROUTER6),  # both right
        spec("ping", TARGET6, device="pb1", source=ROUTER6),  # right source, wrong device
        spec("ping", TARGET6, device="pb0", source="2001:db8:99::1"),  # address not on the host
        spec("ping", TARGET6, device="pb0", source=None),
    ]
    report = probe_in_router(*[dict(s, timeout=1.5) for s in specs])
    print("\nIPv6 ping binding:\n" + describe(specs, report))
    right, wrong_device, foreign_source, no_source = report["results"]
    assert right["ok"] and no_source["ok"]
    assert not wrong_device["ok"] and wrong_device["received"] == 0
    assert foreign_source["error"] == "source address not available"


def test_httping_reports_a_status_mismatch(lab):
    url = f"http://{TARGET4}/status/"
    specs = [
        spec("httping", http_url=url + "503"),
        spec("httping", http_url=url + "200", http_status=204),
        spec("httping", http_url=url + "302", http_status=0),  # any 2xx/3xx
        spec("httping", http_url=url + "404", http_status=0),
        spec("httping", http_url=f"http://{TARGET4}:81/"),  # nothing listens
    ]
    report = probe_in_router(*specs)
    print("\nhttping status:\n" + describe(specs, report))
    errors = [r["error"] for r in report["results"]]
    assert errors == ["HTTP 503", "HTTP 200", None, "HTTP 404", "connection refused"]
    assert report["results"][2]["ok"]


def test_httping_thread_ends_with_its_probe(lab):
    # The server keeps every socket read busy, so only shutting the socket down ends the thread.
    specs = [spec("httping", http_url=f"http://{TARGET4}:8081/", timeout=1.0)]
    report = probe_in_router(*specs)
    print(f"\nendless headers: drained after {report['drained']:.3f}s\n" + describe(specs, report))
    assert report["results"][0]["error"] == "timeout"
    assert report["drained"] < 5.0  # without the shutdown the thread would wait for ever


def test_dns_requires_an_answer(lab):
    specs = [
        spec("dns", dns_query="nx.test."),
        spec("dns", dns_query="empty.test."),
        spec("dns", dns_query="ok.test.", dns_type="AAAA"),  # the responder has only an A record
        spec("dns", dns_query="ok.test."),
    ]
    report = probe_in_router(*specs)
    print("\ndns answers:\n" + describe(specs, report))
    assert [r["error"] for r in report["results"]] == ["NXDOMAIN", "no answer", "no answer", None]
    assert [r["ok"] for r in report["results"]] == [False, False, False, True]


def test_bad_settings_come_back_as_errors(lab):
    specs = [spec("arping", TARGET6), spec("ping", "not-an-address"), spec("dns", dns_type="NOSUCHTYPE"),
             spec("ping", device="pbnone"), spec("arping", device="pbnone")]
    report = probe_in_router(*specs)
    errors = [r["error"] for r in report["results"]]
    assert errors[0] == "arping is IPv4 only"
    assert errors[1].startswith("bad probe setting: 'not-an-address' is not an IPv4 address")
    assert errors[2].startswith("bad probe setting: DNS query")
    assert errors[3:] == ["no such device", "no such device"]


@contextmanager
def target_routes_test_networks():
    """pb-a sends 192.168.79/24, 192.168.80/24 and their 2001:db8:79::/64, :80:: twins to pb-b.
    pb-b routes the 79s straight back (a hop that decrements the TTL) and has no route for the 80s."""
    in_ns(NS_TARGET, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    for net4, net6 in (("192.168.79.0/24", "2001:db8:79::/64"), ("192.168.80.0/24", "2001:db8:80::/64")):
        in_ns(NS_ROUTER, "ip", "route", "add", net4, "via", TARGET4)
        in_ns(NS_ROUTER, "ip", "-6", "route", "add", net6, "via", TARGET6)
    in_ns(NS_TARGET, "ip", "route", "add", "192.168.79.0/24", "via", ROUTER4)
    in_ns(NS_TARGET, "ip", "-6", "route", "add", "2001:db8:79::/64", "via", ROUTER6)
    try:
        yield
    finally:
        for ns in (NS_ROUTER, NS_TARGET):
            for net in ("192.168.79.0/24", "192.168.80.0/24", "2001:db8:79::/64", "2001:db8:80::/64"):
                in_ns(ns, "ip", "route", "del", net, check=False)
        in_ns(NS_TARGET, "sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")


def test_ping_reports_icmp_errors_from_the_path(lab):
    specs = [
        spec("ping", "192.168.79.1", max_ttl=1, timeout=2.0),
        spec("ping", "2001:db8:79::1", max_ttl=1, timeout=2.0),
        spec("ping", "192.168.80.1", timeout=2.0),
        spec("ping", "2001:db8:80::1", timeout=2.0),
    ]
    with target_routes_test_networks():
        report = probe_in_router(*specs)
    print("\nICMP errors:\n" + describe(specs, report))
    errors = [r["error"] for r in report["results"]]
    assert errors == ["ttl exceeded", "hop limit exceeded", "network unreachable", "no route"]


@contextmanager
def marked_traffic_goes_to_a_dead_gateway():
    """pb-a: packets with mark 0x77 use table 177, which sends the target to a gateway nobody owns.
    (An unreachable route would not do: a device-bound socket that finds no usable route falls
    back to treating the destination as on-link.)"""
    in_ns(NS_ROUTER, "ip", "rule", "add", "fwmark", "0x77", "lookup", "177", "priority", "177")
    in_ns(NS_ROUTER, "ip", "route", "add", TARGET4, "via", DEAD4, "dev", "pb0", "table", "177")
    try:
        yield
    finally:
        in_ns(NS_ROUTER, "ip", "rule", "del", "priority", "177", check=False)
        in_ns(NS_ROUTER, "ip", "route", "flush", "table", "177", check=False)


def test_fwmark_reaches_the_routing_decision(lab):
    marked = [spec(m, fwmark=0x77, dns_query="ok.test.", timeout=1.5) for m in ("ping", "httping", "dns")]
    unmarked = [spec(m, dns_query="ok.test.", timeout=1.5) for m in ("ping", "httping", "dns")]
    with marked_traffic_goes_to_a_dead_gateway():
        report = probe_in_router(*marked, *unmarked)
    print("\nfwmark 0x77 -> table 177 (dead gateway), then unmarked:\n" + describe(marked + unmarked, report))
    assert [r["ok"] for r in report["results"]] == [False] * 3 + [True] * 3


def test_twenty_concurrent_pings_take_about_one_timeout(lab):
    timeout = 2.0
    live = [spec("ping", TARGET4, count=3) for _ in range(5)] + [spec("ping", TARGET6, count=3) for _ in range(5)]
    dead = [spec("ping", f"192.168.77.{host}") for host in range(100, 106)]
    dead += [spec("ping", f"192.168.78.{host}", device="pb1") for host in range(100, 104)]
    specs = [dict(s, timeout=timeout) for s in live + dead]
    report = probe_in_router(*specs)
    print(f"\n20 concurrent pings, timeout {timeout}s: wall {report['wall']:.3f}s\n" + describe(specs, report))
    for s, r in zip(live, report["results"]):
        # Each round counts exactly its own replies although ten rounds ping the same hosts.
        assert r["ok"] and r["sent"] == r["received"] == 3, (s, r)
    for s, r in zip(dead, report["results"][len(live):]):
        assert not r["ok"] and r["received"] == 0, (s, r)
    assert report["wall"] < 3 * timeout  # the task's bound: one timeout, not twenty


def test_ping_works_through_unprivileged_ping_sockets(lab):
    # Without CAP_NET_RAW a raw socket is impossible, so success means the kernel ping socket
    # (allowed by ping_group_range) carried the probe, still bound to the device.
    in_ns(NS_ROUTER, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    try:
        no_raw = ("setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw")
        specs = [spec("ping", TARGET4, count=2), spec("ping", TARGET6, count=2),
                 spec("ping", TARGET4, count=2), spec("ping", TARGET4, device="pb1", timeout=1.0)]
        report = probe_in_router(*specs, prefix=no_raw)
        print("\nping sockets without CAP_NET_RAW:\n" + describe(specs, report))
        assert [r["received"] for r in report["results"]] == [2, 2, 2, 0]
    finally:
        in_ns(NS_ROUTER, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0")
    without_ping_sockets = probe_in_router(spec("ping", TARGET4), prefix=no_raw)["results"][0]
    assert without_ping_sockets["error"] == "permission denied"


def test_importing_probes_loads_no_heavy_library(lab):
    check = (
        "import sys, netpath.agent.probes\n"
        "print(sorted(m for m in ('requests', 'dns', 'scapy', 'icmplib', 'urllib3') if m in sys.modules))"
    )
    assert in_ns(NS_ROUTER, PYTHON, "-c", check).stdout.strip() == "[]"
    # Each library arrives with the first probe of its method, and only then.
    assert probe_in_router(spec("ping"), spec("arping"), lazy=True)["loaded"] == []
    dns_round = probe_in_router(spec("dns", dns_query="ok.test."), lazy=True)
    assert dns_round["loaded"] == ["dns"] and dns_round["results"][0]["ok"]
    http_round = probe_in_router(spec("httping"), lazy=True)
    assert http_round["loaded"] == ["requests"] and http_round["results"][0]["ok"]
