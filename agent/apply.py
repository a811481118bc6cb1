"""Load a bundle onto this host: policy routing (ip rules, one table per WAN) and the nft
ruleset with the state variant of every policy, in one transaction.

`netpath apply` and the agent (start-up and reload) call the same `apply()`. It is
idempotent: applying the same bundle twice changes nothing (rules and routes are diffed
against the kernel, chains are replaced, sets keep their contents). `remove()` takes away
what NetPath installed and nothing else: its nft table, its ip rules and its routes
(both tagged with NetPath's route protocol).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import bundle as bundle_mod, owner
from .model import Model
from .nft import Nft, NftError
from .policy import mask_of

IP_TIMEOUT = 15
DEFAULT_TABLE = "netpath"
DEFAULT_PROTOCOL = 93


class ApplyError(Exception):
    """The kernel refused; the running state was left as it was."""


# --- reading the host ----------------------------------------------------------------------


def ip_json(family: str, *args) -> list:
    argv = ["ip", "-j", "-4" if family == "ipv4" else "-6", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def ip_batch(family: str, lines: list) -> None:
    if not lines:
        return
    argv = ["ip", "-4" if family == "ipv4" else "-6", "-batch", "-"]
    proc = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=IP_TIMEOUT)
    if proc.returncode != 0:
        raise ApplyError(f"ip -batch failed: {proc.stderr.strip()} (lines: {'; '.join(lines)})")


@dataclass
class Link:
    device: str
    exists: bool
    up: bool = False
    addresses: list = field(default_factory=list)  # global addresses of the interface's family
    networks: list = field(default_factory=list)  # connected prefixes (main table) of the device
    gateway: str = ""  # from the config, else the main table's default route via the device


def read_link(iface) -> Link:
    fam = iface.family
    links = ip_json(fam, "link", "show", "dev", iface.device) if _device_exists(iface.device) else []
    if not links:
        return Link(iface.device, exists=False)
    info = links[0]
    up = "UP" in info.get("flags", []) and "NO-CARRIER" not in info.get("flags", []) \
        and info.get("operstate") not in ("DOWN", "LOWERLAYERDOWN")
    addresses = []
    for entry in ip_json(fam, "addr", "show", "dev", iface.device, "scope", "global"):
        for a in entry.get("addr_info", []):
            if a.get("local"):
                addresses.append(a["local"])
    networks, gateway = [], iface.gateway
    for route in ip_json(fam, "route", "show", "table", "main", "dev", iface.device):
        dst = route.get("dst", "")
        if dst == "default":
            if not gateway and route.get("gateway"):
                gateway = route["gateway"]
        elif route.get("scope") == "link" or route.get("protocol") == "kernel":
            if dst and not dst.startswith("fe80"):
                networks.append(str(ipaddress.ip_network(dst if "/" in dst else
                                                         f"{dst}/{32 if fam == 'ipv4' else 128}",
                                                         strict=False)))
    return Link(iface.device, True, up, addresses, sorted(set(networks)), gateway)


def _device_exists(device: str) -> bool:
    return Path("/sys/class/net", device).exists()


def read_links(model: Model) -> dict:
    """interface name -> Link, for the enabled interfaces."""
    return {i.name: read_link(i) for i in model.interfaces if i.enabled}


# --- policy routing --------------------------------------------------------------------------


def _rule_key(fields: dict) -> tuple:
    def num(v):
        return int(v, 0) if isinstance(v, str) else int(v)

    src = fields.get("src", "all")
    if src != "all" and fields.get("srclen") is not None:
        src = f"{src}/{fields['srclen']}"
    if src != "all" and "/" not in src:
        src = f"{src}/{ipaddress.ip_address(src).max_prefixlen}"
    return (
        int(fields["priority"]), src, fields.get("oif", ""),
        num(fields["fwmark"]) if "fwmark" in fields else None,
        num(fields["fwmask"]) if "fwmask" in fields else None,
        str(fields.get("table", "")), fields.get("action", ""),
        fields.get("suppress_prefixlen"),
    )


def parse_rule_line(line: str) -> dict:
    """`rule add pref 2001 fwmark 0x100/0x3f00 lookup 1001 protocol 93` -> fields as `ip -j` names them."""
    tokens = line.split()
    assert tokens[:2] == ["rule", "add"], line
    out: dict = {}
    it = iter(tokens[2:])
    for token in it:
        if token == "pref":
            out["priority"] = int(next(it))
        elif token == "oif":
            out["oif"] = next(it)
        elif token == "from":
            out["src"] = next(it)
        elif token == "fwmark":
            mark, _, mask = next(it).partition("/")
            out["fwmark"], out["fwmask"] = mark, mask
        elif token == "lookup":
            out["table"] = next(it)
        elif token == "suppress_prefixlength":
            out["suppress_prefixlen"] = int(next(it))
        elif token in ("unreachable", "blackhole"):
            out["action"] = token
        elif token == "protocol":
            out["protocol"] = next(it)
    return out


def desired_rules(b: bundle_mod.Bundle, links: dict) -> dict:
    """family -> {key: rule line} for every ip rule NetPath wants now."""
    model = b.model
    wanted = {"ipv4": {}, "ipv6": {}}
    for entry in b.manifest["routes"]:
        for line in b.text(entry["file"]).splitlines():
            if line.startswith("rule add "):
                wanted[entry["family"]][_rule_key(parse_rule_line(line))] = line
    for iface in model.interfaces:
        link = links.get(iface.name)
        if not iface.enabled or not link or not link.exists:
            continue
        for address in link.addresses:
            line = (f"rule add pref {iface.pref_from} from {address} lookup {iface.table} "
                    f"protocol {model.route_protocol}")
            wanted[iface.family][_rule_key(parse_rule_line(line))] = line
    return wanted


# mwan3 puts its ip rules at 1000+id (iif), 2000+id (fwmark lookup, and its blackhole and
# unreachable marks) and 3000+id (fwmark unreachable), without a protocol. NetPath's own rules
# sit in the same ranges, tagged with its route protocol.
MWAN3_PREFS = range(1001, 4000)


def mwan3_rules(protocol: int) -> list:
    """ip rules that look like a running mwan3's (both families), as `ip rule` prints them:
    NetPath and mwan3 would fight over the same marks and preferences."""
    found = []
    for family in ("ipv4", "ipv6"):
        for entry in ip_json(family, "rule", "show"):
            if str(entry.get("protocol", "")) == str(protocol) or entry.get("priority") not in MWAN3_PREFS:
                continue
            if "fwmark" in entry or entry.get("iif"):
                match = f"fwmark {entry['fwmark']}/{entry.get('fwmask', '0xffffffff')}" if "fwmark" in entry \
                    else f"iif {entry['iif']}"
                target = entry.get("action") if entry.get("action") in ("unreachable", "blackhole") \
                    else f"lookup {entry.get('table', '?')}"
                found.append(f"{entry['priority']}: {match} {target}")
    return found


def rule_lines(wanted: dict, protocol: int) -> dict:
    """family -> the `ip -batch` lines that make NetPath's ip rules exactly `wanted` (reads the
    kernel, changes nothing; rules of other protocols are never named)."""
    out = {}
    for family, rules in wanted.items():
        present = {}
        for entry in ip_json(family, "rule", "show"):
            if str(entry.get("protocol", "")) == str(protocol):
                present[_rule_key(entry)] = entry
        lines = [_delete_line(entry, protocol) for key, entry in present.items() if key not in rules]
        lines += [line for key, line in rules.items() if key not in present]
        if lines:
            out[family] = lines
    return out


def sync_rules(wanted: dict, protocol: int) -> int:
    """Make NetPath's ip rules exactly `wanted`; touch nothing else. Returns changes made."""
    return run_lines(rule_lines(wanted, protocol))


