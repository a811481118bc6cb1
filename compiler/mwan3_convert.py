"""Convert mwan3's sections into a NetPath config tree (load's shape), with notes.

Sections are converted type by type (globals, interfaces, members, policies, rules)
because each refers to the NetPath names the earlier ones made. The Converter holds what
they share: the tree, which mwan3 name became which NetPath name or was left out, and
what `differences` needs later. Globals, members and policies are converted here;
interfaces with their tracking in mwan3_track, rules in mwan3_rule.

mwan3's defaults are written out wherever NetPath's default (taken from validate's schema,
not copied here) differs, so a later change of a NetPath default cannot change a
converted config.
"""

from __future__ import annotations

import voluptuous as vol

from netpath.agent import marks

from . import uci, validate
from .mwan3_read import MWAN3_MAX_METRIC, MWAN3_NAME_LIMIT, MWAN3_OPTIONS, Note, Reader, safe_name
from .mwan3_rule import convert_rule
from .mwan3_track import convert_interface

OBSOLETE_GLOBALS = {
    "local_source": "removed from mwan3 in 2018 (2.7); router-originated traffic follows the rules "
                    "like any other in both mwan3 and NetPath",
    "rtmon_interval": "removed from mwan3 in 2020 (2.9); NetPath follows route changes through "
                      "netlink, there is nothing to poll",
    "enabled": "never a config option (mwan3 kept it as run-time state); NetPath's globals "
               "'enabled' defaults to 1",
}
LOGLEVEL_NAMES = {"error": "err", "warning": "warn", "0": "emerg", "1": "alert", "2": "crit",
                  "3": "err", "4": "warn", "5": "notice", "6": "info", "7": "debug"}


def _schema_default(schema: dict, key: str):
    for marker in schema:
        if str(marker) == key and isinstance(marker, vol.Optional):
            default = marker.default
            if default is not vol.UNDEFINED:
                return default() if callable(default) else default
    return None


class Converter(Reader):
    def __init__(self, package: uci.UciPackage):
        super().__init__()
        self.package = package
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

    def run(self) -> dict:
        for error in self.package.warnings:
            self.notes.append(Note(error.line, "UCI syntax", f"mwan3's loader skips this: {error.message}; "
                                                       "so does this conversion"))
        kinds = {"globals": [], "interface": [], "member": [], "policy": [], "rule": []}
        for section in self.package.sections:
            if section.type not in kinds:
                self.drop(section, f"mwan3 has no section type '{section.type}' and ignores it")
                continue
            kinds[section.type].append(section)
        for section in kinds["globals"]:
            self.globals(section)
        for position, section in enumerate(kinds["interface"], start=1):
            convert_interface(self, section, position)
        for section in kinds["member"]:
            self.member(section)
        for section in kinds["policy"]:
            self.policy(section)
        for section in kinds["rule"]:
            convert_rule(self, section)
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
            return self.drop(section, "mwan3 reads only the globals section named 'globals' and "
                                      "ignores this one")
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
            self.skipped_policies.add(section.name)
            return self.drop(section, f"the name has more than {MWAN3_NAME_LIMIT} characters, so mwan3 "
                                      "skips the policy (rules using it match nothing)")
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
