"""`netpath use IFACE -- CMD`: every connection CMD and its children open from the router
leaves through IFACE, for both families, with the agent running and with `netpath apply`.

The router's main table prefers wan1 (metric 10) and the policy fails over to wan1 first,
so without `netpath use` the lab's internet server sees ISP 1's address; through
`netpath use` it must see ISP 2's (the lab's ISPs drop packets from another uplink's
address, so this also proves the source address is right).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab import netlab
from lab.agentlab import NETPATH, agents, compile_bundle, lab2  # noqa: F401 (fixtures)

pytestmark = pytest.mark.lab

CLIENT = str(netlab.CLIENT_SCRIPT)
TRACK = 'method = "ping"\ninterval = 0.5\ntimeout = 0.5\ndown = 2\nup = 2\n'


def dual_stack_config() -> str:
    lines = ['[global]', 'nft_table = "netpath"']
    for k in (1, 2):
        for family, suffix, gateway, target in (("ipv4", "", netlab.isp_gateway4(k), netlab.HTTP4),
                                                ("ipv6", "_6", netlab.isp_gateway6(k), netlab.HTTP6)):
            lines += [f"[interfaces.wan{k}{suffix}]", f'ifname = "wan{k}"', f'family = "{family}"',
                      f'gateway = "{gateway}"', f"[interfaces.wan{k}{suffix}.track]", TRACK.strip(),
                      f'targets = ["{target}"]']
    for name in ("wan1", "wan1_6", "wan2", "wan2_6"):
        metric = 1 if name.startswith("wan1") else 2
        lines += [f"[members.m_{name}]", f'interface = "{name}"', f"metric = {metric}"]
    lines += ["[policies.p]", 'mode = "failover"', 'members = ["m_wan1", "m_wan1_6", "m_wan2", "m_wan2_6"]',
              "[[rules]]", 'name = "all"', 'policy = "p"']
    return "\n".join(lines) + "\n"


def fetch_from_router(lab, prefix: list, url: str, shell: bool = False) -> str:
    argv = [sys.executable, CLIENT, "--url", url, "--count", "1", "--timeout", "2", "--json"]
    if shell:  # a child of CMD: `sh -c` starts the client
        argv = ["sh", "-c", " ".join(f"'{a}'" for a in argv)]
    done = lab.run("router", [*prefix, *argv], timeout=60)
    return json.loads(done.stdout)["order"][0]


def check_use(lab, bundle: Path, tmp_path: Path) -> None:
    use = [NETPATH, "use", "--bundle", str(bundle)]
    assert fetch_from_router(lab, [], netlab.HTTP4_URL) == netlab.isp_public4(1)
    assert fetch_from_router(lab, [], netlab.HTTP6_URL) == netlab.isp_public6(1)
    # by interface name: that interface's family
    assert fetch_from_router(lab, [*use, "wan2", "--"], netlab.HTTP4_URL) == netlab.isp_public4(2)
    assert fetch_from_router(lab, [*use, "wan2_6", "--"], netlab.HTTP6_URL) == netlab.isp_public6(2)
    # by device: both interfaces on it, both families, and the children of CMD too
    assert fetch_from_router(lab, [*use, "wan2", "--"], netlab.HTTP6_URL) == netlab.isp_public6(2)
    assert fetch_from_router(lab, [*use, "wan2", "--"], netlab.HTTP4_URL, shell=True) == netlab.isp_public4(2)
    # the exit status is CMD's; afterwards nothing of it is left
    done = lab.run("router", [*use, "wan2", "--", "sh", "-c", "exit 7"], check=False)
    assert done.returncode == 7, done.stderr
    tables = lab.run("router", ["nft", "list", "tables"]).stdout
    assert "netpath_use" not in tables
    assert fetch_from_router(lab, [], netlab.HTTP4_URL) == netlab.isp_public4(1)
    missing = lab.run("router", [*use, "wan2", "--", str(tmp_path / "no-such-program")], check=False)
    assert missing.returncode == 127 and "cannot run" in missing.stderr
    unknown = lab.run("router", [*use, "wan9", "--", "true"], check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "netpath use: no interface 'wan9' in the bundle (have: wan1, wan1_6, wan2, wan2_6)"


def test_use_with_the_agent_running(lab2, agents, tmp_path):
    bundle = compile_bundle(tmp_path, dual_stack_config())
    agent = agents(bundle)
    for name in ("wan1", "wan1_6", "wan2", "wan2_6"):
        agent.wait_state(name, "online", timeout=15)
    check_use(lab2, bundle, tmp_path)


def test_use_with_netpath_apply(lab2, tmp_path):
    bundle = compile_bundle(tmp_path, dual_stack_config())
    lab2.run("router", [NETPATH, "apply", str(bundle)])
    try:
        check_use(lab2, bundle, tmp_path)
    finally:
        lab2.run("router", [NETPATH, "apply", "--remove", str(bundle)], check=False)
    refused = lab2.run("router", [NETPATH, "use", "--bundle", str(bundle), "wan2", "--", "true"], check=False)
    assert refused.returncode == 1 and "NetPath's rules are not loaded" in refused.stderr
    assert leftover_cgroups() == []


def leftover_cgroups() -> list:
    """What is left under netpath-use/ in the cgroup v2 hierarchy (seen from the test)."""
    with open("/proc/self/mounts") as mounts:
        roots = [line.split()[1] for line in mounts if line.split()[2] == "cgroup2"]
    assert roots, "the test host mounts a cgroup v2 hierarchy"
    parent = Path(roots[0]) / "netpath-use"
    return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []


def test_connected_lists_what_bypasses_the_policies_per_family(lab2, tmp_path):
    bundle = compile_bundle(tmp_path, dual_stack_config())
    before = lab2.run("router", [NETPATH, "connected", str(bundle)])
    assert "is not loaded" in before.stdout
    lab2.run("router", [NETPATH, "apply", str(bundle)])
    try:
        shown = lab2.run("router", [NETPATH, "connected", str(bundle), "--json"])
        text = lab2.run("router", [NETPATH, "connected", str(bundle)]).stdout
    finally:
        lab2.run("router", [NETPATH, "apply", "--remove", str(bundle)], check=False)
    result = json.loads(shown.stdout)
    assert result["loaded"] is True
    assert result["ipv4"]["routes"] == [{"network": netlab.LAN4_NET, "device": "lan0"}]
    assert result["ipv6"]["routes"] == [{"network": netlab.LAN6_NET, "device": "lan0"}]
    assert result["ipv4"]["wan_networks"] == ["100.64.1.0/24", "100.64.2.0/24"]
    assert result["ipv6"]["wan_networks"] == ["2001:db8:100:1::/64", "2001:db8:100:2::/64"]
    assert "fe80::/10 (link-local)" in result["ipv6"]["always"]
    lines = text.splitlines()
    assert lines[0] == "IPv4 (main table, before any rule):"
    assert f"  {netlab.LAN4_NET}  via lan0 (not a WAN)" in lines
    assert "  100.64.2.0/24    a WAN link's own network" in lines
    assert "IPv6 (main table, before any rule):" in lines
