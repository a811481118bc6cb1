"""The control socket and the `netpath` shell commands against a real agent in the lab.

Every command is sent over the raw socket (including the seed form: a client that writes
`{"cmd":"status"}\\n` and reads one line, as `echo ... | nc -U SOCK` does) and through
`netpath ...` run inside the router namespace. The figures are checked against what the lab
did: connections made, conntrack entries held open, loss and delay injected, bytes sent. A
fuzzing client hammers the socket while the probes' rhythm and a failover are measured; run
with `-s` to see the figures.

This file is also the helper programs the tests start inside the lab's namespaces:

    python test_ipc_lab.py fuzz SOCKET --count N --seconds S   (router) bad and valid requests
    python test_ipc_lab.py sniff DEVICE SOURCE                  (ISP) echo requests, kernel time
    python test_ipc_lab.py dial ADDRESS PORT                    (client) a new connection every 50 ms
    python test_ipc_lab.py hold-server ADDRESS PORT             (internet) accepts and keeps flows
    python test_ipc_lab.py hold ADDRESS PORT N                  (client) N long-lived flows
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import stat
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import pytest  # noqa: E402

from lab import netlab  # noqa: E402
from lab.agentlab import NETPATH, agent_config, agents, compile_bundle, lab2  # noqa: E402,F401 (fixtures)

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve()
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# Short rounds keep the file fast: a round every 0.5 s, three failed rounds take a WAN out.
TRACK = {"interval": 0.5, "timeout": 0.5, "failure_interval": 0.5, "recovery_interval": 0.5, "down": 3, "up": 2}
WEIGHTS = {1: 3, 2: 1}
WAN = {k: netlab.isp_public4(k) for k in (1, 2)}  # what the internet sees per uplink

# The IPC contract's keys of an interface row (docs/ipc.md).
IFACE_KEYS = {"name", "device", "family", "enabled", "admin", "link", "state", "usable", "since", "reason",
              "method", "score", "up", "down", "targets", "latency", "loss_pct", "mark", "table", "gateway",
              "address", "tx_bytes", "rx_bytes", "tx_packets", "rx_packets", "connections"}

# The seed client: write the request, never half-close, read until the agent closes (nc -U).
SEED_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read())
if "--half-close" in sys.argv:  # nc -N: the request ends at EOF
    s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(65536):
    data += chunk
sys.stdout.buffer.write(data)
"""


# --- fixtures and small helpers -------------------------------------------------------------------




def balanced_bundle(directory: Path, weights=WEIGHTS, track=None, name: str = "bundle") -> Path:
    return compile_bundle(directory, agent_config(mode="balanced", metrics={1: 1, 2: 1}, weights=weights,
                                                  track={**TRACK, **(track or {})}), name)


