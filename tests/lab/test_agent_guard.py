"""The agent against a careless admin and a hostile LAN: one agent per network namespace,
netifd's family-specific events, clients that try to starve the probes, reload storms and
bad reloads. Real agent, real kernel, real connections from the LAN client.

Also a helper program the tests start inside the lab's namespaces:

    python test_agent_guard.py flood ADDRESS PORT N SECONDS   (client) N idle TCP connections
"""

from __future__ import annotations

import json
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import pytest  # noqa: E402

from lab import netlab  # noqa: E402
from netpath.agent import metrics  # noqa: E402
from lab.agentlab import (AGENT, NETPATH, RunningAgent, agent_config, agents, compile_bundle,  # noqa: E402,F401
                          lab2, reset_lab, uplink)
from lab.test_ipc_lab import echo_request_times, start_ready, stop, wait_for  # noqa: E402

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve()
BUSY = "HTTP/1.0 503 Service Unavailable"
TRACK = {"interval": 0.5, "timeout": 0.5, "failure_interval": 0.5, "recovery_interval": 0.5, "down": 3, "up": 2}


def kernel(lab) -> str:
    """Everything NetPath writes in the router: its table (without counters), rules, routes."""
    return "\n".join(lab.run("router", argv, check=False).stdout for argv in (
        ["nft", "-s", "list", "table", "inet", "netpath"], ["ip", "-4", "rule"], ["ip", "-6", "rule"],
        ["ip", "-4", "route", "show", "table", "all"], ["ip", "-6", "route", "show", "table", "all"]))


def changes(agent) -> list:
    return [(h["interface"], h["from"], h["to"]) for h in agent.history()]


def sniff(lab, k: int, out: Path) -> subprocess.Popen:
    """Kernel receive times of the echo requests (one per probe round) arriving at ISP k."""
    return start_ready(lab, f"isp{k}", ["sniff", "up0", netlab.router_wan4(k)], out)


def lock_file(lab) -> Path:
    """The router namespace's lock (docs/agent.md): named after its network namespace's inode."""
    inode = lab.run("router", ["stat", "-L", "-c", "%i", "/proc/self/ns/net"]).stdout.strip()
    return Path(f"/var/run/netpath-agent.net{inode}.lock")


def run_agent(lab, argv: list, timeout: float = 20) -> subprocess.CompletedProcess:
    return lab.run("router", [AGENT, *map(str, argv)], check=False, timeout=timeout)


# --- 3. one agent owns the kernel of its network namespace ----------------------------------------


def test_a_second_agent_or_apply_leaves_the_running_one_alone(lab2, agents, tmp_path):
    bundle = compile_bundle(tmp_path, agent_config(track=TRACK))
    other = compile_bundle(tmp_path, agent_config(track=TRACK, weights={1: 5, 2: 1}, mode="balanced"), "other")
    first = agents(bundle)
    wait_for(lambda: first.state("wan1") == "online" and first.state("wan2") == "online", 10, "both online")
    before = kernel(lab2)
    assert "table inet netpath" in before
    for socket_path in (tmp_path / "second.sock", first.socket):  # another socket, the same socket
        second = run_agent(lab2, ["--bundle", other, "--socket", socket_path, "--hooks", tmp_path / "none"])
        assert second.returncode == 2, (second.returncode, second.stderr)
        assert "another NetPath agent" in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert kernel(lab2) == before
    assert not (tmp_path / "second.sock").exists()
    assert first.request("status")["ok"] and uplink(lab2) == "wan1"

    for argv in (["apply", other], ["apply", "--remove"], ["apply", "--remove", other]):
        refused = lab2.run("router", [NETPATH, *map(str, argv)], check=False)
        assert refused.returncode == 2, (argv, refused.returncode, refused.stdout, refused.stderr)
        assert f"pid {first.pid}" in refused.stderr and "--force" in refused.stderr, refused.stderr
        assert kernel(lab2) == before
    status = first.request("status")
    assert status["ok"] and changes(first) == []
    assert [first.state(n) for n in ("wan1", "wan2")] == ["online", "online"]

    forced = lab2.run("router", [NETPATH, "apply", "--remove", "--force"], check=False)
    assert forced.returncode == 0 and "removed NetPath's table inet netpath" in forced.stdout, forced.stderr
    # --force did remove it; the running agent notices and puts its own state back.
    wait_for(lambda: kernel(lab2) == before, 5, "the agent's state back in the kernel")
    assert first.request("status")["ok"] and uplink(lab2) == "wan1"
    assert first.stop() == 0


