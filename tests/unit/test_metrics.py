"""Metrics: the Prometheus text (checked with prometheus_client's own parser), the HTTP
endpoint on loopback, and the kernel readers against real objects in namespaces of our own.

The readers look at the namespace they run in, so the lab tests run them there with
`ip netns exec NS python -c ...`; the root namespace's nft and conntrack are never touched.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netpath.agent import metrics

METRICS = {
    "version": "0.1.0", "bundle": "abababababab",
    "interfaces": {
        "wan": {"up": 1, "state": "online", "link_up": 1, "enabled": 1, "device": "eth1", "family": "ipv4",
                "logical": "wan", "latency_ms": 12.5, "latency_min_ms": 10.0, "latency_max_ms": 15.0,
                "jitter_ms": 2.0, "loss_pct": 5.0, "score": 5, "tx_bytes": 123456, "rx_bytes": 654321,
                "connections": 17, "state_changes": 3, "last_change": 1700000000.25,
                "targets": {"192.0.2.1": {"up": 1, "latency_ms": 12.0, "latency_min_ms": 10.0,
                                          "latency_max_ms": 14.0, "jitter_ms": 1.5, "loss_pct": 0.0},
                            "192.0.2.2": {"up": 0, "latency_ms": None, "latency_min_ms": None,
                                          "latency_max_ms": None, "jitter_ms": None, "loss_pct": 10.0}}},
        "wanb": {"up": 0, "state": "disabled", "link_up": None, "enabled": 0, "device": "eth2",
                 "family": "ipv4", "logical": "", "latency_ms": None, "loss_pct": 100.0, "score": 0,
                 "tx_bytes": None, "rx_bytes": 0, "connections": None, "state_changes": 0,
                 "last_change": 1700000000.0,
                 "targets": {"198.51.100.1": {"up": None, "latency_ms": None, "loss_pct": None}}},
    },
    "policies": {"p": {"shares": {"ipv4": {"wan": 1.0, "wanb": 0.0}}, "last_resort": {"ipv4": False}},
                 "q": {"shares": {"ipv6": {}}, "last_resort": {"ipv6": True}}},
    "rules": {"https": {"packets": 42, "bytes": 4200}, 'odd"name\\x': {"packets": 1, "bytes": 60}},
    "swaps": 7,
    "swap_seconds_last": 0.0021,
    "swap_seconds": {"buckets": [[0.0001, 0], [0.001, 3], [0.01, 7]], "sum": 0.0123, "count": 7},
    "swap_failures": 1, "reloads": 2, "reload_failures": 0,
    "process": {"start_time": 1699999990.5, "cpu_seconds": 1.25, "resident_bytes": 20480000,
                "virtual_bytes": 40960000, "open_fds": 12, "max_fds": 1024},
}


def samples_by_name(text: str) -> tuple:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for family in families.values():
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def test_prometheus_text_parses_and_carries_every_figure():
    text = metrics.prometheus_text(METRICS)
    families, samples = samples_by_name(text)
    lines = text.splitlines()
    for name in families:
        assert any(line.startswith(f"# HELP {name}") for line in lines)
    assert "# TYPE netpath_interface_up gauge" in lines
    assert "# TYPE netpath_interface_transmit_bytes_total counter" in lines
    # Values in base units, labelled by interface.
    assert samples[("netpath_interface_up", (("interface", "wan"),))] == 1
    assert samples[("netpath_interface_up", (("interface", "wanb"),))] == 0
    assert samples[("netpath_interface_latency_seconds", (("interface", "wan"),))] == pytest.approx(0.0125)
    assert samples[("netpath_interface_loss_ratio", (("interface", "wan"),))] == pytest.approx(0.05)
    assert samples[("netpath_interface_transmit_bytes_total", (("interface", "wan"),))] == 123456
    assert samples[("netpath_interface_connections", (("interface", "wan"),))] == 17
    assert samples[("netpath_interface_state_changes_total", (("interface", "wan"),))] == 3
    # Unknown figures are absent, not zero.
    assert ("netpath_interface_latency_seconds", (("interface", "wanb"),)) not in samples
    assert ("netpath_interface_transmit_bytes_total", (("interface", "wanb"),)) not in samples
    assert samples[("netpath_interface_receive_bytes_total", (("interface", "wanb"),))] == 0
    # Rules count new flows (the rule's counter sees a flow's first packet only), with a label
    # value that needs escaping.
    assert samples[("netpath_rule_new_flows_total", (("rule", "https"),))] == 42
    assert samples[("netpath_rule_new_flows_total", (("rule", 'odd"name\\x'),))] == 1
    assert not any(name.startswith("netpath_rule_packets") or name.startswith("netpath_rule_bytes")
                   for name, _ in samples)
    assert samples[("netpath_state_swaps_total", ())] == 7
    assert samples[("netpath_state_swap_last_duration_seconds", ())] == pytest.approx(0.0021)


def test_prometheus_text_states_info_and_admin():
    _, samples = samples_by_name(metrics.prometheus_text(METRICS))
    for iface, current in (("wan", "online"), ("wanb", "disabled")):
        states = {s: samples[("netpath_interface_state", (("interface", iface), ("state", s)))]
                  for s in ("online", "disconnecting", "connecting", "offline", "disabled")}
        assert states == {s: (1 if s == current else 0) for s in states}
    assert samples[("netpath_interface_info", (("device", "eth1"), ("family", "ipv4"), ("interface", "wan"),
                                               ("logical", "wan")))] == 1
    assert samples[("netpath_interface_info", (("device", "eth2"), ("family", "ipv4"), ("interface", "wanb"),
                                               ("logical", "")))] == 1
    assert samples[("netpath_interface_link_up", (("interface", "wan"),))] == 1
    assert ("netpath_interface_link_up", (("interface", "wanb"),)) not in samples  # unknown
    assert samples[("netpath_interface_enabled", (("interface", "wan"),))] == 1
    assert samples[("netpath_interface_enabled", (("interface", "wanb"),))] == 0
    assert samples[("netpath_interface_last_change_timestamp_seconds", (("interface", "wan"),))] == 1700000000.25
    assert samples[("netpath_interface_jitter_seconds", (("interface", "wan"),))] == pytest.approx(0.002)
    assert samples[("netpath_interface_latency_min_seconds", (("interface", "wan"),))] == pytest.approx(0.010)
    assert samples[("netpath_interface_latency_max_seconds", (("interface", "wan"),))] == pytest.approx(0.015)
    assert samples[("netpath_build_info", (("bundle", "abababababab"), ("version", "0.1.0")))] == 1


def test_prometheus_text_per_target_figures():
    _, samples = samples_by_name(metrics.prometheus_text(METRICS))
    one = (("interface", "wan"), ("target", "192.0.2.1"))
    two = (("interface", "wan"), ("target", "192.0.2.2"))
    assert samples[("netpath_target_up", one)] == 1
    assert samples[("netpath_target_up", two)] == 0
    assert samples[("netpath_target_latency_seconds", one)] == pytest.approx(0.012)
    assert samples[("netpath_target_latency_min_seconds", one)] == pytest.approx(0.010)
    assert samples[("netpath_target_latency_max_seconds", one)] == pytest.approx(0.014)
    assert samples[("netpath_target_jitter_seconds", one)] == pytest.approx(0.0015)
    assert samples[("netpath_target_loss_ratio", one)] == 0
    assert samples[("netpath_target_loss_ratio", two)] == pytest.approx(0.1)
    # A target that does not answer has no latency series; one never probed has nothing.
    assert not any(name.startswith("netpath_target_latency") and labels == two for name, labels in samples)
    assert not [k for k in samples if ("target", "198.51.100.1") in k[1]]


def test_prometheus_text_policies_counters_histogram_and_process():
    text = metrics.prometheus_text(METRICS)
    families, samples = samples_by_name(text)
    share = "netpath_policy_share_ratio"
    assert samples[(share, (("family", "ipv4"), ("interface", "wan"), ("policy", "p")))] == 1.0
    assert samples[(share, (("family", "ipv4"), ("interface", "wanb"), ("policy", "p")))] == 0.0
    assert samples[("netpath_policy_last_resort", (("family", "ipv4"), ("policy", "p")))] == 0
    assert samples[("netpath_policy_last_resort", (("family", "ipv6"), ("policy", "q")))] == 1
    assert samples[("netpath_state_swap_failures_total", ())] == 1
    assert samples[("netpath_reloads_total", ())] == 2
    assert samples[("netpath_reload_failures_total", ())] == 0
    assert families["netpath_state_swap_duration_seconds"].type == "histogram"
    buckets = {dict(labels)["le"]: v for (name, labels), v in samples.items()
               if name == "netpath_state_swap_duration_seconds_bucket"}
    assert buckets == {"0.0001": 0, "0.001": 3, "0.01": 7, "+Inf": 7}
    assert samples[("netpath_state_swap_duration_seconds_count", ())] == 7
    assert samples[("netpath_state_swap_duration_seconds_sum", ())] == pytest.approx(0.0123)
    assert samples[("process_start_time_seconds", ())] == 1699999990.5
    assert samples[("process_cpu_seconds_total", ())] == 1.25
    assert samples[("process_resident_memory_bytes", ())] == 20480000
    assert samples[("process_open_fds", ())] == 12
    assert families["process_cpu_seconds"].type == "counter"


def test_prometheus_text_of_an_agent_with_nothing_yet():
    text = metrics.prometheus_text({"interfaces": {}, "rules": {}, "swaps": 0, "swap_seconds_last": None})
    families, samples = samples_by_name(text)
    assert samples == {("netpath_state_swaps_total", ()): 0}
    assert "netpath_interface_up" in families  # HELP/TYPE are there even without samples


def test_histogram_counts_each_observation_once_and_cumulates_on_export():
    histogram = metrics.Histogram()
    assert histogram.bounds[0] == 0.0001 and histogram.bounds[-1] == 1.0
    for value in (0.00005, 0.0001, 0.0003, 0.002, 0.002, 0.7, 3.0):
        histogram.observe(value)
    snapshot = histogram.snapshot()
    cumulative = dict((bound, n) for bound, n in snapshot["buckets"])
    assert cumulative[0.0001] == 2  # the bound itself belongs to its bucket (le)
    assert cumulative[0.0005] == 3 and cumulative[0.0025] == 5 and cumulative[0.5] == 5
    assert cumulative[1.0] == 6 and snapshot["count"] == 7  # 3 s only in +Inf
    assert snapshot["sum"] == pytest.approx(3.70445)


def test_process_figures_of_this_process():
    import os
    import resource
    import time

    figures = metrics.process_figures()
    assert figures["open_fds"] == len(os.listdir("/proc/self/fd"))  # both count the one listdir holds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    assert 0 < figures["cpu_seconds"] <= usage.ru_utime + usage.ru_stime + 0.05
    assert 0 < figures["resident_bytes"] <= usage.ru_maxrss * 1024
    started = os.stat(f"/proc/{os.getpid()}").st_ctime
    assert abs(figures["start_time"] - started) < 2 and figures["start_time"] < time.time()
    assert figures["max_fds"] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_promtool_accepts_the_exposition():
    """`promtool check metrics`: names, units, _total on counters, HELP on every family."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; scripts/setup.sh does)")
    text = metrics.prometheus_text(METRICS)
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def test_count_marks_masks_and_skips_lines_without_a_mark():
    lines = [
        b"ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [UNREPLIED] mark=256 zone=0 use=2\n",
        b"ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=3 dport=2 mark=65792 use=2\n",  # 0x10100
        b"ipv6 10 tcp 6 100 ESTABLISHED src=2001:db8::1 dst=2001:db8::2 mark=512 use=1\n",
        b"ipv4 2 icmp 1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1 mark=0 use=1\n",
        b"ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=4 dport=2 use=1\n",  # kernel without marks
    ]
    assert metrics.count_marks(lines, 0x3F00) == {0x100: 2, 0x200: 1, 0: 1}


