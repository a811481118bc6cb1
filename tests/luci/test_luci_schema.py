"""The browser's checks (luci/.../netpath/schema.js, run by node) against the compiler's
(compiler/validate.py) on the same values: whatever the form accepts, `netpath check`
accepts too, and on ordinary input both agree. Where the form is stricter on purpose
(numbers in plain decimal only, IPv6 scope ids) the case is listed as such.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import voluptuous as vol

from netpath.compiler import validate as v

HERE = Path(__file__).resolve().parent
SCHEMA_JS = HERE.parents[1] / "luci" / "htdocs" / "luci-static" / "resources" / "netpath" / "schema.js"

# Runs schema.js the way LuCI's loader does (the body of a function whose parameters are
# the required modules), with just enough of baseclass, _() and format().
NODE_RUNNER = r"""
const fs = require('fs');
String.prototype.format = function() { let i = 0; const a = arguments; return this.replace(/%[sdf]/g, () => String(a[i++])); };
global._ = (s) => s;
const baseclass = { extend: (props) => function() { Object.assign(this, props); } };
const Schema = new Function('baseclass', fs.readFileSync(process.argv[1], 'utf8'))(baseclass);
const schema = new Schema();
const jobs = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = jobs.map(([name, args, values]) => {
	const check = args ? schema[name].apply(schema, args) : schema[name].bind(schema);
	return values.map((value) => check(value) === true);
});
process.stdout.write(JSON.stringify(out));
"""

# The form takes numbers in plain decimal only; the compiler also reads Python literals
# (0x10, 1_0, +5, 1e1) and surrounding spaces.
def not_plain_integer(value):
    return re.fullmatch(r"[0-9]+", value) is None


def not_plain_number(value):
    return re.fullmatch(r"[0-9]+(\.[0-9]+)?|\.[0-9]+", value) is None


def one_of(*values):
    return lambda value: value in values


# name in schema.js, its arguments, the compiler's validator, and which values the form
# may refuse although the compiler takes them.
CHECKS = {
    "name": (None, v.Name, one_of()),
    "device": (None, v.Device, one_of()),
    "tableName": (None, v.TableName, one_of()),
    "integer(1,1000)": ([1, 1000], v.Int(1, 1000), not_plain_integer),
    "integer(1,256)": ([1, 256], v.Int(1, 256), not_plain_integer),
    "integer(0,599)": ([0, 599], v.Int(0, 599), not_plain_integer),
    "number(0.05,60)": ([0.05, 60], v.Seconds(0.05, 60), not_plain_number),
    "number(1,60000)": ([1, 60000], v.Number(1, 60000), not_plain_number),
    "number(0,100)": ([0, 100], v.Number(0, 100), not_plain_number),
    # hex digits only, with or without 0x (the compiler's int(x, 16) also takes "_" and spaces)
    "mask": (None, v.Mask, lambda value: re.fullmatch(r"(0[xX])?[0-9A-Fa-f]{1,8}", value) is None),
    "address": (None, v.Address, one_of()),
    "prefix": (None, v.Prefix, one_of()),
    "ports": (None, v.Ports, one_of()),
    "proto": (None, v.Proto, one_of()),
    "trackTarget": (None, v.TrackTarget, one_of()),
    "url": (None, v.Url, one_of()),
    "dnsName": (None, v.DnsName, one_of()),
}

COMMON = ["", " ", "a", "0", "1", "-1", "5", "7", "1000", "1001", "256", "257", "65535", "65536", "0x10",
          " 5", "+5", "1.5", "0.05", "0.04", ".5", "1.", "1e1", "-0", "inf", "nan", "60", "60.01", "600",
          "1_0", "0o7", "abc", "ABC_1", "wan", "wan-b", "wan.b", "wan b", "wan\n", "w" * 32, "w" * 33,
          "eth0", "eth0.100", "pppoe-wan", "-eth0", ".eth0", "a" * 15, "a" * 16, "br-lan", "netpath",
          "1abc", "_x", "x;y", "x\ty", "é"]
ADDRESSES = ["192.168.1.1", "192.168.1.256", "01.2.3.4", "1.2.3", "1.2.3.4.5", "0.0.0.0", "255.255.255.255",
             "::", "::1", "2001:db8::1", "2001:db8::1::2", "2001:db8:0:0:0:0:0:1", "1:2:3:4:5:6:7:8",
             "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4",
             "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "fe80::1%eth0", "12345::1", "g::1", ":1::", "1::2:",
             "8.8.8.8", " 8.8.8.8", "10.0.0.0/8", "10.0.0.0/33", "10.0.0.0/255.0.0.0", "10.0.0.0/255.0.255.0",
             "10.0.0.0/ffff::", "2001:db8::/32", "2001:db8::/129", "2001:db8::/ffff:ffff::", "10.0.0.0/",
             " 10.0.0.0/8", "10.0.0.0/8/8", "example.com", "www.example.com.", ".", "-bad.example", "a_b.example",
             "x" * 64 + ".com", "a..b"]
PORTS = ["443", "80,443", "80, 443", "1000-2000", "1024:2048", "2000-1000", "0", "65535", "65536", "80,", ",",
         "80-", "a", "80;443", "1-2-3", "443 8443"]
PROTOS = ["tcp", "TCP", "udp", "icmp", "icmpv6", "all", "esp", "gre", "sctp", "udplite", "0", "255", "256",
          "-1", "tcpx", " tcp", "6"]
MASKS = ["0x3F00", "0x3f00", "3F00", "0x0", "0x7", "0x3", "0xFF", "0x1FF", "0xFFFFFFFF", "0x100000000", "0x0f000000",
         "0x", "0xg", "1", " 0x3f00", "0X3F00 "]
URLS = ["http://www.example.com/", "https://a/b?c=d", "ftp://x/", "http://", "http://a b/", "https://[2001:db8::1]:8443/x",
        "http://ex ample.com", "HTTP://X/"]

CORPUS = sorted(set(COMMON + ADDRESSES + PORTS + PROTOS + MASKS + URLS))


def python_accepts(validator, value) -> bool:
    try:
        validator(value)
    except (vol.Invalid, vol.MultipleInvalid):
        return False
    return True


@pytest.fixture(scope="module")
def browser_results():
    jobs = []
    for name, (args, _, _) in CHECKS.items():
        jobs.append([name.split("(")[0], args, CORPUS])
    proc = subprocess.run(["node", "-e", NODE_RUNNER, str(SCHEMA_JS)], input=json.dumps(jobs),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    return {name: dict(zip(CORPUS, row)) for name, row in zip(CHECKS, results)}


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_form_accepts_nothing_the_compiler_refuses(name, browser_results):
    _, validator, _ = CHECKS[name]
    let_through = [value for value, ok in browser_results[name].items() if ok and not python_accepts(validator, value)]
    assert let_through == [], f"schema.js {name} accepts what the compiler refuses"


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_form_refuses_only_what_it_means_to(name, browser_results):
    _, validator, may_refuse = CHECKS[name]
    refused = sorted(value for value, ok in browser_results[name].items()
                     if not ok and python_accepts(validator, value) and not may_refuse(value))
    assert refused == [], f"schema.js {name} refuses values the compiler takes"


def test_the_corpus_has_both_answers_for_every_check(browser_results):
    for name, results in browser_results.items():
        assert set(results.values()) == {True, False}, name


def test_the_lists_match_the_compiler():
    proc = subprocess.run(["node", "-e", NODE_RUNNER.split("const jobs")[0] + """
