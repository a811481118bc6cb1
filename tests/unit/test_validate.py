"""The schema and the cross-reference checks: defaults filled in, and every kind of bad
input rejected with one line that names the place, what is wrong and what is allowed."""

from __future__ import annotations

import pytest

from netpath.agent import marks
from netpath.compiler import load, resolve, validate

BASE = """\
config globals 'globals'
\toption mark_mask '0x3F00'

config interface 'wan'
\toption ifname 'eth0'
\toption track_method 'ping'
\tlist track_targets '8.8.8.8'

config interface 'wanb'
\toption ifname 'eth1'
\toption track_method 'none'

config member 'm1'
\toption interface 'wan'

config member 'm2'
\toption interface 'wanb'

config policy 'p'
\tlist members 'm1'
\tlist members 'm2'

config rule 'r'
\toption policy 'p'
"""


def check(text: str, fmt: str = "uci", name: str = "n.uci"):
    return validate.validate(load.loads(text.encode(), name, fmt))


def errors_of(text: str, fmt: str = "uci", name: str = "n.uci") -> list:
    with pytest.raises(validate.ConfigErrors) as err:
        check(text, fmt, name)
    for line in err.value.lines:
        assert "\n" not in line and "Traceback" not in line
    return err.value.lines


def with_option(section: str, option: str, value: str, base: str = BASE) -> str:
    """BASE with one more `option` line right after the `config` line of `section`."""
    head = f"config {section}\n"
    assert head in base
    return base.replace(head, f"{head}\toption {option} '{value}'\n", 1)


