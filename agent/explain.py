"""`netpath explain`: where one packet goes and why, read from the same resolved model the
templates were rendered from (the bundle's manifest). Pure: it inspects nothing on the
host, so it answers the same on a build machine as on the router.

It walks the packet the way the ruleset does: inbound on a WAN -> destinations that keep
the main table -> user rules in order (first match wins) -> the policy's decision in the
state where the interfaces in `down` are dead -> mark -> ip rule -> routing table.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from dataclasses import dataclass

from . import bundle as bundle_mod
from .model import Model, Rule
from .policy import decide, hash_value

PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "esp": 50, "ah": 51, "gre": 47,
                 "sctp": 132, "udplite": 136}
KEEP_MAIN_V4 = [ipaddress.ip_network(n) for n in ("224.0.0.0/4", "255.255.255.255/32", "127.0.0.0/8")]
KEEP_MAIN_V6 = [ipaddress.ip_network(n) for n in ("fe80::/10", "ff00::/8", "::1/128")]


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str = "tcp"
    sport: "int | None" = None
    dport: "int | None" = None
    iif: str = ""

    @property
    def family(self) -> str:
        return "ipv6" if ipaddress.ip_address(self.src).version == 6 else "ipv4"


def load_model(directory) -> Model:
    return bundle_mod.read(directory).model


def _in_match(address: str, match) -> bool:
    addr = ipaddress.ip_address(address)
    if match.netmask:
        mask = int(ipaddress.ip_address(match.netmask))
        return int(addr) & mask == int(ipaddress.ip_address(match.address))
    return addr in ipaddress.ip_network(match.address, strict=False)


def _ports_match(port, ranges) -> bool:
    return port is not None and any(lo <= port <= hi for lo, hi in ranges)


def why_not(rule: Rule, pkt: Packet, family: str) -> "str | None":
    """None when `rule` matches `pkt`, else the first reason it does not."""
    if family not in rule.families:
        return f"family {family} (rule is {'/'.join(rule.families)})"
    if rule.src_iface and rule.src_iface != pkt.iif:
        return f"incoming interface {pkt.iif or '(router itself)'} is not {rule.src_iface}"
    proto = pkt.proto.lower()
    if rule.proto != "all":
        wanted = int(rule.proto) if rule.proto.isdigit() else PROTO_NUMBERS.get(rule.proto)
        if PROTO_NUMBERS.get(proto, -1) != wanted:
            return f"protocol {proto} is not {rule.proto}"
    elif (rule.src_port or rule.dest_port) and proto not in ("tcp", "udp"):
        return f"ports need tcp or udp, the packet is {proto}"
    src = [m for m in rule.src if m.family == family]
    if rule.src and not any(_in_match(pkt.src, m) for m in src):
        return f"source {pkt.src} is not in {', '.join(_fmt(m) for m in rule.src)}"
    dst = [m for m in rule.dest if m.family == family]
    if rule.dest and not any(_in_match(pkt.dst, m) for m in dst):
        return f"destination {pkt.dst} is not in {', '.join(_fmt(m) for m in rule.dest)}"
    if rule.src_set:
        return f"source set {rule.src_set} is filled at run time; explain assumes {pkt.src} is not in it"
    if rule.dest_set:
        return f"destination set {rule.dest_set} is filled at run time; explain assumes {pkt.dst} is not in it"
    if rule.src_port and not _ports_match(pkt.sport, rule.src_port):
        return f"source port {pkt.sport} is not in {_fmt_ports(rule.src_port)}"
    if rule.dest_port and not _ports_match(pkt.dport, rule.dest_port):
        return f"destination port {pkt.dport} is not in {_fmt_ports(rule.dest_port)}"
    return None


def _fmt(m) -> str:
    return f"{m.address}/{m.netmask}" if m.netmask else m.address


def _fmt_ports(ranges) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def default_down(model: Model) -> frozenset:
    return frozenset(i.name for i in model.interfaces if i.enabled and i.track.initial_state == "offline")


def explain(model: Model, pkt: Packet, down: "frozenset | None" = None) -> dict:
    family = pkt.family
    if ipaddress.ip_address(pkt.dst).version != ipaddress.ip_address(pkt.src).version:
        raise ValueError("source and destination are of different families")
    down = default_down(model) if down is None else frozenset(down)
    alive_ifaces = {i.name for i in model.interfaces if i.enabled and i.name not in down}
    result = {"packet": pkt.__dict__ | {"family": family}, "rule": None, "skipped": [],
              "target": "main", "policy": None, "alive": sorted(alive_ifaces),
              "decision": None, "mark": None, "table": None, "interface": None, "route": "main table"}

    for iface in model.interfaces:
        if iface.enabled and pkt.iif and iface.device == pkt.iif and iface.family == family:
            result.update(target="inbound", interface=iface.name, mark=f"0x{iface.mark:08x}",
                          table=iface.table, route=f"main table for this packet; the flow is marked "
                          f"{iface.name}, so replies leave through {iface.device} (table {iface.table})")
            return result
    dst = ipaddress.ip_address(pkt.dst)
    if any(dst in net for net in (KEEP_MAIN_V4 if family == "ipv4" else KEEP_MAIN_V6)):
        result["route"] = "main table (local, link-local or multicast destination)"
        return result

    for rule in model.rules:
        reason = why_not(rule, pkt, family)
        if reason:
            result["skipped"].append({"rule": rule.name, "why": reason})
            continue
        result["rule"] = rule.name
        if rule.target_kind == "special":
            return _special(model, result, rule.target)
        policy = model.policy(rule.target)
        result.update(target="policy", policy=policy.name, sticky=rule.sticky)
        members = policy.policy_members()
        alive = frozenset(m.name for m in members if m.interface in alive_ifaces)
        d = decide(policy.mode, policy.last_resort, members, alive, family)
        decision = {"kind": d.kind, "mode": policy.mode, "shares": d.shares(),
                    "tier_metric": d.tier_metric if d.kind != "last_resort" else None,
                    "alive_members": sorted(m.name for m in members if m.name in alive and m.family == family),
                    "interface": None, "last_resort": d.last_resort or None}
        result["decision"] = decision
        if d.kind == "last_resort":
            return _special(model, result, d.last_resort)
        if d.kind == "single":
            chosen = d.interface
        elif d.selector == "jhash":
            packed = ipaddress.ip_address(pkt.src).packed
            slot = hash_value(packed, policy.hash_seed, d.modulus)
            decision.update(slot=slot, modulus=d.modulus)
            chosen = d.interface_for(slot)
        else:
            chosen = None  # numgen: a share, not a fixed interface
        if chosen is None:
            result["route"] = "one of " + ", ".join(
                f"{name} ({share:.1f}%)" for name, share in d.shares().items())
            return result
        iface = model.interface(chosen)
        decision["interface"] = chosen
        result.update(interface=chosen, mark=f"0x{iface.mark:08x}", table=iface.table,
                      route=f"table {iface.table} via {iface.device}")
        return result
    result["route"] = "main table (no rule matched)"
    return result


def _special(model: Model, result: dict, kind: str) -> dict:
    mark = model.special[kind]["mark"]
    result.update(target=result["target"] if result["target"] == "policy" else "special",
                  mark=f"0x{mark:08x}",
                  route={"default": "main table", "unreachable": "unreachable (ICMP to the sender)",
                         "blackhole": "blackhole (dropped silently)"}[kind])
    return result


def format_text(result: dict) -> str:
    pkt = result["packet"]
    lines = [f"packet {pkt['proto']} {pkt['src']}"
             f"{':' + str(pkt['sport']) if pkt['sport'] else ''} -> {pkt['dst']}"
             f"{':' + str(pkt['dport']) if pkt['dport'] else ''}"
             f"{' in ' + pkt['iif'] if pkt['iif'] else ''} ({pkt['family']})"]
    for skipped in result["skipped"]:
        lines.append(f"  rule {skipped['rule']}: no match: {skipped['why']}")
    if result["target"] == "inbound":
        lines.append(f"  inbound on WAN {result['interface']}")
    elif result["rule"]:
        lines.append(f"  rule {result['rule']}: match")
    d = result["decision"]
    if result["policy"]:
        lines.append(f"  policy {result['policy']} ({d['mode']}), alive members: "
                     f"{', '.join(d['alive_members']) or 'none'}")
        if d["kind"] == "last_resort":
            lines.append(f"  no member alive: last_resort {d['last_resort']}")
        else:
            shares = ", ".join(f"{n} {s:.1f}%" for n, s in d["shares"].items())
            lines.append(f"  metric {d['tier_metric']} tier spread: {shares}")
            if "slot" in d:
                lines.append(f"  hash slot {d['slot']} of {d['modulus']} -> {d['interface']}")
    if result["mark"]:
        lines.append(f"  mark {result['mark']}")
    lines.append(f"  route: {result['route']}")
    return "\n".join(lines)


def main(argv, prog="netpath explain") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Show where a packet goes and why.")
    p.add_argument("bundle")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--proto", default="tcp", choices=sorted(PROTO_NUMBERS))
    p.add_argument("--sport", type=int)
    p.add_argument("--dport", type=int)
    p.add_argument("--iif", default="", help="incoming device (empty: sent by the router itself)")
    p.add_argument("--down", action="append", default=None, metavar="IFACE",
                   help="treat this interface as down (repeatable)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        model = load_model(args.bundle)
    except bundle_mod.BundleError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    names = {i.name for i in model.interfaces}
    for name in args.down or []:
        if name not in names:
            print(f"{prog}: --down {name}: no such interface (have: {', '.join(sorted(names))})",
                  file=sys.stderr)
            return 2
    try:
        for address in (args.src, args.dst):
            ipaddress.ip_address(address)
        pkt = Packet(args.src, args.dst, args.proto, args.sport, args.dport, args.iif)
        result = explain(model, pkt, frozenset(args.down) if args.down is not None else None)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1, sort_keys=True) if args.json else format_text(result))
    return 0
