"""The reader: three syntaxes into one plain tree, and a locator that names every place."""

from __future__ import annotations

import pytest

from netpath.compiler import load

UCI = b"""\
config globals 'globals'
\toption mark_mask '0x3F00'

config interface 'wan'
\toption ifname 'eth0'
\toption track_method 'ping'
\tlist track_targets '8.8.8.8'
\tlist track_targets '1.1.1.1'
\toption interval '5'
\toption flush_conntrack 'ifdown disconnected'

config member 'wan_m1'
\toption interface 'wan'

config policy 'p'
\toption members 'wan_m1'

config rule 'https'
\toption dest_port '443'
\toption policy 'p'

config rule 'rest'
\toption policy 'p'
"""

TOML = b"""\
[global]
mark_mask = "0x3F00"

[interfaces.wan]
ifname = "eth0"
flush_conntrack = ["ifdown", "disconnected"]
track = { method = "ping", targets = ["8.8.8.8", "1.1.1.1"], interval = "5" }

[members.wan_m1]
interface = "wan"

[policies.p]
members = ["wan_m1"]

[[rules]]
name = "https"
dest_port = "443"
policy = "p"

[[rules]]
name = "rest"
policy = "p"
"""

YAML = b"""\
global:
  mark_mask: "0x3F00"
interfaces:
  wan:
    ifname: eth0
    flush_conntrack: [ifdown, disconnected]
    track: {method: ping, targets: [8.8.8.8, 1.1.1.1], interval: "5"}
members:
  wan_m1: {interface: wan}
policies:
  p: {members: [wan_m1]}
rules:
  - {name: https, dest_port: "443", policy: p}
  - {name: rest, policy: p}
"""


def test_uci_toml_and_yaml_read_into_the_same_tree():
    uci = load.loads(UCI, "net.uci", "uci").tree
    toml = load.loads(TOML, "net.toml", "toml").tree
    yaml = load.loads(YAML, "net.yaml", "yaml").tree
    # UCI has no "single value that is a list"; `members` is a list option and split on spaces.
    assert uci == toml == yaml
    assert uci["interfaces"]["wan"]["track"] == {
        "method": "ping", "targets": ["8.8.8.8", "1.1.1.1"], "interval": "5"}
    assert [r["name"] for r in uci["rules"]] == ["https", "rest"]


def test_every_flat_uci_tracking_option_lands_under_track():
    options = "".join(f"\toption {name} 'x'\n" for name in load.TRACK_OPTIONS)
    tree = load.loads(f"config interface 'wan'\n{options}".encode(), "n", "uci").tree
    wan = tree["interfaces"]["wan"]
    assert set(wan) == {"track"}
    assert set(wan["track"]) == set(load.TRACK_OPTIONS.values())


def test_an_option_that_holds_a_list_is_split_on_spaces_like_config_get():
    tree = load.loads(b"config interface 'wan'\n\toption track_targets '8.8.8.8  1.1.1.1'\n"
                      b"\toption ifname 'eth0 eth1'\n", "n", "uci").tree
    assert tree["interfaces"]["wan"]["track"]["targets"] == ["8.8.8.8", "1.1.1.1"]
    assert tree["interfaces"]["wan"]["ifname"] == "eth0 eth1"  # not a list option: kept whole


def test_the_uci_locator_names_file_line_section_and_option():
    source = load.loads(UCI, "/etc/config/netpath", "uci")
    where = source.locator.where
    assert where(("interfaces", "wan", "track", "interval")) == \
        "/etc/config/netpath:9: interface 'wan' option 'interval'"
    # each item of a `list` option is named with its own line
    assert where(("interfaces", "wan", "track", "targets", 0)) == \
        "/etc/config/netpath:7: interface 'wan' option 'track_targets' item 1"
    assert where(("interfaces", "wan", "track", "targets", 1)) == \
        "/etc/config/netpath:8: interface 'wan' option 'track_targets' item 2"
    assert where(("rules", 1, "policy")) == "/etc/config/netpath:23: rule 'rest' option 'policy'"
    assert where(("members", "wan_m1", "weight")) == \
        "/etc/config/netpath:12: member 'wan_m1' option 'weight'"  # not in the file: its section
    assert where(("globals", "mark_mask")) == "/etc/config/netpath:2: globals 'globals' option 'mark_mask'"


