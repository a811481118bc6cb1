"""The data plane, proven with real traffic: `netpath compile` + `netpath apply` in the lab's
router namespace, connections from the LAN client, and the internet's answer naming the
uplink that carried each one. `netpath explain` must agree with what the kernel did."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab import netlab

pytestmark = pytest.mark.lab
LAB_OPTIONS = {"wans": 3}
BIN = Path(sys.executable).parent
NETPATH = str(BIN / "netpath")
UPLINK = {netlab.isp_public4(k): f"wan{k}" for k in (1, 2, 3)}
UPLINK.update({netlab.isp_public6(k): f"wan{k}" for k in (1, 2, 3)})


def uci_config(members: dict, policies: dict, rules: list, v6: bool = False, extra_iface: str = "") -> str:
    """members: name -> (interface, metric, weight); policies: name -> (mode, [members], last_resort);
    rules: list of (name, {option: value or [values]})."""
    out = ["config globals 'globals'", "\toption nft_table 'netpath'"]
    for k in (1, 2, 3):
        out += [f"config interface 'wan{k}'", f"\toption ifname 'wan{k}'", "\toption track_method 'none'",
                f"\toption gateway '{netlab.isp_gateway4(k)}'", "\toption masquerade '1'", extra_iface]
        if v6:
            out += [f"config interface 'wan{k}v6'", f"\toption ifname 'wan{k}'", "\toption family 'ipv6'",
                    "\toption track_method 'none'", f"\toption gateway '{netlab.isp_gateway6(k)}'"]
    for name, (iface, metric, weight) in members.items():
        out += [f"config member '{name}'", f"\toption interface '{iface}'", f"\toption metric '{metric}'",
                f"\toption weight '{weight}'"]
    for name, (mode, member_list, last_resort) in policies.items():
        out += [f"config policy '{name}'", f"\toption mode '{mode}'", f"\toption last_resort '{last_resort}'"]
        out += [f"\tlist members '{m}'" for m in member_list]
    for name, options in rules:
        out.append(f"config rule '{name}'")
        for key, value in options.items():
            for item in (value if isinstance(value, list) else [value]):
                out.append(f"\t{'list' if isinstance(value, list) else 'option'} {key} '{item}'")
    return "\n".join(line for line in out if line) + "\n"


def compile_bundle(tmp_path: Path, text: str, name: str = "bundle") -> Path:
    config = tmp_path / f"{name}.uci"
    config.write_text(text)
    out = tmp_path / name
    proc = subprocess.run([NETPATH, "compile", str(config), "-o", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def apply(lab, bundle: Path, down=(), check=True) -> subprocess.CompletedProcess:
    argv = [NETPATH, "apply", str(bundle)]
    for name in down:
        argv += ["--down", name]
    proc = lab.run("router", argv, check=False, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def explain(bundle: Path, src: str, dst: str, down=(), **kw) -> dict:
    argv = [NETPATH, "explain", str(bundle), "--src", src, "--dst", dst, "--json"]
    for name in down:
        argv += ["--down", name]
    for key, value in kw.items():
        argv += [f"--{key}", str(value)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def uplinks(histogram: dict) -> dict:
    counts: dict = {}
    for seen, n in netlab.seen_counts(histogram).items():
        counts[UPLINK.get(seen, seen)] = counts.get(UPLINK.get(seen, seen), 0) + n
    return counts


@pytest.fixture(scope="module")
def lab3(lab_module):
    lab_module.start_servers()
    return lab_module


# --- modes -----------------------------------------------------------------------------------

SPREAD_MEMBERS = {"m1": ("wan1", 1, 3), "m2": ("wan2", 1, 1), "m3": ("wan3", 2, 1)}


@pytest.mark.parametrize("mode", ["balanced", "weighted"])
def test_weights_3_to_1_spread_new_connections(lab3, tmp_path, mode):
    bundle = compile_bundle(tmp_path, uci_config(SPREAD_MEMBERS, {"p": (mode, ["m1", "m2", "m3"], "unreachable")},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle)
    counts = uplinks(lab3.http_histogram(400, parallel=8))
    assert sum(counts.values()) == 400, counts
    share = 100.0 * counts.get("wan1", 0) / 400
    # balanced is deterministic (numgen inc: exactly 300/100); weighted is random (4 sigma = 8.7 points)
    assert abs(share - 75.0) <= (5.0 if mode == "balanced" else 8.7), counts
    assert counts.get("wan3", 0) == 0, "metric 2 is a standby tier"
    assert explain(bundle, netlab.CLIENT_LAN4, netlab.HTTP4)["decision"]["shares"] == {"wan1": 75.0, "wan2": 25.0}


def test_round_robin_alternates_exactly(lab3, tmp_path):
    members = {"m1": ("wan1", 1, 5), "m2": ("wan2", 1, 1)}  # weights are ignored
    bundle = compile_bundle(tmp_path, uci_config(members, {"p": ("round-robin", ["m1", "m2"], "unreachable")},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle)
    order = [UPLINK[a] for a in lab3.http_histogram(40)["order"]]
    assert len(order) == 40
    assert all(a != b for a, b in zip(order, order[1:])), order


def test_random_is_uniform_within_bounds(lab3, tmp_path):
    members = {"m1": ("wan1", 1, 9), "m2": ("wan2", 1, 1)}
    bundle = compile_bundle(tmp_path, uci_config(members, {"p": ("random", ["m1", "m2"], "unreachable")},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle)
    counts = uplinks(lab3.http_histogram(400, parallel=8))
    assert abs(counts.get("wan1", 0) - 200) <= 40, counts  # 4 sigma of Binomial(400, 0.5)


def test_failover_uses_lowest_metric_then_list_order(lab3, tmp_path):
    members = {"m1": ("wan1", 2, 1), "m2": ("wan2", 1, 1), "m3": ("wan3", 1, 1)}
    bundle = compile_bundle(tmp_path, uci_config(members, {"p": ("failover", ["m1", "m2", "m3"], "unreachable")},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle)
    assert uplinks(lab3.http_histogram(20)) == {"wan2": 20}
    apply(lab3, bundle, down=["wan2"])
    assert uplinks(lab3.http_histogram(20)) == {"wan3": 20}
    apply(lab3, bundle, down=["wan2", "wan3"])
    assert uplinks(lab3.http_histogram(20)) == {"wan1": 20}
    assert explain(bundle, netlab.CLIENT_LAN4, netlab.HTTP4, down=["wan2", "wan3"])["interface"] == "wan1"


def test_metric_tiers_fall_back_to_next_tier(lab3, tmp_path):
    bundle = compile_bundle(tmp_path, uci_config(SPREAD_MEMBERS, {"p": ("balanced", ["m1", "m2", "m3"], "unreachable")},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle, down=["wan1", "wan2"])
    assert uplinks(lab3.http_histogram(20)) == {"wan3": 20}


def test_hash_keeps_sources_and_moves_only_the_dead_members_sources(lab3, tmp_path):
    sources = lab3.add_client_sources(64)
    members = {"m1": ("wan1", 1, 1), "m2": ("wan2", 1, 1), "m3": ("wan3", 1, 1)}
    bundle = compile_bundle(tmp_path, uci_config(members, {"p": ("hash", ["m1", "m2", "m3"], "unreachable")},
                                                 [("all", {"policy": "p"})]))

    def placement(down=()):
        apply(lab3, bundle, down=down)
        hist = lab3.http_histogram(128, sources=sources, parallel=8)
        where = {}
        for source, answers in hist["by_source"].items():
            seen = {UPLINK[a] for a in answers if a}
            assert len(seen) == 1, f"{source} split over {seen}"
            where[source] = seen.pop()
        assert len(where) == 64, hist.get("error_kinds")
        return where

    before = placement()
    assert set(before.values()) == {"wan1", "wan2", "wan3"}
    for source in sources:  # explain computes the kernel's jhash
        assert explain(bundle, source, netlab.HTTP4)["interface"] == before[source], source
    after = placement(down=["wan2"])
    for source in sources:
        if before[source] != "wan2":
            assert after[source] == before[source], f"{source} moved although its WAN lives"
        else:
            assert after[source] in ("wan1", "wan3")
        assert explain(bundle, source, netlab.HTTP4, down=["wan2"])["interface"] == after[source]


# --- rules -----------------------------------------------------------------------------------

ONLY = {"m1": ("wan1", 1, 1), "m2": ("wan2", 1, 1), "m3": ("wan3", 1, 1)}
ONLY_POLICIES = {"via1": ("failover", ["m1"], "unreachable"), "via2": ("failover", ["m2"], "unreachable"),
                 "via3": ("failover", ["m3"], "unreachable")}


@pytest.fixture(scope="module")
def extra_servers(lab3):
    lab3.popen("net", [sys.executable, str(netlab.SERVERS_SCRIPT), "--http", "203.0.113.53:80",
                       "--http", "203.0.113.10:8080", "--http", "203.0.113.10:9000"])
    for url in ("http://203.0.113.53/", "http://203.0.113.10:8080/", "http://203.0.113.10:9000/"):
        for _ in range(50):
            if lab3.fetch(url, ns="isp1") is not None:
                break
            time.sleep(0.1)
    return lab3


def test_rules_first_match_wins_by_prefix_port_proto_family_iface(extra_servers, tmp_path):
    lab3 = extra_servers
    sources = lab3.add_client_sources(2)
    rules = [
        ("by_src", {"src_ip": f"{sources[0]}/32", "policy": "via3"}),
        ("by_dst", {"dest_ip": "203.0.113.53", "policy": "via2"}),
        ("by_port", {"proto": "tcp", "dest_port": "8000-8090", "policy": "via2"}),
        ("by_udp", {"proto": "udp", "policy": "via3"}),
        ("v6_only", {"family": "ipv6", "policy": "via3v6"}),
        ("from_lan", {"src_iface": "lan0", "policy": "via1"}),
    ]
    policies = dict(ONLY_POLICIES, via3v6=("failover", ["m3v6"], "unreachable"))
    members = dict(ONLY, m3v6=("wan3v6", 1, 1))
    bundle = compile_bundle(tmp_path, uci_config(members, policies, rules, v6=True))
    apply(lab3, bundle)
    cases = [  # (url, source, expected uplink)
        ("http://203.0.113.10/", sources[0], "wan3"),  # by_src beats the later rules
        ("http://203.0.113.53/", None, "wan2"),
        ("http://203.0.113.10:8080/", None, "wan2"),
        ("http://203.0.113.10:9000/", None, "wan1"),  # port outside the range: falls to from_lan
        ("http://203.0.113.10/", sources[1], "wan1"),
        (netlab.HTTP6_URL, None, "wan3"),
    ]
    for url, source, expected in cases:
        seen = lab3.fetch(url, source=source)
        assert UPLINK.get(seen) == expected, (url, source, seen)
        dst = url.split("/")[2].split(":")[0].strip("[]") if "[" not in url else netlab.HTTP6
        port = int(url.split(":")[2].split("/")[0]) if url.count(":") == 2 and "[" not in url else 80
        src = source or (netlab.CLIENT_LAN6 if "[" in url else netlab.CLIENT_LAN4)
        told = explain(bundle, src, dst, dport=port, proto="tcp", iif="lan0")
        assert told["interface"].removesuffix("v6") == expected, (url, told)
    udp = lab3.run_client(["--udp", f"{netlab.HTTP4}:{netlab.UDP_PEER_PORT}", "--count", "3"])
    assert uplinks(udp) == {"wan3": 3}


def test_nft_set_rule_filled_at_run_time_survives_reapply(extra_servers, tmp_path):
    lab3 = extra_servers
    rules = [("vip", {"ipset": "vip", "policy": "via3"}), ("rest", {"policy": "via1"})]
    bundle = compile_bundle(tmp_path, uci_config(ONLY, ONLY_POLICIES, rules))
    apply(lab3, bundle)
    assert UPLINK[lab3.fetch("http://203.0.113.53/")] == "wan1"
    lab3.run("router", ["nft", "add", "element", "inet", "netpath", "vip_v4", "{ 203.0.113.53 }"])
    assert UPLINK[lab3.fetch("http://203.0.113.53/")] == "wan3"
    apply(lab3, bundle)  # re-apply: the set keeps what dnsmasq (here: the test) put in it
    assert UPLINK[lab3.fetch("http://203.0.113.53/")] == "wan3"
    assert UPLINK[lab3.fetch("http://203.0.113.10/")] == "wan1"


def test_sticky_rule_keeps_a_source_on_its_wan_until_timeout(lab3, tmp_path):
    members = {"m1": ("wan1", 1, 1), "m2": ("wan2", 1, 1)}
    rules = [("sticky_web", {"proto": "tcp", "dest_port": "80", "sticky": "1", "timeout": "3", "policy": "rr"})]
    bundle = compile_bundle(tmp_path, uci_config(members, {"rr": ("round-robin", ["m1", "m2"], "unreachable")}, rules))
    apply(lab3, bundle)
    order = [UPLINK[a] for a in lab3.http_histogram(10)["order"]]
    assert len(set(order)) == 1, order  # round-robin alone would alternate
    first = order[0]
    time.sleep(4.5)  # the sticky entry expires: round-robin decides again, and sticks again
    again = [UPLINK[a] for a in lab3.http_histogram(10)["order"]]
    assert len(set(again)) == 1
    sets = lab3.run("router", ["nft", "-j", "list", "set", "inet", "netpath", f"sticky_sticky_web_{again[0]}"]).stdout
    assert netlab.CLIENT_LAN4 in sets
    assert first in ("wan1", "wan2")


# --- last resort and what is never policy-routed -----------------------------------------------


@pytest.mark.parametrize("last_resort", ["unreachable", "blackhole", "default"])
def test_last_resort(lab3, tmp_path, last_resort):
    bundle = compile_bundle(tmp_path, uci_config(ONLY, {"p": ("failover", ["m2"], last_resort)},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle, down=["wan2"])
    hist = lab3.http_histogram(3, timeout=1.5)
    if last_resort == "default":
        assert uplinks(hist) == {"wan1": 3}  # main table: the lowest-metric default route
    else:
        assert hist["errors"] == 3
        kinds = hist.get("error_kinds", {})
        if last_resort == "unreachable":
            assert any("unreach" in k.lower() or "refused" in k.lower() for k in kinds), kinds
        else:
            assert any("timeout" in k.lower() or "timed out" in k.lower() for k in kinds), kinds
    told = explain(bundle, netlab.CLIENT_LAN4, netlab.HTTP4, down=["wan2"])
    assert told["decision"]["kind"] == "last_resort" and told["decision"]["last_resort"] == last_resort


def test_local_connected_link_local_never_policy_routed(lab3, tmp_path):
    bundle = compile_bundle(tmp_path, uci_config(ONLY, ONLY_POLICIES, [("all", {"policy": "unreachable"})], v6=True))
    apply(lab3, bundle)
    assert lab3.fetch() is None  # everything policy-routed is unreachable ...
    assert lab3.ping_rtt_ms(netlab.ROUTER_LAN4) is not None  # ... but the router itself answers,
    assert lab3.ping_rtt_ms(netlab.router_wan4(2)) is not None  # on all its addresses,
    assert lab3.ping_rtt_ms(netlab.ROUTER_LAN6) is not None
    link_local = lab3.run("router", ["ip", "-j", "-6", "addr", "show", "dev", "lan0", "scope", "link"]).stdout
    address = next(a["local"] for a in json.loads(link_local)[0]["addr_info"] if a.get("local"))
    assert lab3.ping_rtt_ms(f"{address}%eth0") is not None  # IPv6 link-local
    # the WAN links' own networks (the ISP gateways) are connected: main table
    assert lab3.ping_rtt_ms(netlab.isp_gateway4(3)) is not None


# --- flows, inbound, router-originated ------------------------------------------------------

UDP_FLOW = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    for line in sys.stdin:
        s.sendto(b"x", ("203.0.113.10", 7))
        try: print(s.recvfrom(200)[0].decode().strip(), flush=True)
        except OSError as e: print("error", e, flush=True)
""")


