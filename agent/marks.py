"""Mark ids and their packet-mark values under NetPath's mask.

N set bits in the mask give ids 1 .. 2^N-1. Interfaces take ids from 1; the three
highest ids are reserved (mwan3's layout, so mwan3 users read `ip rule` the same way):
2^N-3 blackhole, 2^N-2 unreachable, 2^N-1 "default" (use the main table).
"""

from __future__ import annotations

DEFAULT_MASK = 0x3F00
MAX_ID = 252  # ip rule preferences 1000+id, 1300+id, 2000+id, 3000+id must not overlap


def mask_bits(mask: int) -> list:
    return [bit for bit in range(32) if mask >> bit & 1]


def id_to_mark(ident: int, mask: int) -> int:
    """Spread the bits of `ident` over the set bits of `mask` (mwan3_id2mask)."""
    value = 0
    for i, bit in enumerate(mask_bits(mask)):
        if ident >> i & 1:
            value |= 1 << bit
    return value


def mark_to_id(mark: int, mask: int) -> int:
    ident = 0
    for i, bit in enumerate(mask_bits(mask)):
        if mark >> bit & 1:
            ident |= 1 << i
    return ident


def special_ids(mask: int) -> dict:
    top = (1 << len(mask_bits(mask))) - 1
    return {"blackhole": top - 2, "unreachable": top - 1, "default": top}


def max_interfaces(mask: int) -> int:
    return max(0, (1 << len(mask_bits(mask))) - 4)