def test_a_stale_socket_and_lock_do_not_block_a_start(lab2, agents, tmp_path):
    bundle = compile_bundle(tmp_path, agent_config(track=TRACK))
    first = agents(bundle)
    first.stop(signal.SIGKILL)
    assert Path(first.socket).exists() and lock_file(lab2).exists()  # left behind by the crash
    restarted = RunningAgent(lab2, bundle, tmp_path, name="agent0")  # the same socket path as `first`
    try:
        restarted.start()
        assert restarted.request("status")["ok"]
        assert uplink(lab2) == "wan1"
        assert f"pid={restarted.pid} role=agent" in lock_file(lab2).read_text()
    finally:
        restarted.stop()
    assert not lock_file(lab2).exists() and not Path(restarted.socket).exists()


def test_agents_in_other_network_namespaces_do_not_block_each_other(lab2, agents, tmp_path):
    """Two labs (two router namespaces) at once, as parallel test runs make them: each has
    its own agent, and each agent holds the kernel of its own namespace only."""
    bundle = compile_bundle(tmp_path, agent_config(track=TRACK))
    here = agents(bundle)
    with netlab.Lab(wans=2, ipv6=False) as other_lab:
        other_lab.start_servers()
        there = RunningAgent(other_lab, bundle, tmp_path, name="other")
        try:
            there.start()
            assert there.request("status")["ok"] and here.request("status")["ok"]
            assert lock_file(other_lab) != lock_file(lab2)
            assert lock_file(other_lab).exists() and lock_file(lab2).exists()
            assert uplink(other_lab) == "wan1" and uplink(lab2) == "wan1"
            assert there.stop() == 0
            assert "table inet netpath" not in kernel(other_lab)
        finally:
            there.stop(signal.SIGKILL)
            reset_lab(other_lab)
    assert "table inet netpath" in kernel(lab2) and here.request("status")["ok"]


# --- 4. netifd's <name>_6 and <name>_4 events concern one family ---------------------------------


def dual_stack_config() -> str:
    """wan1 and wan2, each with an IPv4 and an IPv6 NetPath interface on the same device."""
    lines = ['[global]', 'nft_table = "netpath"']
    for k in (1, 2):
        for family, suffix, gateway, target in (("ipv4", "", netlab.isp_gateway4(k), netlab.HTTP4),
                                                ("ipv6", "v6", netlab.isp_gateway6(k), netlab.HTTP6)):
            lines += [f"[interfaces.wan{k}{suffix}]", f'ifname = "wan{k}"', f'family = "{family}"',
                      f'gateway = "{gateway}"', f"[interfaces.wan{k}{suffix}.track]", 'method = "ping"',
                      f'targets = ["{target}"]', "interval = 30", "timeout = 1"]
            lines += [f"[members.m{k}{suffix}]", f'interface = "wan{k}{suffix}"', f"metric = {k}"]
    lines += ["[policies.p]", 'members = ["m1", "m2", "m1v6", "m2v6"]', 'mode = "failover"',
              "[[rules]]", 'name = "v4"', 'dest_ip = ["0.0.0.0/0"]', 'policy = "p"',
              "[[rules]]", 'name = "v6"', 'dest_ip = ["::/0"]', 'policy = "p"']
    return "\n".join(lines) + "\n"


