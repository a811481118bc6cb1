"""Stage 2: check the plain tree. A declarative schema first (types, ranges, strict
patterns for every name that reaches nft or a shell), then cross-reference checks.

Every problem becomes one line that names where it is (file:line for UCI), what is wrong
and what would be right. Defaults are filled in here, so later stages see explicit values.
"""

from __future__ import annotations

import difflib
import ipaddress
import re

import voluptuous as vol

from netpath.agent import marks
from netpath.agent.model import DNS_TYPES, TRACK_LIMITS, TRACK_METHODS
from netpath.agent.names import (AGENT_LOG_LEVELS, DEVICE_RE, DEVICE_SHAPE, DNS_NAME_RE, NAME_RE,
                                 NAME_SHAPE, NFT_KEYWORDS, RESERVED_TABLES, TABLE_RE, TABLE_SHAPE, URL_RE,
                                 host_port, plain_ip)
from netpath.agent.policy import LAST_RESORTS, MODES

from .load import MAX_INT_DIGITS, TRACK_OPTIONS, clip, shown

# Scale limits (docs/config.md, "Limits"). State files grow as 2^members per policy.
MAX_MEMBERS_PER_POLICY = 10
MAX_STATE_FILES = 4096  # over all policies of a bundle
MAX_RULES = 10000  # runs of rules are verdict-map lookups (rulechains); 5,000 compile in 0.3 s
MAX_TARGETS = 32  # per interface
MAX_ADDRESSES = 256  # src_ip/dest_ip entries per rule
MAX_PROBLEMS = 50  # error lines printed; then a count of the rest
# Numbers as text (UCI values, quoted YAML/TOML): ASCII only. Python's int() and float()
# also read '١٢', '１' and '1_0'.
INT_TEXT = re.compile(r"[+-]?(0[xX][0-9A-Fa-f]+|[0-9]+)\Z")
DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?\Z")
HEX_TEXT = re.compile(r"(0[xX])?[0-9A-Fa-f]{1,8}\Z")
# NAME_RE, TABLE_RE, DEVICE_RE, DNS_NAME_RE and URL_RE live in netpath.agent.names, the
# tracking methods and limits in netpath.agent.model: the agent checks a bundle against the
# same patterns and bounds. `\Z`, not `$`: `$` also matches before a trailing newline.
FLUSH_EVENTS = ("ifup", "ifdown", "connected", "disconnected")
LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
PROTOCOLS = {"all": None, "tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "esp": 50, "ah": 51,
             "gre": 47, "sctp": 132, "udplite": 136}
SPECIAL_TARGETS = ("unreachable", "blackhole", "default")

# mwan3 names a user may type out of habit -> NetPath's name (for "did you mean").
MWAN3_SPELLINGS = {"track_ip": "track_targets", "use_member": "members", "use_policy": "policy",
                   "mmx_mask": "mark_mask", "ipset": "ipset"}


class ConfigErrors(Exception):
    def __init__(self, lines):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def suggest(word: str, choices) -> str:
    if word in MWAN3_SPELLINGS and MWAN3_SPELLINGS[word] in choices and MWAN3_SPELLINGS[word] != word:
        return f" (did you mean '{MWAN3_SPELLINGS[word]}'? that is NetPath's name for mwan3's '{word}')"
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --- value validators: each raises vol.Invalid with a message a person can act on ---------

BOOL_WORDS = {"1": True, "on": True, "true": True, "yes": True, "enabled": True,
              "0": False, "off": False, "false": False, "no": False, "disabled": False}


def Bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in BOOL_WORDS:
        return BOOL_WORDS[value.lower()]
    raise vol.Invalid(f"expected a boolean (1/0, yes/no, on/off, true/false), got {shown(value)}")


def whole_number(value) -> int:
    """An int, or text of ASCII digits (0x... for hex); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if not INT_TEXT.match(text) or len(text) > MAX_INT_DIGITS + 3:
        raise ValueError(value)
    return int(text, 0)


def decimal_number(value) -> float:
    """An int or float, or text of an ASCII decimal number; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")
    text = value.strip() if isinstance(value, str) else ""
    if not DECIMAL_TEXT.match(text) or len(text) > 64:
        raise ValueError(value)
    return float(text)


