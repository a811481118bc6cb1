"""`netpath import-mwan3` against the 12 mwan3 configs in tests/fixtures/mwan3/ (mwan3's default
and eleven written after configs found in the wild, with their mistakes).

* Each conversion (and its --explain-diff) matches its snapshot in
  tests/snapshots/test_mwan3_import/ (plain .uci / .txt files; update with
  `pytest tests/test_mwan3_import.py --snapshot-update` and read the diff).
* Every option of the mwan3 file is either visible in the NetPath config or named in a note.
* The result compiles with `netpath compile` (kernel check in a throw-away namespace), and
  for sample packets `netpath explain` gives the same rule, policy and member spread as
  mwan3's own semantics (mwan3.md §2), computed here from the mwan3 file with a small
  independent model of mwan3: first matching rule in file order, its use_policy, the
  members of the lowest metric among the live ones, shares = weight / sum.
* UCI, TOML and YAML output read back to the same model; UCI quoting is `uci export`'s.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from netpath.agent.explain import Packet, explain, load_model
from netpath.compiler import emit, load, mwan3, pipeline, uci, validate
from snapshot_ext import TextSnapshot, UciSnapshot

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mwan3"  # see its README.md
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.uci"))
NETPATH = [sys.executable, "-m", "netpath.compiler.cli"]
RUN_TIMEOUT = 180


def fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}.uci").read_text()


def convert(name: str) -> mwan3.Conversion:
    return mwan3.convert_text(fixture_text(name), f"{name}.uci")


def netpath(*args) -> subprocess.CompletedProcess:
    return subprocess.run(NETPATH + [str(a) for a in args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def test_all_twelve_fixtures_are_there():
    assert len(FIXTURE_NAMES) == 12, FIXTURE_NAMES


# --- snapshots -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_conversion_matches_snapshot(name, snapshot):
    conv = convert(name)
    assert mwan3.render(conv, "uci") == snapshot(extension_class=UciSnapshot)
    diff = "".join(f"* {line}\n" for line in conv.differences)
    assert diff == snapshot(name="explain_diff", extension_class=TextSnapshot)


# --- nothing is dropped silently -------------------------------------------------------------

# Where each mwan3 option shows up in the NetPath tree when it is converted.
TRACK_KEY = {"track_ip": "targets", "track_method": "method", "httping_ssl": "http_status"}


# Values equal to mwan3's default need no option in NetPath (same default there).
MWAN3_DEFAULT_VALUES = {("rule", "proto"): "all", ("rule", "sticky"): "0", ("rule", "family"): "any",
                        ("rule", "logging"): "0", ("policy", "last_resort"): "unreachable",
                        ("globals", "logging"): "0"}


def _visible(kind: str, option: str, out: dict) -> bool:
    if kind == "interface":
        if option in ("enabled", "family"):
            return option in out
        if option == "flush_conntrack":
            return "flush_conntrack" in out or not out.get("flush_conntrack")
        return TRACK_KEY.get(option, option) in out["track"]
    if kind == "member":
        return option in out
    if kind == "policy":
        return {"use_member": "members"}.get(option, option) in out
    if kind == "rule":
        return {"use_policy": "policy"}.get(option, option) in out
    if kind == "globals":
        return {"mmx_mask": "mark_mask"}.get(option, option) in out
    return False


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_mwan3_option_is_converted_or_named_in_a_note(name):
    conv = convert(name)
    package = uci.parse(fixture_text(name), strict=False)
    notes = [n.format("f") for n in conv.notes]
    tree = conv.tree
    outputs = {"interface": tree["interfaces"], "member": tree["members"],
               "policy": tree["policies"], "rule": {r["name"]: r for r in tree["rules"]},
               "globals": {"globals": tree.get("globals", {})}}
    missing = []
    for section in package.sections:
        label = f"{section.type} '{section.name}'"
        out = outputs.get(section.type, {}).get(section.name)
        for option in section.options:
            named = any(f"{label} option '{option}'" in n or f"{label}: " in n for n in notes)
            if named or (out is not None and _visible(section.type, option, out)):
                continue
            if out is not None and MWAN3_DEFAULT_VALUES.get((section.type, option)) == _opt(section, option):
                continue
            missing.append(f"{label} option '{option}'")
    assert not missing, missing


# Findings of the corpus audit in mwan3.md §6, each of which must reach the user.
AUDIT_FINDINGS = {
    "02_space_indented_ipset": ["member 'cable1_m1_w2': option 'interface': uses interface 'wan'",
                                "globals 'globals' option 'enabled': obsolete"],
    "04_rules_first_parity": ["interface 'lte' option 'reliability': 3 is more than the 2"],
    "05_dual_stack_tiers": ["globals 'globals' option 'enabled': obsolete"],
    "06_untracked_backup": ["interface 'wwan': no track_ip"],
    "07_httping_placeholders": ["interface 'phone' option 'track_ip': target '0.0.0.0'"],
    "08_tethering_flush": ["globals 'globals' option 'rt_table_lookup'",
                           "both use interface 'usb0'",
                           "NetPath deletes only the flows of 'usb0'"],
    "09_quality_checks": ["option 'local_source': obsolete",
                          "option 'rtmon_interval': obsolete"],
    "10_members_without_interfaces": ["uses interface 'wanb', which does not exist",
                                      "uses interface 'wan6', which does not exist",
                                      "uses interface 'wanb6', which does not exist"],
    "11_flush_never_slow": ["'option flush_conntrack never'", "option 'local_source'",
                            "option 'rtmon_interval'"],
    "12_disabled_untracked": ["interface 'two': no track_ip"],
}


@pytest.mark.parametrize("name", sorted(AUDIT_FINDINGS))
def test_known_problems_of_the_corpus_are_reported(name):
    notes = "\n".join(n.format(f"{name}.uci") for n in convert(name).notes)
    for finding in AUDIT_FINDINGS[name]:
        assert finding in notes


# --- an independent model of mwan3's data plane (mwan3.md §1-§2) ------------------------------

BOOL_TRUE = ("1", "on", "true", "yes", "enabled")


def _opt(section, key, default=None):
    option = section.options.get(key)
    if option is None:
        return default
    value = " ".join(option.value) if option.is_list else option.value
    return value or default


def _items(section, key):
    option = section.options.get(key)
    return list(option.value) if option is not None and option.is_list else []


class Mwan3:
    """What mwan3 2.12 does with a config, as far as the choice of a WAN goes."""

    def __init__(self, text: str):
        package = uci.parse(text, strict=False)
        self.interfaces = {s.name: s for s in package.by_type("interface")}
        self.members = {}
        for s in package.by_type("member"):
            iface = _opt(s, "interface")
            metric = int(_opt(s, "metric", "1"))
            if iface in self.interfaces and metric <= 256:
                self.members[s.name] = (iface, metric, int(_opt(s, "weight", "1")))
        self.policies = {s.name: s for s in package.by_type("policy") if len(s.name) <= 15}
        self.rules = [s for s in package.by_type("rule")
                      if len(s.name) <= 15 and _opt(s, "use_policy")]

    def enabled(self):
        return [n for n, s in self.interfaces.items() if _opt(s, "enabled", "0") in BOOL_TRUE]

    def never_online(self) -> frozenset:
        """Interfaces that probe only placeholders (0.0.0.0, ::): no probe is ever answered,
        so mwan3 has them offline after 'down' rounds, for good."""
        return frozenset(n for n, s in self.interfaces.items()
                         if _items(s, "track_ip") and set(_items(s, "track_ip")) <= {"0.0.0.0", "::"})

    def family_of(self, iface):
        return _opt(self.interfaces[iface], "family", "ipv4")

    def matches(self, rule, pkt: Packet) -> bool:
        fam = pkt.family
        family = _opt(rule, "family", "any")
        if family not in ("any", fam):
            return False
        proto = _opt(rule, "proto", "all")
        if proto != "all" and proto != pkt.proto:
            return False
        for key, address in (("src_ip", pkt.src), ("dest_ip", pkt.dst)):
            value = _opt(rule, key)
            if value is None:
                continue
            if (":" in value) != (fam == "ipv6"):
                return False  # mwan3 leaves the rule out of this family's table (or it fails)
            if not in_prefix(address, value):
                return False
        if proto in ("tcp", "udp"):  # mwan3 ignores ports for any other proto
            for key, port in (("src_port", pkt.sport), ("dest_port", pkt.dport)):
                value = _opt(rule, key)
                if value is not None and not in_ports(port, value):
                    return False
        if _opt(rule, "ipset"):
            return False  # the packet is taken to be outside the set (as `explain` does)
        return True

    def decide(self, pkt: Packet, down=frozenset()) -> dict:
        alive = {i for i in self.enabled() if i not in down}
        for rule in self.rules:
            if not self.matches(rule, pkt):
                continue
            target = _opt(rule, "use_policy")
            if target in ("default", "unreachable", "blackhole"):
                return {"rule": rule.name, "policy": None, "outcome": ("fixed", target)}
            if target not in self.policies:
                continue  # a jump to an empty chain: the packet goes on to the next rule
            policy = self.policies[target]
            live = [self.members[m] for m in _items(policy, "use_member") if m in self.members]
            live = [m for m in live if m[0] in alive and self.family_of(m[0]) == pkt.family]
            if not live:
                last = _opt(policy, "last_resort", "unreachable")
                last = last if last in ("blackhole", "default") else "unreachable"
                return {"rule": rule.name, "policy": target, "outcome": ("fixed", last)}
            lowest = min(m[1] for m in live)
            tier = [m for m in live if m[1] == lowest]
            total = sum(m[2] for m in tier)
            shares: dict = {}
            for iface, _, weight in tier:
                shares[iface] = shares.get(iface, 0.0) + 100.0 * weight / total
            return {"rule": rule.name, "policy": target, "outcome": ("spread", shares)}
        return {"rule": None, "policy": None, "outcome": ("main",)}


def _mask_of(value: str):
    address, _, mask = value.partition("/")
    ip = ipaddress.ip_address(address)
    bits = ip.max_prefixlen
    if not mask:
        m = (1 << bits) - 1
    elif mask.isdigit():
        m = ((1 << bits) - 1) ^ ((1 << (bits - int(mask))) - 1)
    else:
        m = int(ipaddress.ip_address(mask))
    return int(ip) & m, m, ip.version


def in_prefix(address: str, value: str) -> bool:
    net, mask, _ = _mask_of(value)
    return int(ipaddress.ip_address(address)) & mask == net


def in_ports(port, spec: str) -> bool:
    if port is None:
        return False
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


BASE = {4: ("192.168.1.10", "203.0.113.5"), 6: ("2001:db8:1::10", "2001:db8:2::5")}


def _inside(base: str, value: str, flip: bool = False) -> str:
    net, mask, version = _mask_of(value)
    number = (int(ipaddress.ip_address(base)) & ~mask) | net
    if flip:
        number ^= mask & -mask  # the lowest bit the match looks at
    return str(ipaddress.ip_address(number))


def sample_packets(rule) -> list:
    """For one mwan3 rule: packets that match it, and one that does not (if any can)."""
    src_ip, dest_ip = _opt(rule, "src_ip"), _opt(rule, "dest_ip")
    family = _opt(rule, "family", "any")
    fams = {6 if ":" in v else 4 for v in (src_ip, dest_ip) if v}
    versions = sorted(fams) or ([6] if family == "ipv6" else [4] if family == "ipv4" else [4, 6])
    proto = _opt(rule, "proto", "all")
    pkt_proto = proto if proto in ("tcp", "udp", "icmp") else "tcp"
    ports = {}
    for key, field in (("src_port", "sport"), ("dest_port", "dport")):
        spec = _opt(rule, key)
        ports[field] = int(spec.split(",")[0].split(":")[0]) if spec else (40000 if field == "sport" else 443)
    out = []
    for version in versions:
        src, dst = BASE[version]
        out.append(Packet(src=_inside(src, src_ip) if src_ip else src,
                          dst=_inside(dst, dest_ip) if dest_ip else dst,
                          proto=pkt_proto, iif="br-lan", **ports))
    match = out[0]
    other = None
    if _opt(rule, "dest_port") and proto in ("tcp", "udp"):
        taken = [p for p in range(1, 65536) if not in_ports(p, _opt(rule, "dest_port"))]
        other = Packet(match.src, match.dst, match.proto, match.sport, taken[0], match.iif)
    elif src_ip and _mask_of(src_ip)[1]:
        other = Packet(_inside(BASE[versions[0]][0], src_ip, flip=True), match.dst, match.proto,
                       match.sport, match.dport, match.iif)
    elif dest_ip and _mask_of(dest_ip)[1]:
        other = Packet(match.src, _inside(BASE[versions[0]][1], dest_ip, flip=True), match.proto,
                       match.sport, match.dport, match.iif)
    elif proto in ("tcp", "udp"):
        other = Packet(match.src, match.dst, "udp" if proto == "tcp" else "tcp", match.sport,
                       match.dport, match.iif)
    elif len(versions) == 1:
        src, dst = BASE[10 - versions[0]]
        other = Packet(src, dst, match.proto, match.sport, match.dport, match.iif)
    return out + ([other] if other else [])


def netpath_outcome(model, result: dict) -> tuple:
    if result["rule"] is None:
        return ("main",)
    decision = result["decision"]
    if decision is not None and decision["kind"] != "last_resort":
        return ("spread", decision["shares"])
    kind = next(k for k, v in model.special.items() if f"0x{v['mark']:08x}" == result["mark"])
    return ("fixed", kind)


def same_outcome(ours: tuple, theirs: tuple) -> bool:
    if ours[0] != theirs[0]:
        return False
    if ours[0] == "spread":
        return ours[1].keys() == theirs[1].keys() and all(
            ours[1][k] == pytest.approx(theirs[1][k], abs=1e-6) for k in ours[1])
    return ours == theirs


def test_the_mwan3_model_itself_follows_the_reference():
    """mwan3.md §2.6: the upstream default config spreads 'balanced' 3:3 over wan and wanb,
    and sends tcp/443 through the sticky 'https' rule; §1.5: ports need tcp/udp."""
    model = Mwan3(fixture_text("01_openwrt_packages").replace("option enabled '0'", "option enabled '1'"))
    https = model.decide(Packet("192.168.1.10", "203.0.113.5", "tcp", 40000, 443, "br-lan"))
    assert https["rule"] == "https" and https["outcome"] == ("spread", {"wan": 50.0, "wanb": 50.0})
    other = model.decide(Packet("192.168.1.10", "203.0.113.5", "udp", 40000, 443, "br-lan"))
    assert other["rule"] == "default_rule_v4"
    assert model.decide(Packet("192.168.1.10", "203.0.113.5", "tcp", 40000, 443, "br-lan"),
                        down=frozenset({"wan", "wanb"}))["outcome"] == ("fixed", "unreachable")


# --- compile, then explain like mwan3 ---------------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_converted_config_compiles_and_routes_like_mwan3(name, tmp_path):
    converted = tmp_path / "netpath"
    run = netpath("import-mwan3", FIXTURES / f"{name}.uci", "-o", converted, "-q")
    assert run.returncode == 0, run.stderr
    bundle = tmp_path / "bundle"
    run = netpath("compile", converted, "-o", bundle)  # with the kernel check (unshare -n)
    assert run.returncode == 0, run.stderr
    model = load_model(bundle)
    reference = Mwan3(fixture_text(name))
    # All up, each interface down on its own (tiers, spreads), all down (last_resort).
    scenarios = ([frozenset()] + [frozenset({i}) for i in reference.enabled()]
                 + [frozenset(reference.enabled())])
    compared = 0
    for rule in reference.rules:
        for pkt in sample_packets(rule):
            for down in scenarios:
                theirs = reference.decide(pkt, down | reference.never_online())
                result = explain(model, pkt, down=down)
                where = f"{pkt} down={sorted(down)}"
                assert result["rule"] == theirs["rule"], where
                if result["policy"] is not None:
                    assert result["policy"] == theirs["policy"], where
                ours = netpath_outcome(model, result)
                assert same_outcome(ours, theirs["outcome"]), f"{where}: {ours} != {theirs['outcome']}"
                compared += 1
    assert compared >= len(reference.rules)


# --- round trips -------------------------------------------------------------------------------


def _model_dict(path: Path) -> dict:
    data = pipeline.build(str(path)).model.to_dict()
    data.pop("source_digest")
    return data


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_uci_toml_and_yaml_output_read_back_to_the_same_model(name, tmp_path):
    conv = convert(name)
    models = {}
    for fmt, suffix in (("uci", ".uci"), ("toml", ".toml"), ("yaml", ".yaml")):
        path = tmp_path / f"netpath{suffix}"
        path.write_text(mwan3.render(conv, fmt))
        models[fmt] = _model_dict(path)
    assert models["uci"] == models["toml"] == models["yaml"]
    # ... and the model holds what the tree says.
    assert [r["name"] for r in models["uci"]["rules"]] == [r["name"] for r in conv.tree["rules"]]


def test_uci_output_quotes_values_like_uci_export():
    tree = {"globals": {"loglevel": "notice"},
            "interfaces": {"wan": {"ifname": "wan", "track": {"method": "dns", "targets": ["192.0.2.1"],
                                                            "dns_query": "it's a b"}}},
            "members": {}, "policies": {}, "rules": []}
    text = emit.render(tree, "uci", ["a header line", "with 'quotes'"])
    assert "\toption dns_query 'it'\\''s a b'\n" in text
    assert text.startswith("# a header line\n# with 'quotes'\n")
    package = uci.parse(text, strict=True)
    assert package.get("wan").options["dns_query"].value == "it's a b"
    assert package.get("wan").options["track_targets"].value == ["192.0.2.1"]
    assert uci.export(package.sections) == text[text.index("\nconfig"):]


# --- mwan3's quirks, one small config ------------------------------------------------------------

QUIRKS = """\
config globals 'globals'
\toption mmx_mask '0xff00'
\toption loglevel 'warning'
\toption source_routing '1'

