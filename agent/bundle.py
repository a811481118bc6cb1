"""Read a compiled bundle and prove it is whole: the manifest's format, every file it
lists present and matching its sha256. A missing, partial or tampered bundle is refused
before anything touches the host.

The verified contents are kept in memory: `netpath compile -o DIR` swaps the directory
while an agent runs, and the agent must keep loading the files of the bundle it read (the
ones its model names) until it is told to reload."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .model import DNS_TYPES, FORMAT_VERSION, TRACK_FLAGS, TRACK_LIMITS, TRACK_METHODS, Model
from .names import (DEVICE_RE, DEVICE_SHAPE, DNS_NAME_RE, NAME_RE, NAME_SHAPE, NFT_KEYWORDS,
                    RESERVED_TABLES, TABLE_RE, TABLE_SHAPE, URL_RE, plain_ip)

try:  # the interpreter's own sha256: hashlib's would map and touch OpenSSL (about 0.5 MiB resident)
    from _sha2 import sha256  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256


class BundleError(Exception):
    """The bundle cannot be used (exit status 2)."""


@dataclass(frozen=True)
class Bundle:
    directory: Path
    manifest: dict
    model: Model
    digest: str  # sha256 of manifest.json: names this exact bundle
    files: dict  # relative path -> text, as verified against the manifest's sha256
    _policies: dict = field(init=False, repr=False, compare=False)  # name -> Policy

    def __post_init__(self) -> None:
        object.__setattr__(self, "_policies", {p.name: p for p in self.model.policies})

    def text(self, rel: str) -> str:
        return self.files[rel]

    def state_text(self, policy: str, mask: str) -> str:
        return self.files[self._policies[policy].states[mask]]


def read(directory) -> Bundle:
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{directory}: not a NetPath bundle (no manifest.json); "
                          "create one with `netpath compile CONFIG -o DIR`") from None
    except OSError as exc:
        raise BundleError(f"{manifest_path}: cannot read: {exc.strerror}") from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise BundleError(f"{manifest_path}: bundle format {manifest.get('format') if isinstance(manifest, dict) else '?'} "
                          f"is not the supported format {FORMAT_VERSION}; recompile with this NetPath")
    problems = []
    files = {}
    for rel, expected in sorted(manifest.get("files", {}).items()):
        path = directory / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"{rel}: path outside the bundle")
            continue
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        actual = sha256(content).hexdigest()
        if actual != expected:
            problems.append(f"{rel}: sha256 {actual[:12]}... does not match the manifest ({expected[:12]}...)")
            continue
        try:
            files[rel] = content.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{rel}: not UTF-8 text")
    if problems:
        raise BundleError(f"{directory}: damaged or tampered bundle: " + "; ".join(problems))
    try:
        model = Model.from_dict(manifest["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: the model is incomplete ({exc!r}); recompile") from None
    unsafe = unsafe_fields(model)
    if unsafe:
        raise BundleError(f"{manifest_path}: the model has values NetPath never writes: {'; '.join(unsafe)}; "
                          "recompile with `netpath compile`")
    # Every file the agent loads must be one whose sha256 was checked above.
    routes = manifest.get("routes")
    if not isinstance(routes, list) or not all(isinstance(e, dict) and e.get("family") in ("ipv4", "ipv6")
                                               for e in routes):
        raise BundleError(f"{manifest_path}: \"routes\" must list {{family, file}} entries; recompile")
    used = [("ruleset", manifest.get("ruleset"))] + [("routes file", e.get("file")) for e in routes] + \
        [("state file", rel) for policy in model.policies for rel in policy.states.values()]
    for kind, rel in used:
        if not isinstance(rel, str) or rel not in files:
            raise BundleError(f"{directory}: {kind} {rel!r} is not listed in the manifest")
    return Bundle(directory=directory, manifest=manifest, model=model,
                  digest=sha256(raw).hexdigest(), files=files)


def unsafe_fields(model: Model) -> list:
    """The model's fields that the agent writes into nft text, `ip -batch` lines or socket
    options itself, checked against the compiler's rules. The manifest carries no sha256 of
    its own: a hand-edited name with a space or a newline would add a command."""
    found = []

    def shaped(field: str, value, regex, shape: str) -> None:
        if not isinstance(value, str) or not regex.match(value):
            found.append(f"{field} {value!r} is not a valid {shape}")

    def whole(field: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            found.append(f"{field} {value!r} is not a whole number")

    shaped("table", model.table, TABLE_RE, TABLE_SHAPE)
    if model.table in NFT_KEYWORDS:
        found.append(f"table {model.table!r} is an nft keyword")
    for field in ("mask", "route_protocol", "pref_main"):
        whole(field, getattr(model, field))
    for kind, special in model.special.items():
        whole(f"special.{kind}.mark", special.get("mark") if isinstance(special, dict) else special)
    for iface in model.interfaces:
        where = f"interfaces[{iface.name!r}]"
        shaped(f"{where}.name", iface.name, NAME_RE, NAME_SHAPE)
        shaped(f"{where}.device", iface.device, DEVICE_RE, DEVICE_SHAPE)
        if iface.family not in ("ipv4", "ipv6"):
            found.append(f"{where}.family {iface.family!r} is not ipv4 or ipv6")
        if iface.gateway != "":
            try:
                plain_ip(iface.gateway)
            except (ValueError, TypeError):
                found.append(f"{where}.gateway {iface.gateway!r} is not an IP address")
        for field in ("mark", "table", "pref_oif", "pref_from", "pref_mark", "pref_guard"):
            whole(f"{where}.{field}", getattr(iface, field))
        if iface.table in RESERVED_TABLES:
            found.append(f"{where}.table {iface.table} is the kernel's table "
                         f"'{RESERVED_TABLES[iface.table]}'")
        found += track_problems(f"{where}.track", iface.track)
    for policy in model.policies:
        shaped(f"policies[{policy.name!r}].name", policy.name, NAME_RE, NAME_SHAPE)
    for rule in model.rules:
        shaped(f"rules[{rule.name!r}].name", rule.name, NAME_RE, NAME_SHAPE)
    return found


def track_problems(where: str, track) -> list:
    """The tracking settings the compiler would never write: a reload must refuse them before
    the first kernel write (a zero interval would probe without pause, a target with a space
    reaches a probe's address parser, a newline in an URL an HTTP request)."""
    found = []
    if track.method not in TRACK_METHODS:
        found.append(f"{where}.method {track.method!r} is not one of {', '.join(TRACK_METHODS)}")
    for option, (kind, lo, hi) in TRACK_LIMITS.items():
        value = getattr(track, option)
        number = not isinstance(value, bool) and isinstance(value, int if kind == "int" else (int, float))
        if not number or not lo <= value <= hi:  # NaN fails the comparison too
            what = "a whole number" if kind == "int" else "a number of seconds" if kind == "seconds" else "a number"
            found.append(f"{where}.{option} {value!r} is not {what} in {lo:g}..{hi:g}")
    for option in TRACK_FLAGS:
        if not isinstance(getattr(track, option), bool):
            found.append(f"{where}.{option} {getattr(track, option)!r} is not true or false")
    if track.initial_state not in ("online", "offline"):
        found.append(f"{where}.initial_state {track.initial_state!r} is not online or offline")
    targets = track.targets if isinstance(track.targets, (tuple, list)) else None
    if targets is None:
        found.append(f"{where}.targets {track.targets!r} is not a list")
    else:
        for target in targets:
            if not _target_ok(target, track.method):
                found.append(f"{where}.targets {target!r} is not an IP address"
                             f"{' or host name' if track.method == 'httping' else ''}")
        if track.method != "none" and not targets:
            found.append(f"{where}.targets is empty; method {track.method!r} needs at least one target")
        if isinstance(track.reliability, int) and targets and track.reliability > len(targets):
            found.append(f"{where}.reliability {track.reliability!r} exceeds the {len(targets)} target(s)")
    if not isinstance(track.dns_query, str) or len(track.dns_query) > 253 or not DNS_NAME_RE.match(track.dns_query):
        found.append(f"{where}.dns_query {track.dns_query!r} is not a DNS name")
    if track.dns_type not in DNS_TYPES:
        found.append(f"{where}.dns_type {track.dns_type!r} is not one of {', '.join(DNS_TYPES)}")
    if track.http_url != "" and not (isinstance(track.http_url, str) and URL_RE.match(track.http_url)):
        found.append(f"{where}.http_url {track.http_url!r} is not an http:// or https:// URL")
    return found


def _target_ok(target, method: str) -> bool:
    if not isinstance(target, str):
        return False
    try:
        plain_ip(target)
        return True
    except ValueError:
        return method == "httping" and target != "." and len(target) <= 253 and bool(DNS_NAME_RE.match(target))
