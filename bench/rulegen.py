"""Configs with many user rules, for the benchmarks (bench_rules.py, bench_compile.py).

    many_rules_config(1000) -> UCI text

The router is the lab's (tests/lab/netlab.py): uplinks `wan1`, `wan2`, LAN `lan0`. Rules
come in runs of one shape (destination prefixes, ports, protocols, source interfaces and
addresses, both families), as a user's generated lists do, with the runs shuffled so
shapes alternate. Seeded: the same arguments give the same text. None of the rules matches
traffic from the lab's client (192.168.10.2) to the internet's server (203.0.113.10) on
BENCH_PORT, so such a connection walks every rule and reaches `default_rule`, which sends
it through wan1 (policy `first`), the way the router's main table does without NetPath.
"""

from __future__ import annotations

import random

BENCH_PORT = 5001

HEADER = """\
config globals 'globals'
\toption enabled '1'

config interface 'wan1'
\toption ifname 'wan1'
\toption gateway '100.64.1.1'
\toption track_method 'none'

config interface 'wan2'
\toption ifname 'wan2'
\toption gateway '100.64.2.1'
\toption track_method 'none'

config member 'm1'
\toption interface 'wan1'
\toption weight '3'

config member 'm2'
\toption interface 'wan2'
\toption weight '2'

config policy 'balanced'
\tlist members 'm1'
\tlist members 'm2'

config policy 'first'
\toption mode 'failover'
\tlist members 'm1'
\tlist members 'm2'
"""


def _v4_net(rng) -> str:
    # 10.0.0.0/8 only: never the lab's LAN, WAN or internet addresses.
    length = rng.choice([16, 20, 24, 24, 24, 28, 32])
    value = (10 << 24) | rng.getrandbits(24)
    value &= (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
    text = f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"
    return text if length == 32 else f"{text}/{length}"


def _v6_net(rng) -> str:
    return f"2001:db8:{rng.randrange(0x1000, 0xffff):x}:{rng.randrange(0, 0xffff):x}::/64"


def _port(rng) -> str:
    lo = rng.randrange(1024, 60000)
    while lo <= BENCH_PORT <= lo + 100:
        lo = rng.randrange(1024, 60000)
    return str(lo) if rng.random() < 0.7 else f"{lo}-{lo + rng.randrange(1, 100)}"


def _shape(kind: str, rng) -> list:
    """Option lines of one rule of shape `kind`."""
    if kind == "dest4":
        return [f"\tlist dest_ip '{_v4_net(rng)}'" for _ in range(rng.choice([1, 1, 1, 2]))]
    if kind == "dest6":
        return [f"\tlist dest_ip '{_v6_net(rng)}'"]
    if kind == "port":
        return [f"\toption proto '{rng.choice(['tcp', 'udp'])}'", f"\toption dest_port '{_port(rng)}'"]
    if kind == "iface":
        return ["\toption src_iface 'lan0'", f"\tlist dest_ip '{_v4_net(rng)}'"]
    if kind == "src_port":
        return [f"\tlist src_ip '192.168.{rng.randrange(20, 250)}.0/24'", "\toption proto 'tcp'",
                f"\toption dest_port '{_port(rng)}'"]
    if kind == "dest_port6":
        return ["\toption family 'ipv6'", f"\tlist dest_ip '{_v6_net(rng)}'", "\toption proto 'udp'",
                f"\toption dest_port '{_port(rng)}'"]
    raise ValueError(kind)


SHAPES = ("dest4", "dest4", "dest6", "port", "iface", "src_port", "dest_port6")


def many_rules_config(count: int, seed: int = 14, run_length: tuple = (10, 60)) -> str:
    """UCI text: HEADER, `count` user rules in shuffled runs of one shape, then default_rule."""
    rng = random.Random(seed)
    rules = []
    while len(rules) < count:
        kind = rng.choice(SHAPES)
        for _ in range(min(rng.randint(*run_length), count - len(rules))):
            policy = rng.choice(["balanced", "first", "balanced", "default"])
            lines = [f"config rule 'r{len(rules)}'", *_shape(kind, rng), f"\toption policy '{policy}'"]
            rules.append("\n".join(lines))
    default = "config rule 'default_rule'\n\toption policy 'first'"
    return HEADER + "\n" + "\n\n".join(rules + [default]) + "\n"


def default_only_config() -> str:
    return HEADER + "\nconfig rule 'default_rule'\n\toption policy 'first'\n"