def test_established_flow_keeps_its_wan_when_state_changes(lab3, tmp_path):
    members = {"m1": ("wan1", 1, 1), "m2": ("wan2", 2, 1)}
    bundle = compile_bundle(tmp_path, uci_config(members, {"p": ("failover", ["m1", "m2"], "unreachable")},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle)
    flow = lab3.popen("client", [sys.executable, "-c", UDP_FLOW], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True)
    try:
        flow.stdin.write("go\n"); flow.stdin.flush()
        assert UPLINK.get(flow.stdout.readline().strip()) == "wan1"
        apply(lab3, bundle, down=["wan1"])  # wan1 declared dead: new flows move ...
        assert UPLINK[lab3.fetch()] == "wan2"
        flow.stdin.write("go\n"); flow.stdin.flush()
        assert UPLINK.get(flow.stdout.readline().strip()) == "wan1"  # ... the established one stays
    finally:
        flow.kill()


def test_inbound_connection_on_wan2_is_answered_through_wan2(lab3, tmp_path):
    bundle = compile_bundle(tmp_path, uci_config(ONLY, ONLY_POLICIES, [("all", {"policy": "via1"})]))
    apply(lab3, bundle)
    lab3.client_listen_tcp(8000)
    lab3.nft("router", "table ip lab_fwd {}\ndelete table ip lab_fwd\ntable ip lab_fwd {\n chain pre {\n"
             "  type nat hook prerouting priority dstnat;\n  iifname \"wan2\" tcp dport 8000 "
             "dnat to 192.168.10.2\n }\n}\n")
    try:
        seen = lab3.fetch(f"http://{netlab.router_wan4(2)}:8000/", ns="isp2")
        assert seen == netlab.isp_gateway4(2)  # the reply came back over wan2 (ISP 1 would drop it)
        told = explain(bundle, netlab.isp_gateway4(2), netlab.CLIENT_LAN4, iif="wan2", dport=8000)
        assert told["target"] == "inbound" and told["interface"] == "wan2"
    finally:
        lab3.nft("router", "table ip lab_fwd {}\ndelete table ip lab_fwd\n")


def test_router_originated_traffic_is_classified(lab3, tmp_path):
    bundle = compile_bundle(tmp_path, uci_config(ONLY, ONLY_POLICIES, [("all", {"policy": "via2"})]))
    apply(lab3, bundle)
    assert UPLINK[lab3.fetch(ns="router")] == "wan2"
    assert explain(bundle, netlab.router_wan4(1), netlab.HTTP4)["interface"] == "wan2"


# --- IPv6 ------------------------------------------------------------------------------------


def test_ipv6_balanced_and_failover(lab3, tmp_path):
    members = {"a": ("wan1v6", 1, 3), "b": ("wan2v6", 1, 1)}
    bundle = compile_bundle(tmp_path, uci_config(members, {"p": ("balanced", ["a", "b"], "unreachable"),
                                                           "f": ("failover", ["b", "a"], "unreachable")},
                                                 [("web", {"dest_port": "80", "proto": "tcp", "family": "ipv6", "policy": "p"})],
                                                 v6=True))
    apply(lab3, bundle)
    counts = uplinks(lab3.http_histogram(80, family=6))
    assert counts == {"wan1": 60, "wan2": 20}, counts
    bundle2 = compile_bundle(tmp_path, uci_config(members, {"f": ("failover", ["b", "a"], "unreachable")},
                                                  [("all", {"family": "ipv6", "policy": "f"})], v6=True), "b2")
    apply(lab3, bundle2)
    assert uplinks(lab3.http_histogram(10, family=6)) == {"wan2": 10}
    apply(lab3, bundle2, down=["wan2v6"])
    assert uplinks(lab3.http_histogram(10, family=6)) == {"wan1": 10}


# --- apply itself ------------------------------------------------------------------------------


def _host_state(lab) -> tuple:
    nft = lab.run("router", ["nft", "-s", "list", "table", "inet", "netpath"], check=False).stdout
    rules = lab.run("router", ["ip", "rule"]).stdout + lab.run("router", ["ip", "-6", "rule"]).stdout
    routes = lab.run("router", ["ip", "route", "show", "table", "all"]).stdout
    return nft, rules, routes


def test_apply_is_idempotent_and_remove_takes_only_ours(lab3, tmp_path):
    bundle = compile_bundle(tmp_path, uci_config(SPREAD_MEMBERS, {"p": ("balanced", ["m1", "m2", "m3"], "unreachable")},
                                                 [("all", {"policy": "p"})]))
    apply(lab3, bundle)
    first = _host_state(lab3)
    out = apply(lab3, bundle).stdout
    assert "0 rule and 0 route changes" in out
    assert _host_state(lab3) == first
    lab3.run("router", ["ip", "rule", "add", "pref", "2500", "fwmark", "0x7", "lookup", "main"])
    lab3.nft("router", "table inet foreign {\n chain c {\n  type filter hook forward priority 0;\n }\n}\n")
    proc = lab3.run("router", [NETPATH, "apply", "--remove", str(bundle)])
    assert proc.returncode == 0
    nft, rules, routes = _host_state(lab3)
    assert nft == "" and "proto 93" not in rules and "proto 93" not in routes
    assert "2500:" in rules
    assert "table inet foreign" in lab3.run("router", ["nft", "list", "tables"]).stdout
    lab3.run("router", ["ip", "rule", "del", "pref", "2500"])
    lab3.nft("router", "delete table inet foreign\n")


def test_damaged_bundle_is_refused_and_changes_nothing(lab3, tmp_path):
    bundle = compile_bundle(tmp_path, uci_config(ONLY, ONLY_POLICIES, [("all", {"policy": "via1"})]))
    apply(lab3, bundle)
    before = _host_state(lab3)
    ruleset = bundle / "ruleset.nft"
    ruleset.write_text(ruleset.read_text().replace("via1", "via2"))
    proc = apply(lab3, bundle, check=False)
    assert proc.returncode == 2 and "ruleset.nft" in proc.stderr and "Traceback" not in proc.stderr
    (bundle / "states" / "via1" / "1.nft").unlink()
    proc = apply(lab3, bundle, check=False)
    assert proc.returncode == 2 and "missing" in proc.stderr
    assert _host_state(lab3) == before


def test_ruleset_the_kernel_rejects_leaves_the_running_one(lab3, tmp_path):
    good = compile_bundle(tmp_path, uci_config(ONLY, ONLY_POLICIES, [("all", {"policy": "via1"})]), "good")
    apply(lab3, good)
    before = _host_state(lab3)
    bad = compile_bundle(tmp_path, uci_config(ONLY, ONLY_POLICIES, [("all", {"policy": "via2"})]), "bad")
    ruleset = bad / "ruleset.nft"
    text = ruleset.read_text()
    assert 'goto policy_via2 comment "rule all"' in text
    ruleset.write_text(text.replace('goto policy_via2 comment "rule all"', 'goto policy_nowhere comment "rule all"'))
    manifest = json.loads((bad / "manifest.json").read_text())
    import hashlib
    manifest["files"]["ruleset.nft"] = hashlib.sha256(ruleset.read_bytes()).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(manifest))
    proc = apply(lab3, bad, check=False)
    assert proc.returncode == 1 and "rule all" in proc.stderr, proc.stderr
    assert _host_state(lab3) == before
    assert UPLINK[lab3.fetch()] == "wan1"