def Int(lo, hi=None):
    def check(value):
        bounds = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
        if isinstance(value, str) and INT_TEXT.match(value.strip()) and len(value.strip()) > MAX_INT_DIGITS:
            raise vol.Invalid(f"{shown(value)} is out of range (allowed: {bounds})")
        try:
            number = whole_number(value)
        except ValueError:
            raise vol.Invalid(f"expected a whole number, got {shown(value)}") from None
        if number < lo or (hi is not None and number > hi):
            raise vol.Invalid(f"{shown(number)} is out of range (allowed: {bounds})")
        return number
    return check


def Seconds(lo=0.01, hi=3600.0):
    def check(value):
        try:
            number = decimal_number(value)
        except ValueError:
            raise vol.Invalid(f"expected a number of seconds (fractions allowed, e.g. 0.2), "
                              f"got {shown(value)}") from None
        if number != number or number < lo or number > hi:
            raise vol.Invalid(f"{clip(value)} s is out of range (allowed: {lo} .. {hi:g} s)")
        return round(number, 3)
    return check


def Number(lo, hi):
    def check(value):
        try:
            number = decimal_number(value)
        except ValueError:
            raise vol.Invalid(f"expected a number, got {shown(value)}") from None
        if not lo <= number <= hi:
            raise vol.Invalid(f"{clip(value)} is out of range (allowed: {lo:g} .. {hi:g})")
        return number
    return check


def OneOf(*choices):
    def check(value):
        if isinstance(value, str) and value in choices:
            return value
        raise vol.Invalid(f"{shown(value)} is not allowed{suggest(clip(value), choices)}; "
                          f"allowed: {', '.join(choices)}")
    return check


def Pattern(regex, what):
    def check(value):
        if isinstance(value, str) and regex.match(value):
            return value
        raise vol.Invalid(f"{shown(value)} is not a valid {what}")
    return check


Name = Pattern(NAME_RE, NAME_SHAPE)
Device = Pattern(DEVICE_RE, DEVICE_SHAPE)


def TableName(value):
    name = Pattern(TABLE_RE, TABLE_SHAPE)(value)
    if name in NFT_KEYWORDS:
        raise vol.Invalid(f"'{name}' is an nft keyword: nft would read `table inet {name}` as a "
                          "syntax error; choose another name (e.g. 'netpath')")
    return name


def HostPort(value):
    try:
        host_port(value)
    except ValueError as exc:
        raise vol.Invalid(str(exc)) from None
    return str(value)


def Mask(value):
    try:
        if isinstance(value, str) and not HEX_TEXT.match(value.strip()):
            raise ValueError(value)
        number = int(value.strip(), 16) if isinstance(value, str) else whole_number(value)
    except (TypeError, ValueError):
        raise vol.Invalid(f"expected a hex mark mask such as 0x3F00, got {shown(value)}") from None
    if number <= 0 or number > 0xFFFFFFFF:
        raise vol.Invalid(f"mark mask {shown(value)} must be a non-zero 32-bit value")
    bits = len(marks.mask_bits(number))
    if bits < 3 or bits > 8:
        raise vol.Invalid(f"mark mask {shown(value)} has {bits} bits; NetPath needs 3 to 8 bits "
                          "(ids for the interfaces plus blackhole, unreachable, default)")
    return number


def Address(value):
    """One IP address."""
    try:
        return str(plain_ip(str(value)))
    except ValueError:
        raise vol.Invalid(f"{shown(value)} is not an IP address") from None


