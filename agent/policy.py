"""How a policy spreads new flows over its alive members.

Pure functions shared by the compiler (which renders one nft variant per alive-set),
by `netpath explain` and by the agent. Standard library only: this runs on routers.

Every policy picks among the alive members of its lowest metric tier (per address
family); the mode decides the spread inside that tier (DESIGN.md "Data plane").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("balanced", "failover", "round-robin", "hash", "weighted", "random")
LAST_RESORTS = ("unreachable", "blackhole", "default")

# nft expression that produces the selector for each mode.
SELECTOR = {
    "balanced": "numgen inc",
    "round-robin": "numgen inc",
    "weighted": "numgen random",
    "random": "numgen random",
    "hash": "jhash",
}

HASH_MIN_SLOTS = 64


@dataclass(frozen=True)
class Slot:
    """Selector values lo..hi (inclusive) send the flow to `interface`."""

    lo: int
    hi: int
    interface: str


@dataclass(frozen=True)
class Decision:
    """What one policy does for one address family in one alive-state."""

    family: str  # "ipv4" | "ipv6"
    kind: str  # "single" | "spread" | "last_resort"
    selector: str = ""  # "numgen inc", "numgen random", "jhash" (for kind "spread")
    modulus: int = 0
    slots: tuple = ()  # of Slot, sorted by lo
    interface: str = ""  # for kind "single"
    last_resort: str = ""  # for kind "last_resort"
    tier_metric: int = 0
    tier: tuple = ()  # interface names of the active tier, in member order

    def shares(self) -> dict:
        """Share of new flows per interface, in percent (hash: share of slots)."""
        if self.kind == "single":
            return {self.interface: 100.0}
        if self.kind != "spread":
            return {}
        counts: dict = {}
        for slot in self.slots:
            counts[slot.interface] = counts.get(slot.interface, 0) + slot.hi - slot.lo + 1
        return {name: 100.0 * n / self.modulus for name, n in counts.items()}

    def interface_for(self, value: int) -> str:
        for slot in self.slots:
            if slot.lo <= value <= slot.hi:
                return slot.interface
        raise ValueError(f"selector value {value} outside 0..{self.modulus - 1}")


@dataclass(frozen=True)
class PolicyMember:
    name: str
    interface: str
    family: str
    metric: int
    weight: int


def hash_slot_count(weights: list) -> int:
    """Slots of a hash policy: a multiple of the weight sum, at least HASH_MIN_SLOTS,
    so that the slots of a dead member can be shared out finely among the others."""
    total = sum(weights)
    if total >= HASH_MIN_SLOTS:
        return total
    return total * math.ceil(HASH_MIN_SLOTS / total)


def _ranges(owners: list) -> tuple:
    """Compress a per-value owner list into Slot ranges."""
    slots = []
    start = 0
    for value in range(1, len(owners) + 1):
        if value == len(owners) or owners[value] != owners[start]:
            slots.append(Slot(start, value - 1, owners[start]))
            start = value
    return tuple(slots)


def _weighted_turns(members: list, count: int) -> list:
    """Smooth weighted round robin: `count` picks spread in proportion to weight."""
    current = [0] * len(members)
    total = sum(m.weight for m in members)
    picks = []
    for _ in range(count):
        for i, m in enumerate(members):
            current[i] += m.weight
        best = max(range(len(members)), key=lambda i: (current[i], -i))
        current[best] -= total
        picks.append(members[best].interface)
    return picks


def decide(mode: str, last_resort: str, members: list, alive: frozenset, family: str) -> Decision:
    """The decision of a policy for `family` when exactly the members named in `alive` are alive.

    `members` is the policy's full member list (PolicyMember, config order, both families).
    """
    own = [m for m in members if m.family == family]
    up = [m for m in own if m.name in alive]
    if not up:
        return Decision(family=family, kind="last_resort", last_resort=last_resort)
    metric = min(m.metric for m in up)
    tier = [m for m in up if m.metric == metric]
    names = tuple(m.interface for m in tier)
    common = dict(family=family, tier_metric=metric, tier=names)
    if mode == "failover" or len(tier) == 1:
        return Decision(kind="single", interface=tier[0].interface, **common)
    if mode in ("balanced", "weighted"):
        owners = [m.interface for m in tier for _ in range(m.weight)]
        return Decision(kind="spread", selector=SELECTOR[mode], modulus=len(owners),
                        slots=_ranges(owners), **common)
    if mode in ("round-robin", "random"):
        owners = [m.interface for m in tier]
        return Decision(kind="spread", selector=SELECTOR[mode], modulus=len(owners),
                        slots=_ranges(owners), **common)
    if mode == "hash":
        # Base layout over all members of the family, so that a member's slots stay put
        # while it lives; slots of members outside the active tier are shared out among it.
        modulus = hash_slot_count([m.weight for m in own])
        base = _weighted_turns(own, modulus)
        active = {m.interface for m in tier}
        orphans = [i for i, owner in enumerate(base) if owner not in active]
        refill = _weighted_turns(tier, len(orphans))
        owners = list(base)
        for i, owner in zip(orphans, refill):
            owners[i] = owner
        return Decision(kind="spread", selector="jhash", modulus=modulus,
                        slots=_ranges(owners), **common)
    raise ValueError(f"unknown mode {mode!r}")


def alive_masks(count: int) -> list:
    """Every alive-set of `count` members as a bit string, member i = character i."""
    return [format(n, f"0{count}b")[::-1] for n in range(2 ** count)]


def mask_of(members: list, alive) -> str:
    return "".join("1" if m.name in alive else "0" for m in members)


def alive_from_mask(members: list, mask: str) -> frozenset:
    return frozenset(m.name for m, bit in zip(members, mask) if bit == "1")


# --- the kernel's jhash (include/linux/jhash.h), so `explain` can name a hash slot ---

def _rol32(word: int, shift: int) -> int:
    return ((word << shift) | (word >> (32 - shift))) & 0xFFFFFFFF


def _jhash_final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol32(b, 14)) & 0xFFFFFFFF
    a ^= c; a = (a - _rol32(c, 11)) & 0xFFFFFFFF
    b ^= a; b = (b - _rol32(a, 25)) & 0xFFFFFFFF
    c ^= b; c = (c - _rol32(b, 16)) & 0xFFFFFFFF
    a ^= c; a = (a - _rol32(c, 4)) & 0xFFFFFFFF
    b ^= a; b = (b - _rol32(a, 14)) & 0xFFFFFFFF
    c ^= b; c = (c - _rol32(b, 24)) & 0xFFFFFFFF
    return c


def _jhash_mix(a: int, b: int, c: int):
    a = (a - c) & 0xFFFFFFFF; a ^= _rol32(c, 4); c = (c + b) & 0xFFFFFFFF
    b = (b - a) & 0xFFFFFFFF; b ^= _rol32(a, 6); a = (a + c) & 0xFFFFFFFF
    c = (c - b) & 0xFFFFFFFF; c ^= _rol32(b, 8); b = (b + a) & 0xFFFFFFFF
    a = (a - c) & 0xFFFFFFFF; a ^= _rol32(c, 16); c = (c + b) & 0xFFFFFFFF
    b = (b - a) & 0xFFFFFFFF; b ^= _rol32(a, 19); a = (a + c) & 0xFFFFFFFF
    c = (c - b) & 0xFFFFFFFF; c ^= _rol32(b, 4); b = (b + a) & 0xFFFFFFFF
    return a, b, c


def jhash(data: bytes, seed: int) -> int:
    """Bob Jenkins' lookup3 as the kernel's jhash() computes it (little-endian words)."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + seed) & 0xFFFFFFFF
    k = data
    while length > 12:
        a = (a + int.from_bytes(k[0:4], "little")) & 0xFFFFFFFF
        b = (b + int.from_bytes(k[4:8], "little")) & 0xFFFFFFFF
        c = (c + int.from_bytes(k[8:12], "little")) & 0xFFFFFFFF
        a, b, c = _jhash_mix(a, b, c)
        length -= 12
        k = k[12:]
    if length == 0:
        return c
    tail = k + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & 0xFFFFFFFF
    b = (b + int.from_bytes(tail[4:8], "little")) & 0xFFFFFFFF
    c = (c + int.from_bytes(tail[8:12], "little")) & 0xFFFFFFFF
    return _jhash_final(a, b, c)


def hash_value(address_bytes: bytes, seed: int, modulus: int) -> int:
    """nft's `jhash <addr> mod M seed S`: reciprocal_scale(jhash(addr, len, seed), M)."""
    return (jhash(address_bytes, seed) * modulus) >> 32


def policy_seed(name: str) -> int:
    """A fixed, per-policy hash seed (deterministic output, different spreads per policy)."""
    h = 2166136261
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h