def raw(path: str, payload: bytes, timeout: float = 10.0) -> bytes:
    """Everything the agent sends back for `payload` on one connection, until it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def ask(path: str, message: dict) -> dict:
    """One request as a raw JSON line; the agent answers exactly one line and closes."""
    data = raw(path, json.dumps(message).encode() + b"\n")
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data[:200]
    return json.loads(data)


def netpath(lab, sock: str, *args, user=None) -> subprocess.CompletedProcess:
    """`netpath ARGS --socket SOCK` inside the router namespace (as `nobody` with user="nobody")."""
    argv = [NETPATH, *map(str, args), "--socket", sock]
    return lab.run("router", [*(NOBODY if user == "nobody" else []), *argv], check=False, timeout=30)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


def via(histogram: dict) -> dict:
    """{"wan1": n, "wan2": n} of a client.py histogram; failed flows count under None."""
    counts = {"wan1": 0, "wan2": 0, None: histogram["errors"]}
    for answer, n in netlab.seen_counts(histogram).items():
        counts[_uplink(answer)] += n
    return counts


def _uplink(answer: str):
    """"172.16.2.1" (the address the internet saw) -> "wan2"; None for a failed connection."""
    return next((f"wan{k}" for k, seen in WAN.items() if seen == answer), None)


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def conntrack_marks(lab, mask: int) -> dict:
    """{mark & mask: entries} read with the conntrack tool, independently of the agent."""
    listing = lab.run("router", ["conntrack", "-L"]).stdout.splitlines()
    counts: dict = {}
    for line in listing:
        for field in line.split():
            if field.startswith("mark="):
                mark = int(field[5:]) & mask
                counts[mark] = counts.get(mark, 0) + 1
    return counts


def iface(reply: dict, name: str) -> dict:
    return next(i for i in reply["interfaces"] if i["name"] == name)


def wait_for(condition, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what}")


def start_ready(lab, ns: str, args: list, out: Path, script: Path = HERE) -> subprocess.Popen:
    """One of this file's helper programs (or another `script`'s) in `ns`, stdout to `out`;
    waits for its READY line."""
    with open(out, "w") as stdout:
        process = lab.popen(ns, [sys.executable, "-u", script, *map(str, args)], stdout=stdout,
                            stderr=subprocess.PIPE)
    wait_for(lambda: "READY" in out.read_text() or process.poll() is not None, 10, f"{args[0]} ready")
    if process.poll() is not None:
        raise AssertionError(f"{args[0]} exited {process.returncode}: {process.stderr.read().decode()}")
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --- the seed form and every command over the raw socket ------------------------------------------


def test_seed_form_and_every_command_over_the_raw_socket(lab2, agents, tmp_path):
    bundle = balanced_bundle(tmp_path)
    agent = agents(bundle)
    sock = agent.socket

    for extra in ([], ["--half-close"]):  # `nc -U` and `nc -N -U`
        payload = '{"cmd":"status"}\n' if not extra else '{"cmd":"status"}'
        seed = lab2.run("router", [sys.executable, "-c", SEED_CLIENT, sock, *extra], input=payload, timeout=15)
        assert seed.stdout.endswith("\n") and seed.stdout.count("\n") == 1, seed.stdout[:200]
        status = json.loads(seed.stdout)
        assert status["ok"] is True and status["version"] == "0.1.0"
        assert status["bundle"] == {"dir": str(bundle),
                                    "digest": hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()}
        assert 0 < status["uptime"] < time.time() - agent.started_at + 1
        assert [i["name"] for i in status["interfaces"]] == ["wan1", "wan2"]
        assert [p["name"] for p in status["policies"]] == ["p"]

    # the documented form (docs/ipc.md), with a client that speaks Unix sockets
    documented = lab2.run("router", ["sh", "-c", """echo '{"cmd":"status"}' | socat - UNIX-CONNECT:"$1" """,
                                     "sh", sock], timeout=15)
    assert json.loads(documented.stdout)["bundle"] == status["bundle"]

    interfaces = ask(sock, {"cmd": "interfaces"})
    for row in interfaces["interfaces"]:
        assert set(row) == IFACE_KEYS, set(row) ^ IFACE_KEYS
        k = int(row["name"][-1])
        assert (row["device"], row["gateway"], row["address"]) == (f"wan{k}", netlab.isp_gateway4(k),
                                                                    netlab.router_wan4(k))
        assert row["state"] == "online" and row["admin"] == "enabled" and row["link"] == "up"
        assert [t["target"] for t in row["targets"]] == [netlab.HTTP4]
    assert ask(sock, {"cmd": "policies"})["policies"][0]["members"][0]["weight"] == WEIGHTS[1]
    assert [r["name"] for r in ask(sock, {"cmd": "rules"})["rules"]] == ["everything"]
    assert set(ask(sock, {"cmd": "metrics"})["metrics"]) == METRICS_KEYS
    assert ask(sock, {"cmd": "metrics", "format": "prometheus"})["text"].startswith("# HELP netpath_")
    assert ask(sock, {"cmd": "history"}) == {"ok": True, "history": []}
    assert ask(sock, {"cmd": "reload"}) == {"ok": True, "bundle": status["bundle"], "changed": False}
    assert ask(sock, {"cmd": "disable", "interface": "wan2"}) == {"ok": True, "interface": "wan2",
                                                                  "admin": "disabled", "state": "disabled"}
    assert ask(sock, {"cmd": "enable", "interface": "wan2"})["admin"] == "enabled"
    assert ask(sock, {"cmd": "ifevent", "action": "ifupdate", "interface": "wan1", "device": "wan1"}) == \
        {"ok": True, "interfaces": ["wan1"]}
    assert [(h["interface"], h["to"]) for h in ask(sock, {"cmd": "history", "limit": 2})["history"]] == \
        [("wan2", "disabled"), ("wan2", "online")]


# --- enable / disable, ifevent, history -----------------------------------------------------------


@pytest.mark.parametrize("initial_state", ["online", "offline"])
def test_disable_moves_new_connections_and_enable_brings_them_back(lab2, agents, tmp_path, initial_state):
    agent = agents(balanced_bundle(tmp_path, track={"initial_state": initial_state}))
    sock = agent.socket
    for name in ("wan1", "wan2"):
        agent.wait_state(name, "online", timeout=5)
    before = via(lab2.http_histogram(20))
    assert before["wan1"] > before["wan2"] > 0 and before[None] == 0, before

    disabled_at = time.time()
    assert ok(netpath(lab2, sock, "disable", "wan1")).strip() == "wan1: admin disabled, state disabled"
    assert via(lab2.http_histogram(12)) == {"wan1": 0, "wan2": 12, None: 0}  # the very next connections
    policy = ask(sock, {"cmd": "policies"})["policies"][0]
    assert policy["spread"]["ipv4"] == {"wan2": 100.0} and policy["state"] == "01"
    entry = ask(sock, {"cmd": "history"})["history"][-1]
    assert (entry["interface"], entry["from"], entry["to"], entry["reason"]) == \
        ("wan1", "online", "disabled", "disabled by administrator")
    assert disabled_at <= entry["time"] <= time.time()
    table = ok(netpath(lab2, sock, "history"))
    assert table.splitlines()[0].split() == ["TIME", "AGO", "INTERFACE", "CHANGE", "REASON"]
    assert any(line.split()[2:] == ["wan1", "online", "->", "disabled", "disabled", "by", "administrator"]
               for line in table.splitlines()), table
    status = ok(netpath(lab2, sock, "status"))
    assert "1 of 2 interfaces carry traffic; not: wan1" in status
    assert "disabled by administrator" in status

    # A refused request: exit 1 and the agent's reason.
    refused = netpath(lab2, sock, "disable", "wan9")
    assert refused.returncode == 1 and "the agent refused" in refused.stderr and "wan9" in refused.stderr

    # docs/agent.md: enable puts the interface back through initial_state and a round at once.
    enabled_at = time.monotonic()
    answer = ok(netpath(lab2, sock, "enable", "wan1")).strip()
    assert answer == f"wan1: admin enabled, state {initial_state}"
    if initial_state == "offline":
        assert via(lab2.http_histogram(4))["wan1"] == 0  # not before its `up` good rounds
        agent.wait_state("wan1", "online", timeout=5)
        print(f"\nenable with initial_state offline: online after {time.monotonic() - enabled_at:.2f} s "
              f"({TRACK['up']} good rounds)")
    after = via(lab2.http_histogram(20))
    assert after["wan1"] > after["wan2"] > 0 and after[None] == 0, after
    tail = [(h["from"], h["to"]) for h in ask(sock, {"cmd": "history"})["history"]
            if h["interface"] == "wan1" and h["time"] >= disabled_at]
    expected = [("online", "disabled"), ("disabled", "online")] if initial_state == "online" else \
        [("online", "disabled"), ("disabled", "offline"), ("offline", "connecting"), ("connecting", "online")]
    assert tail == expected


def test_ifevent_from_the_shell_and_the_socket(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path, track={"interval": 30}))  # slow probes: only the event acts
    sock = agent.socket
    result = netpath(lab2, sock, "ifevent", "ifdown", "wan1", "wan1")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert agent.state("wan1") == "offline"
    assert via(lab2.http_histogram(6))["wan2"] == 6
    assert ask(sock, {"cmd": "ifevent", "action": "ifup", "interface": "wan1", "device": None}) == \
        {"ok": True, "interfaces": ["wan1"]}
    assert agent.state("wan1") == "online"
    assert via(lab2.http_histogram(8))["wan1"] == 6
    # hotplug reports every netifd interface: one NetPath does not manage is no error and changes nothing
    unmanaged = netpath(lab2, sock, "ifevent", "ifdown", "wan9")
    assert (unmanaged.returncode, unmanaged.stdout, unmanaged.stderr) == (0, "", "")
    assert [agent.state(n) for n in ("wan1", "wan2")] == ["online", "online"]
    bad = netpath(lab2, sock, "ifevent", "ifup", "wan9;x")  # no name netifd gives
    assert bad.returncode == 1 and "wan9;x" in bad.stderr
    assert not ask(sock, {"cmd": "ifevent", "action": "reboot", "interface": "wan1"})["ok"]


# --- figures: spread, rules, traffic, connections, loss and delay --------------------------------


def test_policies_spread_follows_the_weights_and_reload(lab2, agents, tmp_path):
    bundle = balanced_bundle(tmp_path)
    agent = agents(bundle)
    sock = agent.socket

    def expected(weights):
        return {f"wan{k}": round(100.0 * w / sum(weights.values()), 1) for k, w in weights.items()}

    assert ask(sock, {"cmd": "policies"})["policies"][0]["spread"] == {"ipv4": expected(WEIGHTS), "ipv6": {}}
    text = ok(netpath(lab2, sock, "policies"))
    assert "ipv4     wan1 75%, wan2 25%" in text and "alive-state 11" in text
    assert "m1  wan1  metric 1  weight 3  alive" in text
    seen = via(lab2.http_histogram(40))
    assert 26 <= seen["wan1"] <= 34 and seen["wan1"] + seen["wan2"] == 40, seen

    balanced_bundle(tmp_path, weights={1: 1, 2: 3})  # recompiled in place while the agent runs
    reloaded = ok(netpath(lab2, sock, "reload"))
    assert reloaded.strip().endswith(": changed")
    assert ask(sock, {"cmd": "policies"})["policies"][0]["spread"]["ipv4"] == expected({1: 1, 2: 3})
    seen = via(lab2.http_histogram(40))
    assert 26 <= seen["wan2"] <= 34 and seen["wan1"] + seen["wan2"] == 40, seen
    again = json.loads(ok(netpath(lab2, sock, "reload", "--json")))
    assert again["changed"] is False
    assert again["bundle"]["digest"] == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert ok(netpath(lab2, sock, "reload")).strip().endswith("unchanged, nothing to do")


def test_rule_counters_and_link_bytes_follow_the_traffic(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path))
    sock = agent.socket
    before_rules = {r["name"]: r for r in ask(sock, {"cmd": "rules"})["rules"]}["everything"]
    before = {i["name"]: i for i in ask(sock, {"cmd": "interfaces"})["interfaces"]}
    connections = 30
    seen = via(lab2.http_histogram(connections))
    assert seen[None] == 0
    after_rules = {r["name"]: r for r in ask(sock, {"cmd": "rules"})["rules"]}["everything"]
    after = {i["name"]: i for i in ask(sock, {"cmd": "interfaces"})["interfaces"]}
    packets = after_rules["packets"] - before_rules["packets"]
    print(f"\nrule 'everything': {packets} packets, {after_rules['bytes'] - before_rules['bytes']} bytes "
          f"for {connections} connections")
    assert after_rules["policy"] == "p"
    assert connections <= packets <= 2 * connections  # one counted packet per new flow (its SYN)
    assert after_rules["bytes"] - before_rules["bytes"] >= 40 * connections  # a SYN is 40 bytes or more
    for name in ("wan1", "wan2"):
        flows = seen[name]
        assert after[name]["tx_bytes"] - before[name]["tx_bytes"] >= 200 * flows  # SYN, ACKs, GET, FIN
        assert after[name]["rx_bytes"] - before[name]["rx_bytes"] >= 200 * flows
        assert after[name]["tx_packets"] - before[name]["tx_packets"] >= 4 * flows
        # The agent reads the same kernel counters `ip` and sysfs show.
        sysfs = int(lab2.run("router", ["cat", f"/sys/class/net/{name}/statistics/tx_bytes"]).stdout)
        assert after[name]["tx_bytes"] <= sysfs
    rows = ok(netpath(lab2, sock, "rules")).splitlines()
    assert rows[0].split() == ["RULE", "POLICY", "FLOWS", "BYTES"]
    assert rows[1].split()[:3] == ["everything", "p", str(after_rules["packets"])]


def test_connections_count_real_conntrack_entries(lab2, agents, tmp_path):
    bundle = balanced_bundle(tmp_path)
    agent = agents(bundle)
    sock = agent.socket
    model = manifest(bundle)["model"]
    mask = model["mask"]
    marks = {i["name"]: int(i["mark"], 16) for i in ask(sock, {"cmd": "interfaces"})["interfaces"]}
    port, flows = 9100, 12
    lab2.run("router", ["conntrack", "-F"])  # earlier tests' entries would expire while we count
    server = start_ready(lab2, "net", ["hold-server", netlab.HTTP4, port], tmp_path / "hold-server.out")
    holder = None
    try:
        def counts():
            return {i["name"]: i["connections"] for i in ask(sock, {"cmd": "interfaces"})["interfaces"]}

        before = counts()
        holder = start_ready(lab2, "client", ["hold", netlab.HTTP4, port, flows], tmp_path / "hold.out")
        during = counts()
        independent = conntrack_marks(lab2, mask)
        for name, count in during.items():
            # the agent's figure is the kernel's (give or take probe entries coming and going)
            assert abs(count - independent.get(marks[name], 0)) <= 3, (name, count, independent)
        rise = sum(during.values()) - sum(before.values())
        print(f"\nconnections: {before} -> {during} with {flows} long-lived flows open; conntrack -L: "
              f"{ {name: independent.get(mark, 0) for name, mark in marks.items()} }")
        assert rise >= flows
        # Deleting the flows' entries in the kernel takes them out of the figure.
        lab2.run("router", ["conntrack", "-D", "-p", "tcp", "--dport", port], check=False)
        after = counts()
        assert sum(during.values()) - sum(after.values()) >= flows - 2
        traffic = next(line for line in ok(netpath(lab2, sock, "interfaces", "wan1")).splitlines()
                       if line.startswith("  traffic"))
        shown = int(traffic.rsplit(", ", 1)[1].split()[0])  # "..., 3 connections"
        assert abs(shown - conntrack_marks(lab2, mask).get(marks["wan1"], 0)) <= 3, traffic
    finally:
        if holder is not None:
            stop(holder)
        stop(server)


def test_loss_and_delay_show_in_interfaces(lab2, agents, tmp_path):
    # A high `down`: the lossy WAN stays in use while its figures are read.
    agent = agents(balanced_bundle(tmp_path, track={"interval": 0.2, "failure_interval": 0.2, "timeout": 0.6,
                                                    "down": 50}))
    sock = agent.socket
    time.sleep(1)
    clean = iface(ask(sock, {"cmd": "interfaces"}), "wan1")
    assert clean["loss_pct"] == 0.0 and clean["latency"]["avg"] < 50
    delay_ms, loss_pct = 150, 40
    lab2.netem(1, delay_ms=delay_ms, loss_pct=loss_pct)

    def impaired():
        row = iface(ask(sock, {"cmd": "interfaces"}), "wan1")
        # the whole window of 10 rounds taken under the impairment: every reply is late
        return row if row["loss_pct"] and row["latency"]["min"] and row["latency"]["min"] >= delay_ms else None

    wan1 = wait_for(impaired, 20, "wan1's window shows the delay and some loss")
    wan2 = iface(ask(sock, {"cmd": "interfaces"}), "wan2")
    print(f"\nnetem delay {delay_ms} ms, loss {loss_pct} % on wan1: latency {wan1['latency']}, "
          f"loss {wan1['loss_pct']} %; wan2 latency avg {wan2['latency']['avg']} ms, loss {wan2['loss_pct']} %")
    assert 0 < wan1["loss_pct"] < 100
    assert wan1["latency"]["avg"] >= delay_ms > clean["latency"]["avg"] + 100
    assert wan2["loss_pct"] == 0.0 and wan2["latency"]["avg"] < 50
    window = next(line for line in ok(netpath(lab2, sock, "interfaces", "wan1")).splitlines()
                  if line.startswith("  window"))
    assert float(window.rsplit("loss ", 1)[1].rstrip("%")) > 0, window
    metrics = ask(sock, {"cmd": "metrics"})["metrics"]["interfaces"]["wan1"]
    assert metrics["loss_pct"] > 0 and metrics["latency_ms"] >= delay_ms
    lab2.netem(1)


# --- metrics: JSON and Prometheus ----------------------------------------------------------------

# docs/ipc.md's table: Prometheus family -> (key in the JSON metrics, scale to base units)
INTERFACE_FAMILIES = {
    "netpath_interface_up": ("up", 1), "netpath_interface_latency_seconds": ("latency_ms", 0.001),
    "netpath_interface_latency_min_seconds": ("latency_min_ms", 0.001),
    "netpath_interface_latency_max_seconds": ("latency_max_ms", 0.001),
    "netpath_interface_jitter_seconds": ("jitter_ms", 0.001),
    "netpath_interface_loss_ratio": ("loss_pct", 0.01), "netpath_interface_score": ("score", 1),
    "netpath_interface_transmit_bytes_total": ("tx_bytes", 1), "netpath_interface_receive_bytes_total": ("rx_bytes", 1),
    "netpath_interface_connections": ("connections", 1),
    "netpath_interface_state_changes_total": ("state_changes", 1),
    "netpath_interface_link_up": ("link_up", 1), "netpath_interface_enabled": ("enabled", 1),
    "netpath_interface_last_change_timestamp_seconds": ("last_change", 1),
}
TARGET_FAMILIES = {
    "netpath_target_up": ("up", 1), "netpath_target_latency_seconds": ("latency_ms", 0.001),
    "netpath_target_latency_min_seconds": ("latency_min_ms", 0.001),
    "netpath_target_latency_max_seconds": ("latency_max_ms", 0.001),
    "netpath_target_jitter_seconds": ("jitter_ms", 0.001), "netpath_target_loss_ratio": ("loss_pct", 0.01),
}
RULE_FAMILIES = {"netpath_rule_new_flows_total": "packets"}
GLOBAL_FAMILIES = {"netpath_state_swaps_total": "swaps", "netpath_state_swap_last_duration_seconds": "swap_seconds_last",
                   "netpath_state_swap_failures_total": "swap_failures", "netpath_reloads_total": "reloads",
                   "netpath_reload_failures_total": "reload_failures"}
METRICS_KEYS = {"version", "bundle", "interfaces", "policies", "rules", "swaps", "swap_seconds_last", "swap_seconds",
                "swap_failures", "reloads", "reload_failures", "process", "kernel_repairs"}


def prometheus_samples(text: str) -> tuple:
    from prometheus_client.parser import text_string_to_metric_families

    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            types[sample.name] = family.type
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def agrees(value, first, second, scale) -> bool:
    """The Prometheus value lies between two JSON readings taken before and after it."""
    low, high = sorted((first * scale, second * scale))
    return low - 1e-9 <= value <= high + 1e-9


def test_metrics_json_and_prometheus_agree(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path))
    sock = agent.socket
    ask(sock, {"cmd": "disable", "interface": "wan2"})
    ask(sock, {"cmd": "enable", "interface": "wan2"})  # two swaps, two state changes for wan2
    lab2.http_histogram(10)
    time.sleep(0.6)  # a round after the traffic

    for source in ("socket", "shell"):
        first = ask(sock, {"cmd": "metrics"})["metrics"]
        if source == "socket":
            text = ask(sock, {"cmd": "metrics", "format": "prometheus"})["text"]
        else:
            text = ok(netpath(lab2, sock, "metrics", "--prometheus"))
        second = json.loads(ok(netpath(lab2, sock, "metrics", "--json")))["metrics"]
        samples, types = prometheus_samples(text)
        compared = 0
        for family, (key, scale) in INTERFACE_FAMILIES.items():
            for name in ("wan1", "wan2"):
                a, b = first["interfaces"][name][key], second["interfaces"][name][key]
                value = samples.get((family, (("interface", name),)))
                if a is None and b is None:
                    assert value is None, (family, name)
                    continue
                assert value is not None and agrees(value, a, b, scale), (family, name, value, a, b)
                compared += 1
        for family, (key, scale) in TARGET_FAMILIES.items():
            for name in ("wan1", "wan2"):
                labels = (("interface", name), ("target", netlab.HTTP4))
                a = first["interfaces"][name]["targets"][netlab.HTTP4][key]
                b = second["interfaces"][name]["targets"][netlab.HTTP4][key]
                value = samples.get((family, labels))
                if a is None and b is None:
                    assert value is None, (family, name)
                    continue
                assert value is not None and agrees(value, a, b, scale), (family, name, value, a, b)
                compared += 1
        for family, key in RULE_FAMILIES.items():
            value = samples[(family, (("rule", "everything"),))]
            assert agrees(value, first["rules"]["everything"][key], second["rules"]["everything"][key], 1)
            compared += 1
        for family, key in GLOBAL_FAMILIES.items():
            assert agrees(samples[(family, ())], first[key], second[key], 1), family
            compared += 1
        assert types["netpath_interface_transmit_bytes_total"] == "counter"
        assert types["netpath_interface_up"] == "gauge"
        assert first["swaps"] >= 2 and second["interfaces"]["wan2"]["state_changes"] == 2
        assert second["interfaces"]["wan1"]["connections"] + second["interfaces"]["wan2"]["connections"] >= 10
        print(f"\nmetrics via {source}: {compared} Prometheus samples agree with the JSON metrics")

    table = ok(netpath(lab2, sock, "metrics")).splitlines()
    assert table[0].split() == ["INTERFACE", "UP", "LATENCY", "LOSS", "SCORE", "TX", "RX", "CONNS", "CHANGES"]
    assert table[1].startswith("wan1") and table[2].startswith("wan2")
    assert table[-1].startswith("state swaps: ")


def new_flows(sock: str) -> int:
    samples, _ = prometheus_samples(ask(sock, {"cmd": "metrics", "format": "prometheus"})["text"])
    return samples[("netpath_rule_new_flows_total", (("rule", "everything"),))]


def test_rule_counters_survive_a_reapply_and_reloads(lab2, agents, tmp_path):
    """The rule counters are counters: `netpath apply` of the running bundle, a reload of it and
    a reload of a changed bundle leave them where they were (they used to drop to 0). Late
    packets of earlier tests' flows may add a new flow or two meanwhile, so "at least"."""
    bundle = balanced_bundle(tmp_path)
    agent = agents(bundle)
    sock = agent.socket
    lab2.http_histogram(12)
    counted = new_flows(sock)
    assert counted >= 12  # each connection is one new flow (its later packets carry the mark)
    assert ask(sock, {"cmd": "rules"})["rules"][0]["packets"] == counted

    ok(lab2.run("router", [NETPATH, "apply", "--force", str(bundle)], check=False))
    assert new_flows(sock) >= counted, "netpath apply of the same bundle reset the counter"
    assert ask(sock, {"cmd": "reload"})["changed"] is False
    assert new_flows(sock) >= counted, "an unchanged reload reset the counter"
    balanced_bundle(tmp_path, weights={1: 1, 2: 1})  # recompiled in place: a changed bundle
    assert ask(sock, {"cmd": "reload"})["changed"] is True
    assert new_flows(sock) >= counted, "a reload of a changed bundle reset the counter"
    lab2.http_histogram(5)
    assert new_flows(sock) >= counted + 5
    samples, _ = prometheus_samples(ask(sock, {"cmd": "metrics", "format": "prometheus"})["text"])
    assert samples[("netpath_reloads_total", ())] == 2 and samples[("netpath_reload_failures_total", ())] == 0