config interface 'wan'
\toption enabled 'yes'
\toption track_ip '192.0.2.1 192.0.2.2'
\toption track_method 'nping-tcp'

config interface 'wanb'
\toption enabled 'True'
\tlist track_ip '198.51.100.1'
\tlist track_ip '2001:db8::1'
\toption track_method 'nslookup'
\toption recovery_latency '900'
\toption failure_latency '800'
\toption bogus '1'

config member 'a_member_name_that_is_longer_than_thirty_two'
\toption interface 'wan'
\toption metric '1'
\toption weight '2'

config member 'wanb_far'
\toption interface 'wanb'
\toption metric '300'

config member 'wanb_m2'
\toption interface 'wanb'
\toption metric '2'

config policy 'policy_name_is_too_long'
\tlist use_member 'wanb_m2'

config policy 'main'
\tlist use_member 'a_member_name_that_is_longer_than_thirty_two'
\tlist use_member 'wanb_m2'
\tlist use_member 'wanb_far'
Config policy 'broken'
\tlist use_member 'wanb_m2'

config rule 'odd_hosts'
\toption src_ip '0.0.0.1/0.0.0.1'
\toption proto 'all'
\toption dest_port '443'
\toption use_policy 'main'

config rule 'to_long_policy'
\toption use_policy 'policy_name_is_too_long'

