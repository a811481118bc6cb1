"""`netpath connected [BUNDLE] [--json]`: the destinations that bypass the policies, per
family (mwan3's `mwan3 connected`).

The ruleset sends these to the main table before any rule is read (the `exempt` chain):
routes of the main table through devices that are not WANs (the LAN, VPNs), the WAN links'
own networks (the sets bypass_v4 / bypass_v6 the agent and `netpath apply` keep filled),
and the router's local, broadcast and multicast addresses, IPv6 link-local and multicast.
Read from the kernel, as it routes now.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys

from . import bundle as bundle_mod
from .apply import BYPASS_SETS, ApplyError, ip_json
from .nft import Nft, NftError

DEFAULT_BUNDLE = "/var/lib/netpath/bundle"
ALWAYS = {"ipv4": ["local, broadcast and multicast addresses"],
          "ipv6": ["local and multicast addresses", "fe80::/10 (link-local)", "ff00::/8 (multicast)"]}


def _network(dst: str, family: str) -> str:
    return str(ipaddress.ip_network(dst if "/" in dst else f"{dst}/{32 if family == 'ipv4' else 128}",
                                    strict=False))


def _element_networks(element, family: str) -> list:
    """A set element of `nft -j` as networks: a prefix, an address, or a range (auto-merge
    joins adjacent networks into one range)."""
    if isinstance(element, str):
        return [_network(element, family)]
    if isinstance(element, dict) and "prefix" in element:
        return [_network(f"{element['prefix']['addr']}/{element['prefix']['len']}", family)]
    if isinstance(element, dict) and "range" in element:
        first, last = (ipaddress.ip_address(a) for a in element["range"])
        return [str(n) for n in ipaddress.summarize_address_range(first, last)]
    return []


def connected(model, nft: "Nft | None" = None) -> dict:
    """{family: {"routes": [{network, device}], "wan_networks": [..], "always": [..]}, "loaded": bool}."""
    nft = nft or Nft()
    wan_devices = {i.device for i in model.interfaces}
    result = {"table": model.table, "loaded": bool(nft.list_json(f"table inet {model.table}"))}
    for family, set_name in BYPASS_SETS:
        routes = []
        for route in ip_json(family, "route", "show", "table", "main"):
            dst, dev = route.get("dst", ""), route.get("dev", "")
            if dst and dst != "default" and dev and dev not in wan_devices and route.get("type", "unicast") == "unicast":
                if family == "ipv6" and dst.startswith(("fe80", "ff")):
                    continue
                routes.append({"network": _network(dst, family), "device": dev})
        wan_networks = []
        if result["loaded"]:
            listing = nft.list_json(f"set inet {model.table} {set_name}")
            for item in listing.get("nftables", []):
                for element in (item.get("set") or {}).get("elem", []):
                    wan_networks += _element_networks(element, family)
        result[family] = {"routes": sorted(routes, key=lambda r: (r["device"], r["network"])),
                          "wan_networks": sorted(wan_networks), "always": ALWAYS[family]}
    return result


def render(result: dict) -> str:
    lines = []
    for family, title in (("ipv4", "IPv4"), ("ipv6", "IPv6")):
        data = result[family]
        lines.append(f"{title} (main table, before any rule):")
        rows = [(r["network"], f"via {r['device']} (not a WAN)") for r in data["routes"]]
        rows += [(n, "a WAN link's own network") for n in data["wan_networks"]]
        width = max((len(n) for n, _ in rows), default=0)
        lines += [f"  {n.ljust(width)}  {why}" for n, why in rows]
        lines += [f"  {what}" for what in data["always"]]
    if not result["loaded"]:
        lines.append(f"(table inet {result['table']} is not loaded: NetPath routes nothing now; "
                     "the WAN networks are filled when the agent or `netpath apply` runs)")
    return "\n".join(lines)


def main(argv, prog: str = "netpath connected") -> int:
    p = argparse.ArgumentParser(prog=prog, description="The destinations that bypass NetPath's policies.")
    p.add_argument("bundle", nargs="?", default=DEFAULT_BUNDLE, help=f"bundle directory (default {DEFAULT_BUNDLE})")
    p.add_argument("--json", action="store_true", help="as JSON")
    args = p.parse_args(argv)
    try:
        model = bundle_mod.read(args.bundle).model
    except bundle_mod.BundleError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        result = connected(model)
    except (ApplyError, NftError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0
