"""Convert an mwan3 interface section: the NetPath interface and its tracking.

mwan3track's settings map one to one onto NetPath's track options where both have them.
Where mwan3 used something NetPath lacks (nping, nslookup, https per target) the nearest
NetPath setting is taken, and what cannot be kept (a host-name target for ping, a target
of the other family) is dropped; a note says which.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import voluptuous as vol

from netpath.agent import marks

from . import validate
from .mwan3_read import BOOL_TRACK, INT_TRACK, MWAN3_IFACE_SAFE, OPTIONAL_TRACK, Note, safe_name, where

if TYPE_CHECKING:
    from .mwan3_convert import Converter

NSLOOKUP_QUERY = "www.google.com"  # mwan3track: `nslookup www.google.com <track_ip>`
# Written even where they equal NetPath's defaults: those detect a dead uplink in seconds,
# mwan3's in a minute or more, and an imported config keeps mwan3's rhythm until the user
# changes it (a later change of NetPath's defaults must not move it either).
TIMING = ("timeout", "interval", "failure_interval", "recovery_interval", "down", "up")


def convert_interface(conv: Converter, section, position: int):
    name = conv.netpath_name(section)
    conv.iface_names[section.name] = name
    out: dict = {}
    enabled = conv.boolean(section, "enabled", False)
    family = conv.get(section, "family") or "ipv4"
    conv.done(section, "family")
    if family not in ("ipv4", "ipv6"):
        conv.note(section, "family", f"{family!r} is neither ipv4 nor ipv6, so mwan3 sets "
                                     "nothing up for it; NetPath keeps the interface disabled")
        family, enabled = "ipv4", False
    device = section.name
    if section.anonymous or not validate.DEVICE_RE.match(device):
        why = ("an anonymous section cannot name a netifd interface" if section.anonymous else
               f"'{device}' cannot be a NetPath ifname (1-15 characters, starting with a letter "
               "or digit)")
        device = safe_name(device, 15)
        conv.note(section, None, f"{why}; mwan3 cannot use it either; NetPath keeps it disabled "
                                 f"with ifname '{device}': set the device or logical name")
        enabled = False
    elif len(section.name) > MWAN3_IFACE_SAFE:
        conv.note(section, None, f"the name has {len(section.name)} characters: mwan3's iptables "
                                 f"chain for it is too long (limit {MWAN3_IFACE_SAFE}) and fails "
                                 "to load; NetPath has no such limit")
    out["enabled"] = enabled
    out["ifname"] = device
    out["family"] = family
    mask = int(conv.tree["globals"].get("mark_mask", hex(marks.DEFAULT_MASK)), 16)
    if position <= min(marks.max_interfaces(mask), marks.MAX_ID):
        # mwan3's id (position among interface sections): the same mark, so flows marked
        # by mwan3 keep their WAN when NetPath takes over; NetPath keeps it from now on.
        out["id"] = position
    flush = flush_conntrack(conv, section, name)
    if flush:
        out["flush_conntrack"] = flush
    if "online_metric" in section.options:
        conv.note(section, "online_metric", "obsolete: existed only from 2018-08 to 2018-11; "
                                            "not converted")
    out["track"] = track_settings(conv, section, family, name)
    if out["track"] is None:  # every target unusable: mwan3 never had it online
        out["enabled"] = False
        out["track"] = {"method": "none"}
    conv.tree["interfaces"][name] = out


def flush_conntrack(conv: Converter, section, name) -> list:
    items, was_option = conv.items(section, "flush_conntrack")
    if "flush_conntrack" not in section.options:
        return []
    conv.done(section, "flush_conntrack")
    events: list = []
    if was_option:
        old = " ".join(items)
        migrated = {"never": [], "always": ["ifup", "ifdown"], "ifup": ["ifup"],
                    "ifdown": ["ifdown"]}.get(old)
        if migrated is None:
            conv.note(section, "flush_conntrack", f"old single-value form {old!r} is not one of "
                                                  "never/always/ifup/ifdown; not converted")
            return []
        conv.note(section, "flush_conntrack",
                  f"the pre-2.8 form 'option flush_conntrack {old}' (mwan3 2.8+ migrates it to a "
                  f"list) becomes {', '.join(migrated) or 'no flush'}")
        events = migrated
    else:
        for item in items:
            if item in validate.FLUSH_EVENTS and item not in events:
                events.append(item)
            elif item not in validate.FLUSH_EVENTS:
                conv.note(section, "flush_conntrack", f"'{item}' is not an event mwan3 knows "
                                                      "(ifup, ifdown, connected, disconnected); "
                                                      "dropped")
    if events:
        conv.notes.append(Note(section.options["flush_conntrack"].line,
                               where(section, "flush_conntrack"),
                               f"on {', '.join(events)} mwan3 flushed the whole conntrack table "
                               f"(every WAN's flows); NetPath deletes only the flows of '{name}'"))
        conv.flushes[name] = events
    return events


def track_settings(conv: Converter, section, family, name) -> "dict | None":
    targets, was_option = conv.items(section, "track_ip")
    conv.done(section, "track_ip")
    t: dict = {}
    if was_option and targets:
        conv.note(section, "track_ip",
                  "written as 'option', which mwan3 never reads (only 'list' items): its tracker "
                  f"probed nothing and the interface went offline after 'down' rounds for good; "
                  f"NetPath tracks {', '.join(targets)} as a list")
    track_keys = ({"track_method", "httping_ssl", "reliability", "count", "timeout", "interval",
                   "failure_interval", "recovery_interval", "keep_failure_interval", "down",
                   "up", "size", "max_ttl", "check_quality", "failure_latency",
                   "recovery_latency", "failure_loss", "recovery_loss"})
    initial = conv.get(section, "initial_state")
    conv.done(section, "initial_state")
    if initial is not None and initial not in ("online", "offline"):
        conv.note(section, "initial_state", f"{initial!r} is not online/offline; mwan3 treats it "
                                            "as online, and so does NetPath")
    initial = "offline" if initial == "offline" else "online"
    if not targets:
        present = _unconverted(conv, section, track_keys)
        unused = f"; its tracking options ({', '.join(present)}) have no use and are not " \
                 "converted" if present else ""
        conv.note(section, None, "no track_ip: mwan3 runs no tracker, the state follows the link "
                                 f"and initial_state only; NetPath does the same with track_method "
                                 f"'none'{unused}")
        t["method"] = "none"
        if "initial_state" in section.options or conv.differs(validate.TRACK, "initial_state", initial):
            t["initial_state"] = initial
        return t

    method = track_method(conv, section, family)
    t["method"] = method
    usable = []
    for target in targets:
        reason = unusable_target(target, family, method)
        if reason:
            conv.note(section, "track_ip", f"target '{target}': {reason}; dropped")
        elif target in usable:
            conv.note(section, "track_ip", f"target '{target}' is listed twice; NetPath probes "
                                           "it once")
        else:
            usable.append(target)
    if not usable:
        conv.note(section, "track_ip", "no usable target is left: mwan3's probes always failed, so "
                                       "the interface was offline after 'down' rounds; NetPath "
                                       "keeps it disabled")
        present = _unconverted(conv, section, track_keys | {"initial_state"})
        if present:
            conv.note(section, None, f"its tracking options ({', '.join(present)}) have no use on a "
                                     "disabled interface and are not converted")
        return None
    t["targets"] = usable
    if method == "dns":
        t["dns_query"], t["dns_type"] = NSLOOKUP_QUERY, "A"
    if method == "httping":
        httping(conv, section, usable, t)
    elif "httping_ssl" in section.options:
        conv.note(section, "httping_ssl", f"used by httping only; the method is {method}; "
                                          "not converted")
    values = {}
    for key, default in INT_TRACK.items():
        hi = {"timeout": 60, "interval": 3600, "failure_latency": 60000,
              "recovery_latency": 60000, "failure_loss": 100, "recovery_loss": 100,
              "size": 65507, "max_ttl": 255}.get(key, 100)
        lo = 0 if key.endswith("_loss") else 1
        values[key] = conv.integer(section, key, default, lo, hi)
    for key in OPTIONAL_TRACK:  # mwan3's backend default: interval
        values[key] = conv.integer(section, key, values["interval"], 1, 3600)
    for key, default in BOOL_TRACK.items():
        values[key] = conv.boolean(section, key, default)
    if values["reliability"] > len(usable):
        conv.note(section, "reliability",
                  f"{values['reliability']} is more than the {len(usable)} target(s): no round "
                  "could ever succeed, so mwan3 took the interface offline after 'down' rounds "
                  f"and never back; NetPath uses reliability {len(usable)} (set enabled '0' to "
                  "keep it unused)")
        conv.diffs.append(f"Interface '{name}': reliability {values['reliability']} with "
                          f"{len(usable)} target(s) kept it offline in mwan3 for good; NetPath "
                          f"uses reliability {len(usable)}, so the interface carries traffic.")
        values["reliability"] = len(usable)
    for kind in ("latency", "loss"):
        fail, rec = values[f"failure_{kind}"], values[f"recovery_{kind}"]
        if rec > fail:
            conv.note(section, f"recovery_{kind}",
                      f"{rec} is above failure_{kind} {fail}: every result below failure_{kind} "
                      f"already counts as up in mwan3; NetPath needs recovery <= failure and uses "
                      f"{fail}, which judges the same")
            values[f"recovery_{kind}"] = fail
    for key, value in values.items():
        if key in section.options or key in TIMING or conv.differs(validate.TRACK, key, value):
            t[key] = value
    if "initial_state" in section.options or conv.differs(validate.TRACK, "initial_state", initial):
        t["initial_state"] = initial
    return t


def track_method(conv: Converter, section, family) -> str:
    raw = conv.get(section, "track_method") or "ping"
    conv.done(section, "track_method")
    if raw in ("ping", "httping"):
        return raw
    if raw == "arping" and family == "ipv4":
        return "arping"
    if raw == "arping":
        conv.note(section, "track_method", "arping is IPv4 only and mwan3 falls back to ping; "
                                           "NetPath uses ping")
        return "ping"
    if raw == "nping-arp" and family == "ipv4":
        conv.note(section, "track_method", "NetPath has no nping; 'nping-arp' becomes NetPath's "
                                           "arping (ARP request to each target)")
        return "arping"
    if raw.startswith("nping-"):
        conv.note(section, "track_method", f"NetPath has no nping; '{raw}' becomes ping (ICMP echo "
                                           "to each target), the nearest method")
        return "ping"
    if raw == "nslookup":
        conv.note(section, "track_method", "'nslookup' becomes NetPath's dns method: the same "
                                           f"query ({NSLOOKUP_QUERY}, type A) sent to each target")
        return "dns"
    conv.note(section, "track_method", f"'{raw}' is not a method mwan3 knows; mwan3 falls back to "
                                       "ping, and so does NetPath")
    return "ping"


def _unconverted(conv: Converter, section, keys) -> list:
    """Mark the options of `keys` that `section` sets as reported (a note names them)."""
    present = sorted(k for k in keys if k in section.options)
    for key in present:
        conv.handled[(section.name, key)] = "reported"
    return present


def unusable_target(target: str, family: str, method: str) -> "str | None":
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        if method != "httping":
            return (f"a host name; NetPath's {method} needs IP addresses (mwan3 resolved it on "
                    "every probe)")
        try:
            validate.TrackTarget(target)
        except vol.Invalid:
            return "neither an IP address nor a host name"
        return None
    if (address.version == 6) != (family == "ipv6"):
        return (f"an IPv{address.version} address on an {family} interface: mwan3's probe of it "
                "always fails")
    never = validate.never_answers(address)
    if never:
        return f"{never}, a placeholder, not a host: mwan3's probes of it never succeeded"
    return None


def httping(conv: Converter, section, targets, t):
    ssl = conv.boolean(section, "httping_ssl", False)
    # httping's exit status says "a reply came", whatever the status code; 0 = any 2xx/3xx.
    t["http_status"] = 0
    if not ssl:
        return
    if len(targets) == 1:
        host = f"[{targets[0]}]" if ":" in targets[0] else targets[0]
        t["http_url"] = f"https://{host}/"
        return
    conv.note(section, "httping_ssl", "NetPath's http_url is one URL for all targets, so https per "
                                      f"target cannot be written; NetPath probes http://<target>/ "
                                      f"for each of {', '.join(targets)}")
