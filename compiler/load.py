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

# Limits on what a config may be, so a hostile or broken file costs a line of error text,
# never minutes or megabytes (docs/config.md, "Limits").
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 5  # tables/lists inside each other: top, interfaces, wan, track, targets
MAX_ALIAS_NODES = 10_000  # YAML: values that aliases (*name) may add by repeating anchors
MAX_INT_DIGITS = 20  # no option takes a number this long; int() of 4,301 digits raises
QUOTE_LIMIT = 80  # characters of a value quoted in an error line

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


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` as it may appear in an error line: at most `limit` characters, then "..."."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown(value) -> str:
    """A value quoted for an error line (repr, clipped)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for str()
        text = "a number of more than 4300 digits"
    return clip(text)


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
        return "".join(f".{_label(p)}" if isinstance(p, str) else f"[{p}]" for p in rest)


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
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)  # a bounded read: /dev/zero is a "file" too
    except OSError as exc:
        raise LoadError([f"{path}: cannot read the config: {exc.strerror}"]) from None
    return loads(raw, path, fmt)


def loads(raw: bytes, filename: str, fmt: str) -> Source:
    if len(raw) > MAX_CONFIG_BYTES:
        raise LoadError([f"{filename}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; a NetPath "
                         "config is a few KiB (is this the right file?)"])
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
        label = f"{clip(kind, 32)} '{clip(section.name, 40)}'"
        if key is None:
            from .validate import suggest  # local import: validate imports load
            hint = suggest(kind, SECTION_KEYS)
            errors.append(f"{filename}:{section.line}: section type '{clip(kind)}' is unknown"
                          f"{hint}; allowed: {', '.join(SECTION_KEYS)}")
            continue
        if section.reopened:
            errors.append(f"{filename}:{section.reopened[0]}: {label}: a second section of this name "
                          f"(first on line {section.line}); uci would merge the two silently: names "
                          "must be unique")
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
            opt_label = f"{label} option '{clip(option.name, 40)}'"
            if key == "interfaces" and option.name == "track":
                errors.append(f"{filename}:{option.line}: {opt_label}: unknown option for an interface; "
                              "UCI spells tracking settings flat (track_method, track_targets, ...)")
                continue
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
        raise LoadError([f"{filename}: TOML syntax error: {clip(exc, 200)}"]) from None
    except ValueError:  # int() refuses more than 4,300 digits
        raise LoadError([f"{filename}: a number has more digits than any option takes"]) from None
    except RecursionError:
        raise LoadError([f"{filename}: arrays or tables nested deeper than any option "
                         f"(at most {MAX_DEPTH} levels)"]) from None
    _check_depth(data, filename)
    return _from_nested(data, filename, "toml")


def _from_yaml(text: str, filename: str):
    import yaml

    try:
        data = yaml.load(text, Loader=_strict_loader(yaml))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        problem = getattr(exc, "problem", None) or str(exc)
        kind = "YAML" if getattr(exc, "refused", False) else "YAML syntax error"
        one_line = " ".join(str(problem).split())  # a ReaderError's text spans lines
        raise LoadError([f"{where}: {kind}: {clip(one_line, 200)}"]) from None
    if data is None:
        data = {}
    return _from_nested(data, filename, "yaml")


PLAIN_YAML_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq",
                                                      "map", "merge")}


def _strict_loader(yaml):
    """A SafeLoader for plain data, refusing what a config has no use for and what makes
    a small file expensive: any tag beyond strings, numbers, booleans, null, lists and
    mappings (also `!!python/...`, `!!binary`, `!!set`, `!!timestamp`), keys that are not
    strings (`7:`, `yes:`, `null:`), a key given twice in one mapping (plain YAML keeps the
    last one silently, which would drop a whole interface or policy), nesting deeper than
    the schema and aliases that repeat more than MAX_ALIAS_NODES values (an alias bomb).
    A number with more digits than any option takes stays text, for validate to refuse."""

    class Refused(yaml.constructor.ConstructorError):
        refused = True

    class StrictLoader(yaml.SafeLoader):
        # Dates stay strings: an unquoted 2024-01-01 is no timestamp here.
        yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

        def __init__(self, stream):
            super().__init__(stream)
            self.depth = 0

        def compose_node(self, parent, index):
            if not self.check_event(yaml.AliasEvent, yaml.ScalarEvent):
                self.depth += 1
                if self.depth > MAX_DEPTH:
                    raise Refused(None, None, f"lists or mappings nested deeper than any option "
                                  f"(at most {MAX_DEPTH} levels)", self.peek_event().start_mark)
            return super().compose_node(parent, index)

        def compose_sequence_node(self, anchor):
            try:
                return super().compose_sequence_node(anchor)
            finally:
                self.depth -= 1

        def compose_mapping_node(self, anchor):
            try:
                return super().compose_mapping_node(anchor)
            finally:
                self.depth -= 1

        def compose_document(self):
            node = super().compose_document()
            _check_aliases(node, yaml, Refused)
            return node

        def construct_object(self, node, deep=False):
            if node.tag not in PLAIN_YAML_TAGS:
                raise Refused(None, None, f"tag {clip(node.tag, 60)!r} is not allowed (a config holds "
                              "strings, numbers, booleans, lists and mappings)", node.start_mark)
            return super().construct_object(node, deep)

        def construct_yaml_int(self, node):
            if len(node.value) > MAX_INT_DIGITS:
                # Out of every option's range; as text, validate says so and names the option
                # (int() would raise beyond 4,300 digits).
                return node.value
            return super().construct_yaml_int(node)

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults`: merged keys may be overridden, on purpose
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    kind = {bool: "a boolean", int: "a number", float: "a number"}.get(type(key), "null")
                    raise Refused(None, None, f"key {clip(key_node.value, 40)!r} is read as "
                                  f"{kind}, not as a name; quote it "
                                  f"(\"{clip(key_node.value, 40)}\")", key_node.start_mark)
                if key in seen:
                    raise Refused(None, None, f"key {clip(key, 40)!r} appears twice in one mapping "
                                  f"(first on line {seen[key]}); names must be unique",
                                  key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep)

    StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
    return StrictLoader