def run_lines(lines: dict) -> int:
    """Run {family: ip -batch lines}; returns how many lines ran."""
    for family, batch in lines.items():
        ip_batch(family, batch)
    return sum(len(batch) for batch in lines.values())


def _delete_line(entry: dict, protocol: int) -> str:
    parts = ["rule", "del", "pref", str(entry["priority"])]
    if entry.get("src", "all") != "all":
        parts += ["from", entry["src"] + (f"/{entry['srclen']}" if entry.get("srclen") else "")]
    if entry.get("oif"):
        parts += ["oif", entry["oif"]]
    if "fwmark" in entry:
        parts += ["fwmark", f"{entry['fwmark']}/{entry.get('fwmask', '0xffffffff')}"]
    if entry.get("action") in ("unreachable", "blackhole"):
        parts.append(entry["action"])
    elif entry.get("table"):
        parts += ["lookup", str(entry["table"])]
    if entry.get("suppress_prefixlen") is not None:
        parts += ["suppress_prefixlength", str(entry["suppress_prefixlen"])]
    return " ".join(parts + ["protocol", str(protocol)])


def route_lines(model: Model, links: dict) -> dict:
    """family -> the `ip -batch` lines that give each WAN table the default route via that
    WAN and take stale NetPath routes away (reads the kernel, changes nothing)."""
    out = {}
    tables = {}
    for iface in model.interfaces:
        link = links.get(iface.name)
        if iface.enabled and link and link.exists:
            tables[iface.table] = (iface, link)
    for family in ("ipv4", "ipv6"):
        present = {}
        for route in ip_json(family, "route", "show", "table", "all", "proto", str(model.route_protocol)):
            present.setdefault(int(route.get("table", 0) or 0), []).append(route)
        lines = []
        for table, routes in present.items():
            owner = tables.get(table)
            for route in routes:
                keep = owner and owner[0].family == family and route.get("dst") == "default" \
                    and route.get("dev") == owner[1].device \
                    and route.get("gateway", "") == owner[1].gateway
                if not keep:
                    lines.append(f"route del {route.get('dst', 'default')} table {table} "
                                 f"proto {model.route_protocol}")
        for table, (iface, link) in sorted(tables.items()):
            if iface.family != family:
                continue
            if any(r.get("dst") == "default" and r.get("dev") == link.device
                   and r.get("gateway", "") == link.gateway for r in present.get(table, [])):
                continue
            via = f"via {link.gateway} " if link.gateway else ""
            onlink = "onlink " if link.gateway else ""
            lines.append(f"route replace default {via}dev {link.device} table {table} "
                         f"proto {model.route_protocol} {onlink}".strip())
        if lines:
            out[family] = lines
    return out