def test_connection_counts_leave_out_the_agents_probes(lab2, agents, tmp_path):
    """Rounds of HTTP probes every 0.5 s leave conntrack entries in the router; none of them is
    a connection of the uplink (they were counted as ones arriving on the WAN)."""
    agent = agents(balanced_bundle(tmp_path))
    sock = agent.socket
    lab2.run("router", ["conntrack", "-F"])  # the flows of earlier tests in this lab

    def probe_entries() -> int:
        listing = lab2.run("router", ["conntrack", "-L", "-d", netlab.HTTP4]).stdout.splitlines()
        return sum(1 for line in listing if f"src={netlab.router_wan4(1)}" in line)

    wait_for(probe_entries, 15, "a conntrack entry of the probes to leave out")  # a round every 0.5 s
    rows = {row["name"]: row for row in ask(sock, {"cmd": "interfaces"})["interfaces"]}
    assert rows["wan1"]["connections"] == 0 and rows["wan2"]["connections"] == 0, \
        (rows["wan1"]["connections"], rows["wan2"]["connections"])
    metrics = ask(sock, {"cmd": "metrics"})["metrics"]["interfaces"]
    assert metrics["wan1"]["connections"] == 0 and metrics["wan2"]["connections"] == 0
    held = lab2.http_histogram(6)
    assert held["errors"] == 0
    rows = {row["name"]: row for row in ask(sock, {"cmd": "interfaces"})["interfaces"]}
    assert rows["wan1"]["connections"] + rows["wan2"]["connections"] == 6  # the LAN's, and only those