def test_link_stats_of_loopback_and_of_a_missing_device():
    stats = metrics.link_stats("lo")
    assert set(stats) == set(metrics.LINK_COUNTERS)
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    missing = metrics.link_stats("ipc-nosuchdev")
    assert missing == dict.fromkeys(metrics.LINK_COUNTERS)
    assert metrics.link_stats("../../etc") == dict.fromkeys(metrics.LINK_COUNTERS)


# --- HTTP endpoint ------------------------------------------------------------------------------

def _http(port: int, method: str, path: str) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        conn.close()


def test_metrics_http_endpoint_on_loopback():
    calls = []

    async def get_text():
        calls.append(1)
        return metrics.prometheus_text(METRICS)

    async def scenario():
        server = await metrics.serve_metrics_http("127.0.0.1", 0, get_text)
        port = server.sockets[0].getsockname()[1]
        try:
            return [await asyncio.to_thread(_http, port, method, path)
                    for method, path in (("GET", "/metrics"), ("GET", "/"), ("POST", "/metrics"),
                                         ("HEAD", "/metrics"))]
        finally:
            server.close()
            await server.wait_closed()

    (status, ctype, body), missing, post, head = asyncio.run(scenario())
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert {f.name for f in text_string_to_metric_families(body)} >= {"netpath_interface_up"}
    assert missing[0] == 404 and post[0] == 405
    assert head[0] == 200 and head[2] == ""
    assert len(calls) == 2  # GET and HEAD asked for the figures, 404/405 did not


