"""The resolved, frozen model: what the compiler renders from and what the bundle's
manifest carries to the agent, `netpath apply` and `netpath explain`.

Standard library only. Every derived value (marks, tables, rule preferences, tiers,
chain names) is computed once by the compiler's resolve stage and stored here, so the
templates and the agent make no decisions of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .policy import PolicyMember

FORMAT_VERSION = 1

# What a tracking setting may be: the compiler's schema and the agent's check of a bundle's
# manifest (agent/bundle.py, which no sha256 protects) use the same table.
TRACK_METHODS = ("ping", "httping", "dns", "arping", "none")
DNS_TYPES = ("A", "AAAA", "NS", "SOA", "TXT", "MX", "CNAME", "PTR")
TRACK_LIMITS = {  # option -> (kind, lowest, highest); kind: "int", "seconds" or "number"
    "reliability": ("int", 1, 100), "count": ("int", 1, 100), "up": ("int", 1, 100), "down": ("int", 1, 100),
    "size": ("int", 1, 65507), "max_ttl": ("int", 1, 255), "http_status": ("int", 0, 599),
    "timeout": ("seconds", 0.05, 60), "interval": ("seconds", 0.05, 3600),
    "failure_interval": ("seconds", 0.05, 3600), "recovery_interval": ("seconds", 0.05, 3600),
    "failure_latency": ("number", 1, 60000), "recovery_latency": ("number", 1, 60000),
    "failure_loss": ("number", 0, 100), "recovery_loss": ("number", 0, 100),
}
TRACK_FLAGS = ("keep_failure_interval", "check_quality")


@dataclass(frozen=True)
class Track:
    method: str
    targets: tuple
    reliability: int
    count: int
    timeout: float
    interval: float
    failure_interval: float
    recovery_interval: float
    keep_failure_interval: bool
    up: int
    down: int
    initial_state: str
    check_quality: bool
    failure_latency: float
    recovery_latency: float
    failure_loss: float
    recovery_loss: float
    size: int
    max_ttl: int
    http_url: str
    http_status: int
    dns_query: str
    dns_type: str


@dataclass(frozen=True)
class Interface:
    name: str
    enabled: bool
    device: str
    family: str
    id: int
    mark: int
    table: int
    gateway: str  # "" = learn at run time
    masquerade: bool
    flush_conntrack: tuple
    track: Track
    pref_oif: int  # ip rule: oif <device> lookup <table> (probes bound to the device)
    pref_from: int  # ip rule: from <wan address> lookup <table> (added at run time, after the marks)
    pref_mark: int  # ip rule: fwmark <mark>/<mask> lookup <table>
    pref_guard: int  # ip rule: fwmark <mark>/<mask> unreachable (never leak into main)
    section: str  # human label of the config section, for comments and errors
    logical: str = ""  # the OpenWrt logical interface `ifname` named, when it was mapped to `device`


@dataclass(frozen=True)
class Member:
    name: str
    interface: str
    family: str
    metric: int
    weight: int


@dataclass(frozen=True)
class Policy:
    name: str
    mode: str
    last_resort: str
    members: tuple  # of Member, config order (enabled interfaces only)
    chain: str
    sticky_rules: tuple  # names of sticky rules that use this policy
    states: dict  # alive-mask -> relative path of the state file
    hash_seed: int

    def policy_members(self) -> list:
        return [PolicyMember(m.name, m.interface, m.family, m.metric, m.weight) for m in self.members]


@dataclass(frozen=True)
class Match:
    """One address match: `prefix` is a/len or a/netmask (non-contiguous masks allowed)."""

    family: str
    address: str
    netmask: str  # "" when the match is a plain prefix


@dataclass(frozen=True)
class Rule:
    name: str
    index: int
    families: tuple  # ("ipv4",), ("ipv6",) or both
    proto: str  # "all", a name or a number
    src: tuple  # of Match
    dest: tuple
    src_port: tuple  # of (lo, hi)
    dest_port: tuple
    src_iface: str
    src_set: str  # nft set base name ("" none): sets <name>_v4/<name>_v6 in NetPath's table
    dest_set: str
    sticky: bool
    timeout: int
    logging: bool
    target_kind: str  # "policy" | "special"
    target: str  # policy name or unreachable/blackhole/default
    chain: str  # per-rule chain (sticky rules) or ""
    section: str


@dataclass(frozen=True)
class Model:
    enabled: bool
    table: str
    mask: int
    logging: bool
    loglevel: str
    route_protocol: int
    special: dict  # "blackhole"/"unreachable"/"default" -> {"id", "mark", "pref"}
    interfaces: tuple  # of Interface, by id
    policies: tuple
    rules: tuple
    user_sets: tuple  # of (name, family)
    pref_main: int = 1280  # ip rule: lookup main suppress_prefixlength 0
    source_digest: str = ""
    warnings: tuple = field(default=())

    def interface(self, name: str) -> Interface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise KeyError(name)

    def policy(self, name: str) -> Policy:
        for pol in self.policies:
            if pol.name == name:
                return pol
        raise KeyError(name)

    @property
    def wan_devices(self) -> list:
        return sorted({i.device for i in self.interfaces if i.enabled})

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Model":
        return _build(cls, data)


_FIELD_NAMES: dict = {}
_SCALARS = (str, int, float, bool, type(None))


def _plain(value):
    """dataclasses.asdict without its deep copies (the model holds only str, int, float,
    bool, tuples, dicts and dataclasses): several times faster on a model of 1,000 rules."""
    if type(value) in _SCALARS:
        return value
    names = _FIELD_NAMES.get(type(value))
    if names is None and hasattr(type(value), "__dataclass_fields__"):
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(cls, data):
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        kwargs[f.name] = _convert(cls, f.name, value)
    return cls(**kwargs)


_NESTED = {
    (Model, "interfaces"): Interface,
    (Model, "policies"): Policy,
    (Model, "rules"): Rule,
    (Policy, "members"): Member,
    (Rule, "src"): Match,
    (Rule, "dest"): Match,
}


def _convert(cls, name, value):
    if cls is Interface and name == "track":
        return _build(Track, {**value, "targets": tuple(value["targets"])})
    inner = _NESTED.get((cls, name))
    if inner is not None:
        return tuple(_build(inner, item) for item in value)
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value
