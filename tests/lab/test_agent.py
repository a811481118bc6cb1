"""netpath-agent in the lab: real probes, real links, real traffic from the LAN client.

The agent runs inside the lab's router namespace; failures are made in the ISP namespaces
(upstream blackhole, carrier loss, netem). Figures (failover times) are printed; run with
`-s` to see them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lab import netlab
from lab.agentlab import AgentError, agent_config, agents, compile_bundle, lab2, uplink  # noqa: F401 (fixtures)

pytestmark = pytest.mark.lab




def changes(agent, name=None) -> list:
    return [(h["interface"], h["from"], h["to"]) for h in agent.history() if name in (None, h["interface"])]


def change_time(agent, name, to) -> float:
    return next(h["time"] for h in agent.history() if h["interface"] == name and h["to"] == to)


def fetch_until(lab, wanted, timeout: float, per_try: float = 0.3) -> float:
    """Fresh connections until one leaves by `wanted`; the time.time() that one started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = time.time()
        if uplink(lab, per_try) == wanted:
            return started
    raise AssertionError(f"no connection left by {wanted} within {timeout} s")


# --- failover and recovery --------------------------------------------------------------------


def test_upstream_blackhole_fails_over_and_recovers(lab2, agents, tmp_path):
    agent = agents(compile_bundle(tmp_path, agent_config()))
    assert uplink(lab2) == "wan1"
    bound = 1 + 3 * 1 + 2 * 1  # interval + down x timeout + (down - 1) x failure_interval
    time.sleep(1.5)  # a few good rounds: the failure falls at a random point of the interval
    failed_at = time.time()
    lab2.isp_blackhole(1)
    moved_at = fetch_until(lab2, "wan2", timeout=bound + 5)
    offline_at = change_time(agent, "wan1", "offline")
    print(f"\nblackhole failover (bound {bound} s + 0.5): kernel state changed after {offline_at - failed_at:.2f} s, "
          f"first connection via wan2 started {moved_at - failed_at:.2f} s after the failure")
    assert changes(agent, "wan1") == [("wan1", "online", "disconnecting"), ("wan1", "disconnecting", "offline")]
    assert offline_at - failed_at <= bound + 0.5 + 0.5  # the bound, plus slack for a loaded test host
    assert agent.state("wan2") == "online"

    lab2.isp_blackhole(1, on=False)
    repaired_at = time.time()
    agent.wait_state("wan1", "online", timeout=10)
    back_at = fetch_until(lab2, "wan1", timeout=5)
    print(f"recovery after 2 good rounds: online {change_time(agent, 'wan1', 'online') - repaired_at:.2f} s, "
          f"traffic back {back_at - repaired_at:.2f} s after the repair")
    assert changes(agent, "wan1")[2:] == [("wan1", "offline", "connecting"), ("wan1", "connecting", "online")]


def test_fast_settings_fail_over_in_under_a_second(lab2, agents, tmp_path):
    track = {"interval": 0.2, "timeout": 0.2, "failure_interval": 0.2, "recovery_interval": 0.2, "down": 2}
    agent = agents(compile_bundle(tmp_path, agent_config(track=track)))
    time.sleep(0.5)
    failed_at = time.time()
    lab2.isp_blackhole(1)
    agent.wait_state("wan1", "offline", timeout=5)
    took = change_time(agent, "wan1", "offline") - failed_at
    moved_at = fetch_until(lab2, "wan2", timeout=5)
    print(f"\nfast failover (0.2 s, down 2; bound 0.8 s): state changed after {took:.3f} s, "
          f"first connection via wan2 {moved_at - failed_at:.2f} s")
    assert took < 1.0


