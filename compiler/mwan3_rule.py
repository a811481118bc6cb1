"""Convert an mwan3 rule section into a NetPath rule.

mwan3 hands each rule to iptables/ip6tables. A rule that mwan3 skips, or that iptables
rejects, matches nothing: its packets go on to the next rule. Leaving it out of the
NetPath config does the same, so such a rule is left out here, with a note saying why.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

import voluptuous as vol

from . import validate
from .mwan3_read import MWAN3_NAME_LIMIT, safe_name

if TYPE_CHECKING:
    from .mwan3_convert import Converter


def convert_rule(conv: Converter, section):
    def skip(text, option=None):
        if option:
            text = f"option '{option}': {text}"
        conv.drop(section, text, option)

    if len(section.name) > MWAN3_NAME_LIMIT:
        return skip(f"the name has more than {MWAN3_NAME_LIMIT} characters, so mwan3 skips the rule")
    target = conv.get(section, "use_policy")
    conv.done(section, "use_policy")
    if target is None:
        return skip("no use_policy, so mwan3 skips the rule")
    out: dict = {"name": section.name}
    if target in validate.SPECIAL_TARGETS:
        policy = target
    elif target in conv.policy_names:
        policy = conv.policy_names[target]
    elif target in conv.policy_fallback:
        policy = conv.policy_fallback[target]
        conv.note(section, "use_policy", f"policy '{target}' has no usable member; NetPath sends "
                                         f"the rule straight to its last_resort '{policy}'")
    else:
        why = ("was skipped by mwan3 (name too long)" if target in conv.skipped_policies
               else "does not exist")
        return skip(f"policy '{target}' {why}: mwan3 jumps to an empty chain and the packet goes "
                    "on to the next rule, which is what leaving the rule out does", "use_policy")
    if policy in ("unreachable", "blackhole"):
        conv.special_pins.append((f"rule '{section.name}'", policy))

    family = conv.get(section, "family") or "any"
    conv.done(section, "family")
    if family not in ("any", "ipv4", "ipv6"):
        return skip(f"family {family!r} is not ipv4/ipv6/any, so mwan3 loads the rule for neither "
                    "family", "family")
    proto = (conv.get(section, "proto") or "all").strip()
    conv.done(section, "proto")
    proto_out = netpath_protocol(proto)
    if proto_out is None:
        return skip(f"protocol {proto!r} is unknown; iptables rejects the rule in mwan3", "proto")

    families = set()
    for key in ("src_ip", "dest_ip"):
        value = conv.get(section, key)
        conv.done(section, key)
        if value is None:
            continue
        prefixes = []
        for part in re.split(r"[,\s]+", value.strip()):
            try:
                prefixes.append(validate.Prefix(part))
            except vol.Invalid as exc:
                return skip(f"{exc.msg}; iptables rejects the rule in mwan3", key)
        fams = {validate.prefix_family(p) for p in prefixes}
        if len(fams) > 1:
            return skip("mixes IPv4 and IPv6 addresses; iptables rejects the rule in mwan3", key)
        families |= fams
        out[key] = prefixes
    if len(families) > 1:
        return skip("an IPv4 source with an IPv6 destination (or the reverse): mwan3 drops the rule "
                    "in both families")
    if family != "any" and families and families != {family}:
        return skip(f"family {family} with {families.pop()} addresses: mwan3 hands the rule to the "
                    "wrong iptables, which rejects it", "family")
    if family != "any":
        out["family"] = family
    if proto_out != "all":
        out["proto"] = proto_out

    for key in ("src_port", "dest_port"):
        value = conv.get(section, key)
        conv.done(section, key)
        if value is None:
            continue
        if proto not in ("tcp", "udp"):
            conv.note(section, key, f"mwan3 ignores ports unless proto is tcp or udp (here "
                                    f"{proto!r}), so the rule matches every port; so does NetPath")
            continue
        try:
            ranges = validate.Ports(value)
        except vol.Invalid as exc:
            return skip(f"{exc.msg}; iptables rejects the rule in mwan3", key)
        spec = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
        out[key] = int(spec) if spec.isdigit() else spec

    iface = conv.get(section, "src_iface")
    conv.done(section, "src_iface")
    if iface is not None:
        if iface in conv.iface_names:
            out["src_iface"] = conv.iface_names[iface]
        elif validate.DEVICE_RE.match(iface):
            out["src_iface"] = iface  # like mwan3, `netpath compile` asks netifd for its device
        else:
            return skip(f"'{iface}' cannot be a device name", "src_iface")
    ipset = conv.get(section, "ipset")
    conv.done(section, "ipset")
    if ipset is not None:
        set_name = safe_name(ipset, 29)
        if set_name != ipset:
            conv.note(section, "ipset", f"'{ipset}' is not a valid NetPath set name; renamed to "
                                        f"'{set_name}'")
        out["ipset"] = set_name
        conv.note(section, "ipset", f"destination set: NetPath matches its own nft sets "
                                    f"'{set_name}_v4'/'{set_name}_v6' in its table instead of the "
                                    f"ipset; fill them with dnsmasq "
                                    f"nftset=/<domain>/4#inet#<nft_table>#{set_name}_v4")
    out["policy"] = policy
    sticky = conv.get(section, "sticky") == "1"  # `[ "$sticky" -eq 1 ]`
    conv.done(section, "sticky")
    if sticky and policy in validate.SPECIAL_TARGETS:
        conv.note(section, "sticky", f"sticky has no effect with '{policy}' in mwan3; not converted")
        sticky = False
    if sticky:
        out["sticky"] = True
        timeout = conv.integer(section, "timeout", 600, 1, 1000000)
        if "timeout" in section.options or conv.differs(validate.RULE, "timeout", timeout):
            out["timeout"] = timeout
    elif "timeout" in section.options:
        conv.note(section, "timeout", "used by sticky rules only and this one is not sticky; "
                                      "not converted")
    if conv.get(section, "logging") == "1":
        out["logging"] = True
    conv.done(section, "logging")
    conv.tree["rules"].append(out)


def netpath_protocol(proto: str) -> "str | None":
    text = proto.lower()
    if text in validate.PROTOCOLS or (text.isascii() and text.isdigit() and int(text) <= 255):
        return text
    try:
        return str(socket.getprotobyname(text))
    except OSError:
        return None