def test_ifdown_of_the_ipv6_side_leaves_the_ipv4_uplink_alone(lab2, agents, tmp_path):
    bundle = compile_bundle(tmp_path, dual_stack_config())
    manifest = json.loads((bundle / "manifest.json").read_text())
    for iface in manifest["model"]["interfaces"]:
        if iface["device"] == "wan1":
            iface["logical"] = "wan"  # OpenWrt: ifname 'wan', netifd's logical interface on device wan1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    agent = agents(bundle)

    def states() -> dict:
        return {i["name"]: i["state"] for i in agent.request("interfaces")["interfaces"]}

    def v6_uplink():
        return lab2.uplink_of(lab2.fetch(netlab.HTTP6_URL, timeout=1.0))

    all_online = {"wan1": "online", "wan1v6": "online", "wan2": "online", "wan2v6": "online"}
    assert states() == all_online and uplink(lab2) == "wan1" and v6_uplink() == "wan1"

    # DHCPv6 lease lost while PPPoE stays up: hotplug runs `netpath ifevent ifdown wan_6`.
    down6 = lab2.run("router", [NETPATH, "ifevent", "ifdown", "wan_6", "--socket", agent.socket], check=False)
    assert (down6.returncode, down6.stderr) == (0, "")
    assert states() == {**all_online, "wan1v6": "offline"}
    assert uplink(lab2) == "wan1" and v6_uplink() == "wan2"
    assert agent.request("ifevent", action="ifup", interface="wan_6", device="wan1")["interfaces"] == ["wan1v6"]
    assert states() == all_online and v6_uplink() == "wan1"

    assert agent.request("ifevent", action="ifdown", interface="wan_4")["interfaces"] == ["wan1"]
    assert states() == {**all_online, "wan1": "offline"}
    assert uplink(lab2) == "wan2" and v6_uplink() == "wan1"
    assert agent.request("ifevent", action="ifup", interface="wan_4", device="wan1")["interfaces"] == ["wan1"]
    assert states() == all_online and uplink(lab2) == "wan1"

    assert sorted(agent.request("ifevent", action="ifdown", interface="wan")["interfaces"]) == ["wan1", "wan1v6"]
    assert states() == {**all_online, "wan1": "offline", "wan1v6": "offline"}
    assert uplink(lab2) == "wan2" and v6_uplink() == "wan2"
    assert sorted(agent.request("ifevent", action="ifup", interface="wan", device="wan1")["interfaces"]) == \
        ["wan1", "wan1v6"]
    assert states() == all_online and uplink(lab2) == "wan1" and v6_uplink() == "wan1"


# --- 5. nothing a client does starves the probes -------------------------------------------------