def test_metrics_http_endpoint_survives_a_failing_reader_and_garbage():
    def get_text():
        raise RuntimeError("tracker gone")

    async def scenario():
        server = await metrics.serve_metrics_http("127.0.0.1", 0, get_text)
        port = server.sockets[0].getsockname()[1]
        try:
            failing = await asyncio.to_thread(_http, port, "GET", "/metrics")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x00\x01 not http\r\n\r\n")
            garbage = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return failing, garbage
        finally:
            server.close()
            await server.wait_closed()

    failing, garbage = asyncio.run(scenario())
    assert failing[0] == 500 and "tracker gone" in failing[2]
    assert garbage.startswith(b"HTTP/1.0 400")


def test_metrics_http_endpoint_bounds_clients_time_and_request_size(monkeypatch):
    """Past max_clients a connection is told 503 at once; an idle one gets 408 after the time
    limit; a request head over 8 KiB gets 431. Real TCP connections on loopback."""
    monkeypatch.setattr(metrics, "HTTP_TIMEOUT", 0.5)

    async def scenario():
        server = await metrics.serve_metrics_http("127.0.0.1", 0, lambda: "up 1\n", max_clients=2)
        port = server.sockets[0].getsockname()[1]
        try:
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            while len(server.tasks) < 2:
                await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            busy = await asyncio.wait_for(reader.read(), 2)
            writer.close()
            timed_out = [await asyncio.wait_for(r.read(), 5) for r, _ in idle]
            for _, w in idle:
                w.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.0\r\n")  # then 100 headers of 110 bytes each
            writer.write(b"\r\n".join(b"X-Pad-%d: %s" % (i, b"a" * 100) for i in range(100)) + b"\r\n\r\n")
            too_long = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            fine = await asyncio.to_thread(_http, port, "GET", "/metrics")
            return busy, timed_out, too_long, fine
        finally:
            server.close()
            await server.wait_closed()

    busy, timed_out, too_long, fine = asyncio.run(scenario())
    assert busy.startswith(b"HTTP/1.0 503 Service Unavailable") and b"Retry-After: 1" in busy
    assert all(t.startswith(b"HTTP/1.0 408") for t in timed_out)
    assert too_long.startswith(b"HTTP/1.0 431")
    assert fine[0] == 200 and fine[2] == "up 1\n"