def test_carrier_loss_fails_over_at_once(lab2, agents, tmp_path):
    # Slow probes: only the link event can explain a quick failover.
    agent = agents(compile_bundle(tmp_path, agent_config(track={"interval": 30, "timeout": 2, "down": 5})))
    lost_at = time.time()
    lab2.carrier(1, False)
    agent.wait_state("wan1", "offline", timeout=5)
    took = change_time(agent, "wan1", "offline") - lost_at
    print(f"\ncarrier loss: offline after {took:.3f} s")
    assert took < 1.0
    assert agent.interface("wan1")["link"] == "down"
    assert agent.interface("wan1")["reason"] == "link down"
    assert uplink(lab2) == "wan2"
    lab2.carrier(1, True)
    agent.wait_state("wan1", "online", timeout=5)  # initial_state online: back with the link
    assert uplink(lab2) == "wan1"


@pytest.mark.parametrize("impairment", [{"delay_ms": 300}, {"loss_pct": 60}])
def test_quality_thresholds_take_a_wan_out_and_back(lab2, agents, tmp_path, impairment):
    track = {"check_quality": True, "count": 10, "timeout": 2, "failure_latency": 200, "recovery_latency": 100,
             "failure_loss": 30, "recovery_loss": 10, "interval": 0.5, "failure_interval": 0.5,
             "recovery_interval": 0.5, "down": 2, "up": 2}
    agent = agents(compile_bundle(tmp_path, agent_config(track=track)))
    agent.wait_state("wan1", "online", timeout=5)
    lab2.netem(1, **impairment)
    agent.wait_state("wan1", "offline", timeout=20)
    figures = agent.interface("wan1")
    print(f"\nquality {impairment}: offline, window latency {figures['latency']['avg']} ms, "
          f"loss {figures['loss_pct']} %")
    assert uplink(lab2) == "wan2"
    lab2.netem(1)
    agent.wait_state("wan1", "online", timeout=20)
    assert uplink(lab2) == "wan1"


def test_all_down_uses_last_resort_and_resumes(lab2, agents, tmp_path):
    agent = agents(compile_bundle(tmp_path, agent_config(track={"down": 2})))
    lab2.isp_blackhole(1)
    lab2.isp_blackhole(2)
    agent.wait_state("wan1", "offline", timeout=10)
    agent.wait_state("wan2", "offline", timeout=10)
    policy = agent.request("policies")["policies"][0]
    assert policy["state"] == "00" and policy["last_resort_active"]["ipv4"] is True
    lab2.run("client", ["ping", "-c", "1", "-W", "1", netlab.HTTP4], check=False)
    unreachable = lab2.run("client", ["ping", "-c", "1", "-W", "1", netlab.HTTP4], check=False).stdout
    assert "Unreachable" in unreachable, unreachable  # last_resort unreachable: an ICMP error at once
    lab2.isp_blackhole(2, on=False)
    agent.wait_state("wan2", "online", timeout=10)
    assert uplink(lab2) == "wan2"


# --- probe methods ----------------------------------------------------------------------------


def _arp_drop(lab, k: int, on: bool) -> None:
    remove = "table arp np_arp_drop {}\ndelete table arp np_arp_drop\n"
    drop = ("table arp np_arp_drop { chain input { type filter hook input priority 0; policy drop; }; }\n")
    lab.nft(lab.isp(k), remove + (drop if on else ""))


@pytest.mark.parametrize("method", ["ping", "httping", "dns", "arping"])
def test_each_method_tracks_its_own_wan_only(lab2, agents, tmp_path, method):
    """Both WANs probe the same server; with wan1's path cut, only wan1 may fail. A probe that
    leaked out of wan2 would keep wan1 online."""
    agent = agents(compile_bundle(tmp_path, agent_config(method=method, track={"down": 2})))
    time.sleep(2.5)
    for name in ("wan1", "wan2"):
        row = agent.interface(name)
        assert row["state"] == "online" and all(t["ok"] for t in row["targets"]), row
    if method == "arping":
        _arp_drop(lab2, 1, True)
    else:
        lab2.isp_blackhole(1)
    try:
        agent.wait_state("wan1", "offline", timeout=15)
        time.sleep(1)
        assert agent.state("wan2") == "online"
        assert not any(t["ok"] for t in agent.interface("wan1")["targets"])
    finally:
        if method == "arping":
            _arp_drop(lab2, 1, False)
    print(f"\n{method}: wan2 latency {agent.interface('wan2')['latency']['avg']} ms")


