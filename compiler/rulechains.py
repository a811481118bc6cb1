"""The user rules as nft chains: first match wins, in the user's order, at a cost per new
flow that does not grow with every rule.

A packet of one family never meets a rule of the other, so each family gets its own chain
(`rules` dispatches on `meta nfproto` with one verdict map). Inside it, consecutive rules
that test the same fields (say `ip daddr`, or `meta l4proto . th dport`) and whose matches
do not overlap become one *run*: a single verdict-map lookup keyed on the concatenation of
those fields, whose elements jump to one small chain per rule (`matched_<rule>`: the rule's
log line, its counter, its comment and its verdict). Every rule counts into its named
counter `rule_<name>`, wherever its lines are. Since no packet matches two elements
of a run, which one comes first does not matter; a rule that overlaps a rule already in the
run starts the next run, so order is kept wherever it could decide. Rules that cannot be
keyed (a non-contiguous netmask, a named set, no match at all) stay a line of their own, as
does a run of one rule.

`explain` (agent/explain.py) walks the same rules one by one on the resolved model; the
kernel lab tests prove that both send every packet to the same rule.
"""

from __future__ import annotations

import bisect
import socket
from dataclasses import dataclass, field
from typing import NamedTuple

from netpath.agent.model import Model, Rule

from . import nftrules
from .validate import PROTOCOLS

# Fields a run can be keyed on, in the order of the concatenation.
FIELDS = ("iif", "l4proto", "saddr", "daddr", "sport", "dport")
# The field a run indexes its elements by for the overlap test: the most selective one.
INDEX_PREFERENCE = ("daddr", "saddr", "dport", "sport", "iif", "l4proto")
PORT_PROTOCOLS = {"all": ("tcp", "udp"), "6": ("tcp",), "17": ("udp",)}


class Value(NamedTuple):
    text: str  # as nft reads it in a set element
    lo: object  # an interval of comparable values: ints, or (0, name) for a device name
    hi: object


def _expression(name: str, family: str) -> str:
    l3 = nftrules.l3(family)
    return {"iif": "iifname", "l4proto": "meta l4proto", "saddr": f"{l3} saddr",
            "daddr": f"{l3} daddr", "sport": "th sport", "dport": "th dport"}[name]


def _protocol(text: str) -> Value:
    number = int(text) if text.isdigit() else PROTOCOLS[text]
    return Value(text, number, number)


_AF = {"ipv4": (socket.AF_INET, 32), "ipv6": (socket.AF_INET6, 128)}


def _interval(text: str, family: str) -> Value:
    """A validated prefix (`a/len`, its host bits clear) or address as an interval of ints."""
    af, bits = _AF[family]
    address, _, length = text.partition("/")
    lo = int.from_bytes(socket.inet_pton(af, address), "big")
    size = 1 << (bits - int(length)) if length else 1
    return Value(address if size == 1 else text, lo, lo + size - 1)


def _addresses(matches, family: str) -> "list | None":
    values = sorted((_interval(m.address, family) for m in matches if m.family == family),
                    key=lambda v: (v.lo, -v.hi))
    if not values:
        return None
    out = [values[0]]
    for value in values[1:]:  # prefixes nest or are apart: drop those inside an earlier one
        if value.hi > out[-1].hi:
            out.append(value)
    return out


def _ports(ranges) -> list:
    merged: list = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [Value(str(lo) if lo == hi else f"{lo}-{hi}", lo, hi) for lo, hi in merged]


def key_of(rule: Rule, family: str) -> "dict | None":
    """field -> the rule's values, when the rule is a plain conjunction of fields a verdict
    map can be keyed on; None when it is not (netmask, named set, or nothing to key on)."""
    if rule.src_set or rule.dest_set or any(m.netmask for m in rule.src + rule.dest):
        return None
    key: dict = {}
    if rule.src_iface:
        key["iif"] = [Value(f'"{rule.src_iface}"', (0, rule.src_iface), (0, rule.src_iface))]
    if rule.src_port or rule.dest_port:
        key["l4proto"] = [_protocol(p) for p in PORT_PROTOCOLS.get(rule.proto, (rule.proto,))]
    elif rule.proto != "all":
        key["l4proto"] = [_protocol(rule.proto)]
    for name, matches in (("saddr", rule.src), ("daddr", rule.dest)):
        if matches:
            values = _addresses(matches, family)
            if values is None:
                return None
            key[name] = values
    if rule.src_port:
        key["sport"] = _ports(rule.src_port)
    if rule.dest_port:
        key["dport"] = _ports(rule.dest_port)
    return key or None