def line_of(text: str, needle: str, last: bool = False) -> int:
    """Line number of the first (or last) line holding `needle`."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return found[-1] if last else found[0]


# --- defaults --------------------------------------------------------------------------------


def test_the_agent_options_of_globals_are_accepted_and_stay_out_of_the_bundle():
    text = with_option("globals 'globals'", "log_level", "debug").replace(
        "\toption log_level 'debug'\n", "\toption log_level 'debug'\n\toption metrics_listen '[::1]:9101'\n")
    cfg = check(text)
    assert (cfg["globals"]["log_level"], cfg["globals"]["metrics_listen"]) == ("debug", "[::1]:9101")
    assert resolve.resolve(cfg, locator=None).to_dict() == resolve.resolve(check(BASE), locator=None).to_dict()


def test_defaults_are_filled_in():
    cfg = check(BASE)
    assert cfg["globals"] == {"enabled": True, "nft_table": "netpath", "mark_mask": 0x3F00,
                              "logging": False, "loglevel": "notice", "route_table_base": 1000,
                              "route_protocol": 93}
    wan = cfg["interfaces"]["wan"]
    assert (wan["enabled"], wan["family"], wan["masquerade"], wan["flush_conntrack"]) == \
        (True, "ipv4", False, [])
    assert cfg["members"]["m1"] == {"interface": "wan", "metric": 1, "weight": 1}
    assert cfg["policies"]["p"] == {"members": ["m1", "m2"], "mode": "balanced",
                                    "last_resort": "unreachable"}
    rule = cfg["rules"][0]
    assert (rule["family"], rule["proto"], rule["sticky"], rule["timeout"]) == ("any", "all", False, 600)
    for key in validate.TRACK:
        assert str(key) in wan["track"] or str(key) in ("failure_interval", "recovery_interval", "http_url")


def test_values_are_coerced_to_their_types():
    text = with_option("member 'm1'", "weight", "7")
    text = with_option("interface 'wan'", "timeout", "0.5", text)
    text = with_option("rule 'r'", "dest_port", "80,443 1000-2000", text)
    text = with_option("rule 'r'", "dest_ip", "10.1.2.3/255.255.0.0", text)
    text = with_option("rule 'r'", "sticky", "yes", text)
    cfg = check(text)
    assert cfg["members"]["m1"]["weight"] == 7
    assert cfg["interfaces"]["wan"]["track"]["timeout"] == 0.5
    assert cfg["rules"][0]["dest_port"] == [[80, 80], [443, 443], [1000, 2000]]
    assert cfg["rules"][0]["dest_ip"] == ["10.1.0.0/16"]  # a contiguous netmask is a prefix
    assert cfg["rules"][0]["sticky"] is True


def test_a_non_contiguous_netmask_is_kept_as_address_and_mask():
    cfg = check(with_option("rule 'r'", "src_ip", "10.0.0.7/255.0.0.255"))
    assert cfg["rules"][0]["src_ip"] == ["10.0.0.7/255.0.0.255"]


def test_src_iface_naming_an_interface_becomes_its_device():
    cfg = check(with_option("rule 'r'", "src_iface", "wanb"))
    model = resolve.resolve(cfg, locator=None)  # the name -> device mapping is resolve's
    assert model.rules[0].src_iface == "eth1"


def test_the_member_limit_is_documented_and_sufficient_for_ten():
    assert validate.MAX_MEMBERS_PER_POLICY == 10
    text = "".join(f"config interface 'w{i}'\n\toption ifname 'e{i}'\n\toption track_method 'none'\n"
                   f"config member 'm{i}'\n\toption interface 'w{i}'\n" for i in range(10))
    text += "config policy 'p'\n" + "".join(f"\tlist members 'm{i}'\n" for i in range(10))
    assert len(check(text)["policies"]["p"]["members"]) == 10


# --- errors, each one line naming the place --------------------------------------------------

# (description, text, where (the UCI line's content), what is wrong, what is allowed)
BAD_OPTIONS = [
    ("unknown option", with_option("interface 'wan'", "ifnmae", "eth0"), "option ifnmae",
     "unknown option 'ifnmae' for an interface (did you mean 'ifname'?)", "allowed: check_quality, count"),
    ("mwan3 spelling", with_option("interface 'wan'", "track_ip", "1.1.1.1"), "option track_ip",
     "did you mean 'track_targets'? that is NetPath's name for mwan3's 'track_ip'",
     "ifname, initial_state, interval, keep_failure_interval"),  # UCI: flat tracking names
    ("mwan3 use_member", BASE.replace("list members 'm1'", "list use_member 'm1'"), "use_member",
     "did you mean 'members'?", "allowed: last_resort, members, mode"),
    ("wrong type", with_option("member 'm1'", "weight", "heavy"), "option weight",
     "expected a whole number, got 'heavy'", ""),
    ("weight 0", with_option("member 'm1'", "weight", "0"), "option weight",
     "0 is out of range", "allowed: 1..1000"),
    ("metric too high", with_option("member 'm1'", "metric", "257"), "option metric",
     "257 is out of range", "allowed: 1..256"),
    ("boolean", with_option("interface 'wan'", "enabled", "maybe"), "option enabled",
     "expected a boolean", "1/0, yes/no, on/off, true/false"),
    ("seconds", with_option("interface 'wan'", "interval", "0"), "option interval",
     "0 s is out of range", "allowed: 0.05 .. 3600 s"),
    ("mode", with_option("policy 'p'", "mode", "balance"), "option mode",
     "'balance' is not allowed (did you mean 'balanced'?)", "allowed: balanced, failover, round-robin"),
    ("last_resort", with_option("policy 'p'", "last_resort", "drop"), "option last_resort",
     "'drop' is not allowed", "allowed: unreachable, blackhole, default"),
    ("gateway address", with_option("interface 'wan'", "gateway", "192.0.2.300"), "option gateway",
     "'192.0.2.300' is not an IP address", ""),
    ("prefix length", with_option("rule 'r'", "dest_ip", "192.0.2.0/33"), "option dest_ip",
     "prefix length 33 is longer than 32", ""),
    ("prefix text", with_option("rule 'r'", "src_ip", "192.0.2.0/abc"), "option src_ip",
     "'abc' is neither a prefix length nor a netmask", ""),
    ("address", with_option("rule 'r'", "dest_ip", "example.com"), "option dest_ip",
     "'example.com' is not an address or prefix", ""),
    ("port 0", with_option("rule 'r'", "dest_port", "0"), "option dest_port",
     "ports are 1..65535", ""),
    ("port text", with_option("rule 'r'", "src_port", "http"), "option src_port",
     "'http' is not a port or port range", "e.g. 443, 80,443, 1000-2000"),
    ("port range backwards", with_option("rule 'r'", "dest_port", "2000-1000"), "option dest_port",
     "the range starts after it ends", ""),
    ("protocol", with_option("rule 'r'", "proto", "tcpp"), "option proto",
     "'tcpp' is not a protocol (did you mean 'tcp'?)", "or a number 0..255"),
    ("mask bits", with_option("globals 'globals'", "nft_table", "netpath").replace("0x3F00", "0x3"),
     "option mark_mask", "has 2 bits; NetPath needs 3 to 8 bits", ""),
    ("mask too wide", BASE.replace("0x3F00", "0x1FF00"), "option mark_mask", "has 9 bits", "3 to 8"),
    ("table name", with_option("globals 'globals'", "nft_table", "net-path"), "option nft_table",
     "is not a valid nft table name", "a letter, then up to 31 letters, digits or '_'"),
    ("device with quote", BASE.replace("'eth0'", "'eth0\"'"), "option ifname",
     "is not a valid device name", "1-15 characters"),
    ("device with brace", BASE.replace("'eth0'", "'eth0}'"), "option ifname",
     "'eth0}' is not a valid device name", ""),
    ("device with semicolon", BASE.replace("option ifname 'eth0'", "option ifname \"eth0;x\""),
     "option ifname", "'eth0;x' is not a valid device name", ""),
    ("device too long", BASE.replace("'eth0'", f"'{'e' * 16}'"), "option ifname",
     "is not a valid device name", "1-15 characters"),
    ("ipset injection", with_option("rule 'r'", "ipset", "x}flush"), "option ipset",
     "'x}flush' is not a valid name", "letters, digits, underscore"),
    ("src_iface injection", with_option("rule 'r'", "src_iface", 'br"lan'), "option src_iface",
     "is not a valid device name", ""),
    ("dns name injection", with_option("interface 'wan'", "dns_query", "a;b"), "option dns_query",
     "'a;b' is not a DNS name", ""),
    ("url", with_option("interface 'wan'", "http_url", "ftp://example.com/"), "option http_url",
     "is not an http:// or https:// URL", ""),
    ("flush event", with_option("interface 'wan'", "flush_conntrack", "ifup never"),
     "option flush_conntrack", "'never' is not allowed", "allowed: ifup, ifdown, connected, disconnected"),
    ("agent log level", with_option("globals 'globals'", "log_level", "loud"), "option log_level",
     "'loud' is not allowed", "allowed: debug, info, warning, error"),
    ("metrics address", with_option("globals 'globals'", "metrics_listen", "127.0.0.1"),
     "option metrics_listen", "expected HOST:PORT", "127.0.0.1:9101"),
    ("metrics port", with_option("globals 'globals'", "metrics_listen", "[::1]:70000"),
     "option metrics_listen", "expected HOST:PORT", ""),
    ("empty policy", BASE.replace("\tlist members 'm1'\n\tlist members 'm2'\n", "\toption mode 'hash'\n"),
     "config policy 'p'", "missing required option 'members'", ""),
]


@pytest.mark.parametrize("text, needle, wrong, allowed",
                         [case[1:] for case in BAD_OPTIONS], ids=[case[0] for case in BAD_OPTIONS])
def test_a_bad_option_is_one_line_naming_file_line_section_and_option(text, needle, wrong, allowed):
    lines = errors_of(text)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"n.uci:{line_of(text, needle)}: "), line
    assert wrong in line and allowed in line, line


CROSS = [
    ("member -> missing interface", BASE.replace("option interface 'wanb'", "option interface 'wam'"),
     "option interface 'wam'", "member 'm2' option 'interface': interface 'wam' does not exist (did you mean 'wan'?)"),
    ("policy -> missing member", BASE.replace("list members 'm2'", "list members 'm3'"),
     "list members 'm3'", "policy 'p' option 'members' item 2: member 'm3' does not exist"),
    ("rule -> missing policy", BASE.replace("option policy 'p'", "option policy 'q'"),
     "option policy 'q'", "policy 'q' does not exist"),
    ("member listed twice", BASE.replace("list members 'm2'", "list members 'm1'"),
     "list members 'm1'", "'m1' is listed twice"),
    ("one interface twice in a policy",
     BASE.replace("option interface 'wanb'", "option interface 'wan'"), "list members 'm2'",
     "member 'm2' uses interface 'wan' like member 'm1'"),
    ("device used twice", BASE.replace("option ifname 'eth1'", "option ifname 'eth0'"),
     "config interface 'wanb'", "device 'eth0' (ipv4) is also used by interface 'wan'"),
    ("gateway family", with_option("interface 'wan'", "gateway", "2001:db8::1"), "option gateway",
     "2001:db8::1 is not an ipv4 address (the interface's family is ipv4)"),
    ("target family", BASE.replace("list track_targets '8.8.8.8'", "list track_targets '2001:db8::1'"),
     "track_targets", "2001:db8::1 is not an ipv4 address"),
    ("host name for ping", BASE.replace("list track_targets '8.8.8.8'", "list track_targets 'dns.example'"),
     "track_targets", "track method 'ping' needs IP addresses (host names work for httping)"),
    ("no targets", BASE.replace("\tlist track_targets '8.8.8.8'\n", ""), "config interface 'wan'",
     "track method 'ping' needs at least one target"),
    ("reliability", with_option("interface 'wan'", "reliability", "2"), "option reliability",
     "reliability 2 exceeds the 1 target(s)"),
    ("quality levels", with_option("interface 'wan'", "recovery_loss", "50"), "option recovery_loss",
     "recovery_loss 50 % is above failure_loss 40 %"),
    ("rule family", with_option("rule 'r'", "family", "ipv6").replace(
        "option policy 'p'", "option policy 'p'\n\toption dest_ip '192.0.2.0/24'"),
     "option dest_ip", "192.0.2.0/24 is ipv4 but the rule's family is ipv6"),
    ("mixed families", with_option("rule 'r'", "src_ip", "192.0.2.0/24").replace(
        "option policy 'p'", "option policy 'p'\n\toption dest_ip '2001:db8::/32'"),
     "config rule 'r'", "mixes ipv4 and ipv6 addresses; write one rule per family"),
    ("ports with icmp", with_option("rule 'r'", "proto", "icmp").replace(
        "option policy 'p'", "option policy 'p'\n\toption dest_port '80'"),
     "option dest_port", "ports need proto tcp, udp, sctp, udplite or all"),
    ("icmp in ipv6", with_option("rule 'r'", "proto", "icmp").replace(
        "option policy 'p'", "option policy 'p'\n\toption family 'ipv6'"),
     "option proto", "proto icmp does not exist in ipv6"),
    ("sticky to a special target", with_option("rule 'r'", "sticky", "1").replace(
        "option policy 'p'", "option policy 'blackhole'"), "option sticky",
     "sticky needs a policy to stick to, not 'blackhole'"),
    ("id twice", with_option("interface 'wan'", "id", "3", with_option("interface 'wanb'", "id", "3")),
     "option id '3'", "id 3 is also used by interface"),
    ("arping in ipv6", with_option("interface 'wan'", "family", "ipv6").replace(
        "'8.8.8.8'", "'2001:db8::1'").replace("'ping'", "'arping'"), "'arping'",
     "arping works for ipv4 only"),
]


@pytest.mark.parametrize("text, needle, message", [c[1:] for c in CROSS], ids=[c[0] for c in CROSS])
def test_cross_reference_errors_name_the_place(text, needle, message):
    """A duplicate is reported where it occurs the second time."""
    lines = errors_of(text)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"n.uci:{line_of(text, needle, last=True)}: "), lines[0]
    assert message in lines[0]


def test_a_mark_mask_too_small_for_the_interfaces():
    text = BASE.replace("0x3F00", "0x700")  # 3 bits: ids 1..4, then 5, 6, 7 reserved
    text += "".join(f"config interface 'x{i}'\n\toption ifname 'x{i}'\n\toption track_method 'none'\n"
                    for i in range(3))
    assert marks.max_interfaces(0x700) == 4
    (line,) = errors_of(text)
    assert line == ("n.uci:2: globals 'globals' option 'mark_mask': mark mask 0x700 has room for 4 "
                    "interfaces, the config has 5; widen the mask")


def test_an_id_outside_the_mask():
    (line,) = errors_of(with_option("interface 'wan'", "id", "5", BASE.replace("0x3F00", "0x700")))
    assert "id 5 does not fit the mark mask 0x700 (ids 1..4)" in line


def test_more_members_than_the_limit_is_refused_with_the_reason():
    n = validate.MAX_MEMBERS_PER_POLICY + 1
    text = "".join(f"config interface 'w{i}'\n\toption ifname 'e{i}'\n\toption track_method 'none'\n"
                   f"config member 'm{i}'\n\toption interface 'w{i}'\n" for i in range(n))
    text += "config policy 'big'\n" + "".join(f"\tlist members 'm{i}'\n" for i in range(n))
    (line,) = errors_of(text)
    assert line.startswith(f"n.uci:{line_of(text, 'list members', last=True)}: policy 'big' option 'members'")
    assert f"{n} members; a policy takes at most 10 (its state variants grow as 2^members)" in line


def test_every_problem_is_reported_not_just_the_first():
    text = with_option("member 'm1'", "weight", "0")
    text = with_option("member 'm2'", "metric", "x", text)
    text = with_option("rule 'r'", "dest_port", "99999", text)
    lines = errors_of(text)
    assert len(lines) == 3
    assert [l.split(":")[1] for l in lines] == [str(line_of(text, n)) for n in
                                                ("weight '0'", "metric 'x'", "dest_port")]


# --- names: validated, never quoted into safety -----------------------------------------------

EVIL_NAMES = ['a"b', "a'b", "a}b", "a{b", "a;b", "a\nb", "a b", "a$b", "a-b", "a.b", "x" * 33, "",
              "ü", "eth0\n"]


@pytest.mark.parametrize("name", EVIL_NAMES, ids=repr)
@pytest.mark.parametrize("kind", ["interfaces", "members", "policies"])
def test_a_section_name_that_could_inject_is_refused(kind, name):
    cfg = {"interfaces": {"wan": {"ifname": "eth0", "track": {"method": "none"}}},
           "members": {"m": {"interface": "wan"}}, "policies": {"p": {"members": ["m"]}}}
    cfg[kind][name] = dict(next(iter(cfg[kind].values())))
    import yaml

    lines = errors_of(yaml.safe_dump(cfg), "yaml", "n.yaml")
    assert len(lines) == 1 and "is not valid (1-32 characters: letters, digits, underscore)" in lines[0]


@pytest.mark.parametrize("name", EVIL_NAMES, ids=repr)
def test_a_rule_name_that_could_inject_is_refused(name):
    import yaml

    cfg = {"rules": [{"name": name, "policy": "default"}]}
    lines = errors_of(yaml.safe_dump(cfg), "yaml", "n.yaml")
    assert len(lines) == 1 and lines[0].startswith("n.yaml: rules[0]") and "not a valid name" in lines[0]


@pytest.mark.parametrize("option, value", [("ifname", "eth0\n"), ("ifname", "eth0 "),
                                           ("ifname", "-eth0"), ("nft_table", "netpath\n"),
                                           ("ipset", "set\n"), ("http_url", "http://a/\n"),
                                           ("dns_query", "example.com\n")])
def test_a_trailing_newline_never_passes_a_pattern(option, value):
    import yaml

    cfg = {"interfaces": {"wan": {"ifname": "eth0", "track": {"method": "httping", "targets": ["a.example"]}}},
           "rules": [{"name": "r", "policy": "default"}]}
    if option == "nft_table":
        cfg["global"] = {option: value}
    elif option in ("http_url", "dns_query"):
        cfg["interfaces"]["wan"]["track"][option] = value
    elif option == "ipset":
        cfg["rules"][0][option] = value
    else:
        cfg["interfaces"]["wan"][option] = value
    (line,) = errors_of(yaml.safe_dump(cfg), "yaml", "n.yaml")
    assert repr(value) in line


def test_tracking_options_at_the_wrong_level_in_toml_say_where_they_go():
    text = '[interfaces.wan]\nifname = "eth0"\ninterval = 5\n'
    (line,) = errors_of(text, "toml", "n.toml")
    assert line == ("n.toml: interfaces.wan.interval: unknown option 'interval' for an interface "
                    "(tracking settings go under 'interfaces.wan.track'); allowed: enabled, family, "
                    "flush_conntrack, gateway, id, ifname, masquerade, track")


def test_rules_must_be_a_list_and_names_unique_in_yaml():
    (line,) = errors_of("rules: {r: {policy: default}}\n", "yaml", "n.yaml")
    assert line == "n.yaml: rules: rules are ordered: write them as a list"
    (line,) = errors_of("rules: [{name: r, policy: default}, {name: r, policy: default}]\n",
                        "yaml", "n.yaml")
    assert line == "n.yaml: rules[1] ('r'): rule name 'r' is used twice (also n.yaml: rules[0] ('r'))"


def test_docs_describe_every_option_of_the_schema():
    """docs/config.md is derived from this schema; a new option must be documented."""
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()

    def documented(name):  # in the first cell of a table row
        return re.search(rf"^\| [^|]*`{re.escape(name)}`[^|]*\|", docs, re.M) is not None

    for schema in (validate.GLOBALS, validate.INTERFACE, validate.MEMBER, validate.POLICY,
                   validate.RULE):
        for key in schema:
            if str(key) not in ("name", "track"):
                assert documented(str(key)), key
    for key in validate.TRACK:  # UCI name and `track.` key side by side
        assert f"| `{load.UCI_OPTION_OF_TRACK[str(key)]}` | `{key}` |" in docs, key
    assert f"{validate.MAX_MEMBERS_PER_POLICY} members per policy" in docs


@pytest.mark.parametrize("section,option,value", [
    ("interface 'wan'", "gateway", "fe80::1%eth0\nroute flush table main"),
    ("interface 'wan'", "gateway", "fe80::1%eth0"),
    ("rule 'r'", "dest_ip", "fe80::1%x; flush ruleset"),
    ("rule 'r'", "src_ip", "fe80::1%eth0/64"),
])
def test_an_ipv6_zone_id_never_reaches_ip_or_nft(section, option, value):
    """Python's ipaddress takes any text after '%'; it would reach `ip -batch` or nft as is."""
    lines = errors_of(with_option(section, option, value))  # UCI single quotes keep the newline
    assert any(f"option '{option}'" in line for line in lines), lines