def sync_routes(model: Model, links: dict) -> int:
    """Each WAN table holds the default route via that WAN; stale NetPath routes go."""
    return run_lines(route_lines(model, links))


# --- the ruleset -----------------------------------------------------------------------------


def initial_alive(model: Model, links: dict) -> set:
    """Interfaces usable right after apply: enabled, device present and up, initial_state online."""
    return {i.name for i in model.interfaces
            if i.enabled and i.track.initial_state == "online"
            and links.get(i.name) is not None and links[i.name].exists and links[i.name].up}


def masks_for(model: Model, alive_interfaces: set) -> dict:
    """policy name -> alive-mask of its state variant."""
    out = {}
    for policy in model.policies:
        members = policy.policy_members()
        alive = {m.name for m in members if m.interface in alive_interfaces}
        out[policy.name] = mask_of(members, alive)
    return out


_OBJECT_RE = re.compile(r"^\t(chain|set|map|counter) (\S+) \{", re.M)


def transaction(b: bundle_mod.Bundle, masks: dict, links: dict, live: dict) -> str:
    """One nft transaction: replace every chain, keep set contents and rule counters, swap in
    the variants."""
    model = b.model
    table = f"inet {model.table}"
    ruleset = b.text(b.manifest["ruleset"])
    parts = []
    if live:
        wanted = {(kind if kind != "map" else "set", name) for kind, name in _OBJECT_RE.findall(ruleset)}
        parts.append(f"flush table {table}")
        for obj in live.get("nftables", []):
            for kind in ("chain", "set", "map", "counter"):
                if kind in obj and obj[kind].get("table") == model.table:
                    name = obj[kind]["name"]
                    if ("set" if kind == "map" else kind, name) not in wanted:
                        parts.append(f"delete {kind} {table} {name}")
    parts.append(ruleset)
    for policy in model.policies:
        parts.append(b.state_text(policy.name, masks[policy.name]))
    parts += bypass_lines(model, links)
    return "\n".join(p.rstrip("\n") for p in parts) + "\n"