@pytest.mark.parametrize("fmt, raw", [("toml", TOML), ("yaml", YAML)])
def test_the_nested_locator_names_the_path(fmt, raw):
    where = load.loads(raw, f"net.{fmt}", fmt).locator.where
    assert where(("interfaces", "wan", "track", "targets", 0)) == f"net.{fmt}: interfaces.wan.track.targets[0]"
    assert where(("rules", 0, "dest_port")) == f"net.{fmt}: rules[0] ('https').dest_port"
    assert where(("nowhere",)) == f"net.{fmt}: nowhere"


def test_unknown_uci_section_type_is_named_with_its_line_and_a_suggestion():
    with pytest.raises(load.LoadError) as err:
        load.loads(b"config interface 'wan'\n\toption ifname 'eth0'\nconfig membr 'm'\n", "n.uci", "uci")
    assert err.value.lines == ["n.uci:3: section type 'membr' is unknown (did you mean 'member'?); "
                               "allowed: globals, interface, member, policy, rule"]


def test_a_second_globals_section_is_refused():
    with pytest.raises(load.LoadError) as err:
        load.loads(b"config globals 'a'\nconfig globals 'b'\n", "n.uci", "uci")
    assert err.value.lines == ["n.uci:2: globals 'b': a second globals section (only one is allowed)"]


@pytest.mark.parametrize("fmt, raw", [
    ("toml", b"[global]\n[polices.p]\nmembers = []\n"),
    ("yaml", b"global: {}\npolices: {p: {members: []}}\n"),
])
def test_unknown_top_level_key_gets_did_you_mean(fmt, raw):
    with pytest.raises(load.LoadError) as err:
        load.loads(raw, "f", fmt)
    assert err.value.lines == ["f: top-level key 'polices' is unknown (did you mean 'policies'?); "
                               "allowed: global, interfaces, members, policies, rules"]


@pytest.mark.parametrize("fmt, raw, where", [
    ("uci", b"config interface 'wan'\n\toption ifname 'eth0\n", "f:2:"),
    ("toml", b"[interfaces.wan]\nifname = eth0\n", "f: TOML syntax error: "),
    ("yaml", b"interfaces:\n  wan: {ifname: eth0\n", "f:3: YAML syntax error: "),
    ("yaml", b"- just\n- a list\n", "f: the top level must be a table/mapping"),
    ("toml", b"\xff\xfe", "f: not UTF-8 text (byte 0)"),
])
def test_syntax_errors_are_one_located_line(fmt, raw, where):
    with pytest.raises(load.LoadError) as err:
        load.loads(raw, "f", fmt)
    assert len(err.value.lines) == 1 and "\n" not in err.value.lines[0]
    assert err.value.lines[0].startswith(where)


def test_a_yaml_key_given_twice_is_refused_not_silently_dropped():
    raw = b"interfaces:\n  wan: {ifname: eth0}\n  wanb: {ifname: eth1}\n  wan: {ifname: eth2}\n"
    with pytest.raises(load.LoadError) as err:
        load.loads(raw, "n.yaml", "yaml")
    assert err.value.lines == ["n.yaml:4: YAML: key 'wan' appears twice in one mapping "
                               "(first on line 2); names must be unique"]


def test_a_toml_key_given_twice_is_a_syntax_error():
    with pytest.raises(load.LoadError):
        load.loads(b"[interfaces.wan]\nifname = 'a'\n[interfaces.wan]\nifname = 'b'\n", "f", "toml")


def test_an_empty_yaml_file_is_an_empty_config():
    assert load.loads(b"", "f", "yaml").tree == {}


def test_a_bad_name_cannot_split_an_error_line():
    where = load.loads(b"rules:\n  - {name: \"a\\nb\", policy: p}\ninterfaces: {\"w\\nx\": {}}\n",
                       "f", "yaml").locator.where
    assert "\n" not in where(("rules", 0, "policy")) and "\n" not in where(("interfaces", "w\nx"))


def test_format_is_guessed_from_the_suffix_and_can_be_given(tmp_path):
    assert [load.guess_format(n) for n in ("a.toml", "b.YML", "c.yaml", "netpath", "d.uci")] == \
        ["toml", "yaml", "yaml", "uci", "uci"]
    path = tmp_path / "netpath.conf"
    path.write_bytes(YAML)
    assert load.load(str(path), "yaml").tree == load.loads(YAML, "x", "yaml").tree
    with pytest.raises(load.LoadError) as err:
        load.load(str(tmp_path / "missing"))
    assert err.value.lines == [f"{tmp_path / 'missing'}: cannot read the config: No such file or directory"]


def test_the_source_digest_is_the_sha256_of_the_bytes():
    import hashlib

    assert load.loads(UCI, "n", "uci").digest == hashlib.sha256(UCI).hexdigest()