def _check_aliases(root, yaml, Refused) -> None:
    """Refuse a document whose aliases repeat more than MAX_ALIAS_NODES values, or whose
    structure refers to itself, or that aliases nest deeper than MAX_DEPTH: the composed
    graph shares nodes, but every later stage walks the expanded tree."""
    if root is None:
        return
    expanded: dict = {}  # id(node) -> (values below it, expanded, counting itself; depth)
    distinct: set = set()
    stack = [(root, False)]
    active: set = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node, yaml)
            size = 1 + sum(expanded[id(c)][0] for c in children)
            depth = (1 + max((expanded[id(c)][1] for c in children), default=0)
                     if not isinstance(node, yaml.ScalarNode) else 0)
            expanded[key] = (size, depth)
            if size - len(distinct) > MAX_ALIAS_NODES:
                raise Refused(None, None, f"aliases repeat more than {MAX_ALIAS_NODES} values "
                              "(an alias bomb?); write the values out", node.start_mark)
            if depth > MAX_DEPTH:
                raise Refused(None, None, f"aliases nest lists or mappings deeper than any option "
                              f"(at most {MAX_DEPTH} levels)", node.start_mark)
            continue
        if key in expanded:
            continue
        if key in active:
            raise Refused(None, None, "an alias refers to a value that contains it", node.start_mark)
        active.add(key)
        distinct.add(key)
        stack.append((node, True))
        for child in _children(node, yaml):
            stack.append((child, False))


def _children(node, yaml) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_depth(data, filename: str) -> None:
    """TOML: refuse tables and arrays nested deeper than the schema (YAML is checked while
    it is composed)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    raise LoadError([f"{filename}: arrays or tables nested deeper than any option "
                                     f"(at most {MAX_DEPTH} levels)"])
                stack.append((child, depth + 1))


def _label(name, quoted: bool = False) -> str:
    """A section name as it may appear in a message: as is when harmless, else quoted
    with escapes, so a newline in a bad name cannot split an error line."""
    text = str(name)
    if text.isascii() and text.isprintable() and "'" not in text:
        return f"'{clip(text, 40)}'" if quoted else clip(text, 40)
    return clip(repr(text), 40)


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
            errors.append(f"{filename}: top-level key {_label(key, quoted=True)} is unknown{hint}; allowed: "
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