# --- robustness -------------------------------------------------------------------------------


def test_flapping_link_leaves_no_stuck_state_and_no_leaks(lab2, agents, tmp_path):
    track = {"interval": 0.3, "timeout": 0.3, "failure_interval": 0.3, "recovery_interval": 0.3, "up": 2, "down": 2}
    agent = agents(compile_bundle(tmp_path, agent_config(track=track)))
    time.sleep(2)
    for cmd in ("interfaces", "policies", "metrics", "history"):
        agent.request(cmd)  # warm up: lazily created readers are part of the baseline
    fds, threads = agent.fd_count(), agent.thread_count()
    rng = random.Random(4)
    ends = time.monotonic() + 30
    flips = 0
    while time.monotonic() < ends:
        lab2.carrier(1, False)
        if rng.random() < 0.5:
            lab2.isp_blackhole(2, on=rng.random() < 0.5)
        time.sleep(rng.uniform(0.05, 1.0))
        lab2.carrier(1, True)
        time.sleep(rng.uniform(0.05, 1.0))
        flips += 1
    lab2.isp_blackhole(2, on=False)
    agent.wait_state("wan1", "online", timeout=10)
    agent.wait_state("wan2", "online", timeout=10)
    for cmd in ("interfaces", "policies", "metrics", "history"):
        agent.request(cmd)
    time.sleep(1)
    print(f"\nflapping: {flips} carrier flips, {len(agent.history())} state changes recorded (bounded); "
          f"fds {fds} -> {agent.fd_count()}, threads {threads} -> {agent.thread_count()}")
    assert agent.request("policies")["policies"][0]["state"] == "11"
    assert uplink(lab2) == "wan1"
    assert agent.fd_count() <= fds  # worker threads may have grown up to the pool's size: not a leak


def _policy_chain(lab) -> str:
    return lab.run("router", ["nft", "list", "chain", "inet", "netpath", "policy_p"]).stdout


def test_kill_9_is_fail_static_and_a_restart_does_not_flap(lab2, agents, tmp_path):
    bundle = compile_bundle(tmp_path, agent_config(mode="balanced", track={"down": 2}))
    agent = agents(bundle)
    lab2.isp_blackhole(1)
    agent.wait_state("wan1", "offline", timeout=10)
    chain = _policy_chain(lab2)
    agent.stop(signal.SIGKILL)
    assert uplink(lab2) == "wan2"  # the last state stays in the kernel
    assert _policy_chain(lab2) == chain

    restarted = agents(bundle)
    time.sleep(3)
    assert restarted.history() == []  # wan1 started offline, wan2 online: nothing to change
    assert restarted.state("wan1") == "offline" and restarted.state("wan2") == "online"
    assert _policy_chain(lab2) == chain
    lab2.isp_blackhole(1, on=False)
    restarted.wait_state("wan1", "online", timeout=10)
    assert changes(restarted, "wan1") == [("wan1", "offline", "connecting"), ("wan1", "connecting", "online")]


def test_sigterm_removes_netpath_and_keep_leaves_it(lab2, agents, tmp_path):
    bundle = compile_bundle(tmp_path, agent_config())
    agent = agents(bundle)
    assert agent.stop() == 0
    assert lab2.run("router", ["nft", "list", "table", "inet", "netpath"], check=False).returncode != 0
    assert "proto 93" not in lab2.run("router", ["ip", "rule", "show"]).stdout
    assert lab2.run("router", ["ip", "route", "show", "table", "all", "proto", "93"]).stdout == ""

    kept = agents(bundle, extra=("--keep",))
    assert kept.stop() == 0
    assert lab2.run("router", ["nft", "list", "table", "inet", "netpath"], check=False).returncode == 0
    assert uplink(lab2) == "wan1"


