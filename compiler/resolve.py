"""Stage 3: compute every derived value into the frozen model the templates render.

Interface ids (and so marks and routing tables) stay stable across recompiles: an
interface keeps the id it had in the previous bundle, or the one its `id` option names;
new interfaces take the lowest free id. Reordering sections never re-routes flows.
"""

from __future__ import annotations

import ipaddress

from netpath.agent import marks
from netpath.agent.model import Interface, Match, Member, Model, Policy, Rule, Track
from netpath.agent.policy import alive_masks, policy_seed

from .validate import SPECIAL_TARGETS, prefix_family

# oif rules for probes bound to a WAN; non-default routes of main (LAN, connected networks)
# before any mark; marks; guards against leaking into main; sockets bound by source only.
PREF_OIF, PREF_MAIN, PREF_MARK, PREF_GUARD, PREF_FROM = 1000, 1280, 2000, 3000, 4000


def state_file(policy: str, mask: str) -> str:
    return f"states/{policy}/{mask or 'none'}.nft"


def assign_ids(cfg: dict, previous: dict) -> dict:
    """name -> id: explicit `id` options first, then ids from the previous bundle, then the
    lowest free ones in config order."""
    ids: dict = {}
    taken: set = set()
    for name, iface in cfg["interfaces"].items():
        if "id" in iface:
            ids[name] = iface["id"]
            taken.add(iface["id"])
    limit = marks.max_interfaces(cfg["globals"]["mark_mask"])
    for name in cfg["interfaces"]:
        old = previous.get(name)
        if name not in ids and old and old not in taken and old <= limit:
            ids[name] = old
            taken.add(old)
    free = (i for i in range(1, limit + 1) if i not in taken)
    for name in cfg["interfaces"]:
        if name not in ids:
            ids[name] = next(free)
    return ids


def _everything(match: Match) -> bool:
    """An address match of length 0 (0.0.0.0/0, ::/0, a/0.0.0.0) matches every address."""
    if match.netmask:
        return int(ipaddress.ip_address(match.netmask)) == 0
    return "/" in match.address and ipaddress.ip_network(match.address, strict=False).prefixlen == 0


def catch_all(rule: Rule) -> bool:
    """Whether a rule matches every connection of its families: proto all, no ports, device
    or sets, and no address match narrower than /0. LuCI's "Add rule" inserts a new rule above
    the first such rule (luci/.../netpath/schema.js catchAll follows the same definition)."""
    return (rule.proto == "all" and not (rule.src_port or rule.dest_port or rule.src_iface
                                         or rule.src_set or rule.dest_set)
            and all(_everything(m) for m in rule.src + rule.dest))


def shadowed_rules(rules) -> list:
    """Warnings for rules that can never match: for each family they cover, an earlier rule
    already matches every connection (rules are tried in order, the first match decides)."""
    covered: dict = {}  # family -> the first rule that matches all of it
    warnings = []
    for rule in rules:
        earlier = [covered[f] for f in rule.families if f in covered]
        if len(earlier) == len(rule.families):
            by = list(dict.fromkeys(earlier))
            who = f"rule '{by[0]}' matches" if len(by) == 1 else f"rules '{by[0]}' and '{by[1]}' match"
            what = f"every {rule.families[0]} connection" if len(rule.families) == 1 else "every connection"
            warnings.append(f"rule '{rule.name}' can never match: {who} {what} before it; move it above")
        if catch_all(rule):
            for family in rule.families:
                covered.setdefault(family, rule.name)
    return warnings