def test_prometheus_states_shares_and_targets_follow_a_disable(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path))
    sock = agent.socket
    # A round with both up: waited for, not slept for (the first HTTP probe imports requests,
    # which alone can take longer than a round on a loaded host).
    wait_for(lambda: all(row["targets"] and all(t["ok"] for t in row["targets"])
                         for row in ask(sock, {"cmd": "interfaces"})["interfaces"]),
             15, "a probe round answered on both uplinks")

    def scrape() -> dict:
        return prometheus_samples(ask(sock, {"cmd": "metrics", "format": "prometheus"})["text"])[0]

    def states(samples: dict, name: str) -> dict:
        return {s: samples[("netpath_interface_state", (("interface", name), ("state", s)))]
                for s in ("online", "disconnecting", "connecting", "offline", "disabled")}

    share = "netpath_policy_share_ratio"
    samples = scrape()
    assert states(samples, "wan2") == {"online": 1, "disconnecting": 0, "connecting": 0, "offline": 0, "disabled": 0}
    assert samples[(share, (("family", "ipv4"), ("interface", "wan1"), ("policy", "p")))] == 0.75
    assert samples[(share, (("family", "ipv4"), ("interface", "wan2"), ("policy", "p")))] == 0.25
    assert samples[("netpath_interface_info", (("device", "wan2"), ("family", "ipv4"), ("interface", "wan2"),
                                               ("logical", "")))] == 1
    assert samples[("netpath_target_up", (("interface", "wan2"), ("target", netlab.HTTP4)))] == 1
    assert samples[("netpath_target_latency_seconds", (("interface", "wan2"), ("target", netlab.HTTP4)))] > 0
    before = samples[("netpath_interface_last_change_timestamp_seconds", (("interface", "wan2"),))]
    build = [labels for name, labels in samples if name == "netpath_build_info"]
    assert build == [(("bundle", agent.request("status")["bundle"]["digest"][:12]), ("version", "0.1.0"))]
    assert samples[("process_resident_memory_bytes", ())] > 1 << 20
    assert abs(samples[("process_open_fds", ())] - agent.fd_count()) <= 3  # a request holds a socket or two
    assert samples[("process_start_time_seconds", ())] == pytest.approx(agent.started_at, abs=2)

    ask(sock, {"cmd": "disable", "interface": "wan2"})
    samples = scrape()
    assert states(samples, "wan2") == {"online": 0, "disconnecting": 0, "connecting": 0, "offline": 0, "disabled": 1}
    assert samples[("netpath_interface_up", (("interface", "wan2"),))] == 0
    assert samples[("netpath_interface_enabled", (("interface", "wan2"),))] == 0
    assert samples[("netpath_interface_link_up", (("interface", "wan2"),))] == 1  # planned, not an outage
    assert samples[(share, (("family", "ipv4"), ("interface", "wan1"), ("policy", "p")))] == 1.0
    assert samples[(share, (("family", "ipv4"), ("interface", "wan2"), ("policy", "p")))] == 0.0
    assert samples[("netpath_policy_last_resort", (("family", "ipv4"), ("policy", "p")))] == 0
    assert samples[("netpath_interface_last_change_timestamp_seconds", (("interface", "wan2"),))] > before
    assert samples[("netpath_state_swap_duration_seconds_count", ())] == samples[("netpath_state_swaps_total", ())]
    ask(sock, {"cmd": "disable", "interface": "wan1"})
    samples = scrape()
    assert samples[("netpath_policy_last_resort", (("family", "ipv4"), ("policy", "p")))] == 1
    assert samples[(share, (("family", "ipv4"), ("interface", "wan1"), ("policy", "p")))] == 0.0


