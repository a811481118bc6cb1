"""agent.drift: reading nftables' change notifications, comparing table structures and the
agent's own sets, and the record `status` reports."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

from netpath.agent import drift, metrics
from netpath.agent.client import kernel_line


def nla(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def nft_message(msg: int, *attrs: bytes) -> bytes:
    body = struct.pack("=BBH", 1, 0, 0) + b"".join(attrs)  # struct nfgenmsg
    return struct.pack("=IHHII", 16 + len(body), (drift.NFNL_SUBSYS_NFTABLES << 8) | msg, 0, 0, 0) + body


NEWRULE, DELTABLE, NEWSETELEM, NEWGEN = 6, 2, 12, 15


def test_changes_to_netpaths_table_concern_it_and_others_do_not():
    ours, other = nla(1, b"netpath\0"), nla(1, b"fw4\0")
    assert drift.concerns(nft_message(NEWRULE, ours), "netpath", {"bypass_v4"})
    assert drift.concerns(nft_message(DELTABLE, ours), "netpath", set())
    assert not drift.concerns(nft_message(NEWRULE, other), "netpath", set())
    # the end of every transaction, of any table, names no table: not a change of ours
    assert not drift.concerns(nft_message(NEWGEN, nla(2, struct.pack(">I", 7))), "netpath", set())
    # elements: only those of the agent's own sets (dnsmasq fills the others all day)
    assert drift.concerns(nft_message(NEWSETELEM, ours, nla(2, b"bypass_v4\0")), "netpath", {"bypass_v4"})
    assert not drift.concerns(nft_message(NEWSETELEM, ours, nla(2, b"streaming_v4\0")), "netpath", {"bypass_v4"})
    # one datagram, many messages: any one of ours is enough
    both = nft_message(NEWRULE, other) + nft_message(NEWRULE, ours)
    assert drift.concerns(both, "netpath", set())


def listing(*items) -> dict:
    return {"nftables": [{"metainfo": {"version": "1.0.6"}},
                         {"table": {"family": "inet", "name": "netpath", "handle": 3}}, *items]}


CHAIN = {"chain": {"family": "inet", "table": "netpath", "name": "policy_p", "handle": 5}}
RULE = {"rule": {"family": "inet", "table": "netpath", "chain": "policy_p", "handle": 9,
                 "expr": [{"goto": {"target": "mark_if_wan1"}}], "comment": "policy p ipv4"}}
SET = {"set": {"family": "inet", "table": "netpath", "name": "bypass_v4", "type": "ipv4_addr", "handle": 2,
               "flags": ["interval"]}}


def test_structure_ignores_handles_and_elements_and_names_what_differs():
    expected = drift.structure(listing(SET, CHAIN, RULE), "netpath")
    renumbered = {"rule": {**RULE["rule"], "handle": 44}}
    filled = {"set": {**SET["set"], "elem": ["100.64.1.0"]}}
    assert drift.differences(expected, drift.structure(listing(filled, CHAIN, renumbered), "netpath")) == []
    assert drift.differences(expected, drift.structure(listing(SET, CHAIN), "netpath")) == ["chain"]
    assert drift.differences(expected, drift.structure(listing(CHAIN, RULE), "netpath")) == ["set"]
    assert drift.differences(expected, drift.structure({}, "netpath")) == ["table"]
    assert drift.differences(expected, drift.structure(listing(SET, CHAIN, RULE), "other")) == ["table"]


def test_structure_ignores_the_values_of_named_counters():
    counter = {"counter": {"family": "inet", "table": "netpath", "name": "rule_all", "handle": 4,
                           "packets": 0, "bytes": 0}}
    expected = drift.structure(listing(CHAIN, RULE, counter), "netpath")
    counted = {"counter": {**counter["counter"], "packets": 12, "bytes": 720}}  # new flows: no drift
    assert drift.differences(expected, drift.structure(listing(CHAIN, RULE, counted), "netpath")) == []
    assert drift.differences(expected, drift.structure(listing(CHAIN, RULE), "netpath")) == ["counter"]


def test_intervals_compare_prefixes_with_the_ranges_the_kernel_merges_them_into():
    wanted = drift.intervals(["100.64.1.0/24", "100.64.2.0/24"])
    assert drift.intervals([{"range": ["100.64.1.0", "100.64.2.255"]}]) == wanted
    assert drift.intervals([{"prefix": {"addr": "100.64.1.0", "len": 24}},
                            {"prefix": {"addr": "100.64.2.0", "len": 24}}]) == wanted
    assert drift.intervals([{"prefix": {"addr": "100.64.1.0", "len": 24}}]) != wanted
    assert drift.intervals([]) == drift.intervals(None) == []
    assert drift.intervals(["2001:db8::/64", {"elem": {"val": "192.0.2.1", "timeout": 60}}]) == \
        [(4, 0xC0000201, 0xC0000201), (6, 0x20010DB8 << 96, (0x20010DB8 << 96) + 2 ** 64 - 1)]


def test_the_record_counts_repairs_and_the_cli_and_prometheus_show_them():
    record = drift.Record()
    assert record.report() == {"last_drift": None, "last_repaired": [], "repairs": {}, "repairs_total": 0,
                               "last_error": None}
    assert kernel_line(record.report(), 0) == "kernel: as loaded, no drift since the agent started"
    record.repaired(["table"])
    record.repaired(["rule", "route"])
    report = record.report()
    assert report["repairs"] == {"table": 1, "rule": 1, "route": 1} and report["repairs_total"] == 3
    assert kernel_line(report, report["last_drift"] + 5) == \
        "kernel: changed outside NetPath 5s ago, repaired (rule, route); repairs so far: table 1, rule 1, route 1"
    record.failed("nft refused")
    assert "NOT repaired: nft refused" in kernel_line(record.report(), record.last_drift)
    text = metrics.prometheus_text({"kernel_repairs": report["repairs"]})
    samples = [line for line in text.splitlines() if line.startswith("netpath_kernel_repairs_total")]
    assert samples == ['netpath_kernel_repairs_total{object="table"} 1', 'netpath_kernel_repairs_total{object="chain"} 0',
                       'netpath_kernel_repairs_total{object="set"} 0', 'netpath_kernel_repairs_total{object="rule"} 1',
                       'netpath_kernel_repairs_total{object="route"} 1']
    assert "# TYPE netpath_kernel_repairs_total counter" in text


def test_rule_events_carry_their_protocol():
    from netpath.agent import links

    header = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 0, 0, 0, 1, 0)  # struct fib_rule_hdr
    body = header + nla(links.FRA_PROTOCOL, b"\x5d")
    message = struct.pack("=IHHII", 16 + len(body), links.RTM_DELRULE, 0, 0, 0) + body
    assert links.decode(message) == [{"event": "RTM_DELRULE", "protocol": 93}]
    seen = []
    monitor = links.LinkMonitor((), None, None, None, lambda: seen.append("routing"), tables={1001}, protocol=93)
    for msg in ({"event": "RTM_DELRULE", "protocol": 93}, {"event": "RTM_NEWRULE", "protocol": 4},
                {"event": "RTM_DELROUTE", "table": 1001}, {"event": "RTM_DELROUTE", "table": 1005},
                {"event": "RTM_NEWRULE"}):
        monitor._dispatch(msg)
    assert seen == ["routing", "routing", "routing"]  # ours, our table's route, one without a protocol


WATCH = textwrap.dedent("""
    import asyncio, json, subprocess
    from netpath.agent.drift import NftWatch

    async def main():
        events = []
        watch = NftWatch("netpath", {"bypass_v4"}, lambda: events.append(1))
        watch.start()
        await asyncio.sleep(0.2)
        steps = ["add table inet netpath", "add chain inet netpath c", "add rule inet netpath c counter",
                 "add set inet netpath bypass_v4 { type ipv4_addr; }", "add set inet netpath other_v4 { type ipv4_addr; }",
                 "add element inet netpath other_v4 { 192.0.2.1 }", "add element inet netpath bypass_v4 { 192.0.2.1 }",
                 "add table inet fw4", "add chain inet fw4 c", "list table inet netpath",
                 "flush ruleset"]
        seen = {}
        for step in steps:
            before = len(events)
            subprocess.run(["nft", step], check=True, capture_output=True)
            await asyncio.sleep(0.1)
            seen[step] = len(events) > before
        await watch.stop()
        print(json.dumps(seen))

    asyncio.run(main())
""")


@pytest.mark.lab
def test_nft_watch_hears_changes_of_netpaths_table_only():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nft"):
        pytest.skip("needs root, unshare and nft")
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", WATCH], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"add table inet netpath": True, "add chain inet netpath c": True,
                    "add rule inet netpath c counter": True,
                    "add set inet netpath bypass_v4 { type ipv4_addr; }": True,
                    "add set inet netpath other_v4 { type ipv4_addr; }": True,
                    "add element inet netpath other_v4 { 192.0.2.1 }": False,  # others fill it (dnsmasq)
                    "add element inet netpath bypass_v4 { 192.0.2.1 }": True,  # the agent's own
                    "add table inet fw4": False, "add chain inet fw4 c": False,
                    "list table inet netpath": False, "flush ruleset": True}