BYPASS_SETS = (("ipv4", "bypass_v4"), ("ipv6", "bypass_v6"))


def bypass_networks(model: Model, links: dict) -> dict:
    """set name -> the WAN links' own networks (sorted), which keep the main table. These
    sets are the agent's: it fills them, and puts them right when someone else changes them."""
    return {set_name: sorted({n for i in model.interfaces if i.family == family and links.get(i.name)
                              for n in links[i.name].networks})
            for family, set_name in BYPASS_SETS}


def bypass_lines(model: Model, links: dict) -> list:
    """Refill the sets of the WAN links' own networks."""
    table = f"inet {model.table}"
    lines = []
    for set_name, nets in bypass_networks(model, links).items():
        lines.append(f"flush set {table} {set_name}")
        if nets:
            lines.append(f"add element {table} {set_name} {{ {', '.join(nets)} }}")
    return lines


@dataclass
class Result:
    masks: dict
    alive: set
    rule_changes: int
    route_changes: int
    links: dict


def apply(b: bundle_mod.Bundle, alive: "set | None" = None, nft: "Nft | None" = None,
          links: "dict | None" = None) -> Result:
    """Apply bundle `b` with the interfaces in `alive` usable (default: their initial state).

    The nft transaction goes first: if the kernel rejects it, nothing else changed."""
    model = b.model
    nft = nft or Nft()
    links = links if links is not None else read_links(model)
    if alive is None:
        alive = initial_alive(model, links)
    masks = masks_for(model, alive)
    live = nft.list_json(f"table inet {model.table}")
    text = transaction(b, masks, links, live)
    try:
        nft.load(text)
    except NftError as first:
        if not live:
            raise ApplyError(explain_rejection(str(first), text)) from None
        # A set whose type changed cannot be redeclared in place: replace the whole table
        # (set contents are lost, chains and marks are not).
        try:
            nft.load(f"delete table inet {model.table}\n" + transaction(b, masks, links, {}))
        except NftError as second:
            raise ApplyError(explain_rejection(str(second), text)) from None
    rule_changes, route_changes = sync_routing(b, links)
    return Result(masks, set(alive), rule_changes, route_changes, links)


def sync_routing(b: bundle_mod.Bundle, links: dict) -> tuple:
    """NetPath's ip rules and WAN tables for `links`; returns (rule changes, route changes)."""
    plan = routing_plan(b, links)
    return run_lines(plan["rule"]), run_lines(plan["route"])


def routing_plan(b: bundle_mod.Bundle, links: dict) -> dict:
    """{"rule": {family: lines}, "route": {family: lines}}: what sync_routing would run now
    (both empty when the kernel already holds NetPath's rules and WAN tables for `links`)."""
    return {"rule": rule_lines(desired_rules(b, links), b.model.route_protocol),
            "route": route_lines(b.model, links)}


def explain_rejection(message: str, text: str) -> str:
    """Name the config section of the rule nft rejected (from its comment)."""
    lines = text.splitlines()
    found = []
    for m in re.finditer(r"^[^:\n]*:(\d+):\d+(?:-\d+)?: Error: (.*)$", message, re.M):
        n = int(m.group(1))
        source = lines[n - 1] if 0 < n <= len(lines) else ""
        section = re.search(r'comment "([^"]*)"', source)
        found.append(f"{m.group(2)}" + (f" (in {section.group(1)})" if section else f" (line {n})"))
    if not found:  # kernel-side errors: nft quotes the offending statement under the message
        error = ""
        for line in message.splitlines():
            if "Error:" in line:
                error = line.split("Error:", 1)[1].strip()
                continue
            section = re.search(r'comment "([^"]*)"', line)
            if error and section:
                found.append(f"{error} (in {section.group(1)})")
                error = ""
    return "the kernel rejected the ruleset, the running one is unchanged: " + \
        ("; ".join(found) if found else message.splitlines()[0] if message else "no detail")