process.stdout.write(JSON.stringify({
	modes: schema.MODES, last: schema.LAST_RESORTS, methods: schema.TRACK_METHODS, flush: schema.FLUSH_EVENTS,
	levels: schema.LOG_LEVELS, dns: schema.DNS_TYPES, protos: schema.PROTOCOLS, special: schema.SPECIAL_TARGETS,
	max_id: schema.MAX_ID, max_members: schema.MAX_MEMBERS_PER_POLICY, keywords: schema.NFT_KEYWORDS
}));""", str(SCHEMA_JS)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    js = json.loads(proc.stdout)
    from netpath.agent import marks, policy

    assert js["modes"] == list(policy.MODES)
    assert js["last"] == list(policy.LAST_RESORTS)
    assert js["methods"] == list(v.TRACK_METHODS)
    assert js["flush"] == list(v.FLUSH_EVENTS)
    assert js["levels"] == list(v.LOG_LEVELS)
    assert js["dns"] == list(v.DNS_TYPES)
    assert js["protos"] == list(v.PROTOCOLS)
    assert js["special"] == list(v.SPECIAL_TARGETS)
    assert js["max_id"] == marks.MAX_ID
    assert js["max_members"] == v.MAX_MEMBERS_PER_POLICY
    from netpath.agent.names import NFT_KEYWORDS

    assert sorted(js["keywords"]) == sorted(NFT_KEYWORDS)


# Rule sections as the uci module lists them (lists as arrays, absent options absent).
CATCH_ALL_CORPUS = [
    {}, {"proto": "all"}, {"family": "ipv6"}, {"dest_ip": "0.0.0.0/0"}, {"dest_ip": ["::/0"]},
    {"src_ip": ["10.0.0.0/0.0.0.0"]}, {"proto": "tcp"}, {"dest_port": "443", "proto": "tcp"},
    {"src_ip": "192.168.1.0/24"}, {"dest_ip": ["0.0.0.0/0", "192.0.2.0/24"]}, {"src_iface": "br-lan"},
    {"ipset": "video"}, {"src_ipset": "kids"}, {"sticky": "1"}, {"family": "ipv4", "logging": "1"},
]


def test_add_rule_finds_the_catch_all_rule_as_the_compiler_does():
    """schema.js catchAll (where "Add rule" inserts) against resolve.catch_all (what the
    shadowed-rule warning counts as matching everything)."""
    from netpath.compiler import load, resolve

    proc = subprocess.run(["node", "-e", NODE_RUNNER, str(SCHEMA_JS)],
                          input=json.dumps([["catchAll", None, CATCH_ALL_CORPUS]]),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    browser = json.loads(proc.stdout)[0]
    head = ("config interface 'wan'\n\toption ifname 'eth0'\n\tlist track_targets '192.0.2.1'\n"
            "config member 'm'\n\toption interface 'wan'\nconfig policy 'p'\n\tlist members 'm'\n")
    compiler = []
    for options in CATCH_ALL_CORPUS:
        lines = [f"\t{'list' if isinstance(v, list) else 'option'} {k} '{x}'"
                 for k, v in options.items() for x in (v if isinstance(v, list) else [v])]
        text = head + "config rule 'r'\n\toption policy 'p'\n" + "\n".join(lines) + "\n"
        model = resolve.resolve(v.validate(load.loads(text.encode(), "r.uci", "uci")), locator=None)
        compiler.append(resolve.catch_all(model.rules[0]))
    assert browser == compiler
    assert set(compiler) == {True, False}


# The forms leave a value equal to an option's default out of the file (schema.js namedGrid),
# so every default a view declares must be the compiler's: otherwise choosing it would
# silently mean the compiler's other default.
VIEW_SCHEMAS = {"interfaces.js": ("INTERFACE", "GLOBALS"), "members.js": ("MEMBER",),
                "policies.js": ("POLICY",), "rules.js": ("RULE",)}


def test_the_defaults_the_views_declare_are_the_compilers():
    from netpath.compiler.load import TRACK_OPTIONS

    views = SCHEMA_JS.parents[1] / "view" / "netpath"
    compared = 0
    for view, schema_names in VIEW_SCHEMAS.items():
        text = (views / view).read_text()
        defaults = {}
        for option, body in re.findall(r"form\.\w+, '(\w+)'(.*?)(?=\n\t\to = |\Z)", text, re.S):
            match = re.search(r"o\.default = ('([^']*)'|o\.enabled|o\.disabled)", body)
            if match:
                defaults[option] = {"o.enabled": "1", "o.disabled": "0"}.get(match.group(1), match.group(2))
        for option, value in defaults.items():
            wanted = None
            for name in schema_names:
                schema = getattr(v, name)
                key = TRACK_OPTIONS.get(option) if name == "INTERFACE" and option in TRACK_OPTIONS else option
                schema = v.TRACK if name == "INTERFACE" and option in TRACK_OPTIONS else schema
                for marker in schema:
                    if str(marker) == key and marker.default is not vol.UNDEFINED:
                        wanted = marker.default()
            if wanted is None:
                continue
            if isinstance(wanted, bool):
                wanted = "1" if wanted else "0"
            assert str(value) == str(wanted), f"{view} option {option}: default {value!r}, compiler {wanted!r}"
            compared += 1
    assert compared >= 10
