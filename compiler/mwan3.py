"""`netpath import-mwan3`: turn an mwan3 config into a NetPath config that behaves the same.

The mwan3 file is read the way mwan3 reads it: UCI in non-strict mode (the shell loader
runs `uci -S`), options through `config_get` (a `list` reads as its items joined by
spaces), lists through `config_list_foreach` (an `option` written where a list belongs is
invisible), booleans through `config_get_bool` for the five options mwan3 reads that way.
Every option of every mwan3 version (reference: shared mwan3.md §1) is either converted
or reported in a note that names the section and option and says what NetPath does
instead; nothing is dropped without a note.

The result is a plain NetPath tree (load's shape) written by emit.py. mwan3's defaults
are written out wherever NetPath's default (taken from validate's schema, not copied
here) differs, so a later change of a NetPath default cannot change a converted config.
`differences()` lists where NetPath will still behave differently, and why.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import voluptuous as vol

from netpath.agent import marks

from . import emit, load, uci, validate

DEFAULT_PATH = "/etc/config/mwan3"

# Options each mwan3 section type has had in any version (mwan3.md §1).
MWAN3_OPTIONS = {
    "globals": {"mmx_mask", "logging", "loglevel", "rt_table_lookup", "source_routing",
                "local_source", "rtmon_interval", "enabled"},
    "interface": {"enabled", "family", "track_ip", "track_method", "reliability", "count",
                  "timeout", "interval", "failure_interval", "recovery_interval",
                  "keep_failure_interval", "down", "up", "size", "max_ttl", "check_quality",
                  "failure_latency", "recovery_latency", "failure_loss", "recovery_loss",
                  "initial_state", "httping_ssl", "flush_conntrack", "online_metric"},
    "member": {"interface", "metric", "weight"},
    "policy": {"use_member", "last_resort"},
    "rule": {"use_policy", "family", "proto", "src_ip", "src_port", "dest_ip", "dest_port",
             "src_iface", "ipset", "sticky", "timeout", "logging"},
}
OBSOLETE_GLOBALS = {
    "local_source": "removed from mwan3 in 2018 (2.7); router-originated traffic follows the rules "
                    "like any other in both mwan3 and NetPath",
    "rtmon_interval": "removed from mwan3 in 2020 (2.9); NetPath follows route changes through "
                      "netlink, there is nothing to poll",
    "enabled": "never a config option (mwan3 kept it as run-time state); NetPath's globals "
               "'enabled' defaults to 1",
}
# Tracking options copied one to one (mwan3 name = NetPath's UCI name), with mwan3's default.
INT_TRACK = {"reliability": 1, "count": 1, "timeout": 4, "interval": 10, "down": 5, "up": 5,
             "size": 56, "max_ttl": 60, "failure_latency": 1000, "recovery_latency": 500,
             "failure_loss": 40, "recovery_loss": 10}
BOOL_TRACK = {"keep_failure_interval": False, "check_quality": False}
OPTIONAL_TRACK = ("failure_interval", "recovery_interval")  # default: interval, in both
MWAN3_BOOL_TRUE = ("1", "on", "true", "yes", "enabled")  # config_get_bool, case-sensitive
MWAN3_BOOL_FALSE = ("0", "off", "false", "no", "disabled")
LOGLEVEL_NAMES = {"error": "err", "warning": "warn", "0": "emerg", "1": "alert", "2": "crit",
                  "3": "err", "4": "warn", "5": "notice", "6": "info", "7": "debug"}
NSLOOKUP_QUERY = "www.google.com"  # mwan3track: `nslookup www.google.com <track_ip>`
MWAN3_NAME_LIMIT = 15  # policy and rule names (iptables chain names); longer ones are skipped
MWAN3_IFACE_SAFE = 13  # interface names: chain mwan3_iface_in_<name> must fit 28 characters
MWAN3_MAX_METRIC = 256


@dataclass(frozen=True)
class Note:
    """One thing the user should know about the conversion, located in the mwan3 file."""

    line: int
    where: str  # "interface 'wan' option 'track_ip'"
    text: str

    def format(self, filename: str) -> str:
        place = f"{filename}:{self.line}" if self.line else filename
        return f"{place}: {self.where}: {self.text}"


@dataclass
class Conversion:
    tree: dict  # NetPath config tree (load's shape, native values)
    notes: list  # of Note, in file order
    differences: list  # of str: where NetPath behaves differently for this config
    handled: dict = field(default_factory=dict)  # (section, option) -> "converted" | "reported"
    source_name: str = ""


def _where(section, option: "str | None" = None) -> str:
    label = f"{section.type} '{section.name}'"
    return f"{label} option '{option}'" if option else label


def safe_name(name: str, limit: int = 32) -> str:
    """A NetPath name for `name`: itself when valid, else letters, digits and '_' only,
    cut to fit with a hash of the original appended so different names stay different."""
    if validate.NAME_RE.match(name) and len(name) <= limit:
        return name
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name) or "x"
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[:limit - 9]}_{digest}"


def _schema_default(schema: dict, key: str):
    for marker in schema:
        if str(marker) == key and isinstance(marker, vol.Optional):
            default = marker.default
            if default is not vol.UNDEFINED:
                return default() if callable(default) else default
    return None


class _Converter:
    def __init__(self, package: uci.UciPackage):
        self.package = package
        self.notes: list = []
        self.handled: dict = {}
        self.diffs: list = []
        self.tree: dict = {"globals": {}, "interfaces": {}, "members": {}, "policies": {}, "rules": []}
        self.iface_names: dict = {}  # mwan3 interface -> NetPath name
        self.member_names: dict = {}  # mwan3 member -> NetPath name
        self.policy_names: dict = {}  # mwan3 policy -> NetPath name
        self.policy_fallback: dict = {}  # mwan3 policy without members -> its last_resort
        self.skipped_policies: set = set()  # names mwan3 rejects (too long)
        self.used_names: set = set()
        self.flushes: dict = {}  # NetPath interface -> events
        self.special_pins: list = []  # (what, kind) for unreachable/blackhole

    # -- reading values as mwan3 does ----------------------------------------------------------

    def note(self, section, option, text, line=None):
        opt = section.options.get(option) if option else None
        line = line or (opt.line if opt else section.line)
        note = Note(line, _where(section, option), text)
        if note not in self.notes:  # an option read twice is reported once
            self.notes.append(note)
        if option:
            self.handled[(section.name, option)] = "reported"

    def drop(self, section, text, option=None):
        """Leave a whole section out: one note on the section (at the line of the option
        that decided it), which accounts for every option in it."""
        opt = section.options.get(option) if option else None
        self.note(section, None, f"{text}; not converted", line=opt.line if opt else None)
        for name in section.options:
            self.handled[(section.name, name)] = "reported"

    def done(self, section, option):
        self.handled.setdefault((section.name, option), "converted")

    def get(self, section, option) -> "str | None":
        """config_get: the value, a list's items joined by spaces, None when unset or empty."""
        opt = section.options.get(option)
        if opt is None:
            return None
        if opt.is_list:
            value = " ".join(opt.value)
            self.note(section, option, f"written as a list; mwan3 reads it as the single value "
                                       f"{value!r} and so does this conversion (write it as 'option')")
        else:
            value = opt.value
        return value if value != "" else None

    def items(self, section, option) -> "tuple[list, bool]":
        """config_list_foreach: the items of a `list`; (words of the option, True) when
        the user wrote `option` instead, which mwan3 never reads."""
        opt = section.options.get(option)
        if opt is None:
            return [], False
        if opt.is_list:
            return [v for v in opt.value], False
        return opt.value.split(), True

    def boolean(self, section, option, default: bool) -> bool:
        value = self.get(section, option)
        self.done(section, option)
        if value is None:
            return default
        if value in MWAN3_BOOL_TRUE:
            return True
        if value in MWAN3_BOOL_FALSE:
            return False
        self.note(section, option, f"{value!r} is not a boolean mwan3 knows (1/0, yes/no, on/off, "
                                   f"true/false, enabled/disabled); mwan3 uses its default "
                                   f"{int(default)}, and so does NetPath")
        return default

    def integer(self, section, option, default: int, lo: int, hi: int) -> int:
        value = self.get(section, option)
        self.done(section, option)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            self.note(section, option, f"{value!r} is not a whole number; mwan3's shell tests fail "
                                       f"on it; NetPath uses mwan3's default {default}")
            return default
        if number < lo or number > hi:
            clamped = min(max(number, lo), hi)
            self.note(section, option, f"{number} is outside NetPath's range {lo}..{hi}; "
                                       f"NetPath uses {clamped}")
            return clamped
        return number

    def differs(self, schema: dict, key: str, value) -> bool:
        """True when `value` must be written because NetPath's default is something else."""
        return _schema_default(schema, key) != value

    def netpath_name(self, section) -> str:
        name = safe_name(section.name)
        if name != section.name:
            self.note(section, None, f"the name '{section.name}' is not a valid NetPath name "
                                     f"(1-32 letters, digits, '_'); renamed to '{name}'")
        self.used_names.add(name)
        return name

    # -- the stages ----------------------------------------------------------------------------

    def run(self) -> dict:
        for error in self.package.warnings:
            self.notes.append(Note(error.line, "UCI syntax", f"mwan3's loader skips this: {error.message}; "
                                                       "so does this conversion"))
        kinds = {"globals": [], "interface": [], "member": [], "policy": [], "rule": []}
        for section in self.package.sections:
            if section.type not in kinds:
                self.note(section, None, f"mwan3 has no section type '{section.type}' and ignores "
                                         "it; not converted")
                for option in section.options:
                    self.handled[(section.name, option)] = "reported"
                continue
            kinds[section.type].append(section)
        for section in kinds["globals"]:
            self.globals(section)
        for position, section in enumerate(kinds["interface"], start=1):
            self.interface(section, position)
        for section in kinds["member"]:
            self.member(section)
        for section in kinds["policy"]:
            self.policy(section)
        for section in kinds["rule"]:
            self.rule(section)
        for kind, sections in kinds.items():
            for section in sections:
                for option in section.options:
                    if option not in MWAN3_OPTIONS[kind] and (section.name, option) not in self.handled:
                        self.note(section, option, f"mwan3 has no option '{option}' for "
                                                   f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                                                   "(in any version) and ignores it; not converted")
        self.notes.sort(key=lambda n: n.line)
        if not self.tree["globals"]:
            del self.tree["globals"]
        return self.tree

    def globals(self, section):
        if section.name != "globals":
            self.note(section, None, "mwan3 reads only the globals section named 'globals' and "
                                     "ignores this one; not converted")
            for option in section.options:
                self.handled[(section.name, option)] = "reported"
            return
        out = self.tree["globals"]
        mask = self.get(section, "mmx_mask")
        self.done(section, "mmx_mask")
        if mask is not None:
            try:
                number = int(mask, 16)
                validate.Mask(mask)
                out["mark_mask"] = f"0x{number:X}"
            except (ValueError, vol.Invalid) as exc:
                reason = exc.msg if isinstance(exc, vol.Invalid) else "not a hex number"
                self.note(section, "mmx_mask", f"{mask!r}: {reason}; NetPath uses its default mask "
                                               f"0x{marks.DEFAULT_MASK:X}")
        logging = self.get(section, "logging")
        if logging is not None:
            out["logging"] = logging == "1"  # mwan3 tests for exactly "1"
        self.done(section, "logging")
        level = self.get(section, "loglevel")
        self.done(section, "loglevel")
        if level is not None:
            name = LOGLEVEL_NAMES.get(level, level)
            if name in validate.LOG_LEVELS:
                out["loglevel"] = name
            else:
                self.note(section, "loglevel", f"{level!r} is not a syslog level; NetPath uses "
                                               f"'notice', mwan3's default")
        tables, was_option = self.items(section, "rt_table_lookup")
        if section.options.get("rt_table_lookup"):
            unread = ("written as 'option', which mwan3 never reads (only 'list' items); "
                      if was_option else "")
            self.note(section, "rt_table_lookup",
                      f"{unread}NetPath has no equivalent: it copies only the main table's routes into the "
                      f"WAN tables and does not exempt the destinations of table(s) "
                      f"{', '.join(tables) or '(empty)'}; add a rule with policy 'default' for those "
                      "destinations to keep them on the main table")
            self.diffs.append(f"Extra routing tables (rt_table_lookup {' '.join(tables)}): mwan3 sends "
                              "traffic to their destinations through the main table and copies their "
                              "routes into every WAN table; NetPath does neither. Write a rule with "
                              "policy 'default' for those destinations.")
        if section.options.get("source_routing"):
            self.note(section, "source_routing",
                      "NetPath has no equivalent: each WAN table holds a default route via that WAN "
                      "and the main table's non-WAN routes; source-specific (IPv6 'from') defaults "
                      "are not copied")
        for option, why in OBSOLETE_GLOBALS.items():
            if option in section.options:
                self.note(section, option, f"obsolete: {why}; not converted")

    def interface(self, section, position: int):
        name = self.netpath_name(section)
        self.iface_names[section.name] = name
        out: dict = {}
        enabled = self.boolean(section, "enabled", False)
        family = self.get(section, "family") or "ipv4"
        self.done(section, "family")
        if family not in ("ipv4", "ipv6"):
            self.note(section, "family", f"{family!r} is neither ipv4 nor ipv6, so mwan3 sets "
                                         "nothing up for it; NetPath keeps the interface disabled")
            family, enabled = "ipv4", False
        device = section.name
        if section.anonymous or not validate.DEVICE_RE.match(device):
            why = ("an anonymous section cannot name a netifd interface" if section.anonymous else
                   f"'{device}' cannot be a NetPath ifname (1-15 characters, starting with a letter "
                   "or digit)")
            device = safe_name(device, 15)
            self.note(section, None, f"{why}; mwan3 cannot use it either; NetPath keeps it disabled "
                                     f"with ifname '{device}': set the device or logical name")
            enabled = False
        elif len(section.name) > MWAN3_IFACE_SAFE:
            self.note(section, None, f"the name has {len(section.name)} characters: mwan3's iptables "
                                     f"chain for it is too long (limit {MWAN3_IFACE_SAFE}) and fails "
                                     "to load; NetPath has no such limit")
        out["enabled"] = enabled
        out["ifname"] = device
        out["family"] = family
        mask = int(self.tree["globals"].get("mark_mask", hex(marks.DEFAULT_MASK)), 16)
        if position <= min(marks.max_interfaces(mask), marks.MAX_ID):
            # mwan3's id (position among interface sections): the same mark, so flows marked
            # by mwan3 keep their WAN when NetPath takes over; NetPath keeps it from now on.
            out["id"] = position
        flush = self.flush_conntrack(section, name)
        if flush:
            out["flush_conntrack"] = flush
        if "online_metric" in section.options:
            self.note(section, "online_metric", "obsolete: existed only from 2018-08 to 2018-11; "
                                                "not converted")
        out["track"] = self.track(section, family, name, enabled)
        if out["track"] is None:  # every target unusable: mwan3 never had it online
            out["enabled"] = False
            out["track"] = {"method": "none"}
        self.tree["interfaces"][name] = out

    def flush_conntrack(self, section, name) -> list:
        items, was_option = self.items(section, "flush_conntrack")
        if "flush_conntrack" not in section.options:
            return []
        self.done(section, "flush_conntrack")
        events: list = []
        if was_option:
            old = " ".join(items)
            migrated = {"never": [], "always": ["ifup", "ifdown"], "ifup": ["ifup"],
                        "ifdown": ["ifdown"]}.get(old)
            if migrated is None:
                self.note(section, "flush_conntrack", f"old single-value form {old!r} is not one of "
                                                      "never/always/ifup/ifdown; not converted")
                return []
            self.note(section, "flush_conntrack",
                      f"the pre-2.8 form 'option flush_conntrack {old}' (mwan3 2.8+ migrates it to a "
                      f"list) becomes {', '.join(migrated) or 'no flush'}")
            events = migrated
        else:
            for item in items:
                if item in validate.FLUSH_EVENTS and item not in events:
                    events.append(item)
                elif item not in validate.FLUSH_EVENTS:
                    self.note(section, "flush_conntrack", f"'{item}' is not an event mwan3 knows "
                                                          "(ifup, ifdown, connected, disconnected); "
                                                          "dropped")
        if events:
            self.notes.append(Note(section.options["flush_conntrack"].line,
                                   _where(section, "flush_conntrack"),
                                   f"on {', '.join(events)} mwan3 flushed the whole conntrack table "
                                   f"(every WAN's flows); NetPath deletes only the flows of '{name}'"))
            self.flushes[name] = events
        return events

    def track(self, section, family, name, enabled) -> "dict | None":
        targets, was_option = self.items(section, "track_ip")
        self.done(section, "track_ip")
        t: dict = {}
        if was_option and targets:
            self.note(section, "track_ip",
                      "written as 'option', which mwan3 never reads (only 'list' items): its tracker "
                      f"probed nothing and the interface went offline after 'down' rounds for good; "
                      f"NetPath tracks {', '.join(targets)} as a list")
        track_keys = ({"track_method", "httping_ssl", "reliability", "count", "timeout", "interval",
                       "failure_interval", "recovery_interval", "keep_failure_interval", "down",
                       "up", "size", "max_ttl", "check_quality", "failure_latency",
                       "recovery_latency", "failure_loss", "recovery_loss"})
        initial = self.get(section, "initial_state")
        self.done(section, "initial_state")
        if initial is not None and initial not in ("online", "offline"):
            self.note(section, "initial_state", f"{initial!r} is not online/offline; mwan3 treats it "
                                                "as online, and so does NetPath")
        initial = "offline" if initial == "offline" else "online"
        if not targets:
            present = sorted(k for k in track_keys if k in section.options)
            for key in present:
                self.handled[(section.name, key)] = "reported"
            unused = f"; its tracking options ({', '.join(present)}) have no use and are not " \
                     "converted" if present else ""
            self.note(section, None, "no track_ip: mwan3 runs no tracker, the state follows the link "
                                     f"and initial_state only; NetPath does the same with track_method "
                                     f"'none'{unused}")
            t["method"] = "none"
            if "initial_state" in section.options or self.differs(validate.TRACK, "initial_state", initial):
                t["initial_state"] = initial
            return t

        method = self.method(section, family)
        t["method"] = method
        usable = []
        for target in targets:
            reason = self.unusable_target(target, family, method)
            if reason:
                self.note(section, "track_ip", f"target '{target}': {reason}; dropped")
            elif target in usable:
                self.note(section, "track_ip", f"target '{target}' is listed twice; NetPath probes "
                                               "it once")
            else:
                usable.append(target)
                if target in ("0.0.0.0", "::"):
                    self.note(section, "track_ip", f"target '{target}' is a placeholder, not a host: "
                                                   "probes of it never succeed, in mwan3 as in NetPath; "
                                                   "put a real address here")
        if not usable:
            self.note(section, "track_ip", "no usable target is left: mwan3's probes always failed, so "
                                           "the interface was offline after 'down' rounds; NetPath "
                                           "keeps it disabled")
            return None
        t["targets"] = usable
        if method == "dns":
            t["dns_query"], t["dns_type"] = NSLOOKUP_QUERY, "A"
        if method == "httping":
            self.httping(section, usable, t)
        elif "httping_ssl" in section.options:
            self.note(section, "httping_ssl", f"used by httping only; the method is {method}; "
                                              "not converted")
        values = {}
        for key, default in INT_TRACK.items():
            hi = {"timeout": 60, "interval": 3600, "failure_latency": 60000,
                  "recovery_latency": 60000, "failure_loss": 100, "recovery_loss": 100,
                  "size": 65507, "max_ttl": 255}.get(key, 100)
            lo = 0 if key.endswith("_loss") else 1
            values[key] = self.integer(section, key, default, lo, hi)
        for key in OPTIONAL_TRACK:
            if key in section.options:
                values[key] = self.integer(section, key, values["interval"], 1, 3600)
        for key, default in BOOL_TRACK.items():
            values[key] = self.boolean(section, key, default)
        if values["reliability"] > len(usable):
            self.note(section, "reliability",
                      f"{values['reliability']} is more than the {len(usable)} target(s): no round "
                      "could ever succeed, so mwan3 took the interface offline after 'down' rounds "
                      f"and never back; NetPath uses reliability {len(usable)} (set enabled '0' to "
                      "keep it unused)")
            self.diffs.append(f"Interface '{name}': reliability {values['reliability']} with "
                              f"{len(usable)} target(s) kept it offline in mwan3 for good; NetPath "
                              f"uses reliability {len(usable)}, so the interface carries traffic.")
            values["reliability"] = len(usable)
        for kind in ("latency", "loss"):
            fail, rec = values[f"failure_{kind}"], values[f"recovery_{kind}"]
            if rec > fail:
                self.note(section, f"recovery_{kind}",
                          f"{rec} is above failure_{kind} {fail}: every result below failure_{kind} "
                          f"already counts as up in mwan3; NetPath needs recovery <= failure and uses "
                          f"{fail}, which judges the same")
                values[f"recovery_{kind}"] = fail
        for key, value in values.items():
            if key in section.options or self.differs(validate.TRACK, key, value):
                t[key] = value
        if "initial_state" in section.options or self.differs(validate.TRACK, "initial_state", initial):
            t["initial_state"] = initial
        return t

    def method(self, section, family) -> str:
        raw = self.get(section, "track_method") or "ping"
        self.done(section, "track_method")
        if raw in ("ping", "httping"):
            return raw
        if raw == "arping" and family == "ipv4":
            return "arping"
        if raw == "arping":
            self.note(section, "track_method", "arping is IPv4 only and mwan3 falls back to ping; "
                                               "NetPath uses ping")
            return "ping"
        if raw == "nping-arp" and family == "ipv4":
            self.note(section, "track_method", "NetPath has no nping; 'nping-arp' becomes NetPath's "
                                               "arping (ARP request to each target)")
            return "arping"
        if raw.startswith("nping-"):
            self.note(section, "track_method", f"NetPath has no nping; '{raw}' becomes ping (ICMP echo "
                                               "to each target), the nearest method")
            return "ping"
        if raw == "nslookup":
            self.note(section, "track_method", "'nslookup' becomes NetPath's dns method: the same "
                                               f"query ({NSLOOKUP_QUERY}, type A) sent to each target")
            return "dns"
        self.note(section, "track_method", f"'{raw}' is not a method mwan3 knows; mwan3 falls back to "
                                           "ping, and so does NetPath")
        return "ping"

    def unusable_target(self, target: str, family: str, method: str) -> "str | None":
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
        return None

    def httping(self, section, targets, t):
        ssl = self.boolean(section, "httping_ssl", False)
        # httping's exit status says "a reply came", whatever the status code; 0 = any 2xx/3xx.
        t["http_status"] = 0
        if not ssl:
            return
        if len(targets) == 1:
            host = f"[{targets[0]}]" if ":" in targets[0] else targets[0]
            t["http_url"] = f"https://{host}/"
            return
        self.note(section, "httping_ssl", "NetPath's http_url is one URL for all targets, so https per "
                                          f"target cannot be written; NetPath probes http://<target>/ "
                                          f"for each of {', '.join(targets)}")

    def member(self, section):
        iface = self.get(section, "interface")
        self.done(section, "interface")
        if iface is None or iface not in self.iface_names:
            what = ("has no option 'interface'" if iface is None else
                    f"option 'interface': uses interface '{iface}', which does not exist")
            return self.drop(section, f"{what}; mwan3 skips the member silently", "interface")
        metric = self.get(section, "metric")
        if metric is not None and metric.strip().isdigit() and int(metric) > MWAN3_MAX_METRIC:
            return self.drop(section, f"option 'metric' {metric} is above {MWAN3_MAX_METRIC}, so mwan3 "
                                      "ignores the member", "metric")
        name = self.netpath_name(section)
        out = {"interface": self.iface_names[iface]}
        out["metric"] = self.integer(section, "metric", 1, 1, MWAN3_MAX_METRIC)
        out["weight"] = self.integer(section, "weight", 1, 1, 1000)
        for key in ("metric", "weight"):
            if key not in section.options and not self.differs(validate.MEMBER, key, out[key]):
                del out[key]
        self.member_names[section.name] = name
        self.tree["members"][name] = out

    def policy(self, section):
        members, was_option = self.items(section, "use_member")
        self.done(section, "use_member")
        last_resort = self.get(section, "last_resort")
        self.done(section, "last_resort")
        if last_resort not in (None, "unreachable", "blackhole", "default"):
            self.note(section, "last_resort", f"{last_resort!r} is not unreachable/blackhole/default; "
                                              "mwan3 treats it as unreachable, and so does NetPath")
        last_resort = last_resort if last_resort in ("blackhole", "default") else "unreachable"
        if len(section.name) > MWAN3_NAME_LIMIT:
            self.note(section, None, f"the name has more than {MWAN3_NAME_LIMIT} characters, so mwan3 "
                                     "skips the policy (rules using it match nothing); not converted")
            self.skipped_policies.add(section.name)
            for option in section.options:
                self.handled[(section.name, option)] = "reported"
            return
        if was_option and members:
            self.note(section, "use_member", "written as 'option', which mwan3 never reads (only 'list' "
                                             "items), so its policy had no member and always used "
                                             f"last_resort; NetPath uses {', '.join(members)} as a list")
        chosen: list = []
        by_iface: dict = {}
        for member in members:
            if member not in self.member_names:
                self.note(section, "use_member", f"member '{member}' does not exist or was not "
                                                 "converted (see above); mwan3 skips it silently")
                continue
            name = self.member_names[member]
            if name in chosen:
                self.note(section, "use_member", f"member '{member}' is listed twice; NetPath uses it once")
                continue
            iface = self.tree["members"][name]["interface"]
            metric = self.tree["members"][name].get("metric", 1)
            if iface in by_iface:
                other = by_iface[iface]
                keep = self.same_interface(section, other, name, metric)
                chosen[chosen.index(other)] = keep
                by_iface[iface] = keep
                continue
            by_iface[iface] = name
            chosen.append(name)
        if len(chosen) > validate.MAX_MEMBERS_PER_POLICY:
            dropped = chosen[validate.MAX_MEMBERS_PER_POLICY:]
            chosen = chosen[:validate.MAX_MEMBERS_PER_POLICY]
            self.note(section, "use_member", f"NetPath takes at most {validate.MAX_MEMBERS_PER_POLICY} "
                                             f"members per policy; dropped {', '.join(dropped)}")
        if not chosen:
            self.note(section, None, f"no usable member: mwan3 always gives last_resort "
                                     f"'{last_resort}'; NetPath writes no policy and sends the rules "
                                     f"that use it straight to '{last_resort}'")
            self.policy_fallback[section.name] = last_resort
            return
        name = self.netpath_name(section)
        self.policy_names[section.name] = name
        out: dict = {"members": chosen}
        if self.differs(validate.POLICY, "mode", "balanced"):
            out["mode"] = "balanced"  # weights, as mwan3 spreads them
        if "last_resort" in section.options or self.differs(validate.POLICY, "last_resort", last_resort):
            out["last_resort"] = last_resort
        if last_resort in ("unreachable", "blackhole"):
            self.special_pins.append((f"policy '{name}'", last_resort))
        self.tree["policies"][name] = out

    def same_interface(self, section, first: str, second: str, metric: int) -> str:
        """Two members of one policy on the same interface. NetPath takes each interface once:
        the lower metric one is the only one that can carry traffic (both live and die
        together); at equal metrics mwan3 adds their weights, so a member with the sum does."""
        members = self.tree["members"]
        iface = members[first]["interface"]
        first_metric = members[first].get("metric", 1)
        if first_metric != metric:
            keep = first if first_metric < metric else second
            self.note(section, "use_member", f"members '{first}' and '{second}' both use interface "
                                             f"'{iface}'; only the lower metric one can carry traffic; "
                                             f"NetPath keeps '{keep}'")
            return keep
        total = members[first].get("weight", 1) + members[second].get("weight", 1)
        merged = safe_name(f"{first}_w{total}")
        while merged in self.used_names and members.get(merged, {}).get("weight") != total:
            merged = safe_name(merged + "_")
        self.used_names.add(merged)
        members[merged] = {"interface": iface, "metric": metric, "weight": min(total, 1000)}
        self.note(section, "use_member", f"members '{first}' and '{second}' both use interface "
                                         f"'{iface}' at metric {metric}; mwan3 adds their weights, so "
                                         f"NetPath uses the member '{merged}' with weight {total}")
        return merged

    def rule(self, section):
        def skip(text, option=None):
            if option:
                text = f"option '{option}': {text}"
            self.drop(section, text, option)

        if len(section.name) > MWAN3_NAME_LIMIT:
            return skip(f"the name has more than {MWAN3_NAME_LIMIT} characters, so mwan3 skips the rule")
        target = self.get(section, "use_policy")
        self.done(section, "use_policy")
        if target is None:
            return skip("no use_policy, so mwan3 skips the rule")
        out: dict = {"name": section.name}
        if target in validate.SPECIAL_TARGETS:
            policy = target
        elif target in self.policy_names:
            policy = self.policy_names[target]
        elif target in self.policy_fallback:
            policy = self.policy_fallback[target]
            self.note(section, "use_policy", f"policy '{target}' has no usable member; NetPath sends "
                                             f"the rule straight to its last_resort '{policy}'")
        else:
            why = ("was skipped by mwan3 (name too long)" if target in self.skipped_policies
                   else "does not exist")
            return skip(f"policy '{target}' {why}: mwan3 jumps to an empty chain and the packet goes "
                        "on to the next rule, which is what leaving the rule out does", "use_policy")
        if policy in ("unreachable", "blackhole"):
            self.special_pins.append((f"rule '{section.name}'", policy))

        family = self.get(section, "family") or "any"
        self.done(section, "family")
        if family not in ("any", "ipv4", "ipv6"):
            return skip(f"family {family!r} is not ipv4/ipv6/any, so mwan3 loads the rule for neither "
                        "family", "family")
        proto = (self.get(section, "proto") or "all").strip()
        self.done(section, "proto")
        proto_out = self.protocol(proto)
        if proto_out is None:
            return skip(f"protocol {proto!r} is unknown; iptables rejects the rule in mwan3", "proto")

        families = set()
        for key in ("src_ip", "dest_ip"):
            value = self.get(section, key)
            self.done(section, key)
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
            value = self.get(section, key)
            self.done(section, key)
            if value is None:
                continue
            if proto not in ("tcp", "udp"):
                self.note(section, key, f"mwan3 ignores ports unless proto is tcp or udp (here "
                                        f"{proto!r}), so the rule matches every port; so does NetPath")
                continue
            try:
                ranges = validate.Ports(value)
            except vol.Invalid as exc:
                return skip(f"{exc.msg}; iptables rejects the rule in mwan3", key)
            spec = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
            out[key] = int(spec) if spec.isdigit() else spec

        iface = self.get(section, "src_iface")
        self.done(section, "src_iface")
        if iface is not None:
            if iface in self.iface_names:
                out["src_iface"] = self.iface_names[iface]
            elif validate.DEVICE_RE.match(iface):
                out["src_iface"] = iface
                self.note(section, "src_iface", f"mwan3 looks up the device of the netifd interface "
                                                f"'{iface}'; NetPath matches '{iface}' as the incoming "
                                                "device name: if the device is called otherwise (e.g. "
                                                "br-lan for lan), write the device")
            else:
                return skip(f"'{iface}' cannot be a device name", "src_iface")
        ipset = self.get(section, "ipset")
        self.done(section, "ipset")
        if ipset is not None:
            set_name = safe_name(ipset, 29)
            if set_name != ipset:
                self.note(section, "ipset", f"'{ipset}' is not a valid NetPath set name; renamed to "
                                            f"'{set_name}'")
            out["ipset"] = set_name
            self.note(section, "ipset", f"destination set: NetPath matches its own nft sets "
                                        f"'{set_name}_v4'/'{set_name}_v6' in its table instead of the "
                                        f"ipset; fill them with dnsmasq "
                                        f"nftset=/<domain>/4#inet#<nft_table>#{set_name}_v4")
        out["policy"] = policy
        sticky = self.get(section, "sticky") == "1"  # `[ "$sticky" -eq 1 ]`
        self.done(section, "sticky")
        if sticky and policy in validate.SPECIAL_TARGETS:
            self.note(section, "sticky", f"sticky has no effect with '{policy}' in mwan3; not converted")
            sticky = False
        if sticky:
            out["sticky"] = True
            timeout = self.integer(section, "timeout", 600, 1, 1000000)
            if "timeout" in section.options or self.differs(validate.RULE, "timeout", timeout):
                out["timeout"] = timeout
        elif "timeout" in section.options:
            self.note(section, "timeout", "used by sticky rules only and this one is not sticky; "
                                          "not converted")
        if self.get(section, "logging") == "1":
            out["logging"] = True
        self.done(section, "logging")
        self.tree["rules"].append(out)

    def protocol(self, proto: str) -> "str | None":
        text = proto.lower()
        if text in validate.PROTOCOLS or (text.isascii() and text.isdigit() and int(text) <= 255):
            return text
        try:
            return str(socket.getprotobyname(text))
        except OSError:
            return None