def test_metrics_listen_serves_the_prometheus_text_over_http(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path), extra=("--metrics-listen", "127.0.0.1:9101"))
    scrape = ("import urllib.request, sys; r = urllib.request.urlopen('http://127.0.0.1:9101/metrics', "
              "timeout=5); sys.stdout.write(r.headers['Content-Type'] + '\\n' + r.read().decode())")
    out = lab2.run("router", [sys.executable, "-c", scrape]).stdout
    content_type, _, text = out.partition("\n")
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    samples, types = prometheus_samples(text)
    assert samples[("netpath_interface_up", (("interface", "wan1"),))] == 1
    assert types["netpath_interface_up"] == "gauge"
    missing = lab2.run("router", [sys.executable, "-c", scrape.replace("/metrics", "/other")], check=False)
    assert missing.returncode != 0 and "404" in missing.stderr
    assert agent.request("status")["ok"]


# --- the shell commands: tables, --json, no agent -------------------------------------------------


def test_shell_commands_print_tables_and_json(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path))
    sock = agent.socket
    status = ok(netpath(lab2, sock, "status")).splitlines()
    assert status[0].startswith("NetPath 0.1.0, agent up ") and str(agent.bundle) in status[0]
    assert status[1] == "2 of 2 interfaces carry traffic"
    assert status[3].split() == ["INTERFACE", "STATE", "FOR", "LINK", "DEVICE", "LATENCY", "LOSS", "CONNS", "REASON"]
    assert status[4].split()[:2] == ["wan1", "online"] and status[5].split()[:2] == ["wan2", "online"]
    assert any(line.split() == ["p", "balanced", "wan1", "75%,", "wan2", "25%", "-"] for line in status), status
    assert status[-1] == "kernel: as loaded, no drift since the agent started"

    detail = ok(netpath(lab2, sock, "interfaces", "wan2"))
    assert detail.startswith("wan2  online for ") and "wan1" not in detail
    assert "device   wan2 (ipv4), link up, admin enabled" in detail
    assert f"{netlab.HTTP4}  ok" in detail
    assert f"gateway {netlab.isp_gateway4(2)}, address {netlab.router_wan4(2)}" in detail
    assert ok(netpath(lab2, sock, "history")).strip() == "no state changes yet"

    for command in (["status"], ["interfaces"], ["policies"], ["rules"], ["metrics"], ["history", "--limit", "5"],
                    ["disable", "wan2"], ["enable", "wan2"], ["reload"]):
        reply = json.loads(ok(netpath(lab2, sock, *command, "--json")))
        assert reply["ok"] is True, command
    assert json.loads(ok(netpath(lab2, sock, "history", "--json", "--limit", "1")))["history"][0]["to"] == "online"
    assert json.loads(ok(netpath(lab2, sock, "interfaces", "--json")))["interfaces"][0]["name"] == "wan1"
    # an argument error is the command's own (exit 2), before the agent is asked
    refused = netpath(lab2, sock, "history", "--json", "--limit", "0")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == "netpath history: error: --limit must be at least 1\n"
    assert ask(sock, {"cmd": "history", "limit": 0})["ok"] is False  # the agent refuses it too


def test_shell_commands_without_an_agent(lab2, tmp_path):
    missing = str(tmp_path / "none.sock")
    stale = str(tmp_path / "stale.sock")
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(stale)  # a socket file nobody listens on, as a crashed agent leaves it
    leftover.close()
    for path in (missing, stale):
        for command in (["status"], ["interfaces"], ["policies"], ["rules"], ["enable", "wan1"],
                        ["disable", "wan1"], ["reload"], ["metrics"], ["metrics", "--prometheus"], ["history"],
                        ["status", "--json"]):
            result = netpath(lab2, path, *command)
            assert result.returncode == 1, (command, result)
            assert result.stdout == ""
            assert f"no NetPath agent is running (nothing answers on {path})" in result.stderr, result.stderr
        hotplug = netpath(lab2, path, "ifevent", "ifup", "wan1")
        assert (hotplug.returncode, hotplug.stdout, hotplug.stderr) == (0, "", "")
    assert netpath(lab2, missing, "disable").returncode == 2  # bad arguments


# --- access and hostile input ----------------------------------------------------------------------


