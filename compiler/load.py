"""Stage 1: read a UCI, TOML or YAML config into one plain tree.

The tree has the same shape whatever the syntax:

    {"globals": {...},
     "interfaces": {name: {..., "track": {...}}},
     "members": {name: {...}}, "policies": {name: {...}},
     "rules": [{"name": ..., ...}, ...]}

UCI is flat (`option track_method`), TOML and YAML nest tracking settings under `track`.
Alongside the tree, a Locator remembers where each value came from, so every later error
can name the section, the option and (for UCI) the file and line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from . import uci

FORMATS = ("uci", "toml", "yaml")

# UCI option name -> key under "track" (TOML/YAML). The seed names the first two.
TRACK_OPTIONS = {
    "track_method": "method",
    "track_targets": "targets",
    "reliability": "reliability",
    "count": "count",
    "timeout": "timeout",
    "interval": "interval",
    "failure_interval": "failure_interval",
    "recovery_interval": "recovery_interval",
    "keep_failure_interval": "keep_failure_interval",
    "up": "up",
    "down": "down",
    "initial_state": "initial_state",
    "check_quality": "check_quality",
    "failure_latency": "failure_latency",
    "recovery_latency": "recovery_latency",
    "failure_loss": "failure_loss",
    "recovery_loss": "recovery_loss",
    "size": "size",
    "max_ttl": "max_ttl",
    "http_url": "http_url",
    "http_status": "http_status",
    "dns_query": "dns_query",
    "dns_type": "dns_type",
}
UCI_OPTION_OF_TRACK = {v: k for k, v in TRACK_OPTIONS.items()}

SECTION_KEYS = {"globals": "globals", "interface": "interfaces", "member": "members",
                "policy": "policies", "rule": "rules"}
KIND_OF_KEY = {v: k for k, v in SECTION_KEYS.items()}


class LoadError(Exception):
    """A config that cannot be read at all (syntax). Carries ready-to-print lines."""

    def __init__(self, lines):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass
class Locator:
    """Maps a tree path to a human label and, for UCI, a line number."""

    filename: str
    fmt: str
    places: dict = field(default_factory=dict)  # path tuple -> (label, line or None)

    def where(self, path: tuple) -> str:
        """`file:line: interface 'wan' option 'track_targets'` (UCI) or
        `file: interfaces.wan.track.targets` (TOML, YAML)."""
        path = tuple(path)
        for cut in range(len(path), 0, -1):
            head = path[:cut]
            if head in self.places:
                label, line = self.places[head]
                rest = path[cut:]
                if rest:
                    label = f"{label}{self._tail(rest)}"
                prefix = f"{self.filename}:{line}" if line else self.filename
                return f"{prefix}: {label}"
        return f"{self.filename}: {self._tail(path).lstrip('.') or '(top level)'}"

    def _tail(self, rest) -> str:
        if self.fmt == "uci":
            return "".join(f" option '{p}'" if isinstance(p, str) else f" item {p + 1}" for p in rest)
        return "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in rest)


@dataclass
class Source:
    tree: dict
    locator: Locator
    fmt: str
    filename: str
    digest: str


def guess_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        return "toml"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "uci"


def load(path: str, fmt: "str | None" = None) -> Source:
    fmt = fmt or guess_format(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LoadError([f"{path}: cannot read the config: {exc.strerror}"]) from None
    return loads(raw, path, fmt)


def loads(raw: bytes, filename: str, fmt: str) -> Source:
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError([f"{filename}: not UTF-8 text (byte {exc.start})"]) from None
    if fmt == "uci":
        tree, locator = _from_uci(text, filename)
    elif fmt == "toml":
        tree, locator = _from_toml(text, filename)
    elif fmt == "yaml":
        tree, locator = _from_yaml(text, filename)
    else:
        raise LoadError([f"{filename}: unknown format {fmt!r} (use one of {', '.join(FORMATS)})"])
    return Source(tree=tree, locator=locator, fmt=fmt, filename=filename, digest=digest)


# --- UCI --------------------------------------------------------------------------------

LIST_OPTIONS = {"track_targets", "members", "flush_conntrack", "src_ip", "dest_ip"}


def _from_uci(text: str, filename: str):
    try:
        package = uci.parse(text, filename, strict=True)
    except uci.UciError as exc:
        raise LoadError([str(exc)]) from None
    locator = Locator(filename, "uci")
    tree: dict = {"interfaces": {}, "members": {}, "policies": {}, "rules": []}
    errors = []
    for section in package.sections:
        kind = section.type
        key = SECTION_KEYS.get(kind)
        label = f"{kind} '{section.name}'"
        if key is None:
            from .validate import suggest  # local import: validate imports load
            hint = suggest(kind, SECTION_KEYS)
            errors.append(f"{filename}:{section.line}: section type '{kind}' is unknown"
                          f"{hint}; allowed: {', '.join(SECTION_KEYS)}")
            continue
        values: dict = {}
        if key == "globals":
            if "globals" in tree:
                errors.append(f"{filename}:{section.line}: {label}: a second globals section"
                              " (only one is allowed)")
                continue
            tree["globals"] = values
            path = ("globals",)
        elif key == "rules":
            values["name"] = section.name
            path = ("rules", len(tree["rules"]))
            tree["rules"].append(values)
        else:
            tree[key][section.name] = values
            path = (key, section.name)
        locator.places[path] = (label, section.line)
        for option in section.options.values():
            value = _uci_value(option)
            opt_label = f"{label} option '{option.name}'"
            if key == "interfaces" and option.name in TRACK_OPTIONS:
                sub = TRACK_OPTIONS[option.name]
                values.setdefault("track", {})[sub] = value
                opt_path = path + ("track", sub)
                locator.places.setdefault(path + ("track",), (label, section.line))
            else:
                values[option.name] = value
                opt_path = path + (option.name,)
            locator.places[opt_path] = (opt_label, option.line)
            for i, line in enumerate(option.item_lines if option.is_list else ()):
                locator.places[opt_path + (i,)] = (f"{opt_label} item {i + 1}", line)
    if errors:
        raise LoadError(errors)
    return tree, locator


def _uci_value(option):
    if option.is_list:
        return list(option.value)
    if option.name in LIST_OPTIONS:
        # `option track_targets '1.1.1.1 8.8.8.8'`: read as config_get would, word by word.
        return option.value.split()
    return option.value


# --- TOML / YAML -----------------------------------------------------------------------------


def _from_toml(text: str, filename: str):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LoadError([f"{filename}: TOML syntax error: {exc}"]) from None
    return _from_nested(data, filename, "toml")


def _from_yaml(text: str, filename: str):
    import yaml

    try:
        data = yaml.load(text, Loader=_unique_keys_loader(yaml))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        problem = getattr(exc, "problem", None) or str(exc)
        raise LoadError([f"{where}: YAML syntax error: {problem}"]) from None
    if data is None:
        data = {}
    return _from_nested(data, filename, "yaml")


def _unique_keys_loader(yaml):
    """A SafeLoader that rejects a key given twice in one mapping: plain YAML keeps the
    last one silently, which would drop a whole interface or policy without a word."""

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key; the base class reports it
                    continue
                if first != key_node.start_mark.line + 1:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice in one mapping (first on line "
                        f"{first}); names must be unique", key_node.start_mark)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _label(name, quoted: bool = False) -> str:
    """A section name as it may appear in a message: as is when harmless, else quoted
    with escapes, so a newline in a bad name cannot split an error line."""
    text = str(name)
    if text.isascii() and text.isprintable() and "'" not in text:
        return f"'{text}'" if quoted else text
    return repr(text)


def _from_nested(data, filename: str, fmt: str):
    locator = Locator(filename, fmt)
    if not isinstance(data, dict):
        raise LoadError([f"{filename}: the top level must be a table/mapping"])
    tree: dict = {}
    errors = []
    for key, value in data.items():
        canonical = "globals" if key in ("global", "globals") else key
        if canonical not in ("globals", "interfaces", "members", "policies", "rules"):
            from .validate import suggest
            hint = suggest(str(key), ["global", "interfaces", "members", "policies", "rules"])
            errors.append(f"{filename}: top-level key '{key}' is unknown{hint}; allowed: "
                          "global, interfaces, members, policies, rules")
            continue
        tree[canonical] = value
        if canonical == "globals":
            locator.places[("globals",)] = (f"{key}", None)
        elif canonical == "rules":
            if isinstance(value, list):
                for i, rule in enumerate(value):
                    name = rule.get("name") if isinstance(rule, dict) else None
                    label = f"rules[{i}]" + (f" ({_label(name, quoted=True)})" if name else "")
                    locator.places[("rules", i)] = (label, None)
        elif isinstance(value, dict):
            for name, section in value.items():
                locator.places[(canonical, name)] = (f"{canonical}.{_label(name)}", None)
                if isinstance(section, dict) and isinstance(section.get("track"), dict):
                    locator.places[(canonical, name, "track")] = (f"{canonical}.{_label(name)}.track",
                                                                  None)
    if errors:
        raise LoadError(errors)
    return tree, locator