# --- rules that can never match ------------------------------------------------------------

SHADOW = """\
config interface 'wan'
\toption ifname 'eth0'
\tlist track_targets '192.0.2.1'

config interface 'wan6'
\toption ifname 'eth0'
\toption family 'ipv6'
\tlist track_targets '2001:db8::1'

config member 'm'
\toption interface 'wan'

config member 'm6'
\toption interface 'wan6'

config policy 'p'
\tlist members 'm'
\tlist members 'm6'
"""


def shadow_warnings(rules: str) -> list:
    model = resolve.resolve(check(SHADOW + rules), locator=None)
    return [w for w in model.warnings if "can never match" in w]


def rule(name, **options):
    lines = [f"\nconfig rule '{name}'", "\toption policy 'p'"]
    lines += [f"\toption {k} '{v}'" for k, v in options.items()]
    return "\n".join(lines) + "\n"


def test_a_rule_after_a_catch_all_rule_is_reported():
    assert shadow_warnings(rule("default_rule") + rule("https", proto="tcp", dest_port="443")) == [
        "rule 'https' can never match: rule 'default_rule' matches every connection before it; move it above"]


def test_a_rule_before_the_catch_all_or_narrower_ones_are_fine():
    assert shadow_warnings(rule("https", proto="tcp", dest_port="443") + rule("lan", src_ip="192.168.1.0/24")
                           + rule("tcp", proto="tcp") + rule("default_rule")) == []