def test_idle_connections_to_the_metrics_endpoint_leave_the_probes_alone(lab2, agents, tmp_path):
    """1,100 idle TCP connections from the LAN client against --metrics-listen, with the agent
    limited to 1,024 open files: every probe round still happens on time, both WANs stay
    online, the log stays short, and the endpoint answers again afterwards."""
    listen = f"{netlab.ROUTER_LAN4}:9101"
    agent = agents(compile_bundle(tmp_path, agent_config(track=TRACK)), extra=("--metrics-listen", listen))
    lab2.run("router", ["prlimit", f"--pid={agent.pid}", "--nofile=1024:1024"])
    scrape = ("import urllib.request, urllib.error, sys\n"
              "try:\n"
              f"    r = urllib.request.urlopen('http://{listen}/metrics', timeout=5); print(r.status)\n"
              "except urllib.error.HTTPError as e:\n"
              "    print(e.code)\n")
    assert lab2.run("client", [sys.executable, "-c", scrape]).stdout.split() == ["200"]
    fds = agent.fd_count()
    sniffers = [sniff(lab2, k, tmp_path / f"sniff{k}.out") for k in (1, 2)]
    try:
        time.sleep(2)
        log_lines = len(agent.log().splitlines())
        flood_start = time.time()
        flood = start_ready(lab2, "client", ["flood", netlab.ROUTER_LAN4, 9101, 1100, 12], tmp_path / "flood.out",
                            script=HERE)
        during = lab2.run("client", [sys.executable, "-c", scrape], check=False).stdout.split()
        open_files = []  # the agent's, sampled through the flood
        while flood.poll() is None and time.time() - flood_start < 60:
            open_files.append(agent.fd_count())
            time.sleep(0.2)
        flood.wait(10)
        flood_end = time.time()
        summary = json.loads((tmp_path / "flood.out").read_text().splitlines()[-1])
        time.sleep(1)
    finally:
        for sniffer in sniffers:
            stop(sniffer)
    print(f"\nflood: {summary}; a scrape during the flood got {during}; the agent's open files: "
          f"{fds} before, at most {max(open_files)} during")
    assert summary["connected"] >= 1100 and summary["answers"].get(BUSY, 0) >= 100, summary
    assert during in ([], ["200"], ["503"])  # [] : its SYN waited behind the flood in the backlog
    # The connection limit bounds what the flood costs: the 1,024 files never come near.
    assert max(open_files) <= fds + metrics.MAX_HTTP_CLIENTS + 8, open_files
    for k in (1, 2):
        rounds = [t for t in echo_request_times(tmp_path / f"sniff{k}.out") if flood_start <= t <= flood_end]
        gaps = [b - a for a, b in zip(rounds, rounds[1:])]
        print(f"wan{k}: {len(rounds)} probe rounds during the flood, largest gap {max(gaps):.2f} s")
        assert len(rounds) >= (flood_end - flood_start) / TRACK["interval"] * 0.8, (k, len(rounds))
        assert max(gaps) < 2 * TRACK["interval"], (k, gaps)
    assert changes(agent) == [] and [agent.state(n) for n in ("wan1", "wan2")] == ["online", "online"]
    new_lines = agent.log().splitlines()[log_lines:]
    print(f"log lines during the flood: {len(new_lines)}", *new_lines[:12], sep="\n")
    assert len(new_lines) <= 12, new_lines
    assert "Traceback" not in agent.log()
    assert lab2.run("client", [sys.executable, "-c", scrape]).stdout.split() == ["200"]
    wait_for(lambda: agent.fd_count() <= fds + 2, 10, "the agent's open files back to where they were")
    assert agent.request("status")["ok"] and uplink(lab2) == "wan1"


