"""Hostile and degenerate configs are refused cleanly: exit status 2, a line naming the
culprit, no traceback, nothing written, and quickly (each compile runs under a timeout
that a hang or an alias bomb would exceed).

The value checks run in all three syntaxes: each case is one config tree, written as UCI,
TOML and YAML by the compiler's own writer (compiler/emit.py). Syntax-specific hazards
(YAML tags, aliases, keys; TOML digits and nesting; UCI digits) have their own cases.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from netpath.compiler import emit, load, validate

REPO = Path(__file__).resolve().parents[2]
NETPATH = [sys.executable, "-m", "netpath.compiler.cli"]
TIMEOUT = 30  # seconds; a refused config takes well under one
SUFFIX = {"uci": ".uci", "toml": ".toml", "yaml": ".yaml"}

BASE = {
    "globals": {"nft_table": "netpath"},
    "interfaces": {"wan": {"ifname": "eth0", "track": {"method": "ping", "targets": ["192.0.2.1"]}},
                   "wanb": {"ifname": "eth1", "track": {"method": "ping", "targets": ["198.51.100.1"]}}},
    "members": {"wan_m1": {"interface": "wan"}, "wanb_m1": {"interface": "wanb"}},
    "policies": {"balanced": {"members": ["wan_m1", "wanb_m1"]}},
    "rules": [{"name": "default_rule", "policy": "balanced"}],
}


def refused(tmp_path: Path, text, suffix: str, *culprit: str, line: "int | None" = None) -> list:
    """Compile `text`; assert a clean refusal that names `culprit`; return the error lines."""
    config = tmp_path / f"net{suffix}"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "bundle"
    proc = subprocess.run(NETPATH + ["compile", str(config), "-o", str(out), "--no-check"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert 1 <= len(lines) <= validate.MAX_PROBLEMS + 1
    assert all(len(l) <= 400 for l in lines), max(len(l) for l in lines)
    assert any(all(word in l for word in culprit) for l in lines), (culprit, lines)
    assert all(l.startswith(str(config)) or l.startswith("... and ") for l in lines), lines
    if line is not None:
        assert any(l.startswith(f"{config}:{line}: ") for l in lines), lines
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [config.name]
    return lines


def variant(edit) -> dict:
    tree = copy.deepcopy(BASE)
    edit(tree)
    return tree


def _set(path, value):
    def edit(tree):
        node = tree
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


VALUE_CASES = {
    # the kernel's tables 253-255: default routes would land in main and local
    "table base 253": (_set(("globals", "route_table_base"), 253), ("route_table_base", "254 (main)")),
    "table base 200": (_set(("globals", "route_table_base"), 200), ("route_table_base", "253 (default)",
                                                                     "at least 255")),
    "table base too large": (_set(("globals", "route_table_base"), 10 ** 30), ("route_table_base",
                                                                               "out of range")),
    "nft keyword table": (_set(("globals", "nft_table"), "counter"), ("nft_table", "'counter' is an nft keyword")),
    "nft keyword include": (_set(("globals", "nft_table"), "include"), ("nft_table", "nft keyword")),
    "target unspecified": (_set(("interfaces", "wan", "track", "targets"), ["0.0.0.0"]),
                           ("targets", "0.0.0.0 is the unspecified address")),
    "target unspecified v6": (lambda t: t["interfaces"]["wan"].update(
        family="ipv6", track={"method": "ping", "targets": ["::"]}), ("targets", ":: is the unspecified")),
    "target multicast": (_set(("interfaces", "wan", "track", "targets"), ["224.0.0.1"]),
                         ("targets", "multicast")),
    "target multicast v6": (lambda t: t["interfaces"]["wan"].update(
        family="ipv6", track={"method": "ping", "targets": ["ff02::1"]}), ("targets", "multicast")),
    "target broadcast": (_set(("interfaces", "wan", "track", "targets"), ["255.255.255.255"]),
                         ("targets", "broadcast")),
    "target not an address": (_set(("interfaces", "wan", "track", "targets"), ["192.0.2.256"]),
                              ("targets", "'192.0.2.256' is not a valid IP address")),
    "target not an address, httping": (_set(("interfaces", "wan", "track"), {
        "method": "httping", "targets": ["10.1.1"], "http_url": "http://192.0.2.1/"}),
        ("targets", "'10.1.1' is not a valid IP address")),
    "no interfaces": (lambda t: t.update(interfaces={}, members={}, policies={}, rules=[]),
                      ("nothing to do",)),
    "globals only": (lambda t: [t.pop(k) for k in ("interfaces", "members", "policies", "rules")],
                     ("nothing to do",)),
    "arabic digits": (_set(("members", "wan_m1", "weight"), "١٢"), ("weight", "expected a whole number")),
    "fullwidth digit": (_set(("members", "wan_m1", "metric"), "１"), ("metric", "expected a whole number")),
    "underscore digits": (_set(("members", "wan_m1", "weight"), "1_0"), ("weight", "expected a whole number")),
    "unicode seconds": (_set(("interfaces", "wan", "track", "interval"), "٥"), ("interval",
                                                                             "expected a number of seconds")),
    "underscore seconds": (_set(("interfaces", "wan", "track", "timeout"), "1_0"), ("timeout",
                                                                                 "expected a number of seconds")),
    "unicode mask": (_set(("globals", "mark_mask"), "0x３F00"), ("mark_mask", "expected a hex mark mask")),
    "unicode port": (lambda t: t["rules"][0].update(proto="tcp", dest_port="４４３"), ("dest_port",)),
    "long value is clipped": (_set(("interfaces", "wan", "ifname"), "x" * 100_000), ("ifname", "...")),
    "too many targets": (_set(("interfaces", "wan", "track", "targets"),
                              [f"192.0.2.{i}" for i in range(1, 35)]), ("targets", "34 targets", "at most 32")),
    "too many addresses": (lambda t: t["rules"][0].update(dest_ip=[f"10.0.{i // 256}.{i % 256}" for i in range(300)]),
                           ("dest_ip", "300 addresses", "at most 256")),
}


@pytest.mark.parametrize("fmt", ["uci", "toml", "yaml"])
@pytest.mark.parametrize("case", sorted(VALUE_CASES))
def test_a_value_that_would_harm_is_refused_in_every_syntax(tmp_path, case, fmt):
    edit, culprit = VALUE_CASES[case]
    lines = refused(tmp_path, emit.render(variant(edit), fmt), SUFFIX[fmt], *culprit)
    if case == "long value is clipped":
        assert all(len(l) - len(str(tmp_path)) < 250 for l in lines), lines


def _big(tree, policies=5, members=10, rules=0):
    tree["interfaces"] = {f"w{i}": {"ifname": f"eth{i}", "track": {"method": "none"}} for i in range(members)}
    tree["members"] = {f"m{i}": {"interface": f"w{i}"} for i in range(members)}
    tree["policies"] = {f"p{j}": {"members": [f"m{i}" for i in range(members)]} for j in range(policies)}
    tree["rules"] = [{"name": f"r{k}", "policy": "p0", "proto": "tcp", "dest_port": str(1 + k)}
                     for k in range(rules)]


@pytest.mark.parametrize("fmt", ["uci", "toml", "yaml"])
def test_more_state_files_than_the_budget_are_refused_with_the_numbers(tmp_path, fmt):
    lines = refused(tmp_path, emit.render(variant(lambda t: _big(t, policies=5)), fmt), SUFFIX[fmt],
                    "5 policies need 5120 state files", "at most 4096")
    assert len(lines) == 1


@pytest.mark.parametrize("fmt", ["uci", "yaml"])
def test_more_rules_than_the_budget_are_refused(tmp_path, fmt):
    tree = variant(lambda t: _big(t, policies=1, members=2, rules=validate.MAX_RULES + 1))
    refused(tmp_path, emit.render(tree, fmt), SUFFIX[fmt], f"{validate.MAX_RULES + 1} rules", "at most")


@pytest.mark.parametrize("fmt", ["uci", "toml", "yaml"])
def test_error_output_is_bounded_to_the_first_problems_and_a_count(tmp_path, fmt):
    tree = variant(lambda t: t["members"].update({f"m{i}": {"interface": "wan", "weight": 0} for i in range(200)}))
    lines = refused(tmp_path, emit.render(tree, fmt), SUFFIX[fmt], "weight", "out of range")
    assert len(lines) == validate.MAX_PROBLEMS + 1
    assert lines[-1] == f"... and {200 - validate.MAX_PROBLEMS} more problems"


# --- empty files, sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("suffix,text", [(".uci", ""), (".uci", "# only a comment\n\n"), (".toml", ""),
                                         (".toml", "# nothing\n"), (".yaml", ""), (".yaml", "# nothing\n"),
                                         (".yaml", "---\n...\n"), (".uci", "config globals 'globals'\n")])
def test_an_empty_or_comment_only_config_has_nothing_to_do(tmp_path, suffix, text):
    refused(tmp_path, text, suffix, "nothing to do")


@pytest.mark.parametrize("suffix", [".uci", ".toml", ".yaml"])
def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path, suffix):
    text = "#" + " " * (load.MAX_CONFIG_BYTES) + "\n"
    refused(tmp_path, text, suffix, "larger than 4 MiB")


# --- YAML -------------------------------------------------------------------------------------

IFACE = "interfaces:\n  wan: {ifname: eth0, track: {method: none}}\n"


def _alias_bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\ninterfaces: {wan: {ifname: eth0, track: {targets: *i}}}\n"


YAML_CASES = {
    "int key": ("interfaces:\n  wan: {ifname: eth0}\n  7: {ifname: eth1}\n", ("key '7' is read as a number",), 3),
    "bool key": ("interfaces:\n  yes: {ifname: eth1}\n", ("key 'yes' is read as a boolean",), 2),
    "null key": ("interfaces:\n  null: {ifname: eth1}\n", ("key 'null' is read as null",), 2),
    "flow mapping duplicate": (IFACE + "members:\n  m: {interface: wan, weight: 1, weight: 900}\n",
                               ("key 'weight' appears twice",), 4),
    "top level duplicate": (IFACE + IFACE, ("key 'interfaces' appears twice",), 3),
    "python tag": (IFACE + "global: !!python/object/apply:os.system ['true']\n", ("python/object", "not allowed"), 3),
    "unknown tag": (IFACE + "global: !secret {}\n", ("tag '!secret' is not allowed",), 3),
    "set tag": (IFACE + "global: !!set {a, b}\n", ("set", "not allowed"), 3),
    "binary tag": (IFACE + "global: {nft_table: !!binary bmV0cGF0aA==}\n", ("binary", "not allowed"), 3),
    "alias bomb": (_alias_bomb(), ("aliases repeat more than",), None),
    "alias loop": (IFACE + "global: &g {x: *g}\n", ("alias",), None),
    "too many digits": (IFACE + "global: {route_table_base: " + "9" * 5000 + "}\n",
                        ("route_table_base", "out of range"), None),
    "deep nesting": (IFACE + "global: " + "[" * 5000 + "]" * 5000 + "\n", ("nested deeper",), 3),
    "deep by alias": (IFACE + "x: &x [[[1]]]\nmembers: {m: {interface: [*x]}}\n", ("nest", "deeper"), None),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_beyond_plain_data_is_refused(tmp_path, case):
    text, culprit, line = YAML_CASES[case]
    refused(tmp_path, text, ".yaml", *culprit, line=line)


def test_yaml_dates_stay_strings_and_merge_keys_still_work(tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text("interfaces:\n  wan: {<<: {ifname: eth9, track: {method: none}}, ifname: eth0}\n"
                      "members: {m: {interface: wan}}\npolicies: {p: {members: [m]}}\n"
                      "rules: [{name: r, policy: p, proto: tcp, dest_port: 443}]\n")
    source = load.load(str(config))
    assert source.tree["interfaces"]["wan"]["ifname"] == "eth0"
    date = load.loads(b"interfaces: {wan: {ifname: 2024-01-01}}\n", "d.yaml", "yaml")
    assert date.tree["interfaces"]["wan"]["ifname"] == "2024-01-01"


# --- TOML and UCI -----------------------------------------------------------------------------

TOML_IFACE = '[interfaces.wan]\nifname = "eth0"\n[interfaces.wan.track]\nmethod = "none"\n'


@pytest.mark.parametrize("text,culprit", [
    (TOML_IFACE + "[global]\nroute_table_base = " + "9" * 5000 + "\n", ("more digits than any option",)),
    (TOML_IFACE + "x = " + "[" * 5000 + "]" * 5000 + "\n", ("nested deeper",)),
    (TOML_IFACE + "[global]\nx = [[[[[1]]]]]\n", ("nested deeper",)),
    (TOML_IFACE + "[interfaces.wan]\nifname = \"eth1\"\n", ("TOML syntax error",)),
    (TOML_IFACE + "[global]\ninterval = 1e999999\n", ("global",)),
])
def test_toml_beyond_what_the_schema_holds_is_refused(tmp_path, text, culprit):
    refused(tmp_path, text, ".toml", *culprit)


@pytest.mark.parametrize("value", ["١٢", "１", "1_0", " ٣", "0x_10", "+1_000"])
def test_uci_numbers_are_ascii_digits_only(tmp_path, value):
    text = emit.render(BASE, "uci").replace("config member 'wan_m1'\n",
                                             f"config member 'wan_m1'\n\toption weight '{value}'\n")
    lines = refused(tmp_path, text, ".uci", "member 'wan_m1' option 'weight'", "expected a whole number")
    assert len(lines) == 1 and ":" in lines[0][len(str(tmp_path)):]


def test_a_uci_section_name_given_twice_is_refused_not_merged(tmp_path):
    text = emit.render(BASE, "uci") + "\nconfig rule 'default_rule'\n\toption policy 'default'\n"
    second = text.count("\n", 0, text.rindex("config rule 'default_rule'")) + 1
    lines = refused(tmp_path, text, ".uci", "rule 'default_rule': a second section of this name",
                    "first on line", line=second)
    assert len(lines) == 1


def test_a_uci_track_option_is_refused_not_a_traceback(tmp_path):
    text = emit.render(BASE, "uci").replace("config interface 'wan'\n",
                                             "config interface 'wan'\n\toption track 'ping'\n")
    refused(tmp_path, text, ".uci", "interface 'wan' option 'track'", "track_method")


def test_a_control_character_in_a_yaml_key_is_escaped_in_the_line(tmp_path):
    lines = refused(tmp_path, 'interfaces:\n  wan: {ifname: eth0, "\\x1e": 1}\n', ".yaml", "'\\x1e'")
    assert all(l.isprintable() for l in lines)


def test_a_uci_section_name_of_a_megabyte_is_clipped_in_every_line(tmp_path):
    text = emit.render(BASE, "uci") + f"\nconfig member '{'m' * 1_000_000}'\n\toption interface 'nosuch'\n"
    lines = refused(tmp_path, text, ".uci", "member 'mmmm", "...", "is not valid")
    assert all(len(l) - len(str(tmp_path)) < 250 for l in lines)
