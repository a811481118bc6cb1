"""Swap: turn a change of the uplinks' health into one nft transaction, and read back from
the kernel which state variant of each policy is loaded.

A state variant is a pre-rendered file (`states/<policy>/<alive-mask>.nft`) that flushes and
refills the chains of one policy (and of the sticky rules using it). A change loads the files
of the policies whose alive-mask changed, concatenated, as one transaction: the kernel swaps
them all at once or not at all, and there is no moment without a policy.

Reading back (for a restarted agent): the kernel keeps no file names, but every rule of a
variant carries its comment ("policy p ipv4: metric 1: wan 50.0%, wanb 50.0%"). The sequence
of comments per chain identifies the variant, up to variants that are identical anyway (a
failover policy whose first member is alive looks the same whatever the backups do).
"""

from __future__ import annotations

import asyncio
import re
import time

from .apply import bypass_lines, masks_for
from .model import Model
from .nft import NftError

_FLUSH_CHAIN = re.compile(r"^flush chain inet (\S+) (\S+)\s*$")
_ADD_RULE = re.compile(r"^add rule inet (\S+) (\S+) ")
_COMMENT = re.compile(r'comment "((?:[^"\\]|\\.)*)"\s*$')


def changed_policies(loaded: dict, wanted: dict) -> list:
    return sorted(name for name, mask in wanted.items() if loaded.get(name) != mask)


def transaction(bundle, loaded: dict, wanted: dict, changed: "list | None" = None) -> str:
    """The state files of every policy whose variant differs from `loaded`, as one text.
    `changed`: changed_policies(loaded, wanted), when the caller has it already."""
    if changed is None:
        changed = changed_policies(loaded, wanted)
    parts = [bundle.state_text(name, wanted[name]) for name in changed]
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


async def load(nft, text: str) -> float:
    """Load `text` as one transaction; returns the seconds it took.

    libnftables answers in well under a millisecond, so it runs on the loop thread (no
    thread hop in the failover path); `nft -f -` is a process and runs in a worker thread,
    as does the diagnosis of a refusal (`nft -c`)."""
    started = time.perf_counter()
    if nft.backend == "libnftables":
        try:
            nft.load(text, diagnose=False)
        except NftError as exc:
            raise NftError(await asyncio.to_thread(nft.diagnose, text, str(exc))) from None
    else:
        await asyncio.to_thread(nft.load, text)
    return time.perf_counter() - started


def bypass_transaction(model: Model, links: dict) -> str:
    """Refill the sets of connected WAN networks (as apply does) after an address changed."""
    return "\n".join(bypass_lines(model, links)) + "\n"


# --- reading the loaded variant back ---------------------------------------------------------


def _unescape(comment: str) -> str:
    return re.sub(r"\\(.)", r"\1", comment)


def variant_signature(text: str) -> dict:
    """chain -> tuple of rule comments ("" for a rule without one) that `text` leaves behind."""
    chains: dict = {}
    for line in text.splitlines():
        flushed = _FLUSH_CHAIN.match(line)
        if flushed:
            chains[flushed.group(2)] = []
            continue
        added = _ADD_RULE.match(line)
        if added:
            comment = _COMMENT.search(line)
            chains.setdefault(added.group(2), []).append(_unescape(comment.group(1)) if comment else "")
    return {chain: tuple(comments) for chain, comments in chains.items()}


def live_signatures(listing: dict, table: str) -> dict:
    """chain -> tuple of rule comments, from `nft -j list table inet <table>`."""
    chains: dict = {}
    for item in listing.get("nftables", ()):
        if not isinstance(item, dict):
            continue
        if "chain" in item and item["chain"].get("table") == table:
            chains.setdefault(item["chain"]["name"], [])
        rule = item.get("rule")
        if rule and rule.get("table") == table:
            chains.setdefault(rule["chain"], []).append(rule.get("comment", ""))
    return {chain: tuple(comments) for chain, comments in chains.items()}


def loaded_variants(bundle, listing: dict) -> dict:
    """policy -> set of alive-masks whose variant is what the kernel holds (empty: none is)."""
    live = live_signatures(listing, bundle.model.table)
    found = {}
    for policy in bundle.model.policies:
        matching = set()
        for mask in policy.states:
            wanted = variant_signature(bundle.state_text(policy.name, mask))
            if wanted and all(live.get(chain) == comments for chain, comments in wanted.items()):
                matching.add(mask)
        found[policy.name] = matching
    return found


def alive_from_kernel(model: Model, variants: dict, undecided: set) -> "set | None":
    """The usable interfaces that explain the loaded variants, or None when they cannot.

    An interface the kernel says nothing about (every matching variant agrees whatever its
    state, or it is in no policy) takes its state from `undecided` (the caller's guess from
    the links and initial_state). None: no NetPath table, a policy without a matching
    variant (another bundle is loaded), or variants that contradict each other."""
    if not model.policies or any(not masks for masks in variants.values()):
        return None
    alive = set()
    for iface in model.interfaces:
        if not iface.enabled:
            continue
        verdicts = set()
        for policy in model.policies:
            positions = [i for i, m in enumerate(policy.members) if m.interface == iface.name]
            if not positions:
                continue
            bits = {mask[i] for mask in variants[policy.name] for i in positions}
            if len(bits) == 1:
                verdicts |= bits
        if verdicts == {"1"} or (not verdicts and iface.name in undecided):
            alive.add(iface.name)
        elif len(verdicts) > 1:
            return None
    masks = masks_for(model, alive)
    if any(masks[name] not in found for name, found in variants.items()):
        return None
    return alive
