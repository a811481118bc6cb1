"""The OpenWrt package's /etc/config/netpath, enabled as the README says, on a dual-stack lab
router: the LAN keeps IPv6, through the IPv6 uplink while it is up and through the main
table while it is not (never `unreachable` by surprise).

The config is used as shipped, with two substitutions a lab needs: `enabled '1'` (what
`uci set netpath.globals.enabled=1` does) and the public probe targets replaced by the lab
internet's servers (nothing leaves the lab). Its logical names (`wan`, `wan6`) become the
lab's devices the way they do on a router: `netpath compile` asks netifd through `ubus`,
here a stand-in (tests/openwrt/fake_ubus/ubus) answering from JSON files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lab import netlab
from lab.agentlab import NETPATH, agents, lab2  # noqa: F401 (fixtures)

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "openwrt" / "netpath" / "files" / "etc" / "config" / "netpath"
FAKE_UBUS = REPO / "tests" / "openwrt" / "fake_ubus" / "ubus"
TARGETS = {"1.1.1.1": netlab.HTTP4, "8.8.8.8": netlab.DNS4,
           "2606:4700:4700::1111": netlab.HTTP6, "2001:4860:4860::8888": netlab.DNS6}


def enabled_config(directory: Path) -> Path:
    text = SHIPPED.read_text()
    assert "option enabled '0'" in text and "option ifname 'wan6'" in text
    text = text.replace("option enabled '0'", "option enabled '1'", 1)
    for public, lab_server in TARGETS.items():
        assert f"list track_targets '{public}'" in text
        text = text.replace(f"list track_targets '{public}'", f"list track_targets '{lab_server}'")
    path = directory / "netpath"
    path.write_text(text)
    return path


def netifd(directory: Path, devices: dict) -> Path:
    """A `ubus` that knows the logical interfaces `devices` (name -> device), like netifd."""
    bin_dir = directory / "ubus-bin"
    (bin_dir / "status").mkdir(parents=True)
    (bin_dir / "ubus").write_bytes(FAKE_UBUS.read_bytes())
    (bin_dir / "ubus").chmod(0o755)
    for name, device in devices.items():
        (bin_dir / "status" / f"{name}.json").write_text(json.dumps({"up": True, "l3_device": device,
                                                                     "device": device}))
    return bin_dir


def compile_on_router(directory: Path, devices: dict) -> Path:
    config, out = enabled_config(directory), directory / "bundle"
    env = {**os.environ, "PATH": f"{netifd(directory, devices)}:{os.environ['PATH']}"}
    done = subprocess.run([NETPATH, "compile", str(config), "--format", "uci", "-o", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    for name, device in devices.items():
        assert f"OpenWrt interface '{name}' is device '{device}' now" in done.stderr
    return out


def test_ipv6_from_the_lan_uses_the_ipv6_uplink(lab2, agents, tmp_path):
    agent = agents(compile_on_router(tmp_path, {"wan": "wan1", "wan6": "wan1"}))
    agent.wait_state("wan", "online", timeout=15)
    agent.wait_state("wan6", "online", timeout=15)
    assert lab2.fetch(netlab.HTTP6_URL) == netlab.isp_public6(1)
    assert lab2.fetch(netlab.HTTP4_URL) == netlab.isp_public4(1)
    policy = agent.request("policies")["policies"][0]
    assert policy["spread"] == {"ipv4": {"wan": 100.0}, "ipv6": {"wan6": 100.0}}


def test_without_a_working_ipv6_uplink_ipv6_takes_the_main_table(lab2, agents, tmp_path):
    """wan6 on an uplink whose ISP drops everything: once it is offline, IPv6 from the LAN
    is routed by the main table (its default route via wan1), as without NetPath."""
    lab2.isp_blackhole(2)
    try:
        agent = agents(compile_on_router(tmp_path, {"wan": "wan1", "wan6": "wan2"}))
        agent.wait_state("wan", "online", timeout=15)
        agent.wait_state("wan6", "offline", timeout=15)
        policy = agent.request("policies")["policies"][0]
        assert policy["last_resort_active"] == {"ipv4": False, "ipv6": True}
        assert lab2.fetch(netlab.HTTP6_URL) == netlab.isp_public6(1)
        assert lab2.fetch(netlab.HTTP4_URL) == netlab.isp_public4(1)
    finally:
        lab2.isp_blackhole(2, on=False)