# --- kernel readers inside namespaces of our own ---------------------------------------------

def sh(*argv, ns=None, check=True, timeout=30, **kw):
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, check=check, timeout=timeout, **kw)


def in_netns(ns: str, code: str):
    """Run `code` with the venv's Python inside `ns`; it prints one JSON value."""
    proc = sh(sys.executable, "-c", textwrap.dedent(code), ns=ns, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def netns():
    name = f"ipc-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "set", "lo", "up", ns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.mark.lab
def test_link_stats_of_a_veth_in_a_namespace(netns):
    sh("ip", "link", "add", "ipc-v0", "type", "veth", "peer", "name", "ipc-v1", ns=netns)
    sh("ip", "addr", "add", "192.0.2.1/24", "dev", "ipc-v0", ns=netns)
    sh("ip", "link", "set", "ipc-v0", "up", ns=netns)
    sh("ip", "link", "set", "ipc-v1", "up", ns=netns)
    read = "import json; from netpath.agent.metrics import link_stats; print(json.dumps(link_stats('ipc-v0')))"
    before = in_netns(netns, read)
    pings = 7
    # No host answers 192.0.2.2, but each ping still leaves ipc-v0 (after ARP, or as ARP).
    sh("ping", "-c", str(pings), "-i", "0.05", "-W", "1", "-s", "1000", "192.0.2.2", ns=netns, check=False)
    after = in_netns(netns, read)
    kernel = json.loads(sh("ip", "-j", "-s", "link", "show", "ipc-v0", ns=netns).stdout)[0]["stats64"]
    assert after["tx_packets"] - before["tx_packets"] >= 1
    assert after["tx_packets"] == kernel["tx"]["packets"]
    assert after["tx_bytes"] == kernel["tx"]["bytes"]
    assert after["rx_packets"] == kernel["rx"]["packets"]
    # The device does not exist in the root namespace: the reader is namespace-local.
    assert metrics.link_stats("ipc-v0")["tx_packets"] is None


CT_RULESET = """
table inet ipc_ct {
    chain out {
        type filter hook output priority 0; policy accept;
        udp dport 5000-5099 ct mark set 0x00000100
        udp dport 6000-6099 ct mark set 0x00000200
        udp dport 7000-7099 ct mark set 0x00010300
    }
}
"""

SEND_UDP = """
import socket, sys
for spec in sys.argv[1:]:
    host, port, count = spec.rsplit(":", 2)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(int(count)):
        s = socket.socket(family, socket.SOCK_DGRAM)  # new source port: a new conntrack entry
        s.sendto(b"netpath", (host, int(port)))
        s.close()
"""


@pytest.mark.lab
def test_conntrack_by_mark_counts_real_entries(netns):
    sh("nft", "-f", "-", ns=netns, input=CT_RULESET)
    sh(sys.executable, "-c", SEND_UDP, "127.0.0.1:5001:5", "::1:5002:2", "127.0.0.1:6001:3",
       "127.0.0.1:7001:4", "127.0.0.1:9:1", ns=netns)
    by_proc = in_netns(netns, """
        import json; from netpath.agent.metrics import conntrack_by_mark
        print(json.dumps(conntrack_by_mark(0x3F00)))""")
    by_tool = in_netns(netns, """
        import json; from netpath.agent.metrics import conntrack_by_mark
        print(json.dumps(conntrack_by_mark(0x3F00, proc_path='/nonexistent/nf_conntrack')))""")
    # conntrack(8) itself, per mark, as the independent count.
    def tool_count(mark):
        out = sh("conntrack", "-L", "-f", "ipv4", "--mark", f"{mark}/0x3f00", ns=netns).stdout
        out6 = sh("conntrack", "-L", "-f", "ipv6", "--mark", f"{mark}/0x3f00", ns=netns).stdout
        return len(out.splitlines()) + len(out6.splitlines())

    counts = {int(k): v for k, v in by_proc.items()}
    assert counts.get(0x100) == 7 == tool_count(0x100)
    assert counts.get(0x200) == 3 == tool_count(0x200)
    assert counts.get(0x300) == 4 == tool_count(0x300), "bits outside the mask are ignored"
    assert counts.get(0, 0) >= 1  # the unmarked flow to port 9
    assert {int(k): v for k, v in by_tool.items()} == counts


@pytest.mark.lab
def test_conntrack_by_mark_in_a_namespace_without_flows(netns):
    counts = in_netns(netns, """
        import json; from netpath.agent.metrics import conntrack_by_mark
        print(json.dumps(conntrack_by_mark(0x3F00)))""")
    assert counts == {}


RULES_RULESET = """
table inet ipc_rules {
    counter rule_a {
    }
    counter rule_b {
    }
    counter rule_unused {
    }
    counter other {
    }
    chain out {
        type filter hook output priority 0; policy accept;
        meta l4proto udp jump rules
    }
    chain rules {
        ip daddr 127.0.0.1 udp dport 7001 counter name "rule_a" comment "rule a"
        ip6 daddr ::1 udp dport 7001 counter name "rule_a" comment "rule a"
        udp dport 7002 log prefix "netpath(b) " level info
        udp dport 7002 counter name "rule_b" comment "rule b"
        udp dport 7003 counter name "rule_unused" comment "rule unused"
        udp dport 7004 counter name "other" comment "not a rule counter"
        udp dport 7005 counter comment "rule anonymous"
    }
}
"""


@pytest.mark.lab
@pytest.mark.parametrize("library", [True, False], ids=["libnftables", "nft-subprocess"])
def test_rule_counters_from_a_real_table(netns, library):
    sh("nft", "-f", "-", ns=netns, input=RULES_RULESET)
    payload = len(b"netpath")
    sh(sys.executable, "-c", SEND_UDP, "127.0.0.1:7001:4", "::1:7001:3", "127.0.0.1:7002:2",
       "127.0.0.1:7004:5", ns=netns)
    counters = in_netns(netns, f"""
        import json
        from netpath.agent.metrics import rule_counters
        from netpath.agent.nft import Nft
        nft = Nft(prefer_library={library})
        assert nft.backend == {'"libnftables"' if library else '"nft"'}, nft.backend
        print(json.dumps({{"present": rule_counters(nft, "ipc_rules"), "absent": rule_counters(nft, "ipc_none")}}))""")
    udp = 8
    assert counters["present"] == {
        "a": {"packets": 7, "bytes": 4 * (20 + udp + payload) + 3 * (40 + udp + payload)},
        "b": {"packets": 2, "bytes": 2 * (20 + udp + payload)},
        "unused": {"packets": 0, "bytes": 0},
    }
    assert counters["absent"] == {}