def resolve(cfg: dict, locator, previous_ids: "dict | None" = None, digest: str = "",
            devices: "dict | None" = None, incoming: "dict | None" = None) -> Model:
    """`devices`: interface name -> kernel device, for `ifname`s that name an OpenWrt
    logical interface (see compiler/devices.py); others use `ifname` as the device.
    `incoming`: the same for the rules' `src_iface` names (`lan` -> `br-lan`)."""
    g = cfg["globals"]
    mask = g["mark_mask"]
    ids = assign_ids(cfg, previous_ids or {})
    warnings = []
    devices = devices or {}

    interfaces = []
    for name, raw in cfg["interfaces"].items():
        ident = ids[name]
        t = raw["track"]
        track = Track(
            method=t["method"], targets=tuple(t["targets"]), reliability=t["reliability"],
            count=t["count"], timeout=t["timeout"], interval=t["interval"],
            failure_interval=t.get("failure_interval", t["interval"]),
            recovery_interval=t.get("recovery_interval", t["interval"]),
            keep_failure_interval=t["keep_failure_interval"], up=t["up"], down=t["down"],
            initial_state=t["initial_state"], check_quality=t["check_quality"],
            failure_latency=t["failure_latency"], recovery_latency=t["recovery_latency"],
            failure_loss=t["failure_loss"], recovery_loss=t["recovery_loss"], size=t["size"],
            max_ttl=t["max_ttl"], http_url=t.get("http_url", ""), http_status=t["http_status"],
            dns_query=t["dns_query"], dns_type=t["dns_type"])
        interfaces.append(Interface(
            name=name, enabled=raw["enabled"], device=devices.get(name, raw["ifname"]),
            logical=raw["ifname"] if name in devices else "", family=raw["family"],
            id=ident, mark=marks.id_to_mark(ident, mask), table=g["route_table_base"] + ident,
            gateway=raw.get("gateway", ""), masquerade=raw["masquerade"],
            flush_conntrack=tuple(raw["flush_conntrack"]), track=track,
            pref_oif=PREF_OIF + ident, pref_from=PREF_FROM + ident, pref_mark=PREF_MARK + ident,
            pref_guard=PREF_GUARD + ident, section=f"interface {name}"))
    interfaces.sort(key=lambda i: i.id)
    by_name = {i.name: i for i in interfaces}

    rules = []
    sticky_of: dict = {}
    user_sets = set()
    for raw in cfg["rules"]:
        fams = {prefix_family(p) for key in ("src_ip", "dest_ip") for p in raw.get(key, [])}
        if raw["family"] != "any":
            families = (raw["family"],)
        elif fams:
            families = tuple(sorted(fams))
        elif raw["proto"] == "icmp":
            families = ("ipv4",)
        elif raw["proto"] == "icmpv6":
            families = ("ipv6",)
        else:
            families = ("ipv4", "ipv6")
        special = raw["policy"] in SPECIAL_TARGETS
        chain = f"rule_{raw['name']}" if raw["sticky"] else ""
        if raw["sticky"]:
            sticky_of.setdefault(raw["policy"], []).append(raw["name"])
        for key in ("ipset", "src_ipset"):
            if raw.get(key):
                for fam in families:
                    user_sets.add((raw[key], fam))
        rules.append(Rule(
            name=raw["name"], index=raw["_index"], families=families, proto=raw["proto"],
            src=tuple(_match(p) for p in raw.get("src_ip", [])),
            dest=tuple(_match(p) for p in raw.get("dest_ip", [])),
            src_port=tuple(tuple(r) for r in raw.get("src_port", [])),
            dest_port=tuple(tuple(r) for r in raw.get("dest_port", [])),
            src_iface=_incoming_device(raw.get("src_iface", ""), by_name, incoming or {}),
            src_set=raw.get("src_ipset", ""),
            dest_set=raw.get("ipset", ""), sticky=raw["sticky"], timeout=raw["timeout"],
            logging=raw["logging"] and g["logging"],
            target_kind="special" if special else "policy", target=raw["policy"], chain=chain,
            section=f"rule {raw['name']}"))

    policies = []
    for name, raw in cfg["policies"].items():
        members = []
        for member_name in raw["members"]:
            m = cfg["members"][member_name]
            iface = by_name[m["interface"]]
            if not iface.enabled:
                warnings.append(f"policy '{name}': member '{member_name}' uses the disabled "
                                f"interface '{iface.name}' and is left out")
                continue
            members.append(Member(name=member_name, interface=iface.name, family=iface.family,
                                  metric=m["metric"], weight=m["weight"]))
        masks = alive_masks(len(members)) if members else [""]
        policies.append(Policy(
            name=name, mode=raw["mode"], last_resort=raw["last_resort"], members=tuple(members),
            chain=f"policy_{name}", sticky_rules=tuple(sticky_of.get(name, ())),
            states={mask: state_file(name, mask) for mask in masks}, hash_seed=policy_seed(name)))
    for rule in rules:
        if rule.target_kind != "policy":
            continue
        pol = next(p for p in policies if p.name == rule.target)
        have = {m.family for m in pol.members}
        for fam in rule.families:
            if fam not in have:
                warnings.append(f"rule '{rule.name}': policy '{pol.name}' has no {fam} member, so "
                                f"{fam} traffic matching this rule always gets last_resort "
                                f"'{pol.last_resort}'")

    warnings.extend(shadowed_rules(rules))

    special = {}
    for kind, ident in marks.special_ids(mask).items():
        special[kind] = {"id": ident, "mark": marks.id_to_mark(ident, mask), "pref": PREF_MARK + ident}

    return Model(
        enabled=g["enabled"], table=g["nft_table"], mask=mask, pref_main=PREF_MAIN, logging=g["logging"],
        loglevel=g["loglevel"], route_protocol=g["route_protocol"], special=special,
        interfaces=tuple(interfaces), policies=tuple(policies), rules=tuple(rules),
        user_sets=tuple(sorted(user_sets)), source_digest=digest, warnings=tuple(warnings))


def _incoming_device(src_iface: str, interfaces: dict, incoming: dict) -> str:
    """`src_iface` names a NetPath interface (then that interface's device, after the
    OpenWrt logical-name mapping), an OpenWrt logical interface netifd knows, or a device."""
    if src_iface in interfaces:
        return interfaces[src_iface].device
    return incoming.get(src_iface, src_iface)


def _match(prefix: str) -> Match:
    address, _, mask = prefix.partition("/")
    family = prefix_family(address)
    if mask and not mask.isdigit():
        return Match(family=family, address=address, netmask=mask)
    return Match(family=family, address=prefix, netmask="")
