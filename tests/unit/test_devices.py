"""OpenWrt logical interface names become kernel devices at compile time (via ubus).

There is no OpenWrt (no ubusd) on the test host: tests/openwrt/fake_ubus/ubus is a test
double of the `ubus` CLI that answers from JSON files, placed first on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAKE_UBUS = Path(__file__).resolve().parents[1] / "openwrt" / "fake_ubus"
NETPATH = [sys.executable, "-m", "netpath.compiler.cli"]
CONFIG = """config interface 'wan'
	option ifname 'wan'
	option track_method 'none'
config interface 'lte'
	option ifname 'lte'
	option track_method 'none'
config interface 'lo_dev'
	option ifname 'lo'
	option track_method 'none'
config member 'm_wan'
	option interface 'wan'
config member 'm_lte'
	option interface 'lte'
	option metric '2'
config policy 'p'
	list members 'm_wan'
	list members 'm_lte'
config rule 'all'
	option policy 'p'
"""


def compile_with(tmp_path: Path, with_ubus: bool) -> subprocess.CompletedProcess:
    config = tmp_path / "netpath"
    config.write_text(CONFIG)
    env = dict(os.environ)
    env["PATH"] = (f"{FAKE_UBUS}:" if with_ubus else "") + "/usr/sbin:/usr/bin:/sbin:/bin"
    return subprocess.run(NETPATH + ["compile", str(config), "-o", str(tmp_path / "bundle"), "--no-check"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_logical_names_map_to_netifd_devices(tmp_path):
    proc = compile_with(tmp_path, with_ubus=True)
    assert proc.returncode == 0, proc.stderr
    ruleset = (tmp_path / "bundle" / "ruleset.nft").read_text()
    assert 'iifname "pppoe-wan"' in ruleset  # wan.json: l3_device pppoe-wan
    assert "OpenWrt interface 'wan' is device 'pppoe-wan'" in proc.stderr
    assert 'iifname "wan"' not in ruleset
    assert 'iifname "lo"' in ruleset  # a name netifd does not know stays as written
    batch = (tmp_path / "bundle" / "routes" / "wan.batch").read_text()
    assert "oif pppoe-wan" in batch


def test_without_ubus_the_name_is_the_device(tmp_path):
    proc = compile_with(tmp_path, with_ubus=False)
    assert proc.returncode == 0, proc.stderr
    assert 'iifname "wan"' in (tmp_path / "bundle" / "ruleset.nft").read_text()


@pytest.mark.parametrize("family,expected", [
    ("ipv4", "wwan0"),     # netifd's lte_4 alias carries IPv4 (status/lte_4.json)
    ("ipv6", "cdc-wdm0"),  # no lte_6 alias: the base interface, which is down (no l3_device)
])
def test_family_alias_preferred(family, expected, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_UBUS}:" + os.environ["PATH"])
    from netpath.agent import ubus

    assert ubus.logical_to_device("lte", family=family) == expected


def test_netifd_wins_over_a_device_of_the_same_name(tmp_path):
    """On DSA routers the WAN port is a device called `wan` and the logical `wan` may be
    `pppoe-wan`: the logical interface is what an OpenWrt config means."""
    fake = tmp_path / "ubus_bin"
    (fake / "status").mkdir(parents=True)
    (fake / "ubus").write_bytes((FAKE_UBUS / "ubus").read_bytes())
    (fake / "ubus").chmod(0o755)
    (fake / "status" / "lo.json").write_text('{"up": true, "l3_device": "pppoe-wan", "device": "lo"}')
    assert Path("/sys/class/net/lo").exists()
    config = tmp_path / "netpath"
    config.write_text(CONFIG)
    env = dict(os.environ, PATH=f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin")
    proc = subprocess.run(NETPATH + ["compile", str(config), "-o", str(tmp_path / "bundle"), "--no-check"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ruleset = (tmp_path / "bundle" / "ruleset.nft").read_text()
    assert 'iifname "pppoe-wan"' in ruleset and 'iifname "lo"' not in ruleset


SRC_IFACE_RULES = """config rule 'from_lan'
	option src_iface 'lan'
	option policy 'p'
config rule 'from_wan'
	option src_iface 'wan'
	option policy 'p'
config rule 'from_device'
	option src_iface 'eth9'
	option policy 'p'
"""


@pytest.mark.parametrize("with_ubus,lan,wan", [(True, "br-lan", "pppoe-wan"), (False, "lan", "wan")])
def test_src_iface_takes_the_same_mapping_as_ifname(tmp_path, with_ubus, lan, wan):
    """`lan` is an OpenWrt interface, not a NetPath one: netifd names its device (br-lan),
    as for `ifname`; `wan` is a NetPath interface: its (mapped) device; eth9: a device."""
    config = tmp_path / "netpath"
    config.write_text(CONFIG.replace("config rule 'all'", SRC_IFACE_RULES + "config rule 'all'"))
    env = dict(os.environ, PATH=(f"{FAKE_UBUS}:" if with_ubus else "") + "/usr/sbin:/usr/bin:/sbin:/bin")
    proc = subprocess.run(NETPATH + ["compile", str(config), "-o", str(tmp_path / "bundle"), "--no-check"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rules = {r["name"]: r["src_iface"] for r in
             json.loads((tmp_path / "bundle" / "manifest.json").read_text())["model"]["rules"]}
    assert (rules["from_lan"], rules["from_wan"], rules["from_device"]) == (lan, wan, "eth9")
    ruleset = (tmp_path / "bundle" / "ruleset.nft").read_text()
    # the three rules test iifname only: one verdict-map lookup (compiler/rulechains.py)
    assert (f'iifname vmap {{ "{lan}" : goto matched_from_lan, "{wan}" : goto matched_from_wan, '
            '"eth9" : goto matched_from_device }') in ruleset
    if with_ubus:
        assert "rule 'from_lan': OpenWrt interface 'lan' is device 'br-lan' now" in proc.stderr
