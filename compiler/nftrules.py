"""Small functions that turn parts of the resolved model into nft rule text.

They are the Jinja filters of the nft templates (STYLE.md: templates hold structure,
rule lines come from small, unit-tested functions). Names reaching nft were validated
by the schema; free text reaches nft only through `nft_comment`.
"""

from __future__ import annotations

import re

from netpath.agent.model import Model, Rule
from netpath.agent.names import RULE_COUNTER_PREFIX
from netpath.agent.policy import Decision

L3 = {"ipv4": "ip", "ipv6": "ip6"}
L4_WITH_PORTS = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "6": "tcp", "17": "udp"}
COMMENT_SAFE = re.compile(r"[^A-Za-z0-9 _.,:;/()=<>+%'-]")


def l3(family: str) -> str:
    """The nft protocol keyword of an address family: ipv4 -> ip, ipv6 -> ip6."""
    return L3[family]


def addr_type(family: str) -> str:
    return "ipv4_addr" if family == "ipv4" else "ipv6_addr"


def family_digit(family: str) -> str:
    """dnsmasq's nftset= family prefix."""
    return "4" if family == "ipv4" else "6"


def restore_vmap(marks) -> str:
    """`{ 0x100 : jump restore_0x00000100, ... }`: restore each known mark from conntrack."""
    return "{ " + ", ".join(f"{hexmark(m)} : jump restore_{hexmark(m)}" for m in marks) + " }"


def hexmark(value: int) -> str:
    return f"0x{value:08x}"


def inverse(mask: int) -> str:
    return hexmark(~mask & 0xFFFFFFFF)


def nft_comment(text: str) -> str:
    """The one way free text reaches nft: a double-quoted comment with nothing that
    could close the string or start a new statement; nft limits comments to 128 bytes."""
    return '"' + COMMENT_SAFE.sub("_", str(text))[:120] + '"'


def mark_chain(name: str) -> str:
    """Chain that gives a flow the mark of interface `name` (or a special mark)."""
    if name in ("default", "blackhole", "unreachable"):
        return f"mark_{name}"
    return f"mark_if_{name}"


def sticky_set(rule: str, interface: str) -> str:
    return f"sticky_{rule}_{interface}"


def stick_chain(rule: str, interface: str) -> str:
    return f"stick_{rule}_{interface}"


def user_set(name: str, family: str) -> str:
    return f"{name}_{'v4' if family == 'ipv4' else 'v6'}"


def _elements(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(ranges) -> str:
    return _elements(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def _address_alternatives(direction: str, family: str, matches) -> list:
    """The ways an address list can match, any one of them enough: `ip saddr { ... }` for
    the plain prefixes, and `ip saddr & 0.0.0.1 == 0.0.0.0` for each non-contiguous netmask
    (nft has no set of those). [""] when the rule has no addresses of this kind."""
    if not matches:
        return [""]
    field = f"{L3[family]} {direction}"
    own = [m for m in matches if m.family == family]
    plain = [m.address for m in own if not m.netmask]
    out = [f"{field} & {m.netmask} == {m.address}" for m in own if m.netmask]
    if plain:
        out.insert(0, f"{field} {_elements(plain)}")
    return out


def rule_match_lines(rule: Rule, family: str) -> list:
    """The match part of one user rule for one family: one line per alternative (a rule
    whose addresses mix netmasks with prefixes needs several; a packet matching any of
    them matches the rule), each the conjunction of the rule's fields."""
    return [rule_matches(rule, family, src, dest)
            for src in _address_alternatives("saddr", family, rule.src)
            for dest in _address_alternatives("daddr", family, rule.dest)]


def rule_matches(rule: Rule, family: str, src: "str | None" = None, dest: "str | None" = None) -> str:
    """The match part of one user rule, for one family, with one alternative of its source
    and destination addresses (`src`/`dest`; default: the only one)."""
    if src is None:
        (src,) = _address_alternatives("saddr", family, rule.src)
    if dest is None:
        (dest,) = _address_alternatives("daddr", family, rule.dest)
    parts = [f"meta nfproto {family}"]
    if rule.src_iface:
        parts.append(f'iifname "{rule.src_iface}"')
    proto = rule.proto
    if proto != "all" and not (rule.src_port or rule.dest_port):
        parts.append(f"meta l4proto {proto}")
    parts += [p for p in (src, dest) if p]
    if rule.src_set:
        parts.append(f"{L3[family]} saddr @{user_set(rule.src_set, family)}")
    if rule.dest_set:
        parts.append(f"{L3[family]} daddr @{user_set(rule.dest_set, family)}")
    if rule.src_port or rule.dest_port:
        if proto in L4_WITH_PORTS:
            l4 = L4_WITH_PORTS[proto]
        else:
            l4 = "th"
            parts.append("meta l4proto { tcp, udp }" if proto == "all" else f"meta l4proto {proto}")
        if rule.src_port:
            parts.append(f"{l4} sport {_ports(rule.src_port)}")
        if rule.dest_port:
            parts.append(f"{l4} dport {_ports(rule.dest_port)}")
    return " ".join(parts)


def rule_counter(rule: Rule) -> str:
    """The named counter of a rule's new flows (both families add to it)."""
    return f"{RULE_COUNTER_PREFIX}{rule.name}"


def rule_target(rule: Rule) -> str:
    if rule.target_kind == "special":
        return mark_chain(rule.target)
    if rule.sticky:
        return rule.chain
    return f"policy_{rule.target}"


def decision_verdict(decision: Decision, seed: int) -> str:
    """The verdict statement of a policy chain for one family in one alive-state."""
    if decision.kind == "last_resort":
        return f"goto {mark_chain(decision.last_resort)}"
    if decision.kind == "single":
        return f"goto {mark_chain(decision.interface)}"
    entries = ", ".join(
        f"{s.lo if s.lo == s.hi else f'{s.lo}-{s.hi}'} : goto {mark_chain(s.interface)}"
        for s in decision.slots)
    if decision.selector == "jhash":
        l3 = L3[decision.family]
        selector = f"jhash {l3} saddr mod {decision.modulus} seed {hexmark(seed)}"
    else:
        selector = f"{decision.selector} mod {decision.modulus}"
    return f"{selector} vmap {{ {entries} }}"


def decision_comment(policy: str, decision: Decision) -> str:
    if decision.kind == "last_resort":
        return f"policy {policy} {decision.family}: no member alive, last_resort {decision.last_resort}"
    shares = ", ".join(f"{name} {share:.1f}%" for name, share in decision.shares().items())
    return f"policy {policy} {decision.family}: metric {decision.tier_metric}: {shares}"


# With every interface disabled there is no WAN device, and nft has no empty anonymous
# set. "/" can never name a device (the kernel's dev_valid_name refuses it), so
# `oifname != "/"` holds for every device: no destination is reached over a WAN.
NO_WAN_DEVICE = '"/"'


def device_set(model: Model) -> str:
    devices = [f'"{dev}"' for dev in model.wan_devices]
    return _elements(devices) if devices else NO_WAN_DEVICE


FILTERS = {
    "l3": l3,
    "addr_type": addr_type,
    "family_digit": family_digit,
    "restore_vmap": restore_vmap,
    "hexmark": hexmark,
    "inverse": inverse,
    "nft_comment": nft_comment,
    "mark_chain": mark_chain,
    "sticky_set": sticky_set,
    "stick_chain": stick_chain,
    "user_set": user_set,
    "rule_matches": rule_matches,
    "rule_counter": rule_counter,
    "rule_target": rule_target,
    "decision_verdict": decision_verdict,
    "decision_comment": decision_comment,
}