def test_socket_is_for_root_only(lab2, agents, tmp_path):
    workdir = Path(tempfile.mkdtemp(prefix="netpath-ipc-", dir="/tmp"))
    try:
        workdir.chmod(0o755)  # nobody may reach the socket file; only its own mode keeps them out
        agent = agents(balanced_bundle(tmp_path), workdir=workdir)
        sock = agent.socket
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        assert lab2.run("router", [*NOBODY, "test", "-S", sock], check=False).returncode == 0

        for command in (["disable", "wan1"], ["status"]):
            denied = netpath(lab2, sock, *command, user="nobody")
            assert denied.returncode == 1 and "permission denied" in denied.stderr, denied
        probe = lab2.run("router", [*NOBODY, sys.executable, "-c", SEED_CLIENT, sock],
                         input='{"cmd":"disable","interface":"wan1"}\n', check=False)
        assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe
        assert agent.interface("wan1")["admin"] == "enabled" and agent.history() == []

        # The control: with the mode opened up, the same user gets through.
        os.chmod(sock, 0o666)
        assert json.loads(ok(netpath(lab2, sock, "status", "--json", user="nobody")))["ok"] is True
        os.chmod(sock, 0o600)
        assert netpath(lab2, sock, "status", user="nobody").returncode == 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_requests_naming_programs_or_shell_syntax_execute_nothing(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path))
    sock = agent.socket
    marker = tmp_path / "executed"
    touch = f"touch {marker}"
    hostile = [
        {"cmd": "../../bin/sh"}, {"cmd": "/bin/sh", "args": ["-c", touch]}, {"cmd": f"status; {touch}"},
        {"cmd": f"$({touch})"}, {"cmd": "sh -c " + touch},
        {"cmd": "disable", "interface": f"wan1; {touch}"}, {"cmd": "enable", "interface": f"$({touch})"},
        {"cmd": "disable", "interface": f"`{touch}`"}, {"cmd": "disable", "interface": "../../bin/sh"},
        {"cmd": "ifevent", "action": f"ifup; {touch}", "interface": "wan1"},
        {"cmd": "ifevent", "action": "ifdown", "interface": f"wan1 && {touch}"},
        {"cmd": "ifevent", "action": "ifup", "interface": "wan1", "device": ["wan1", touch]},
        {"cmd": "metrics", "format": f"prometheus; {touch}"}, {"cmd": "history", "limit": f"1; {touch}"},
    ]
    for request in hostile:
        reply = ask(sock, request)
        assert reply["ok"] is False and reply["error"], (request, reply)
    # A device name is only passed along by hotplug: nothing runs it either.
    assert ask(sock, {"cmd": "ifevent", "action": "ifupdate", "interface": "wan1", "device": f"$({touch})"})["ok"]
    time.sleep(0.5)
    assert not marker.exists()
    assert [i["state"] for i in ask(sock, {"cmd": "interfaces"})["interfaces"]] == ["online", "online"]
    assert agent.history() == []
    unknown = ask(sock, {"cmd": "../../bin/sh"})["error"]
    assert "unknown command '../../bin/sh'" in unknown and "status" in unknown


def test_unknown_arguments_are_refused(lab2, agents, tmp_path):
    """docs/ipc.md: an unknown argument gets an error reply naming the problem (a reload that
    names another bundle must not look as if it loaded that bundle)."""
    agent = agents(balanced_bundle(tmp_path))
    for request in ({"cmd": "reload", "bundle": "/tmp/elsewhere"}, {"cmd": "status", "verbose": True},
                    {"cmd": "disable", "interface": "wan1", "for": 60}):
        reply = ask(agent.socket, request)
        assert reply["ok"] is False, (request, reply)
        extra = next(k for k in request if k not in ("cmd", "interface"))
        assert repr(extra) in reply["error"] or f'"{extra}"' in reply["error"], reply
    assert agent.state("wan1") == "online"


# --- load: fuzzing while probing and failing over -------------------------------------------------


def echo_request_times(path: Path) -> list:
    return [float(line) for line in path.read_text().split() if line[0].isdigit()]


def rhythm(times: list, start: float, end: float) -> tuple:
    """(rounds, median period, largest deviation from it) of the probe rounds in [start, end]."""
    inside = [t for t in times if start <= t <= end]
    periods = [b - a for a, b in zip(inside, inside[1:])]
    if not periods:
        return len(inside), float("nan"), float("nan")
    median = statistics.median(periods)
    return len(inside), median, max(abs(p - median) for p in periods)