# --- differences ---------------------------------------------------------------------------


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


def differences(conv: "_Converter") -> list:
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
        out.append(f"Failure detection on '{name}': {timing}. Lower interval, failure_interval, "
                   "timeout or down to react faster. A lost link (ifdown) is seen at once by both.")
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
    return out


# --- entry points ----------------------------------------------------------------------------


def convert_text(text: str, filename: str = "mwan3") -> Conversion:
    package = uci.parse(text, filename, strict=False)
    conv = _Converter(package)
    tree = conv.run()
    return Conversion(tree=tree, notes=conv.notes, differences=differences(conv),
                      handled=conv.handled, source_name=filename)


def convert_file(path) -> Conversion:
    text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    return convert_text(text, str(path))


def header(conv: Conversion) -> list:
    name = Path(conv.source_name).name
    lines = [f"NetPath config converted from the mwan3 config '{name}' by netpath import-mwan3.",
             "`netpath import-mwan3 --explain-diff` lists where NetPath behaves differently."]
    if conv.notes:
        lines.append("Conversion notes:")
        lines.extend(f"  {note.format(name)}" for note in conv.notes)
    return lines


def render(conv: Conversion, fmt: str = "uci") -> str:
    return emit.render(conv.tree, fmt, header(conv))


def _write_atomic(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv, prog="netpath import-mwan3") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Convert an mwan3 config into an equivalent "
                                "NetPath config (UCI by default, ready for /etc/config/netpath).")
    p.add_argument("config", nargs="?", default=DEFAULT_PATH, help=f"mwan3 config (default {DEFAULT_PATH})")
    p.add_argument("-o", "--output", help="write the NetPath config here (default: standard output)")
    p.add_argument("--format", choices=emit.FORMATS, help="output syntax (default: from the -o suffix, else uci)")
    p.add_argument("--explain-diff", action="store_true",
                   help="list where NetPath will behave differently from mwan3 for this config")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the conversion notes")
    args = p.parse_args(argv)
    try:
        conv = convert_file(args.config)
    except OSError as exc:
        print(f"{prog}: cannot read {args.config}: {exc.strerror}", file=sys.stderr)
        return 2
    fmt = args.format or (load.guess_format(args.output) if args.output else "uci")
    text = render(conv, fmt)
    # The converter promises a config NetPath accepts; check it with NetPath's own stages.
    try:
        validate.validate(load.loads(text.encode(), args.output or "<converted>", fmt))
    except (load.LoadError, validate.ConfigErrors) as exc:
        print(f"{prog}: the converted config does not pass NetPath's checks (please report this):",
              file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return 1
    if not args.quiet:
        for note in conv.notes:
            print(f"note: {note.format(args.config)}", file=sys.stderr)
    if args.explain_diff:
        print(f"Where NetPath will behave differently from mwan3 for {args.config}:")
        for line in conv.differences:
            print(f"* {line}")
    if args.output:
        try:
            _write_atomic(Path(args.output), text)
        except OSError as exc:
            print(f"{prog}: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"{prog}: wrote {args.output} ({len(conv.tree['interfaces'])} interfaces, "
              f"{len(conv.tree['policies'])} policies, {len(conv.tree['rules'])} rules, "
              f"{len(conv.notes)} notes)", file=sys.stderr)
    elif not args.explain_diff:
        sys.stdout.write(text)
    return 0
