"""The small functions that write nft rule text (the templates' filters)."""

from __future__ import annotations

import re
import subprocess

import pytest

from netpath.agent.model import Match, Rule
from netpath.agent.policy import PolicyMember, decide, policy_seed
from netpath.compiler import nftrules


def rule(**changes) -> Rule:
    base = dict(name="r", index=0, families=("ipv4", "ipv6"), proto="all", src=(), dest=(),
                src_port=(), dest_port=(), src_iface="", src_set="", dest_set="", sticky=False,
                timeout=600, logging=False, target_kind="policy", target="p", chain="",
                section="rule r")
    base.update(changes)
    return Rule(**base)


def test_marks_print_as_fixed_width_hex_and_the_inverse_keeps_every_other_bit():
    assert nftrules.hexmark(0x100) == "0x00000100"
    assert nftrules.inverse(0x3F00) == "0xffffc0ff"
    for mask in (0x3F00, 0xFF00, 0x700, 0xF0000000):
        assert int(nftrules.inverse(mask), 16) | mask == 0xFFFFFFFF
        assert int(nftrules.inverse(mask), 16) & mask == 0


@pytest.mark.parametrize("text", ['a"b', "a\nb", "a\\b", "a{b}c", "a;b", "x" * 300, "ü ünïcode", "$(x)`y`",
                                  "\x00\x7f", 'rule "x" } ; flush ruleset'])
def test_a_comment_can_never_leave_its_quotes(text):
    quoted = nftrules.nft_comment(text)
    assert quoted.startswith('"') and quoted.endswith('"')
    inner = quoted[1:-1]
    # nothing that ends the string or the line; the rest is inert inside quotes
    assert not re.search(r'["\\\n\r]', inner) and inner.isascii() and inner.isprintable()
    assert len(quoted.encode()) <= 128


def test_a_harmless_comment_is_kept_as_written():
    assert nftrules.nft_comment("policy p ipv4: metric 1: wan 75.0%, wanb 25.0%") == \
        '"policy p ipv4: metric 1: wan 75.0%, wanb 25.0%"'


def test_chain_and_set_names_follow_one_scheme():
    assert nftrules.mark_chain("wan") == "mark_if_wan"
    assert [nftrules.mark_chain(k) for k in ("default", "blackhole", "unreachable")] == \
        ["mark_default", "mark_blackhole", "mark_unreachable"]
    assert nftrules.sticky_set("https", "wanb") == "sticky_https_wanb"
    assert nftrules.stick_chain("https", "wanb") == "stick_https_wanb"
    assert (nftrules.user_set("streaming", "ipv4"), nftrules.user_set("streaming", "ipv6")) == \
        ("streaming_v4", "streaming_v6")


MATCH_CASES = [
    ({}, "ipv4", "meta nfproto ipv4"),
    ({"proto": "icmp", "families": ("ipv4",)}, "ipv4", "meta nfproto ipv4 meta l4proto icmp"),
    ({"proto": "47"}, "ipv6", "meta nfproto ipv6 meta l4proto 47"),
    ({"proto": "tcp", "dest_port": ((443, 443),)}, "ipv4", "meta nfproto ipv4 tcp dport 443"),
    ({"proto": "udp", "src_port": ((1000, 2000),), "dest_port": ((53, 53), (853, 853))}, "ipv6",
     "meta nfproto ipv6 udp sport 1000-2000 udp dport { 53, 853 }"),
    # proto all with ports: tcp and udp (mwan3 refuses ports without tcp/udp)
    ({"dest_port": ((443, 443),)}, "ipv4", "meta nfproto ipv4 meta l4proto { tcp, udp } th dport 443"),
    ({"proto": "sctp", "dest_port": ((9, 9),)}, "ipv4", "meta nfproto ipv4 sctp dport 9"),
    ({"proto": "udplite", "dest_port": ((9, 9),)}, "ipv4",
     "meta nfproto ipv4 meta l4proto udplite th dport 9"),
    ({"src_iface": "br-lan"}, "ipv4", 'meta nfproto ipv4 iifname "br-lan"'),
    ({"src": (Match("ipv4", "192.168.1.0/24", ""), Match("ipv6", "2001:db8::/64", ""))}, "ipv4",
     "meta nfproto ipv4 ip saddr 192.168.1.0/24"),
    ({"src": (Match("ipv4", "192.168.1.0/24", ""), Match("ipv6", "2001:db8::/64", ""))}, "ipv6",
     "meta nfproto ipv6 ip6 saddr 2001:db8::/64"),
    ({"dest": (Match("ipv4", "192.0.2.1", ""), Match("ipv4", "198.51.100.0/24", ""))}, "ipv4",
     "meta nfproto ipv4 ip daddr { 192.0.2.1, 198.51.100.0/24 }"),
    ({"src": (Match("ipv4", "10.0.0.7", "255.0.0.255"),)}, "ipv4",
     "meta nfproto ipv4 ip saddr & 255.0.0.255 == 10.0.0.7"),
    ({"src_set": "lan_hosts", "dest_set": "streaming"}, "ipv6",
     "meta nfproto ipv6 ip6 saddr @lan_hosts_v6 ip6 daddr @streaming_v6"),
]