config rule 'no_policy'
\toption proto 'udp'

config rule 'rule_name_too_long_x'
\toption use_policy 'main'

config rule
\toption ipset 'my-set'
\toption sticky '1'
\toption timeout '30'
\toption use_policy 'main'
"""


def test_mwan3_quirks_are_converted_as_mwan3_reads_them():
    conv = mwan3.convert_text(QUIRKS, "quirks")
    tree = conv.tree
    notes = "\n".join(n.format("quirks") for n in conv.notes)

    assert tree["globals"] == {"mark_mask": "0xFF00", "loglevel": "warn"}
    assert "option 'source_routing': NetPath has no equivalent" in notes
    # config_get_bool is case-sensitive: 'True' is not a boolean, so the default 0 applies.
    assert tree["interfaces"]["wan"]["enabled"] is True
    assert tree["interfaces"]["wanb"]["enabled"] is False
    assert "'True' is not a boolean mwan3 knows" in notes
    # `option track_ip` is invisible to mwan3; the words become NetPath's target list.
    wan = tree["interfaces"]["wan"]["track"]
    assert wan["targets"] == ["192.0.2.1", "192.0.2.2"] and wan["method"] == "ping"
    assert "written as 'option', which mwan3 never reads" in notes
    wanb = tree["interfaces"]["wanb"]["track"]
    assert wanb["method"] == "dns" and wanb["dns_query"] == "www.google.com"
    assert wanb["targets"] == ["198.51.100.1"]  # the IPv6 target of an IPv4 interface is dropped
    assert wanb["recovery_latency"] == wanb["failure_latency"] == 800
    assert "mwan3 has no option 'bogus'" in notes
    # Names: too long for NetPath -> renamed; metric over 256 -> member ignored.
    long_member = mwan3.safe_name("a_member_name_that_is_longer_than_thirty_two")
    assert len(long_member) <= 32 and long_member in tree["members"]
    assert long_member == mwan3.safe_name("a_member_name_that_is_longer_than_thirty_two")
    assert "wanb_far" not in tree["members"] and "is above 256" in notes
    # Policies over 15 characters are skipped by mwan3, rules using them match nothing.
    assert "policy_name_is_too_long" not in tree["policies"]
    assert tree["policies"]["main"]["members"] == [long_member, "wanb_m2"]
    # Non-strict loading: `Config` is an invalid command, its list lands in 'main' (§7.5).
    assert "mwan3's loader skips this: invalid command" in notes
    assert "broken" not in tree["policies"]
    rules = {r["name"]: r for r in tree["rules"]}
    assert list(rules) == ["odd_hosts", "cfg0d92bd"]
    assert rules["odd_hosts"]["src_ip"] == ["0.0.0.1/0.0.0.1"]
    assert "dest_port" not in rules["odd_hosts"]  # proto all: mwan3 ignores the ports
    assert rules["cfg0d92bd"]["ipset"] == mwan3.safe_name("my-set", 29)
    assert rules["cfg0d92bd"]["sticky"] is True and rules["cfg0d92bd"]["timeout"] == 30
    for text in ("rule 'to_long_policy': option 'use_policy'", "rule 'no_policy': no use_policy",
                 "rule 'rule_name_too_long_x': the name has more than 15"):
        assert text in notes
    # And NetPath accepts the result.
    text = mwan3.render(conv, "uci")
    validate.validate(load.loads(text.encode(), "converted.uci", "uci"))


# --- the command line ----------------------------------------------------------------------------


def test_cli_explain_diff_computes_detection_from_the_config():
    run = netpath("import-mwan3", FIXTURES / "01_openwrt_packages.uci", "--explain-diff", "-q")
    assert run.returncode == 0, run.stderr
    # mwan3.md §3.5: the upstream default 'wan' (4 targets, code defaults) takes 120-130 s.
    assert "declares the WAN down 120-130 s" in run.stdout
    run = netpath("import-mwan3", FIXTURES / "08_tethering_flush.uci", "--explain-diff", "-q")
    assert "flushes the whole conntrack table" in run.stdout
    run = netpath("import-mwan3", FIXTURES / "02_space_indented_ipset.uci", "--explain-diff", "-q")
    assert "'streaming_v4'" in run.stdout and "nftset=" in run.stdout


def test_cli_writes_the_format_of_the_output_suffix(tmp_path):
    out = tmp_path / "netpath.yaml"
    run = netpath("import-mwan3", FIXTURES / "03_four_uplinks_failover.uci", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "interfaces:" in out.read_text()
    assert _model_dict(out)["policies"][0]["members"][0]["interface"] == "fibre"


def test_cli_reports_an_unreadable_config(tmp_path):
    run = netpath("import-mwan3", tmp_path / "missing")
    assert run.returncode == 2
    assert "cannot read" in run.stderr and "missing" in run.stderr


EDGES = """\
config interface
\toption enabled '1'
\tlist track_ip '192.0.2.1'

