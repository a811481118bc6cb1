"""The shapes of the names and addresses that reach nft text, `ip -batch` lines and the
control socket.

The compiler validates a config against these; the agent checks a bundle's manifest (which
no sha256 protects) and the names a request carries against the same ones. `\\Z`, not `$`:
`$` also matches before a trailing newline, and a newline in a name would start a new nft
statement or `ip -batch` command.

Standard library only (the agent imports it on routers).
"""

from __future__ import annotations

import ipaddress
import re

NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")  # interfaces, members, policies, rules, sets
TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}\Z")  # the nft table
DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")  # a kernel network device (IFNAMSIZ)

# Words nft's scanner reads as keywords anywhere in a command, so `table inet counter`
# is a syntax error: those nftables 1.0.6 refuses as a table name (measured with
# `nft -c`), plus the ones newer releases added. Only the nft table reaches nft as a bare
# word; every other name is part of a prefixed identifier (`policy_x`, `x_v4`).
NFT_KEYWORDS = frozenset((
    "accept", "add", "ah", "all", "and", "arp", "bridge", "cgroup", "chain", "comment", "comp",
    "constant", "continue", "counter", "cpu", "create", "ct", "day", "dccp", "define", "delete",
    "describe", "destroy", "device", "devices", "dnat", "drop", "dst", "dup", "dynamic", "ecn",
    "element", "elements", "eq", "esp", "ether", "exists", "expires", "export", "exthdr", "fib",
    "flags", "flow", "flowtable", "flush", "frag", "fwd", "ge", "geneve", "get", "goto", "gre",
    "gretap", "gt", "handle", "hbh", "hook", "hour", "ibriport", "ibrname", "icmp", "icmpv6",
    "igmp", "iif", "iifgroup", "iifname", "iiftype", "import", "include", "index", "inet",
    "insert", "interval", "ip", "ip6", "ipsec", "jhash", "jump", "last", "le", "limit", "list",
    "log", "lshift", "lt", "map", "mark", "masquerade", "meta", "meter", "mh", "missing",
    "monitor", "ne", "netdev", "nftrace", "not", "notrack", "numgen", "obriport", "obrname",
    "offload", "oif", "oifgroup", "oifname", "oiftype", "or", "osf", "pkttype", "policy",
    "position", "priority", "queue", "quota", "random", "redefine", "redirect", "reject",
    "rename", "replace", "reset", "return", "rshift", "rt", "rt0", "rt2", "rtclassid", "rule",
    "ruleset", "sctp", "secmark", "set", "size", "skgid", "skuid", "snat", "socket", "srh",
    "symhash", "synproxy", "table", "tcp", "th", "time", "timeout", "tproxy", "tunnel", "type",
    "typeof", "udp", "udplite", "undefine", "update", "vlan", "vmap", "vni", "vxlan", "xor", "xt",
))
# Routing tables the kernel keeps for itself: unspec, default, main, local.
RESERVED_TABLES = {0: "unspec", 253: "default", 254: "main", 255: "local"}
# Each user rule counts its new flows in a named nft counter: the object outlives a reload
# (a ruleset load flushes rules, not counters), so the figure never drops back to 0.
RULE_COUNTER_PREFIX = "rule_"

DNS_NAME_RE = re.compile(r"^(\.|([A-Za-z0-9_]([A-Za-z0-9_-]{0,62})\.?)+)\Z")  # a probe's query, a target
URL_RE = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]+\Z")  # an httping URL

NAME_SHAPE = "name (1-32 characters: letters, digits, underscore)"
TABLE_SHAPE = "nft table name (a letter, then up to 31 letters, digits or '_')"
DEVICE_SHAPE = "device name (1-15 characters: letters, digits, '_', '.', '-')"


def plain_ip(text: str):
    """ipaddress.ip_address without IPv6 zone ids: Python accepts any text after `%`
    (spaces, `;`, newlines), and an address reaches `ip -batch` and nft verbatim."""
    if "%" in str(text):
        raise ValueError(f"{text!r}: a zone id (%...) is not allowed here")
    return ipaddress.ip_address(text)


AGENT_LOG_LEVELS = ("debug", "info", "warning", "error")


def host_port(text: str) -> tuple:
    """`HOST:PORT` (`[v6]:PORT` too) -> (host, port); ValueError naming the text otherwise.
    The agent's --metrics-listen and the config's globals 'metrics_listen' use it."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(
            c.isspace() for c in host):
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9101")
    return host, int(port)