# --- reload, overrides, events ----------------------------------------------------------------

STREAM_PORT = 9000
STREAM_SERVER = textwrap.dedent(f"""
    import socket, sys, threading
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("{netlab.HTTP4}", {STREAM_PORT}))
    listener.listen()
    print("READY", flush=True)
    def echo(conn, peer):
        conn.sendall((peer[0] + "\\n").encode())
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.close()
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=echo, args=(conn, peer), daemon=True).start()
""")


class Stream:
    """A TCP stream from the LAN client through the router, echoed by the internet server:
    every byte sent must come back, in order, on the same connection."""

    def __init__(self, lab, seconds: float):
        script = textwrap.dedent(f"""
            import socket, time, sys
            s = socket.create_connection(("{netlab.HTTP4}", {STREAM_PORT}), timeout=5)
            f = s.makefile("rb")
            print("PEER", f.readline().decode().strip(), flush=True)
            sent = received = 0
            end = time.monotonic() + {seconds}
            chunk = bytes(range(256)) * 16
            while time.monotonic() < end:
                s.sendall(chunk); sent += len(chunk)
                got = f.read(len(chunk))
                assert got == chunk, "corrupted echo"
                received += len(got)
                time.sleep(0.01)
            print("DONE", sent, received, flush=True)
        """)
        self.process = lab.popen("client", [sys.executable, "-c", script],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> tuple:
        out, err = self.process.communicate(timeout=60)
        lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        return lines.get("PEER"), lines.get("DONE"), err


def test_reload_changes_weights_without_disturbing_a_stream(lab2, agents, tmp_path):
    server = lab2.popen("net", [sys.executable, "-u", "-c", STREAM_SERVER], stdout=subprocess.PIPE)
    assert server.stdout.readline().strip() == b"READY"
    try:
        agent = agents(compile_bundle(tmp_path, agent_config(mode="balanced", metrics={1: 1, 2: 1},
                                                             weights={1: 1, 2: 1}), "before"))
        before = [uplink(lab2) for _ in range(20)]
        stream = Stream(lab2, seconds=4)
        time.sleep(1)
        compile_bundle(tmp_path, agent_config(mode="balanced", metrics={1: 1, 2: 1}, weights={1: 3, 2: 1}),
                       "before")  # recompiled in place while the agent runs
        reply = agent.request("reload")
        assert reply["changed"] is True
        peer, done, err = stream.result()
        assert done is not None, err
        sent, received = map(int, done.split())
        assert sent == received > 0
        assert lab2.uplink_of(peer) in ("wan1", "wan2")
        after = [uplink(lab2) for _ in range(40)]
        print(f"\nreload weights 1:1 -> 3:1: before {before.count('wan1')}/{len(before)} via wan1, "
              f"after {after.count('wan1')}/{len(after)}; stream of {sent} bytes intact")
        assert 8 <= before.count("wan1") <= 12
        assert 26 <= after.count("wan1") <= 34
        assert agent.history() == []
    finally:
        server.kill()
        server.wait(5)


def test_reload_removes_and_adds_interfaces_and_keeps_overrides(lab2, agents, tmp_path):
    agent = agents(compile_bundle(tmp_path, agent_config(wans=(1, 2)), "b"))
    agent.request("disable", interface="wan2")
    assert agent.state("wan2") == "disabled"
    rules = lab2.run("router", ["ip", "rule", "show"]).stdout
    assert "lookup 1002" in rules
    compile_bundle(tmp_path, agent_config(wans=(1,)), "b")
    agent.request("reload")
    assert [i["name"] for i in agent.request("interfaces")["interfaces"]] == ["wan1"]
    assert "lookup 1002" not in lab2.run("router", ["ip", "rule", "show"]).stdout
    assert "1002" not in lab2.run("router", ["ip", "route", "show", "table", "all", "proto", "93"]).stdout
    compile_bundle(tmp_path, agent_config(wans=(1, 2)), "b")
    digest = agent.request("status")["bundle"]["digest"]
    agent.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and agent.request("status")["bundle"]["digest"] == digest:
        time.sleep(0.05)
    assert [i["name"] for i in agent.request("interfaces")["interfaces"]] == ["wan1", "wan2"]
    assert agent.state("wan2") == "disabled"  # the override outlives the reloads
    agent.request("enable", interface="wan2")
    agent.wait_state("wan2", "online", timeout=5)
    assert "lookup 1002" in lab2.run("router", ["ip", "rule", "show"]).stdout


def test_a_recompile_before_reload_leaves_the_running_bundle_in_charge(lab2, agents, tmp_path):
    """`netpath compile -o DIR` swaps the directory under the running agent (here: a bundle
    with wan1 only, so the two-WAN state files are gone). Until `reload`, a failover still
    loads the state of the bundle the agent runs."""
    agent = agents(compile_bundle(tmp_path, agent_config(track={"down": 2}), "b"))
    digest = agent.request("status")["bundle"]["digest"]
    compile_bundle(tmp_path, agent_config(wans=(1,)), "b")
    lab2.isp_blackhole(1)
    agent.wait_state("wan1", "offline", timeout=10)
    fetch_until(lab2, "wan2", timeout=5)
    assert agent.request("policies")["policies"][0]["state"] == "01"
    assert agent.request("status")["bundle"]["digest"] == digest
    assert "Traceback" not in agent.log()


def test_disable_moves_new_flows_at_once(lab2, agents, tmp_path):
    agent = agents(compile_bundle(tmp_path, agent_config()))
    reply = agent.request("disable", interface="wan1")
    assert reply["admin"] == "disabled" and reply["state"] == "disabled"
    assert uplink(lab2) == "wan2"
    assert not agent.request("disable", interface="nope", check=False)["ok"]
    agent.request("enable", interface="wan1")
    agent.wait_state("wan1", "online", timeout=5)
    assert uplink(lab2) == "wan1"


def test_ifevent_ifdown_and_ifup(lab2, agents, tmp_path):
    agent = agents(compile_bundle(tmp_path, agent_config(track={"interval": 30})))
    agent.request("ifevent", action="ifdown", interface="wan1")
    assert agent.state("wan1") == "offline"
    assert uplink(lab2) == "wan2"
    agent.request("ifevent", action="ifup", interface="wan1")
    assert agent.state("wan1") == "online"
    agent.request("ifevent", action="ifupdate", interface="wan1")
    assert not agent.request("ifevent", action="reboot", interface="wan1", check=False)["ok"]


def test_ifevent_finds_the_interface_by_any_name_netifd_uses(lab2, agents, tmp_path):
    """Hotplug passes netifd's name: the section (`wan1`), its `_4`/`_6` alias (one family), the logical
    interface the config's `ifname` named (mapped on the router; set in the manifest here),
    and the device. Events for interfaces NetPath does not manage change nothing."""
    bundle = compile_bundle(tmp_path, agent_config(track={"interval": 30}))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["model"]["interfaces"][0]["logical"] = "wanone"  # wan1: ifname "wanone" was mapped to wan1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    agent = agents(bundle)
    assert agent.request("ifevent", action="ifdown", interface="wan1_6")["interfaces"] == []  # IPv6 only
    assert agent.state("wan1") == "online"
    assert agent.request("ifevent", action="ifdown", interface="wan1_4")["interfaces"] == ["wan1"]
    assert agent.state("wan1") == "offline"
    assert agent.request("ifevent", action="ifup", interface="wanone")["interfaces"] == ["wan1"]
    assert agent.state("wan1") == "online"
    assert agent.request("ifevent", action="ifdown", interface="mobile", device="wan2")["interfaces"] == ["wan2"]
    assert agent.state("wan2") == "offline"
    assert uplink(lab2) == "wan1"
    assert agent.request("ifevent", action="ifup", interface="wan2_4", device=None)["interfaces"] == ["wan2"]
    assert agent.state("wan2") == "online"
    assert agent.request("ifevent", action="ifdown", interface="lan", device="br-lan")["interfaces"] == []
    assert [agent.state(n) for n in ("wan1", "wan2")] == ["online", "online"]
    assert not agent.request("ifevent", action="ifdown", interface="wan1 wan2", check=False)["ok"]


def test_gateway_change_updates_the_wan_table(lab2, agents, tmp_path):
    """A DHCP renew that moves the WAN to a new address and gateway: the WAN's table and its
    `from` rule follow without a restart."""
    config = agent_config().replace(f'gateway = "{netlab.isp_gateway4(1)}"\n', "")  # learn wan1's gateway
    agent = agents(compile_bundle(tmp_path, config))
    assert agent.interface("wan1")["gateway"] == netlab.isp_gateway4(1)
    # The ISP hands out another address and gateway in the same customer prefix (BCP 38 filter).
    lab2.run("isp1", ["ip", "addr", "add", "100.64.1.254/24", "dev", "up0"])
    lab2.run("isp1", ["ip", "route", "replace", netlab.LAN4_NET, "via", "100.64.1.20", "dev", "up0"])
    try:
        lab2.run("router", ["ip", "addr", "del", "100.64.1.2/24", "dev", "wan1"])
        lab2.run("router", ["ip", "addr", "add", "100.64.1.20/24", "dev", "wan1"])
        lab2.run("router", ["ip", "route", "replace", "default", "via", "100.64.1.254", "dev", "wan1", "metric", "10"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "100.64.1.254" not in \
                lab2.run("router", ["ip", "route", "show", "table", "1001"]).stdout:
            time.sleep(0.1)
        assert "via 100.64.1.254" in lab2.run("router", ["ip", "route", "show", "table", "1001"]).stdout
        rules = lab2.run("router", ["ip", "rule", "show"]).stdout
        assert "from 100.64.1.20 lookup 1001" in rules and "from 100.64.1.2 lookup" not in rules
        assert agent.interface("wan1")["address"] == "100.64.1.20"
        time.sleep(2)
        assert agent.state("wan1") == "online"  # probes now leave from the new address
        assert changes(agent) == []
    finally:
        lab2.run("router", ["ip", "addr", "del", "100.64.1.20/24", "dev", "wan1"], check=False)
        lab2.run("router", ["ip", "addr", "add", "100.64.1.2/24", "dev", "wan1"], check=False)
        lab2.run("router", ["ip", "route", "replace", "default", "via", "100.64.1.1", "dev", "wan1", "metric", "10"],
                 check=False)
        lab2.run("isp1", ["ip", "addr", "del", "100.64.1.254/24", "dev", "up0"], check=False)
        lab2.run("isp1", ["ip", "route", "replace", netlab.LAN4_NET, "via", "100.64.1.2", "dev", "up0"], check=False)


def test_hooks_and_conntrack_flush_follow_the_swap(lab2, agents, tmp_path):
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    record = tmp_path / "events"
    script = hooks / "10-record"
    script.write_text(f'#!/bin/sh\necho "$ACTION $INTERFACE $DEVICE" >> {record}\n')
    script.chmod(0o755)
    agent = agents(compile_bundle(tmp_path, agent_config(flush_conntrack=["disconnected"], track={"down": 2})),
                   hooks=hooks)
    for _ in range(5):
        assert uplink(lab2) == "wan1"
    assert agent.interface("wan1")["connections"] >= 5
    lab2.isp_blackhole(1)
    agent.wait_state("wan1", "offline", timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "disconnected" not in (record.read_text() if record.exists() else ""):
        time.sleep(0.1)
    assert record.read_text().splitlines() == ["disconnecting wan1 wan1", "disconnected wan1 wan1"]
    assert agent.interface("wan1")["connections"] == 0


def test_the_agent_refuses_to_start_beside_mwan3(lab2, agents, tmp_path):
    """mwan3's ip rules (pref 2000+id fwmark lookup, 3000+id unreachable, no protocol) in the
    router: the agent exits 1 with one line naming mwan3 and what to do, and installs nothing."""
    bundle = compile_bundle(tmp_path, agent_config())
    mwan3_rules = [["-4", "rule", "add", "pref", "2001", "fwmark", "0x100/0x3f00", "lookup", "1"],
                   ["-4", "rule", "add", "pref", "3001", "fwmark", "0x100/0x3f00", "unreachable"],
                   ["-6", "rule", "add", "pref", "2002", "fwmark", "0x200/0x3f00", "lookup", "2"]]
    for rule in mwan3_rules:
        lab2.run("router", ["ip", *rule])
    try:
        with pytest.raises(AgentError) as refused:
            agents(bundle)
        message = str(refused.value)
        assert "netpath-agent exited 1" in message
        assert "mwan3 is running (its ip rules: 2001: fwmark 0x100/0x3f00 lookup 1; " \
               "3001: fwmark 0x100/0x3f00 unreachable; 2002: fwmark 0x200/0x3f00 lookup 2)" in message
        assert "/etc/init.d/mwan3 stop; /etc/init.d/mwan3 disable" in message
        assert "Traceback" not in message
        tables = lab2.run("router", ["nft", "list", "tables"]).stdout
        assert "netpath" not in tables
        rules = lab2.run("router", ["ip", "-4", "rule", "show"]).stdout
        assert "proto 93" not in rules and "lookup 1001" not in rules
    finally:
        for rule in mwan3_rules:
            lab2.run("router", ["ip", *[w if w != "add" else "del" for w in rule]], check=False)
    # Without mwan3's rules it starts; NetPath's own rules, in the same ranges, do not count:
    # an agent stopped with --keep leaves them, and the next one starts beside them.
    agent = agents(bundle, extra=("--keep",))
    assert agent.stop() == 0
    assert "proto 93" in lab2.run("router", ["ip", "-4", "rule", "show"]).stdout
    assert agents(bundle).request("status")["ok"]


def test_tracking_events_reach_hotplug_call_netpath_like_mwan3s(lab2, agents, tmp_path):
    """A stand-in `hotplug-call` first on the agent's PATH records how it is called: OpenWrt's
    runs /etc/hotplug.d/netpath/* with this environment. ifup/ifdown stay hooks.d's only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "hotplug"
    stand_in = bin_dir / "hotplug-call"
    stand_in.write_text(f'#!/bin/sh\necho "$* ACTION=$ACTION INTERFACE=$INTERFACE DEVICE=$DEVICE" >> {record}\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    agent = agents(compile_bundle(tmp_path, agent_config(track={"down": 2, "up": 2})), env=env)
    lab2.isp_blackhole(1)
    agent.wait_state("wan1", "offline", timeout=10)
    lab2.isp_blackhole(1, on=False)
    agent.wait_state("wan1", "online", timeout=10)
    lab2.carrier(1, False)  # ifdown-like: a link event, not a tracking one
    agent.wait_state("wan1", "offline", timeout=10)
    lab2.carrier(1, True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (record.read_text() if record.exists() else "").count("\n") < 4:
        time.sleep(0.1)
    lines = record.read_text().splitlines()
    assert lines[:4] == [f"netpath ACTION={action} INTERFACE=wan1 DEVICE=wan1"
                         for action in ("disconnecting", "disconnected", "connecting", "connected")]
    assert all(line.startswith("netpath ACTION=") for line in lines)
    assert not any("ACTION=ifdown" in line or "ACTION=ifup" in line for line in lines)