def test_per_family_catch_alls_shadow_their_family_and_together_everything():
    rules = (rule("default_v4", family="ipv4") + rule("web6", family="ipv6", proto="tcp", dest_port="443")
             + rule("web4", family="ipv4", proto="tcp", dest_port="443") + rule("default_v6", family="ipv6")
             + rule("late", proto="udp"))
    assert shadow_warnings(rules) == [
        "rule 'web4' can never match: rule 'default_v4' matches every ipv4 connection before it; move it above",
        "rule 'late' can never match: rules 'default_v4' and 'default_v6' match every connection before it; "
        "move it above"]


def test_an_address_match_of_length_zero_matches_everything_of_its_family():
    """mwan3's habit: dest_ip 0.0.0.0/0 (family any then narrows the rule to ipv4)."""
    rules = (rule("default_rule", dest_ip="0.0.0.0/0") + rule("web", proto="tcp", dest_port="443")
             + rule("v4_lan", src_ip="192.168.1.0/24") + rule("v6_web", dest_ip="::/0", proto="tcp"))
    assert shadow_warnings(rules) == [
        "rule 'v4_lan' can never match: rule 'default_rule' matches every ipv4 connection before it; move it above"]


# -- the direct path for flat schemas gives what voluptuous gives --------------------------

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import voluptuous as vol  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FLAT = {name: getattr(validate, name) for name in ("GLOBALS", "TRACK", "MEMBER", "POLICY", "RULE")}


