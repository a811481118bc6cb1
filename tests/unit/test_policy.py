"""How a policy spreads flows: shares follow weights, tiers follow metrics, hash mode moves
only a dead member's sources, and our jhash is the kernel's."""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import sys
import textwrap

import pytest

from netpath.agent.policy import (HASH_MIN_SLOTS, MODES, PolicyMember, alive_from_mask, alive_masks,
                                  decide, hash_slot_count, hash_value, jhash, mask_of, policy_seed)


def members(*spec, family="ipv4"):
    """members((metric, weight), ...) named m0, m1, ... on interfaces i0, i1, ..."""
    return [PolicyMember(f"m{i}", f"i{i}", family, metric, weight) for i, (metric, weight) in enumerate(spec)]


def everyone(ms):
    return frozenset(m.name for m in ms)


def slot_owners(decision, slots: int = 0) -> list:
    """Owner of each selector value; a "single" decision owns all `slots` values."""
    if decision.kind == "single":
        return [decision.interface] * slots
    return [decision.interface_for(v) for v in range(decision.modulus)]


WEIGHT_SETS = [(1, 1), (3, 1), (5, 3, 2), (1, 2, 3, 4), (7, 7, 1), (1000, 1), (13, 17, 19, 23, 29)]


@pytest.mark.parametrize("mode", ["balanced", "weighted"])
@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_balanced_and_weighted_shares_equal_the_weight_ratios(mode, weights):
    ms = members(*[(1, w) for w in weights])
    d = decide(mode, "unreachable", ms, everyone(ms), "ipv4")
    assert d.kind == "spread" and d.modulus == sum(weights)
    assert d.selector == ("numgen inc" if mode == "balanced" else "numgen random")
    counts = {name: slot_owners(d).count(name) for name in d.tier}
    assert counts == {m.interface: m.weight for m in ms}


@pytest.mark.parametrize("mode", ["round-robin", "random"])
@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_round_robin_and_random_ignore_weights(mode, weights):
    ms = members(*[(1, w) for w in weights])
    d = decide(mode, "unreachable", ms, everyone(ms), "ipv4")
    assert d.modulus == len(weights)
    assert sorted(slot_owners(d)) == sorted(m.interface for m in ms)


@pytest.mark.parametrize("mode", MODES)
def test_only_the_lowest_alive_metric_tier_is_used(mode):
    ms = members((2, 1), (1, 3), (1, 1), (3, 5))
    all_up = decide(mode, "unreachable", ms, everyone(ms), "ipv4")
    assert all_up.tier_metric == 1 and set(all_up.tier) == {"i1", "i2"}
    without_tier1 = decide(mode, "unreachable", ms, frozenset({"m0", "m3"}), "ipv4")
    assert without_tier1.tier == ("i0",) and without_tier1.kind == "single"
    only_last = decide(mode, "blackhole", ms, frozenset({"m3"}), "ipv4")
    assert only_last.interface == "i3"
    nobody = decide(mode, "blackhole", ms, frozenset(), "ipv4")
    assert (nobody.kind, nobody.last_resort, nobody.shares()) == ("last_resort", "blackhole", {})


def test_failover_takes_the_first_member_of_the_lowest_metric_in_list_order():
    ms = members((2, 9), (1, 1), (1, 5))
    d = decide("failover", "unreachable", ms, everyone(ms), "ipv4")
    assert (d.kind, d.interface, d.shares()) == ("single", "i1", {"i1": 100.0})
    d = decide("failover", "unreachable", ms, frozenset({"m0", "m2"}), "ipv4")
    assert d.interface == "i2"


def test_each_family_is_decided_over_its_own_members():
    ms = members((1, 1), (1, 1)) + [PolicyMember("v6", "i6", "ipv6", 1, 1)]
    v4 = decide("balanced", "default", ms, everyone(ms), "ipv4")
    v6 = decide("balanced", "default", ms, everyone(ms), "ipv6")
    assert set(v4.tier) == {"i0", "i1"} and v6.interface == "i6"
    assert decide("balanced", "default", ms, frozenset({"m0"}), "ipv6").kind == "last_resort"


@pytest.mark.parametrize("weights", WEIGHT_SETS + [(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)])
def test_hash_mode_moves_only_the_slots_of_a_dead_member(weights):
    ms = members(*[(1, w) for w in weights])
    full = slot_owners(decide("hash", "unreachable", ms, everyone(ms), "ipv4"))
    assert len(full) == hash_slot_count(list(weights))
    for dead in ms:
        alive = everyone(ms) - {dead.name}
        after = slot_owners(decide("hash", "unreachable", ms, alive, "ipv4"), len(full))
        assert len(after) == len(full)  # same modulus: surviving sources hash to the same slot
        for before_owner, after_owner in zip(full, after):
            if before_owner != dead.interface:
                assert after_owner == before_owner
            else:
                assert after_owner != dead.interface
        # and the member that comes back gets exactly its old slots again
        assert slot_owners(decide("hash", "unreachable", ms, everyone(ms), "ipv4")) == full


def test_hash_mode_with_two_dead_members_still_keeps_the_survivors_slots():
    ms = members((1, 3), (1, 2), (1, 1), (1, 1))
    full = slot_owners(decide("hash", "unreachable", ms, everyone(ms), "ipv4"))
    after = slot_owners(decide("hash", "unreachable", ms, frozenset({"m0", "m3"}), "ipv4"))
    for before_owner, after_owner in zip(full, after):
        assert after_owner in ("i0", "i3")
        if before_owner in ("i0", "i3"):
            assert after_owner == before_owner


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_hash_slots_follow_the_weights(weights):
    ms = members(*[(1, w) for w in weights])
    owners = slot_owners(decide("hash", "unreachable", ms, everyone(ms), "ipv4"))
    total = sum(weights)
    for m in ms:
        assert owners.count(m.interface) == len(owners) * m.weight // total


