"""agent/daemon.py and agent/track.py without a lab: which interfaces a netifd event is about,
the state a tracker starts in or is reloaded to, and what a conntrack flush may take.

Models come from bundles of the real compiler; trackers are real Tracker objects that are
not started (no probe is sent)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from netpath.agent import bundle as bundle_mod
from netpath.agent import health as hl
from netpath.agent.apply import Link
from netpath.agent.daemon import Agent, concerned as concerned_by
from netpath.agent.track import Tracker, is_tracked

REPO = Path(__file__).resolve().parents[2]
NETPATH = str(Path(sys.executable).parent / "netpath")


def compile_example(tmp_path, example: str) -> bundle_mod.Bundle:
    out = tmp_path / Path(example).stem
    subprocess.run([NETPATH, "compile", str(REPO / "examples" / example), "-o", str(out), "--no-check"],
                   check=True, capture_output=True, timeout=120)
    return bundle_mod.read(out)


@pytest.fixture(scope="module")
def dual_stack(tmp_path_factory):
    return compile_example(tmp_path_factory.mktemp("b"), "dual_stack.toml")


def test_a_netifd_event_finds_interfaces_by_name_alias_logical_name_or_device(dual_stack):
    interfaces = list(dual_stack.model.interfaces)
    devices = {i.name: i.device for i in interfaces}
    assert devices == {"wan": "eth0", "wan6": "eth0", "wanb": "eth1", "wanb6": "eth1"}  # the example as read
    # wanb's `ifname` named the OpenWrt interface "wwan", mapped to eth1 when compiled on the router
    interfaces = [replace(i, logical="wwan") if i.name == "wanb" else i for i in interfaces]

    def concerned(interface, device=None):
        return concerned_by(interfaces, interface, device)

    assert concerned("wan") == ["wan"]
    # netifd's alias for the IPv6 part of "wan": the IPv6 interfaces on wan's device, not wan itself
    assert concerned("wan_6") == ["wan6"]
    assert concerned("wan_4") == ["wan"]
    assert concerned("wan6_4") == ["wan"]  # the IPv4 part of the logical interface on wan6's device
    assert concerned("wan6_6") == ["wan6"]
    assert concerned("wan_6", "eth0") == ["wan6"]  # hotplug's DEVICE does not widen it to IPv4
    assert concerned("wwan_6") == ["wanb6"]
    assert concerned("wwan") == ["wanb"]
    assert concerned("wwan_4") == ["wanb"]
    assert concerned("eth1") == ["wanb", "wanb6"]  # the configured device
    assert concerned("modem", "eth0") == ["wan", "wan6"]  # hotplug's DEVICE
    assert concerned("lan", "br-lan") == []
    assert concerned("lan") == []
    assert concerned("_6") == []


UNTRACKED = """
[interfaces.wan]
ifname = "eth0"
gateway = "192.0.2.1"
track = { method = "ping", targets = ["192.0.2.1"] }

[interfaces.wanb]
ifname = "eth1"
gateway = "198.51.100.1"
track = { method = "%s", targets = ["198.51.100.1"] }

[members]
wan_m = { interface = "wan", metric = 1 }
wanb_m = { interface = "wanb", metric = 2 }

[policies.failover]
members = ["wan_m", "wanb_m"]
mode = "failover"