def offload_warnings(nft: Nft) -> list:
    """Flow offloading (fw4's flow_offloading) moves established flows past prerouting: their
    packets no longer see NetPath's chains, so a WAN change does not reach them."""
    found = []
    for obj in nft.list_json("flowtables").get("nftables", []):
        table = obj.get("flowtable")
        if table:
            found.append(f"flow offloading is on (flowtable {table.get('family')} {table.get('table')} "
                         f"{table.get('name')}): offloaded connections bypass NetPath's chains and keep "
                         "their uplink until they end; new connections follow NetPath")
    return found


def remove(table: str = DEFAULT_TABLE, protocol: int = DEFAULT_PROTOCOL, nft: "Nft | None" = None) -> None:
    """Take away NetPath's table, ip rules and routes (by its route protocol) and nothing else."""
    remove_table(table, nft or Nft())
    remove_routing(protocol)


def remove_table(table: str, nft: Nft) -> None:
    if nft.table_exists(table):
        nft.load(f"delete table inet {table}\n")


def remove_routing(protocol: int) -> None:
    """Every ip rule and route tagged with NetPath's route `protocol`, both families."""
    for family in ("ipv4", "ipv6"):
        ip_batch(family, [f"rule flush protocol {protocol}"])
        if ip_json(family, "route", "show", "table", "all", "proto", str(protocol)):
            ip_batch(family, [f"route flush table all proto {protocol}"])


def main(argv, prog="netpath apply") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Load a NetPath bundle on this host "
                                "(ip rules, routing tables, nft ruleset, initial states).")
    p.add_argument("bundle", nargs="?", help="bundle directory (from `netpath compile`)")
    p.add_argument("--remove", action="store_true", help="remove everything NetPath installed")
    p.add_argument("--down", action="append", default=[], metavar="IFACE",
                   help="treat this interface as down (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="change the kernel even while an agent owns it (a running agent repairs its own state)")
    args = p.parse_args(argv)
    claim = None
    if not args.force:
        try:
            claim = owner.claim("apply")
        except owner.Owned as exc:
            print(f"{prog}: {exc}, and keeps that state in line with its own view: stop it first "
                  "(`/etc/init.d/netpath stop`), or use --force", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"{prog}: cannot take NetPath's lock {owner.lock_path()}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    try:
        return _main(p, args, prog)
    finally:
        if claim is not None:
            claim.release()


def _main(p, args, prog: str) -> int:
    try:
        if args.remove:
            table, protocol = DEFAULT_TABLE, DEFAULT_PROTOCOL
            if args.bundle:
                b = bundle_mod.read(args.bundle)
                table, protocol = b.model.table, b.model.route_protocol
            remove(table, protocol)
            print(f"removed NetPath's table inet {table}, its ip rules and routes (protocol {protocol})")
            return 0
        if not args.bundle:
            p.error("a bundle directory is needed (or --remove)")
        b = bundle_mod.read(args.bundle)
        model = b.model
        unknown = [d for d in args.down if d not in {i.name for i in model.interfaces}]
        if unknown:
            print(f"{prog}: --down {unknown[0]}: no such interface in the bundle", file=sys.stderr)
            return 2
        if not model.enabled:
            remove(model.table, model.route_protocol)
            print("NetPath is disabled in the config (globals enabled 0): removed its state, applied nothing")
            return 0
        links = read_links(model)
        alive = initial_alive(model, links) - set(args.down)
        nft = Nft()
        result = apply(b, alive=alive, nft=nft, links=links)
        offloaded = offload_warnings(nft)
    except bundle_mod.BundleError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except ApplyError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except (NftError, subprocess.SubprocessError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    states = ", ".join(f"{p}={m or 'none'}" for p, m in sorted(result.masks.items()))
    print(f"applied {args.bundle}: alive {', '.join(sorted(result.alive)) or 'none'}; states {states}; "
          f"{result.rule_changes} rule and {result.route_changes} route changes")
    for warning in offloaded:
        print(f"note: {warning}")
    for name, link in sorted(result.links.items()):
        if not link.exists:
            print(f"note: interface {name}: device {link.device} does not exist; treated as down")
        elif not link.gateway and model.interface(name).family == "ipv4":
            print(f"note: interface {name}: no gateway known for {link.device}; its table routes on-link")
    return 0