config interface 'wan'
\toption enabled '1'
\tlist track_ip '192.0.2.1'
\toption family 'ipv6'
\toption flush_conntrack 'always'

config interface 'wanb'
\toption enabled '1'
\tlist track_ip '192.0.2.9'
\toption interval 'abc'

config member 'm1'
\toption interface 'wanb'
\tlist metric '2'

config policy 'p'
\toption use_member 'm1'

config rule 'r1'
\toption proto 'igmp'
\toption dest_ip '198.51.100.0/24,203.0.113.0/24'
\toption use_policy 'p'

config rule 'r2'
\toption family 'ipv4'
\toption dest_ip '2001:db8::/32'
\toption use_policy 'p'
"""


def test_mwan3_edge_cases_keep_what_mwan3_did_and_say_so():
    conv = mwan3.convert_text(EDGES, "edges")
    tree = conv.tree
    notes = [n.format("edges") for n in conv.notes]
    # An anonymous interface names no netifd interface: kept, but disabled.
    assert tree["interfaces"]["cfg016d96"]["enabled"] is False
    # The only target is of the wrong family: mwan3 never had 'wan' online.
    assert tree["interfaces"]["wan"]["enabled"] is False
    assert tree["interfaces"]["wan"]["flush_conntrack"] == ["ifup", "ifdown"]  # 'always', migrated
    assert tree["interfaces"]["wanb"]["track"]["interval"] == 10  # not a number: mwan3's default
    # `list metric` reads as one value (config_get), reported once.
    assert tree["members"]["m1"]["metric"] == 2
    assert sum("member 'm1' option 'metric': written as a list" in n for n in notes) == 1
    assert tree["policies"]["p"]["members"] == ["m1"]
    rules = {r["name"]: r for r in tree["rules"]}
    assert rules["r1"]["proto"] == "2" and rules["r1"]["dest_ip"] == ["198.51.100.0/24", "203.0.113.0/24"]
    assert "r2" not in rules and any("rule 'r2': option 'family'" in n for n in notes)
    validate.validate(load.loads(mwan3.render(conv, "uci").encode(), "edges.uci", "uci"))


def test_a_byte_that_is_not_utf8_is_reported_not_a_traceback(tmp_path):
    source = tmp_path / "mwan3"
    source.write_bytes(b"config interface 'wan'\n\toption enabled '1'\n\toption track_method 'p\xffng'\n"
                       b"\tlist track_ip '192.0.2.1'\n")
    proc = subprocess.run(NETPATH + ["import-mwan3", str(source), "-o", str(tmp_path / "netpath")],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "p\\xffng" in proc.stderr  # the note quotes the value as it was