def _boxes(key: dict, fields: tuple) -> list:
    """The cross product of the key's values: one element (a box of intervals) each."""
    boxes = [()]
    for name in fields:
        boxes = [box + (value,) for box in boxes for value in key[name]]
    return boxes


@dataclass
class Run:
    """Consecutive rules keyed on the same fields, with pairwise disjoint elements."""

    fields: tuple
    rules: list = field(default_factory=list)
    elements: list = field(default_factory=list)  # (box, rule), in rule order
    _los: list = field(default_factory=list)  # sorted lower bounds on the index field
    _boxes: list = field(default_factory=list)  # the boxes, in the order of _los
    _width: object = 0  # widest interval on the index field so far

    def __post_init__(self):
        self._dim = next(self.fields.index(f) for f in INDEX_PREFERENCE if f in self.fields)
        self._numeric = self.fields[self._dim] not in ("iif",)

    def overlaps(self, boxes: list) -> bool:
        for box in boxes:
            lo, hi = box[self._dim].lo, box[self._dim].hi
            start = bisect.bisect_left(self._los, lo - self._width) if self._numeric else \
                bisect.bisect_left(self._los, lo)
            for other in self._boxes[start:bisect.bisect_right(self._los, hi)]:
                if all(a.lo <= b.hi and b.lo <= a.hi for a, b in zip(box, other)):
                    return True
        return False

    def add(self, rule: Rule, boxes: list) -> None:
        self.rules.append(rule)
        for box in boxes:
            self.elements.append((box, rule))
            value = box[self._dim]
            where = bisect.bisect_right(self._los, value.lo)
            self._los.insert(where, value.lo)
            self._boxes.insert(where, box)
            if self._numeric:
                self._width = max(self._width, value.hi - value.lo)


def runs(rules, family: str) -> list:
    """The family's rules in order, as Runs (keyed) and Rules (a line of their own)."""
    out: list = []
    current = None
    for rule in rules:
        if family not in rule.families:
            continue
        key = key_of(rule, family)
        if key is None:
            out.append(rule)
            current = None
            continue
        fields = tuple(f for f in FIELDS if f in key)
        boxes = _boxes(key, fields)
        if current is None or current.fields != fields or current.overlaps(boxes):
            current = Run(fields)
            out.append(current)
        current.add(rule, boxes)
    return out


def matched_chain(rule: Rule) -> str:
    return f"matched_{rule.name}"


def _rule_line(rule: Rule, family: str, loglevel: str) -> list:
    comment = nftrules.nft_comment(rule.section)
    lines = []
    for matches in nftrules.rule_match_lines(rule, family):
        if rule.logging:
            lines.append(f'{matches} log prefix "netpath({rule.name}) " level {loglevel} comment {comment}')
        lines.append(f"{matches} counter name {nftrules.rule_counter(rule)} "
                     f"goto {nftrules.rule_target(rule)} comment {comment}")
    return lines


def _run_line(run: Run, family: str) -> str:
    keys = " . ".join(_expression(f, family) for f in run.fields)
    entries = ", ".join(" . ".join(v.text for v in box) + f" : goto {matched_chain(rule)}"
                        for box, rule in run.elements)
    first, last = run.rules[0].name, run.rules[-1].name
    comment = nftrules.nft_comment(f"rules {first} .. {last} ({len(run.rules)})")
    return f"{keys} vmap {{ {entries} }} comment {comment}"


@dataclass(frozen=True)
class RuleChains:
    families: dict  # family -> the lines of chain rules_<family>
    matched: list  # (chain name, lines) of each rule that is an element of a run


def build(model: Model) -> RuleChains:
    families, in_runs = {}, {}
    for family in ("ipv4", "ipv6"):
        lines = []
        for item in runs(model.rules, family):
            if isinstance(item, Run) and len(item.rules) > 1:
                lines.append(_run_line(item, family))
                in_runs.update((r.name, r) for r in item.rules)
            else:
                rule = item.rules[0] if isinstance(item, Run) else item
                lines += _rule_line(rule, family, model.loglevel)
        families[family] = lines
    matched = []
    for rule in model.rules:
        if rule.name in in_runs:
            comment = nftrules.nft_comment(rule.section)
            lines = [f'log prefix "netpath({rule.name}) " level {model.loglevel} comment {comment}'] \
                if rule.logging else []
            lines.append(f"counter name {nftrules.rule_counter(rule)} goto {nftrules.rule_target(rule)} "
                         f"comment {comment}")
            matched.append((matched_chain(rule), lines))
    return RuleChains(families=families, matched=matched)