def Prefix(value):
    """An address, a prefix (a.b.c.d/len) or an address with a netmask (a.b.c.d/m.m.m.m,
    also non-contiguous as mwan3 allows). Returned as a canonical string."""
    text = str(value).strip()
    if "/" in text:
        addr, _, mask = text.partition("/")
        try:
            ip = plain_ip(addr)
        except ValueError:
            raise vol.Invalid(f"{shown(value)} is not an address or prefix") from None
        if mask.isascii() and mask.isdigit():
            length = int(mask)
            if length > ip.max_prefixlen:
                raise vol.Invalid(f"{shown(value)}: prefix length {length} is longer than "
                                  f"{ip.max_prefixlen}")
            return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))
        try:
            netmask = plain_ip(mask)
        except ValueError:
            raise vol.Invalid(f"{shown(value)}: '{mask}' is neither a prefix length nor a netmask") from None
        if netmask.version != ip.version:
            raise vol.Invalid(f"{shown(value)}: address and netmask are of different families")
        bits = int(netmask)
        total = ip.max_prefixlen
        inverted = ~bits & ((1 << total) - 1)
        if inverted & (inverted + 1) == 0:  # contiguous
            length = total - inverted.bit_length()
            return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))
        masked = ipaddress.ip_address(int(ip) & bits)
        return f"{masked}/{netmask}"
    try:
        return str(plain_ip(text))
    except ValueError:
        raise vol.Invalid(f"{shown(value)} is not an address or prefix") from None


def prefix_family(text: str) -> str:
    return "ipv6" if ":" in text else "ipv4"


def Ports(value):
    """`80`, `80,443`, `1000-2000`, `1024:2048` (mwan3's multiport form), or a list of these.
    Returned as a sorted list of [lo, hi] ranges."""
    items = value if isinstance(value, list) else [value]
    ranges = []
    for item in items:
        for part in re.split(r"[,\s]+", str(item).strip()):
            if not part:
                continue
            m = re.fullmatch(r"([0-9]{1,5})(?:[-:]([0-9]{1,5}))?", part)
            if not m:
                raise vol.Invalid(f"{shown(part)} is not a port or port range (e.g. 443, 80,443, 1000-2000)")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) else lo
            if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
                raise vol.Invalid(f"{shown(part)}: ports are 1..65535")
            if lo > hi:
                raise vol.Invalid(f"{shown(part)}: the range starts after it ends")
            ranges.append([lo, hi])
    if not ranges:
        raise vol.Invalid("empty port list")
    return sorted(ranges)


def Proto(value):
    text = str(value).strip().lower()
    if text in PROTOCOLS:
        return text
    if text.isascii() and text.isdigit() and 0 <= int(text) <= 255:
        return text
    raise vol.Invalid(f"{shown(value)} is not a protocol{suggest(text, PROTOCOLS)}; allowed: "
                      f"{', '.join(PROTOCOLS)} or a number 0..255")


def ListOf(item, allow_empty=True):
    def check(value):
        items = value if isinstance(value, list) else [value]
        if not items and not allow_empty:
            raise vol.Invalid("must not be empty")
        out, errors = [], []
        for i, element in enumerate(items):
            try:
                out.append(item(element))
            except vol.Invalid as exc:
                errors.append(vol.Invalid(exc.msg, path=[i] if isinstance(value, list) else []))
        if errors:
            raise vol.MultipleInvalid(errors)
        return out
    return check


def Unique(check):
    def inner(value):
        out = check(value)
        seen = set()
        for item in out:
            if item in seen:
                raise vol.Invalid(f"{shown(item)} is listed twice")
            seen.add(item)
        return out
    return inner


def Url(value):
    if isinstance(value, str) and URL_RE.match(value):
        return value
    raise vol.Invalid(f"{shown(value)} is not an http:// or https:// URL")


def DnsName(value):
    if isinstance(value, str) and len(value) <= 253 and DNS_NAME_RE.match(value):
        return value
    raise vol.Invalid(f"{shown(value)} is not a DNS name")


# Text a person means as an address: only digits and dots, or a colon. `192.0.2.256` is
# no host name: no resolver would look it up.
ADDRESS_LIKE = re.compile(r"[0-9.]+\Z|.*:")