@pytest.mark.parametrize("changes, family, expected", MATCH_CASES)
def test_rule_matches(changes, family, expected):
    assert nftrules.rule_matches(rule(**changes), family) == expected


def test_rule_targets():
    assert nftrules.rule_target(rule()) == "policy_p"
    assert nftrules.rule_target(rule(sticky=True, chain="rule_r")) == "rule_r"
    assert nftrules.rule_target(rule(target_kind="special", target="blackhole")) == "mark_blackhole"


def _members():
    return [PolicyMember("a", "wan", "ipv4", 1, 3), PolicyMember("b", "wanb", "ipv4", 1, 1),
            PolicyMember("c", "wanc", "ipv4", 2, 1), PolicyMember("d", "wan6", "ipv6", 1, 1)]


@pytest.mark.parametrize("mode", ["balanced", "round-robin", "weighted", "random", "hash"])
def test_a_spread_verdict_maps_every_selector_value_exactly_once(mode):
    ms = _members()
    decision = decide(mode, "unreachable", ms, frozenset({"a", "b", "c"}), "ipv4")
    verdict = nftrules.decision_verdict(decision, policy_seed("p"))
    head, _, body = verdict.partition(" vmap { ")
    if mode == "hash":
        assert head == f"jhash ip saddr mod {decision.modulus} seed {nftrules.hexmark(policy_seed('p'))}"
    else:
        assert head == f"{decision.selector} mod {decision.modulus}"
    covered = []
    for entry in body.rstrip(" }").split(", "):
        values, _, target = entry.partition(" : goto ")
        lo, _, hi = values.partition("-")
        covered += range(int(lo), int(hi or lo) + 1)
        assert target in ("mark_if_wan", "mark_if_wanb")  # never the metric-2 member
    assert covered == list(range(decision.modulus))


def test_single_and_last_resort_verdicts_and_comments():
    ms = _members()
    single = decide("balanced", "blackhole", ms, frozenset({"b", "d"}), "ipv4")
    assert nftrules.decision_verdict(single, 1) == "goto mark_if_wanb"
    assert nftrules.decision_comment("p", single) == "policy p ipv4: metric 1: wanb 100.0%"
    nobody = decide("balanced", "blackhole", ms, frozenset({"a"}), "ipv6")
    assert nftrules.decision_verdict(nobody, 1) == "goto mark_blackhole"
    assert nftrules.decision_comment("p", nobody) == \
        "policy p ipv6: no member alive, last_resort blackhole"
    v6 = decide("hash", "default", ms, frozenset({"d"}), "ipv6")
    assert nftrules.decision_verdict(v6, 7) == "goto mark_if_wan6"


@pytest.mark.lab
def test_the_kernel_accepts_every_match_form_and_a_hostile_comment():
    """One rule per parametrized match above, in a table loaded in a throw-away namespace."""
    hostile = 'case\nx"}; flush ruleset'
    lines = [f"\t\t{nftrules.rule_matches(rule(**changes), family)} counter "
             f"comment {nftrules.nft_comment(hostile)}" for changes, family, _ in MATCH_CASES]
    table = ("table inet nftrules_test {\n"
             "\tset lan_hosts_v6 {\n\t\ttype ipv6_addr\n\t}\n"
             "\tset streaming_v6 {\n\t\ttype ipv6_addr\n\t}\n"
             "\tchain c {\n" + "\n".join(lines) + "\n\t}\n}\n")
    proc = subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"], input=table, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + table


def test_addresses_that_mix_netmasks_and_prefixes_match_any_of_them():
    """One line per alternative: `ip daddr & m == a` cannot share a set with prefixes, and
    ANDing them would demand that a packet match all of them."""
    r = rule(dest=(Match("ipv4", "10.1.2.3", ""), Match("ipv4", "10.0.0.7", "255.0.0.255"),
                   Match("ipv4", "203.0.113.9", "")),
             src=(Match("ipv4", "10.0.0.1", "255.0.0.255"), Match("ipv4", "10.0.0.2", "255.0.0.255")))
    assert nftrules.rule_match_lines(r, "ipv4") == [
        f"meta nfproto ipv4 ip saddr & 255.0.0.255 == 10.0.0.{s} {d}"
        for s in (1, 2) for d in ("ip daddr { 10.1.2.3, 203.0.113.9 }", "ip daddr & 255.0.0.255 == 10.0.0.7")]
    assert nftrules.rule_match_lines(rule(), "ipv6") == ["meta nfproto ipv6"]
