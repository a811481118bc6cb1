"""The agent owns the truth about its kernel state: whatever another program does to NetPath's
table, ip rules and WAN tables is put right within a second, counted and reported; and a
restart after `kill -9` makes the kernel agree with the links at once.

Each test breaks something from outside the agent (as a careless admin, a firewall restart or
a PPPoE reconnect would), then proves the repair with fresh connections from the LAN client:
they spread over both uplinks again (balanced, numgen inc: strictly alternating). The time
from the fault to balanced traffic is printed (`-s`); bench/bench_faults.py measures it.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from lab import netlab
from lab.agentlab import NETPATH, agent_config, agents, compile_bundle, lab2  # noqa: F401 (fixtures)
from lab.agentlab import is_balanced as balanced, spread as uplinks, wait_balanced

pytestmark = pytest.mark.lab

BOUND = 3.0  # seconds: the upper bound for a repair (typical: under 1 s)
TABLE = "netpath"


@pytest.fixture(scope="module")
def bundle(lab2, tmp_path_factory):
    """Two equal uplinks in one balanced policy, probed every second; a set `streaming`
    that another program (dnsmasq's nftset=) would fill."""
    config = agent_config(mode="balanced", metrics={1: 1, 2: 1})
    config += '[[rules]]\nname = "streaming"\nipset = "streaming"\npolicy = "p"\n'
    return compile_bundle(tmp_path_factory.mktemp("drift"), config)


def kernel(agent) -> dict:
    return agent.request("status")["kernel"]


def all_online(agent) -> bool:
    reply = agent.request("status")
    return [i["state"] for i in reply["interfaces"]] == ["online", "online"] and \
        [p["state"] for p in reply["policies"]] == ["11"]


def start_balanced(lab, agents, bundle):
    agent = agents(bundle)
    assert all_online(agent)
    assert balanced(uplinks(lab))
    before = kernel(agent)
    assert before["last_drift"] is None and before["repairs"] == {} and before["last_repaired"] == []
    return agent


def wait_repaired(agent, obj: str, since: float, timeout: float = BOUND + 2) -> dict:
    """The status' kernel section once it counts a repair of `obj` made after `since` (time.time())."""
    deadline = time.monotonic() + timeout
    report = {}
    while time.monotonic() < deadline:
        report = kernel(agent)
        if report["repairs"].get(obj, 0) >= 1 and (report["last_drift"] or 0) >= since:
            return report
        time.sleep(0.05)
    raise AssertionError(f"no {obj} repair reported within {timeout} s: {report}\n{agent.log()}")


def run(lab, *argv, check=True):
    return lab.run("router", list(argv), check=check)


def table_chains(lab) -> set:
    listing = json.loads(run(lab, "nft", "-j", "-t", "list", "table", "inet", TABLE).stdout)
    return {item["chain"]["name"] for item in listing["nftables"] if "chain" in item}


def netpath_rules(lab) -> list:
    return sorted(line.split(":", 1)[1].strip() for line in run(lab, "ip", "rule", "show").stdout.splitlines()
                  if "proto 93" in line)


def wan_table(lab, table: int) -> str:
    return run(lab, "ip", "route", "show", "table", str(table)).stdout


def prove_repair(lab, agent, fault, obj: str, intact) -> None:
    """Run `fault`, then: balanced traffic again within the bound, the repair of `obj` counted
    and logged, `intact()` (the object as before) true, both uplinks still online."""
    faulted_at, since = time.time(), time.monotonic()
    fault()
    took = wait_balanced(lab, since)
    report = wait_repaired(agent, obj, faulted_at)
    print(f"\n{fault.__name__}: balanced again after {took:.2f} s; kernel report {report}")
    assert took <= BOUND + 1.5  # the bound plus the time of the first connections on a loaded host
    assert intact()
    assert obj in report["last_repaired"]
    assert "kernel drift" in agent.log()
    assert all_online(agent)
    time.sleep(1.5)  # no repair loop on the agent's own writes
    assert kernel(agent)["repairs"] == report["repairs"]
    # the shell command and the Prometheus counter tell the same
    status = run(lab, NETPATH, "status", "--socket", agent.socket).stdout.splitlines()
    assert status[-1].startswith("kernel: changed outside NetPath ") and \
        status[-1].endswith(f", repaired ({obj}); repairs so far: {obj} 1"), status[-1]
    text = agent.request("metrics", format="prometheus")["text"]
    assert f'netpath_kernel_repairs_total{{object="{obj}"}} 1' in text.splitlines()
    assert sum(line.startswith("netpath_kernel_repairs_total{") for line in text.splitlines()) == 5


# --- nftables ---------------------------------------------------------------------------------


def test_nft_flush_ruleset_is_repaired(lab2, agents, bundle):
    agent = start_balanced(lab2, agents, bundle)
    chains = table_chains(lab2)
    bypass = run(lab2, "nft", "list", "set", "inet", TABLE, "bypass_v4").stdout
    assert "100.64.1.0-100.64.2.255" in bypass  # both WANs' connected networks, merged by the kernel

    def nft_flush_ruleset():
        run(lab2, "nft", "flush", "ruleset")

    prove_repair(lab2, agent, nft_flush_ruleset, "table", lambda: table_chains(lab2) == chains)
    # after a full table loss the agent refills what it owns: the WAN's connected networks
    assert run(lab2, "nft", "list", "set", "inet", TABLE, "bypass_v4").stdout == bypass


def test_deleted_table_is_repaired(lab2, agents, bundle):
    agent = start_balanced(lab2, agents, bundle)
    chains = table_chains(lab2)

    def nft_delete_table():
        run(lab2, "nft", "delete", "table", "inet", TABLE)

    prove_repair(lab2, agent, nft_delete_table, "table", lambda: table_chains(lab2) == chains)


def test_a_chain_changed_by_hand_is_repaired(lab2, agents, bundle):
    agent = start_balanced(lab2, agents, bundle)
    policy = run(lab2, "nft", "list", "chain", "inet", TABLE, "policy_p").stdout
    run(lab2, "nft", "add", "element", "inet", TABLE, "streaming_v4", "{ 203.0.113.7 }")

    def nft_flush_policy_chain():
        run(lab2, "nft", "flush", "chain", "inet", TABLE, "policy_p")

    prove_repair(lab2, agent, nft_flush_policy_chain, "chain",
                 lambda: run(lab2, "nft", "list", "chain", "inet", TABLE, "policy_p").stdout == policy)
    assert "203.0.113.7" in run(lab2, "nft", "list", "set", "inet", TABLE, "streaming_v4").stdout


def test_a_set_changed_by_hand_is_repaired_and_other_sets_keep_their_contents(lab2, agents, bundle):
    agent = start_balanced(lab2, agents, bundle)
    bypass = run(lab2, "nft", "list", "set", "inet", TABLE, "bypass_v4").stdout
    assert "100.64.1.0-100.64.2.255" in bypass
    # an entry someone else put in a set of NetPath's (a dnsmasq nftset=, a sticky entry) stays
    run(lab2, "nft", "add", "element", "inet", TABLE, "streaming_v4", "{ 203.0.113.7 }")

    def nft_flush_bypass_set():
        run(lab2, "nft", "flush", "set", "inet", TABLE, "bypass_v4")

    prove_repair(lab2, agent, nft_flush_bypass_set, "set",
                 lambda: run(lab2, "nft", "list", "set", "inet", TABLE, "bypass_v4").stdout == bypass)
    assert "203.0.113.7" in run(lab2, "nft", "list", "set", "inet", TABLE, "streaming_v4").stdout


def test_a_refused_state_swap_reapplies_the_whole_bundle(lab2, agents, bundle):
    """The table goes while a WAN loses its carrier: the state transaction finds no table; the
    agent loads the whole bundle with the new state instead of retrying the same swap."""
    agent = start_balanced(lab2, agents, bundle)
    run(lab2, "nft", "delete", "table", "inet", TABLE)
    lab2.carrier(1, False)
    try:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and uplinks(lab2, 4) != {"wan2": 4}:
            pass
        assert uplinks(lab2, 4) == {"wan2": 4}
        reply = agent.request("status")
        assert [i["state"] for i in reply["interfaces"]] == ["offline", "online"]
        assert reply["policies"][0]["state"] == "01"
        assert reply["kernel"]["repairs"].get("table", 0) >= 1
    finally:
        lab2.carrier(1, True)
    agent.wait_state("wan1", "online", timeout=5)
    wait_balanced(lab2, time.monotonic())


# --- policy routing ---------------------------------------------------------------------------


ROUTING_FAULTS = {  # fault -> what it breaks, and how to read that object back
    "ip rule flush protocol 93": ("rule", netpath_rules),
    "ip rule flush": ("rule", netpath_rules),
    "ip rule del pref 2001": ("rule", netpath_rules),  # wan1's fwmark rule
    "ip route flush table 1001": ("route", lambda lab: wan_table(lab, 1001)),
    "ip route del default table 1002": ("route", lambda lab: wan_table(lab, 1002)),
}


@pytest.mark.parametrize("command", ROUTING_FAULTS)
def test_policy_routing_changed_by_hand_is_repaired(lab2, agents, bundle, command):
    obj, read = ROUTING_FAULTS[command]
    agent = start_balanced(lab2, agents, bundle)
    before = read(lab2)
    assert before and (obj == "rule" or "default via" in before)

    def fault():
        run(lab2, *command.split())

    fault.__name__ = command
    try:
        prove_repair(lab2, agent, fault, obj, lambda: read(lab2) == before)
    finally:  # `ip rule flush` takes the system's own rules too: not NetPath's to restore
        for pref, table in ((32766, "main"), (32767, "default")):
            for family in ("-4", "-6"):
                if f"{pref}:" not in run(lab2, "ip", family, "rule", "show").stdout:
                    run(lab2, "ip", family, "rule", "add", "pref", str(pref), "lookup", table)


def test_a_wan_device_recreated_within_the_settle_window_gets_its_table_back(lab2, agents, bundle):
    """A PPPoE reconnect: the device goes and comes back with the same name and addresses
    before the agent re-reads it; the kernel dropped the WAN table's route with the old device."""
    agent = start_balanced(lab2, agents, bundle)
    table = wan_table(lab2, 1001)
    faulted_at, since = time.time(), time.monotonic()
    lab2.recreate_wan(1)
    took = wait_balanced(lab2, since)
    print(f"\nwan1 recreated: balanced again after {took:.2f} s")
    assert took <= BOUND + 1.5
    assert wan_table(lab2, 1001) == table
    agent.wait_state("wan1", "online", timeout=5)
    assert all_online(agent)
    assert agent.interface("wan1")["link"] == "up"
    assert kernel(agent)["last_drift"] is None or kernel(agent)["last_drift"] >= faulted_at


# --- restart after a crash --------------------------------------------------------------------


def kernel_mask(lab, bundle) -> str:
    """The alive-mask of policy p's variant loaded in the router's kernel."""
    from netpath.agent import bundle as bundle_mod, swap

    listing = json.loads(run(lab, "nft", "-j", "list", "table", "inet", TABLE).stdout)
    masks = swap.loaded_variants(bundle_mod.read(bundle), listing)["p"]
    assert len(masks) == 1, masks
    return next(iter(masks))


def test_a_restart_after_kill_9_drops_an_uplink_whose_carrier_went_meanwhile(lab2, agents, bundle):
    agent = start_balanced(lab2, agents, bundle)
    agent.stop(signal.SIGKILL)
    lab2.carrier(1, False)  # while no agent runs
    try:
        restarted = agents(bundle)
        # at once, before any probe round: the kernel, the policies reply and the traffic agree
        reply = restarted.request("status")
        assert [(i["state"], i["link"]) for i in reply["interfaces"]] == [("offline", "down"), ("online", "up")]
        assert reply["policies"][0]["state"] == "01"
        assert kernel_mask(lab2, bundle) == "01"
        assert uplinks(lab2, 4) == {"wan2": 4}
    finally:
        lab2.carrier(1, True)
    restarted.wait_state("wan1", "online", timeout=5)
    wait_balanced(lab2, time.monotonic())
    assert restarted.request("policies")["policies"][0]["state"] == kernel_mask(lab2, bundle) == "11"


def test_a_restart_after_kill_9_follows_its_first_probe_rounds(lab2, agents, bundle):
    """Health changed while no agent ran: the restarted agent starts from the kernel's
    variants (no flap) and the probes then take the broken uplink out."""
    agent = start_balanced(lab2, agents, bundle)
    agent.stop(signal.SIGKILL)
    lab2.isp_blackhole(2)
    try:
        restarted = agents(bundle)
        assert restarted.request("policies")["policies"][0]["state"] == kernel_mask(lab2, bundle) == "11"
        restarted.wait_state("wan2", "offline", timeout=10)
        assert restarted.request("policies")["policies"][0]["state"] == kernel_mask(lab2, bundle) == "10"
        assert uplinks(lab2, 4) == {"wan1": 4}
        assert [(h["from"], h["to"]) for h in restarted.history() if h["interface"] == "wan2"] == \
            [("online", "disconnecting"), ("disconnecting", "offline")]
    finally:
        lab2.isp_blackhole(2, on=False)
    restarted.wait_state("wan2", "online", timeout=10)
    wait_balanced(lab2, time.monotonic())


def test_traffic_alone_is_no_drift(lab2, agents, bundle):
    """Counters (the rules' named counters, packet counts) and the sets others fill change with
    traffic, not by another program: a periodic comparison after traffic repairs nothing."""
    from netpath.agent import daemon

    agent = start_balanced(lab2, agents, bundle)
    run(lab2, "nft", "add", "element", "inet", TABLE, "streaming_v4", "{ 203.0.113.9 }")
    uplinks(lab2, 20)
    time.sleep(daemon.DRIFT_INTERVAL + 1.5)  # a patrol ran after the traffic
    assert "packets 0 " not in run(lab2, "nft", "list", "counter", "inet", TABLE, "rule_everything").stdout
    assert kernel(agent)["repairs"] == {} and "kernel drift" not in agent.log()
    assert balanced(uplinks(lab2))