def never_answers(ip) -> str:
    """What makes `ip` a probe target no single host answers, or ""."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    return ""


def TrackTarget(value):
    text = str(value).strip()
    try:
        ip = plain_ip(text)
    except ValueError:
        ip = None
    if ip is not None:
        never = never_answers(ip)
        if never:
            raise vol.Invalid(f"{text} is {never}; no probe to it is ever answered by one host")
        return str(ip)
    if ADDRESS_LIKE.match(text):
        raise vol.Invalid(f"{shown(value)} is not a valid IP address")
    if DNS_NAME_RE.match(text) and text != "." and len(text) <= 253:
        return text  # host names are allowed for httping only (checked later)
    raise vol.Invalid(f"{shown(value)} is neither an IP address nor a host name")


def _limited(option: str):
    kind, lo, hi = TRACK_LIMITS[option]
    return {"int": Int, "seconds": Seconds, "number": Number}[kind](lo, hi)


# --- the schema ------------------------------------------------------------------------------

GLOBALS = {
    vol.Optional("enabled", default=True): Bool,
    vol.Optional("nft_table", default="netpath"): TableName,
    vol.Optional("mark_mask", default=marks.DEFAULT_MASK): Mask,
    vol.Optional("logging", default=False): Bool,
    vol.Optional("loglevel", default="notice"): OneOf(*LOG_LEVELS),
    vol.Optional("route_table_base", default=1000): Int(1, 250000),
    vol.Optional("route_protocol", default=93): Int(5, 254),
    # Read by the init script for the agent's command line, not part of the bundle.
    vol.Optional("log_level"): OneOf(*AGENT_LOG_LEVELS),
    vol.Optional("metrics_listen"): HostPort,
}

TRACK = {
    vol.Optional("method", default="ping"): OneOf(*TRACK_METHODS),
    vol.Optional("targets", default=[]): Unique(ListOf(TrackTarget)),
    vol.Optional("reliability", default=1): _limited("reliability"),
    vol.Optional("count", default=1): _limited("count"),
    # Detect a dead uplink within 10 s with one probe per target per second at most:
    # interval + down x timeout + (down - 1) x failure_interval = 1 + 3 x 2 + 2 x 1 = 9 s
    # (docs/config.md). mwan3's 10 / 4 / 5 take 70 s; import-mwan3 writes them explicitly.
    vol.Optional("timeout", default=2.0): _limited("timeout"),
    vol.Optional("interval", default=1.0): _limited("interval"),
    vol.Optional("failure_interval"): _limited("failure_interval"),
    vol.Optional("recovery_interval"): _limited("recovery_interval"),
    vol.Optional("keep_failure_interval", default=False): Bool,
    vol.Optional("up", default=3): _limited("up"),
    vol.Optional("down", default=3): _limited("down"),
    vol.Optional("initial_state", default="online"): OneOf("online", "offline"),
    vol.Optional("check_quality", default=False): Bool,
    vol.Optional("failure_latency", default=1000.0): _limited("failure_latency"),
    vol.Optional("recovery_latency", default=500.0): _limited("recovery_latency"),
    vol.Optional("failure_loss", default=40.0): _limited("failure_loss"),
    vol.Optional("recovery_loss", default=10.0): _limited("recovery_loss"),
    vol.Optional("size", default=56): _limited("size"),
    vol.Optional("max_ttl", default=60): _limited("max_ttl"),
    vol.Optional("http_url"): Url,
    vol.Optional("http_status", default=200): _limited("http_status"),
    vol.Optional("dns_query", default="."): DnsName,
    vol.Optional("dns_type", default="NS"): OneOf(*DNS_TYPES),
}

INTERFACE = {
    vol.Optional("enabled", default=True): Bool,
    vol.Required("ifname"): Device,
    vol.Optional("family", default="ipv4"): OneOf("ipv4", "ipv6"),
    vol.Optional("gateway"): Address,
    vol.Optional("masquerade", default=False): Bool,
    vol.Optional("flush_conntrack", default=[]): Unique(ListOf(OneOf(*FLUSH_EVENTS))),
    vol.Optional("id"): Int(1, marks.MAX_ID),
    vol.Optional("track", default={}): dict,  # validated with TRACK below
}

MEMBER = {
    vol.Required("interface"): Name,
    vol.Optional("metric", default=1): Int(1, 256),
    vol.Optional("weight", default=1): Int(1, 1000),
}

POLICY = {
    vol.Required("members"): Unique(ListOf(Name, allow_empty=False)),
    vol.Optional("mode", default="balanced"): OneOf(*MODES),
    vol.Optional("last_resort", default="unreachable"): OneOf(*LAST_RESORTS),
}

RULE = {
    vol.Required("name"): Name,
    vol.Required("policy"): Name,
    vol.Optional("family", default="any"): OneOf("ipv4", "ipv6", "any"),
    vol.Optional("proto", default="all"): Proto,
    vol.Optional("src_ip"): ListOf(Prefix, allow_empty=False),
    vol.Optional("dest_ip"): ListOf(Prefix, allow_empty=False),
    vol.Optional("src_port"): Ports,
    vol.Optional("dest_port"): Ports,
    vol.Optional("src_iface"): Device,
    vol.Optional("ipset"): Name,
    vol.Optional("src_ipset"): Name,
    vol.Optional("sticky", default=False): Bool,
    vol.Optional("timeout", default=600): Int(1, 1000000),
    vol.Optional("logging", default=False): Bool,
}


_COMPILED: dict = {}


def _compiled(schema: dict) -> tuple:
    """(voluptuous's schema, the direct plan or None): voluptuous compiles a schema on
    construction, so both are made once per schema and process."""
    key = id(schema)
    if key not in _COMPILED:
        _COMPILED[key] = (schema, vol.Schema(schema), _direct_plan(schema))  # keeps `schema` alive: its id stays its own
    return _COMPILED[key][1:]


def _direct_plan(schema: dict):
    """(key, check, default factory or None, required) per option of a flat schema whose
    checks are all plain functions, in schema order; None for any other schema."""
    plan = []
    for marker, check in schema.items():
        if not isinstance(marker, vol.Marker) or not isinstance(marker.schema, str) \
                or isinstance(check, type) or not callable(check):
            return None
        default = None if isinstance(marker.default, vol.Undefined) else marker.default
        plan.append((marker.schema, check, default, isinstance(marker, vol.Required)))
    return plan


def _direct(plan: list, data: dict):
    """What voluptuous returns for `data` when every option passes (each given value and each
    default through its check); None when any does not or a required option is missing, and
    voluptuous then says what is wrong. It costs a fraction of voluptuous's mapping walk,
    which is most of a 1,000-rule validation."""
    out = {}
    try:
        for key, check, default, required in plan:
            if key in data:
                out[key] = check(data[key])
            elif default is not None:
                out[key] = check(default())
            elif required:
                return None
    except Exception:  # noqa: BLE001 (voluptuous reports it, or raises it, the same way again)
        return None
    return out


def _run(schema: dict, data, path: tuple, locator, errors: list, kind: str):
    """Validate one section; unknown keys get a "did you mean"."""
    if not isinstance(data, dict):
        errors.append(f"{locator.where(path)}: expected a table of options, got {type(data).__name__}")
        return None
    known = {str(k) for k in schema}
    # UCI spells tracking settings flat on the interface: suggest those names too, so
    # mwan3's `track_ip` leads to `track_targets`.
    spellings = known
    if kind == "interface" and locator.fmt == "uci":
        spellings = (known - {"track"}) | set(TRACK_OPTIONS)
    clean = {}
    for key in data:
        if key not in known:
            place = locator.where(path + (key,))
            extra = ""
            if kind == "interface" and key in TRACK and locator.fmt != "uci":
                extra = f" (tracking settings go under '{'.'.join(str(p) for p in path[:2])}.track')"
            article = "an" if kind[0] in "aeiou" else "a"
            errors.append(f"{place}: unknown option {shown(str(key))} for {article} {kind}"
                          f"{suggest(clip(key), spellings) or extra}; allowed: {', '.join(sorted(spellings))}")
        else:
            clean[key] = data[key]
    checker, plan = _compiled(schema)
    if plan is not None and (checked := _direct(plan, clean)) is not None:
        return checked
    try:
        return checker(clean)
    except vol.MultipleInvalid as exc:
        for err in exc.errors:
            sub = tuple(err.path)
            if err.msg == "required key not provided":
                errors.append(f"{locator.where(path)}: missing required option '{sub[-1]}'")
            else:
                errors.append(f"{locator.where(path + sub)}: {err.msg}")
        return None


def validate(source) -> dict:
    """Return the checked tree with every default filled in, or raise ConfigErrors."""
    tree, loc = source.tree, source.locator
    errors: list = []
    out: dict = {}
    out["globals"] = _run(GLOBALS, tree.get("globals", {}) or {}, ("globals",), loc, errors, "globals") or {}

    for key, kind in (("interfaces", "interface"), ("members", "member"), ("policies", "policy")):
        section = tree.get(key, {}) or {}
        if not isinstance(section, dict):
            errors.append(f"{loc.where((key,))}: expected a table of named {key}")
            section = {}
        out[key] = {}
        for name, data in section.items():
            if not NAME_RE.match(str(name)):
                errors.append(f"{loc.where((key, name))}: name {shown(str(name))} is not valid "
                              "(1-32 characters: letters, digits, underscore)")
                continue
            checked = _run({"interfaces": INTERFACE, "members": MEMBER, "policies": POLICY}[key],
                           data, (key, name), loc, errors, kind)
            if checked is None:
                continue
            if key == "interfaces":
                track = _run(TRACK, checked["track"], (key, name, "track"), loc, errors, "track")
                if track is None:
                    continue
                checked["track"] = track
            out[key][name] = checked

    rules = tree.get("rules", []) or []
    if not isinstance(rules, list):
        errors.append(f"{loc.where(('rules',))}: rules are ordered: write them as a list")
        rules = []
    out["rules"] = []
    seen_rules: dict = {}
    for i, data in enumerate(rules):
        checked = _run(RULE, data, ("rules", i), loc, errors, "rule")
        if checked is None:
            continue
        if checked["name"] in seen_rules:
            errors.append(f"{loc.where(('rules', i))}: rule name '{checked['name']}' is used twice "
                          f"(also {loc.where(('rules', seen_rules[checked['name']]))})")
            continue
        seen_rules[checked["name"]] = i
        checked["_index"] = i
        out["rules"].append(checked)

    if not errors and not tree.get("interfaces"):
        errors.append(f"{loc.filename}: nothing to do: the config defines no interfaces; NetPath "
                      "writes no empty bundle (a reload would apply it and remove all policy routing)")
    if not errors:
        _cross_check(out, loc, errors)
    if not errors:
        _check_scale(out, loc, errors)
    if errors:
        raise ConfigErrors(errors)
    return out


def _check_scale(cfg: dict, loc, errors: list):
    """The budget of a bundle: what each rendered file costs is small, but state files grow
    as 2^members per policy and every rule, target and address adds kernel work."""
    files = {name: 2 ** len(p["members"]) for name, p in cfg["policies"].items()}
    if sum(files.values()) > MAX_STATE_FILES:
        biggest = ", ".join(f"{name} {count}" for name, count in
                            sorted(files.items(), key=lambda kv: -kv[1])[:3])
        errors.append(f"{loc.where(('policies',))}: {len(files)} policies need {sum(files.values())} "
                      f"state files (2^members each: {biggest}{', ...' if len(files) > 3 else ''}); a "
                      f"bundle holds at most {MAX_STATE_FILES}: use fewer members per policy or fewer "
                      "policies")
    if len(cfg["rules"]) > MAX_RULES:
        errors.append(f"{loc.where(('rules',))}: {len(cfg['rules'])} rules; a bundle holds at most "
                      f"{MAX_RULES} (merge rules with address lists or sets)")
    for name, iface in cfg["interfaces"].items():
        targets = iface["track"]["targets"]
        if len(targets) > MAX_TARGETS:
            errors.append(f"{loc.where(('interfaces', name, 'track', 'targets'))}: {len(targets)} "
                          f"targets; an interface probes at most {MAX_TARGETS}")
    for rule in cfg["rules"]:
        for key in ("src_ip", "dest_ip"):
            if len(rule.get(key, ())) > MAX_ADDRESSES:
                errors.append(f"{loc.where(('rules', rule['_index'], key))}: {len(rule[key])} "
                              f"addresses; a rule matches at most {MAX_ADDRESSES} (use an nft set, "
                              "option ipset, for more)")


def _cross_check(cfg: dict, loc, errors: list):
    g = cfg["globals"]
    interfaces, members, policies = cfg["interfaces"], cfg["members"], cfg["policies"]
    limit = marks.max_interfaces(g["mark_mask"])
    if len(interfaces) > limit:
        errors.append(f"{loc.where(('globals', 'mark_mask'))}: mark mask {g['mark_mask']:#x} has room "
                      f"for {limit} interfaces, the config has {len(interfaces)}; widen the mask")
    base = g["route_table_base"]
    tables = range(base + 1, base + limit + 1)
    clash = [f"{t} ({RESERVED_TABLES[t]})" for t in sorted(RESERVED_TABLES) if t in tables]
    if clash:
        lower = f" or at most {252 - limit}" if 252 - limit >= 1 else ""
        errors.append(f"{loc.where(('globals', 'route_table_base'))}: routing tables "
                      f"{base + 1}..{base + limit} (one per interface id the mark mask "
                      f"{g['mark_mask']:#x} allows) would include the kernel's table "
                      f"{' and '.join(clash)}; use a base of at least 255{lower}")
    ids: dict = {}
    devices: dict = {}
    for name, iface in interfaces.items():
        where = loc.where(("interfaces", name))
        if "id" in iface:
            if iface["id"] > limit:
                errors.append(f"{loc.where(('interfaces', name, 'id'))}: id {iface['id']} does not fit "
                              f"the mark mask {g['mark_mask']:#x} (ids 1..{limit})")
            if iface["id"] in ids:
                errors.append(f"{loc.where(('interfaces', name, 'id'))}: id {iface['id']} is also used "
                              f"by interface '{ids[iface['id']]}'")
            ids[iface["id"]] = name
        dev_key = (iface["ifname"], iface["family"])
        if dev_key in devices:
            errors.append(f"{where}: device '{iface['ifname']}' ({iface['family']}) is also used by "
                          f"interface '{devices[dev_key]}'")
        devices[dev_key] = name
        fam = iface["family"]
        if "gateway" in iface and prefix_family(iface["gateway"]) != fam:
            errors.append(f"{loc.where(('interfaces', name, 'gateway'))}: {iface['gateway']} is not "
                          f"an {fam} address (the interface's family is {fam})")
        _check_track(name, iface, loc, errors)
    for name, member in members.items():
        if member["interface"] not in interfaces:
            errors.append(f"{loc.where(('members', name, 'interface'))}: interface "
                          f"'{member['interface']}' does not exist"
                          f"{suggest(member['interface'], interfaces)}")
    for name, policy in policies.items():
        if len(policy["members"]) > MAX_MEMBERS_PER_POLICY:
            errors.append(f"{loc.where(('policies', name, 'members'))}: {len(policy['members'])} "
                          f"members; a policy takes at most {MAX_MEMBERS_PER_POLICY} (its state "
                          "variants grow as 2^members)")
        seen_ifaces: dict = {}
        for i, member in enumerate(policy["members"]):
            if member not in members:
                errors.append(f"{loc.where(('policies', name, 'members', i))}: member '{member}' "
                              f"does not exist{suggest(member, members)}")
                continue
            iface = members[member]["interface"]
            if iface in seen_ifaces:
                errors.append(f"{loc.where(('policies', name, 'members', i))}: member '{member}' uses "
                              f"interface '{iface}' like member '{seen_ifaces[iface]}'; a policy uses "
                              "each interface once")
            seen_ifaces[iface] = member
    sets: dict = {}
    for rule in cfg["rules"]:
        _check_rule(rule, cfg, loc, errors, sets)


def _check_track(name, iface, loc, errors):
    track = iface["track"]
    path = ("interfaces", name, "track")
    fam = iface["family"]
    method = track["method"]
    if method == "none":
        return
    if not track["targets"]:
        errors.append(f"{loc.where(path + ('targets',))}: track method '{method}' needs at least one "
                      "target (or set the method to 'none')")
        return
    for i, target in enumerate(track["targets"]):
        is_ip = re.fullmatch(r"[0-9.]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*", target) is not None
        if not is_ip and method != "httping":
            errors.append(f"{loc.where(path + ('targets', i))}: '{target}' is a host name; track "
                          f"method '{method}' needs IP addresses (host names work for httping)")
        elif is_ip and prefix_family(target) != fam:
            errors.append(f"{loc.where(path + ('targets', i))}: {target} is not an {fam} address "
                          f"(the interface's family is {fam})")
    if method == "arping" and fam != "ipv4":
        errors.append(f"{loc.where(path + ('method',))}: arping works for ipv4 only; use ping for ipv6")
    if track["reliability"] > len(track["targets"]):
        errors.append(f"{loc.where(path + ('reliability',))}: reliability {track['reliability']} "
                      f"exceeds the {len(track['targets'])} target(s); the interface could never be up")
    if track["recovery_latency"] > track["failure_latency"]:
        errors.append(f"{loc.where(path + ('recovery_latency',))}: recovery_latency "
                      f"{track['recovery_latency']:g} ms is above failure_latency "
                      f"{track['failure_latency']:g} ms; recovery must be the stricter level")
    if track["recovery_loss"] > track["failure_loss"]:
        errors.append(f"{loc.where(path + ('recovery_loss',))}: recovery_loss "
                      f"{track['recovery_loss']:g} % is above failure_loss {track['failure_loss']:g} %; "
                      "recovery must be the stricter level")


def _check_rule(rule, cfg, loc, errors, sets):
    path = ("rules", rule["_index"])
    target = rule["policy"]
    if target not in cfg["policies"] and target not in SPECIAL_TARGETS:
        errors.append(f"{loc.where(path + ('policy',))}: policy '{target}' does not exist"
                      f"{suggest(target, list(cfg['policies']) + list(SPECIAL_TARGETS))}; use a policy "
                      f"name or one of {', '.join(SPECIAL_TARGETS)}")
    families = set()
    for key in ("src_ip", "dest_ip"):
        for i, prefix in enumerate(rule.get(key, [])):
            fam = prefix_family(prefix)
            if rule["family"] != "any" and fam != rule["family"]:
                errors.append(f"{loc.where(path + (key, i))}: {prefix} is {fam} but the rule's family "
                              f"is {rule['family']}")
            families.add(fam)
    if len(families) > 1:
        errors.append(f"{loc.where(path)}: mixes ipv4 and ipv6 addresses; write one rule per family")
    proto = rule["proto"]
    if ("src_port" in rule or "dest_port" in rule) and proto not in ("all", "tcp", "udp", "sctp", "udplite", "6", "17"):
        key = "src_port" if "src_port" in rule else "dest_port"
        errors.append(f"{loc.where(path + (key,))}: ports need proto tcp, udp, sctp, udplite or all "
                      f"(the rule's proto is {proto})")
    if proto == "icmp" and rule["family"] == "ipv6" or proto == "icmpv6" and rule["family"] == "ipv4":
        errors.append(f"{loc.where(path + ('proto',))}: proto {proto} does not exist in {rule['family']}")
    if rule["sticky"] and target in SPECIAL_TARGETS:
        errors.append(f"{loc.where(path + ('sticky',))}: sticky needs a policy to stick to, not "
                      f"'{target}'")
