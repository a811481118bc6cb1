"""Kernel drift: notice when another program changes NetPath's own kernel objects.

A firewall restart (`nft flush ruleset`), an admin's `ip rule flush`, netifd flushing a
table, a PPPoE reconnect that takes the WAN table's route with the old device: the kernel
then no longer holds what the agent loaded, while the agent would report that it does. The
agent compares, and loads again what is missing (agent.daemon decides how).

What is compared:

* the structure of NetPath's nft table (chains, their rules, sets and their types), from a
  listing without set elements or counter values (`nft -j -t -s`), against the listing the
  agent took right after its own last write. Set contents belong to others (dnsmasq's
  `nftset=`, sticky entries the data path adds) and are left alone...
* ...except the sets the agent fills itself (the WAN links' own networks): their elements
  are compared with what the agent would put in them, as address intervals (the kernel
  merges adjacent prefixes of an interval set into one range).
* the ip rules and WAN tables: agent.apply's routing plan (what `sync_routing` would run;
  nothing when they agree).

What wakes the comparison: the kernel's own notifications. nftables multicasts every change
of a table (the events `nft monitor` prints) on NETLINK_NETFILTER, group NFNLGRP_NFTABLES;
`NftWatch` reads them (only the table's name and, for set elements, the set's: no other
decoding). Rules and routes come through agent.links' rtnetlink monitor. A slow periodic
comparison is the safety net for lost events.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time

from . import links

log = logging.getLogger("netpath.drift")

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
# linux/netfilter/nf_tables.h, message types (low byte) that change nothing of a table:
# the GET requests, NEWGEN (the end of every transaction of any table), GETGEN, TRACE
NFT_MSG_IGNORED = {1, 4, 7, 10, 13, 15, 16, 17, 19, 21, 23}
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFTA_TABLE_NAME = 1  # the first attribute of table, chain, rule, set and element messages
NFTA_SET_ELEM_LIST_SET = 2
OBJECTS = ("table", "chain", "set", "rule", "route")  # what a repair counts, in this order


def _name(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def concerns(data: bytes, table: str, owned_sets) -> bool:
    """Whether a NETLINK_NETFILTER datagram tells of a change to `table`'s structure or to
    the elements of one of its `owned_sets`."""
    for kind, body in links.split(data):
        if kind >> 8 != NFNL_SUBSYS_NFTABLES or kind & 0xFF in NFT_MSG_IGNORED:
            continue
        attrs = links._attributes(body, 4)  # after struct nfgenmsg
        if NFTA_TABLE_NAME in attrs and _name(attrs[NFTA_TABLE_NAME]) != table:
            continue
        if kind & 0xFF in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
            if _name(attrs.get(NFTA_SET_ELEM_LIST_SET, b"")) not in owned_sets:
                continue
        return True
    return False


class NftWatch(links.NetlinkWatch):
    """Calls `on_change()` when nftables reports a change to `table` (its structure, or the
    elements of `owned_sets`), and after its socket had to be reopened (events were lost)."""

    NAME = "nft watch"

    def __init__(self, table: str, owned_sets, on_change):
        super().__init__(1 << (NFNLGRP_NFTABLES - 1), NETLINK_NETFILTER)
        self.table = table
        self.owned_sets = set(owned_sets)
        self.on_change = on_change

    async def _session(self, sock, first: bool) -> None:
        if not first:
            self.on_change()
        await links.read_forever(sock, self._datagram)

    def _datagram(self, data: bytes) -> None:
        if concerns(data, self.table, self.owned_sets):
            self.on_change()


# --- comparing --------------------------------------------------------------------------------


def structure(listing: dict, table: str) -> dict:
    """{(kind, name): normalised object} of `table` in a `nft -j -t -s list table` listing;
    a chain's value holds its rules in order. {} when the table is missing."""
    objects: dict = {}
    for item in listing.get("nftables", ()):
        if not isinstance(item, dict) or len(item) != 1:
            continue
        (kind, obj), = item.items()
        if not isinstance(obj, dict) or kind == "metainfo":
            continue
        if kind == "table":
            if obj.get("name") == table:
                objects[("table", table)] = {k: v for k, v in obj.items() if k != "handle"}
            continue
        if obj.get("table") != table:
            continue
        clean = {k: v for k, v in obj.items() if k not in ("handle", "elem")}
        if kind == "counter":  # `-s` leaves a named counter's values in: they are state, not structure
            clean = {k: v for k, v in clean.items() if k not in ("packets", "bytes")}
        if kind == "rule":
            chain = objects.setdefault(("chain", obj.get("chain")), {"rules": []})
            chain.setdefault("rules", []).append(json.dumps(clean, sort_keys=True))
        elif kind == "chain":
            objects.setdefault(("chain", obj.get("name")), {"rules": []}).update(clean)
        else:  # set, map, flowtable, counter, quota, ...: compared as declared
            objects[("set" if kind in ("set", "map") else kind, obj.get("name"))] = clean
    return objects


def differences(expected: dict, live: dict) -> list:
    """The kinds of objects (table, chain, set, ...) in which `live` differs from `expected`."""
    if not live:
        return ["table"]
    kinds = {kind for kind, name in expected.keys() | live.keys()
             if expected.get((kind, name)) != live.get((kind, name))}
    return [k for k in OBJECTS if k in kinds] + sorted(kinds - set(OBJECTS))


def intervals(elements) -> list:
    """Merged (version, first, last) address intervals of nft JSON set elements (an address,
    {"prefix": ...}, {"range": [...]}, possibly inside {"elem": {"val": ...}})."""
    spans = []
    for element in elements or ():
        if isinstance(element, dict) and "elem" in element:
            element = element["elem"].get("val")
        if isinstance(element, str):
            net = ipaddress.ip_network(element, strict=False)
        elif isinstance(element, dict) and "prefix" in element:
            net = ipaddress.ip_network(f"{element['prefix']['addr']}/{element['prefix']['len']}", strict=False)
        elif isinstance(element, dict) and "range" in element:
            first, last = (ipaddress.ip_address(a) for a in element["range"])
            spans.append((first.version, int(first), int(last)))
            continue
        else:
            continue
        spans.append((net.version, int(net.network_address), int(net.broadcast_address)))
    merged: list = []
    for version, first, last in sorted(spans):
        if merged and merged[-1][0] == version and first <= merged[-1][2] + 1:
            merged[-1] = (version, merged[-1][1], max(last, merged[-1][2]))
        else:
            merged.append((version, first, last))
    return merged


def set_elements(listing: dict) -> list:
    """The elements of the one set in a `nft -j list set` listing (None: no such set)."""
    for item in listing.get("nftables", ()):
        if isinstance(item, dict) and "set" in item:
            return item["set"].get("elem", [])
    return None


# --- the record status reports ------------------------------------------------------------------


class Record:
    """When the kernel last drifted, what was repaired, how often (per kind of object)."""

    def __init__(self):
        self.last_drift: "float | None" = None
        self.last_repaired: list = []
        self.repairs: dict = {}
        self.last_error: "str | None" = None

    def repaired(self, objects) -> None:
        self.last_drift = time.time()
        self.last_repaired = list(objects)
        for obj in objects:
            self.repairs[obj] = self.repairs.get(obj, 0) + 1
        self.last_error = None

    def failed(self, message: str) -> None:
        self.last_drift = time.time()
        self.last_error = message

    def report(self) -> dict:
        return {"last_drift": self.last_drift, "last_repaired": list(self.last_repaired),
                "repairs": dict(self.repairs), "repairs_total": sum(self.repairs.values()),
                "last_error": self.last_error}
