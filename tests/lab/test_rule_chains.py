"""First match, proven by the kernel: the compiled rule chains (compiler/rulechains.py:
families apart, runs of rules as verdict maps) send every packet to the rule that
`netpath explain` names by walking the rules one by one on the resolved model.

For every example and for hypothesis-generated rule lists (overlapping prefixes, port
ranges, protocols, source interfaces, both families, netmasks, named sets, logging, sticky
rules), the ruleset is loaded into a throw-away namespace whose WAN devices carry default
routes; crafted frames enter through LAN veths named after the rules' source interfaces;
the rule whose kernel counter moved must be the rule explain chose (or none, for both).
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from netpath.agent.explain import PROTO_NUMBERS, Packet, explain
from netpath.compiler import check, pipeline

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
# The UCI examples and seed.toml (its twin seed.uci has the same rules; the other TOML and
# YAML spellings compile to the same model, test_compile.py proves).
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix == ".uci")
LAN = "lan0"

# Runs in its own network namespace: argv[1] = ruleset file, stdin = {"wans", "lans", "packets"}.
PROBE = textwrap.dedent(r'''
    import json, socket, struct, subprocess, sys
    from netpath.agent.metrics import rule_counters
    from netpath.agent.nft import Nft
    from netpath.agent.probes import _checksum as checksum  # the internet checksum (RFC 1071)

    job = json.load(sys.stdin)
    def run(*argv):
        subprocess.run(argv, check=True, timeout=30, capture_output=True)
    run("ip", "link", "set", "lo", "up")
    for i, dev in enumerate(job["wans"]):
        run("ip", "link", "add", dev, "type", "veth", "peer", "name", f"wanpeer{i}")
        run("ip", "link", "set", dev, "up")
        run("ip", "link", "set", f"wanpeer{i}", "up")
    run("ip", "route", "add", "default", "dev", job["wans"][0])
    run("ip", "-6", "route", "add", "default", "dev", job["wans"][0])
    peers = {}
    for i, dev in enumerate(job["lans"]):
        run("ip", "link", "add", dev, "type", "veth", "peer", "name", f"lanpeer{i}")
        run("ip", "link", "set", dev, "up")
        run("ip", "link", "set", f"lanpeer{i}", "up")
        shown = subprocess.run(["ip", "-j", "link", "show", "dev", dev], check=True, timeout=30,
                               capture_output=True, text=True).stdout
        mac = bytes.fromhex(json.loads(shown)[0]["address"].replace(":", ""))
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind((f"lanpeer{i}", 0))
        peers[dev] = (sock, mac)
    run("nft", "-f", sys.argv[1])
    # Every packet is a flow of its own (conntrack is flushed before each), and conntrack
    # does not judge the crafted packets' layer-4 checksums.
    run("sysctl", "-q", "-w", "net.netfilter.nf_conntrack_checksum=0")
    nft = Nft()

    def frame(p, mac):
        proto = p["proto_number"]
        if proto == 6:
            l4 = struct.pack("!HHIIBBHHH", p["sport"], p["dport"], 1, 0, 5 << 4, 2, 1024, 0, 0)
        elif proto in (17, 136):
            l4 = struct.pack("!HHHH", p["sport"], p["dport"], 8, 0)
        elif proto == 132:  # common header, then an INIT chunk: a valid new association
            l4 = struct.pack("!HHII", p["sport"], p["dport"], 0, 0) + \
                struct.pack("!BBHIIHHI", 1, 0, 20, 1, 65535, 1, 1, 1)
        elif proto == 58:
            l4 = bytes([128, 0]) + bytes(6)  # echo request
        else:
            l4 = bytes([8, 0]) + bytes(6)  # ICMP echo request; other protocols: 8 bytes
        if p["family"] == "ipv4":
            src, dst = socket.inet_pton(socket.AF_INET, p["src"]), socket.inet_pton(socket.AF_INET, p["dst"])
            head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
            head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
            ethertype = 0x0800
        else:
            src, dst = socket.inet_pton(socket.AF_INET6, p["src"]), socket.inet_pton(socket.AF_INET6, p["dst"])
            head = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst)
            ethertype = 0x86DD
        return mac + b"\x02\0\0\0\0\x01" + struct.pack("!H", ethertype) + head + l4

    def packets_by_rule():
        return {name: c["packets"] for name, c in rule_counters(nft, job["table"]).items()}

    before = packets_by_rule()
    hits = []
    for p in job["packets"]:
        sock, mac = peers[p["iif"]]
        subprocess.run(["conntrack", "-F"], timeout=30, capture_output=True)
        sock.send(frame(p, mac))
        after = packets_by_rule()
        moved = sorted(name for name in after if after[name] != before.get(name, 0))
        hits.append(moved)
        before = after
    print(json.dumps(hits))
''')


def _inside(net, rng) -> str:
    net = ipaddress.ip_network(net, strict=False)
    return str(net.network_address + rng.randrange(net.num_addresses))


def _address_for(matches, family: str, rng, outside_pool) -> str:
    own = [m for m in matches if m.family == family and not m.netmask]
    if own and rng.random() < 0.75:
        return _inside(rng.choice(own).address, rng)
    return rng.choice(outside_pool[family])


POOL = {"ipv4": ["10.1.2.3", "10.1.200.9", "10.200.0.1", "192.0.2.77", "198.51.100.5", "203.0.113.9",
                 "10.0.0.7", "10.9.0.7"],
        "ipv6": ["2001:db8::7", "2001:db8:1::5", "2001:db8:abcd::1", "2001:db8:1:0:ffff::9"]}


def packets_for(model, rng, count: int) -> list:
    """Packets aimed at the rules: mostly inside a rule's addresses, ports and protocol,
    often just beside them, on the LAN devices the rules name or `lan0`."""
    wans = set(model.wan_devices)
    lans = sorted({r.src_iface for r in model.rules if r.src_iface and r.src_iface not in wans} | {LAN})
    rules = list(model.rules)
    out = []
    for _ in range(count):
        rule = rng.choice(rules)
        family = rng.choice(rule.families) if rng.random() < 0.85 else rng.choice(["ipv4", "ipv6"])
        if rule.proto != "all" and rng.random() < 0.8:
            proto = rule.proto if not rule.proto.isdigit() else \
                next((n for n, v in PROTO_NUMBERS.items() if v == int(rule.proto)), "tcp")
        else:
            proto = rng.choice(["tcp", "udp", "tcp", "icmp" if family == "ipv4" else "icmpv6", "gre", "sctp"])
        if family == "ipv6" and proto == "icmp":
            proto = "icmpv6"
        if family == "ipv4" and proto == "icmpv6":
            proto = "icmp"

        def port(ranges):
            if ranges and rng.random() < 0.75:
                lo, hi = rng.choice(ranges)
                return rng.choice([lo, hi, rng.randint(lo, hi)])
            return rng.choice([53, 80, 443, 999, 1000, 2000, 2001, 8080, 40000])
        iif = rule.src_iface if rule.src_iface in lans and rng.random() < 0.7 else rng.choice(lans)
        out.append({"iif": iif, "family": family, "proto": proto, "proto_number": PROTO_NUMBERS[proto],
                    "src": _address_for(rule.src, family, rng, POOL_SRC),
                    "dst": _address_for(rule.dest, family, rng, POOL),
                    "sport": port(rule.src_port), "dport": port(rule.dest_port)})
    return out


POOL_SRC = {"ipv4": ["192.168.1.20", "192.168.1.200", "10.1.2.3", "192.168.7.7", "10.0.0.7"],
            "ipv6": ["2001:db8:10::2", "2001:db8:1::5", "2001:db8::7"]}


def kernel_hits(files: dict, model, packets: list, workdir: Path) -> list:
    ruleset = workdir / "ruleset.nft"
    ruleset.write_text(files["ruleset.nft"])
    lans = sorted({p["iif"] for p in packets})
    job = {"wans": model.wan_devices or ["wan0"], "lans": lans, "packets": packets, "table": model.table}
    proc = subprocess.run(check.unshare_argv() + [sys.executable, "-c", PROBE, str(ruleset)],
                          input=json.dumps(job), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_kernel_agrees_with_explain(build, packets: list, workdir: Path) -> None:
    model = build.model
    hits = kernel_hits(build.files, model, packets, workdir)
    alive = frozenset()
    mismatches = []
    for p, hit in zip(packets, hits):
        pkt = Packet(p["src"], p["dst"], p["proto"], p["sport"] if p["proto_number"] in (6, 17, 132, 136) else None,
                     p["dport"] if p["proto_number"] in (6, 17, 132, 136) else None, p["iif"])
        expected = explain(model, pkt, alive)["rule"]
        if hit != ([expected] if expected else []):
            mismatches.append((p, hit, expected))
    assert not mismatches, mismatches[:5]
    assert any(hits), "no packet matched any rule: the test would prove nothing"


@pytest.mark.parametrize("example", [p.name for p in EXAMPLES])
def test_every_example_sends_each_packet_to_the_rule_explain_names(example, tmp_path):
    build = pipeline.build(str(ROOT / "examples" / example), map_devices=False)
    packets = packets_for(build.model, random.Random(example), 120)
    assert_kernel_agrees_with_explain(build, packets, tmp_path)


def test_a_thousand_generated_rules_agree_with_explain(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from rulegen import many_rules_config

    config = tmp_path / "many.uci"
    config.write_text(many_rules_config(1000, seed=3))
    build = pipeline.build(str(config), map_devices=False)
    assert build.files["ruleset.nft"].count(" vmap { ") > 10  # runs were compiled into maps
    packets = packets_for(build.model, random.Random(3), 300)
    assert_kernel_agrees_with_explain(build, packets, tmp_path)


# --- hypothesis: rule lists built to overlap ----------------------------------------------------

NETS4 = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "10.1.200.0/24", "192.0.2.0/24",
         "198.51.100.0/25", "203.0.113.9", "10.0.0.7/255.0.0.255"]
NETS6 = ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::/64", "2001:db8::7", "2001:db8:abcd::/48"]
SRC4 = ["192.168.1.0/24", "192.168.1.0/25", "10.1.2.3", "10.0.0.0/8"]
PORTS = ["443", "80,443", "1000-2000", "53 853", "2000-2001", "999-1000", "8080"]
IFACES = ["lan0", "lan1", "br-guest"]


@st.composite
def rule_lists(draw):
    rules = []
    for i in range(draw(st.integers(2, 30))):
        rule = {"name": f"r{i}", "policy": draw(st.sampled_from(["p", "q", "default", "blackhole"]))}
        family = draw(st.sampled_from(["any", "ipv4", "ipv4", "ipv6"]))
        if family != "any":
            rule["family"] = family
        nets = NETS4 if family != "ipv6" else NETS6
        if family != "any" and draw(st.booleans()):
            rule["dest_ip"] = draw(st.lists(st.sampled_from(nets), min_size=1, max_size=3, unique=True))
        if family == "ipv4" and draw(st.integers(0, 3)) == 0:
            rule["src_ip"] = draw(st.lists(st.sampled_from(SRC4), min_size=1, max_size=2, unique=True))
        proto = draw(st.sampled_from(["all", "all", "tcp", "udp", "icmp" if family != "ipv6" else "icmpv6",
                                      "47", "6", "sctp"]))
        rule["proto"] = proto
        if proto in ("all", "tcp", "udp", "6", "sctp") and draw(st.booleans()):
            rule[draw(st.sampled_from(["dest_port", "dest_port", "src_port"]))] = draw(st.sampled_from(PORTS))
        if draw(st.integers(0, 3)) == 0:
            rule["src_iface"] = draw(st.sampled_from(IFACES))
        if family != "any" and draw(st.integers(0, 8)) == 0:
            rule["ipset"] = "streaming"
        if draw(st.integers(0, 6)) == 0:
            rule["logging"] = True
        if rule["policy"] in ("p", "q") and draw(st.integers(0, 8)) == 0:
            rule["sticky"] = True
        rules.append(rule)
    return rules


BASE = {"global": {"logging": True},
        "interfaces": {"wan": {"ifname": "eth0", "track": {"method": "none"}},
                       "wan6": {"ifname": "eth0", "family": "ipv6", "track": {"method": "none"}},
                       "wanb": {"ifname": "eth1", "track": {"method": "none"}}},
        "members": {"m": {"interface": "wan"}, "m6": {"interface": "wan6"}, "mb": {"interface": "wanb"}},
        "policies": {"p": {"members": ["m", "m6"]}, "q": {"members": ["mb", "m"], "mode": "failover"}}}


@settings(max_examples=8, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rule_lists(), st.integers(0, 2**32 - 1))
def test_generated_rule_lists_send_each_packet_to_the_rule_explain_names(rules, seed):
    with tempfile.TemporaryDirectory(prefix="netpath-rules-") as tmp:
        config = Path(tmp) / "rules.yaml"
        config.write_text(yaml.safe_dump(dict(BASE, rules=rules + [{"name": "last", "policy": "p"}])))
        build = pipeline.build(str(config), map_devices=False)
        packets = packets_for(build.model, random.Random(seed), 100)
        assert_kernel_agrees_with_explain(build, packets, Path(tmp))


RELOAD = textwrap.dedent(r'''
    import json, sys
    from netpath.agent import bundle as bundle_mod
    from netpath.agent.apply import masks_for, transaction
    from netpath.agent.metrics import rule_counters
    from netpath.agent.nft import Nft
    nft = Nft()
    out = []
    for directory in sys.argv[1:]:
        b = bundle_mod.read(directory)
        live = nft.list_json(f"table inet {b.model.table}")
        nft.load(transaction(b, masks_for(b.model, set()), {}, live))
        listing = nft.list_json(f"table inet {b.model.table}")["nftables"]
        out.append({"counters": sorted(rule_counters(nft, b.model.table)),
                    "matched": sorted(o["chain"]["name"] for o in listing
                                      if "chain" in o and o["chain"]["name"].startswith("matched_"))})
    print(json.dumps(out))
''')


def test_a_reload_drops_the_counters_and_chains_of_removed_rules(tmp_path):
    rules = [{"name": f"r{i}", "dest_ip": [f"10.{i}.0.0/16"], "family": "ipv4", "policy": "p"} for i in range(4)]
    bundles = []
    for name, chosen in (("before", rules), ("after", rules[1:3])):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(dict(BASE, rules=chosen)))
        result = pipeline.build(str(config), map_devices=False)
        from netpath.compiler import bundle

        bundle.write(tmp_path / name, result.files)
        bundles.append(str(tmp_path / name))
    proc = subprocess.run(check.unshare_argv() + [sys.executable, "-c", RELOAD, *bundles],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before, after = json.loads(proc.stdout)
    assert before == {"counters": ["r0", "r1", "r2", "r3"],
                      "matched": ["matched_r0", "matched_r1", "matched_r2", "matched_r3"]}
    assert after == {"counters": ["r1", "r2"], "matched": ["matched_r1", "matched_r2"]}
