"""agent/daemon.py and agent/track.py without a lab: which interfaces a netifd event is about,
the state a tracker starts in or is reloaded to, and what a conntrack flush may take.

Models come from bundles of the real compiler; trackers are real Tracker objects that are
not started (no probe is sent)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from netpath.agent import bundle as bundle_mod
from netpath.agent.daemon import event_concerns

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
        return [i.name for i in interfaces if event_concerns(i, interface, device)]

    assert concerned("wan") == ["wan"]
    assert concerned("wan_6") == ["wan"]  # netifd's alias for the IPv6 part of "wan"
    assert concerned("wan6_4") == ["wan6"]
    assert concerned("wwan") == ["wanb"]
    assert concerned("wwan_4") == ["wanb"]
    assert concerned("eth1") == ["wanb", "wanb6"]  # the configured device
    assert concerned("modem", "eth0") == ["wan", "wan6"]  # hotplug's DEVICE
    assert concerned("lan", "br-lan") == []
    assert concerned("lan") == []
    assert concerned("_6") == []