def test_the_flat_schemas_take_the_direct_path():
    assert all(validate._direct_plan(schema) is not None for schema in FLAT.values())
    assert validate._direct_plan(validate.INTERFACE) is None  # its `track` is a type check


def validated_both_ways(source, monkeypatch):
    direct = validate.validate(source)
    with monkeypatch.context() as patched:
        patched.setattr(validate, "_direct", lambda plan, data: None)
        through_voluptuous = validate.validate(source)
    return direct, through_voluptuous


@pytest.mark.parametrize("path", sorted((ROOT / "examples").iterdir()), ids=lambda p: p.name)
def test_direct_path_matches_voluptuous_on_the_examples(path, monkeypatch):
    direct, through_voluptuous = validated_both_ways(load.load(str(path)), monkeypatch)
    assert direct == through_voluptuous


def test_direct_path_matches_voluptuous_on_a_thousand_generated_rules(monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    from rulegen import many_rules_config

    source = load.loads(many_rules_config(1000).encode(), "rules.uci", "uci")
    direct, through_voluptuous = validated_both_ways(source, monkeypatch)
    assert len(direct["rules"]) == 1001 and direct == through_voluptuous  # 1,000 and the default rule


VALUES = st.sampled_from([
    "ipv4", "ipv6", "any", "tcp", "udp", "icmp", "all", "17", "300", "10.0.0.0/8", "10.1.2.3/255.0.255.0",
    "2001:db8::/32", "192.0.2.1", "80", "1-100", "80,443", "0", "1", "2", "600", "yes", "off", "eth0", "br-lan",
    "x y", "", "wan", "m1", "balanced", "failover", "unreachable", "default", "ping", "8.8.8.8", "0x3F00", "-1",
    ["10.0.0.0/8"], ["192.0.2.1", "bad"], [], ["m1", "m1"], ["m1", "m2"], 5, 0, True, False, None, {}, 1.5,
])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(FLAT)), st.data())
def test_direct_path_matches_voluptuous_on_random_sections(name, data):
    schema = FLAT[name]
    keys = sorted(str(marker) for marker in schema)
    section = data.draw(st.dictionaries(st.sampled_from(keys), VALUES, max_size=len(keys)))
    direct = validate._direct(validate._direct_plan(schema), section)
    try:
        expected = vol.Schema(schema)(dict(section))
    except vol.Invalid:
        assert direct is None  # voluptuous refuses: so does the direct path, and voluptuous reports it
        return
    if direct is not None:
        assert direct == expected