def dialled(path: Path) -> list:
    """[(start time, "wan1"/"wan2"/"no-connection"/"no-reply")] of the dial helper's connections."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0][0].isdigit():
            rows.append((float(parts[0]), _uplink(parts[1]) or parts[1]))
    return sorted(rows)


def test_fuzzing_keeps_probe_rhythm_and_failover(lab2, agents, tmp_path):
    """10,000+ bad and valid requests from a process in the router namespace while the probes
    are timed where they arrive (kernel timestamps of the echo requests at each ISP; one echo
    request per round) and ISP 1 breaks. Jitter: the largest deviation of a round-to-round
    period from the median period. Failover: from the blackhole to the first new connection
    (a new one every 50 ms from the LAN client) that leaves by wan2."""
    track = {"interval": 0.5, "timeout": 0.5, "failure_interval": 0.5, "recovery_interval": 0.5, "down": 3}
    agent = agents(compile_bundle(tmp_path, agent_config(track=track)))  # failover: wan1, then wan2
    bound = track["interval"] + track["down"] * track["timeout"] + (track["down"] - 1) * track["failure_interval"]
    helpers = []
    try:
        for k in (1, 2):
            helpers.append(start_ready(lab2, f"isp{k}", ["sniff", "up0", netlab.router_wan4(k)],
                                       tmp_path / f"sniff{k}.out"))
        helpers.append(start_ready(lab2, "client", ["dial", netlab.HTTP4, netlab.HTTP_PORT], tmp_path / "dial.out"))
        for request in VALID_REQUESTS:  # warm up: lazily opened readers belong to the baseline
            ask(agent.socket, request)
        fds = agent.fd_count()
        time.sleep(3)  # the rhythm without load, for comparison
        quiet_end = time.time()
        requests, seconds = 10_000, 8 + bound
        fuzz_out = tmp_path / "fuzz.out"
        fuzzer = start_ready(lab2, "router", ["fuzz", agent.socket, "--count", requests, "--seconds", seconds],
                             fuzz_out)
        helpers.append(fuzzer)
        fuzz_start = time.time()
        time.sleep(4)
        failed_at = time.time()
        lab2.isp_blackhole(1)
        fuzzer.wait(seconds + 60)
        fuzz_end = time.time()
        time.sleep(0.3)
        for helper in helpers:
            stop(helper)
        summary = json.loads(fuzz_out.read_text().splitlines()[-1])

        sniffed = {k: echo_request_times(tmp_path / f"sniff{k}.out") for k in (1, 2)}
        quiet = rhythm(sniffed[2], quiet_end - 3, quiet_end)
        loaded = {1: rhythm(sniffed[1], fuzz_start, failed_at),  # wan1's rounds slow down by design once failing
                  2: rhythm(sniffed[2], fuzz_start, fuzz_end)}
        connections = dialled(tmp_path / "dial.out")
        moved_at = next(t for t, wan in connections if t >= failed_at and wan == "wan2")
        offline_at = next(h["time"] for h in agent.history() if h["interface"] == "wan1" and h["to"] == "offline")
        print(f"\nfuzzing: {summary['total']} requests in {summary['seconds']:.1f} s "
              f"({summary['total'] / summary['seconds']:.0f}/s), by kind {summary['kinds']}")
        print(f"probe rhythm without load: {quiet[0]} rounds, period {quiet[1] * 1000:.1f} ms, "
              f"jitter {quiet[2] * 1000:.1f} ms")
        for k, (rounds, period, jitter) in loaded.items():
            print(f"probe rhythm under fuzzing, wan{k}: {rounds} rounds, period {period * 1000:.1f} ms, "
                  f"jitter (largest deviation) {jitter * 1000:.1f} ms")
        print(f"failover under fuzzing (bound {bound:g} s + 0.5 s): wan1 offline {offline_at - failed_at:.2f} s, "
              f"first new connection via wan2 started {moved_at - failed_at:.2f} s after the blackhole")

        assert summary["total"] >= requests and summary["problems"] == [], summary["problems"]
        assert summary["first"] <= failed_at and summary["last"] >= moved_at  # the load spanned the failover
        for k, (rounds, period, jitter) in loaded.items():
            assert rounds >= 6, (k, rounds)
            assert abs(period - track["interval"]) < 0.05, (k, period)
            assert jitter < 0.1, f"wan{k}: probe jitter {jitter * 1000:.1f} ms under load"
        assert moved_at - failed_at <= bound + 0.5
        assert offline_at - failed_at <= bound + 0.5
        # After the swap no new connection takes the broken path (a slow answer from the busy
        # test host is no failover failure).
        later = [(round(t - offline_at, 2), wan) for t, wan in connections if t >= offline_at + 0.2]
        print(f"after the swap: {len(later)} new connections, {sum(w == 'wan2' for _, w in later)} via wan2, "
              f"{sum(w == 'no-reply' for _, w in later)} connected but answered slowly")
        assert not [c for c in later if c[1] in ("wan1", "no-connection")], later
        assert agent.process.poll() is None and ask(agent.socket, {"cmd": "status"})["ok"]
        wait_for(lambda: agent.fd_count() <= fds + 2, 5, f"the agent's {agent.fd_count()} open files back to {fds}")
        assert "unexpected error" not in agent.log() and "Traceback" not in agent.log()
    finally:
        for helper in helpers:
            stop(helper)


# --- helper programs (run inside the lab's namespaces) -------------------------------------------

VALID_REQUESTS = [{"cmd": "status"}, {"cmd": "interfaces"}, {"cmd": "policies"}, {"cmd": "rules"},
                  {"cmd": "metrics"}, {"cmd": "metrics", "format": "prometheus"}, {"cmd": "history"},
                  {"cmd": "history", "limit": 3}]
INVALID_REQUESTS = [  # each must get {"ok": false, "error": ...}
    b'status\n', b'{cmd: status}\n', b'{"cmd": "status"\n', b'{"cmd": "status"}}\n', b'\n', b'   \n',
    b'[{"cmd": "status"}]\n', b'["status"]\n', b'"status"\n', b'42\n', b'null\n', b'true\n',
    b'{"cmd": "reboot"}\n', b'{"cmd": "../../bin/sh"}\n', b'{"cmd": ""}\n', b'{"cmd": 5}\n', b'{}\n',
    b'{"cmd": null}\n', b'{"cmd": ["status"]}\n', b'{"ok": true, "cmd": "status"}\n',
    b'{"cmd": "disable"}\n', b'{"cmd": "enable", "interface": "wan9"}\n',
    b'{"cmd": "disable", "interface": ""}\n', b'{"cmd": "disable", "interface": ["wan1"]}\n',
    b'{"cmd": "enable", "interface": null}\n', b'{"cmd": "ifevent", "action": "ifdown", "interface": "no pe"}\n',
    b'{"cmd": "ifevent", "action": "explode", "interface": "wan1"}\n', b'{"cmd": "history", "limit": -1}\n',
    b'{"cmd": "history", "limit": "all"}\n', b'{"cmd": "metrics", "format": "xml"}\n',
    b'{"cmd": "\xff\xfe"}\n', b'{"cmd": "status", "x": 1e999999}\n', b'[' * 30000 + b'\n',
]


def _fuzz_main(args) -> int:
    """Bad and valid requests from `--workers` concurrent clients until `--count` were made and
    `--seconds` passed; one JSON summary line at the end, with every reply that broke the contract."""
    rng = random.Random(args.seed)
    kinds = ["valid"] * 3 + ["invalid"] * 3 + ["garbage"] * 2 + ["garbage-eof", "oversized", "silent", "vanish"]
    stats = {"total": 0, "kinds": {}, "problems": [], "first": None, "last": None}
    start = time.time()

    async def exchange(payload: bytes, half_close: bool = False, read: bool = True):
        reader, writer = await asyncio.open_unix_connection(args.socket, limit=1 << 20)
        try:
            writer.write(payload)
            if half_close:
                writer.write_eof()
            await writer.drain()
            if not read:
                return None
            return await asyncio.wait_for(reader.read(), 20)
        finally:
            writer.transport.abort()

    def check(kind: str, data: bytes, want_ok: bool, sent: bytes) -> None:
        try:
            reply = json.loads(data)
            good = data.count(b"\n") == 1 and reply["ok"] is want_ok and (want_ok or reply["error"])
        except (ValueError, KeyError, TypeError):
            good = False
        if not good and len(stats["problems"]) < 20:
            stats["problems"].append({"kind": kind, "sent": sent[:120].decode("latin-1"),
                                      "got": data[:200].decode("latin-1")})

    async def one(kind: str) -> None:
        if kind == "valid":
            payload = json.dumps(rng.choice(VALID_REQUESTS)).encode() + b"\n"
            check(kind, await exchange(payload), True, payload)
        elif kind == "invalid":
            payload = rng.choice(INVALID_REQUESTS)
            check(kind, await exchange(payload), False, payload)
        elif kind in ("garbage", "garbage-eof"):
            payload = rng.randbytes(rng.randint(1, 3000)).replace(b"\n", b"") or b"x"
            if kind == "garbage":
                check(kind, await exchange(payload + b"\n"), False, payload)
            else:  # a request that ends at EOF
                check(kind, await exchange(payload, half_close=True), False, payload)
        elif kind == "oversized":
            size = rng.randint(64 * 1024 + 1, 200 * 1024)
            payload = (b'{"cmd": "status", "pad": "' + b"a" * size + b'"}\n') if rng.random() < 0.5 \
                else rng.randbytes(size).replace(b"\n", b"a") + b"\n"
            data = await exchange(payload)
            check(kind, data, False, payload)
            if b"64 KiB" not in data and len(stats["problems"]) < 20:
                stats["problems"].append({"kind": kind, "got": data[:200].decode("latin-1")})
        elif kind == "silent":  # connects, sends nothing, goes away
            reader, writer = await asyncio.open_unix_connection(args.socket)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            writer.transport.abort()
        elif kind == "vanish":  # asks for a long reply and leaves while it is being written
            reader, writer = await asyncio.open_unix_connection(args.socket)
            writer.write(b'{"cmd": "metrics", "format": "prometheus"}\n' if rng.random() < 0.5
                         else b'{"cmd": "status"}\n')
            await writer.drain()
            if rng.random() < 0.5:
                await reader.read(rng.randint(1, 64))
            writer.transport.abort()

    async def idle() -> None:
        """Holds a connection without a request until the agent gives up on it (5 s)."""
        data = await exchange(b"", read=True)
        check("idle", data, False, b"")

    async def worker() -> None:
        while stats["total"] < args.count or time.time() - start < args.seconds:
            kind = rng.choice(kinds)
            stats["total"] += 1
            stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
            stats["first"] = stats["first"] or time.time()
            try:
                await one(kind)
            except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
                if kind not in ("silent", "vanish") and len(stats["problems"]) < 20:
                    stats["problems"].append({"kind": kind, "error": repr(exc)})
            stats["last"] = time.time()

    async def main() -> None:
        idlers = [asyncio.ensure_future(idle()) for _ in range(8)]
        await asyncio.gather(*(worker() for _ in range(args.workers)))
        await asyncio.gather(*idlers)
        stats["kinds"]["idle"] = len(idlers)

    print("READY", flush=True)
    asyncio.run(main())
    stats["seconds"] = time.time() - start
    print(json.dumps(stats), flush=True)
    return 0


SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def _sniff_main(args) -> int:
    """Kernel receive time of every ICMP echo request from `source` arriving on `device`."""
    source = socket.inet_aton(args.source)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((args.device, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    print("READY", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        packet, ancillary, _flags, address = s.recvmsg(2048, 64)
        if address[2] == PACKET_OUTGOING or len(packet) < 34:
            continue
        ip = packet[14:]
        header = (ip[0] & 0x0F) * 4
        if ip[9] != 1 or ip[12:16] != source or len(ip) <= header or ip[header] != 8:
            continue
        stamp = next((struct.unpack("qq", data[:16]) for level, kind, data in ancillary
                      if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
        when = stamp[0] + stamp[1] / 1e9 if stamp else time.time()
        print(f"{when:.6f}", flush=True)


def _dial_main(args) -> int:
    """A new HTTP connection every 50 ms; prints "<start time> <answer>": the address the server
    saw, "no-connection" (no SYN-ACK within 1 s: the path is broken) or "no-reply" (connected,
    but the answer was slow or cut: the server is busy, the path works)."""
    lock = threading.Lock()

    def dial(started: float) -> None:
        try:
            s = socket.create_connection((args.address, args.port), timeout=1.0)
        except OSError:
            answer = "no-connection"
        else:
            try:
                s.settimeout(5.0)
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                answer = data.split(b"\r\n\r\n", 1)[1].decode().strip() or "no-reply"
            except (OSError, IndexError, UnicodeDecodeError):
                answer = "no-reply"
            finally:
                s.close()
        with lock:
            print(f"{started:.6f} {answer}", flush=True)

    print("READY", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        threading.Thread(target=dial, args=(time.time(),), daemon=True).start()
        time.sleep(0.05)


def _hold_server_main(args) -> int:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.address, args.port))
    listener.listen(128)
    held = []
    print("READY", flush=True)
    while True:
        conn, _peer = listener.accept()
        held.append(conn)


def _hold_main(args) -> int:
    """`count` TCP connections, all established before READY, kept open until killed."""
    flows = [socket.create_connection((args.address, args.port), timeout=5) for _ in range(args.count)]
    print("READY", len(flows), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def _helper_main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="test_ipc_lab.py")
    sub = parser.add_subparsers(dest="helper", required=True)
    fuzz = sub.add_parser("fuzz")
    fuzz.add_argument("socket")
    fuzz.add_argument("--count", type=int, default=10_000)
    fuzz.add_argument("--seconds", type=float, default=0)
    fuzz.add_argument("--workers", type=int, default=32)
    fuzz.add_argument("--seed", type=int, default=5)
    sniff = sub.add_parser("sniff")
    sniff.add_argument("device")
    sniff.add_argument("source")
    for name in ("dial", "hold-server", "hold"):
        p = sub.add_parser(name)
        p.add_argument("address")
        p.add_argument("port", type=int)
        if name == "hold":
            p.add_argument("count", type=int)
    args = parser.parse_args(argv)
    return {"fuzz": _fuzz_main, "sniff": _sniff_main, "dial": _dial_main, "hold-server": _hold_server_main,
            "hold": _hold_main}[args.helper](args)


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))


def test_a_globally_disabled_config_says_so_not_a_state_per_interface(lab2, agents, tmp_path):
    text = agent_config().replace('nft_table = "netpath"', 'nft_table = "netpath"\nenabled = false', 1)
    agent = agents(compile_bundle(tmp_path, text))
    status = agent.request("status")
    assert status["enabled"] is False and status["message"] == "NetPath is disabled (globals enabled 0)"
    assert status["interfaces"] == [] and status["policies"] == []
    assert agent.request("interfaces")["interfaces"] == []
    refused = agent.request("disable", check=False, interface="wan1")
    assert refused["ok"] is False and "NetPath is disabled (globals enabled 0)" in refused["error"]
    shown = lab2.run("router", [NETPATH, "status", "--socket", agent.socket], timeout=30)
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("NetPath 0.1.0, agent up ") and lines[1:] == ["NetPath is disabled (globals enabled 0)"]


def test_watch_into_a_closed_pipe_and_an_unknown_interface(lab2, agents, tmp_path):
    agent = agents(balanced_bundle(tmp_path))
    argv = ["ip", "netns", "exec", lab2.router, NETPATH, "status", "--watch", "--interval", "0.1",
            "--socket", agent.socket]
    watcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = [watcher.stdout.readline() for _ in range(3)]  # `| head -n 3`
    watcher.stdout.close()
    try:
        _, err = watcher.communicate(timeout=15)
    finally:
        watcher.kill()
    assert head[0].startswith(b"every 0.1s: netpath status")
    assert watcher.returncode == 0 and err == b"", err.decode()[-500:]
    unknown = lab2.run("router", [NETPATH, "interfaces", "wan1", "nope", "--socket", agent.socket], check=False,
                       timeout=30)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.strip() == "netpath interfaces: no interface 'nope' in the running agent (have: wan1, wan2)"
    known = lab2.run("router", [NETPATH, "interfaces", "wan1", "--socket", agent.socket], timeout=30)
    assert known.stdout.startswith("wan1  online")


def test_dump_is_one_text_with_everything_a_bug_report_needs(lab2, agents, tmp_path):
    bundle = balanced_bundle(tmp_path)
    agent = agents(bundle)
    agent.request("disable", interface="wan2")
    agent.request("enable", interface="wan2")
    done = lab2.run("router", [NETPATH, "dump", str(bundle), "--socket", agent.socket], timeout=60)
    text = done.stdout
    titles = [line for line in text.splitlines() if line.startswith("== ")]
    assert titles[:4] == [titles[0], "== versions ==", "== bundle ==", "== agent =="]
    for title in ("== nft list table inet netpath ==", "== ip -4 rule (protocol 93) ==",
                  "== ip -4 route show table 1001 (wan1) ==", "== link and addresses of wan1 ==",
                  "== link and addresses of wan2 ==", "== log =="):
        assert title in titles, title
    assert "netpath 0.1.0" in text and "nftables v" in text
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert f"config digest {manifest['source']['sha256']}" in text
    assert "chain output" in text and "fwmark 0x100/0x3f00 lookup 1001" in text
    assert "default via 100.64.1.1 dev wan1" in text and netlab.router_wan4(2) in text
    assert '"to": "disabled"' in text  # the history
    assert "[interfaces." not in text, "the config itself is not in the dump"


def test_dump_masks_credentials_in_urls():
    from netpath.agent.dump import CREDENTIALS

    text = "http_url https://admin:s3cret@192.0.2.1/health and http://198.51.100.1/ok"
    assert CREDENTIALS.sub(r"\1***:***@", text) == \
        "http_url https://***:***@192.0.2.1/health and http://198.51.100.1/ok"