def test_hash_slot_count_is_a_multiple_of_the_weight_sum_and_at_least_the_minimum():
    for weights in WEIGHT_SETS + [(1,), (64,), (65,), (100, 100)]:
        n = hash_slot_count(list(weights))
        assert n % sum(weights) == 0 and n >= min(HASH_MIN_SLOTS, n)
        assert n >= HASH_MIN_SLOTS or sum(weights) >= HASH_MIN_SLOTS


def test_alive_masks_cover_every_subset_once():
    ms = members((1, 1), (1, 1), (2, 1))
    masks = alive_masks(len(ms))
    assert len(masks) == len(set(masks)) == 8
    subsets = {alive_from_mask(ms, mask) for mask in masks}
    assert len(subsets) == 8
    for mask in masks:
        assert mask_of(ms, alive_from_mask(ms, mask)) == mask
    assert alive_from_mask(ms, "100") == frozenset({"m0"})  # character i is member i


def test_policy_seeds_are_fixed_and_differ_between_policies():
    assert policy_seed("balanced") == policy_seed("balanced")
    seeds = {policy_seed(name) for name in ("a", "b", "balanced", "by_source", "p_hash")}
    assert len(seeds) == 5 and all(0 <= s < 2 ** 32 for s in seeds)


# --- jhash -----------------------------------------------------------------------------------

# Bob Jenkins' lookup3.c (driver5, hashlittle), which the kernel's jhash() implements.
LOOKUP3_VECTORS = [
    (b"", 0, 0xDEADBEEF),
    (b"", 0xDEADBEEF, 0xBD5B7DDE),
    (b"Four score and seven years ago", 0, 0x17770551),
    (b"Four score and seven years ago", 1, 0xCD628161),
]


@pytest.mark.parametrize("data, seed, expected", LOOKUP3_VECTORS)
def test_jhash_matches_the_lookup3_reference_vectors(data, seed, expected):
    assert jhash(data, seed) == expected


KERNEL_JHASH = textwrap.dedent('''
    import json, socket, subprocess, sys
    v4_mod, v4_seed, v6_mod, v6_seed, count = (int(x, 0) for x in sys.argv[1:6])

    def run(*argv, stdin=None):
        subprocess.run(list(argv), check=True, timeout=20, input=stdin, text=True,
                       capture_output=True)

    run("ip", "link", "set", "lo", "up")
    run("ip", "route", "add", "local", "192.0.2.0/24", "dev", "lo")
    run("ip", "-6", "route", "add", "local", "2001:db8:1::/64", "dev", "lo")
    run("nft", "-f", "-", stdin=f"""table inet jh {{
      set s4 {{ type ipv4_addr . mark; flags dynamic; }}
      set s6 {{ type ipv6_addr . mark; flags dynamic; }}
      chain out {{
        type filter hook output priority 0; policy accept;
        udp dport 9 meta nfproto ipv4 meta mark set jhash ip saddr mod {v4_mod} seed {v4_seed} add @s4 {{ ip saddr . meta mark }}
        udp dport 9 meta nfproto ipv6 meta mark set jhash ip6 saddr mod {v6_mod} seed {v6_seed} add @s6 {{ ip6 saddr . meta mark }}
      }}
    }}
    """)
    for i in range(1, count + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"192.0.2.{i}", 0))
        s.sendto(b"x", ("192.0.2.254", 9))
        s.close()
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, 78, 1)  # IPV6_FREEBIND
        s.bind((f"2001:db8:1::{i:x}", 0))
        s.sendto(b"x", ("2001:db8:1::ffff", 9))
        s.close()
    out = {}
    for name in ("s4", "s6"):
        listing = subprocess.run(["nft", "-j", "list", "set", "inet", "jh", name], capture_output=True,
                                 text=True, timeout=20, check=True).stdout
        sets = [x["set"] for x in json.loads(listing)["nftables"] if "set" in x]
        out[name] = {e["concat"][0]: e["concat"][1] for e in sets[0].get("elem", [])}
    print(json.dumps(out))
''')


@pytest.mark.lab
@pytest.mark.parametrize("v4_mod, v6_mod, policy", [(66, 65, "by_source"), (1000, 7, "p_hash"),
                                                    (64, 1 << 20, "x")])
def test_hash_value_matches_the_kernels_jhash(v4_mod, v6_mod, policy):
    """The kernel computes `jhash ip saddr mod M seed S` for packets from many sources in a
    throw-away namespace (all traffic on its loopback); it must equal hash_value()."""
    seed = policy_seed(policy)
    count = 120
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", KERNEL_JHASH, str(v4_mod), hex(seed),
                           str(v6_mod), hex(seed ^ 0x5A5A5A5A), str(count)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    kernel = json.loads(proc.stdout)
    assert len(kernel["s4"]) == len(kernel["s6"]) == count
    for address, value in kernel["s4"].items():
        assert hash_value(ipaddress.ip_address(address).packed, seed, v4_mod) == value, address
    for address, value in kernel["s6"].items():
        assert hash_value(ipaddress.ip_address(address).packed, seed ^ 0x5A5A5A5A, v6_mod) == value, address
    # a spread that is not degenerate: the test would notice a constant
    assert len(set(kernel["s4"].values())) > 10


def test_mode_list_is_what_the_schema_offers():
    assert set(MODES) == {"balanced", "failover", "round-robin", "hash", "weighted", "random"}
    for mode, (a, b) in itertools.product(MODES, [(1, 1)]):
        ms = members((1, a), (1, b))
        assert decide(mode, "unreachable", ms, everyone(ms), "ipv4").kind in ("single", "spread")