[[rules]]
name = "everything"
dest_ip = ["0.0.0.0/0"]
policy = "failover"
"""


def compile_config(tmp_path, name: str, text: str) -> bundle_mod.Bundle:
    config = tmp_path / f"{name}.toml"
    config.write_text(text)
    subprocess.run([NETPATH, "compile", str(config), "-o", str(tmp_path / name), "--no-check"], check=True,
                   capture_output=True, timeout=120)
    return bundle_mod.read(tmp_path / name)


def test_an_untracked_interface_is_not_taken_over_as_offline(tmp_path):
    """A restarted agent reads the kernel: wanb (method none) carried no traffic there while
    wan was online. Taking that over as OFFLINE would keep wanb offline for good."""
    b = compile_config(tmp_path, "untracked", UNTRACKED % "none")
    agent = Agent(b.directory, hooks_dir=tmp_path / "no-hooks")
    agent.bundle = b
    wanb = b.model.interface("wanb")
    assert wanb.track.initial_state == "online" and not is_tracked(wanb)
    tracker = agent._new_tracker(b.model, wanb, Link("eth1", exists=True, up=True), alive=False, taken_over=True)
    assert tracker.health.status is hl.Status.ONLINE and tracker.usable
    down = agent._new_tracker(b.model, wanb, Link("eth1", exists=True, up=False), alive=False, taken_over=True)
    assert down.health.status is hl.Status.OFFLINE and not down.health.link_up
    wan = b.model.interface("wan")  # tracked: the kernel's state is taken over
    taken = agent._new_tracker(b.model, wan, Link("eth0", exists=True, up=True), alive=False, taken_over=True)
    assert taken.health.status is hl.Status.OFFLINE


def test_a_reload_that_stops_tracking_an_offline_interface_brings_it_back(tmp_path):
    tracked = compile_config(tmp_path, "tracked", UNTRACKED % "ping").model.interface("wanb")
    untracked = compile_config(tmp_path, "untracked", UNTRACKED % "none").model.interface("wanb")
    steps = []
    tracker = Tracker(tracked, 0, hl.Health(hl.Status.OFFLINE, 0, reason="5 rounds failed"),
                      lambda t, before, step: steps.append(step))
    tracker.update(untracked)
    assert tracker.health.status is hl.Status.ONLINE
    assert [(s.events, s.changed) for s in steps] == [((hl.CONNECTED,), True)]

    disabled = Tracker(tracked, 0, hl.Health(hl.Status.DISABLED, 0, reason="disabled by administrator"),
                       lambda *args: None)
    disabled.update(untracked)
    assert disabled.health.status is hl.Status.DISABLED


def test_a_conntrack_flush_needs_another_alive_member_of_the_same_family(dual_stack):
    """wan (IPv4) goes down while only IPv6 members are alive: its IPv4 flows have nowhere to
    go, so they are kept (an alive IPv6 member is no way out for them)."""
    agent = Agent(dual_stack.directory)
    agent.bundle = dual_stack
    model = dual_stack.model

    def set_alive(*names):
        agent.trackers = {i.name: Tracker(i, 0, hl.Health(hl.Status.ONLINE if i.name in names else hl.Status.OFFLINE,
                                                          0), lambda *args: None) for i in model.interfaces}

    set_alive("wan6", "wanb6")
    assert not agent._others_alive(model.interface("wan"))
    assert agent._others_alive(model.interface("wan6"))  # wanb6 takes its flows
    set_alive("wanb")
    assert agent._others_alive(model.interface("wan"))
    assert not agent._others_alive(model.interface("wanb"))


DISCARDED_ROUND = textwrap.dedent("""
    import asyncio, json, subprocess, sys
    from dataclasses import replace
    from netpath.agent import bundle as bundle_mod, health as hl
    from netpath.agent.track import Tracker
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"], check=True)  # no echo replies
    iface = bundle_mod.read(sys.argv[1]).model.interface("wan")
    iface = replace(iface, device="lo", track=replace(iface.track, method="ping", targets=("127.0.0.1",),
                                                      count=1, timeout=1.0, interval=30.0))

    async def main():
        tracker = Tracker(iface, 0, hl.Health(hl.Status.ONLINE, 10), lambda *args: None)
        tracker.start()
        await asyncio.sleep(0.3)  # the first round is waiting for a reply that never comes
        tracker.link_changed(False)
        await asyncio.sleep(2.5)  # beyond the round's time limit: it ended, and was discarded
        await tracker.stop()
        print(json.dumps({"rounds": tracker.rounds, "window": len(tracker.window),
                          "results": sorted(tracker.results), "figures": tracker.figures()}))

    asyncio.run(main())
""")


@pytest.mark.lab
def test_a_round_discarded_by_a_link_change_leaves_the_figures_alone(dual_stack):
    """The link went down while a round waited: the round is stale, and its 100 % loss must
    not reach `interfaces`/`metrics` either."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", DISCARDED_ROUND, str(dual_stack.directory)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["rounds"], result["window"], result["results"]) == (0, 0, [])
    assert result["figures"]["loss_pct"] is None