def _flood_main(address: str, port: int, count: int, seconds: float) -> int:
    """`count` TCP connections kept open, sending nothing, for `seconds`: one the server closes
    (or that fails) is replaced at once. A JSON summary line: connections made, closed by the
    server, and the first line of what the server said before closing."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 64)), hard))
    selector = selectors.DefaultSelector()
    stats = {"connected": 0, "closed": 0, "failed": 0, "answers": {}}

    def dial() -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((address, port))
        selector.register(s, selectors.EVENT_WRITE)

    def replace(s: socket.socket) -> None:
        selector.unregister(s)
        s.close()
        dial()

    for _ in range(count):
        dial()
    print("READY", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, events in selector.select(timeout=0.2):
            s = key.fileobj
            if events & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    stats["connected"] += 1
                    selector.modify(s, selectors.EVENT_READ)
                else:
                    stats["failed"] += 1
                    replace(s)
                continue
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            first = data.split(b"\r\n", 1)[0].decode("latin-1") or "closed"
            stats["answers"][first] = stats["answers"].get(first, 0) + 1
            stats["closed"] += 1
            replace(s)
    print(json.dumps(stats), flush=True)
    return 0


# --- 6. reloads: all or nothing, coalesced, no extra rounds -------------------------------------


def replace_bundle(target: Path, source: Path) -> None:
    shutil.rmtree(target)
    shutil.copytree(source, target)


BAD_TRACKING = [  # (field, value): each must be refused before anything reaches the kernel
    ("interval", 0), ("interval", "fast"), ("count", 0), ("down", -1), ("timeout", None),
    ("targets", ["203.0.113.10; reboot"]), ("targets", []), ("method", "nmap"), ("reliability", 5),
    ("dns_query", "a\nb"), ("http_url", "http://x/\r\nHost: y"),
]


def test_a_rejected_reload_changes_nothing(lab2, agents, tmp_path):
    running = compile_bundle(tmp_path, agent_config(track=TRACK))
    weighted = compile_bundle(tmp_path, agent_config(track={**TRACK, "interval": 0.7}, mode="balanced",
                                                     metrics={1: 1, 2: 1}, weights={1: 5, 2: 1}), "weighted")
    agent = agents(running)
    wait_for(lambda: agent.state("wan1") == "online" and agent.state("wan2") == "online", 10, "both online")
    before = kernel(lab2)
    digest = agent.request("status")["bundle"]["digest"]
    def settings() -> dict:
        return {i["name"]: (i["method"], [t["target"] for t in i["targets"]], i["up"], i["down"])
                for i in agent.request("interfaces")["interfaces"]}

    rows = settings()
    for field, value in BAD_TRACKING:
        bad = tmp_path / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(weighted, bad)
        manifest = json.loads((bad / "manifest.json").read_text())
        manifest["model"]["interfaces"][1]["track"][field] = value
        (bad / "manifest.json").write_text(json.dumps(manifest))
        replace_bundle(running, bad)
        reply = agent.request("reload", check=False)
        assert not reply["ok"] and "wan2" in reply["error"] and field in reply["error"], (field, value, reply)
        assert kernel(lab2) == before, (field, value)
        assert agent.request("status")["bundle"]["digest"] == digest
        assert settings() == rows
        assert uplink(lab2) == "wan1"
    assert [agent.state(n) for n in ("wan1", "wan2")] == ["online", "online"] and changes(agent) == []
    assert agent.process.poll() is None
    replace_bundle(running, weighted)
    assert agent.request("reload")["changed"] is True
    assert kernel(lab2) != before


def test_sighup_storm_is_one_more_reload_and_keeps_the_probe_rhythm(lab2, agents, tmp_path):
    track = {**TRACK, "interval": 1.0, "failure_interval": 1.0, "recovery_interval": 1.0}
    agent = agents(compile_bundle(tmp_path, agent_config(track=track)))
    sniffer = sniff(lab2, 2, tmp_path / "sniff.out")
    try:
        time.sleep(2.5)
        storm_start = time.time()
        for _ in range(20):  # at once: they all arrive while the first reload runs
            agent.send_signal(signal.SIGHUP)
        for _ in range(6):  # and a reload every 0.4 s over the socket, settings unchanged
            assert agent.request("reload")["changed"] is False
            time.sleep(0.4)
        time.sleep(3)
        storm_end = time.time()
    finally:
        stop(sniffer)
    reloads = [line for line in agent.log().splitlines() if "reloaded bundle" in line]
    times = [t for t in echo_request_times(tmp_path / "sniff.out") if storm_start - 1.5 <= t <= storm_end]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"\n{len(reloads)} reloads for 20 SIGHUPs and 6 socket reloads; probe gaps {[round(g, 2) for g in gaps]}")
    assert 2 <= len(reloads) <= 2 + 6, reloads  # the storm: one, plus one more at most; then the six
    assert min(gaps) > 0.8 * track["interval"], gaps
    assert changes(agent) == [] and uplink(lab2) == "wan1"


if __name__ == "__main__":
    if sys.argv[1:2] == ["flood"]:
        sys.exit(_flood_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
    sys.exit(f"usage: {sys.argv[0]} flood ADDRESS PORT N SECONDS")
