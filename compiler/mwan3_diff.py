"""Where NetPath will behave differently from mwan3 for a converted config, and why
(`netpath import-mwan3 --explain-diff`), with the time each takes to notice an outage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .mwan3_read import INT_TRACK

if TYPE_CHECKING:
    from .mwan3_convert import Converter


def detection_seconds(track: dict) -> "tuple[float, float, float, float]":
    """(mwan3 best, mwan3 worst, NetPath best, NetPath worst) seconds from the start of an
    outage to the "disconnected" decision (mwan3.md §3.5): `down` failed rounds, each
    probing every target, with failure_interval between them, plus up to one `interval`
    until the next round starts. mwan3 probes the targets one after another; NetPath at once."""
    d = {k: track.get(k, v) for k, v in INT_TRACK.items()}
    interval = track.get("interval", d["interval"])
    failure_interval = track.get("failure_interval", interval)
    one_probe = (d["count"] - 1) + d["timeout"]
    targets = len(track.get("targets", []))
    mwan3_best = d["down"] * targets * one_probe + (d["down"] - 1) * failure_interval
    netpath_best = d["down"] * one_probe + (d["down"] - 1) * failure_interval
    return mwan3_best, mwan3_best + interval, netpath_best, netpath_best + interval


def _defaults() -> dict:
    from .mwan3_convert import _schema_default
    from .validate import TRACK

    return {k: _schema_default(TRACK, k) for k in ("interval", "timeout", "down", "up")}


def netpath_defaults() -> str:
    d = _defaults()
    return f"interval {d['interval']:g} s, timeout {d['timeout']:g} s, down {d['down']}, up {d['up']}"


def default_detection_seconds() -> float:
    """The bound for NetPath's defaults: interval + down x timeout + (down - 1) x failure_interval."""
    d = _defaults()
    return d["interval"] + d["down"] * d["timeout"] + (d["down"] - 1) * d["interval"]


def differences(conv: Converter) -> list:
    out = []
    for name, iface in conv.tree["interfaces"].items():
        track = iface["track"]
        if not iface["enabled"] or track.get("method") == "none":
            continue
        m_best, m_worst, n_best, n_worst = detection_seconds(track)
        count = len(track["targets"])
        if count == 1:
            timing = (f"mwan3 and NetPath declare the WAN down {m_best:g}-{m_worst:g} s after an "
                      "outage starts (one target, the same settings)")
        else:
            timing = (f"mwan3 probes its {count} targets one after another and declares the WAN down "
                      f"{m_best:g}-{m_worst:g} s after an outage starts; NetPath probes them at once: "
                      f"{n_best:g}-{n_worst:g} s with the same settings")
        out.append(f"Failure detection on '{name}': {timing}. The converted config keeps mwan3's "
                   f"timing; NetPath's own defaults ({netpath_defaults()}) take at most "
                   f"{default_detection_seconds():g} s: drop interval, failure_interval, timeout, down "
                   "and up to use them. A lost link (ifdown) is seen at once by both.")
    for name, events in sorted(conv.flushes.items()):
        out.append(f"Conntrack flush on '{name}' ({', '.join(events)}): mwan3 flushes the whole "
                   "conntrack table, dropping every WAN's flows and NAT state; NetPath deletes only "
                   f"the flows marked for '{name}', and none while no other member is alive.")
    if conv.special_pins:
        where = ", ".join(sorted({w for w, _ in conv.special_pins}))
        out.append(f"unreachable/blackhole ({where}): mwan3 saves these marks in conntrack, so a flow "
                   "that once got them stays refused until it expires, even after a WAN came back; "
                   "NetPath does not pin them: the next packet is classified again.")
    if conv.tree["interfaces"]:
        out.append("Interface ids: mwan3 numbers its marks and routing tables by the position of the "
                   "interface sections, so adding or moving one re-routes established flows. The "
                   "converted config pins mwan3's ids with 'option id' (same marks); the routing "
                   "tables are route_table_base + id (1001, 1002, ...) instead of 1, 2, ..., and ids "
                   "stay stable when sections move.")
    if any(p.get("members") and len(p["members"]) > 1 for p in conv.tree["policies"].values()):
        out.append("Balancing: mwan3 picks a member at random per new connection with probabilities "
                   "rounded to 3 decimals; NetPath's 'balanced' mode gives the members turns in "
                   "exact proportion to their weights (mode 'weighted' is random like mwan3).")
    sets = sorted({r["ipset"] for r in conv.tree["rules"] if "ipset" in r})
    for set_name in sets:
        out.append(f"ipset '{set_name}': mwan3 matches a kernel ipset (which dnsmasq on OpenWrt "
                   f"23.05+ no longer fills); NetPath matches the nft sets '{set_name}_v4' and "
                   f"'{set_name}_v6' in its own table, filled by dnsmasq "
                   f"nftset=/<domain>/4#inet#netpath#{set_name}_v4,6#inet#netpath#{set_name}_v6.")
    if any(r.get("sticky") for r in conv.tree["rules"]):
        out.append("Sticky rules: mwan3 loses its sticky sets on every reload (stop + start); "
                   "NetPath keeps them across reloads.")
    out += conv.diffs  # found while converting sections (extra routing tables, reliability)
    return out
